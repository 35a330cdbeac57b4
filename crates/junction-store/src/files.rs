//! Who may read the data dir: the database (with its `-wal` and `-shm`)
//! holds sealed secrets and token digests, `secret.key` opens them, so the
//! directory is its owner's only and every file in it is 0600. New dirs
//! and files are created with these modes (the umask can only take bits
//! away), and existing ones are put right when opened with looser ones.

use std::io;
use std::path::{Path, PathBuf};

/// The data dir's mode: its owner only. Scripts run as another user would
/// need 0o710 and a shared group: pass that to [`secure_data_dir`].
pub const DATA_DIR_MODE: u32 = 0o700;

/// The mode of every file in the data dir.
pub const DATA_FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) or takes the existing one, sets it
/// to `dir_mode` and every regular file directly in it (database, `-wal`,
/// `-shm`, `secret.key`) to [`DATA_FILE_MODE`]. Subdirectories (the
/// runtime's) and symbolic links are left alone.
pub fn secure_data_dir(dir: &Path, dir_mode: u32) -> io::Result<()> {
    create_private_dir(dir)?;
    set_mode(dir, dir_mode)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            set_mode(&entry.path(), DATA_FILE_MODE)?;
        }
    }
    Ok(())
}

/// Before SQLite opens `db`: its directory is created private when
/// missing (an existing one, which may be any directory, is left as it
/// is), the database file is created 0600 when missing — SQLite gives the
/// `-wal` and `-shm` files the database file's mode — and an existing
/// database and its `-wal`/`-shm` are set to 0600.
pub(crate) fn prepare_sqlite_file(db: &Path) -> io::Result<()> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            create_private_dir(dir)?;
        }
    }
    let mut create = std::fs::OpenOptions::new();
    create.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, DATA_FILE_MODE);
    match create.open(db) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    secure_sqlite_files(db)
}

/// Sets the database file and whichever of its `-wal`/`-shm` exist to
/// 0600 (after SQLite has created them, in case it did so differently).
pub(crate) fn secure_sqlite_files(db: &Path) -> io::Result<()> {
    for path in [db.to_path_buf(), suffixed(db, "-wal"), suffixed(db, "-shm")] {
        match set_mode(&path, DATA_FILE_MODE) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `create_dir_all` whose new directories start owner-only (the umask can
/// only take bits away), so there is no moment they are open to others.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DATA_DIR_MODE);
    builder.create(dir)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}
