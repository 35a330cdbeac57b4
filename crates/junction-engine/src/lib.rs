//! Junction's engine: the operations behind every interface (HTTP API,
//! CLI, later schedules and triggers), composed from the store and the
//! runtimes.
//!
//! Architecture invariant: no HTTP and no SQL here. The engine speaks
//! `junction-core` types and [`EngineError`]; the server maps those to
//! status codes in one place.
//!
//! Today the engine holds the content rules that need more than one
//! document (a step cannot be deleted while an application runs it; uploads
//! are checked by the real interpreter). Runs, queues, schedules and
//! triggers arrive with the engine issue.

mod content;

use junction_core::Invalid;
use junction_runtime::Runtime;
use junction_store::{Store, StoreError};

pub use content::StoredApplication;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Something Junction needs (an interpreter) is missing or broken.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(i) => EngineError::Invalid(i),
            StoreError::NotFound(what) => EngineError::NotFound(what),
            StoreError::Conflict(why) => EngineError::Conflict(why),
            other => EngineError::Store(other),
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// The engine. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Store,
    runtime: Runtime,
}

impl Engine {
    pub fn new(store: Store, runtime: Runtime) -> Engine {
        Engine { store, runtime }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}
