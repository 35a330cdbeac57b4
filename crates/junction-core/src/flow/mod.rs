//! Record flows (spec 001), the pure half: the flow document, integrator.io's
//! import mapping, the answers of the per-record hooks, and the templates
//! and adapter settings of the built-in exports and imports.

pub mod adapters;
pub mod document;
pub mod mapping;
pub mod template;

pub use mapping::*;
