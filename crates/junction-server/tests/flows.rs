//! Record flows (spec 001) over HTTP: the real server and worker, real
//! stack functions in Node.js as hooks and wrappers, and a real local HTTP
//! server as the target (and the recorder of what every hook was given).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use common::{details, TestServer};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SHOP: &str = include_str!("fixtures/flows/shop.js");

/// What the stack functions sent: (path, body).
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Recorder {
    fn calls(&self, hook: &str) -> Vec<Value> {
        let path = format!("seen/{hook}");
        self.seen.lock().unwrap().iter().filter(|(p, _)| *p == path).map(|(_, b)| b.clone()).collect()
    }

    /// Every record the target was sent, in order.
    fn imported(&self) -> Vec<Value> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(p, _)| p == "import")
            .flat_map(|(_, b)| b.as_array().cloned().unwrap_or_default())
            .collect()
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

async fn record(State(r): State<Recorder>, Path(path): Path<String>, Json(body): Json<Value>) -> Json<Value> {
    r.seen.lock().unwrap().push((path, body));
    Json(json!({"ok": true}))
}

async fn start_recorder() -> (String, Recorder) {
    let recorder = Recorder::default();
    let app = Router::new().route("/{*path}", post(record)).with_state(recorder.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, recorder)
}

/// Uploads the `shop` stack with `TARGET` (and more env) set.
async fn shop(server: &TestServer, target: &str, env: &[(&str, &str)]) {
    let mut entries = vec![json!({"name": "TARGET", "value": target})];
    entries.extend(env.iter().map(|(n, v)| json!({"name": n, "value": v})));
    let (status, answer) = server.post("/api/v1/stacks", json!({"name": "shop", "data": SHOP, "env": entries})).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

fn orders_sync() -> Value {
    json!({"name": "orders_sync",
     "settings": {"region": "eu"},
     "pageGenerators": [{"name": "orders", "type": "wrapper", "stack": "shop", "function": "exportOrders",
         "pageSize": 20, "hooks": {"preSavePage": {"stack": "shop", "function": "tagPage"}}}],
     "pageProcessors": [{"name": "push", "type": "wrapper", "stack": "shop", "function": "importOrders",
         "mapping": {"fields": [{"extract": "id", "generate": "orderId"},
                                {"extract": "customer.email", "generate": "email"}]},
         "hooks": {"preMap": {"stack": "shop", "function": "dropCancelled"},
                   "postMap": {"stack": "shop", "function": "stamp"},
                   "postSubmit": {"stack": "shop", "function": "collect"}},
         "postResponseMap": {"stack": "shop", "function": "noteIds"}}]})
}

async fn put_flow(server: &TestServer, doc: Value) {
    let (status, answer) = server.post("/api/v1/flows", doc).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

async fn run(server: &TestServer, flow: &str) -> Value {
    let (status, run) = server.post(&format!("/api/v1/flows/{flow}/run?wait=30"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "the run ended within 30 s: {run}");
    run
}

async fn errors(server: &TestServer, flow: &str, query: &str) -> Vec<Value> {
    let (status, list) = server.get(&format!("/api/v1/flows/{flow}/errors?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array().unwrap().clone()
}

fn counter(run: &Value, step: &str, key: &str) -> u64 {
    run["counters"][step][key].as_u64().unwrap_or_else(|| panic!("no counter {step}.{key} in {}", run["counters"]))
}

#[tokio::test]
async fn the_issue_s_document_runs_as_written_with_every_hook_in_its_place() {
    let server = TestServer::sqlite().await;
    let (target, recorder) = start_recorder().await;
    shop(&server, &target, &[]).await;
    put_flow(&server, orders_sync()).await;
    let run = run(&server, "orders_sync").await;
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(run["outcome"], "completed_with_errors", "{run}");
    assert_eq!(run["app_name"], ".flow.orders_sync");
    // 50 orders in pages of 20; 5 cancelled ignored by preMap's {}, 7
    // refused by preMap's errors, 1 refused by the target.
    assert_eq!(counter(&run, "orders", "pagesGenerated"), 3);
    assert_eq!(counter(&run, "orders", "success"), 50);
    assert_eq!(counter(&run, "push", "pagesProcessed"), 3);
    assert_eq!(counter(&run, "push", "ignore"), 5);
    assert_eq!(counter(&run, "push", "error"), 8);
    assert_eq!(counter(&run, "push", "success"), 37);

    // What the target got: the mapping, then postMap's stamp; preMap's
    // change reached postMap (preMapData) but not the mapping's output.
    let imported = recorder.imported();
    assert_eq!(imported.len(), 38, "{imported:?}");
    assert_eq!(imported[0], json!({"orderId": 1, "email": "c1@shop.test", "stamped": true, "premapped": true}));
    assert!(imported
        .iter()
        .all(|r| r["orderId"].as_i64().unwrap() % 7 != 0 && r["orderId"].as_i64().unwrap() % 10 != 0));

    // Each hook was called once per page with spec 001's options.
    let tag = recorder.calls("tagPage");
    assert_eq!(tag.len(), 3);
    let pages: Vec<i64> = tag.iter().map(|c| c["options"]["pageIndex"].as_i64().unwrap()).collect();
    assert_eq!(pages, [0, 1, 2]);
    let o = &tag[0]["options"];
    assert_eq!(o["_exportId"], "orders");
    assert_eq!(o["_flowId"], "orders_sync");
    assert_eq!(o["settings"], json!({"region": "eu"}));
    assert_eq!(o["errors"], json!([]));
    assert!(o.get("retryData").is_some(), "{o}");
    assert_eq!(tag[0]["lengths"]["data"], 20);
    assert_eq!(tag[2]["lengths"]["data"], 10);

    let export = recorder.calls("exportOrders");
    assert_eq!(export.len(), 3);
    assert_eq!(export[0]["options"].get("state"), None, "the first call has no state");
    assert_eq!(export[1]["options"]["state"], json!({"next": 21}));
    assert_eq!(export[0]["options"]["_exportId"], "orders");

    let pre = recorder.calls("dropCancelled");
    assert_eq!(pre.len(), 3);
    assert_eq!(pre[0]["options"]["_importId"], "push");
    assert_eq!(pre[0]["options"]["settings"]["region"], "eu");
    // preSavePage's changes reached preMap.
    assert_eq!(pre[0]["sample"]["region"], "eu");
    assert_eq!(pre[0]["sample"]["page"], 0);

    let post = recorder.calls("stamp");
    assert_eq!(post[0]["lengths"]["preMapData"], post[0]["lengths"]["postMapData"]);
    // Page 0 (orders 1-20): 2 cancelled, 2 sevens gone before postMap.
    assert_eq!(post[0]["lengths"]["postMapData"], 16);
    let submit = recorder.calls("importOrders");
    assert_eq!(submit[0]["lengths"]["postMapData"], 16);
    let collect = recorder.calls("collect");
    assert_eq!(collect[0]["lengths"]["responseData"], 16);
    let note = recorder.calls("noteIds");
    // 13 failed at the target: 15 went on to postResponseMap.
    assert_eq!(note[0]["lengths"]["postResponseMapData"], 15);
    assert_eq!(note[0]["lengths"]["responseData"], 15);
    assert_eq!(note[0]["options"]["oneToMany"], false);

    // The errors, integrator.io's fields, each with its retry data.
    let list = errors(&server, "orders_sync", "step=push").await;
    assert_eq!(list.len(), 8, "{list:?}");
    let unlucky = list.iter().find(|e| e["code"] == "unlucky").expect("the target's refusal is stored");
    assert_eq!(unlucky["traceKey"], "13");
    assert_eq!(unlucky["message"], "order 13 is refused by the target");
    let seven = list.iter().find(|e| e["traceKey"] == "7").unwrap();
    assert_eq!(seven["code"], "seven");
    assert_eq!(seven["source"], "preMap");
    assert_eq!(seven["oIndex"], 6);
    assert!(seven["occurredAt"].as_str().unwrap().ends_with('Z'));
    let key = seven["retryDataKey"].as_str().unwrap().to_string();
    let (status, retry) = server.get(&format!("/api/v1/flows/orders_sync/errors/{key}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retry["step"], "push");
    // The record as it entered the import: after preSavePage, before preMap.
    assert_eq!(retry["data"]["id"], 7);
    assert_eq!(retry["data"]["region"], "eu");
    assert_eq!(retry["data"].get("premapped"), None);

    // The run's log names the page.
    let text = server.text(&format!("/api/v1/tasks/{}/log", run["id"].as_str().unwrap())).await;
    assert!(text.contains("page 2: orders: page of 10 records"), "{text}");
}

#[tokio::test]
async fn stored_errors_are_retried_with_edited_retry_data_and_resolved() {
    let server = TestServer::sqlite().await;
    let (target, recorder) = start_recorder().await;
    shop(&server, &target, &[("COUNT", "20")]).await;
    put_flow(&server, orders_sync()).await;
    run(&server, "orders_sync").await;
    let open = errors(&server, "orders_sync", "step=push").await;
    // 7 and 14 (sevens), 13 (target).
    assert_eq!(open.len(), 3, "{open:?}");
    let key_of = |trace: &str| {
        open.iter().find(|e| e["traceKey"] == trace).unwrap()["retryDataKey"].as_str().unwrap().to_string()
    };
    let (k7, k13) = (key_of("7"), key_of("13"));

    // Edit 7's retry data so that preMap lets it through, then retry it.
    let (status, edited) = server
        .put(
            &format!("/api/v1/flows/orders_sync/errors/{k7}"),
            json!({"data": {"id": 71, "status": "open", "customer": {"email": "fixed@shop.test"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    recorder.clear();
    let (status, retried) =
        server.post("/api/v1/flows/orders_sync/errors/retry?wait=30", json!({"retryDataKeys": [k7]})).await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["state"], "SUCCESS", "{retried}");
    assert_eq!(counter(&retried, "push", "success"), 1);
    assert_eq!(counter(&retried, "orders", "pagesGenerated"), 0, "a retry does not run the export");
    let imported = recorder.imported();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0]["email"], "fixed@shop.test");
    let open = errors(&server, "orders_sync", "step=push").await;
    assert_eq!(open.len(), 2, "the retried error is resolved: {open:?}");
    let all = errors(&server, "orders_sync", "step=push&include_resolved=true").await;
    let resolved = all.iter().find(|e| e["retryDataKey"] == k7.as_str()).unwrap();
    assert_eq!(resolved["resolvedBy"], "retry");

    // Retry all: 14 fails again (a new error), 13 fails again.
    let (status, again) =
        server.post("/api/v1/flows/orders_sync/errors/retry?wait=30", json!({"all": true, "step": "push"})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(counter(&again, "push", "error"), 2);
    let open = errors(&server, "orders_sync", "step=push").await;
    assert_eq!(open.len(), 2, "{open:?}");
    assert!(open.iter().all(|e| e["runId"] == again["id"]), "the old errors were replaced: {open:?}");

    // Resolve by hand; nothing is left to retry.
    let (status, answer) = server.post("/api/v1/flows/orders_sync/errors/resolve", json!({"all": true})).await;
    assert_eq!((status, answer["resolved"].as_u64()), (StatusCode::OK, Some(2)));
    let (status, answer) = server.post("/api/v1/flows/orders_sync/errors/retry", json!({"all": true})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    // Unknown keys and a bad selection are named.
    let (status, answer) =
        server.post("/api/v1/flows/orders_sync/errors/retry", json!({"retryDataKeys": ["nope"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(details(&answer), [("retryDataKeys[0]".to_string(), "unknown_key".to_string())]);
    let (status, answer) = server.post("/api/v1/flows/orders_sync/errors/retry", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(details(&answer)[0].0, "retryDataKeys");
    let _ = k13;
}

#[tokio::test]
async fn hook_contract_failures_fail_the_page_or_the_flow() {
    let server = TestServer::sqlite().await;
    let (target, recorder) = start_recorder().await;
    shop(&server, &target, &[("COUNT", "30")]).await;

    // A preMap answering the wrong length fails the whole page, naming it.
    let mut doc = orders_sync();
    doc["name"] = json!("short");
    doc["pageProcessors"][0]["hooks"]["preMap"] = json!({"stack": "shop", "function": "wrongLength"});
    put_flow(&server, doc).await;
    let r = run(&server, "short").await;
    assert_eq!(r["state"], "SUCCESS");
    assert_eq!(r["outcome"], "completed_with_errors");
    assert_eq!(counter(&r, "push", "error"), 30);
    assert_eq!(counter(&r, "push", "success"), 0);
    let list = errors(&server, "short", "step=push").await;
    let message = |e: &Value| e["message"].as_str().unwrap().to_string();
    assert!(list
        .iter()
        .any(|e| message(e) == "preMap answered 19 elements for a page of 20 records; the lengths must match"));
    assert!(list.iter().all(|e| e["code"] == "preMap"));
    assert!(recorder.imported().is_empty());

    // A postMap that throws fails the page.
    let mut doc = orders_sync();
    doc["name"] = json!("throwing");
    doc["pageProcessors"][0]["hooks"]["postMap"] = json!({"stack": "shop", "function": "throws"});
    put_flow(&server, doc).await;
    let r = run(&server, "throwing").await;
    assert_eq!(r["outcome"], "completed_with_errors");
    let list = errors(&server, "throwing", "step=push").await;
    assert!(list[0]["message"].as_str().unwrap().contains("postMap threw: this hook always throws"), "{list:?}");

    // A preSavePage that throws fails the flow.
    let mut doc = orders_sync();
    doc["name"] = json!("fatal");
    doc["settings"]["failPreSave"] = json!(true);
    put_flow(&server, doc).await;
    let r = run(&server, "fatal").await;
    assert_eq!(r["state"], "FAILURE", "{r}");
    assert_eq!(r["outcome"], "failed");
    assert!(r["steps"][0]["result"].as_str().unwrap().contains("preSavePage refused the page"), "{r}");

    // A postResponseMap that throws fails the flow too.
    let mut doc = orders_sync();
    doc["name"] = json!("fatal2");
    doc["pageProcessors"][0]["postResponseMap"] = json!({"stack": "shop", "function": "throws"});
    put_flow(&server, doc).await;
    let r = run(&server, "fatal2").await;
    assert_eq!(r["state"], "FAILURE", "{r}");

    // abort: the page that asked is finished, no further page is made.
    let mut doc = orders_sync();
    doc["name"] = json!("aborting");
    doc["settings"]["abortAt"] = json!(0);
    doc["settings"]["newError"] = json!(true);
    put_flow(&server, doc).await;
    recorder.clear();
    let r = run(&server, "aborting").await;
    assert_eq!(counter(&r, "orders", "pagesGenerated"), 1, "{r}");
    assert_eq!(recorder.calls("exportOrders").len(), 1);
    // newErrorsAndRetryData: an export error with its retry data.
    let list = errors(&server, "aborting", "step=orders").await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["code"], "new");
    let key = list[0]["retryDataKey"].as_str().unwrap();
    let (_, retry) = server.get(&format!("/api/v1/flows/aborting/errors/{key}")).await;
    assert_eq!(retry["data"]["id"], 999);
}

#[tokio::test]
async fn a_wrapper_export_answering_the_same_thing_six_times_is_stopped() {
    let server = TestServer::sqlite().await;
    let (target, _recorder) = start_recorder().await;
    shop(&server, &target, &[]).await;
    put_flow(
        &server,
        json!({"name": "loop", "pageGenerators": [{"name": "same", "type": "wrapper", "stack": "shop", "function": "sameForever"}]}),
    )
    .await;
    let r = run(&server, "loop").await;
    assert_eq!(r["state"], "FAILURE", "{r}");
    assert!(r["steps"][0]["result"].as_str().unwrap().contains("same response 6 times in a row"), "{r}");
    assert_eq!(counter(&r, "same", "pagesGenerated"), 5);
}

#[tokio::test]
async fn delta_time_is_the_start_of_the_last_successful_run() {
    let server = TestServer::sqlite().await;
    let (target, recorder) = start_recorder().await;
    shop(&server, &target, &[]).await;
    let doc = |fail: bool| {
        json!({"name": "delta", "settings": {"failPreSave": fail},
         "pageGenerators": [{"name": "changed", "type": "wrapper", "stack": "shop", "function": "deltaOrders",
            "exportType": "delta", "delta": {"dateField": "updatedAt", "lagOffset": 1000},
            "hooks": {"preSavePage": {"stack": "shop", "function": "tagPage"}}}]})
    };
    put_flow(&server, doc(false)).await;
    let first = run(&server, "delta").await;
    assert_eq!(first["state"], "SUCCESS", "{first}");
    let calls = recorder.calls("deltaOrders");
    assert_eq!(calls[0]["options"]["type"], "delta");
    assert_eq!(calls[0]["options"]["delta"], json!({"dateField": "updatedAt", "lastExecutionTime": null}));
    let (_, flow) = server.get("/api/v1/flows/delta").await;
    let last: jiff::Timestamp = flow["last_export"]["changed"].as_str().unwrap().parse().unwrap();

    // A failed run leaves the time where it was.
    put_flow(&server, doc(true)).await;
    let failed = run(&server, "delta").await;
    assert_eq!(failed["state"], "FAILURE");
    put_flow(&server, doc(false)).await;
    recorder.clear();
    run(&server, "delta").await;
    let calls = recorder.calls("deltaOrders");
    let given = calls[0]["options"]["delta"]["lastExecutionTime"].as_i64().unwrap();
    assert_eq!(given, last.as_millisecond() - 1000, "lagOffset is subtracted from the first run's start");
    // preSavePage gets the times as text.
    let tag = recorder.calls("tagPage");
    assert!(tag[0]["options"]["lastExportDateTime"].as_str().unwrap().ends_with('Z'));
    assert!(tag[0]["options"]["currentExportDateTime"].as_str().is_some());
}

#[tokio::test]
async fn connection_offline_stops_the_flow_and_marks_the_connection() {
    let server = TestServer::sqlite().await;
    let (target, _recorder) = start_recorder().await;
    shop(&server, &target, &[]).await;
    put_flow(
        &server,
        json!({"name": "gone", "connections": {"shopify": {"type": "wrapper", "encrypted": {"token": "s3cr3t-t0ken"}}},
         "pageGenerators": [{"name": "x", "type": "wrapper", "stack": "shop", "function": "offline", "connection": "shopify"}]}),
    )
    .await;
    let r = run(&server, "gone").await;
    assert_eq!(r["state"], "FAILURE", "{r}");
    let (_, flow) = server.get("/api/v1/flows/gone").await;
    assert_eq!(flow["offline_connections"]["shopify"]["reason"], "the token expired", "{flow}");
    assert_eq!(flow["document"]["connections"]["shopify"]["encrypted"]["token"], "********");
    server.assert_never_sent("s3cr3t-t0ken");
}

#[tokio::test]
async fn bad_flow_documents_are_refused_naming_the_field() {
    let server = TestServer::sqlite().await;
    let (target, _recorder) = start_recorder().await;
    shop(&server, &target, &[]).await;
    let cases = [
        (
            json!({"pageGenerators": [{"name": "a", "type": "wrapper", "stack": "nope", "function": "f"}], "name": "x"}),
            "pageGenerators[0].stack",
            "unknown_stack",
        ),
        (
            json!({"pageGenerators": [{"name": "a", "type": "wrapper", "stack": "shop", "function": "missing"}], "name": "x"}),
            "pageGenerators[0].function",
            "unknown_function",
        ),
        (
            json!({"name": "x", "pageGenerators": [{"name": "a", "type": "wrapper", "stack": "shop", "function": "exportOrders",
            "hooks": {"postMap": {"stack": "shop", "function": "stamp"}}}]}),
            "pageGenerators[0].hooks.postMap",
            "wrong_stage",
        ),
        (
            json!({"name": "x", "pageGenerators": [{"name": "a", "type": "wrapper", "stack": "shop", "function": "exportOrders"}],
            "pageProcessors": [{"name": "b", "type": "http", "relativeURI": "/x"}]}),
            "pageProcessors[0].connection",
            "required",
        ),
        (
            json!({"name": "x", "pageGenerators": [{"name": "a", "type": "wrapper", "stack": "shop", "function": "exportOrders"}],
            "pageProcessors": [{"name": "b", "type": "wrapper", "stack": "shop", "function": "importOrders",
               "mapping": {"fields": [{"extract": "a..b", "generate": "x"}]}}]}),
            "pageProcessors[0].mapping.fields[0].extract",
            "",
        ),
        (
            json!({"name": "x", "pageGenerators": [{"name": "a", "type": "wrapper", "stack": "shop", "function": "exportOrders",
            "pageSize": 0}]}),
            "pageGenerators[0].pageSize",
            "range",
        ),
    ];
    for (doc, field, rule) in cases {
        let (status, answer) = server.post("/api/v1/flows", doc.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{doc} -> {answer}");
        let found = details(&answer);
        assert!(
            found.iter().any(|(f, r)| f == field && (rule.is_empty() || r == rule)),
            "{field} {rule} not in {found:?} for {doc}"
        );
    }
    let (status, _) = server.get("/api/v1/flows/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    let (status, _) = server.post("/api/v1/flows/x/run", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_revoked_flow_run_stops_between_pages() {
    let server = TestServer::sqlite().await;
    let (target, recorder) = start_recorder().await;
    shop(&server, &target, &[("COUNT", "2000"), ("PAGE_DELAY_MS", "100")]).await;
    let mut doc = orders_sync();
    doc["ordered"] = json!(true);
    put_flow(&server, doc).await;
    let (status, r) = server.post("/api/v1/flows/orders_sync/run", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = r["id"].as_str().unwrap().to_string();
    // Revoked once it has committed a page or two.
    for _ in 0..200 {
        let (_, view) = server.get(&format!("/api/v1/tasks/{id}")).await;
        if view["counters"]["orders"]["pagesGenerated"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = server.post(&format!("/api/v1/tasks/{id}/revoke"), json!({})).await;
    assert!(status.is_success(), "{status}");
    let ended = server.engine.wait_run(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(ended.state.public().as_str(), "REVOKED");
    let (_, view) = server.get(&format!("/api/v1/tasks/{id}")).await;
    let pages = counter(&view, "orders", "pagesGenerated");
    assert!((1..100).contains(&pages), "stopped part way: {pages} pages");
    let before = recorder.imported().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(recorder.imported().len(), before, "nothing more is imported after the revoke");
}

#[tokio::test]
async fn webhook_posts_become_pages_once_stored_and_are_checked() {
    use hmac::{Hmac, Mac};
    let server = TestServer::sqlite().await;
    let (target, recorder) = start_recorder().await;
    shop(&server, &target, &[]).await;
    const KEY: &str = "whsec-5ecret-k3y";
    let doc = json!({"name": "inbound",
      "pageGenerators": [{"name": "hook", "type": "webhook",
          "verify": {"type": "hmac", "header": "X-Signature", "prefix": "sha256="}, "encrypted": {"key": KEY},
          "hooks": {"preSavePage": {"stack": "shop", "function": "tagPage"}}}],
      "pageProcessors": [{"name": "push", "type": "wrapper", "stack": "shop", "function": "importOrders",
          "mapping": {"fields": [{"extract": "id", "generate": "orderId"}]}}]});
    put_flow(&server, doc).await;
    let (_, flow) = server.get("/api/v1/flows/inbound").await;
    assert_eq!(flow["document"]["pageGenerators"][0]["encrypted"]["key"], "********");

    let body = json!([{"id": 1}, {"id": 2}, {"id": 3}]).to_string();
    let sign = |body: &str| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex_of(&mac.finalize().into_bytes()))
    };
    let post = |signature: String, content_type: &'static str, body: String| {
        server
            .http
            .post(format!("{}/flows/inbound/webhooks/hook", server.base))
            .header("X-Signature", signature)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let resp = post(sign(&body), "application/json", body.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let accepted: Value = resp.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap().to_string();
    let ended = server.engine.wait_run(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(ended.state.public().as_str(), "SUCCESS");
    let (_, view) = server.get(&format!("/api/v1/tasks/{id}")).await;
    assert_eq!(view["counters"]["hook"]["pagesGenerated"], 1, "{view}");
    assert_eq!(view["counters"]["push"]["success"], 3, "{view}");
    let ids: Vec<i64> = recorder.imported().iter().map(|r| r["orderId"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3]);

    // A wrong signature, a missing one, and (signed) a body that is not JSON.
    let resp = post("sha256=00".into(), "application/json", body.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = server
        .http
        .post(format!("{}/flows/inbound/webhooks/hook", server.base))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = post(sign(&body), "text/plain", body.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let resp = post(sign("not json"), "application/json", "not json".into()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = post(sign(&body), "application/json", body.clone()).await.unwrap();
    let resp2 = server
        .http
        .post(format!("{}/flows/inbound/webhooks/nope", server.base))
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp2.status(), StatusCode::NOT_FOUND);
    // A record that fails (the target refuses order 13) and later succeeds
    // (as "13") resolves its error by its traceKey.
    for (body, open) in [(json!([{"id": 13}]), 1), (json!([{"id": "13"}]), 0)] {
        let body = body.to_string();
        let resp = post(sign(&body), "application/json", body.clone()).await.unwrap();
        let accepted: Value = resp.json().await.unwrap();
        server.engine.wait_run(accepted["id"].as_str().unwrap(), Duration::from_secs(30)).await.unwrap();
        let list = errors(&server, "inbound", "step=push").await;
        assert_eq!(list.len(), open, "{list:?}");
    }
    let all = errors(&server, "inbound", "step=push&include_resolved=true").await;
    assert_eq!((all[0]["traceKey"].as_str(), all[0]["resolvedBy"].as_str()), (Some("13"), Some("auto")), "{all:?}");
    // A manual run of a webhook-only flow has no page to read.
    let r = run(&server, "inbound").await;
    assert_eq!(r["counters"]["hook"]["pagesGenerated"], 0, "{r}");
    server.assert_never_sent(KEY);
    server.assert_not_in_database_files(&[KEY]);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A flow's `schedule` fires it like an application's: one run per tick,
/// with the flow's own one-instance rule, and gone with the flow.
#[tokio::test]
async fn a_scheduled_flow_runs_on_its_ticks() {
    use junction_core::clock::ManualClock;
    let clock = Arc::new(ManualClock::new("2026-11-23T08:00:00Z".parse().unwrap()));
    let server = TestServer::sqlite_with(common::Options { clock: clock.clone(), workers: 1 }).await;
    let (target, recorder) = start_recorder().await;
    shop(&server, &target, &[("COUNT", "5")]).await;
    let mut doc = orders_sync();
    doc["schedule"] = json!({"schedule": {"schedule_type": "interval",
        "schedule_info": {"frequency": "Minute", "repeat_every": 1, "start_on": "2026-11-23T08:01"}}});
    put_flow(&server, doc.clone()).await;
    // A bad schedule is named under `schedule`.
    let mut bad = doc.clone();
    bad["schedule"]["schedule"]["schedule_info"]["frequency"] = json!("Fortnight");
    let (status, answer) = server.post("/api/v1/flows", bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(details(&answer).iter().all(|(f, _)| f.starts_with("schedule.")), "{answer}");

    assert!(server.engine.fire_due().await.unwrap().started.is_empty(), "not due before 08:01");
    clock.advance(jiff::SignedDuration::from_secs(61));
    let report = server.engine.fire_due().await.unwrap();
    let schedule = server.engine.get_schedule(".flow.orders_sync").await.unwrap();
    assert_eq!(report.started.len(), 1, "{report:?} {:?}", schedule.record);
    let run = server.engine.wait_run(&report.started[0], Duration::from_secs(30)).await.unwrap();
    assert_eq!(run.state.public().as_str(), "SUCCESS");
    assert_eq!(run.trigger_kind, "schedule");
    assert_eq!(run.application, ".flow.orders_sync");
    assert_eq!(recorder.calls("exportOrders").len(), 1);

    // Without its schedule the flow no longer fires.
    put_flow(&server, orders_sync()).await;
    clock.advance(jiff::SignedDuration::from_secs(120));
    assert!(server.engine.fire_due().await.unwrap().started.is_empty());
}

/// Every hook gets a `bearerToken` that reads its own flow and run while
/// the run goes, and nothing else, ever after.
#[tokio::test]
async fn hooks_get_a_bearer_token_for_their_run_only() {
    let server = TestServer::sqlite().await;
    let (target, recorder) = start_recorder().await;
    shop(&server, &target, &[("JUNCTION", &server.base.clone()), ("COUNT", "3")]).await;
    let mut doc = orders_sync();
    doc["pageGenerators"][0]["hooks"]["preSavePage"] = json!({"stack": "shop", "function": "useToken"});
    put_flow(&server, doc).await;
    let r = run(&server, "orders_sync").await;
    assert_eq!(r["state"], "SUCCESS", "{r}");
    let calls = recorder.calls("useToken");
    let options = &calls[0]["options"];
    assert_eq!(options["statuses"], json!({"flow": 200, "other": 403}), "{options}");
    let token = options["bearerToken"].as_str().unwrap();
    assert!(token.starts_with("jfr_"));
    assert!(recorder.calls("dropCancelled")[0]["options"]["bearerToken"] == token);
    // The run has ended: the token is worth nothing now.
    let (status, _) = server.send(reqwest::Method::GET, "/api/v1/flows/orders_sync", Some(token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let forged = format!("{}x", token);
    let (status, _) = server.send(reqwest::Method::GET, "/api/v1/flows/orders_sync", Some(&forged), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
