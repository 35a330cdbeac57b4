//! How far a script is kept from the server: bubblewrap, unprivileged
//! users, or nothing — decided once at start, reported by `health`.
//!
//! - **bubblewrap** (`bwrap` installed and working): each process in its
//!   own mount, PID and IPC namespaces; the data dir does not exist inside.
//! - **user** (Junction runs as root): each process runs as a transient
//!   unprivileged uid of its own (systemd's `DynamicUser` model: taken from
//!   a configured range, no account is created), with no supplementary
//!   groups. It cannot read the data dir (0700), the key file or the
//!   server's `/proc/PID/environ` and memory, cannot write the harness
//!   files (root's), and cannot reach another process's files. When its
//!   process ends, every process of that uid is killed and what it left in
//!   `/tmp`, `/var/tmp` and `/dev/shm` is removed before the uid is used
//!   again. As root, bubblewrap processes get a uid of their own too.
//! - **none**: neither is available (not root, no bwrap) or `--sandbox off`.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{RuntimeConfig, RuntimeError, Sandbox};

/// The uids scripts run as when Junction runs as root; the first one is
/// the scripts' group. Above 65535 (16-bit tools, `nobody`) and below
/// 100000, where `useradd` starts sub-uid ranges; outside systemd's dynamic
/// range (61184–65519) and its container ranges (524288 on).
pub const DEFAULT_UIDS: std::ops::Range<u32> = 90000..90256;

/// What `/healthz` says about script isolation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// `bubblewrap`, `user` or `none`.
    pub sandbox: &'static str,
    /// Scripts run as transient unprivileged uids.
    pub unprivileged_users: bool,
    /// False when the sandbox is configured but does not work: no
    /// execution starts until it does.
    pub ok: bool,
    /// What is missing or broken, for the operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

pub(crate) struct Isolation {
    pub bwrap: Option<PathBuf>,
    pub users: Option<Arc<Users>>,
    /// Decided at start (a failed trial run marks it broken) and fixed
    /// for the runtime's life.
    pub health: Health,
}

impl Isolation {
    /// Decides the mode. `required` without a working bwrap is an error;
    /// `auto` with a broken bwrap starts degraded (no silent fallback: the
    /// operator installed it for a reason).
    pub fn resolve(config: &RuntimeConfig) -> Result<Isolation, RuntimeError> {
        let root = unsafe { libc::geteuid() } == 0;
        let users = match (config.sandbox, root, config.run_uids.clone()) {
            (Sandbox::Off, ..) | (_, false, _) | (_, true, None) => None,
            (_, true, Some(range)) => Some(Arc::new(Users::new(range)?)),
        };
        let bwrap = match config.sandbox {
            Sandbox::Off => None,
            _ => config.bwrap.clone().filter(|p| p.is_file()),
        };
        if config.sandbox == Sandbox::Required && bwrap.is_none() {
            return Err(RuntimeError::Unavailable(
                "--sandbox required: bubblewrap (bwrap) is not installed (apt-get install bubblewrap)".into(),
            ));
        }
        let sandbox = match (&bwrap, &users) {
            (Some(_), _) => "bubblewrap",
            (None, Some(_)) => "user",
            (None, None) => "none",
        };
        let problem = match (config.sandbox, &bwrap, &users) {
            (Sandbox::Off, ..) => Some("the sandbox is off (--sandbox off): scripts run as this server's user and can read its data dir and key".to_string()),
            (_, None, Some(_)) => Some("bubblewrap (bwrap) is not installed: scripts run as unprivileged users without namespaces; they can see other processes and reach the network, including this server's loopback API (apt-get install bubblewrap)".to_string()),
            (_, None, None) => Some("bubblewrap (bwrap) is not installed and Junction does not run as root: scripts run as this server's user and can read its data dir and key (install bubblewrap, or run as root for unprivileged script users)".to_string()),
            _ => None,
        };
        let health = Health { sandbox, unprivileged_users: users.is_some(), ok: true, problem };
        Ok(Isolation { bwrap, users, health })
    }

    /// A bubblewrap that failed its trial run marks the runtime broken.
    pub fn broken(&mut self, why: String) {
        self.health.ok = false;
        self.health.problem = Some(why);
    }

    pub fn check(&self) -> Result<(), RuntimeError> {
        match self.health.ok {
            true => Ok(()),
            false => Err(RuntimeError::Unavailable(
                self.health.problem.clone().unwrap_or_else(|| "the sandbox does not work".into()),
            )),
        }
    }
}

/// The transient uids; one per live runtime process. Several Junction
/// processes on one machine (servers, workers, test binaries) share the
/// range: a uid is held under an exclusive lock on a file of its own in a
/// root-only directory, so two processes never hand out the same uid, and
/// a crashed holder's lock is gone with it.
pub(crate) struct Users {
    pub gid: u32,
    ids: Vec<u32>,
    locks: Arc<Mutex<std::collections::HashMap<u32, std::fs::File>>>,
    lock_dir: PathBuf,
    reaper: Mutex<std::sync::mpsc::Sender<(u32, Option<tempfile::TempDir>)>>,
}

/// A uid held for one process. Dropping it hands the uid to the reaper
/// with the process's directory: every process of the uid is killed, the
/// directory removed, and only then is the uid free again.
pub(crate) struct Lease {
    pub uid: u32,
    pub gid: u32,
    users: Arc<Users>,
    dir: Option<tempfile::TempDir>,
}

impl Lease {
    /// The directory to remove once the uid's processes are gone.
    pub fn keep_until_reaped(&mut self, dir: tempfile::TempDir) {
        self.dir = Some(dir);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let job = (self.uid, self.dir.take());
        let _ = self.users.reaper.lock().unwrap_or_else(|e| e.into_inner()).send(job);
    }
}

impl Users {
    fn new(range: std::ops::Range<u32>) -> Result<Users, RuntimeError> {
        if range.len() < 2 || range.start == 0 {
            return Err(RuntimeError::Unavailable(format!(
                "the script uid range {}-{} is too small or includes root",
                range.start,
                range.end.saturating_sub(1)
            )));
        }
        let gid = range.start;
        if has_group(gid) {
            return Err(RuntimeError::Unavailable(format!(
                "the scripts' group id {gid} (the first of --run-uids) belongs to a group of this host; choose another range"
            )));
        }
        // An id that belongs to an account of this host is never borrowed.
        let ids: Vec<u32> = (range.start + 1..range.end).filter(|&uid| !has_account(uid)).collect();
        if ids.is_empty() {
            return Err(RuntimeError::Unavailable("every uid of the script range belongs to an account".into()));
        }
        let lock_dir = lock_dir()?;
        let locks: Arc<Mutex<std::collections::HashMap<u32, std::fs::File>>> = Arc::default();
        let (reaper, jobs) = std::sync::mpsc::channel::<(u32, Option<tempfile::TempDir>)>();
        let held = locks.clone();
        std::thread::Builder::new()
            .name("junction-reaper".into())
            .spawn(move || {
                for (uid, dir) in jobs {
                    let clean = reap(uid, gid);
                    drop(dir);
                    if clean {
                        // Only now may another process (or this one) take it.
                        held.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
                    } else {
                        // Kept locked: a uid with a survivor serves no one.
                        tracing::error!(uid, "processes of a script uid survive being killed; the uid is retired");
                    }
                }
            })
            .map_err(RuntimeError::Io)?;
        Ok(Users { gid, ids, locks, lock_dir, reaper: Mutex::new(reaper) })
    }

    /// A uid no live process has, here or in another Junction process.
    pub fn take(self: &Arc<Self>) -> Result<Lease, RuntimeError> {
        let start = rand::random::<usize>() % self.ids.len();
        for k in 0..self.ids.len() {
            let uid = self.ids[(start + k) % self.ids.len()];
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            if locks.contains_key(&uid) {
                continue;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.lock_dir.join(uid.to_string()))?;
            if file.try_lock().is_err() {
                continue;
            }
            // Something else runs as this uid (an account made since the
            // start, a service given it by another allocator, a survivor of
            // a crashed Junction): never killed, never shared; skipped.
            if has_account(uid) || !live_processes_of(uid).is_empty() {
                continue;
            }
            locks.insert(uid, file);
            return Ok(Lease { uid, gid: self.gid, users: self.clone(), dir: None });
        }
        Err(RuntimeError::Unavailable("every script uid is in use (too many runtime processes at once)".into()))
    }
}

/// Root's own directory for the uid locks: `/run/junction-uids` (a tmpfs
/// only root writes), else one in the temporary dir.
fn lock_dir() -> Result<PathBuf, RuntimeError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let candidates = [PathBuf::from("/run/junction-uids"), std::env::temp_dir().join("junction-uids-0")];
    let mut last = None;
    for dir in candidates {
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        match std::fs::symlink_metadata(&dir) {
            // Ours and nobody else's: not a link someone planted.
            Ok(m) if m.is_dir() && m.uid() == 0 => {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
                return Ok(dir);
            }
            Ok(_) => last = Some(format!("{} is not root's own directory", dir.display())),
            Err(e) => last = Some(format!("{}: {e}", dir.display())),
        }
    }
    Err(RuntimeError::Unavailable(format!("no directory for the script uid locks: {}", last.unwrap_or_default())))
}

fn has_account(uid: u32) -> bool {
    // SAFETY: getpwuid returns a pointer into static storage or null; only
    // nullness is read.
    unsafe { !libc::getpwuid(uid).is_null() }
}

fn has_group(gid: u32) -> bool {
    // SAFETY: as above, for getgrgid.
    unsafe { !libc::getgrgid(gid).is_null() }
}

/// Pids of the processes of `uid` that are not zombies (a zombie cannot be
/// killed and does nothing; in a container where Junction is PID 1 nobody
/// may reap it).
pub(crate) fn live_processes_of(uid: u32) -> Vec<i32> {
    processes_of(uid)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
                .unwrap_or(false)
        })
        .collect()
}

/// Pids of the processes whose real owner is `uid`.
pub(crate) fn processes_of(uid: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            // Only pids; /proc's other entries cost a stat each for nothing.
            if !name.as_bytes()[0].is_ascii_digit() {
                return None;
            }
            let pid: i32 = name.parse().ok()?;
            (e.metadata().ok()?.uid() == uid).then_some(pid)
        })
        .collect()
}

/// Kills every process of `uid` and removes what it left in the shared
/// temporary directories. The kill is `kill(-1, SIGKILL)` sent *as* the uid
/// (by a shell started as it), which reaches every process of the uid at
/// once, a chain of forks included; it is repeated until two scans in a row
/// find none alive. False when some survive.
fn reap(uid: u32, gid: u32) -> bool {
    let mut clean_scans = 0;
    for _ in 0..50 {
        if live_processes_of(uid).is_empty() {
            clean_scans += 1;
            if clean_scans == 2 {
                break;
            }
            continue;
        }
        clean_scans = 0;
        let _ = std::process::Command::new("/bin/sh")
            .args(["-c", "kill -9 -1"])
            .uid(uid)
            .gid(gid)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    for dir in ["/tmp", "/var/tmp", "/dev/shm"] {
        remove_owned_by(Path::new(dir), uid);
    }
    clean_scans == 2
}

fn remove_owned_by(dir: &Path, uid: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let Ok(meta) = entry.path().symlink_metadata() else { continue };
        if meta.uid() != uid {
            continue;
        }
        let path = entry.path();
        let _ = if meta.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
    }
}

/// A fresh directory only its owner may enter (mode 0700 whatever the
/// umask), handed to `uid` when there is one.
pub(crate) fn private_dir(
    parent: &Path,
    prefix: &str,
    owner: Option<(u32, u32)>,
) -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(parent)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
    }
    Ok(dir)
}

/// The runtime's shared, read-only tree (harness files, modules) and the
/// per-process directories, placed where an unprivileged uid can reach
/// them: the data dir stays 0700, so under root they live in a fresh
/// directory of the system's temporary dir, owned by root.
pub(crate) fn public_root(config: &RuntimeConfig, users: bool) -> Result<PathBuf, RuntimeError> {
    if !users {
        return Ok(config.dir.clone());
    }
    sweep_stale_roots();
    let dir = tempfile::Builder::new().prefix(ROOT_PREFIX).tempdir()?.keep();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(dir.join(OWNER_FILE), std::process::id().to_string())?;
    Ok(dir)
}

/// `src`'s files hard-linked under `dst` (copied where a link cannot be
/// made), so an unprivileged uid reads the modules without reaching the
/// data dir. Links share the files' owner and mode: root's, read-only to
/// others.
pub(crate) fn link_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&from, &to)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

const ROOT_PREFIX: &str = "junction-run-";
const OWNER_FILE: &str = "owner.pid";

/// Removes the roots of Junction processes that died without cleaning up
/// (killed with SIGKILL): root's directories whose owner is gone.
fn sweep_stale_roots() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let ours = entry.file_name().to_str().is_some_and(|n| n.starts_with(ROOT_PREFIX))
            && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == 0);
        if !ours {
            continue;
        }
        let owner: Option<i32> =
            std::fs::read_to_string(path.join(OWNER_FILE)).ok().and_then(|s| s.trim().parse().ok());
        // SAFETY: kill with signal 0 only asks whether the pid exists.
        let alive = owner.is_some_and(|pid| pid > 0 && unsafe { libc::kill(pid, 0) } == 0);
        if owner.is_some() && !alive {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Whether every directory from `/` to `path` lets other users through.
pub(crate) fn reachable(path: &Path) -> bool {
    path.ancestors().all(|p| std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o001 != 0))
}
