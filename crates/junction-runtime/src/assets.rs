//! The harness files and SDKs embedded in the binary, written under the
//! runtime directory at start; and the install of spec 000's supported
//! Node.js modules from the pinned lock file.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};

use crate::RuntimeError;

/// Files written under `DIR/assets/`.
const FILES: &[(&str, &str)] = &[
    ("node/harness.js", include_str!("../assets/node/harness.js")),
    ("node/package.json", include_str!("../assets/node/package.json")),
    ("node/package-lock.json", include_str!("../assets/node/package-lock.json")),
    ("python/junction_harness.py", include_str!("../assets/python/junction_harness.py")),
    ("python/ipaascore/__init__.py", include_str!("../assets/python/ipaascore/__init__.py")),
    ("python/ipaascore/BaseStep.py", include_str!("../assets/python/ipaascore/BaseStep.py")),
    ("python/ipaascore/parameter_types.py", include_str!("../assets/python/ipaascore/parameter_types.py")),
    ("python/ipaascore/_runtime.py", include_str!("../assets/python/ipaascore/_runtime.py")),
    ("python/ipaascommon/__init__.py", include_str!("../assets/python/ipaascommon/__init__.py")),
    ("python/ipaascommon/ipaas_exceptions.py", include_str!("../assets/python/ipaascommon/ipaas_exceptions.py")),
    ("python/ipaascommon/ipaas_utils.py", include_str!("../assets/python/ipaascommon/ipaas_utils.py")),
];

/// Writes the embedded files under `dir/assets`, rewriting only those that
/// differ (a running process may be reading them).
pub fn install_assets(dir: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    for (rel, content) in FILES {
        let path = dir.join("assets").join(rel);
        if !std::fs::read(&path).is_ok_and(|old| old == content.as_bytes()) {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, content)?;
            std::fs::rename(&tmp, &path)?;
        }
        // Readable by the scripts' uids, writable by nobody but the owner,
        // whatever the umask.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        let mut parent = path.parent();
        while let Some(p) = parent.filter(|p| p.starts_with(dir.join("assets"))) {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
            parent = p.parent();
        }
    }
    Ok(())
}

/// Removes the group and other write bits under `dir` (a module tree the
/// scripts' uids read), so no script can plant code another will require.
pub(crate) fn make_read_only_for_others(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            continue;
        }
        let meta = entry.metadata()?;
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode & !0o022))?;
        }
        if kind.is_dir() {
            make_read_only_for_others(&entry.path())?;
        }
    }
    Ok(())
}

/// Every directory under `dir` (and itself) 0755 and every file readable
/// and not writable by group and others, whatever the umask was: a package
/// tree the scripts' uids load code from.
pub(crate) fn readable_by_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            readable_by_all(&entry.path())?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode();
            let wanted = (mode | 0o444) & !0o022;
            if wanted != mode {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(wanted))?;
            }
        }
    }
    Ok(())
}

/// Makes sure `node_modules` under `target` (a directory) holds exactly the
/// modules of the embedded lock file, running `npm ci` when it does not.
/// `progress` hears a sentence before a (slow) install. Several processes
/// may call this at once: an exclusive file lock makes one install and the
/// others wait. Returns the `node_modules` path.
pub async fn ensure_node_modules(npm: &Path, target: &Path, progress: impl Fn(&str)) -> Result<PathBuf, RuntimeError> {
    let lock_text = FILES.iter().find(|(p, _)| *p == "node/package-lock.json").map(|(_, c)| *c).unwrap_or_default();
    let want = hex::encode(Sha256::digest(lock_text.as_bytes()));
    let modules = target.join("node_modules");
    let stamp = target.join(".installed-lock-sha256");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) && modules.is_dir() {
        return Ok(modules);
    }
    std::fs::create_dir_all(target)?;
    let lock_file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(target.join(".install.lock"))?;
    let lock_file = tokio::task::spawn_blocking(move || lock_file.lock().map(|()| lock_file))
        .await
        .map_err(|e| RuntimeError::Unavailable(format!("waiting for the module install lock: {e}")))??;
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) && modules.is_dir() {
        return Ok(modules);
    }
    progress("installing the Node.js modules job scripts may use (npm ci; once per version of the module list)");
    for (rel, content) in FILES.iter().filter(|(p, _)| p.starts_with("node/package")) {
        std::fs::write(target.join(rel.trim_start_matches("node/")), content)?;
    }
    let out = tokio::process::Command::new(npm)
        .args(["ci", "--omit=dev", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"])
        .current_dir(target)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| RuntimeError::Unavailable(format!("cannot run {}: {e}", npm.display())))?;
    if !out.status.success() {
        return Err(RuntimeError::Unavailable(format!(
            "npm ci failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::write(&stamp, &want)?;
    drop(lock_file);
    Ok(modules)
}
