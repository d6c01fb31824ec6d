//! Contract tests without a cluster: the examples round-trip through the
//! types, and the generated schemas are structural.

use kube::CustomResourceExt;
use serde_json::Value;

use super::*;

const HOTLINE: &str = include_str!("../../deploy/examples/hotline.yaml");
const PLAN: &str = include_str!("../../deploy/examples/crisisplan.yaml");

fn yaml_value(text: &str) -> Value {
    serde_yaml::from_str(text).expect("example is YAML")
}

#[test]
fn hotline_example_round_trips() {
    let hl: Hotline = serde_yaml::from_str(HOTLINE).expect("example parses as a Hotline");
    assert_eq!(hl.spec.components.len(), 2);
    assert!(hl.spec.components[0].template.is_some());
    assert!(hl.spec.components[1].workload_ref.is_some());
    let back: Hotline = serde_json::from_value(serde_json::to_value(&hl).expect("serialises"))
        .expect("parses back");
    assert_eq!(back, hl);
    // Nothing of the example is lost: every field written survives.
    let written = yaml_value(HOTLINE);
    let serialised = serde_json::to_value(&hl).expect("serialises");
    assert_eq!(serialised["spec"], written["spec"]);
}

#[test]
fn plan_example_round_trips_with_the_seed_scenarios() {
    let cp: CrisisPlan = serde_yaml::from_str(PLAN).expect("example parses as a CrisisPlan");
    let names: Vec<_> = cp.spec.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "it-outage",
            "strike",
            "product-recall",
            "rumour",
            "natural-disaster"
        ]
    );
    for s in &cp.spec.scenarios {
        assert!(s.announcement.is_some(), "{} has an announcement", s.name);
        assert!(
            !s.escalation.is_empty(),
            "{} has an escalation chain",
            s.name
        );
    }
    let back: CrisisPlan = serde_json::from_value(serde_json::to_value(&cp).expect("serialises"))
        .expect("parses back");
    assert_eq!(back, cp);
    let serialised = serde_json::to_value(&cp).expect("serialises");
    assert_eq!(serialised["spec"], yaml_value(PLAN)["spec"]);
}

#[test]
fn status_declaration_is_never_serialised_when_absent() {
    let s = CrisisPlanStatus {
        phase: Some(Phase::Standby),
        ..Default::default()
    };
    let v = serde_json::to_value(&s).expect("serialises");
    assert!(
        v.get("declaration").is_none(),
        "operator-written status must not carry declaration: {v}"
    );
}

/// Walks a schema: every node must have a `type`, except nodes that preserve
/// unknown fields (only the embedded pod template) and `int-or-string`.
fn assert_structural(path: &str, node: &Value, preserved: &mut Vec<String>) {
    let Some(obj) = node.as_object() else { return };
    if obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        preserved.push(path.to_owned());
        assert!(
            obj.get("properties").is_none(),
            "{path}: preserved node must not declare properties"
        );
        return;
    }
    for forbidden in ["anyOf", "oneOf", "allOf", "$ref", "additionalProperties"] {
        if forbidden == "additionalProperties" {
            // Maps (labels) are allowed; they carry a typed value schema.
            if let Some(ap) = obj.get(forbidden) {
                assert!(
                    ap.get("type").is_some(),
                    "{path}: untyped additionalProperties"
                );
            }
            continue;
        }
        assert!(
            obj.get(forbidden).is_none(),
            "{path}: non-structural keyword {forbidden}"
        );
    }
    assert!(
        obj.get("type").is_some(),
        "{path}: node without a type: {node}"
    );
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            assert_structural(&format!("{path}.{k}"), v, preserved);
        }
    }
    if let Some(items) = obj.get("items") {
        assert_structural(&format!("{path}[]"), items, preserved);
    }
}

#[test]
fn generated_schemas_are_structural() {
    for (crd, expected_preserved) in [
        (
            Hotline::crd(),
            vec![".spec.components[].template".to_owned()],
        ),
        (CrisisPlan::crd(), vec![]),
    ] {
        let v = serde_json::to_value(&crd).expect("serialises");
        let schema = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut preserved = Vec::new();
        assert_structural("", schema, &mut preserved);
        assert_eq!(
            preserved,
            expected_preserved,
            "{}",
            crd.metadata.name.unwrap_or_default()
        );
        let version = &v["spec"]["versions"][0];
        assert_eq!(version["subresources"]["status"], serde_json::json!({}));
        assert_eq!(
            v["spec"]["names"]["categories"],
            serde_json::json!(["hotline"])
        );
    }
}

#[test]
fn patterns_accept_and_refuse_what_the_docs_say() {
    let re = regex_lite;
    assert!(re(E164_PATTERN)("+33123456789"));
    assert!(!re(E164_PATTERN)("0123456789"));
    assert!(!re(E164_PATTERN)("+0123"));
    assert!(
        re(CLOCK_PATTERN)("24:00")
            && re(CLOCK_PATTERN)("08:30")
            && !re(CLOCK_PATTERN)("24:01")
            && !re(CLOCK_PATTERN)("8:30")
    );
    assert!(
        re(DURATION_PATTERN)("1h30m")
            && re(DURATION_PATTERN)("250ms")
            && !re(DURATION_PATTERN)("5 minutes")
            && !re(DURATION_PATTERN)("1.5h")
    );
    assert!(
        re(TIME_ZONE_PATTERN)("Europe/Paris")
            && re(TIME_ZONE_PATTERN)("America/Argentina/Buenos_Aires")
            && re(TIME_ZONE_PATTERN)("Etc/GMT+2")
            && !re(TIME_ZONE_PATTERN)("Paris time")
    );
    assert!(
        re(CRON_PATTERN)("0 10 1 3,9 *")
            && re(CRON_PATTERN)("*/15 8-18 * * MON-FRI")
            && !re(CRON_PATTERN)("twice a year")
    );
}

/// The apiserver matches with Go's RE2; these patterns use only the subset
/// RE2 and the `regex` crate share, so the semantics are the same.
fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool + '_ {
    move |s: &str| {
        regex::Regex::new(pattern)
            .expect("pattern compiles")
            .is_match(s)
    }
}
