//! `junction-bench flows [--records N] [--cap SECONDS] [--scenario pg|http|all]
//! [--breakdown] [--out FILE]`: record flows (spec 001) end to end, as a user
//! gets them.
//!
//! The real server runs in this process with `junction serve`'s defaults:
//! a fresh SQLite store in a temp dir, the script runtimes with spec 000's
//! node modules, in-process workers `WorkerConfig::new(cores)` (default
//! lease and poll), the scheduler. Everything goes through its HTTP API:
//! `POST /api/v1/flows` stores the flow, `POST /api/v1/flows/{name}/run`
//! starts a run, `GET /api/v1/tasks/{id}` is polled (every 25 ms) until the
//! run ends, at most `--cap` seconds (default 300) per run: past it the run
//! is revoked and the scenario reported as aborted.
//!
//! Scenarios (N records, default 100,000):
//!
//! - `pg`: PostgreSQL → mapping → PostgreSQL, pages of 1,000, no hooks. A
//!   source table of N rows (one `INSERT ... SELECT generate_series`) and an
//!   empty target with other column names, both uniquely named and dropped
//!   at the end, on `JUNCTION_TEST_DATABASE_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/test`). A database export, a
//!   database import (`insert`) with a four-field mapping. Run at N/10 first,
//!   then at N, to show the peak RSS does not grow with the record count.
//! - `http`: an HTTP source (page-number paging, `?page=&limit=`) →
//!   `preSavePage` + `preMap` + `postMap` (pass-through hooks of a one-file
//!   JS stack) → mapping → an HTTP target taking one POST per record (the
//!   HTTP import's default), default page size (20). Source and target are
//!   axum servers of this benchmark on their own runtime thread
//!   (`bench-peers`), so their CPU time is told apart.
//!
//! Checked, every run: the run ended `SUCCESS`/`completed`; its counters
//! say N successes and no error at both steps; what arrived at the target
//! is N records with N distinct ids and the right values (PostgreSQL: the
//! target rows joined to the source rows; HTTP: the mapped e-mail of each
//! id). A mismatch is reported in the table and the JSON, and the command
//! then exits with an error (after writing the report). Nothing is
//! asserted on time: the goals are printed beside the figures.
//!
//! Reported per run: seconds from the run's creation (`created_at`) to its
//! end as observed by polling, the run's own `start_time`/`end_time` (whole
//! seconds), records/s, the counters, pages, the process's peak RSS
//! (`VmHWM`, reset through `/proc/self/clear_refs` before each run) and its
//! RSS before; CPU time by thread group of this process (`/proc/self/task`)
//! and of the PostgreSQL and Node.js processes (`/proc/*/stat`, sampled so
//! short-lived backends count), against the machine's (`/proc/stat`); and
//! the pacing of pages from the run's log (`page K: src: page of M records`
//! lines: the interval between pages handed to the processors).
//!
//! `--breakdown` then measures each part of a page alone, a page at a time,
//! on the same data and settings (see [`breakdown`]): the export's read,
//! the exporter loop's page size check, a clone of a page, the mapping, the
//! hooks (`Engine::call_stack_function`), the import (PostgreSQL: a page
//! alone and 4 at once), and the store's page commit with and without the
//! succeeded records; and runs the HTTP flow once more without its hooks.
//! Peak RSS after a breakdown includes what it allocated.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use junction_engine::{Engine, SchedulerConfig, WorkerConfig};
use junction_runtime::{ensure_node_modules, Runtime, RuntimeConfig};
use serde_json::{json, Value};

const ADMIN: &str = "bench-admin-token-0123456789";
/// The thread name of the benchmark's own HTTP servers (at most 15 bytes).
const PEER_THREADS: &str = "bench-peers";
const POLL: Duration = Duration::from_millis(25);
const GOAL_PG: f64 = 50_000.0;
const GOAL_HTTP: f64 = 5_000.0;
const PG_PAGE: usize = 1000;
const MAX_RECORDS: usize = 10_000_000;
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Linux's USER_HZ: the unit of utime/stime in /proc/PID/stat.
const TICK_NS: u64 = 10_000_000;

/// The stack of the HTTP scenario: three pass-through hooks.
const STACK: &str = r#"// junction-bench flows: pass-through hooks.
exports.hooks = {
  preSavePage: async (options) => ({ data: options.data, errors: options.errors }),
  preMap: async (options) => options.data.map((d) => ({ data: d })),
  postMap: async (options) => options.postMapData.map((d) => ({ data: d })),
};
"#;

pub struct Options {
    pub records: usize,
    pub cap: Duration,
    pub scenarios: Vec<&'static str>,
    /// After each scenario at N, its parts measured alone.
    pub breakdown: bool,
    pub out: Option<PathBuf>,
}

fn usage(got: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "usage: junction-bench flows [--records N] [--cap SECONDS] [--scenario pg|http|all] [--breakdown] \
         [--out FILE] (got {got})"
    )
}

pub fn parse_args(args: Vec<String>) -> Result<Options> {
    let mut o = Options {
        records: 100_000,
        cap: Duration::from_secs(300),
        scenarios: vec!["pg", "http"],
        breakdown: false,
        out: None,
    };
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--records" => o.records = args.next().context("--records N")?.parse()?,
            "--cap" => o.cap = Duration::from_secs_f64(args.next().context("--cap SECONDS")?.parse()?),
            "--scenario" => {
                o.scenarios = match args.next().as_deref() {
                    Some("pg") => vec!["pg"],
                    Some("http") => vec!["http"],
                    Some("all") => vec!["pg", "http"],
                    other => bail!("--scenario pg|http|all (got {other:?})"),
                }
            }
            "--breakdown" => o.breakdown = true,
            "--out" => o.out = Some(args.next().context("--out FILE")?.into()),
            other => return Err(usage(other)),
        }
    }
    if o.records == 0 || o.records > MAX_RECORDS {
        bail!("--records must be within 1..={MAX_RECORDS}");
    }
    if o.cap.is_zero() || o.cap > Duration::from_secs(3600) {
        bail!("--cap must be within (0, 3600] seconds");
    }
    Ok(o)
}

/// Entry point from `main.rs`: `args` are the arguments after `flows`.
pub async fn main(args: Vec<String>) -> Result<()> {
    let o = parse_args(args)?;
    let junction = Junction::start().await?;
    let peers = Peers::new()?;
    let outcome = run(&o, &junction, &peers).await;
    let workers = junction.workers;
    peers.stop();
    junction.stop().await?;
    let results = outcome?;
    print_table(&results);
    write_json(&o, workers, &results)?;
    let problems: Vec<String> = results
        .iter()
        .filter(|r| r["ok"] != true)
        .map(|r| {
            let p: Vec<&str> = r["problems"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            format!("{}: {}", r["scenario"].as_str().unwrap_or_default(), p.join("; "))
        })
        .collect();
    if !problems.is_empty() {
        bail!("some runs did not deliver what they should:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

async fn run(o: &Options, j: &Junction, peers: &Peers) -> Result<Vec<Value>> {
    let mut results = Vec::new();
    if o.scenarios.contains(&"pg") {
        let url = std::env::var("JUNCTION_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string());
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await
            .with_context(|| {
                format!("cannot connect to PostgreSQL at {} (set JUNCTION_TEST_DATABASE_URL)", redact(&url))
            })?;
        let connection = pg_connection(&url)?;
        let mut sizes = vec![o.records / 10, o.records];
        sizes.retain(|n| *n > 0);
        sizes.dedup();
        for n in sizes {
            eprintln!("flows: pg, {n} records ...");
            let r = pg_scenario(j, &pool, &connection, n, o.cap, o.breakdown && n == o.records).await?;
            eprintln!("flows: pg, {n} records: {:.2} s", r["seconds"].as_f64().unwrap_or_default());
            results.push(r);
        }
        pool.close().await;
    }
    if o.scenarios.contains(&"http") {
        eprintln!("flows: http, {} records ...", o.records);
        for r in http_scenario(j, peers, o.records, o.cap, o.breakdown).await? {
            eprintln!(
                "flows: {}: {:.2} s",
                r["scenario"].as_str().unwrap_or_default(),
                r["seconds"].as_f64().unwrap_or_default()
            );
            results.push(r);
        }
    }
    Ok(results)
}

// --- the server -------------------------------------------------------------------

/// The real Junction server in this process, as `junction serve` starts it.
struct Junction {
    base: String,
    http: reqwest::Client,
    workers: usize,
    shutdown: tokio::sync::oneshot::Sender<()>,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    runtime: Runtime,
    store: junction_store::Store,
    engine: Engine,
    _dir: tempfile::TempDir,
}

impl Junction {
    async fn start() -> Result<Junction> {
        let dir = tempfile::tempdir()?;
        let (store, _, _) = crate::open_store("sqlite", dir.path()).await?;
        store.bootstrap_admin(Some(ADMIN)).await?;
        let modules = ensure_node_modules(Path::new("npm"), &PathBuf::from("target/tmp/junction-node-modules"), |m| {
            eprintln!("{m}")
        })
        .await?;
        // serve's runtime: the defaults, the data dir hidden from scripts.
        let mut config = RuntimeConfig::new(dir.path().join("runtime"));
        config.node_modules = Some(modules);
        config.hidden_paths = vec![dir.path().to_path_buf()];
        let runtime = Runtime::start(config).await?;
        let engine = Engine::new(store.clone(), runtime.clone());
        // serve's workers: one slot per core, the default lease and poll.
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let worker = {
            let (engine, mut stop) = (engine.clone(), stop_rx.clone());
            tokio::spawn(async move {
                engine
                    .run_worker(WorkerConfig::new(workers), async move {
                        let _ = stop.changed().await;
                    })
                    .await
            })
        };
        let scheduler = {
            let (engine, mut stop) = (engine.clone(), stop_rx.clone());
            tokio::spawn(async move {
                engine
                    .run_scheduler(SchedulerConfig::default(), async move {
                        let _ = stop.changed().await;
                    })
                    .await
            })
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
        let server_engine = engine.clone();
        let server = tokio::spawn(async move {
            junction_server::serve(listener, server_engine, async {
                let _ = rx.await;
            })
            .await
        });
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build()?;
        Ok(Junction {
            base,
            http,
            workers,
            shutdown,
            stop,
            server,
            background: vec![worker, scheduler],
            runtime,
            store,
            engine,
            _dir: dir,
        })
    }

    async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(());
        self.server.await??;
        let _ = self.stop.send(true);
        for task in self.background {
            let _ = task.await;
        }
        drop(self.engine);
        self.runtime.shutdown().await;
        self.store.close().await;
        Ok(())
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(ADMIN);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.with_context(|| format!("{method} {path}: reading the answer"))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn text(&self, path: &str) -> Result<String> {
        let response = self.http.get(format!("{}{path}", self.base)).bearer_auth(ADMIN).send().await?;
        Ok(response.text().await?)
    }

    async fn put_flow(&self, doc: &Value) -> Result<()> {
        let (status, answer) = self.post("/api/v1/flows", doc).await?;
        if status != 201 {
            bail!("POST /api/v1/flows answered {status}: {answer}");
        }
        Ok(())
    }
}

// --- the benchmark's own HTTP servers ---------------------------------------------

/// A runtime of its own (one thread, `bench-peers`) for the HTTP source
/// and target, so their CPU time is told apart from the server's.
struct Peers {
    rt: tokio::runtime::Runtime,
}

impl Peers {
    fn new() -> Result<Peers> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(PEER_THREADS)
            .enable_all()
            .build()?;
        Ok(Peers { rt })
    }

    /// Serves `app` on 127.0.0.1 (a free port); its base URL.
    async fn serve(&self, app: Router) -> Result<String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.rt.spawn(async move {
            match tokio::net::TcpListener::bind("127.0.0.1:0").await.and_then(|l| Ok((l.local_addr()?, l))) {
                Ok((addr, listener)) => {
                    let _ = tx.send(Ok(addr));
                    let _ = axum::serve(listener, app).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        let addr = rx.await.context("the peer runtime stopped")??;
        Ok(format!("http://{addr}"))
    }

    fn stop(self) {
        self.rt.shutdown_background();
    }
}

fn source_record(i: u64) -> Value {
    json!({
        "id": i,
        "name": format!("Customer {i}"),
        "email": format!("customer{i}@example.com"),
        "amount": (i % 100_000) as f64 / 100.0,
        "updated_at": "2024-01-01T00:00:00.000Z",
    })
}

#[derive(Clone)]
struct Source {
    total: u64,
    requests: Arc<AtomicU64>,
}

/// `GET /records?page=P&limit=L`: records (P-1)·L+1 ..= P·L (at most N).
async fn source_page(
    State(s): State<Source>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, (StatusCode, String)> {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let number = |k: &str| q.get(k).and_then(|v| v.parse::<u64>().ok()).filter(|v| *v >= 1);
    let (Some(page), Some(limit)) = (number("page"), number("limit")) else {
        return Err((StatusCode::BAD_REQUEST, "page and limit (whole numbers ≥ 1) are required".into()));
    };
    let from = (page - 1).saturating_mul(limit).saturating_add(1);
    let to = page.saturating_mul(limit).min(s.total);
    let data: Vec<Value> = (from..=to).map(source_record).collect();
    Ok(Json(json!({"page": page, "data": data})))
}

#[derive(Clone, Default)]
struct Target {
    received: Arc<AtomicU64>,
    ids: Arc<Mutex<HashSet<i64>>>,
    /// Records without a `customer_id`, or whose values are not the source's.
    wrong: Arc<AtomicU64>,
}

/// `POST /customers`: one mapped record.
async fn target_post(State(t): State<Target>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    t.received.fetch_add(1, Ordering::Relaxed);
    let id = body["customer_id"].as_i64();
    match id {
        Some(id) => {
            if body["mail"].as_str() != Some(format!("customer{id}@example.com").as_str())
                || body["full_name"].as_str() != Some(format!("Customer {id}").as_str())
            {
                t.wrong.fetch_add(1, Ordering::Relaxed);
            }
            t.ids.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
        }
        None => {
            t.wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
    (StatusCode::CREATED, Json(json!({"id": id})))
}

// --- scenarios --------------------------------------------------------------------

fn mapping() -> Value {
    json!({"fields": [
        {"extract": "id", "generate": "customer_id"},
        {"extract": "name", "generate": "full_name"},
        {"extract": "email", "generate": "mail"},
        {"extract": "amount", "generate": "total"},
    ]})
}

/// The flow connection of the PostgreSQL at `url`.
fn pg_connection(url: &str) -> Result<Value> {
    let u = reqwest::Url::parse(url).with_context(|| format!("{} is not a URL", redact(url)))?;
    let mut c = json!({
        "type": "postgresql",
        "host": u.host_str().context("the database URL has no host")?,
        "port": u.port().unwrap_or(5432),
        "database": u.path().trim_start_matches('/'),
        "user": if u.username().is_empty() { "postgres" } else { u.username() },
    });
    if let Some(p) = u.password().filter(|p| !p.is_empty()) {
        c["encrypted"] = json!({"password": p});
    }
    Ok(c)
}

fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn unique() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("{}_{ms}", std::process::id())
}

async fn pg_scenario(
    j: &Junction,
    pool: &sqlx::PgPool,
    connection: &Value,
    n: usize,
    cap: Duration,
    breakdown: bool,
) -> Result<Value> {
    let suffix = unique();
    let (src, dst) = (format!("bench_flows_src_{suffix}"), format!("bench_flows_dst_{suffix}"));
    let made = async {
        sqlx::query(&format!(
            "CREATE TABLE {src} (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL, \
             amount numeric(12,2) NOT NULL, updated_at timestamptz NOT NULL)"
        ))
        .execute(pool)
        .await?;
        sqlx::query(&format!(
            "CREATE TABLE {dst} (customer_id bigint PRIMARY KEY, full_name text, mail text, total numeric(12,2))"
        ))
        .execute(pool)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO {src} SELECT g, 'Customer ' || g, 'customer' || g || '@example.com', \
             (g % 100000) / 100.0, now() - g * interval '1 second' FROM generate_series(1, $1::bigint) g"
        ))
        .bind(n as i64)
        .execute(pool)
        .await?;
        sqlx::query(&format!("ANALYZE {src}")).execute(pool).await?;
        anyhow::Ok(())
    };
    let result = match made.await.context("creating the PostgreSQL tables") {
        Ok(()) => pg_measure(j, pool, connection, n, cap, &src, &dst, breakdown).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sqlx::query(&format!("DROP TABLE IF EXISTS {src}, {dst}")).execute(pool).await {
        eprintln!("flows: could not drop {src} and {dst}: {e}");
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn pg_measure(
    j: &Junction,
    pool: &sqlx::PgPool,
    connection: &Value,
    n: usize,
    cap: Duration,
    src: &str,
    dst: &str,
    breakdown: bool,
) -> Result<Value> {
    let flow = format!("bench-pg-{n}");
    let doc = json!({
        "name": flow,
        "connections": {"pg": connection},
        "pageGenerators": [{"name": "src", "type": "database", "connection": "pg", "pageSize": PG_PAGE,
            "query": format!("SELECT id, name, email, amount FROM {src} ORDER BY id")}],
        "pageProcessors": [{"name": "dst", "type": "database", "connection": "pg", "table": dst,
            "operation": "insert", "mapping": mapping()}],
    });
    j.put_flow(&doc).await?;
    let observed = watch_run(j, &flow, cap).await?;
    let (arrived, distinct, matching): (i64, i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), count(DISTINCT d.customer_id), \
         count(*) FILTER (WHERE s.name = d.full_name AND s.email = d.mail AND s.amount = d.total) \
         FROM {dst} d LEFT JOIN {src} s ON s.id = d.customer_id"
    ))
    .fetch_one(pool)
    .await
    .context("counting the target's rows")?;
    let arrived = Arrived { records: arrived as u64, distinct: distinct as u64, wrong: (arrived - matching) as u64 };
    let mut extra = json!({});
    if breakdown {
        eprintln!("flows: pg, its parts alone ...");
        extra["breakdown"] = breakdown::pg(j, pool, &doc, dst).await?;
    }
    Ok(report(&format!("pg→pg {PG_PAGE}/page"), "pg", n, GOAL_PG, &observed, &arrived, extra))
}

async fn http_scenario(j: &Junction, peers: &Peers, n: usize, cap: Duration, breakdown: bool) -> Result<Vec<Value>> {
    let source = Source { total: n as u64, requests: Arc::default() };
    let target = Target::default();
    let source_url = peers.serve(Router::new().route("/records", get(source_page)).with_state(source.clone())).await?;
    let target_url =
        peers.serve(Router::new().route("/customers", post(target_post)).with_state(target.clone())).await?;
    let (status, answer) = j.post("/api/v1/stacks", &json!({"name": "bench", "data": STACK})).await?;
    if status != 201 {
        bail!("POST /api/v1/stacks answered {status}: {answer}");
    }
    let hook = |f: &str| json!({"stack": "bench", "function": f});
    let flow = format!("bench-http-{n}");
    let doc = json!({
        "name": flow,
        "connections": {
            "source": {"type": "http", "baseURI": source_url},
            "target": {"type": "http", "baseURI": target_url},
        },
        "pageGenerators": [{"name": "src", "type": "http", "connection": "source",
            "relativeURI": "/records?page={{page}}&limit={{limit}}", "resourcePath": "data",
            "paging": {"method": "page"}, "hooks": {"preSavePage": hook("preSavePage")}}],
        "pageProcessors": [{"name": "dst", "type": "http", "connection": "target", "method": "POST",
            "relativeURI": "/customers", "idPath": "id", "mapping": mapping(),
            "hooks": {"preMap": hook("preMap"), "postMap": hook("postMap")}}],
    });
    j.put_flow(&doc).await?;
    let observed = watch_run(j, &flow, cap).await?;
    let distinct = target.ids.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
    let arrived = Arrived {
        records: target.received.load(Ordering::Relaxed),
        distinct,
        wrong: target.wrong.load(Ordering::Relaxed),
    };
    let mut extra = json!({"source_requests": source.requests.load(Ordering::Relaxed), "hook_calls_per_page": 3});
    if breakdown {
        eprintln!("flows: http, its parts alone ...");
        extra["breakdown"] = breakdown::http(j, &doc).await?;
    }
    let mut results = vec![report("http→hooks→http 20/page", "http", n, GOAL_HTTP, &observed, &arrived, extra)];
    if breakdown {
        // The same flow without its hooks, to a fresh target: what the
        // three hook calls of each page cost the run.
        eprintln!("flows: http without hooks, {n} records ...");
        let target = Target::default();
        let target_url =
            peers.serve(Router::new().route("/customers", post(target_post)).with_state(target.clone())).await?;
        let mut bare = doc.clone();
        bare["name"] = json!(format!("bench-http-nohooks-{n}"));
        bare["connections"]["target"]["baseURI"] = json!(target_url);
        bare["pageGenerators"][0].as_object_mut().map(|e| e.remove("hooks"));
        bare["pageProcessors"][0].as_object_mut().map(|p| p.remove("hooks"));
        j.put_flow(&bare).await?;
        let observed = watch_run(j, bare["name"].as_str().unwrap_or_default(), cap).await?;
        let distinct = target.ids.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
        let arrived = Arrived {
            records: target.received.load(Ordering::Relaxed),
            distinct,
            wrong: target.wrong.load(Ordering::Relaxed),
        };
        results.push(report(
            "http→http 20/page, no hooks",
            "http-nohooks",
            n,
            GOAL_HTTP,
            &observed,
            &arrived,
            json!({}),
        ));
    }
    Ok(results)
}

// --- one run, watched -------------------------------------------------------------

struct Observed {
    run: Value,
    /// From `created_at` to the poll that saw the end.
    seconds: f64,
    /// From just before `POST .../run` to the poll that saw the end.
    client_seconds: f64,
    aborted: Option<String>,
    rss: Value,
    cpu: Value,
    pages: Value,
}

struct Arrived {
    records: u64,
    distinct: u64,
    wrong: u64,
}

fn is_final(run: &Value) -> bool {
    matches!(run["state"].as_str(), Some("SUCCESS" | "FAILURE" | "REVOKED"))
}

async fn watch_run(j: &Junction, flow: &str, cap: Duration) -> Result<Observed> {
    let peak_reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status_kb("VmRSS");
    let mut probe = Probe::start();
    let t0 = Instant::now();
    let (status, mut run) = j.post(&format!("/api/v1/flows/{flow}/run"), &json!({})).await?;
    if status != 202 && status != 200 {
        bail!("POST /api/v1/flows/{flow}/run answered {status}: {run}");
    }
    let id = run["id"].as_str().context("the run has no id")?.to_string();
    let created: jiff::Timestamp =
        run["created_at"].as_str().context("the run has no created_at")?.parse().context("created_at")?;
    let mut aborted = None;
    let mut polls = 0u64;
    while !is_final(&run) {
        if t0.elapsed() >= cap {
            aborted = Some(format!(
                "the run did not end within the cap of {:.0} s (counters then: {}); revoked",
                cap.as_secs_f64(),
                run["counters"]
            ));
            let _ = j.post(&format!("/api/v1/tasks/{id}/revoke"), &json!({})).await;
            break;
        }
        tokio::time::sleep(POLL).await;
        let (status, view) = j.get(&format!("/api/v1/tasks/{id}")).await?;
        if status != 200 {
            bail!("GET /api/v1/tasks/{id} answered {status}: {view}");
        }
        run = view;
        polls += 1;
        if polls.is_multiple_of(4) {
            probe.sample();
        }
    }
    let ended = jiff::Timestamp::now();
    let client_seconds = t0.elapsed().as_secs_f64();
    probe.sample();
    let peak = status_kb("VmHWM");
    let rss_after = status_kb("VmRSS");
    if aborted.is_some() {
        // Let the revoke land before the next scenario.
        let stop = Instant::now();
        while stop.elapsed() < Duration::from_secs(30) {
            let (_, view) = j.get(&format!("/api/v1/tasks/{id}")).await?;
            if is_final(&view) {
                run = view;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let seconds = ended.duration_since(created).as_secs_f64();
    let log = j.text(&format!("/api/v1/tasks/{id}/log")).await.unwrap_or_default();
    let records = run["counters"]["src"]["success"].as_u64().unwrap_or(0);
    Ok(Observed {
        pages: page_pacing(&log, created, ended),
        cpu: probe.report(t0.elapsed(), records),
        rss: json!({
            "before_mb": mb(rss_before),
            "peak_mb": mb(peak),
            "after_mb": mb(rss_after),
            "peak_reset_before_run": peak_reset,
        }),
        run,
        seconds,
        client_seconds,
        aborted,
    })
}

fn counter(run: &Value, step: &str, key: &str) -> u64 {
    run["counters"][step][key].as_u64().unwrap_or(0)
}

fn report(scenario: &str, kind: &str, n: usize, goal: f64, o: &Observed, arrived: &Arrived, mut extra: Value) -> Value {
    let n64 = n as u64;
    let r = &o.run;
    let mut problems = Vec::new();
    if let Some(a) = &o.aborted {
        problems.push(a.clone());
    }
    if r["state"] != "SUCCESS" || r["outcome"] != "completed" {
        let why = r["steps"][0]["result"].as_str().unwrap_or_default();
        problems.push(format!("the run ended {} / {} {why}", r["state"], r["outcome"]));
    }
    for (step, key, want) in
        [("src", "success", n64), ("src", "error", 0), ("dst", "success", n64), ("dst", "error", 0)]
    {
        let got = counter(r, step, key);
        if got != want {
            problems.push(format!("counter {step}.{key} is {got}, expected {want}"));
        }
    }
    if arrived.records != n64 {
        problems.push(format!("{} records arrived at the target, expected {n}", arrived.records));
    }
    if arrived.distinct != n64 {
        problems.push(format!("{} distinct ids arrived at the target, expected {n}", arrived.distinct));
    }
    if arrived.wrong > 0 {
        problems.push(format!("{} records arrived with values that are not the source's", arrived.wrong));
    }
    let (start, end) = (r["start_time"].as_i64(), r["end_time"].as_i64());
    let rate = if o.seconds > 0.0 { arrived.records.min(n64) as f64 / o.seconds } else { 0.0 };
    let mut out = json!({
        "scenario": scenario,
        "kind": kind,
        "records": n,
        "ok": problems.is_empty(),
        "problems": problems,
        "arrived": arrived.records,
        "arrived_distinct_ids": arrived.distinct,
        "arrived_wrong_values": arrived.wrong,
        "run_id": r["id"],
        "state": r["state"],
        "outcome": r["outcome"],
        "seconds": o.seconds,
        "client_seconds": o.client_seconds,
        "start_time": start,
        "end_time": end,
        "run_seconds_whole": start.zip(end).map(|(s, e)| e - s),
        "records_per_second": rate,
        "goal_records_per_second": goal,
        "counters": r["counters"],
        "pages_generated": counter(r, "src", "pagesGenerated"),
        "pages_processed": counter(r, "dst", "pagesProcessed"),
        "rss": o.rss,
        "cpu": o.cpu,
        "page_pacing": o.pages,
    });
    if let (Some(obj), Some(more)) = (out.as_object_mut(), extra.as_object_mut()) {
        obj.append(more);
    }
    out
}

// --- memory, CPU and the log ------------------------------------------------------

/// A `/proc/self/status` value in kB.
fn status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?;
    line[key.len() + 1..].split_whitespace().next()?.parse().ok()
}

fn mb(kb: Option<u64>) -> Value {
    kb.map_or(Value::Null, |kb| json!((kb as f64 / 1024.0 * 10.0).round() / 10.0))
}

/// What a thread or process is, for the CPU report.
fn group_of_thread(name: &str) -> &'static str {
    if name.starts_with(PEER_THREADS) {
        "bench_peers"
    } else if name.starts_with("tokio") {
        "junction_tokio"
    } else if name.starts_with("sqlx-sqlite") {
        "junction_sqlite"
    } else {
        "junction_other_threads"
    }
}

/// A process: PostgreSQL's, one this process started (the runtimes: the
/// hooks run in Node.js), or any other on the machine.
fn group_of_process(comm: &str, ours: bool) -> &'static str {
    match (comm, ours) {
        ("postgres", _) => "postgresql",
        (c, true) if c.starts_with("node") => "node_hooks",
        (_, true) => "our_other_children",
        _ => "other_processes",
    }
}

/// CPU time since the start: this process's threads, every other process
/// (sampled, so one that ends in between still counts to its last sample),
/// and the machine's.
struct Probe {
    /// (thread or process key) → (group, ns at the first sample).
    first: HashMap<String, (&'static str, u64)>,
    last: HashMap<String, (&'static str, u64)>,
    machine_first: (u64, u64),
    machine_last: (u64, u64),
    sampled: bool,
}

fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or_default() + ticks.get(4).copied().unwrap_or_default();
    (total.saturating_sub(idle), total)
}

impl Probe {
    fn start() -> Probe {
        let mut p = Probe {
            first: HashMap::new(),
            last: HashMap::new(),
            machine_first: machine_ticks(),
            machine_last: (0, 0),
            sampled: false,
        };
        p.sample();
        p
    }

    fn sample(&mut self) {
        let mut now: Vec<(String, &'static str, u64)> = Vec::new();
        for entry in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
            let dir = entry.path();
            let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let ns = std::fs::read_to_string(dir.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
                .unwrap_or_default();
            now.push((format!("t{}", entry.file_name().to_string_lossy()), group_of_thread(name.trim()), ns));
        }
        let me = std::process::id() as u64;
        // (pid, comm, ppid, start, ns) of every other process.
        let mut procs: Vec<(u64, String, u64, u64, u64)> = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u64>() else { continue };
            if pid == me {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            let comm = stat[open + 1..close].to_string();
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
            // After the comm: state is field 3, ppid 4, utime 14, stime 15, starttime 22.
            procs.push((pid, comm, field(1), field(19), (field(11) + field(12)) * TICK_NS));
        }
        let parent: HashMap<u64, u64> = procs.iter().map(|p| (p.0, p.2)).collect();
        let ours = |mut pid: u64| {
            for _ in 0..64 {
                match parent.get(&pid) {
                    Some(&pp) if pp == me => return true,
                    Some(&pp) if pp > 1 => pid = pp,
                    _ => return false,
                }
            }
            false
        };
        for (pid, comm, _, start, ns) in &procs {
            now.push((format!("p{pid}@{start}"), group_of_process(comm, ours(*pid)), *ns));
        }
        for (key, group, ns) in now {
            if !self.sampled {
                self.first.insert(key.clone(), (group, ns));
            }
            self.last.insert(key, (group, ns));
        }
        self.sampled = true;
        self.machine_last = machine_ticks();
    }

    fn report(&self, wall: Duration, records: u64) -> Value {
        let wall = wall.as_secs_f64().max(1e-9);
        let mut groups: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
        for (key, (group, ns)) in &self.last {
            let was = self.first.get(key).map_or(0, |(_, ns)| *ns);
            *groups.entry(group).or_default() += ns.saturating_sub(was) as f64 / 1e9;
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        let busy = self.machine_last.0.saturating_sub(self.machine_first.0) as f64;
        let total = self.machine_last.1.saturating_sub(self.machine_first.1).max(1) as f64;
        let machine_seconds = busy / total * cores * wall;
        let per_record = |s: f64| if records > 0 { s * 1e6 / records as f64 } else { 0.0 };
        let mut out = json!({
            "wall_seconds": wall,
            "machine_busy_cores": machine_seconds / wall,
            "machine_cpu_us_per_record": per_record(machine_seconds),
        });
        for (group, seconds) in groups {
            out[group] =
                json!({"cores": seconds / wall, "cpu_seconds": seconds, "cpu_us_per_record": per_record(seconds)});
        }
        out
    }
}

/// When pages were handed to the processors: the `page of M records`
/// lines of the run's log (millisecond times).
fn page_pacing(log: &str, created: jiff::Timestamp, ended: jiff::Timestamp) -> Value {
    let mut times: Vec<jiff::Timestamp> = log
        .lines()
        .filter(|l| l.contains(": page of "))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    times.sort();
    if times.is_empty() {
        return json!({"pages_logged": 0});
    }
    let mut gaps: Vec<f64> = times.windows(2).map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1000.0).collect();
    gaps.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let q = |p: f64| crate::quantile(&gaps, p);
    json!({
        "pages_logged": times.len(),
        "first_page_after_creation_ms": times[0].duration_since(created).as_secs_f64() * 1000.0,
        "end_after_last_page_ms": ended.duration_since(times[times.len() - 1]).as_secs_f64() * 1000.0,
        "interval_ms_mean": if gaps.is_empty() { 0.0 } else { gaps.iter().sum::<f64>() / gaps.len() as f64 },
        "interval_ms_p50": q(0.5),
        "interval_ms_p90": q(0.9),
        "interval_ms_p99": q(0.99),
        "interval_ms_max": q(1.0),
    })
}

// --- output -----------------------------------------------------------------------

fn print_table(results: &[Value]) {
    let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or_default();
    println!(
        "{:<28} {:>8} {:>8} {:>4} {:>8} {:>6} {:>9} {:>8} {:>13} {:>13} {:>11} {:>9} {:>9}",
        "scenario",
        "records",
        "arrived",
        "ok",
        "secs",
        "run s",
        "rec/s",
        "goal",
        "src ok/err",
        "dst ok/err",
        "pages g/p",
        "RSS MB",
        "peak MB"
    );
    for r in results {
        let c = |s: &str, k: &str| r["counters"][s][k].as_u64().unwrap_or_default();
        println!(
            "{:<28} {:>8} {:>8} {:>4} {:>8.2} {:>6} {:>9.0} {:>8.0} {:>13} {:>13} {:>11} {:>9} {:>9}",
            r["scenario"].as_str().unwrap_or_default(),
            r["records"].as_u64().unwrap_or_default(),
            r["arrived"].as_u64().unwrap_or_default(),
            if r["ok"] == true { "yes" } else { "NO" },
            f(r, "seconds"),
            r["run_seconds_whole"].as_i64().map_or("-".into(), |s| s.to_string()),
            f(r, "records_per_second"),
            f(r, "goal_records_per_second"),
            format!("{}/{}", c("src", "success"), c("src", "error")),
            format!("{}/{}", c("dst", "success"), c("dst", "error")),
            format!("{}/{}", r["pages_generated"], r["pages_processed"]),
            r["rss"]["before_mb"].to_string(),
            r["rss"]["peak_mb"].to_string(),
        );
    }
    println!(
        "secs: from the run's created_at to its end as seen by polling every {} ms; run s: end_time - start_time \
         (whole seconds). RSS: this process before the run; peak: its VmHWM during the run (reset before each run) \
         — the process holds the Junction server, its workers and store, AND this benchmark's HTTP source/target \
         servers and PostgreSQL client; the Node.js hook processes and PostgreSQL are separate processes, not in it.",
        POLL.as_millis()
    );
    println!(
        "{:<28} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>11}   machine CPU per record",
        "scenario", "machine", "tokio", "sqlite", "peers", "postgres", "children", "other thr", "other procs"
    );
    for r in results {
        let c = &r["cpu"];
        let g = |k: &str| c[k]["cores"].as_f64().map_or("-".to_string(), |v| format!("{v:.2}"));
        let children = match (c["node_hooks"]["cores"].as_f64(), c["our_other_children"]["cores"].as_f64()) {
            (None, None) => "-".to_string(),
            (a, b) => format!("{:.2}", a.unwrap_or_default() + b.unwrap_or_default()),
        };
        println!(
            "{:<28} {:>7.2} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>11}   {:.1} us",
            r["scenario"].as_str().unwrap_or_default(),
            c["machine_busy_cores"].as_f64().unwrap_or_default(),
            g("junction_tokio"),
            g("junction_sqlite"),
            g("bench_peers"),
            g("postgresql"),
            children,
            g("junction_other_threads"),
            g("other_processes"),
            c["machine_cpu_us_per_record"].as_f64().unwrap_or_default(),
        );
    }
    println!(
        "cores: CPU seconds over the run's wall time — machine: all of it (/proc/stat); tokio: this process's runtime \
         threads (Junction's HTTP server, worker, adapters, and the polling client); sqlite: the store's threads; \
         peers: this benchmark's HTTP source/target; postgres: its processes; children: the processes this one \
         started (the hooks' Node.js processes, the runtime's spare ones); other procs: anything else on the machine."
    );
    println!(
        "{:<28} {:>7} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "scenario", "pages", "gap p50 ms", "gap p90", "gap p99", "gap max", "1st page ms", "end-last ms"
    );
    for r in results {
        let p = &r["page_pacing"];
        let g = |k: &str| p[k].as_f64().map_or("-".to_string(), |v| format!("{v:.1}"));
        println!(
            "{:<28} {:>7} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
            r["scenario"].as_str().unwrap_or_default(),
            p["pages_logged"].as_u64().unwrap_or_default(),
            g("interval_ms_p50"),
            g("interval_ms_p90"),
            g("interval_ms_p99"),
            g("interval_ms_max"),
            g("first_page_after_creation_ms"),
            g("end_after_last_page_ms"),
        );
    }
    for r in results.iter().filter(|r| r["breakdown"].is_object()) {
        println!(
            "{} — each part alone, a page at a time ({} records measured):",
            r["scenario"].as_str().unwrap_or_default(),
            r["breakdown"]["records"]
        );
        println!(
            "  {:<46} {:>6} {:>12} {:>12} {:>16}",
            "part", "pages", "ms/page p50", "ms/page mean", "records/s alone"
        );
        for p in r["breakdown"]["parts"].as_array().into_iter().flatten() {
            let g = |k: &str| p[k].as_f64().unwrap_or_default();
            println!(
                "  {:<46} {:>6} {:>12.3} {:>12.3} {:>16.0}",
                p["part"].as_str().unwrap_or_default(),
                p["pages"].as_u64().unwrap_or_default(),
                g("ms_per_page_p50"),
                g("ms_per_page_mean"),
                g("records_per_second_alone"),
            );
        }
    }
    let pg: Vec<&Value> = results.iter().filter(|r| r["kind"] == "pg").collect();
    if pg.len() == 2 {
        println!(
            "peak RSS by record count (pg): {} records → {} MB, {} records → {} MB",
            pg[0]["records"], pg[0]["rss"]["peak_mb"], pg[1]["records"], pg[1]["rss"]["peak_mb"]
        );
    }
    for r in results.iter().filter(|r| r["ok"] != true) {
        println!("{}: {}", r["scenario"].as_str().unwrap_or_default(), r["problems"]);
    }
}

fn write_json(o: &Options, workers: usize, results: &[Value]) -> Result<()> {
    let out = o.out.clone().unwrap_or_else(|| PathBuf::from("target/bench/flows.json"));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let report = json!({
        "benchmark": "flows",
        "records": o.records,
        "cap_seconds": o.cap.as_secs_f64(),
        "poll_ms": POLL.as_millis() as u64,
        "workers": workers,
        "rss_note": "VmHWM of this process: the Junction server (workers, store) and this benchmark's HTTP source/target servers and PostgreSQL client; Node.js hook processes and PostgreSQL are not included",
        "results": results,
        "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("wrote {}", out.display());
    Ok(())
}

// --- --breakdown ------------------------------------------------------------------

/// `--breakdown`: the parts of a page measured alone, one page at a time,
/// on the scenario's own data and settings (the flow document parsed as the
/// engine parses it), to say where a run's time goes. The run's exporter
/// loop does, in order for each page: read the export's page, the page
/// size check (every record serialized), `preSavePage`, hand the page to a
/// task, and, for the oldest page in flight, commit its outcome to the
/// store; the tasks (at most 4 pages at once) do `preMap`, the mapping,
/// `postMap` and the import.
mod breakdown {
    use std::future::Future;
    use std::pin::Pin;

    use junction_adapters::{DatabaseSource, Databases, HttpSource};
    use junction_core::flow::adapters::Connection;
    use junction_core::flow::document::{parse_flow, ExportAdapter, Flow, ImportAdapter, ProcessorKind};
    use junction_store::{FlowProgress, PageCommit};

    use super::*;

    /// Pages measured at most, per part.
    const PAGES: usize = 250;

    fn flow(doc: &Value) -> Result<Flow> {
        parse_flow(doc).map_err(|e| anyhow::anyhow!("the flow document is refused: {e:?}"))
    }

    fn adapter(e: junction_adapters::AdapterError) -> anyhow::Error {
        anyhow::anyhow!("{e}")
    }

    /// One part: per-page times (median and mean) and the records/s it
    /// would allow alone.
    fn part(name: &str, mut times: Vec<Duration>, records_per_page: usize) -> Value {
        times.sort();
        let n = times.len().max(1) as f64;
        let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() / n;
        let p50 = crate::quantile(&times, 0.5).map_or(0.0, |d| d.as_secs_f64());
        json!({
            "part": name,
            "pages": times.len(),
            "records_per_page": records_per_page,
            "ms_per_page_p50": p50 * 1000.0,
            "ms_per_page_mean": mean * 1000.0,
            "records_per_second_alone": if mean > 0.0 { records_per_page as f64 / mean } else { 0.0 },
        })
    }

    fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
        let t = Instant::now();
        let out = f();
        (out, t.elapsed())
    }

    /// What the exporter loop does to each page before handing it on: the
    /// 5 MB check counts the page's JSON bytes (as the engine's `json_size`,
    /// without building the text).
    fn size_check(records: &[Value]) -> usize {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        let _ = serde_json::to_writer(&mut count, records);
        count.0
    }

    /// `Store::commit_flow_page` alone, on a fresh SQLite store (as the
    /// bench server's), with `per_page` succeeded records (each one
    /// `UPDATE flow_errors ... WHERE trace_key = ?`) and with none.
    async fn commits(j: &Junction, per_page: usize, pages: usize) -> Result<Vec<Value>> {
        let dir = tempfile::tempdir()?;
        let (store, _, _) = crate::open_store("sqlite", dir.path()).await?;
        let engine = Engine::new(store.clone(), j.runtime.clone());
        engine
            .put_flow(&json!({"name": "commit-probe",
                "connections": {"pg": {"type": "postgresql", "host": "127.0.0.1", "database": "x", "user": "x"}},
                "pageGenerators": [{"name": "src", "type": "database", "connection": "pg", "query": "SELECT 1"}],
                "pageProcessors": [{"name": "dst", "type": "database", "connection": "pg", "table": "t"}]}))
            .await?;
        let run = engine.start_flow_run("commit-probe", Default::default()).await?;
        let counters = json!({"src": {"pagesGenerated": 1, "success": per_page, "error": 0, "ignore": 0},
                              "dst": {"pagesProcessed": 1, "success": per_page, "error": 0, "ignore": 0}});
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for k in 0..pages {
            for succeeded in [per_page, 0] {
                let page = PageCommit {
                    run_id: run.id.clone(),
                    flow: "commit-probe".into(),
                    progress: FlowProgress {
                        generator: 0,
                        state: Some(json!({"rows": (k + 1) * per_page})),
                        next_page: k as i64 + 1,
                        counters: counters.clone(),
                    },
                    succeeded: (0..succeeded).map(|i| ("dst".to_string(), (k * per_page + i).to_string())).collect(),
                    ..Default::default()
                };
                let t = Instant::now();
                store.commit_flow_page(&page).await?;
                if succeeded > 0 { &mut with } else { &mut without }.push(t.elapsed());
            }
        }
        drop(engine);
        store.close().await;
        Ok(vec![
            part(&format!("store commit, {per_page} succeeded"), with, per_page),
            part("store commit, 0 succeeded", without, per_page),
        ])
    }

    /// Imports `pages` 4 at once (each on its own task, as the engine's
    /// pages are); the time per page of the batch, for each page.
    async fn import_together(
        databases: &Arc<Databases>,
        conn: &junction_core::flow::adapters::DatabaseConnection,
        import: &junction_core::flow::adapters::DatabaseImport,
        pages: Vec<Vec<Value>>,
    ) -> Result<Vec<Duration>> {
        let t = Instant::now();
        let count = pages.len();
        let mut tasks = Vec::new();
        for page in pages {
            let (databases, conn, import) = (databases.clone(), conn.clone(), import.clone());
            // Boxed as Send with concrete lifetimes (rust#102211), as the engine does.
            let task: Pin<Box<dyn Future<Output = Result<(), String>> + Send>> = Box::pin(async move {
                databases.database_import(&conn, &import, &page).await.map(|_| ()).map_err(|e| e.to_string())
            });
            tasks.push(tokio::spawn(task));
        }
        for task in tasks {
            task.await?.map_err(|e| anyhow::anyhow!(e))?;
        }
        Ok(vec![t.elapsed() / count.max(1) as u32; count])
    }

    pub async fn pg(j: &Junction, pool: &sqlx::PgPool, doc: &Value, dst: &str) -> Result<Value> {
        let f = flow(doc)?;
        let Some(Connection::Database(conn)) = f.connections.get("pg") else { bail!("no database connection pg") };
        let ExportAdapter::Database(export) = &f.page_generators[0].adapter else { bail!("not a database export") };
        // The export alone: nothing else is done with its pages.
        let mut source = DatabaseSource::new(conn, export, json!({}), PG_PAGE, None);
        let mut read = Vec::new();
        let mut n = 0;
        loop {
            let t = Instant::now();
            let Some(page) = source.next_page().await.map_err(adapter)? else { break };
            read.push(t.elapsed());
            n += page.records.len();
        }
        drop(source);
        let pages = read.len();

        // The rest on a second read, page by page (memory stays a few
        // pages): the import into a copy of the target, a page at a time
        // for the first half, 4 pages at once for the second.
        let scratch = format!("{dst}_x");
        sqlx::query(&format!("CREATE TABLE {scratch} (LIKE {dst})")).execute(pool).await?;
        let measured = async {
            let mut doc2 = doc.clone();
            doc2["pageProcessors"][0]["table"] = json!(scratch);
            let f2 = flow(&doc2)?;
            let ProcessorKind::Import(ImportAdapter::Database(import)) = &f2.page_processors[0].kind else {
                bail!("not a database import")
            };
            let databases = Arc::new(Databases::new());
            let mut source = DatabaseSource::new(conn, export, json!({}), PG_PAGE, None);
            let (mut sizes, mut clones, mut mapping, mut one, mut four) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut batch = Vec::new();
            let mut k = 0;
            while let Some(page) = source.next_page().await.map_err(adapter)? {
                let records = page.records;
                sizes.push(timed(|| size_check(&records)).1);
                clones.push(timed(|| records.clone()).1);
                let (mapped, took) =
                    timed(|| records.iter().map(|r| f.page_processors[0].mapping.apply(r)).collect::<Vec<_>>());
                mapping.push(took);
                if k < pages / 2 {
                    let t = Instant::now();
                    databases.database_import(conn, import, &mapped).await.map_err(adapter)?;
                    one.push(t.elapsed());
                } else {
                    batch.push(mapped);
                    if batch.len() == 4 {
                        four.extend(import_together(&databases, conn, import, std::mem::take(&mut batch)).await?);
                    }
                }
                k += 1;
            }
            if !batch.is_empty() {
                four.extend(import_together(&databases, conn, import, batch).await?);
            }
            let (written,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {scratch}")).fetch_one(pool).await?;
            if written as usize != n {
                bail!("the import alone wrote {written} rows of {n}");
            }
            Ok((sizes, clones, mapping, one, four))
        }
        .await;
        let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {scratch}")).execute(pool).await;
        let (sizes, clones, mapping, one, four) = measured?;
        let mut parts = vec![
            part("export: read a page (database)", read, PG_PAGE),
            part("exporter loop: page size check", sizes, PG_PAGE),
            part("a clone of the page's records", clones, PG_PAGE),
            part("mapping", mapping, PG_PAGE),
            part("import: a page alone (database)", one, PG_PAGE),
            part("import: 4 pages at once, per page", four, PG_PAGE),
        ];
        parts.extend(commits(j, PG_PAGE, pages.min(PAGES)).await?);
        Ok(json!({"records": n, "parts": parts}))
    }

    async fn hook(j: &Junction, function: &str, options: Value) -> Result<Duration> {
        let t = Instant::now();
        let answer = j.engine.call_stack_function("bench", Some("hook"), function, options).await?;
        if answer.status != 200 {
            bail!("hook {function} answered {}: {:?}", answer.status, answer.body);
        }
        Ok(t.elapsed())
    }

    pub async fn http(j: &Junction, doc: &Value) -> Result<Value> {
        let f = flow(doc)?;
        let Some(Connection::Http(sconn)) = f.connections.get("source") else { bail!("no http connection source") };
        let Some(Connection::Http(tconn)) = f.connections.get("target") else { bail!("no http connection target") };
        let ExportAdapter::Http(export) = &f.page_generators[0].adapter else { bail!("not an http export") };
        let ProcessorKind::Import(ImportAdapter::Http(import)) = &f.page_processors[0].kind else {
            bail!("not an http import")
        };
        let size = f.page_generators[0].page_size;
        let client = junction_adapters::http_client();
        let mut source = HttpSource::new(&client, sconn, export, json!({}), size, None);
        let (mut pages, mut read) = (Vec::new(), Vec::new());
        while pages.len() < PAGES {
            let t = Instant::now();
            let Some(page) = source.next_page().await.map_err(adapter)? else { break };
            read.push(t.elapsed());
            pages.push(page.records);
        }
        let sizes: Vec<Duration> = pages.iter().map(|p| timed(|| size_check(p)).1).collect();
        let common = |o: Value| {
            let mut o = o;
            o["_flowId"] = json!("bench-breakdown");
            o["_integrationId"] = json!("bench-breakdown");
            o["settings"] = json!({});
            o
        };
        let (mut pre_save, mut pre_map, mut post_map, mut mapping) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut mapped = Vec::new();
        for p in &pages {
            pre_save.push(hook(j, "preSavePage", common(json!({"data": p, "errors": [], "_exportId": "src"}))).await?);
            pre_map.push(hook(j, "preMap", common(json!({"data": p, "_importId": "dst"}))).await?);
            let (m, took) = timed(|| p.iter().map(|r| f.page_processors[0].mapping.apply(r)).collect::<Vec<_>>());
            mapping.push(took);
            post_map.push(
                hook(j, "postMap", common(json!({"preMapData": p, "postMapData": m, "_importId": "dst"}))).await?,
            );
            mapped.push(m);
        }
        let mut imports = Vec::new();
        for m in &mapped {
            let t = Instant::now();
            let results = junction_adapters::http_import(&client, tconn, import, &json!({"settings": {}}), m)
                .await
                .map_err(adapter)?;
            if results.iter().any(|r| r.status_code != 200) {
                bail!("the import alone was refused: {:?}", results.iter().find(|r| r.status_code != 200));
            }
            imports.push(t.elapsed());
        }
        let mut parts = vec![
            part("export: read a page (http)", read, size),
            part("exporter loop: page size check", sizes, size),
            part("hook preSavePage (exporter loop)", pre_save, size),
            part("hook preMap", pre_map, size),
            part("mapping", mapping, size),
            part("hook postMap", post_map, size),
            part("import: a page, one POST per record (http)", imports, size),
        ];
        parts.extend(commits(j, size, pages.len()).await?);
        Ok(json!({"records": pages.iter().map(Vec::len).sum::<usize>(), "parts": parts}))
    }
}
