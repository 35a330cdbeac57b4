//! The HTTP API, exercised through the real server on a loopback port.

mod common;

use common::{details, on_both, TestServer, ADMIN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

const JS_STEP: &str = "module.exports = { run: async (args) => { console.log(args.arguments); return 'ok'; } };\n";
const PY_STEP: &str = "from ipaascore.BaseStep import BaseStep\n\nclass QueryREST(BaseStep):\n    def __init__(self):\n        self.friendly_name = 'Query REST'\n\n    def execute(self):\n        self.save_data_for_next_step({})\n";

#[tokio::test]
async fn healthz_answers_without_a_token() {
    let s = TestServer::sqlite().await;
    let (status, body) = s.send(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["store"], "sqlite");
}

/// Walks the published OpenAPI document: every route it lists refuses a
/// request without a token (401) and a viewer's change (403), so no route
/// can be added without auth.
#[tokio::test]
async fn every_documented_route_requires_a_token_and_the_right_role() {
    let s = TestServer::sqlite().await;
    let viewer = s.token("viewer").await;
    let (status, doc) = s.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for expected in [
        "/api/v1/steps",
        "/api/v1/steps/{name}",
        "/api/v1/steps/{name}/versions",
        "/api/v1/steps/{name}/versions/{version}",
        "/api/v1/applications",
        "/api/v1/applications/{name}",
        "/api/v1/configurations",
        "/api/v1/configurations/{name}",
        "/api/v1/global-parameters",
        "/api/v1/global-parameters/{name}",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/openapi.json",
    ] {
        assert!(paths.contains_key(expected), "{expected} is documented");
    }
    let mut checked = 0;
    for (path, item) in paths {
        let concrete = path.replace("{name}", "x").replace("{version}", "1").replace("{id}", "x");
        for method in item.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = s.send(m.clone(), &concrete, None, Some(&json!({}))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without token: {body}");
            assert_eq!(body["error"]["code"], "unauthorized");
            let (status, _) = s.send(m.clone(), &concrete, Some("jct_not-a-real-token"), Some(&json!({}))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with a bad token");
            if m != Method::GET || path.starts_with("/api/v1/tokens") {
                let (status, body) = s.send(m, &concrete, Some(&viewer), Some(&json!({}))).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} as viewer: {body}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 19, "checked {checked} operations");
}

#[tokio::test]
async fn roles_decide_who_may_change_content_and_manage_tokens() {
    let s = TestServer::sqlite().await;
    let step = json!({"name": "hello", "data": JS_STEP});
    for role in ["viewer", "operator"] {
        let t = s.token(role).await;
        let (status, _) = s.send(Method::POST, "/api/v1/steps", Some(&t), Some(&step)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role} uploads");
        let (status, _) = s.send(Method::GET, "/api/v1/steps", Some(&t), None).await;
        assert_eq!(status, StatusCode::OK, "{role} reads");
    }
    let editor = s.token("editor").await;
    let (status, _) = s.send(Method::POST, "/api/v1/steps", Some(&editor), Some(&step)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.send(Method::GET, "/api/v1/tokens", Some(&editor), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins list tokens");
}

#[tokio::test]
async fn tokens_are_shown_once_listed_without_secret_and_revoked() {
    let s = TestServer::sqlite().await;
    let (status, created) = s.post("/api/v1/tokens", json!({"name": "ci", "role": "editor"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = created["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("jct_"));
    assert_eq!((created["name"].as_str(), created["role"].as_str()), (Some("ci"), Some("editor")));
    let id = created["id"].as_str().unwrap().to_string();
    let (status, list) = s.get("/api/v1/tokens").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&secret));
    let (status, _) = s.send(Method::GET, "/api/v1/steps", Some(&secret), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.delete(&format!("/api/v1/tokens/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.send(Method::GET, "/api/v1/steps", Some(&secret), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = s.post("/api/v1/tokens", json!({"name": "x", "role": "root"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(details(&body)[0].0, "role");
    let admin_id = s.get("/api/v1/tokens").await.1[0]["id"].as_str().unwrap().to_string();
    let (status, body) = s.delete(&format!("/api/v1/tokens/{admin_id}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = s.delete("/api/v1/tokens/no-such-id").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn steps_are_versioned_checked_by_their_interpreter_and_readable() {
    let s = TestServer::sqlite().await;
    let (status, v1) =
        s.post("/api/v1/steps", json!({"name": "hello", "data": JS_STEP, "description": "says hi"})).await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert_eq!((v1["version"].as_i64(), v1["language"].as_str()), (Some(1), Some("javascript")));
    assert_eq!(v1["sha256"].as_str().unwrap().len(), 64);
    let (_, same) = s.post("/api/v1/steps", json!({"name": "hello", "data": JS_STEP, "description": "says hi"})).await;
    assert_eq!(same["version"], 1);
    let (_, v2) = s.post("/api/v1/steps", json!({"name": "hello", "data": JS_STEP.replace("ok", "ok2")})).await;
    assert_eq!(v2["version"], 2);
    let (status, latest) = s.get("/api/v1/steps/hello").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["version"], 2);
    assert!(latest["data"].as_str().unwrap().contains("ok2"));
    let (_, versions) = s.get("/api/v1/steps/hello/versions").await;
    assert_eq!(versions.as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect::<Vec<_>>(), [2, 1]);
    let (status, old) = s.get("/api/v1/steps/hello/versions/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(old["data"], JS_STEP);
    let (status, body) = s.get("/api/v1/steps/hello/versions/one").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(s.get("/api/v1/steps/hello/versions/9").await.0, StatusCode::NOT_FOUND);

    let (status, py) = s.post("/api/v1/steps", json!({"name": "QueryREST", "data": PY_STEP})).await;
    assert_eq!(status, StatusCode::OK, "{py}");
    assert_eq!(py["language"], "python", "language inferred from the source");
    let (_, list) = s.get("/api/v1/steps").await;
    let names: Vec<_> = list.as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["QueryREST", "hello"]);
    assert!(list[0].get("data").is_none(), "listings carry no source");
}

async fn bad_step_uploads_are_refused_with_the_field_and_rule(s: &TestServer) {
    let cases = [
        (json!({"name": "js", "language": "javascript", "data": "module.exports = {run: ("}), ("data", "loads")),
        (json!({"name": "Other", "language": "python", "data": PY_STEP}), ("data", "loads")),
        (json!({"name": "py", "language": "python", "data": "def broken(:\n"}), ("data", "loads")),
        (json!({"name": "x", "data": "just words"}), ("language", "inferable")),
        (json!({"name": "../../etc/passwd", "data": JS_STEP}), ("name", "name_syntax")),
        (json!({"name": "my-step", "language": "python", "data": PY_STEP}), ("name", "python_class_name")),
        (json!({"name": "x", "language": "ruby", "data": "puts 1"}), ("language", "type")),
        (json!({"name": "x", "data": JS_STEP, "extra": 1}), ("extra", "unknown_field")),
        (json!({"name": 5, "data": JS_STEP}), ("name", "type")),
        (json!({"data": JS_STEP}), ("name", "required")),
    ];
    for (body, (field, rule)) in cases {
        let (status, answer) = s.post("/api/v1/steps", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed");
        let got = details(&answer);
        assert!(got.contains(&(field.to_string(), rule.to_string())), "{body}: expected {field}/{rule}, got {got:?}");
    }
    let (_, list) = s.get("/api/v1/steps").await;
    assert_eq!(list, json!([]), "nothing refused was stored");
}

const SPEC_APP: &str = r#"{
  "author": "ScienceLogic, Inc.",
  "configuration": "em7",
  "description": "Read SL1 devices.",
  "friendly_name": "Cache SL1 Devices",
  "name": "cache_em7_device_data",
  "version": "1.0.0",
  "generate_report": true,
  "queue": "test_queue",
  "meta": {"tags": ["x"]},
  "steps": [
    {"name": "GETgoogle.com", "file": "QueryREST", "prefix_url": "http://google.com", "method": "GET",
     "retry_max": 5, "retry_backoff": true, "retry_backoff_max": 600, "retry_countdown": 120, "output_to": ["next_step"]},
    {"name": "next_step", "file": "hello"}
  ],
  "app_variables": [
    {"name": "exampleVariable", "value": "exampleValue", "description": "d", "required": true,
     "sample_value": "SampleValue", "default_value": "DefaultValue"},
    {"name": "apiKey", "value": "APP-SECRET-VALUE-1", "encrypted": true}
  ]
}"#;

#[tokio::test]
async fn applications_round_trip_with_warnings_revisions_and_masked_variables() {
    let s = TestServer::sqlite().await;
    let doc: Value = serde_json::from_str(SPEC_APP).unwrap();
    let (status, stored) = s.post("/api/v1/applications", doc.clone()).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["revision"], 1);
    assert_eq!(
        details(&json!({"error": {"details": stored["warnings"]}})),
        pairs(&[("steps[0].file", "exists"), ("steps[1].file", "exists"), ("configuration", "exists")])
    );
    s.post("/api/v1/steps", json!({"name": "hello", "data": JS_STEP})).await;
    s.post("/api/v1/steps", json!({"name": "QueryREST", "data": PY_STEP})).await;
    s.post("/api/v1/configurations", json!({"name": "em7", "configuration_data": []})).await;
    let (status, got) = s.get("/api/v1/applications/cache_em7_device_data").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["warnings"], json!([]));
    let mut expected = doc.clone();
    expected["app_variables"][1]["value"] = Value::Null;
    for key in ["revision", "created_at", "updated_at", "warnings"] {
        expected[key] = got[key].clone();
    }
    assert_eq!(got, expected, "the document comes back as uploaded, masked value hidden, bookkeeping added");
    // What was read can be uploaded again unchanged: same revision, secret kept.
    let (status, again) = s.post("/api/v1/applications", got.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["revision"], 1);
    let (_, list) = s.get("/api/v1/applications").await;
    assert_eq!(list[0]["name"], "cache_em7_device_data");
    assert_eq!(list[0]["steps"], 2);
    assert_eq!(list[0]["queue"], "test_queue");
    // A step in use cannot be deleted.
    let (status, body) = s.delete("/api/v1/steps/hello").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(s.delete("/api/v1/applications/cache_em7_device_data").await.0, StatusCode::NO_CONTENT);
    assert_eq!(s.get("/api/v1/applications/cache_em7_device_data").await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.delete("/api/v1/steps/hello").await.0, StatusCode::NO_CONTENT);
    assert_eq!(s.get("/api/v1/steps/hello").await.0, StatusCode::NOT_FOUND);
    s.assert_never_sent("APP-SECRET-VALUE-1");
}

async fn invalid_applications_list_every_violation_and_change_nothing(s: &TestServer) {
    let good = json!({"name": "app", "steps": [{"name": "a", "file": "S"}]});
    assert_eq!(s.post("/api/v1/applications", good.clone()).await.0, StatusCode::OK);
    let cases = [
        (
            json!({"name": "app", "steps": [
                {"name": "a", "file": "S", "output_to": ["ghost"], "retry_max": "3"},
                {"name": "a", "file": "S", "retry_jitter": 1},
            ]}),
            pairs(&[("steps[0].retry_max", "type"), ("steps[1].name", "unique"), ("steps[1].retry_jitter", "type")]),
        ),
        (
            json!({"name": "app", "steps": [
                {"name": "a", "file": "S", "output_to": ["b"]},
                {"name": "b", "file": "S", "output_to": ["a"]},
            ]}),
            pairs(&[("steps", "acyclic")]),
        ),
        (
            json!({"name": "app", "steps": [{"name": "a", "file": "S", "output_to": ["ghost"]}]}),
            pairs(&[("steps[0].output_to[0]", "unknown_step")]),
        ),
        (json!({"name": "../app", "steps": []}), pairs(&[("name", "name_syntax"), ("steps", "min_items")])),
        (
            json!({"name": "app", "steps": [{"name": "a", "file": "S"}], "app_variables": [{"value": 1}]}),
            pairs(&[("app_variables[0].name", "required")]),
        ),
        (json!("just a string"), pairs(&[("body", "type")])),
    ];
    for (body, want) in cases {
        let (status, answer) = s.post("/api/v1/applications", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(details(&answer), want, "{body}");
    }
    let (_, stored) = s.get("/api/v1/applications/app").await;
    assert_eq!(stored["revision"], 1, "refused uploads left the stored application alone");
    assert_eq!(stored["steps"], good["steps"]);
}

#[tokio::test]
async fn encrypted_configuration_values_are_write_only_and_never_unmasked() {
    let s = TestServer::sqlite().await;
    let doc = json!({"name": "em7", "friendly_name": "EM7", "configuration_data": [
        {"name": "host", "value": "10.2.11.42", "encrypted": false},
        {"name": "password", "value": "CONFIG-SECRET-VALUE-1", "encrypted": true}]});
    let (status, stored) = s.post("/api/v1/configurations", doc).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["configuration_data"][1], json!({"name": "password", "value": null, "encrypted": true}));
    let (_, got) = s.get("/api/v1/configurations/em7").await;
    let (status, _) = s.post("/api/v1/configurations", got.clone()).await;
    assert_eq!(status, StatusCode::OK, "a read document uploads again");
    let mut unmask = got.clone();
    unmask["configuration_data"][1] = json!({"name": "password", "value": "plain now", "encrypted": false});
    let (status, answer) = s.post("/api/v1/configurations", unmask).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(details(&answer), pairs(&[("configuration_data[1].encrypted", "stays_encrypted")]));
    let (_, list) = s.get("/api/v1/configurations").await;
    assert_eq!((list[0]["entries"].as_u64(), list[0]["encrypted_entries"].as_u64()), (Some(2), Some(1)));
    let (status, _) = s.delete("/api/v1/configurations/global").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(s.delete("/api/v1/configurations/em7").await.0, StatusCode::NO_CONTENT);
    assert_eq!(s.delete("/api/v1/configurations/em7").await.0, StatusCode::NOT_FOUND);
    s.assert_never_sent("CONFIG-SECRET-VALUE-1");
}

#[tokio::test]
async fn global_parameters_keep_masked_values_hidden_and_masked() {
    let s = TestServer::sqlite().await;
    let (status, list) = s.get("/api/v1/global-parameters").await;
    assert_eq!((status, list), (StatusCode::OK, json!([])));
    let (status, saved) = s
        .put(
            "/api/v1/global-parameters",
            json!([
            {"name": "JiraUrl", "type": "string", "value": "http://jira.local"},
            {"name": "JiraToken", "type": "masked", "value": "GLOBAL-SECRET-VALUE-1"}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved[1], json!({"name": "JiraToken", "type": "masked", "value": null}));
    let (_, shown) = s.get("/api/v1/global-parameters").await;
    assert_eq!(shown, saved);
    let (status, answer) =
        s.put("/api/v1/global-parameters", json!([{"name": "JiraToken", "type": "string", "value": "x"}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(details(&answer), pairs(&[("[0].type", "stays_encrypted")]));
    let (status, answer) = s.put("/api/v1/global-parameters", json!([{"name": "a", "type": "secret"}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(details(&answer)[0].0, "[0].type");
    // Sending the list back as read keeps the masked value.
    assert_eq!(s.put("/api/v1/global-parameters", shown.clone()).await.0, StatusCode::OK);
    let (_, config) = s.get("/api/v1/configurations/global").await;
    assert_eq!(config["configuration_data"][1]["encrypted"], true);
    s.assert_never_sent("GLOBAL-SECRET-VALUE-1");
}

async fn malformed_oversized_and_non_json_bodies_get_json_errors(s: &TestServer) {
    let lists = ["/api/v1/applications", "/api/v1/steps", "/api/v1/configurations"];
    let mut before = Vec::new();
    for path in lists {
        let (status, body) = s.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        before.push(body);
    }
    let url = format!("{}/api/v1/applications", s.base);
    let send = |body: Vec<u8>, ctype: &'static str| {
        s.http.post(&url).bearer_auth(ADMIN).header("content-type", ctype).body(body).send()
    };
    let (status, body) = s.read(send(b"{\"name\": ".to_vec(), "application/json").await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_json");
    let (status, body) = s.read(send(b"{\"name\": \"a\"} trailing".to_vec(), "application/json").await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("malformed_json")));
    let (status, body) = s.read(send(b"{\"name\": \"\xff\xfe\"}".to_vec(), "application/json").await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "non-UTF-8: {body}");
    let (status, body) = s.read(send(b"name=a".to_vec(), "application/x-www-form-urlencoded").await.unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type"))
    );
    let mut big = b"{\"name\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 11 * 1024 * 1024));
    big.extend(b"\"}");
    let (status, body) = s.read(send(big, "application/json").await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));
    let (status, body) = s.send(Method::GET, "/api/v1/nothing-here", Some(ADMIN), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, body) = s.send(Method::PATCH, "/api/v1/steps", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(s.get("/api/v1/applications/a").await.0, StatusCode::NOT_FOUND, "nothing was stored");
    for (path, before) in lists.into_iter().zip(before) {
        let (status, after) = s.get(path).await;
        assert_eq!((status, &after), (StatusCode::OK, &before), "nothing was stored: {path}");
    }
}

/// The acceptance check of the foundation: three kinds of secret, sent in
/// clear once, are absent from every response and from the SQLite files.
#[tokio::test]
async fn secrets_never_leave_in_clear_in_responses_or_the_database_file() {
    let mut s = TestServer::sqlite().await;
    let secrets = ["LEAK-CHECK-CONFIG-7f3a", "LEAK-CHECK-APPVAR-9b1c", "LEAK-CHECK-GLOBAL-2d4e"];
    s.post(
        "/api/v1/configurations",
        json!({"name": "c", "configuration_data": [
        {"name": "pw", "value": secrets[0], "encrypted": true}]}),
    )
    .await;
    s.post(
        "/api/v1/applications",
        json!({"name": "job", "steps": [{"name": "s", "file": "S"}],
        "app_variables": [{"name": "token", "value": secrets[1], "encrypted": true}]}),
    )
    .await;
    s.put("/api/v1/global-parameters", json!([{"name": "pw", "type": "masked", "value": secrets[2]}])).await;
    for path in [
        "/api/v1/configurations",
        "/api/v1/configurations/c",
        "/api/v1/applications",
        "/api/v1/applications/job",
        "/api/v1/global-parameters",
        "/api/v1/configurations/global",
        "/api/v1/openapi.json",
    ] {
        assert_eq!(s.get(path).await.0, StatusCode::OK, "{path}");
    }
    s.stop().await;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(s.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    assert!(files.iter().any(|(p, _)| p.ends_with("junction.db")));
    for secret in secrets {
        s.assert_never_sent(secret);
        for (path, bytes) in &files {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in {}", path.display());
        }
    }
}

/// The same content API over PostgreSQL.
#[tokio::test]
async fn content_api_works_on_postgres() {
    let s = TestServer::postgres().await;
    let (status, health) = s.send(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, health["store"].as_str()), (StatusCode::OK, Some("postgres")));
    assert_eq!(s.post("/api/v1/steps", json!({"name": "hello", "data": JS_STEP})).await.0, StatusCode::OK);
    let doc: Value = serde_json::from_str(SPEC_APP).unwrap();
    let (status, stored) = s.post("/api/v1/applications", doc).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["app_variables"][1]["value"], Value::Null);
    let (status, answer) = s
        .post("/api/v1/applications", json!({"name": "a", "steps": [{"name": "x", "file": "S", "output_to": ["x"]}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(details(&answer), pairs(&[("steps[0].output_to[0]", "self_reference")]));
    let (status, _) =
        s.put("/api/v1/global-parameters", json!([{"name": "k", "type": "masked", "value": "PG-SECRET-1"}])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.get("/api/v1/global-parameters").await.1[0]["value"], Value::Null);
    s.assert_never_sent("PG-SECRET-1");
    s.assert_never_sent("APP-SECRET-VALUE-1");
}

#[tokio::test]
async fn one_global_parameter_at_a_time_loses_no_concurrent_edit() {
    let s = TestServer::sqlite().await;
    let puts = (0..10).map(|i| {
        let http = s.http.clone();
        let url = format!("{}/api/v1/global-parameters/p{i}", s.base);
        tokio::spawn(async move {
            http.put(url)
                .bearer_auth(ADMIN)
                .json(&json!({"type": "string", "value": format!("v{i}")}))
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    for p in puts.collect::<Vec<_>>() {
        assert_eq!(p.await.unwrap(), StatusCode::OK);
    }
    let (_, list) = s.get("/api/v1/global-parameters").await;
    assert_eq!(list.as_array().unwrap().len(), 10, "{list}");
    let (status, list) =
        s.put("/api/v1/global-parameters/p3", json!({"type": "masked", "value": "PER-NAME-SECRET"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().iter().find(|p| p["name"] == "p3").unwrap()["value"], Value::Null);
    let (status, body) = s.put("/api/v1/global-parameters/p3", json!({"type": "string", "value": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(details(&body), pairs(&[("type", "stays_encrypted")]));
    let (status, body) = s.put("/api/v1/global-parameters/p3", json!({"name": "p4", "type": "string"})).await;
    assert_eq!((status, details(&body)), (StatusCode::BAD_REQUEST, pairs(&[("name", "matches_path")])));
    let (status, body) = s.put("/api/v1/global-parameters/new", json!({"type": "masked", "value": null})).await;
    assert_eq!((status, details(&body)), (StatusCode::BAD_REQUEST, pairs(&[("value", "value_required")])));
    let (status, list) = s.delete("/api/v1/global-parameters/p0").await;
    assert_eq!((status, list.as_array().unwrap().len()), (StatusCode::OK, 9));
    assert_eq!(s.delete("/api/v1/global-parameters/p0").await.0, StatusCode::NOT_FOUND);
    s.assert_never_sent("PER-NAME-SECRET");
}

async fn a_wrongly_typed_secret_is_not_echoed_in_the_error(s: &TestServer) {
    let (status, body) =
        s.put("/api/v1/global-parameters", json!([{"name": "k", "type": "masked", "value": 987654321}])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(details(&body), pairs(&[("[0].value", "type")]));
    s.assert_never_sent("987654321");
}

async fn control_characters_in_path_names_are_refused_before_the_store(s: &TestServer) {
    let requests = [
        (Method::GET, "/api/v1/steps/a%00b"),
        (Method::GET, "/api/v1/applications/a%00b"),
        (Method::DELETE, "/api/v1/configurations/x%0A"),
        (Method::DELETE, "/api/v1/tokens/a%00"),
    ];
    for (method, path) in requests {
        let (status, body) = s.send(method, path, Some(ADMIN), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "validation_failed");
    }
    let (status, body) =
        s.post("/api/v1/steps", json!({"name": "d", "data": JS_STEP, "description": "nul\u{0}here"})).await;
    assert_eq!((status, details(&body)), (StatusCode::BAD_REQUEST, pairs(&[("description", "no_nul")])));
}

/// A NUL (U+0000) in any string or key of any JSON body is a 400 naming
/// the field — never a 500 (PostgreSQL cannot store NUL in text) — and
/// nothing is stored.
async fn nul_in_any_json_string_or_key_is_refused_naming_the_field(s: &TestServer) {
    let nul = |field: &str| vec![(field.to_string(), "no_nul".to_string())];
    let refused = |(status, body): (StatusCode, Value), field: &str| {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert_eq!(body["error"]["code"], "validation_failed", "{field}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
        assert_eq!(details(&body), nul(field), "{body}");
    };
    // What the requests below would reach without the check.
    assert_eq!(s.post("/api/v1/steps", json!({"name": "nul_step", "data": JS_STEP})).await.0, StatusCode::OK);
    let app = json!({"name": "nul_app", "steps": [{"name": "s", "file": "nul_step"}]});
    assert_eq!(s.post("/api/v1/applications", app.clone()).await.0, StatusCode::OK);
    let (status, company) = s.post("/api/v1/companies", json!({"name": "nul co"})).await;
    assert_eq!(status, StatusCode::CREATED, "{company}");
    let company = company["id"].as_i64().unwrap();
    let (status, service) = s.post(&format!("/api/v1/companies/{company}/cicd_services"), json!({"name": "cd"})).await;
    assert_eq!(status, StatusCode::CREATED, "{service}");

    // Signing in needs no token.
    for (body, field) in
        [(json!({"user": "a\u{0}", "password": "x"}), "user"), (json!({"user": "a", "password": "x\u{0}"}), "password")]
    {
        refused(s.send(Method::POST, "/api/v1/session", None, Some(&body)).await, field);
    }
    refused(s.post("/api/v1/applications/nul_app/run", json!({"configuration": "a\u{0}b"})).await, "configuration");
    let mut step_name = app.clone();
    step_name["steps"][0]["name"] = json!("s\u{0}");
    refused(s.post("/api/v1/applications", step_name).await, "steps[0].name");
    let mut key = app.clone();
    key["meta"] = json!({"k\u{0}": 1});
    refused(s.post("/api/v1/applications", key).await, "meta[\"k\\u0000\"]");
    refused(s.post("/api/v1/steps", json!({"name\u{0}": "x", "data": JS_STEP})).await, "[\"name\\u0000\"]");
    let config = json!({"name": "nul_conf", "configuration_data": [{"name": "host", "value": "10.0.0.1\u{0}"}]});
    refused(s.post("/api/v1/configurations", config).await, "configuration_data[0].value");
    let schedule = json!({"application_id": "nul_app", "params": {"k": "a\u{0}"}, "schedule": {
        "schedule_type": "frequency", "schedule_info": {"run_every": 60}}});
    refused(s.post("/api/v1/schedule", schedule).await, "params.k");
    let job = json!({"job_id": "1", "status": "Succeeded", "triggered_by": "u@org.com", "repo_id": "1",
        "service_id": service["id"], "job_start_time": 1704018030, "job_duration": 300, "job_type": "Deploy\u{0}"});
    refused(s.post(&format!("/webhook/company/{company}/cicd_job"), job).await, "job_type");
    // XDS messages are refused the same way, and the refusal is recorded.
    let activity = json!({"api_version": "1", "source_association_key": "a\u{0}", "custom_data": {}});
    let answer = s.post("/api/1/activities", activity.clone()).await;
    let recorded = s.get("/api/v1/xds/rejections?limit=1").await.1[0].clone();
    assert_eq!(recorded["details"], answer.1["error"]["details"], "{recorded}");
    assert_eq!(serde_json::from_str::<Value>(recorded["body"].as_str().unwrap()).unwrap(), activity);
    refused(answer, "source_association_key");
    let schema = json!({"api_version": "1", "custom_schema": {"schema_id": "s\u{0}"}});
    refused(s.post("/api/1/schemas", schema).await, "custom_schema.schema_id");
    // So are queue messages (the AMQP intake), dead-lettered as refused.
    let outcome = s.engine.ingest_queue_message(&serde_json::to_vec(&activity).unwrap(), Some("nul-message")).await;
    assert!(matches!(outcome, junction_engine::QueueOutcome::Refused(_)), "{outcome:?}");
    let recorded = s.get("/api/v1/xds/rejections?limit=1").await.1[0].clone();
    assert_eq!(details(&json!({"error": recorded})), nul("source_association_key"), "{recorded}");

    // Nothing refused was stored.
    assert_eq!(s.get("/api/v1/applications/nul_app").await.1["revision"], 1);
    assert_eq!(s.get("/api/v1/applications/nul_app/runs").await.1, json!([]));
    assert_eq!(s.get("/api/v1/configurations/nul_conf").await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/v1/schedule").await.1, json!([]));
    assert_eq!(s.get(&format!("/api/v1/companies/{company}/cicd_jobs")).await.1, json!([]));
    assert_eq!(s.get("/api/v1/xds/activities").await.1, json!([]));
}

/// Hostile and malformed input: the same answers on both backends.
async fn bad_input(s: &TestServer) {
    bad_step_uploads_are_refused_with_the_field_and_rule(s).await;
    invalid_applications_list_every_violation_and_change_nothing(s).await;
    malformed_oversized_and_non_json_bodies_get_json_errors(s).await;
    a_wrongly_typed_secret_is_not_echoed_in_the_error(s).await;
    control_characters_in_path_names_are_refused_before_the_store(s).await;
    nul_in_any_json_string_or_key_is_refused_naming_the_field(s).await;
}

on_both!(bad_input => bad_input_is_refused_alike_on_sqlite, bad_input_is_refused_alike_on_postgres);

/// The `openapi-spec-validator` release the document is checked with.
const OPENAPI_VALIDATOR: &str = "openapi-spec-validator==0.9.0";

/// A directory holding `openapi-spec-validator` (for `PYTHONPATH`),
/// installed from PyPI once per build dir: an exclusive file lock makes one
/// test install it and the others wait, a stamp records the pinned release.
fn openapi_validator() -> std::path::PathBuf {
    let tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.join("openapi-validator");
    let stamp = dir.join(".installed");
    let installed = || std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == OPENAPI_VALIDATOR);
    if installed() {
        return dir;
    }
    std::fs::create_dir_all(&tmp).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(tmp.join("openapi-validator.lock"))
        .unwrap();
    lock.lock().unwrap();
    if !installed() {
        let _ = std::fs::remove_dir_all(&dir);
        let out = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&dir)
            .arg(OPENAPI_VALIDATOR)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "pip install {OPENAPI_VALIDATOR} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&stamp, OPENAPI_VALIDATOR).unwrap();
    }
    drop(lock);
    dir
}

/// The published OpenAPI document is valid OpenAPI, as Python's
/// `openapi-spec-validator` sees it; its operation ids are unique and its
/// path parameters are exactly the `{name}`s of each path template.
#[tokio::test]
async fn the_openapi_document_is_valid() {
    let s = TestServer::sqlite().await;
    let (status, doc) = s.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);

    let mut problems = Vec::new();
    let mut ids = std::collections::BTreeMap::<String, String>::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let templated: std::collections::BTreeSet<&str> =
            path.split('{').skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name)).collect();
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            match op["operationId"].as_str() {
                Some(id) => {
                    if let Some(other) = ids.insert(id.to_string(), at.clone()) {
                        problems.push(format!("operationId {id} is used by {other} and {at}"));
                    }
                }
                None => problems.push(format!("{at} has no operationId")),
            }
            let mut in_path = std::collections::BTreeSet::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap_or_default();
                if p["in"] == "path" {
                    in_path.insert(name);
                    if !templated.contains(name) {
                        problems.push(format!("{at}: parameter {name} is in: path but not in the path"));
                    }
                }
            }
            for name in &templated {
                if !in_path.contains(name) {
                    problems.push(format!("{at}: {{{name}}} has no path parameter"));
                }
            }
        }
    }

    let file = s.dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let dir = openapi_validator();
        std::process::Command::new("python3")
            .env("PYTHONPATH", &dir)
            .args([
                "-c",
                "from openapi_spec_validator import validate; import json,sys; validate(json.load(open(sys.argv[1])))",
            ])
            .arg(&file)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    if !out.status.success() {
        problems.push(format!(
            "openapi-spec-validator refuses the document ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}
