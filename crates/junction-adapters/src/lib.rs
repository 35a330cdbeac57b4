//! The built-in flow adapters, the I/O half (spec 001): HTTP exports and
//! imports over one `reqwest` client, and PostgreSQL/MySQL exports and
//! imports over `sqlx`. The settings they run are checked in
//! `junction_core::flow::adapters`; this crate only talks to the outside.
//!
//! **Invariant:** no message this crate builds carries a secret: every
//! string of the connection's `encrypted` values is replaced by `***` in
//! every error and per-record message (errors of `reqwest` and `sqlx` can
//! quote URLs, values and statements).
//!
//! Errors: [`AdapterError::Offline`] when the other side refuses the
//! credentials (HTTP 401/403, a database's authentication failure): the
//! connection goes offline and the flow stops. [`AdapterError::Failed`]
//! for everything else that fails a whole page (retries exhausted, a bad
//! answer, an SQL error of an export). A single record's failure in an
//! import is not an error but its [`ImportResult`] (status 422).

use serde_json::{json, Value};

mod database;
mod http;

pub use database::{DatabaseSource, Databases};
pub use http::{http_client, http_import, HttpSource};

/// Why an export's page or an import's page could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// The source or target refused the credentials: the connection goes
    /// offline and the flow stops with this reason.
    #[error("connection offline: {0}")]
    Offline(String),
    /// The page failed (after retries, or at once for a fatal error).
    #[error("{0}")]
    Failed(String),
}

/// One page of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<Value>,
    /// Opaque JSON: handed back to `new`, the export resumes after this page.
    pub state: Value,
    /// No page follows.
    pub last: bool,
}

/// What an import did with one record, in integrator.io's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportResult {
    /// 200 when the record was written, 422 when it was refused.
    pub status_code: u16,
    /// The created or updated record's id, when known.
    pub id: Option<String>,
    pub ignored: bool,
    /// `{code, message, source}` for each problem.
    pub errors: Vec<Value>,
    /// The response for this record (HTTP: the body; database: `null`).
    pub json: Value,
}

impl ImportResult {
    fn ok(id: Option<String>, json: Value) -> ImportResult {
        ImportResult { status_code: 200, id, ignored: false, errors: Vec::new(), json }
    }

    fn refused(code: &str, message: String, source: &str, json: Value) -> ImportResult {
        ImportResult {
            status_code: 422,
            id: None,
            ignored: false,
            errors: vec![json!({"code": code, "message": message, "source": source})],
            json,
        }
    }
}

/// Replaces each secret (and its URL-encoded form) in messages by `***`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: Vec<String>) -> Redactor {
        let mut all: Vec<String> = Vec::new();
        for s in secrets.into_iter().filter(|s| !s.is_empty()) {
            let encoded = junction_core::flow::template::percent_encode(&s);
            if encoded != s {
                all.push(encoded);
            }
            all.push(s);
        }
        // The longest first, so a secret that contains another is hidden whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Redactor { secrets: all }
    }

    pub fn clean(&self, message: &str) -> String {
        let mut out = message.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

/// The first `max` characters of `text`.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => text[..i].to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_secrets_and_their_url_forms() {
        let r = Redactor::new(vec!["p@ss word".into(), "".into(), "p@ss".into()]);
        assert_eq!(r.clean("a p@ss word b p%40ss%20word c p@ss"), "a *** b *** c ***");
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("hé", 5), "hé");
    }
}
