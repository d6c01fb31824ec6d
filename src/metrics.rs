//! Prometheus metrics. Names are snake_case with units; labels are bounded
//! (`namespace`, `plan`, `hotline`, `component`, `scenario`, `controller`,
//! `result`, `category`, `phase`, `drill`); never reasons or incident ids.

use std::time::Instant;

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::api::Phase;

/// All the operator's metrics, registered in one registry.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub watch_restarts: IntCounterVec,
    pub leader: IntGauge,
    pub hotline_target_calls: IntGaugeVec,
    pub hotline_ready_calls: IntGaugeVec,
    pub hotline_standby_calls: IntGaugeVec,
    pub component_desired_replicas: IntGaugeVec,
    pub component_ready_replicas: IntGaugeVec,
    pub plan_phase: IntGaugeVec,
    pub plan_crisis_active: IntGaugeVec,
    pub plan_surge_deadline: GaugeVec,
    pub plan_time_budget: GaugeVec,
    pub plan_time_to_surge: HistogramVec,
    pub plan_budget_exceeded: IntCounterVec,
    pub plan_last_budget_met: GaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! reg {
    ($registry:expr, $metric:expr) => {{
        let m = $metric;
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
        let p = "hotline_operator";
        Metrics {
            reconciles: reg!(
                r,
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
                IntGauge::new(
                    format!("{p}_leader"),
                    "1 when this replica holds the leader lease"
                )
                .expect("valid")
            ),
            hotline_target_calls: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "hotline_target_calls",
                        "Concurrent calls the operator delivers toward"
                    ),
                    &["namespace", "hotline"]
                )
                .expect("valid")
            ),
            hotline_ready_calls: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "hotline_ready_calls",
                        "Concurrent calls carried by ready replicas"
                    ),
                    &["namespace", "hotline"]
                )
                .expect("valid")
            ),
            hotline_standby_calls: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new("hotline_standby_calls", "Standby calls in force now"),
                    &["namespace", "hotline"]
                )
                .expect("valid")
            ),
            component_desired_replicas: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "hotline_component_desired_replicas",
                        "Replicas asked of a component"
                    ),
                    &["namespace", "hotline", "component"]
                )
                .expect("valid")
            ),
            component_ready_replicas: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "hotline_component_ready_replicas",
                        "Ready replicas of a component"
                    ),
                    &["namespace", "hotline", "component"]
                )
                .expect("valid")
            ),
            plan_phase: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new("crisisplan_phase", "1 for the plan's current phase"),
                    &["namespace", "plan", "phase"]
                )
                .expect("valid")
            ),
            plan_crisis_active: reg!(
                r,
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
                GaugeVec::new(
                    Opts::new(
                        "crisisplan_last_budget_met_timestamp_seconds",
                        "When a crisis or drill of this plan last met its budget (Unix time)"
                    ),
                    &["namespace", "plan"]
                )
                .expect("valid")
            ),
            registry: r,
        }
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
        let _ = self
            .plan_surge_deadline
            .remove_label_values(&[namespace, plan]);
        let _ = self
            .plan_time_budget
            .remove_label_values(&[namespace, plan]);
    }

    /// Text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode_utf8(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
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
