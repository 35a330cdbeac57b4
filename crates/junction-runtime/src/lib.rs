//! Junction's script runtimes: Node.js and Python.
//!
//! "Execute this step source with these inputs under these limits": a
//! [`Runtime`] takes an [`Execution`], streams [`Event`]s (log lines,
//! progress) to the caller as they happen, and returns one [`Outcome`].
//!
//! Architecture invariant: this crate knows nothing of runs, queues or the
//! store. Each language is a harness (`assets/node/harness.js`,
//! `assets/python/junction_harness.py`) spoken to over protocol v1
//! (`docs/runtime-protocol.md`); everything around it — process groups,
//! limits, redaction, warm reuse — is shared here.

mod assets;
mod execute;
mod introspect;
mod pool;
mod process;
mod protocol;
mod redact;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use junction_core::step::Language;
use serde_json::Value;

pub use assets::{ensure_node_modules, install_assets};
pub use introspect::{IntrospectError, Introspection};
pub use redact::MASK;

/// A log line in the one format every runtime uses (spec 000):
/// `[{ISO-8601 UTC with ms}] [{LEVEL}] – {text}`. For lines added outside a
/// script (by the worker or the engine), so they read like the script's.
pub fn log_line(level: &str, text: &str) -> String {
    let ts = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ");
    format!("[{ts}] [{level}] \u{2013} {text}")
}

/// How runtimes are started and kept.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub node: PathBuf,
    pub python: PathBuf,
    pub npm: PathBuf,
    /// Where harness files, installed modules, working directories and
    /// the runtimes' home live (default `DATA_DIR/runtime`).
    pub dir: PathBuf,
    /// `node_modules` with spec 000's supported modules; default
    /// `dir/node/node_modules`.
    pub node_modules: Option<PathBuf>,
    /// A warm process is recycled after this many executions.
    pub max_uses: u32,
    /// Most idle warm processes kept (oldest are ended first).
    pub max_idle: usize,
    /// Keep one pre-started process per language.
    pub spare: bool,
    pub start_timeout: Duration,
    /// Between SIGTERM and SIGKILL when stopping.
    pub kill_grace: Duration,
    /// Upper bound for an upload's check.
    pub check_timeout: Duration,
    /// Run each process inside bubblewrap (`bwrap`) when it is installed.
    pub sandbox: Sandbox,
    /// Paths that do not exist inside the sandbox (the data dir with the
    /// database and the key file). The runtime's own directories under
    /// them are mounted back.
    pub hidden_paths: Vec<PathBuf>,
}

/// Whether runtime processes are sandboxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    /// With bubblewrap when `bwrap` is on `PATH`, else without.
    Auto,
    Off,
}

impl RuntimeConfig {
    pub fn new(dir: impl Into<PathBuf>) -> RuntimeConfig {
        RuntimeConfig {
            node: "node".into(),
            python: "python3".into(),
            npm: "npm".into(),
            dir: dir.into(),
            node_modules: None,
            max_uses: 100,
            max_idle: 16,
            spare: true,
            start_timeout: Duration::from_secs(15),
            kill_grace: Duration::from_secs(3),
            check_timeout: Duration::from_secs(20),
            sandbox: Sandbox::Auto,
            hidden_paths: Vec::new(),
        }
    }

    pub fn node_modules_dir(&self) -> PathBuf {
        self.node_modules.clone().unwrap_or_else(|| self.dir.join("node/node_modules"))
    }
}

/// The script to run: one stored step version, with the library modules it
/// may import (Python: dotted module name -> source, e.g. a SyncPack's
/// parent step).
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    pub language: Language,
    /// Identity of the code: SHA-256 of the source and its modules. A
    /// process serves one identity for its whole life.
    pub sha256: String,
    pub source: Arc<str>,
    pub modules: BTreeMap<String, Arc<str>>,
}

impl Script {
    pub fn new(name: impl Into<String>, language: Language, source: impl Into<Arc<str>>) -> Script {
        Script::with_modules(name, language, source, BTreeMap::new())
    }

    pub fn with_modules(
        name: impl Into<String>,
        language: Language,
        source: impl Into<Arc<str>>,
        modules: BTreeMap<String, Arc<str>>,
    ) -> Script {
        use sha2::Digest;
        let source = source.into();
        let mut hash = sha2::Sha256::new();
        hash.update(source.as_bytes());
        for (name, code) in &modules {
            // Lengths keep (name, code) boundaries unambiguous.
            hash.update((name.len() as u64).to_le_bytes());
            hash.update(name.as_bytes());
            hash.update((code.len() as u64).to_le_bytes());
            hash.update(code.as_bytes());
        }
        let sha256 = hex::encode(hash.finalize());
        Script { name: name.into(), language, sha256, source, modules }
    }
}

/// Limits of one execution.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub wall_time: Duration,
    /// Log bytes kept; beyond, one marker line and nothing more.
    pub max_log_bytes: usize,
    /// Largest saved data (JSON bytes).
    pub max_data_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { wall_time: Duration::from_secs(300), max_log_bytes: 4 * 1024 * 1024, max_data_bytes: 16 * 1024 * 1024 }
    }
}

/// One execution request.
#[derive(Debug, Clone)]
pub struct Execution {
    pub script: Script,
    /// JavaScript: `run` or an exported hook's name. Python: ignored.
    pub entry: String,
    /// Language-specific input (protocol v1, `exec.input`).
    pub input: Value,
    pub limits: Limits,
    /// Values to mask in every log line and message.
    pub secrets: Vec<String>,
    /// Do not reuse a warm process.
    pub fresh: bool,
}

impl Execution {
    pub fn new(script: Script, input: Value) -> Execution {
        Execution { script, entry: "run".into(), input, limits: Limits::default(), secrets: vec![], fresh: false }
    }
}

/// Something an execution reported while running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A finished log line, secrets masked.
    Log {
        level: String,
        line: String,
    },
    Progress {
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    /// The script reported failure (rejection, exception, missing parameter).
    Failed,
    TimedOut,
    Stopped,
    /// The runtime process died or broke the protocol.
    Crashed,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    /// JavaScript `run`: the resolve value as text.
    pub message: String,
    /// Saved data (Python) or a hook's value (JavaScript).
    pub data: Option<Value>,
    pub error: Option<String>,
    /// Exception class, e.g. `MissingRequiredStepParameter`.
    pub kind: Option<String>,
    pub traceback: Option<String>,
    pub log_truncated: bool,
    /// Served by a process that had the script loaded already.
    pub warm: bool,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// An interpreter or harness cannot be started; not the script's fault.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    #[error("runtime process failed: {0}")]
    Crashed(String),
    #[error("runtime files: {0}")]
    Io(#[from] std::io::Error),
}

/// The runtimes of one worker. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    config: Arc<RuntimeConfig>,
    pool: Arc<pool::Pool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("dir", &self.config.dir).finish()
    }
}

impl Runtime {
    /// Writes the harness files under `config.dir` and, when
    /// `config.spare`, pre-starts one process per language.
    pub async fn start(mut config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        install_assets(&config.dir)?;
        std::fs::create_dir_all(config.dir.join("work"))?;
        std::fs::create_dir_all(config.dir.join("home"))?;
        // The sandbox mounts by absolute path.
        config.dir = std::fs::canonicalize(&config.dir)?;
        if let Some(m) = &config.node_modules {
            config.node_modules = Some(std::fs::canonicalize(m).unwrap_or_else(|_| m.clone()));
        }
        config.hidden_paths = config.hidden_paths.iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
        let runtime = Runtime { config: Arc::new(config), pool: Arc::default() };
        if runtime.config.spare {
            for language in [Language::Javascript, Language::Python] {
                runtime.pool.refill_spare(&runtime.config, language);
            }
        }
        Ok(runtime)
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Whether processes run inside bubblewrap.
    pub fn sandboxed(&self) -> bool {
        process::bwrap(&self.config).is_some()
    }

    /// Runs one execution. `on_event` receives log lines and progress as
    /// they happen; `stop` completing stops the execution (SIGTERM to its
    /// process group, SIGKILL after the grace period).
    pub async fn execute(
        &self,
        execution: &Execution,
        on_event: &mut (dyn FnMut(Event) + Send),
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Outcome, RuntimeError> {
        execute::run(self, execution, on_event, stop).await
    }

    /// Ends every pooled process.
    pub async fn shutdown(&self) {
        self.pool.drain().await;
    }
}
