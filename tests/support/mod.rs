//! Test support for integration tests against the local kwok cluster
//! (`hack/cluster`, docs/LOCAL-CLUSTER.md). Use it from a test file with
//! `mod support;`.
//!
//! * [`kubeconfig_path`]: `$KUBECONFIG` if set (you manage that cluster),
//!   otherwise `hack/cluster up` runs once per test process and the path comes
//!   from `hack/cluster env`.
//! * [`client`]: a `kube::Client` built from exactly that kubeconfig (never
//!   from ambient in-cluster config or `~/.kube/config`).
//! * [`TestNamespace`]: a fresh namespace per test, deleted by
//!   [`TestNamespace::cleanup`] or, as a fallback, on drop. Set
//!   `HOTLINE_TEST_KEEP_NAMESPACES=1` to keep them for debugging; remove
//!   leftovers with `hack/cluster kubectl delete ns -l hotline-operator.test=true`.
//! * [`install_crds`]: server-side applies every `crds/*.yaml` and waits until
//!   each CRD is Established (once per process).
//! * [`wait_for`]: poll an async check every 50ms until it yields a value, or
//!   fail naming what was awaited. Tests synchronise with it, never with sleeps.
//! * [`kubectl_path`] / [`kubectl`]: the kubectl built for this cluster
//!   (`/usr/bin/kubectl` on the dev machine is an unrelated old client).
#![allow(dead_code)]

pub mod fixtures;
pub mod operator;

use std::collections::BTreeMap;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

/// Label put on every test namespace.
pub const TEST_NAMESPACE_LABEL: &str = "hotline-operator.test";
/// Field manager for server-side apply from tests.
pub const FIELD_MANAGER: &str = "hotline-operator-tests";
/// Poll interval of [`wait_for`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Repository root (where Cargo.toml, hack/ and crds/ live).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn hack_cluster() -> Command {
    Command::new(repo_root().join("hack/cluster"))
}

/// Runs `hack/cluster <args>` and returns its stdout; on failure the error
/// carries the command, exit status and stderr.
fn run_hack_cluster(args: &[&str]) -> anyhow::Result<String> {
    let out = hack_cluster()
        .args(args)
        .output()
        .with_context(|| format!("running hack/cluster {}", args.join(" ")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "`hack/cluster {}` failed ({}):\n{stderr}",
            args.join(" "),
            out.status
        );
    }
    if !stderr.trim().is_empty() {
        eprintln!("{}", stderr.trim_end());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Parses the `export KUBECONFIG=...` line printed by `hack/cluster env`.
fn parse_env_kubeconfig(env_output: &str) -> Option<PathBuf> {
    env_output.lines().find_map(|line| {
        let v = line.trim().strip_prefix("export KUBECONFIG=")?;
        // bash printf %q: our paths need no quoting; still accept '...' / "...".
        let v = v.trim_matches(|c| c == '\'' || c == '"');
        Some(PathBuf::from(v.replace("\\ ", " ")))
    })
}

static KUBECONFIG: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();

/// Path of the kubeconfig tests use. Brings the local cluster up (once per
/// process, `hack/cluster up` is a no-op when it is already healthy) unless
/// `$KUBECONFIG` is set.
pub async fn kubeconfig_path() -> anyhow::Result<PathBuf> {
    let res = KUBECONFIG
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| -> Result<PathBuf, String> {
                if let Some(kc) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
                    // A list (a:b) is not supported by Kubeconfig::read_from: take the first.
                    let first = std::env::split_paths(&kc)
                        .next()
                        .ok_or("KUBECONFIG is set but empty")?;
                    eprintln!(
                        "support: using KUBECONFIG={} (not starting hack/cluster)",
                        first.display()
                    );
                    return Ok(first);
                }
                let started = Instant::now();
                run_hack_cluster(&["up"]).map_err(|e| format!("{e:#}"))?;
                let env = run_hack_cluster(&["env"]).map_err(|e| format!("{e:#}"))?;
                let path = parse_env_kubeconfig(&env).ok_or_else(|| {
                    format!("no `export KUBECONFIG=` line in `hack/cluster env` output: {env:?}")
                })?;
                eprintln!(
                    "support: cluster ready in {:.1}s, KUBECONFIG={}",
                    started.elapsed().as_secs_f64(),
                    path.display()
                );
                Ok(path)
            })
            .await
            .unwrap_or_else(|e| Err(format!("hack/cluster up panicked: {e}")))
        })
        .await;
    res.clone()
        .map_err(|e| anyhow!("cluster not available: {e}"))
}

/// A client for the test cluster, built explicitly from [`kubeconfig_path`].
/// Build one per test: a `kube::Client` is bound to the tokio runtime that
/// created it and every `#[tokio::test]` has its own runtime.
pub async fn client() -> anyhow::Result<Client> {
    let path = kubeconfig_path().await?;
    let kubeconfig = Kubeconfig::read_from(&path)
        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    Client::try_from(config).context("building kube client")
}

static BIN_DIR: OnceCell<Result<PathBuf, String>> = OnceCell::const_new();

/// Directory with the binaries built for the cluster (kubectl, helm, kwokctl, ...).
pub async fn bin_dir() -> anyhow::Result<PathBuf> {
    let res = BIN_DIR
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| {
                run_hack_cluster(&["bin-dir"])
                    .map(|s| PathBuf::from(s.trim()))
                    .map_err(|e| format!("{e:#}"))
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        })
        .await;
    res.clone().map_err(|e| anyhow!(e))
}

/// Path of the kubectl built for the cluster (not `/usr/bin/kubectl`).
pub async fn kubectl_path() -> anyhow::Result<PathBuf> {
    let p = bin_dir().await?.join("kubectl");
    anyhow::ensure!(
        p.is_file(),
        "{} missing: run hack/build-binaries.sh",
        p.display()
    );
    Ok(p)
}

/// A `kubectl` command already pointed at the test cluster (`--kubeconfig`).
pub async fn kubectl() -> anyhow::Result<Command> {
    let mut cmd = Command::new(kubectl_path().await?);
    cmd.arg("--kubeconfig").arg(kubeconfig_path().await?);
    Ok(cmd)
}

/// Outcome of one check in [`wait_for`]: `true` / `Some(v)` / `Ok(Some(v))`
/// finish the wait; `false` / `None` / `Ok(None)` / `Err(e)` poll again (the
/// last error is reported if the deadline passes).
pub trait CheckOutcome {
    type Output;
    fn into_outcome(self) -> Result<Option<Self::Output>, String>;
}
impl CheckOutcome for bool {
    type Output = ();
    fn into_outcome(self) -> Result<Option<()>, String> {
        Ok(self.then_some(()))
    }
}
impl<T> CheckOutcome for Option<T> {
    type Output = T;
    fn into_outcome(self) -> Result<Option<T>, String> {
        Ok(self)
    }
}
impl<T, E: Display> CheckOutcome for Result<Option<T>, E> {
    type Output = T;
    fn into_outcome(self) -> Result<Option<T>, String> {
        self.map_err(|e| e.to_string())
    }
}
impl<E: Display> CheckOutcome for Result<bool, E> {
    type Output = ();
    fn into_outcome(self) -> Result<Option<()>, String> {
        self.map(|b| b.then_some(())).map_err(|e| e.to_string())
    }
}

/// Polls `check` every [`POLL_INTERVAL`] until it yields a value (see
/// [`CheckOutcome`]) and returns it, or fails once `timeout` has passed with
/// an error naming `what`, the number of checks and the last error. A check
/// that hangs is cut off at the deadline too.
pub async fn wait_for<F, Fut, O>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> anyhow::Result<O::Output>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
    O: CheckOutcome,
{
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut attempts = 0u64;
    let mut last_error: Option<String> = None;
    loop {
        attempts += 1;
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(outcome) => match outcome.into_outcome() {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last_error = Some(e),
            },
            Err(_) => {
                last_error = Some("the check itself did not finish before the deadline".into())
            }
        }
        if tokio::time::Instant::now() + POLL_INTERVAL > deadline {
            let last = last_error
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default();
            bail!(
                "timed out after {:.1}s waiting for {what} ({attempts} checks){last}",
                start.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Watch-based wait: until object `name` satisfies `cond` (see
/// `kube::runtime::wait::conditions`), returning the object; fails naming
/// `what` when `timeout` passes.
pub async fn await_object<K>(
    api: Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    cond: impl Condition<K>,
) -> anyhow::Result<Option<K>>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api, name, cond)).await {
        Ok(res) => res.with_context(|| format!("watching for {what}")),
        Err(_) => bail!(
            "timed out after {:.1}s waiting for {what}",
            timeout.as_secs_f64()
        ),
    }
}

static NS_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Random-enough lowercase suffix: std's per-process random hash keys mixed
/// with time, pid and a counter.
fn random_suffix(len: usize) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.write_u64(NS_COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut n = h.finish();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| {
            let c = ALPHABET[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

/// `test-<name>-<suffix>`, a valid DNS label (lowercase, [a-z0-9-], <= 63).
fn namespace_name(test_name: &str) -> String {
    let mut slug: String = test_name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while slug.contains("--") {
        slug = slug.replace("--", "-");
    }
    let slug: String = slug
        .trim_matches('-')
        .chars()
        .take(63 - "test--".len() - 6)
        .collect();
    let slug = slug.trim_end_matches('-');
    format!("test-{slug}-{}", random_suffix(6))
}

/// A fresh namespace for one test. Call [`TestNamespace::cleanup`] at the end
/// of the test; if the test fails first, drop deletes the namespace with the
/// built kubectl (`--wait=false`).
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    cleaned: bool,
}

impl TestNamespace {
    /// Creates `test-<test_name>-<random>` (labelled
    /// `hotline-operator.test=true`) and waits until its `default`
    /// ServiceAccount exists, so pods can be created right away.
    pub async fn new(test_name: &str) -> anyhow::Result<Self> {
        let client = client().await?;
        let name = namespace_name(test_name);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    TEST_NAMESPACE_LABEL.to_string(),
                    "true".to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        let this = TestNamespace {
            client: client.clone(),
            kubeconfig: kubeconfig_path().await?,
            kubectl: kubectl_path().await?,
            name,
            cleaned: false,
        };
        let sas: Api<ServiceAccount> = Api::namespaced(client, &this.name);
        wait_for(
            &format!("ServiceAccount {}/default", this.name),
            Duration::from_secs(30),
            || async { sas.get_opt("default").await.map(|sa| sa.map(|_| ())) },
        )
        .await?;
        Ok(this)
    }

    /// `Api<K>` for this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    fn keep() -> bool {
        std::env::var("HOTLINE_TEST_KEEP_NAMESPACES").is_ok_and(|v| !v.is_empty() && v != "0")
    }

    /// Deletes the namespace (does not wait for the namespace controller to
    /// finish, which takes a few seconds).
    pub async fn cleanup(mut self) -> anyhow::Result<()> {
        self.cleaned = true;
        if Self::keep() {
            eprintln!(
                "support: keeping namespace {} (HOTLINE_TEST_KEEP_NAMESPACES)",
                self.name
            );
            return Ok(());
        }
        match Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting namespace {}", self.name)),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.cleaned || Self::keep() {
            return;
        }
        // Synchronous and runtime-independent: the test's runtime may be gone.
        let res = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .output();
        match res {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "support: deleting namespace {} failed: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("support: deleting namespace {}: {e}", self.name),
        }
    }
}

/// Every CustomResourceDefinition in `dir/*.yaml` (multi-document files allowed;
/// other kinds are ignored), in file name order.
pub fn read_crds(dir: &Path) -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("listing {}", dir.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    files.sort();
    let mut crds = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
                .with_context(|| format!("parsing document {i} of {}", file.display()))?;
            if value.is_null()
                || value.get("kind").and_then(|k| k.as_str()) != Some("CustomResourceDefinition")
            {
                continue;
            }
            let crd: CustomResourceDefinition =
                serde_yaml::from_value(value).with_context(|| {
                    format!("document {i} of {} is not a valid CRD", file.display())
                })?;
            crds.push(crd);
        }
    }
    Ok(crds)
}

/// Server-side applies every CRD from `dir` and waits (up to `timeout`) until
/// each is Established. Returns the CRD names.
pub async fn apply_crds_from(
    client: &Client,
    dir: &Path,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let crds = read_crds(dir)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for crd in &crds {
        let name = crd
            .metadata
            .name
            .clone()
            .ok_or_else(|| anyhow!("a CRD in {} has no metadata.name", dir.display()))?;
        api.patch(&name, &pp, &Patch::Apply(crd))
            .await
            .with_context(|| format!("server-side applying CRD {name}"))?;
        names.push(name);
    }
    for name in &names {
        wait_for(
            &format!("CRD {name} to be Established"),
            timeout,
            || async {
                let crd = api.get_opt(name).await?;
                Ok::<_, kube::Error>(crd.is_some_and(|c| {
                    c.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                }))
            },
        )
        .await?;
    }
    Ok(names)
}

static CRDS: OnceCell<Result<Vec<String>, String>> = OnceCell::const_new();

/// Installs the repository's CRDs (`crds/*.yaml`) once per test process and
/// waits until they are Established. Returns the CRD names.
pub async fn install_crds() -> anyhow::Result<Vec<String>> {
    let res = CRDS
        .get_or_init(|| async {
            let client = match client().await {
                Ok(c) => c,
                Err(e) => return Err(format!("{e:#}")),
            };
            apply_crds_from(&client, &repo_root().join("crds"), Duration::from_secs(30))
                .await
                .map_err(|e| format!("{e:#}"))
        })
        .await;
    res.clone().map_err(|e| anyhow!("installing CRDs: {e}"))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn namespace_names_are_dns_labels() {
        let n = namespace_name(
            "Cluster_Smoke::scale 1->50 with a really long test name that keeps going on",
        );
        assert!(n.len() <= 63, "{n}");
        assert!(n.starts_with("test-cluster-smoke-scale-1-50"), "{n}");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{n}"
        );
        assert!(!n.contains("--"), "{n}");
        assert_ne!(namespace_name("x"), namespace_name("x"));
    }

    #[tokio::test]
    async fn wait_for_names_what_it_awaited_and_the_last_error() {
        let err = wait_for("the impossible", Duration::from_millis(200), || async {
            false
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("waiting for the impossible"), "{err}");
        let err = wait_for("a flaky thing", Duration::from_millis(200), || async {
            Err::<Option<()>, _>("boom")
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("a flaky thing") && err.contains("last error: boom"),
            "{err}"
        );
        let mut n = 0;
        let v = wait_for("the third check", Duration::from_secs(5), || {
            n += 1;
            let n = n;
            async move { (n == 3).then_some(n) }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn parses_env_output() {
        let out = "export KUBECONFIG=/root/.cache/hotline-operator/kubeconfig\nexport PATH=/x:\"$PATH\"\n";
        assert_eq!(
            parse_env_kubeconfig(out),
            Some(PathBuf::from("/root/.cache/hotline-operator/kubeconfig"))
        );
    }
}
