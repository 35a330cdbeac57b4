//! Junction's benchmarks. Each prints a table and writes JSON; none asserts
//! on time.
//!
//! - `junction-bench runtime [--iterations N] [--out FILE]`: a no-op step in
//!   each runtime — cold (a new process), warm (p50/p99 over N runs),
//!   throughput with one and two concurrent executions.
//! - `junction-bench engine [--runs N] [--samples N] [--out FILE]`:
//!   applications end to end on SQLite and PostgreSQL (see `engine.rs`).
//! - `junction-bench scheduler [--schedules N] [--backend sqlite|postgres|both]
//!   [--same-instant] [--out FILE]`: firing lateness of N schedules due
//!   within one minute, or at one instant (see `scheduler.rs`).
//! - `junction-bench events [--total N] [--concurrency C[,C...]] [--cap SECONDS]
//!   [--backend sqlite|postgres|both] [--kind cicd|xds|both] [--users N]
//!   [--breakdown] [--out FILE]`: CI/CD job webhook and XDS activity message
//!   throughput and latency with C concurrent clients (default 64, at most
//!   N events of each kind, default 50,000, within 60 s each), checked
//!   durable (see `events.rs`).
//! - `junction-bench flows [--records N] [--cap SECONDS] [--scenario pg|http|all]
//!   [--breakdown] [--out FILE]`: record flows end to end over the HTTP API
//!   with the server defaults — PostgreSQL → mapping → PostgreSQL in pages
//!   of 1,000, and HTTP → three hooks → HTTP per record — checked record by
//!   record, with records/s and peak RSS (see `flows.rs`).

mod engine;
mod events;
mod flows;
mod scheduler;
mod stacks;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use junction_core::step::Language;
use junction_runtime::{ensure_node_modules, Execution, Runtime, RuntimeConfig, Script, Status};
use serde_json::{json, Value};

const NOOP_JS: &str = "module.exports = { run: async () => 'ok' };";
const NOOP_PY: &str = "from ipaascore.BaseStep import BaseStep\n\nclass Noop(BaseStep):\n    def __init__(self):\n        self.friendly_name = 'Noop'\n\n    def execute(self):\n        pass\n";

struct Options {
    command: String,
    iterations: usize,
    runs: usize,
    samples: usize,
    schedules: usize,
    backends: Vec<&'static str>,
    same_instant: bool,
    total: usize,
    concurrency: Vec<usize>,
    cap: u64,
    breakdown: bool,
    users: usize,
    kinds: Vec<&'static str>,
    out: Option<PathBuf>,
}

fn options() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let command = match args.next().as_deref() {
        Some(c @ ("runtime" | "engine" | "scheduler" | "events")) => c.to_string(),
        other => bail!(
            "usage: junction-bench runtime|engine|scheduler|events|flows [--iterations N] [--runs N] [--samples N] \
             [--schedules N] [--backend sqlite|postgres|both] [--same-instant] [--total N] \
             [--concurrency C[,C...]] [--cap SECONDS] [--kind cicd|xds|both] [--users N] [--breakdown] \
             [--out FILE] (got {other:?})"
        ),
    };
    let mut o = Options {
        command,
        iterations: 2000,
        runs: 10_000,
        samples: 200,
        schedules: 10_000,
        backends: vec!["sqlite", "postgres"],
        same_instant: false,
        total: 50_000,
        concurrency: vec![64],
        cap: 60,
        breakdown: false,
        users: events::USERS,
        kinds: vec!["cicd", "xds"],
        out: None,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" => o.iterations = args.next().context("--iterations N")?.parse()?,
            "--runs" => o.runs = args.next().context("--runs N")?.parse()?,
            "--samples" => o.samples = args.next().context("--samples N")?.parse()?,
            "--schedules" => o.schedules = args.next().context("--schedules N")?.parse()?,
            "--backend" => {
                o.backends = match args.next().as_deref() {
                    Some("sqlite") => vec!["sqlite"],
                    Some("postgres") => vec!["postgres"],
                    Some("both") => vec!["sqlite", "postgres"],
                    other => bail!("--backend sqlite|postgres|both (got {other:?})"),
                }
            }
            "--same-instant" => o.same_instant = true,
            "--total" => o.total = args.next().context("--total N")?.parse()?,
            "--concurrency" => {
                o.concurrency = args
                    .next()
                    .context("--concurrency C[,C...]")?
                    .split(',')
                    .map(|c| c.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?;
                if o.concurrency.contains(&0) {
                    bail!("--concurrency must be at least 1");
                }
            }
            "--cap" => o.cap = args.next().context("--cap SECONDS")?.parse()?,
            "--breakdown" => o.breakdown = true,
            "--users" => o.users = args.next().context("--users N")?.parse()?,
            "--kind" => {
                o.kinds = match args.next().as_deref() {
                    Some("cicd") => vec!["cicd"],
                    Some("xds") => vec!["xds"],
                    Some("both") => vec!["cicd", "xds"],
                    other => bail!("--kind cicd|xds|both (got {other:?})"),
                }
            }
            "--out" => o.out = Some(args.next().context("--out FILE")?.into()),
            other => bail!("unknown argument {other}"),
        }
    }
    if o.iterations < 10 {
        bail!("--iterations must be at least 10");
    }
    Ok(o)
}

/// The sealing key of every benchmark store (a store reopened elsewhere
/// must use the same one).
fn bench_sealer() -> junction_store::Sealer {
    junction_store::Sealer::from_key([3; 32])
}

/// A fresh store for `backend` ("sqlite" in `dir`, else a throwaway
/// PostgreSQL schema, kept alive by the returned handle), and where it is.
async fn open_store(
    backend: &str,
    dir: &std::path::Path,
) -> Result<(junction_store::Store, junction_store::Location, Option<junction_testkit::PgSchema>)> {
    let (location, pg) = match backend {
        "sqlite" => (junction_store::Location::in_data_dir(dir), None),
        _ => {
            let pg = junction_testkit::postgres().await;
            (junction_store::Location::Postgres(pg.url.clone()), Some(pg))
        }
    };
    let clock = std::sync::Arc::new(junction_core::SystemClock);
    let store = junction_store::Store::open(&location, bench_sealer(), clock).await?;
    Ok((store, location, pg))
}

/// Writes `report` (with the machine's core count added) to `--out`, by
/// default `target/bench/NAME.json`, and says where.
fn write_report(o: &Options, name: &str, mut report: Value) -> Result<()> {
    let out = o.out.clone().unwrap_or_else(|| PathBuf::from(format!("target/bench/{name}.json")));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    report["machine_cores"] = json!(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// The `p` quantile of sorted samples (nearest rank); None without samples.
fn quantile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize])
}

/// The `p` quantile of sorted durations, in ms (0 without samples).
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    quantile(sorted, p).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn once(runtime: &Runtime, execution: &Execution) -> Result<Duration> {
    let start = Instant::now();
    let outcome = runtime.execute(execution, &mut |_| {}, std::future::pending()).await?;
    if outcome.status != Status::Succeeded {
        bail!("the no-op step did not succeed: {outcome:?}");
    }
    Ok(start.elapsed())
}

async fn measure(runtime: &Runtime, language: Language, iterations: usize) -> Result<Value> {
    let (name, source, input) = match language {
        Language::Javascript => ("noop", NOOP_JS, json!({"args": {}})),
        Language::Python => ("Noop", NOOP_PY, json!({"step_name": "noop", "parameters": {}, "log_level": 20})),
    };
    let exec = Execution::new(Script::new(name, language, source), input);

    let mut cold = Vec::new();
    for _ in 0..5 {
        let mut fresh = exec.clone();
        fresh.fresh = true;
        cold.push(once(runtime, &fresh).await?);
    }
    cold.sort();

    once(runtime, &exec).await?;
    let mut warm = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        warm.push(once(runtime, &exec).await?);
    }
    warm.sort();

    let mut throughput = serde_json::Map::new();
    for workers in [1usize, 2] {
        let per_worker = iterations / workers;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (runtime, exec) = (runtime.clone(), exec.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_worker {
                    once(&runtime, &exec).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let rate = (per_worker * workers) as f64 / start.elapsed().as_secs_f64();
        throughput.insert(format!("workers_{workers}"), json!(rate));
    }
    Ok(json!({
        "language": language.as_str(),
        "cold_ms_median": percentile(&cold, 0.5),
        "warm_ms_p50": percentile(&warm, 0.5),
        "warm_ms_p99": percentile(&warm, 0.99),
        "warm_runs": iterations,
        "executions_per_second": throughput,
    }))
}

#[tokio::main]
async fn main() -> Result<()> {
    if std::env::args().nth(1).as_deref() == Some("stacks") {
        return stacks::main(std::env::args().skip(2).collect()).await;
    }
    if std::env::args().nth(1).as_deref() == Some("flows") {
        return flows::main(std::env::args().skip(2).collect()).await;
    }
    let o = options()?;
    if o.command == "engine" {
        return engine_main(&o).await;
    }
    if o.command == "scheduler" {
        return scheduler_main(&o).await;
    }
    if o.command == "events" {
        return events_main(&o).await;
    }
    let dir = tempfile::tempdir()?;
    let mut config = RuntimeConfig::new(dir.path().join("runtime"));
    config.spare = false; // cold means a new process, not a pre-started one
    config.max_uses = u32::MAX;
    let modules = PathBuf::from("target/tmp/junction-node-modules");
    config.node_modules = Some(ensure_node_modules(&config.npm, &modules, |m| eprintln!("{m}")).await?);
    let runtime = Runtime::start(config).await?;
    let mut results = Vec::new();
    for language in [Language::Javascript, Language::Python] {
        results.push(measure(&runtime, language, o.iterations).await?);
    }
    runtime.shutdown().await;

    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>14} {:>14}",
        "runtime", "cold ms", "warm p50", "warm p99", "exec/s 1 wkr", "exec/s 2 wkr"
    );
    for r in &results {
        println!(
            "{:<12} {:>10.2} {:>10.3} {:>10.3} {:>14.0} {:>14.0}",
            r["language"].as_str().unwrap_or_default(),
            r["cold_ms_median"].as_f64().unwrap_or_default(),
            r["warm_ms_p50"].as_f64().unwrap_or_default(),
            r["warm_ms_p99"].as_f64().unwrap_or_default(),
            r["executions_per_second"]["workers_1"].as_f64().unwrap_or_default(),
            r["executions_per_second"]["workers_2"].as_f64().unwrap_or_default(),
        );
    }
    write_report(&o, "runtime", json!({"benchmark": "runtime", "results": results}))?;
    Ok(())
}

async fn engine_main(o: &Options) -> Result<()> {
    let modules =
        ensure_node_modules(std::path::Path::new("npm"), &PathBuf::from("target/tmp/junction-node-modules"), |m| {
            eprintln!("{m}")
        })
        .await?;
    let results = engine::run(&engine::Options { runs: o.runs, latency_samples: o.samples }, modules).await?;
    println!(
        "{:<9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11}",
        "backend", "1step p50", "1step p99", "runs/s 1", "runs/s 2", "3step p50", "3step p99", "40step s", "ms/step"
    );
    for r in &results {
        let f = |k: &str| r[k].as_f64().unwrap_or_default();
        println!(
            "{:<9} {:>10.2} {:>10.2} {:>10.0} {:>10.0} {:>10.2} {:>10.2} {:>11.3} {:>11.2}",
            r["backend"].as_str().unwrap_or_default(),
            f("one_step_ms_p50"),
            f("one_step_ms_p99"),
            f("runs_per_second_1_slot"),
            f("runs_per_second_2_slots"),
            f("chain3_ms_p50"),
            f("chain3_ms_p99"),
            f("chain40_seconds_median"),
            f("chain40_per_step_ms"),
        );
    }
    write_report(o, "engine", json!({"benchmark": "engine", "results": results}))?;
    Ok(())
}

async fn scheduler_main(o: &Options) -> Result<()> {
    let options =
        scheduler::Options { schedules: o.schedules, backends: o.backends.clone(), same_instant: o.same_instant };
    let results = scheduler::run(&options).await?;
    println!(
        "{:<9} {:<13} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>10}",
        "backend", "due", "fired", "setup s", "p50 ms", "p99 ms", "max ms", "fires/s", "txns", "ms/tick*"
    );
    for r in &results {
        let f = |k: &str| r[k].as_f64().unwrap_or_default();
        let per_tick = r["fire_ms_per_tick_in_full_batches"].as_f64().map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "{:<9} {:<13} {:>7} {:>8.1} {:>8.0} {:>8.0} {:>8.0} {:>9.0} {:>7} {:>10}",
            r["backend"].as_str().unwrap_or_default(),
            if o.same_instant { "one instant" } else { "over 1 min" },
            r["fired"].as_u64().unwrap_or_default(),
            f("setup_seconds"),
            f("p50_ms"),
            f("p99_ms"),
            f("max_ms"),
            f("fires_per_second"),
            r["fire_transactions"].as_u64().unwrap_or_default(),
            per_tick,
        );
    }
    println!("(* firing cost per tick inside full batches of {}, when there were any)", scheduler_batch());
    println!("{:<9} {:>16} {:>16} {:>18}", "backend", "prep ms/tick", "due ms/page", "txn ms/tick (est)");
    for r in &results {
        let b = &r["breakdown"];
        let est = b["transaction_ms_per_tick_estimate"].as_f64().map_or("-".to_string(), |v| format!("{v:.3}"));
        println!(
            "{:<9} {:>16.3} {:>16.2} {:>18}",
            r["backend"].as_str().unwrap_or_default(),
            b["prepare_reads_ms_per_tick"].as_f64().unwrap_or_default(),
            b["due_query_ms_per_page"].as_f64().unwrap_or_default(),
            est,
        );
    }
    write_report(
        o,
        "scheduler",
        json!({
            "benchmark": "scheduler",
            "schedules": o.schedules,
            "same_instant": o.same_instant,
            "results": results,
        }),
    )?;
    Ok(())
}

async fn events_main(o: &Options) -> Result<()> {
    let options = events::Options {
        total: o.total,
        concurrency: o.concurrency.clone(),
        cap: Duration::from_secs(o.cap.max(1)),
        backends: o.backends.clone(),
        breakdown: o.breakdown,
        users: o.users.max(1),
        kinds: o.kinds.clone(),
    };
    let results = events::run(&options).await?;
    println!(
        "{:<9} {:<5} {:>7} {:>8} {:>8} {:>7} {:>10} {:>8} {:>8} {:>8} {:>13} {:>9}",
        "backend",
        "kind",
        "clients",
        "accepted",
        "errors",
        "secs",
        "events/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "batch avg/max",
        "durable"
    );
    for r in &results {
        let f = |k: &str| r[k].as_f64().unwrap_or_default();
        let g = &r["group_commit_batches"];
        let batch = g["mean"].as_f64().map_or("-".to_string(), |m| format!("{m:.1}/{}", g["max"]));
        println!(
            "{:<9} {:<5} {:>7} {:>8} {:>8} {:>7.1} {:>10.0} {:>8.2} {:>8.2} {:>8.1} {:>13} {:>9}",
            r["backend"].as_str().unwrap_or_default(),
            r["kind"].as_str().unwrap_or_default(),
            r["concurrency"].as_u64().unwrap_or_default(),
            r["accepted"].as_u64().unwrap_or_default(),
            r["errors"].as_u64().unwrap_or_default(),
            f("seconds"),
            f("events_per_second"),
            f("latency_ms_p50"),
            f("latency_ms_p99"),
            f("latency_ms_max"),
            batch,
            if r["durability"]["ok"] == true { "yes" } else { "NO" },
        );
    }
    println!(
        "{:<9} {:<5} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>12} {:>11}   (CPU us per accepted event)",
        "backend", "kind", "clients", "busy %", "machine", "client", "server", "sqlite", "writer %core", "other procs"
    );
    for r in &results {
        let c = &r["cpu"];
        let us = |g: &str| c[g]["cpu_us_per_event"].as_f64().map_or("-".to_string(), |v| format!("{v:.1}"));
        let writer =
            c["sqlite"]["busiest_thread_percent_of_a_core"].as_f64().map_or("-".to_string(), |v| format!("{v:.0}"));
        println!(
            "{:<9} {:<5} {:>7} {:>7.0} {:>9.1} {:>9} {:>9} {:>9} {:>12} {:>11.1}",
            r["backend"].as_str().unwrap_or_default(),
            r["kind"].as_str().unwrap_or_default(),
            r["concurrency"].as_u64().unwrap_or_default(),
            c["machine_busy_percent"].as_f64().unwrap_or_default(),
            c["machine_cpu_us_per_event"].as_f64().unwrap_or_default(),
            us("client"),
            us("server"),
            us("sqlite"),
            writer,
            c["outside_process_cpu_us_per_event"].as_f64().unwrap_or_default(),
        );
    }
    if o.breakdown && o.kinds.contains(&"cicd") {
        println!("CI/CD parts alone at the same concurrency (rate/s, and in-process CPU us per operation):");
        println!(
            "{:<9} {:>7} {:>16} {:>10} {:>16} {:>8} {:>8}   store insert us/job (median) by batch 1/8/64/512 (8/64 one user)",
            "backend", "clients", "healthz", "auth", "engine ingest", "json us", "valid us"
        );
        for r in results.iter().filter(|r| r["kind"] == "cicd") {
            let b = &r["breakdown"];
            let per = |k: &str| b[k]["per_second"].as_f64().unwrap_or_default();
            let cpu = |k: &str| b[k]["cpu"]["process_cpu_us_per_event"].as_f64().unwrap_or_default();
            let us = |users_one: bool| -> Vec<String> {
                b["store_batches"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|x| (x["users"] == 1) == users_one)
                    .map(|x| format!("{:.1}", x["median_us_per_job"].as_f64().unwrap_or_default()))
                    .collect()
            };
            println!(
                "{:<9} {:>7} {:>16} {:>10.0} {:>16} {:>8.2} {:>8.2}   {} ({})",
                r["backend"].as_str().unwrap_or_default(),
                r["concurrency"].as_u64().unwrap_or_default(),
                format!("{:.0} ({:.0})", per("http_healthz"), cpu("http_healthz")),
                per("store_authenticate"),
                format!("{:.0} ({:.0})", per("engine_ingest"), cpu("engine_ingest")),
                b["json_parse_us"].as_f64().unwrap_or_default(),
                b["validate_us"].as_f64().unwrap_or_default(),
                us(false).join(" / "),
                us(true).join(" / "),
            );
        }
    }
    write_report(
        o,
        "events",
        json!({
            "benchmark": "events",
            "total": o.total,
            "cap_seconds": o.cap,
            "kinds": o.kinds,
            "results": results,
        }),
    )?;
    Ok(())
}

fn scheduler_batch() -> usize {
    junction_engine::SchedulerConfig::default().batch
}
