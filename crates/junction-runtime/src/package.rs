//! Package directories (extension stacks): an uploaded `.zip` / `.tgz`
//! unpacked safely, and its npm dependencies installed from its lock file.
//! Errors are sentences for the user who uploaded it.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;

/// Most files and uncompressed bytes one package may hold.
pub const MAX_FILES: usize = 20_000;
pub const MAX_UNPACKED_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Zip,
    Tgz,
}

impl ArchiveFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            ArchiveFormat::Zip => "zip",
            ArchiveFormat::Tgz => "tgz",
        }
    }
}

/// One regular file of an archive: its path inside the package and bytes.
type Entry = (PathBuf, Vec<u8>);

/// Unpacks `bytes` into `dest` (created). A single top-level directory that
/// holds everything (`package/` of `npm pack`, `my-stack/` of a zip of a
/// folder) is taken as the package's root. Refused: absolute paths, `..`,
/// links and devices, more than [`MAX_FILES`] files or
/// [`MAX_UNPACKED_BYTES`] bytes.
pub fn unpack(format: ArchiveFormat, bytes: &[u8], dest: &Path) -> Result<(), String> {
    let entries = match format {
        ArchiveFormat::Zip => zip_entries(bytes)?,
        ArchiveFormat::Tgz => tgz_entries(bytes)?,
    };
    if entries.is_empty() {
        return Err("the archive holds no files".into());
    }
    let strip = common_top_dir(&entries);
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot unpack: {e}"))?;
    for (path, data) in entries {
        let rel = match &strip {
            Some(top) => path.strip_prefix(top).map(Path::to_path_buf).unwrap_or(path),
            None => path,
        };
        let target = dest.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot unpack {}: {e}", rel.display()))?;
        }
        std::fs::write(&target, data).map_err(|e| format!("cannot unpack {}: {e}", rel.display()))?;
    }
    Ok(())
}

/// A relative path with normal components only.
fn safe_path(name: &str) -> Result<PathBuf, String> {
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return Err(format!("the archive entry {name:?} points outside the package")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("the archive entry {name:?} has no name"));
    }
    Ok(out)
}

struct Budget {
    files: usize,
    bytes: u64,
}

impl Budget {
    fn take(&mut self, size: u64) -> Result<(), String> {
        self.files += 1;
        self.bytes += size;
        if self.files > MAX_FILES {
            return Err(format!("the archive holds more than {MAX_FILES} files"));
        }
        if self.bytes > MAX_UNPACKED_BYTES {
            return Err(format!("the archive unpacks to more than {} MiB", MAX_UNPACKED_BYTES / (1024 * 1024)));
        }
        Ok(())
    }
}

/// Reads at most what the budget still allows, so a bomb stops early.
fn read_bounded(reader: &mut dyn Read, budget: &Budget, name: &str) -> Result<Vec<u8>, String> {
    let room = MAX_UNPACKED_BYTES.saturating_sub(budget.bytes) + 1;
    let mut data = Vec::new();
    reader.take(room).read_to_end(&mut data).map_err(|e| format!("the archive entry {name:?} cannot be read: {e}"))?;
    Ok(data)
}

fn zip_entries(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("the body is not a zip archive: {e}"))?;
    let mut budget = Budget { files: 0, bytes: 0 };
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).map_err(|e| format!("the zip archive is damaged: {e}"))?;
        let name = file.name().to_string();
        if file.is_dir() {
            continue;
        }
        if file.is_symlink() {
            return Err(format!("the archive entry {name:?} is a link; a package holds regular files only"));
        }
        let path = safe_path(&name)?;
        let data = read_bounded(&mut file, &budget, &name)?;
        budget.take(data.len() as u64)?;
        out.push((path, data));
    }
    Ok(out)
}

fn tgz_entries(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut budget = Budget { files: 0, bytes: 0 };
    let mut out = Vec::new();
    let entries = archive.entries().map_err(|e| format!("the body is not a gzip'd tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the tar archive is damaged: {e}"))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            // pax / GNU long-name records are read by the tar crate itself
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                return Err(format!(
                    "the archive entry {name:?} is not a regular file ({other:?}); a package holds regular files only"
                ))
            }
        }
        let path = safe_path(&name)?;
        let data = read_bounded(&mut entry, &budget, &name)?;
        budget.take(data.len() as u64)?;
        out.push((path, data));
    }
    Ok(out)
}

/// The one top-level directory every entry is under, when the root itself
/// has no `package.json`.
fn common_top_dir(entries: &[Entry]) -> Option<PathBuf> {
    if entries.iter().any(|(p, _)| p == Path::new("package.json")) {
        return None;
    }
    let first = entries[0].0.components().next()?;
    let top = PathBuf::from(first.as_os_str());
    entries.iter().all(|(p, _)| p.starts_with(&top) && p != &top).then_some(top)
}

/// `npm ci` in `dir` from its lock file: production dependencies only, no
/// lifecycle scripts and no configuration of the upload's (nothing of the
/// upload runs as the server's user; a dependency that needs a native build
/// step is not supported). The error is npm's own message.
pub async fn install(npm: &Path, dir: &Path) -> Result<(), String> {
    // A project `.npmrc` would configure npm as the server's user: `git`,
    // `script-shell`, `cache`, `prefix` name programs to run and places to
    // write. The operator's own configuration (registry, proxy) still
    // applies; the upload's never does.
    for name in [".npmrc", ".yarnrc", ".yarnrc.yml"] {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_ok() {
            std::fs::remove_file(&path).map_err(|e| format!("cannot remove the package's {name}: {e}"))?;
        }
    }
    check_lock(dir)?;
    let run = tokio::process::Command::new(npm)
        .args(["ci", "--omit=dev", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(INSTALL_TIME_LIMIT, run)
        .await
        .map_err(|_| format!("npm ci did not finish within {} minutes", INSTALL_TIME_LIMIT.as_secs() / 60))?
        .map_err(|e| format!("cannot run {}: {e}", npm.display()))?;
    if out.status.success() {
        let root = std::fs::canonicalize(dir).map_err(|e| format!("the package directory: {e}"))?;
        return check_links(&root, &root);
    }
    let text = String::from_utf8_lossy(&out.stderr);
    // npm ends with where its debug log is: the server's path, not the user's concern.
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_prefix("npm error ").or_else(|| l.strip_prefix("npm ERR! ")).unwrap_or(l).trim())
        .filter(|l| !l.is_empty() && !l.contains("A complete log of this run") && !l.starts_with('/'))
        .collect();
    let message = lines.join("\n");
    let message =
        if message.chars().count() > 2000 { message.chars().take(2000).collect::<String>() + "…" } else { message };
    Err(format!("npm ci failed: {message}"))
}

/// Longest an install may take (a lock file can name a server that never
/// answers).
const INSTALL_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// A lock file may name only what npm fetches: `file:`, `git+file:` and
/// `link` entries would copy or link the server's own files and directories
/// (another stack's, the data dir) into the package.
fn check_lock(dir: &Path) -> Result<(), String> {
    for name in ["package-lock.json", "npm-shrinkwrap.json"] {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else { continue };
        let lock: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{name} does not parse: {e}"))?;
        let entries = lock.get("packages").and_then(|p| p.as_object()).into_iter().flatten();
        for (path, entry) in entries.filter(|(path, _)| !path.is_empty()) {
            let resolved = entry.get("resolved").and_then(|r| r.as_str()).unwrap_or_default();
            let local = entry.get("link").and_then(|l| l.as_bool()).unwrap_or(false)
                || resolved.starts_with("file:")
                || resolved.starts_with("git+file:");
            if local {
                return Err(format!(
                    "{name}: {path} is installed from the server's own files ({}); a package's dependencies come from the registry",
                    if resolved.is_empty() { "a link" } else { resolved }
                ));
            }
        }
    }
    Ok(())
}

/// Every link npm made must stay inside the package (`.bin` entries do).
/// `root` is the package's canonical path.
fn check_links(root: &Path, dir: &Path) -> Result<(), String> {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("reading the installed package: {e}"))? {
        let entry = entry.map_err(|e| format!("reading the installed package: {e}"))?;
        let kind = entry.file_type().map_err(|e| format!("reading the installed package: {e}"))?;
        let path = entry.path();
        if kind.is_symlink() {
            let inside = std::fs::canonicalize(&path).is_ok_and(|target| target.starts_with(root));
            if !inside {
                let shown = path.strip_prefix(root).unwrap_or(&path).display().to_string();
                return Err(format!("the install made {shown} a link out of the package; links must stay inside it"));
            }
        } else if kind.is_dir() {
            check_links(root, &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`; write the raw name to test the check
            let raw = &mut header.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn archives_unpack_with_their_top_directory_taken_as_the_root() {
        for (format, bytes) in [
            (ArchiveFormat::Tgz, tgz(&[("package/package.json", b"{}"), ("package/src/a.js", b"1")])),
            (ArchiveFormat::Zip, zip_of(&[("stack/package.json", b"{}"), ("stack/src/a.js", b"1")])),
            (ArchiveFormat::Zip, zip_of(&[("package.json", b"{}"), ("src/a.js", b"1")])),
        ] {
            let dir = tempfile::tempdir().unwrap();
            unpack(format, &bytes, dir.path()).unwrap();
            assert_eq!(std::fs::read(dir.path().join("src/a.js")).unwrap(), b"1");
            assert!(dir.path().join("package.json").is_file());
        }
    }

    #[tokio::test]
    async fn the_uploads_npm_configuration_is_never_read() {
        let dir = tempfile::tempdir().unwrap();
        // No dependencies: npm ci has nothing to fetch.
        std::fs::write(
            dir.path().join("package.json"),
            r#"{"name":"p","version":"1.0.0","scripts":{"preinstall":"echo x"}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("package-lock.json"),
            r#"{"name":"p","version":"1.0.0","lockfileVersion":3,"requires":true,"packages":{"":{"name":"p","version":"1.0.0"}}}"#,
        )
        .unwrap();
        // npm writes its run log under `cache`: a `.npmrc` that was read
        // would leave one in the place it names.
        let elsewhere = tempfile::tempdir().unwrap();
        let cache = elsewhere.path().join("cache");
        std::fs::write(dir.path().join(".npmrc"), format!("cache={}\n", cache.display())).unwrap();
        install(Path::new("npm"), dir.path()).await.unwrap();
        assert!(!cache.exists(), "the upload's npm configuration was not read");
        assert!(!dir.path().join(".npmrc").exists());
    }

    #[test]
    fn lock_entries_and_links_to_the_servers_own_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let lock = |entry: &str| {
            let text = format!(r#"{{"lockfileVersion":3,"packages":{{"":{{"name":"p"}},"node_modules/x":{entry}}}}}"#);
            std::fs::write(dir.path().join("package-lock.json"), text).unwrap();
            check_lock(dir.path())
        };
        assert!(lock(r#"{"resolved":"file:/etc"}"#).unwrap_err().contains("file:/etc"));
        assert!(lock(r#"{"resolved":"git+file:///srv/repo.git"}"#).is_err());
        assert!(lock(r#"{"link":true,"resolved":"../other"}"#).is_err());
        assert!(lock(r#"{"resolved":"http://127.0.0.1:9/x/-/x-1.0.0.tgz"}"#).is_ok());

        let modules = dir.path().join("node_modules");
        std::fs::create_dir_all(modules.join("x/bin")).unwrap();
        std::fs::create_dir_all(modules.join(".bin")).unwrap();
        std::fs::write(modules.join("x/bin/cli.js"), "").unwrap();
        std::os::unix::fs::symlink("../x/bin/cli.js", modules.join(".bin/cli")).unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        assert!(check_links(&root, &root).is_ok(), "a link inside the package");
        std::os::unix::fs::symlink("/etc", modules.join("root")).unwrap();
        assert!(check_links(&root, &root).unwrap_err().contains("node_modules/root"));
    }

    #[test]
    fn entries_outside_the_package_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bad = tgz(&[("package.json", b"{}"), ("../evil.js", b"x")]);
        assert!(unpack(ArchiveFormat::Tgz, &bad, dir.path()).unwrap_err().contains("outside the package"));
        let bad = zip_of(&[("package.json", b"{}"), ("/etc/x", b"x")]);
        assert!(unpack(ArchiveFormat::Zip, &bad, dir.path()).unwrap_err().contains("outside the package"));
        assert!(unpack(ArchiveFormat::Zip, b"not a zip", dir.path()).unwrap_err().contains("not a zip"));
        assert!(unpack(ArchiveFormat::Tgz, b"not gzip", dir.path()).is_err());
        assert!(!dir.path().join("x").exists());
    }
}
