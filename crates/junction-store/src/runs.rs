//! Runs, tasks and their logs: the durable queue.
//!
//! A run and all its tasks are inserted in one transaction: root tasks
//! `PENDING`, the others `WAITING` on the number of their inputs. Workers
//! claim with a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: the
//! single writer), keep it by heartbeat, and finish a task in one
//! transaction that also releases its dependants, retries it, or ends the
//! run. A lease that expires puts the task back.

use std::time::Duration;

use jiff::Timestamp;
use junction_core::run::State;
use junction_core::secret::SecretString;
use serde_json::Value;

use crate::{json_of, lock_key, read, ts, write_tx, Result, Store, StoreError};

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub application: String,
    pub app_revision: i64,
    pub queue: String,
    pub trigger_kind: String,
    pub triggered_by: Option<String>,
    pub configuration: Option<String>,
    /// Variables and options in clear (no secret values).
    pub params: Value,
    /// Secret run-time values (masked variables given for this run).
    pub secret_params: Vec<(String, SecretString)>,
    pub context: Option<Value>,
    pub log_level: i64,
    pub idempotency_key: Option<String>,
    pub tasks: Vec<NewTask>,
    /// Refuse the run (`Busy`) when this many runs of the application with
    /// the same trigger kind are still going (spec 000 `max_concurrency`).
    pub max_active: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub step_name: String,
    pub step_index: i64,
    pub step_file: String,
    pub step_version: Option<i64>,
    /// Inputs that must succeed first; 0 makes the task claimable now.
    pub waiting_on: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub application: String,
    pub app_revision: i64,
    pub state: State,
    pub queue: String,
    pub trigger_kind: String,
    pub triggered_by: Option<String>,
    pub configuration: Option<String>,
    pub params: Value,
    pub context: Option<Value>,
    pub log_level: i64,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    pub run_id: String,
    pub step_name: String,
    pub step_index: i64,
    pub step_file: String,
    pub step_version: Option<i64>,
    pub state: State,
    pub queue: String,
    pub attempts: i64,
    pub due_at: Timestamp,
    pub output: Option<Value>,
    pub result: Option<String>,
    pub traceback: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

/// How a claimed attempt ended.
#[derive(Debug, Clone)]
pub enum Finish {
    Success {
        /// The saved data as shown (with the run's secrets masked).
        output: Option<Value>,
        /// The full saved data (JSON text) when `output` is a masked copy;
        /// sealed to the task's slot (`task:ID` / `output`).
        sealed_output: Option<SecretString>,
        result: Option<String>,
        children: Vec<String>,
    },
    /// Try again at `due_at`.
    Retry { due_at: Timestamp, result: Option<String>, traceback: Option<String> },
    /// Failed for good; `skip` are the waiting steps that can no longer run.
    Failure { result: Option<String>, traceback: Option<String>, skip: Vec<String> },
}

/// One completion for [`Store::finish_tasks`].
#[derive(Debug, Clone)]
pub struct FinishItem {
    pub task_id: String,
    pub worker: String,
    pub finish: Finish,
}

/// One log line of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub run_id: String,
    pub task_id: String,
    pub ts: Timestamp,
    pub level: String,
    pub line: String,
}

pub(crate) const RUN_COLUMNS: &str =
    "id, application, app_revision, state, queue, trigger_kind, triggered_by, configuration, \
                           params, context, log_level, error, created_at, started_at, finished_at";
pub(crate) type RunRow = (
    String,
    String,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
);

const TASK_COLUMNS: &str =
    "id, run_id, step_name, step_index, step_file, step_version, state, queue, attempts, due_at, \
                            output, result, traceback, created_at, started_at, finished_at";
type TaskRow = (
    String,
    String,
    String,
    i64,
    String,
    Option<i64>,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
);

fn state(s: &str) -> Result<State> {
    State::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown state {s:?}")))
}

fn opt_ts(ms: Option<i64>) -> Result<Option<Timestamp>> {
    ms.map(ts).transpose()
}

pub(crate) fn run_from_row(r: RunRow) -> Result<RunRecord> {
    Ok(RunRecord {
        id: r.0,
        application: r.1,
        app_revision: r.2,
        state: state(&r.3)?,
        queue: r.4,
        trigger_kind: r.5,
        triggered_by: r.6,
        configuration: r.7,
        params: json_of(&r.8)?,
        context: r.9.as_deref().map(json_of).transpose()?,
        log_level: r.10.unwrap_or(20),
        error: r.11,
        created_at: ts(r.12)?,
        started_at: opt_ts(r.13)?,
        finished_at: opt_ts(r.14)?,
    })
}

fn task_from_row(r: TaskRow) -> Result<TaskRecord> {
    Ok(TaskRecord {
        id: r.0,
        run_id: r.1,
        step_name: r.2,
        step_index: r.3,
        step_file: r.4,
        step_version: r.5,
        state: state(&r.6)?,
        queue: r.7,
        attempts: r.8,
        due_at: ts(r.9)?,
        output: r.10.as_deref().map(json_of).transpose()?,
        result: r.11,
        traceback: r.12,
        created_at: ts(r.13)?,
        started_at: opt_ts(r.14)?,
        finished_at: opt_ts(r.15)?,
    })
}

/// Inside a write transaction holding the run's lock: when no task of the
/// run can still run, sets the run's final state (FAILURE if a task
/// failed, else SUCCESS) and evaluates to `Ok(Some(state))`.
macro_rules! finalize_run {
    ($tx:ident, $run_id:expr, $now:expr) => {{
        // One pass over the run's tasks: how many can still run, how many failed.
        let (active, failed): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT SUM(CASE WHEN state IN ('WAITING', 'PENDING', 'STARTED', 'RETRY') THEN 1 ELSE 0 END), \
             SUM(CASE WHEN state = 'FAILURE' THEN 1 ELSE 0 END) FROM tasks WHERE run_id = $1",
        )
        .bind(&$run_id)
        .fetch_one(&mut *$tx)
        .await?;
        if active.unwrap_or(0) > 0 {
            Ok::<_, StoreError>(None)
        } else {
            let final_state = if failed.unwrap_or(0) > 0 { State::Failure } else { State::Success };
            sqlx::query(
                "UPDATE runs SET state = $1, finished_at = $2 WHERE id = $3 AND state IN ('PENDING', 'STARTED')",
            )
            .bind(final_state.as_str())
            .bind($now)
            .bind(&$run_id)
            .execute(&mut *$tx)
            .await?;
            Ok(Some(final_state))
        }
    }};
}

/// PostgreSQL channel that tells every worker there may be work.
pub(crate) const WORK_CHANNEL: &str = "junction_work";

/// Inside a write transaction: on PostgreSQL, wakes the workers of every
/// process when the transaction commits (NOTIFY is transactional). SQLite
/// workers share one machine and poll.
macro_rules! notify_work {
    ($store:expr, $tx:ident) => {
        if $store.is_postgres() {
            sqlx::query("SELECT pg_notify($1, '')").bind($crate::runs::WORK_CHANNEL).execute(&mut *$tx).await?;
        }
    };
}

/// Inside `write_tx!`: inserts runs and all their tasks (roots `PENDING`,
/// the others `WAITING`) with multi-row statements. `$runs` is a
/// `Vec<(&NewRun, &Option<Vec<u8>>)>` (each run and its sealed params).
/// The caller wakes the workers (`notify_work!`).
macro_rules! insert_runs {
    ($tx:ident, $runs:expr, $now:expr) => {{
        let runs: Vec<(&NewRun, &Option<Vec<u8>>)> = $runs;
        // 13 binds a run, 10 a task; SQLite allows 32766 binds a statement.
        for chunk in runs.chunks(1000) {
            let values = (0..chunk.len())
                .map(|i| format!("({}, 'PENDING')", $crate::runs::placeholders(i * 13 + 1, 13)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO runs (id, application, app_revision, queue, trigger_kind, triggered_by, configuration, \
                 params, sealed_params, context, log_level, idempotency_key, created_at, state) VALUES {values}"
            );
            let mut q = sqlx::query(&sql);
            for (run, sealed) in chunk {
                q = q
                    .bind(&run.id)
                    .bind(&run.application)
                    .bind(run.app_revision)
                    .bind(&run.queue)
                    .bind(&run.trigger_kind)
                    .bind(&run.triggered_by)
                    .bind(&run.configuration)
                    .bind(run.params.to_string())
                    .bind(*sealed)
                    .bind(run.context.as_ref().map(Value::to_string))
                    .bind(run.log_level)
                    .bind(&run.idempotency_key)
                    .bind($now);
            }
            q.execute(&mut *$tx).await?;
        }
        let tasks: Vec<(&NewRun, &NewTask)> = runs.iter().flat_map(|(r, _)| r.tasks.iter().map(move |t| (*r, t))).collect();
        for chunk in tasks.chunks(1500) {
            let values = (0..chunk.len())
                .map(|i| format!("({}, 0)", $crate::runs::placeholders(i * 11 + 1, 11)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO tasks (id, run_id, step_name, step_index, step_file, step_version, state, queue, due_at, \
                 waiting_on, created_at, attempts) VALUES {values}"
            );
            let mut q = sqlx::query(&sql);
            for (run, t) in chunk {
                let st = if t.waiting_on == 0 {
                    junction_core::run::State::Pending
                } else {
                    junction_core::run::State::Waiting
                };
                q = q
                    .bind(&t.id)
                    .bind(&run.id)
                    .bind(&t.step_name)
                    .bind(t.step_index)
                    .bind(&t.step_file)
                    .bind(t.step_version)
                    .bind(st.as_str())
                    .bind(&run.queue)
                    .bind($now)
                    .bind(t.waiting_on)
                    .bind($now);
            }
            q.execute(&mut *$tx).await?;
        }
    }};
}
pub(crate) use {insert_runs, notify_work};

/// The slot a run's secret params are sealed to.
fn run_scope(run_id: &str) -> String {
    format!("run:{run_id}")
}

/// The slot a task's full saved data is sealed to.
fn task_scope(task_id: &str) -> String {
    format!("task:{task_id}")
}

/// `$from, $from+1, ...` placeholders for an IN list.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl Store {
    /// Inserts a run with all its tasks in one transaction. With an
    /// idempotency key already used within 24 hours, returns that run
    /// instead (and `false`).
    pub async fn create_run(&self, run: &NewRun) -> Result<(RunRecord, bool)> {
        let now = self.now_ms();
        let sealed = self.seal_run_params(run);
        let existing = write_tx!(self, tx => {
            let mut existing = None;
            if let Some(key) = &run.idempotency_key {
                // Two requests with one key: the second waits, then finds the first's run.
                lock_key!(self, tx, &format!("idem:{key}"));
                let day_ago = now - 24 * 3600 * 1000;
                let found: Option<(String, i64)> = sqlx::query_as("SELECT id, created_at FROM runs WHERE idempotency_key = $1")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                match found {
                    Some((id, created)) if created >= day_ago => existing = Some(id),
                    Some(_) => {
                        // An expired key is released for this run.
                        sqlx::query("UPDATE runs SET idempotency_key = NULL WHERE idempotency_key = $1")
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                    }
                    None => {}
                }
            }
            if let (None, Some(cap)) = (&existing, run.max_active) {
                lock_key!(self, tx, &format!("active:{}", run.application));
                let active: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM runs WHERE application = $1 AND trigger_kind = $2 AND state IN ('PENDING', 'STARTED')",
                )
                .bind(&run.application)
                .bind(&run.trigger_kind)
                .fetch_one(&mut *tx)
                .await?;
                if active >= cap {
                    return Err(StoreError::Busy(format!(
                        "{active} {} runs of {:?} are still going (max_concurrency {cap}); try again later",
                        run.trigger_kind, run.application
                    )));
                }
            }
            if existing.is_none() {
                insert_runs!(tx, vec![(run, &sealed)], now);
                notify_work!(self, tx);
            }
            existing
        });
        let id = existing.as_deref().unwrap_or(&run.id);
        let record = self.get_run(id).await?.ok_or_else(|| StoreError::Corrupt(format!("run {id} vanished")))?;
        Ok((record, existing.is_none()))
    }

    /// The run's secret values sealed to its own slot (`run:ID`/`params`).
    pub(crate) fn seal_run_params(&self, run: &NewRun) -> Option<Vec<u8>> {
        if run.secret_params.is_empty() {
            return None;
        }
        let map: serde_json::Map<String, Value> =
            run.secret_params.iter().map(|(k, v)| (k.clone(), Value::String(v.expose().to_string()))).collect();
        Some(self.seal_params_map(&run.id, map))
    }

    /// A run's secret params (name to clear value), sealed to its slot.
    fn seal_params_map(&self, run_id: &str, map: serde_json::Map<String, Value>) -> Vec<u8> {
        let clear = SecretString::new(Value::Object(map).to_string());
        self.inner.sealer.seal(&run_scope(run_id), "params", clear.expose())
    }

    /// `$sealed` (a run's sealed params) with `moved` added, sealed again:
    /// for values that were stored in clear in the run's params and must
    /// not stay readable there (their variable became encrypted). A name
    /// already sealed keeps its sealed value (it is the one the run used).
    pub(crate) fn reseal_run_params(
        &self,
        run_id: &str,
        sealed: Option<&[u8]>,
        moved: Vec<(String, Value)>,
    ) -> Result<Option<Vec<u8>>> {
        let mut map: serde_json::Map<String, Value> = match sealed {
            Some(sealed) => {
                let clear = self.inner.sealer.unseal(&run_scope(run_id), "params", sealed)?;
                serde_json::from_str(clear.expose())
                    .map_err(|e| StoreError::Corrupt(format!("sealed run params: {e}")))?
            }
            None => serde_json::Map::new(),
        };
        let before = map.len();
        for (name, value) in moved {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s,
                other => other.to_string(),
            };
            map.entry(name).or_insert(Value::String(text));
        }
        if map.len() == before {
            return Ok(sealed.map(<[u8]>::to_vec));
        }
        Ok(Some(self.seal_params_map(run_id, map)))
    }

    pub async fn run_secret_params(&self, run_id: &str) -> Result<Vec<(String, SecretString)>> {
        let sealed: Option<Option<Vec<u8>>> = read!(self, db => {
            sqlx::query_scalar("SELECT sealed_params FROM runs WHERE id = $1").bind(run_id).fetch_optional(db).await
        })?;
        let Some(Some(sealed)) = sealed else {
            return Ok(vec![]);
        };
        let clear = self.inner.sealer.unseal(&run_scope(run_id), "params", &sealed)?;
        let map: serde_json::Map<String, Value> =
            serde_json::from_str(clear.expose()).map_err(|e| StoreError::Corrupt(format!("sealed run params: {e}")))?;
        Ok(map.into_iter().map(|(k, v)| (k, SecretString::new(v.as_str().unwrap_or_default()))).collect())
    }

    /// Claims the next due task of one of `queues` for `worker`, with a
    /// lease of `lease`. Marks the task and (if new) its run `STARTED`.
    pub async fn claim_task(&self, worker: &str, queues: &[String], lease: Duration) -> Result<Option<TaskRecord>> {
        if queues.is_empty() {
            return Ok(None);
        }
        let now = self.now_ms();
        let expires = now + lease.as_millis() as i64;
        let list = placeholders(4, queues.len());
        let lock = if self.is_postgres() { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE tasks SET state = 'STARTED', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, \
             started_at = COALESCE(started_at, $3) \
             WHERE id = (SELECT id FROM tasks WHERE state IN ('PENDING', 'RETRY') AND due_at <= $3 AND queue IN ({list}) \
             ORDER BY due_at, id LIMIT 1 {lock}) RETURNING {TASK_COLUMNS}"
        );
        let task = write_tx!(self, tx => {
            let mut q = sqlx::query_as::<_, TaskRow>(&sql).bind(worker).bind(expires).bind(now);
            for queue in queues {
                q = q.bind(queue);
            }
            let row = q.fetch_optional(&mut *tx).await?;
            if let Some(row) = &row {
                sqlx::query("UPDATE runs SET state = 'STARTED', started_at = $1 WHERE id = $2 AND state = 'PENDING'")
                    .bind(now)
                    .bind(&row.1)
                    .execute(&mut *tx)
                    .await?;
            }
            row
        });
        task.map(task_from_row).transpose()
    }

    /// Extends a lease. `false` when the task is no longer this worker's
    /// (lease lost and reclaimed, or revoked): the worker must stop it.
    pub async fn heartbeat(&self, task_id: &str, worker: &str, lease: Duration) -> Result<bool> {
        let expires = self.now_ms() + lease.as_millis() as i64;
        let n = write_tx!(self, tx => {
            sqlx::query("UPDATE tasks SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3 AND state = 'STARTED'")
                .bind(expires)
                .bind(task_id)
                .bind(worker)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Records how `worker`'s attempt at `task_id` ended; see
    /// [`Store::finish_tasks`].
    pub async fn finish_task(&self, task_id: &str, worker: &str, finish: &Finish) -> Result<Option<State>> {
        let item = FinishItem { task_id: task_id.to_string(), worker: worker.to_string(), finish: finish.clone() };
        Ok(self.finish_tasks(std::slice::from_ref(&item)).await?.pop().flatten())
    }

    /// Records how attempts ended, all in one transaction (group commit:
    /// the engine batches the completions that arrive together), each with
    /// its consequences: dependants released, a retry scheduled, waiting
    /// descendants revoked, the run ended. For each item, the run's final
    /// state when that item ended the run; `None` also when the task is no
    /// longer that worker's (lease lost, revoked), which changes nothing.
    pub async fn finish_tasks(&self, items: &[FinishItem]) -> Result<Vec<Option<State>>> {
        let now = self.now_ms();
        let run_lock = if self.is_postgres() { "FOR UPDATE" } else { "" };
        let mut results: Vec<Option<State>> = vec![None; items.len()];
        if items.is_empty() {
            return Ok(results);
        }
        let list = placeholders(1, items.len());
        let sql = format!("SELECT id, run_id FROM tasks WHERE id IN ({list})");
        let sorted = write_tx!(self, tx => {
            // Run rows are locked in run-id order, so two batches (from two
            // processes) cannot deadlock on each other.
            let mut q = sqlx::query_as::<_, (String, String)>(&sql);
            for item in items {
                q = q.bind(&item.task_id);
            }
            let runs: std::collections::HashMap<String, String> = q.fetch_all(&mut *tx).await?.into_iter().collect();
            let mut order: Vec<usize> = (0..items.len()).collect();
            order.sort_by_key(|&i| runs.get(&items[i].task_id).cloned().unwrap_or_default());
            let mut ended = Vec::with_capacity(items.len());
            let mut released = false;
            for &i in &order {
                let FinishItem { task_id, worker, finish } = &items[i];
                let Some(run_id) = runs.get(task_id) else {
                    ended.push(None);
                    continue;
                };
                // Completions of one run are serialized, so exactly one of them
                // sees the run's last task finish.
                sqlx::query(&format!("SELECT id FROM runs WHERE id = $1 {run_lock}")).bind(run_id).fetch_one(&mut *tx).await?;
                // Checked again under the locks: a revoke (which takes the run
                // lock) or a lease requeue may have come between.
                let still_ours: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT id FROM tasks WHERE id = $1 AND lease_owner = $2 AND state = 'STARTED' {run_lock}"
                ))
                .bind(task_id)
                .bind(worker)
                .fetch_optional(&mut *tx)
                .await?;
                if still_ours.is_none() {
                    ended.push(None);
                    continue;
                }
                match finish {
                    Finish::Success { output, sealed_output, result, children } => {
                        let sealed = sealed_output
                            .as_ref()
                            .map(|full| self.inner.sealer.seal(&task_scope(task_id), "output", full.expose()));
                        sqlx::query(
                            "UPDATE tasks SET state = 'SUCCESS', output = $1, sealed_output = $2, result = $3, traceback = NULL, \
                             finished_at = $4, lease_owner = NULL, lease_expires_at = NULL WHERE id = $5",
                        )
                        .bind(output.as_ref().map(Value::to_string))
                        .bind(sealed)
                        .bind(result)
                        .bind(now)
                        .bind(task_id)
                        .execute(&mut *tx)
                        .await?;
                        if !children.is_empty() {
                            let list = placeholders(2, children.len());
                            let dec = format!(
                                "UPDATE tasks SET waiting_on = waiting_on - 1 WHERE run_id = $1 AND state = 'WAITING' \
                                 AND step_name IN ({list})"
                            );
                            let mut q = sqlx::query(&dec).bind(run_id);
                            for c in children {
                                q = q.bind(c);
                            }
                            q.execute(&mut *tx).await?;
                            sqlx::query(
                                "UPDATE tasks SET state = 'PENDING', due_at = $1 WHERE run_id = $2 AND state = 'WAITING' AND waiting_on <= 0",
                            )
                            .bind(now)
                            .bind(run_id)
                            .execute(&mut *tx)
                            .await?;
                        }
                    }
                    Finish::Retry { due_at, result, traceback } => {
                        sqlx::query(
                            "UPDATE tasks SET state = 'RETRY', due_at = $1, result = $2, traceback = $3, lease_owner = NULL, \
                             lease_expires_at = NULL WHERE id = $4",
                        )
                        .bind(due_at.as_millisecond())
                        .bind(result)
                        .bind(traceback)
                        .bind(task_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Finish::Failure { result, traceback, skip } => {
                        sqlx::query(
                            "UPDATE tasks SET state = 'FAILURE', result = $1, traceback = $2, finished_at = $3, lease_owner = NULL, \
                             lease_expires_at = NULL WHERE id = $4",
                        )
                        .bind(result)
                        .bind(traceback)
                        .bind(now)
                        .bind(task_id)
                        .execute(&mut *tx)
                        .await?;
                        if !skip.is_empty() {
                            let list = placeholders(4, skip.len());
                            let sql = format!(
                                "UPDATE tasks SET state = 'REVOKED', result = $1, finished_at = $2 WHERE run_id = $3 \
                                 AND state = 'WAITING' AND step_name IN ({list})"
                            );
                            let mut q = sqlx::query(&sql).bind("not run: an input step failed").bind(now).bind(run_id);
                            for s in skip {
                                q = q.bind(s);
                            }
                            q.execute(&mut *tx).await?;
                        }
                    }
                }
                if !matches!(finish, Finish::Failure { .. }) {
                    released = true;
                }
                let run_ended = finalize_run!(tx, run_id, now)?;
                ended.push(run_ended);
            }
            if released {
                notify_work!(self, tx);
            }
            order.into_iter().zip(ended).collect::<Vec<_>>()
        });
        for (i, state) in sorted {
            results[i] = state;
        }
        Ok(results)
    }

    /// Puts back tasks whose lease expired (their worker died), as due
    /// now. Returns `(run_id, task_id, attempts)` of each.
    pub async fn requeue_expired(&self) -> Result<Vec<(String, String, i64)>> {
        let now = self.now_ms();
        write_tx!(self, tx => {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "UPDATE tasks SET state = 'PENDING', due_at = $1, lease_owner = NULL, lease_expires_at = NULL \
                 WHERE state = 'STARTED' AND lease_expires_at < $1 RETURNING run_id, id, attempts",
            )
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            if !rows.is_empty() {
                notify_work!(self, tx);
            }
            Ok::<_, StoreError>(rows)
        })
    }

    /// Revokes a run: every task not finished becomes `REVOKED` and the run
    /// ends `REVOKED`. Returns the ids of tasks that were `STARTED` (their
    /// workers must stop them). Conflict when the run had already ended.
    pub async fn revoke_run(&self, run_id: &str, reason: &str) -> Result<Vec<String>> {
        let now = self.now_ms();
        let run_lock = if self.is_postgres() { "FOR UPDATE" } else { "" };
        write_tx!(self, tx => {
            let st: Option<String> = sqlx::query_scalar(&format!("SELECT state FROM runs WHERE id = $1 {run_lock}"))
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(st) = st else { return Err(StoreError::NotFound(format!("run {run_id:?}"))) };
            if state(&st)?.is_final() {
                return Err(StoreError::Conflict(format!("run {run_id} has already ended ({st})")));
            }
            let started: Vec<String> = sqlx::query_scalar("SELECT id FROM tasks WHERE run_id = $1 AND state = 'STARTED'")
                .bind(run_id)
                .fetch_all(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE tasks SET state = 'REVOKED', result = $1, finished_at = $2, lease_owner = NULL, lease_expires_at = NULL \
                 WHERE run_id = $3 AND state IN ('WAITING', 'PENDING', 'STARTED', 'RETRY')",
            )
            .bind(reason)
            .bind(now)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE runs SET state = 'REVOKED', error = $1, finished_at = $2 WHERE id = $3")
                .bind(reason)
                .bind(now)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
            Ok::<_, StoreError>(started)
        })
    }

    /// Appends log lines in one transaction (callers batch them).
    pub async fn append_logs(&self, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        write_tx!(self, tx => {
            // 5 binds a row; SQLite allows 32766 binds a statement.
            for chunk in lines.chunks(1000) {
                let values =
                    (0..chunk.len()).map(|i| format!("({})", placeholders(i * 5 + 1, 5))).collect::<Vec<_>>().join(", ");
                let sql = format!("INSERT INTO task_logs (run_id, task_id, ts, level, line) VALUES {values}");
                let mut q = sqlx::query(&sql);
                for l in chunk {
                    q = q.bind(&l.run_id).bind(&l.task_id).bind(l.ts.as_millisecond()).bind(&l.level).bind(&l.line);
                }
                q.execute(&mut *tx).await?;
            }
        });
        Ok(())
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let row: Option<RunRow> = read!(self, db => sqlx::query_as(&sql).bind(id).fetch_optional(db).await)?;
        row.map(run_from_row).transpose()
    }

    /// Runs of an application, newest first.
    pub async fn list_runs(&self, application: &str, limit: i64, offset: i64) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE application = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        );
        let rows: Vec<RunRow> =
            read!(self, db => sqlx::query_as(&sql).bind(application).bind(limit).bind(offset).fetch_all(db).await)?;
        rows.into_iter().map(run_from_row).collect()
    }

    /// Ids of runs not ended, oldest first.
    pub async fn active_runs(&self) -> Result<Vec<String>> {
        read!(self, db => {
            sqlx::query_scalar("SELECT id FROM runs WHERE state IN ('PENDING', 'STARTED') ORDER BY created_at").fetch_all(db).await
        })
        .map_err(Into::into)
    }

    pub async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let row: Option<TaskRow> = read!(self, db => sqlx::query_as(&sql).bind(id).fetch_optional(db).await)?;
        row.map(task_from_row).transpose()
    }

    /// The saved data of a run's succeeded steps, in full (unsealed where
    /// the stored copy is masked), by step name: what the next steps read.
    /// Never for a response: it may hold the run's secrets.
    pub async fn run_outputs(&self, run_id: &str) -> Result<std::collections::BTreeMap<String, Value>> {
        type Row = (String, String, Option<String>, Option<Vec<u8>>);
        let rows: Vec<Row> = read!(self, db => {
            sqlx::query_as(
                "SELECT id, step_name, output, sealed_output FROM tasks WHERE run_id = $1 AND state = 'SUCCESS' \
                 ORDER BY step_index",
            )
            .bind(run_id)
            .fetch_all(db)
            .await
        })?;
        let mut out = std::collections::BTreeMap::new();
        for (id, step_name, output, sealed) in rows {
            let full = match (sealed, output) {
                (Some(sealed), _) => {
                    let clear = self.inner.sealer.unseal(&task_scope(&id), "output", &sealed)?;
                    serde_json::from_str(clear.expose())
                        .map_err(|e| StoreError::Corrupt(format!("sealed output of task {id}: {e}")))?
                }
                (None, Some(output)) => json_of(&output)?,
                (None, None) => continue,
            };
            out.insert(step_name, full);
        }
        Ok(out)
    }

    /// A run's tasks in application order.
    pub async fn run_tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE run_id = $1 ORDER BY step_index");
        let rows: Vec<TaskRow> = read!(self, db => sqlx::query_as(&sql).bind(run_id).fetch_all(db).await)?;
        rows.into_iter().map(task_from_row).collect()
    }

    /// Log lines of a run, or of one of its tasks, in order; at most
    /// `limit` after line number `after` (for following a live log).
    pub async fn logs(
        &self,
        run_id: &str,
        task_id: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, LogLine)>> {
        type Row = (i64, String, String, i64, String, String);
        let rows: Vec<Row> = read!(self, db => {
            match task_id {
                Some(t) => sqlx::query_as(
                    "SELECT id, run_id, task_id, ts, level, line FROM task_logs WHERE task_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(t)
                .bind(after)
                .bind(limit)
                .fetch_all(db)
                .await,
                None => sqlx::query_as(
                    "SELECT id, run_id, task_id, ts, level, line FROM task_logs WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(run_id)
                .bind(after)
                .bind(limit)
                .fetch_all(db)
                .await,
            }
        })?;
        rows.into_iter()
            .map(|(id, run_id, task_id, t, level, line)| Ok((id, LogLine { run_id, task_id, ts: ts(t)?, level, line })))
            .collect()
    }
}

impl Store {
    /// Wakeups for workers: on PostgreSQL a receiver that yields whenever
    /// another process (or this one) made work claimable (`LISTEN`); on
    /// SQLite `None` (poll).
    pub async fn work_wakeups(&self) -> Result<Option<tokio::sync::mpsc::Receiver<()>>> {
        let crate::Backend::Postgres { pool } = &self.inner.backend else { return Ok(None) };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(WORK_CHANNEL).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(_) => {
                        // A full channel already holds a wakeup.
                        if let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }
}
