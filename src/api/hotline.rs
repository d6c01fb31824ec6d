//! The `Hotline` custom resource: one phone service and the workloads that
//! carry its calls.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    CLOCK_PATTERN, E164_PATTERN, NAME_PATTERN, TIME_ZONE_PATTERN, preserve_unknown_object,
};

/// A crisis hotline: the phone numbers callers dial, the warm standby capacity
/// held in normal times, and the components (telephony gateway, operator
/// sessions, ...) that carry its calls. Capacity is counted in concurrent
/// calls; the hotline's capacity is the minimum over its components.
// kube's printcolumn(...) repeats `type_ = ...` by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "crisis.hotline.dev",
    version = "v1alpha1",
    kind = "Hotline",
    namespaced,
    status = "HotlineStatus",
    shortname = "hl",
    category = "hotline",
    derive = "PartialEq",
    doc = "A crisis hotline held on warm standby and surged to crisis capacity by CrisisPlans.",
    printcolumn(
        name = "MODE",
        type_ = "string",
        json_path = ".status.mode",
        description = "Standby, Surge or StepDown"
    ),
    printcolumn(
        name = "TARGET",
        type_ = "integer",
        json_path = ".status.targetCalls",
        description = "Concurrent calls the operator is delivering toward"
    ),
    printcolumn(
        name = "READY",
        type_ = "integer",
        json_path = ".status.readyCalls",
        description = "Concurrent calls the ready replicas carry"
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct HotlineSpec {
    /// Phone numbers of this hotline, in E.164 form (`+` then up to 15 digits,
    /// e.g. `+33123456789`). At least one.
    #[schemars(length(min = 1, max = 32), inner(regex(pattern = E164_PATTERN)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub numbers: Vec<String>,

    /// The warm standby held in normal times, when no crisis is declared.
    pub standby: Standby,

    /// The message callers hear before an agent picks up, in normal times. A
    /// declared crisis replaces it with the scenario's announcement. It is
    /// rendered into the ConfigMap `<hotline>-announcement` that managed pods
    /// mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub announcement: Option<String>,

    /// The workloads that carry the calls: at least a telephony gateway and an
    /// operator-session service. Each one says how many concurrent calls one
    /// replica carries. Names are unique.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub components: Vec<Component>,
}

/// Warm standby capacity.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Standby {
    /// Concurrent calls always held ready, at any time, crisis or not.
    #[schemars(range(min = 0, max = 1000000))]
    pub calls: i32,

    /// Other standby levels by time window (e.g. more capacity in business
    /// hours). Outside every window, `calls` applies; where windows overlap,
    /// the largest applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<StandbySchedule>,
}

/// Standby levels by time window, in one time zone.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StandbySchedule {
    /// IANA time zone the windows are written in, e.g. `Europe/Paris` or
    /// `UTC`. Daylight saving changes are followed.
    #[schemars(regex(pattern = TIME_ZONE_PATTERN), length(max = 64))]
    pub time_zone: String,

    /// The windows. A window whose `end` is before its `start` crosses
    /// midnight and ends the next day.
    #[schemars(length(min = 1, max = 32))]
    pub windows: Vec<StandbyWindow>,
}

/// Day of the week, in English, three letters.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// A weekly time window with its own standby level.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.start != self.end").message("start and end must differ (a window that crosses midnight has end before start)"))]
pub struct StandbyWindow {
    /// Days on which the window starts.
    #[schemars(length(min = 1, max = 7))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub days: Vec<Weekday>,
    /// Local start time, `HH:MM` (24-hour clock).
    #[schemars(regex(pattern = CLOCK_PATTERN), length(max = 5))]
    pub start: String,
    /// Local end time, `HH:MM` (24-hour clock; `24:00` is midnight at the end
    /// of the day). Before `start`, the window ends the next day.
    #[schemars(regex(pattern = CLOCK_PATTERN), length(max = 5))]
    pub end: String,
    /// Concurrent calls held ready during the window.
    #[schemars(range(min = 0, max = 1000000))]
    pub calls: i32,
}

/// One workload carrying part of the hotline's calls. Exactly one of
/// `template` (the operator owns a Deployment `<hotline>-<name>`) or
/// `workloadRef` (an existing workload scaled through its `/scale`
/// subresource).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = kube::core::Rule::new("has(self.template) != has(self.workloadRef)").message("exactly one of template or workloadRef must be set").field_path(".template"),
    validation = kube::core::Rule::new("!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("minReplicas must be less than or equal to maxReplicas").field_path(".minReplicas"),
    validation = kube::core::Rule::new("!has(self.service) || has(self.template)").message("service is only allowed on managed components (with template)").field_path(".service")
)]
pub struct Component {
    /// Name of the component, e.g. `gateway` or `sessions`. A managed
    /// component's Deployment is named `<hotline>-<name>`.
    #[schemars(regex(pattern = NAME_PATTERN), length(min = 1, max = 40))]
    pub name: String,

    /// Concurrent calls one ready replica carries.
    #[schemars(range(min = 1, max = 100000))]
    pub calls_per_replica: i32,

    /// Replicas never go below this, even at standby.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 10000))]
    pub min_replicas: i32,

    /// Replicas never go above this, even in a crisis. Unset: no ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_replicas: Option<i32>,

    /// Seconds a replica may take to finish its calls when it is removed
    /// (managed components: the pods' `terminationGracePeriodSeconds`).
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub drain_seconds: i64,

    /// Pod template of a managed component: the operator creates and owns a
    /// Deployment `<hotline>-<name>` from it. The pods also mount the
    /// announcement ConfigMap at `/etc/hotline/announcement`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub template: Option<super::PodTemplate>,

    /// An existing workload (Deployment, StatefulSet, or any resource with a
    /// `/scale` subresource) in the same namespace. The operator only sets its
    /// replicas through `/scale` and touches nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_ref: Option<WorkloadRef>,

    /// A Service in front of a managed component's pods, named
    /// `<hotline>-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ComponentService>,
}

fn default_min_replicas() -> i32 {
    1
}

fn default_drain_seconds() -> i64 {
    30
}

/// Reference to an existing scalable workload in the hotline's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// API version of the workload, e.g. `apps/v1`.
    #[schemars(length(min = 1, max = 253))]
    pub api_version: String,
    /// Kind of the workload, e.g. `Deployment` or `StatefulSet`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// Name of the workload.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A Service for a managed component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentService {
    /// Ports exposed by the Service.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub ports: Vec<ServicePort>,
}

/// One port of a component's Service.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Name of the port, e.g. `sip`.
    #[schemars(regex(pattern = NAME_PATTERN), length(min = 1, max = 15))]
    pub name: String,
    /// Port number on the Service.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Container port the traffic goes to; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: Option<i32>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

/// Transport protocol of a Service port.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

/// What the operator observes and delivers. Written by the operator only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HotlineStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Standby` (no crisis target above standby), `Surge` (an active crisis
    /// plan targets it) or `StepDown` (a crisis is stepping down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<HotlineMode>,
    /// Standby calls in force now (from `standby`, with its schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_calls: Option<i32>,
    /// Concurrent calls the operator is delivering toward now: the maximum of
    /// the standby and of the active plans' targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_calls: Option<i32>,
    /// Concurrent calls carried by ready replicas: the minimum over components
    /// of ready replicas x callsPerReplica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_calls: Option<i32>,
    /// Per-component replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
    /// CrisisPlans currently targeting this hotline above its standby.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_plans: Vec<ActivePlan>,
    /// The announcement currently served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement: Option<AnnouncementStatus>,
    /// When the standby level changes next (schedule window boundary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_standby_change: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// `Ready`, `CapacityMet`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Summary of what a hotline is doing.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotlineMode {
    Standby,
    Surge,
    StepDown,
}

/// Replicas of one component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Component name.
    pub name: String,
    /// Replicas the operator asks for.
    pub desired_replicas: i32,
    /// Replicas ready now.
    pub ready_replicas: i32,
    /// Calls the ready replicas carry.
    pub ready_calls: i32,
}

/// A plan targeting this hotline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ActivePlan {
    /// CrisisPlan name (same namespace).
    pub plan: String,
    /// Scenario of the crisis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// Calls the plan asks of this hotline now.
    pub calls: i32,
}

/// The announcement served now.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnnouncementStatus {
    /// Scenario whose announcement is served; unset for the standby text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// ConfigMap holding the text (`<hotline>-announcement`).
    pub config_map: String,
}
