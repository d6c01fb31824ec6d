//! Small builders for Hotlines and CrisisPlans used by the controller tests,
//! and readers for what the operator produced.

use std::time::Duration;

use anyhow::Context as _;
use hotline_operator::api::{CrisisPlan, Hotline};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// A managed component (`template`) whose pods become Ready `ready_delay`
/// after kwok starts them.
pub fn managed(name: &str, calls_per_replica: i32, ready_delay: Duration) -> Value {
    json!({
        "name": name,
        "callsPerReplica": calls_per_replica,
        "minReplicas": 1,
        "drainSeconds": 45,
        "template": {
            "metadata": {
                "labels": {"app": name},
                "annotations": {"pod-ready.stage.kwok.x-k8s.io/delay": format!("{}ms", ready_delay.as_millis())},
            },
            "spec": {"containers": [{"name": name, "image": format!("example.invalid/{name}:1")}]},
        },
    })
}

/// A Hotline with the given standby calls and components.
pub fn hotline(name: &str, standby: i32, components: Vec<Value>) -> anyhow::Result<Hotline> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "crisis.hotline.dev/v1alpha1",
        "kind": "Hotline",
        "metadata": {"name": name},
        "spec": {
            "numbers": ["+33123456789"],
            "standby": {"calls": standby},
            "announcement": "standby text",
            "components": components,
        },
    }))?)
}

/// A CrisisPlan over `hotlines` with one scenario per `(name, calls)`.
pub fn plan(
    name: &str,
    hotlines: &[&str],
    budget: &str,
    scenarios: &[(&str, i32)],
    step_percent: i32,
    step_every: &str,
) -> anyhow::Result<CrisisPlan> {
    let scenarios: Vec<Value> = scenarios
        .iter()
        .map(|(s, calls)| {
            json!({
                "name": s,
                "surge": {"calls": calls},
                "announcement": format!("{s} text"),
                "escalation": [{"after": "0s", "notify": "crisis-cell"}, {"after": "1s", "notify": "management"}],
            })
        })
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "crisis.hotline.dev/v1alpha1",
        "kind": "CrisisPlan",
        "metadata": {"name": name},
        "spec": {
            "hotlines": hotlines.iter().map(|h| json!({"name": h})).collect::<Vec<_>>(),
            "timeBudget": budget,
            "scenarios": scenarios,
            "exit": {"stepDown": {"percent": step_percent, "every": step_every}},
        },
    }))?)
}

pub async fn create<K>(api: &Api<K>, obj: &K) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), obj)
        .await
        .context("creating object")
}

/// Declares `scenario` on plan `name` the way automation does: a merge patch
/// on the status subresource, under the field manager `declarer`.
pub async fn declare(
    plans: &Api<CrisisPlan>,
    name: &str,
    scenario: &str,
) -> anyhow::Result<CrisisPlan> {
    let pp = PatchParams {
        field_manager: Some("declarer".into()),
        ..Default::default()
    };
    plans
        .patch_status(name, &pp, &Patch::Merge(json!({"status": {"declaration": {
            "scenario": scenario, "reason": "test", "declaredBy": "tests", "incidentRef": "INC-1"}}})))
        .await
        .with_context(|| format!("declaring {scenario} on {name}"))
}

/// Ends the crisis on plan `name` (removes the declaration).
pub async fn end(plans: &Api<CrisisPlan>, name: &str) -> anyhow::Result<CrisisPlan> {
    let pp = PatchParams {
        field_manager: Some("declarer".into()),
        ..Default::default()
    };
    plans
        .patch_status(
            name,
            &pp,
            &Patch::Merge(json!({"status": {"declaration": null}})),
        )
        .await
        .with_context(|| format!("ending the crisis on {name}"))
}

/// `spec.replicas` of a Deployment (None if it does not exist).
pub async fn replicas(deployments: &Api<Deployment>, name: &str) -> anyhow::Result<Option<i32>> {
    Ok(deployments
        .get_opt(name)
        .await?
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas))
}

/// Status of condition `type_` on a Hotline or plan's conditions.
pub fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}
