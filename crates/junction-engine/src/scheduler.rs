//! Schedules and the scheduler loop (DESIGN.md: "a schedule tick enqueues
//! exactly one run").
//!
//! Time comes from the store's clock only, so a test drives the whole
//! scheduler with a `ManualClock` and [`Engine::fire_due`].
//!
//! - A due tick is fired by one store transaction that moves the schedule's
//!   next fire time (compare-and-set against the time read) and inserts the
//!   run: a crash cannot fire twice or lose the tick, and an edit, disable or
//!   delete that commits first wins.
//! - After downtime a schedule that missed several ticks fires once (a
//!   catch-up, logged) and moves to its next tick after *now*.
//! - A scheduled job has one running instance: a tick that finds a run of
//!   the job still going stays due (the grid shows `Overdue`) and fires when
//!   the run has ended — one waiting tick, never a pile.
//! - With PostgreSQL one server leads (session advisory lock); the others
//!   wait to take over. Firing is exactly-once even without the election.

use std::time::Duration;

use jiff::Timestamp;
use junction_core::schedule::ScheduleEntry;
use junction_store::{Fired, Firing, PutSchedule, ScheduleRecord};
use serde_json::{json, Value};

use crate::runs::{uuid, RunRequest};
use crate::{Engine, EngineError, Result};

/// How the scheduler loop behaves.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The longest sleep between two looks at the due schedules.
    pub tick: Duration,
    /// Due ticks fired per transaction.
    pub batch: usize,
    /// How often a server that does not lead tries to.
    pub leader_retry: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { tick: Duration::from_secs(1), batch: 512, leader_retry: Duration::from_secs(5) }
    }
}

/// What one pass of [`Engine::fire_due`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FireReport {
    /// Runs started.
    pub started: Vec<String>,
    /// Ticks that waited for a running instance.
    pub blocked: usize,
    /// Ticks spent without a run (the application could not run).
    pub failed: usize,
    /// Ticks that had changed under the scheduler (edited, disabled, deleted,
    /// or fired by another server).
    pub stale: usize,
}

/// A prepared page of firings, with whether each is a catch-up.
#[derive(Default)]
struct Page {
    firings: Vec<Firing>,
    catch_ups: Vec<bool>,
}

/// A stored schedule with its rule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub record: ScheduleRecord,
    pub entry: ScheduleEntry,
}

impl Schedule {
    fn from_record(record: ScheduleRecord) -> Result<Schedule> {
        let mut body = entry_json(&record);
        // A flow's schedule (id and application `.flow.NAME`, names no
        // user can give) is checked as the flow's document was.
        let flow = record.application.starts_with(crate::flows::RUN_PREFIX);
        if flow {
            body["id"] = json!("flow");
            body["application_id"] = json!("flow");
        }
        let mut entry = ScheduleEntry::parse(&body).map_err(|e| {
            EngineError::Store(junction_store::StoreError::Corrupt(format!("schedule {}: {e}", record.id)))
        })?;
        if flow {
            entry.id = Some(record.id.clone());
            entry.application_id = record.application.clone();
        }
        Ok(Schedule { record, entry })
    }

    /// The schedule as the API shows it: the entry as given plus its state.
    pub fn to_json(&self, now: Timestamp) -> Value {
        let r = &self.record;
        let mut v = self.entry.to_json();
        if let Value::Object(o) = &mut v {
            o.insert("id".into(), json!(r.id));
            o.insert("description".into(), json!(self.entry.describe()));
            o.insert("next_fire_at".into(), json!(r.next_fire_at));
            o.insert(
                "next_run".into(),
                json!(match (r.enabled, r.next_fire_at) {
                    (false, _) => "Disabled".to_string(),
                    (true, None) => "Never".to_string(),
                    (true, Some(t)) => junction_core::schedule::relative(now, t),
                }),
            );
            o.insert("last_fire_at".into(), json!(r.last_fire_at));
            o.insert("last_run_id".into(), json!(r.last_run_id));
            o.insert("last_error".into(), json!(r.last_error));
            o.insert("created_at".into(), json!(r.created_at));
            o.insert("updated_at".into(), json!(r.updated_at));
        }
        v
    }
}

fn entry_json(r: &ScheduleRecord) -> Value {
    json!({
        "id": r.id,
        "application_id": r.application,
        "entry_id": r.entry_id,
        "params": r.params,
        "enabled": r.enabled,
        "timezone": r.timezone,
        "schedule": {"schedule_type": r.kind, "schedule_info": r.info},
    })
}

impl Engine {
    /// Creates a schedule, or replaces the one with the body's `id`.
    pub async fn put_schedule(&self, body: &Value) -> Result<(Schedule, bool)> {
        let entry = ScheduleEntry::parse(body)?;
        let id = match &entry.id {
            Some(id) => {
                junction_core::name::check_name("id", id).map_err(|v| junction_core::Invalid(vec![v]))?;
                id.clone()
            }
            None => uuid(),
        };
        let now = self.store.now();
        // Counting (`run_every`) starts when the schedule was first made.
        let anchor = match self.store.get_schedule(&id).await? {
            Some(old) => old.created_at,
            None => now,
        };
        // A schedule's params are stored and shown as written, so they may
        // not carry a value for an encrypted variable.
        if let Some(app) = self.store.get_application(&entry.application_id).await? {
            let mut v = junction_core::validation::Violations::default();
            for var in app.application.variables().iter().filter(|var| var.encrypted) {
                if entry.params.contains_key(&var.name) {
                    v.push(
                        format!("params.{}", var.name),
                        "encrypted",
                        format!(
                            "{:?} is an encrypted variable; set its value on the application, not in a schedule",
                            var.name
                        ),
                    );
                }
            }
            v.finish(())?;
        }
        let put = PutSchedule {
            id,
            application: entry.application_id.clone(),
            entry_id: entry.entry_id.clone(),
            kind: entry.schedule_type.clone(),
            info: entry.schedule_info.clone(),
            timezone: entry.timezone.clone(),
            params: Value::Object(entry.params.clone()),
            enabled: entry.enabled,
            next_fire_at: first_tick(&entry, now, anchor),
            anchor,
        };
        let (record, created) = self.store.put_schedule(&put).await?;
        self.signals.schedules_changed.notify_one();
        Ok((Schedule { record, entry }, created))
    }

    /// The schedules (of one application). One that can no longer be read
    /// (its time zone vanished from the host) is left out with a warning
    /// rather than failing every listing; it can still be deleted by id.
    pub async fn list_schedules(&self, application: Option<&str>) -> Result<Vec<Schedule>> {
        let mut out = Vec::new();
        for record in self.store.list_schedules(application).await? {
            let id = record.id.clone();
            match Schedule::from_record(record) {
                Ok(s) => out.push(s),
                Err(e) => tracing::warn!(schedule = %id, error = %e, "unreadable schedule left out"),
            }
        }
        Ok(out)
    }

    pub async fn get_schedule(&self, id: &str) -> Result<Schedule> {
        let record =
            self.store.get_schedule(id).await?.ok_or_else(|| EngineError::NotFound(format!("schedule {id:?}")))?;
        Schedule::from_record(record)
    }

    pub async fn delete_schedule(&self, id: &str) -> Result<()> {
        if !self.store.delete_schedule(id).await? {
            return Err(EngineError::NotFound(format!("schedule {id:?}")));
        }
        Ok(())
    }

    /// Turns every schedule of a job on or off (the grid's Enabled toggle);
    /// returns them. A schedule turned on waits for its next tick after now:
    /// ticks missed while it was off are not caught up.
    pub async fn set_job_enabled(&self, application: &str, enabled: bool) -> Result<Vec<Schedule>> {
        if self.store.get_application(application).await?.is_none() {
            return Err(EngineError::NotFound(format!("job {application:?}")));
        }
        let schedules = self.list_schedules(Some(application)).await?;
        if schedules.is_empty() {
            return Err(EngineError::Conflict(format!("job {application:?} has no schedule to enable or disable")));
        }
        let now = self.store.now();
        for s in &schedules {
            let next = first_tick(&s.entry, now, s.record.created_at);
            self.store.set_schedule_enabled(&s.record.id, enabled, next).await?;
        }
        self.signals.schedules_changed.notify_one();
        self.list_schedules(Some(application)).await
    }

    /// Fires every tick due now, in batches; one pass.
    pub async fn fire_due(&self) -> Result<FireReport> {
        self.fire_due_with(&SchedulerConfig::default()).await
    }

    /// Pages of due ticks are pipelined: the next page is prepared (reads)
    /// while the previous one's transaction commits. Transactions stay one
    /// after another, so a page's in-transaction "is it running?" check
    /// sees the runs the page before started.
    async fn fire_due_with(&self, config: &SchedulerConfig) -> Result<FireReport> {
        let now = self.store.now();
        let mut report = FireReport::default();
        let mut after: Option<(Timestamp, String)> = None;
        let mut inflight: Option<Page> = None;
        let mut more = true;
        while more || inflight.is_some() {
            let due = if more {
                let cursor = after.as_ref().map(|(t, id)| (*t, id.as_str()));
                let due = self.store.due_schedules(now, config.batch as i64, cursor).await?;
                more = due.len() == config.batch;
                if let Some(last) = due.last() {
                    after = Some((last.next_fire_at.unwrap_or(now), last.id.clone()));
                }
                due
            } else {
                Vec::new()
            };
            let prepared = match inflight.take() {
                Some(page) => {
                    let (fired, prepared) =
                        tokio::join!(self.store.fire_schedules(&page.firings), self.prepare_page(due, now));
                    self.record(page, fired?, &mut report);
                    prepared?
                }
                None => self.prepare_page(due, now).await?,
            };
            let mut page = Page::default();
            for p in prepared {
                match p {
                    Some((firing, catch_up)) => {
                        page.firings.push(firing);
                        page.catch_ups.push(catch_up);
                    }
                    None => report.blocked += 1,
                }
            }
            if !page.firings.is_empty() {
                inflight = Some(page);
            }
        }
        Ok(report)
    }

    /// Accounts for a fired page.
    fn record(&self, page: Page, outcomes: Vec<Fired>, report: &mut FireReport) {
        let before = report.started.len();
        for ((f, outcome), catch_up) in page.firings.iter().zip(outcomes).zip(page.catch_ups) {
            match outcome {
                Fired::Started(Some(run)) => {
                    if catch_up {
                        tracing::info!(schedule = %f.schedule_id, run = %run, missed_since = %f.due_at,
                            "catch-up: several ticks were missed while no scheduler ran; fired once");
                    } else {
                        tracing::debug!(schedule = %f.schedule_id, run = %run, due = %f.due_at, "schedule fired");
                    }
                    report.started.push(run);
                }
                Fired::Started(None) => {
                    tracing::warn!(
                        schedule = %f.schedule_id,
                        error = f.error.as_deref().unwrap_or_default(),
                        "schedule tick started no run"
                    );
                    report.failed += 1;
                }
                Fired::Blocked => report.blocked += 1,
                Fired::Stale => report.stale += 1,
            }
        }
        if report.started.len() > before {
            self.signals.work_available.notify_waiters();
        }
    }

    /// The firings of a page of due ticks — each run prepared, its next
    /// tick computed, and whether it is a catch-up — or None for a tick whose
    /// job still runs (it stays due). What the runs need is read for the
    /// whole page in a few queries. A schedule or application that cannot
    /// be read spends its tick with the reason in `last_error`; it never
    /// holds back the other schedules.
    async fn prepare_page(&self, due: Vec<ScheduleRecord>, now: Timestamp) -> Result<Vec<Option<(Firing, bool)>>> {
        let mut names: Vec<&str> = due.iter().map(|r| r.application.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let running = self.store.active_instance_apps(&names).await?;
        // A job still running holds its ticks back: nothing of it is read.
        let requests = due
            .iter()
            .filter(|record| !running.contains(&record.application))
            .map(|record| {
                let request = RunRequest {
                    params: record.params.as_object().cloned().unwrap_or_default(),
                    trigger_kind: "schedule".into(),
                    triggered_by: Some(format!("schedule:{}", record.id)),
                    ..RunRequest::default()
                };
                (record.application.as_str(), request)
            })
            .collect();
        let mut prepared = self.prepare_runs(requests).await?.into_iter();

        let mut out = Vec::with_capacity(due.len());
        for record in due {
            // Taken first, so every prepared run stays with its record.
            let built = if running.contains(&record.application) { None } else { prepared.next() };
            let due_at = record.next_fire_at.unwrap_or(now);
            let spent = |record: &ScheduleRecord, next_fire_at, error: String| Firing {
                schedule_id: record.id.clone(),
                due_at,
                version: record.updated_at,
                next_fire_at,
                run: None,
                error: Some(error),
                one_instance: false,
            };
            let schedule = match Schedule::from_record(record.clone()) {
                Ok(s) => s,
                // Parked (no next tick), not retried forever.
                Err(e) => {
                    out.push(Some((spent(&record, None, e.to_string()), false)));
                    continue;
                }
            };
            let next_fire_at = schedule.entry.next_after(now, record.created_at);
            let Some(built) = built else {
                out.push(None);
                continue;
            };
            // More than one tick missed (no scheduler ran): fire once.
            let catch_up = schedule.entry.next_after(due_at, record.created_at).is_some_and(|t| t <= now);
            let firing = match built {
                Ok(run) => Firing {
                    schedule_id: record.id,
                    due_at,
                    version: record.updated_at,
                    next_fire_at,
                    run: Some(run),
                    error: None,
                    one_instance: true,
                },
                Err(e) => spent(&record, next_fire_at, e.to_string()),
            };
            out.push(Some((firing, catch_up)));
        }
        Ok(out)
    }

    /// The scheduler: leads when it can, fires due ticks, sleeps until the
    /// next one (at most `config.tick`) or until a schedule changes or a run
    /// ends. Returns when `shutdown` resolves.
    pub async fn run_scheduler(&self, config: SchedulerConfig, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut ended = self.signals.run_ended.subscribe();
        loop {
            let mut lead = loop {
                match self.store.try_lead().await {
                    Ok(Some(lead)) => break lead,
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "scheduler: cannot try to lead"),
                }
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(config.leader_retry) => {}
                }
            };
            tracing::info!("scheduler: leading");
            loop {
                if !lead.still_held().await {
                    tracing::warn!("scheduler: lost the leadership connection; trying to lead again");
                    break;
                }
                // A tick held back by a running instance stays due; the
                // next look comes with a run's end or after `tick`, not at
                // once (that would spin).
                let held = match self.fire_due_with(&config).await {
                    Ok(report) => report.blocked > 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduler: firing failed; retrying");
                        true
                    }
                };
                let now = self.store.now();
                let wait = match self.store.next_due(held.then_some(now)).await {
                    Ok(Some(t)) => {
                        let ms = (t.as_millisecond() - now.as_millisecond()).max(0) as u64;
                        config.tick.min(Duration::from_millis(ms))
                    }
                    _ => config.tick,
                };
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.signals.schedules_changed.notified() => {}
                    _ = ended.recv() => {}
                }
            }
        }
    }
}

/// The first tick at or after `now`: a schedule saved (or turned on) with
/// `start_on` = now fires now; ticks before now are not caught up.
pub(crate) fn first_tick(entry: &ScheduleEntry, now: Timestamp, anchor: Timestamp) -> Option<Timestamp> {
    entry.next_after(now - jiff::SignedDuration::from_millis(1), anchor)
}
