//! Inbound events: companies, their Custom CD services and the CI/CD jobs
//! their agents report (spec 002).
//!
//! An accepted job is durable before it is answered: requests hand their
//! validated job to one writer that stores whatever has accumulated in one
//! transaction (group commit) and answers each request with its item.

use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use junction_core::cicd::CicdJob;
use junction_core::trigger::TriggerSpec;
use junction_core::Invalid;
use junction_store::{CicdJobRecord, CompanyRecord, NewCicdJob, ServiceRecord, Store, TriggerRecord, CUSTOM_CD};
use serde_json::{json, Value};

use crate::memo::Memo;
use crate::runs::RunRequest;
use crate::{Engine, EngineError, Result};

/// Jobs stored per transaction at most.
const BATCH: usize = 512;

/// How long a process trusts its copy of the triggers and of the
/// automated-jobs setting (changes made here apply at once; another
/// server's within this time).
const TRIGGERS_TTL: Duration = Duration::from_secs(2);

type Stored = (CicdJobRecord, Vec<String>);

/// Group commit for CI/CD jobs (see `batch`).
#[derive(Clone, Debug)]
pub(crate) struct EventWriter(crate::batch::Batcher<NewCicdJob, Stored>);

impl EventWriter {
    pub fn start(store: Store) -> EventWriter {
        EventWriter(crate::batch::Batcher::start(
            BATCH,
            crate::batch::Split::OnDataErrors,
            move |jobs: Arc<Vec<NewCicdJob>>| {
                let store = store.clone();
                async move { store.insert_cicd_jobs(&jobs).await }
            },
        ))
    }

    async fn store(&self, job: NewCicdJob) -> Result<Stored> {
        self.0.submit(job).await.map_err(|e| {
            tracing::error!(error = %e, "storing a CI/CD job failed");
            EngineError::Unavailable("the job could not be stored; retry".into())
        })
    }
}

/// Companies and services never change once made (there is no rename or
/// delete), so each process remembers the ones it has seen; the enabled
/// triggers are kept for a short while.
#[derive(Debug, Clone)]
pub(crate) struct Directory {
    companies: Memo<i64, CompanyRecord>,
    services: Memo<i64, ServiceRecord>,
    triggers: Arc<Mutex<Triggers>>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory { companies: Memo::new(4096), services: Memo::new(4096), triggers: Arc::default() }
    }
}

#[derive(Debug, Default)]
struct Triggers {
    /// The enabled triggers when automated jobs are on (else none), and
    /// when they were read.
    list: Option<(Instant, Vec<TriggerSpec>)>,
    /// Bumped by every change made here, so a list read before a change is
    /// not kept after it.
    generation: u64,
}

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
        let fetch = async { Ok::<_, EngineError>(self.store.get_company(id).await?) };
        self.directory
            .companies
            .get_or_fetch(id, fetch)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("company {id}")))
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
        let fetch = async { Ok::<_, EngineError>(self.store.get_cicd_service(id).await?) };
        self.directory.services.get_or_fetch(id, fetch).await
    }

    /// Spec 002's webhook: validates the message (400 with every
    /// violation), checks that `service_id` is a Custom CD service of the
    /// company (422), and stores the job with the runs of the triggers it
    /// matches, in one transaction; answers once both are durable.
    pub async fn ingest_cicd_job(&self, company: i64, body: &Value) -> Result<(CicdJobRecord, Vec<String>)> {
        let company_record = self.company(company).await?;
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
        let triggers = self.active_triggers().await?;
        let matched: Vec<&TriggerSpec> = triggers.iter().filter(|t| t.matches_cicd(company, &job)).collect();
        let runs = self
            .trigger_runs(&matched, |trigger| {
                json!({
                    "JobName": trigger.application,
                    "Trigger": trigger.name,
                    "Company": {"ID": company, "Name": company_record.name},
                    "CicdJob": job,
                })
            })
            .await?
            .into_iter()
            .map(|(_, run)| run)
            .collect::<Vec<_>>();
        let started = !runs.is_empty();
        let stored = self.events.store(NewCicdJob { company_id: company, job, runs }).await?;
        if started {
            self.signals.work_available.notify_waiters();
        }
        Ok(stored)
    }

    /// The automated runs `triggers` start, each with the event as its
    /// context (`context(trigger)`) and the trigger's argument values. Their
    /// applications and what the runs need are read for all of them at once.
    /// A trigger whose application cannot run is logged and skipped: the
    /// event is stored whatever its triggers can do. Each run comes with
    /// the index of its trigger.
    pub(crate) async fn trigger_runs(
        &self,
        triggers: &[&TriggerSpec],
        context: impl Fn(&TriggerSpec) -> Value,
    ) -> Result<Vec<(usize, junction_store::NewRun)>> {
        if triggers.is_empty() {
            return Ok(Vec::new());
        }
        let requests = triggers
            .iter()
            .map(|t| {
                let request = RunRequest {
                    params: t.arguments.clone(),
                    trigger_kind: "automated".into(),
                    triggered_by: Some(format!("trigger:{}", t.name)),
                    context: Some(context(t)),
                    ..RunRequest::default()
                };
                (t.application.as_str(), request)
            })
            .collect();
        let mut runs = Vec::with_capacity(triggers.len());
        for (i, (trigger, built)) in triggers.iter().zip(self.prepare_runs(requests).await?).enumerate() {
            match built {
                Ok(run) => runs.push((i, run)),
                Err(e) => {
                    tracing::warn!(trigger = %trigger.name, error = %e, "trigger could not start its application")
                }
            }
        }
        Ok(runs)
    }

    /// The enabled triggers, none while automated jobs are off.
    pub(crate) async fn active_triggers(&self) -> Result<Vec<TriggerSpec>> {
        let generation = {
            let dir = self.directory.triggers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, list)) = &dir.list {
                if at.elapsed() < TRIGGERS_TTL {
                    return Ok(list.clone());
                }
            }
            dir.generation
        };
        let list: Vec<TriggerSpec> = if self.automated_jobs_enabled().await? {
            self.store.list_triggers().await?.into_iter().map(|t| t.spec).filter(|t| t.enabled).collect()
        } else {
            Vec::new()
        };
        let mut dir = self.directory.triggers.lock().unwrap_or_else(|e| e.into_inner());
        if dir.generation == generation {
            dir.list = Some((Instant::now(), list.clone()));
        }
        Ok(list)
    }

    /// Forgets the cached triggers (a trigger or the setting changed here).
    pub(crate) fn triggers_changed(&self) {
        let mut dir = self.directory.triggers.lock().unwrap_or_else(|e| e.into_inner());
        dir.list = None;
        dir.generation += 1;
    }

    /// Creates or replaces (by name) an event trigger. Its `arguments` may
    /// only give values to the application's declared, non-encrypted
    /// parameters (they are stored as written).
    pub async fn put_trigger(&self, body: &Value) -> Result<(TriggerRecord, bool)> {
        let spec = TriggerSpec::parse(body)?;
        if let Some(app) = self.store.get_application(&spec.application).await? {
            let mut v = junction_core::validation::Violations::default();
            for key in spec.arguments.keys() {
                match app.application.variables().iter().find(|var| var.name == *key) {
                    None => v.push(
                        format!("arguments.{key}"),
                        "unknown_parameter",
                        format!("{:?} has no parameter {key:?}", spec.application),
                    ),
                    Some(var) if var.encrypted => v.push(
                        format!("arguments.{key}"),
                        "encrypted",
                        "an encrypted parameter's value is set on the application, not in a trigger",
                    ),
                    Some(_) => {}
                }
            }
            v.finish(())?;
        }
        if let Some(c) = spec.company_id {
            if self.store.get_company(c).await?.is_none() {
                return Err(Invalid::one("company_id", "exists", format!("no company {c}")).into());
            }
        }
        let out = self.store.put_trigger(&spec).await?;
        self.triggers_changed();
        Ok(out)
    }

    pub async fn list_triggers(&self) -> Result<Vec<TriggerRecord>> {
        Ok(self.store.list_triggers().await?)
    }

    pub async fn get_trigger(&self, name: &str) -> Result<TriggerRecord> {
        self.store.get_trigger(name).await?.ok_or_else(|| EngineError::NotFound(format!("trigger {name:?}")))
    }

    pub async fn delete_trigger(&self, name: &str) -> Result<()> {
        if !self.store.delete_trigger(name).await? {
            return Err(EngineError::NotFound(format!("trigger {name:?}")));
        }
        self.triggers_changed();
        Ok(())
    }
}

/// Names of companies and services: 1-128 characters, no control
/// characters.
pub(crate) fn check_label(field: &str, name: &str) -> Result<(), Invalid> {
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(Invalid::one(field, "name_syntax", "must be 1-128 characters without control characters"));
    }
    Ok(())
}
