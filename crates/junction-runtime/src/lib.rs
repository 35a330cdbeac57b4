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
mod isolation;
pub mod package;
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
pub use isolation::{Health, DEFAULT_UIDS};
pub use redact::{DataRedactor, Redactor, MASK};

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
    /// How scripts are isolated (see [`Sandbox`]).
    pub sandbox: Sandbox,
    /// The bubblewrap binary; `None` when it is not installed. Default:
    /// `bwrap` found on `PATH`.
    pub bwrap: Option<PathBuf>,
    /// Under root, scripts run as transient uids from this range (the first
    /// is their group); `None` keeps them as root.
    pub run_uids: Option<std::ops::Range<u32>>,
    /// Paths that do not exist inside the sandbox (the data dir with the
    /// database and the key file). The runtime's own directories under
    /// them are mounted back.
    pub hidden_paths: Vec<PathBuf>,
}

/// How runtime processes are isolated (`--sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sandbox {
    /// Bubblewrap when installed; under root, unprivileged uids as well
    /// (or alone without bubblewrap).
    Auto,
    /// Like `Auto`, but refuse to start without bubblewrap.
    Required,
    /// Neither: scripts run as the server's user.
    Off,
}

impl std::str::FromStr for Sandbox {
    type Err = String;
    fn from_str(s: &str) -> Result<Sandbox, String> {
        match s {
            "auto" => Ok(Sandbox::Auto),
            "required" => Ok(Sandbox::Required),
            "off" => Ok(Sandbox::Off),
            _ => Err(format!("{s:?}: expected auto, required or off")),
        }
    }
}

/// `name` on `PATH`, if it is there.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file())
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
            bwrap: find_on_path("bwrap"),
            run_uids: Some(DEFAULT_UIDS),
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
    /// A JavaScript package (a stack version) instead of one source file:
    /// `source` is then the stack configuration naming its module files.
    pub package: Option<Arc<Package>>,
}

/// A directory of JavaScript modules with their own `node_modules`, loaded
/// with Node's own `require` (no step allowlist; Node's permission model and
/// the sandbox apply): an extension stack's version. Its processes read only
/// that directory besides the harness and the shared modules, and get `env`
/// in their `process.env`, set by the harness before the package loads (never
/// in the environment of a program Junction starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
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
        Script { name: name.into(), language, sha256, source, modules, package: None }
    }

    /// A package script: `config` is the stack configuration (JSON), and
    /// `identity` what makes two packages the same code (the version's
    /// digest); the environment is part of the identity, so a process never
    /// serves a call with another environment than it started with.
    pub fn package(name: impl Into<String>, identity: &str, config: &str, package: Package) -> Script {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for part in [identity, config].into_iter().chain(package.env.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
        {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        Script {
            name: name.into(),
            language: Language::Javascript,
            sha256: hex::encode(hash.finalize()),
            source: config.into(),
            modules: BTreeMap::new(),
            package: Some(Arc::new(package)),
        }
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
    /// The input as JSON text, sent instead of `input` when set: a caller
    /// that received it as text (a stack call's `options`) passes it on
    /// without building and writing it again.
    pub raw_input: Option<Box<serde_json::value::RawValue>>,
    pub limits: Limits,
    /// Values to mask in every log line and message.
    pub secrets: Vec<String>,
    /// Who the execution is for (an application, a stack): a warm process
    /// serves one tenant only, so nothing one leaves in module state or in
    /// a timer reaches another's run.
    pub tenant: String,
    /// Do not reuse a warm process.
    pub fresh: bool,
    /// Executions a warm process serves before it is recycled, instead of
    /// [`RuntimeConfig::max_uses`] (a stack's process serves calls like a
    /// long-running extension host).
    pub max_uses: Option<u32>,
}

impl Execution {
    pub fn new(script: Script, input: Value) -> Execution {
        Execution {
            script,
            entry: "run".into(),
            input,
            raw_input: None,
            limits: Limits::default(),
            secrets: vec![],
            tenant: String::new(),
            fresh: false,
            max_uses: None,
        }
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

/// What every process of a runtime is started from.
pub(crate) struct Host {
    pub config: RuntimeConfig,
    pub isolation: isolation::Isolation,
    /// Where the harness files (`assets/`) and the processes' directories
    /// (`work/`) are: `config.dir`, or under root a directory the
    /// unprivileged uids can reach (see `isolation`).
    pub root: PathBuf,
    /// The `node_modules` scripts may require.
    pub modules: PathBuf,
    /// The runtime's own paths, as scripts would print them in tracebacks.
    pub private_paths: Vec<String>,
    /// Package directories as the processes see them (a linked copy under
    /// `root` when the uids cannot reach the original).
    pub packages: std::sync::Mutex<std::collections::HashMap<PathBuf, PathBuf>>,
}

impl Host {
    /// A package directory as its processes will read it: under root, when
    /// the scripts' uids cannot reach it (it is in the 0700 data dir), a
    /// hard-linked copy under the public root, made once, read-only to them.
    pub(crate) fn package_dir(&self, dir: &std::path::Path) -> Result<PathBuf, RuntimeError> {
        let mut known = self.packages.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seen) = known.get(dir) {
            return Ok(seen.clone());
        }
        let canonical = std::fs::canonicalize(dir)?;
        let usable = if self.isolation.users.is_some() && !isolation::reachable(&canonical) {
            use sha2::Digest;
            let id = hex::encode(&sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes())[..12]);
            let packages = self.root.join("packages");
            if !packages.is_dir() {
                use std::os::unix::fs::PermissionsExt;
                std::fs::create_dir_all(&packages)?;
                // The uids pass through to their own package, never list
                // the others (Node's permission model already confines
                // each process to its own).
                std::fs::set_permissions(&packages, std::fs::Permissions::from_mode(0o711))?;
            }
            let linked = packages.join(&id);
            if !linked.is_dir() {
                let partial = self.root.join("packages").join(format!(".{id}-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&partial);
                isolation::link_tree(&canonical, &partial)?;
                assets::readable_by_all(&partial)?;
                std::fs::rename(&partial, &linked)?;
            }
            linked
        } else {
            canonical
        };
        known.insert(dir.to_path_buf(), usable.clone());
        Ok(usable)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.root != self.config.dir {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The runtimes of one worker. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    host: Arc<Host>,
    pool: Arc<pool::Pool>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("dir", &self.host.config.dir).finish()
    }
}

impl Runtime {
    /// Writes the harness files, decides the isolation (a warning names
    /// what is missing) and, when `config.spare`, pre-starts one process
    /// per language.
    pub async fn start(mut config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        std::fs::create_dir_all(&config.dir)?;
        {
            use std::os::unix::fs::PermissionsExt;
            // Only the server's user enters it, whatever the umask; under
            // root the scripts' uids use the public root instead.
            std::fs::set_permissions(&config.dir, std::fs::Permissions::from_mode(0o700))?;
        }
        // The sandbox mounts by absolute path.
        config.dir = std::fs::canonicalize(&config.dir)?;
        if let Some(m) = &config.node_modules {
            config.node_modules = Some(std::fs::canonicalize(m).unwrap_or_else(|_| m.clone()));
        }
        config.hidden_paths = config.hidden_paths.iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
        let isolation = isolation::Isolation::resolve(&config)?;
        let users = isolation.users.is_some();
        let root = isolation::public_root(&config, users)?;
        install_assets(&root)?;
        std::fs::create_dir_all(root.join("work"))?;
        let mut modules = config.node_modules_dir();
        if users && modules.is_dir() && !isolation::reachable(&modules) {
            // The data dir is 0700: the uids read a linked copy.
            let linked = root.join("node_modules");
            isolation::link_tree(&modules, &linked)?;
            modules = linked;
        }
        if users && modules.is_dir() {
            assets::make_read_only_for_others(&modules)?;
        }
        if users {
            use std::os::unix::fs::PermissionsExt;
            // Others may pass through work/ to their own directory, never
            // list it.
            std::fs::set_permissions(root.join("work"), std::fs::Permissions::from_mode(0o711))?;
        }
        let mut private_paths: Vec<String> =
            [&config.dir, &root].iter().map(|p| p.to_string_lossy().into_owned()).collect();
        private_paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
        private_paths.dedup();
        let mut host = Host { config, isolation, root, modules, private_paths, packages: Default::default() };
        if let Some(bwrap) = host.isolation.bwrap.clone() {
            if let Err(why) = probe_bwrap(&host, &bwrap).await {
                if host.config.sandbox == Sandbox::Required {
                    return Err(RuntimeError::Unavailable(why));
                }
                host.isolation.broken(why);
            }
        }
        let health = host.isolation.health.clone();
        if let (Some(problem), true) = (&health.problem, health.ok) {
            tracing::warn!("script isolation: {problem}");
        } else if let Some(problem) = &health.problem {
            tracing::error!("script isolation is broken, no script will run until it works: {problem}");
        }
        let runtime = Runtime { host: Arc::new(host), pool: Arc::default() };
        if runtime.host.config.spare && health.ok {
            for language in [Language::Javascript, Language::Python] {
                runtime.pool.refill_spare(&runtime.host, language);
            }
        }
        Ok(runtime)
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.host.config
    }

    /// Whether processes run inside bubblewrap.
    pub fn sandboxed(&self) -> bool {
        self.host.isolation.bwrap.is_some()
    }

    /// The isolation in force, and whether it works.
    pub fn health(&self) -> &Health {
        &self.host.isolation.health
    }

    /// `Unavailable` naming the problem while the sandbox is broken.
    pub fn check(&self) -> Result<(), RuntimeError> {
        self.host.isolation.check()
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

/// Starts `true` in the sandbox as a script process would be: a bwrap
/// that is installed but cannot work here (no user namespaces, a broken
/// setuid bit) is found at start, not at the first run.
async fn probe_bwrap(host: &Host, bwrap: &std::path::Path) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(bwrap);
    cmd.args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--die-with-parent"])
        .args(["--", "true"])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(users) = &host.isolation.users {
        cmd.uid(users.gid).gid(users.gid);
    }
    let out = tokio::time::timeout(host.config.start_timeout, cmd.output()).await;
    match out {
        Ok(Ok(o)) if o.status.success() => Ok(()),
        Ok(Ok(o)) => Err(format!(
            "bubblewrap ({}) is installed but does not work: {}",
            bwrap.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(Err(e)) => Err(format!("bubblewrap ({}) cannot be started: {e}", bwrap.display())),
        Err(_) => Err(format!("bubblewrap ({}) did not finish a trial run", bwrap.display())),
    }
}
