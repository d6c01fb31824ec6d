//! CrisisPlan controller: validates the plan, runs the lifecycle state
//! machine (`core::lifecycle`) on (spec, status, observed hotlines, now),
//! writes the operator-owned part of status with server-side apply (never
//! `status.declaration`, which belongs to declarers), emits the Events the
//! machine asks for, and requeues at the next time-driven step.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, instrument};

use super::{Context, Error, KubeContext, MANAGER};
use crate::api::{CrisisPlan, CrisisPlanStatus, Hotline, Phase};
use crate::core::lifecycle::{self, HotlineObservation, Observed};
use crate::core::{capacity, duration};

const CONTROLLER: &str = "crisisplan";

/// What the plan controller sees of each hotline it names (one cache lookup
/// per hotline).
pub fn observe(plan: &CrisisPlan, hotlines: &Store<Hotline>, now: Timestamp) -> Observed {
    let ns = plan.namespace().unwrap_or_default();
    let mut out = BTreeMap::new();
    for h in &plan.spec.hotlines {
        let found = hotlines.get(&ObjectRef::new(&h.name).within(&ns));
        let obs = match found {
            None => HotlineObservation {
                exists: false,
                base_standby_calls: 0,
                standby_now: 0,
                ready_calls: 0,
                max_calls: None,
                limiting_components: Vec::new(),
            },
            Some(x) => {
                let status = x.status.clone().unwrap_or_default();
                let standby_now = status.standby_calls.unwrap_or_else(|| {
                    crate::core::schedule::standby_at(&x.spec.standby, now)
                        .map(|s| s.calls)
                        .unwrap_or(x.spec.standby.calls)
                });
                // The target this plan currently asks, for naming the
                // components that cap it.
                let asked = plan
                    .status
                    .as_ref()
                    .and_then(|s| s.hotlines.iter().find(|t| t.name == h.name))
                    .and_then(|t| t.surge_calls.or(t.target_calls))
                    .unwrap_or(0);
                HotlineObservation {
                    exists: true,
                    base_standby_calls: x.spec.standby.calls,
                    standby_now,
                    ready_calls: status.ready_calls.unwrap_or(0),
                    max_calls: capacity::max_calls(&x.spec),
                    limiting_components: capacity::limiting_components(&x.spec, asked),
                }
            }
        };
        out.insert(h.name.clone(), obs);
    }
    Observed { hotlines: out }
}

#[instrument(skip_all, fields(namespace = %plan.namespace().unwrap_or_default(), plan = %plan.name_any()))]
pub async fn reconcile(plan: Arc<CrisisPlan>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer(CONTROLLER);
    let res = reconcile_inner(&plan, &ctx).await;
    ctx.record_reconcile(CONTROLLER, &res);
    res
}

async fn reconcile_inner(plan: &CrisisPlan, ctx: &Context) -> Result<Action, Error> {
    let name = plan.name_any();
    let ns = plan.namespace().ok_or_else(|| Error::MissingNamespace {
        kind: "CrisisPlan",
        name: name.clone(),
    })?;
    if !ctx.is_leader() {
        return Ok(Action::await_change());
    }
    if plan.meta().deletion_timestamp.is_some() {
        ctx.metrics.forget_plan(&ns, &name);
        return Ok(Action::await_change());
    }
    let now = ctx.now();
    // Our last status write while the cache has not shown it yet (with the
    // declaration as cached: that field is the declarers').
    let key = format!("{ns}/{name}");
    let based_on = plan.resource_version();
    let cached = plan.status.clone().unwrap_or_default();
    let old = match ctx.plan_status.pending(&key, based_on.as_deref()) {
        Some(mut written) => {
            written.declaration = cached.declaration;
            written
        }
        None => cached,
    };
    let observed = observe(plan, &ctx.hotlines, now);
    let outcome = lifecycle::reconcile(&plan.spec, plan.metadata.generation, &old, &observed, now);

    // Write what changed, never the declaration.
    let mut current_without_declaration = old.clone();
    current_without_declaration.declaration = None;
    if outcome.status != current_without_declaration {
        write_status(ctx, &ns, &name, &outcome.status)
            .await
            .inspect_err(|_| ctx.plan_status.forget(&key))?;
        let mut written = outcome.status.clone();
        written.declaration = None;
        ctx.plan_status.remember(&key, based_on.as_deref(), written);
    }

    let reference = plan.object_ref(&());
    for ev in &outcome.events {
        ctx.event(
            &reference,
            ev.is_warning(),
            ev.reason(),
            "Lifecycle",
            ev.message(),
        )
        .await;
        info!(reason = ev.reason(), note = %ev.message(), "event");
    }
    record_metrics(
        ctx,
        &ns,
        &name,
        plan,
        &old,
        &outcome.status,
        &outcome.events,
    );

    let action = match outcome.requeue_at {
        Some(at) => {
            let wait = at.duration_since(ctx.now());
            let wait = if wait.is_negative() {
                Duration::from_millis(1)
            } else {
                wait.unsigned_abs()
            };
            // A few ms late rather than early: the step is due at `at`.
            Action::requeue(wait + Duration::from_millis(5))
        }
        None => Action::await_change(),
    };
    debug!(phase = ?outcome.status.phase, "reconciled");
    Ok(action)
}

async fn write_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: &CrisisPlanStatus,
) -> Result<(), Error> {
    let mut value = serde_json::to_value(status).map_err(|source| Error::Serialize {
        what: "CrisisPlan status".into(),
        source,
    })?;
    // Belt and braces: the operator never applies the declarers' field.
    if let Some(o) = value.as_object_mut() {
        o.remove("declaration");
    }
    let body = json!({
        "apiVersion": "crisis.hotline.dev/v1alpha1",
        "kind": "CrisisPlan",
        "status": value,
    });
    let api: Api<CrisisPlan> = Api::namespaced(ctx.client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .ctx(|| format!("writing status of CrisisPlan {ns}/{name}"))?;
    Ok(())
}

fn record_metrics(
    ctx: &Context,
    ns: &str,
    name: &str,
    plan: &CrisisPlan,
    old: &CrisisPlanStatus,
    new: &CrisisPlanStatus,
    events: &[lifecycle::PlanEvent],
) {
    let m = &ctx.metrics;
    let phase = new.phase.unwrap_or(Phase::Standby);
    m.set_phase(ns, name, phase);
    // CrisisSurgeBudgetExceeded lasts the whole crisis, not only until ready.
    m.set_budget_missed(
        ns,
        name,
        matches!(phase, Phase::Surging | Phase::Active)
            && new
                .current
                .as_ref()
                .is_some_and(|c| c.budget_met == Some(false)),
    );
    if let Some(t) = plan.metadata.creation_timestamp.as_ref() {
        m.set_plan_created(ns, name, t.0);
    }
    if let Ok(b) = duration::parse_duration(&plan.spec.time_budget) {
        m.plan_time_budget
            .with_label_values(&[ns, name])
            .set(b.as_secs_f64());
    }
    match new.current.as_ref().and_then(|c| c.deadline.as_ref()) {
        Some(d) if phase == Phase::Surging => m
            .plan_surge_deadline
            .with_label_values(&[ns, name])
            .set(d.0.as_millisecond() as f64 / 1000.0),
        _ => {
            let _ = m.plan_surge_deadline.remove_label_values(&[ns, name]);
        }
    }
    // crisis_active: one series per (scenario, drill) of the current crisis.
    let was = old.current.as_ref().map(|c| (c.scenario.clone(), c.drill));
    let is = new
        .current
        .as_ref()
        .filter(|_| phase != Phase::Standby)
        .map(|c| (c.scenario.clone(), c.drill));
    if was != is
        && let Some((s, d)) = &was
    {
        let _ = m.plan_crisis_active.remove_label_values(&[
            ns,
            name,
            s,
            if *d { "true" } else { "false" },
        ]);
    }
    if let Some((s, d)) = &is {
        m.plan_crisis_active
            .with_label_values(&[ns, name, s, if *d { "true" } else { "false" }])
            .set(i64::from(matches!(phase, Phase::Surging | Phase::Active)));
    }
    let drill = new.current.as_ref().is_some_and(|c| c.drill);
    let drill = if drill { "true" } else { "false" };
    for ev in events {
        match ev {
            lifecycle::PlanEvent::SurgeReady {
                time_to_surge, met, ..
            } => {
                m.plan_time_to_surge
                    .with_label_values(&[ns, name, drill])
                    .observe(time_to_surge.as_secs_f64());
                if *met {
                    m.plan_last_budget_met
                        .with_label_values(&[ns, name])
                        .set(Timestamp::now().as_millisecond() as f64 / 1000.0);
                }
            }
            lifecycle::PlanEvent::BudgetExceeded { .. } => {
                m.plan_budget_exceeded
                    .with_label_values(&[ns, name, drill])
                    .inc();
            }
            _ => {}
        }
    }
    // Seed last_budget_met from history after a restart.
    if m.plan_last_budget_met
        .get_metric_with_label_values(&[ns, name])
        .map(|g| g.get() == 0.0)
        .unwrap_or(true)
    {
        let last = new
            .history
            .iter()
            .chain(new.current.iter())
            .filter(|c| c.budget_met == Some(true))
            .filter_map(|c| c.surge_ready_at.as_ref())
            .map(|t| t.0)
            .max();
        if let Some(t) = last {
            m.plan_last_budget_met
                .with_label_values(&[ns, name])
                .set(t.as_millisecond() as f64 / 1000.0);
        }
    }
}

/// Plans (same namespace) that name this hotline: a hotline's readiness or
/// existence change reconciles them.
pub fn plans_of_hotline(
    hotline: &Hotline,
    plans: &[Arc<CrisisPlan>],
) -> Vec<ObjectRef<CrisisPlan>> {
    let ns = hotline.metadata.namespace.as_deref();
    let name = hotline.metadata.name.as_deref().unwrap_or_default();
    plans
        .iter()
        .filter(|p| {
            p.metadata.namespace.as_deref() == ns && p.spec.hotlines.iter().any(|h| h.name == name)
        })
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

pub fn error_policy(_plan: Arc<CrisisPlan>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.on_error(CONTROLLER, err)
}

/// Runs the CrisisPlan controller until shutdown.
pub async fn run(
    ctx: Arc<Context>,
    plans: impl futures::Stream<Item = Arc<CrisisPlan>> + Send + 'static,
    hotlines: impl futures::Stream<Item = Arc<Hotline>> + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    concurrency: u16,
) {
    let store = ctx.plans.clone();
    Controller::for_shared_stream(plans, ctx.plans.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .watches_shared_stream(hotlines, move |h| plans_of_hotline(&h, &store.state()))
        .reconcile_all_on(super::became_leader(ctx.leading.clone()))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "crisisplan controller event");
            }
        })
        .await;
}
