//! Test support shared by Junction's crates.
//!
//! [`postgres`] hands each test its own empty PostgreSQL schema, so tests
//! run in parallel (and several test runs at once) without seeing each
//! other's rows. The server is `JUNCTION_TEST_DATABASE_URL` when set;
//! otherwise a throwaway cluster is started from the installed PostgreSQL
//! binaries (`initdb` in a temp dir, a random port), shared by the tests of
//! one process and removed when that process ends. Without PostgreSQL the
//! tests fail with a message saying how to install it: never a silent skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::Connection;

/// One test's PostgreSQL schema. Dropping it drops the schema.
#[derive(Debug)]
pub struct PgSchema {
    /// Connection URL whose `search_path` is this schema.
    pub url: String,
    base: String,
    schema: String,
}

impl PgSchema {
    pub fn name(&self) -> &str {
        &self.schema
    }
}

const INSTALL_HINT: &str = "PostgreSQL is needed by Junction's tests. Either set \
    JUNCTION_TEST_DATABASE_URL=postgres://USER@HOST:PORT/DB to a server the tests may create schemas in, \
    or install PostgreSQL's server binaries (Debian: apt-get install postgresql) so the tests can start a \
    throwaway cluster.";

/// A fresh, empty schema for one test.
pub async fn postgres() -> PgSchema {
    let base = base_url();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "jt_{}_{}_{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::thread_rng().gen::<u32>()
    );
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to test PostgreSQL at {base}: {e}\n{INSTALL_HINT}"));
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.expect("create test schema");
    let _ = conn.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    // The application name marks this test's connections so that dropping
    // the schema can end any the test left open.
    let url = format!("{base}{sep}application_name={schema}&options[search_path]={schema}");
    PgSchema { url, base, schema }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop runs outside any async context we may block, so the schema
        // is dropped from a short-lived thread with its own runtime.
        let (base, schema) = (self.base.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&base).await.ok()?;
                sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
                    .bind(&schema)
                    .execute(&mut conn)
                    .await
                    .ok()?;
                sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await.ok()?;
                conn.close().await.ok()
            })
        })
        .join();
    }
}

fn base_url() -> String {
    if let Ok(url) = std::env::var("JUNCTION_TEST_DATABASE_URL") {
        if !url.trim().is_empty() {
            return url;
        }
    }
    static CLUSTER: OnceLock<String> = OnceLock::new();
    CLUSTER.get_or_init(|| start_cluster().unwrap_or_else(|e| panic!("{e}\n{INSTALL_HINT}"))).clone()
}

/// Finds PostgreSQL's server binaries: on `PATH`, or in Debian's
/// versioned directory.
fn pg_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|d| d.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `initdb` refuses to run as root; as root the cluster runs as the
/// `postgres` user.
fn as_cluster_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Starts a cluster that lives as long as this process: a watchdog shell
/// stops it and removes its directory once the process is gone.
pub fn start_cluster() -> Result<String, String> {
    let bin = pg_bin_dir().ok_or("no PostgreSQL server binaries (initdb, pg_ctl) were found")?;
    let root = is_root();
    let dir = tempfile::Builder::new().prefix("junction-pg-").tempdir().map_err(|e| e.to_string())?.keep();
    if root {
        let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("cannot hand {} to the postgres user", dir.display()));
        }
    }
    let data = dir.join("data");
    let out = as_cluster_user(&bin.join("initdb"), root)
        .args(["-D"])
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let port = free_port()?;
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200",
        dir.display()
    );
    let out = as_cluster_user(&bin.join("pg_ctl"), root)
        .arg("-D")
        .arg(&data)
        .args(["-o", &opts, "-l"])
        .arg(dir.join("log"))
        .args(["-w", "start"])
        .output()
        .map_err(|e| format!("pg_ctl: {e}"))?;
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        return Err(format!("pg_ctl start failed: {}{log}", String::from_utf8_lossy(&out.stderr)));
    }
    let pg_ctl = bin.join("pg_ctl");
    let stop = if root {
        format!("runuser -u postgres -- {} -D {} -m immediate stop", pg_ctl.display(), data.display())
    } else {
        format!("{} -D {} -m immediate stop", pg_ctl.display(), data.display())
    };
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("watchdog: {e}"))?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    wait_ready(port)?;
    Ok(url)
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn wait_ready(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("throwaway PostgreSQL did not listen on port {port} within 30 s"))
}

/// Asserts that no file in `dir` whose name starts with `prefix` holds any
/// of `needles`, after checking that the files were there to read (more
/// than 10,000 bytes in all), so the check cannot pass on a missing or
/// empty database.
pub fn assert_not_in_files(dir: &Path, prefix: &str, needles: &[&str]) {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with(prefix) {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(bytes.len() > 10_000, "the {prefix}* files in {} were read: {} bytes", dir.display(), bytes.len());
    for needle in needles {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle:?} is in the {prefix}* files");
    }
}
