//! [`PodTemplate`]: a managed component's pod template, held as compact JSON.

use std::fmt;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A pod template, read and written exactly like a `PodTemplateSpec` but held
/// as its compact JSON text.
///
/// Why: the operator caches every Hotline, and a `PodTemplateSpec` with one
/// container takes about 4.5 KiB of structs (most of it empty optional
/// fields) where its JSON takes a few hundred bytes; the template is only read
/// when a Deployment is built. Deserializing still goes through
/// `PodTemplateSpec`, so shape errors and the fields kept are the same as with
/// the typed field (docs/BENCHMARKS.md, "Footprint").
#[derive(Clone, PartialEq, Eq)]
pub struct PodTemplate(Box<str>);

impl PodTemplate {
    /// Holds `spec` as compact JSON.
    pub fn new(spec: &PodTemplateSpec) -> Result<Self, serde_json::Error> {
        Ok(Self(serde_json::to_string(spec)?.into_boxed_str()))
    }

    /// The template as a `PodTemplateSpec` (parsed on each call).
    pub fn spec(&self) -> Result<PodTemplateSpec, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// The compact JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PodTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PodTemplate").field(&self.as_json()).finish()
    }
}

impl Serialize for PodTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.spec().map_err(serde::ser::Error::custom)?.serialize(s)
    }
}

impl<'de> Deserialize<'de> for PodTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = PodTemplateSpec::deserialize(d)?;
        Self::new(&spec).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for PodTemplate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PodTemplate".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        super::preserve_unknown_object(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> serde_json::Value {
        json!({
            "metadata": {"labels": {"app": "gateway"}, "annotations": {"a": "b"}},
            "spec": {
                "terminationGracePeriodSeconds": 45,
                "containers": [{"name": "gw", "image": "example.invalid/gw:1",
                                "resources": {"requests": {"cpu": "100m"}}}],
            },
        })
    }

    #[test]
    fn reads_and_writes_the_same_json_as_pod_template_spec() {
        let typed: PodTemplateSpec = serde_json::from_value(sample()).expect("typed");
        let compact: PodTemplate = serde_json::from_value(sample()).expect("compact");
        assert_eq!(compact.spec().expect("parse"), typed);
        assert_eq!(
            serde_json::to_value(&compact).expect("ser"),
            serde_json::to_value(&typed).expect("ser")
        );
        assert_eq!(PodTemplate::new(&typed).expect("new"), compact);
    }

    #[test]
    fn rejects_what_pod_template_spec_rejects() {
        let bad = json!({"spec": {"containers": "not a list"}});
        let typed =
            serde_json::from_value::<PodTemplateSpec>(bad.clone()).map_err(|e| e.to_string());
        let compact = serde_json::from_value::<PodTemplate>(bad).map_err(|e| e.to_string());
        assert!(typed.is_err());
        assert_eq!(compact.err(), typed.err());
    }

    #[test]
    fn drops_unknown_fields_like_pod_template_spec() {
        let mut v = sample();
        v["spec"]["notAField"] = json!(1);
        let compact: PodTemplate = serde_json::from_value(v).expect("compact");
        assert!(!compact.as_json().contains("notAField"));
    }

    #[test]
    fn is_a_fraction_of_the_typed_template_in_memory() {
        // What the cache holds per managed component: the typed template is a
        // PodTemplateSpec plus one Container (inline structs), the compact one
        // its JSON text.
        let typed = std::mem::size_of::<PodTemplateSpec>()
            + std::mem::size_of::<k8s_openapi::api::core::v1::Container>();
        let compact: PodTemplate = serde_json::from_value(sample()).expect("compact");
        let held = std::mem::size_of::<PodTemplate>() + compact.as_json().len();
        assert!(held * 10 < typed, "compact {held} B vs typed {typed} B");
    }
}
