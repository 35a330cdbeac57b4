//! `junction-bench scheduler`: how late N schedules fire when they all fall
//! due within one minute (or, with `--same-instant`, at one instant), on
//! each backend.
//!
//! Setup (not timed against the ticks): one stored JavaScript step, N
//! one-step applications (a scheduled job has one running instance, so one
//! application per schedule) and one `interval` schedule per application
//! whose first tick is `start_on`. `start_on` has whole-second precision, so
//! "spread" puts about N/60 ticks on each second of one minute that starts
//! some 25 s after setup ends. The rule repeats every 10 minutes so that no
//! second tick falls inside the measurement (a second tick would find the
//! first run still queued and be retried as blocked on every pass).
//!
//! Then the real scheduler loop runs (`Engine::run_scheduler`, default
//! config, the real clock) with no worker: runs stay queued, as only firing
//! is measured. Lateness of a tick = its run's `created_at` (the instant the
//! firing transaction was started) minus the tick's due time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use junction_core::application::Application;
use junction_core::step::Language;
use junction_engine::{Engine, SchedulerConfig};
use junction_runtime::{Runtime, RuntimeConfig};
use junction_store::{NewStepVersion, Store};
use serde_json::{json, Value};

const NOOP: &str = "module.exports = { run: async () => 'ok' };";
/// Concurrent setup and read-back tasks.
const WIDTH: usize = 8;
/// Time between the end of setup and the first tick (aimed at).
const LEAD: Duration = Duration::from_secs(25);
/// How long after the last tick is due the bench waits for it to fire.
const GIVE_UP: Duration = Duration::from_secs(180);
/// How often the count of queued runs is read while the ticks fire.
const POLL: Duration = Duration::from_millis(200);
/// The rule's period: longer than the whole measurement.
const REPEAT_MINUTES: i64 = 10;

pub struct Options {
    pub schedules: usize,
    pub backends: Vec<&'static str>,
    pub same_instant: bool,
}

/// Runs `f(0..n)` on `WIDTH` tasks; the answers in index order.
async fn in_parallel<T, F, Fut>(n: usize, f: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<T>> + Send,
{
    let mut tasks = Vec::with_capacity(WIDTH);
    for w in 0..WIDTH.min(n.max(1)) {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (w..n).step_by(WIDTH) {
                out.push((i, f(i).await?));
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, v)| v).collect())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time in seconds (civil-from-days,
/// proleptic Gregorian).
fn rfc3339(unix_secs: i64) -> String {
    let (days, secs) = (unix_secs.div_euclid(86_400), unix_secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    crate::quantile(sorted, p).unwrap_or(0)
}

fn app_name(i: usize) -> String {
    format!("sched-bench-{i:06}")
}

struct Setup {
    /// Due instant of each schedule's first tick, Unix ms.
    due_ms: Vec<i64>,
    schedule_ids: Vec<String>,
    seconds: f64,
    /// From the end of setup to the first tick.
    headroom_ms: i64,
}

async fn setup(engine: &Engine, n: usize, same_instant: bool) -> Result<Setup> {
    let store = engine.store().clone();
    let start = Instant::now();
    store
        .put_step(&NewStepVersion {
            name: "noop",
            language: Language::Javascript,
            source: NOOP,
            description: None,
            parameters: &[],
            friendly_name: None,
            declared_version: None,
        })
        .await?;
    let s = store.clone();
    in_parallel(n, move |i| {
        let s = s.clone();
        async move {
            let upload = Application::parse(json!({"name": app_name(i), "steps": [{"name": "s0", "file": "noop"}]}))?;
            s.put_application(&upload).await?;
            anyhow::Ok(())
        }
    })
    .await?;
    let apps = start.elapsed();

    // Creating a schedule costs about what creating an application did;
    // aim the first tick LEAD after the estimated end of setup, on a whole
    // second (start_on has no fractions).
    let estimate = apps.mul_f64(1.5) + Duration::from_secs(2);
    let now_ms = store.now().as_millisecond();
    let first_s = (now_ms + (estimate + LEAD).as_millis() as i64).div_euclid(1000) + 1;
    let due_ms: Vec<i64> = (0..n)
        .map(|i| {
            let offset = if same_instant { 0 } else { (i * 60 / n) as i64 };
            (first_s + offset) * 1000
        })
        .collect();
    let schedule_ids: Vec<String> = (0..n).map(|i| format!("sched-bench-{i:06}")).collect();
    let (e, due, ids) = (engine.clone(), Arc::new(due_ms.clone()), Arc::new(schedule_ids.clone()));
    let stored = in_parallel(n, move |i| {
        let (e, due, ids) = (e.clone(), due.clone(), ids.clone());
        async move {
            let body = json!({
                "id": ids[i],
                "application_id": app_name(i),
                "schedule": {"schedule_type": "interval", "schedule_info": {
                    "frequency": "Minute", "repeat_every": REPEAT_MINUTES, "start_on": rfc3339(due[i] / 1000),
                }},
            });
            let (schedule, _) = e.put_schedule(&body).await?;
            anyhow::Ok(schedule.record.next_fire_at.map(|t| t.as_millisecond()))
        }
    })
    .await?;
    let seconds = start.elapsed().as_secs_f64();
    if let Some(i) = (0..n).find(|&i| stored[i] != Some(due_ms[i])) {
        bail!(
            "schedule {i}'s first tick is {:?}, not {} as set: setup ran past the first tick ({seconds:.1}s); \
             try fewer schedules",
            stored[i],
            due_ms[i]
        );
    }
    let headroom_ms = first_s * 1000 - store.now().as_millisecond();
    if headroom_ms < 2000 {
        bail!("setup ended {headroom_ms} ms before the first tick: too close to measure; try fewer schedules");
    }
    Ok(Setup { due_ms, schedule_ids, seconds, headroom_ms })
}

async fn bench(backend: &'static str, o: &Options) -> Result<Value> {
    let n = o.schedules;
    let dir = tempfile::tempdir()?;
    let (store, _, pg) = crate::open_store(backend, dir.path()).await?;
    let mut config = RuntimeConfig::new(dir.path().join("runtime"));
    config.spare = false; // nothing executes: no worker runs
    let runtime = Runtime::start(config).await?;
    let engine = Engine::new(store.clone(), runtime.clone());

    let s = setup(&engine, n, o.same_instant).await?;
    let first_due = s.due_ms.iter().copied().min().unwrap_or_default();
    let last_due = s.due_ms.iter().copied().max().unwrap_or_default();
    eprintln!(
        "  {backend}: setup {:.1}s; {n} ticks due from {} to {} (in {:.1}s)",
        s.seconds,
        rfc3339(first_due / 1000),
        rfc3339(last_due / 1000),
        s.headroom_ms as f64 / 1000.0
    );

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler_engine = engine.clone();
    let scheduler = tokio::spawn(async move {
        scheduler_engine
            .run_scheduler(SchedulerConfig::default(), async {
                let _ = stopped.await;
            })
            .await
    });

    // Wait (bounded) until every tick has its run.
    let give_up_ms = last_due + GIVE_UP.as_millis() as i64;
    let mut all_seen_ms = None;
    loop {
        let queued = store.active_runs().await?.len();
        let now_ms = store.now().as_millisecond();
        if queued >= n {
            all_seen_ms = Some(now_ms);
            break;
        }
        if now_ms > give_up_ms {
            eprintln!("  {backend}: gave up {}s after the last tick: {queued} of {n} fired", GIVE_UP.as_secs());
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), scheduler)
        .await
        .context("the scheduler did not stop within 30 s")??;

    // Read back: each schedule's run, its trigger and creation time.
    let records: BTreeMap<String, (Option<String>, Option<i64>)> = store
        .list_schedules(None)
        .await?
        .into_iter()
        .map(|r| (r.id, (r.last_run_id, r.last_fire_at.map(|t| t.as_millisecond()))))
        .collect();
    let run_ids: Vec<Option<String>> =
        s.schedule_ids.iter().map(|id| records.get(id).and_then(|(run, _)| run.clone())).collect();
    let (st, ids, runs) = (store.clone(), Arc::new(s.schedule_ids.clone()), Arc::new(run_ids));
    let created: Vec<Option<i64>> = in_parallel(n, move |i| {
        let (st, ids, runs) = (st.clone(), ids.clone(), runs.clone());
        async move {
            let Some(run_id) = &runs[i] else { return anyhow::Ok(None) };
            let run = st.get_run(run_id).await?.with_context(|| format!("run {run_id} of a schedule is missing"))?;
            let expected = format!("schedule:{}", ids[i]);
            if run.triggered_by.as_deref() != Some(expected.as_str()) {
                bail!("run {run_id} was triggered by {:?}, not {expected}", run.triggered_by);
            }
            Ok(Some(run.created_at.as_millisecond()))
        }
    })
    .await?;
    let total_runs = store.active_runs().await?.len();

    let mut lateness: Vec<i64> = Vec::with_capacity(n);
    let mut fires: Vec<i64> = Vec::with_capacity(n);
    for (i, c) in created.iter().enumerate() {
        if let Some(c) = c {
            lateness.push(c - s.due_ms[i]);
            fires.push(*c);
        }
    }
    lateness.sort_unstable();
    fires.sort_unstable();
    let fired = fires.len();
    if total_runs != fired {
        bail!("{total_runs} runs are queued for {fired} fired ticks: a tick fired twice or a run came from elsewhere");
    }
    let last_fire = fires.last().copied().unwrap_or(first_due);
    // Runs of one firing transaction share its `created_at` (ms): the
    // distinct values count the transactions (two in one ms would merge).
    let mut batches: Vec<(i64, usize)> = Vec::new();
    for &c in &fires {
        match batches.last_mut() {
            Some((t, k)) if *t == c => *k += 1,
            _ => batches.push((c, 1)),
        }
    }
    // A full batch is followed at once by the next: the gap is the cost of
    // one full batch (its transaction, the next due query and preparing the
    // next batch's runs).
    let full = SchedulerConfig::default().batch;
    let mut full_cycles: Vec<i64> = batches.windows(2).filter(|w| w[0].1 == full).map(|w| w[1].0 - w[0].0).collect();
    full_cycles.sort_unstable();
    let breakdown = breakdown(&store, n, full).await?;
    let cycle_per_tick = (!full_cycles.is_empty()).then(|| percentile(&full_cycles, 0.5) as f64 / full as f64);
    let mean = if fired > 0 { lateness.iter().sum::<i64>() as f64 / fired as f64 } else { 0.0 };
    let span_s = ((last_fire - first_due) as f64 / 1000.0).max(0.001);
    let result = json!({
        "backend": backend,
        "mode": if o.same_instant { "same_instant" } else { "spread_over_minute" },
        "schedules": n,
        "fired": fired,
        "setup_seconds": s.seconds,
        "headroom_seconds": s.headroom_ms as f64 / 1000.0,
        "p50_ms": percentile(&lateness, 0.5),
        "p99_ms": percentile(&lateness, 0.99),
        "max_ms": lateness.last().copied().unwrap_or_default(),
        "min_ms": lateness.first().copied().unwrap_or_default(),
        "mean_ms": mean,
        "fires_per_second": fired as f64 / span_s,
        "first_due_to_last_fire_seconds": span_s,
        "last_fire_after_last_due_ms": last_fire - last_due,
        "all_visible_after_last_due_ms": all_seen_ms.map(|t| t - last_due),
        "fire_transactions": batches.len(),
        "mean_batch": if batches.is_empty() { 0.0 } else { fired as f64 / batches.len() as f64 },
        "full_batch_size": full,
        "full_batches": full_cycles.len() + usize::from(batches.last().is_some_and(|b| b.1 == full)),
        "full_batch_cycle_ms_p50": if full_cycles.is_empty() { None } else { Some(percentile(&full_cycles, 0.5)) },
        "fire_ms_per_tick_in_full_batches": cycle_per_tick,
        "breakdown": {
            "prepare_reads_ms_per_tick": breakdown.prepare_ms,
            "due_query_ms_per_page": breakdown.due_page_ms,
            "transaction_ms_per_tick_estimate": cycle_per_tick
                .map(|c| c - breakdown.prepare_ms - breakdown.due_page_ms / full as f64),
        },
    });

    runtime.shutdown().await;
    store.close().await;
    drop(pg);
    Ok(result)
}

struct Breakdown {
    /// The reads `Engine::fire_due` makes to prepare one tick's run
    /// (application, its sealed variables, its step), run one after another
    /// as the scheduler does, after the burst.
    prepare_ms: f64,
    /// One page of `due_schedules` (`batch` rows).
    due_page_ms: f64,
}

/// Times, after the burst, the pieces of a fire that can be called from
/// outside the engine; the transaction's share is what is left of the
/// measured cycle.
async fn breakdown(store: &Store, n: usize, batch: usize) -> Result<Breakdown> {
    let samples = n.min(1000);
    let start = Instant::now();
    for i in 0..samples {
        let app = app_name(i);
        store.get_application(&app).await?.context("application vanished")?;
        store.application_secrets(&app).await?;
        store.get_step("noop").await?.context("step vanished")?;
    }
    let prepare_ms = start.elapsed().as_secs_f64() * 1000.0 / samples as f64;
    // Every schedule's next tick is 10 minutes on: ask as of a minute later.
    let later = store.now().checked_add(Duration::from_secs(60 * (REPEAT_MINUTES as u64 + 1)))?;
    let pages = 20;
    let start = Instant::now();
    for _ in 0..pages {
        store.due_schedules(later, batch as i64, None).await?;
    }
    let due_page_ms = start.elapsed().as_secs_f64() * 1000.0 / pages as f64;
    Ok(Breakdown { prepare_ms, due_page_ms })
}

pub async fn run(o: &Options) -> Result<Vec<Value>> {
    if o.schedules == 0 {
        bail!("--schedules must be at least 1");
    }
    let mut results = Vec::new();
    for &backend in &o.backends {
        eprintln!(
            "scheduler benchmark on {backend}: {} schedules {} ...",
            o.schedules,
            if o.same_instant { "due at one instant" } else { "due across one minute" }
        );
        results.push(bench(backend, o).await?);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_unix_seconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_424_430), "2026-11-23T09:00:30Z");
    }
}
