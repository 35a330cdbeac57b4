//! `junction-bench events`: spec 002's CI/CD job webhook and spec 003's
//! XDS activity messages under load, on each backend.
//!
//! The real HTTP server runs in this process (no workers: nothing here
//! starts runs) over a fresh store. Setup goes through the store: one
//! company, one Custom CD service, one operator token of the company. Then
//! C clients (one keep-alive connection each) post valid jobs — job_id,
//! triggered_by (50 users), status, repo and start time vary — until N have
//! been sent or the time cap passes. Measured: accepted (201) events per
//! second and each request's latency. Client and server share this
//! machine's cores; the clients run on their own runtime's threads
//! (`bench-client`), so that the CPU time of each thread group — clients,
//! server (tokio), SQLite's connection threads — can be read from
//! `/proc/self/task` and told apart, with the machine's from `/proc/stat`
//! (what other processes used during a run shows there: PostgreSQL's
//! backends, or anything else running on the machine).
//!
//! Durability check: after the load the server is stopped and the store
//! closed, a new store is opened on the same database, and the company's
//! jobs are read back page by page: their number must equal the number of
//! 201 answers, and every id answered must be among them. A job's
//! `received_at` is its batch's commit instant, so the jobs per distinct
//! `received_at` millisecond show the group-commit batch sizes (an upper
//! bound: two batches committed in one millisecond count as one).
//!
//! With `--breakdown`, the parts of a request are measured alone at the
//! same concurrency, to say where the time goes: the HTTP stack alone
//! (`GET /healthz`), token authentication alone (`Store::authenticate`),
//! the engine alone (`Engine::ingest_cicd_job`: validation, directory,
//! group commit), validation alone (`CicdJob::parse`, one core), and the
//! store's batch insert by batch size (one writer, sequential), with 50
//! triggering users and with one (what resolving service users costs).
//!
//! "Durable" is the store's own setting: SQLite in WAL mode with
//! `synchronous=NORMAL` (a commit survives a crash of the process, not of
//! the machine); the throwaway PostgreSQL cluster of `junction-testkit`
//! runs with `fsync=off` (set `JUNCTION_TEST_DATABASE_URL` to measure a
//! real server).
//!
//! XDS (`--kind xds|both`): on a fresh store of the same backend, one XDS
//! source and one schema (`bench-build`, important field `stage`) are
//! created through the engine and a server-wide operator token through the
//! store; then the same C clients post activity messages to
//! `POST /api/1/activities` — `remote_id` cycles through 1,000 values, so
//! messages aggregate into 1,000 activities; `stage` changes every fifth
//! round, so about one message in five (and each activity's first) makes an
//! activity-stream entry; event times rise with the message — until N have
//! been sent or the time cap passes. Durability check, on a newly opened
//! store: the source's activities are read back page by page; the sum of
//! their `sub_event_count` and the number of their sub-events must equal
//! the number of 201 answers, every `sub_event_id` answered must be among
//! them, and there must be one activity per answer `created`.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use junction_core::cicd::CicdJob;
use junction_core::role::Role;
use junction_core::SystemClock;
use junction_engine::Engine;
use junction_runtime::{Runtime, RuntimeConfig};
use junction_store::{CicdJobFilter, Location, NewCicdJob, Store, XdsActivityFilter, XdsStreamFilter};
use serde_json::{json, Value};

const ADMIN: &str = "bench-admin-token-0123456789";
/// Triggering users (service users) by default.
pub const USERS: usize = 50;
/// Name of the clients' threads.
const CLIENT_THREADS: &str = "bench-client";
/// Requests sent before the measurement (stored and checked too).
const WARMUP_MIN: usize = 256;
/// Page size of the read-back (the API's largest).
const PAGE: i64 = 500;
/// Activities the XDS messages aggregate into (distinct `remote_id`s).
pub const XDS_ACTIVITIES: usize = 1000;
/// The XDS messages' schema.
const XDS_SCHEMA: &str = "bench-build";

pub struct Options {
    pub total: usize,
    pub concurrency: Vec<usize>,
    pub cap: Duration,
    pub backends: Vec<&'static str>,
    pub breakdown: bool,
    /// Distinct `triggered_by` values the jobs cycle through.
    pub users: usize,
    /// What is posted, in order: `cicd` (jobs), `xds` (activity messages).
    pub kinds: Vec<&'static str>,
}

/// A fresh store and the real server on it.
struct Setup {
    engine: Engine,
    store: Store,
    location: Location,
    base: String,
    company: i64,
    service: i64,
    token: String,
    shutdown: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    runtime: Runtime,
    /// Where the HTTP clients run: their own threads, so that their CPU
    /// time is told apart from the server's.
    client_rt: tokio::runtime::Handle,
    users: usize,
    _dir: tempfile::TempDir,
    _pg: Option<junction_testkit::PgSchema>,
}

impl Setup {
    async fn new(backend: &str, client_rt: tokio::runtime::Handle, users: usize) -> Result<Setup> {
        let dir = tempfile::tempdir()?;
        let (store, location, pg) = crate::open_store(backend, dir.path()).await?;
        store.bootstrap_admin(Some(ADMIN)).await?;
        // The engine needs runtimes; with no spare process and no run,
        // none is started.
        let mut config = RuntimeConfig::new(dir.path().join("runtime"));
        config.spare = false;
        let runtime = Runtime::start(config).await?;
        let engine = Engine::new(store.clone(), runtime.clone());
        let company = store.create_company("bench company").await?.id;
        let service = store.create_cicd_service(company, "bench deployer").await?.id;
        let (_, secret) = store.create_company_token("bench agent", Role::Operator, Some(company)).await?;
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
        Ok(Setup {
            engine,
            store,
            location,
            base,
            company,
            service,
            token: secret.expose().to_string(),
            shutdown,
            server,
            runtime,
            client_rt,
            users,
            _dir: dir,
            _pg: pg,
        })
    }

    /// Stops the server and closes the store; returns what is needed to
    /// reopen it.
    async fn stop(self) -> Result<(Location, tempfile::TempDir, Option<junction_testkit::PgSchema>)> {
        let _ = self.shutdown.send(());
        self.server.await??;
        drop(self.engine);
        self.runtime.shutdown().await;
        self.store.close().await;
        Ok((self.location, self._dir, self._pg))
    }
}

/// CPU time: the machine's (from `/proc/stat`) and this process's per
/// thread (from `/proc/self/task`), to say which part was busy.
#[derive(Default)]
struct Cpu {
    machine_busy: u64,
    machine_total: u64,
    /// Thread id → (name, nanoseconds on a CPU).
    threads: BTreeMap<String, (String, u64)>,
}

fn cpu_snapshot() -> Cpu {
    let mut cpu = Cpu::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        let ticks: Vec<u64> =
            stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal (guest is in user)
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or_default() + ticks.get(4).copied().unwrap_or_default();
        cpu.machine_total = total;
        cpu.machine_busy = total.saturating_sub(idle);
    }
    for entry in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let dir = entry.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or_default();
        cpu.threads.insert(entry.file_name().to_string_lossy().into_owned(), (name, ns));
    }
    cpu
}

/// Where the CPU went between two snapshots, per event accepted.
fn cpu_report(before: &Cpu, after: &Cpu, elapsed: Duration, events: usize) -> Value {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let secs = elapsed.as_secs_f64();
    let total = after.machine_total.saturating_sub(before.machine_total).max(1) as f64;
    let busy = after.machine_busy.saturating_sub(before.machine_busy) as f64 / total;
    let per_event = |seconds: f64| seconds * 1e6 / events.max(1) as f64;
    let mut groups: BTreeMap<&str, (f64, f64)> = BTreeMap::new(); // group → (seconds, busiest thread)
    for (tid, (name, ns)) in &after.threads {
        let was = before.threads.get(tid).map_or(0, |(_, ns)| *ns);
        let seconds = ns.saturating_sub(was) as f64 / 1e9;
        let group = if name.starts_with(CLIENT_THREADS) {
            "client"
        } else if name.starts_with("tokio") {
            "server"
        } else if name.starts_with("sqlx-sqlite") {
            "sqlite"
        } else {
            "other"
        };
        let g = groups.entry(group).or_default();
        g.0 += seconds;
        g.1 = g.1.max(seconds);
    }
    let process: f64 = groups.values().map(|g| g.0).sum();
    let mut out = json!({
        "machine_busy_percent": busy * 100.0,
        "machine_cpu_us_per_event": per_event(busy * cores * secs),
        "process_cpu_us_per_event": per_event(process),
        "outside_process_cpu_us_per_event": per_event((busy * cores * secs - process).max(0.0)),
    });
    for (group, (seconds, busiest)) in groups {
        out[group] = json!({
            "cpu_us_per_event": per_event(seconds),
            "cores_used": seconds / secs,
            "busiest_thread_percent_of_a_core": busiest / secs * 100.0,
        });
    }
    out
}

/// The body of the `i`-th job: valid, with varying fields.
fn payload(i: usize, service: i64, users: usize) -> String {
    let status = match i % 10 {
        0..=6 => "Succeeded",
        7 | 8 => "Failed",
        _ => "On Hold",
    };
    let sha = format!("{:040x}", (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
    format!(
        r#"{{"job_id":"bench-{i}","status":"{status}","commit_sha":"{sha}","triggered_by":"user{u}@example.com","repo_name":"repo-{r}","service_id":{service},"job_start_time":{t},"job_duration":{d},"job_type":"Production Deploy","optional":[{{"key":"microservice","value":["frontend","backend"],"type":"string"}},{{"key":"lead_time","value":20,"type":"duration"}}]}}"#,
        u = i % users.max(1),
        r = i % 7,
        t = 1_704_000_000 + i,
        d = 30 + i % 600,
    )
}

/// What one operation ended with.
enum Outcome {
    /// Accepted; the item id when there is one.
    Ok(Option<i64>),
    /// An accepted XDS message: its sub-event, whether it created its
    /// activity and whether it made an activity-stream entry.
    Xds {
        sub_event: i64,
        created: bool,
        streamed: bool,
    },
    Err(String),
}

#[derive(Default)]
struct Drive {
    ok: usize,
    errors: usize,
    first_error: Option<String>,
    ids: Vec<i64>,
    /// XDS: answers `created` (a new activity) and with a stream entry.
    created: usize,
    streamed: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Drive {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn ms(&self, p: f64) -> f64 {
        crate::percentile(&self.latencies, p)
    }

    /// The figures every report row has, for `total` planned posts.
    fn report(&self, kind: &str, backend: &str, concurrency: usize, total: usize, cpu: Value) -> Value {
        json!({
            "kind": kind,
            "backend": backend,
            "concurrency": concurrency,
            "sent": self.ok + self.errors,
            "accepted": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "seconds": self.elapsed.as_secs_f64(),
            "capped": self.ok + self.errors < total,
            "events_per_second": self.rate(),
            "latency_ms_p50": self.ms(0.5),
            "latency_ms_p99": self.ms(0.99),
            "latency_ms_max": self.ms(1.0),
            "cpu": cpu,
        })
    }
}

/// Runs `op(task, i)` for i in `first..first + total` on `concurrency`
/// tasks of `rt`, each taking the next i when its last operation ends, until all
/// are done or `cap` has passed.
async fn drive<F, Fut>(
    rt: &tokio::runtime::Handle,
    concurrency: usize,
    first: usize,
    total: usize,
    cap: Duration,
    op: F,
) -> Drive
where
    F: Fn(usize, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(first));
    let end = first + total;
    let merged = Arc::new(Mutex::new(Drive::default()));
    let start = Instant::now();
    let deadline = start + cap;
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let (next, merged, op) = (next.clone(), merged.clone(), op.clone());
        tasks.push(rt.spawn(async move {
            let mut mine = Drive::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                match op(task, i).await {
                    Outcome::Ok(id) => {
                        mine.ok += 1;
                        mine.latencies.push(t.elapsed());
                        mine.ids.extend(id);
                    }
                    Outcome::Xds { sub_event, created, streamed } => {
                        mine.ok += 1;
                        mine.latencies.push(t.elapsed());
                        mine.ids.push(sub_event);
                        mine.created += usize::from(created);
                        mine.streamed += usize::from(streamed);
                    }
                    Outcome::Err(e) => {
                        mine.errors += 1;
                        mine.first_error.get_or_insert(e);
                    }
                }
            }
            let mut all = merged.lock().unwrap();
            all.ok += mine.ok;
            all.errors += mine.errors;
            if all.first_error.is_none() {
                all.first_error = mine.first_error;
            }
            all.ids.extend(mine.ids);
            all.created += mine.created;
            all.streamed += mine.streamed;
            all.latencies.extend(mine.latencies);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let mut out = std::mem::take(&mut *merged.lock().unwrap());
    out.elapsed = elapsed;
    out.latencies.sort();
    out
}

/// One keep-alive connection per client task.
fn clients(n: usize) -> Result<Arc<Vec<reqwest::Client>>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(reqwest::Client::builder().pool_max_idle_per_host(1).tcp_nodelay(true).build()?);
    }
    Ok(Arc::new(out))
}

/// The item id at the start of an accepted job's answer (`{"id":N,...`),
/// without parsing the whole answer.
fn leading_id(body: &[u8]) -> Option<i64> {
    let rest = body.strip_prefix(b"{\"id\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Posts jobs `first..first + total` to the webhook.
async fn post_jobs(s: &Setup, concurrency: usize, first: usize, total: usize, cap: Duration) -> Result<Drive> {
    let http = clients(concurrency)?;
    let url = Arc::new(format!("{}/webhook/company/{}/cicd_job", s.base, s.company));
    let auth = Arc::new(format!("Bearer {}", s.token));
    let (service, users) = (s.service, s.users);
    Ok(drive(&s.client_rt, concurrency, first, total, cap, move |task, i| {
        let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
        async move {
            let sent = http[task]
                .post(url.as_str())
                .header("authorization", auth.as_str())
                .header("content-type", "application/json")
                .body(payload(i, service, users))
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => return Outcome::Err(format!("request: {e}")),
            };
            let status = resp.status();
            match resp.bytes().await {
                Ok(body) if status == reqwest::StatusCode::CREATED => Outcome::Ok(leading_id(&body)),
                Ok(body) => Outcome::Err(format!("{status}: {}", String::from_utf8_lossy(&body))),
                Err(e) => Outcome::Err(format!("reading the answer: {e}")),
            }
        }
    })
    .await)
}

/// `GET /healthz` at the same concurrency: the HTTP stack and the client
/// alone.
async fn healthz(s: &Setup, concurrency: usize, total: usize, cap: Duration) -> Result<Drive> {
    let http = clients(concurrency)?;
    let url = Arc::new(format!("{}/healthz", s.base));
    Ok(drive(&s.client_rt, concurrency, 0, total, cap, move |task, _| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            match http[task].get(url.as_str()).send().await {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(_) => Outcome::Ok(None),
                    Err(e) => Outcome::Err(e.to_string()),
                },
                Ok(r) => Outcome::Err(r.status().to_string()),
                Err(e) => Outcome::Err(e.to_string()),
            }
        }
    })
    .await)
}

/// `Store::authenticate` alone, at the same concurrency.
async fn authenticate(s: &Setup, concurrency: usize, total: usize, cap: Duration) -> Drive {
    let (store, token) = (s.store.clone(), Arc::new(s.token.clone()));
    drive(&tokio::runtime::Handle::current(), concurrency, 0, total, cap, move |_, _| {
        let (store, token) = (store.clone(), token.clone());
        async move {
            match store.authenticate(&token).await {
                Ok(Some(_)) => Outcome::Ok(None),
                Ok(None) => Outcome::Err("token not found".into()),
                Err(e) => Outcome::Err(e.to_string()),
            }
        }
    })
    .await
}

/// `Engine::ingest_cicd_job` alone (parse of the body included, as the
/// server does it), at the same concurrency.
async fn ingest(s: &Setup, concurrency: usize, first: usize, total: usize, cap: Duration) -> Drive {
    let (engine, company, service, users) = (s.engine.clone(), s.company, s.service, s.users);
    drive(&tokio::runtime::Handle::current(), concurrency, first, total, cap, move |_, i| {
        let engine = engine.clone();
        async move {
            let body: Value = match serde_json::from_str(&payload(i, service, users)) {
                Ok(v) => v,
                Err(e) => return Outcome::Err(e.to_string()),
            };
            match engine.ingest_cicd_job(company, &body).await {
                Ok((item, _)) => Outcome::Ok(Some(item.id)),
                Err(e) => Outcome::Err(e.to_string()),
            }
        }
    })
    .await
}

/// Microseconds per `serde_json` parse + `CicdJob::parse` of a body, on
/// one core.
fn validation_us(service: i64) -> Result<(f64, f64)> {
    let bodies: Vec<String> = (0..20_000).map(|i| payload(i, service, USERS)).collect();
    let start = Instant::now();
    let values: Vec<Value> = bodies.iter().map(|b| serde_json::from_str(b)).collect::<Result<_, _>>()?;
    let parse = start.elapsed().as_secs_f64() * 1e6 / bodies.len() as f64;
    let start = Instant::now();
    for v in &values {
        CicdJob::parse(v).map_err(|e| anyhow::anyhow!("invalid bench payload: {e:?}"))?;
    }
    let validate = start.elapsed().as_secs_f64() * 1e6 / values.len() as f64;
    Ok((parse, validate))
}

/// The store's batch insert alone: milliseconds per transaction and
/// microseconds per job, by batch size (sequential, as the one writer
/// does it).
async fn store_batches(s: &Setup, first: usize) -> Result<(Vec<Value>, usize)> {
    let mut out = Vec::new();
    let mut i = first;
    // The same batch sizes with every job from one user: what resolving
    // each batch's distinct service users costs.
    let cases = [(1usize, USERS), (8, USERS), (64, USERS), (512, USERS), (8, 1), (64, 1)];
    for (size, users) in cases {
        let rounds = (4096 / size).clamp(16, 512);
        let mut spent = Duration::ZERO;
        let mut each = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let batch: Vec<NewCicdJob> = (i..i + size)
                .map(|k| {
                    let body: Value = serde_json::from_str(&payload(k, s.service, USERS)).expect("valid JSON");
                    let mut job = CicdJob::parse(&body).expect("a valid job");
                    if users == 1 {
                        job.triggered_by = "user0@example.com".into();
                    }
                    NewCicdJob { company_id: s.company, job, runs: Vec::new() }
                })
                .collect();
            i += size;
            let t = Instant::now();
            s.store.insert_cicd_jobs(&batch).await?;
            each.push(t.elapsed());
            spent += t.elapsed();
        }
        each.sort();
        let per_tx = spent.as_secs_f64() * 1000.0 / rounds as f64;
        let median_ms = each[each.len() / 2].as_secs_f64() * 1000.0;
        out.push(json!({
            "batch": size,
            "users": users,
            "transactions": rounds,
            "ms_per_transaction": per_tx,
            "us_per_job": per_tx * 1000.0 / size as f64,
            "median_ms_per_transaction": median_ms,
            "median_us_per_job": median_ms * 1000.0 / size as f64,
            "jobs_per_second": (rounds * size) as f64 / spent.as_secs_f64(),
        }));
    }
    Ok((out, i - first))
}

/// Reads back every job of the company from a newly opened store: item
/// id → `received_at` (milliseconds).
async fn read_back(location: &Location, company: i64) -> Result<Vec<(i64, i64)>> {
    let store = Store::open(location, crate::bench_sealer(), Arc::new(SystemClock)).await?;
    let mut jobs = Vec::new();
    let mut offset = 0;
    loop {
        let page = store.list_cicd_jobs(company, &CicdJobFilter::default(), PAGE, offset).await?;
        jobs.extend(page.iter().map(|job| (job.id, job.received_at.as_millisecond())));
        if (page.len() as i64) < PAGE {
            break;
        }
        offset += PAGE;
    }
    store.close().await;
    Ok(jobs)
}

/// Batch sizes seen (jobs per commit millisecond): count, mean, p50, p99,
/// max.
fn batch_sizes(per_commit: &BTreeMap<i64, usize>) -> Value {
    let mut sizes: Vec<usize> = per_commit.values().copied().collect();
    sizes.sort_unstable();
    if sizes.is_empty() {
        return json!(null);
    }
    let at = |p: f64| crate::quantile(&sizes, p);
    json!({
        "commits": sizes.len(),
        "mean": sizes.iter().sum::<usize>() as f64 / sizes.len() as f64,
        "p50": at(0.5),
        "p99": at(0.99),
        "max": sizes[sizes.len() - 1],
    })
}

async fn one(backend: &str, concurrency: usize, o: &Options, clients: tokio::runtime::Handle) -> Result<Value> {
    eprintln!("events benchmark on {backend}, {concurrency} clients ...");
    let s = Setup::new(backend, clients, o.users).await?;
    let warmup = (2 * concurrency).max(WARMUP_MIN);
    let warm = post_jobs(&s, concurrency, 0, warmup, o.cap).await?;
    if warm.errors > 0 {
        bail!("warm-up: {} errors, first: {}", warm.errors, warm.first_error.unwrap_or_default());
    }
    let before = cpu_snapshot();
    let main = post_jobs(&s, concurrency, warmup, o.total, o.cap).await?;
    let cpu = cpu_report(&before, &cpu_snapshot(), main.elapsed, main.ok);
    let mut next = warmup + o.total;
    let mut report = main.report("cicd", backend, concurrency, o.total, cpu);
    report["users"] = json!(o.users);
    // Every job the store must hold (201 answers, then the breakdown's own
    // writes) and the item ids answered.
    let mut answered: Vec<i64> = warm.ids.iter().chain(&main.ids).copied().collect();
    let mut accepted = warm.ok + main.ok;
    if answered.len() != accepted {
        bail!("{} answers of 201 carried no item id", accepted - answered.len());
    }
    if o.breakdown {
        let cap = o.cap.min(Duration::from_secs(20));
        let n = o.total.min(20_000);
        let before = cpu_snapshot();
        let h = healthz(&s, concurrency, n, cap).await?;
        let h_cpu = cpu_report(&before, &cpu_snapshot(), h.elapsed, h.ok);
        let a = authenticate(&s, concurrency, n, cap).await;
        let before = cpu_snapshot();
        let e = ingest(&s, concurrency, next, n, cap).await;
        let e_cpu = cpu_report(&before, &cpu_snapshot(), e.elapsed, e.ok);
        next += n;
        accepted += e.ok;
        answered.extend(&e.ids);
        let (parse_us, validate_us) = validation_us(s.service)?;
        let (batches, stored) = store_batches(&s, next).await?;
        accepted += stored;
        let parts = [("http_healthz", &h), ("store_authenticate", &a), ("engine_ingest", &e)];
        for (name, d) in parts {
            if d.errors > 0 {
                bail!("{name}: {} errors, first: {}", d.errors, d.first_error.clone().unwrap_or_default());
            }
        }
        report["breakdown"] = json!({
            "http_healthz": {"per_second": h.rate(), "ms_p50": h.ms(0.5), "ms_p99": h.ms(0.99), "cpu": h_cpu},
            "store_authenticate": {"per_second": a.rate(), "ms_p50": a.ms(0.5), "ms_p99": a.ms(0.99)},
            "engine_ingest": {"per_second": e.rate(), "ms_p50": e.ms(0.5), "ms_p99": e.ms(0.99), "cpu": e_cpu},
            "json_parse_us": parse_us,
            "validate_us": validate_us,
            "store_batches": batches,
        });
    }
    let company = s.company;
    let (location, _dir, _pg) = s.stop().await?;
    let stored = read_back(&location, company).await.context("reading the jobs back")?;
    let stored_set: HashSet<i64> = stored.iter().map(|(id, _)| *id).collect();
    let missing = answered.iter().filter(|id| !stored_set.contains(id)).count();
    let ids_answered = answered.len();
    answered.sort_unstable();
    answered.dedup();
    let duplicated = ids_answered - answered.len();
    report["durability"] = json!({
        "accepted": accepted,
        "stored": stored.len(),
        "distinct_stored": stored_set.len(),
        "answered_ids_missing": missing,
        "answered_ids_duplicated": duplicated,
        "ok": stored.len() == accepted && stored_set.len() == stored.len() && missing == 0 && duplicated == 0,
    });
    // The measured jobs' commit instants: the server's batches under this
    // load.
    let measured: HashSet<i64> = main.ids.iter().copied().collect();
    let mut per_commit = BTreeMap::<i64, usize>::new();
    for (_, at) in stored.iter().filter(|(id, _)| measured.contains(id)) {
        *per_commit.entry(*at).or_default() += 1;
    }
    report["group_commit_batches"] = batch_sizes(&per_commit);
    if report["durability"]["ok"] != true {
        bail!("durability check failed: {}", report["durability"]);
    }
    Ok(report)
}

/// The XDS schema registration: the four mandatory fields, three stock
/// ones and three custom ones; `stage` is important.
fn xds_schema(key: &str) -> Value {
    json!({"api_version": "1", "source_association_key": key, "custom_schema": {
        "name": "Bench builds", "schema_id": XDS_SCHEMA, "schema_version": 1,
        "event_time": "2024-01-01T00:00:00Z",
        "fields": ["schema_id", "schema_version", "event_time", "remote_id",
                   "summary", "status_name", "status_type", "stage", "build", "environment"],
        "required": ["schema_id", "schema_version", "event_time", "remote_id"],
        "important": ["stage"]}})
}

/// The `i`-th activity message: activity `i % XDS_ACTIVITIES`, its stage
/// changing every fifth round, event time `i` seconds after 2024-01-01
/// (wrapping after 28 days).
fn xds_payload(i: usize, key: &str) -> String {
    let (status_name, status_type) = match i % 10 {
        0..=6 => ("Succeeded", "success"),
        7 | 8 => ("Failed", "fail"),
        _ => ("Running", "open"),
    };
    let t = i % (28 * 86_400);
    format!(
        r#"{{"api_version":"1","source_association_key":"{key}","custom_data":{{"schema_id":"{XDS_SCHEMA}","schema_version":1,"event_time":"2024-01-{day:02}T{h:02}:{m:02}:{sec:02}Z","remote_id":"build-{r}","summary":"Build {i} of pipeline {r}","status_name":"{status_name}","status_type":"{status_type}","stage":"stage-{stage}","build":{i},"environment":"env-{e}"}}}}"#,
        day = 1 + t / 86_400,
        h = t / 3600 % 24,
        m = t / 60 % 60,
        sec = t % 60,
        r = i % XDS_ACTIVITIES,
        stage = i / (5 * XDS_ACTIVITIES),
        e = i % 3,
    )
}

/// Posts activity messages `first..first + total` with `token`.
async fn post_activities(
    s: &Setup,
    key: &str,
    token: &str,
    concurrency: usize,
    first: usize,
    total: usize,
    cap: Duration,
) -> Result<Drive> {
    let http = clients(concurrency)?;
    let url = Arc::new(format!("{}/api/1/activities", s.base));
    let auth = Arc::new(format!("Bearer {token}"));
    let key: Arc<str> = key.into();
    Ok(drive(&s.client_rt, concurrency, first, total, cap, move |task, i| {
        let (http, url, auth, key) = (http.clone(), url.clone(), auth.clone(), key.clone());
        async move {
            let sent = http[task]
                .post(url.as_str())
                .header("authorization", auth.as_str())
                .header("content-type", "application/json")
                .body(xds_payload(i, &key))
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => return Outcome::Err(format!("request: {e}")),
            };
            let status = resp.status();
            let body = match resp.bytes().await {
                Ok(body) => body,
                Err(e) => return Outcome::Err(format!("reading the answer: {e}")),
            };
            if status != reqwest::StatusCode::CREATED {
                return Outcome::Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            let ack: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return Outcome::Err(format!("answer is not JSON: {e}")),
            };
            match ack["sub_event_id"].as_i64() {
                Some(sub_event) => Outcome::Xds {
                    sub_event,
                    created: ack["status"] == "created",
                    streamed: !ack["stream_entry_id"].is_null(),
                },
                None => Outcome::Err(format!("201 without a sub_event_id: {ack}")),
            }
        }
    })
    .await)
}

/// What a newly opened store holds of an XDS source.
struct XdsStored {
    activities: usize,
    /// Sum of the activities' `sub_event_count`.
    counted: i64,
    /// Sub-event id → `received_at` (milliseconds).
    sub_events: Vec<(i64, i64)>,
    stream_entries: usize,
}

async fn read_back_xds(location: &Location, source: i64) -> Result<XdsStored> {
    let store = Store::open(location, crate::bench_sealer(), Arc::new(SystemClock)).await?;
    let mut out = XdsStored { activities: 0, counted: 0, sub_events: Vec::new(), stream_entries: 0 };
    let filter = XdsActivityFilter { source_id: Some(source), ..XdsActivityFilter::default() };
    let mut offset = 0;
    loop {
        let page = store.list_xds_activities(&filter, PAGE, offset).await?;
        for a in &page {
            out.activities += 1;
            out.counted += a.sub_event_count;
            out.sub_events.extend(a.sub_events.iter().map(|e| (e.id, e.received_at.as_millisecond())));
        }
        if (page.len() as i64) < PAGE {
            break;
        }
        offset += PAGE;
    }
    let filter = XdsStreamFilter { source_id: Some(source), ..XdsStreamFilter::default() };
    let mut offset = 0;
    loop {
        let page = store.list_xds_stream(&filter, PAGE, offset).await?;
        out.stream_entries += page.len();
        if (page.len() as i64) < PAGE {
            break;
        }
        offset += PAGE;
    }
    store.close().await;
    Ok(out)
}

/// The XDS part: one source and schema, then activity messages from
/// `concurrency` clients; checked durable.
async fn one_xds(backend: &str, concurrency: usize, o: &Options, clients: tokio::runtime::Handle) -> Result<Value> {
    eprintln!("XDS activities benchmark on {backend}, {concurrency} clients ...");
    let s = Setup::new(backend, clients, o.users).await?;
    let source = s.engine.create_xds_source("bench builds").await?;
    let key = source.source_association_key.clone();
    let schema = xds_schema(&key);
    let raw = serde_json::to_vec(&schema)?;
    let registration = s.engine.register_xds_schema(&schema, &raw).await?;
    if registration.status != "created" {
        bail!("schema registration: {}", registration.status);
    }
    // `/api/1/...` wants a server-wide token of the operator role at least.
    let (_, secret) = s.store.create_token("bench xds sender", Role::Operator).await?;
    let token = secret.expose().to_string();
    let warmup = (2 * concurrency).max(WARMUP_MIN);
    let warm = post_activities(&s, &key, &token, concurrency, 0, warmup, o.cap).await?;
    if warm.errors > 0 {
        bail!("warm-up: {} errors, first: {}", warm.errors, warm.first_error.unwrap_or_default());
    }
    let before = cpu_snapshot();
    let main = post_activities(&s, &key, &token, concurrency, warmup, o.total, o.cap).await?;
    let cpu = cpu_report(&before, &cpu_snapshot(), main.elapsed, main.ok);
    let mut report = main.report("xds", backend, concurrency, o.total, cpu);
    report["activities"] = json!(XDS_ACTIVITIES);
    report["answers_created"] = json!(main.created);
    report["answers_with_stream_entry"] = json!(main.streamed);
    let accepted = warm.ok + main.ok;
    let created = warm.created + main.created;
    let streamed = warm.streamed + main.streamed;
    let mut answered: Vec<i64> = warm.ids.iter().chain(&main.ids).copied().collect();
    let (location, _dir, _pg) = s.stop().await?;
    let stored = read_back_xds(&location, source.id).await.context("reading the activities back")?;
    let stored_set: HashSet<i64> = stored.sub_events.iter().map(|(id, _)| *id).collect();
    let missing = answered.iter().filter(|id| !stored_set.contains(id)).count();
    let ids_answered = answered.len();
    answered.sort_unstable();
    answered.dedup();
    let duplicated = ids_answered - answered.len();
    report["durability"] = json!({
        "accepted": accepted,
        "stored_sub_events": stored.counted,
        "listed_sub_events": stored.sub_events.len(),
        "distinct_stored": stored_set.len(),
        "answered_ids_missing": missing,
        "answered_ids_duplicated": duplicated,
        "activities": stored.activities,
        "answers_created": created,
        "stream_entries": stored.stream_entries,
        "answers_with_stream_entry": streamed,
        "ok": stored.counted == accepted as i64
            && stored.sub_events.len() == accepted
            && stored_set.len() == accepted
            && missing == 0
            && duplicated == 0
            && stored.activities == created
            && stored.stream_entries == streamed,
    });
    let measured: HashSet<i64> = main.ids.iter().copied().collect();
    let mut per_commit = BTreeMap::<i64, usize>::new();
    for (_, at) in stored.sub_events.iter().filter(|(id, _)| measured.contains(id)) {
        *per_commit.entry(*at).or_default() += 1;
    }
    report["group_commit_batches"] = batch_sizes(&per_commit);
    if report["durability"]["ok"] != true {
        bail!("XDS durability check failed: {}", report["durability"]);
    }
    Ok(report)
}

pub async fn run(o: &Options) -> Result<Vec<Value>> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    let mut failed = None;
    'all: for backend in &o.backends {
        for &c in &o.concurrency {
            for &kind in &o.kinds {
                let handle = clients.handle().clone();
                let done = match kind {
                    "xds" => one_xds(backend, c, o, handle).await,
                    _ => one(backend, c, o, handle).await,
                };
                match done {
                    Ok(r) => results.push(r),
                    Err(e) => {
                        failed = Some(e.context(format!("{kind} on {backend}, {c} clients")));
                        break 'all;
                    }
                }
            }
        }
    }
    // A runtime may not be dropped inside another one.
    clients.shutdown_background();
    match failed {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_valid_jobs() {
        for i in [0, 1, 9, 49, 50, 12_345, 49_999] {
            let v: Value = serde_json::from_str(&payload(i, 3, USERS)).unwrap();
            let job = CicdJob::parse(&v).unwrap();
            assert_eq!(job.job_id, format!("bench-{i}"));
            assert_eq!(job.triggered_by, format!("user{}@example.com", i % USERS));
        }
        assert_eq!(leading_id(br#"{"id":42,"company_id":1}"#), Some(42));
        assert_eq!(leading_id(br#"{"error":{}}"#), None);
    }

    #[test]
    fn xds_payloads_are_valid_messages() {
        use junction_core::xds::{ActivityEnvelope, SchemaMessage, Urls};
        let key = "8578c900-f8df-0131-84ff-3c07547a48b0";
        let schema = SchemaMessage::parse(&xds_schema(key)).unwrap().schema;
        let urls = Urls::new("http://localhost");
        for i in [0, 1, 9, 999, 1000, 4999, 5000, 86_399, 86_400, 2_419_199, 2_419_200] {
            let v: Value = serde_json::from_str(&xds_payload(i, key)).unwrap();
            let envelope = ActivityEnvelope::read(&v);
            assert_eq!(envelope.source_association_key.as_deref(), Some(key));
            let a = envelope.validate(Some(&schema), &urls).unwrap();
            assert_eq!(a.remote_id, format!("build-{}", i % XDS_ACTIVITIES));
            assert_eq!(a.fields["stage"], format!("stage-{}", i / (5 * XDS_ACTIVITIES)));
        }
    }
}
