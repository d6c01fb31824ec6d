//! The operator process: both controllers, the metrics/health server, and a
//! graceful shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;
use hotline_operator::controller::{self, Options};
use hotline_operator::leader::LeaseConfig;
use hotline_operator::metrics::Metrics;
use hotline_operator::telemetry::{self, LogFormat};
use hotline_operator::{server, startup};
use tracing::{error, info};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Holds crisis hotlines on warm standby and surges them when a crisis is declared"
)]
struct Args {
    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, env = "HOTLINE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "HOTLINE_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "HOTLINE_NAMESPACE")]
    namespace: Option<String>,
    /// Reconciles running at once, per controller.
    #[arg(long, env = "HOTLINE_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Elect a leader through a coordination.k8s.io Lease; only the leader
    /// writes, every replica keeps its caches warm.
    #[arg(long, env = "HOTLINE_LEADER_ELECTION", default_value_t = false)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "HOTLINE_LEASE_NAME", default_value = "hotline-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: $POD_NAMESPACE).
    #[arg(long, env = "HOTLINE_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Seconds a Lease is valid without renewal.
    #[arg(long, env = "HOTLINE_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration: u64,
    /// Seconds the leader keeps trying to renew before stepping down.
    #[arg(long, env = "HOTLINE_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    renew_deadline: u64,
    /// Seconds between attempts to acquire or renew.
    #[arg(long, env = "HOTLINE_RETRY_PERIOD_SECONDS", default_value_t = 2)]
    retry_period: u64,
}

/// Counts live heap bytes for `hotline_operator_heap_live_bytes`.
#[global_allocator]
static ALLOC: hotline_operator::alloc::Counting = hotline_operator::alloc::Counting;

fn main() -> ExitCode {
    // Before any other thread allocates (src/alloc.rs).
    hotline_operator::alloc::limit_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let args = Args::parse();
    telemetry::init(args.log_format);
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot build a Kubernetes client (KUBECONFIG or in-cluster config)");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = startup::check_crds(&client).await {
        error!(error = %e, "CRDs missing: install them with `kubectl apply --server-side -f crds/`");
        return ExitCode::FAILURE;
    }
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = match server::bind(args.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, addr = %args.metrics_addr, "cannot bind the metrics address");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(server::serve(
        listener,
        server::State {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
    ));

    // Freed heap pages go back to the kernel after a burst (a surge), not
    // only when the top of the heap happens to be free (src/alloc.rs).
    tokio::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let _ = tokio::task::spawn_blocking(hotline_operator::alloc::release_free_memory).await;
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        startup::shutdown_signal().await;
        info!("shutdown requested; draining reconciles");
        let _ = stop_tx.send(true);
    });
    let leader = if args.leader_election {
        let namespace = match args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
        {
            Some(ns) => ns,
            None => {
                error!("--leader-election needs --lease-namespace or $POD_NAMESPACE");
                return ExitCode::FAILURE;
            }
        };
        let identity = std::env::var("POD_NAME")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("hotline-operator-{}", std::process::id()));
        Some(LeaseConfig {
            name: args.lease_name.clone(),
            namespace,
            identity,
            lease_duration: Duration::from_secs(args.lease_duration),
            renew_deadline: Duration::from_secs(args.renew_deadline),
            retry_period: Duration::from_secs(args.retry_period),
        })
    } else {
        None
    };
    let opts = Options {
        concurrency: args.concurrency.max(1),
        namespace: args.namespace,
        clock_offset: jiff::SignedDuration::ZERO,
        leader,
    };
    controller::run(client, opts, metrics, ready, stop_rx).await;
    info!("stopped");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every flag can be set from the environment (the docs' table in
    /// INSTALL.md lists them), under the HOTLINE_ prefix.
    #[test]
    fn every_flag_has_an_environment_variable() {
        let cmd = Args::command();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let env = arg.get_env().and_then(|e| e.to_str());
            assert!(
                env.is_some_and(|e| e.starts_with("HOTLINE_")),
                "--{id} has no HOTLINE_ environment variable ({env:?})"
            );
        }
        let install = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/INSTALL.md"),
        )
        .expect("docs/INSTALL.md");
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env().and_then(|e| e.to_str()) {
                assert!(install.contains(env), "{env} not documented in INSTALL.md");
            }
        }
    }
}
