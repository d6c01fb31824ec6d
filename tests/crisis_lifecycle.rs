//! The CrisisPlan lifecycle against the real local control plane: declare
//! through status, surge within (or beyond) the budget, step down at exit,
//! bad input, field ownership of the declaration, operator restarts.

mod support;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use hotline_operator::api::{CrisisPlan, Hotline, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use support::fixtures::{self, condition, create, declare, end, managed, replicas};
use support::operator::Operator;
use support::{TestNamespace, install_crds, wait_for};

const CONVERGE: Duration = Duration::from_secs(40);

async fn phase(plans: &kube::Api<CrisisPlan>, name: &str) -> anyhow::Result<Option<Phase>> {
    Ok(plans.get(name).await?.status.and_then(|s| s.phase))
}

async fn wait_phase(
    plans: &kube::Api<CrisisPlan>,
    name: &str,
    want: Phase,
    within: Duration,
) -> anyhow::Result<CrisisPlan> {
    wait_for(
        &format!("plan {name} in phase {want:?}"),
        within,
        || async {
            let p = plans.get(name).await?;
            anyhow::Ok((p.status.as_ref().and_then(|s| s.phase) == Some(want)).then_some(p))
        },
    )
    .await
}

async fn events_with_reason(ns: &TestNamespace, reason: &str) -> anyhow::Result<Vec<Event>> {
    let list = ns.api::<Event>().list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect())
}

#[tokio::test]
async fn declared_crisis_surges_within_budget_consistent_with_the_ready_delay() -> anyhow::Result<()>
{
    install_crds().await?;
    let ns = TestNamespace::new("cp-surge").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let (hotlines, plans) = (ns.api::<Hotline>(), ns.api::<CrisisPlan>());
    let delay = Duration::from_secs(2);
    create(
        &hotlines,
        &fixtures::hotline(
            "care",
            10,
            vec![managed("gateway", 10, delay), managed("sessions", 5, delay)],
        )?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan("retail", &["care"], "1m", &[("outage", 100)], 25, "5m")?,
    )
    .await?;
    wait_phase(&plans, "retail", Phase::Standby, CONVERGE).await?;
    wait_for("standby capacity ready", CONVERGE, || async {
        anyhow::Ok(
            hotlines
                .get("care")
                .await?
                .status
                .and_then(|s| s.ready_calls)
                >= Some(10),
        )
    })
    .await?;
    declare(&plans, "retail", "outage").await?;
    let p = wait_phase(&plans, "retail", Phase::Active, CONVERGE).await?;
    let s = p.status.context("status")?;
    let cur = s.current.context("current crisis")?;
    assert_eq!(cur.budget_met, Some(true));
    let tts = cur
        .time_to_surge_milliseconds
        .context("timeToSurgeMilliseconds")?;
    assert!(
        tts >= 2000,
        "time to surge {tts} ms cannot beat the 2 s ready delay"
    );
    assert!(
        tts < 15000,
        "time to surge {tts} ms: the operator added too much"
    );
    assert_eq!(cur.time_to_surge_seconds, Some((tts + 999) / 1000));
    assert_eq!(cur.declared_by.as_deref(), Some("tests"));
    assert_eq!(cur.incident_ref.as_deref(), Some("INC-1"));
    assert_eq!(
        condition(&s.conditions, "SurgeReady")
            .map(|c| c.0)
            .as_deref(),
        Some("True")
    );
    assert_eq!(
        condition(&s.conditions, "WithinBudget")
            .map(|c| c.0)
            .as_deref(),
        Some("True")
    );
    let t = s
        .hotlines
        .iter()
        .find(|h| h.name == "care")
        .context("hotline target")?;
    assert_eq!(t.target_calls, Some(100));
    assert!(t.ready_calls >= Some(100));
    // The audit trail: declared (with who/why/incident), surge ready, escalation.
    let declared = events_with_reason(&ns, "CrisisDeclared").await?;
    let note = declared
        .first()
        .and_then(|e| e.note.clone())
        .context("CrisisDeclared event")?;
    assert!(note.contains("tests") && note.contains("INC-1"), "{note}");
    assert!(!events_with_reason(&ns, "SurgeReady").await?.is_empty());
    // Each escalation step is its own Event naming who to notify.
    let steps = wait_for(
        "both escalation steps announced",
        Duration::from_secs(10),
        || async {
            let notes: Vec<String> = events_with_reason(&ns, "EscalationStep")
                .await?
                .into_iter()
                .filter_map(|e| e.note)
                .collect();
            anyhow::Ok((notes.len() >= 2).then_some(notes))
        },
    )
    .await?;
    assert!(steps.iter().any(|n| n.contains("crisis-cell")), "{steps:?}");
    assert!(steps.iter().any(|n| n.contains("management")), "{steps:?}");
    let p = plans.get("retail").await?;
    let recorded = p
        .status
        .and_then(|s| s.current)
        .map(|c| c.escalations.len());
    assert_eq!(recorded, Some(2), "escalations recorded in status");
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn budget_shorter_than_the_ready_delay_is_exceeded_at_the_deadline() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("cp-budget").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let (hotlines, plans) = (ns.api::<Hotline>(), ns.api::<CrisisPlan>());
    create(
        &hotlines,
        &fixtures::hotline(
            "care",
            10,
            vec![managed("gateway", 10, Duration::from_secs(8))],
        )?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan("retail", &["care"], "3s", &[("outage", 100)], 25, "5m")?,
    )
    .await?;
    wait_phase(&plans, "retail", Phase::Standby, CONVERGE).await?;
    declare(&plans, "retail", "outage").await?;
    let p = wait_phase(&plans, "retail", Phase::Surging, CONVERGE).await?;
    let deadline = p
        .status
        .and_then(|s| s.current)
        .and_then(|c| c.deadline)
        .context("deadline")?
        .0;
    let p = wait_for("WithinBudget=False BudgetExceeded", CONVERGE, || async {
        let p = plans.get("retail").await?;
        let s = p.status.clone().unwrap_or_default();
        anyhow::Ok(
            (condition(&s.conditions, "WithinBudget")
                == Some(("False".into(), "BudgetExceeded".into())))
            .then_some(p),
        )
    })
    .await?;
    let s = p.status.context("status")?;
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == "WithinBudget")
        .context("condition")?;
    let late = c.last_transition_time.0.duration_since(deadline);
    // lastTransitionTime has second precision: the flip happened within 1 s of the deadline.
    assert!(
        late.as_secs_f64() < 1.0 && late.as_secs_f64() > -1.0,
        "flipped {late:?} after the deadline"
    );
    assert_eq!(s.current.as_ref().and_then(|c| c.budget_met), Some(false));
    let warn = wait_for(
        "BudgetExceeded Warning Event",
        Duration::from_secs(10),
        || async {
            anyhow::Ok(
                events_with_reason(&ns, "BudgetExceeded")
                    .await?
                    .into_iter()
                    .next(),
            )
        },
    )
    .await?;
    assert_eq!(warn.type_.as_deref(), Some("Warning"));
    let note = warn.note.unwrap_or_default();
    assert!(
        note.contains("care"),
        "the event names the hotline that fell short: {note}"
    );
    // It still becomes ready later, late.
    let p = wait_phase(&plans, "retail", Phase::Active, CONVERGE).await?;
    assert_eq!(
        p.status.and_then(|s| s.current).and_then(|c| c.budget_met),
        Some(false)
    );
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn exit_steps_down_in_the_configured_steps_to_standby() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("cp-exit").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let (hotlines, plans, d) = (
        ns.api::<Hotline>(),
        ns.api::<CrisisPlan>(),
        ns.api::<Deployment>(),
    );
    create(
        &hotlines,
        &fixtures::hotline("care", 10, vec![managed("gateway", 10, Duration::ZERO)])?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan("retail", &["care"], "1m", &[("outage", 100)], 25, "2s")?,
    )
    .await?;
    declare(&plans, "retail", "outage").await?;
    wait_phase(&plans, "retail", Phase::Active, CONVERGE).await?;
    assert_eq!(replicas(&d, "care-gateway").await?, Some(10));
    end(&plans, "retail").await?;
    let p = wait_phase(&plans, "retail", Phase::Exiting, Duration::from_secs(10)).await?;
    let exit_at = p
        .status
        .and_then(|s| s.current)
        .and_then(|c| c.exit_started_at)
        .context("exitStartedAt")?
        .0;
    // 100 -> 75 -> 50 -> 25 -> standby 10 calls: 10 -> 8 -> 5 -> 3 -> 1 replicas, one step every 2 s.
    let mut seen = Vec::new();
    for (k, want) in [(1u32, 8), (2, 5), (3, 3), (4, 1)] {
        wait_for(
            &format!("step {k}: {want} replicas"),
            Duration::from_secs(6),
            || async { anyhow::Ok(replicas(&d, "care-gateway").await? == Some(want)) },
        )
        .await?;
        let at = jiff::Timestamp::now().duration_since(exit_at);
        seen.push((k, want, at));
        let due = f64::from(k * 2);
        assert!(
            at.as_secs_f64() >= due - 0.5,
            "step {k} applied at {at:?}, before its due time {due}s"
        );
    }
    eprintln!("steps: {seen:?}");
    let p = wait_phase(&plans, "retail", Phase::Standby, Duration::from_secs(5)).await?;
    let s = p.status.context("status")?;
    assert!(s.current.is_none());
    assert_eq!(s.history.len(), 1);
    assert!(s.history[0].ended_at.is_some());
    assert!(!events_with_reason(&ns, "ExitStarted").await?.is_empty());
    wait_for("BackToStandby event", Duration::from_secs(5), || async {
        anyhow::Ok(!events_with_reason(&ns, "BackToStandby").await?.is_empty())
    })
    .await?;
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn redeclare_during_exit_and_retarget_while_active() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("cp-retarget").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let (hotlines, plans, d) = (
        ns.api::<Hotline>(),
        ns.api::<CrisisPlan>(),
        ns.api::<Deployment>(),
    );
    create(
        &hotlines,
        &fixtures::hotline("care", 10, vec![managed("gateway", 10, Duration::ZERO)])?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan(
            "retail",
            &["care"],
            "1m",
            &[("outage", 100), ("disaster", 300)],
            25,
            "1h",
        )?,
    )
    .await?;
    declare(&plans, "retail", "outage").await?;
    let first = wait_phase(&plans, "retail", Phase::Active, CONVERGE).await?;
    let declared_at = first
        .status
        .and_then(|s| s.current)
        .context("current")?
        .declared_at;
    // Re-target to a bigger scenario while active.
    declare(&plans, "retail", "disaster").await?;
    wait_for("gateway at 30 for the disaster surge", CONVERGE, || async {
        anyhow::Ok(replicas(&d, "care-gateway").await? == Some(30))
    })
    .await?;
    let p = wait_phase(&plans, "retail", Phase::Active, CONVERGE).await?;
    let cur = p.status.and_then(|s| s.current).context("current")?;
    assert_eq!(cur.scenario, "disaster");
    assert_eq!(
        cur.declared_at, declared_at,
        "a re-target keeps the declaration time"
    );
    // Status times have second precision: the re-target may share the second.
    assert!(cur.surge_started_at.map(|t| t.0) >= Some(declared_at.0));
    assert!(!events_with_reason(&ns, "ScenarioChanged").await?.is_empty());
    // Exit, then a new declaration during the exit surges again at once.
    end(&plans, "retail").await?;
    wait_phase(&plans, "retail", Phase::Exiting, Duration::from_secs(10)).await?;
    declare(&plans, "retail", "outage").await?;
    let p = wait_phase(&plans, "retail", Phase::Active, CONVERGE).await?;
    let s = p.status.context("status")?;
    assert_eq!(s.history.len(), 1, "the interrupted crisis is in history");
    assert_eq!(s.history[0].scenario, "disaster");
    assert_eq!(s.current.map(|c| c.scenario).as_deref(), Some("outage"));
    // The new, smaller crisis is Active at once (the disaster capacity is
    // still there); the hotline then follows the new target.
    wait_for(
        "gateway at 10 for the new crisis",
        Duration::from_secs(5),
        || async { anyhow::Ok(replicas(&d, "care-gateway").await? == Some(10)) },
    )
    .await?;
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn unknown_scenario_changes_nothing_and_missing_hotline_is_reported() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("cp-bad-input").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let (hotlines, plans, d) = (
        ns.api::<Hotline>(),
        ns.api::<CrisisPlan>(),
        ns.api::<Deployment>(),
    );
    create(
        &hotlines,
        &fixtures::hotline("care", 10, vec![managed("gateway", 10, Duration::ZERO)])?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan(
            "retail",
            &["care", "ghost"],
            "1m",
            &[("outage", 100)],
            25,
            "5m",
        )?,
    )
    .await?;
    let p = wait_for("Valid=False HotlineNotFound", CONVERGE, || async {
        let p = plans.get("retail").await?;
        let s = p.status.clone().unwrap_or_default();
        anyhow::Ok(
            (condition(&s.conditions, "Valid") == Some(("False".into(), "HotlineNotFound".into())))
                .then_some(p),
        )
    })
    .await?;
    let msg = p
        .status
        .unwrap_or_default()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Valid")
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(msg.contains("ghost"), "{msg}");
    wait_for("replicas at standby", CONVERGE, || async {
        anyhow::Ok(replicas(&d, "care-gateway").await? == Some(1))
    })
    .await?;
    // metadata.generation moves on every spec change (status updates by the
    // Deployment controller do not count); managedFields show who wrote last.
    let spec_of = |dep: Deployment| (dep.metadata.generation, dep.spec.and_then(|s| s.replicas));
    let before = spec_of(d.get("care-gateway").await?);
    declare(&plans, "retail", "earthquake").await?;
    let p = wait_for("Valid=False UnknownScenario", CONVERGE, || async {
        let p = plans.get("retail").await?;
        let s = p.status.clone().unwrap_or_default();
        anyhow::Ok(
            (condition(&s.conditions, "Valid") == Some(("False".into(), "UnknownScenario".into())))
                .then_some(p),
        )
    })
    .await?;
    assert_eq!(
        p.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Standby)
    );
    let warn = wait_for(
        "UnknownScenario Warning",
        Duration::from_secs(10),
        || async {
            anyhow::Ok(
                events_with_reason(&ns, "UnknownScenario")
                    .await?
                    .into_iter()
                    .next(),
            )
        },
    )
    .await?;
    assert_eq!(warn.type_.as_deref(), Some("Warning"));
    // Let any (wrong) scaling happen, then check nothing was written.
    let h = hotlines.get("care").await?;
    assert_eq!(h.status.and_then(|s| s.target_calls), Some(10));
    assert_eq!(
        spec_of(d.get("care-gateway").await?),
        before,
        "no Deployment change at all"
    );
    // Fixing the declaration recovers without a restart; the missing hotline does not block the others.
    declare(&plans, "retail", "outage").await?;
    wait_for("gateway surges to 10", CONVERGE, || async {
        anyhow::Ok(replicas(&d, "care-gateway").await? == Some(10))
    })
    .await?;
    let p = wait_phase(&plans, "retail", Phase::Active, CONVERGE).await?;
    let s = p.status.context("status")?;
    assert_eq!(
        condition(&s.conditions, "Valid").map(|c| c.1).as_deref(),
        Some("HotlineNotFound")
    );
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn declaration_survives_every_operator_write() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("cp-ownership").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let (hotlines, plans) = (ns.api::<Hotline>(), ns.api::<CrisisPlan>());
    create(
        &hotlines,
        &fixtures::hotline(
            "care",
            10,
            vec![managed("gateway", 10, Duration::from_secs(1))],
        )?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan("retail", &["care"], "1m", &[("outage", 100)], 25, "5m")?,
    )
    .await?;
    declare(&plans, "retail", "outage").await?;
    // Surging -> Active: several operator writes happen after the declaration.
    let p = wait_phase(&plans, "retail", Phase::Active, CONVERGE).await?;
    let d = p
        .status
        .as_ref()
        .and_then(|s| s.declaration.clone())
        .context("declaration still there")?;
    assert_eq!(
        (d.scenario.as_str(), d.incident_ref.as_deref()),
        ("outage", Some("INC-1"))
    );
    let managed_fields = p.metadata.managed_fields.clone().unwrap_or_default();
    let owner_of = |manager: &str| {
        managed_fields
            .iter()
            .filter(|m| {
                m.manager.as_deref() == Some(manager) && m.subresource.as_deref() == Some("status")
            })
            .filter_map(|m| m.fields_v1.as_ref().map(|f| f.0.to_string()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let operator_fields = owner_of("hotline-operator");
    let declarer_fields = owner_of("declarer");
    assert!(
        operator_fields.contains("f:phase"),
        "operator owns phase: {operator_fields}"
    );
    assert!(
        !operator_fields.contains("f:declaration"),
        "operator must not own declaration: {operator_fields}"
    );
    assert!(
        declarer_fields.contains("f:declaration"),
        "declarer owns declaration: {declarer_fields}"
    );
    // A status patch by someone else does not disturb the operator either.
    plans
        .patch_status(
            "retail",
            &PatchParams {
                field_manager: Some("declarer".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"status": {"declaration": {"reason": "updated reason"}}})),
        )
        .await?;
    wait_for(
        "operator write after the declarer's update keeps it",
        CONVERGE,
        || async {
            let p = plans.get("retail").await?;
            anyhow::Ok(
                p.status.and_then(|s| s.declaration).and_then(|d| d.reason)
                    == Some("updated reason".into()),
            )
        },
    )
    .await?;
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn operator_restart_mid_surge_and_mid_step_down_resumes_from_status() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("cp-restart").await?;
    let (hotlines, plans, d) = (
        ns.api::<Hotline>(),
        ns.api::<CrisisPlan>(),
        ns.api::<Deployment>(),
    );
    create(
        &hotlines,
        &fixtures::hotline(
            "care",
            10,
            vec![managed("gateway", 10, Duration::from_secs(4))],
        )?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan("retail", &["care"], "1m", &[("outage", 100)], 50, "3s")?,
    )
    .await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    wait_phase(&plans, "retail", Phase::Standby, CONVERGE).await?;
    declare(&plans, "retail", "outage").await?;
    let p = wait_phase(&plans, "retail", Phase::Surging, CONVERGE).await?;
    let declared_at = p
        .status
        .and_then(|s| s.current)
        .context("current")?
        .declared_at;
    op.stop().await?; // mid-surge: pods still 4 s from Ready
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let p = wait_phase(&plans, "retail", Phase::Active, CONVERGE).await?;
    let cur = p.status.and_then(|s| s.current).context("current")?;
    assert_eq!(cur.declared_at, declared_at, "resumed the same crisis");
    assert_eq!(cur.budget_met, Some(true));
    end(&plans, "retail").await?;
    wait_for(
        "first step (50%): 5 replicas",
        Duration::from_secs(10),
        || async { anyhow::Ok(replicas(&d, "care-gateway").await? == Some(5)) },
    )
    .await?;
    op.stop().await?; // mid-step-down
    let t0 = Instant::now();
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let p = wait_phase(&plans, "retail", Phase::Standby, Duration::from_secs(15)).await?;
    eprintln!("finished step-down {:?} after restart", t0.elapsed());
    wait_for(
        "gateway back at standby (1 replica)",
        Duration::from_secs(2),
        || async { anyhow::Ok(replicas(&d, "care-gateway").await? == Some(1)) },
    )
    .await?;
    let s = p.status.context("status")?;
    assert_eq!(
        s.history.len(),
        1,
        "no duplicate history entry: {:?}",
        s.history
    );
    assert_eq!(s.history[0].declared_at, declared_at);
    assert_eq!(phase(&plans, "retail").await?, Some(Phase::Standby));
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

/// Deleting a plan and a hotline drops their metric series: no finalizer
/// calls the controllers on deletion, so without this a deleted plan would
/// keep its phase, budget and deadline series (and its alerts) forever.
#[tokio::test]
async fn deleted_plan_and_hotline_leave_no_metric_series() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("cp-forget").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let (hotlines, plans) = (ns.api::<Hotline>(), ns.api::<CrisisPlan>());
    create(
        &hotlines,
        &fixtures::hotline("care", 10, vec![managed("gateway", 10, Duration::ZERO)])?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan("retail", &["care"], "1m", &[("outage", 100)], 25, "5m")?,
    )
    .await?;
    let in_ns = format!("namespace=\"{}\"", ns.name);
    let (plan_label, hotline_label) = ("plan=\"retail\"", "hotline=\"care\"");
    let series = |needle: &str| {
        op.metrics
            .render()
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(&in_ns) && l.contains(needle))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_for("plan and hotline series exported", CONVERGE, || async {
        anyhow::Ok(
            series(plan_label)
                .iter()
                .any(|l| l.starts_with("crisisplan_phase"))
                && series(hotline_label)
                    .iter()
                    .any(|l| l.starts_with("hotline_component_desired_replicas")),
        )
    })
    .await
    .with_context(|| op.metrics.render())?;

    let gone = kube::api::DeleteParams::default();
    plans.delete("retail", &gone).await?;
    wait_for("no series of the deleted plan", CONVERGE, || async {
        anyhow::Ok(series(plan_label).is_empty())
    })
    .await
    .with_context(|| format!("left: {:?}", series(plan_label)))?;
    anyhow::ensure!(
        !series(hotline_label).is_empty(),
        "the hotline's series went with the plan"
    );

    hotlines.delete("care", &gone).await?;
    wait_for("no series of the deleted hotline", CONVERGE, || async {
        anyhow::Ok(series(hotline_label).is_empty())
    })
    .await
    .with_context(|| format!("left: {:?}", series(hotline_label)))?;
    op.stop().await?;
    ns.cleanup().await
}
