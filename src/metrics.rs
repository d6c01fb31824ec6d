//! Prometheus metrics. Names are snake_case with units; labels are bounded
//! (`namespace`, `plan`, `hotline`, `component`, `scenario`, `controller`,
//! `result`, `category`, `phase`, `drill`); never reasons or incident ids.
//!
//! The reference table (what each series means, when it exists) is in
//! docs/OPERATIONS.md; the alert rules in deploy/prometheus/rules.yaml and
//! the dashboard in deploy/grafana/ use only the names registered here
//! (tests/observability.rs checks it against [`Metrics::names`]).

use std::sync::Arc;
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, MetricFamily, MetricType};
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::api::{Hotline, Phase};

/// All the operator's metrics, registered in one registry.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub watch_restarts: IntCounterVec,
    pub leader: IntGauge,
    /// Live heap bytes (set at each scrape when the counting allocator is
    /// installed, i.e. in the operator binary).
    pub heap_live: IntGauge,
    /// The per-hotline gauges, read from the Hotline cache at each scrape
    /// once [`Metrics::read_hotlines_from`] is called.
    hotlines: Arc<HotlineGauges>,
    pub plan_phase: IntGaugeVec,
    pub plan_crisis_active: IntGaugeVec,
    pub plan_surge_deadline: GaugeVec,
    pub plan_time_budget: GaugeVec,
    pub plan_time_to_surge: HistogramVec,
    pub plan_budget_exceeded: IntCounterVec,
    pub plan_last_budget_met: GaugeVec,
    /// `crisisplan_surge_budget_missed{namespace,plan}`: 1 while the current
    /// crisis is declared (Surging or Active) and missed its time budget
    /// (`status.current.budgetMet == false`), else 0. Set with
    /// [`Metrics::set_budget_missed`].
    pub plan_budget_missed: IntGaugeVec,
    /// `crisisplan_created_timestamp_seconds{namespace,plan}`: the plan's
    /// creation time, so a plan never rehearsed can be found overdue. Set
    /// with [`Metrics::set_plan_created`].
    pub plan_created: GaugeVec,
    /// Every metric family name registered (histograms without their
    /// `_bucket`/`_sum`/`_count` suffixes).
    names: Vec<String>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! reg {
    ($registry:expr, $names:expr, $metric:expr) => {{
        let m = $metric;
        $names.extend(m.desc().iter().map(|d| d.fq_name.clone()));
        // Names are fixed at compile time and unique: registration cannot fail.
        $registry
            .register(Box::new(m.clone()))
            .expect("metric registered once with a valid name");
        m
    }};
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let mut names: Vec<String> = Vec::new();
        // Process metrics (process_resident_memory_bytes, process_cpu_seconds_total,
        // process_open_fds, ...): the prometheus crate reads /proc, so Linux only.
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            names.extend(pc.desc().iter().map(|d| d.fq_name.clone()));
            r.register(Box::new(pc))
                .expect("process collector registered once");
        }
        let p = "hotline_operator";
        let hotlines = Arc::new(HotlineGauges::new());
        names.extend(hotlines.desc().iter().map(|d| d.fq_name.clone()));
        r.register(Box::new(SharedCollector(hotlines.clone())))
            .expect("hotline gauges registered once");
        Metrics {
            hotlines,
            reconciles: reg!(
                r,
                names,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}_reconciles_total"),
                        "Reconciles by controller and result"
                    ),
                    &["controller", "result"]
                )
                .expect("valid")
            ),
            reconcile_errors: reg!(
                r,
                names,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}_reconcile_errors_total"),
                        "Failed reconciles by controller and error category"
                    ),
                    &["controller", "category"]
                )
                .expect("valid")
            ),
            reconcile_duration: reg!(
                r,
                names,
                HistogramVec::new(
                    HistogramOpts::new(
                        format!("{p}_reconcile_duration_seconds"),
                        "Reconcile duration"
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0
                    ]),
                    &["controller"]
                )
                .expect("valid")
            ),
            watch_restarts: reg!(
                r,
                names,
                IntCounterVec::new(
                    Opts::new(
                        format!("{p}_watch_restarts_total"),
                        "Watch stream errors that restarted a watch"
                    ),
                    &["resource"]
                )
                .expect("valid")
            ),
            leader: reg!(
                r,
                names,
                IntGauge::new(
                    format!("{p}_leader"),
                    "1 when this replica holds the leader lease"
                )
                .expect("valid")
            ),
            heap_live: reg!(
                r,
                names,
                IntGauge::new(
                    format!("{p}_heap_live_bytes"),
                    "Heap bytes allocated and not freed (live data); compare with process_resident_memory_bytes"
                )
                .expect("valid")
            ),
            plan_phase: reg!(
                r,
                names,
                IntGaugeVec::new(
                    Opts::new("crisisplan_phase", "1 for the plan's current phase"),
                    &["namespace", "plan", "phase"]
                )
                .expect("valid")
            ),
            plan_crisis_active: reg!(
                r,
                names,
                IntGaugeVec::new(
                    Opts::new(
                        "crisisplan_crisis_active",
                        "1 while a crisis or drill is declared and not over"
                    ),
                    &["namespace", "plan", "scenario", "drill"]
                )
                .expect("valid")
            ),
            plan_surge_deadline: reg!(
                r,
                names,
                GaugeVec::new(
                    Opts::new(
                        "crisisplan_surge_deadline_timestamp_seconds",
                        "Deadline of the current surge (Unix time)"
                    ),
                    &["namespace", "plan"]
                )
                .expect("valid")
            ),
            plan_time_budget: reg!(
                r,
                names,
                GaugeVec::new(
                    Opts::new(
                        "crisisplan_time_budget_seconds",
                        "Time budget from declaration to surge ready"
                    ),
                    &["namespace", "plan"]
                )
                .expect("valid")
            ),
            plan_time_to_surge: reg!(
                r,
                names,
                HistogramVec::new(
                    HistogramOpts::new(
                        "crisisplan_time_to_surge_seconds",
                        "Time from declaration to surge capacity ready"
                    )
                    .buckets(vec![
                        1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0
                    ]),
                    &["namespace", "plan", "drill"]
                )
                .expect("valid")
            ),
            plan_budget_exceeded: reg!(
                r,
                names,
                IntCounterVec::new(
                    Opts::new(
                        "crisisplan_budget_exceeded_total",
                        "Surges that missed their time budget"
                    ),
                    &["namespace", "plan", "drill"]
                )
                .expect("valid")
            ),
            plan_last_budget_met: reg!(
                r,
                names,
                GaugeVec::new(
                    Opts::new(
                        "crisisplan_last_budget_met_timestamp_seconds",
                        "When a crisis or drill of this plan last met its budget (Unix time)"
                    ),
                    &["namespace", "plan"]
                )
                .expect("valid")
            ),
            plan_budget_missed: reg!(
                r,
                names,
                IntGaugeVec::new(
                    Opts::new(
                        "crisisplan_surge_budget_missed",
                        "1 while the current crisis (Surging or Active) has missed its time budget"
                    ),
                    &["namespace", "plan"]
                )
                .expect("valid")
            ),
            plan_created: reg!(
                r,
                names,
                GaugeVec::new(
                    Opts::new(
                        "crisisplan_created_timestamp_seconds",
                        "When the plan was created (Unix time)"
                    ),
                    &["namespace", "plan"]
                )
                .expect("valid")
            ),
            registry: r,
            names,
        }
    }

    /// Names of every metric family this registry can expose (histograms by
    /// their base name), whether or not a series exists yet.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Sets `crisisplan_surge_budget_missed`: `missed` is true while the
    /// plan's phase is Surging or Active and `status.current.budgetMet` is
    /// `Some(false)`.
    pub fn set_budget_missed(&self, namespace: &str, plan: &str, missed: bool) {
        self.plan_budget_missed
            .with_label_values(&[namespace, plan])
            .set(i64::from(missed));
    }

    /// Sets `crisisplan_created_timestamp_seconds` from the plan's
    /// `metadata.creationTimestamp`.
    pub fn set_plan_created(&self, namespace: &str, plan: &str, created: jiff::Timestamp) {
        self.plan_created
            .with_label_values(&[namespace, plan])
            .set(created.as_millisecond() as f64 / 1000.0);
    }

    /// Starts timing a reconcile; the result is recorded when the guard drops.
    pub fn reconcile_timer(&self, controller: &'static str) -> ReconcileTimer<'_> {
        ReconcileTimer {
            metrics: self,
            controller,
            start: Instant::now(),
        }
    }

    /// Sets the phase gauges of a plan (one series per phase).
    pub fn set_phase(&self, namespace: &str, plan: &str, phase: Phase) {
        for p in [
            Phase::Standby,
            Phase::Surging,
            Phase::Active,
            Phase::Exiting,
        ] {
            self.plan_phase
                .with_label_values(&[namespace, plan, phase_name(p)])
                .set(i64::from(p == phase));
        }
    }

    /// Removes every series of a deleted plan.
    pub fn forget_plan(&self, namespace: &str, plan: &str) {
        for p in [
            Phase::Standby,
            Phase::Surging,
            Phase::Active,
            Phase::Exiting,
        ] {
            let _ = self
                .plan_phase
                .remove_label_values(&[namespace, plan, phase_name(p)]);
        }
        for g in [
            &self.plan_surge_deadline,
            &self.plan_time_budget,
            &self.plan_last_budget_met,
            &self.plan_created,
        ] {
            let _ = g.remove_label_values(&[namespace, plan]);
        }
        let _ = self
            .plan_budget_missed
            .remove_label_values(&[namespace, plan]);
        // Series with more labels than (namespace, plan): remove every one.
        for drill in ["true", "false"] {
            let _ = self
                .plan_time_to_surge
                .remove_label_values(&[namespace, plan, drill]);
            let _ = self
                .plan_budget_exceeded
                .remove_label_values(&[namespace, plan, drill]);
        }
        for scenario in label_values_of(&self.plan_crisis_active, namespace, plan, "scenario") {
            for drill in ["true", "false"] {
                let _ = self
                    .plan_crisis_active
                    .remove_label_values(&[namespace, plan, &scenario, drill]);
            }
        }
    }

    /// Makes the per-hotline gauges read `source` at each scrape (the
    /// operator passes its Hotline cache, empty while not leading).
    pub fn read_hotlines_from(&self, source: HotlineSource) {
        self.hotlines.set_source(source);
    }

    /// Text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(live) = crate::alloc::live_bytes() {
            self.heap_live.set(i64::try_from(live).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Where [`HotlineGauges`] reads the hotlines from at each scrape.
pub type HotlineSource = Box<dyn Fn() -> Vec<Arc<Hotline>> + Send + Sync>;

/// The per-hotline gauges (`hotline_*_calls`, `hotline_component_*_replicas`),
/// read from the Hotline cache at each scrape, the kube-state-metrics way:
/// the values are the hotline's `status` as the apiserver holds it, a
/// deleted hotline's series go with it (even when it was deleted while the
/// watch was down), and no series is held between scrapes. Held as
/// prometheus series they took about 3.5 MiB at 1,000 hotlines
/// (docs/BENCHMARKS.md, "Footprint").
pub struct HotlineGauges {
    descs: Vec<Desc>,
    source: std::sync::RwLock<Option<HotlineSource>>,
}

/// (name, help, per component) of each per-hotline gauge, in `descs` order.
const HOTLINE_GAUGES: [(&str, &str, bool); 5] = [
    (
        "hotline_target_calls",
        "Concurrent calls the operator delivers toward",
        false,
    ),
    (
        "hotline_ready_calls",
        "Concurrent calls carried by ready replicas",
        false,
    ),
    ("hotline_standby_calls", "Standby calls in force now", false),
    (
        "hotline_component_desired_replicas",
        "Replicas asked of a component",
        true,
    ),
    (
        "hotline_component_ready_replicas",
        "Ready replicas of a component",
        true,
    ),
];

impl HotlineGauges {
    fn new() -> Self {
        let descs = HOTLINE_GAUGES
            .iter()
            .map(|(name, help, per_component)| {
                let mut labels = vec!["namespace".to_owned(), "hotline".to_owned()];
                if *per_component {
                    labels.push("component".to_owned());
                }
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    labels,
                    Default::default(),
                )
                .expect("valid metric description")
            })
            .collect();
        Self {
            descs,
            source: std::sync::RwLock::new(None),
        }
    }

    fn set_source(&self, source: HotlineSource) {
        if let Ok(mut s) = self.source.write() {
            *s = Some(source);
        }
    }
}

impl Collector for HotlineGauges {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let hotlines = match self.source.read() {
            Ok(s) => s.as_ref().map(|f| f()).unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let mut families: Vec<MetricFamily> = HOTLINE_GAUGES
            .iter()
            .map(|(name, help, _)| {
                let mut f = MetricFamily::default();
                f.set_name((*name).to_owned());
                f.set_help((*help).to_owned());
                f.set_field_type(MetricType::GAUGE);
                f
            })
            .collect();
        let gauge = |labels: &[(&str, &str)], value: i32| {
            let mut g = prometheus::proto::Gauge::default();
            g.set_value(f64::from(value));
            let mut m = prometheus::proto::Metric::from_gauge(g);
            // Sorted by name, as the prometheus client does for its own series.
            let mut pairs: Vec<LabelPair> = labels
                .iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name((*k).to_owned());
                    l.set_value((*v).to_owned());
                    l
                })
                .collect();
            pairs.sort_by(|a, b| a.name().cmp(b.name()));
            m.set_label(pairs);
            m
        };
        for h in &hotlines {
            let (Some(ns), Some(name), Some(status)) = (
                h.metadata.namespace.as_deref(),
                h.metadata.name.as_deref(),
                h.status.as_ref(),
            ) else {
                continue;
            };
            let hl = [("namespace", ns), ("hotline", name)];
            for (i, value) in [
                status.target_calls,
                status.ready_calls,
                status.standby_calls,
            ]
            .into_iter()
            .enumerate()
            {
                if let Some(v) = value {
                    families[i].mut_metric().push(gauge(&hl, v));
                }
            }
            for c in &status.components {
                let labels = [
                    ("namespace", ns),
                    ("hotline", name),
                    ("component", c.name.as_str()),
                ];
                families[3]
                    .mut_metric()
                    .push(gauge(&labels, c.desired_replicas));
                families[4]
                    .mut_metric()
                    .push(gauge(&labels, c.ready_replicas));
            }
        }
        families
    }
}

/// Registers the shared [`HotlineGauges`] (the registry wants a box).
struct SharedCollector(Arc<HotlineGauges>);

impl Collector for SharedCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}

/// Values of label `label` among the series of `vec` whose first two labels
/// are `namespace` and `object` (a plan or a hotline).
fn label_values_of(
    vec: &impl Collector,
    namespace: &str,
    object: &str,
    label: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for family in vec.collect() {
        for m in family.get_metric() {
            let get = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
            };
            let owner = get("plan").or_else(|| get("hotline"));
            if get("namespace").as_deref() == Some(namespace)
                && owner.as_deref() == Some(object)
                && let Some(v) = get(label)
            {
                out.push(v);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Name of a phase as used in labels and status.
pub fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Standby => "Standby",
        Phase::Surging => "Surging",
        Phase::Active => "Active",
        Phase::Exiting => "Exiting",
    }
}

/// Records a reconcile's duration on drop.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_duration
            .with_label_values(&[self.controller])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(m: &Metrics, name: &str) -> Vec<String> {
        m.render()
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_exposed() {
        let m = Metrics::new();
        let text = m.render();
        for name in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(m.names().iter().any(|n| n == name), "{name} not registered");
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{name} "))),
                "{name} not in /metrics"
            );
        }
    }

    #[test]
    fn names_cover_every_field() {
        let m = Metrics::new();
        for name in [
            "hotline_operator_reconciles_total",
            "hotline_operator_reconcile_duration_seconds",
            "hotline_operator_leader",
            "hotline_ready_calls",
            "crisisplan_phase",
            "crisisplan_time_to_surge_seconds",
            "crisisplan_surge_budget_missed",
            "crisisplan_created_timestamp_seconds",
        ] {
            assert!(m.names().iter().any(|n| n == name), "{name} missing");
        }
    }

    #[test]
    fn forget_plan_removes_every_series_of_the_plan_only() {
        let m = Metrics::new();
        for plan in ["a", "b"] {
            m.set_phase("ns", plan, Phase::Surging);
            m.plan_crisis_active
                .with_label_values(&["ns", plan, "it-outage", "false"])
                .set(1);
            m.plan_crisis_active
                .with_label_values(&["ns", plan, "storm", "true"])
                .set(0);
            m.plan_surge_deadline
                .with_label_values(&["ns", plan])
                .set(1.0);
            m.plan_time_budget.with_label_values(&["ns", plan]).set(1.0);
            m.plan_last_budget_met
                .with_label_values(&["ns", plan])
                .set(1.0);
            m.set_budget_missed("ns", plan, true);
            m.set_plan_created("ns", plan, jiff::Timestamp::UNIX_EPOCH);
            m.plan_time_to_surge
                .with_label_values(&["ns", plan, "false"])
                .observe(3.0);
            m.plan_budget_exceeded
                .with_label_values(&["ns", plan, "false"])
                .inc();
        }
        m.forget_plan("ns", "a");
        let text = m.render();
        assert!(!text.contains("plan=\"a\""), "left over:\n{text}");
        assert_eq!(series(&m, "crisisplan_crisis_active").len(), 2);
        assert_eq!(series(&m, "crisisplan_surge_budget_missed").len(), 1);
    }

    fn hotline(name: &str, status: serde_json::Value) -> Arc<Hotline> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "crisis.hotline.dev/v1alpha1", "kind": "Hotline",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"numbers": ["+33123456789"], "standby": {"calls": 10}, "components": []},
                "status": status,
            }))
            .expect("hotline"),
        )
    }

    #[test]
    fn hotline_gauges_are_read_from_the_hotlines_at_each_scrape() {
        let m = Metrics::new();
        // Before the operator hands over its cache: no series, names known.
        assert!(series(&m, "hotline_target_calls").is_empty());
        assert!(series(&m, "hotline_component_").is_empty());
        assert!(
            m.names()
                .iter()
                .any(|n| n == "hotline_component_ready_replicas")
        );
        let current = Arc::new(std::sync::Mutex::new(vec![
            hotline(
                "a",
                serde_json::json!({
                "standbyCalls": 10, "targetCalls": 40, "readyCalls": 20,
                "components": [
                    {"name": "gateway", "desiredReplicas": 4, "readyReplicas": 2, "readyCalls": 20},
                    {"name": "sessions", "desiredReplicas": 4, "readyReplicas": 4, "readyCalls": 40}]}),
            ),
            hotline("b", serde_json::json!({"targetCalls": 10})),
            hotline("never-reconciled", serde_json::Value::Null),
        ]));
        let source = current.clone();
        m.read_hotlines_from(Box::new(move || {
            source.lock().map(|v| v.clone()).unwrap_or_default()
        }));
        let text = m.render();
        for line in [
            "hotline_target_calls{hotline=\"a\",namespace=\"ns\"} 40",
            "hotline_ready_calls{hotline=\"a\",namespace=\"ns\"} 20",
            "hotline_standby_calls{hotline=\"a\",namespace=\"ns\"} 10",
            "hotline_component_desired_replicas{component=\"gateway\",hotline=\"a\",namespace=\"ns\"} 4",
            "hotline_component_ready_replicas{component=\"gateway\",hotline=\"a\",namespace=\"ns\"} 2",
            "hotline_component_ready_replicas{component=\"sessions\",hotline=\"a\",namespace=\"ns\"} 4",
            "hotline_target_calls{hotline=\"b\",namespace=\"ns\"} 10",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(!text.contains("never-reconciled"), "{text}");
        assert!(text.contains("# TYPE hotline_ready_calls gauge"), "{text}");

        // A hotline gone from the cache (deleted, even unseen) has no series.
        if let Ok(mut v) = current.lock() {
            v.retain(|h| h.metadata.name.as_deref() != Some("a"));
        }
        let text = m.render();
        assert!(!text.contains("hotline=\"a\""), "left over:\n{text}");
        assert_eq!(series(&m, "hotline_target_calls").len(), 1);
    }
}
