//! The API test harness: the real server on an ephemeral loopback port,
//! over a fresh store (SQLite in a temp dir, or a fresh PostgreSQL schema).

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use junction_core::{Clock, SystemClock};
use junction_engine::{Engine, WorkerConfig};
use junction_runtime::{ensure_node_modules, Runtime, RuntimeConfig};
use junction_store::{Location, Sealer, Store};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const ADMIN: &str = "test-admin-token-0123456789";

/// A test function run twice, on SQLite and on PostgreSQL:
///
/// - `on_both!(f => f_on_sqlite, f_on_postgres)`: the tests
///   `f_on_sqlite` and `f_on_postgres` call `f(&TestServer)`;
///   `on_both!(&mut f => ...)` passes `&mut TestServer`.
/// - `on_both!(f)`: the tests `f::sqlite` and `f::postgres` call
///   `f(clock, TestServer)` with the manual clock and options of the
///   calling file's `manual()`.
#[allow(unused_macros)]
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (clock, options) = super::manual();
                super::$name(clock, $crate::common::TestServer::sqlite_with(options).await).await;
            }
            #[tokio::test]
            async fn postgres() {
                let (clock, options) = super::manual();
                super::$name(clock, $crate::common::TestServer::postgres_with(options).await).await;
            }
        }
    };
    (&mut $f:ident => $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $f(&mut $crate::common::TestServer::sqlite().await).await;
        }
        #[tokio::test]
        async fn $postgres() {
            $f(&mut $crate::common::TestServer::postgres().await).await;
        }
    };
    ($f:ident => $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $f(&$crate::common::TestServer::sqlite().await).await;
        }
        #[tokio::test]
        async fn $postgres() {
            $f(&$crate::common::TestServer::postgres().await).await;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both;

/// How a test server is set up.
#[derive(Clone)]
pub struct Options {
    pub clock: Arc<dyn Clock>,
    /// In-process worker slots; 0 leaves runs queued.
    pub workers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { clock: Arc::new(SystemClock), workers: 2 }
    }
}

pub struct TestServer {
    pub base: String,
    /// The server's engine, for what a test drives itself (the scheduler).
    pub engine: Engine,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
    store: Store,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    worker_stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Every response body seen, so a test can prove a secret never
    /// appeared in any of them.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Whether the store is SQLite (its files in the data dir).
    sqlite: bool,
    _pg: Option<junction_testkit::PgSchema>,
}

impl TestServer {
    pub async fn sqlite() -> TestServer {
        TestServer::sqlite_with(Options::default()).await
    }

    pub async fn postgres() -> TestServer {
        TestServer::postgres_with(Options::default()).await
    }

    pub async fn sqlite_with(options: Options) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::in_data_dir(dir.path());
        TestServer::start(location, dir, None, options).await
    }

    pub async fn postgres_with(options: Options) -> TestServer {
        let pg = junction_testkit::postgres().await;
        TestServer::start(Location::Postgres(pg.url.clone()), tempfile::tempdir().unwrap(), Some(pg), options).await
    }

    /// Another server over the same PostgreSQL schema (and secret key) as
    /// this one, as a second `junction serve` would be.
    pub async fn sibling(&self, options: Options) -> TestServer {
        let url = self._pg.as_ref().expect("siblings share PostgreSQL").url.clone();
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(self.dir.path().join("secret.key"), dir.path().join("secret.key")).unwrap();
        TestServer::start(Location::Postgres(url), dir, None, options).await
    }

    async fn start(
        location: Location,
        dir: tempfile::TempDir,
        pg: Option<junction_testkit::PgSchema>,
        options: Options,
    ) -> TestServer {
        let sqlite = matches!(location, Location::Sqlite(_));
        let (sealer, _) = Sealer::load(None, &dir.path().join("secret.key")).unwrap();
        let store = Store::open(&location, sealer, options.clock.clone()).await.unwrap();
        store.bootstrap_admin(Some(ADMIN)).await.unwrap();
        let engine = Engine::new(store.clone(), test_runtime(dir.path()).await);
        let (worker_stop, worker_rx) = tokio::sync::oneshot::channel::<()>();
        let mut worker = WorkerConfig::new(options.workers.max(1));
        worker.lease = std::time::Duration::from_secs(10);
        worker.poll = std::time::Duration::from_millis(100);
        let worker_engine = engine.clone();
        if options.workers > 0 {
            tokio::spawn(async move {
                worker_engine
                    .run_worker(worker, async {
                        let _ = worker_rx.await;
                    })
                    .await
            });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_engine = engine.clone();
        let task = tokio::spawn(async move {
            junction_server::serve(listener, server_engine, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            base,
            engine,
            http: reqwest::Client::new(),
            dir,
            store,
            shutdown: Some(tx),
            worker_stop: Some(worker_stop),
            task: Some(task),
            seen: Arc::default(),
            sqlite,
            _pg: pg,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Sends a request; `token` None sends no Authorization header.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        self.read(resp).await
    }

    pub async fn read(&self, resp: reqwest::Response) -> (StatusCode, Value) {
        let status = resp.status();
        let text = resp.text().await.unwrap();
        self.seen.lock().unwrap().push(text.clone());
        let value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, value)
    }

    /// A POST of raw bytes with a chosen content type (bodies that are not
    /// JSON, or too large).
    pub async fn post_raw(&self, path: &str, token: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        self.read(resp).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, Some(ADMIN), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(ADMIN), Some(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, Some(ADMIN), Some(&body)).await
    }

    /// A plain-text GET (a log) as admin.
    pub async fn text(&self, path: &str) -> String {
        self.text_with_status(path).await.1
    }

    /// A plain-text GET (a log) as admin, with the answer's status.
    pub async fn text_with_status(&self, path: &str) -> (StatusCode, String) {
        let resp = self.http.get(format!("{}{path}", self.base)).bearer_auth(ADMIN).send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        self.seen.lock().unwrap().push(text.clone());
        (status, text)
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PATCH, path, Some(ADMIN), Some(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, Some(ADMIN), None).await
    }

    /// A token of `role`, created through the API.
    pub async fn token(&self, role: &str) -> String {
        let (status, body) = self.post("/api/v1/tokens", serde_json::json!({"name": role, "role": role})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// Stops the server and closes the store, so its files can be read.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(tx) = self.worker_stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.store.close().await;
    }

    /// On SQLite, asserts that none of `needles` is in the database files
    /// (which must be there and not empty); call after [`stop`]. On
    /// PostgreSQL there are no files here to read.
    ///
    /// [`stop`]: TestServer::stop
    pub fn assert_not_in_database_files(&self, needles: &[&str]) {
        if self.sqlite {
            assert!(self.data_dir().join("junction.db").is_file(), "the SQLite database is in the data dir");
            junction_testkit::assert_not_in_files(self.data_dir(), "junction.db", needles);
        }
    }

    /// Asserts that `needle` appears in no response body seen so far.
    pub fn assert_never_sent(&self, needle: &str) {
        for body in self.seen.lock().unwrap().iter() {
            assert!(!body.contains(needle), "{needle:?} was sent in a response: {body}");
        }
    }
}

/// Script runtimes under `data_dir`, using the Node.js modules the build
/// installs once for all tests, without spare processes (many servers run
/// at once in the tests).
pub async fn test_runtime(data_dir: &Path) -> Runtime {
    let shared = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("junction-node-modules");
    let mut config = RuntimeConfig::new(data_dir.join("runtime"));
    config.node_modules = Some(ensure_node_modules(Path::new("npm"), &shared, |m| eprintln!("{m}")).await.unwrap());
    config.spare = false;
    Runtime::start(config).await.unwrap()
}

/// The error body's `(field, rule)` pairs.
pub fn details(body: &Value) -> Vec<(String, String)> {
    body["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (d["field"].as_str().unwrap_or_default().to_string(), d["rule"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}
