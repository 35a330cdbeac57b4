//! Webhook exports: records POSTed to `/flows/{flow}/webhooks/{export}`,
//! checked with the export's token or HMAC, each request one page of a new
//! run. The request is answered once that run (with its page) is stored,
//! so an accepted page is never lost.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use junction_core::flow::document::{HmacAlgorithm, WebhookVerify};
use junction_store::RunRecord;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{FlowRunRequest, MAX_WEBHOOK_RECORDS};
use crate::{Engine, EngineError, Result};

/// Why a post was not taken (the route answers with its status).
#[derive(Debug)]
pub struct WebhookRefused {
    /// 401 (not authenticated), 400 (not records) or 415 (not JSON).
    pub status: u16,
    pub message: String,
}

fn refused(status: u16, message: impl Into<String>) -> WebhookRefused {
    WebhookRefused { status, message: message.into() }
}

/// Equal without telling how much of it matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a) == Sha256::digest(b)
}

fn check(verify: &WebhookVerify, secret: &str, header: impl Fn(&str) -> Option<String>, body: &[u8]) -> bool {
    match verify {
        WebhookVerify::Token { header: name } => {
            let Some(given) = header(name) else { return false };
            let given = given.strip_prefix("Bearer ").unwrap_or(&given);
            same(given.trim().as_bytes(), secret.as_bytes())
        }
        WebhookVerify::Hmac { header: name, algorithm, base64, prefix } => {
            let Some(given) = header(name) else { return false };
            let Some(given) = given.trim().strip_prefix(prefix.as_str()) else { return false };
            let decoded = match base64 {
                true => base64::engine::general_purpose::STANDARD.decode(given).ok(),
                false => hex::decode(given).ok(),
            };
            let Some(signature) = decoded else { return false };
            let HmacAlgorithm::Sha256 = algorithm;
            Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .map(|mut m| {
                    m.update(body);
                    m.verify_slice(&signature).is_ok()
                })
                .unwrap_or(false)
        }
    }
}

impl Engine {
    /// Takes one post of a webhook export: `Ok(Err(..))` when it is refused.
    pub async fn receive_flow_webhook(
        &self,
        flow: &str,
        export: &str,
        content_type: Option<&str>,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
    ) -> Result<std::result::Result<RunRecord, WebhookRefused>> {
        let record = self.store.get_flow(flow).await?.ok_or_else(|| EngineError::NotFound(format!("flow {flow:?}")))?;
        let (parsed, _) = self.load_flow(flow, record.revision).await?;
        let Some((_, webhook)) = parsed.webhook(export) else {
            return Err(EngineError::NotFound(format!("webhook export {export:?} of flow {flow:?}")));
        };
        // The signature first: an unauthenticated caller learns nothing more.
        if !check(&webhook.verify, &webhook.secret, &header, body) {
            return Ok(Err(refused(401, "the token or signature does not match")));
        }
        let mime = content_type.and_then(|c| c.split(';').next()).map(|c| c.trim().to_ascii_lowercase());
        if mime.as_deref() != Some("application/json") {
            return Ok(Err(refused(415, "a webhook export takes application/json")));
        }
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Ok(Err(refused(400, format!("the body is not JSON: {e}")))),
        };
        let records = match value {
            Value::Array(items) => items,
            Value::Object(mut o) if o.get("data").is_some_and(Value::is_array) => match o.remove("data") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            other @ Value::Object(_) => vec![other],
            _ => return Ok(Err(refused(400, "post a record, an array of records or {\"data\": [...]}"))),
        };
        if records.len() > MAX_WEBHOOK_RECORDS {
            return Ok(Err(refused(400, format!("at most {MAX_WEBHOOK_RECORDS} records in one post"))));
        }
        let nul = junction_core::document::nul_violations(&Value::Array(records.clone()));
        if !nul.is_empty() {
            return Err(junction_core::Invalid(nul).into());
        }
        let request = FlowRunRequest {
            triggered_by: Some(format!("webhook {export}")),
            webhook: Some((export.to_string(), records)),
            ..Default::default()
        };
        Ok(Ok(self.start_flow_run(flow, request).await?))
    }
}

/// The page a webhook run carries, from its params.
pub(crate) fn webhook_of(params: &Value) -> Option<(String, Vec<Value>)> {
    let w = params.get("webhook")?;
    Some((w["export"].as_str()?.to_string(), w["records"].as_array().cloned().unwrap_or_default()))
}

pub(crate) fn webhook_params(export: &str, records: &[Value]) -> Value {
    json!({"export": export, "records": records})
}
