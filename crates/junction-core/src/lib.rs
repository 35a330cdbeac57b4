//! Junction's domain: the types every layer speaks, and the pure rules over
//! them (validation, DAG planning, roles, time).
//!
//! Architecture invariant: this crate does no I/O. It knows nothing of SQL,
//! HTTP, processes or the file system, so every rule here is unit-tested with
//! plain values.

pub mod application;
pub mod cicd;
pub mod clock;
pub mod configuration;
pub mod document;
pub mod flow;
pub mod name;
pub mod parameter;
pub mod role;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod stack;
pub mod step;
pub mod substitute;
pub mod token;
pub mod trigger;
pub mod validation;
pub mod xds;

pub use clock::{Clock, SystemClock};
pub use validation::{Invalid, Violation};
