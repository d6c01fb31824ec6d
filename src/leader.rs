//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! Every replica runs its watches and keeps its caches warm; only the holder
//! of the Lease reconciles (and so writes). A replica acquires the Lease when
//! it is free or expired (`renewTime + leaseDurationSeconds` in the past),
//! renews it every `retry_period`, and steps down when it could not renew
//! within `renew_deadline`. Updates use the Lease's `resourceVersion`
//! (optimistic concurrency), so two replicas never both believe they lead
//! after a successful write. On shutdown the holder releases the Lease so a
//! standby replica takes over at once.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What one attempt decided.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following(String),
}

/// Whether a lease held by someone else has expired at `now`.
pub fn expired(spec: &LeaseSpec, now: Timestamp, default_duration: Duration) -> bool {
    let Some(renew) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let secs = spec
        .lease_duration_seconds
        .map(|s| u64::try_from(s).unwrap_or(0))
        .unwrap_or(default_duration.as_secs());
    match renew.checked_add(jiff::SignedDuration::from_secs(
        i64::try_from(secs).unwrap_or(i64::MAX / 2),
    )) {
        Ok(until) => until < now,
        Err(_) => false,
    }
}

async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Attempt, kube::Error> {
    let now = Timestamp::now();
    let duration_secs = i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await?;
            Ok(Attempt::Leading)
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let mine = holder == cfg.identity;
            if !mine && !holder.is_empty() && !expired(&spec, now, cfg.lease_duration) {
                return Ok(Attempt::Following(holder));
            }
            let mut new = spec.clone();
            if !mine {
                new.acquire_time = Some(MicroTime(now));
                new.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            new.holder_identity = Some(cfg.identity.clone());
            new.lease_duration_seconds = Some(duration_secs);
            new.renew_time = Some(MicroTime(now));
            lease.spec = Some(new);
            // replace() carries the resourceVersion we read: a concurrent
            // writer makes this fail with 409 instead of both leading.
            api.replace(&cfg.name, &PostParams::default(), &lease)
                .await?;
            Ok(Attempt::Leading)
        }
    }
}

async fn release(api: &Api<Lease>, cfg: &LeaseConfig) {
    if let Ok(Some(mut lease)) = api.get_opt(&cfg.name).await {
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = api.replace(&cfg.name, &PostParams::default(), &lease).await {
            warn!(error = %e, "releasing the lease failed; it will expire");
        } else {
            info!(lease = %cfg.name, "lease released");
        }
    }
}

/// Runs the election until `shutdown` flips to true, publishing whether this
/// replica leads on `leading`. Releases the Lease on the way out.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_renew: Option<tokio::time::Instant> = None;
    loop {
        match try_acquire_or_renew(&api, &cfg).await {
            Ok(Attempt::Leading) => {
                last_renew = Some(tokio::time::Instant::now());
                if !*leading.borrow() {
                    info!(lease = %cfg.name, identity = %cfg.identity, "became leader");
                    let _ = leading.send(true);
                }
            }
            Ok(Attempt::Following(holder)) => {
                if *leading.borrow() {
                    warn!(%holder, "lost the lease");
                    let _ = leading.send(false);
                }
            }
            Err(e) => {
                warn!(error = %e, "lease attempt failed");
                let stale = last_renew.is_none_or(|t| t.elapsed() > cfg.renew_deadline);
                if *leading.borrow() && stale {
                    warn!("could not renew within the renew deadline: stepping down");
                    let _ = leading.send(false);
                }
            }
        }
        let stop = tokio::select! {
            _ = tokio::time::sleep(cfg.retry_period) => false,
            r = shutdown.wait_for(|v| *v) => r.is_ok(),
        };
        if stop {
            let was_leading = *leading.borrow();
            if was_leading {
                let _ = leading.send(false);
                release(&api, &cfg).await;
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        let now = Timestamp::now();
        LeaseSpec {
            holder_identity: Some("other".into()),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(
                now - jiff::SignedDuration::from_secs(renewed_secs_ago),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_renewed_within_its_duration_is_held() {
        assert!(!expired(
            &spec(5, 15),
            Timestamp::now(),
            Duration::from_secs(15)
        ));
    }

    #[test]
    fn a_lease_not_renewed_within_its_duration_is_expired() {
        assert!(expired(
            &spec(16, 15),
            Timestamp::now(),
            Duration::from_secs(15)
        ));
    }

    #[test]
    fn a_lease_never_renewed_is_free() {
        let s = LeaseSpec::default();
        assert!(expired(&s, Timestamp::now(), Duration::from_secs(15)));
    }
}
