//! Runs the operator in the test process, scoped to one namespace, so tests
//! running in parallel each have their own operator and never see each
//! other's objects. Stop it (or drop it) to simulate an operator restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hotline_operator::controller::{self, Options};
use hotline_operator::metrics::Metrics;
use tokio::task::JoinHandle;

pub struct Operator {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
}

impl Operator {
    /// Starts both controllers watching `namespace` only, and waits until
    /// every watch delivered its first list.
    pub async fn start(client: kube::Client, namespace: &str) -> anyhow::Result<Self> {
        Self::start_with_offset(client, namespace, jiff::SignedDuration::ZERO).await
    }

    /// Same, with the operator's clock shifted by `offset`.
    pub async fn start_with_offset(
        client: kube::Client,
        namespace: &str,
        offset: jiff::SignedDuration,
    ) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let ready = Arc::new(AtomicBool::new(false));
        let (stop, rx) = tokio::sync::watch::channel(false);
        let opts = Options {
            concurrency: 8,
            namespace: Some(namespace.to_owned()),
            clock_offset: offset,
            leader: None,
        };
        let task = tokio::spawn(controller::run(
            client,
            opts,
            metrics.clone(),
            ready.clone(),
            rx,
        ));
        let r = ready.clone();
        super::wait_for("operator caches synced", Duration::from_secs(30), || {
            let r = r.clone();
            async move { r.load(Ordering::SeqCst) }
        })
        .await?;
        Ok(Operator {
            stop,
            task: Some(task),
            metrics,
            ready,
        })
    }

    /// Stops the operator and waits for its reconciles to drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task).await??;
        }
        Ok(())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
