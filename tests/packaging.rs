//! Packaging: the Helm chart (`charts/hotline-operator`), the kustomize base
//! (`deploy/`), their RBAC, and the operator binary running with exactly the
//! chart's permissions.
//!
//! Offline tests render with the built `helm` and `kubectl kustomize`; the
//! others run against the local control plane (`hack/cluster`). Every
//! cluster-scoped object a test creates carries the random suffix of the
//! test's namespace and is deleted at the end (or by a guard on failure).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use hotline_operator::api::{CrisisPlan, Hotline};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use support::{TestNamespace, fixtures, wait_for};

type R<T = ()> = anyhow::Result<T>;

const RELEASE_DEFAULT: &str = "hotline-operator";
const NAMESPACE_DEFAULT: &str = "hotline-system";
/// RBAC changes take a moment to reach the authorizer's caches.
const RBAC_PROPAGATION: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- helpers

fn root() -> PathBuf {
    support::repo_root()
}

fn chart_dir() -> PathBuf {
    root().join("charts/hotline-operator")
}

fn ci_values(name: &str) -> String {
    chart_dir()
        .join("ci")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Kubernetes version to render for: the local cluster's (hack/versions.env).
/// `helm template` needs it: our helm is built without version ldflags and
/// would otherwise assume v1.20, below the chart's kubeVersion.
fn kube_version() -> R<String> {
    let env = std::fs::read_to_string(root().join("hack/versions.env"))?;
    env.lines()
        .find_map(|l| l.trim().strip_prefix("K8S_VERSION="))
        .map(|v| v.trim().trim_start_matches('v').to_owned())
        .ok_or_else(|| anyhow!("no K8S_VERSION in hack/versions.env"))
}

/// Runs `cmd` (optionally feeding `stdin`), returns stdout; on failure the
/// error names the command and carries its output.
fn run_with(cmd: &mut Command, stdin: Option<&[u8]>) -> R<String> {
    let desc = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawning {desc}"))?;
    // Feed stdin from another thread so a child that writes before it has
    // read everything cannot deadlock on a full pipe.
    let feeder = match (stdin, child.stdin.take()) {
        (Some(input), Some(mut pipe)) => {
            let input = input.to_vec();
            Some(std::thread::spawn(move || pipe.write_all(&input)))
        }
        _ => None,
    };
    let out = child.wait_with_output()?;
    if let Some(feeder) = feeder {
        feeder
            .join()
            .map_err(|_| anyhow!("stdin writer panicked"))?
            .with_context(|| format!("writing stdin of {desc}"))?;
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{desc} failed ({}):\n{}\n{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

fn run(cmd: &mut Command) -> R<String> {
    run_with(cmd, None)
}

/// Runs `cmd` expecting it to fail; returns its stderr and stdout.
fn run_failing(cmd: &mut Command) -> R<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    ensure!(!out.status.success(), "{cmd:?} succeeded but should fail");
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    ))
}

/// `helm` for rendering and linting (no kubeconfig: never talks to a
/// cluster); [`Release`] runs the ones that do.
async fn helm_offline() -> R<Command> {
    Ok(Command::new(support::bin_dir().await?.join("helm")))
}

/// `kubectl` without a cluster (for `kubectl kustomize`).
async fn kubectl_offline() -> R<Command> {
    Ok(Command::new(support::kubectl_path().await?))
}

/// Every non-empty document of a multi-document YAML stream.
fn parse_docs(yaml: &str) -> R<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// The objects `helm template` renders for the chart.
async fn render(release: &str, namespace: &str, extra: &[&str]) -> R<Vec<Value>> {
    parse_docs(&run(helm_offline()
        .await?
        .args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", namespace, "--kube-version", &kube_version()?])
        .args(extra))?)
}

fn s<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn kind(o: &Value) -> &str {
    s(o, "/kind")
}

fn name(o: &Value) -> &str {
    s(o, "/metadata/name")
}

/// `Kind namespace/name` of an object.
fn key(o: &Value) -> String {
    format!("{} {}/{}", kind(o), s(o, "/metadata/namespace"), name(o))
}

fn find<'a>(objs: &'a [Value], kind_: &str, name_: &str) -> R<&'a Value> {
    objs.iter()
        .find(|o| kind(o) == kind_ && name(o) == name_)
        .ok_or_else(|| {
            anyhow!(
                "no {kind_} {name_} among {:?}",
                objs.iter().map(key).collect::<Vec<_>>()
            )
        })
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A rule flattened to `group resource verb [resourceName]` lines.
fn rule_lines(rules: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().into_iter().flatten() {
        let names = strs(rule.get("resourceNames"));
        let names = if names.is_empty() {
            vec![String::new()]
        } else {
            names
        };
        for g in strs(rule.get("apiGroups")) {
            for r in strs(rule.get("resources")) {
                for v in strs(rule.get("verbs")) {
                    for n in &names {
                        out.insert(format!("{g} {r} {v} {n}").trim_end().to_owned());
                    }
                }
            }
        }
    }
    out
}

/// `rule_lines` of a table `(group, resources, verbs)`.
fn expected_lines(table: &[(&str, &[&str], &[&str])], resource_names: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (g, rs, vs) in table {
        for r in *rs {
            for v in *vs {
                if resource_names.is_empty() {
                    out.insert(format!("{g} {r} {v}"));
                } else {
                    for n in resource_names {
                        out.insert(format!("{g} {r} {v} {n}"));
                    }
                }
            }
        }
    }
    out
}

/// The operator's permissions on watched namespaces: the contract the chart
/// grants, verb by verb (see the operator's API calls in src/controller/).
const OPERATOR_RULES: &[(&str, &[&str], &[&str])] = &[
    (
        "crisis.hotline.dev",
        &["hotlines", "crisisplans"],
        &["get", "list", "watch"],
    ),
    (
        "crisis.hotline.dev",
        &["hotlines/status", "crisisplans/status"],
        &["patch"],
    ),
    ("crisis.hotline.dev", &["hotlines/finalizers"], &["update"]),
    (
        "apps",
        &["deployments"],
        &["get", "list", "watch", "create", "patch"],
    ),
    ("apps", &["statefulsets"], &["get", "list", "watch"]),
    (
        "apps",
        &["deployments/scale", "statefulsets/scale"],
        &["get", "patch", "update"],
    ),
    (
        "",
        &["services", "configmaps"],
        &["get", "list", "watch", "create", "patch"],
    ),
    ("events.k8s.io", &["events"], &["create", "patch"]),
];

const CRD_RESOURCE: &str = "customresourcedefinitions.apiextensions.k8s.io";
const CRDS: &[&str] = &[
    "hotlines.crisis.hotline.dev",
    "crisisplans.crisis.hotline.dev",
];

/// The random suffix of a test namespace (`test-<name>-<suffix>`), used to
/// make cluster-scoped names unique per run.
fn suffix(ns: &TestNamespace) -> &str {
    ns.name.rsplit('-').next().unwrap_or("x")
}

/// A Helm release installed by a test; uninstalled on drop if the test
/// failed before [`Release::uninstall`].
struct Release {
    helm: PathBuf,
    kubeconfig: PathBuf,
    name: String,
    namespace: String,
    done: bool,
}

impl Release {
    /// `helm install` of the chart into `namespace` (`extra`: more flags,
    /// e.g. `--wait`), with the people ClusterRoles renamed after the
    /// release so parallel runs never share a cluster-scoped object.
    async fn install(name: &str, namespace: &str, extra: &[&str]) -> R<Self> {
        let release = Release {
            helm: support::bin_dir().await?.join("helm"),
            kubeconfig: support::kubeconfig_path().await?,
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            done: false,
        };
        run(release
            .helm()
            .args(["install", name])
            .arg(chart_dir())
            .args(["--namespace", namespace])
            .args([
                "--set",
                &format!("rbac.people.declarerName=hotline-crisis-declarer-{name}"),
                "--set",
                &format!("rbac.people.viewerName=hotline-viewer-{name}"),
            ])
            .args(extra))?;
        Ok(release)
    }

    fn declarer(&self) -> String {
        format!("hotline-crisis-declarer-{}", self.name)
    }

    fn viewer(&self) -> String {
        format!("hotline-viewer-{}", self.name)
    }

    /// The chart's full name (release names here never contain the chart name).
    fn fullname(&self) -> String {
        format!("{}-hotline-operator", self.name)
    }

    fn helm(&self) -> Command {
        let mut cmd = Command::new(&self.helm);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// The objects Helm created (`helm get manifest`).
    fn manifest(&self) -> R<String> {
        run(self.helm().args([
            "get",
            "manifest",
            &self.name,
            "--namespace",
            &self.namespace,
        ]))
    }

    fn uninstall(mut self) -> R {
        self.done = true;
        run(self.helm().args([
            "uninstall",
            &self.name,
            "--namespace",
            &self.namespace,
            "--wait",
            "--timeout",
            "60s",
        ]))?;
        Ok(())
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .helm()
                .args(["uninstall", &self.name, "--namespace", &self.namespace])
                .output();
        }
    }
}

/// `kubectl auth can-i` impersonating `as_user` (a user name or
/// `system:serviceaccount:<ns>:<name>`); `resource#sub` asks for a subresource.
async fn can_i(as_user: &str, namespace: &str, verb: &str, resource: &str) -> R<bool> {
    let (resource, subresource) = match resource.split_once('#') {
        Some((r, sub)) => (r, Some(sub)),
        None => (resource, None),
    };
    let mut cmd = support::kubectl().await?;
    cmd.args(["auth", "can-i", verb, resource, "--namespace", namespace])
        .arg(format!("--as={as_user}"));
    if let Some(sub) = subresource {
        cmd.arg(format!("--subresource={sub}"));
    }
    let out = cmd.stdin(Stdio::null()).output()?;
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match answer.as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => bail!(
            "{cmd:?}: unexpected answer {answer:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn sa(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// One line of an authorization matrix: `who` may (`allowed`) or may not
/// `verb` `resource` (`resource#subresource`, or `kind/name`) in `namespace`.
struct Check<'a> {
    who: &'a str,
    namespace: &'a str,
    verb: &'a str,
    resource: &'a str,
    allowed: bool,
}

fn check<'a>(
    who: &'a str,
    namespace: &'a str,
    verb: &'a str,
    resource: &'a str,
    allowed: bool,
) -> Check<'a> {
    Check {
        who,
        namespace,
        verb,
        resource,
        allowed,
    }
}

/// Waits until every allowed line is allowed (bindings propagate), then
/// asserts every line, and reports all mismatches at once.
async fn assert_matrix(checks: &[Check<'_>]) -> R {
    for c in checks.iter().filter(|c| c.allowed) {
        wait_for(
            &format!("{} may {} {} in {}", c.who, c.verb, c.resource, c.namespace),
            RBAC_PROPAGATION,
            || can_i(c.who, c.namespace, c.verb, c.resource),
        )
        .await?;
    }
    let mut wrong = Vec::new();
    for c in checks {
        let got = can_i(c.who, c.namespace, c.verb, c.resource).await?;
        if got != c.allowed {
            wrong.push(format!(
                "{} {} {} in {}: expected {}, got {}",
                c.who,
                c.verb,
                c.resource,
                c.namespace,
                if c.allowed { "yes" } else { "no" },
                if got { "yes" } else { "no" }
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "authorization matrix:\n{}",
        wrong.join("\n")
    );
    Ok(())
}

/// Removes what Helm adds and kustomize does not: the chart label and the
/// managed-by label.
fn without_helm_labels(mut o: Value) -> Value {
    if let Some(labels) = o
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("helm.sh/chart");
        labels.remove("app.kubernetes.io/managed-by");
    }
    o
}

/// Objects by `Kind namespace/name`, failing on duplicates.
fn by_key(objs: Vec<Value>) -> R<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for o in objs {
        let k = key(&o);
        ensure!(out.insert(k.clone(), o).is_none(), "{k} appears twice");
    }
    Ok(out)
}

/// Asserts that `kubectl kustomize dir` yields the objects of `helm template`
/// with `values` (release hotline-operator in hotline-system) field for field,
/// Helm's own labels and the kustomize Namespace aside.
async fn assert_kustomize_matches_helm(dir: &str, values: &[&str]) -> R {
    let mut args = vec!["--include-crds"];
    args.extend_from_slice(values);
    let helm: Vec<Value> = render(RELEASE_DEFAULT, NAMESPACE_DEFAULT, &args)
        .await?
        .into_iter()
        .map(without_helm_labels)
        .collect();
    let kustomized = run(kubectl_offline()
        .await?
        .arg("kustomize")
        .arg(root().join(dir)))?;
    let mut kustomize = parse_docs(&kustomized)?;
    let namespaces: Vec<Value> = kustomize
        .iter()
        .filter(|o| kind(o) == "Namespace")
        .cloned()
        .collect();
    ensure!(
        namespaces.len() == 1 && name(&namespaces[0]) == NAMESPACE_DEFAULT,
        "{dir}: expected one Namespace {NAMESPACE_DEFAULT}, got {namespaces:?}"
    );
    ensure!(
        s(
            &namespaces[0],
            "/metadata/labels/pod-security.kubernetes.io~1enforce"
        ) == "restricted",
        "{dir}: the namespace must enforce the restricted Pod Security Standard"
    );
    kustomize.retain(|o| kind(o) != "Namespace");
    let helm = by_key(helm)?;
    let kustomize = by_key(kustomize)?;
    let helm_keys: BTreeSet<_> = helm.keys().collect();
    let kustomize_keys: BTreeSet<_> = kustomize.keys().collect();
    ensure!(
        helm_keys == kustomize_keys,
        "{dir}: objects differ\nonly in helm: {:?}\nonly in kustomize: {:?}",
        helm_keys.difference(&kustomize_keys).collect::<Vec<_>>(),
        kustomize_keys.difference(&helm_keys).collect::<Vec<_>>()
    );
    for (k, h) in &helm {
        let kz = &kustomize[k];
        if let Some(diff) = first_difference(h, kz, "") {
            bail!("{dir}: {k} differs from the chart at {diff}");
        }
    }
    Ok(())
}

/// Where `a` and `b` first differ, as `path: a != b`.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}/{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}/{i}"))),
        // kustomize prints `100.0` as `100`.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

// ---------------------------------------------------------------- offline

/// crds/ is generated (crdgen); the chart and the kustomize base carry
/// byte-identical copies (hack/sync-chart-crds.sh).
#[test]
fn chart_and_base_crds_are_copies_of_generated_crds() -> R {
    let files = |dir: &Path| -> R<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "yaml") {
                let n = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                out.insert(n, std::fs::read(&p)?);
            }
        }
        Ok(out)
    };
    let generated = files(&root().join("crds"))?;
    ensure!(generated.len() == 2, "crds/: {:?}", generated.keys());
    for copy in ["charts/hotline-operator/crds", "deploy/base/crds"] {
        let copied = files(&root().join(copy))?;
        ensure!(
            copied.keys().eq(generated.keys()),
            "{copy} holds {:?}, crds/ holds {:?}: run hack/sync-chart-crds.sh",
            copied.keys(),
            generated.keys()
        );
        for (n, bytes) in &generated {
            ensure!(
                copied[n] == *bytes,
                "{copy}/{n} differs from crds/{n}: run hack/sync-chart-crds.sh"
            );
        }
    }
    Ok(())
}

/// The chart's alert rules are a byte copy of deploy/prometheus/rules.yaml
/// (once it exists) and the kustomize overlay's PrometheusRule wraps them:
/// `hack/sync-chart-crds.sh --check` finds nothing stale (CRDs included).
#[test]
fn prometheus_rules_copies_are_in_sync() -> R {
    run(Command::new(root().join("hack/sync-chart-crds.sh")).arg("--check"))?;
    Ok(())
}

#[test]
fn chart_app_version_is_the_crate_version() -> R {
    let chart: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml"))?)?;
    ensure!(
        s(&chart, "/appVersion") == env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion {:?} != Cargo.toml version {}",
        s(&chart, "/appVersion"),
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}

/// The image cannot be built here; at least its build context holds every
/// file cargo needs (target paths named in Cargo.toml, a build script) and
/// it runs as non-root from a distroless base.
#[test]
fn dockerfile_context_holds_what_cargo_reads() -> R {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml"))?;
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile"))?;
    let ignore = std::fs::read_to_string(root().join(".dockerignore"))?;
    let mut needed: BTreeSet<String> = BTreeSet::from(["src".to_owned()]);
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        }
        if let Some(path) = line.strip_prefix("path = \"") {
            let top = path.split('/').next().unwrap_or_default();
            needed.insert(top.to_owned());
        }
        if section == "[[bench]]" && line.starts_with("name = ") {
            needed.insert("benches".to_owned());
        }
    }
    if root().join("build.rs").exists() || manifest.contains("\nbuild = ") {
        needed.insert("build.rs".to_owned());
    }
    for dir in &needed {
        let copied = dockerfile
            .lines()
            .any(|l| l.starts_with("COPY ") && l.split_whitespace().nth(1) == Some(dir.as_str()));
        ensure!(copied, "Dockerfile does not COPY {dir}");
        ensure!(
            ignore
                .lines()
                .any(|l| l.trim_end_matches('/') == format!("!{dir}")),
            ".dockerignore does not allow {dir}"
        );
    }
    ensure!(dockerfile.contains("COPY Cargo.toml Cargo.lock ./"));
    ensure!(dockerfile.contains("--locked --bin hotline-operator"));
    let last_from = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .unwrap_or_default();
    ensure!(
        last_from.contains("distroless/static") && last_from.ends_with(":nonroot"),
        "{last_from}"
    );
    ensure!(dockerfile.contains("\nUSER 65532:65532\n"));
    Ok(())
}

#[tokio::test]
async fn helm_lint_passes_for_default_namespaced_and_all_features() -> R {
    let kv = kube_version()?;
    for values in [
        None,
        Some("namespaced-values.yaml"),
        Some("all-features-values.yaml"),
    ] {
        let mut cmd = helm_offline().await?;
        cmd.args(["lint", "--strict", "--kube-version", &kv])
            .arg(chart_dir());
        if let Some(v) = values {
            cmd.args(["--values", &ci_values(v)]);
        }
        let out = run(&mut cmd)?;
        ensure!(out.contains("0 chart(s) failed"), "{values:?}: {out}");
    }
    Ok(())
}

/// values.schema.json and the template guards refuse what cannot work.
#[tokio::test]
async fn bad_values_are_rejected_with_a_reason() -> R {
    let cases: &[(&[&str], &str)] = &[
        (&["--set", "watch.scope=everywhere"], "/watch/scope"),
        (&["--set", "replicaCount=-1"], "/replicaCount"),
        (&["--set", "operator.logFormat=xml"], "/operator/logFormat"),
        (&["--set", "replicas=3"], "replicas"),
        (
            &[
                "--set",
                "watch.scope=namespaced",
                "--set",
                "watch.namespaces={a,b}",
            ],
            "/watch/namespaces",
        ),
        (
            &["--set", "watch.namespaces={a}"],
            "only used with watch.scope=namespaced",
        ),
        (
            &["--set", "leaderElection.enabled=false"],
            "replicaCount > 1 needs leaderElection.enabled=true",
        ),
        (
            &["--set", "leaderElection.renewDeadline=15"],
            "renewDeadline must be shorter",
        ),
        (&["--set", "image.digest=latest"], "/image/digest"),
    ];
    let kv = kube_version()?;
    for (args, reason) in cases {
        let err = run_failing(
            helm_offline()
                .await?
                .args(["template", "x"])
                .arg(chart_dir())
                .args(["--kube-version", &kv])
                .args(*args),
        )?;
        ensure!(
            err.contains(reason),
            "{args:?}: expected {reason:?} in:\n{err}"
        );
    }
    Ok(())
}

/// Cluster scope: one ClusterRole with exactly the operator's verbs and the
/// CRD check, the Lease in the release namespace only, no wildcard and no
/// Secret anywhere; the people roles say what they promise.
#[tokio::test]
async fn cluster_scope_rbac_is_exact() -> R {
    let objs = render("rel", "ops", &[]).await?;
    for o in &objs {
        for rule in o
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = rule.to_string();
            ensure!(!text.contains('*'), "{}: wildcard in {text}", key(o));
            ensure!(!text.contains("secrets"), "{}: secrets in {text}", key(o));
            ensure!(rule.get("nonResourceURLs").is_none(), "{}: {text}", key(o));
        }
    }
    let role = find(&objs, "ClusterRole", "rel-hotline-operator")?;
    let mut expected = expected_lines(OPERATOR_RULES, &[]);
    expected.extend(expected_lines(
        &[(
            "apiextensions.k8s.io",
            &["customresourcedefinitions"],
            &["get"],
        )],
        CRDS,
    ));
    let got = rule_lines(&role["rules"]);
    ensure!(
        got == expected,
        "operator ClusterRole\nextra: {:?}\nmissing: {:?}",
        got.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&got).collect::<Vec<_>>()
    );
    let binding = find(&objs, "ClusterRoleBinding", "rel-hotline-operator")?;
    ensure!(
        binding["subjects"]
            == json!([{"kind": "ServiceAccount", "name": "rel-hotline-operator", "namespace": "ops"}])
    );

    let lease = find(&objs, "Role", "rel-hotline-operator-leader-election")?;
    ensure!(s(lease, "/metadata/namespace") == "ops");
    let mut expected = expected_lines(&[("coordination.k8s.io", &["leases"], &["create"])], &[]);
    expected.extend(expected_lines(
        &[(
            "coordination.k8s.io",
            &["leases"],
            &["get", "update", "patch"],
        )],
        &["rel-hotline-operator"],
    ));
    ensure!(rule_lines(&lease["rules"]) == expected, "{lease}");

    let declarer = find(&objs, "ClusterRole", "hotline-crisis-declarer")?;
    ensure!(
        rule_lines(&declarer["rules"])
            == expected_lines(
                &[
                    (
                        "crisis.hotline.dev",
                        &["crisisplans", "hotlines"],
                        &["get", "list", "watch"]
                    ),
                    (
                        "crisis.hotline.dev",
                        &["crisisplans/status"],
                        &["get", "patch"]
                    ),
                ],
                &[]
            ),
        "{declarer}"
    );
    ensure!(
        s(
            declarer,
            "/metadata/labels/rbac.authorization.k8s.io~1aggregate-to-edit"
        ) == "true"
    );
    let viewer = find(&objs, "ClusterRole", "hotline-viewer")?;
    ensure!(
        rule_lines(&viewer["rules"])
            .iter()
            .all(|l| ["get", "list", "watch"].contains(&l.split(' ').nth(2).unwrap_or("")))
    );
    ensure!(
        s(
            viewer,
            "/metadata/labels/rbac.authorization.k8s.io~1aggregate-to-view"
        ) == "true"
    );
    Ok(())
}

/// Namespaced scope: the operator's verbs in a Role of each watched
/// namespace; cluster-wide only `get` on the two CRDs.
#[tokio::test]
async fn namespaced_scope_uses_roles_in_the_watched_namespace() -> R {
    for (extra, watched) in [
        (
            vec!["--values", &ci_values("namespaced-values.yaml")],
            "ops",
        ),
        (
            vec![
                "--set",
                "watch.scope=namespaced",
                "--set",
                "watch.namespaces={support}",
            ],
            "support",
        ),
    ] {
        let objs = render("rel", "ops", &extra).await?;
        let cluster_roles: BTreeSet<&str> = objs
            .iter()
            .filter(|o| kind(o) == "ClusterRole")
            .map(name)
            .collect();
        ensure!(
            cluster_roles
                == BTreeSet::from([
                    "rel-hotline-operator-crds",
                    "hotline-crisis-declarer",
                    "hotline-viewer"
                ]),
            "{cluster_roles:?}"
        );
        let crds = find(&objs, "ClusterRole", "rel-hotline-operator-crds")?;
        ensure!(
            rule_lines(&crds["rules"])
                == expected_lines(
                    &[(
                        "apiextensions.k8s.io",
                        &["customresourcedefinitions"],
                        &["get"]
                    )],
                    CRDS
                )
        );
        let role = objs
            .iter()
            .find(|o| kind(o) == "Role" && name(o) == "rel-hotline-operator")
            .context("operator Role")?;
        ensure!(s(role, "/metadata/namespace") == watched);
        ensure!(rule_lines(&role["rules"]) == expected_lines(OPERATOR_RULES, &[]));
        let binding = objs
            .iter()
            .find(|o| kind(o) == "RoleBinding" && name(o) == "rel-hotline-operator")
            .context("operator RoleBinding")?;
        ensure!(s(binding, "/metadata/namespace") == watched);
        ensure!(binding["subjects"][0]["namespace"] == "ops");
        let lease = find(&objs, "Role", "rel-hotline-operator-leader-election")?;
        ensure!(s(lease, "/metadata/namespace") == "ops");
        let deploy = find(&objs, "Deployment", "rel-hotline-operator")?;
        let args = strs(deploy.pointer("/spec/template/spec/containers/0/args"));
        ensure!(args.contains(&format!("--namespace={watched}")), "{args:?}");
    }
    Ok(())
}

/// The pod meets the restricted Pod Security Standard, probes the health
/// endpoints, runs two replicas with leader election and a PDB.
#[tokio::test]
async fn deployment_is_restricted_highly_available_and_probed() -> R {
    let objs = render("rel", "ops", &[]).await?;
    let d = find(&objs, "Deployment", "rel-hotline-operator")?;
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    ensure!(d["spec"]["replicas"] == 2);
    ensure!(pod["securityContext"]["runAsNonRoot"] == true);
    ensure!(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault");
    ensure!(c["securityContext"]["allowPrivilegeEscalation"] == false);
    ensure!(c["securityContext"]["readOnlyRootFilesystem"] == true);
    ensure!(c["securityContext"]["capabilities"]["drop"] == json!(["ALL"]));
    ensure!(c["livenessProbe"]["httpGet"]["path"] == "/healthz");
    ensure!(c["readinessProbe"]["httpGet"]["path"] == "/readyz");
    ensure!(c["resources"]["requests"] == json!({"cpu": "50m", "memory": "64Mi"}));
    ensure!(c["resources"]["limits"] == json!({"memory": "128Mi"}));
    let args = strs(c.get("args"));
    for a in [
        "--leader-election",
        "--lease-name=rel-hotline-operator",
        "--lease-duration=15",
        "--renew-deadline=10",
        "--retry-period=2",
        "--metrics-addr=0.0.0.0:8080",
    ] {
        ensure!(args.iter().any(|x| x == a), "{a} missing from {args:?}");
    }
    ensure!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "{args:?}"
    );
    let env: Vec<&str> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| s(e, "/name"))
        .collect();
    ensure!(env == ["POD_NAME", "POD_NAMESPACE"], "{env:?}");
    find(&objs, "PodDisruptionBudget", "rel-hotline-operator")?;

    let single = render("rel", "ops", &["--set", "replicaCount=1"]).await?;
    ensure!(
        !single.iter().any(|o| kind(o) == "PodDisruptionBudget"),
        "no PDB for one replica"
    );
    Ok(())
}

/// The PrometheusRule carries the rules file and promtool accepts it; the
/// dashboard's queries parse and name exported metrics; the monitoring
/// objects select the metrics port.
#[tokio::test]
async fn monitoring_objects_render_and_rules_pass_promtool() -> R {
    let objs = render(
        "rel",
        "ops",
        &["--values", &ci_values("all-features-values.yaml")],
    )
    .await?;
    let rule = find(&objs, "PrometheusRule", "rel-hotline-operator")?;
    let rules: Value = serde_yaml::from_str(&std::fs::read_to_string(
        chart_dir().join("files/prometheus-rules.yaml"),
    )?)?;
    ensure!(
        rule["spec"] == rules,
        "PrometheusRule spec is not the rules file"
    );
    ensure!(s(rule, "/metadata/labels/release") == "kube-prometheus-stack");

    // The dashboard's queries, as recording rules, must parse too, and name
    // metrics the operator exports.
    let dashboard = find(&objs, "ConfigMap", "rel-hotline-operator-dashboard")?;
    ensure!(s(dashboard, "/metadata/labels/grafana_dashboard") == "1");
    let board: Value = serde_json::from_str(s(dashboard, "/data/hotline-operator.json"))?;
    // Panels may sit in rows; Grafana's variables become what Grafana would
    // put there, so promtool sees the query Prometheus will receive.
    fn panels(list: &Value, out: &mut Vec<Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p.clone());
            panels(&p["panels"], out);
        }
    }
    let mut all = Vec::new();
    panels(&board["panels"], &mut all);
    let variable = regex::Regex::new(r"\$(__rate_interval|__interval|__range|[a-z_]+)\b")?;
    let exprs: Vec<String> = all
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| {
            variable
                .replace_all(s(t, "/expr"), |c: &regex::Captures| match &c[1] {
                    "__rate_interval" | "__range" => "5m".to_string(),
                    "__interval" => "1m".to_string(),
                    _ => ".*".to_string(),
                })
                .into_owned()
        })
        .collect();
    ensure!(exprs.len() >= 10, "dashboard queries: {exprs:?}");
    ensure!(
        exprs.iter().all(|e| !e.contains('$')),
        "a Grafana variable left in a query: {exprs:?}"
    );
    // The chart ships the same dashboard as deploy/grafana.
    let shipped: Value = serde_json::from_str(&std::fs::read_to_string(
        root().join("deploy/grafana/hotline-operator.json"),
    )?)?;
    ensure!(
        board == shipped,
        "the chart's dashboard is not deploy/grafana's"
    );
    let exported = std::fs::read_to_string(root().join("src/metrics.rs"))?;
    let metric = regex::Regex::new(r"\b(hotline|crisisplan)_[a-z_]+")?;
    for expr in &exprs {
        for m in metric.find_iter(expr) {
            let name = m.as_str();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|x| name.strip_suffix(x))
                .unwrap_or(name);
            let in_source = match base.strip_prefix("hotline_operator_") {
                Some(rest) => exported.contains(&format!("{{p}}_{rest}\"")),
                None => exported.contains(&format!("\"{base}\"")),
            };
            ensure!(
                in_source,
                "the dashboard queries {base}, not in src/metrics.rs"
            );
        }
    }
    let dashboard_rules = json!({"groups": [{
        "name": "dashboard",
        "rules": exprs.iter().enumerate()
            .map(|(i, e)| json!({"record": format!("dashboard:query_{i}"), "expr": e}))
            .collect::<Vec<_>>(),
    }]});

    let promtool = match std::env::var_os("PROMTOOL") {
        Some(p) => PathBuf::from(p),
        None => {
            PathBuf::from(run(&mut Command::new(root().join("hack/install-prometheus.sh")))?.trim())
        }
    };
    let work = WorkDir(
        std::env::temp_dir().join(format!("hotline-packaging-rules-{}", std::process::id())),
    );
    std::fs::create_dir_all(&work.0)?;
    for (file, rules) in [
        ("rules.yaml", &rule["spec"]),
        ("dashboard.yaml", &dashboard_rules),
    ] {
        let path = work.0.join(file);
        std::fs::write(&path, serde_yaml::to_string(rules)?)?;
        run(Command::new(&promtool).args(["check", "rules"]).arg(&path))?;
    }

    let monitor = find(&objs, "ServiceMonitor", "rel-hotline-operator")?;
    ensure!(monitor["spec"]["endpoints"][0]["port"] == "metrics");
    let svc = find(&objs, "Service", "rel-hotline-operator-metrics")?;
    ensure!(svc["spec"]["ports"][0]["name"] == "metrics");
    ensure!(monitor["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]);
    // The rules select job="hotline-operator": the job comes from this label.
    let job_label = s(monitor, "/spec/jobLabel");
    let job = svc["metadata"]["labels"][job_label].as_str();
    ensure!(job == Some("hotline-operator"), "scrape job {job:?}");

    let policy = find(&objs, "NetworkPolicy", "rel-hotline-operator")?;
    ensure!(policy["spec"]["podSelector"]["matchLabels"] == svc["spec"]["selector"]);
    let scale = find(&objs, "ClusterRole", "rel-hotline-operator")?;
    let lines = rule_lines(&scale["rules"]);
    for l in [
        "argoproj.io rollouts get",
        "argoproj.io rollouts/scale patch",
        "argoproj.io rollouts/scale update",
    ] {
        ensure!(lines.contains(l), "{l} missing from {lines:?}");
    }
    ensure!(!lines.contains("argoproj.io rollouts patch"));
    Ok(())
}

/// `kubectl apply -k deploy/` installs what the chart installs with default
/// values; the Prometheus Operator overlay matches the chart with the
/// ServiceMonitor and PrometheusRule on.
#[tokio::test]
async fn kustomize_matches_helm_template() -> R {
    assert_kustomize_matches_helm("deploy", &[]).await?;
    assert_kustomize_matches_helm(
        "deploy/overlays/prometheus-operator",
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "prometheusRule.enabled=true",
        ],
    )
    .await
}

// ---------------------------------------------------------------- cluster

/// `helm template | kubectl apply --dry-run=server -f -` for the default, the
/// namespaced and the all-features values (monitoring.coreos.com kinds
/// aside: the local cluster has no Prometheus Operator).
#[tokio::test]
async fn helm_template_passes_server_side_dry_run() -> R {
    let ns = TestNamespace::new("chart-dry-run").await?;
    for values in [
        None,
        Some("namespaced-values.yaml"),
        Some("all-features-values.yaml"),
    ] {
        let mut extra = vec!["--include-crds".to_owned()];
        if let Some(v) = values {
            extra.extend(["--values".to_owned(), ci_values(v)]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let objs: Vec<Value> = render(RELEASE_DEFAULT, &ns.name, &extra)
            .await?
            .into_iter()
            .filter(|o| !s(o, "/apiVersion").starts_with("monitoring.coreos.com/"))
            .collect();
        let stream = objs
            .iter()
            .map(serde_yaml::to_string)
            .collect::<Result<Vec<_>, _>>()?
            .join("---\n");
        let out = run_with(
            support::kubectl()
                .await?
                .args(["apply", "--dry-run=server", "-f", "-"]),
            Some(stream.as_bytes()),
        )
        .with_context(|| format!("values {values:?}"))?;
        ensure!(
            out.lines().count() == objs.len()
                && out.lines().all(|l| l.ends_with("(server dry run)")),
            "values {values:?}:\n{out}"
        );
    }
    ns.cleanup().await
}

/// `helm install` into a namespace enforcing the restricted Pod Security
/// Standard creates every object and both replicas; `helm uninstall`
/// removes the cluster-scoped ones.
#[tokio::test]
async fn helm_install_creates_everything_and_uninstall_removes_it() -> R {
    support::install_crds().await?;
    let ns = TestNamespace::new("chart-install").await?;
    run(support::kubectl().await?.args([
        "label",
        "namespace",
        &ns.name,
        "pod-security.kubernetes.io/enforce=restricted",
    ]))?;
    let release = Release::install(
        &format!("hl-{}", suffix(&ns)),
        &ns.name,
        &["--wait", "--timeout", "60s"],
    )
    .await?;
    let manifest = release.manifest()?;
    let objs = parse_docs(&manifest)?;
    let kinds: BTreeSet<&str> = objs.iter().map(kind).collect();
    ensure!(
        kinds
            == BTreeSet::from([
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
                "Service",
                "Deployment",
                "PodDisruptionBudget"
            ]),
        "{kinds:?}"
    );
    // Every object of the release exists (kubectl get fails on a missing one).
    let listed = run_with(
        support::kubectl()
            .await?
            .args(["get", "-f", "-", "-o", "name"]),
        Some(manifest.as_bytes()),
    )?;
    ensure!(listed.lines().count() == objs.len(), "{listed}");
    let deployments: Api<Deployment> = ns.api();
    let d = deployments.get(&release.fullname()).await?;
    let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
    ensure!(
        ready == 2,
        "{ready} ready replicas in a restricted namespace"
    );

    let cluster_scoped: Vec<String> = objs
        .iter()
        .filter(|o| kind(o).starts_with("Cluster"))
        .map(|o| format!("{}/{}", kind(o).to_lowercase(), name(o)))
        .collect();
    ensure!(cluster_scoped.len() == 4, "{cluster_scoped:?}");
    release.uninstall()?;
    let left = run(support::kubectl()
        .await?
        .args(["get", "--ignore-not-found", "-o", "name"])
        .args(&cluster_scoped))?;
    ensure!(left.trim().is_empty(), "left after uninstall: {left}");
    ns.cleanup().await
}

/// Who may do what, asked of the apiserver's authorizer with
/// `kubectl auth can-i --as=system:serviceaccount:...`: the declarer, the
/// viewer, the built-in edit/view roles through aggregation, and the
/// operator's own ServiceAccount.
#[tokio::test]
async fn rbac_matrix_declarer_viewer_operator() -> R {
    support::install_crds().await?;
    let ns = TestNamespace::new("chart-rbac").await?;
    let n = ns.name.as_str();
    let release = Release::install(&format!("hl-{}", suffix(&ns)), n, &[]).await?;
    let (declarer_role, viewer_role) = (release.declarer(), release.viewer());
    for (account, role) in [("declarer", &declarer_role), ("viewer", &viewer_role)] {
        run(support::kubectl()
            .await?
            .args(["create", "serviceaccount", account, "-n", n]))?;
        run(support::kubectl().await?.args([
            "create",
            "rolebinding",
            account,
            "-n",
            n,
            &format!("--clusterrole={role}"),
            &format!("--serviceaccount={n}:{account}"),
        ]))?;
    }
    let (editor, reader) = (
        format!("editor-{}", suffix(&ns)),
        format!("reader-{}", suffix(&ns)),
    );
    for (user, role) in [(&editor, "edit"), (&reader, "view")] {
        run(support::kubectl().await?.args([
            "create",
            "rolebinding",
            user,
            "-n",
            n,
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ]))?;
    }
    let declarer = sa(n, "declarer");
    let viewer = sa(n, "viewer");
    let operator = sa(n, &release.fullname());
    let lease = format!("leases.coordination.k8s.io/{}", release.fullname());
    let crd = "customresourcedefinitions.apiextensions.k8s.io";
    let hotline_crd = format!("{crd}/hotlines.crisis.hotline.dev");
    let other_crd = format!("{crd}/prometheusrules.monitoring.coreos.com");
    let elsewhere = "default";
    assert_matrix(&[
        // The declarer declares and ends crises, and nothing else.
        check(&declarer, n, "patch", "crisisplans#status", true),
        check(&declarer, n, "get", "crisisplans", true),
        check(&declarer, n, "list", "crisisplans", true),
        check(&declarer, n, "list", "hotlines", true),
        check(&declarer, n, "patch", "crisisplans", false),
        check(&declarer, n, "update", "crisisplans", false),
        check(&declarer, n, "delete", "crisisplans", false),
        check(&declarer, n, "patch", "hotlines#status", false),
        check(&declarer, n, "patch", "deployments", false),
        check(&declarer, n, "patch", "deployments#scale", false),
        check(&declarer, elsewhere, "patch", "crisisplans#status", false),
        // The viewer reads.
        check(&viewer, n, "get", "crisisplans", true),
        check(&viewer, n, "list", "crisisplans", true),
        check(&viewer, n, "watch", "hotlines", true),
        check(&viewer, n, "patch", "crisisplans#status", false),
        check(&viewer, n, "patch", "crisisplans", false),
        check(&viewer, n, "patch", "deployments", false),
        // Aggregation: edit declares, view reads.
        check(&editor, n, "patch", "crisisplans#status", true),
        check(&editor, n, "patch", "crisisplans", false),
        check(&reader, n, "list", "crisisplans", true),
        check(&reader, n, "patch", "crisisplans#status", false),
        // The operator: its verbs in every namespace, nothing more.
        check(&operator, n, "patch", "deployments#scale", true),
        check(&operator, elsewhere, "patch", "deployments#scale", true),
        check(&operator, n, "patch", "statefulsets#scale", true),
        check(&operator, n, "patch", "crisisplans#status", true),
        check(&operator, n, "patch", "hotlines#status", true),
        check(&operator, n, "update", "hotlines#finalizers", true),
        check(&operator, n, "watch", "crisisplans", true),
        check(&operator, n, "create", "events.events.k8s.io", true),
        check(&operator, n, "patch", "configmaps", true),
        check(&operator, n, "get", &hotline_crd, true),
        check(&operator, n, "create", "leases.coordination.k8s.io", true),
        check(&operator, n, "update", &lease, true),
        check(&operator, n, "get", "secrets", false),
        check(&operator, n, "list", "secrets", false),
        check(&operator, n, "patch", "crisisplans", false),
        check(&operator, n, "update", "crisisplans", false),
        check(&operator, n, "patch", "hotlines", false),
        check(&operator, n, "delete", "deployments", false),
        check(&operator, n, "patch", "statefulsets", false),
        check(&operator, n, "create", "pods", false),
        check(&operator, n, "get", &other_crd, false),
        check(
            &operator,
            n,
            "update",
            "leases.coordination.k8s.io/someone-else",
            false,
        ),
        check(
            &operator,
            elsewhere,
            "create",
            "leases.coordination.k8s.io",
            false,
        ),
    ])
    .await?;
    release.uninstall()?;
    ns.cleanup().await
}

/// A kustomization in a temporary directory that installs `deploy/` into a
/// test namespace with unique names (CRDs and the Namespace left out: the
/// tests share the CRDs of crds/ and make their own namespace). Deleted on
/// drop.
struct Kustomization {
    dir: PathBuf,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    applied: bool,
}

/// `target` as a path relative to `from` (kustomize refuses absolute
/// resource paths).
fn relative_to(from: &Path, target: &Path) -> R<String> {
    let (from, target) = (from.canonicalize()?, target.canonicalize()?);
    let common = from
        .components()
        .zip(target.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = PathBuf::new();
    for _ in from.components().skip(common) {
        rel.push("..");
    }
    rel.extend(target.components().skip(common));
    Ok(rel.to_string_lossy().into_owned())
}

impl Kustomization {
    async fn new(ns: &TestNamespace) -> R<Self> {
        let dir = std::env::temp_dir().join(format!("hotline-packaging-{}", ns.name));
        std::fs::create_dir_all(&dir)?;
        let delete = |kind: &str, api_version: &str| {
            json!({
                "target": {"kind": kind},
                "patch": format!("$patch: delete\napiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: any\n"),
            })
        };
        let k = json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": ns.name,
            "nameSuffix": format!("-{}", suffix(ns)),
            "resources": [relative_to(&dir, &root().join("deploy"))?],
            "patches": [
                delete("Namespace", "v1"),
                delete("CustomResourceDefinition", "apiextensions.k8s.io/v1"),
            ],
        });
        std::fs::write(dir.join("kustomization.yaml"), serde_yaml::to_string(&k)?)?;
        Ok(Kustomization {
            dir,
            kubectl: support::kubectl_path().await?,
            kubeconfig: support::kubeconfig_path().await?,
            applied: false,
        })
    }

    fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    fn apply(&mut self) -> R<String> {
        self.applied = true;
        run(self.kubectl().arg("apply").arg("-k").arg(&self.dir))
    }

    fn delete(mut self) -> R<String> {
        self.applied = false;
        run(self
            .kubectl()
            .arg("delete")
            .arg("-k")
            .arg(&self.dir)
            .arg("--wait=true"))
    }
}

impl Drop for Kustomization {
    fn drop(&mut self) {
        if self.applied {
            let _ = self
                .kubectl()
                .arg("delete")
                .arg("-k")
                .arg(&self.dir)
                .args(["--ignore-not-found", "--wait=false"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `kubectl apply -k` of deploy/ (renamed into a test namespace) creates the
/// operator and its RBAC; its pods are admitted under the restricted Pod
/// Security Standard the base's Namespace enforces.
#[tokio::test]
async fn kustomize_base_applies_to_the_cluster() -> R {
    support::install_crds().await?;
    let ns = TestNamespace::new("kustomize-apply").await?;
    run(support::kubectl().await?.args([
        "label",
        "namespace",
        &ns.name,
        "pod-security.kubernetes.io/enforce=restricted",
    ]))?;
    let mut k = Kustomization::new(&ns).await?;
    let applied = k.apply()?;
    let sfx = suffix(&ns);
    for expected in [
        format!("deployment.apps/hotline-operator-{sfx} created"),
        format!("clusterrole.rbac.authorization.k8s.io/hotline-operator-{sfx} created"),
        format!("clusterrole.rbac.authorization.k8s.io/hotline-crisis-declarer-{sfx} created"),
        format!("clusterrolebinding.rbac.authorization.k8s.io/hotline-operator-{sfx} created"),
        format!("role.rbac.authorization.k8s.io/hotline-operator-leader-election-{sfx} created"),
        format!("service/hotline-operator-metrics-{sfx} created"),
        format!("poddisruptionbudget.policy/hotline-operator-{sfx} created"),
    ] {
        ensure!(
            applied.contains(&expected),
            "{expected:?} not in:\n{applied}"
        );
    }
    run(support::kubectl().await?.args([
        "wait",
        "--for=condition=Available",
        "--timeout=60s",
        "-n",
        &ns.name,
        &format!("deployment/hotline-operator-{sfx}"),
    ]))?;
    assert_matrix(&[check(
        &sa(&ns.name, &format!("hotline-operator-{sfx}")),
        &ns.name,
        "patch",
        "deployments#scale",
        true,
    )])
    .await?;
    k.delete()?;
    ns.cleanup().await
}

/// A kubeconfig for the test cluster that authenticates with `token`.
async fn token_kubeconfig(token: &str) -> R<String> {
    let path = support::kubeconfig_path().await?;
    let admin = kube::config::Kubeconfig::read_from(&path)?;
    let context = admin
        .contexts
        .iter()
        .find(|c| Some(&c.name) == admin.current_context.as_ref())
        .and_then(|c| c.context.as_ref())
        .context("current context")?;
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .context("current cluster")?;
    let mut c = json!({"server": cluster.server.clone().context("server")?});
    if let Some(data) = &cluster.certificate_authority_data {
        c["certificate-authority-data"] = json!(data);
    } else if let Some(file) = &cluster.certificate_authority {
        let base = path.parent().unwrap_or(Path::new("/"));
        c["certificate-authority"] = json!(base.join(file));
    }
    Ok(serde_yaml::to_string(&json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": c}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "operator"}}],
        "current-context": "operator",
    }))?)
}

fn phase(plan: &CrisisPlan) -> String {
    serde_json::to_value(plan)
        .ok()
        .and_then(|v| {
            v.pointer("/status/phase")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// A scratch directory, removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The chart installed in namespaced scope into a test namespace, a
/// `declarer` ServiceAccount bound to the declarer ClusterRole, and a
/// kubeconfig that holds the operator ServiceAccount's token (`kubectl
/// create token`) and nothing else.
struct OperatorSetup {
    release: Release,
    namespace: String,
    /// The operator's ServiceAccount, also the Lease name.
    account: String,
    declarer: String,
    kubeconfig: PathBuf,
    work: WorkDir,
    leases: Api<Lease>,
}

impl OperatorSetup {
    async fn new(ns: &TestNamespace) -> R<Self> {
        let n = ns.name.clone();
        let release = Release::install(
            &format!("hl-{}", suffix(ns)),
            &n,
            &["--values", &ci_values("namespaced-values.yaml")],
        )
        .await?;
        let account = release.fullname();
        run(support::kubectl()
            .await?
            .args(["create", "serviceaccount", "declarer", "-n", &n]))?;
        run(support::kubectl().await?.args([
            "create",
            "rolebinding",
            "declarer",
            "-n",
            &n,
            &format!("--clusterrole={}", release.declarer()),
            &format!("--serviceaccount={n}:declarer"),
        ]))?;
        let operator = sa(&n, &account);
        let declarer = sa(&n, "declarer");
        assert_matrix(&[
            check(
                &operator,
                &n,
                "get",
                &format!("{CRD_RESOURCE}/{}", CRDS[0]),
                true,
            ),
            check(&operator, &n, "list", "hotlines", true),
            check(
                &operator,
                &n,
                "update",
                &format!("leases.coordination.k8s.io/{account}"),
                true,
            ),
            check(&declarer, &n, "patch", "crisisplans#status", true),
            // Namespaced scope: nothing outside the watched namespace.
            check(&operator, "default", "list", "hotlines", false),
            check(&operator, "default", "patch", "deployments#scale", false),
        ])
        .await?;
        let token = run(support::kubectl().await?.args([
            "create",
            "token",
            &account,
            "-n",
            &n,
            "--duration=1h",
        ]))?;
        let work = WorkDir(std::env::temp_dir().join(format!("hotline-packaging-{n}")));
        std::fs::create_dir_all(&work.0)?;
        let kubeconfig = work.0.join("kubeconfig");
        std::fs::write(&kubeconfig, token_kubeconfig(token.trim()).await?)?;
        Ok(OperatorSetup {
            release,
            namespace: n,
            account,
            declarer,
            kubeconfig,
            work,
            leases: ns.api(),
        })
    }

    /// Patches the plan's status as the declarer ServiceAccount, the way
    /// automation declares (`patch` with a declaration) and ends (`null`).
    async fn declare(&self, plan: &str, declaration: Value) -> R {
        let patch = json!({"status": {"declaration": declaration}}).to_string();
        run(support::kubectl().await?.args([
            "patch",
            "crisisplan",
            plan,
            "-n",
            &self.namespace,
            "--subresource=status",
            "--type=merge",
            &format!("--as={}", self.declarer),
            "-p",
            &patch,
        ]))?;
        Ok(())
    }

    async fn lease_holder(&self) -> R<String> {
        Ok(self
            .leases
            .get_opt(&self.account)
            .await?
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default())
    }

    fn finish(self) -> R {
        self.release.uninstall()
    }
}

/// `target/debug/hotline-operator` run with the setup's kubeconfig in
/// namespaced scope with leader election, logging to a file. Killed
/// (SIGKILL) by [`OperatorProcess::kill`] or when dropped.
struct OperatorProcess {
    name: String,
    log: PathBuf,
    metrics: std::net::SocketAddr,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    exited: tokio::sync::watch::Receiver<Option<String>>,
}

impl OperatorProcess {
    fn start(setup: &OperatorSetup, name: &str, extra: &[&str]) -> R<Self> {
        // A free port for /metrics, so the test can read the leader gauge.
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = setup.work.0.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hotline-operator"))
            .env_clear()
            .env("KUBECONFIG", &setup.kubeconfig)
            .env("POD_NAME", name)
            .env("POD_NAMESPACE", &setup.namespace)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .arg(format!("--metrics-addr={metrics}"))
            .arg("--log-format=text")
            .arg(format!("--namespace={}", setup.namespace))
            .arg("--leader-election")
            .arg(format!("--lease-name={}", setup.account))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .context("starting target/debug/hotline-operator")?;
        let (kill, kill_rx) = tokio::sync::oneshot::channel::<()>();
        let (exited_tx, exited) = tokio::sync::watch::channel(None);
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let _ = exited_tx.send(Some(format!("{status:?}")));
        });
        Ok(OperatorProcess {
            name: name.to_owned(),
            log,
            metrics,
            kill: Some(kill),
            exited,
        })
    }

    /// Fails if the process exited on its own.
    fn alive(&self) -> R {
        if let Some(status) = self.exited.borrow().as_ref() {
            bail!("operator {} exited: {status}", self.name);
        }
        Ok(())
    }

    /// SIGKILL, and wait until the process is gone.
    async fn kill(&mut self) -> R {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        self.exited.wait_for(Option::is_some).await?;
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Log lines where the apiserver refused a request.
    fn refusals(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("forbidden") || l.contains("Forbidden") || l.contains(" 403"))
            .map(str::to_owned)
            .collect()
    }

    /// `GET path` on the metrics port: (status code, body).
    async fn get(&self, path: &str) -> R<(u16, String)> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("no HTTP status")?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("");
        Ok((code, body.to_owned()))
    }

    /// The `hotline_operator_leader` gauge (1 on the Lease holder).
    async fn leader_gauge(&self) -> R<Option<f64>> {
        let (_, body) = self.get("/metrics").await?;
        Ok(body
            .lines()
            .find_map(|l| l.strip_prefix("hotline_operator_leader "))
            .and_then(|v| v.trim().parse().ok()))
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

/// On error, appends the tail of every operator's log; on success, fails
/// if an operator was refused anything by the chart's RBAC.
fn with_logs(outcome: R, operators: &[&OperatorProcess]) -> R {
    if let Err(e) = outcome {
        let logs: Vec<String> = operators
            .iter()
            .map(|o| format!("--- {} log, last 40 lines ---\n{}", o.name, o.tail()))
            .collect();
        bail!("{e:?}\n{}", logs.join("\n"));
    }
    for o in operators {
        let refused = o.refusals();
        ensure!(
            refused.is_empty(),
            "{} was refused something with the chart's RBAC:\n{}",
            o.name,
            refused.join("\n")
        );
    }
    Ok(())
}

/// `status.phase` of plan `name` is `want`.
fn phase_is<'a>(
    plans: &'a Api<CrisisPlan>,
    name: &'a str,
    want: &'a str,
) -> impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = R<bool>> + 'a>> {
    move || {
        Box::pin(async move {
            Ok(plans
                .get_opt(name)
                .await?
                .is_some_and(|p| phase(&p) == want))
        })
    }
}

/// Events in the namespace reported by the given operator instance.
async fn events_from(events: &Api<Event>, instance: &str) -> R<Vec<Event>> {
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.reporting_controller.as_deref() == Some("hotline-operator")
                && e.reporting_instance.as_deref() == Some(instance)
        })
        .collect())
}

fn declaration(scenario: &str) -> Value {
    json!({"scenario": scenario, "reason": "packaging test", "declaredBy": "tests/packaging", "incidentRef": "INC-7"})
}

/// The operator binary, authenticated as the chart's ServiceAccount (a token
/// from `kubectl create token`) in namespace-scoped mode with leader
/// election, runs a whole crisis declared by the declarer role: standby,
/// declare, surge to Active (a managed Deployment and a referenced one
/// through /scale), end, back to Standby; it is never refused anything.
#[tokio::test]
async fn operator_with_chart_rbac_runs_a_whole_crisis() -> R {
    support::install_crds().await?;
    let ns = TestNamespace::new("chart-operator").await?;
    let setup = OperatorSetup::new(&ns).await?;

    let deployments: Api<Deployment> = ns.api();
    let sessions: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "agent-sessions"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "agent-sessions"}},
            "template": {
                "metadata": {"labels": {"app": "agent-sessions"}},
                "spec": {"containers": [{"name": "sessions", "image": "example.invalid/sessions:1"}]},
            },
        },
    }))?;
    fixtures::create(&deployments, &sessions).await?;
    fixtures::create(
        &ns.api::<Hotline>(),
        &fixtures::hotline(
            "care",
            5,
            vec![
                fixtures::managed("gateway", 10, Duration::ZERO),
                json!({
                    "name": "sessions", "callsPerReplica": 10, "minReplicas": 1,
                    "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "agent-sessions"},
                }),
            ],
        )?,
    )
    .await?;
    let plans: Api<CrisisPlan> = ns.api();
    fixtures::create(
        &plans,
        &fixtures::plan("retail", &["care"], "1m", &[("it-outage", 40)], 100, "1s")?,
    )
    .await?;

    let operator = OperatorProcess::start(&setup, "operator-0", &[])?;
    let gateway = hotline_operator::controller::hotline::child_name("care", "gateway");
    let scenario = async {
        let op = &operator;
        let mut standby = phase_is(&plans, "retail", "Standby");
        wait_for("the plan at Standby", Duration::from_secs(30), || {
            let check = standby();
            async move {
                op.alive()?;
                check.await
            }
        })
        .await?;
        wait_for("the gateway Deployment", Duration::from_secs(30), || {
            fixtures::replicas(&deployments, &gateway)
        })
        .await?;

        setup.declare("retail", declaration("it-outage")).await?;
        let mut active = phase_is(&plans, "retail", "Active");
        wait_for("the plan Active", Duration::from_secs(30), || {
            let check = active();
            async move {
                op.alive()?;
                check.await
            }
        })
        .await?;
        ensure!(
            fixtures::replicas(&deployments, &gateway).await? == Some(4),
            "gateway surged to 4"
        );
        ensure!(
            fixtures::replicas(&deployments, "agent-sessions").await? == Some(4),
            "agent-sessions surged to 4 through /scale"
        );

        setup.declare("retail", Value::Null).await?;
        wait_for(
            "the plan back at Standby",
            Duration::from_secs(30),
            phase_is(&plans, "retail", "Standby"),
        )
        .await?;
        wait_for(
            "the gateway back at 1 replica",
            Duration::from_secs(30),
            || async {
                fixtures::replicas(&deployments, &gateway)
                    .await
                    .map(|r| r == Some(1))
            },
        )
        .await?;

        let holder = setup.lease_holder().await?;
        ensure!(holder == "operator-0", "Lease held by {holder:?}");
        let events: Api<Event> = ns.api();
        wait_for(
            "Events from the operator",
            Duration::from_secs(10),
            || async {
                events_from(&events, "operator-0")
                    .await
                    .map(|e| !e.is_empty())
            },
        )
        .await?;
        Ok(())
    };
    let outcome = scenario.await;
    with_logs(outcome, &[&operator])?;
    drop(operator);
    setup.finish()?;
    ns.cleanup().await
}

/// Two operator processes with the chart's RBAC and leader election: only
/// the Lease holder writes; SIGKILL of the leader mid-surge lets the other
/// take the Lease within the lease duration plus 2 s and finish the surge
/// within the plan's budget. Prints the measured takeover.
#[tokio::test]
async fn leader_killed_mid_surge_the_standby_replica_finishes_it() -> R {
    const LEASE_DURATION: Duration = Duration::from_secs(4);
    let lease_flags = [
        "--lease-duration=4",
        "--renew-deadline=3",
        "--retry-period=1",
    ];
    support::install_crds().await?;
    let ns = TestNamespace::new("chart-failover").await?;
    let setup = OperatorSetup::new(&ns).await?;
    let deployments: Api<Deployment> = ns.api();
    // Pods Ready 3 s after they start: the leader is killed while surging.
    fixtures::create(
        &ns.api::<Hotline>(),
        &fixtures::hotline(
            "care",
            5,
            vec![fixtures::managed("gateway", 10, Duration::from_secs(3))],
        )?,
    )
    .await?;
    let plans: Api<CrisisPlan> = ns.api();
    fixtures::create(
        &plans,
        &fixtures::plan("retail", &["care"], "1m", &[("it-outage", 60)], 100, "1s")?,
    )
    .await?;
    let events: Api<Event> = ns.api();
    let gateway = hotline_operator::controller::hotline::child_name("care", "gateway");

    let mut a = OperatorProcess::start(&setup, "operator-a", &lease_flags)?;
    let mut b: Option<OperatorProcess> = None;
    let outcome = async {
        let a_ref = &a;
        wait_for(
            "operator-a to hold the Lease",
            Duration::from_secs(20),
            || async {
                a_ref.alive()?;
                Ok::<_, anyhow::Error>(setup.lease_holder().await? == "operator-a")
            },
        )
        .await?;
        wait_for(
            "the plan at Standby",
            Duration::from_secs(30),
            phase_is(&plans, "retail", "Standby"),
        )
        .await?;
        let follower = b.insert(OperatorProcess::start(&setup, "operator-b", &lease_flags)?);
        let b_ref = &*follower;
        wait_for(
            "operator-b ready as a follower",
            Duration::from_secs(20),
            || async {
                b_ref.alive()?;
                let (code, _) = b_ref.get("/readyz").await?;
                Ok::<_, anyhow::Error>(code == 200 && b_ref.leader_gauge().await? == Some(0.0))
            },
        )
        .await?;
        ensure!(
            a.leader_gauge().await? == Some(1.0),
            "operator-a reports leading"
        );

        setup.declare("retail", declaration("it-outage")).await?;
        wait_for(
            "operator-a to surge the gateway to 6",
            Duration::from_secs(20),
            || async {
                fixtures::replicas(&deployments, &gateway)
                    .await
                    .map(|r| r == Some(6))
            },
        )
        .await?;
        let plan = plans.get("retail").await?;
        ensure!(
            phase(&plan) == "Surging",
            "killed mid-surge, not at {}",
            phase(&plan)
        );
        let early = events_from(&events, "operator-b").await?;
        ensure!(early.is_empty(), "the follower wrote Events: {early:?}");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let operators: Vec<&OperatorProcess> = std::iter::once(&a).chain(b.as_ref()).collect();
    with_logs(outcome, &operators)?;
    let b = b.context("operator-b")?;

    let killed = std::time::Instant::now();
    a.kill().await?;
    let outcome = async {
        wait_for(
            "operator-b to take the Lease",
            LEASE_DURATION + Duration::from_secs(10),
            || async {
                b.alive()?;
                Ok::<_, anyhow::Error>(setup.lease_holder().await? == "operator-b")
            },
        )
        .await?;
        let takeover = killed.elapsed();
        eprintln!(
            "leader takeover after SIGKILL: {:.2}s (lease duration {}s, retry period 1s)",
            takeover.as_secs_f64(),
            LEASE_DURATION.as_secs()
        );
        ensure!(
            takeover <= LEASE_DURATION + Duration::from_secs(2),
            "takeover took {takeover:?}"
        );
        wait_for(
            "the plan Active, finished by operator-b",
            Duration::from_secs(30),
            phase_is(&plans, "retail", "Active"),
        )
        .await?;
        let plan = serde_json::to_value(plans.get("retail").await?)?;
        ensure!(
            plan.pointer("/status/current/budgetMet") == Some(&json!(true)),
            "budget met: {}",
            plan["status"]["current"]
        );
        wait_for(
            "a SurgeReady Event from operator-b",
            Duration::from_secs(10),
            || async {
                events_from(&events, "operator-b")
                    .await
                    .map(|e| e.iter().any(|e| e.reason.as_deref() == Some("SurgeReady")))
            },
        )
        .await?;
        ensure!(
            b.leader_gauge().await? == Some(1.0),
            "operator-b reports leading"
        );
        Ok(())
    }
    .await;
    with_logs(outcome, &[&a, &b])?;
    drop(b);
    setup.finish()?;
    ns.cleanup().await
}
