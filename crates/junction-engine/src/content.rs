//! Steps, applications, configurations and global parameters: validated
//! by `junction-core`, checked by a runtime where code is involved, stored
//! by `junction-store`.

use junction_core::application::Application;
use junction_core::configuration::{Configuration, GLOBAL};
use junction_core::parameter::{global_parameters_to_configuration, parameters_of, Parameter};
use junction_core::step::{StepUpload, StepVersion};
use junction_core::{Invalid, Violation};
use junction_runtime::{IntrospectError, Script};
use junction_store::{ApplicationRecord, ConfigurationRecord, NewStepVersion};
use serde_json::Value;

use crate::{Engine, EngineError, Result};

/// An application as stored, with what it refers to that is missing. Those
/// are warnings, not errors: content is often uploaded in any order, and a
/// run fails clearly if they are still missing then.
#[derive(Debug, Clone)]
pub struct StoredApplication {
    pub record: ApplicationRecord,
    pub warnings: Vec<Violation>,
}

impl Engine {
    /// Validates a step, loads it in its runtime to learn what it declares
    /// (a step that does not load is refused) and stores the version.
    pub async fn upload_step(&self, upload: StepUpload) -> Result<StepVersion> {
        let language = upload.validate()?;
        let script = Script::new(upload.name.as_str(), language, upload.data.as_str());
        let found = self.runtime.introspect(&script).await.map_err(|e| match e {
            IntrospectError::Rejected(msg) => EngineError::Invalid(Invalid::one("data", "loads", msg)),
            IntrospectError::Runtime(e) => EngineError::Unavailable(e.to_string()),
        })?;
        let description = upload.description.as_deref().or(found.description.as_deref());
        let version = self
            .store
            .put_step(&NewStepVersion {
                name: &upload.name,
                language,
                source: &upload.data,
                description,
                parameters: &found.parameters,
                friendly_name: found.friendly_name.as_deref(),
                declared_version: found.version.as_deref(),
            })
            .await?;
        Ok(version)
    }

    /// Deletes a step unless an application still runs it.
    pub async fn delete_step(&self, name: &str) -> Result<()> {
        let users: Vec<String> = self
            .store
            .list_applications()
            .await?
            .into_iter()
            .filter(|a| a.application.step_files().contains(name))
            .map(|a| a.application.name().to_string())
            .collect();
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "step {name:?} is used by application(s) {}; change or delete them first",
                users.join(", ")
            )));
        }
        Ok(self.store.delete_step(name).await?)
    }

    /// Validates and stores an application document.
    pub async fn put_application(&self, body: Value) -> Result<StoredApplication> {
        let upload = Application::parse(body)?;
        let record = self.store.put_application(&upload).await?;
        // A variable made encrypted is scrubbed from the triggers' arguments:
        // this process's cached triggers are read again.
        self.triggers_changed();
        let warnings = self.warnings(&record.application).await?;
        Ok(StoredApplication { record, warnings })
    }

    pub async fn get_application(&self, name: &str) -> Result<StoredApplication> {
        let record = self
            .store
            .get_application(name)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("application {name:?}")))?;
        let warnings = self.warnings(&record.application).await?;
        Ok(StoredApplication { record, warnings })
    }

    /// What the application refers to that does not exist (yet).
    async fn warnings(&self, app: &Application) -> Result<Vec<Violation>> {
        let mut out = Vec::new();
        let files: Vec<&str> = app.steps().iter().map(|s| s.file.as_str()).collect();
        let stored = self.store.step_versions(&files).await?;
        for (i, step) in app.steps().iter().enumerate() {
            if !stored.contains_key(&step.file) {
                out.push(Violation::new(
                    format!("steps[{i}].file"),
                    "exists",
                    format!("no step named {:?} is stored yet; runs will fail until it is uploaded", step.file),
                ));
            }
        }
        if let Some(config) = app.configuration() {
            if self.store.configuration_names(&[config]).await?.is_empty() {
                out.push(Violation::new(
                    "configuration",
                    "exists",
                    format!("no configuration named {config:?} is stored yet"),
                ));
            }
        }
        Ok(out)
    }

    pub async fn put_configuration(&self, body: Value) -> Result<ConfigurationRecord> {
        let upload = Configuration::parse(body)?;
        Ok(self.store.put_configuration(&upload).await?)
    }

    /// Deletes a configuration. `global` is reserved: clearing the global
    /// parameters is done by setting an empty list.
    pub async fn delete_configuration(&self, name: &str) -> Result<()> {
        if name == GLOBAL {
            return Err(EngineError::Conflict(
                "the configuration \"global\" holds the global parameters and cannot be deleted; set an empty list instead"
                    .into(),
            ));
        }
        Ok(self.store.delete_configuration(name).await?)
    }

    /// Spec 000's Global Parameters; masked values are never returned.
    pub async fn global_parameters(&self) -> Result<Vec<Parameter>> {
        Ok(match self.store.get_configuration(GLOBAL).await? {
            Some(record) => parameters_of(&record.configuration),
            None => Vec::new(),
        })
    }

    /// Replaces the whole list of global parameters.
    pub async fn set_global_parameters(&self, params: &[Parameter]) -> Result<Vec<Parameter>> {
        let upload = global_parameters_to_configuration(params)?;
        let record = self.store.put_configuration(&upload).await.map_err(|e| relabel(e.into(), list_field))?;
        Ok(parameters_of(&record.configuration))
    }

    /// Adds or replaces one global parameter, atomically against other
    /// writers (no lost update when two people edit different parameters).
    pub async fn set_global_parameter(&self, param: Parameter) -> Result<Vec<Parameter>> {
        let record = self
            .store
            .update_configuration(GLOBAL, |current| {
                let mut list = current.map(parameters_of).unwrap_or_default();
                match list.iter_mut().find(|p| p.name == param.name) {
                    Some(p) => *p = param.clone(),
                    None => list.push(param.clone()),
                }
                global_parameters_to_configuration(&list)
            })
            .await
            .map_err(|e| relabel(e.into(), single_field))?;
        Ok(parameters_of(&record.configuration))
    }

    /// Removes one global parameter (and its sealed value).
    pub async fn delete_global_parameter(&self, name: &str) -> Result<Vec<Parameter>> {
        if !self.global_parameters().await?.iter().any(|p| p.name == name) {
            return Err(EngineError::NotFound(format!("global parameter {name:?}")));
        }
        let record = self
            .store
            .update_configuration(GLOBAL, |current| {
                let mut list = current.map(parameters_of).unwrap_or_default();
                list.retain(|p| p.name != name);
                global_parameters_to_configuration(&list)
            })
            .await?;
        Ok(parameters_of(&record.configuration))
    }
}

/// Global parameters are stored as a configuration; errors name fields as
/// the caller sent them. For the whole list: `[1].type`, not
/// `configuration_data[1].encrypted`.
fn list_field(field: &str) -> String {
    field.replacen("configuration_data", "", 1).replace(".encrypted", ".type")
}

/// For one parameter: `type`, `value`, `name`.
fn single_field(field: &str) -> String {
    let list = list_field(field);
    match list.split_once("].") {
        Some((_, rest)) if list.starts_with('[') => rest.to_string(),
        _ => list,
    }
}

fn relabel(e: EngineError, rename: fn(&str) -> String) -> EngineError {
    match e {
        EngineError::Invalid(Invalid(vs)) => EngineError::Invalid(Invalid(
            vs.into_iter()
                .map(|mut v| {
                    v.field = rename(&v.field);
                    v
                })
                .collect(),
        )),
        other => other,
    }
}
