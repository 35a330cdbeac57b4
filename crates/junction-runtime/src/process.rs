//! One runtime process: spawned in its own process group with a clean
//! environment, spoken to over stdin/stdout, its stderr collected as log
//! lines, and killed as a group.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use junction_core::step::Language;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use crate::protocol::{self, Event, Request};
use crate::{RuntimeConfig, RuntimeError, Sandbox};

/// Longest protocol line accepted (a result with saved data can be long;
/// the data limit is checked after parsing). Enforced while reading.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// Longest stderr line kept; the rest of a longer line is dropped.
const MAX_STDERR_LINE: usize = 64 * 1024;
/// Stderr lines held for an execution; more are dropped (the reader keeps
/// draining the pipe so the process never blocks on it).
const MAX_STDERR_QUEUED: usize = 1024;

pub(crate) struct Process {
    child: Child,
    stdin: ChildStdin,
    pub stdout: BufReader<ChildStdout>,
    pub stderr: mpsc::Receiver<String>,
    /// This process's own home directory (removed with it), so nothing one
    /// script leaves in `$HOME` (`.node_modules`, Python user site, tool
    /// configs) reaches another script.
    _home: tempfile::TempDir,
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
            Language::Javascript => {
                // Node's permission model: the script reads only the
                // harness, the modules and the working directories, writes
                // only the latter, and cannot spawn processes, start
                // workers or load native addons, however it reaches
                // `require`.
                let work = config.dir.join("work");
                let mut args: Vec<PathBuf> =
                    vec!["--experimental-permission".into(), "--disable-warning=ExperimentalWarning".into()];
                // One flag per path: Node 20 takes no list in one flag.
                for p in [assets.as_path(), config.node_modules_dir().as_path(), work.as_path()] {
                    args.push(format!("--allow-fs-read={}", p.display()).into());
                }
                args.push(format!("--allow-fs-write={}", work.display()).into());
                args.push(assets.join("node/harness.js"));
                (&config.node, args)
            }
            Language::Python => {
                (&config.python, vec!["-u".into(), "-B".into(), "-s".into(), assets.join("python/junction_harness.py")])
            }
        };
        let home = tempfile::Builder::new().prefix("h-").tempdir_in(config.dir.join("home"))?;
        let mut cmd = match bwrap(config) {
            Some(bwrap) => {
                let mut c = Command::new(bwrap);
                c.args(sandbox_args(config, home.path())).arg("--").arg(program).args(&args);
                c
            }
            None => {
                let mut c = Command::new(program);
                c.args(&args);
                c
            }
        };
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", home.path())
            .env("LANG", "C.UTF-8")
            .env("TZ", "UTC")
            .current_dir(home.path())
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
                    .env("PYTHONNOUSERSITE", "1")
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .env("PYTHONUNBUFFERED", "1")
                    .env("PYTHONIOENCODING", "utf-8");
            }
        }
        let program = cmd.as_std().get_program().to_string_lossy().into_owned();
        let mut child = cmd.spawn().map_err(|e| RuntimeError::Unavailable(format!("cannot start {program}: {e}")))?;
        let pgid = child.id().map(|id| id as i32).unwrap_or(0);
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::with_capacity(64 * 1024, child.stdout.take().expect("stdout is piped"));
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let (tx, stderr) = mpsc::channel(MAX_STDERR_QUEUED);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr_pipe);
            while let Ok(Some(line)) = read_line_capped(&mut reader, MAX_STDERR_LINE, false).await {
                // Full: the line is dropped, the pipe still drained.
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(line) {
                    break;
                }
            }
        });
        let mut process = Process { child, stdin, stdout, stderr, _home: home, pgid, language, script: None, uses: 0 };
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

    /// Whether the process has exited (a pooled one may have died idle).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Drops stderr lines left from earlier work (a late timer), so they
    /// are not logged in the next execution.
    pub fn discard_stderr(&mut self) {
        while self.stderr.try_recv().is_ok() {}
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

/// One line, at most `max` bytes kept, invalid UTF-8 replaced; `None` at
/// the end of the stream. A longer line is an error when `strict`, else cut.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
    strict: bool,
) -> std::io::Result<Option<String>> {
    let mut line: Vec<u8> = Vec::new();
    let mut seen_any = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(seen_any.then(|| String::from_utf8_lossy(&line).into_owned()));
        }
        seen_any = true;
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let room = max.saturating_sub(line.len());
        if chunk.len() > room && strict {
            return Err(std::io::Error::other(format!("a line longer than {max} bytes")));
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
    }
}

/// The next protocol event; `None` when the process closed stdout.
pub(crate) async fn next_event(stdout: &mut BufReader<ChildStdout>) -> Result<Option<Event>, RuntimeError> {
    loop {
        let line = read_line_capped(stdout, MAX_LINE, true)
            .await
            .map_err(|e| RuntimeError::Crashed(format!("reading from the runtime: {e}")))?;
        let Some(line) = line else { return Ok(None) };
        if line.trim().is_empty() {
            continue;
        }
        return serde_json::from_str(&line).map(Some).map_err(|e| {
            RuntimeError::Crashed(format!("the runtime broke the protocol ({e}): {}", truncate(&line, 200)))
        });
    }
}

impl Drop for Process {
    /// However a process is let go (an execution cancelled midway, an
    /// early return), its whole group goes with it; `kill_on_drop` alone
    /// would reach only the leader.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGKILL);
        }
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
fn sandbox_args(config: &RuntimeConfig, home: &Path) -> Vec<std::ffi::OsString> {
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
        if hidden.is_dir() {
            push(&["--tmpfs".as_ref(), hidden.as_os_str()]);
        } else {
            push(&["--ro-bind".as_ref(), "/dev/null".as_ref(), hidden.as_os_str()]);
        }
    }
    let assets = config.dir.join("assets");
    let modules = config.node_modules_dir();
    push(&["--ro-bind".as_ref(), assets.as_os_str(), assets.as_os_str()]);
    if modules.is_dir() {
        push(&["--ro-bind".as_ref(), modules.as_os_str(), modules.as_os_str()]);
    }
    let work = config.dir.join("work");
    for rw in [work.as_path(), home] {
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
