//! The I/O shell: one module per controller around the pure core. Each
//! reconcile reads from reflector stores, calls `crate::core`, and writes with
//! server-side apply under [`MANAGER`].

pub mod events;
pub mod hotline;
pub mod plan;
pub mod workload;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::Store;
use tracing::warn;

use futures::{StreamExt, future};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};

use tracing::info;
use workload::Cached;

use crate::api::{CrisisPlan, Hotline};

/// Field manager of every write the operator makes.
pub const MANAGER: &str = "hotline-operator";
/// Prefix of the labels and annotations the operator sets.
pub const LABEL_PREFIX: &str = "crisis.hotline.dev";
/// Label naming the Hotline that owns a child object.
pub const HOTLINE_LABEL: &str = "crisis.hotline.dev/hotline";
/// Label naming the component a child object belongs to.
pub const COMPONENT_LABEL: &str = "crisis.hotline.dev/component";

/// Errors of a reconcile. The category is a stable metric label and decides
/// the retry policy.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// An object came without a namespace (both kinds are namespaced).
    #[error("{kind} {name} has no namespace")]
    MissingNamespace { kind: &'static str, name: String },
    /// Building a request body failed.
    #[error("serialising {what}: {source}")]
    Serialize {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Stable category, used as a metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(s) if s.code == 409 => "conflict",
                kube::Error::Api(s) if s.code == 404 => "not_found",
                kube::Error::Api(s) if s.code == 422 => "invalid",
                kube::Error::Api(s) if s.code == 403 => "forbidden",
                kube::Error::Api(_) => "api",
                _ => "transport",
            },
            Error::MissingNamespace { .. } => "invalid",
            Error::Serialize { .. } => "serialize",
        }
    }

    /// Retry delay for this error: conflicts and transient errors retry soon;
    /// others back off longer (the object's next change retriggers anyway).
    pub fn retry_after(&self) -> Duration {
        match self.category() {
            "conflict" => Duration::from_millis(200),
            "transport" | "api" | "not_found" => Duration::from_secs(2),
            _ => Duration::from_secs(30),
        }
    }
}

/// Adds context to a `kube::Error`.
pub(crate) trait KubeContext<T> {
    fn ctx(self, action: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> KubeContext<T> for Result<T, kube::Error> {
    fn ctx(self, action: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Kube {
            action: action(),
            source,
        })
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    /// Publishes Events off the reconcile path (see [`EventSink`]).
    pub events: EventSink,
    /// Every Hotline, as the Hotline watch last saw it.
    pub hotlines: Store<Hotline>,
    /// Every CrisisPlan, as the CrisisPlan watch last saw it.
    pub plans: Store<CrisisPlan>,
    /// Every Deployment, as much of it as the controllers read.
    pub deployments: Store<Cached<Deployment>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Added to the wall clock: lets tests and rehearsals run the operator
    /// "at" another instant (schedule windows, deadlines). Zero in production.
    pub clock_offset: jiff::SignedDuration,
    /// True while this replica holds the leader Lease (always true without
    /// leader election). Only the leader reconciles.
    pub leading: tokio::sync::watch::Receiver<bool>,
    /// Hash of the last body this process applied per child object
    /// (`kind/namespace/name`), for children we do not watch (announcement
    /// ConfigMaps, Services): an unchanged body is not re-applied on every
    /// reconcile. A restart, or any change of the body, applies again.
    pub applied: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Replicas this process last set per Deployment (`namespace/name`).
    pub scaled: WriteMemo<i32>,
    /// Status this process last wrote per Hotline.
    pub hotline_status: WriteMemo<crate::api::HotlineStatus>,
    /// When this process last wrote each Hotline's status, to space out
    /// writes that only report readiness progress.
    pub status_writes: Spacing,
    /// Status this process last wrote per CrisisPlan (without `declaration`).
    pub plan_status: WriteMemo<crate::api::CrisisPlanStatus>,
}

/// When a key was last written, so that writes which only report progress
/// can be held back to one per interval.
///
/// While a surge's pods start, each Deployment's readyReplicas steps up one
/// pod at a time; writing the Hotline status at every step (and the plan's
/// after it) was ~90 Hotline and 20-40 plan status writes for 10 hotlines
/// going from 1 to 5 replicas, on the same API server that is creating and
/// readying those pods (docs/BENCHMARKS.md, "Overhead (round 4)"). Changes
/// that are not only progress (mode, targets, a condition turning) are
/// written at once, so `SurgeReady` is never delayed; progress in between
/// is written at most once per interval, and always by the end of it.
pub struct Spacing {
    every: Duration,
    last: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl Default for Spacing {
    /// One progress write per second per object.
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}

impl Spacing {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: Default::default(),
        }
    }

    /// How long a progress-only write to `key` must still wait at `now`, or
    /// `None` if it may go now.
    pub fn hold(&self, key: &str, now: std::time::Instant) -> Option<Duration> {
        let m = self.last.lock().ok()?;
        let since = now.saturating_duration_since(*m.get(key)?);
        (since < self.every).then(|| self.every - since)
    }

    /// Records a write to `key` at `now`. Entries older than the interval
    /// hold nothing back and are dropped, so objects deleted since do not
    /// accumulate.
    pub fn wrote(&self, key: &str, now: std::time::Instant) {
        if let Ok(mut m) = self.last.lock() {
            if m.len() >= 256 {
                m.retain(|_, t| now.saturating_duration_since(*t) < self.every);
            }
            m.insert(key.to_owned(), now);
        }
    }

    /// Entries held (for tests).
    pub fn len(&self) -> usize {
        self.last.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What this process last wrote to each object, with the `resourceVersion`
/// of the cached object the write was based on.
///
/// The caches see our own writes one watch event later. A reconcile that
/// runs in between (another trigger of the same object) would read the old
/// value, redo the write and repeat its Events: at 1,000 hotlines that
/// doubled the API writes of a surge. While the cache still shows the version
/// a write was based on, reconciles use the written value instead; once the
/// cache shows any other version (ours or a later one), the entry is dropped
/// and the cache is the truth again. Versions are only compared for
/// equality, as the API conventions ask.
pub struct WriteMemo<V> {
    inner: std::sync::Mutex<std::collections::HashMap<String, (Option<String>, V)>>,
}

impl<V> Default for WriteMemo<V> {
    fn default() -> Self {
        Self {
            inner: Default::default(),
        }
    }
}

impl<V: Clone> WriteMemo<V> {
    /// Records that `value` was written to `key`, based on the cached object
    /// at `based_on` (its resourceVersion; `None` if it was not cached).
    pub fn remember(&self, key: &str, based_on: Option<&str>, value: V) {
        if let Ok(mut m) = self.inner.lock() {
            m.insert(key.to_owned(), (based_on.map(str::to_owned), value));
        }
    }

    /// The value written to `key` if the cache still shows the version the
    /// write was based on (`cached`); otherwise forgets the entry.
    pub fn pending(&self, key: &str, cached: Option<&str>) -> Option<V> {
        let mut m = self.inner.lock().ok()?;
        match m.get(key) {
            Some((based_on, v)) if based_on.as_deref() == cached => Some(v.clone()),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    }

    /// Forgets `key` (the write failed, or the object is gone).
    pub fn forget(&self, key: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(key);
        }
    }

    /// Entries held (for tests).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Context {
    /// Counts a finished reconcile of `controller` by result.
    pub fn record_reconcile<T>(&self, controller: &'static str, res: &Result<T, Error>) {
        let result = if res.is_ok() { "ok" } else { "error" };
        self.metrics
            .reconciles
            .with_label_values(&[controller, result])
            .inc();
    }

    /// Shared error policy: log, count by category, retry after the
    /// category's delay.
    pub fn on_error(
        &self,
        controller: &'static str,
        err: &Error,
    ) -> kube::runtime::controller::Action {
        warn!(error = %err, category = err.category(), controller, "reconcile failed");
        self.metrics
            .reconcile_errors
            .with_label_values(&[controller, err.category()])
            .inc();
        kube::runtime::controller::Action::requeue(err.retry_after())
    }

    /// Whether `body` is what this process last applied under `key`.
    pub fn already_applied(&self, key: &str, body: &serde_json::Value) -> bool {
        let h = body_hash(body);
        self.applied
            .lock()
            .map(|m| m.get(key) == Some(&h))
            .unwrap_or(false)
    }

    /// Whether this process applied anything under `key` (the object exists
    /// unless someone deleted it since).
    pub fn applied_before(&self, key: &str) -> bool {
        self.applied
            .lock()
            .map(|m| m.contains_key(key))
            .unwrap_or(false)
    }

    /// Records that `body` was applied under `key`.
    pub fn remember_applied(&self, key: &str, body: &serde_json::Value) {
        let h = body_hash(body);
        if let Ok(mut m) = self.applied.lock() {
            m.insert(key.to_owned(), h);
        }
    }

    /// Whether this replica may write.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// The operator's notion of now.
    pub fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
            .checked_add(self.clock_offset)
            .unwrap_or_else(|_| jiff::Timestamp::now())
    }

    /// Publishes an Event about `obj`; failures are logged, never fatal.
    pub async fn event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let note = truncate(note, 1024);
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        self.events.send(reference.clone(), ev);
    }
}

/// Events leave the reconcile at once and are published by a few background
/// tasks: they are best-effort records, and during a mass surge (1,000
/// hotlines) publishing them inline took a quarter of the API writes queued
/// ahead of the last Deployment's new replicas. With `IN_FLIGHT` publishers
/// the scale writes go first and the Events follow within seconds. The queue
/// is bounded; when full, an Event is dropped with a warning (never the
/// reconcile).
#[derive(Clone)]
pub struct EventSink {
    tx: tokio::sync::mpsc::Sender<(k8s_openapi::api::core::v1::ObjectReference, Event)>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
}

impl EventSink {
    const QUEUE: usize = 16_384;
    const IN_FLIGHT: usize = 4;

    /// Starts the publishers (needs a Tokio runtime).
    pub fn new(publisher: events::Publisher) -> Self {
        let publisher = Arc::new(publisher);
        let (tx, rx) = tokio::sync::mpsc::channel::<(
            k8s_openapi::api::core::v1::ObjectReference,
            Event,
        )>(Self::QUEUE);
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let idle = Arc::new(tokio::sync::Notify::new());
        let (p, n) = (pending.clone(), idle.clone());
        tokio::spawn(async move {
            tokio_stream_of(rx)
                .for_each_concurrent(Self::IN_FLIGHT, |(reference, ev)| {
                    let (publisher, p, n) = (publisher.clone(), p.clone(), n.clone());
                    async move {
                        if let Err(e) = publisher.publish(&ev, &reference).await {
                            warn!(error = %e, reason = %ev.reason, "publishing event failed");
                        }
                        Self::done(&p, &n);
                    }
                })
                .await;
        });
        Self { tx, pending, idle }
    }

    fn send(&self, reference: k8s_openapi::api::core::v1::ObjectReference, ev: Event) {
        self.pending
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = self.tx.try_send((reference, ev)) {
            Self::done(&self.pending, &self.idle);
            warn!(error = %e, "event queue full or closed; event dropped");
        }
    }

    /// One Event finished (published, failed or dropped); wakes
    /// [`Self::flushed`] when it was the last one pending.
    fn done(pending: &std::sync::atomic::AtomicUsize, idle: &tokio::sync::Notify) {
        if pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            idle.notify_waiters();
        }
    }

    /// Resolves once every Event sent so far is published (or failed).
    pub async fn flushed(&self) {
        loop {
            let idle = self.idle.notified();
            if self.pending.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// An mpsc receiver as a stream.
fn tokio_stream_of<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The Event reporter for this process.
pub fn reporter() -> Reporter {
    Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    }
}

fn body_hash(v: &serde_json::Value) -> u64 {
    v.to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Returns the condition of type `type_`, if any.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `type_` changed status or reason between `old` and `new`: the
/// moment to emit an Event.
pub fn condition_changed(old: &[Condition], new: &[Condition], type_: &str) -> bool {
    match (find_condition(old, type_), find_condition(new, type_)) {
        (Some(o), Some(n)) => o.status != n.status || o.reason != n.reason,
        (None, Some(_)) => true,
        _ => false,
    }
}

/// Options of the controllers.
#[derive(Clone, Debug)]
pub struct Options {
    /// Reconciles running at once, per controller.
    pub concurrency: u16,
    /// Namespace to watch; `None`: every namespace.
    pub namespace: Option<String>,
    /// See [`Context::clock_offset`].
    pub clock_offset: jiff::SignedDuration,
    /// Leader election; `None`: this replica always leads.
    pub leader: Option<crate::leader::LeaseConfig>,
}

/// A stream that yields each time `rx` turns true (after the first value):
/// the moment a replica becomes leader, every object is reconciled.
pub fn became_leader(
    rx: tokio::sync::watch::Receiver<bool>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            if *rx.borrow() {
                return Some(((), rx));
            }
        }
    })
}

fn api_for<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Drops what no reconcile reads from cached objects: managed fields and
/// `kubectl apply`'s last-applied annotation (memory: the caches hold every
/// object of the kind).
fn trim_meta<K: kube::Resource>(o: &mut K) {
    let meta = o.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// What to do when the watch reports an object deleted: the controllers are
/// not called for deletions (no finalizers), so per-object metric series are
/// dropped here, or they would be scraped forever.
type OnDelete<K> = fn(&crate::metrics::Metrics, &K);

fn forget_plan(m: &crate::metrics::Metrics, p: &CrisisPlan) {
    use kube::ResourceExt;
    m.forget_plan(&p.namespace().unwrap_or_default(), &p.name_any());
}

/// Starts one shared watch of `K` feeding a store: returns the store, one
/// subscription per consumer, and the future that drives the watch.
fn shared_watch<K>(
    api: Api<K>,
    metrics: Arc<crate::metrics::Metrics>,
    resource: &'static str,
    trim: fn(&mut K),
    on_delete: Option<OnDelete<K>>,
    subscribers: usize,
) -> (
    Store<K>,
    Vec<reflector::ReflectHandle<K>>,
    impl std::future::Future<Output = ()> + Send + 'static,
)
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    <K as kube::Resource>::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store_shared::<K>(1024);
    let subs = (0..subscribers)
        .filter_map(|_| writer.subscribe())
        .collect();
    let drain = async move {
        watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(trim)
            .reflect_shared(writer)
            .for_each(|ev| {
                match &ev {
                    Err(e) => {
                        warn!(error = %e, resource, "watch error; restarting with backoff");
                        metrics.watch_restarts.with_label_values(&[resource]).inc();
                    }
                    Ok(watcher::Event::Delete(obj)) => {
                        if let Some(forget) = on_delete {
                            forget(&metrics, obj);
                        }
                    }
                    Ok(_) => {}
                }
                future::ready(())
            })
            .await;
    };
    (reader, subs, drain)
}

/// Runs both controllers until `shutdown` resolves; returns once they drained.
/// `ready` is set when every watch delivered its first list.
pub async fn run(
    client: Client,
    opts: Options,
    metrics: Arc<crate::metrics::Metrics>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let ns = opts.namespace.as_deref();
    let (hotlines, mut hl_subs, hl_drain) = shared_watch(
        api_for::<Hotline>(&client, ns),
        metrics.clone(),
        "hotlines",
        trim_meta::<Hotline>,
        None,
        2,
    );
    let (plans, mut cp_subs, cp_drain) = shared_watch(
        api_for::<CrisisPlan>(&client, ns),
        metrics.clone(),
        "crisisplans",
        trim_meta::<CrisisPlan>,
        Some(forget_plan as OnDelete<CrisisPlan>),
        2,
    );
    let (deployments, mut d_subs, d_drain) = shared_watch(
        api_for::<Cached<Deployment>>(&client, ns),
        metrics.clone(),
        "deployments",
        trim_meta::<Cached<Deployment>>,
        None,
        1,
    );
    let (_sts, mut s_subs, s_drain) = shared_watch(
        api_for::<Cached<StatefulSet>>(&client, ns),
        metrics.clone(),
        "statefulsets",
        trim_meta::<Cached<StatefulSet>>,
        None,
        1,
    );
    let (leading_tx, leading_rx) = tokio::sync::watch::channel(opts.leader.is_none());
    let election = {
        let client = client.clone();
        let shutdown = shutdown.clone();
        let metrics = metrics.clone();
        let cfg = opts.leader.clone();
        let mut rx = leading_rx.clone();
        async move {
            metrics.leader.set(i64::from(*rx.borrow()));
            let gauge = async move {
                while rx.changed().await.is_ok() {
                    metrics.leader.set(i64::from(*rx.borrow()));
                }
            };
            match cfg {
                Some(cfg) => {
                    futures::join!(crate::leader::run(client, cfg, leading_tx, shutdown), gauge);
                }
                None => {
                    let _keep = leading_tx;
                    gauge.await;
                }
            }
        }
    };
    tokio::spawn(election);
    {
        // Per-hotline gauges come from the cache at scrape time; only the
        // leader exposes them, as only the leader reconciles.
        let (store, leading) = (hotlines.clone(), leading_rx.clone());
        metrics.read_hotlines_from(Box::new(move || {
            if *leading.borrow() {
                store.state()
            } else {
                Vec::new()
            }
        }));
    }
    let ctx = Arc::new(Context {
        leading: leading_rx,
        applied: Default::default(),
        scaled: Default::default(),
        hotline_status: Default::default(),
        status_writes: Default::default(),
        plan_status: Default::default(),
        events: EventSink::new(events::Publisher::new(client.clone(), reporter())),
        client,
        hotlines: hotlines.clone(),
        plans: plans.clone(),
        deployments: deployments.clone(),
        metrics,
        clock_offset: opts.clock_offset,
    });
    let stop = |rx: tokio::sync::watch::Receiver<bool>| async move {
        let mut rx = rx;
        let _ = rx.wait_for(|v| *v).await;
    };
    let (Some(hl_a), Some(hl_b), Some(cp_a), Some(cp_b), Some(d), Some(s)) = (
        hl_subs.pop(),
        hl_subs.pop(),
        cp_subs.pop(),
        cp_subs.pop(),
        d_subs.pop(),
        s_subs.pop(),
    ) else {
        warn!("shared watch subscriptions unavailable");
        return;
    };
    let readiness = {
        let (h, p, d) = (hotlines.clone(), plans.clone(), deployments.clone());
        async move {
            let _ = futures::join!(
                h.wait_until_ready(),
                p.wait_until_ready(),
                d.wait_until_ready()
            );
            ready.store(true, std::sync::atomic::Ordering::SeqCst);
            info!("caches synced: every watch delivered its first list");
        }
    };
    let watches = async move {
        futures::join!(hl_drain, cp_drain, d_drain, s_drain);
    };
    let controllers = async {
        futures::join!(
            hotline::run(
                ctx.clone(),
                hl_a,
                cp_a,
                d,
                s,
                stop(shutdown.clone()),
                opts.concurrency
            ),
            plan::run(
                ctx.clone(),
                cp_b,
                hl_b,
                stop(shutdown.clone()),
                opts.concurrency
            ),
        );
    };
    let events = ctx.events.clone();
    tokio::select! {
        _ = controllers => {
            info!("controllers stopped");
            // Events still queued get a few seconds to go out.
            if tokio::time::timeout(Duration::from_secs(5), events.flushed()).await.is_err() {
                warn!("shutting down with Events still unpublished");
            }
        }
        _ = watches => warn!("watches ended"),
        _ = async { readiness.await; futures::future::pending::<()>().await } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::Spacing;
    use std::time::{Duration, Instant};

    #[test]
    fn spacing_holds_a_write_for_the_rest_of_the_interval() {
        let s = Spacing::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(s.hold("ns/care", t0), None, "never written: goes now");
        s.wrote("ns/care", t0);
        assert_eq!(
            s.hold("ns/care", t0 + Duration::from_millis(300)),
            Some(Duration::from_millis(700))
        );
        assert_eq!(s.hold("ns/care", t0 + Duration::from_secs(1)), None);
        assert_eq!(s.hold("ns/other", t0), None, "per object");
    }

    #[test]
    fn spacing_drops_entries_older_than_the_interval() {
        let s = Spacing::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..256 {
            s.wrote(&format!("ns/h{i}"), t0);
        }
        s.wrote("ns/late", t0 + Duration::from_secs(2));
        assert_eq!(s.len(), 1);
    }
}
