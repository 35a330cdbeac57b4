//! `junction-bench engine`: applications end to end on each backend —
//! one-step latency through the HTTP API, queued-run throughput with one
//! and two worker slots, a 3-step chain's latency, a 40-step chain's
//! per-step overhead.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use junction_engine::{Engine, RunRequest, WorkerConfig};
use junction_runtime::{Runtime, RuntimeConfig};
use serde_json::{json, Value};

const NOOP: &str = "module.exports = { run: async () => 'ok' };";
const TOKEN: &str = "bench-admin-token-0123456789";

pub struct Options {
    pub runs: usize,
    pub latency_samples: usize,
}

struct Bench {
    engine: Engine,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _pg: Option<junction_testkit::PgSchema>,
}

impl Bench {
    async fn new(backend: &str, modules: std::path::PathBuf) -> Result<Bench> {
        let dir = tempfile::tempdir()?;
        let (store, _, pg) = crate::open_store(backend, dir.path()).await?;
        store.bootstrap_admin(Some(TOKEN)).await?;
        let mut config = RuntimeConfig::new(dir.path().join("runtime"));
        config.node_modules = Some(modules);
        config.max_uses = u32::MAX;
        let runtime = Runtime::start(config).await?;
        let engine = Engine::new(store, runtime);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server_engine = engine.clone();
        tokio::spawn(async move { junction_server::serve(listener, server_engine, std::future::pending()).await });
        let b = Bench { engine, base, http: reqwest::Client::new(), _dir: dir, _pg: pg };
        b.post("/api/v1/steps", json!({"name": "noop", "data": NOOP})).await?;
        let chain = |n: usize| {
            let steps: Vec<Value> = (0..n)
                .map(|i| {
                    let mut s = json!({"name": format!("s{i}"), "file": "noop"});
                    if i + 1 < n {
                        s["output_to"] = json!([format!("s{}", i + 1)]);
                    }
                    s
                })
                .collect();
            json!({"name": format!("chain{n}"), "steps": steps})
        };
        for n in [1, 3, 40] {
            b.post("/api/v1/applications", chain(n)).await?;
        }
        Ok(b)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let resp = self.http.post(format!("{}{path}", self.base)).bearer_auth(TOKEN).json(&body).send().await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!("{path}: {status} {v}");
        }
        Ok(v)
    }

    fn workers(&self, slots: usize) -> tokio::sync::oneshot::Sender<()> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut config = WorkerConfig::new(slots);
        config.poll = Duration::from_millis(50);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            engine
                .run_worker(config, async {
                    let _ = rx.await;
                })
                .await
        });
        tx
    }

    /// Latency of `POST /applications/{app}/run?wait=30` until SUCCESS.
    async fn latency(&self, app: &str, samples: usize) -> Result<Vec<Duration>> {
        let mut out = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = Instant::now();
            let v = self.post(&format!("/api/v1/applications/{app}/run?wait=30"), json!({})).await?;
            if v["state"] != "SUCCESS" {
                bail!("{app} did not succeed: {v}");
            }
            out.push(start.elapsed());
        }
        out.sort();
        Ok(out)
    }

    /// Enqueues `runs` runs with no worker, then measures how fast `slots`
    /// worker slots drain them.
    async fn throughput(&self, runs: usize, slots: usize) -> Result<f64> {
        let mut ids = Vec::with_capacity(runs);
        for _ in 0..runs {
            let r = self.engine.start_run("chain1", RunRequest::default()).await?;
            ids.push(r.id);
        }
        let start = Instant::now();
        let stop = self.workers(slots);
        let last = ids.last().cloned().unwrap_or_default();
        // Runs are claimed oldest first: when the last has ended, all have.
        let deadline = Duration::from_secs(600);
        let done = self.engine.wait_run(&last, deadline).await?;
        let elapsed = start.elapsed();
        let _ = stop.send(());
        if !done.state.is_final() {
            bail!("throughput: runs did not finish within {deadline:?}");
        }
        Ok(runs as f64 / elapsed.as_secs_f64())
    }
}

pub async fn run(options: &Options, modules: std::path::PathBuf) -> Result<Vec<Value>> {
    let mut results = Vec::new();
    for backend in ["sqlite", "postgres"] {
        eprintln!("engine benchmark on {backend} ...");
        let b = Bench::new(backend, modules.clone()).await?;
        let throughput_1 = b.throughput(options.runs, 1).await?;
        let throughput_2 = b.throughput(options.runs, 2).await?;
        let stop = b.workers(2);
        b.latency("chain1", 20).await?; // warm the runtime and the caches
        let one = b.latency("chain1", options.latency_samples).await?;
        let three = b.latency("chain3", options.latency_samples).await?;
        let forty = b.latency("chain40", 10).await?;
        let _ = stop.send(());
        let forty_median = forty[forty.len() / 2];
        results.push(json!({
            "backend": backend,
            "one_step_ms_p50": crate::percentile(&one, 0.5),
            "one_step_ms_p99": crate::percentile(&one, 0.99),
            "runs_per_second_1_slot": throughput_1,
            "runs_per_second_2_slots": throughput_2,
            "queued_runs": options.runs,
            "chain3_ms_p50": crate::percentile(&three, 0.5),
            "chain3_ms_p99": crate::percentile(&three, 0.99),
            "chain40_seconds_median": forty_median.as_secs_f64(),
            "chain40_per_step_ms": forty_median.as_secs_f64() * 1000.0 / 40.0,
        }));
    }
    Ok(results)
}
