//! Record flows through the built-in adapters, end to end: an HTTP source
//! and target started by the test, the machine's PostgreSQL and MariaDB,
//! a wrapper lookup and oneToMany.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::{on_both, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

const SHOP: &str = include_str!("fixtures/flows/shop.js");
const SOURCE_TOKEN: &str = "src-t0ken-9f8e7d6c";
const TARGET_TOKEN: &str = "dst-t0ken-1a2b3c4d";

#[derive(Clone, Default)]
struct Http {
    received: Arc<Mutex<Vec<(String, Value)>>>,
    /// Records the source serves.
    total: usize,
}

async fn orders(
    State(h): State<Http>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> axum::response::Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SOURCE_TOKEN}")) {
        return (AxStatus::UNAUTHORIZED, "bad token").into_response();
    }
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let from = (page - 1) * 20 + 1;
    let items: Vec<Value> = (from..from + 20)
        .filter(|i| *i <= h.total)
        .map(|i| json!({"id": i, "lines": (0..(i % 3)).map(|k| json!({"sku": format!("s{i}-{k}")})).collect::<Vec<_>>()}))
        .collect();
    Json(json!({"items": items, "page": page})).into_response()
}

async fn receive(
    State(h): State<Http>,
    headers: HeaderMap,
    Path(path): Path<String>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TARGET_TOKEN}")) {
        return (AxStatus::FORBIDDEN, "bad token").into_response();
    }
    h.received.lock().unwrap().push((path.clone(), body.clone()));
    if body["orderId"] == json!(5) {
        return (AxStatus::UNPROCESSABLE_ENTITY, "order 5 is a duplicate").into_response();
    }
    Json(json!({"id": format!("R-{}", body["orderId"])})).into_response()
}

async fn start_http(total: usize) -> (String, Http) {
    let state = Http { total, ..Default::default() };
    let app = Router::new().route("/orders", get(orders)).route("/in/{*path}", post(receive)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

async fn shop(server: &TestServer) {
    let (status, answer) = server
        .post(
            "/api/v1/stacks",
            json!({"name": "shop", "data": SHOP, "env": [{"name": "TARGET", "value": "http://127.0.0.1:9"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

fn http_flow(base: &str, source_token: &str) -> Value {
    json!({"name": "http_sync",
      "connections": {
        "src": {"type": "http", "baseURI": base, "headers": {"Authorization": "Bearer {{connection.encrypted.token}}"},
                "encrypted": {"token": source_token}},
        "dst": {"type": "http", "baseURI": format!("{base}/in"), "headers": {"Authorization": "Bearer {{connection.encrypted.token}}"},
                "encrypted": {"token": TARGET_TOKEN}}},
      "pageGenerators": [{"name": "orders", "type": "http", "connection": "src", "relativeURI": "/orders?page={{page}}",
          "paging": {"method": "page"}, "resourcePath": "items"}],
      "pageProcessors": [
        {"name": "tier", "type": "wrapper", "lookup": true, "stack": "shop", "function": "customerOf",
         "responseMapping": {"fields": [{"extract": "data.tier", "generate": "tier"}]}},
        {"name": "lines", "type": "http", "connection": "dst", "relativeURI": "/lines/{{record.sku}}",
         "oneToMany": true, "pathToMany": "lines", "mapping": {"fields": [{"extract": "sku", "generate": "sku"}]}},
        {"name": "push", "type": "http", "connection": "dst", "relativeURI": "/orders", "idPath": "id",
         "mapping": {"fields": [{"extract": "id", "generate": "orderId"}, {"extract": "tier", "generate": "tier"},
                                {"hardCodedValue": "web", "generate": "channel"}]},
         "responseMapping": {"fields": [{"extract": "id", "generate": "remoteId"}]}}]})
}

async fn http_source_lookup_one_to_many_and_http_target(server: &TestServer) {
    let (base, http) = start_http(50).await;
    shop(server).await;
    let (status, answer) = server.post("/api/v1/flows", http_flow(&base, SOURCE_TOKEN)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["document"]["connections"]["src"]["encrypted"]["token"], "********");
    let (status, run) = server.post("/api/v1/flows/http_sync/run?wait=30", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    let c = &run["counters"];
    // 50 orders in 3 pages (20, 20, 10) and one empty answer that ends it.
    assert_eq!(c["orders"]["success"], 50, "{c}");
    assert_eq!(c["tier"]["success"], 50, "{c}");
    // Orders with i % 3 == 0 have no lines: a record with an empty array is
    // ignored by the oneToMany import (nothing to import) and goes on.
    let received = http.received.lock().unwrap().clone();
    let lines: Vec<&(String, Value)> = received.iter().filter(|(p, _)| p.starts_with("lines/")).collect();
    let expected_lines: usize = (1..=50).map(|i| i % 3).sum();
    assert_eq!(lines.len(), expected_lines);
    assert!(lines.iter().any(|(p, b)| p == "lines/s7-0" && *b == json!({"sku": "s7-0"})), "{lines:?}");
    let pushed: Vec<&Value> = received.iter().filter(|(p, _)| p == "orders").map(|(_, b)| b).collect();
    assert_eq!(pushed.len(), 50);
    // The lookup's answer joined each record before the import mapped it.
    // (Pages go in parallel: the target sees them in any order.)
    let order = |id: i64| pushed.iter().find(|b| b["orderId"] == id).copied().cloned().unwrap();
    assert_eq!(order(1), json!({"orderId": 1, "tier": "gold", "channel": "web"}));
    assert_eq!(order(2)["tier"], "silver");
    assert_eq!(c["push"]["success"], 49, "{c}");
    assert_eq!(c["push"]["error"], 1, "{c}");
    let (_, errors) = server.get("/api/v1/flows/http_sync/errors?step=push").await;
    assert_eq!(errors[0]["traceKey"], "5");
    assert!(errors[0]["message"].as_str().unwrap().contains("order 5 is a duplicate"), "{errors}");
    // The retry data is the record as it entered the import: with the lookup's tier.
    let key = errors[0]["retryDataKey"].as_str().unwrap();
    let (_, retry) = server.get(&format!("/api/v1/flows/http_sync/errors/{key}")).await;
    assert_eq!(retry["data"]["tier"], "gold");
    assert_eq!(retry["data"]["id"], 5);
    // The connections' secrets are in no answer and no stored file.
    server.assert_never_sent(SOURCE_TOKEN);
    server.assert_never_sent(TARGET_TOKEN);
    server.assert_not_in_database_files(&[SOURCE_TOKEN, TARGET_TOKEN]);

    // A source that refuses the token: the connection goes offline and the
    // flow stops with that reason; the next run refuses to start it.
    let mut doc = http_flow(&base, "wrong-token-0000");
    doc["name"] = json!("refused");
    let (status, _) = server.post("/api/v1/flows", doc).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, run) = server.post("/api/v1/flows/refused/run?wait=30", json!({})).await;
    assert_eq!(run["state"], "FAILURE", "{run}");
    assert!(run["steps"][0]["result"].as_str().unwrap().contains("offline"), "{run}");
    let (_, flow) = server.get("/api/v1/flows/refused").await;
    assert!(flow["offline_connections"]["src"]["reason"].as_str().unwrap().contains("401"), "{flow}");
    server.assert_never_sent("wrong-token-0000");
}

on_both!(http_source_lookup_one_to_many_and_http_target => http_flow_on_sqlite, http_flow_on_postgres);

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MY_URL: &str = "mysql://root@127.0.0.1:3306/test";

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid_ish())
}

fn uuid_ish() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", n, std::process::id())
}

#[tokio::test]
async fn postgresql_to_mariadb_upsert_in_pages() {
    let server = TestServer::sqlite().await;
    let pg_url = std::env::var("JUNCTION_TEST_DATABASE_URL").unwrap_or_else(|_| PG_URL.to_string());
    let mut pg = sqlx::PgConnection::connect(&pg_url).await.expect("the machine's PostgreSQL");
    let mut my = sqlx::MySqlConnection::connect(MY_URL).await.expect("the machine's MariaDB on 3306");
    let (src, dst) = (unique("flow_src"), unique("flow_dst"));
    sqlx::raw_sql(&format!(
        "CREATE TABLE {src} (id bigint PRIMARY KEY, name text NOT NULL, amount double precision, updated_at timestamptz NOT NULL);
         INSERT INTO {src} SELECT g, 'name ' || g, g * 1.5, now() FROM generate_series(1, 2500) g;"
    ))
    .execute(&mut pg)
    .await
    .unwrap();
    sqlx::raw_sql(&format!(
        "CREATE TABLE {dst} (customer_id BIGINT PRIMARY KEY, label VARCHAR(100) NOT NULL, total DOUBLE, source VARCHAR(20))"
    ))
    .execute(&mut my)
    .await
    .unwrap();
    // One row is there already: the upsert replaces it.
    sqlx::raw_sql(&format!("INSERT INTO {dst} VALUES (7, 'old', 0, 'old')")).execute(&mut my).await.unwrap();
    let pg_parts: url_parts::Parts = url_parts::parse(&pg_url);
    let doc = json!({"name": "db_sync",
      "connections": {
        "pg": {"type": "postgresql", "host": pg_parts.host, "port": pg_parts.port, "database": pg_parts.database, "user": pg_parts.user},
        "my": {"type": "mysql", "host": "127.0.0.1", "port": 3306, "database": "test", "user": "root"}},
      "pageGenerators": [{"name": "customers", "type": "database", "connection": "pg", "pageSize": 1000,
          "query": format!("SELECT id, name, amount FROM {src} ORDER BY id")}],
      "pageProcessors": [{"name": "upsert", "type": "database", "connection": "my", "table": dst, "operation": "upsert",
          "key": "customer_id",
          "mapping": {"fields": [{"extract": "id", "generate": "customer_id"}, {"extract": "name", "generate": "label"},
                                 {"extract": "amount", "generate": "total"}, {"hardCodedValue": "pg", "generate": "source"}]}}]});
    let (status, answer) = server.post("/api/v1/flows", doc).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, run) = server.post("/api/v1/flows/db_sync/run?wait=30", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(run["counters"]["customers"]["pagesGenerated"], 3, "{run}");
    assert_eq!(run["counters"]["upsert"]["success"], 2500, "{run}");
    let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {dst}")).fetch_one(&mut my).await.unwrap();
    assert_eq!(count, 2500);
    let (label, total, source): (String, f64, String) =
        sqlx::query_as(&format!("SELECT label, total, source FROM {dst} WHERE customer_id = 7"))
            .fetch_one(&mut my)
            .await
            .unwrap();
    assert_eq!((label.as_str(), total, source.as_str()), ("name 7", 10.5, "pg"));
    // Running it again changes nothing: the upsert is idempotent.
    let (_, again) = server.post("/api/v1/flows/db_sync/run?wait=30", json!({})).await;
    assert_eq!(again["counters"]["upsert"]["success"], 2500, "{again}");
    let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {dst}")).fetch_one(&mut my).await.unwrap();
    assert_eq!(count, 2500);
    sqlx::raw_sql(&format!("DROP TABLE {src}")).execute(&mut pg).await.unwrap();
    sqlx::raw_sql(&format!("DROP TABLE {dst}")).execute(&mut my).await.unwrap();
}

/// The parts of a PostgreSQL URL a connection document names.
mod url_parts {
    pub struct Parts {
        pub host: String,
        pub port: u16,
        pub database: String,
        pub user: String,
    }

    pub fn parse(url: &str) -> Parts {
        let rest = url.split("://").nth(1).unwrap_or(url);
        let (auth, rest) = rest.split_once('@').unwrap_or(("postgres", rest));
        let user = auth.split(':').next().unwrap_or("postgres").to_string();
        let (hostport, database) = rest.split_once('/').unwrap_or((rest, "postgres"));
        let database = database.split('?').next().unwrap_or("postgres").to_string();
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
        Parts { host: host.to_string(), port: port.parse().unwrap_or(5432), database, user }
    }
}
