//! Junction's engine: the operations behind every interface (HTTP API,
//! CLI, later schedules and triggers), composed from the store and the
//! runtimes.
//!
//! Architecture invariant: no HTTP and no SQL here. The engine speaks
//! `junction-core` types and [`EngineError`]; the server maps those to
//! status codes in one place.
//!
//! It holds the content rules that need more than one document
//! (`content`), starts, waits for, revokes and replays runs (`runs`), and
//! runs workers that execute tasks from the store's queue (`worker`).
//! It also fires schedules (`scheduler`) and serves spec 000's jobs: the
//! grid, history, stop and automated triggers (`jobs`).

mod batch;
mod content;
mod events;
mod flows;
mod jobs;
mod memo;
mod runs;
mod scheduler;
mod stacks;
mod worker;
mod xds;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, oneshot, Notify};

use junction_core::Invalid;
use junction_runtime::Runtime;
use junction_store::{Store, StoreError};

pub use content::StoredApplication;
pub use flows::{flow_of_run, FlowRunRequest, FlowView, WebhookRefused, FLOW_RUN_TOKEN_PREFIX, MAX_ERRORS_LISTED};
pub use jobs::{Job, JobRun, Trigger};
pub use junction_runtime::package::ArchiveFormat;
pub use junction_runtime::Health as RuntimeHealth;
pub use runs::{masked_vars, RunRequest};
pub use scheduler::{FireReport, Schedule, SchedulerConfig};
pub use stacks::{CallAnswer, NewStack, StackChange, StackDetail, StackRequest, StackUpload};
pub use worker::WorkerConfig;
pub use xds::QueueOutcome;

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
    /// Well-formed but refers to something that cannot take it (spec 002:
    /// a service that is not a Custom CD service of the company).
    #[error(transparent)]
    Unprocessable(Invalid),
    /// Refused by a server setting.
    #[error("{0}")]
    Forbidden(String),
    /// A limit on runs going at once was reached; try again later.
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(i) => EngineError::Invalid(i),
            StoreError::NotFound(what) => EngineError::NotFound(what),
            StoreError::Conflict(why) => EngineError::Conflict(why),
            StoreError::Busy(why) => EngineError::Busy(why),
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
    signals: Arc<Signals>,
    logs: worker::LogWriter,
    completions: worker::CompletionWriter,
    events: events::EventWriter,
    directory: events::Directory,
    /// Application revisions and step versions a worker has read (256 of each).
    apps: memo::Memo<(String, i64), Arc<junction_core::application::Application>>,
    steps: memo::Memo<(String, i64), Arc<junction_core::step::StepVersion>>,
    xds: xds::Xds,
    stacks: stacks::Stacks,
    /// The built-in flow adapters' HTTP client and database pools.
    flow_io: Arc<flows::FlowIo>,
}

/// In-process wakeups. Across processes the same facts travel through the
/// store (polling, heartbeats); these only make one process fast.
#[derive(Debug)]
pub(crate) struct Signals {
    /// A task may have become claimable.
    pub work_available: Notify,
    /// A run ended (its id).
    pub run_ended: broadcast::Sender<String>,
    /// A schedule was created, changed or deleted: the scheduler looks again.
    pub schedules_changed: Notify,
    /// Stop switches of the tasks running in this process.
    running: Mutex<HashMap<String, oneshot::Sender<String>>>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            work_available: Notify::new(),
            run_ended: broadcast::channel(1024).0,
            schedules_changed: Notify::new(),
            running: Mutex::default(),
        }
    }

    pub fn register(&self, task: &str) -> oneshot::Receiver<String> {
        let (tx, rx) = oneshot::channel();
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(task.to_string(), tx);
        rx
    }

    pub fn unregister(&self, task: &str) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(task);
    }

    pub fn stop(&self, task: &str, reason: &str) {
        if let Some(tx) = self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(task) {
            let _ = tx.send(reason.to_string());
        }
    }
}

impl Engine {
    /// Must be called inside a Tokio runtime (it starts the log writer).
    pub fn new(store: Store, runtime: Runtime) -> Engine {
        let logs = worker::LogWriter::start(store.clone());
        let completions = worker::CompletionWriter::start(store.clone());
        let events = events::EventWriter::start(store.clone());
        Engine {
            xds: xds::Xds::start(store.clone()),
            stacks: stacks::Stacks::start(store.clone()),
            flow_io: Arc::new(flows::FlowIo::new()),
            store,
            runtime,
            signals: Arc::new(Signals::new()),
            logs,
            completions,
            events,
            directory: events::Directory::default(),
            apps: memo::Memo::new(worker::CACHE_ENTRIES),
            steps: memo::Memo::new(worker::CACHE_ENTRIES),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The script isolation in force and whether it works (`/healthz`).
    pub fn runtime_health(&self) -> RuntimeHealth {
        self.runtime.health().clone()
    }

    /// A request for a new run while the sandbox is broken is refused
    /// (503) rather than accepted to wait; runs already queued wait for it.
    pub(crate) fn can_run(&self) -> Result<()> {
        self.runtime.check().map_err(|e| EngineError::Unavailable(format!("scripts cannot run on this server: {e}")))
    }
}
