//! Warm processes. A process that has loaded a script version is kept and
//! handed the next execution of that same version for the same tenant (the
//! serverless "warm container": module state may persist between
//! invocations of one script for one application, never across scripts or
//! applications). One pre-started spare per language, with
//! nothing loaded yet, hides the cold start of the next new script.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use junction_core::step::Language;

use crate::process::Process;
use crate::{Host, RuntimeError};

#[derive(Default)]
pub(crate) struct Pool {
    /// Idle processes with a script loaded, oldest first.
    idle: Mutex<Vec<Process>>,
    spares: Mutex<HashMap<Language, Process>>,
    /// Languages whose spare is being started (one at a time).
    starting: Mutex<std::collections::HashSet<Language>>,
}

impl Pool {
    /// A process for `script` of `language` serving `tenant`: a warm one
    /// when there is one (unless `fresh`), else the spare, else a new one.
    /// The bool says whether it was warm.
    pub async fn acquire(
        self: &Arc<Self>,
        host: &Arc<Host>,
        wanted_script: &crate::Script,
        tenant: &str,
        fresh: bool,
    ) -> Result<(Process, bool), RuntimeError> {
        host.isolation.check()?;
        let (language, script) = (wanted_script.language, wanted_script.sha256.as_str());
        if !fresh {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            // A process that died while idle is dropped (with its group).
            idle.retain_mut(|p| !p.exited());
            let wanted = |p: &Process| {
                p.language == language && p.serves.as_ref().is_some_and(|(t, s)| t == tenant && s == script)
            };
            if let Some(i) = idle.iter().rposition(wanted) {
                let mut p = idle.remove(i);
                p.discard_output();
                return Ok((p, true));
            }
        }
        if let Some(package) = &wanted_script.package {
            // A package's process is started for it: it may read the
            // package's directory and has its environment.
            return Ok((Process::spawn(host, language, Some(package)).await?, false));
        }
        let spare = self.spares.lock().unwrap_or_else(|e| e.into_inner()).remove(&language);
        if host.config.spare {
            self.refill_spare(host, language);
        }
        match spare.map(|mut p| (p.exited(), p)) {
            Some((false, mut p)) => {
                p.discard_output();
                Ok((p, false))
            }
            _ => Ok((Process::spawn(host, language, None).await?, false)),
        }
    }

    /// Starts a spare for `language` in the background, if none is there.
    pub fn refill_spare(self: &Arc<Self>, host: &Arc<Host>, language: Language) {
        if self.spares.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&language)
            || !self.starting.lock().unwrap_or_else(|e| e.into_inner()).insert(language)
        {
            return;
        }
        let (pool, host) = (self.clone(), host.clone());
        tokio::spawn(async move {
            let spawned = Process::spawn(&host, language, None).await;
            pool.starting.lock().unwrap_or_else(|e| e.into_inner()).remove(&language);
            match spawned {
                Ok(p) => {
                    let previous = pool.spares.lock().unwrap_or_else(|e| e.into_inner()).insert(language, p);
                    if let Some(extra) = previous {
                        extra.shutdown().await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?language, "could not pre-start a spare runtime")
                }
            }
        });
    }

    /// Takes a process back after an execution that left it healthy.
    pub fn release(&self, host: &Host, process: Process) {
        let config = &host.config;
        if process.uses >= process.max_uses.unwrap_or(config.max_uses) {
            tokio::spawn(process.shutdown());
            return;
        }
        let evicted = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.push(process);
            if idle.len() > config.max_idle {
                Some(idle.remove(0))
            } else {
                None
            }
        };
        if let Some(old) = evicted {
            tokio::spawn(old.shutdown());
        }
    }

    /// Ends every pooled process.
    pub async fn drain(&self) {
        let idle: Vec<Process> = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        let spares: Vec<Process> =
            self.spares.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, p)| p).collect();
        for p in idle.into_iter().chain(spares) {
            p.shutdown().await;
        }
    }
}
