//! The pure core: capacity arithmetic, standby schedules, validation and the
//! crisis lifecycle state machine. No client, no I/O, no clock: every
//! function takes `now` as an argument, so it is tested exhaustively without a
//! cluster (unit and property tests live next to the code).

pub mod capacity;
pub mod duration;
pub mod lifecycle;
pub mod schedule;
pub mod validate;

/// A problem with a user's object that the schema could not catch. Becomes a
/// `Valid=False` condition (reason, message) and a Warning Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// CamelCase reason, stable (used as condition reason and Event reason).
    pub reason: &'static str,
    /// Human message naming the field.
    pub message: String,
}

impl Problem {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}
