//! Benchmark driver against the local control plane (see docs/BENCHMARKS.md).
//!
//!   hack/bench [--runs N] [--cases reaction,reaction1000,overhead,ramp,exit,footprint]
//!
//! The operator runs as a separate process (`target/release/hotline-operator`,
//! built by hack/bench) scoped to one namespace per case; the driver creates
//! the objects, declares crises through the status subresource, and observes
//! Deployments and plans through watches. Each case repeats `--runs` times
//! (default 5) and prints median, p99, min and max; raw figures go to
//! `target/bench/<case>.csv`.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use hotline_operator::api::{CrisisPlan, Hotline, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::fixtures;
use support::{TestNamespace, wait_for};

// ---------- statistics ----------

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Stats {
    median: f64,
    p99: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn stats(values: &[f64]) -> Stats {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    Stats {
        median: percentile(&v, 50.0),
        p99: percentile(&v, 99.0),
        min: v.first().copied().unwrap_or(f64::NAN),
        max: v.last().copied().unwrap_or(f64::NAN),
        n: v.len(),
    }
}

struct Report {
    rows: Vec<String>,
    out_dir: PathBuf,
}

impl Report {
    fn add(&mut self, case: &str, metric: &str, unit: &str, values: &[f64]) -> anyhow::Result<()> {
        let s = stats(values);
        let row = format!(
            "| {case} | {metric} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {unit} |",
            s.median, s.p99, s.min, s.max, s.n
        );
        println!("{row}");
        self.rows.push(row);
        std::fs::create_dir_all(&self.out_dir)?;
        let path = self.out_dir.join(format!("{case}.csv"));
        let new = !path.exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        if new {
            writeln!(f, "metric,unit,run,value")?;
        }
        for (i, v) in values.iter().enumerate() {
            writeln!(f, "{metric},{unit},{i},{v}")?;
        }
        Ok(())
    }
}

// ---------- the operator process ----------

struct OperatorProcess {
    child: Child,
}

impl OperatorProcess {
    async fn start(namespace: &str, port: u16) -> anyhow::Result<Self> {
        let bin = support::repo_root().join("target/release/hotline-operator");
        anyhow::ensure!(
            bin.is_file(),
            "{} missing: run hack/bench (it builds it)",
            bin.display()
        );
        let log = std::fs::File::create(
            support::repo_root().join(format!("target/bench/operator-{namespace}.log")),
        )?;
        let child = Command::new(bin)
            .args([
                "--namespace",
                namespace,
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--log-format",
                "text",
                "--concurrency",
                &std::env::var("BENCH_OPERATOR_CONCURRENCY").unwrap_or_else(|_| "32".into()),
            ])
            .env("KUBECONFIG", support::kubeconfig_path().await?)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the operator")?;
        let url = format!("http://127.0.0.1:{port}/readyz");
        wait_for("operator /readyz", Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                let out = Command::new("curl").args(["-fsS", &url]).output();
                out.map(|o| o.status.success()).unwrap_or(false)
            }
        })
        .await?;
        Ok(Self { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (VmRSS, VmHWM) in MiB.
    fn memory(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> f64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
                .unwrap_or(f64::NAN)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    /// CPU seconds (user + system) so far.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let after = stat
            .rsplit_once(") ")
            .map(|(_, r)| r)
            .context("stat format")?;
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        Ok(ticks / 100.0)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------- profile: API writes, from the apiserver's own counters ----------

/// Mutating requests the kube-apiserver has served so far, by
/// `verb resource[/subresource]` (its `apiserver_request_total`), for every
/// client: the delta over a run says where the write budget went.
async fn apiserver_writes(client: &Client) -> anyhow::Result<BTreeMap<String, f64>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let label = |line: &str, key: &str| -> String {
        line.split_once(&format!("{key}=\""))
            .and_then(|(_, r)| r.split_once('"'))
            .map(|(v, _)| v.to_owned())
            .unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let verb = label(line, "verb");
        if !matches!(verb.as_str(), "POST" | "PATCH" | "PUT" | "DELETE" | "APPLY") {
            continue;
        }
        let Some(v) = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse::<f64>().ok())
        else {
            continue;
        };
        let sub = label(line, "subresource");
        let resource = label(line, "resource");
        let key = if sub.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{sub}")
        };
        *out.entry(key).or_default() += v;
    }
    Ok(out)
}

/// Prints what was written between two snapshots, biggest first.
fn print_writes(what: &str, before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    let mut rows: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d >= 1.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let list = rows
        .iter()
        .map(|(k, d)| format!("{k} {d:.0}"))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!("  {what}: {total:.0} API writes: {list}");
}

/// The operator's reconciles so far, by controller (from its /metrics).
fn operator_reconciles(port: u16) -> BTreeMap<String, f64> {
    let out = Command::new("curl")
        .args(["-fsS", &format!("http://127.0.0.1:{port}/metrics")])
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut m = BTreeMap::new();
    for line in text.lines().filter(|l| {
        l.starts_with("hotline_operator_reconciles_total{")
            || l.starts_with("hotline_operator_reconcile_duration_seconds_sum{")
    }) {
        let sum = line.starts_with("hotline_operator_reconcile_duration_seconds_sum");
        let controller = line
            .split_once("controller=\"")
            .and_then(|(_, r)| r.split_once('"'))
            .map(|(v, _)| v.to_owned())
            .unwrap_or_default();
        let controller = if sum {
            format!("{controller} seconds")
        } else {
            controller
        };
        if let Some(v) = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse::<f64>().ok())
        {
            *m.entry(controller).or_default() += v;
        }
    }
    m
}

/// One unlabelled metric of the operator (from its /metrics).
fn operator_metric(port: u16, name: &str) -> Option<f64> {
    let out = Command::new("curl")
        .args(["-fsS", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn print_reconciles(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    let list = after
        .iter()
        .map(|(k, v)| format!("{k} {:.0}", v - before.get(k).copied().unwrap_or(0.0)))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!("  operator reconciles: {list}");
}

/// Runs `futs` with at most `in_flight` at once, all to the end; the first
/// error in completion order, if any.
async fn all_ok<T, E>(
    futs: impl IntoIterator<Item = impl std::future::Future<Output = Result<T, E>>>,
    in_flight: usize,
) -> Result<(), E> {
    futures::stream::iter(futs)
        .buffer_unordered(in_flight)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .try_for_each(|r| r.map(drop))
}

// ---------- observation ----------

/// When each `spec.replicas` value was first seen, per Deployment.
type Seen = HashMap<String, Vec<(Instant, i32)>>;

/// Appends `(now, value)` to `name`'s history in `log` when the value changed.
fn record(log: &Mutex<Seen>, name: String, now: Instant, value: i32) {
    let mut m = log.lock().unwrap_or_else(|e| e.into_inner());
    let v = m.entry(name).or_default();
    if v.last().map(|(_, x)| *x) != Some(value) {
        v.push((now, value));
    }
}

/// When every Deployment in `names` had first been recorded at `want` after
/// `since` in `log` (the latest of those times).
fn last_of(log: &Mutex<Seen>, names: &[String], want: i32, since: Instant) -> Option<Instant> {
    let m = log.lock().unwrap_or_else(|e| e.into_inner());
    let mut last = since;
    for n in names {
        let t = m.get(n)?.iter().find(|(t, r)| *t >= since && *r == want)?.0;
        last = last.max(t);
    }
    Some(last)
}

/// Records, per Deployment, when each `spec.replicas` value was first seen,
/// and when the Deployment was first seen fully rolled out and Ready at a
/// replica count (ready = updated = replicas = spec.replicas).
#[derive(Clone, Default)]
struct ReplicaLog {
    seen: Arc<Mutex<Seen>>,
    ready: Arc<Mutex<Seen>>,
}

impl ReplicaLog {
    fn spawn(api: Api<Deployment>) -> Self {
        let log = ReplicaLog::default();
        let l2 = log.clone();
        tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            futures::pin_mut!(stream);
            while let Ok(Some(d)) = stream.try_next().await {
                let now = Instant::now();
                let r = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                record(&l2.seen, d.name_any(), now, r);
                let st = d.status.clone().unwrap_or_default();
                if [st.ready_replicas, st.updated_replicas, st.replicas]
                    .iter()
                    .all(|x| x.unwrap_or(0) == r)
                {
                    record(&l2.ready, d.name_any(), now, r);
                }
            }
        });
        log
    }

    /// When every Deployment in `names` first showed `want` after `since`.
    fn all_reached(&self, names: &[String], want: i32, since: Instant) -> Option<Instant> {
        last_of(&self.seen, names, want, since)
    }

    /// When every Deployment in `names` was first seen Ready at `want`
    /// replicas after `since`.
    fn all_ready(&self, names: &[String], want: i32, since: Instant) -> Option<Instant> {
        last_of(&self.ready, names, want, since)
    }

    /// When the first Deployment in `names` showed `want` after `since`.
    fn first_reached(&self, names: &[String], want: i32, since: Instant) -> Option<Instant> {
        let m = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        names
            .iter()
            .filter_map(|n| {
                m.get(n)?
                    .iter()
                    .find(|(t, r)| *t >= since && *r == want)
                    .map(|x| x.0)
            })
            .min()
    }

    fn history(&self, name: &str) -> Vec<(Instant, i32)> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

/// Waits until the namespace holds exactly `want` pods, none terminating.
async fn pods_settled(ns: &TestNamespace, want: usize) -> anyhow::Result<()> {
    let pods = ns.api::<k8s_openapi::api::core::v1::Pod>();
    wait_for(
        &format!("{want} pods, none terminating"),
        Duration::from_secs(120),
        || async {
            let list = pods.list(&ListParams::default()).await?;
            anyhow::Ok(
                list.items.len() == want
                    && list
                        .items
                        .iter()
                        .all(|p| p.metadata.deletion_timestamp.is_none()),
            )
        },
    )
    .await
}

async fn wait_all(
    log: &ReplicaLog,
    names: &[String],
    want: i32,
    since: Instant,
    within: Duration,
) -> anyhow::Result<Instant> {
    wait_for(
        &format!("{} Deployments at {want} replicas", names.len()),
        within,
        || async { log.all_reached(names, want, since) },
    )
    .await
}

fn pp() -> PatchParams {
    PatchParams {
        field_manager: Some("bench".into()),
        ..Default::default()
    }
}

async fn declare(plans: &Api<CrisisPlan>, name: &str, scenario: &str) -> anyhow::Result<()> {
    plans
        .patch_status(
            name,
            &pp(),
            &Patch::Merge(
                json!({"status": {"declaration": {"scenario": scenario, "declaredBy": "bench"}}}),
            ),
        )
        .await?;
    Ok(())
}

async fn end(plans: &Api<CrisisPlan>, name: &str) -> anyhow::Result<()> {
    plans
        .patch_status(
            name,
            &pp(),
            &Patch::Merge(json!({"status": {"declaration": null}})),
        )
        .await?;
    Ok(())
}

async fn wait_phase(
    plans: &Api<CrisisPlan>,
    name: &str,
    phase: Phase,
    within: Duration,
) -> anyhow::Result<CrisisPlan> {
    wait_for(&format!("plan {name} {phase:?}"), within, || async {
        let p = plans.get(name).await?;
        anyhow::Ok((p.status.as_ref().and_then(|s| s.phase) == Some(phase)).then_some(p))
    })
    .await
}

fn component(name: &str, cpr: i32, min: i32, delay: Duration) -> Value {
    let mut c = fixtures::managed(name, cpr, delay);
    c["minReplicas"] = json!(min);
    c["drainSeconds"] = json!(0);
    c
}

/// Creates `n` hotlines `hl-<i>` with two components and returns the
/// Deployment names.
async fn create_hotlines(
    api: &Api<Hotline>,
    n: usize,
    standby: i32,
    min: i32,
    delay: Duration,
) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut creates = Vec::new();
    for i in 0..n {
        let h = fixtures::hotline(
            &format!("hl-{i}"),
            standby,
            vec![
                component("gateway", 10, min, delay),
                component("sessions", 10, min, delay),
            ],
        )?;
        names.push(format!("hl-{i}-gateway"));
        names.push(format!("hl-{i}-sessions"));
        let api = api.clone();
        creates.push(async move { api.create(&PostParams::default(), &h).await });
    }
    all_ok(creates, 32).await?;
    Ok(names)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Milliseconds from `t0` to `t`, NaN when `t` was never seen.
fn ms_after(t0: Instant, t: Option<Instant>) -> f64 {
    t.map_or(f64::NAN, |t| ms(t - t0))
}

// ---------- cases ----------

async fn reaction(
    client: &Client,
    runs: usize,
    report: &mut Report,
    port: u16,
) -> anyhow::Result<()> {
    let ns = TestNamespace::new("bench-reaction").await?;
    let (hl, plans, d) = (
        ns.api::<Hotline>(),
        ns.api::<CrisisPlan>(),
        ns.api::<Deployment>(),
    );
    let log = ReplicaLog::spawn(d.clone());
    let op = OperatorProcess::start(&ns.name, port).await?;
    let names = create_hotlines(&hl, 10, 10, 1, Duration::ZERO).await?;
    let hotlines: Vec<String> = (0..10).map(|i| format!("hl-{i}")).collect();
    let refs: Vec<&str> = hotlines.iter().map(String::as_str).collect();
    plans
        .create(
            &PostParams::default(),
            &fixtures::plan("p", &refs, "5m", &[("outage", 50)], 100, "1s")?,
        )
        .await?;
    wait_all(
        &log,
        &names,
        1,
        Instant::now() - Duration::from_secs(3600),
        Duration::from_secs(60),
    )
    .await?;
    wait_phase(&plans, "p", Phase::Standby, Duration::from_secs(30)).await?;
    let mut values = Vec::new();
    for _ in 0..runs {
        let w0 = apiserver_writes(client).await?;
        let t0 = Instant::now();
        declare(&plans, "p", "outage").await?;
        let acked = Instant::now();
        let t = wait_all(&log, &names, 5, t0, Duration::from_secs(30)).await?;
        values.push(ms(t - t0));
        // Where the time went: the declaring patch's round trip, the first
        // Deployment written (the critical path), the last (the fan-out).
        let first = log.first_reached(&names, 5, t0).unwrap_or(t);
        eprintln!(
            "run: patch acknowledged {:.0} ms, first Deployment {:.0} ms, last {:.0} ms",
            ms(acked - t0),
            ms(first - t0),
            ms(t - t0)
        );
        print_writes(
            "declaration -> last Deployment",
            &w0,
            &apiserver_writes(client).await?,
        );
        wait_phase(&plans, "p", Phase::Active, Duration::from_secs(60)).await?;
        let t1 = Instant::now();
        end(&plans, "p").await?;
        wait_all(&log, &names, 1, t1, Duration::from_secs(30)).await?;
        wait_phase(&plans, "p", Phase::Standby, Duration::from_secs(30)).await?;
        // The next run starts on a quiet control plane: the step-down's pods
        // are gone (kwok deleting 80 pods otherwise competes with the surge).
        pods_settled(&ns, names.len()).await?;
    }
    report.add(
        "reaction-10-hotlines",
        "declaration -> all 20 Deployments at surge replicas",
        "ms",
        &values,
    )?;
    let (_, hwm) = op.memory()?;
    report.add("reaction-10-hotlines", "operator peak RSS", "MiB", &[hwm])?;
    drop(op);
    ns.cleanup().await?;
    Ok(())
}

async fn reaction1000(
    runs: usize,
    report: &mut Report,
    port: u16,
    idle_secs: u64,
) -> anyhow::Result<()> {
    let ns = TestNamespace::new("bench-reaction1000").await?;
    let (hl, plans, d) = (
        ns.api::<Hotline>(),
        ns.api::<CrisisPlan>(),
        ns.api::<Deployment>(),
    );
    let log = ReplicaLog::spawn(d.clone());
    let op = OperatorProcess::start(&ns.name, port).await?;
    // Standby 0 calls and minReplicas 0: no pods until the surge.
    let setup = Instant::now();
    let names = create_hotlines(&hl, 1000, 0, 0, Duration::ZERO).await?;
    let mut creates = Vec::new();
    for p in 0..100 {
        let hs: Vec<String> = (0..10).map(|i| format!("hl-{}", p * 10 + i)).collect();
        let refs: Vec<&str> = hs.iter().map(String::as_str).collect();
        let plan = fixtures::plan(&format!("p-{p}"), &refs, "5m", &[("outage", 10)], 100, "1s")?;
        let plans = plans.clone();
        creates.push(async move { plans.create(&PostParams::default(), &plan).await });
    }
    all_ok(creates, 16).await?;
    wait_all(&log, &names, 0, setup, Duration::from_secs(300)).await?;
    eprintln!(
        "setup: 1000 hotlines, 2000 Deployments, 100 plans in {:?}",
        setup.elapsed()
    );
    // Memory before any surge: the caches and metric series only (no Events
    // published yet, the connection pool as small as standby needed).
    let (rss_setup, hwm_setup) = op.memory()?;
    report.add(
        "footprint-after-setup",
        "operator RSS after creating 1000 hotlines / 100 plans, before any surge",
        "MiB",
        &[rss_setup],
    )?;
    report.add(
        "footprint-after-setup",
        "operator peak RSS so far (initial lists, first applies)",
        "MiB",
        &[hwm_setup],
    )?;
    let heap = |port| {
        operator_metric(port, "hotline_operator_heap_live_bytes").unwrap_or(f64::NAN) / 1_048_576.0
    };
    report.add(
        "footprint-after-setup",
        "operator live heap after setup",
        "MiB",
        &[heap(port)],
    )?;
    let mut values = Vec::new();
    for run in 0..runs {
        let (w0, r0) = (
            apiserver_writes(&ns.client).await?,
            operator_reconciles(port),
        );
        let cpu0 = op.cpu_seconds()?;
        let t0 = Instant::now();
        let patches: Vec<_> = (0..100)
            .map(|p| {
                let plans = plans.clone();
                async move { declare(&plans, &format!("p-{p}"), "outage").await }
            })
            .collect();
        all_ok(patches, 100).await?;
        let t = wait_all(&log, &names, 1, t0, Duration::from_secs(120)).await?;
        values.push(ms(t - t0));
        eprintln!(
            "run {run}: 2000 Deployments written in {:.0} ms",
            ms(t - t0)
        );
        print_writes(
            "declaration -> last Deployment",
            &w0,
            &apiserver_writes(&ns.client).await?,
        );
        print_reconciles(&r0, &operator_reconciles(port));
        eprintln!(
            "  operator CPU over the run: {:.1} s",
            op.cpu_seconds()? - cpu0
        );
        let t1 = Instant::now();
        let ends: Vec<_> = (0..100)
            .map(|p| {
                let plans = plans.clone();
                async move { end(&plans, &format!("p-{p}")).await }
            })
            .collect();
        all_ok(ends, 100).await?;
        wait_all(&log, &names, 0, t1, Duration::from_secs(120)).await?;
        // Let kwok delete the pods before the next run.
        let pods = ns.api::<k8s_openapi::api::core::v1::Pod>();
        wait_for("pods gone", Duration::from_secs(300), || async {
            anyhow::Ok(
                pods.list(&ListParams::default().limit(1))
                    .await?
                    .items
                    .is_empty(),
            )
        })
        .await?;
    }
    report.add(
        "reaction-1000-hotlines",
        "100 declarations -> all 2000 Deployments at surge replicas",
        "ms",
        &values,
    )?;
    let (_, hwm) = op.memory()?;
    report.add("reaction-1000-hotlines", "operator peak RSS", "MiB", &[hwm])?;

    // Footprint: 100 more plans (200 in all), then idle.
    let mut creates = Vec::new();
    for p in 100..200 {
        let hs: Vec<String> = (0..10)
            .map(|i| format!("hl-{}", (p - 100) * 10 + i))
            .collect();
        let refs: Vec<&str> = hs.iter().map(String::as_str).collect();
        let plan = fixtures::plan(&format!("p-{p}"), &refs, "5m", &[("outage", 10)], 100, "1s")?;
        let plans = plans.clone();
        creates.push(async move { plans.create(&PostParams::default(), &plan).await });
    }
    all_ok(creates, 16).await?;
    wait_phase(&plans, "p-199", Phase::Standby, Duration::from_secs(60)).await?;
    // Settle, then measure an idle window.
    tokio::time::sleep(Duration::from_secs(5)).await; // bench pacing, not synchronisation
    let mut cpu = Vec::new();
    let mut rss = Vec::new();
    let windows = (idle_secs / 10).max(1);
    for _ in 0..windows {
        let c0 = op.cpu_seconds()?;
        let w0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await; // measuring window
        let c1 = op.cpu_seconds()?;
        cpu.push((c1 - c0) / w0.elapsed().as_secs_f64() * 100.0);
        rss.push(op.memory()?.0);
    }
    report.add(
        "footprint-idle",
        "operator CPU, idle, 1000 hotlines / 2000 Deployments / 200 plans (10 s windows)",
        "% of one core",
        &cpu,
    )?;
    report.add("footprint-idle", "operator RSS, idle", "MiB", &rss)?;
    report.add(
        "footprint-idle",
        "operator live heap, idle",
        "MiB",
        &[heap(port)],
    )?;
    drop(op);

    // The floor for the same write: with the operator stopped, a client
    // patches the same 2000 Deployments directly (64 requests in flight),
    // while the control plane creates the same 2000 pods.
    let mut floor = Vec::new();
    for run in 0..runs.min(3) {
        let w0 = apiserver_writes(&ns.client).await?;
        let t0 = Instant::now();
        let patches: Vec<_> = names
            .iter()
            .map(|n| {
                let d = d.clone();
                let n = n.clone();
                async move {
                    d.patch_scale(&n, &pp(), &Patch::Merge(json!({"spec": {"replicas": 1}})))
                        .await
                }
            })
            .collect();
        all_ok(patches, 64).await?;
        let t = wait_all(&log, &names, 1, t0, Duration::from_secs(120)).await?;
        floor.push(ms(t - t0));
        eprintln!(
            "floor run {run}: 2000 Deployments patched directly in {:.0} ms",
            ms(t - t0)
        );
        print_writes(
            "floor patches -> last Deployment",
            &w0,
            &apiserver_writes(&ns.client).await?,
        );
        let t1 = Instant::now();
        let patches: Vec<_> = names
            .iter()
            .map(|n| {
                let d = d.clone();
                let n = n.clone();
                async move {
                    d.patch_scale(&n, &pp(), &Patch::Merge(json!({"spec": {"replicas": 0}})))
                        .await
                }
            })
            .collect();
        all_ok(patches, 64).await?;
        wait_all(&log, &names, 0, t1, Duration::from_secs(120)).await?;
        let pods = ns.api::<k8s_openapi::api::core::v1::Pod>();
        wait_for("pods gone", Duration::from_secs(300), || async {
            anyhow::Ok(
                pods.list(&ListParams::default().limit(1))
                    .await?
                    .items
                    .is_empty(),
            )
        })
        .await?;
    }
    report.add(
        "reaction-1000-hotlines",
        "floor: a client patches the same 2000 Deployments directly",
        "ms",
        &floor,
    )?;
    ns.cleanup().await?;
    Ok(())
}

async fn overhead(runs: usize, report: &mut Report, port: u16) -> anyhow::Result<()> {
    let ns = TestNamespace::new("bench-overhead").await?;
    let (hl, plans, d) = (
        ns.api::<Hotline>(),
        ns.api::<CrisisPlan>(),
        ns.api::<Deployment>(),
    );
    let log = ReplicaLog::spawn(d.clone());
    let delay = Duration::from_secs(5);
    let op = OperatorProcess::start(&ns.name, port).await?;
    let names = create_hotlines(&hl, 10, 10, 1, delay).await?;
    let hotlines: Vec<String> = (0..10).map(|i| format!("hl-{i}")).collect();
    let refs: Vec<&str> = hotlines.iter().map(String::as_str).collect();
    plans
        .create(
            &PostParams::default(),
            &fixtures::plan("p", &refs, "5m", &[("outage", 50)], 100, "1s")?,
        )
        .await?;
    // The floor: the same 20 Deployments (same template, same ready delay),
    // not managed by the operator, scaled directly.
    let mut floor_names = Vec::new();
    for n in &names {
        let mut dep = wait_for(
            &format!("Deployment {n} created by the operator"),
            Duration::from_secs(60),
            || async { anyhow::Ok(d.get_opt(n).await?) },
        )
        .await?;
        let fname = format!("floor-{n}");
        dep.metadata = kube::api::ObjectMeta {
            name: Some(fname.clone()),
            ..Default::default()
        };
        dep.status = None;
        let labels = BTreeMap::from([("bench".to_string(), fname.clone())]);
        if let Some(spec) = dep.spec.as_mut() {
            spec.selector.match_labels = Some(labels.clone());
            if let Some(meta) = spec.template.metadata.as_mut() {
                meta.labels = Some(labels);
            }
            // No announcement ConfigMap mount outside the operator's
            // Deployments, unless BENCH_FLOOR_KEEP_VOLUMES is set (to show
            // the mount is not what makes the operator's pods slower).
            let keep = std::env::var_os("BENCH_FLOOR_KEEP_VOLUMES").is_some();
            if let Some(pod) = spec.template.spec.as_mut().filter(|_| !keep) {
                pod.volumes = None;
                pod.containers
                    .iter_mut()
                    .for_each(|c| c.volume_mounts = None);
            }
        }
        d.create(&PostParams::default(), &dep).await?;
        floor_names.push(fname);
    }
    let ready = |names: Vec<String>, want: i32| {
        let d = d.clone();
        async move {
            for n in &names {
                let dep = d.get(n).await?;
                let st = dep.status.unwrap_or_default();
                if st.ready_replicas.unwrap_or(0) != want
                    || st.replicas.unwrap_or(0) != want
                    || st.updated_replicas.unwrap_or(0) != want
                {
                    return anyhow::Ok(false);
                }
            }
            anyhow::Ok(true)
        }
    };
    wait_for("standby ready", Duration::from_secs(120), || {
        ready(names.clone(), 1)
    })
    .await?;
    wait_for("floor ready", Duration::from_secs(120), || {
        ready(floor_names.clone(), 1)
    })
    .await?;
    let mut op_ms = Vec::new();
    let mut floor_ms = Vec::new();
    let mut ratio = Vec::new();
    // Each path starts on a quiet control plane (`settle` pods, none
    // terminating: kwok deleting the other path's 80 pods otherwise competes
    // with the surge), and the paths alternate which goes first, so that
    // neither always runs on the control plane the other just loaded.
    let operator_path = |settle: usize| {
        let (ns, plans, log, names) = (&ns, &plans, &log, &names);
        async move {
            pods_settled(ns, settle).await?;
            // Declaration -> plan Active (SurgeReady), observed by this driver.
            let w0 = apiserver_writes(&ns.client).await?;
            let t0 = Instant::now();
            declare(plans, "p", "outage").await?;
            wait_phase(plans, "p", Phase::Active, Duration::from_secs(120)).await?;
            let o = ms(t0.elapsed());
            print_writes(
                "operator: declaration -> Active",
                &w0,
                &apiserver_writes(&ns.client).await?,
            );
            // Where the time went, from the Deployment watch: the surge
            // written, every Deployment Ready, then the hops to the plan.
            let written = ms_after(t0, log.all_reached(names, 5, t0));
            let all_ready = ms_after(t0, log.all_ready(names, 5, t0));
            eprintln!(
                "  operator {o:.0} ms: surge written {written:.0}, all Ready {all_ready:.0}, \
                 Active seen {:.0} later",
                o - all_ready
            );
            anyhow::Ok(o)
        }
    };
    let floor_path = |settle: usize| {
        let (ns, d, log, floor_names, ready) = (&ns, &d, &log, &floor_names, &ready);
        async move {
            pods_settled(ns, settle).await?;
            // Scale the same shape directly, wait for readiness.
            let w0 = apiserver_writes(&ns.client).await?;
            let t0 = Instant::now();
            let scales: Vec<_> = floor_names
                .iter()
                .map(|n| async move {
                    d.patch_scale(n, &pp(), &Patch::Merge(json!({"spec": {"replicas": 5}})))
                        .await
                })
                .collect();
            all_ok(scales, 20).await?;
            wait_for("floor at 5 ready", Duration::from_secs(120), || {
                ready(floor_names.clone(), 5)
            })
            .await?;
            let f = ms(t0.elapsed());
            print_writes(
                "floor: scale -> all Ready",
                &w0,
                &apiserver_writes(&ns.client).await?,
            );
            let all_ready = ms_after(t0, log.all_ready(floor_names, 5, t0));
            eprintln!("  floor {f:.0} ms: all Ready {all_ready:.0}");
            anyhow::Ok(f)
        }
    };
    // Pods before the first path (both at standby) and before the second
    // (one path at its surge of 5 replicas).
    let (quiet, one_surged) = (2 * names.len(), 6 * names.len());
    for run in 0..runs {
        let (o, f) = if run % 2 == 0 {
            let o = operator_path(quiet).await?;
            (o, floor_path(one_surged).await?)
        } else {
            let f = floor_path(quiet).await?;
            (operator_path(one_surged).await?, f)
        };
        op_ms.push(o);
        floor_ms.push(f);
        ratio.push(o / f);
        eprintln!(
            "operator {o:.0} ms, floor {f:.0} ms, ratio {:.3} ({} first)",
            o / f,
            if run % 2 == 0 { "operator" } else { "floor" }
        );
        // Back to standby for both.
        end(&plans, "p").await?;
        wait_phase(&plans, "p", Phase::Standby, Duration::from_secs(60)).await?;
        for n in &floor_names {
            d.patch_scale(n, &pp(), &Patch::Merge(json!({"spec": {"replicas": 1}})))
                .await?;
        }
        wait_for("standby ready", Duration::from_secs(120), || {
            ready(names.clone(), 1)
        })
        .await?;
        wait_for("floor back", Duration::from_secs(120), || {
            ready(floor_names.clone(), 1)
        })
        .await?;
    }
    report.add(
        "overhead",
        "operator: declaration -> SurgeReady (D=5s)",
        "ms",
        &op_ms,
    )?;
    report.add(
        "overhead",
        "floor: direct scale -> all Ready (D=5s)",
        "ms",
        &floor_ms,
    )?;
    report.add("overhead", "ratio operator/floor (same run)", "x", &ratio)?;
    let diff: Vec<f64> = op_ms.iter().zip(&floor_ms).map(|(o, f)| o - f).collect();
    report.add(
        "overhead",
        "absolute overhead operator - floor",
        "ms",
        &diff,
    )?;
    drop(op);
    ns.cleanup().await?;
    Ok(())
}

async fn ramp(runs: usize, report: &mut Report, port: u16) -> anyhow::Result<()> {
    let ns = TestNamespace::new("bench-ramp").await?;
    let (hl, plans, d) = (
        ns.api::<Hotline>(),
        ns.api::<CrisisPlan>(),
        ns.api::<Deployment>(),
    );
    let log = ReplicaLog::spawn(d.clone());
    let op = OperatorProcess::start(&ns.name, port).await?;
    let mut c = fixtures::managed("gateway", 1, Duration::ZERO);
    c["minReplicas"] = json!(1);
    c["drainSeconds"] = json!(0);
    hl.create(
        &PostParams::default(),
        &fixtures::hotline("care", 2, vec![c])?,
    )
    .await?;
    plans
        .create(
            &PostParams::default(),
            &fixtures::plan("p", &["care"], "5m", &[("outage", 100)], 100, "1s")?,
        )
        .await?;
    let name = vec!["care-gateway".to_string()];
    wait_all(
        &log,
        &name,
        2,
        Instant::now() - Duration::from_secs(3600),
        Duration::from_secs(60),
    )
    .await?;
    let mut writes = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        declare(&plans, "p", "outage").await?;
        wait_all(&log, &name, 100, t0, Duration::from_secs(30)).await?;
        let steps = log
            .history("care-gateway")
            .iter()
            .filter(|(t, _)| *t >= t0)
            .count();
        writes.push(steps as f64);
        wait_phase(&plans, "p", Phase::Active, Duration::from_secs(120)).await?;
        let t1 = Instant::now();
        end(&plans, "p").await?;
        wait_all(&log, &name, 2, t1, Duration::from_secs(30)).await?;
        wait_phase(&plans, "p", Phase::Standby, Duration::from_secs(30)).await?;
    }
    report.add(
        "ramp",
        "spec.replicas values seen going 2 -> 100",
        "writes",
        &writes,
    )?;
    drop(op);
    ns.cleanup().await?;
    Ok(())
}

async fn exit(runs: usize, report: &mut Report, port: u16) -> anyhow::Result<()> {
    let ns = TestNamespace::new("bench-exit").await?;
    let (hl, plans, d) = (
        ns.api::<Hotline>(),
        ns.api::<CrisisPlan>(),
        ns.api::<Deployment>(),
    );
    let log = ReplicaLog::spawn(d.clone());
    let op = OperatorProcess::start(&ns.name, port).await?;
    hl.create(
        &PostParams::default(),
        &fixtures::hotline(
            "care",
            10,
            vec![component("gateway", 10, 1, Duration::ZERO)],
        )?,
    )
    .await?;
    plans
        .create(
            &PostParams::default(),
            &fixtures::plan("p", &["care"], "5m", &[("outage", 100)], 25, "2s")?,
        )
        .await?;
    let name = vec!["care-gateway".to_string()];
    wait_all(
        &log,
        &name,
        1,
        Instant::now() - Duration::from_secs(3600),
        Duration::from_secs(60),
    )
    .await?;
    let mut lateness = Vec::new();
    for _ in 0..runs {
        declare(&plans, "p", "outage").await?;
        wait_phase(&plans, "p", Phase::Active, Duration::from_secs(60)).await?;
        end(&plans, "p").await?;
        let p = wait_phase(&plans, "p", Phase::Exiting, Duration::from_secs(10)).await?;
        let exit_at = p
            .status
            .and_then(|s| s.current)
            .and_then(|c| c.exit_started_at)
            .context("exitStartedAt")?
            .0;
        // Map the wall-clock exit instant onto this process's monotonic clock.
        let since_exit = jiff::Timestamp::now().duration_since(exit_at);
        let exit_instant = Instant::now() - since_exit.unsigned_abs();
        wait_phase(&plans, "p", Phase::Standby, Duration::from_secs(30)).await?;
        wait_for(
            "last step (1 replica) observed after the surge",
            Duration::from_secs(10),
            || async {
                let h = log.history("care-gateway");
                let surge_at = h.iter().rposition(|(_, r)| *r == 10).unwrap_or(0);
                h[surge_at..].iter().any(|(_, r)| *r == 1)
            },
        )
        .await?;
        let _ = &name;
        let h = log.history("care-gateway");
        let rel: Vec<(f64, i32)> = h
            .iter()
            .map(|(t, r)| {
                let s = if *t >= exit_instant {
                    (*t - exit_instant).as_secs_f64()
                } else {
                    -(exit_instant - *t).as_secs_f64()
                };
                (s, *r)
            })
            .collect();
        eprintln!("exit run: replicas by seconds since exitStartedAt: {rel:?}");
        // Steps 1..4 at exit + k*2s: 8, 5, 3, 1 replicas.
        for (k, want) in [(1u32, 8), (2, 5), (3, 3), (4, 1)] {
            let due = exit_instant + Duration::from_secs(u64::from(k) * 2);
            // After the surge value (10) was last seen: status times are
            // truncated to the second, so the standby value seen before the
            // surge can fall after `exit_instant`.
            let surge_at = h.iter().rposition(|(_, r)| *r == 10).unwrap_or(0);
            let seen = h[surge_at..]
                .iter()
                .find(|(_, r)| *r == want)
                .map(|(t, _)| *t)
                .context("step observed")?;
            let late = if seen >= due {
                ms(seen - due)
            } else {
                -ms(due - seen)
            };
            lateness.push(late);
        }
    }
    report.add(
        "exit",
        "step applied (replicas observed) minus its due time",
        "ms",
        &lateness,
    )?;
    drop(op);
    ns.cleanup().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut runs = 5usize;
    let mut cases = "reaction,overhead,ramp,exit,reaction1000".to_string();
    let mut idle = 60u64;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--runs" => {
                runs = args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .context("--runs N")?;
                i += 1;
            }
            "--cases" => {
                cases = args.get(i + 1).cloned().context("--cases a,b")?;
                i += 1;
            }
            "--idle-seconds" => {
                idle = args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .context("--idle-seconds N")?;
                i += 1;
            }
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
        i += 1;
    }
    support::install_crds().await?;
    let client = support::client().await?;
    let out_dir = support::repo_root().join("target/bench");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir)?;
    let mut report = Report {
        rows: Vec::new(),
        out_dir,
    };
    println!("| case | metric | median | p99 | min | max | runs | unit |");
    println!("|---|---|---|---|---|---|---|---|");
    for (n, case) in cases.split(',').enumerate() {
        let port = 19100 + u16::try_from(n).unwrap_or(0);
        match case {
            "reaction" => reaction(&client, runs, &mut report, port).await?,
            "reaction1000" => reaction1000(runs, &mut report, port, idle).await?,
            "overhead" => overhead(runs, &mut report, port).await?,
            "ramp" => ramp(runs, &mut report, port).await?,
            "exit" => exit(runs, &mut report, port).await?,
            other => bail!("unknown case {other}"),
        }
    }
    std::fs::write(
        report.out_dir.join("summary.md"),
        report.rows.join("\n") + "\n",
    )?;
    Ok(())
}
