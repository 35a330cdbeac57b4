//! Shared by the runtime tests: a `Runtime` over a temp dir, with the
//! supported Node.js modules installed once per build directory.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use junction_runtime::{ensure_node_modules, Event, Execution, Outcome, Runtime, RuntimeConfig};

pub struct Harness {
    pub runtime: Runtime,
    _dir: tempfile::TempDir,
}

/// `npm ci` of the pinned module list into the build's temp dir, once.
pub async fn node_modules() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("junction-node-modules");
    ensure_node_modules(std::path::Path::new("npm"), &target, |msg| eprintln!("{msg}"))
        .await
        .expect("the supported Node.js modules install")
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with(|_| {}).await
    }

    pub async fn with(adjust: impl FnOnce(&mut RuntimeConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = RuntimeConfig::new(dir.path().join("runtime"));
        config.node_modules = Some(node_modules().await);
        config.kill_grace = Duration::from_millis(500);
        adjust(&mut config);
        let runtime = Runtime::start(config).await.expect("runtime starts");
        Harness { runtime, _dir: dir }
    }

    /// Runs to the end; returns the outcome and every event.
    pub async fn run(&self, execution: &Execution) -> (Outcome, Vec<Event>) {
        let mut events = Vec::new();
        let outcome = self
            .runtime
            .execute(execution, &mut |e| events.push(e), std::future::pending())
            .await
            .expect("the runtime answers");
        (outcome, events)
    }
}

/// The log lines among `events`.
pub fn lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect()
}

/// The text of each log line after the `[time] [LEVEL] – ` prefix, with its
/// level.
pub fn texts(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { level, line } => {
                let text = line.split_once(" \u{2013} ").map(|(_, t)| t.to_string()).unwrap_or_default();
                Some((level.clone(), text))
            }
            _ => None,
        })
        .collect()
}

/// A tiny HTTP server on loopback answering every request with `body`.
pub async fn http_server(body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A data dir as `junction serve` lays it out (0700, files 0600), with the
/// runtime's private dir inside.
pub struct DataDir {
    _root: tempfile::TempDir,
    pub data: std::path::PathBuf,
}

pub fn data_dir() -> DataDir {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    // The parent is reachable by anyone, as /var/lib or a home would be
    // for a service; the data dir itself is not.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = root.path().join("junction-data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    for (file, content) in [("junction.db", "DATABASE-BYTES"), ("secret.key", "KEY-BYTES")] {
        std::fs::write(data.join(file), content).unwrap();
        std::fs::set_permissions(data.join(file), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    DataDir { _root: root, data }
}
