//! hotline-operator: holds crisis hotlines on warm standby and surges them to
//! crisis capacity within a time budget when a crisis is declared.
//!
//! `api` is the contract (CRD types), `core` the pure logic, `controller` the
//! I/O shell; see docs/ARCHITECTURE.md.

pub mod alloc;
pub mod api;
pub mod controller;
pub mod core;
pub mod leader;
pub mod metrics;
pub mod server;
pub mod startup;
pub mod telemetry;
