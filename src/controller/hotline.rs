//! Hotline controller: turns max(standby now, targets the active CrisisPlans
//! publish) into replicas per component, applies the managed Deployments,
//! Services and the announcement ConfigMap with server-side apply, scales
//! referenced workloads through `/scale`, and reports ready capacity.
//!
//! Triggers: the Hotline itself, every Deployment it owns or references
//! (drift is undone on the next event), every CrisisPlan that names it, and a
//! requeue at the next standby schedule change. No polling.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, instrument};

use super::workload::Cached;
use super::{COMPONENT_LABEL, Context, Error, HOTLINE_LABEL, KubeContext, MANAGER};
use crate::api::{
    ActivePlan, AnnouncementStatus, Component, ComponentStatus, CrisisPlan, CrisisPlanStatus,
    Hotline, HotlineMode, HotlineStatus, Phase, PodTemplate, WorkloadRef,
};
use crate::core::lifecycle::{self, set_condition};
use crate::core::{capacity, schedule, validate};

const CONTROLLER: &str = "hotline";
/// Annotation holding a hash of what the operator last applied to a managed
/// Deployment, so an unchanged Deployment is not re-applied on every event.
pub const APPLIED_HASH_ANNOTATION: &str = "crisis.hotline.dev/applied-hash";
/// Where managed pods find the announcement.
pub const ANNOUNCEMENT_MOUNT_PATH: &str = "/etc/hotline/announcement";
const ANNOUNCEMENT_VOLUME: &str = "hotline-announcement";

/// Name of a managed component's Deployment and Service.
pub fn child_name(hotline: &str, component: &str) -> String {
    format!("{hotline}-{component}")
}

/// Name of a hotline's announcement ConfigMap.
pub fn announcement_config_map(hotline: &str) -> String {
    format!("{hotline}-announcement")
}

/// A plan's status as its controller is about to write it: the pure
/// lifecycle run on what the caches hold at `now`.
///
/// The Hotline controller reads targets from this projection rather than from
/// the plan's last written status, so a declaration reaches the Deployments
/// without waiting for the plan's status write and its watch event (one API
/// round trip less on the critical path). Both controllers run the same
/// function on the same caches, so they agree; the written status follows
/// within one round trip and triggers the hotlines again.
pub fn projected_status(
    plan: &CrisisPlan,
    hotlines: &Store<Hotline>,
    now: jiff::Timestamp,
) -> CrisisPlanStatus {
    let old = plan.status.clone().unwrap_or_default();
    let observed = super::plan::observe(plan, hotlines, now);
    lifecycle::reconcile(&plan.spec, plan.metadata.generation, &old, &observed, now).status
}

/// The targets CrisisPlans publish for `hotline` (namespace `ns`) at `now`:
/// plans in a crisis phase that still list the hotline in their spec and
/// publish a target for it (see [`projected_status`]).
pub fn published_targets(
    plans: &[Arc<CrisisPlan>],
    hotlines: &Store<Hotline>,
    ns: &str,
    hotline: &str,
    now: jiff::Timestamp,
) -> Vec<(ActivePlan, Phase)> {
    let mut out = Vec::new();
    for plan in plans {
        if plan.metadata.namespace.as_deref() != Some(ns) {
            continue;
        }
        if !plan.spec.hotlines.iter().any(|h| h.name == hotline) {
            continue;
        }
        let projected = projected_status(plan, hotlines, now);
        let status = &projected;
        let Some(phase) = status.phase else { continue };
        if phase == Phase::Standby {
            continue;
        }
        let Some(calls) = status
            .hotlines
            .iter()
            .find(|t| t.name == hotline)
            .and_then(|t| t.target_calls)
        else {
            continue;
        };
        out.push((
            ActivePlan {
                plan: plan.name_any(),
                scenario: status.current.as_ref().map(|c| c.scenario.clone()),
                calls,
            },
            phase,
        ));
    }
    out.sort_by(|a, b| a.0.plan.cmp(&b.0.plan));
    out
}

/// The announcement to serve: the crisis text of the plan in Surging/Active
/// with the largest target that has one; otherwise the hotline's own text.
fn choose_announcement(
    hotline: &Hotline,
    plans: &[Arc<CrisisPlan>],
    active: &[(ActivePlan, Phase)],
) -> (Option<String>, String) {
    let mut best: Option<(i32, String, String)> = None;
    for (ap, phase) in active {
        if !matches!(phase, Phase::Surging | Phase::Active) {
            continue;
        }
        let Some(scenario) = ap.scenario.as_deref() else {
            continue;
        };
        let Some(plan) = plans
            .iter()
            .find(|p| p.name_any() == ap.plan && p.namespace() == hotline.namespace())
        else {
            continue;
        };
        let Some(text) = plan
            .spec
            .scenarios
            .iter()
            .find(|s| s.name == scenario)
            .and_then(|s| s.announcement.clone())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(c, _, _)| ap.calls > *c) {
            best = Some((ap.calls, scenario.to_owned(), text));
        }
    }
    match best {
        Some((_, scenario, text)) => (Some(scenario), text),
        None => (None, hotline.spec.announcement.clone().unwrap_or_default()),
    }
}

/// Builds the managed Deployment of `component` (pure; unit-tested).
pub fn build_deployment(
    hotline: &Hotline,
    component: &Component,
    replicas: i32,
) -> Result<Deployment, Error> {
    let name = hotline.name_any();
    let selector = BTreeMap::from([
        (HOTLINE_LABEL.to_owned(), name.clone()),
        (COMPONENT_LABEL.to_owned(), component.name.clone()),
    ]);
    let mut template = component
        .template
        .as_ref()
        .map(PodTemplate::spec)
        .transpose()
        .map_err(|source| Error::Serialize {
            what: format!("pod template of component {}", component.name),
            source,
        })?
        .unwrap_or_default();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .extend(selector.clone());
    let pod = template.spec.get_or_insert_with(Default::default);
    pod.termination_grace_period_seconds = Some(component.drain_seconds);
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    volumes.retain(|v| v.name != ANNOUNCEMENT_VOLUME);
    volumes.push(
        serde_json::from_value(json!({
            "name": ANNOUNCEMENT_VOLUME,
            "configMap": {"name": announcement_config_map(&name)},
        }))
        .map_err(|source| Error::Serialize {
            what: "announcement volume".into(),
            source,
        })?,
    );
    for c in &mut pod.containers {
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        mounts.retain(|m| m.name != ANNOUNCEMENT_VOLUME);
        mounts.push(
            serde_json::from_value(json!({
                "name": ANNOUNCEMENT_VOLUME,
                "mountPath": ANNOUNCEMENT_MOUNT_PATH,
                "readOnly": true,
            }))
            .map_err(|source| Error::Serialize {
                what: "announcement mount".into(),
                source,
            })?,
        );
    }
    let owner = hotline
        .controller_owner_ref(&())
        .into_iter()
        .collect::<Vec<_>>();
    let mut d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": child_name(&name, &component.name),
            "namespace": hotline.namespace(),
            "labels": selector,
            "ownerReferences": owner,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": template,
        },
    }))
    .map_err(|source| Error::Serialize {
        what: "deployment".into(),
        source,
    })?;
    let hash = spec_hash(&d)?;
    d.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(APPLIED_HASH_ANNOTATION.to_owned(), hash);
    Ok(d)
}

/// FNV-1a over the serialised Deployment without its replicas: stable across
/// runs and processes. A change of replicas alone goes through `/scale`.
fn spec_hash(d: &Deployment) -> Result<String, Error> {
    let mut d = d.clone();
    if let Some(spec) = d.spec.as_mut() {
        spec.replicas = None;
    }
    let bytes = serde_json::to_vec(&d).map_err(|source| Error::Serialize {
        what: "deployment hash".into(),
        source,
    })?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(format!("{h:016x}"))
}

/// Result of handling one component.
struct ComponentOutcome {
    status: ComponentStatus,
    /// Set when the component could not be handled (reason, message).
    degraded: Option<(&'static str, String)>,
}

#[instrument(skip_all, fields(namespace = %hotline.namespace().unwrap_or_default(), hotline = %hotline.name_any()))]
pub async fn reconcile(hotline: Arc<Hotline>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer(CONTROLLER);
    let res = reconcile_inner(&hotline, &ctx).await;
    ctx.record_reconcile(CONTROLLER, &res);
    res
}

async fn reconcile_inner(hotline: &Hotline, ctx: &Context) -> Result<Action, Error> {
    let name = hotline.name_any();
    let ns = hotline.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: "Hotline",
        name: name.clone(),
    })?;
    if hotline.meta().deletion_timestamp.is_some() || !ctx.is_leader() {
        return Ok(Action::await_change());
    }
    let now = ctx.now();
    let generation = hotline.metadata.generation;
    // Our last status write, while the cache has not shown it yet.
    let key = format!("{ns}/{name}");
    let based_on = hotline.resource_version();
    let old = ctx
        .hotline_status
        .pending(&key, based_on.as_deref())
        .or_else(|| hotline.status.clone())
        .unwrap_or_default();
    let mut status = HotlineStatus {
        observed_generation: generation,
        conditions: old.conditions.clone(),
        ..Default::default()
    };

    // Validate what the schema could not: nothing is scaled on bad input.
    let mut problems = validate::validate_hotline(&hotline.spec);
    let standby = match schedule::standby_at(&hotline.spec.standby, now) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(crate::core::Problem::new(
                "InvalidSchedule",
                format!("spec.standby.schedule: {e}"),
            ));
            None
        }
    };
    let reference = hotline.object_ref(&());
    if let (false, Some(p)) = (problems.is_empty(), problems.first()) {
        let message = problems
            .iter()
            .map(|p| p.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        set_condition(
            &mut status.conditions,
            "Valid",
            false,
            p.reason,
            &message,
            generation,
            now,
        );
        set_condition(
            &mut status.conditions,
            "Ready",
            false,
            "Invalid",
            "spec is invalid; nothing is scaled until it is fixed",
            generation,
            now,
        );
        status.mode = old.mode;
        status.components = old.components.clone();
        status.target_calls = old.target_calls;
        status.ready_calls = old.ready_calls;
        if super::condition_changed(&old.conditions, &status.conditions, "Valid") {
            ctx.event(&reference, true, p.reason, "Validate", message)
                .await;
        }
        write_status(ctx, &ns, &name, based_on.as_deref(), &old, &status).await?;
        return Ok(Action::await_change());
    }
    let Some(standby) = standby else {
        return Ok(Action::await_change());
    };
    set_condition(
        &mut status.conditions,
        "Valid",
        true,
        "Valid",
        "spec is valid",
        generation,
        now,
    );

    // What to deliver.
    let plans = ctx.plans.state();
    let active = published_targets(&plans, &ctx.hotlines, &ns, &name, now);
    let target = capacity::target_calls(standby.calls, active.iter().map(|(a, _)| a.calls));
    let above_standby = |want: &[Phase]| {
        active
            .iter()
            .any(|(a, p)| want.contains(p) && a.calls > standby.calls)
    };
    let mode = if above_standby(&[Phase::Surging, Phase::Active]) {
        HotlineMode::Surge
    } else if above_standby(&[Phase::Exiting]) {
        HotlineMode::StepDown
    } else {
        HotlineMode::Standby
    };
    status.mode = Some(mode);
    status.standby_calls = Some(standby.calls);
    status.target_calls = Some(target);
    status.active_plans = active.iter().map(|(a, _)| a.clone()).collect();
    status.next_standby_change = standby.next_change.map(Time);

    // The announcement first: pods mount it.
    let (scenario, text) = choose_announcement(hotline, &plans, &active);
    // The announcement and every component are applied concurrently: the
    // reconcile costs one API round trip, not one per object.
    let announce = apply_announcement(hotline, ctx, &ns, &name, scenario.as_deref(), &text);
    let components =
        futures::future::try_join_all(hotline.spec.components.iter().map(|component| {
            let ns = ns.clone();
            async move {
                let replicas = capacity::replicas_for(component, target);
                let outcome = if component.template.is_some() {
                    apply_managed(hotline, component, replicas, ctx, &ns).await?
                } else if let Some(r) = component.workload_ref.as_ref() {
                    scale_referenced(component, r, replicas, ctx, &ns).await?
                } else {
                    // The schema forbids it; defensive.
                    ComponentOutcome {
                        status: ComponentStatus {
                            name: component.name.clone(),
                            desired_replicas: replicas,
                            ..Default::default()
                        },
                        degraded: Some((
                            "InvalidComponent",
                            format!(
                                "component {} has neither template nor workloadRef",
                                component.name
                            ),
                        )),
                    }
                };
                Ok::<_, Error>(outcome)
            }
        }));
    let ((), outcomes) = futures::try_join!(announce, components)?;
    status.announcement = Some(AnnouncementStatus {
        scenario: scenario.clone(),
        config_map: announcement_config_map(&name),
    });
    let ready = capacity::hotline_ready_calls(outcomes.iter().map(|o| o.status.ready_calls));
    status.ready_calls = Some(ready);
    status.components = outcomes.iter().map(|o| o.status.clone()).collect();

    // Conditions.
    let mut degraded: Vec<(&'static str, String)> =
        outcomes.iter().filter_map(|o| o.degraded.clone()).collect();
    let limiting = capacity::limiting_components(&hotline.spec, target);
    if !limiting.is_empty() {
        degraded.push((
            "SurgeExceedsCapacity",
            format!(
                "target {target} calls exceeds the maxReplicas capacity of component(s) {}",
                limiting.join(", ")
            ),
        ));
    }
    match degraded.first() {
        Some((reason, _)) => {
            let msg = degraded
                .iter()
                .map(|(_, m)| m.clone())
                .collect::<Vec<_>>()
                .join("; ");
            set_condition(
                &mut status.conditions,
                "Degraded",
                true,
                reason,
                &msg,
                generation,
                now,
            );
        }
        None => {
            set_condition(
                &mut status.conditions,
                "Degraded",
                false,
                "AsExpected",
                "every component is in place",
                generation,
                now,
            );
        }
    }
    let all_found = outcomes.iter().all(|o| o.degraded.is_none());
    if all_found {
        set_condition(
            &mut status.conditions,
            "Ready",
            true,
            "ComponentsApplied",
            "every component is applied or scaled",
            generation,
            now,
        );
    } else {
        set_condition(
            &mut status.conditions,
            "Ready",
            false,
            "ComponentsMissing",
            "some components could not be applied or scaled",
            generation,
            now,
        );
    }
    if ready >= target {
        set_condition(
            &mut status.conditions,
            "CapacityMet",
            true,
            "CapacityMet",
            &format!("{ready} ready calls for a target of {target}"),
            generation,
            now,
        );
    } else {
        set_condition(
            &mut status.conditions,
            "CapacityMet",
            false,
            "CapacityBelowTarget",
            &format!("{ready} ready calls for a target of {target}"),
            generation,
            now,
        );
    }

    // Events on transitions only.
    if old.mode != status.mode {
        let plans_text = status
            .active_plans
            .iter()
            .map(|a| format!("{} ({} calls)", a.plan, a.calls))
            .collect::<Vec<_>>()
            .join(", ");
        ctx.event(
            &reference,
            false,
            "ModeChanged",
            "Scale",
            format!(
                "{:?} -> {:?}: target {target} calls (standby {}{}{})",
                old.mode.unwrap_or(HotlineMode::Standby),
                mode,
                standby.calls,
                if plans_text.is_empty() {
                    ""
                } else {
                    "; plans: "
                },
                plans_text,
            ),
        )
        .await;
    }
    if super::condition_changed(&old.conditions, &status.conditions, "Degraded")
        && let Some(c) = super::find_condition(&status.conditions, "Degraded")
        && c.status == "True"
    {
        ctx.event(&reference, true, &c.reason, "Scale", c.message.clone())
            .await;
    }
    if super::condition_changed(&old.conditions, &status.conditions, "Valid")
        && old.conditions.iter().any(|c| c.type_ == "Valid")
    {
        ctx.event(
            &reference,
            false,
            "Valid",
            "Validate",
            "spec is valid again".into(),
        )
        .await;
    }

    // Readiness progress alone is written at most once a second (see
    // `super::Spacing`); anything else at once.
    let held = progress_only(&old, &status)
        .then(|| ctx.status_writes.hold(&key, std::time::Instant::now()))
        .flatten();
    match held {
        Some(wait) => debug!(?wait, ready, "status progress held back"),
        None => write_status(ctx, &ns, &name, based_on.as_deref(), &old, &status).await?,
    }

    // Timers, the soonest first: held progress; the next schedule change; a
    // missing referenced workload of a kind we do not watch is retried slowly.
    let schedule = standby.next_change.map(|next| {
        let wait = next.duration_since(ctx.now()).unsigned_abs();
        wait.max(Duration::from_millis(10)) + Duration::from_millis(5)
    });
    let degraded = outcomes
        .iter()
        .any(|o| o.degraded.is_some())
        .then_some(Duration::from_secs(60));
    debug!(target, ready, ?mode, "reconciled");
    Ok([held, schedule, degraded]
        .into_iter()
        .flatten()
        .min()
        .map_or_else(Action::await_change, Action::requeue))
}

/// Parameters of the operator's merge patches (`/scale`, Hotline status,
/// announcement updates): our field manager, no apply semantics.
fn merge_patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Every field of `status`, as the CRD names them (a test holds this list
/// to the generated schema).
pub const HOTLINE_STATUS_FIELDS: &[&str] = &[
    "observedGeneration",
    "mode",
    "standbyCalls",
    "targetCalls",
    "readyCalls",
    "components",
    "activePlans",
    "announcement",
    "nextStandbyChange",
    "conditions",
];

/// A JSON merge patch that makes the status exactly `new`: the operator owns
/// the whole Hotline status, so every field `new` leaves out is cleared.
///
/// Merge patch rather than server-side apply: a surge writes 1,000 of these
/// at once, and apply on a CRD (field sets computed over a schema that embeds
/// pod templates) costs the apiserver much more per write; see
/// docs/BENCHMARKS.md for the measured effect. Nobody else writes Hotline
/// status, so apply's field ownership buys nothing here.
pub fn status_merge_patch(new: &HotlineStatus) -> serde_json::Value {
    let mut status = serde_json::to_value(new).unwrap_or_else(|_| json!({}));
    if let Some(o) = status.as_object_mut() {
        for f in HOTLINE_STATUS_FIELDS {
            o.entry(*f).or_insert(serde_json::Value::Null);
        }
    }
    json!({ "status": status })
}

/// Whether `new` differs from `old` only in readiness progress: ready
/// replicas and calls, and the numbers in the `CapacityMet` message while
/// that condition keeps its status. Such changes are spaced out; the turn
/// of `CapacityMet` (the surge is ready) is not one of them.
fn progress_only(old: &HotlineStatus, new: &HotlineStatus) -> bool {
    fn without_progress(s: &HotlineStatus) -> HotlineStatus {
        let mut s = s.clone();
        s.ready_calls = None;
        for c in &mut s.components {
            c.ready_replicas = 0;
            c.ready_calls = 0;
        }
        for c in &mut s.conditions {
            if c.type_ == "CapacityMet" {
                c.message.clear();
            }
        }
        s
    }
    old != new && without_progress(old) == without_progress(new)
}

/// The status fields that differ between two `status_merge_patch` bodies
/// (for the debug log: why a reconcile wrote status).
fn changed_fields(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let (Some(old), Some(new)) = (
        old.get("status").and_then(|s| s.as_object()),
        new.get("status").and_then(|s| s.as_object()),
    ) else {
        return Vec::new();
    };
    new.iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    based_on: Option<&str>,
    old: &HotlineStatus,
    new: &HotlineStatus,
) -> Result<(), Error> {
    if old == new {
        return Ok(());
    }
    let key = format!("{ns}/{name}");
    let api: Api<Hotline> = Api::namespaced(ctx.client.clone(), ns);
    let pp = merge_patch_params();
    let patch = status_merge_patch(new);
    if tracing::enabled!(tracing::Level::DEBUG) {
        debug!(fields = ?changed_fields(&status_merge_patch(old), &patch), "writing status");
    }
    let sent = std::time::Instant::now();
    api.patch_status(name, &pp, &Patch::Merge(patch))
        .await
        .inspect_err(|_| ctx.hotline_status.forget(&key))
        .ctx(|| format!("writing status of Hotline {ns}/{name}"))?;
    ctx.hotline_status.remember(&key, based_on, new.clone());
    ctx.status_writes.wrote(&key, sent);
    Ok(())
}

async fn apply_announcement(
    hotline: &Hotline,
    ctx: &Context,
    ns: &str,
    name: &str,
    scenario: Option<&str>,
    text: &str,
) -> Result<(), Error> {
    let cm_name = announcement_config_map(name);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let owner = hotline
        .controller_owner_ref(&())
        .into_iter()
        .collect::<Vec<_>>();
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": cm_name,
            "labels": {HOTLINE_LABEL: name},
            "ownerReferences": owner,
        },
        "data": {
            "announcement": text,
            "scenario": scenario.unwrap_or(""),
        },
    });
    let key = format!("ConfigMap/{ns}/{cm_name}");
    if ctx.already_applied(&key, &body) {
        return Ok(());
    }
    // Once this process has applied the ConfigMap, later changes (a crisis
    // switching the text: 1,000 at once in a mass surge) go as a merge patch
    // of the same body, cheaper for the apiserver than an apply; the first
    // write after a start, and a ConfigMap deleted meanwhile, use apply.
    if ctx.applied_before(&key) {
        let pp = merge_patch_params();
        match api.patch(&cm_name, &pp, &Patch::Merge(&body)).await {
            Ok(_) => {
                ctx.remember_applied(&key, &body);
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e).ctx(|| format!("patching ConfigMap {ns}/{cm_name}")),
        }
    }
    api.patch(
        &cm_name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .ctx(|| format!("applying ConfigMap {ns}/{cm_name}"))?;
    ctx.remember_applied(&key, &body);
    Ok(())
}

async fn apply_managed(
    hotline: &Hotline,
    component: &Component,
    replicas: i32,
    ctx: &Context,
    ns: &str,
) -> Result<ComponentOutcome, Error> {
    let name = hotline.name_any();
    let dname = child_name(&name, &component.name);
    let desired = build_deployment(hotline, component, replicas)?;
    let desired_hash = desired.annotations().get(APPLIED_HASH_ANNOTATION).cloned();
    let cached = ctx_deployment(ctx, ns, &dname);
    let same_template = cached
        .as_ref()
        .is_some_and(|d| d.annotations().get(APPLIED_HASH_ANNOTATION) == desired_hash.as_ref());
    let (dkey, based_on, current_replicas) = current_replicas(ctx, ns, &dname, cached.as_deref());
    let up_to_date = same_template && current_replicas == Some(replicas);
    // What the Deployment's status said last: the cached object, or the
    // object a server-side apply returned.
    let ready_replicas = if up_to_date {
        cached.and_then(|d| d.ready_replicas())
    } else if same_template {
        // Only the replicas differ (a surge, a step, or drift): a merge patch
        // on /scale is far cheaper for the apiserver than a server-side apply
        // of the whole Deployment, which matters when 2,000 surge at once.
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
        let pp = merge_patch_params();
        api.patch_scale(
            &dname,
            &pp,
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .ctx(|| format!("scaling Deployment {ns}/{dname}"))?;
        ctx.scaled.remember(&dkey, based_on.as_deref(), replicas);
        info!(deployment = %dname, replicas, "scaled");
        cached.and_then(|d| d.ready_replicas())
    } else {
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
        let applied = api
            .patch(
                &dname,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await
            .ctx(|| format!("applying Deployment {ns}/{dname}"))?;
        ctx.scaled.remember(&dkey, based_on.as_deref(), replicas);
        info!(deployment = %dname, replicas, "applied");
        applied.status.and_then(|s| s.ready_replicas)
    };
    if let Some(svc) = component.service.as_ref() {
        let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
        let owner = hotline
            .controller_owner_ref(&())
            .into_iter()
            .collect::<Vec<_>>();
        let selector = BTreeMap::from([
            (HOTLINE_LABEL, name.as_str()),
            (COMPONENT_LABEL, component.name.as_str()),
        ]);
        let ports: Vec<_> = svc.ports.iter().map(|p| json!({
            "name": p.name,
            "port": p.port,
            "targetPort": p.target_port.unwrap_or(p.port),
            "protocol": p.protocol.map(|x| serde_json::to_value(x).unwrap_or(json!("TCP"))).unwrap_or(json!("TCP")),
        })).collect();
        let body = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": dname, "labels": selector, "ownerReferences": owner},
            "spec": {"selector": selector, "ports": ports},
        });
        let key = format!("Service/{ns}/{dname}");
        if !ctx.already_applied(&key, &body) {
            api.patch(
                &dname,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .ctx(|| format!("applying Service {ns}/{dname}"))?;
            ctx.remember_applied(&key, &body);
        }
    }
    let ready_replicas = ready_replicas.unwrap_or(0);
    Ok(ComponentOutcome {
        status: ComponentStatus {
            name: component.name.clone(),
            desired_replicas: replicas,
            ready_replicas,
            ready_calls: capacity::component_ready_calls(component, ready_replicas),
        },
        degraded: None,
    })
}

/// A Deployment's replicas as far as this process knows: what it last set,
/// while the cache has not shown that write yet, else the cached value.
/// Returns the memo key and the cached resourceVersion too, for recording
/// the next write.
fn current_replicas(
    ctx: &Context,
    ns: &str,
    name: &str,
    cached: Option<&Cached<Deployment>>,
) -> (String, Option<String>, Option<i32>) {
    let key = format!("{ns}/{name}");
    let based_on = cached.and_then(|d| d.resource_version());
    let replicas = ctx
        .scaled
        .pending(&key, based_on.as_deref())
        .or_else(|| cached.and_then(Cached::replicas));
    (key, based_on, replicas)
}

fn ctx_deployment(ctx: &Context, ns: &str, name: &str) -> Option<Arc<Cached<Deployment>>> {
    ctx.deployments.get(&ObjectRef::new(name).within(ns))
}

async fn scale_referenced(
    component: &Component,
    r: &WorkloadRef,
    replicas: i32,
    ctx: &Context,
    ns: &str,
) -> Result<ComponentOutcome, Error> {
    let mut status = ComponentStatus {
        name: component.name.clone(),
        desired_replicas: replicas,
        ..Default::default()
    };
    let not_found = |what: String| ComponentOutcome {
        status: status.clone(),
        degraded: Some(("WorkloadNotFound", what)),
    };
    let scale_body = Patch::Merge(json!({"spec": {"replicas": replicas}}));
    let pp = PatchParams::default();
    let is_apps = r.api_version == "apps/v1";
    if is_apps && r.kind == "Deployment" {
        let Some(d) = ctx_deployment(ctx, ns, &r.name) else {
            return Ok(not_found(format!(
                "component {}: Deployment {ns}/{} not found",
                component.name, r.name
            )));
        };
        let (dkey, based_on, current) = current_replicas(ctx, ns, &r.name, Some(&d));
        if current != Some(replicas) {
            let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
            match api.patch_scale(&r.name, &pp, &scale_body).await {
                Ok(_) => {
                    ctx.scaled.remember(&dkey, based_on.as_deref(), replicas);
                    info!(deployment = %r.name, replicas, "scaled");
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    return Ok(not_found(format!(
                        "component {}: Deployment {ns}/{} not found",
                        component.name, r.name
                    )));
                }
                Err(e) => return Err(e).ctx(|| format!("scaling Deployment {ns}/{}", r.name)),
            }
        }
        status.ready_replicas = d.ready_replicas().unwrap_or(0);
    } else {
        let ar = match resolve(ctx, r).await {
            Ok(ar) => ar,
            Err(msg) => return Ok(not_found(format!("component {}: {msg}", component.name))),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
        let obj = match api
            .get_opt(&r.name)
            .await
            .ctx(|| format!("reading {} {ns}/{}", r.kind, r.name))?
        {
            Some(o) => o,
            None => {
                return Ok(not_found(format!(
                    "component {}: {} {ns}/{} not found",
                    component.name, r.kind, r.name
                )));
            }
        };
        let current = obj
            .data
            .pointer("/spec/replicas")
            .and_then(serde_json::Value::as_i64);
        if current != Some(i64::from(replicas)) {
            match api.patch_scale(&r.name, &pp, &scale_body).await {
                Ok(_) => info!(kind = %r.kind, name = %r.name, replicas, "scaled"),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    return Ok(not_found(format!(
                        "component {}: {} {ns}/{} has no /scale subresource or is gone",
                        component.name, r.kind, r.name
                    )));
                }
                Err(e) => return Err(e).ctx(|| format!("scaling {} {ns}/{}", r.kind, r.name)),
            }
        }
        status.ready_replicas = obj
            .data
            .pointer("/status/readyReplicas")
            .and_then(serde_json::Value::as_i64)
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(0);
    }
    status.ready_calls = capacity::component_ready_calls(component, status.ready_replicas);
    Ok(ComponentOutcome {
        status,
        degraded: None,
    })
}

/// Resolves a workloadRef's kind to its resource (plural) by discovery.
async fn resolve(ctx: &Context, r: &WorkloadRef) -> Result<ApiResource, String> {
    let (group, version) = match r.api_version.split_once('/') {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (String::new(), r.api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &r.kind);
    kube::discovery::pinned_kind(&ctx.client, &gvk)
        .await
        .map(|(ar, _caps)| ar)
        .map_err(|e| {
            format!(
                "{} {} is not served by the API server: {e}",
                r.api_version, r.kind
            )
        })
}

/// Hotlines (in the plan's namespace) a plan names, in spec or in its
/// published targets (so a hotline dropped from the spec is released).
pub fn hotlines_of_plan(plan: &CrisisPlan) -> Vec<ObjectRef<Hotline>> {
    let Some(ns) = plan.namespace() else {
        return Vec::new();
    };
    let mut names: Vec<&str> = plan.spec.hotlines.iter().map(|h| h.name.as_str()).collect();
    if let Some(s) = plan.status.as_ref() {
        names.extend(s.hotlines.iter().map(|h| h.name.as_str()));
    }
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|n| ObjectRef::new(n).within(&ns))
        .collect()
}

/// Hotlines a Deployment belongs to: its controller owner, and every Hotline
/// whose workloadRef names it.
pub fn hotlines_of_workload(
    kind: &str,
    obj_ns: Option<String>,
    name: &str,
    owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    hotlines: &Store<Hotline>,
) -> Vec<ObjectRef<Hotline>> {
    let Some(ns) = obj_ns else { return Vec::new() };
    let mut out: Vec<ObjectRef<Hotline>> = owners
        .iter()
        .filter(|o| o.kind == "Hotline" && o.api_version == "crisis.hotline.dev/v1alpha1")
        .map(|o| ObjectRef::new(&o.name).within(&ns))
        .collect();
    if !out.is_empty() {
        // A hotline's own Deployment: no other hotline may reference it (two
        // owners would fight over its replicas). This mapper runs for every
        // Deployment event, in the trigger path: skipping the scan of every
        // hotline matters at 1,000 hotlines.
        return out;
    }
    for h in hotlines.state() {
        if h.metadata.namespace.as_deref() != Some(ns.as_str()) {
            continue;
        }
        if h.spec.components.iter().any(|c| {
            c.workload_ref
                .as_ref()
                .is_some_and(|r| r.kind == kind && r.api_version == "apps/v1" && r.name == name)
        }) {
            out.push(ObjectRef::new(&h.name_any()).within(&ns));
        }
    }
    out
}

pub fn error_policy(_hotline: Arc<Hotline>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.on_error(CONTROLLER, err)
}

/// Builds and runs the Hotline controller until shutdown. The streams are
/// subscriptions to the shared watches set up by [`super::run`].
pub async fn run(
    ctx: Arc<Context>,
    hotlines: impl futures::Stream<Item = Arc<Hotline>> + Send + 'static,
    plans: impl futures::Stream<Item = Arc<CrisisPlan>> + Send + 'static,
    deployments: impl futures::Stream<Item = Arc<Cached<Deployment>>> + Send + 'static,
    statefulsets: impl futures::Stream<Item = Arc<Cached<StatefulSet>>> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    concurrency: u16,
) {
    let store_d = ctx.hotlines.clone();
    let store_s = ctx.hotlines.clone();
    Controller::for_shared_stream(hotlines, ctx.hotlines.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .watches_shared_stream(plans, |plan| hotlines_of_plan(&plan))
        .watches_shared_stream(deployments, move |d| {
            hotlines_of_workload(
                "Deployment",
                d.namespace(),
                &d.name_any(),
                d.owner_references(),
                &store_d,
            )
        })
        .watches_shared_stream(statefulsets, move |s| {
            hotlines_of_workload(
                "StatefulSet",
                s.namespace(),
                &s.name_any(),
                s.owner_references(),
                &store_s,
            )
        })
        .reconcile_all_on(super::became_leader(ctx.leading.clone()))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "hotline controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{reflector, watcher};
    use std::sync::Mutex;

    #[test]
    fn only_readiness_progress_counts_as_progress() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap_or_default();
        let at = |ready: i32, met: bool| {
            let mut s = HotlineStatus {
                mode: Some(HotlineMode::Surge),
                target_calls: Some(50),
                ready_calls: Some(ready),
                components: vec![ComponentStatus {
                    name: "gateway".into(),
                    desired_replicas: 5,
                    ready_replicas: ready / 10,
                    ready_calls: ready,
                }],
                ..Default::default()
            };
            set_condition(
                &mut s.conditions,
                "CapacityMet",
                met,
                if met {
                    "CapacityMet"
                } else {
                    "CapacityBelowTarget"
                },
                &format!("{ready} ready calls for a target of 50"),
                Some(1),
                now,
            );
            s
        };
        assert!(progress_only(&at(20, false), &at(30, false)));
        assert!(
            !progress_only(&at(40, false), &at(50, true)),
            "CapacityMet turned"
        );
        assert!(!progress_only(&at(20, false), &at(20, false)), "no change");
        let mut retargeted = at(30, false);
        retargeted.target_calls = Some(60);
        assert!(
            !progress_only(&at(20, false), &retargeted),
            "target changed"
        );
    }

    #[test]
    fn changed_fields_name_what_a_status_write_changes() {
        let old = HotlineStatus {
            ready_calls: Some(10),
            target_calls: Some(50),
            ..Default::default()
        };
        let new = HotlineStatus {
            ready_calls: Some(20),
            ..old.clone()
        };
        assert_eq!(
            changed_fields(&status_merge_patch(&old), &status_merge_patch(&new)),
            vec!["readyCalls".to_string()]
        );
        assert!(changed_fields(&status_merge_patch(&old), &status_merge_patch(&old)).is_empty());
    }

    /// Hotline `ns/care`, standby 10 calls, one `gateway` component of 10
    /// calls per replica, extended with `component` (its template or
    /// workloadRef).
    fn hotline_with(component: serde_json::Value) -> Hotline {
        let mut gateway = json!({"name": "gateway", "callsPerReplica": 10, "minReplicas": 1});
        if let (Some(g), Some(c)) = (gateway.as_object_mut(), component.as_object()) {
            g.extend(c.clone());
        }
        serde_json::from_value(json!({
            "apiVersion": "crisis.hotline.dev/v1alpha1",
            "kind": "Hotline",
            "metadata": {"name": "care", "namespace": "ns", "uid": "u1",
                         "resourceVersion": "10", "generation": 1},
            "spec": {
                "numbers": ["+33123456789"],
                "standby": {"calls": 10},
                "components": [gateway],
            },
        }))
        .expect("hotline fixture")
    }

    fn hotline() -> Hotline {
        hotline_with(json!({
            "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gw"}
        }))
    }

    fn plan(status: serde_json::Value) -> Arc<CrisisPlan> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "crisis.hotline.dev/v1alpha1",
                "kind": "CrisisPlan",
                "metadata": {"name": "retail", "namespace": "ns", "generation": 1},
                "spec": {
                    "hotlines": [{"name": "care"}],
                    "timeBudget": "5m",
                    "scenarios": [{"name": "outage", "surge": {"calls": 100}}],
                },
                "status": status,
            }))
            .expect("plan fixture"),
        )
    }

    /// A declaration the plan controller has not acknowledged yet (status
    /// still Standby, no targets) already yields the surge target, so the
    /// hotline does not wait for the plan's status write.
    #[test]
    fn a_pending_declaration_publishes_the_surge_target_at_once() {
        let (store, mut writer) = reflector::store::<Hotline>();
        writer.apply_watcher_event(&watcher::Event::Apply(hotline()));
        let now = jiff::Timestamp::from_second(1_800_000_000).expect("timestamp");

        let idle = plan(json!({"phase": "Standby"}));
        assert!(published_targets(&[idle], &store, "ns", "care", now).is_empty());

        let declared = plan(json!({"phase": "Standby", "declaration": {"scenario": "outage"}}));
        let active = published_targets(&[declared], &store, "ns", "care", now);
        assert_eq!(active.len(), 1, "{active:?}");
        assert_eq!(active[0].0.calls, 100);
        assert_eq!(active[0].0.scenario.as_deref(), Some("outage"));
        assert_eq!(active[0].1, Phase::Surging);

        // A plan in another namespace or not naming the hotline publishes nothing.
        let declared = plan(json!({"phase": "Standby", "declaration": {"scenario": "outage"}}));
        assert!(published_targets(&[declared], &store, "other", "care", now).is_empty());
    }

    fn managed_hotline() -> Hotline {
        hotline_with(json!({
            "template": {"spec": {"containers": [{"name": "gw", "image": "example.invalid/gw:1"}]}}
        }))
    }

    /// A mock API server that records `METHOD path` of every request and
    /// answers each with a plausible object of the right kind.
    fn mock_client() -> (kube::Client, Arc<Mutex<Vec<String>>>) {
        let (svc, mut handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let path = parts.uri.path().to_owned();
                log.lock()
                    .expect("log")
                    .push(format!("{} {path}", parts.method));
                let body = body.collect_bytes().await.unwrap_or_default();
                let answer = if path.ends_with("/scale") {
                    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                           "metadata": {"name": "care-gateway", "namespace": "ns"},
                           "spec": {"replicas": 10}})
                } else if path.contains("/hotlines/") {
                    serde_json::to_value(managed_hotline()).unwrap_or_default()
                } else if path.contains("/configmaps/") {
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "care-announcement", "namespace": "ns"}})
                } else {
                    // Events: echo what was sent.
                    serde_json::from_slice(&body).unwrap_or_default()
                };
                let resp = http::Response::builder()
                    .status(200)
                    .body(kube::client::Body::from(
                        serde_json::to_vec(&answer).unwrap_or_default(),
                    ))
                    .expect("response");
                send.send_response(resp);
            }
        });
        (kube::Client::new(svc, "ns"), seen)
    }

    /// A second reconcile that runs before the caches show the first one's
    /// writes (the Deployment's replicas, the Hotline's status) must not
    /// write them again nor repeat the ModeChanged Event: at 1,000 hotlines
    /// those repeats doubled the API writes of a surge.
    #[tokio::test]
    async fn a_reconcile_on_stale_caches_does_not_repeat_its_writes() {
        let (client, seen) = mock_client();
        let hotline = managed_hotline();
        let (hotlines, mut hw) = reflector::store::<Hotline>();
        hw.apply_watcher_event(&watcher::Event::Apply(hotline.clone()));
        let (plans, mut pw) = reflector::store::<CrisisPlan>();
        let declared = plan(json!({"phase": "Standby", "declaration": {"scenario": "outage"}}));
        pw.apply_watcher_event(&watcher::Event::Apply((*declared).clone()));
        // The managed Deployment as applied at standby: 1 replica.
        let component = hotline.spec.components.first().expect("component");
        let mut standby = build_deployment(&hotline, component, 1).expect("deployment");
        standby.metadata.namespace = Some("ns".into());
        standby.metadata.resource_version = Some("5".into());
        let (deployments, mut dw) = reflector::store::<Cached<Deployment>>();
        dw.apply_watcher_event(&watcher::Event::Apply(
            Cached::of(&standby).expect("cached deployment"),
        ));
        let (_tx, leading) = tokio::sync::watch::channel(true);
        let ctx = Arc::new(Context {
            events: super::super::EventSink::new(super::super::events::Publisher::new(
                client.clone(),
                super::super::reporter(),
            )),
            client,
            hotlines,
            plans,
            deployments,
            metrics: Arc::new(crate::metrics::Metrics::new()),
            clock_offset: jiff::SignedDuration::ZERO,
            leading,
            applied: Default::default(),
            scaled: Default::default(),
            hotline_status: Default::default(),
            status_writes: Default::default(),
            plan_status: Default::default(),
        });
        let take = || std::mem::take(&mut *seen.lock().expect("log"));

        reconcile(Arc::new(hotline.clone()), ctx.clone())
            .await
            .expect("first reconcile");
        ctx.events.flushed().await;
        let first = take();
        let count =
            |reqs: &[String], needle: &str| reqs.iter().filter(|r| r.contains(needle)).count();
        assert_eq!(
            count(&first, "deployments/care-gateway/scale"),
            1,
            "{first:?}"
        );
        assert_eq!(count(&first, "hotlines/care/status"), 1, "{first:?}");
        assert_eq!(count(&first, "POST /apis/events.k8s.io"), 1, "{first:?}");

        // Same cached objects (the watch has not delivered our writes yet).
        reconcile(Arc::new(hotline), ctx.clone())
            .await
            .expect("second reconcile");
        ctx.events.flushed().await;
        let second = take();
        assert!(second.is_empty(), "repeated writes: {second:?}");
        assert_eq!(ctx.scaled.len(), 1);
        assert_eq!(ctx.hotline_status.len(), 1);
    }

    /// The merge patch clears what the new status leaves out, and the field
    /// list it uses is the CRD's.
    #[test]
    fn status_merge_patch_sets_every_field_of_the_schema() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(Hotline::crd()).expect("crd");
        let props = crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/status/properties")
            .and_then(|p| p.as_object())
            .expect("status properties");
        let mut schema: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut ours = HOTLINE_STATUS_FIELDS.to_vec();
        schema.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ours, schema);

        let new = HotlineStatus {
            target_calls: Some(100),
            ..Default::default()
        };
        let patch = status_merge_patch(&new);
        assert_eq!(patch["status"]["targetCalls"], 100);
        assert!(patch["status"]["nextStandbyChange"].is_null());
        assert!(patch["status"]["components"].is_null());
        assert_eq!(
            patch["status"].as_object().map(|o| o.len()),
            Some(HOTLINE_STATUS_FIELDS.len())
        );
    }
}
