//! The API contract against the real kube-apiserver: the generated CRDs are
//! accepted, the shipped examples are admitted, every invalid example in
//! `deploy/examples/invalid/` is refused with a message naming the field (the
//! `# expect:` line of the file), and the CRD metadata users rely on
//! (category, short names, printer columns, `kubectl explain`) works.

mod support;

use std::path::Path;

use anyhow::{Context as _, bail};
use hotline_operator::api::{CrisisPlan, Hotline};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use support::{TestNamespace, install_crds, kubectl, repo_root};

fn api_resource(kind: &str) -> anyhow::Result<ApiResource> {
    let plural = match kind {
        "Hotline" => "hotlines",
        "CrisisPlan" => "crisisplans",
        other => bail!("unexpected kind {other} in an example"),
    };
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("crisis.hotline.dev", "v1alpha1", kind),
        plural,
    ))
}

fn read_object(path: &Path) -> anyhow::Result<(DynamicObject, String)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let expect = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .map(str::to_owned)
        .with_context(|| format!("{} has no `# expect:` line", path.display()))?;
    let obj: DynamicObject =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok((obj, expect))
}

#[tokio::test]
async fn every_invalid_example_is_refused_naming_the_field() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("invalid-examples").await?;
    let dir = repo_root().join("deploy/examples/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected one invalid example per rule, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let (obj, expect) = read_object(path)?;
        let kind = obj
            .types
            .as_ref()
            .map(|t| t.kind.clone())
            .unwrap_or_default();
        let api: Api<DynamicObject> =
            Api::namespaced_with(ns.client.clone(), &ns.name, &api_resource(&kind)?);
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => failures.push(format!("{}: was admitted", path.display())),
            Err(kube::Error::Api(s)) if s.code == 422 => {
                if !s.message.contains(&expect) {
                    failures.push(format!(
                        "{}: refused, but the message does not contain {expect:?}: {}",
                        path.display(),
                        s.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error {e}", path.display())),
        }
    }
    ns.cleanup().await?;
    if !failures.is_empty() {
        bail!(
            "{} invalid example(s) misbehaved:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

#[tokio::test]
async fn valid_examples_are_admitted_with_defaults_and_round_trip() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("valid-examples").await?;
    let root = repo_root().join("deploy/examples");
    let mut hl: Hotline =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("hotline.yaml"))?)?;
    let mut cp: CrisisPlan =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("crisisplan.yaml"))?)?;
    hl.metadata.namespace = None;
    cp.metadata.namespace = None;
    let hotlines: Api<Hotline> = ns.api();
    let plans: Api<CrisisPlan> = ns.api();
    let created = hotlines.create(&PostParams::default(), &hl).await?;
    assert_eq!(
        created.spec, hl.spec,
        "the apiserver kept the Hotline spec as written"
    );
    let created = plans.create(&PostParams::default(), &cp).await?;
    assert_eq!(
        created.spec, cp.spec,
        "the apiserver kept the CrisisPlan spec as written"
    );

    // Schema defaults: a component without minReplicas/drainSeconds.
    let mut minimal = hl.clone();
    minimal.metadata.name = Some("minimal".into());
    let raw = json!({"name": "sessions", "callsPerReplica": 20,
        "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"}});
    minimal.spec.components = vec![serde_json::from_value(raw)?];
    let mut body = serde_json::to_value(&minimal)?;
    // Remove the serde defaults so the apiserver's defaulting is what is tested.
    let component = body["spec"]["components"][0]
        .as_object_mut()
        .context("component is an object")?;
    component.remove("minReplicas");
    component.remove("drainSeconds");
    let created: Hotline = hotlines
        .patch(
            "minimal",
            &PatchParams::apply("tests").force(),
            &Patch::Apply(&body),
        )
        .await?;
    assert_eq!(created.spec.components[0].min_replicas, 1);
    assert_eq!(created.spec.components[0].drain_seconds, 30);

    // A declaration goes through the status subresource, and is read back typed.
    let declared = plans
        .patch_status(
            "retail",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"declaration": {"scenario": "it-outage",
                "reason": "payments down", "declaredBy": "alertmanager/PaymentsDown",
                "incidentRef": "INC-1234"}}})),
        )
        .await?;
    let d = declared
        .status
        .and_then(|s| s.declaration)
        .context("declaration kept")?;
    assert_eq!(d.scenario, "it-outage");
    assert_eq!(d.incident_ref.as_deref(), Some("INC-1234"));
    // spec cannot be changed through /status.
    let after = plans
        .patch_status(
            "retail",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"timeBudget": "1h"}})),
        )
        .await?;
    assert_eq!(after.spec.time_budget, "5m");
    ns.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn category_short_names_columns_and_explain() -> anyhow::Result<()> {
    install_crds().await?;
    let ns = TestNamespace::new("kubectl-view").await?;
    let root = repo_root().join("deploy/examples");
    // The examples name namespace `support`: apply them into this test's
    // namespace instead.
    for file in ["hotline.yaml", "crisisplan.yaml"] {
        let text = std::fs::read_to_string(root.join(file))?
            .replace("namespace: support", &format!("namespace: {}", ns.name));
        let mut child = kubectl()
            .await?
            .args(["apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        use std::io::Write as _;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(text.as_bytes())?;
        let out = child.wait_with_output()?;
        assert!(
            out.status.success(),
            "kubectl apply {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = kubectl()
        .await?
        .args(["-n", &ns.name, "get", "hotline"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("hotline.crisis.hotline.dev/customer-care"),
        "category lists Hotlines:\n{text}"
    );
    assert!(
        text.contains("crisisplan.crisis.hotline.dev/retail"),
        "category lists CrisisPlans:\n{text}"
    );
    for col in [
        "MODE",
        "TARGET",
        "READY",
        "PHASE",
        "SCENARIO",
        "BUDGET",
        "TIME-TO-SURGE",
    ] {
        assert!(text.contains(col), "column {col} missing:\n{text}");
    }
    for short in ["hl", "cp"] {
        let out = kubectl()
            .await?
            .args(["-n", &ns.name, "get", short, "-o", "name"])
            .output()?;
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "short name {short}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = kubectl()
        .await?
        .args(["explain", "hotline.spec.components.callsPerReplica"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Concurrent calls one ready replica carries"),
        "explain:\n{text}"
    );
    let out = kubectl()
        .await?
        .args(["explain", "crisisplan.status.declaration"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("never by the operator"), "explain:\n{text}");
    ns.cleanup().await?;
    Ok(())
}
