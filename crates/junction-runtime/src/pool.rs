//! Warm processes. A process that has loaded a script version is kept and
//! handed the next execution of that same version (the serverless "warm
//! container": module state may persist between invocations of one
//! script, never across scripts). One pre-started spare per language, with
//! nothing loaded yet, hides the cold start of the next new script.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use junction_core::step::Language;

use crate::process::Process;
use crate::{RuntimeConfig, RuntimeError};

#[derive(Default)]
pub(crate) struct Pool {
    /// Idle processes with a script loaded, oldest first.
    idle: Mutex<Vec<Process>>,
    spares: Mutex<HashMap<Language, Process>>,
    /// Languages whose spare is being started (one at a time).
    starting: Mutex<std::collections::HashSet<Language>>,
}

impl Pool {
    /// A process for `script` of `language`: a warm one when there is one
    /// (unless `fresh`), else the spare, else a new one. The bool says
    /// whether it was warm.
    pub async fn acquire(
        self: &Arc<Self>,
        config: &Arc<RuntimeConfig>,
        language: Language,
        script: &str,
        fresh: bool,
    ) -> Result<(Process, bool), RuntimeError> {
        if !fresh {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            // A process that died while idle is dropped (with its group).
            idle.retain_mut(|p| !p.exited());
            if let Some(i) = idle.iter().rposition(|p| p.language == language && p.script.as_deref() == Some(script)) {
                let mut p = idle.remove(i);
                p.discard_stderr();
                return Ok((p, true));
            }
        }
        let spare = self.spares.lock().unwrap_or_else(|e| e.into_inner()).remove(&language);
        if config.spare {
            self.refill_spare(config, language);
        }
        match spare.map(|mut p| (p.exited(), p)) {
            Some((false, mut p)) => {
                p.discard_stderr();
                Ok((p, false))
            }
            _ => Ok((Process::spawn(config, language).await?, false)),
        }
    }

    /// Starts a spare for `language` in the background, if none is there.
    pub fn refill_spare(self: &Arc<Self>, config: &Arc<RuntimeConfig>, language: Language) {
        if self.spares.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&language)
            || !self.starting.lock().unwrap_or_else(|e| e.into_inner()).insert(language)
        {
            return;
        }
        let (pool, config) = (self.clone(), config.clone());
        tokio::spawn(async move {
            let spawned = Process::spawn(&config, language).await;
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
    pub fn release(&self, config: &RuntimeConfig, process: Process) {
        if process.uses >= config.max_uses {
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
