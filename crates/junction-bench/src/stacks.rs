//! `junction-bench stacks [--calls N] [--cap SECONDS] [--warmup N]
//! [--concurrency C[,C...]] [--peer-only] [--out FILE]`: extension-function
//! calls (spec 001's `POST /stacks/{name}/function`) side by side with the
//! peer host — `express-integrator-extension`'s routes over the real
//! `integrator-extension` package, as
//! `crates/junction-server/tests/fixtures/stacks/mocha/peer-host.js` stands
//! them up — hosting the same module,
//! `crates/junction-server/tests/fixtures/stacks/bench/index.js`:
//!
//! - `noop`: `hooks.noop` calls back the length of `options.data` (3).
//! - `page20`: `hooks.preSavePage` maps a page of 20 records
//!   (`{data: [...], errors: []}`: fields renamed and combined).
//!
//! For each target × hook × concurrency (default 1 and 16): a warm-up
//! (default 200 calls, not counted), then at most N calls (default 5,000)
//! within the cap (default 10 s), from C concurrent clients sharing one
//! keep-alive `reqwest` pool. A call succeeds when the status is 200 and the
//! body is byte for byte the target's first answer, which was itself
//! checked against the expected value computed here. Reported: successes,
//! failures, calls/s (successes over the measured wall time), p50 and p99
//! latency of the successes.
//!
//! Junction: the real server in this process with the server defaults (a
//! fresh SQLite store, the runtime with spec 000's node modules), the module
//! uploaded with `POST /api/v1/stacks` `{"name": "bench", "data": ...}` by
//! the admin, calls authenticated with the returned `system_token`. Peer:
//! `node peer-host.js` as a child process on 127.0.0.1 (NODE_ENV=production;
//! its `node_modules` installed with `npm ci` in `mocha/peer/` when
//! missing), killed at the end. Client, server and peer share this
//! machine's cores; everything talks to 127.0.0.1 only.
//!
//! `--peer-only` measures the peer alone (no Junction server is started).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use junction_engine::Engine;
use junction_runtime::{ensure_node_modules, Runtime, RuntimeConfig};
use serde_json::{json, Value};

pub use harness::{Options, Target};

const ADMIN: &str = "bench-admin-token-0123456789";

/// Where the stacks fixtures are (the peer host and the bench module).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../junction-server/tests/fixtures/stacks")
}

/// Entry point from `main.rs`: `args` are the arguments after `stacks`.
pub async fn main(args: Vec<String>) -> Result<()> {
    let o = harness::parse_args(args)?;
    let results = run(&o).await?;
    harness::print_table(&results);
    harness::write_json(&o, &results)?;
    Ok(())
}

/// Runs every cell, Junction's (unless `peer_only`) and the peer's, in
/// interleaved rounds: round after round, all of Junction's cells then all
/// of the peer's, so a slow moment of the machine falls on both.
pub async fn run(o: &Options) -> Result<Vec<Value>> {
    let fixtures = fixtures_dir();
    let source = std::fs::read_to_string(fixtures.join("bench/index.js")).context("reading the bench module")?;
    let junction = if o.peer_only { None } else { Some(Junction::start(&source).await?) };
    let peer = harness::Peer::start(&fixtures).await?;
    let mut results = Vec::new();
    for round in 1..=o.rounds {
        let mut targets = vec![&peer.target];
        if let Some(j) = &junction {
            targets.insert(0, &j.target);
        }
        for target in targets {
            for mut cell in harness::measure_target(o, target).await? {
                cell["round"] = json!(round);
                results.push(cell);
            }
        }
    }
    if let Some(j) = junction {
        j.stop().await?;
    }
    peer.stop().await;
    Ok(results)
}

/// The real Junction server in this process, with the bench stack uploaded.
struct Junction {
    target: Target,
    shutdown: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    runtime: Runtime,
    engine: Engine,
    _dir: tempfile::TempDir,
}

impl Junction {
    async fn start(source: &str) -> Result<Junction> {
        let dir = tempfile::tempdir()?;
        let (store, _, _) = crate::open_store("sqlite", dir.path()).await?;
        store.bootstrap_admin(Some(ADMIN)).await?;
        let modules = ensure_node_modules(Path::new("npm"), &PathBuf::from("target/tmp/junction-node-modules"), |m| {
            eprintln!("{m}")
        })
        .await?;
        let mut config = RuntimeConfig::new(dir.path().join("runtime"));
        config.node_modules = Some(modules);
        let runtime = Runtime::start(config).await?;
        let engine = Engine::new(store, runtime.clone());
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
        let http = harness::client(4)?;
        let resp = http
            .post(format!("{base}/api/v1/stacks"))
            .bearer_auth(ADMIN)
            .json(&json!({"name": "bench", "data": source}))
            .send()
            .await
            .context("uploading the bench stack")?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.as_u16() != 201 {
            bail!("POST /api/v1/stacks: {status} {body}");
        }
        let token = body["system_token"].as_str().context("no system_token in the upload's answer")?.to_string();
        let target = Target { name: "junction", url: format!("{base}/stacks/bench/function"), token };
        Ok(Junction { target, shutdown, server, runtime, engine, _dir: dir })
    }

    async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(());
        self.server.await??;
        drop(self.engine);
        self.runtime.shutdown().await;
        Ok(())
    }
}

/// Everything but the Junction server: arguments, the peer process, the
/// load loop, the report. Needs only std, tokio, reqwest, serde_json and
/// anyhow.
pub mod harness {
    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context, Result};
    use serde_json::{json, Value};
    use tokio::io::{AsyncBufReadExt, BufReader};

    /// The peer's system token (any string: the peer compares it verbatim).
    pub const PEER_TOKEN: &str = "bench-peer-system-token-0123456789";
    /// Records in the `page20` hook's page.
    pub const PAGE: usize = 20;
    /// Longest wait for one call before it counts as a failure.
    const CALL_TIMEOUT: Duration = Duration::from_secs(30);

    pub struct Options {
        /// Measured calls per cell, at most.
        pub calls: usize,
        /// Measured time per cell, at most.
        pub cap: Duration,
        /// Calls before each cell's measurement, not counted.
        pub warmup: usize,
        pub concurrency: Vec<usize>,
        pub peer_only: bool,
        /// Rounds, each measuring every cell of Junction then of the peer;
        /// the table shows each cell's median round.
        pub rounds: usize,
        pub out: Option<PathBuf>,
    }

    impl Default for Options {
        fn default() -> Options {
            Options {
                calls: 5000,
                cap: Duration::from_secs(10),
                warmup: 200,
                rounds: 3,
                concurrency: vec![1, 16],
                peer_only: false,
                out: None,
            }
        }
    }

    pub fn parse_args(args: Vec<String>) -> Result<Options> {
        let mut o = Options::default();
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--calls" => o.calls = args.next().context("--calls N")?.parse()?,
                "--cap" => o.cap = Duration::from_secs_f64(args.next().context("--cap SECONDS")?.parse()?),
                "--warmup" => o.warmup = args.next().context("--warmup N")?.parse()?,
                "--concurrency" => {
                    o.concurrency = args
                        .next()
                        .context("--concurrency C[,C...]")?
                        .split(',')
                        .map(|c| c.trim().parse::<usize>())
                        .collect::<Result<_, _>>()?;
                }
                "--peer-only" => o.peer_only = true,
                "--rounds" => o.rounds = args.next().context("--rounds N")?.parse::<usize>()?.max(1),
                "--out" => o.out = Some(args.next().context("--out FILE")?.into()),
                other => bail!(
                    "usage: junction-bench stacks [--calls N] [--cap SECONDS] [--warmup N] \
                     [--concurrency C[,C...]] [--peer-only] [--rounds N] [--out FILE] (got {other})"
                ),
            }
        }
        if o.calls == 0 || o.concurrency.is_empty() || o.concurrency.contains(&0) {
            bail!("--calls and every --concurrency must be at least 1");
        }
        if o.cap.is_zero() || o.cap > Duration::from_secs(600) {
            bail!("--cap must be within (0, 600] seconds");
        }
        Ok(o)
    }

    /// Where calls go: the function URL and its bearer token.
    pub struct Target {
        pub name: &'static str,
        pub url: String,
        pub token: String,
    }

    /// A keep-alive client for loopback calls (no proxy).
    pub fn client(pool: usize) -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(pool.max(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .timeout(CALL_TIMEOUT)
            .build()?)
    }

    /// The 20 records of the `page20` call.
    pub fn page_records() -> Vec<Value> {
        (0..PAGE)
            .map(|i| {
                json!({
                    "id": format!("rec-{i:04}"),
                    "first_name": format!("First{i}"),
                    "last_name": format!("Last{i}"),
                    "email": format!("User{i}@Example.COM"),
                    "quantity": i + 1,
                    "unit_price_cents": 100 * i + 99,
                    "tags": ["bench", if i % 2 == 0 { "even" } else { "odd" }],
                    "created_at": "2024-01-01T00:00:00.000Z",
                })
            })
            .collect()
    }

    /// The hooks measured: name, request body, expected answer (what
    /// `bench/index.js` computes).
    pub fn hooks() -> Vec<(&'static str, Value, Value)> {
        let records = page_records();
        let mapped: Vec<Value> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                let tags: Vec<&str> = r["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()).collect();
                json!({
                    "id": s("id"),
                    "name": format!("{} {}", s("first_name"), s("last_name")),
                    "email": s("email").to_lowercase(),
                    "total_cents": r["quantity"].as_u64().unwrap_or_default() * r["unit_price_cents"].as_u64().unwrap_or_default(),
                    "tags": tags.join(","),
                    "line": i,
                })
            })
            .collect();
        vec![
            (
                "noop",
                json!({"diy": true, "type": "hook", "function": "noop", "options": {"data": [1, 2, 3]}}),
                json!(3),
            ),
            (
                "page20",
                json!({
                    "diy": true,
                    "type": "hook",
                    "function": "preSavePage",
                    "options": {
                        "data": records,
                        "errors": [],
                        "_importId": "5f0000000000000000000001",
                        "_flowId": "5f0000000000000000000002",
                        "_integrationId": "5f0000000000000000000003",
                    },
                }),
                json!({"data": mapped, "errors": []}),
            ),
        ]
    }

    /// One call: status, body, time.
    async fn call(http: &reqwest::Client, t: &Target, body: &Body) -> Result<(u16, Vec<u8>, Duration)> {
        let start = Instant::now();
        let resp = http
            .post(&t.url)
            .bearer_auth(&t.token)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        Ok((status, bytes.to_vec(), start.elapsed()))
    }

    /// A request body, shared by the clients (reqwest takes an owned body:
    /// one copy per call, the same for every target).
    type Body = Arc<Vec<u8>>;

    struct Cell {
        ok: usize,
        failed: usize,
        first_failure: Option<String>,
        latencies: Vec<Duration>,
        elapsed: Duration,
    }

    /// `limit` calls at most, within `cap`, from `concurrency` clients.
    async fn load(
        http: &reqwest::Client,
        t: &Arc<Target>,
        body: &Body,
        expected: &Arc<Vec<u8>>,
        concurrency: usize,
        limit: usize,
        cap: Duration,
    ) -> Result<Cell> {
        let issued = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let deadline = start + cap;
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (http, t, body, expected, issued) =
                (http.clone(), t.clone(), body.clone(), expected.clone(), issued.clone());
            tasks.push(tokio::spawn(async move {
                let mut cell =
                    Cell { ok: 0, failed: 0, first_failure: None, latencies: Vec::new(), elapsed: Duration::ZERO };
                while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < limit {
                    match call(&http, &t, &body).await {
                        Ok((200, got, took)) if got == *expected => {
                            cell.ok += 1;
                            cell.latencies.push(took);
                        }
                        Ok((status, got, _)) => {
                            cell.failed += 1;
                            cell.first_failure.get_or_insert_with(|| {
                                format!("{status} {}", String::from_utf8_lossy(&got[..got.len().min(300)]))
                            });
                        }
                        Err(e) => {
                            cell.failed += 1;
                            cell.first_failure.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                }
                cell
            }));
        }
        let mut all = Cell { ok: 0, failed: 0, first_failure: None, latencies: Vec::new(), elapsed: Duration::ZERO };
        for task in tasks {
            let c = task.await?;
            all.ok += c.ok;
            all.failed += c.failed;
            all.latencies.extend(c.latencies);
            if all.first_failure.is_none() {
                all.first_failure = c.first_failure;
            }
        }
        all.elapsed = start.elapsed();
        all.latencies.sort();
        Ok(all)
    }

    fn ms(sorted: &[Duration], p: f64) -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
    }

    /// Every hook × concurrency cell of one target.
    pub async fn measure_target(o: &Options, t: &Target) -> Result<Vec<Value>> {
        let max_c = o.concurrency.iter().copied().max().unwrap_or(1);
        let http = client(max_c)?;
        let target = Arc::new(Target { name: t.name, url: t.url.clone(), token: t.token.clone() });
        let mut results = Vec::new();
        for (hook, request, want) in hooks() {
            let body: Body = Arc::new(serde_json::to_vec(&request)?);
            // The first answer is checked for its value; later ones must
            // repeat it byte for byte.
            let (status, first, _) = call(&http, &target, &body).await.with_context(|| format!("{} {hook}", t.name))?;
            let got: Value = serde_json::from_slice(&first).unwrap_or(Value::Null);
            if status != 200 || got != want {
                bail!(
                    "{} {hook}: the first call answered {status} {}, expected 200 {want}",
                    t.name,
                    String::from_utf8_lossy(&first[..first.len().min(500)])
                );
            }
            let expected = Arc::new(first);
            for &c in &o.concurrency {
                let warm = load(&http, &target, &body, &expected, c, o.warmup, o.cap).await?;
                if warm.failed > 0 {
                    eprintln!(
                        "{} {hook} c={c}: {} failures in the warm-up, first: {}",
                        t.name,
                        warm.failed,
                        warm.first_failure.as_deref().unwrap_or("-")
                    );
                }
                let cell = load(&http, &target, &body, &expected, c, o.calls, o.cap).await?;
                if let Some(f) = &cell.first_failure {
                    eprintln!("{} {hook} c={c}: {} failures, first: {f}", t.name, cell.failed);
                }
                let secs = cell.elapsed.as_secs_f64();
                results.push(json!({
                    "target": t.name,
                    "hook": hook,
                    "concurrency": c,
                    "request_bytes": body.len(),
                    "response_bytes": expected.len(),
                    "ok": cell.ok,
                    "failed": cell.failed,
                    "seconds": secs,
                    "calls_per_second": if secs > 0.0 { cell.ok as f64 / secs } else { 0.0 },
                    "latency_ms_p50": ms(&cell.latencies, 0.5),
                    "latency_ms_p99": ms(&cell.latencies, 0.99),
                    "latency_ms_max": ms(&cell.latencies, 1.0),
                }));
            }
        }
        Ok(results)
    }

    /// `node peer-host.js` on a loopback port.
    pub struct Peer {
        pub target: Target,
        child: tokio::process::Child,
    }

    impl Peer {
        /// Starts the peer host over `fixtures/bench/index.js` (installing
        /// its node modules with `npm ci` first when missing).
        pub async fn start(fixtures: &Path) -> Result<Peer> {
            let mocha = fixtures.join("mocha");
            let peer_dir = mocha.join("peer");
            if !peer_dir.join("node_modules/integrator-extension/package.json").exists() {
                eprintln!("installing the peer host's node modules in {}", peer_dir.display());
                let status = tokio::process::Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund"])
                    .current_dir(&peer_dir)
                    .stdin(Stdio::null())
                    .status()
                    .await
                    .context("running npm ci for the peer host")?;
                if !status.success() {
                    bail!("npm ci in {} failed: {status}", peer_dir.display());
                }
            }
            let mut child = tokio::process::Command::new("node")
                .arg(mocha.join("peer-host.js"))
                .arg("0")
                .arg(fixtures.join("bench/index.js"))
                .arg(PEER_TOKEN)
                .env("NODE_ENV", "production")
                .env("PEER_HOST_EXIT_ON_STDIN_END", "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting node peer-host.js")?;
            let stdout = child.stdout.take().context("peer stdout")?;
            let mut lines = BufReader::new(stdout).lines();
            let port = tokio::time::timeout(Duration::from_secs(20), async {
                while let Some(line) = lines.next_line().await? {
                    if let Some(p) = line.strip_prefix("peer-host listening on 127.0.0.1:") {
                        return Ok::<u16, anyhow::Error>(p.trim().parse()?);
                    }
                }
                bail!("the peer host exited before listening")
            })
            .await
            .context("the peer host did not start within 20 s")??;
            // The library logs a line per call: keep reading, so the pipe
            // never fills.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            let target = Target {
                name: "peer",
                url: format!("http://127.0.0.1:{port}/function"),
                token: PEER_TOKEN.to_string(),
            };
            Ok(Peer { target, child })
        }

        pub async fn stop(mut self) {
            drop(self.child.stdin.take());
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        }
    }

    /// Each cell's median round (by calls/s), one row per target × hook ×
    /// clients.
    pub fn medians(results: &[Value]) -> Vec<Value> {
        let mut keys: Vec<(String, String, u64)> = Vec::new();
        for r in results {
            let key = (
                r["target"].as_str().unwrap_or_default().to_string(),
                r["hook"].as_str().unwrap_or_default().to_string(),
                r["concurrency"].as_u64().unwrap_or_default(),
            );
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys.into_iter()
            .filter_map(|(t, h, c)| {
                let mut rounds: Vec<&Value> = results
                    .iter()
                    .filter(|r| r["target"] == t.as_str() && r["hook"] == h.as_str() && r["concurrency"] == c)
                    .collect();
                rounds.sort_by(|a, b| {
                    a["calls_per_second"]
                        .as_f64()
                        .partial_cmp(&b["calls_per_second"].as_f64())
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                let mut median = (*rounds.get(rounds.len() / 2)?).clone();
                median["rounds_calls_per_second"] =
                    json!(rounds.iter().map(|r| r["calls_per_second"].clone()).collect::<Vec<_>>());
                median["ok"] = json!(rounds.iter().map(|r| r["ok"].as_u64().unwrap_or_default()).sum::<u64>());
                median["failed"] = json!(rounds.iter().map(|r| r["failed"].as_u64().unwrap_or_default()).sum::<u64>());
                Some(median)
            })
            .collect()
    }

    /// The median rounds; `ok`/`failed` count every round's calls.
    pub fn print_table(results: &[Value]) {
        println!(
            "{:<9} {:<7} {:>7} {:>8} {:>7} {:>10} {:>9} {:>9}   calls/s of each round",
            "target", "hook", "clients", "ok", "failed", "calls/s", "p50 ms", "p99 ms"
        );
        for r in medians(results) {
            let f = |k: &str| r[k].as_f64().unwrap_or_default();
            let each: Vec<String> = r["rounds_calls_per_second"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| format!("{:.0}", v.as_f64().unwrap_or_default()))
                .collect();
            println!(
                "{:<9} {:<7} {:>7} {:>8} {:>7} {:>10.0} {:>9.3} {:>9.3}   {}",
                r["target"].as_str().unwrap_or_default(),
                r["hook"].as_str().unwrap_or_default(),
                r["concurrency"].as_u64().unwrap_or_default(),
                r["ok"].as_u64().unwrap_or_default(),
                r["failed"].as_u64().unwrap_or_default(),
                f("calls_per_second"),
                f("latency_ms_p50"),
                f("latency_ms_p99"),
                each.join(" "),
            );
        }
    }

    /// Writes the report to `--out`, by default `target/bench/stacks.json`.
    pub fn write_json(o: &Options, results: &[Value]) -> Result<()> {
        let out = o.out.clone().unwrap_or_else(|| PathBuf::from("target/bench/stacks.json"));
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let report = json!({
            "benchmark": "stacks",
            "calls_per_cell": o.calls,
            "cap_seconds": o.cap.as_secs_f64(),
            "warmup_calls": o.warmup,
            "concurrency": o.concurrency,
            "peer_only": o.peer_only,
            "page_records": PAGE,
            "rounds": o.rounds,
            "medians": medians(results),
            "results": results,
            "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        });
        std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
        println!("wrote {}", out.display());
        Ok(())
    }
}
