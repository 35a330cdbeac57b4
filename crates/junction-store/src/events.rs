//! Companies, their Custom CD services, and the CI/CD jobs their agents
//! report (spec 002). Jobs arrive in batches (the engine group-commits):
//! one transaction stores a batch, creating each new service user once.

use std::collections::HashMap;

use jiff::Timestamp;
use junction_core::cicd::{CicdJob, OptionalField};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::runs::{insert_runs, notify_work, NewRun, NewTask};
use crate::{json_of, read, ts, write_tx, Result, Store, StoreError};

/// The kind of CI/CD service spec 002's webhook reports into.
pub const CUSTOM_CD: &str = "custom_cd";

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CompanyRecord {
    pub id: i64,
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ServiceRecord {
    pub id: i64,
    pub company_id: i64,
    pub name: String,
    /// `custom_cd`.
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A stored CI/CD job: the normalised message and Junction's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CicdJobRecord {
    /// Junction's item id (spec 002: `job_id` is not trusted to be unique).
    pub id: i64,
    pub company_id: i64,
    #[serde(flatten)]
    pub job: CicdJob,
    /// The service user standing for `triggered_by`.
    pub service_user_id: i64,
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
}

/// A job to store, with the runs its triggers start (in the same
/// transaction: no event without its runs, no run without its event).
#[derive(Debug, Clone)]
pub struct NewCicdJob {
    pub company_id: i64,
    pub job: CicdJob,
    /// Each run's context gets the stored item's id as `EventId`.
    pub runs: Vec<NewRun>,
}

/// Filters of a job listing; all optional.
#[derive(Debug, Clone, Default)]
pub struct CicdJobFilter {
    pub service_id: Option<i64>,
    /// Matches `repo_id` or `repo_name`.
    pub repo: Option<String>,
    pub status: Option<String>,
    /// `job_start_time` from (inclusive) and to (exclusive), epoch seconds.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

type JobRow =
    (i64, i64, i64, String, String, String, Option<String>, Option<String>, String, i64, String, i64, i64, String, i64);
const JOB_COLUMNS: &str = "id, company_id, service_id, job_id, commit_sha, status, repo_id, repo_name, triggered_by, \
                           service_user_id, job_type, job_start_time, job_duration, optional, received_at";

fn job_from_row(r: JobRow) -> Result<CicdJobRecord> {
    let optional: Vec<OptionalField> = match json_of(&r.13)? {
        Value::Array(items) => items
            .into_iter()
            .map(|o| OptionalField {
                key: o["key"].as_str().unwrap_or_default().to_string(),
                kind: o["type"].as_str().unwrap_or_default().to_string(),
                value: o["value"].clone(),
            })
            .collect(),
        _ => return Err(StoreError::Corrupt("cicd job optional fields".into())),
    };
    Ok(CicdJobRecord {
        id: r.0,
        company_id: r.1,
        job: CicdJob {
            service_id: r.2,
            job_id: r.3,
            commit_sha: r.4,
            status: r.5,
            repo_id: r.6,
            repo_name: r.7,
            triggered_by: r.8,
            job_type: r.10,
            job_start_time: r.11,
            job_duration: r.12,
            optional,
        },
        service_user_id: r.9,
        received_at: ts(r.14)?,
    })
}

impl Store {
    pub async fn create_company(&self, name: &str) -> Result<CompanyRecord> {
        let now = self.now_ms();
        let id: i64 = write_tx!(self, tx => {
            sqlx::query_scalar("INSERT INTO companies (name, created_at) VALUES ($1, $2) RETURNING id")
                .bind(name)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!("a company named {name:?} exists")),
                    other => other,
                })?
        });
        Ok(CompanyRecord { id, name: name.to_string(), created_at: ts(now)? })
    }

    pub async fn list_companies(&self) -> Result<Vec<CompanyRecord>> {
        let rows: Vec<(i64, String, i64)> = read!(self, db => {
            sqlx::query_as("SELECT id, name, created_at FROM companies ORDER BY id").fetch_all(db).await
        })?;
        rows.into_iter().map(|(id, name, at)| Ok(CompanyRecord { id, name, created_at: ts(at)? })).collect()
    }

    pub async fn get_company(&self, id: i64) -> Result<Option<CompanyRecord>> {
        let row: Option<(i64, String, i64)> = read!(self, db => {
            sqlx::query_as("SELECT id, name, created_at FROM companies WHERE id = $1").bind(id).fetch_optional(db).await
        })?;
        row.map(|(id, name, at)| Ok(CompanyRecord { id, name, created_at: ts(at)? })).transpose()
    }

    pub async fn create_cicd_service(&self, company_id: i64, name: &str) -> Result<ServiceRecord> {
        let now = self.now_ms();
        let id: i64 = write_tx!(self, tx => {
            sqlx::query_scalar(
                "INSERT INTO cicd_services (company_id, name, kind, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(company_id)
            .bind(name)
            .bind(CUSTOM_CD)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("the company has a service named {name:?}")),
                other => other,
            })?
        });
        Ok(ServiceRecord { id, company_id, name: name.to_string(), kind: CUSTOM_CD.into(), created_at: ts(now)? })
    }

    pub async fn list_cicd_services(&self, company_id: i64) -> Result<Vec<ServiceRecord>> {
        let rows: Vec<(i64, i64, String, String, i64)> = read!(self, db => {
            sqlx::query_as("SELECT id, company_id, name, kind, created_at FROM cicd_services WHERE company_id = $1 ORDER BY id")
                .bind(company_id)
                .fetch_all(db)
                .await
        })?;
        rows.into_iter()
            .map(|(id, company_id, name, kind, at)| {
                Ok(ServiceRecord { id, company_id, name, kind, created_at: ts(at)? })
            })
            .collect()
    }

    pub async fn get_cicd_service(&self, id: i64) -> Result<Option<ServiceRecord>> {
        let row: Option<(i64, i64, String, String, i64)> = read!(self, db => {
            sqlx::query_as("SELECT id, company_id, name, kind, created_at FROM cicd_services WHERE id = $1")
                .bind(id)
                .fetch_optional(db)
                .await
        })?;
        row.map(|(id, company_id, name, kind, at)| {
            Ok(ServiceRecord { id, company_id, name, kind, created_at: ts(at)? })
        })
        .transpose()
    }

    /// Stores a batch of jobs of any companies in one transaction, with the
    /// runs their triggers start; each job gets its own item id. Service
    /// users are created on first sight. Returns the stored jobs and the
    /// ids of the runs started, per job.
    pub async fn insert_cicd_jobs(&self, jobs: &[NewCicdJob]) -> Result<Vec<(CicdJobRecord, Vec<String>)>> {
        let now = self.now_ms();
        // Service users never change once made: ids seen committed before
        // need no statement.
        let known: HashMap<(i64, String), i64> = {
            let cache = self.inner.service_users.lock().unwrap_or_else(|e| e.into_inner());
            jobs.iter()
                .filter_map(|j| {
                    let key = (j.company_id, j.job.triggered_by.clone());
                    cache.get(&key).map(|id| (key, *id))
                })
                .collect()
        };
        let mut optional = Vec::with_capacity(jobs.len());
        for j in jobs {
            optional.push(serde_json::to_string(&j.job.optional).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        let (ids, users) = write_tx!(self, tx => {
            let mut users = known.clone();
            // New users in one order, so two servers' batches cannot
            // deadlock on each other's inserts.
            let mut new_users: Vec<(i64, &str)> = jobs
                .iter()
                .map(|j| (j.company_id, j.job.triggered_by.as_str()))
                .filter(|(c, n)| !users.contains_key(&(*c, n.to_string())))
                .collect();
            new_users.sort_unstable();
            new_users.dedup();
            for (company, name) in new_users {
                let key = (company, name.to_string());
                sqlx::query(
                    "INSERT INTO service_users (company_id, name, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (company_id, name) DO NOTHING",
                )
                .bind(company)
                .bind(name)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let id: i64 = sqlx::query_scalar("SELECT id FROM service_users WHERE company_id = $1 AND name = $2")
                    .bind(company)
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
                users.insert(key, id);
            }
            // One multi-row insert per chunk; the ids of one statement are
            // ascending in row order, so sorted they map back to the jobs.
            let mut ids: Vec<i64> = Vec::with_capacity(jobs.len());
            for (chunk, texts) in jobs.chunks(500).zip(optional.chunks(500)) {
                let values = (0..chunk.len())
                    .map(|i| format!("({})", crate::runs::placeholders(i * 14 + 1, 14)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "INSERT INTO cicd_jobs (company_id, service_id, job_id, commit_sha, status, repo_id, repo_name, \
                     triggered_by, service_user_id, job_type, job_start_time, job_duration, optional, received_at) \
                     VALUES {values} RETURNING id"
                );
                let mut q = sqlx::query_scalar::<_, i64>(&sql);
                for (NewCicdJob { company_id: company, job, .. }, text) in chunk.iter().zip(texts) {
                    q = q
                        .bind(company)
                        .bind(job.service_id)
                        .bind(&job.job_id)
                        .bind(&job.commit_sha)
                        .bind(&job.status)
                        .bind(&job.repo_id)
                        .bind(&job.repo_name)
                        .bind(&job.triggered_by)
                        .bind(users[&(*company, job.triggered_by.clone())])
                        .bind(&job.job_type)
                        .bind(job.job_start_time)
                        .bind(job.job_duration)
                        .bind(text)
                        .bind(now);
                }
                let mut got = q.fetch_all(&mut *tx).await?;
                got.sort_unstable();
                ids.extend(got);
            }
            // The triggered runs of the whole batch, inserted together.
            let mut pending: Vec<(NewRun, Option<Vec<u8>>)> = Vec::new();
            let mut run_ids = Vec::with_capacity(jobs.len());
            for (NewCicdJob { runs, .. }, id) in jobs.iter().zip(&ids) {
                let mut mine = Vec::with_capacity(runs.len());
                for run in runs {
                    let mut run = run.clone();
                    if let Some(Value::Object(ctx)) = &mut run.context {
                        ctx.insert("EventId".into(), Value::from(*id));
                    }
                    let sealed = self.seal_run_params(&run);
                    mine.push(run.id.clone());
                    pending.push((run, sealed));
                }
                run_ids.push(mine);
            }
            if !pending.is_empty() {
                insert_runs!(tx, pending.iter().map(|(r, s)| (r, s)).collect(), now);
                notify_work!(self, tx);
            }
            (ids.into_iter().zip(run_ids).collect::<Vec<_>>(), users)
        });
        {
            let mut cache = self.inner.service_users.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.extend(users.iter().map(|(k, v)| (k.clone(), *v)));
        }
        let received_at = ts(now)?;
        Ok(jobs
            .iter()
            .zip(ids)
            .map(|(new, (id, runs))| {
                let user = users.get(&(new.company_id, new.job.triggered_by.clone())).copied().unwrap_or_default();
                let record = CicdJobRecord {
                    id,
                    company_id: new.company_id,
                    job: new.job.clone(),
                    service_user_id: user,
                    received_at,
                };
                (record, runs)
            })
            .collect())
    }

    /// A company's jobs, newest start first.
    pub async fn list_cicd_jobs(
        &self,
        company_id: i64,
        filter: &CicdJobFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<CicdJobRecord>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM cicd_jobs WHERE company_id = $1 \
             AND ($2 IS NULL OR service_id = $2) AND ($3 IS NULL OR repo_id = $3 OR repo_name = $3) \
             AND ($4 IS NULL OR status = $4) AND ($5 IS NULL OR job_start_time >= $5) \
             AND ($6 IS NULL OR job_start_time < $6) \
             ORDER BY job_start_time DESC, id DESC LIMIT $7 OFFSET $8"
        );
        let rows: Vec<JobRow> = read!(self, db => {
            sqlx::query_as(&sql)
                .bind(company_id)
                .bind(filter.service_id)
                .bind(&filter.repo)
                .bind(&filter.status)
                .bind(filter.from)
                .bind(filter.to)
                .bind(limit)
                .bind(offset)
                .fetch_all(db)
                .await
        })?;
        rows.into_iter().map(job_from_row).collect()
    }

    pub async fn get_cicd_job(&self, company_id: i64, id: i64) -> Result<Option<CicdJobRecord>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM cicd_jobs WHERE company_id = $1 AND id = $2");
        let row: Option<JobRow> =
            read!(self, db => sqlx::query_as(&sql).bind(company_id).bind(id).fetch_optional(db).await)?;
        row.map(job_from_row).transpose()
    }
}
