//! The operator's Event publisher against the real kube-apiserver: a repeat
//! becomes a series on the first Event (the apiserver accepts the patch and
//! keeps one object), a different note is another Event.

mod support;

use hotline_operator::controller::events::Publisher;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::runtime::events::{Event as NewEvent, EventType, Reporter};
use kube::{Resource, ResourceExt};
use support::TestNamespace;

fn warning(note: &str) -> NewEvent {
    NewEvent {
        type_: EventType::Warning,
        reason: "ReconcileError".into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    }
}

#[tokio::test]
async fn a_repeated_event_is_one_object_with_a_series() -> anyhow::Result<()> {
    let ns = TestNamespace::new("events-series").await?;
    // Any object will do as the Event's subject.
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "subject"}, "data": {"k": "v"}}))?;
    let cm = ns
        .api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await?;
    let regarding: ObjectReference = cm.object_ref(&());
    let publisher = Publisher::new(
        ns.client.clone(),
        Reporter {
            controller: "hotline-operator-test".into(),
            instance: Some("t".into()),
        },
    );
    for _ in 0..3 {
        publisher.publish(&warning("boom"), &regarding).await?;
    }
    publisher.publish(&warning("other"), &regarding).await?;

    let events = ns.api::<Event>().list(&ListParams::default()).await?.items;
    let ours: Vec<&Event> = events
        .iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("hotline-operator-test"))
        .collect();
    let boom: Vec<&&Event> = ours
        .iter()
        .filter(|e| e.note.as_deref() == Some("boom"))
        .collect();
    assert_eq!(boom.len(), 1, "one Event for the repeats: {ours:#?}");
    let series = boom[0]
        .series
        .as_ref()
        .expect("series on the repeated Event");
    assert_eq!(series.count, 3);
    assert_eq!(
        boom[0].regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("subject")
    );
    let other = ours
        .iter()
        .filter(|e| e.note.as_deref() == Some("other"))
        .count();
    assert_eq!(other, 1, "a different note is another Event");
    assert!(boom[0].name_any().starts_with("subject."));
    Ok(())
}
