//! Spec 000's jobs on top of applications: the grid (trigger kind, schedule
//! text, last run, next run), stopping every running instance, automated
//! triggers and the server setting that gates them.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use junction_core::run::State;
use junction_core::schedule::relative;
use junction_core::validation::Violations;
use junction_store::RunRecord;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::runs::RunRequest;
use crate::{Engine, EngineError, Result};

/// The setting key behind "Enable Automated Jobs using Integration Hub".
pub const AUTOMATED_JOBS_SETTING: &str = "automated_jobs_enabled";

/// A tick this far in the past that has not started is `Overdue` (the
/// scheduler fires within about a second when nothing blocks it).
const OVERDUE_AFTER: SignedDuration = SignedDuration::from_secs(5);

/// How a job starts (spec 000's Trigger, plus jobs that only run on demand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Scheduled,
    Automated,
    Manual,
}

/// One row of the jobs grid.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub name: String,
    pub friendly_name: Option<String>,
    pub description: Option<String>,
    pub trigger: Trigger,
    /// The schedules in words, e.g. "Every 2 hours from 2026-11-23 09:00 UTC".
    pub schedule: Option<String>,
    pub schedule_ids: Vec<String>,
    /// Whether the schedule is on (scheduled jobs only).
    pub enabled: Option<bool>,
    pub last_run: Option<JobRun>,
    /// Spec 000's Next Run: a relative time ("in 5 minutes"), `Running`,
    /// `Overdue` or `Disabled`; null for a job that only runs on demand.
    pub next_run: Option<String>,
    /// The next tick, machine-readable.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_run_at: Option<Timestamp>,
    /// Runs still going.
    pub running: usize,
}

/// A run as the grid and the history show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobRun {
    pub id: String,
    /// `schedule`, `automated`, `manual`, `replay`.
    pub trigger: String,
    pub triggered_by: Option<String>,
    pub state: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    /// Wall time from start to end (or to now while it runs), in ms.
    pub duration_ms: Option<i64>,
}

impl JobRun {
    pub fn of(run: &RunRecord, now: Timestamp) -> JobRun {
        let end = run.finished_at.or((!run.state.is_final()).then_some(now));
        let duration_ms = match (run.started_at.or(Some(run.created_at)), end) {
            (Some(s), Some(e)) => Some((e.as_millisecond() - s.as_millisecond()).max(0)),
            _ => None,
        };
        JobRun {
            id: run.id.clone(),
            trigger: run.trigger_kind.clone(),
            triggered_by: run.triggered_by.clone(),
            state: run.state.public().as_str().to_string(),
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            duration_ms,
        }
    }
}

impl Engine {
    /// The jobs grid: every application, by name.
    pub async fn jobs(&self) -> Result<Vec<Job>> {
        let now = self.store.now();
        let schedules = self.list_schedules(None).await?;
        let mut by_app: HashMap<&str, Vec<_>> = HashMap::new();
        for s in &schedules {
            by_app.entry(s.record.application.as_str()).or_default().push(s);
        }
        let (running, mut latest) = self.store.job_run_summaries().await?;
        let mut jobs = Vec::new();
        for app in self.store.list_applications().await? {
            let name = app.application.name().to_string();
            let mine = by_app.remove(name.as_str()).unwrap_or_default();
            let active = running.get(&name).copied().unwrap_or(0);
            let last = latest.remove(&name);
            let enabled: Vec<_> = mine.iter().filter(|s| s.record.enabled).collect();
            let next_run_at = enabled.iter().filter_map(|s| s.record.next_fire_at).min();
            let trigger = if !mine.is_empty() {
                Trigger::Scheduled
            } else if app.application.automated() {
                Trigger::Automated
            } else {
                Trigger::Manual
            };
            let next_run = match trigger {
                Trigger::Scheduled if enabled.is_empty() => Some("Disabled".to_string()),
                Trigger::Scheduled => Some(match next_run_at {
                    Some(t) if t < now - OVERDUE_AFTER => "Overdue".to_string(),
                    _ if active > 0 => "Running".to_string(),
                    Some(t) => relative(now, t),
                    None => "Never".to_string(),
                }),
                _ if active > 0 => Some("Running".to_string()),
                Trigger::Automated => Some("Disabled".to_string()),
                Trigger::Manual => None,
            };
            let texts: Vec<String> = mine.iter().map(|s| s.entry.describe()).collect();
            jobs.push(Job {
                friendly_name: app.application.friendly_name().map(str::to_string),
                description: app.application.description().map(str::to_string),
                trigger,
                schedule: (!texts.is_empty()).then(|| texts.join("; ")),
                schedule_ids: mine.iter().map(|s| s.record.id.clone()).collect(),
                enabled: (!mine.is_empty()).then_some(!enabled.is_empty()),
                last_run: last.as_ref().map(|r| JobRun::of(r, now)),
                next_run,
                next_run_at,
                running: active,
                name,
            });
        }
        Ok(jobs)
    }

    /// A job's runs, newest first.
    pub async fn job_history(&self, name: &str, limit: i64, offset: i64) -> Result<Vec<JobRun>> {
        if self.store.get_application(name).await?.is_none() {
            return Err(EngineError::NotFound(format!("job {name:?}")));
        }
        let now = self.store.now();
        Ok(self.store.list_runs(name, limit, offset).await?.iter().map(|r| JobRun::of(r, now)).collect())
    }

    /// Stops every running instance of a job (the grid's red Stop); each
    /// run's log ends with the stopped-by-user line. Returns the run ids.
    pub async fn stop_job(&self, name: &str, who: &str) -> Result<Vec<String>> {
        if self.store.get_application(name).await?.is_none() {
            return Err(EngineError::NotFound(format!("job {name:?}")));
        }
        let mut stopped = Vec::new();
        for run in self.store.active_runs_of(name).await? {
            let tasks = self.store.run_tasks(&run.id).await?;
            match self.revoke_run(&run.id, who).await {
                Ok(()) => {}
                Err(EngineError::Conflict(_)) => continue, // ended meanwhile
                Err(e) => return Err(e),
            }
            // A step that was executing writes the line itself as it stops;
            // a run that had not started yet gets it here.
            // Written before answering, so the log shows it at once.
            if !tasks.iter().any(|t| t.state == State::Started) {
                if let Some(first) = tasks.first() {
                    let line = junction_store::LogLine {
                        run_id: run.id.clone(),
                        task_id: first.id.clone(),
                        ts: Timestamp::now(),
                        level: "ERROR".into(),
                        line: junction_runtime::log_line("ERROR", "Job was stopped by user"),
                    };
                    if let Err(e) = self.store.append_logs(&[line]).await {
                        tracing::warn!(run = %run.id, error = %e, "cannot write the stop line");
                    }
                }
            }
            stopped.push(run.id);
        }
        Ok(stopped)
    }

    /// Starts an automated-job run (spec 000): `context` reaches the script
    /// as `args.plutoraValues` (with `JobName` always set), `arguments`
    /// override the values of the job's declared parameters — the list of
    /// parameters itself cannot change.
    pub async fn trigger(
        &self,
        name: &str,
        context: Map<String, Value>,
        arguments: Map<String, Value>,
        who: &str,
    ) -> Result<RunRecord> {
        self.can_run()?;
        if !self.automated_jobs_enabled().await? {
            return Err(EngineError::Forbidden(
                "automated jobs are disabled on this server (setting automated_jobs_enabled)".into(),
            ));
        }
        let record =
            self.store.get_application(name).await?.ok_or_else(|| EngineError::NotFound(format!("job {name:?}")))?;
        let app = &record.application;
        let mut v = Violations::default();
        for (key, value) in &arguments {
            if !app.variables().iter().any(|var| var.name == *key) {
                v.push(
                    format!("arguments.{key}"),
                    "unknown_parameter",
                    format!("job {name:?} has no parameter {key:?}; only the values of its parameters can be given"),
                );
            } else if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                v.push(format!("arguments.{key}"), "type", "must be a string, number or boolean");
            }
        }
        v.finish(())?;
        let mut context = context;
        context.entry("JobName").or_insert_with(|| Value::String(name.to_string()));
        let request = RunRequest {
            params: arguments,
            trigger_kind: "automated".into(),
            triggered_by: Some(who.to_string()),
            context: Some(Value::Object(context)),
            max_active: app.max_concurrency().map(|c| c as i64),
            ..RunRequest::default()
        };
        self.start_run(name, request).await
    }

    pub async fn automated_jobs_enabled(&self) -> Result<bool> {
        Ok(self.store.get_setting(AUTOMATED_JOBS_SETTING).await?.as_deref() == Some("true"))
    }

    pub async fn set_automated_jobs_enabled(&self, on: bool) -> Result<()> {
        self.store.put_setting(AUTOMATED_JOBS_SETTING, if on { "true" } else { "false" }).await?;
        self.triggers_changed();
        Ok(())
    }
}
