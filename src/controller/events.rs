//! Publishing Kubernetes Events (`events.k8s.io/v1`) with a bounded memory.
//!
//! kube's `Recorder` keeps every Event it published, whole, for six minutes
//! so that a repeat becomes a series; after a surge of 1,000 hotlines that
//! cache was the largest thing on the operator's heap (8.5 MiB of 21.5,
//! docs/BENCHMARKS.md "Footprint"). [`Publisher`] keeps the same behaviour
//! (a repeat within [`SERIES_TTL`] bumps `series.count` on the first Event
//! instead of creating another) with a small record per series and at most
//! [`SERIES_CAPACITY`] of them, like client-go's event correlator (an LRU of
//! 4,096).

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use serde_json::json;

/// How long after its last occurrence a repeat still joins the series.
pub const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// Most series remembered at once; the least recently seen go first.
pub const SERIES_CAPACITY: usize = 4096;

/// One series: where its Event is and how often it occurred.
struct Seen {
    namespace: Box<str>,
    name: Box<str>,
    count: i32,
    last: Timestamp,
}

/// Publishes Events for one reporter; cheap to share behind an `Arc`.
pub struct Publisher {
    client: Client,
    reporter: Reporter,
    series: Mutex<HashMap<u64, Seen>>,
}

impl Publisher {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// Series remembered now.
    pub fn remembered(&self) -> usize {
        self.series.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Publishes `ev` about `regarding`: a new Event, or the next occurrence
    /// of the series it repeats (same type, reason, action, note and object).
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        self.publish_at(ev, regarding, Timestamp::now()).await
    }

    async fn publish_at(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let key = series_key(&self.reporter, ev, regarding);
        let repeat = self.next_occurrence(key, now);
        if let Some((namespace, name, count)) = repeat {
            let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
            let body = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => return Ok(()),
                // The Event expired or was deleted: start a new series.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.generate(ev, regarding, now);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let name = event.metadata.name.clone().unwrap_or_default();
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), &event).await?;
        self.remember(key, namespace, name, now);
        Ok(())
    }

    /// If `key` is a live series, counts this occurrence and returns where
    /// its Event is and the new count.
    fn next_occurrence(&self, key: u64, now: Timestamp) -> Option<(String, String, i32)> {
        let mut series = self.series.lock().ok()?;
        let seen = series.get_mut(&key)?;
        if seen.last + SERIES_TTL <= now {
            series.remove(&key);
            return None;
        }
        seen.count += 1;
        seen.last = now;
        Some((
            seen.namespace.to_string(),
            seen.name.to_string(),
            seen.count,
        ))
    }

    fn remember(&self, key: u64, namespace: String, name: String, now: Timestamp) {
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        if series.len() >= SERIES_CAPACITY && !series.contains_key(&key) {
            series.retain(|_, s| s.last + SERIES_TTL > now);
            if series.len() >= SERIES_CAPACITY {
                // Drop the least recently seen quarter at once, so this scan
                // runs once per SERIES_CAPACITY / 4 new series at most.
                let mut times: Vec<Timestamp> = series.values().map(|s| s.last).collect();
                times.sort_unstable();
                let cut = times[SERIES_CAPACITY / 4];
                series.retain(|_, s| s.last > cut);
            }
        }
        series.insert(
            key,
            Seen {
                namespace: namespace.into(),
                name: name.into(),
                count: 1,
                last: now,
            },
        );
    }

    fn generate(&self, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            note: ev.note.clone(),
            metadata: ObjectMeta {
                namespace: Some(namespace),
                name: Some(format!(
                    "{}.{:x}",
                    regarding
                        .name
                        .as_deref()
                        .unwrap_or(&self.reporter.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(type_name(ev.type_).into()),
            ..Default::default()
        }
    }
}

/// The Event `type` as the API spells it.
fn type_name(t: EventType) -> &'static str {
    match t {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// FNV-1a over what makes two Events the same series. 64 bits: with at most
/// 4,096 series remembered, a collision (one Event counted in another's
/// series) has a probability around 1e-12.
fn series_key(reporter: &Reporter, ev: &Event, r: &ObjectReference) -> u64 {
    let related = ev.secondary.as_ref();
    let parts = [
        Some(type_name(ev.type_)),
        Some(ev.reason.as_str()),
        Some(ev.action.as_str()),
        ev.note.as_deref(),
        reporter.instance.as_deref(),
        r.api_version.as_deref(),
        r.kind.as_deref(),
        r.namespace.as_deref(),
        r.name.as_deref(),
        r.uid.as_deref(),
        related.and_then(|o| o.kind.as_deref()),
        related.and_then(|o| o.namespace.as_deref()),
        related.and_then(|o| o.name.as_deref()),
        related.and_then(|o| o.uid.as_deref()),
    ];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        // A separator byte that cannot occur in the strings, and a marker for
        // absent parts, so ("ab", "c") and ("a", "bc") differ.
        for b in p
            .map_or(&[0xfe_u8][..], str::as_bytes)
            .iter()
            .chain(&[0xff])
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex as StdMutex};

    type Log = Arc<StdMutex<Vec<(String, String, serde_json::Value)>>>;

    /// A mock apiserver that logs `(method, path, body)` and echoes bodies;
    /// PATCHes of Events named in `gone` answer 404.
    fn mock(gone: &'static [&'static str]) -> (Client, Log) {
        let (svc, mut handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let log: Log = Arc::default();
        let seen = log.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let path = parts.uri.path().to_owned();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                seen.lock().expect("log").push((
                    parts.method.to_string(),
                    path.clone(),
                    body.clone(),
                ));
                let missing =
                    parts.method == http::Method::PATCH && gone.iter().any(|g| path.ends_with(g));
                let resp = if missing {
                    http::Response::builder()
                        .status(404)
                        .body(kube::client::Body::from(
                            serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1",
                            "status": "Failure", "reason": "NotFound", "code": 404,
                            "message": "not found"}))
                            .unwrap_or_default(),
                        ))
                } else {
                    let answer = if body.get("metadata").is_some() {
                        body
                    } else {
                        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                               "metadata": {"name": "x", "namespace": "ns"}, "eventTime": null})
                    };
                    http::Response::builder()
                        .status(200)
                        .body(kube::client::Body::from(
                            serde_json::to_vec(&answer).unwrap_or_default(),
                        ))
                };
                send.send_response(resp.expect("response"));
            }
        });
        (Client::new(svc, "ns"), log)
    }

    /// The HTTP methods the mock saw, in order.
    fn verbs(log: &Log) -> Vec<String> {
        log.lock()
            .expect("log")
            .iter()
            .map(|(m, _, _)| m.clone())
            .collect()
    }

    fn reporter() -> Reporter {
        Reporter {
            controller: "hotline-operator".into(),
            instance: Some("pod-1".into()),
        }
    }

    fn regarding(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("crisis.hotline.dev/v1alpha1".into()),
            kind: Some("Hotline".into()),
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        }
    }

    fn event(note: &str) -> Event {
        Event {
            type_: EventType::Warning,
            reason: "ReconcileError".into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
    }

    #[tokio::test]
    async fn a_repeat_bumps_the_series_of_the_first_event() {
        let (client, log) = mock(&[]);
        let p = Publisher::new(client, reporter());
        let hl = regarding("care");
        p.publish_at(&event("boom"), &hl, at(0))
            .await
            .expect("first");
        p.publish_at(&event("boom"), &hl, at(1))
            .await
            .expect("second");
        p.publish_at(&event("boom"), &hl, at(2))
            .await
            .expect("third");
        // A different note, or another object, is another Event.
        p.publish_at(&event("other"), &hl, at(3))
            .await
            .expect("note");
        p.publish_at(&event("boom"), &regarding("other"), at(4))
            .await
            .expect("object");
        let log = log.lock().expect("log").clone();
        let verbs: Vec<&str> = log.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(verbs, ["POST", "PATCH", "PATCH", "POST", "POST"]);
        let (_, _, created) = &log[0];
        assert_eq!(created["reason"], "ReconcileError");
        assert_eq!(created["note"], "boom");
        assert_eq!(created["type"], "Warning");
        assert_eq!(created["regarding"]["name"], "care");
        assert_eq!(created["reportingController"], "hotline-operator");
        assert_eq!(created["reportingInstance"], "pod-1");
        let name = created["metadata"]["name"].as_str().expect("name");
        assert!(
            log[1].1.ends_with(&format!("/namespaces/ns/events/{name}")),
            "{}",
            log[1].1
        );
        assert_eq!(log[1].2["series"]["count"], 2);
        assert_eq!(log[2].2["series"]["count"], 3);
        assert_eq!(p.remembered(), 3);
    }

    #[tokio::test]
    async fn an_expired_or_deleted_series_starts_a_new_event() {
        let (client, log) = mock(&["/events/care.gone"]);
        let p = Publisher::new(client, reporter());
        let hl = regarding("care");
        p.publish_at(&event("boom"), &hl, at(0))
            .await
            .expect("first");
        let after_ttl = SERIES_TTL.as_secs() + 1;
        p.publish_at(&event("boom"), &hl, at(after_ttl))
            .await
            .expect("after ttl");
        assert_eq!(verbs(&log), ["POST", "POST"]);

        // The apiserver no longer has the Event: create it again.
        let key = series_key(&reporter(), &event("boom"), &hl);
        p.remember(key, "ns".into(), "care.gone".into(), at(after_ttl));
        p.publish_at(&event("boom"), &hl, at(after_ttl + 1))
            .await
            .expect("gone");
        assert_eq!(verbs(&log), ["POST", "POST", "PATCH", "POST"]);
    }

    #[tokio::test]
    async fn remembers_at_most_the_capacity() {
        let (client, _) = mock(&[]);
        let p = Publisher::new(client, reporter());
        for i in 0..(SERIES_CAPACITY as u64 * 3) {
            p.remember(i, "ns".into(), format!("e{i}"), at(i as i64 / 100));
        }
        let n = p.remembered();
        assert!(n <= SERIES_CAPACITY, "{n} series remembered");
        assert!(n >= SERIES_CAPACITY / 2, "{n} series remembered");
        // The most recent one is kept.
        let last = SERIES_CAPACITY as u64 * 3 - 1;
        assert!(p.series.lock().expect("lock").contains_key(&last));
    }

    #[test]
    fn series_keys_separate_their_parts() {
        let r = reporter();
        let hl = regarding("care");
        let mut a = event("ab");
        a.action = "c".into();
        let mut b = event("a");
        b.action = "bc".into();
        assert_ne!(series_key(&r, &a, &hl), series_key(&r, &b, &hl));
        let mut a_again = event("ab");
        a_again.action = "c".into();
        assert_eq!(series_key(&r, &a, &hl), series_key(&r, &a_again, &hl));
    }
}
