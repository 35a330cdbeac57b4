//! HTTP exports (pages over the four paging methods) and imports (one
//! request per record, at most 8 at once, or one per page), with retries.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use junction_core::flow::adapters::{Connection, HttpConnection, HttpExport, HttpImport, HttpMethod, Paging};
use junction_core::flow::mapping::{get, Segment};
use junction_core::flow::template::Template;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

use crate::{truncate, AdapterError, ImportResult, Page, Redactor};

/// Waits before the retries of a request that failed with a 5xx, a 429
/// or a network error.
const BACKOFF: [Duration; 3] = [Duration::from_millis(200), Duration::from_millis(500), Duration::from_secs(1)];
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Requests of one page in flight at once (`requestMode: "record"`).
const IMPORT_CONCURRENCY: usize = 8;
/// How much of a refusing answer a record's error quotes.
const MESSAGE_CHARS: usize = 1000;

/// The process's one HTTP client for adapters: connect timeout 10 s,
/// request timeout 60 s.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client without TLS builds")
}

/// What a request came to after its retries.
enum Outcome {
    /// A 2xx answer.
    Ok { headers: HeaderMap, body: String },
    /// 401 or 403.
    Offline(String),
    /// Another 4xx: the request itself is wrong.
    Refused { status: u16, body: String },
    /// 5xx, 429 or a network error after the last retry.
    Exhausted { code: String, message: String },
}

struct Request {
    method: HttpMethod,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

async fn send(client: &reqwest::Client, request: &Request, redact: &Redactor) -> Outcome {
    let method = match request.method {
        HttpMethod::Get => reqwest::Method::GET,
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
        HttpMethod::Delete => reqwest::Method::DELETE,
    };
    let what = format!("{} {}", request.method.as_str(), request.url);
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            (Ok(n), Ok(v)) => {
                headers.insert(n, v);
            }
            _ => {
                return Outcome::Exhausted {
                    code: "bad_header".into(),
                    message: redact.clean(&format!("header {name} of {what} is not a valid header value")),
                }
            }
        }
    }
    let mut attempt = 0;
    loop {
        let mut builder = client.request(method.clone(), &request.url).headers(headers.clone());
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let (code, message, retry_after) = match builder.send().await {
            Err(e) => ("network".to_string(), format!("{what} failed: {e}"), None),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
                let headers = response.headers().clone();
                let body = match response.text().await {
                    Ok(body) => body,
                    Err(e) => {
                        let message = format!("{what}: reading the answer failed: {e}");
                        if attempt < BACKOFF.len() {
                            tokio::time::sleep(BACKOFF[attempt]).await;
                            attempt += 1;
                            continue;
                        }
                        return Outcome::Exhausted { code: "network".into(), message: redact.clean(&message) };
                    }
                };
                match status {
                    200..=299 => return Outcome::Ok { headers, body },
                    401 | 403 => {
                        return Outcome::Offline(
                            redact.clean(&format!("{what} answered {status}: {}", truncate(&body, MESSAGE_CHARS))),
                        )
                    }
                    429 | 500..=599 => (
                        status.to_string(),
                        format!("{what} answered {status}: {}", truncate(&body, MESSAGE_CHARS)),
                        retry_after,
                    ),
                    _ => return Outcome::Refused { status, body },
                }
            }
        };
        if attempt >= BACKOFF.len() {
            let message = format!("{message} (after {} retries)", BACKOFF.len());
            return Outcome::Exhausted { code, message: redact.clean(&message) };
        }
        tracing::debug!(attempt, "{}", redact.clean(&message));
        tokio::time::sleep(retry_after.unwrap_or(BACKOFF[attempt])).await;
        attempt += 1;
    }
}

/// `base` + `relative`, with one `/` between them.
fn join_uri(base: &str, relative: &str) -> String {
    match (base.ends_with('/'), relative.starts_with('/')) {
        (true, true) => format!("{base}{}", &relative[1..]),
        _ => format!("{base}{relative}"),
    }
}

fn render_headers(conn: &HttpConnection, extra: &[(String, Template)], ctx: &Value) -> Vec<(String, String)> {
    conn.headers.iter().chain(extra).map(|(name, t)| (name.clone(), t.render(ctx))).collect()
}

/// `vars` with the connection's context under `connection` when the caller
/// did not put one there.
fn with_connection(vars: Value, conn: &HttpConnection) -> Value {
    let mut vars = match vars {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    vars.entry("connection").or_insert_with(|| Connection::Http(conn.clone()).context());
    Value::Object(vars)
}

fn parse_json(body: &str) -> Result<Value, serde_json::Error> {
    if body.trim().is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_str(body)
    }
}

fn id_at(value: &Value, path: Option<&[Segment]>) -> Option<String> {
    match get(value, path?)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

// --- export -------------------------------------------------------------------

/// Which request of an export comes next.
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    page: u64,
    offset: u64,
    token: Option<String>,
    /// The `rel="next"` URL of the previous answer (link-header paging).
    url: Option<String>,
}

impl Cursor {
    fn to_json(&self) -> Value {
        json!({"page": self.page, "offset": self.offset, "cursor": self.token, "url": self.url})
    }

    fn from_json(v: &Value) -> Option<Cursor> {
        Some(Cursor {
            page: v.get("page")?.as_u64()?,
            offset: v.get("offset")?.as_u64()?,
            token: v.get("cursor").and_then(Value::as_str).map(str::to_string),
            url: v.get("url").and_then(Value::as_str).map(str::to_string),
        })
    }
}

/// An HTTP export read page by page.
///
/// State: `{"request": {page, offset, cursor, url}, "skip": n}` (the
/// request to make and how many of its records were delivered already) or
/// `{"done": true}`. An answer with more records than the page size is
/// cut into pages.
pub struct HttpSource {
    client: reqwest::Client,
    conn: HttpConnection,
    export: HttpExport,
    vars: Value,
    page_size: usize,
    redact: Redactor,
    /// The request whose records are in `buffer` (or the next to make).
    current: Option<Cursor>,
    /// Records of `current` already delivered (or to skip on resume).
    delivered: usize,
    buffer: VecDeque<Value>,
    /// The request after `current`, known once `current` was answered.
    next: Option<Cursor>,
}

impl HttpSource {
    /// `vars`: `{settings, lastExportDateTime, currentExportDateTime,
    /// connection}` (`connection` defaults to the connection's context);
    /// `state`: `None` starts at the beginning, `Some` resumes after the page
    /// that produced it.
    pub fn new(
        client: &reqwest::Client,
        conn: &HttpConnection,
        export: &HttpExport,
        vars: Value,
        page_size: usize,
        state: Option<Value>,
    ) -> HttpSource {
        let page_size = page_size.max(1);
        let start = Cursor {
            page: match export.paging {
                Paging::PageNumber { page_param_start } => page_param_start,
                _ => 1,
            },
            offset: 0,
            token: None,
            url: None,
        };
        let (current, delivered) = match &state {
            None => (Some(start), 0),
            Some(s) if s.get("done") == Some(&Value::Bool(true)) => (None, 0),
            Some(s) => (
                Some(s.get("request").and_then(Cursor::from_json).unwrap_or(start)),
                s.get("skip").and_then(Value::as_u64).unwrap_or(0) as usize,
            ),
        };
        HttpSource {
            client: client.clone(),
            conn: conn.clone(),
            export: export.clone(),
            vars: with_connection(vars, conn),
            page_size,
            redact: Redactor::new(junction_core::flow::adapters::secrets_of(&conn.encrypted)),
            current,
            delivered,
            buffer: VecDeque::new(),
            next: None,
        }
    }

    /// The next page, `None` when the export is done.
    pub async fn next_page(&mut self) -> Result<Option<Page>, AdapterError> {
        // Guards against a source that keeps answering empty pages with new tokens.
        let mut empty_answers = 0;
        loop {
            if !self.buffer.is_empty() {
                let take = self.page_size.min(self.buffer.len());
                let records: Vec<Value> = self.buffer.drain(..take).collect();
                self.delivered += take;
                if !self.buffer.is_empty() {
                    let state = json!({"request": self.current.as_ref().map(Cursor::to_json), "skip": self.delivered});
                    return Ok(Some(Page { records, state, last: false }));
                }
                self.current = self.next.take();
                self.delivered = 0;
                let (state, last) = match &self.current {
                    Some(c) => (json!({"request": c.to_json(), "skip": 0}), false),
                    None => (json!({"done": true}), true),
                };
                return Ok(Some(Page { records, state, last }));
            }
            let Some(cursor) = self.current.clone() else {
                return Ok(None);
            };
            let (mut records, next) = self.fetch(&cursor).await?;
            let skip = self.delivered.min(records.len());
            records.drain(..skip);
            self.buffer = records.into();
            self.next = next;
            if self.buffer.is_empty() {
                self.current = self.next.take();
                self.delivered = 0;
                empty_answers += 1;
                if empty_answers > 100 {
                    return Err(AdapterError::Failed("the source answered 100 empty pages in a row".into()));
                }
            }
        }
    }

    async fn fetch(&self, cursor: &Cursor) -> Result<(Vec<Value>, Option<Cursor>), AdapterError> {
        let mut ctx = self.vars.clone();
        if let Value::Object(m) = &mut ctx {
            m.insert("page".into(), cursor.page.into());
            m.insert("offset".into(), cursor.offset.into());
            m.insert("limit".into(), self.page_size.into());
            m.insert("cursor".into(), cursor.token.clone().map(Value::String).unwrap_or(Value::Null));
        }
        let url = match &cursor.url {
            Some(url) => url.clone(),
            None => {
                let mut url = join_uri(&self.conn.base_uri, &self.export.relative_uri.render_url(&ctx));
                if let (Paging::Token { param: Some(param), .. }, Some(token)) = (&self.export.paging, &cursor.token) {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    url = format!(
                        "{url}{sep}{}={}",
                        junction_core::flow::template::percent_encode(param),
                        junction_core::flow::template::percent_encode(token)
                    );
                }
                url
            }
        };
        let request = Request {
            method: self.export.method,
            url: url.clone(),
            headers: render_headers(&self.conn, &self.export.headers, &ctx),
            body: self.export.body.as_ref().map(|b| b.render(&ctx)),
        };
        let (headers, body) = match send(&self.client, &request, &self.redact).await {
            Outcome::Ok { headers, body } => (headers, body),
            Outcome::Offline(message) => return Err(AdapterError::Offline(message)),
            Outcome::Refused { status, body } => {
                return Err(AdapterError::Failed(self.redact.clean(&format!(
                    "{} {url} answered {status}: {}",
                    self.export.method.as_str(),
                    truncate(&body, MESSAGE_CHARS)
                ))))
            }
            Outcome::Exhausted { message, .. } => return Err(AdapterError::Failed(message)),
        };
        let doc = parse_json(&body)
            .map_err(|e| AdapterError::Failed(self.redact.clean(&format!("the answer of {url} is not JSON: {e}"))))?;
        let found = match &self.export.resource_path {
            Some(path) => get(&doc, path).cloned().unwrap_or(Value::Null),
            None => doc.clone(),
        };
        let records = match found {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            one @ Value::Object(_) => vec![one],
            other => {
                return Err(AdapterError::Failed(self.redact.clean(&format!(
                    "the answer of {url} has {} where the records should be; set resourcePath to the records' array",
                    match other {
                        Value::String(_) => "a string",
                        Value::Number(_) => "a number",
                        _ => "a boolean",
                    }
                ))))
            }
        };
        let n = records.len() as u64;
        let full = n > 0 && n >= self.page_size as u64;
        let next = match &self.export.paging {
            Paging::None => None,
            Paging::PageNumber { .. } => full.then(|| Cursor { page: cursor.page + 1, ..cursor.clone() }),
            Paging::Offset => full.then(|| Cursor { offset: cursor.offset + n, ..cursor.clone() }),
            Paging::Token { path, .. } => {
                let token = match get(&doc, path) {
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                token.filter(|t| cursor.token.as_ref() != Some(t)).map(|t| Cursor {
                    token: Some(t),
                    page: cursor.page + 1,
                    ..cursor.clone()
                })
            }
            Paging::LinkHeader => next_link(&headers, &url).filter(|next| *next != url).map(|next| Cursor {
                url: Some(next),
                page: cursor.page + 1,
                ..cursor.clone()
            }),
        };
        Ok((records, next))
    }
}

/// The `rel="next"` target of the `Link` headers, resolved against `url`.
fn next_link(headers: &HeaderMap, url: &str) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let Some(target) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else { continue };
            let is_next = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .map(|r| r.trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case("next")))
                    .unwrap_or(false)
            });
            if is_next {
                let base = reqwest::Url::parse(url).ok()?;
                return base.join(target).ok().map(String::from);
            }
        }
    }
    None
}

// --- import -------------------------------------------------------------------

/// Submits one page of (mapped) records. Per record (at most 8 requests at
/// once; results in the records' order) or, with `requestMode: "page"`,
/// one request for the page. A 2xx is a 200 with the id at `idPath`; a
/// 4xx other than 401/403/429 is a 422 for the record(s) quoting the
/// answer; a 5xx/429/network error is retried 3 times, then a 422; 401/403
/// stops with [`AdapterError::Offline`].
pub async fn http_import(
    client: &reqwest::Client,
    conn: &HttpConnection,
    import: &HttpImport,
    vars: &Value,
    records: &[Value],
) -> Result<Vec<ImportResult>, AdapterError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let redact = Redactor::new(junction_core::flow::adapters::secrets_of(&conn.encrypted));
    let vars = with_connection(vars.clone(), conn);
    let context = |key: &str, value: Value| {
        let mut ctx = vars.clone();
        if let Value::Object(m) = &mut ctx {
            m.insert(key.into(), value);
        }
        ctx
    };
    let request = |ctx: &Value, default_body: Value| Request {
        method: import.method,
        url: join_uri(&conn.base_uri, &import.relative_uri.render_url(ctx)),
        headers: render_headers(conn, &import.headers, ctx),
        body: match &import.body {
            Some(b) => Some(b.render(ctx)),
            None if import.method == HttpMethod::Delete => None,
            None => Some(default_body),
        },
    };
    let id_path = import.id_path.as_deref();
    if import.batch {
        let page = Value::Array(records.to_vec());
        let req = request(&context("records", page.clone()), page);
        let results = match send(client, &req, &redact).await {
            Outcome::Offline(message) => return Err(AdapterError::Offline(message)),
            Outcome::Ok { body, .. } => {
                let json = parse_json(&body).unwrap_or(Value::String(body));
                match json {
                    Value::Array(items) if items.len() == records.len() => {
                        items.into_iter().map(|item| ImportResult::ok(id_at(&item, id_path), item)).collect()
                    }
                    json => {
                        let id = if records.len() == 1 { id_at(&json, id_path) } else { None };
                        vec![ImportResult::ok(id, json); records.len()]
                    }
                }
            }
            other => vec![refusal(other, &redact); records.len()],
        };
        return Ok(results);
    }
    let requests: Vec<Request> = records.iter().map(|r| request(&context("record", r.clone()), r.clone())).collect();
    // Owned futures: a stream of closures borrowing the requests would
    // make the caller's future `Send` only for one lifetime (rust#102211),
    // which a spawned task cannot be.
    let futures = requests.into_iter().map(|req| {
        let (client, redact) = (client.clone(), redact.clone());
        async move { send(&client, &req, &redact).await }
    });
    let outcomes: Vec<Outcome> = stream::iter(futures.collect::<Vec<_>>()).buffered(IMPORT_CONCURRENCY).collect().await;
    outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Outcome::Offline(message) => Err(AdapterError::Offline(message)),
            Outcome::Ok { body, .. } => {
                let json = parse_json(&body).unwrap_or(Value::String(body));
                Ok(ImportResult::ok(id_at(&json, id_path), json))
            }
            other => Ok(refusal(other, &redact)),
        })
        .collect()
}

fn refusal(outcome: Outcome, redact: &Redactor) -> ImportResult {
    match outcome {
        Outcome::Refused { status, body } => {
            let message = redact.clean(&truncate(&body, MESSAGE_CHARS));
            let json = parse_json(&body).unwrap_or(Value::Null);
            ImportResult::refused(&status.to_string(), message, "http", json)
        }
        Outcome::Exhausted { code, message } => ImportResult::refused(&code, message, "http", Value::Null),
        Outcome::Ok { .. } | Outcome::Offline(_) => unreachable!("not a refusal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_join_with_one_slash() {
        assert_eq!(join_uri("http://h/api", "/x"), "http://h/api/x");
        assert_eq!(join_uri("http://h/api/", "/x"), "http://h/api/x");
        assert_eq!(join_uri("http://h/api", "?a=1"), "http://h/api?a=1");
    }

    #[test]
    fn link_headers_give_the_next_url() {
        let mut h = HeaderMap::new();
        h.append(
            reqwest::header::LINK,
            HeaderValue::from_static(r#"<https://h/x?page=1>; rel="prev", </items?page=3>; rel="next""#),
        );
        assert_eq!(next_link(&h, "http://h:8/api/items?page=2").as_deref(), Some("http://h:8/items?page=3"));
        let mut h = HeaderMap::new();
        h.append(reqwest::header::LINK, HeaderValue::from_static(r#"<https://h/x?page=1>; rel="prev""#));
        assert_eq!(next_link(&h, "http://h/"), None);
    }
}
