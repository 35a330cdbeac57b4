//! Schedules, the firing transaction, scheduler leadership, settings and the
//! run facts the jobs grid needs.
//!
//! A tick is fired by one transaction that moves the schedule's next fire
//! time forward *only if it still is the time the scheduler saw*
//! (compare-and-set) and inserts the run. A crash before the commit loses
//! nothing (the tick is still due); after it, the tick cannot fire again. An
//! edit, a disable or a delete that commits first makes the fire a no-op.

use std::collections::HashMap;

use jiff::Timestamp;
use serde_json::Value;

use crate::runs::{insert_runs, notify_work, NewRun, NewTask, RunRecord};
use crate::secrets::app_scope;
use crate::{json_of, lock_key, read, ts, write_tx, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRecord {
    pub id: String,
    pub application: String,
    pub entry_id: Option<String>,
    /// `schedule_type`.
    pub kind: String,
    /// `schedule_info`, as written.
    pub info: Value,
    pub timezone: String,
    pub params: Value,
    pub enabled: bool,
    pub next_fire_at: Option<Timestamp>,
    pub last_fire_at: Option<Timestamp>,
    /// Why the last tick started no run (the application could not run).
    pub last_error: Option<String>,
    pub last_run_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A schedule to create or replace.
#[derive(Debug, Clone)]
pub struct PutSchedule {
    pub id: String,
    pub application: String,
    pub entry_id: Option<String>,
    pub kind: String,
    pub info: Value,
    pub timezone: String,
    pub params: Value,
    pub enabled: bool,
    /// Used unless the stored schedule has the same rule, time zone and
    /// enabled flag: re-saving a schedule unchanged keeps its next tick, so
    /// it neither fires twice nor skips one.
    pub next_fire_at: Option<Timestamp>,
    /// When counting starts (`run_every`): stored as `created_at` of a new
    /// schedule, the same instant `next_fire_at` was computed from.
    pub anchor: Timestamp,
}

/// One due tick for [`Store::fire_schedules`].
#[derive(Debug, Clone)]
pub struct Firing {
    pub schedule_id: String,
    /// The next fire time and the version (`updated_at`) the scheduler
    /// read; the fire happens only if both are still stored, so an edit
    /// that commits first (even one keeping the tick) wins.
    pub due_at: Timestamp,
    pub version: Timestamp,
    pub next_fire_at: Option<Timestamp>,
    /// None when the application could not be prepared (`error` says why):
    /// the tick is spent without a run.
    pub run: Option<NewRun>,
    pub error: Option<String>,
    /// Scheduled jobs have one running instance: a tick waits (stays due)
    /// while a non-automated run of the application is still going.
    pub one_instance: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// The run (if any) was created and the schedule moved on.
    Started(Option<String>),
    /// A run of the job is still going; the tick stays due.
    Blocked,
    /// The schedule changed, was disabled or deleted since it was read.
    Stale,
}

/// Scheduler leadership. On PostgreSQL a session advisory lock held by a
/// connection of its own (taken out of the pool): when the process dies or
/// the connection breaks, the database releases it and another server takes
/// over. SQLite has one machine and needs no election.
#[derive(Debug)]
pub struct Leadership {
    conn: Option<sqlx::PgConnection>,
}

impl Leadership {
    /// Whether the lock is still held: the connection answers within 5 s.
    pub async fn still_held(&mut self) -> bool {
        match &mut self.conn {
            None => true,
            Some(conn) => matches!(
                tokio::time::timeout(std::time::Duration::from_secs(5), sqlx::query("SELECT 1").execute(&mut *conn))
                    .await,
                Ok(Ok(_))
            ),
        }
    }
}

const SCHEDULE_COLUMNS: &str = "id, application, entry_id, kind, spec, timezone, params, enabled, next_fire_at, \
                                last_fire_at, last_error, last_run_id, created_at, updated_at";
type ScheduleRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    bool,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

fn schedule_from_row(r: ScheduleRow) -> Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        id: r.0,
        application: r.1,
        entry_id: r.2,
        kind: r.3,
        info: json_of(&r.4)?,
        timezone: r.5,
        params: json_of(&r.6)?,
        enabled: r.7,
        next_fire_at: r.8.map(ts).transpose()?,
        last_fire_at: r.9.map(ts).transpose()?,
        last_error: r.10,
        last_run_id: r.11,
        created_at: ts(r.12)?,
        updated_at: ts(r.13)?,
    })
}

/// Runs in these states are still going.
const ACTIVE: &str = "state IN ('PENDING', 'STARTED')";
/// Arbitrary constant naming the scheduler's leadership lock (the second
/// key is the schema).
const LEADER_KEY: i32 = 0x6a63_7473;

impl Store {
    /// Which of the named applications have a scheduled or manual run still
    /// going (their ticks wait).
    pub async fn active_instance_apps(&self, apps: &[&str]) -> Result<std::collections::HashSet<String>> {
        if apps.is_empty() {
            return Ok(Default::default());
        }
        let sql = format!(
            "SELECT DISTINCT application FROM runs WHERE application IN ({}) AND {ACTIVE} AND trigger_kind <> 'automated'",
            crate::runs::placeholders(1, apps.len())
        );
        let rows: Vec<String> = read!(self, db => {
            let mut q = sqlx::query_scalar(&sql);
            for a in apps {
                q = q.bind(*a);
            }
            q.fetch_all(db).await
        })?;
        Ok(rows.into_iter().collect())
    }

    /// Creates or replaces (by id) a schedule. The application must exist;
    /// the check and the write hold the application's lock, so a schedule
    /// never outlives a concurrently deleted application. Returns the stored
    /// schedule and whether it was created.
    pub async fn put_schedule(&self, s: &PutSchedule) -> Result<(ScheduleRecord, bool)> {
        let now = self.now_ms();
        let info = s.info.to_string();
        let anchor = s.anchor.as_millisecond();
        let created = write_tx!(self, tx => {
            lock_key!(self, tx, &app_scope(&s.application));
            // A flow's schedule (`.flow.NAME`) names a flow.
            let exists: Option<String> = match s.application.strip_prefix(".flow.") {
                Some(flow) => sqlx::query_scalar("SELECT name FROM flows WHERE name = $1").bind(flow),
                None => sqlx::query_scalar("SELECT name FROM applications WHERE name = $1").bind(&s.application),
            }
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(junction_core::Invalid::one(
                    "application_id",
                    "exists",
                    format!("no application named {:?} is stored", s.application),
                )
                .into());
            }
            let old: Option<(String, String, String, bool, Option<i64>)> =
                sqlx::query_as("SELECT kind, spec, timezone, enabled, next_fire_at FROM schedules WHERE id = $1")
                    .bind(&s.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let next = match &old {
                Some((kind, spec, tz, enabled, next))
                    if *kind == s.kind && json_of(spec)? == s.info && *tz == s.timezone && *enabled == s.enabled =>
                {
                    *next
                }
                _ => s.next_fire_at.map(|t| t.as_millisecond()),
            };
            sqlx::query(
                "INSERT INTO schedules (id, application, entry_id, kind, spec, timezone, params, enabled, next_fire_at, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $10) \
                 ON CONFLICT (id) DO UPDATE SET application = excluded.application, entry_id = excluded.entry_id, \
                 kind = excluded.kind, spec = excluded.spec, timezone = excluded.timezone, params = excluded.params, \
                 enabled = excluded.enabled, next_fire_at = excluded.next_fire_at, last_error = NULL, \
                 updated_at = excluded.updated_at",
            )
            .bind(&s.id)
            .bind(&s.application)
            .bind(&s.entry_id)
            .bind(&s.kind)
            .bind(&info)
            .bind(&s.timezone)
            .bind(s.params.to_string())
            .bind(s.enabled)
            .bind(next)
            .bind(now)
            .bind(anchor)
            .execute(&mut *tx)
            .await?;
            old.is_none()
        });
        let record = self.get_schedule(&s.id).await?.ok_or_else(|| StoreError::Corrupt("schedule vanished".into()))?;
        Ok((record, created))
    }

    pub async fn get_schedule(&self, id: &str) -> Result<Option<ScheduleRecord>> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1");
        let row: Option<ScheduleRow> = read!(self, db => sqlx::query_as(&sql).bind(id).fetch_optional(db).await)?;
        row.map(schedule_from_row).transpose()
    }

    /// All schedules, or those of one application, in creation order.
    pub async fn list_schedules(&self, application: Option<&str>) -> Result<Vec<ScheduleRecord>> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE ($1 IS NULL OR application = $1) ORDER BY created_at, id"
        );
        let rows: Vec<ScheduleRow> = read!(self, db => sqlx::query_as(&sql).bind(application).fetch_all(db).await)?;
        rows.into_iter().map(schedule_from_row).collect()
    }

    /// Whether it existed. A tick due at this moment cannot fire after the
    /// delete commits (the fire's compare-and-set finds no row).
    pub async fn delete_schedule(&self, id: &str) -> Result<bool> {
        let n = write_tx!(self, tx => {
            sqlx::query("DELETE FROM schedules WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// Turns one schedule on or off; `next_fire_at` is the tick to wait for
    /// when it is turned on (ticks missed while off are not caught up).
    pub async fn set_schedule_enabled(&self, id: &str, enabled: bool, next_fire_at: Option<Timestamp>) -> Result<bool> {
        let now = self.now_ms();
        let n = write_tx!(self, tx => {
            sqlx::query(
                "UPDATE schedules SET enabled = $2, updated_at = $3, \
                 next_fire_at = CASE WHEN $2 AND enabled THEN next_fire_at ELSE $4 END WHERE id = $1",
            )
            .bind(id)
            .bind(enabled)
            .bind(now)
            .bind(next_fire_at.map(|t| t.as_millisecond()))
            .execute(&mut *tx)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Enabled schedules due at `now`, earliest first, after the cursor
    /// `(next_fire_at, id)` of the previous page when given.
    pub async fn due_schedules(
        &self,
        now: Timestamp,
        limit: i64,
        after: Option<(Timestamp, &str)>,
    ) -> Result<Vec<ScheduleRecord>> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE enabled = TRUE AND next_fire_at <= $1 \
             AND (next_fire_at, id) > ($3, $4) ORDER BY next_fire_at, id LIMIT $2"
        );
        let (after_ms, after_id) = after.map_or((i64::MIN, ""), |(t, id)| (t.as_millisecond(), id));
        let rows: Vec<ScheduleRow> = read!(self, db => {
            sqlx::query_as(&sql).bind(now.as_millisecond()).bind(limit).bind(after_ms).bind(after_id).fetch_all(db).await
        })?;
        rows.into_iter().map(schedule_from_row).collect()
    }

    /// The earliest next fire time of an enabled schedule (after `after`
    /// when given: the ticks already due but held back do not count).
    pub async fn next_due(&self, after: Option<Timestamp>) -> Result<Option<Timestamp>> {
        let after = after.map_or(i64::MIN, |t| t.as_millisecond());
        let ms: Option<i64> = read!(self, db => {
            sqlx::query_scalar("SELECT MIN(next_fire_at) FROM schedules WHERE enabled = TRUE AND next_fire_at > $1")
                .bind(after)
                .fetch_one(db)
                .await
        })?;
        ms.map(ts).transpose()
    }

    /// Fires a batch of due ticks in one transaction (see the module
    /// comment); one answer per firing, in order. The runs are inserted
    /// with multi-row statements.
    pub async fn fire_schedules(&self, firings: &[Firing]) -> Result<Vec<Fired>> {
        let now = self.now_ms();
        let sealed: Vec<Option<Vec<u8>>> =
            firings.iter().map(|f| f.run.as_ref().and_then(|r| self.seal_run_params(r))).collect();
        let single: std::collections::BTreeSet<&str> = firings
            .iter()
            .filter(|f| f.one_instance)
            .filter_map(|f| f.run.as_ref().map(|r| r.application.as_str()))
            .collect();
        let keys: Vec<String> = single.iter().map(|a| format!("active:{a}")).collect();
        let lock_sql = format!(
            "SELECT pg_advisory_xact_lock(hashtext(x)) FROM (SELECT x FROM (VALUES {}) AS v(x) ORDER BY x) AS s",
            (1..=keys.len()).map(|i| format!("(${i})")).collect::<Vec<_>>().join(", ")
        );
        let active_sql = format!(
            "SELECT DISTINCT application FROM runs WHERE application IN ({}) AND {ACTIVE} AND trigger_kind <> 'automated'",
            crate::runs::placeholders(1, single.len())
        );
        let out = write_tx!(self, tx => {
            // Two ticks of one job fired by two servers at once must not
            // both see "nothing running": the jobs are locked in name order.
            let mut active = std::collections::HashSet::new();
            if !single.is_empty() {
                if self.is_postgres() {
                    let mut q = sqlx::query(&lock_sql);
                    for k in &keys {
                        q = q.bind(k);
                    }
                    q.execute(&mut *tx).await?;
                }
                let mut q = sqlx::query_scalar::<_, String>(&active_sql);
                for a in &single {
                    q = q.bind(*a);
                }
                active.extend(q.fetch_all(&mut *tx).await?);
            }
            let mut out = Vec::with_capacity(firings.len());
            let mut inserts: Vec<(&NewRun, &Option<Vec<u8>>)> = Vec::new();
            for (f, sealed) in firings.iter().zip(&sealed) {
                if let (true, Some(run)) = (f.one_instance, &f.run) {
                    // Running, or started by an earlier tick of this batch.
                    if !active.insert(run.application.clone()) {
                        out.push(Fired::Blocked);
                        continue;
                    }
                }
                let moved = sqlx::query(
                    "UPDATE schedules SET next_fire_at = $3, last_fire_at = $4, last_error = $5, \
                     last_run_id = COALESCE($6, last_run_id) \
                     WHERE id = $1 AND enabled = TRUE AND next_fire_at = $2 AND updated_at = $7",
                )
                .bind(&f.schedule_id)
                .bind(f.due_at.as_millisecond())
                .bind(f.next_fire_at.map(|t| t.as_millisecond()))
                .bind(now)
                .bind(&f.error)
                .bind(f.run.as_ref().map(|r| &r.id))
                .bind(f.version.as_millisecond())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved == 0 {
                    // The tick did not fire; a later tick of the same job may.
                    if let (true, Some(run)) = (f.one_instance, &f.run) {
                        active.remove(&run.application);
                    }
                    out.push(Fired::Stale);
                    continue;
                }
                match &f.run {
                    Some(run) => {
                        inserts.push((run, sealed));
                        out.push(Fired::Started(Some(run.id.clone())));
                    }
                    None => out.push(Fired::Started(None)),
                }
            }
            if !inserts.is_empty() {
                insert_runs!(tx, inserts, now);
                notify_work!(self, tx);
            }
            out
        });
        Ok(out)
    }

    /// Tries to become the scheduler leader (see [`Leadership`]). The lock
    /// is per schema, so deployments sharing one database elect apart.
    pub async fn try_lead(&self) -> Result<Option<Leadership>> {
        match &self.inner.backend {
            crate::Backend::Sqlite { .. } => Ok(Some(Leadership { conn: None })),
            crate::Backend::Postgres { pool } => {
                let mut conn = pool.acquire().await?;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
                    .bind(LEADER_KEY)
                    .fetch_one(&mut *conn)
                    .await?;
                if !got {
                    return Ok(None);
                }
                // A dead or cut-off leader must lose the lock in seconds,
                // not when TCP gives up (hours): the server closes this
                // session when it goes quiet (the leader pings every
                // second) or its peer stops answering keepalives.
                for setting in [
                    "SET idle_session_timeout = '60s'",
                    "SET tcp_keepalives_idle = 10",
                    "SET tcp_keepalives_interval = 5",
                    "SET tcp_keepalives_count = 3",
                ] {
                    if let Err(e) = sqlx::query(setting).execute(&mut *conn).await {
                        tracing::debug!(error = %e, setting, "leadership connection setting not applied");
                    }
                }
                // Out of the pool: a connection holding the lock must never
                // serve another caller, and closing it releases the lock.
                Ok(Some(Leadership { conn: Some(conn.detach()) }))
            }
        }
    }

    pub async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        read!(self, db => {
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(db).await
        })
        .map_err(Into::into)
    }

    pub async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        write_tx!(self, tx => {
            sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// What the jobs grid shows of every application's runs, in two reads
    /// whatever the number of applications: how many runs are still going,
    /// and the latest run (one index probe per application).
    pub async fn job_run_summaries(&self) -> Result<(HashMap<String, usize>, HashMap<String, RunRecord>)> {
        let counts: Vec<(String, i64)> = read!(self, db => {
            sqlx::query_as(&format!("SELECT application, COUNT(*) FROM runs WHERE {ACTIVE} GROUP BY application"))
                .fetch_all(db)
                .await
        })?;
        let sql = format!(
            "SELECT {} FROM runs WHERE id IN (SELECT (SELECT x.id FROM runs x WHERE x.application = a.name \
             ORDER BY x.created_at DESC, x.id DESC LIMIT 1) FROM applications a)",
            crate::runs::RUN_COLUMNS
        );
        let rows: Vec<crate::runs::RunRow> = read!(self, db => sqlx::query_as(&sql).fetch_all(db).await)?;
        let mut latest = HashMap::with_capacity(rows.len());
        for row in rows {
            let run = crate::runs::run_from_row(row)?;
            latest.insert(run.application.clone(), run);
        }
        Ok((counts.into_iter().map(|(app, n)| (app, usize::try_from(n).unwrap_or(0))).collect(), latest))
    }

    /// The runs of `application` still going, oldest first.
    pub async fn active_runs_of(&self, application: &str) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {} FROM runs WHERE application = $1 AND {ACTIVE} ORDER BY created_at, id",
            crate::runs::RUN_COLUMNS
        );
        let rows: Vec<crate::runs::RunRow> =
            read!(self, db => sqlx::query_as(&sql).bind(application).fetch_all(db).await)?;
        rows.into_iter().map(crate::runs::run_from_row).collect()
    }

    /// Start times of the last run of `application` that started before
    /// `run` was created, and of the last successful one: spec 000's
    /// `lastRunDateUtc` / `lastSuccessfulRunDateUtc`. Runs stopped before
    /// they started never executed and do not count.
    pub async fn previous_run_starts(&self, run: &RunRecord) -> Result<(Option<Timestamp>, Option<Timestamp>)> {
        let before = run.created_at.as_millisecond();
        // Both in one round trip: two scalar subqueries on the
        // (application, created_at) index.
        let sub = |filter: &str| {
            format!(
                "(SELECT started_at FROM runs WHERE application = $1 AND started_at IS NOT NULL \
                 AND (created_at < $2 OR (created_at = $2 AND id < $3)) {filter} ORDER BY created_at DESC, id DESC LIMIT 1)"
            )
        };
        let sql = format!("SELECT {}, {}", sub(""), sub("AND state = 'SUCCESS'"));
        let (last, good): (Option<i64>, Option<i64>) = read!(self, db => {
            sqlx::query_as(&sql).bind(&run.application).bind(before).bind(&run.id).fetch_one(db).await
        })?;
        Ok((last.map(ts).transpose()?, good.map(ts).transpose()?))
    }
}
