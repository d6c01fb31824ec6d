//! Smoke test of the local control plane (hack/cluster, docs/LOCAL-CLUSTER.md):
//! a Deployment scaled 1 -> 50 on kwok's fake nodes becomes fully Ready no
//! sooner than its simulated readiness delay and well within a deadline, and
//! scaling back to 0 really deletes the pods (kwok's pod-delete stage).
//!
//! Needs the cluster: `hack/cluster up` is run automatically unless KUBECONFIG
//! is set.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{TestNamespace, wait_for};

const READY_DELAY: Duration = Duration::from_secs(3);

/// A Deployment whose pods fit the kwok fake nodes and become Ready
/// `ready_delay` after kwok starts them.
fn fake_deployment(name: &str, replicas: i32, ready_delay: Duration) -> Deployment {
    let labels = BTreeMap::from([("app".to_string(), name.to_string())]);
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(
                        "pod-ready.stage.kwok.x-k8s.io/delay".to_string(),
                        format!("{}ms", ready_delay.as_millis()),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    // kwokctl's fake nodes are labelled type=kwok and carry no
                    // taint; the toleration keeps this valid on kwok setups
                    // that taint them kwok.x-k8s.io/node=fake:NoSchedule.
                    node_selector: Some(BTreeMap::from([("type".to_string(), "kwok".to_string())])),
                    tolerations: Some(vec![Toleration {
                        key: Some("kwok.x-k8s.io/node".into()),
                        operator: Some("Exists".into()),
                        effect: Some("NoSchedule".into()),
                        ..Default::default()
                    }]),
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("hotline-smoke:0".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn deployment_scales_1_to_50_on_fake_nodes() -> anyhow::Result<()> {
    let ns = TestNamespace::new("cluster-smoke-scale").await?;
    let deployments = ns.api::<Deployment>();
    let pods = ns.api::<Pod>();
    let name = "smoke";

    deployments
        .create(
            &PostParams::default(),
            &fake_deployment(name, 1, READY_DELAY),
        )
        .await?;
    let ready = |want: i32| {
        let deployments = deployments.clone();
        move || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get(name).await?;
                let r = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                Ok::<_, kube::Error>(r >= want)
            }
        }
    };
    wait_for(
        "deployment smoke: 1 ready replica",
        Duration::from_secs(30),
        ready(1),
    )
    .await?;

    let scaled_at = Instant::now();
    deployments
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 50 } })),
        )
        .await?;
    wait_for(
        "deployment smoke: 50 ready replicas",
        Duration::from_secs(60),
        ready(50),
    )
    .await?;
    let took = scaled_at.elapsed();
    eprintln!(
        "1 -> 50 replicas Ready in {:.2}s (pod ready delay {READY_DELAY:?})",
        took.as_secs_f64()
    );
    assert!(
        took >= READY_DELAY,
        "50 replicas Ready after {took:?}, sooner than the simulated {READY_DELAY:?} readiness delay: \
         the kwok pod-ready stage does not honour pod-ready.stage.kwok.x-k8s.io/delay"
    );

    // Every pod landed on a kwok node and is Running.
    let list = pods
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await?;
    let running = list
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count();
    assert_eq!(running, 50, "Running pods");
    assert!(
        list.items.iter().all(|p| p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| n.starts_with("node-"))),
        "all pods scheduled onto kwok fake nodes"
    );

    // Scale to 0: pods (default terminationGracePeriodSeconds 30) must go away,
    // which needs kwok's pod-delete stage.
    let deleted_at = Instant::now();
    deployments
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 0 } })),
        )
        .await?;
    wait_for(
        "all smoke pods deleted",
        Duration::from_secs(30),
        || async {
            let l = pods
                .list(&ListParams::default().labels(&format!("app={name}")))
                .await?;
            Ok::<_, kube::Error>(l.items.is_empty())
        },
    )
    .await?;
    eprintln!(
        "50 -> 0 pods gone in {:.2}s",
        deleted_at.elapsed().as_secs_f64()
    );

    ns.cleanup().await
}

#[tokio::test]
async fn built_kubectl_reaches_the_cluster() -> anyhow::Result<()> {
    let mut cmd = support::kubectl().await?;
    let out = tokio::task::spawn_blocking(move || {
        cmd.args(["get", "nodes", "-l", "type=kwok", "-o", "name"])
            .output()
    })
    .await??;
    assert!(
        out.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes = String::from_utf8(out.stdout)?.lines().count();
    assert!(nodes >= 1, "expected kwok fake nodes, found {nodes}");
    Ok(())
}

#[tokio::test]
async fn repository_crds_install_and_become_established() -> anyhow::Result<()> {
    let names = support::install_crds().await?;
    if names.is_empty() {
        eprintln!("no CRDs in crds/*.yaml yet: nothing to install");
    } else {
        eprintln!("installed and Established: {}", names.join(", "));
    }
    Ok(())
}

/// The generic CRD installer on a throwaway CRD (multi-document file, a
/// non-CRD document that must be skipped), independent of what crds/ holds.
#[tokio::test]
async fn support_applies_crds_and_waits_until_established() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("hotline-crd-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("smoke.yaml"),
        r#"---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-a-crd}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.hotline-operator.test
spec:
  group: smoke.hotline-operator.test
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
"#,
    )?;
    let client = support::client().await?;
    let names = support::apply_crds_from(&client, &dir, Duration::from_secs(30)).await;
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(
        names?,
        vec!["widgets.smoke.hotline-operator.test".to_string()]
    );
    Ok(())
}
