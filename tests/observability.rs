//! Observability: the alert rules, the Grafana dashboard and the runbook
//! against the metrics the operator really registers, promtool's own checks,
//! and end to end a real Prometheus (Debian's `prometheus`, from
//! `hack/install-prometheus.sh`) scraping the operator binary with the
//! shipped rules while a crisis misses its budget.
//!
//! The end-to-end test loads deploy/prometheus/rules.yaml unchanged: the
//! alerts it asserts (CrisisDeclared, CrisisSurgeBudgetExceeded) have no
//! `for:`, so no shortened copy is needed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use hotline_operator::api::{CrisisPlan, Hotline, Phase};
use hotline_operator::metrics::Metrics;
use k8s_openapi::api::apps::v1::Deployment;
use regex::Regex;
use serde_json::Value;
use support::fixtures::{self, create, declare, end, managed};
use support::{TestNamespace, install_crds, repo_root, wait_for};

type R<T = ()> = anyhow::Result<T>;

const RULES: &str = "deploy/prometheus/rules.yaml";
const RULES_TEST: &str = "deploy/prometheus/rules-test.yaml";
const DASHBOARD: &str = "deploy/grafana/hotline-operator.json";
const OPERATIONS: &str = "docs/OPERATIONS.md";
/// Series Prometheus itself makes, which rules and dashboards may use.
const PROMETHEUS_SERIES: [&str; 2] = ["up", "ALERTS"];

fn read(path: &str) -> R<String> {
    std::fs::read_to_string(repo_root().join(path)).with_context(|| format!("reading {path}"))
}

// ---------------------------------------------------------------------------
// Metric names in PromQL, rules, dashboard.

/// Metric names an operator process can expose (histograms with their
/// `_bucket`, `_sum`, `_count` series) plus Prometheus' own series.
fn allowed_names() -> BTreeSet<String> {
    let metrics = Metrics::new();
    let mut out = BTreeSet::new();
    for n in metrics.names() {
        out.insert(n.clone());
        for suffix in ["_bucket", "_sum", "_count"] {
            out.insert(format!("{n}{suffix}"));
        }
    }
    out.extend(PROMETHEUS_SERIES.iter().map(|s| s.to_string()));
    out
}

/// Metric names a PromQL expression selects. Grafana variables (`$job`,
/// `${datasource}`, `$__rate_interval`) are dropped first.
fn metric_names_in(expr: &str) -> BTreeSet<String> {
    let subs = [
        (r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", " "),
        (r#""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"#, "\"\""),
        (r"\{[^}]*\}", " "),
        (r"\[[^\]]*\]", " "),
        (
            r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
            " ",
        ),
    ];
    let mut s = expr.to_owned();
    for (re, with) in subs {
        s = Regex::new(re)
            .expect("valid regex")
            .replace_all(&s, with)
            .into_owned();
    }
    const KEYWORDS: [&str; 12] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
    ];
    let ident = Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").expect("valid regex");
    let mut out = BTreeSet::new();
    for m in ident.find_iter(&s) {
        let before = s[..m.start()].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
            continue; // the exponent or unit of a number
        }
        let after = s[m.end()..].trim_start().chars().next();
        if after == Some('(') {
            continue; // a function or an aggregation
        }
        let word = m.as_str();
        if KEYWORDS.contains(&word.to_lowercase().as_str()) || word.eq_ignore_ascii_case("nan") {
            continue;
        }
        out.insert(word.to_owned());
    }
    out
}

#[test]
fn promql_name_extraction() {
    let got = metric_names_in(
        r#"max by (namespace, plan) (time() - (a_total{x="y",z=~"$ns"} - b) > 1e3 * 0.2)
           and on(job, instance) c == 1 * on(p) group_left(s, d) (histogram_quantile(0.9, sum by (le) (rate(d_bucket{j=~"$job"}[$__rate_interval]))))
           or ALERTS{alertname=~"Crisis.*"} unless e offset 5m"#,
    );
    let want: BTreeSet<String> = ["a_total", "b", "c", "d_bucket", "ALERTS", "e"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}

/// Every alerting rule of the rules file: (group, rule as YAML).
fn rules() -> R<Vec<serde_yaml::Value>> {
    let doc: serde_yaml::Value = serde_yaml::from_str(&read(RULES)?)?;
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().context("groups")? {
        for r in g["rules"].as_sequence().context("rules")? {
            out.push(r.clone());
        }
    }
    Ok(out)
}

/// GitHub's anchor for a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => Some(c),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

fn doc_anchors() -> R<BTreeSet<String>> {
    Ok(read(OPERATIONS)?
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect())
}

#[test]
fn alert_rules_use_exposed_metrics_and_have_runbooks() -> R {
    let allowed = allowed_names();
    let anchors = doc_anchors()?;
    let rules = rules()?;
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for required in [
        "CrisisDeclared",
        "CrisisSurgeBudgetAtRisk",
        "CrisisSurgeBudgetExceeded",
        "HotlineStandbyBelowTarget",
        "HotlineOperatorReconcileErrors",
        "HotlineOperatorDown",
        "CrisisDrillOverdue",
    ] {
        ensure!(names.contains(required), "no alert {required} in {RULES}");
    }
    let template_names = Regex::new(r"\b(?:hotline|crisisplan)_[a-z_]+\b")?;
    let test_file = read(RULES_TEST)?;
    for r in &rules {
        let alert = r["alert"].as_str().context("only alerting rules here")?;
        let expr = r["expr"].as_str().context("expr")?;
        let used = metric_names_in(expr);
        let unknown: Vec<_> = used.difference(&allowed).collect();
        ensure!(unknown.is_empty(), "{alert}: unknown metrics {unknown:?}");
        let severity = r["labels"]["severity"].as_str().unwrap_or_default();
        ensure!(
            ["info", "warning", "critical"].contains(&severity),
            "{alert}: severity {severity:?}"
        );
        let a = &r["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            ensure!(
                a[key].as_str().is_some_and(|s| !s.trim().is_empty()),
                "{alert}: no {key}"
            );
        }
        for key in ["summary", "description"] {
            let text = a[key].as_str().unwrap_or_default();
            for m in template_names.find_iter(text) {
                ensure!(
                    allowed.contains(m.as_str()),
                    "{alert}: {key} queries unknown metric {}",
                    m.as_str()
                );
            }
        }
        let url = a["runbook_url"].as_str().unwrap_or_default();
        let (page, fragment) = url.split_once('#').context("runbook_url without anchor")?;
        ensure!(page.ends_with(OPERATIONS), "{alert}: runbook {url}");
        ensure!(
            fragment == alert.to_lowercase() && anchors.contains(fragment),
            "{alert}: no section #{fragment} in {OPERATIONS}"
        );
        // Each alert has a firing and a not-firing case in the promtool tests.
        let firing = format!("alertname: {alert}\n        exp_alerts:");
        let evals = test_file.matches(&format!("alertname: {alert}\n")).count();
        ensure!(
            test_file.contains(&firing) && evals > test_file.matches(&firing).count(),
            "{alert}: {RULES_TEST} needs both a firing and a not-firing case"
        );
    }
    Ok(())
}

/// Every `expr` in the dashboard (panels, rows, annotations) with where it
/// is, and the metric of each `label_values(...)` variable.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                let here = m
                    .get("title")
                    .or_else(|| m.get("name"))
                    .and_then(Value::as_str)
                    .map(|t| format!("{at}/{t}"))
                    .unwrap_or_else(|| at.to_owned());
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", Value::String(e)) => out.push((here.clone(), e.clone())),
                        ("definition", Value::String(d)) if d.starts_with("label_values(") => {
                            let inner = &d["label_values(".len()..d.rfind(',').unwrap_or(d.len())];
                            out.push((here.clone(), inner.to_owned()));
                        }
                        _ => walk(x, &here, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, at, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, "", &mut out);
    out
}

fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

#[test]
fn dashboard_is_valid_and_uses_exposed_metrics() -> R {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)?).context("dashboard JSON")?;
    ensure!(dashboard["uid"] == "hotline-operator");
    let allowed = allowed_names();
    let exprs = dashboard_exprs(&dashboard);
    ensure!(exprs.len() > 20, "only {} expressions", exprs.len());
    for (at, expr) in &exprs {
        let used = metric_names_in(expr);
        ensure!(!used.is_empty(), "{at}: selects no metric: {expr}");
        let unknown: Vec<_> = used.difference(&allowed).collect();
        ensure!(
            unknown.is_empty(),
            "{at}: unknown metrics {unknown:?} in {expr}"
        );
    }
    let mut ids = BTreeSet::new();
    let mut titles = Vec::new();
    for p in all_panels(&dashboard) {
        let title = p["title"].as_str().context("panel without title")?;
        ensure!(
            ids.insert(p["id"].as_u64().context("panel id")?),
            "duplicate id"
        );
        ensure!(p["gridPos"]["w"].as_u64().is_some(), "{title}: no gridPos");
        if p["type"] != "row" {
            ensure!(
                p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "{title}: no query"
            );
        }
        titles.push(title.to_lowercase());
    }
    // What the issue asks the dashboard to show.
    for want in [
        "crisis timeline",
        "ready vs target",
        "time to surge vs budget",
        "reconcile",
    ] {
        ensure!(
            titles.iter().any(|t| t.contains(want)),
            "no panel about {want:?} in {titles:?}"
        );
    }
    Ok(())
}

#[test]
fn operations_doc_lists_every_metric() -> R {
    let doc = read(OPERATIONS)?;
    for n in Metrics::new().names() {
        if n.starts_with("process_") {
            continue; // documented as a family
        }
        ensure!(
            doc.contains(&format!("`{n}`")),
            "{OPERATIONS} does not document `{n}`"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// promtool and the Prometheus server.

/// promtool's path from `hack/install-prometheus.sh` (idempotent; it prints
/// the path). The server binary `prometheus` is next to it.
fn promtool() -> R<PathBuf> {
    let out = std::process::Command::new(repo_root().join("hack/install-prometheus.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("running hack/install-prometheus.sh")?;
    ensure!(
        out.status.success(),
        "hack/install-prometheus.sh failed: {}",
        out.status
    );
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

#[test]
fn promtool_checks_and_tests_the_rules() -> R {
    let promtool = promtool()?;
    for args in [["check", "rules", RULES], ["test", "rules", RULES_TEST]] {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(repo_root())
            .output()?;
        ensure!(
            out.status.success(),
            "promtool {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> R<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let p = std::env::temp_dir().join(format!("{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> R<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A child process logging to a file, killed when dropped.
struct Proc {
    name: &'static str,
    child: std::sync::Mutex<tokio::process::Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut tokio::process::Command, log: PathBuf) -> R<Self> {
        let file = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name,
            child: std::sync::Mutex::new(child),
            log,
        })
    }

    fn alive(&self) -> R {
        let status = self.child.lock().expect("lock").try_wait()?;
        if let Some(status) = status {
            bail!("{} exited ({status}):\n{}", self.name, self.tail());
        }
        Ok(())
    }

    fn tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn stop(self) -> R {
        let mut child = self.child.into_inner().expect("lock");
        child.kill().await?;
        Ok(())
    }
}

/// `GET path` over HTTP/1.0 (no chunked bodies): (status, body).
async fn get(addr: SocketAddr, path: &str) -> R<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no header block")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    Ok((code, body.to_owned()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus' HTTP API: the `data` of a successful answer.
async fn prom_api(addr: SocketAddr, path: &str) -> R<Value> {
    let (code, body) = get(addr, path).await?;
    let v: Value = serde_json::from_str(&body).with_context(|| format!("{code}: {body}"))?;
    ensure!(v["status"] == "success", "{path}: {code} {body}");
    Ok(v["data"].clone())
}

async fn prom_query(addr: SocketAddr, q: &str) -> R<Vec<Value>> {
    let data = prom_api(addr, &format!("/api/v1/query?query={}", urlencode(q))).await?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

/// Active alerts (pending or firing) named `name` for plan `ns/plan`.
async fn alerts(addr: SocketAddr, name: &str, ns: &str, plan: &str) -> R<Vec<Value>> {
    let data = prom_api(addr, "/api/v1/alerts").await?;
    Ok(data["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            a["labels"]["alertname"] == name
                && a["labels"]["namespace"] == ns
                && a["labels"]["plan"] == plan
        })
        .cloned()
        .collect())
}

async fn firing(addr: SocketAddr, name: &str, ns: &str, plan: &str) -> R<Option<Value>> {
    Ok(alerts(addr, name, ns, plan)
        .await?
        .into_iter()
        .find(|a| a["state"] == "firing"))
}

// ---------------------------------------------------------------------------
// The operator's /metrics.

struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_exposition(text: &str) -> R<Vec<Sample>> {
    let label = Regex::new(r#"([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)""#)?;
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').context("no value")?;
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        out.push(Sample {
            name: name.to_owned(),
            labels: label
                .captures_iter(labels)
                .map(|c| (c[1].to_owned(), c[2].to_owned()))
                .collect(),
            value: value.parse().with_context(|| format!("value of {line}"))?,
        });
    }
    Ok(out)
}

struct Scrape(Vec<Sample>);

impl Scrape {
    async fn take(addr: SocketAddr) -> R<Self> {
        let (code, body) = get(addr, "/metrics").await?;
        ensure!(code == 200, "/metrics: {code}");
        Ok(Scrape(parse_exposition(&body)?))
    }

    /// The value of the one series `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
}

/// What the cluster says about hotline `care` and Deployment `care-gateway`.
#[derive(Debug, PartialEq)]
struct Capacity {
    target_calls: i64,
    ready_calls: i64,
    desired_replicas: i64,
    ready_replicas: i64,
}

async fn cluster_capacity(ns: &TestNamespace) -> R<Capacity> {
    let h = ns.api::<Hotline>().get("care").await?;
    let st = h.status.unwrap_or_default();
    let d = ns.api::<Deployment>().get("care-gateway").await?;
    Ok(Capacity {
        target_calls: st.target_calls.unwrap_or(-1).into(),
        ready_calls: st.ready_calls.unwrap_or(-1).into(),
        desired_replicas: d.spec.and_then(|s| s.replicas).unwrap_or(-1).into(),
        ready_replicas: d.status.and_then(|s| s.ready_replicas).unwrap_or(0).into(),
    })
}

fn scraped_capacity(s: &Scrape, ns: &str) -> Option<Capacity> {
    let h = [("namespace", ns), ("hotline", "care")];
    let c = [
        ("namespace", ns),
        ("hotline", "care"),
        ("component", "gateway"),
    ];
    Some(Capacity {
        target_calls: s.value("hotline_target_calls", &h)? as i64,
        ready_calls: s.value("hotline_ready_calls", &h)? as i64,
        desired_replicas: s.value("hotline_component_desired_replicas", &c)? as i64,
        ready_replicas: s.value("hotline_component_ready_replicas", &c)? as i64,
    })
}

/// Waits until the scrape and the cluster agree, and agree with `want`.
async fn capacity_matches(op: SocketAddr, ns: &TestNamespace, want: &Capacity) -> R {
    let last = std::sync::Mutex::new(String::new());
    let res = wait_for(
        &format!("/metrics and the cluster both showing {want:?}"),
        Duration::from_secs(20),
        || async {
            let scrape = Scrape::take(op).await?;
            let cluster = cluster_capacity(ns).await?;
            let scraped = scraped_capacity(&scrape, &ns.name);
            let ok = scraped.as_ref() == Some(&cluster) && &cluster == want;
            *last.lock().expect("lock") = format!("scraped {scraped:?}, cluster {cluster:?}");
            anyhow::Ok(ok)
        },
    )
    .await;
    res.with_context(|| last.lock().expect("lock").clone())
}

async fn plan_phase(ns: &TestNamespace) -> R<Option<Phase>> {
    Ok(ns
        .api::<CrisisPlan>()
        .get("retail")
        .await?
        .status
        .and_then(|s| s.phase))
}

// ---------------------------------------------------------------------------
// End to end.

/// Ready delay of the gateway pods, well beyond the 3s budget so the surge is
/// still running when Prometheus evaluates the rules past the deadline.
const READY_DELAY: Duration = Duration::from_secs(12);

#[tokio::test]
async fn prometheus_fires_budget_exceeded_and_declared_then_resolves_after_exit() -> R {
    let started = Instant::now();
    let promtool = promtool()?;
    let prometheus_bin = promtool.with_file_name("prometheus");
    install_crds().await?;
    let kubeconfig = support::kubeconfig_path().await?;
    let ns = TestNamespace::new("observability").await?;
    let work = TempDir::new("hotline-observability")?;

    // The operator binary, scoped to the namespace, JSON logs.
    let op_addr = free_port()?;
    let op = Proc::spawn(
        "hotline-operator",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_hotline-operator"))
            .env_clear()
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .arg(format!("--metrics-addr={op_addr}"))
            .arg("--log-format=json")
            .arg(format!("--namespace={}", ns.name)),
        work.0.join("operator.log"),
    )?;

    // Prometheus: scrape and evaluate every second, the shipped rules as is.
    let prom_addr = free_port()?;
    let rules = repo_root().join(RULES);
    let config = work.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: hotline-operator\n    honor_labels: true\n    \
             static_configs:\n      - targets: ['{op_addr}']\n",
            rules = rules.display()
        ),
    )?;
    let prom = Proc::spawn(
        "prometheus",
        tokio::process::Command::new(&prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .arg("--log.level=warn"),
        work.0.join("prometheus.log"),
    )?;

    let outcome = scenario(&ns, op_addr, prom_addr, &op, &prom).await;
    if let Err(e) = outcome {
        bail!(
            "{e:#}\n--- operator log (tail) ---\n{}\n--- prometheus log (tail) ---\n{}",
            op.tail(),
            prom.tail()
        );
    }
    // The operator logged JSON, each reconcile in a span naming its object.
    let log = std::fs::read_to_string(&op.log)?;
    check_json_logs(&log, &ns.name)?;
    prom.stop().await?;
    op.stop().await?;
    ns.cleanup().await?;
    eprintln!(
        "observability e2e: {:.1}s in all",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn scenario(
    ns: &TestNamespace,
    op_addr: SocketAddr,
    prom_addr: SocketAddr,
    op: &Proc,
    prom: &Proc,
) -> R {
    let t0 = Instant::now();
    let mark = |what: &str| eprintln!("[+{:5.1}s] {what}", t0.elapsed().as_secs_f64());
    wait_for("operator /readyz 200", Duration::from_secs(30), || async {
        op.alive()?;
        anyhow::Ok(get(op_addr, "/readyz").await.is_ok_and(|(c, _)| c == 200))
    })
    .await?;
    mark("operator ready");

    let (hotlines, plans) = (ns.api::<Hotline>(), ns.api::<CrisisPlan>());
    create(
        &hotlines,
        &fixtures::hotline("care", 10, vec![managed("gateway", 10, READY_DELAY)])?,
    )
    .await?;
    create(
        &plans,
        &fixtures::plan("retail", &["care"], "3s", &[("it-outage", 30)], 100, "1s")?,
    )
    .await?;
    wait_for(
        "plan retail in Standby",
        Duration::from_secs(30),
        || async { anyhow::Ok(plan_phase(ns).await? == Some(Phase::Standby)) },
    )
    .await?;

    wait_for(
        "Prometheus scraping the operator (up == 1)",
        Duration::from_secs(30),
        || async {
            prom.alive()?;
            let r = prom_query(prom_addr, r#"up{job="hotline-operator"} == 1"#).await;
            anyhow::Ok(r.is_ok_and(|v| !v.is_empty()))
        },
    )
    .await?;
    mark("Prometheus scraping");

    declare(&plans, "retail", "it-outage").await?;
    let declared = Instant::now();
    mark("declared it-outage (budget 3s, pods ready after 12s)");

    // During the surge: the scrape agrees with the cluster (nothing ready yet).
    capacity_matches(
        op_addr,
        ns,
        &Capacity {
            target_calls: 30,
            ready_calls: 0,
            desired_replicas: 3,
            ready_replicas: 0,
        },
    )
    .await?;
    let scrape = Scrape::take(op_addr).await?;
    let plan_labels = [("namespace", ns.name.as_str()), ("plan", "retail")];
    let surging = [
        ("namespace", ns.name.as_str()),
        ("plan", "retail"),
        ("phase", "Surging"),
    ];
    ensure!(scrape.value("crisisplan_phase", &surging) == Some(1.0));
    ensure!(scrape.value("crisisplan_time_budget_seconds", &plan_labels) == Some(3.0));
    let deadline = plans
        .get("retail")
        .await?
        .status
        .and_then(|s| s.current)
        .and_then(|c| c.deadline)
        .context("no deadline in status")?;
    let scraped_deadline = scrape
        .value("crisisplan_surge_deadline_timestamp_seconds", &plan_labels)
        .context("no deadline gauge while Surging")?;
    ensure!(
        (scraped_deadline - deadline.0.as_second() as f64).abs() < 1e-3,
        "deadline gauge {scraped_deadline} vs status {deadline:?}"
    );
    ensure!(
        scrape.value(
            "crisisplan_crisis_active",
            &[
                ("namespace", ns.name.as_str()),
                ("plan", "retail"),
                ("scenario", "it-outage"),
                ("drill", "false"),
            ],
        ) == Some(1.0)
    );
    mark("surge metrics match the cluster");

    let declared_alert = wait_for(
        "CrisisDeclared firing in Prometheus",
        Duration::from_secs(20),
        || firing(prom_addr, "CrisisDeclared", &ns.name, "retail"),
    )
    .await?;
    ensure!(declared_alert["labels"]["scenario"] == "it-outage");
    ensure!(declared_alert["labels"]["severity"] == "info");
    mark("CrisisDeclared firing");

    let exceeded = wait_for(
        "CrisisSurgeBudgetExceeded firing in Prometheus",
        Duration::from_secs(20),
        || firing(prom_addr, "CrisisSurgeBudgetExceeded", &ns.name, "retail"),
    )
    .await?;
    let fired_after = declared.elapsed();
    mark("CrisisSurgeBudgetExceeded firing");
    ensure!(exceeded["labels"]["severity"] == "critical");
    let description = exceeded["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        description.contains("time budget of 3s") && description.contains("Still surging"),
        "description: {description}"
    );
    // It fired while the pods were still starting, so from the deadline alone.
    ensure!(
        fired_after < READY_DELAY,
        "fired {fired_after:?} after the declaration"
    );
    let scrape = Scrape::take(op_addr).await?;
    ensure!(
        scrape.value(
            "crisisplan_budget_exceeded_total",
            &[
                ("namespace", ns.name.as_str()),
                ("plan", "retail"),
                ("drill", "false")
            ]
        ) == Some(1.0),
        "the budget-exceeded counter did not count the miss"
    );

    // Surge capacity ready, late: Active, and the scrape agrees again.
    wait_for("plan retail Active", Duration::from_secs(40), || async {
        anyhow::Ok(plan_phase(ns).await? == Some(Phase::Active))
    })
    .await?;
    mark("Active");
    capacity_matches(
        op_addr,
        ns,
        &Capacity {
            target_calls: 30,
            ready_calls: 30,
            desired_replicas: 3,
            ready_replicas: 3,
        },
    )
    .await?;
    let scrape = Scrape::take(op_addr).await?;
    let drill_false = [
        ("namespace", ns.name.as_str()),
        ("plan", "retail"),
        ("drill", "false"),
    ];
    ensure!(scrape.value("crisisplan_time_to_surge_seconds_count", &drill_false) == Some(1.0));
    let tts = scrape
        .value("crisisplan_time_to_surge_seconds_sum", &drill_false)
        .context("no time to surge")?;
    ensure!(
        tts >= READY_DELAY.as_secs_f64() - 1.0,
        "time to surge {tts}s, but pods needed {READY_DELAY:?}"
    );
    ensure!(
        scrape
            .value("crisisplan_surge_deadline_timestamp_seconds", &plan_labels)
            .is_none(),
        "deadline gauge left after the surge"
    );

    // Once the controller sets crisisplan_surge_budget_missed, the alert lasts
    // as long as the crisis, not only while Surging.
    if scrape.value("crisisplan_surge_budget_missed", &plan_labels) == Some(1.0) {
        wait_for(
            "CrisisSurgeBudgetExceeded still firing while Active",
            Duration::from_secs(10),
            || async {
                prom_query(
                    prom_addr,
                    &format!(
                        r#"ALERTS{{alertname="CrisisSurgeBudgetExceeded",alertstate="firing",namespace="{}",plan="retail"}} and on() crisisplan_phase{{namespace="{}",plan="retail",phase="Active"}} == 1"#,
                        ns.name, ns.name
                    ),
                )
                .await
                .map(|r| !r.is_empty())
            },
        )
        .await?;
        mark("CrisisSurgeBudgetExceeded still firing while Active");
    }

    // Every dashboard query is valid PromQL for this Prometheus, and the
    // crisis and capacity panels show this namespace.
    check_dashboard_queries(prom_addr, &ns.name).await?;
    mark("dashboard queries answered");

    // Exit: step down 100% every 1s, CrisisDeclared resolves.
    end(&plans, "retail").await?;
    mark("ended");
    wait_for(
        "CrisisDeclared resolved in Prometheus",
        Duration::from_secs(20),
        || async {
            anyhow::Ok(
                alerts(prom_addr, "CrisisDeclared", &ns.name, "retail")
                    .await?
                    .is_empty(),
            )
        },
    )
    .await?;
    mark("CrisisDeclared resolved");
    wait_for(
        "plan retail back in Standby",
        Duration::from_secs(20),
        || async { anyhow::Ok(plan_phase(ns).await? == Some(Phase::Standby)) },
    )
    .await?;
    wait_for(
        "no crisis alert left for the plan",
        Duration::from_secs(20),
        || async {
            let mut left = Vec::new();
            for a in [
                "CrisisDeclared",
                "CrisisSurgeBudgetExceeded",
                "CrisisSurgeBudgetAtRisk",
            ] {
                if !alerts(prom_addr, a, &ns.name, "retail").await?.is_empty() {
                    left.push(a);
                }
            }
            anyhow::Ok(left.is_empty())
        },
    )
    .await?;
    mark("back to Standby, no crisis alert");

    // What the process exposes is what Metrics::names() says (the rules and
    // dashboard tests rely on it), process metrics included.
    let scrape = Scrape::take(op_addr).await?;
    let allowed = allowed_names();
    let unknown: BTreeSet<&str> = scrape
        .0
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| !allowed.contains(*n))
        .collect();
    ensure!(
        unknown.is_empty(),
        "exposed but not in Metrics::names(): {unknown:?}"
    );
    for n in ["process_resident_memory_bytes", "process_open_fds"] {
        ensure!(scrape.value(n, &[]).is_some_and(|v| v > 0.0), "{n} missing");
    }
    // Whole seconds: may still be 0 for a process this young.
    ensure!(
        scrape.value("process_cpu_seconds_total", &[]).is_some(),
        "process_cpu_seconds_total missing"
    );
    Ok(())
}

/// Runs each dashboard query through Prometheus' `/api/v1/query` with the
/// dashboard's variables set for this test.
async fn check_dashboard_queries(prom: SocketAddr, ns: &str) -> R {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)?)?;
    let vars = [
        ("$__rate_interval", "5s"),
        ("$__interval", "5s"),
        ("$__range", "1m"),
        ("$job", "hotline-operator"),
        ("$namespace", ns),
        ("$plan", "retail"),
        ("$hotline", "care"),
    ];
    let mut answered = BTreeMap::new();
    for (at, expr) in dashboard_exprs(&dashboard) {
        if !expr.contains('(') && !expr.contains('{') {
            continue; // a bare label_values metric
        }
        let mut q = expr.clone();
        for (k, v) in vars {
            q = q.replace(k, v);
        }
        let result = prom_query(prom, &q)
            .await
            .with_context(|| format!("{at}: {q}"))?;
        answered.insert(at, result.len());
    }
    for panel in [
        "Crisis timeline: phase per plan",
        "Calls: ready vs target, $hotline",
        "Replicas per component: desired vs ready",
        "Declared crises and drills",
    ] {
        let hits = answered
            .iter()
            .filter(|(at, _)| at.ends_with(panel))
            .map(|(_, n)| *n)
            .sum::<usize>();
        ensure!(hits > 0, "panel {panel:?} shows nothing: {answered:?}");
    }
    Ok(())
}

/// Each JSON log line parses, and the plan's reconciles logged inside a span
/// naming the plan's namespace and name.
fn check_json_logs(log: &str, ns: &str) -> R {
    let mut in_plan_span = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("not a JSON log line: {line}"))?;
        ensure!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        if v["span"]["namespace"] == ns && v["span"]["plan"] == "retail" {
            in_plan_span += 1;
        }
    }
    ensure!(
        in_plan_span > 0,
        "no log line in a span with namespace={ns}, plan=retail"
    );
    Ok(())
}
