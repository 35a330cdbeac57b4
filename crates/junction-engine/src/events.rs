//! Inbound events: companies, their Custom CD services and the CI/CD jobs
//! their agents report (spec 002).
//!
//! An accepted job is durable before it is answered: requests hand their
//! validated job to one writer that stores whatever has accumulated in one
//! transaction (group commit) and answers each request with its item.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use junction_core::cicd::CicdJob;
use junction_core::Invalid;
use junction_store::{CicdJobRecord, CompanyRecord, ServiceRecord, Store, CUSTOM_CD};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::{Engine, EngineError, Result};

/// Jobs stored per transaction at most.
const BATCH: usize = 512;

type Waiter = oneshot::Sender<std::result::Result<CicdJobRecord, String>>;

#[derive(Clone, Debug)]
pub(crate) struct EventWriter {
    tx: mpsc::UnboundedSender<((i64, CicdJob), Waiter)>,
}

impl EventWriter {
    pub fn start(store: Store) -> EventWriter {
        let (tx, mut rx) = mpsc::unbounded_channel::<((i64, CicdJob), Waiter)>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (jobs, waiters): (Vec<(i64, CicdJob)>, Vec<Waiter>) = batch.into_iter().unzip();
                match store.insert_cicd_jobs(&jobs).await {
                    Ok(records) => {
                        for (w, r) in waiters.into_iter().zip(records) {
                            let _ = w.send(Ok(r));
                        }
                    }
                    // One bad job must not fail the others: each alone.
                    Err(_) if jobs.len() > 1 => {
                        for (job, w) in jobs.into_iter().zip(waiters) {
                            let answer = store.insert_cicd_jobs(std::slice::from_ref(&job)).await;
                            let _ = w.send(
                                answer
                                    .map_err(|e| e.to_string())
                                    .and_then(|mut r| r.pop().ok_or_else(|| "the job was not stored".to_string())),
                            );
                        }
                    }
                    Err(e) => {
                        for w in waiters {
                            let _ = w.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        EventWriter { tx }
    }

    async fn store(&self, company: i64, job: CicdJob) -> Result<CicdJobRecord> {
        let (tx, rx) = oneshot::channel();
        let stopped = || EngineError::Unavailable("the event writer stopped".into());
        self.tx.send(((company, job), tx)).map_err(|_| stopped())?;
        match rx.await {
            Ok(Ok(record)) => Ok(record),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "storing a CI/CD job failed");
                Err(EngineError::Unavailable("the job could not be stored; retry".into()))
            }
            Err(_) => Err(stopped()),
        }
    }
}

/// Companies and services never change once made (there is no rename or
/// delete), so each process remembers the ones it has seen.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    companies: HashMap<i64, CompanyRecord>,
    services: HashMap<i64, ServiceRecord>,
}

pub(crate) type SharedDirectory = Arc<Mutex<Directory>>;

impl Engine {
    pub async fn create_company(&self, name: &str) -> Result<CompanyRecord> {
        check_label("name", name)?;
        Ok(self.store.create_company(name).await?)
    }

    pub async fn list_companies(&self) -> Result<Vec<CompanyRecord>> {
        Ok(self.store.list_companies().await?)
    }

    /// The company, or NotFound.
    pub async fn company(&self, id: i64) -> Result<CompanyRecord> {
        if let Some(c) = self.directory.lock().unwrap_or_else(|e| e.into_inner()).companies.get(&id) {
            return Ok(c.clone());
        }
        let c = self.store.get_company(id).await?.ok_or_else(|| EngineError::NotFound(format!("company {id}")))?;
        self.directory.lock().unwrap_or_else(|e| e.into_inner()).companies.insert(id, c.clone());
        Ok(c)
    }

    pub async fn create_cicd_service(&self, company: i64, name: &str) -> Result<ServiceRecord> {
        self.company(company).await?;
        check_label("name", name)?;
        Ok(self.store.create_cicd_service(company, name).await?)
    }

    pub async fn list_cicd_services(&self, company: i64) -> Result<Vec<ServiceRecord>> {
        self.company(company).await?;
        Ok(self.store.list_cicd_services(company).await?)
    }

    async fn service(&self, id: i64) -> Result<Option<ServiceRecord>> {
        if let Some(s) = self.directory.lock().unwrap_or_else(|e| e.into_inner()).services.get(&id) {
            return Ok(Some(s.clone()));
        }
        let s = self.store.get_cicd_service(id).await?;
        if let Some(s) = &s {
            self.directory.lock().unwrap_or_else(|e| e.into_inner()).services.insert(id, s.clone());
        }
        Ok(s)
    }

    /// Spec 002's webhook: validates the message (400 with every
    /// violation), checks that `service_id` is a Custom CD service of the
    /// company (422), and stores the job; answers once it is durable.
    pub async fn ingest_cicd_job(&self, company: i64, body: &Value) -> Result<CicdJobRecord> {
        self.company(company).await?;
        let job = CicdJob::parse(body)?;
        match self.service(job.service_id).await? {
            Some(s) if s.company_id == company && s.kind == CUSTOM_CD => {}
            _ => {
                return Err(EngineError::Unprocessable(Invalid::one(
                    "service_id",
                    "custom_cd_service",
                    format!("{} is not a Custom CD service of company {company}", job.service_id),
                )))
            }
        }
        self.events.store(company, job).await
    }
}

/// Names of companies and services: 1-128 characters, no control
/// characters.
fn check_label(field: &str, name: &str) -> Result<(), Invalid> {
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(Invalid::one(field, "name_syntax", "must be 1-128 characters without control characters"));
    }
    Ok(())
}
