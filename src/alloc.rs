//! A global allocator wrapper that counts live heap bytes, so the operator
//! can tell its live data from what the allocator holds on to (RSS).
//! Installed by the operator binary; an atomic add per allocation is noise
//! next to the I/O a reconcile does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting live bytes.
pub struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and only adds bookkeeping on an atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            INSTALLED.store(true, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            INSTALLED.store(true, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

/// Live heap bytes, if [`Counting`] is the global allocator.
pub fn live_bytes() -> Option<usize> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| LIVE.load(Ordering::Relaxed))
}

/// Hands the heap's free pages back to the kernel; returns whether any were.
///
/// glibc keeps what a burst freed (a surge allocates and frees tens of MiB
/// of watch events and request bodies) in its arenas, where it counts as
/// resident memory long after the burst: measured ~2.5 MiB of a 37 MiB RSS
/// after a 1,000-hotline surge (docs/BENCHMARKS.md, "Footprint"). The
/// operator calls this periodically; it walks the free lists only, a
/// fraction of a millisecond at this heap size. A no-op elsewhere than on
/// glibc (musl and other allocators return memory on their own).
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointer and is thread-safe (it locks
        // each arena); 0 keeps no extra padding at the top of the heap.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Keeps glibc to one malloc arena, unless `MALLOC_ARENA_MAX` (or a
/// `GLIBC_TUNABLES` setting) says otherwise; returns whether it did.
///
/// glibc gives each thread that allocates concurrently its own arena (up to
/// eight per core), and each arena keeps its own free pages and
/// fragmentation: with tokio's workers and blocking threads that was ~2.7 MiB
/// of a 36 MiB RSS after a 1,000-hotline surge (docs/BENCHMARKS.md,
/// "Footprint"). The operator's threads mostly wait on the network, so one
/// arena's lock costs nothing measurable (same benchmark, reaction times).
/// Must run before other threads allocate: the operator calls it first
/// thing in `main`, before the tokio runtime starts. A no-op elsewhere
/// than on glibc.
pub fn limit_arenas() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set_by_env = std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
        // SAFETY: mallopt takes no pointer; M_ARENA_MAX only bounds the
        // creation of new arenas.
        !set_by_env && unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Anonymous resident memory of this process, in KiB.
    fn rss_anon_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("RssAnon:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    #[test]
    fn freed_heap_pages_go_back_to_the_kernel() {
        // 64 MiB in small blocks (below the mmap threshold, so they live in
        // the arena), then everything freed but one block allocated last,
        // which pins the top of the heap: glibc's automatic trimming only
        // cuts the top, so the freed pages stay resident until trimmed.
        let blocks: Vec<Vec<u8>> = (0..16_384).map(|i| vec![(i % 251) as u8; 4096]).collect();
        let pin = vec![1u8; 4096];
        drop(blocks);
        let before = rss_anon_kib();
        assert!(super::release_free_memory(), "nothing released");
        let after = rss_anon_kib();
        assert!(
            before.saturating_sub(after) > 32 * 1024,
            "RssAnon {before} KiB -> {after} KiB"
        );
        assert_eq!(pin[0], 1);
    }

    /// Number of malloc arenas, from `malloc_info`'s XML (one `<heap nr=`
    /// per arena).
    fn arenas() -> usize {
        // SAFETY: tmpfile returns an owned stream or null; malloc_info
        // writes to it; fclose releases it after it is read back.
        let xml = unsafe {
            let f = libc::tmpfile();
            assert!(!f.is_null(), "tmpfile");
            assert_eq!(libc::malloc_info(0, f), 0, "malloc_info");
            libc::fflush(f);
            libc::rewind(f);
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::fread(buf.as_mut_ptr().cast(), 1, buf.len(), f);
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            libc::fclose(f);
            out
        };
        String::from_utf8_lossy(&xml).matches("<heap nr=").count()
    }

    #[test]
    fn threads_share_one_arena_once_limited() {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return; // the environment decides; nothing of ours to test
        }
        assert!(super::limit_arenas(), "mallopt refused M_ARENA_MAX");
        let before = arenas();
        // Sixteen threads allocating at once: unlimited, glibc gives each
        // one that finds every arena busy a new arena (up to 8 per core).
        let start = std::sync::Arc::new(std::sync::Barrier::new(16));
        let held = std::sync::Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (start, held) = (start.clone(), held.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let blocks: Vec<Vec<u8>> = (0..256).map(|i| vec![i as u8; 1024]).collect();
                    held.wait();
                    blocks.len()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().ok(), Some(256));
        }
        assert_eq!(arenas(), before, "new arenas were created");
    }
}
