//! Database exports (a query streamed in pages over one connection) and
//! imports (one multi-row statement per page, a pool per connection) on
//! PostgreSQL and MySQL/MariaDB.
//!
//! Values are always bound, never spliced: a string binds as text, a
//! number as a number, a boolean as a boolean, `null` as NULL, an object or
//! array as its JSON text. On PostgreSQL a page is one JSON parameter read
//! by `json_populate_recordset(NULL::table, $1)`, so each value takes the
//! column's own type (a JSON string into a `timestamptz` column, an object
//! into a `jsonb` one).
//!
//! Rows become JSON objects (column name → value): integers and floats as
//! numbers, `numeric`/`DECIMAL` as a number when it has at most 15 digits
//! (a string otherwise, so no digit is lost), booleans, text, `json`,
//! `uuid` as text, times as RFC 3339 text (`timestamptz` with `Z`; a
//! timestamp without a time zone, a date or a time without one), bytes as
//! `\x` and hex, NULL as `null`. A PostgreSQL type not in that list is an
//! error naming the column; cast it in the query (`::text`).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use futures_util::{Stream, StreamExt};
use junction_core::flow::adapters::{
    secrets_of, DatabaseConnection, DatabaseExport, DatabaseImport, DatabaseKind, DatabaseOperation, Identifier,
};
use serde_json::{json, Map, Value};
use sqlx::mysql::{MySql, MySqlArguments, MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{
    PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgTypeKind, PgValueFormat, PgValueRef, Postgres,
};
use sqlx::query::Query;
use sqlx::{Column, ConnectOptions, Row, TypeInfo, ValueRef};
use tokio::sync::mpsc;

use crate::{AdapterError, ImportResult, Page, Redactor};

/// Most bind parameters in one MySQL statement.
const MYSQL_MAX_PARAMS: usize = 65_535;

fn pg_options(c: &DatabaseConnection) -> PgConnectOptions {
    let mut o = PgConnectOptions::new_without_pgpass()
        .host(&c.host)
        .port(c.port)
        .database(&c.database)
        .username(&c.user)
        .application_name("junction");
    if let Some(p) = c.password() {
        o = o.password(p);
    }
    o.disable_statement_logging()
}

fn mysql_options(c: &DatabaseConnection) -> MySqlConnectOptions {
    let mut o = MySqlConnectOptions::new().host(&c.host).port(c.port).database(&c.database).username(&c.user);
    if let Some(p) = c.password() {
        o = o.password(p);
    }
    o.disable_statement_logging()
}

/// An authentication failure is `Offline`; anything else `Failed`.
fn classify(what: &str, e: &sqlx::Error, redact: &Redactor) -> AdapterError {
    let message = redact.clean(&format!("{what}: {e}"));
    if let sqlx::Error::Database(db) = e {
        let code = db.code().unwrap_or_default();
        let mysql_denied = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>().is_some_and(|m| m.number() == 1045);
        if code == "28P01" || code == "28000" || mysql_denied {
            return AdapterError::Offline(message);
        }
    }
    AdapterError::Failed(message)
}

fn bind_pg<'q>(q: Query<'q, Postgres, PgArguments>, v: &Value) -> Query<'q, Postgres, PgArguments> {
    match v {
        Value::Null => q.bind(None::<String>),
        Value::Bool(b) => q.bind(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => q.bind(i),
            None => q.bind(n.as_f64()),
        },
        Value::String(s) => q.bind(s.clone()),
        other => q.bind(other.to_string()),
    }
}

fn bind_mysql<'q>(q: Query<'q, MySql, MySqlArguments>, v: Option<&Value>) -> Query<'q, MySql, MySqlArguments> {
    match v {
        None | Some(Value::Null) => q.bind(None::<String>),
        Some(Value::Bool(b)) => q.bind(*b),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => q.bind(i),
            (None, Some(u)) => q.bind(u),
            _ => q.bind(n.as_f64()),
        },
        Some(Value::String(s)) => q.bind(s.clone()),
        Some(other) => q.bind(other.to_string()),
    }
}

// --- export -------------------------------------------------------------------

type Batch = Result<(Vec<Value>, bool), AdapterError>;

/// A database export read page by page. A task holds one connection and
/// streams the query's rows; at most one page waits in between, so memory
/// is bounded by about two pages.
///
/// State: `{"rows": n}`, the rows delivered so far. Resuming re-runs the
/// query and skips `n` rows, so the query should have a stable `ORDER BY`.
pub struct DatabaseSource {
    conn: DatabaseConnection,
    export: DatabaseExport,
    vars: Value,
    page_size: usize,
    delivered: u64,
    done: bool,
    rx: Option<mpsc::Receiver<Batch>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DatabaseSource {
    /// `vars`: the templates' context (`settings`, `lastExportDateTime`,
    /// `connection`, ...; `connection` defaults to the connection's);
    /// `state`: `None` from the start, or a page's state to resume after it.
    pub fn new(
        conn: &DatabaseConnection,
        export: &DatabaseExport,
        vars: Value,
        page_size: usize,
        state: Option<Value>,
    ) -> DatabaseSource {
        let mut vars = match vars {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        vars.entry("connection")
            .or_insert_with(|| junction_core::flow::adapters::Connection::Database(conn.clone()).context());
        let delivered = state.as_ref().and_then(|s| s.get("rows")).and_then(Value::as_u64).unwrap_or(0);
        DatabaseSource {
            conn: conn.clone(),
            export: export.clone(),
            vars: Value::Object(vars),
            page_size: page_size.max(1),
            delivered,
            done: state.as_ref().and_then(|s| s.get("done")) == Some(&Value::Bool(true)),
            rx: None,
            task: None,
        }
    }

    /// The next page, `None` when the query has no more rows.
    pub async fn next_page(&mut self) -> Result<Option<Page>, AdapterError> {
        if self.done {
            return Ok(None);
        }
        if self.rx.is_none() {
            let (tx, rx) = mpsc::channel(1);
            let kind = self.conn.kind;
            let sql = self.export.statement(kind);
            let params = self.export.parameters(&self.vars);
            let redact = Redactor::new(secrets_of(&self.conn.encrypted));
            let (skip, page_size) = (self.delivered, self.page_size);
            let conn = self.conn.clone();
            self.task = Some(tokio::spawn(async move {
                match kind {
                    DatabaseKind::Postgres => stream_pg(&conn, &sql, &params, skip, page_size, tx, redact).await,
                    DatabaseKind::MySql => stream_mysql(&conn, &sql, &params, skip, page_size, tx, redact).await,
                }
            }));
            self.rx = Some(rx);
        }
        let rx = self.rx.as_mut().expect("started above");
        match rx.recv().await {
            Some(Ok((records, last))) => {
                self.delivered += records.len() as u64;
                self.done = last;
                Ok(Some(Page { records, state: json!({"rows": self.delivered}), last }))
            }
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

impl Drop for DatabaseSource {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Cuts `rows` into pages after skipping `skip`; a page is sent once the
/// row after it arrived (or the rows ended), so each knows whether it is
/// the last.
type BoxedWrite<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Written, AdapterError>> + Send + 'a>>;

async fn pump(
    rows: impl Stream<Item = Result<Value, AdapterError>>,
    skip: u64,
    page_size: usize,
    tx: mpsc::Sender<Batch>,
) {
    let mut rows = std::pin::pin!(rows);
    let mut skipped = 0;
    let mut page = Vec::with_capacity(page_size);
    while let Some(row) = rows.next().await {
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if skipped < skip {
            skipped += 1;
            continue;
        }
        if page.len() == page_size {
            let full = std::mem::replace(&mut page, Vec::with_capacity(page_size));
            if tx.send(Ok((full, false))).await.is_err() {
                return;
            }
        }
        page.push(row);
    }
    if !page.is_empty() {
        let _ = tx.send(Ok((page, true))).await;
    }
}

async fn stream_pg(
    c: &DatabaseConnection,
    sql: &str,
    params: &[Value],
    skip: u64,
    page_size: usize,
    tx: mpsc::Sender<Batch>,
    redact: Redactor,
) {
    let mut conn = match pg_options(c).connect().await {
        Ok(conn) => conn,
        Err(e) => {
            let _ = tx.send(Err(classify("connecting to PostgreSQL", &e, &redact))).await;
            return;
        }
    };
    let mut q = sqlx::query(sql);
    for p in params {
        q = bind_pg(q, p);
    }
    let rows = q.fetch(&mut conn).map(|row| match row {
        Ok(row) => pg_row(&row).map_err(|e| AdapterError::Failed(redact.clean(&e))),
        Err(e) => Err(classify("the export's query failed", &e, &redact)),
    });
    pump(rows, skip, page_size, tx).await;
}

async fn stream_mysql(
    c: &DatabaseConnection,
    sql: &str,
    params: &[Value],
    skip: u64,
    page_size: usize,
    tx: mpsc::Sender<Batch>,
    redact: Redactor,
) {
    let mut conn = match mysql_options(c).connect().await {
        Ok(conn) => conn,
        Err(e) => {
            let _ = tx.send(Err(classify("connecting to MySQL", &e, &redact))).await;
            return;
        }
    };
    let mut q = sqlx::query(sql);
    for p in params {
        q = bind_mysql(q, Some(p));
    }
    let rows = q.fetch(&mut conn).map(|row| match row {
        Ok(row) => mysql_row(&row).map_err(|e| AdapterError::Failed(redact.clean(&e))),
        Err(e) => Err(classify("the export's query failed", &e, &redact)),
    });
    pump(rows, skip, page_size, tx).await;
}

// --- rows to JSON ---------------------------------------------------------------

/// A decimal's text as a number when that loses nothing (at most 15 digits).
fn decimal(text: &str) -> Value {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    match text.parse::<f64>() {
        Ok(f) if digits <= 15 && f.is_finite() => {
            if f.fract() == 0.0 && !text.contains('.') {
                Value::from(f as i64)
            } else {
                serde_json::Number::from_f64(f).map(Value::Number).unwrap_or_else(|| text.into())
            }
        }
        _ => Value::String(text.to_string()),
    }
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::from("\\x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn be<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.get(..N).and_then(|s| s.try_into().ok()).ok_or_else(|| "a value is shorter than its type".to_string())
}

/// PostgreSQL's binary `numeric` as decimal text.
fn pg_numeric(b: &[u8]) -> Result<String, String> {
    let ndigits = u16::from_be_bytes(be(b)?) as usize;
    let weight = i16::from_be_bytes(be(&b[2..])?) as i64;
    let sign = u16::from_be_bytes(be(&b[4..])?);
    let dscale = u16::from_be_bytes(be(&b[6..])?) as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> =
        (0..ndigits).map(|i| be(&b[8 + 2 * i..]).map(u16::from_be_bytes)).collect::<Result<_, _>>()?;
    let digit = |j: i64| if j >= 0 { digits.get(j as usize).copied().unwrap_or(0) } else { 0 };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for j in 0..=weight {
            if j == 0 {
                out.push_str(&digit(j).to_string());
            } else {
                out.push_str(&format!("{:04}", digit(j)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut j = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(j)));
            j += 1;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

/// Microseconds since 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

fn pg_timestamp(micros: i64, zoned: bool) -> Result<Value, String> {
    match micros {
        i64::MAX => return Ok("infinity".into()),
        i64::MIN => return Ok("-infinity".into()),
        _ => {}
    }
    let ts = jiff::Timestamp::from_microsecond(micros + PG_EPOCH_MICROS).map_err(|e| e.to_string())?;
    Ok(if zoned { ts.to_string().into() } else { ts.to_zoned(jiff::tz::TimeZone::UTC).datetime().to_string().into() })
}

fn pg_value(raw: PgValueRef<'_>) -> Result<Value, String> {
    let ty = raw.type_info().into_owned();
    if raw.format() == PgValueFormat::Text {
        return raw.as_str().map(|s| s.to_string().into()).map_err(|e| e.to_string());
    }
    let b = raw.as_bytes().map_err(|e| e.to_string())?;
    let text = || std::str::from_utf8(b).map(|s| Value::String(s.to_string())).map_err(|e| e.to_string());
    Ok(match ty.name() {
        "BOOL" => Value::Bool(b.first().is_some_and(|b| *b != 0)),
        "INT2" => i16::from_be_bytes(be(b)?).into(),
        "INT4" => i32::from_be_bytes(be(b)?).into(),
        "INT8" => i64::from_be_bytes(be(b)?).into(),
        "OID" => u32::from_be_bytes(be(b)?).into(),
        "FLOAT4" => float(f32::from_be_bytes(be(b)?) as f64),
        "FLOAT8" => float(f64::from_be_bytes(be(b)?)),
        "NUMERIC" => decimal(&pg_numeric(b)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" | "UNKNOWN" | "XML" => text()?,
        "JSON" => serde_json::from_slice(b).map_err(|e| e.to_string())?,
        "JSONB" => serde_json::from_slice(b.get(1..).unwrap_or_default()).map_err(|e| e.to_string())?,
        "UUID" => {
            let h = hex(b);
            let h = &h[2..];
            if h.len() != 32 {
                return Err("a uuid is 16 bytes".into());
            }
            format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]).into()
        }
        "TIMESTAMPTZ" => pg_timestamp(i64::from_be_bytes(be(b)?), true)?,
        "TIMESTAMP" => pg_timestamp(i64::from_be_bytes(be(b)?), false)?,
        "DATE" => {
            let days = i32::from_be_bytes(be(b)?);
            match days {
                i32::MAX => "infinity".into(),
                i32::MIN => "-infinity".into(),
                _ => jiff::civil::date(2000, 1, 1)
                    .checked_add(jiff::Span::new().days(days as i64))
                    .map_err(|e| e.to_string())?
                    .to_string()
                    .into(),
            }
        }
        "TIME" => {
            let micros = i64::from_be_bytes(be(b)?);
            jiff::civil::Time::midnight()
                .checked_add(jiff::SignedDuration::from_micros(micros))
                .map_err(|e| e.to_string())?
                .to_string()
                .into()
        }
        "BYTEA" => hex(b).into(),
        _ if matches!(ty.kind(), PgTypeKind::Enum(_)) => text()?,
        other => {
            return Err(format!(
                "has type {other}, which a database export does not read; cast it in the query (::text)"
            ))
        }
    })
}

fn pg_row(row: &PgRow) -> Result<Value, String> {
    let mut out = Map::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            pg_value(raw).map_err(|e| format!("column {}: {e}", col.name()))?
        };
        out.insert(col.name().to_string(), value);
    }
    Ok(Value::Object(out))
}

/// MySQL's binary DATE/DATETIME/TIMESTAMP (length byte first).
fn mysql_datetime(b: &[u8], date_only: bool) -> Result<Value, String> {
    let len = *b.first().ok_or("an empty date")? as usize;
    let b = b.get(1..1 + len).ok_or("a short date")?;
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let year = if len >= 2 { u16::from_le_bytes([b[0], b[1]]) } else { 0 };
    let date = format!("{year:04}-{:02}-{:02}", at(2), at(3));
    if date_only {
        return Ok(date.into());
    }
    let mut out = format!("{date}T{:02}:{:02}:{:02}", at(4), at(5), at(6));
    if len >= 11 {
        let micros = u32::from_le_bytes([b[7], b[8], b[9], b[10]]);
        if micros > 0 {
            out.push_str(&format!(".{micros:06}"));
        }
    }
    Ok(out.into())
}

/// MySQL's binary TIME: sign, days, hours, minutes, seconds, microseconds.
fn mysql_time(b: &[u8]) -> Result<Value, String> {
    let len = *b.first().ok_or("an empty time")? as usize;
    let b = b.get(1..1 + len).ok_or("a short time")?;
    if len == 0 {
        return Ok("00:00:00".into());
    }
    let negative = b[0] == 1;
    let days = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
    let hours = days * 24 + b[5] as u32;
    let mut out = format!("{}{hours:02}:{:02}:{:02}", if negative { "-" } else { "" }, b[6], b[7]);
    if len >= 12 {
        let micros = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if micros > 0 {
            out.push_str(&format!(".{micros:06}"));
        }
    }
    Ok(out.into())
}

fn mysql_row(row: &MySqlRow) -> Result<Value, String> {
    let mut out = Map::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
        if raw.is_null() {
            out.insert(col.name().to_string(), Value::Null);
            continue;
        }
        let name = col.type_info().name();
        let err = |e: sqlx::Error| format!("column {}: {e}", col.name());
        let bytes = || row.try_get_unchecked::<Vec<u8>, _>(i).map_err(err);
        let string = || row.try_get_unchecked::<String, _>(i).map_err(err);
        let value = match name {
            "BOOLEAN" => Value::Bool(row.try_get_unchecked::<i64, _>(i).map_err(err)? != 0),
            "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" => {
                row.try_get_unchecked::<i64, _>(i).map_err(err)?.into()
            }
            n if n.ends_with("UNSIGNED") || n == "YEAR" => row.try_get_unchecked::<u64, _>(i).map_err(err)?.into(),
            "FLOAT" => float(row.try_get_unchecked::<f32, _>(i).map_err(err)? as f64),
            "DOUBLE" => float(row.try_get_unchecked::<f64, _>(i).map_err(err)?),
            "DECIMAL" => decimal(&string()?),
            "DATE" => mysql_datetime(&bytes()?, true).map_err(|e| format!("column {}: {e}", col.name()))?,
            "DATETIME" | "TIMESTAMP" => {
                mysql_datetime(&bytes()?, false).map_err(|e| format!("column {}: {e}", col.name()))?
            }
            "TIME" => mysql_time(&bytes()?).map_err(|e| format!("column {}: {e}", col.name()))?,
            "JSON" => {
                let s = string()?;
                serde_json::from_str(&s).unwrap_or(Value::String(s))
            }
            "BIT" => bytes()?.iter().fold(0u64, |n, b| (n << 8) | *b as u64).into(),
            "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "GEOMETRY" => {
                let b = bytes()?;
                match String::from_utf8(b) {
                    Ok(s) => s.into(),
                    Err(e) => hex(e.as_bytes()).into(),
                }
            }
            _ => string()?.into(),
        };
        out.insert(col.name().to_string(), value);
    }
    Ok(Value::Object(out))
}

// --- import -------------------------------------------------------------------

#[derive(Clone)]
enum Pool {
    Pg(PgPool),
    MySql(MySqlPool),
}

/// The pools of the database imports, one small pool (4 connections) per
/// connection's settings, so a page does not reconnect.
#[derive(Default)]
pub struct Databases {
    pools: Mutex<HashMap<u64, Pool>>,
}

/// A record's place in the page and the record (an object).
type Item<'a> = (usize, &'a Map<String, Value>);
/// The columns of a statement and its records.
type Group<'a> = (Vec<Identifier>, Vec<Item<'a>>);

impl Databases {
    pub fn new() -> Databases {
        Databases::default()
    }

    async fn pool(&self, c: &DatabaseConnection, redact: &Redactor) -> Result<Pool, AdapterError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (c.kind, &c.host, c.port, &c.database, &c.user, c.password()).hash(&mut h);
        let key = h.finish();
        if let Some(pool) = self.pools.lock().expect("not poisoned").get(&key) {
            return Ok(pool.clone());
        }
        let pool = match c.kind {
            DatabaseKind::Postgres => Pool::Pg(
                PgPoolOptions::new()
                    .max_connections(4)
                    .connect_with(pg_options(c))
                    .await
                    .map_err(|e| classify("connecting to PostgreSQL", &e, redact))?,
            ),
            DatabaseKind::MySql => Pool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(4)
                    .connect_with(mysql_options(c))
                    .await
                    .map_err(|e| classify("connecting to MySQL", &e, redact))?,
            ),
        };
        Ok(self.pools.lock().expect("not poisoned").entry(key).or_insert(pool).clone())
    }

    /// Writes one page of (mapped) records in one transaction: insert and
    /// upsert as one multi-row statement, update as one statement on
    /// PostgreSQL (one per record on MySQL). When the batch fails, each
    /// record is written on its own (in a savepoint on PostgreSQL; a MySQL
    /// statement that fails changes nothing), so one bad record gets a 422
    /// with the database's message and the others are written. An update
    /// that finds no row is a 422 `not_found`.
    pub async fn database_import(
        &self,
        conn: &DatabaseConnection,
        import: &DatabaseImport,
        records: &[Value],
    ) -> Result<Vec<ImportResult>, AdapterError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let redact = Redactor::new(secrets_of(&conn.encrypted));
        let mut results: Vec<Option<ImportResult>> = vec![None; records.len()];
        let mut items: Vec<Item> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let refuse =
                |code: &str, message: String| Some(ImportResult::refused(code, message, "database", Value::Null));
            let Some(object) = r.as_object() else {
                results[i] = refuse("not_an_object", "a database import writes objects (column → value)".into());
                continue;
            };
            if import.columns.is_none() {
                if let Some(bad) = object.keys().find(|k| Identifier::parse(k, false).is_none()) {
                    results[i] = refuse("bad_column", format!("{bad:?} is not a column name (letters, digits and _)"));
                    continue;
                }
            }
            if let Some(k) = import.key.iter().find(|k| object.get(k.name()).is_none_or(Value::is_null)) {
                if import.operation != DatabaseOperation::Insert {
                    results[i] =
                        refuse("missing_key", format!("the record has no value for the key column {}", k.name()));
                    continue;
                }
            }
            items.push((i, object));
        }
        // Records with the same columns share a statement (usually the
        // whole page): a column a record does not have keeps its default
        // (insert) or its value (update).
        let mut groups: Vec<Group> = Vec::new();
        for item in items {
            let columns = match &import.columns {
                Some(columns) => columns.clone(),
                None => item.1.keys().filter_map(|k| Identifier::parse(k, false)).collect(),
            };
            if columns.is_empty() {
                results[item.0] = Some(ImportResult::refused(
                    "no_columns",
                    "the record has no columns".into(),
                    "database",
                    Value::Null,
                ));
                continue;
            }
            match groups.iter_mut().find(|g| g.0 == columns) {
                Some(g) => g.1.push(item),
                None => groups.push((columns, vec![item])),
            }
        }
        if !groups.is_empty() {
            let written = match self.pool(conn, &redact).await? {
                Pool::Pg(pool) => pg_import(&pool, import, &groups, &redact).await?,
                Pool::MySql(pool) => mysql_import(&pool, import, &groups, &redact).await?,
            };
            let items = groups.iter().flat_map(|g| g.1.iter());
            for ((i, object), result) in items.zip(written) {
                results[*i] = Some(match result {
                    Ok(true) => ImportResult::ok(key_id(import, object), Value::Null),
                    Ok(false) => ImportResult::refused(
                        "not_found",
                        "no row has the record's key".into(),
                        "database",
                        Value::Null,
                    ),
                    Err((code, message)) => ImportResult::refused(&code, message, "database", Value::Null),
                });
            }
        }
        Ok(results.into_iter().map(|r| r.expect("every record has a result")).collect())
    }
}

/// The record's key values (joined by `,`), its id in the results.
fn key_id(import: &DatabaseImport, record: &Map<String, Value>) -> Option<String> {
    if import.key.is_empty() {
        return None;
    }
    let parts: Vec<String> = import
        .key
        .iter()
        .map(|k| match record.get(k.name()) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        })
        .collect();
    Some(parts.join(","))
}

/// Per record: written (true), no row found (false) or refused (code, message).
type Written = Vec<Result<bool, (String, String)>>;

fn record_error(e: &sqlx::Error, redact: &Redactor) -> Result<(String, String), AdapterError> {
    match e {
        sqlx::Error::Database(db) => {
            Ok((db.code().map(|c| c.to_string()).unwrap_or_else(|| "database".into()), redact.clean(db.message())))
        }
        other => Err(AdapterError::Failed(redact.clean(&format!("the import failed: {other}")))),
    }
}

fn page_json(items: &[Item]) -> String {
    let objects: Vec<&Map<String, Value>> = items.iter().map(|(_, o)| *o).collect();
    serde_json::to_string(&objects).expect("JSON values serialize")
}

fn pg_statement(import: &DatabaseImport, columns: &[Identifier]) -> String {
    let k = DatabaseKind::Postgres;
    let table = import.table.quoted(k);
    let cols = columns.iter().map(|c| c.quoted(k)).collect::<Vec<_>>().join(", ");
    let rest: Vec<&Identifier> = columns.iter().filter(|c| !import.key.contains(c)).collect();
    match import.operation {
        DatabaseOperation::Insert | DatabaseOperation::Upsert => {
            let mut sql = format!(
                "INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{table}, $1::json)"
            );
            if import.operation == DatabaseOperation::Upsert {
                let keys = import.key.iter().map(|c| c.quoted(k)).collect::<Vec<_>>().join(", ");
                if rest.is_empty() {
                    sql.push_str(&format!(" ON CONFLICT ({keys}) DO NOTHING"));
                } else {
                    let set =
                        rest.iter().map(|c| format!("{0} = EXCLUDED.{0}", c.quoted(k))).collect::<Vec<_>>().join(", ");
                    sql.push_str(&format!(" ON CONFLICT ({keys}) DO UPDATE SET {set}"));
                }
            }
            sql
        }
        DatabaseOperation::Update => {
            let set_cols: Vec<&Identifier> = if rest.is_empty() { import.key.iter().collect() } else { rest };
            let set =
                set_cols.iter().map(|c| format!("{0} = junction_r.{0}", c.quoted(k))).collect::<Vec<_>>().join(", ");
            let on = import
                .key
                .iter()
                .map(|c| format!("junction_t.{0} = junction_r.{0}", c.quoted(k)))
                .collect::<Vec<_>>()
                .join(" AND ");
            format!(
                "UPDATE {table} AS junction_t SET {set} FROM (SELECT p.*, o.n AS junction_n \
                 FROM json_array_elements($1::json) WITH ORDINALITY AS o(e, n) \
                 CROSS JOIN LATERAL json_populate_record(NULL::{table}, o.e) AS p) AS junction_r \
                 WHERE {on} RETURNING junction_r.junction_n"
            )
        }
    }
}

/// Boxed with its lifetimes named: sqlx's executors borrowed across
/// awaits would otherwise make every caller's future `Send` for one
/// lifetime only (rust#102211), which a spawned task cannot be.
fn pg_import<'a>(
    pool: &'a PgPool,
    import: &'a DatabaseImport,
    groups: &'a [Group<'a>],
    redact: &'a Redactor,
) -> BoxedWrite<'a> {
    Box::pin(async move {
        let failed = |e: sqlx::Error| AdapterError::Failed(redact.clean(&format!("the import failed: {e}")));
        let mut tx = pool.begin().await.map_err(|e| classify("connecting to PostgreSQL", &e, redact))?;
        let mut written = Vec::new();
        for (columns, items) in groups {
            written.extend(pg_group(&mut tx, import, columns, items, redact).await?);
        }
        tx.commit().await.map_err(failed)?;
        Ok(written)
    })
}

fn pg_group<'a>(
    tx: &'a mut sqlx::PgConnection,
    import: &'a DatabaseImport,
    columns: &'a [Identifier],
    items: &'a [Item<'a>],
    redact: &'a Redactor,
) -> BoxedWrite<'a> {
    Box::pin(async move {
        let sql = pg_statement(import, columns);
        let update = import.operation == DatabaseOperation::Update;
        let failed = |e: sqlx::Error| AdapterError::Failed(redact.clean(&format!("the import failed: {e}")));
        sqlx::Executor::execute(&mut *tx, sqlx::raw_sql("SAVEPOINT junction_page")).await.map_err(failed)?;
        let batch = if update {
            sqlx::query_scalar::<_, i64>(&sql).bind(page_json(items)).fetch_all(&mut *tx).await.map(|found| {
                let mut out = vec![Ok(false); items.len()];
                for n in found {
                    if let Some(slot) = out.get_mut((n - 1) as usize) {
                        *slot = Ok(true);
                    }
                }
                out
            })
        } else {
            sqlx::query(&sql).bind(page_json(items)).execute(&mut *tx).await.map(|_| vec![Ok(true); items.len()])
        };
        match batch {
            Ok(written) => {
                sqlx::Executor::execute(&mut *tx, sqlx::raw_sql("RELEASE SAVEPOINT junction_page"))
                    .await
                    .map_err(failed)?;
                Ok(written)
            }
            Err(e) => {
                record_error(&e, redact)?;
                sqlx::Executor::execute(
                    &mut *tx,
                    sqlx::raw_sql("ROLLBACK TO SAVEPOINT junction_page; RELEASE SAVEPOINT junction_page"),
                )
                .await
                .map_err(failed)?;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let one = page_json(std::slice::from_ref(item));
                    sqlx::Executor::execute(&mut *tx, sqlx::raw_sql("SAVEPOINT junction_record"))
                        .await
                        .map_err(failed)?;
                    let done = if update {
                        sqlx::query_scalar::<_, i64>(&sql).bind(one).fetch_all(&mut *tx).await.map(|f| !f.is_empty())
                    } else {
                        sqlx::query(&sql).bind(one).execute(&mut *tx).await.map(|_| true)
                    };
                    let end = match &done {
                        Ok(_) => "RELEASE SAVEPOINT junction_record",
                        Err(_) => "ROLLBACK TO SAVEPOINT junction_record; RELEASE SAVEPOINT junction_record",
                    };
                    let result = match done {
                        Ok(found) => Ok(found),
                        Err(e) => Err(record_error(&e, redact)?),
                    };
                    sqlx::Executor::execute(&mut *tx, sqlx::raw_sql(end)).await.map_err(failed)?;
                    out.push(result);
                }
                Ok(out)
            }
        }
    })
}

fn mysql_insert(import: &DatabaseImport, columns: &[Identifier], rows: usize) -> String {
    let k = DatabaseKind::MySql;
    let cols = columns.iter().map(|c| c.quoted(k)).collect::<Vec<_>>().join(", ");
    let one = format!("({})", vec!["?"; columns.len()].join(", "));
    let mut sql = format!("INSERT INTO {} ({cols}) VALUES {}", import.table.quoted(k), vec![one; rows].join(", "));
    if import.operation == DatabaseOperation::Upsert {
        let rest: Vec<&Identifier> = columns.iter().filter(|c| !import.key.contains(c)).collect();
        let set: Vec<String> = if rest.is_empty() {
            import.key.iter().map(|c| format!("{0} = {0}", c.quoted(k))).collect()
        } else {
            rest.iter().map(|c| format!("{0} = VALUES({0})", c.quoted(k))).collect()
        };
        sql.push_str(&format!(" ON DUPLICATE KEY UPDATE {}", set.join(", ")));
    }
    sql
}

/// Boxed with its lifetimes named: sqlx's executors borrowed across
/// awaits would otherwise make every caller's future `Send` for one
/// lifetime only (rust#102211), which a spawned task cannot be.
fn mysql_import<'a>(
    pool: &'a MySqlPool,
    import: &'a DatabaseImport,
    groups: &'a [Group<'a>],
    redact: &'a Redactor,
) -> BoxedWrite<'a> {
    Box::pin(async move {
        let failed = |e: sqlx::Error| AdapterError::Failed(redact.clean(&format!("the import failed: {e}")));
        let mut tx = pool.begin().await.map_err(|e| classify("connecting to MySQL", &e, redact))?;
        let mut written = Vec::new();
        for (columns, items) in groups {
            written.extend(mysql_group(&mut tx, import, columns, items, redact).await?);
        }
        tx.commit().await.map_err(failed)?;
        Ok(written)
    })
}

fn mysql_group<'a>(
    tx: &'a mut sqlx::MySqlConnection,
    import: &'a DatabaseImport,
    columns: &'a [Identifier],
    items: &'a [Item<'a>],
    redact: &'a Redactor,
) -> BoxedWrite<'a> {
    Box::pin(async move {
        let k = DatabaseKind::MySql;
        let mut out: Written = Vec::with_capacity(items.len());
        if import.operation == DatabaseOperation::Update {
            let rest: Vec<&Identifier> = columns.iter().filter(|c| !import.key.contains(c)).collect();
            let set_cols: Vec<&Identifier> = if rest.is_empty() { import.key.iter().collect() } else { rest };
            let sql = format!(
                "UPDATE {} SET {} WHERE {}",
                import.table.quoted(k),
                set_cols.iter().map(|c| format!("{} = ?", c.quoted(k))).collect::<Vec<_>>().join(", "),
                import.key.iter().map(|c| format!("{} = ?", c.quoted(k))).collect::<Vec<_>>().join(" AND ")
            );
            for (_, object) in items {
                let mut q = sqlx::query(&sql);
                for c in set_cols.iter().chain(import.key.iter().collect::<Vec<_>>().iter()) {
                    q = bind_mysql(q, object.get(c.name()));
                }
                // The connection reports matched rows (CLIENT_FOUND_ROWS), so an
                // update to the same values still counts.
                out.push(match q.execute(&mut *tx).await {
                    Ok(done) => Ok(done.rows_affected() > 0),
                    Err(e) => Err(record_error(&e, redact)?),
                });
            }
        } else {
            let per_statement = (MYSQL_MAX_PARAMS / columns.len()).max(1);
            for chunk in items.chunks(per_statement) {
                let sql = mysql_insert(import, columns, chunk.len());
                let mut q = sqlx::query(&sql);
                for (_, object) in chunk {
                    for c in columns {
                        q = bind_mysql(q, object.get(c.name()));
                    }
                }
                match q.execute(&mut *tx).await {
                    Ok(_) => out.extend(chunk.iter().map(|_| Ok(true))),
                    Err(e) => {
                        record_error(&e, redact)?;
                        // A failed statement changed nothing: each record on its own.
                        let sql = mysql_insert(import, columns, 1);
                        for (_, object) in chunk {
                            let mut q = sqlx::query(&sql);
                            for c in columns {
                                q = bind_mysql(q, object.get(c.name()));
                            }
                            out.push(match q.execute(&mut *tx).await {
                                Ok(_) => Ok(true),
                                Err(e) => Err(record_error(&e, redact)?),
                            });
                        }
                    }
                }
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_decode_from_postgres_binary() {
        // 12345.678: weight 1, digits [1, 2345, 6780], dscale 3.
        let mut b = vec![0, 3, 0, 1, 0, 0, 0, 3];
        for d in [1u16, 2345, 6780] {
            b.extend(d.to_be_bytes());
        }
        assert_eq!(pg_numeric(&b).unwrap(), "12345.678");
        // -0.0005: weight -1, digits [5], dscale 4.
        let mut b = vec![0, 1, 0xff, 0xff, 0x40, 0, 0, 4];
        b.extend(5u16.to_be_bytes());
        assert_eq!(pg_numeric(&b).unwrap(), "-0.0005");
        // 0.00000001: weight -2, digits [1], dscale 8.
        let mut b = vec![0, 1, 0xff, 0xfe, 0, 0, 0, 8];
        b.extend(1u16.to_be_bytes());
        assert_eq!(pg_numeric(&b).unwrap(), "0.00000001");
        assert_eq!(decimal("12.50"), serde_json::json!(12.5));
        assert_eq!(decimal("7"), serde_json::json!(7));
        assert_eq!(decimal("12345678901234567.89"), serde_json::json!("12345678901234567.89"));
    }

    #[test]
    fn statements_quote_identifiers_and_bind_values() {
        let import = junction_core::flow::adapters::parse_database_import(
            "p",
            serde_json::json!({"table": "s.t", "operation": "upsert", "key": "id"}).as_object().unwrap(),
            &[],
        )
        .unwrap();
        let cols = [Identifier::parse("id", false).unwrap(), Identifier::parse("name", false).unwrap()];
        assert_eq!(
            pg_statement(&import, &cols),
            r#"INSERT INTO "s"."t" ("id", "name") SELECT "id", "name" FROM json_populate_recordset(NULL::"s"."t", $1::json) ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name""#
        );
        assert_eq!(
            mysql_insert(&import, &cols, 2),
            "INSERT INTO `s`.`t` (`id`, `name`) VALUES (?, ?), (?, ?) ON DUPLICATE KEY UPDATE `name` = VALUES(`name`)"
        );
    }
}
