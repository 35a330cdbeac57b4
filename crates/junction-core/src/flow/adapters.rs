//! Settings of the built-in adapters: connections (HTTP, PostgreSQL/MySQL,
//! wrapper), HTTP exports and imports, database exports and imports.
//! Names follow integrator.io where it has them. Every parser takes the
//! JSON path `base` of its object and collects every violation; an
//! unknown key is refused by name (rule `unknown_field`).
//!
//! Exports and imports live in the same object as keys the flow document
//! reads itself (`name`, `type`, `pageSize`, ...): their parsers take the
//! object and the list of those keys, which they skip; every other key must
//! be one of the adapter's.
//!
//! Templates may use these variables (the first segment of the path):
//! - HTTP export (and HTTP lookup): `settings`, `connection`,
//!   `lastExportDateTime`, `currentExportDateTime`, the paging variables
//!   `page`, `offset`, `limit`, `cursor`, and `record` (a lookup).
//! - HTTP import: `settings`, `connection`, `lastExportDateTime`,
//!   `currentExportDateTime`, and `record` (`requestMode: "record"`) or
//!   `records` (`requestMode: "page"`).
//! - Database export: as an HTTP export without the paging variables. A
//!   variable is never spliced into the SQL text: each becomes a bind
//!   parameter (`$n` or `?`), so write it where a value goes, unquoted, and
//!   cast it on PostgreSQL where the type matters
//!   (`WHERE updated_at > {{lastExportDateTime}}::timestamptz`; a string is
//!   bound as text).

use serde_json::{Map, Value};

use crate::flow::mapping::{parse_path, Segment};
use crate::flow::template::{JsonTemplate, Piece, Template};
use crate::validation::{Invalid, Violations};

// --- connections ----------------------------------------------------------------

/// A connection as declared in the flow document's `connections` map.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Http(HttpConnection),
    Database(DatabaseConnection),
    Wrapper(WrapperConnection),
}

/// `{"type": "http", "baseURI": "http://...", "headers": {...}, "encrypted": {...}, "unencrypted": {...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConnection {
    /// `http://` or `https://`; an export's or import's `relativeURI` is appended.
    pub base_uri: String,
    /// Sent with every request (templates: `connection`, `settings`, ...).
    pub headers: Vec<(String, Template)>,
    pub encrypted: Map<String, Value>,
    pub unencrypted: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatabaseKind {
    Postgres,
    MySql,
}

impl DatabaseKind {
    /// The `type` of the connection.
    pub fn name(self) -> &'static str {
        match self {
            DatabaseKind::Postgres => "postgresql",
            DatabaseKind::MySql => "mysql",
        }
    }
}

/// `{"type": "postgresql"|"mysql", "host", "port", "database", "user", "encrypted": {"password"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConnection {
    pub kind: DatabaseKind,
    pub host: String,
    /// Default 5432 (PostgreSQL) or 3306 (MySQL).
    pub port: u16,
    pub database: String,
    pub user: String,
    pub encrypted: Map<String, Value>,
    pub unencrypted: Map<String, Value>,
}

impl DatabaseConnection {
    /// `encrypted.password`, if given.
    pub fn password(&self) -> Option<&str> {
        self.encrypted.get("password").and_then(Value::as_str)
    }
}

/// `{"type": "wrapper", "encrypted": {...}, "unencrypted": {...}}`, handed to
/// stack wrapper functions as `options.connection`.
#[derive(Debug, Clone, PartialEq)]
pub struct WrapperConnection {
    pub encrypted: Map<String, Value>,
    pub unencrypted: Map<String, Value>,
}

impl Connection {
    fn encrypted(&self) -> &Map<String, Value> {
        match self {
            Connection::Http(c) => &c.encrypted,
            Connection::Database(c) => &c.encrypted,
            Connection::Wrapper(c) => &c.encrypted,
        }
    }

    /// Every string in `encrypted` (at any depth), for log redaction.
    pub fn secrets(&self) -> Vec<String> {
        secrets_of(self.encrypted())
    }

    /// The connection as templates see it under the name `connection`:
    /// `{"type", "encrypted", "unencrypted"}` and, by type, `baseURI` or
    /// `host`, `port`, `database`, `user`.
    pub fn context(&self) -> Value {
        let mut out = Map::new();
        match self {
            Connection::Http(c) => {
                out.insert("type".into(), "http".into());
                out.insert("baseURI".into(), c.base_uri.clone().into());
                out.insert("encrypted".into(), Value::Object(c.encrypted.clone()));
                out.insert("unencrypted".into(), Value::Object(c.unencrypted.clone()));
            }
            Connection::Database(c) => {
                out.insert("type".into(), c.kind.name().into());
                out.insert("host".into(), c.host.clone().into());
                out.insert("port".into(), c.port.into());
                out.insert("database".into(), c.database.clone().into());
                out.insert("user".into(), c.user.clone().into());
                out.insert("encrypted".into(), Value::Object(c.encrypted.clone()));
                out.insert("unencrypted".into(), Value::Object(c.unencrypted.clone()));
            }
            Connection::Wrapper(c) => {
                out.insert("type".into(), "wrapper".into());
                out.insert("encrypted".into(), Value::Object(c.encrypted.clone()));
                out.insert("unencrypted".into(), Value::Object(c.unencrypted.clone()));
            }
        }
        Value::Object(out)
    }
}

/// Every string in `encrypted` (at any depth); empty strings are left out.
pub fn secrets_of(encrypted: &Map<String, Value>) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if !s.is_empty() => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(m) => m.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    encrypted.values().for_each(|v| walk(v, &mut out));
    out
}

/// Checks one entry of the `connections` map (`base` is e.g. `connections.shop`).
pub fn parse_connection(base: &str, value: &Value) -> Result<Connection, Invalid> {
    let Some(o) = value.as_object() else {
        return Err(Invalid::one(base, "type", "a connection is an object with a type"));
    };
    let mut v = Violations::default();
    let kind = o.get("type").and_then(Value::as_str);
    let keys: &[&str] = match kind {
        Some("http") => &["type", "baseURI", "headers", "encrypted", "unencrypted"],
        Some("postgresql" | "mysql") => &["type", "host", "port", "database", "user", "encrypted", "unencrypted"],
        Some("wrapper") => &["type", "encrypted", "unencrypted"],
        Some(other) => {
            return Err(Invalid::one(
                format!("{base}.type"),
                "one_of",
                format!("{other:?} is not a connection type: http, postgresql, mysql or wrapper"),
            ))
        }
        None if o.contains_key("type") => return Err(Invalid::one(format!("{base}.type"), "type", "must be a string")),
        None => {
            return Err(Invalid::one(
                format!("{base}.type"),
                "required",
                "a connection's type is http, postgresql, mysql or wrapper",
            ))
        }
    };
    unknown_keys(base, o, keys, &[], &mut v);
    let encrypted = object_field(base, o, "encrypted", &mut v);
    let unencrypted = object_field(base, o, "unencrypted", &mut v);
    let connection = match kind {
        Some("http") => {
            let base_uri = string_field(base, o, "baseURI", true, &mut v).unwrap_or_default();
            if !(base_uri.is_empty() || base_uri.starts_with("http://") || base_uri.starts_with("https://")) {
                v.push(format!("{base}.baseURI"), "url", "must start with http:// or https://");
            }
            let headers = headers_field(base, o, &mut v);
            Connection::Http(HttpConnection { base_uri, headers, encrypted, unencrypted })
        }
        Some(t @ ("postgresql" | "mysql")) => {
            let kind = if t == "postgresql" { DatabaseKind::Postgres } else { DatabaseKind::MySql };
            let host = string_field(base, o, "host", true, &mut v).unwrap_or_default();
            let database = string_field(base, o, "database", true, &mut v).unwrap_or_default();
            let user = string_field(base, o, "user", true, &mut v).unwrap_or_default();
            let port = match o.get("port") {
                None | Some(Value::Null) => match kind {
                    DatabaseKind::Postgres => 5432,
                    DatabaseKind::MySql => 3306,
                },
                Some(p) => match p.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) {
                    Some(p) => p,
                    None => {
                        v.push(format!("{base}.port"), "range", "must be a port number (1-65535)");
                        0
                    }
                },
            };
            if let Some(p) = encrypted.get("password") {
                if !p.is_string() {
                    v.push(format!("{base}.encrypted.password"), "type", "must be a string");
                }
            }
            Connection::Database(DatabaseConnection { kind, host, port, database, user, encrypted, unencrypted })
        }
        _ => Connection::Wrapper(WrapperConnection { encrypted, unencrypted }),
    };
    v.finish(connection)
}

// --- HTTP export ----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// How an HTTP export asks for the next page (`"paging": {"method": ...}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Paging {
    /// One request.
    None,
    /// `{"method": "page", "page": 1}`: `{{page}}` counts from `page`
    /// (default 1). Stops after a page with fewer records than the page
    /// size.
    PageNumber { page_param_start: u64 },
    /// `{"method": "skip"}` (or `"offset"`): `{{offset}}` (records before
    /// this page) and `{{limit}}` (the page size). Stops like `page`.
    Offset,
    /// `{"method": "token", "path": "meta.next", "param": "cursor"}`: the
    /// response's token at `path` is `{{cursor}}` of the next request (and,
    /// with `param`, added to its query string as `param=token`). Stops
    /// when the token is absent, `null` or `""`.
    Token { path: Vec<Segment>, param: Option<String> },
    /// `{"method": "linkheader"}`: follows `rel="next"` of the `Link`
    /// header (absolute or relative to the request's URL).
    LinkHeader,
}

/// An HTTP export (`"type": "http"`), also an HTTP lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpExport {
    /// `GET` (default) or `POST`.
    pub method: HttpMethod,
    /// Appended to the connection's `baseURI`; values are URL-encoded.
    pub relative_uri: Template,
    pub headers: Vec<(String, Template)>,
    /// The request body (`POST`).
    pub body: Option<JsonTemplate>,
    /// Where the records are in the response; none: the body itself (an
    /// array of records, or one object that is one record).
    pub resource_path: Option<Vec<Segment>>,
    pub paging: Paging,
}

const EXPORT_VARIABLES: &[&str] = &[
    "settings",
    "connection",
    "lastExportDateTime",
    "currentExportDateTime",
    "page",
    "offset",
    "limit",
    "cursor",
    "record",
];

/// Reads an HTTP export's keys of `object` (keys in `ignored` are the
/// caller's): `method`, `relativeURI`, `headers`, `body`, `resourcePath`, `paging`.
pub fn parse_http_export(base: &str, object: &Map<String, Value>, ignored: &[&str]) -> Result<HttpExport, Invalid> {
    let mut v = Violations::default();
    unknown_keys(
        base,
        object,
        &["method", "relativeURI", "headers", "body", "resourcePath", "paging"],
        ignored,
        &mut v,
    );
    let method = match object.get("method") {
        None | Some(Value::Null) => HttpMethod::Get,
        Some(Value::String(m)) if m.eq_ignore_ascii_case("GET") => HttpMethod::Get,
        Some(Value::String(m)) if m.eq_ignore_ascii_case("POST") => HttpMethod::Post,
        Some(_) => {
            v.push(format!("{base}.method"), "one_of", "an export's method is GET or POST");
            HttpMethod::Get
        }
    };
    let relative_uri = template_field(base, object, "relativeURI", EXPORT_VARIABLES, &mut v);
    let headers = headers_field(base, object, &mut v);
    let body = body_field(base, object, EXPORT_VARIABLES, &mut v);
    if body.is_some() && method == HttpMethod::Get {
        v.push(format!("{base}.body"), "conflict", "a GET request has no body; use method POST");
    }
    let resource_path = path_field(base, object, "resourcePath", &mut v);
    let paging = match object.get("paging") {
        None | Some(Value::Null) => Paging::None,
        Some(Value::Object(p)) => parse_paging(&format!("{base}.paging"), p, &mut v),
        Some(_) => {
            v.push(format!("{base}.paging"), "type", "must be an object with a method");
            Paging::None
        }
    };
    check_paging_variables(base, &paging, &relative_uri, body.as_ref(), &mut v);
    v.finish(HttpExport { method, relative_uri, headers, body, resource_path, paging })
}

fn parse_paging(at: &str, p: &Map<String, Value>, v: &mut Violations) -> Paging {
    match p.get("method").and_then(Value::as_str) {
        Some("page" | "pageNumber") => {
            unknown_keys(at, p, &["method", "page"], &[], v);
            let start = match p.get("page") {
                None | Some(Value::Null) => 1,
                Some(n) => n.as_u64().unwrap_or_else(|| {
                    v.push(format!("{at}.page"), "type", "must be a whole number (the first page's number)");
                    1
                }),
            };
            Paging::PageNumber { page_param_start: start }
        }
        Some("skip" | "offset") => {
            unknown_keys(at, p, &["method"], &[], v);
            Paging::Offset
        }
        Some("token") => {
            unknown_keys(at, p, &["method", "path", "param"], &[], v);
            let path = match p.get("path") {
                Some(Value::String(s)) => parse_path(s).unwrap_or_else(|| {
                    v.push(format!("{at}.path"), "path", "must be a path like meta.next");
                    Vec::new()
                }),
                Some(_) => {
                    v.push(format!("{at}.path"), "type", "must be a path (text)");
                    Vec::new()
                }
                None => {
                    v.push(format!("{at}.path"), "required", "token paging needs the path of the next token");
                    Vec::new()
                }
            };
            let param = string_field(at, p, "param", false, v);
            if let Some(param) = &param {
                if param.is_empty() {
                    v.push(format!("{at}.param"), "required", "must be a query parameter's name");
                }
            }
            Paging::Token { path, param }
        }
        Some("linkheader" | "linkHeader") => {
            unknown_keys(at, p, &["method"], &[], v);
            Paging::LinkHeader
        }
        Some(other) => {
            v.push(
                format!("{at}.method"),
                "one_of",
                format!("{other:?} is not a paging method: page, skip, token or linkheader"),
            );
            Paging::None
        }
        None => {
            v.push(format!("{at}.method"), "required", "paging needs a method: page, skip, token or linkheader");
            Paging::None
        }
    }
}

fn check_paging_variables(
    base: &str,
    paging: &Paging,
    uri: &Template,
    body: Option<&JsonTemplate>,
    v: &mut Violations,
) {
    let mut used: Vec<&[Segment]> = uri.variables().collect();
    if let Some(b) = body {
        used.extend(b.variables());
    }
    let uses = |name: &str| used.iter().any(|p| matches!(p.first(), Some(Segment::Key(k)) if k == name));
    let needed: &[&str] = match paging {
        Paging::PageNumber { .. } => &["page"],
        Paging::Offset => &["offset"],
        Paging::Token { param: None, .. } => &["cursor"],
        _ => &[],
    };
    for name in needed {
        if !uses(name) {
            v.push(
                format!("{base}.paging"),
                "paging_variable",
                format!("this paging method needs {{{{{name}}}}} in relativeURI or body"),
            );
        }
    }
}

// --- HTTP import ----------------------------------------------------------------

/// An HTTP import (`"type": "http"` in `pageProcessors`).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpImport {
    /// `POST` (default), `PUT`, `PATCH` or `DELETE`.
    pub method: HttpMethod,
    pub relative_uri: Template,
    pub headers: Vec<(String, Template)>,
    /// Per record (`record`) or per page (`records`); default: the mapped
    /// record itself (or the array of the page's records).
    pub body: Option<JsonTemplate>,
    /// `"requestMode": "page"`: one request for the whole page.
    pub batch: bool,
    /// Where the created record's id is in the response (e.g. `id`).
    pub id_path: Option<Vec<Segment>>,
}

/// Reads an HTTP import's keys: `method`, `relativeURI`, `headers`, `body`,
/// `requestMode`, `idPath`.
pub fn parse_http_import(base: &str, object: &Map<String, Value>, ignored: &[&str]) -> Result<HttpImport, Invalid> {
    let mut v = Violations::default();
    unknown_keys(base, object, &["method", "relativeURI", "headers", "body", "requestMode", "idPath"], ignored, &mut v);
    let method = match object.get("method") {
        None | Some(Value::Null) => HttpMethod::Post,
        Some(Value::String(m)) => match m.to_ascii_uppercase().as_str() {
            "POST" => HttpMethod::Post,
            "PUT" => HttpMethod::Put,
            "PATCH" => HttpMethod::Patch,
            "DELETE" => HttpMethod::Delete,
            _ => {
                v.push(format!("{base}.method"), "one_of", "an import's method is POST, PUT, PATCH or DELETE");
                HttpMethod::Post
            }
        },
        Some(_) => {
            v.push(format!("{base}.method"), "one_of", "an import's method is POST, PUT, PATCH or DELETE");
            HttpMethod::Post
        }
    };
    let batch = match object.get("requestMode") {
        None | Some(Value::Null) => false,
        Some(Value::String(m)) if m == "record" => false,
        Some(Value::String(m)) if m == "page" => true,
        Some(_) => {
            v.push(format!("{base}.requestMode"), "one_of", "must be record (one request per record) or page");
            false
        }
    };
    let allowed: &[&str] = if batch {
        &["settings", "connection", "lastExportDateTime", "currentExportDateTime", "records"]
    } else {
        &["settings", "connection", "lastExportDateTime", "currentExportDateTime", "record"]
    };
    let relative_uri = template_field(base, object, "relativeURI", allowed, &mut v);
    let headers = headers_field(base, object, &mut v);
    let body = body_field(base, object, allowed, &mut v);
    let id_path = path_field(base, object, "idPath", &mut v);
    v.finish(HttpImport { method, relative_uri, headers, body, batch, id_path })
}

// --- database export and import -------------------------------------------------

/// A database export: one SQL query, read in pages. Resuming re-runs the
/// query and skips the rows already delivered, so the query should have a
/// stable `ORDER BY`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseExport {
    /// The query as written.
    pub query: String,
    template: Template,
}

impl DatabaseExport {
    /// The SQL with every variable replaced by a bind parameter: `$1`,
    /// `$2`, ... (PostgreSQL) or `?` (MySQL).
    pub fn statement(&self, kind: DatabaseKind) -> String {
        let mut out = String::new();
        let mut n = 0;
        for piece in self.template.pieces() {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Variable(_) => {
                    n += 1;
                    match kind {
                        DatabaseKind::Postgres => out.push_str(&format!("${n}")),
                        DatabaseKind::MySql => out.push('?'),
                    }
                }
            }
        }
        out
    }

    /// The values of the bind parameters, in order (missing ones `null`).
    pub fn parameters(&self, ctx: &Value) -> Vec<Value> {
        self.template
            .variables()
            .map(|path| crate::flow::mapping::get(ctx, path).cloned().unwrap_or(Value::Null))
            .collect()
    }
}

const DATABASE_EXPORT_VARIABLES: &[&str] =
    &["settings", "connection", "lastExportDateTime", "currentExportDateTime", "record"];

/// Reads a database export's one key, `query`.
pub fn parse_database_export(
    base: &str,
    object: &Map<String, Value>,
    ignored: &[&str],
) -> Result<DatabaseExport, Invalid> {
    let mut v = Violations::default();
    unknown_keys(base, object, &["query"], ignored, &mut v);
    let query = string_field(base, object, "query", true, &mut v).unwrap_or_default();
    if query.trim().is_empty() && object.get("query").is_some_and(Value::is_string) {
        v.push(format!("{base}.query"), "required", "the query must not be empty");
    }
    let template = match Template::parse(&query) {
        Ok(t) => {
            check_roots(&format!("{base}.query"), t.variables(), DATABASE_EXPORT_VARIABLES, &mut v);
            t
        }
        Err(e) => {
            v.push(format!("{base}.query"), "template", e);
            Template::default()
        }
    };
    v.finish(DatabaseExport { query, template })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseOperation {
    Insert,
    /// Insert, or update the row with the same key.
    Upsert,
    /// Update the row with the record's key; none is an error.
    Update,
}

/// A table or column name: letters, digits and `_` (not starting with a
/// digit), at most 63 characters; a table may have one `schema.` prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier(Vec<String>);

impl Identifier {
    /// `None` unless `name` is a valid name (`dotted`: `schema.table` allowed).
    pub fn parse(name: &str, dotted: bool) -> Option<Identifier> {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > if dotted { 2 } else { 1 } {
            return None;
        }
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 63
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        };
        parts.iter().all(|p| ok(p)).then(|| Identifier(parts.iter().map(|p| p.to_string()).collect()))
    }

    /// The last part (the column's or table's own name).
    pub fn name(&self) -> &str {
        self.0.last().map(String::as_str).unwrap_or_default()
    }

    /// Quoted for `kind`: `"schema"."table"` or `` `schema`.`table` ``.
    pub fn quoted(&self, kind: DatabaseKind) -> String {
        let q = match kind {
            DatabaseKind::Postgres => '"',
            DatabaseKind::MySql => '`',
        };
        self.0.iter().map(|p| format!("{q}{p}{q}")).collect::<Vec<_>>().join(".")
    }
}

/// A database import: each record is a row of `table`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseImport {
    pub table: Identifier,
    pub operation: DatabaseOperation,
    /// The key columns (required for upsert and update).
    pub key: Vec<Identifier>,
    /// The columns written; none: the top-level keys of the page's records.
    pub columns: Option<Vec<Identifier>>,
}

/// Reads a database import's keys: `table`, `operation` (`insert`
/// (default), `upsert`, `update`), `key` (a column or a list), `columns`.
pub fn parse_database_import(
    base: &str,
    object: &Map<String, Value>,
    ignored: &[&str],
) -> Result<DatabaseImport, Invalid> {
    let mut v = Violations::default();
    unknown_keys(base, object, &["table", "operation", "key", "columns"], ignored, &mut v);
    let table = string_field(base, object, "table", true, &mut v).and_then(|t| {
        let id = Identifier::parse(&t, true);
        if id.is_none() {
            v.push(
                format!("{base}.table"),
                "identifier",
                "must be a table name (letters, digits and _), optionally schema.table",
            );
        }
        id
    });
    let operation = match object.get("operation") {
        None | Some(Value::Null) => DatabaseOperation::Insert,
        Some(Value::String(o)) if o == "insert" => DatabaseOperation::Insert,
        Some(Value::String(o)) if o == "upsert" => DatabaseOperation::Upsert,
        Some(Value::String(o)) if o == "update" => DatabaseOperation::Update,
        Some(_) => {
            v.push(format!("{base}.operation"), "one_of", "must be insert, upsert or update");
            DatabaseOperation::Insert
        }
    };
    let key = match object.get("key") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(k)) => columns_list(&format!("{base}.key"), &[Value::String(k.clone())], &mut v),
        Some(Value::Array(items)) => columns_list(&format!("{base}.key"), items, &mut v),
        Some(_) => {
            v.push(format!("{base}.key"), "type", "must be a column or a list of columns");
            Vec::new()
        }
    };
    if key.is_empty() && operation != DatabaseOperation::Insert && object.get("key").is_none_or(Value::is_null) {
        v.push(format!("{base}.key"), "required", "upsert and update need the key column(s)");
    }
    let columns = match object.get("columns") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if !items.is_empty() => Some(columns_list(&format!("{base}.columns"), items, &mut v)),
        Some(_) => {
            v.push(format!("{base}.columns"), "type", "must be a non-empty list of columns");
            None
        }
    };
    if let (Some(columns), false) = (&columns, key.is_empty()) {
        for k in &key {
            if !columns.contains(k) {
                v.push(format!("{base}.columns"), "key_column", format!("must include the key column {}", k.name()));
            }
        }
    }
    match table {
        Some(table) => v.finish(DatabaseImport { table, operation, key, columns }),
        // A missing or bad table was recorded as a violation.
        None => Err(v.finish(()).expect_err("the table's violation")),
    }
}

fn columns_list(at: &str, items: &[Value], v: &mut Violations) -> Vec<Identifier> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str().and_then(|s| Identifier::parse(s, false)) {
            Some(id) if !out.contains(&id) => out.push(id),
            Some(_) => v.push(format!("{at}[{i}]"), "duplicate", "a column is named twice"),
            None => v.push(format!("{at}[{i}]"), "identifier", "must be a column name (letters, digits and _)"),
        }
    }
    out
}

// --- shared readers ---------------------------------------------------------------

fn unknown_keys(base: &str, o: &Map<String, Value>, known: &[&str], ignored: &[&str], v: &mut Violations) {
    for key in o.keys().filter(|k| !known.contains(&k.as_str()) && !ignored.contains(&k.as_str())) {
        v.push(format!("{base}.{key}"), "unknown_field", format!("the known keys here are {}", known.join(", ")));
    }
}

fn string_field(base: &str, o: &Map<String, Value>, key: &str, required: bool, v: &mut Violations) -> Option<String> {
    match o.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) if !required => None,
        None | Some(Value::Null) => {
            v.push(format!("{base}.{key}"), "required", format!("{key} is required"));
            None
        }
        Some(_) => {
            v.push(format!("{base}.{key}"), "type", "must be a string");
            None
        }
    }
}

fn object_field(base: &str, o: &Map<String, Value>, key: &str, v: &mut Violations) -> Map<String, Value> {
    match o.get(key) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            v.push(format!("{base}.{key}"), "type", "must be an object");
            Map::new()
        }
    }
}

fn path_field(base: &str, o: &Map<String, Value>, key: &str, v: &mut Violations) -> Option<Vec<Segment>> {
    let s = string_field(base, o, key, false, v)?;
    let parsed = parse_path(&s);
    if parsed.is_none() {
        v.push(format!("{base}.{key}"), "path", "must be a path like data.items or id");
    }
    parsed
}

fn template_field(base: &str, o: &Map<String, Value>, key: &str, allowed: &[&str], v: &mut Violations) -> Template {
    let Some(text) = string_field(base, o, key, false, v) else {
        return Template::default();
    };
    match Template::parse(&text) {
        Ok(t) => {
            check_roots(&format!("{base}.{key}"), t.variables(), allowed, v);
            t
        }
        Err(e) => {
            v.push(format!("{base}.{key}"), "template", e);
            Template::default()
        }
    }
}

fn body_field(base: &str, o: &Map<String, Value>, allowed: &[&str], v: &mut Violations) -> Option<JsonTemplate> {
    let body = o.get("body").filter(|b| !b.is_null())?;
    let at = format!("{base}.body");
    match JsonTemplate::parse(&at, body) {
        Ok(t) => {
            check_roots(&at, t.variables().into_iter(), allowed, v);
            Some(t)
        }
        Err(e) => {
            v.extend(e);
            None
        }
    }
}

fn headers_field(base: &str, o: &Map<String, Value>, v: &mut Violations) -> Vec<(String, Template)> {
    let mut out = Vec::new();
    match o.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (name, value) in m {
                let at = format!("{base}.headers.{name}");
                if name.is_empty()
                    || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    v.push(&at, "header_name", "must be an HTTP header name");
                    continue;
                }
                match value.as_str().map(Template::parse) {
                    Some(Ok(t)) => out.push((name.clone(), t)),
                    Some(Err(e)) => v.push(&at, "template", e),
                    None => v.push(&at, "type", "a header's value is a string (a template)"),
                }
            }
        }
        Some(_) => v.push(format!("{base}.headers"), "type", "must be an object of header values by name"),
    }
    out
}

fn check_roots<'a>(at: &str, paths: impl Iterator<Item = &'a [Segment]>, allowed: &[&str], v: &mut Violations) {
    for path in paths {
        let root = match path.first() {
            Some(Segment::Key(k)) => k.as_str(),
            _ => "",
        };
        if !allowed.contains(&root) {
            v.push(at, "unknown_variable", format!("{{{{{root}...}}}} is not known here; use {}", allowed.join(", ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn rules(e: Invalid) -> Vec<(String, String)> {
        e.0.into_iter().map(|v| (v.field, v.rule)).collect()
    }

    #[test]
    fn connections_parse_with_defaults_secrets_and_context() {
        let http = parse_connection(
            "connections.shop",
            &json!({"type": "http", "baseURI": "http://127.0.0.1:8080/api",
                    "headers": {"Authorization": "Bearer {{connection.encrypted.token}}"},
                    "encrypted": {"token": "t0k", "nested": {"k": "v2"}, "n": 3}, "unencrypted": {"a": 1}}),
        )
        .unwrap();
        assert_eq!(http.secrets(), ["t0k", "v2"]);
        assert_eq!(http.context()["encrypted"]["token"], "t0k");
        assert_eq!(http.context()["unencrypted"]["a"], 1);
        let Connection::Http(h) = &http else { panic!() };
        assert_eq!(h.headers[0].1.render(&json!({"connection": http.context()})), "Bearer t0k");

        let pg = parse_connection(
            "c",
            &json!({"type": "postgresql", "host": "h", "database": "d", "user": "u", "encrypted": {"password": "pw"}}),
        )
        .unwrap();
        let Connection::Database(d) = &pg else { panic!() };
        assert_eq!((d.kind, d.port, d.password()), (DatabaseKind::Postgres, 5432, Some("pw")));
        let my = parse_connection("c", &json!({"type": "mysql", "host": "h", "database": "d", "user": "u"})).unwrap();
        let Connection::Database(d) = &my else { panic!() };
        assert_eq!((d.kind, d.port, d.password()), (DatabaseKind::MySql, 3306, None));
        assert!(matches!(parse_connection("c", &json!({"type": "wrapper"})).unwrap(), Connection::Wrapper(_)));
    }

    #[test]
    fn bad_connections_name_every_field() {
        let e = parse_connection(
            "connections.x",
            &json!({"type": "mysql", "port": 70000, "host": 1, "user": "u", "extra": true, "encrypted": []}),
        )
        .unwrap_err();
        assert_eq!(
            rules(e),
            [
                ("connections.x.extra", "unknown_field"),
                ("connections.x.encrypted", "type"),
                ("connections.x.host", "type"),
                ("connections.x.database", "required"),
                ("connections.x.port", "range"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let e = parse_connection("c", &json!({"type": "http", "baseURI": "ftp://x", "headers": {"a b": "x"}}));
        assert_eq!(
            rules(e.unwrap_err()),
            [("c.baseURI".into(), "url".into()), ("c.headers.a b".into(), "header_name".into())]
        );
        assert_eq!(rules(parse_connection("c", &json!({"type": "smtp"})).unwrap_err())[0].1, "one_of");
    }

    #[test]
    fn http_exports_parse_paging_and_refuse_unknown_keys() {
        let e = parse_http_export(
            "pageGenerators[0]",
            &obj(json!({"name": "orders", "type": "http", "pageSize": 10,
                        "relativeURI": "/orders?page={{page}}&since={{lastExportDateTime}}",
                        "resourcePath": "data.items", "paging": {"method": "page", "page": 0}})),
            &["name", "type", "pageSize"],
        )
        .unwrap();
        assert_eq!(e.method, HttpMethod::Get);
        assert_eq!(e.paging, Paging::PageNumber { page_param_start: 0 });
        assert_eq!(e.resource_path, parse_path("data.items"));
        let t = parse_http_export(
            "p",
            &obj(json!({"method": "POST", "body": {"after": "{{cursor}}"}, "paging": {"method": "token", "path": "next"}})),
            &[],
        )
        .unwrap();
        assert_eq!(t.paging, Paging::Token { path: parse_path("next").unwrap(), param: None });
        assert_eq!(t.body.unwrap().render(&json!({"cursor": "c1"})), json!({"after": "c1"}));

        let e = parse_http_export(
            "p",
            &obj(json!({"method": "PUT", "relativeURI": "/x/{{nope}}/{{a", "paging": {"method": "skip"},
                        "resourcePath": "a..b", "pageSize": 3, "https": {}})),
            &["pageSize"],
        )
        .unwrap_err();
        assert_eq!(
            rules(e),
            [
                ("p.https", "unknown_field"),
                ("p.method", "one_of"),
                ("p.relativeURI", "template"),
                ("p.resourcePath", "path"),
                ("p.paging", "paging_variable")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let e = parse_http_export("p", &obj(json!({"relativeURI": "/x/{{nope}}"})), &[]).unwrap_err();
        assert_eq!(rules(e), [("p.relativeURI".to_string(), "unknown_variable".to_string())]);
        let e = parse_http_export("p", &obj(json!({"paging": {"method": "cursor"}})), &[]).unwrap_err();
        assert_eq!(rules(e), [("p.paging.method".to_string(), "one_of".to_string())]);
    }

    #[test]
    fn http_imports_parse() {
        let i = parse_http_import(
            "pageProcessors[0]",
            &obj(json!({"relativeURI": "/customers/{{record.id}}", "method": "put", "idPath": "data.id",
                        "headers": {"X-Key": "{{connection.encrypted.key}}"}})),
            &[],
        )
        .unwrap();
        assert_eq!((i.method, i.batch, i.id_path.clone()), (HttpMethod::Put, false, parse_path("data.id")));
        let e = parse_http_import(
            "p",
            &obj(json!({"requestMode": "page", "relativeURI": "/c/{{record.id}}", "body": "{{records}}"})),
            &[],
        )
        .unwrap_err();
        assert_eq!(rules(e), [("p.relativeURI".to_string(), "unknown_variable".to_string())]);
    }

    #[test]
    fn database_exports_bind_variables_instead_of_splicing() {
        let e = parse_database_export(
            "g",
            &obj(json!({"query": "SELECT * FROM t WHERE a > {{lastExportDateTime}}::timestamptz AND b = {{settings.b}} ORDER BY id"})),
            &[],
        )
        .unwrap();
        assert_eq!(
            e.statement(DatabaseKind::Postgres),
            "SELECT * FROM t WHERE a > $1::timestamptz AND b = $2 ORDER BY id"
        );
        assert_eq!(e.statement(DatabaseKind::MySql), "SELECT * FROM t WHERE a > ?::timestamptz AND b = ? ORDER BY id");
        assert_eq!(
            e.parameters(&json!({"lastExportDateTime": "x'; DROP TABLE t; --", "settings": {}})),
            [json!("x'; DROP TABLE t; --"), Value::Null]
        );
        let e = parse_database_export("g", &obj(json!({"query": "SELECT {{page}}", "sql": 1})), &[]).unwrap_err();
        assert_eq!(
            rules(e),
            [("g.sql".to_string(), "unknown_field".to_string()), ("g.query".into(), "unknown_variable".into())]
        );
    }

    #[test]
    fn database_imports_validate_identifiers() {
        let i = parse_database_import(
            "p",
            &obj(json!({"table": "public.customers", "operation": "upsert", "key": "id", "name": "n"})),
            &["name"],
        )
        .unwrap();
        assert_eq!(i.table.quoted(DatabaseKind::Postgres), r#""public"."customers""#);
        assert_eq!(i.table.quoted(DatabaseKind::MySql), "`public`.`customers`");
        assert_eq!(i.key, [Identifier::parse("id", false).unwrap()]);
        for bad in ["", "a.b.c", "1a", "a-b", "a\"b", "a;drop", "é"] {
            assert!(Identifier::parse(bad, true).is_none(), "{bad:?}");
        }
        let e = parse_database_import(
            "p",
            &obj(json!({"table": "x;y", "operation": "update", "columns": ["a", "a", "b c"]})),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            rules(e),
            [
                ("p.table", "identifier"),
                ("p.key", "required"),
                ("p.columns[1]", "duplicate"),
                ("p.columns[2]", "identifier")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let e = parse_database_import("p", &obj(json!({"table": "t", "key": ["id"], "columns": ["a"]})), &[]);
        assert_eq!(rules(e.unwrap_err()), [("p.columns".to_string(), "key_column".to_string())]);
    }
}
