//! The contract: the `Hotline` and `CrisisPlan` custom resources
//! (group `crisis.hotline.dev`, version `v1alpha1`).
//!
//! Field doc comments are what `kubectl explain` prints; they are written for
//! the platform teams who author these objects. Validation that the OpenAPI
//! schema and CEL can express lives here (so `kubectl apply` refuses bad YAML
//! naming the field); what they cannot express is checked again in
//! [`crate::core::validate`] and reported as a `Valid=False` condition.

pub mod hotline;
pub mod plan;
pub mod template;

pub use hotline::*;
pub use plan::*;
pub use template::PodTemplate;

use schemars::{Schema, SchemaGenerator, json_schema};

/// API group of both kinds.
pub const GROUP: &str = "crisis.hotline.dev";
/// API version of both kinds.
pub const VERSION: &str = "v1alpha1";

/// E.164 phone number: `+`, a non-zero country code digit, up to 15 digits.
pub const E164_PATTERN: &str = r"^\+[1-9][0-9]{1,14}$";
/// Local clock time `HH:MM` on a 24-hour clock; `24:00` ends the day.
pub const CLOCK_PATTERN: &str = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";
/// Shape of an IANA time zone name (`UTC`, `Europe/Paris`,
/// `America/Argentina/Buenos_Aires`, `Etc/GMT+2`). Whether the zone exists is
/// checked by the operator (`Valid=False` with reason `UnknownTimeZone`).
pub const TIME_ZONE_PATTERN: &str = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$";
/// A DNS-1123 label (names of components, scenarios, referenced hotlines).
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Go-style duration limited to whole units: `90s`, `5m`, `1h30m`, `250ms`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";
/// Five-field cron expression (minute hour day-of-month month day-of-week),
/// each field made of digits, `*`, `,`, `-`, `/`, or names like `MON`/`JAN`.
pub const CRON_PATTERN: &str =
    r"^[0-9*,/\-]+ [0-9*,/\-]+ [0-9*,/\-?LW]+ [0-9A-Za-z*,/\-]+ [0-9A-Za-z*,/\-?L#]+$";

/// Schema for an embedded Kubernetes object (a `PodTemplateSpec`) that the
/// apiserver validates later when the operator creates the Deployment: an
/// object whose fields are kept as written. Embedding the full generated
/// PodTemplateSpec schema would make the CRD several hundred kilobytes and
/// push CEL cost estimates over the apiserver's limits.
pub fn preserve_unknown_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[cfg(test)]
mod tests;
