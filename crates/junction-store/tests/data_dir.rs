//! The data dir is its owner's only: the directory 0700, the database with
//! its -wal and -shm and the secret key 0600, whatever the umask, and an
//! existing dir with looser modes is put right when opened.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use junction_core::role::Role;
use junction_core::SystemClock;
use junction_store::{secure_data_dir, Location, Sealer, Store, DATA_DIR_MODE};

extern "C" {
    fn umask(mask: u32) -> u32;
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const FILES: [&str; 4] = ["junction.db", "junction.db-wal", "junction.db-shm", "secret.key"];

/// Opens the store as `junction serve` does, writes, and returns the modes
/// of the dir and its files while the store is open.
async fn open_and_write(dir: &Path, user: &str) -> (u32, Vec<(&'static str, u32)>) {
    secure_data_dir(dir, DATA_DIR_MODE).unwrap();
    let (sealer, _) = Sealer::load(None, &dir.join("secret.key")).unwrap();
    let store = Store::open(&Location::in_data_dir(dir), sealer, Arc::new(SystemClock)).await.unwrap();
    store.put_user(user, Role::Viewer, "password-1").await.unwrap();
    let modes = (mode(dir), FILES.iter().map(|f| (*f, mode(&dir.join(f)))).collect());
    store.close().await;
    modes
}

#[tokio::test]
async fn the_data_dir_and_every_file_in_it_are_private_to_the_owner() {
    // The modes must not come from the umask: with none, everything
    // created without explicit modes would be world-writable.
    unsafe { umask(0) };
    let private = |f: &'static str| (f, 0o600);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert_eq!(open_and_write(&dir, "first").await, (0o700, FILES.map(private).to_vec()), "a new data dir");

    // An existing data dir with world-readable modes is put right on open.
    set_mode(&dir, 0o755);
    for f in FILES.iter().filter(|f| dir.join(f).exists()) {
        set_mode(&dir.join(f), 0o644);
    }
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    std::fs::create_dir(dir.join("runtime")).unwrap();
    set_mode(&dir.join("runtime"), 0o755);
    assert_eq!(open_and_write(&dir, "second").await, (0o700, FILES.map(private).to_vec()), "an existing data dir");
    assert_eq!(mode(&dir.join("notes.txt")), 0o600, "every file in it");
    assert_eq!(mode(&dir.join("runtime")), 0o755, "subdirectories are the runtime's");

    // A database outside the data dir (`--database-url sqlite:...`) is
    // private too; its existing directory is left as it is.
    let elsewhere = tmp.path().join("shared");
    std::fs::create_dir(&elsewhere).unwrap();
    set_mode(&elsewhere, 0o755);
    let db = elsewhere.join("other.db");
    let store =
        Store::open(&Location::Sqlite(db.clone()), Sealer::from_key([2; 32]), Arc::new(SystemClock)).await.unwrap();
    store.put_user("someone", Role::Viewer, "password-1").await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        assert_eq!(mode(&elsewhere.join(format!("other.db{suffix}"))), 0o600, "other.db{suffix}");
    }
    assert_eq!(mode(&elsewhere), 0o755);
    store.close().await;
}
