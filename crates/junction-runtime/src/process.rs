//! One runtime process: spawned in its own process group with a clean
//! environment (as a transient uid of its own under root), spoken to over
//! fds 3 and 4, its stdout and stderr collected as log lines, and killed
//! as a group.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use junction_core::step::Language;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::isolation::{private_dir, processes_of, Lease};
use crate::protocol::{self, Event, Request};
use crate::{Host, Package, RuntimeError};

/// Longest protocol line accepted (a result with saved data can be long;
/// the data limit is checked after parsing). Enforced while reading.
const MAX_LINE: usize = 64 * 1024 * 1024;
/// Longest output line kept (fd 1 or 2); the rest of a longer line is
/// dropped.
const MAX_OUTPUT_LINE: usize = 64 * 1024;
/// Output lines queued between a pipe and the execution reading them.
const MAX_OUTPUT_QUEUED: usize = 1024;
/// Processes one transient uid may have at once.
const MAX_PROCESSES: libc::rlim_t = 256;

pub(crate) struct Process {
    child: Child,
    /// Protocol requests: the child's fd 3.
    requests: pipe::Sender,
    /// Protocol events: the child's fd 4. Fds 1 and 2 are plain log output,
    /// so nothing a script writes there can break the protocol.
    pub events: BufReader<pipe::Receiver>,
    /// Lines the process wrote to fd 1 (`LOG`) or fd 2 (`ERROR`).
    pub output: mpsc::Receiver<(&'static str, String)>,
    /// This process's own directory: its home and each execution's working
    /// directory (each 0700, its uid's), nothing else of the runtime's
    /// writable, and in the sandbox the only writable mount. It is root's
    /// and 0711 itself, so the script can neither list it nor swap an entry
    /// for a link while root creates the next working directory. Removed
    /// with the process (after its uid's processes are killed), so nothing
    /// one script leaves in `$HOME` reaches another.
    dir: Option<tempfile::TempDir>,
    pgid: i32,
    pub language: Language,
    /// What this process serves: (tenant, script sha256). A process never
    /// serves two scripts nor two tenants (applications).
    pub serves: Option<(String, String)>,
    pub uses: u32,
    /// The serving execution's own recycling bound, if it has one.
    pub max_uses: Option<u32>,
    /// The process's home (also the working directory of a package's calls).
    pub home: PathBuf,
    /// The redactor of the last execution, with the secrets it was built
    /// for: a warm process usually serves the same secrets again, and
    /// building the automaton costs more than the execution.
    redactor: Option<(Vec<String>, std::sync::Arc<crate::redact::Redactor>)>,
    /// The transient uid it runs as, given back when it is gone.
    pub uid: Option<Lease>,
    /// Every secret value this process was handed so far: a line a timer of
    /// an earlier execution prints late is masked with those too.
    pub served_secrets: Vec<String>,
    /// Processes of that uid once ready (the harness, and bubblewrap's
    /// own); more after an execution means the script left some behind.
    pub baseline: usize,
}

impl Process {
    /// A redactor masking `secrets` and hiding `paths`, reused while the
    /// secrets stay the same.
    pub fn redactor(&mut self, secrets: &[String], paths: &[String]) -> std::sync::Arc<crate::redact::Redactor> {
        match &self.redactor {
            Some((built_for, r)) if built_for.as_slice() == secrets => r.clone(),
            _ => {
                let r = std::sync::Arc::new(crate::redact::Redactor::with_paths(secrets, paths));
                self.redactor = Some((secrets.to_vec(), r.clone()));
                r
            }
        }
    }

    pub async fn spawn(host: &Host, language: Language, package: Option<&Package>) -> Result<Process, RuntimeError> {
        host.isolation.check()?;
        let package_dir = package.map(|p| host.package_dir(&p.dir)).transpose()?;
        // The lease gives the uid back however this function returns.
        let uid = match &host.isolation.users {
            Some(users) => Some(users.take()?),
            None => None,
        };
        let owner = uid.as_ref().map(|l| (l.uid, l.gid));
        let dir = private_dir(&host.root.join("work"), "p-", None)?;
        if owner.is_some() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
        }
        let home = private_dir(dir.path(), "home-", owner)?.keep();
        let assets = host.root.join("assets");
        let (program, args): (&Path, Vec<PathBuf>) = match language {
            Language::Javascript => {
                // Node's permission model: the script reads only the
                // harness, the modules and its process's directory, writes
                // only the latter, and cannot spawn processes, start
                // workers or load native addons, however it reaches
                // `require`.
                let mut args: Vec<PathBuf> =
                    vec!["--experimental-permission".into(), "--disable-warning=ExperimentalWarning".into()];
                // One flag per path: Node 20 takes no list in one flag.
                for p in
                    [assets.as_path(), host.modules.as_path(), dir.path()].into_iter().chain(package_dir.as_deref())
                {
                    args.push(format!("--allow-fs-read={}", p.display()).into());
                }
                args.push(format!("--allow-fs-write={}", dir.path().display()).into());
                args.push(assets.join("node/harness.js"));
                (&host.config.node, args)
            }
            Language::Python => (
                &host.config.python,
                vec!["-u".into(), "-B".into(), "-s".into(), assets.join("python/junction_harness.py")],
            ),
        };
        let mut cmd = match &host.isolation.bwrap {
            Some(bwrap) => {
                let mut c = Command::new(bwrap);
                c.args(sandbox_args(host, dir.path(), package_dir.as_deref())).arg("--").arg(program).args(&args);
                c
            }
            None => {
                let mut c = Command::new(program);
                c.args(&args);
                c
            }
        };
        // A package's env is not given here: the harness sets it in
        // `process.env` before the module loads, so no program Junction
        // starts (bubblewrap, the interpreter's loader) ever reads it.
        cmd.env_clear();
        cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &home)
            .env("TMPDIR", &home)
            .env("LANG", "C.UTF-8")
            .env("TZ", "UTC")
            .current_dir(&home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(lease) = &uid {
            // std drops the supplementary groups when root sets a uid.
            cmd.uid(lease.uid).gid(lease.gid);
        }
        match language {
            Language::Javascript => {
                cmd.env("JUNCTION_NODE_MODULES", &host.modules)
                    .env("AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE", "1");
                if let Some(dir) = &package_dir {
                    // A package resolves its own node_modules first, then
                    // the shared modules (a one-file stack may use lodash).
                    cmd.env("JUNCTION_PACKAGE_DIR", dir).env("NODE_PATH", &host.modules);
                }
            }
            Language::Python => {
                cmd.env("PYTHONPATH", assets.join("python"))
                    .env("PYTHONNOUSERSITE", "1")
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .env("PYTHONUNBUFFERED", "1")
                    .env("PYTHONIOENCODING", "utf-8");
            }
        }
        let (child_in, requests) = pipe_pair()?;
        let (events, child_out) = pipe_pair()?;
        let (fd_in, fd_out) = (child_in.as_raw_fd(), child_out.as_raw_fd());
        let limit_procs = uid.is_some();
        // SAFETY: only async-signal-safe calls (fcntl, dup2, close, setsid,
        // prctl, umask, setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Out of the way first, so neither lands on the other's slot.
                let a = libc::fcntl(fd_in, libc::F_DUPFD, 10);
                let b = libc::fcntl(fd_out, libc::F_DUPFD, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(a);
                libc::close(b);
                // A session of its own (its process group is its pid): no
                // controlling terminal to inject keystrokes into.
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // No setuid program gains privileges; what it writes to
                // shared places is its own.
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                libc::umask(0o077);
                if limit_procs {
                    // A fork bomb stays a small one (the uid is its own).
                    let cap = libc::rlimit { rlim_cur: MAX_PROCESSES, rlim_max: MAX_PROCESSES };
                    libc::setrlimit(libc::RLIMIT_NPROC, &cap);
                }
                Ok(())
            });
        }
        let program = cmd.as_std().get_program().to_string_lossy().into_owned();
        let spawned = cmd.spawn();
        drop((child_in, child_out));
        let mut child = spawned.map_err(|e| RuntimeError::Unavailable(format!("cannot start {program}: {e}")))?;
        let pgid = child.id().map(|id| id as i32).unwrap_or(0);
        let requests = pipe::Sender::from_owned_fd(requests)?;
        let events = BufReader::with_capacity(64 * 1024, pipe::Receiver::from_owned_fd(events)?);
        let (tx, output) = mpsc::channel(MAX_OUTPUT_QUEUED);
        forward_lines(child.stdout.take().expect("stdout is piped"), "LOG", tx.clone());
        forward_lines(child.stderr.take().expect("stderr is piped"), "ERROR", tx);
        let mut process = Process {
            child,
            requests,
            events,
            output,
            dir: Some(dir),
            pgid,
            language,
            serves: None,
            uses: 0,
            max_uses: None,
            home: home.clone(),
            redactor: None,
            uid,
            served_secrets: Vec::new(),
            baseline: 0,
        };
        match tokio::time::timeout(host.config.start_timeout, next_event(&mut process.events)).await {
            Ok(Ok(Some(Event::Ready { v, .. }))) if v == protocol::VERSION => {
                process.baseline = process.count_processes().await;
                Ok(process)
            }
            Ok(Ok(Some(Event::Ready { v, .. }))) => {
                process.kill().await;
                Err(RuntimeError::Unavailable(format!(
                    "{program}: harness speaks protocol {v}, expected {}",
                    protocol::VERSION
                )))
            }
            other => {
                let mut why = match other {
                    Err(_) => format!("{program} did not become ready within {:?}", host.config.start_timeout),
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok(_)) => format!("{program} exited before becoming ready"),
                };
                // The last words may still be in the pipe.
                let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
                while let Ok(Some((_, line))) = tokio::time::timeout_at(deadline, process.output.recv()).await {
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
        self.requests.write_all(&line).await.map_err(|e| RuntimeError::Crashed(format!("writing to the runtime: {e}")))
    }

    /// A fresh working directory for one execution, inside this process's
    /// own directory and owned like it.
    pub fn workdir(&self, prefix: &str) -> std::io::Result<tempfile::TempDir> {
        private_dir(self.dir(), prefix, self.uid.as_ref().map(|l| (l.uid, l.gid)))
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("a live process has its directory").path()
    }

    /// How many processes run as this process's uid (0 without one).
    pub async fn count_processes(&self) -> usize {
        match &self.uid {
            // Inline: a readdir of /proc and a stat per process is cheaper
            // than the hop to a blocking thread.
            Some(lease) => processes_of(lease.uid).len(),
            None => 0,
        }
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

    /// Drops output lines left from earlier work, so they are not logged in
    /// the next execution.
    pub fn discard_output(&mut self) {
        while self.output.try_recv().is_ok() {}
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

/// A pipe, both ends close-on-exec: (read end, write end).
fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array; on success we own them.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Relays a child's output pipe as lines of `level`. A full queue holds
/// the relay back, and so the writer (the pipe fills): every line reaches
/// the execution's log, which keeps draining while it waits for the
/// result, and its size limit decides what is kept.
fn forward_lines<R: AsyncRead + Unpin + Send + 'static>(
    pipe: R,
    level: &'static str,
    tx: mpsc::Sender<(&'static str, String)>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe);
        while let Ok(Some(line)) = read_line_capped(&mut reader, MAX_OUTPUT_LINE, false).await {
            if tx.send((level, line)).await.is_err() {
                break;
            }
        }
    });
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
pub(crate) async fn next_event(stdout: &mut BufReader<pipe::Receiver>) -> Result<Option<Event>, RuntimeError> {
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
        // Whatever escaped the group (setsid, a double fork) is found by
        // its uid and killed before the uid serves anyone else.
        if let Some(mut lease) = self.uid.take() {
            if let Some(dir) = self.dir.take() {
                lease.keep_until_reaped(dir);
            }
        }
    }
}

/// The whole file system read-only, a private /tmp, the hidden paths
/// replaced by empty directories, and only the runtime's own directories
/// mounted back: harness files and modules read-only, and this process's
/// own directory writable (not the other processes'). The network stays:
/// scripts call remote APIs.
pub(crate) fn sandbox_args(host: &Host, own: &Path, package: Option<&Path>) -> Vec<std::ffi::OsString> {
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
    for hidden in &host.config.hidden_paths {
        if hidden.is_dir() {
            push(&["--tmpfs".as_ref(), hidden.as_os_str()]);
        } else {
            push(&["--ro-bind".as_ref(), "/dev/null".as_ref(), hidden.as_os_str()]);
        }
    }
    // The other processes' directories are not there at all.
    let work = host.root.join("work");
    push(&["--tmpfs".as_ref(), work.as_os_str()]);
    let assets = host.root.join("assets");
    push(&["--ro-bind".as_ref(), assets.as_os_str(), assets.as_os_str()]);
    if host.modules.is_dir() {
        push(&["--ro-bind".as_ref(), host.modules.as_os_str(), host.modules.as_os_str()]);
    }
    if let Some(package) = package {
        push(&["--ro-bind".as_ref(), package.as_os_str(), package.as_os_str()]);
    }
    push(&["--bind".as_ref(), own.as_os_str(), own.as_os_str()]);
    push(&["--die-with-parent".as_ref(), "--new-session".as_ref(), "--unshare-pid".as_ref(), "--unshare-ipc".as_ref()]);
    a
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
