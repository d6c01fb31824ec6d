//! The Hotline controller against the real local control plane, pods made
//! Ready by kwok. Each test runs its own operator scoped to its namespace.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hotline_operator::api::{CrisisPlan, Hotline, HotlineMode};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::fixtures::{self, condition, create, declare, end, managed, replicas};
use support::operator::Operator;
use support::{TestNamespace, install_crds, wait_for};

const DELAY: Duration = Duration::from_millis(500);
const CONVERGE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn standby_converges_with_capacity_met() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("hl-standby").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let hotlines = ns.api::<Hotline>();
    let deployments = ns.api::<Deployment>();
    let mut gw = managed("gateway", 10, DELAY);
    gw["service"] = json!({"ports": [{"name": "sip", "port": 5060, "protocol": "UDP"}]});
    create(
        &hotlines,
        &fixtures::hotline("care", 25, vec![gw, managed("sessions", 5, DELAY)])?,
    )
    .await?;

    // ceil(25/10) = 3 gateways, ceil(25/5) = 5 sessions.
    let hl = wait_for("Hotline care CapacityMet=True", CONVERGE, || async {
        let h = hotlines.get("care").await?;
        let s = h.status.clone().unwrap_or_default();
        anyhow::Ok(
            (condition(&s.conditions, "CapacityMet").map(|c| c.0) == Some("True".into()))
                .then_some(h),
        )
    })
    .await?;
    let s = hl.status.context("status")?;
    assert_eq!(s.mode, Some(HotlineMode::Standby));
    assert_eq!(s.target_calls, Some(25));
    assert!(s.ready_calls >= Some(25), "ready {:?}", s.ready_calls);
    assert_eq!(s.observed_generation, hl.metadata.generation);
    assert_eq!(
        condition(&s.conditions, "Ready").map(|c| c.0).as_deref(),
        Some("True")
    );
    assert_eq!(
        condition(&s.conditions, "Degraded").map(|c| c.0).as_deref(),
        Some("False")
    );
    let comp: BTreeMap<_, _> = s
        .components
        .iter()
        .map(|c| (c.name.clone(), c.desired_replicas))
        .collect();
    assert_eq!(
        comp,
        BTreeMap::from([("gateway".to_owned(), 3), ("sessions".to_owned(), 5)])
    );

    let d = deployments.get("care-gateway").await?;
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let pod = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .context("pod spec")?;
    assert_eq!(
        pod.termination_grace_period_seconds,
        Some(45),
        "drainSeconds"
    );
    let mounts = pod.containers[0].volume_mounts.clone().unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_path == "/etc/hotline/announcement"),
        "{mounts:?}"
    );
    let owner = d.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        owner
            .iter()
            .any(|o| o.kind == "Hotline" && o.name == "care" && o.controller == Some(true))
    );
    let labels = d.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("crisis.hotline.dev/hotline").map(String::as_str),
        Some("care")
    );
    let svc = ns.api::<Service>().get("care-gateway").await?;
    assert_eq!(
        svc.spec.and_then(|s| s.ports).map(|p| p[0].port),
        Some(5060)
    );
    let cm = ns.api::<ConfigMap>().get("care-announcement").await?;
    assert_eq!(
        cm.data
            .unwrap_or_default()
            .get("announcement")
            .map(String::as_str),
        Some("standby text")
    );
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn schedule_window_boundary_changes_the_target() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("hl-window").await?;
    // Run the operator 3 s before a minute boundary B (UTC): a window that
    // starts at B raises the standby from 10 to 40 calls at B.
    let real = jiff::Timestamp::now();
    let boundary = real
        .checked_add(jiff::SignedDuration::from_secs(600))?
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Minute)
                .mode(jiff::RoundMode::Floor),
        )?;
    let offset = boundary.duration_since(real) - jiff::SignedDuration::from_secs(3);
    let op = Operator::start_with_offset(ns.client.clone(), &ns.name, offset).await?;
    let start = boundary.to_zoned(jiff::tz::TimeZone::UTC);
    let end = start.checked_add(jiff::SignedDuration::from_secs(3600))?;
    let day = format!("{:?}", start.weekday())
        .chars()
        .take(3)
        .collect::<String>();
    let mut hl = fixtures::hotline("care", 10, vec![managed("gateway", 10, Duration::ZERO)])?;
    hl.spec.standby.schedule = Some(serde_json::from_value(json!({
        "timeZone": "UTC",
        "windows": [{"days": [day], "start": start.strftime("%H:%M").to_string(),
                     "end": end.strftime("%H:%M").to_string(), "calls": 40}],
    }))?);
    let hotlines = ns.api::<Hotline>();
    create(&hotlines, &hl).await?;
    let first = wait_for("standby target 10 before the window", CONVERGE, || async {
        let s = hotlines.get("care").await?.status.unwrap_or_default();
        anyhow::Ok((s.target_calls == Some(10)).then_some(s))
    })
    .await?;
    assert_eq!(
        first.next_standby_change.map(|t| t.0),
        Some(boundary),
        "next change is the window start"
    );
    let t0 = Instant::now();
    wait_for(
        "target 40 once the window opened",
        Duration::from_secs(15),
        || async {
            let s = hotlines.get("care").await?.status.unwrap_or_default();
            anyhow::Ok(s.target_calls == Some(40))
        },
    )
    .await?;
    let d = ns.api::<Deployment>();
    wait_for("gateway scaled to 4", Duration::from_secs(5), || async {
        anyhow::Ok(replicas(&d, "care-gateway").await? == Some(4))
    })
    .await?;
    // It changed because of the timer, not before it: the operator's clock
    // started 3 s before the boundary.
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "changed after {:?}",
        t0.elapsed()
    );
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn two_plans_deliver_the_larger_and_the_other_holds_when_one_ends() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("hl-two-plans").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let hotlines = ns.api::<Hotline>();
    let plans = ns.api::<CrisisPlan>();
    let d = ns.api::<Deployment>();
    create(
        &hotlines,
        &fixtures::hotline("care", 10, vec![managed("gateway", 10, DELAY)])?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan("big", &["care"], "5m", &[("outage", 100)], 100, "1s")?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan("small", &["care"], "5m", &[("strike", 60)], 100, "1s")?,
    )
    .await?;
    declare(&plans, "small", "strike").await?;
    wait_for("gateway at 6 for the small plan", CONVERGE, || async {
        anyhow::Ok(replicas(&d, "care-gateway").await? == Some(6))
    })
    .await?;
    declare(&plans, "big", "outage").await?;
    wait_for(
        "gateway at 10: the larger target wins",
        CONVERGE,
        || async { anyhow::Ok(replicas(&d, "care-gateway").await? == Some(10)) },
    )
    .await?;
    wait_for(
        "status lists both plans, target 100",
        Duration::from_secs(5),
        || async {
            let s = hotlines.get("care").await?.status.unwrap_or_default();
            anyhow::Ok(s.active_plans.len() == 2 && s.target_calls == Some(100))
        },
    )
    .await?;
    end(&plans, "big").await?;
    wait_for("big back to Standby", CONVERGE, || async {
        let p = plans.get("big").await?;
        anyhow::Ok(p.status.and_then(|s| s.phase) == Some(hotline_operator::api::Phase::Standby))
    })
    .await?;
    wait_for(
        "gateway back to 6: the small plan's target holds",
        CONVERGE,
        || async { anyhow::Ok(replicas(&d, "care-gateway").await? == Some(6)) },
    )
    .await?;
    // The status is written after the Deployment: wait for it too.
    let s = wait_for(
        "status: target 60, still in Surge",
        Duration::from_secs(5),
        || async {
            let s = hotlines.get("care").await?.status.unwrap_or_default();
            anyhow::Ok((s.target_calls == Some(60)).then_some(s))
        },
    )
    .await?;
    assert_eq!(s.mode, Some(HotlineMode::Surge));
    assert_eq!(s.active_plans.len(), 1, "{:?}", s.active_plans);
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn drift_during_a_surge_is_reverted_within_two_seconds() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("hl-drift").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let (hotlines, plans, d) = (
        ns.api::<Hotline>(),
        ns.api::<CrisisPlan>(),
        ns.api::<Deployment>(),
    );
    create(
        &hotlines,
        &fixtures::hotline("care", 10, vec![managed("gateway", 10, DELAY)])?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan("retail", &["care"], "5m", &[("outage", 200)], 25, "5m")?,
    )
    .await?;
    declare(&plans, "retail", "outage").await?;
    wait_for("surge to 20 replicas", CONVERGE, || async {
        anyhow::Ok(replicas(&d, "care-gateway").await? == Some(20))
    })
    .await?;
    // Someone scales it down by hand.
    d.patch_scale(
        "care-gateway",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await?;
    let t0 = Instant::now();
    wait_for(
        "the operator restores 20 replicas",
        Duration::from_secs(2),
        || async { anyhow::Ok(replicas(&d, "care-gateway").await? == Some(20)) },
    )
    .await?;
    eprintln!("drift reverted in {:?}", t0.elapsed());
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn referenced_deployment_is_scaled_through_scale_and_nothing_else_changes()
-> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("hl-ref").await?;
    let d = ns.api::<Deployment>();
    let existing: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "agent-sessions", "labels": {"team": "agents"}, "annotations": {"owner": "agents-team"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "agent-sessions"}},
            "template": {
                "metadata": {"labels": {"app": "agent-sessions"}},
                "spec": {"containers": [{"name": "s", "image": "example.invalid/s:2", "env": [{"name": "MODE", "value": "x"}]}]},
            },
        },
    }))?;
    let before = create(&d, &existing).await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let hotlines = ns.api::<Hotline>();
    let sessions = json!({"name": "sessions", "callsPerReplica": 5,
        "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "agent-sessions"}});
    create(
        &hotlines,
        &fixtures::hotline("care", 20, vec![managed("gateway", 10, DELAY), sessions])?,
    )
    .await?;
    wait_for("agent-sessions scaled to 4", CONVERGE, || async {
        anyhow::Ok(replicas(&d, "agent-sessions").await? == Some(4))
    })
    .await?;
    wait_for(
        "Hotline reports the referenced component ready",
        CONVERGE,
        || async {
            let s = hotlines.get("care").await?.status.unwrap_or_default();
            anyhow::Ok(
                s.components
                    .iter()
                    .any(|c| c.name == "sessions" && c.ready_replicas == 4),
            )
        },
    )
    .await?;
    let after = d.get("agent-sessions").await?;
    let mut spec_before = before.spec.clone().context("spec")?;
    let mut spec_after = after.spec.clone().context("spec")?;
    spec_before.replicas = None;
    spec_after.replicas = None;
    assert_eq!(spec_after, spec_before, "only replicas changed");
    assert_eq!(after.metadata.labels, before.metadata.labels);
    // The Deployment controller adds its revision annotation; nothing else may change.
    let ours = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        let mut a = m.annotations.clone().unwrap_or_default();
        a.remove("deployment.kubernetes.io/revision");
        a
    };
    assert_eq!(ours(&after.metadata), ours(&before.metadata));
    assert!(
        after
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "not adopted"
    );
    // Deleting the Hotline removes its managed children, not the referenced one.
    hotlines.delete("care", &DeleteParams::foreground()).await?;
    wait_for(
        "managed Deployment and ConfigMap garbage-collected",
        CONVERGE,
        || async {
            let gw = d.get_opt("care-gateway").await?;
            let cm = ns.api::<ConfigMap>().get_opt("care-announcement").await?;
            anyhow::Ok(gw.is_none() && cm.is_none())
        },
    )
    .await?;
    assert!(
        d.get_opt("agent-sessions").await?.is_some(),
        "referenced workload left alone"
    );
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn missing_referenced_workload_is_degraded_then_recovers() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("hl-missing-ref").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let hotlines = ns.api::<Hotline>();
    let sessions = json!({"name": "sessions", "callsPerReplica": 5,
        "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "later"}});
    create(&hotlines, &fixtures::hotline("care", 10, vec![sessions])?).await?;
    wait_for("Degraded=True WorkloadNotFound", CONVERGE, || async {
        let s = hotlines.get("care").await?.status.unwrap_or_default();
        anyhow::Ok(
            condition(&s.conditions, "Degraded")
                == Some(("True".into(), "WorkloadNotFound".into())),
        )
    })
    .await?;
    let events = ns.api::<k8s_openapi::api::events::v1::Event>();
    wait_for("a Warning Event WorkloadNotFound", CONVERGE, || async {
        let list = events.list(&Default::default()).await?;
        anyhow::Ok(list.items.iter().any(|e| {
            e.reason.as_deref() == Some("WorkloadNotFound") && e.type_.as_deref() == Some("Warning")
        }))
    })
    .await?;
    // Creating the workload is a watch event: it is scaled without waiting for a retry.
    let d = ns.api::<Deployment>();
    create(&d, &serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "later"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "l"}},
                 "template": {"metadata": {"labels": {"app": "l"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}},
    }))?).await?;
    wait_for(
        "scaled to 2 and Degraded=False",
        Duration::from_secs(10),
        || async {
            let s = hotlines.get("care").await?.status.unwrap_or_default();
            anyhow::Ok(
                replicas(&d, "later").await? == Some(2)
                    && condition(&s.conditions, "Degraded").map(|c| c.0) == Some("False".into()),
            )
        },
    )
    .await?;
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn announcement_switches_to_the_scenario_and_back() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("hl-announce").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let (hotlines, plans) = (ns.api::<Hotline>(), ns.api::<CrisisPlan>());
    let cms = ns.api::<ConfigMap>();
    create(
        &hotlines,
        &fixtures::hotline("care", 10, vec![managed("gateway", 10, DELAY)])?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan("retail", &["care"], "5m", &[("outage", 50)], 100, "1s")?,
    )
    .await?;
    let text = |cm: ConfigMap| {
        let d = cm.data.unwrap_or_default();
        (
            d.get("announcement").cloned().unwrap_or_default(),
            d.get("scenario").cloned().unwrap_or_default(),
        )
    };
    wait_for("standby announcement", CONVERGE, || async {
        anyhow::Ok(
            cms.get_opt("care-announcement").await?.map(text)
                == Some(("standby text".into(), String::new())),
        )
    })
    .await?;
    declare(&plans, "retail", "outage").await?;
    wait_for("scenario announcement", CONVERGE, || async {
        anyhow::Ok(
            cms.get("care-announcement").await.map(text)?
                == ("outage text".into(), "outage".into()),
        )
    })
    .await?;
    wait_for(
        "Hotline status names the scenario announced",
        CONVERGE,
        || async {
            let s = hotlines.get("care").await?.status.unwrap_or_default();
            anyhow::Ok(s.announcement.and_then(|a| a.scenario).as_deref() == Some("outage"))
        },
    )
    .await?;
    end(&plans, "retail").await?;
    wait_for("standby announcement again", CONVERGE, || async {
        anyhow::Ok(
            cms.get("care-announcement").await.map(text)? == ("standby text".into(), String::new()),
        )
    })
    .await?;
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn invalid_spec_is_reported_and_nothing_is_scaled_until_fixed() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("hl-invalid").await?;
    let op = Operator::start(ns.client.clone(), &ns.name).await?;
    let hotlines = ns.api::<Hotline>();
    let d = ns.api::<Deployment>();
    // A time zone the schema's shape check accepts but that does not exist.
    let mut hl = fixtures::hotline("care", 10, vec![managed("gateway", 10, DELAY)])?;
    hl.spec.standby.schedule = Some(serde_json::from_value(json!({
        "timeZone": "Mars/Olympus",
        "windows": [{"days": ["Mon"], "start": "08:00", "end": "20:00", "calls": 40}],
    }))?);
    create(&hotlines, &hl).await?;
    let h = wait_for("Valid=False UnknownTimeZone", CONVERGE, || async {
        let h = hotlines.get("care").await?;
        let s = h.status.clone().unwrap_or_default();
        anyhow::Ok(
            (condition(&s.conditions, "Valid") == Some(("False".into(), "UnknownTimeZone".into())))
                .then_some(h),
        )
    })
    .await?;
    let msg = h
        .status
        .unwrap_or_default()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Valid")
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(
        msg.contains("spec.standby.schedule.timeZone") && msg.contains("Mars/Olympus"),
        "{msg}"
    );
    let events = ns.api::<k8s_openapi::api::events::v1::Event>();
    wait_for("a Warning Event UnknownTimeZone", CONVERGE, || async {
        let list = events.list(&Default::default()).await?;
        anyhow::Ok(list.items.iter().any(|e| {
            e.reason.as_deref() == Some("UnknownTimeZone") && e.type_.as_deref() == Some("Warning")
        }))
    })
    .await?;
    assert!(
        d.get_opt("care-gateway").await?.is_none(),
        "nothing scaled on bad input"
    );
    // Fixing it recovers without a restart.
    hotlines
        .patch(
            "care",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"standby": {"schedule": {"timeZone": "Europe/Paris"}}}})),
        )
        .await?;
    wait_for("Deployment created and Valid=True", CONVERGE, || async {
        let s = hotlines.get("care").await?.status.unwrap_or_default();
        anyhow::Ok(
            replicas(&d, "care-gateway").await?.is_some()
                && condition(&s.conditions, "Valid").map(|c| c.0) == Some("True".into()),
        )
    })
    .await?;
    op.stop().await?;
    ns.cleanup().await?;
    Ok(())
}
