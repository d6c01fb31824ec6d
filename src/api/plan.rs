//! The `CrisisPlan` custom resource: the prepared response to a crisis, and
//! the live state of the crisis it is handling.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CRON_PATTERN, DURATION_PATTERN, NAME_PATTERN};

/// A crisis plan: which hotlines it surges, within which time budget, the
/// prepared scenarios (surge, announcement, escalation chain), how the surge
/// steps down at exit, and when it is rehearsed.
///
/// A crisis is declared by writing `status.declaration` (never `spec`), e.g.
/// `kubectl patch crisisplan/retail --subresource=status --type=merge -p
/// '{"status":{"declaration":{"scenario":"it-outage"}}}'`, and ended by
/// setting it to `null`.
// kube's printcolumn(...) repeats `type_ = ...` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "crisis.hotline.dev",
    version = "v1alpha1",
    kind = "CrisisPlan",
    namespaced,
    status = "CrisisPlanStatus",
    shortname = "cp",
    category = "hotline",
    derive = "PartialEq",
    doc = "A prepared crisis response; declare a crisis by patching status.declaration.",
    printcolumn(
        name = "PHASE",
        type_ = "string",
        json_path = ".status.phase",
        description = "Standby, Surging, Active or Exiting"
    ),
    printcolumn(
        name = "SCENARIO",
        type_ = "string",
        json_path = ".status.current.scenario",
        description = "Scenario of the current crisis"
    ),
    printcolumn(
        name = "BUDGET",
        type_ = "string",
        json_path = ".spec.timeBudget",
        description = "Time allowed from declaration to surge capacity ready"
    ),
    printcolumn(
        name = "TIME-TO-SURGE",
        type_ = "integer",
        json_path = ".status.current.timeToSurgeSeconds",
        description = "Seconds from declaration to surge capacity ready"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.drills) || self.scenarios.exists(s, s.name == self.drills.scenario)").message("drills.scenario must name one of spec.scenarios").field_path(".drills.scenario"))]
#[serde(rename_all = "camelCase")]
pub struct CrisisPlanSpec {
    /// Hotlines (in this namespace) this plan surges. Names are unique.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub hotlines: Vec<HotlineRef>,

    /// Time promised from declaration to surge capacity ready on every
    /// hotline, as a duration (`5m`, `90s`, `1h30m`).
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub time_budget: String,

    /// The prepared scenarios. A declaration names one of them. Names are
    /// unique.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub scenarios: Vec<Scenario>,

    /// How the surge returns to standby when the crisis ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,

    /// Rehearsals of the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drills: Option<Drills>,
}

/// Reference to a Hotline in the plan's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HotlineRef {
    /// Name of the Hotline.
    #[schemars(regex(pattern = NAME_PATTERN), length(min = 1, max = 63))]
    pub name: String,
}

/// A prepared crisis scenario.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Scenario {
    /// Name of the scenario, e.g. `it-outage`, `strike`, `product-recall`.
    #[schemars(regex(pattern = NAME_PATTERN), length(min = 1, max = 63))]
    pub name: String,

    /// Crisis capacity asked of each hotline of the plan.
    pub surge: Surge,

    /// What callers hear before an agent picks up during this crisis. Unset:
    /// each hotline keeps its normal announcement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub announcement: Option<String>,

    /// Who is told, in which order: each step is announced (an Event and a
    /// status entry) when `after` has elapsed since the declaration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub escalation: Vec<EscalationStep>,
}

/// Crisis capacity per hotline: exactly one of `calls` or `factor`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.calls) != has(self.factor)").message("exactly one of calls or factor must be set"))]
pub struct Surge {
    /// Concurrent calls each hotline must carry during the crisis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000000))]
    pub calls: Option<i32>,
    /// Multiple of each hotline's base standby (`standby.calls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub factor: Option<i32>,
}

/// One step of an escalation chain.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EscalationStep {
    /// Delay after the declaration, as a duration (`0m`, `15m`, `1h`).
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub after: String,
    /// Who is told: a team, a role or a rota name.
    #[schemars(length(min = 1, max = 253))]
    pub notify: String,
}

/// How a crisis ends.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    /// Gradual return to standby. Unset: 25% every 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_down: Option<StepDown>,
}

/// Step-down: the surge target falls by `percent` of the surge every `every`
/// until it reaches standby.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StepDown {
    /// Percent of the surge removed at each step (100: straight to standby).
    #[serde(default = "default_step_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub percent: i32,
    /// Interval between steps, as a duration (`5m`, `30s`).
    #[serde(default = "default_step_every")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub every: String,
}

impl Default for StepDown {
    fn default() -> Self {
        Self {
            percent: default_step_percent(),
            every: default_step_every(),
        }
    }
}

fn default_step_percent() -> i32 {
    25
}

fn default_step_every() -> String {
    "5m".to_owned()
}

/// Rehearsals: a drill declares `scenario` on the cron `schedule`, marked as a
/// drill, and ends it after `duration`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Drills {
    /// Five-field cron expression in UTC (`0 10 1 3,9 *`: 10:00 on the 1st of
    /// March and September).
    #[schemars(regex(pattern = CRON_PATTERN), length(max = 128))]
    pub schedule: String,
    /// Scenario rehearsed; one of `spec.scenarios`.
    #[schemars(regex(pattern = NAME_PATTERN), length(min = 1, max = 63))]
    pub scenario: String,
    /// How long a drill lasts before its exit starts, as a duration.
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 32))]
    pub duration: String,
}

/// Observed and live state of the plan.
///
/// `declaration` belongs to declarers (automation, `kubectl crisis`); every
/// other field is written by the operator under its own field manager.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CrisisPlanStatus {
    /// A declared crisis. Written by declarers through the status
    /// subresource, never by the operator: present means a crisis is
    /// declared, removing it starts the exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declaration: Option<Declaration>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary: `Standby`, `Surging` (declared, capacity not ready yet),
    /// `Active` (surge capacity ready) or `Exiting` (stepping down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The crisis being handled, while not in `Standby`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<CrisisRecord>,
    /// Targets published to each hotline and their ready capacity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hotlines: Vec<HotlineTarget>,
    /// The last 10 crises and drills, most recent last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<CrisisRecord>,
    /// `Valid`, `Declared`, `SurgeReady`, `WithinBudget`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A crisis declaration, written by a declarer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Declaration {
    /// Scenario declared; one of `spec.scenarios`.
    #[schemars(length(min = 1, max = 63))]
    pub scenario: String,
    /// Why, in a few words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
    /// Who declared it (a person, or `alertmanager/<alert>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub declared_by: Option<String>,
    /// Incident reference in the incident tool, e.g. `INC-1234`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub incident_ref: Option<String>,
}

/// Lifecycle phase of a plan.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Standby,
    Surging,
    Active,
    Exiting,
}

/// One crisis (or drill), live or past.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CrisisRecord {
    /// Scenario in force.
    pub scenario: String,
    /// When the crisis was declared.
    pub declared_at: Time,
    /// When the surge to the current scenario started (differs from
    /// `declaredAt` after a scenario change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surge_started_at: Option<Time>,
    /// `surgeStartedAt + timeBudget`: surge capacity is promised by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
    /// When every hotline first carried its surge target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surge_ready_at: Option<Time>,
    /// Seconds from `surgeStartedAt` to `surgeReadyAt`, rounded up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_surge_seconds: Option<i64>,
    /// Milliseconds from `surgeStartedAt` to `surgeReadyAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_surge_milliseconds: Option<i64>,
    /// Whether surge capacity was ready by the deadline; unset while it can
    /// still be met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_met: Option<bool>,
    /// When the exit (step-down) started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_started_at: Option<Time>,
    /// When the plan was back to standby.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
    /// Step-down steps taken so far (while `Exiting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_down_step: Option<i32>,
    /// Whether this is a rehearsal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drill: bool,
    /// Copied from the declaration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Copied from the declaration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_by: Option<String>,
    /// Copied from the declaration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_ref: Option<String>,
    /// Escalation steps announced so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalations: Vec<EscalationRecord>,
}

/// An escalation step that was announced.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EscalationRecord {
    /// Delay after the declaration, as written in the scenario.
    pub after: String,
    /// Who was told.
    pub notify: String,
    /// When it was announced.
    pub notified_at: Time,
}

/// What the plan asks of one hotline, and what it carries.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HotlineTarget {
    /// Hotline name.
    pub name: String,
    /// Calls of the scenario's surge for this hotline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surge_calls: Option<i32>,
    /// Calls the plan asks of the hotline now (the surge, or a step-down
    /// step); unset in `Standby`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_calls: Option<i32>,
    /// Calls the hotline's ready replicas carry, as it last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_calls: Option<i32>,
}
