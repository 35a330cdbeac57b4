//! Sealed values: the `secrets` table, keyed by scope (`config:NAME`,
//! `app:NAME`, `stack:NAME`) and entry name.

use junction_core::secret::{SecretString, SecretWrite, SecretWrites};

use crate::{read, Result, Store, StoreError};

pub(crate) fn config_scope(name: &str) -> String {
    format!("config:{name}")
}

pub(crate) fn stack_scope(name: &str) -> String {
    format!("stack:{name}")
}

pub(crate) fn app_scope(name: &str) -> String {
    format!("app:{name}")
}

/// Inside a write transaction (holding the scope's `lock_key!`): reads the
/// names sealed under `$scope`, lets `$check` refuse the new document (see
/// `check_against_sealed`), then seals every `Set` write and drops the
/// entries the document no longer has. Evaluates to `(changed, sealed
/// before)`, `changed` being true when a value was written or removed.
macro_rules! sync_secrets {
    ($store:expr, $tx:ident, $scope:expr, $writes:expr, $check:expr) => {{
        let scope: &str = $scope;
        let writes: &junction_core::secret::SecretWrites = $writes;
        let existing: Vec<String> = sqlx::query_scalar("SELECT name FROM secrets WHERE scope = $1")
            .bind(scope)
            .fetch_all(&mut *$tx)
            .await?;
        $check(&existing)?;
        let mut changed = false;
        for name in existing.iter().filter(|n| !writes.iter().any(|(w, _)| w == *n)) {
            sqlx::query("DELETE FROM secrets WHERE scope = $1 AND name = $2")
                .bind(scope)
                .bind(name)
                .execute(&mut *$tx)
                .await?;
            changed = true;
        }
        let now = $store.now_ms();
        for (name, write) in writes {
            if let junction_core::secret::SecretWrite::Set(value) = write {
                let sealed = $store.inner.sealer.seal(scope, name, value.expose());
                sqlx::query(
                    "INSERT INTO secrets (scope, name, sealed, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (scope, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
                )
                .bind(scope)
                .bind(name)
                .bind(sealed)
                .bind(now)
                .execute(&mut *$tx)
                .await?;
                changed = true;
            }
        }
        (changed, existing)
    }};
}
pub(crate) use sync_secrets;

/// True when a document's writes would change what is sealed.
pub(crate) fn sets_any(writes: &SecretWrites) -> bool {
    writes.iter().any(|(_, w)| matches!(w, SecretWrite::Set(_)))
}

impl Store {
    /// The names of the sealed variables of each named application.
    pub async fn secret_names_of(&self, apps: &[&str]) -> Result<std::collections::HashMap<String, Vec<String>>> {
        let mut out: std::collections::HashMap<String, Vec<String>> =
            apps.iter().map(|a| (a.to_string(), Vec::new())).collect();
        if apps.is_empty() {
            return Ok(out);
        }
        let scopes: Vec<String> = apps.iter().map(|a| app_scope(a)).collect();
        let sql = format!(
            "SELECT scope, name FROM secrets WHERE scope IN ({}) ORDER BY scope, name",
            crate::runs::placeholders(1, scopes.len())
        );
        let rows: Vec<(String, String)> = read!(self, db => {
            let mut q = sqlx::query_as(&sql);
            for s in &scopes {
                q = q.bind(s);
            }
            q.fetch_all(db).await
        })?;
        for (scope, name) in rows {
            if let Some(app) = scope.strip_prefix("app:") {
                out.entry(app.to_string()).or_default().push(name);
            }
        }
        Ok(out)
    }

    /// The clear values sealed under a configuration, by entry name. For
    /// handing to a runtime; never for a response.
    pub async fn configuration_secrets(&self, config: &str) -> Result<Vec<(String, SecretString)>> {
        self.unseal_scope(&config_scope(config)).await
    }

    /// The clear values of an application's encrypted variables.
    pub async fn application_secrets(&self, app: &str) -> Result<Vec<(String, SecretString)>> {
        self.unseal_scope(&app_scope(app)).await
    }

    pub(crate) async fn unseal_scope(&self, scope: &str) -> Result<Vec<(String, SecretString)>> {
        let rows: Vec<(String, Vec<u8>)> = read!(self, db => {
            sqlx::query_as("SELECT name, sealed FROM secrets WHERE scope = $1 ORDER BY name")
                .bind(scope)
                .fetch_all(db)
                .await
        })?;
        rows.into_iter()
            .map(|(name, sealed)| {
                let value = self.inner.sealer.unseal(scope, &name, &sealed).map_err(StoreError::Key)?;
                Ok((name, value))
            })
            .collect()
    }
}
