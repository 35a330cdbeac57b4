//! One runtime process: spawned in its own process group with a clean
//! environment, spoken to over stdin/stdout, its stderr collected as log
//! lines, and killed as a group.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use junction_core::step::Language;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use crate::protocol::{self, Event, Request};
use crate::{RuntimeConfig, RuntimeError, Sandbox};

/// Longest protocol line accepted (a result with saved data can be long;
/// the data limit is checked after parsing).
const MAX_LINE: usize = 64 * 1024 * 1024;

pub(crate) struct Process {
    child: Child,
    stdin: ChildStdin,
    pub stdout: Lines<BufReader<ChildStdout>>,
    pub stderr: mpsc::UnboundedReceiver<String>,
    pgid: i32,
    pub language: Language,
    /// The script this process has loaded (sha256); a process never serves
    /// two scripts.
    pub script: Option<String>,
    pub uses: u32,
}

impl Process {
    pub async fn spawn(config: &RuntimeConfig, language: Language) -> Result<Process, RuntimeError> {
        let assets = config.dir.join("assets");
        let (program, args): (&Path, Vec<PathBuf>) = match language {
            Language::Javascript => (&config.node, vec![assets.join("node/harness.js")]),
            Language::Python => {
                (&config.python, vec!["-u".into(), "-B".into(), assets.join("python/junction_harness.py")])
            }
        };
        let mut cmd = match bwrap(config) {
            Some(bwrap) => {
                let mut c = Command::new(bwrap);
                c.args(sandbox_args(config)).arg("--").arg(program).args(&args);
                c
            }
            None => {
                let mut c = Command::new(program);
                c.args(&args);
                c
            }
        };
        let home = config.dir.join("home");
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &home)
            .env("LANG", "C.UTF-8")
            .env("TZ", "UTC")
            .current_dir(&home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        match language {
            Language::Javascript => {
                cmd.env("JUNCTION_NODE_MODULES", config.node_modules_dir())
                    .env("AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE", "1");
            }
            Language::Python => {
                cmd.env("PYTHONPATH", assets.join("python"))
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .env("PYTHONUNBUFFERED", "1")
                    .env("PYTHONIOENCODING", "utf-8");
            }
        }
        let program = cmd.as_std().get_program().to_string_lossy().into_owned();
        let mut child = cmd.spawn().map_err(|e| RuntimeError::Unavailable(format!("cannot start {program}: {e}")))?;
        let pgid = child.id().map(|id| id as i32).unwrap_or(0);
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::with_capacity(64 * 1024, child.stdout.take().expect("stdout is piped")).lines();
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let (tx, stderr) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr_pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = Process { child, stdin, stdout, stderr, pgid, language, script: None, uses: 0 };
        match tokio::time::timeout(config.start_timeout, next_event(&mut process.stdout)).await {
            Ok(Ok(Some(Event::Ready { v, .. }))) if v == protocol::VERSION => Ok(process),
            Ok(Ok(Some(Event::Ready { v, .. }))) => {
                process.kill().await;
                Err(RuntimeError::Unavailable(format!(
                    "{program}: harness speaks protocol {v}, expected {}",
                    protocol::VERSION
                )))
            }
            other => {
                let mut why = match other {
                    Err(_) => format!("{program} did not become ready within {:?}", config.start_timeout),
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(_)) => format!("{program} exited before becoming ready"),
                };
                while let Ok(line) = process.stderr.try_recv() {
                    why.push_str("\n  ");
                    why.push_str(&line);
                }
                process.kill().await;
                Err(RuntimeError::Unavailable(why))
            }
        }
    }

    pub async fn send(&mut self, request: &Request<'_>) -> Result<(), RuntimeError> {
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        self.stdin.write_all(&line).await.map_err(|e| RuntimeError::Crashed(format!("writing to the runtime: {e}")))?;
        self.stdin.flush().await.map_err(|e| RuntimeError::Crashed(format!("writing to the runtime: {e}")))
    }

    pub fn signal(&self, signal: i32) {
        if self.pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals the process group
            // this process leads; it touches no memory of ours.
            unsafe {
                libc::kill(-self.pgid, signal);
            }
        }
    }

    /// SIGKILL to the whole group, then reap.
    pub async fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// SIGTERM to the group; SIGKILL after `grace`.
    pub async fn terminate(mut self, grace: Duration) {
        self.signal(libc::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            self.kill().await;
        }
    }

    /// Asks the harness to exit; kills it if it does not within a second.
    pub async fn shutdown(mut self) {
        let _ = self.send(&Request::Shutdown { v: protocol::VERSION }).await;
        if tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await.is_err() {
            self.kill().await;
        } else {
            // The harness is gone; anything it started goes with the group.
            self.signal(libc::SIGKILL);
        }
    }
}

/// The next protocol event; `None` when the process closed stdout.
pub(crate) async fn next_event(stdout: &mut Lines<BufReader<ChildStdout>>) -> Result<Option<Event>, RuntimeError> {
    loop {
        let line =
            stdout.next_line().await.map_err(|e| RuntimeError::Crashed(format!("reading from the runtime: {e}")))?;
        let Some(line) = line else { return Ok(None) };
        if line.len() > MAX_LINE {
            return Err(RuntimeError::Crashed(format!("the runtime sent a line of {} bytes", line.len())));
        }
        if line.trim().is_empty() {
            continue;
        }
        return serde_json::from_str(&line).map(Some).map_err(|e| {
            RuntimeError::Crashed(format!("the runtime broke the protocol ({e}): {}", truncate(&line, 200)))
        });
    }
}

/// The `bwrap` binary when the sandbox is on and installed.
pub(crate) fn bwrap(config: &RuntimeConfig) -> Option<PathBuf> {
    if config.sandbox == Sandbox::Off {
        return None;
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|d| d.join("bwrap")).find(|p| p.is_file())
}

/// The whole file system read-only, a private /tmp, the hidden paths
/// replaced by empty directories, and only the runtime's own directories
/// mounted back (harness files and modules read-only; working directories
/// and home writable). The network stays: scripts call remote APIs.
fn sandbox_args(config: &RuntimeConfig) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = Vec::new();
    let mut push = |parts: &[&std::ffi::OsStr]| a.extend(parts.iter().map(|p| p.to_os_string()));
    push(&["--ro-bind".as_ref(), "/".as_ref(), "/".as_ref()]);
    push(&[
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
    ]);
    for hidden in &config.hidden_paths {
        push(&["--tmpfs".as_ref(), hidden.as_os_str()]);
    }
    let assets = config.dir.join("assets");
    let modules = config.node_modules_dir();
    push(&["--ro-bind".as_ref(), assets.as_os_str(), assets.as_os_str()]);
    if modules.is_dir() {
        push(&["--ro-bind".as_ref(), modules.as_os_str(), modules.as_os_str()]);
    }
    for rw in [config.dir.join("work"), config.dir.join("home")] {
        push(&["--bind".as_ref(), rw.as_os_str(), rw.as_os_str()]);
    }
    push(&["--die-with-parent".as_ref(), "--unshare-pid".as_ref(), "--unshare-ipc".as_ref()]);
    a
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
