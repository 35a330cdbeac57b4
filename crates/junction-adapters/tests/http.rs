//! HTTP exports and imports against a real server on 127.0.0.1:0.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use junction_adapters::{http_client, http_import, AdapterError, HttpSource, Page};
use junction_core::flow::adapters::{
    parse_connection, parse_http_export, parse_http_import, Connection, HttpConnection, HttpExport, HttpImport,
};
use serde_json::{json, Value};

const TOTAL: usize = 25;

#[derive(Clone, Default)]
struct Hits(Arc<Mutex<HashMap<String, usize>>>);

impl Hits {
    /// Counts a call of `name` and answers how many there were, this one included.
    fn hit(&self, name: &str) -> usize {
        let mut m = self.0.lock().unwrap();
        let n = m.entry(name.to_string()).or_default();
        *n += 1;
        *n
    }
    fn get(&self, name: &str) -> usize {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

fn items(from: usize, to: usize) -> Vec<Value> {
    (from..to.min(TOTAL)).map(|i| json!({"id": i})).collect()
}

fn num(q: &HashMap<String, String>, k: &str) -> usize {
    q.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
}

async fn serve() -> (String, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route(
            "/pages",
            get(|State(h): State<Hits>, Query(q): Query<HashMap<String, String>>| async move {
                h.hit("pages");
                let (page, size) = (num(&q, "page"), num(&q, "size"));
                Json(json!({"data": {"items": items((page - 1) * size, page * size)}}))
            }),
        )
        .route(
            "/offset",
            get(|State(h): State<Hits>, Query(q): Query<HashMap<String, String>>| async move {
                h.hit("offset");
                let (offset, limit) = (num(&q, "offset"), num(&q, "limit"));
                Json(Value::Array(items(offset, offset + limit)))
            }),
        )
        .route(
            "/token",
            get(|State(h): State<Hits>, Query(q): Query<HashMap<String, String>>| async move {
                h.hit("token");
                let start = q
                    .get("after")
                    .filter(|t| !t.is_empty())
                    .map(|t| t.trim_start_matches("t-").parse::<usize>().unwrap())
                    .unwrap_or(0);
                let end = start + 10;
                let next = if end < TOTAL { json!(format!("t-{end}")) } else { Value::Null };
                Json(json!({"items": items(start, end), "meta": {"next": next}}))
            }),
        )
        .route(
            "/link",
            get(|State(h): State<Hits>, Query(q): Query<HashMap<String, String>>| async move {
                h.hit("link");
                let page = num(&q, "p").max(1);
                let mut headers = HeaderMap::new();
                if page * 10 < TOTAL {
                    let link = format!(r#"<https://elsewhere/x>; rel="prev", </link?p={}>; rel="next""#, page + 1);
                    headers.insert("link", link.parse().unwrap());
                }
                (headers, Json(Value::Array(items((page - 1) * 10, page * 10))))
            }),
        )
        .route(
            "/one",
            get(|State(h): State<Hits>| async move {
                h.hit("one");
                Json(json!({"id": "only"}))
            }),
        )
        .route(
            "/flaky",
            get(|State(h): State<Hits>| async move {
                if h.hit("flaky") == 1 {
                    (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
                } else {
                    Json(json!([{"id": 1}])).into_response()
                }
            }),
        )
        .route(
            "/down",
            get(|State(h): State<Hits>| async move {
                h.hit("down");
                (StatusCode::BAD_GATEWAY, "still down")
            }),
        )
        .route(
            "/limited",
            get(|State(h): State<Hits>| async move {
                if h.hit("limited") == 1 {
                    (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response()
                } else {
                    Json(json!([{"id": 1}])).into_response()
                }
            }),
        )
        .route(
            "/private",
            get(|State(h): State<Hits>, headers: HeaderMap| async move {
                h.hit("private");
                if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer right") {
                    Json(json!([{"id": 1}])).into_response()
                } else {
                    let echo = format!("bad token {:?}", headers.get("authorization"));
                    (StatusCode::UNAUTHORIZED, echo).into_response()
                }
            }),
        )
        .route(
            "/customers",
            post(|State(h): State<Hits>, Json(body): Json<Value>| async move {
                let n = h.hit("customers");
                tokio::time::sleep(Duration::from_millis(20)).await;
                if body["name"] == "bad" {
                    let message = format!("name is bad (key {})", body["key"].as_str().unwrap_or_default());
                    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
                } else {
                    (StatusCode::CREATED, Json(json!({"data": {"id": format!("c-{}", body["n"])}, "call": n})))
                        .into_response()
                }
            }),
        )
        .route(
            "/batch",
            post(|State(h): State<Hits>, Json(body): Json<Value>| async move {
                h.hit("batch");
                let out: Vec<Value> =
                    body["rows"].as_array().unwrap().iter().map(|r| json!({"id": format!("b-{}", r["n"])})).collect();
                Json(Value::Array(out))
            }),
        )
        .route("/forbidden", post(|| async { (StatusCode::FORBIDDEN, "no") }))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/"), hits)
}

fn connection(base: &str, token: &str) -> HttpConnection {
    let c = parse_connection(
        "c",
        &json!({"type": "http", "baseURI": base, "headers": {"Authorization": "Bearer {{connection.encrypted.token}}"},
                "encrypted": {"token": token}}),
    )
    .unwrap();
    let Connection::Http(c) = c else { panic!() };
    c
}

fn export(v: Value) -> HttpExport {
    parse_http_export("e", v.as_object().unwrap(), &[]).unwrap()
}

fn import(v: Value) -> HttpImport {
    parse_http_import("i", v.as_object().unwrap(), &[]).unwrap()
}

async fn all_pages(source: &mut HttpSource) -> Vec<Page> {
    let mut out = Vec::new();
    while let Some(page) = source.next_page().await.unwrap() {
        out.push(page);
        assert!(out.len() < 50, "too many pages");
    }
    out
}

fn ids(pages: &[Page]) -> Vec<i64> {
    pages.iter().flat_map(|p| p.records.iter().map(|r| r["id"].as_i64().unwrap())).collect()
}

fn vars() -> Value {
    json!({"settings": {}, "lastExportDateTime": null, "currentExportDateTime": "2024-01-01T00:00:00Z"})
}

#[tokio::test]
async fn page_number_paging_with_resource_path_and_resume() {
    let (base, hits) = serve().await;
    let client = http_client();
    let conn = connection(&base, "right");
    let e = export(json!({"relativeURI": "/pages?page={{page}}&size={{limit}}", "resourcePath": "data.items",
                          "paging": {"method": "page"}}));
    let mut source = HttpSource::new(&client, &conn, &e, vars(), 10, None);
    let pages = all_pages(&mut source).await;
    assert_eq!(pages.iter().map(|p| p.records.len()).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(ids(&pages), (0..25).collect::<Vec<_>>());
    assert_eq!(pages.iter().map(|p| p.last).collect::<Vec<_>>(), [false, false, true]);
    assert_eq!(hits.get("pages"), 3, "a short page stops the paging");

    // Resuming after the first page asks for page 2 on.
    let mut resumed = HttpSource::new(&client, &conn, &e, vars(), 10, Some(pages[0].state.clone()));
    assert_eq!(ids(&all_pages(&mut resumed).await), (10..25).collect::<Vec<_>>());
    let mut finished = HttpSource::new(&client, &conn, &e, vars(), 10, Some(pages[2].state.clone()));
    assert!(finished.next_page().await.unwrap().is_none());
}

#[tokio::test]
async fn offset_paging_stops_on_an_empty_page() {
    let (base, hits) = serve().await;
    let client = http_client();
    let e = export(json!({"relativeURI": "/offset?offset={{offset}}&limit={{limit}}", "paging": {"method": "skip"}}));
    let mut source = HttpSource::new(&client, &connection(&base, "x"), &e, vars(), 5, None);
    let pages = all_pages(&mut source).await;
    assert_eq!(ids(&pages), (0..25).collect::<Vec<_>>());
    assert_eq!(pages.len(), 5);
    // 25 is a multiple of 5: the sixth request answers no records and ends it.
    assert_eq!(hits.get("offset"), 6);
}

#[tokio::test]
async fn token_paging_follows_the_next_token_and_splits_big_answers() {
    let (base, hits) = serve().await;
    let client = http_client();
    let e = export(json!({"relativeURI": "/token", "resourcePath": "items",
                          "paging": {"method": "token", "path": "meta.next", "param": "after"}}));
    // Answers of 10 records in pages of 4: 4, 4, 2 per answer.
    let mut source = HttpSource::new(&client, &connection(&base, "x"), &e, vars(), 4, None);
    let pages = all_pages(&mut source).await;
    assert_eq!(ids(&pages), (0..25).collect::<Vec<_>>());
    assert_eq!(pages.iter().map(|p| p.records.len()).collect::<Vec<_>>(), [4, 4, 2, 4, 4, 2, 4, 1]);
    assert_eq!(hits.get("token"), 3);
    // Resuming in the middle of an answer skips what was delivered.
    let mut resumed = HttpSource::new(&client, &connection(&base, "x"), &e, vars(), 4, Some(pages[3].state.clone()));
    assert_eq!(ids(&all_pages(&mut resumed).await), (14..25).collect::<Vec<_>>());

    // {{cursor}} in the URL instead of param.
    let e = export(json!({"relativeURI": "/token?after={{cursor}}", "resourcePath": "items",
                          "paging": {"method": "token", "path": "meta.next"}}));
    let mut source = HttpSource::new(&client, &connection(&base, "x"), &e, vars(), 10, None);
    assert_eq!(ids(&all_pages(&mut source).await), (0..25).collect::<Vec<_>>());
}

#[tokio::test]
async fn link_header_paging_follows_rel_next() {
    let (base, hits) = serve().await;
    let client = http_client();
    let e = export(json!({"relativeURI": "/link", "paging": {"method": "linkheader"}}));
    let mut source = HttpSource::new(&client, &connection(&base, "x"), &e, vars(), 100, None);
    let pages = all_pages(&mut source).await;
    assert_eq!(ids(&pages), (0..25).collect::<Vec<_>>());
    assert_eq!(pages.len(), 3);
    assert!(pages[2].last);
    assert_eq!(hits.get("link"), 3);
}

#[tokio::test]
async fn a_single_object_is_one_record() {
    let (base, _) = serve().await;
    let e = export(json!({"relativeURI": "/one"}));
    let mut source = HttpSource::new(&http_client(), &connection(&base, "x"), &e, vars(), 10, None);
    let pages = all_pages(&mut source).await;
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].records, [json!({"id": "only"})]);
    assert!(pages[0].last);
}

#[tokio::test]
async fn server_errors_are_retried_and_retry_after_is_honoured() {
    let (base, hits) = serve().await;
    let client = http_client();
    let conn = connection(&base, "x");
    let mut source = HttpSource::new(&client, &conn, &export(json!({"relativeURI": "/flaky"})), vars(), 10, None);
    assert_eq!(source.next_page().await.unwrap().unwrap().records, [json!({"id": 1})]);
    assert_eq!(hits.get("flaky"), 2);

    let started = Instant::now();
    let mut source = HttpSource::new(&client, &conn, &export(json!({"relativeURI": "/limited"})), vars(), 10, None);
    assert_eq!(source.next_page().await.unwrap().unwrap().records.len(), 1);
    assert_eq!(hits.get("limited"), 2);
    assert!(started.elapsed() >= Duration::from_millis(950), "waited {:?}", started.elapsed());

    let started = Instant::now();
    let mut source = HttpSource::new(&client, &conn, &export(json!({"relativeURI": "/down"})), vars(), 10, None);
    let err = source.next_page().await.unwrap_err();
    let AdapterError::Failed(message) = err else { panic!("{err:?}") };
    assert!(message.contains("502") && message.contains("still down"), "{message}");
    assert_eq!(hits.get("down"), 4, "one try and three retries");
    assert!(started.elapsed() >= Duration::from_millis(1700), "backoff 0.2 + 0.5 + 1 s");
}

#[tokio::test]
async fn unauthorized_takes_the_connection_offline_without_leaking_the_token() {
    let (base, _) = serve().await;
    let client = http_client();
    let e = export(json!({"relativeURI": "/private"}));
    let mut ok = HttpSource::new(&client, &connection(&base, "right"), &e, vars(), 10, None);
    assert_eq!(ok.next_page().await.unwrap().unwrap().records.len(), 1);
    let mut wrong = HttpSource::new(&client, &connection(&base, "wrong-secret"), &e, vars(), 10, None);
    let err = wrong.next_page().await.unwrap_err();
    let AdapterError::Offline(message) = &err else { panic!("{err:?}") };
    assert!(message.contains("401") && message.contains("bad token"), "{message}");
    assert!(!message.contains("wrong-secret"), "{message}");
    assert!(message.contains("***"), "{message}");
}

#[tokio::test]
async fn per_record_import_keeps_order_gives_ids_and_refuses_bad_records() {
    let (base, hits) = serve().await;
    let client = http_client();
    let conn = connection(&base, "sekret");
    let i = import(json!({"relativeURI": "/customers", "idPath": "data.id"}));
    let mut records: Vec<Value> = (0..20).map(|n| json!({"n": n, "name": "ok"})).collect();
    records[7] = json!({"n": 7, "name": "bad", "key": "sekret"});
    let started = Instant::now();
    let results = http_import(&client, &conn, &i, &vars(), &records).await.unwrap();
    // 20 requests of 20 ms each, 8 at once: far below 20 × 20 ms.
    assert!(started.elapsed() < Duration::from_millis(300), "{:?}", started.elapsed());
    assert_eq!(hits.get("customers"), 20);
    assert_eq!(results.len(), 20);
    for (n, r) in results.iter().enumerate() {
        if n == 7 {
            assert_eq!(r.status_code, 422);
            assert_eq!(r.id, None);
            assert_eq!(r.errors[0]["code"], "400");
            assert_eq!(r.errors[0]["source"], "http");
            let message = r.errors[0]["message"].as_str().unwrap();
            assert!(message.contains("name is bad") && !message.contains("sekret"), "{message}");
        } else {
            assert_eq!((r.status_code, r.id.as_deref()), (200, Some(format!("c-{n}").as_str())), "{r:?}");
            assert!(r.errors.is_empty());
        }
    }

    let forbidden = import(json!({"relativeURI": "/forbidden"}));
    let err = http_import(&client, &conn, &forbidden, &vars(), &records[..2]).await.unwrap_err();
    assert!(matches!(err, AdapterError::Offline(ref m) if m.contains("403")), "{err:?}");
}

#[tokio::test]
async fn per_page_import_sends_one_request_and_reads_per_record_answers() {
    let (base, hits) = serve().await;
    let client = http_client();
    let i = import(
        json!({"relativeURI": "/batch", "requestMode": "page", "body": {"rows": "{{records}}"}, "idPath": "id"}),
    );
    let records: Vec<Value> = (0..5).map(|n| json!({"n": n})).collect();
    let results = http_import(&client, &connection(&base, "x"), &i, &vars(), &records).await.unwrap();
    assert_eq!(hits.get("batch"), 1);
    let got: Vec<(u16, Option<String>)> = results.iter().map(|r| (r.status_code, r.id.clone())).collect();
    let want: Vec<(u16, Option<String>)> = (0..5).map(|n| (200, Some(format!("b-{n}")))).collect();
    assert_eq!(got, want);
}
