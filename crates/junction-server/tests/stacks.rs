//! Extension stacks (spec 001) over HTTP: the real server, real Node.js,
//! real `npm ci` (from a lock file whose tarballs a loopback server
//! serves), and the mocha suites' own cases as the contract's reference.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{details, TestServer, ADMIN};
use reqwest::StatusCode;
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stacks");
const PLACEHOLDER: &str = "INTEGRATOR_EXTENSION_SYSTEM_TOKEN";
const CONNECTORS: [&str; 2] = ["9ce44f88a25272b6d9cbb430ebbcfcf1", "6a4b9e817fb9f522dbd012f642855a03"];

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap()
}

/// Uploads a one-file stack; returns its system token.
async fn upload(server: &TestServer, name: &str, source: &str, extra: Value) -> String {
    let mut body = json!({"name": name, "data": source});
    if let Value::Object(more) = extra {
        body.as_object_mut().unwrap().extend(more);
    }
    let (status, answer) = server.post("/api/v1/stacks", body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["system_token"].as_str().expect("a new stack's token is shown").to_string()
}

/// A raw `/function` call: (status, headers, body text).
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

async fn call(server: &TestServer, stack: &str, token: &str, body: Value) -> Answer {
    let resp = server
        .http
        .post(format!("{}/stacks/{stack}/function", server.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    answer(server, resp).await
}

async fn answer(server: &TestServer, resp: reqwest::Response) -> Answer {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    server.seen.lock().unwrap().push(text.clone());
    Answer { status, headers, text }
}

fn hook(function: &str, options: Value) -> Value {
    json!({"diy": true, "type": "hook", "function": function, "options": options})
}

/// Replaces the placeholder token and expands `{"$repeat": s, "times": n}`.
fn prepare(value: &Value, token: &str) -> Value {
    match value {
        Value::String(s) if s == PLACEHOLDER => Value::String(token.to_string()),
        // `BAD_INTEGRATOR_EXTENSION_SYSTEM_TOKEN` stays a wrong token.
        Value::String(s) => Value::String(
            s.replace(&format!("BAD_{PLACEHOLDER}"), "\u{1}")
                .replace(PLACEHOLDER, token)
                .replace('\u{1}', &format!("BAD_{PLACEHOLDER}")),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| prepare(v, token)).collect()),
        Value::Object(map) => {
            if let (Some(Value::String(s)), Some(n)) = (map.get("$repeat"), map.get("times").and_then(Value::as_u64)) {
                return Value::String(s.repeat(n as usize));
            }
            Value::Object(map.iter().map(|(k, v)| (k.clone(), prepare(v, token))).collect())
        }
        other => other.clone(),
    }
}

/// Where Junction answers differently from the Express host on purpose
/// (docs/stacks-contract.md, "Where Junction differs"): (case name
/// fragment, status, the body's first error as (code, message) or the
/// whole body).
fn deviation(name: &str) -> Option<(u16, Value)> {
    let cases = [
        // A synchronous throw is the call's 422, never a 500.
        (
            "synchronous throw inside the function",
            422,
            json!({"errors": [{"message": "thrown synchronously", "code": "Error"}]}),
        ),
        (
            "an unparsable value becomes an Invalid Date",
            422,
            json!({"errors": [{"message": "Invalid time value", "code": "RangeError"}]}),
        ),
        // Junction takes async functions (the library's isFunction refuses them).
        ("an async function is not a function to the library", 200, json!([{"a": 1}])),
        // Malformed bodies: a JSON error, not express's HTML page.
        ("JSON null is refused by the strict parser", 400, json!("malformed_json")),
        ("body: malformed JSON", 400, json!("malformed_json")),
    ];
    cases.iter().find(|(n, _, _)| name.contains(n)).map(|(_, s, b)| (*s, b.clone()))
}

#[tokio::test]
async fn the_mocha_suites_get_the_same_answers_from_junction() {
    let server = TestServer::sqlite().await;
    let (index, flat) = (fixture("mocha/index.js"), fixture("mocha/flat.js"));
    let connectors = json!({"connectors": {CONNECTORS[0]: "index.js", CONNECTORS[1]: "index.js"}});
    let tokens = [
        ("diy", upload(&server, "mocha-diy", &index, json!({})).await),
        ("connectors", upload(&server, "mocha-connectors", &index, json!({"config": connectors})).await),
        ("flat", upload(&server, "mocha-flat", &flat, json!({})).await),
        ("flat_connectors", upload(&server, "mocha-flat-connectors", &flat, json!({"config": connectors})).await),
    ];
    let cases: Vec<Value> = serde_json::from_str(&fixture("mocha/cases.json")).unwrap();
    assert!(cases.len() > 100, "the fixture holds the suites' cases");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let config = case["config"].as_str().unwrap();
        let token = &tokens.iter().find(|(c, _)| *c == config).unwrap_or_else(|| panic!("config {config}")).1;
        let stack = format!("mocha-{}", config.replace('_', "-"));
        let mut req = server.http.post(format!("{}/stacks/{stack}/function", server.base));
        if let Some(Value::Object(headers)) = case.get("headers") {
            for (k, v) in headers {
                req = req.header(k, prepare(v, token).as_str().unwrap());
            }
        }
        if let Some(Value::Object(query)) = case.get("query") {
            let pairs: Vec<(String, String)> =
                query.iter().map(|(k, v)| (k.clone(), prepare(v, token).as_str().unwrap().to_string())).collect();
            req = req.query(&pairs);
        }
        req = match (case.get("raw_body"), case.get("body")) {
            (Some(Value::String(raw)), _) => {
                let ct = case["content_type"].as_str().unwrap_or("");
                let req = if ct.is_empty() { req } else { req.header("content-type", ct) };
                req.body(prepare(&Value::String(raw.clone()), token).as_str().unwrap().to_string())
            }
            (_, Some(body)) => {
                let text = prepare(body, token).to_string();
                match case.get("content_type").and_then(Value::as_str) {
                    Some("") => req.body(text),
                    Some(ct) => req.header("content-type", ct).body(text),
                    None => req.header("content-type", "application/json").body(text),
                }
            }
            _ => req,
        };
        let got = answer(&server, req.send().await.unwrap()).await;
        if let Some((status, expected)) = deviation(name) {
            let ok = got.status.as_u16() == status
                && match &expected {
                    Value::String(code) => {
                        serde_json::from_str::<Value>(&got.text).is_ok_and(|b| b["errors"][0]["code"] == code.as_str())
                    }
                    body => serde_json::from_str::<Value>(&got.text).ok().as_ref() == Some(body),
                };
            if !ok {
                failures.push(format!("{name}: expected {status} {expected}, got {} {}", got.status, got.text));
            }
            continue;
        }
        let want_status = case["status"].as_u64().unwrap() as u16;
        let want_text = match (case.get("response_text"), case.get("response")) {
            (Some(Value::String(t)), _) => t.clone(),
            (_, Some(Value::Null)) | (_, None) => String::new(),
            (_, Some(body)) => body.to_string(),
        };
        if got.status.as_u16() != want_status || got.text != want_text {
            let shown: String = got.text.chars().take(300).collect();
            failures.push(format!("{name}: expected {want_status} {want_text}, got {} {shown}", got.status));
            continue;
        }
        if let Some(value) = case.get("www_authenticate").and_then(Value::as_str) {
            if got.headers.get("www-authenticate").and_then(|v| v.to_str().ok()) != Some(value) {
                failures.push(format!("{name}: WWW-Authenticate {:?}", got.headers.get("www-authenticate")));
            }
        }
        if !got.text.is_empty() || want_status == 200 {
            let ct = got.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
            if ct != "application/json; charset=utf-8" {
                failures.push(format!("{name}: content type {ct:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// A loopback server standing in for the package registry: it serves the
/// tarballs a lock file's `resolved` URLs name, 404 for anything else.
async fn tarball_server(files: Vec<(String, Vec<u8>)>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let files = Arc::new(files);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let files = files.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let found = files.iter().find(|(p, _)| *p == path);
                let (status, body): (&str, Vec<u8>) = match found {
                    Some((_, bytes)) => ("200 OK", bytes.clone()),
                    None => ("404 Not Found", br#"{"error":"Not found"}"#.to_vec()),
                };
                let header = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(header.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    base
}

fn tgz(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, text.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, text) in files {
        w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn integrity(bytes: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(bytes)))
}

/// A connector split over `src/*.js`, depending on `padder` from its lock
/// file.
fn connector_package(registry: &str, dep: &str, dep_tgz: &[u8]) -> Vec<(&'static str, String)> {
    let lock = json!({
        "name": "my-connector", "version": "1.0.0", "lockfileVersion": 3, "requires": true,
        "packages": {
            "": {"name": "my-connector", "version": "1.0.0", "dependencies": {dep: "1.0.0"}},
            format!("node_modules/{dep}"): {
                "version": "1.0.0",
                "resolved": format!("{registry}/{dep}/-/{dep}-1.0.0.tgz"),
                "integrity": integrity(dep_tgz)
            }
        }
    });
    vec![
        ("package.json", json!({"name": "my-connector", "version": "1.0.0", "main": "src/index.js",
                                "dependencies": {dep: "1.0.0"}}).to_string()),
        ("package-lock.json", lock.to_string()),
        ("src/index.js", "const { mapRecord } = require('./mapping');\n\
                          module.exports = { hooks: { preSavePage(options, cb) { cb(null, { data: options.data.map(mapRecord), errors: [] }); } } };\n".into()),
        ("src/mapping.js", format!("const pad = require('{dep}');\nexports.mapRecord = (r) => ({{ id: pad(String(r.id), 5) }});\n")),
    ]
}

#[tokio::test]
async fn a_package_installs_its_own_dependencies_from_its_lock_file() {
    let server = TestServer::sqlite().await;
    let padder = tgz(&[
        ("package/package.json", r#"{"name": "padder", "version": "1.0.0", "main": "index.js"}"#),
        ("package/index.js", "module.exports = (s, n) => s.padStart(n, '0');\n"),
    ]);
    let registry = tarball_server(vec![("/padder/-/padder-1.0.0.tgz".into(), padder.clone())]).await;

    // A .tgz of the folder (npm pack's `package/` prefix), then a .zip.
    let files = connector_package(&registry, "padder", &padder);
    let listed: Vec<(String, &str)> = files.iter().map(|(n, t)| (format!("package/{n}"), t.as_str())).collect();
    let borrowed: Vec<(&str, &str)> = listed.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let (status, body) = server.post_raw("/api/v1/stacks?name=conn", ADMIN, "application/gzip", tgz(&borrowed)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"]["version"], 1);
    assert_eq!(body["version"]["format"], "tgz");
    assert_eq!(body["version"]["config"], json!({"diy": "src/index.js"}), "package.json's main is the DIY module");
    assert_eq!(body["version"]["functions"]["src/index.js"]["hooks"], json!(["preSavePage"]));
    let token = body["system_token"].as_str().unwrap().to_string();
    let page = json!({"data": [{"id": 7}, {"id": 42}], "errors": []});
    let got = call(&server, "conn", &token, hook("preSavePage", page.clone())).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(got.json(), json!({"data": [{"id": "00007"}, {"id": "00042"}], "errors": []}));

    let plain: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (status, body) = server.post_raw("/api/v1/stacks?name=conn", ADMIN, "application/zip", zip_of(&plain)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"]["version"], 2);
    assert!(body.get("system_token").is_none(), "only a new stack shows its token");
    assert_eq!(call(&server, "conn", &token, hook("preSavePage", page)).await.status, StatusCode::OK);

    // No lock file; a dependency the registry does not have; a module
    // that does not load: 400 naming the problem, nothing stored.
    let no_lock: Vec<(&str, &str)> = plain.iter().copied().filter(|(n, _)| *n != "package-lock.json").collect();
    let (status, body) = server.post_raw("/api/v1/stacks?name=conn", ADMIN, "application/zip", zip_of(&no_lock)).await;
    assert_eq!(
        (status, details(&body)),
        (StatusCode::BAD_REQUEST, vec![("body".into(), "lock_file".into())]),
        "{body}"
    );

    let ghost = connector_package(&registry, "ghost", b"not served");
    let ghost: Vec<(&str, &str)> = ghost.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let (status, body) = server.post_raw("/api/v1/stacks?name=conn", ADMIN, "application/zip", zip_of(&ghost)).await;
    assert_eq!((status, details(&body)), (StatusCode::BAD_REQUEST, vec![("body".into(), "npm_ci".into())]), "{body}");
    let message = body["error"]["details"][0]["message"].as_str().unwrap();
    assert!(message.contains("404") && message.contains("ghost"), "npm's reason: {message}");

    let broken = [("package.json", r#"{"name": "b", "version": "1.0.0"}"#), ("index.js", "require('./missing');\n")];
    let (status, body) = server.post_raw("/api/v1/stacks?name=conn", ADMIN, "application/zip", zip_of(&broken)).await;
    assert_eq!((status, details(&body)), (StatusCode::BAD_REQUEST, vec![("body".into(), "loads".into())]), "{body}");
    assert!(body["error"]["details"][0]["message"].as_str().unwrap().contains("./missing"), "{body}");

    let (_, shown) = server.get("/api/v1/stacks/conn").await;
    assert_eq!(shown["version"], 2, "refused uploads store nothing: {shown}");
    assert_eq!(shown["versions"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_uploads_are_refused_naming_the_field() {
    let server = TestServer::sqlite().await;
    let cases = [
        (json!({"name": "", "data": "exports.a = 1"}), vec![("name", "required")]),
        (json!({"name": "ok", "data": " "}), vec![("data", "required")]),
        (json!({"name": "ok", "data": "x", "config": {}}), vec![("config", "missing_parameter")]),
        (json!({"name": "ok", "data": "x", "config": {"a": 1}}), vec![("config", "missing_required_field")]),
        (
            json!({"name": "ok", "data": "x", "config": {"diy": "a.js", "connectors": {"x": "b.js"}}}),
            vec![("config", "invalid_configuration")],
        ),
        (json!({"name": "ok", "data": "x", "config": {"connectors": {}}}), vec![("config", "invalid_field")]),
        (json!({"name": "ok", "data": "x", "config": {"diy": "../etc/passwd"}}), vec![("config.diy", "invalid_field")]),
        (json!({"name": "ok", "data": "function (", "config": null}), vec![("data", "loads")]),
        (
            json!({"name": "ok", "data": "x", "timeout_seconds": 0, "max_concurrency": 1000}),
            vec![("timeout_seconds", "range"), ("max_concurrency", "range")],
        ),
        (
            json!({"name": "ok", "data": "x", "env": [{"name": "PATH", "value": "x"}, {"name": "1A", "value": "x"}, {"name": "B"}]}),
            vec![("env[0].name", "reserved"), ("env[1].name", "env_name"), ("env[2].value", "required")],
        ),
        (
            json!({"name": "ok", "data": "exports.a = 1", "env": [{"name": "K", "encrypted": true}]}),
            vec![("env[0].value", "value_required")],
        ),
        (json!({"name": "ok", "data": "x", "extra": 1}), vec![("extra", "unknown_field")]),
    ];
    for (body, want) in cases {
        let (status, answer) = server.post("/api/v1/stacks", body.clone()).await;
        let want: Vec<(String, String)> = want.iter().map(|(f, r)| (f.to_string(), r.to_string())).collect();
        assert_eq!((status, details(&answer)), (StatusCode::BAD_REQUEST, want), "{body}: {answer}");
    }
    let (status, _) = server.post_raw("/api/v1/stacks?name=x", ADMIN, "text/plain", b"x".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, answer) = server.post_raw("/api/v1/stacks", ADMIN, "application/zip", b"PK".to_vec()).await;
    assert_eq!((status, details(&answer)), (StatusCode::BAD_REQUEST, vec![("name".into(), "required".into())]));
    let (status, answer) =
        server.post_raw("/api/v1/stacks?name=x", ADMIN, "application/zip", b"not a zip".to_vec()).await;
    assert_eq!((status, details(&answer)), (StatusCode::BAD_REQUEST, vec![("body".into(), "archive".into())]));
    let no_manifest = zip_of(&[("index.js", "exports.a = 1")]);
    let (status, answer) = server.post_raw("/api/v1/stacks?name=x", ADMIN, "application/zip", no_manifest).await;
    assert_eq!((status, details(&answer)), (StatusCode::BAD_REQUEST, vec![("body".into(), "package_json".into())]));
    let (status, list) = server.get("/api/v1/stacks").await;
    assert_eq!((status, list), (StatusCode::OK, json!([])), "nothing was stored");
    for path in ["/api/v1/stacks/nope", "/api/v1/stacks/nope/calls"] {
        assert_eq!(server.get(path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(server.delete("/api/v1/stacks/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(server.post("/api/v1/stacks/nope/token", json!({})).await.0, StatusCode::NOT_FOUND);
    // Managing stacks needs Junction's token (and an editor's role).
    let viewer = server.token("viewer").await;
    let (status, _) = server
        .send(
            reqwest::Method::POST,
            "/api/v1/stacks",
            Some(&viewer),
            Some(&json!({"name": "v", "data": "exports.a=1"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(server.send(reqwest::Method::GET, "/api/v1/stacks", None, None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokens_rotate_and_an_unknown_stack_looks_like_a_wrong_token() {
    let server = TestServer::sqlite().await;
    let token = upload(&server, "rot", "exports.hooks = { ping(o, cb) { cb(null, 'pong'); } };", json!({})).await;
    assert!(token.starts_with("jst_"), "{token}");
    let ping = hook("ping", json!({"a": 1}));
    assert_eq!(call(&server, "rot", &token, ping.clone()).await.text, "\"pong\"");

    let (status, rotated) = server.post("/api/v1/stacks/rot/token", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let fresh = rotated["system_token"].as_str().unwrap().to_string();
    let unauthorized = r#"{"errors":[{"code":"unauthorized","message":"Invalid system token."}]}"#;
    for (stack, token) in [("rot", token.as_str()), ("nope", fresh.as_str()), ("nope", token.as_str())] {
        let got = call(&server, stack, token, ping.clone()).await;
        assert_eq!((got.status, got.text.as_str()), (StatusCode::UNAUTHORIZED, unauthorized), "{stack}");
        assert_eq!(got.headers["www-authenticate"], "invalid system token");
    }
    assert_eq!(call(&server, "rot", &fresh, ping.clone()).await.text, "\"pong\"");
    // Junction's own tokens are not system tokens.
    assert_eq!(call(&server, "rot", ADMIN, ping.clone()).await.status, StatusCode::UNAUTHORIZED);

    // The token is never shown again, and is stored only as a digest.
    let (_, shown) = server.get("/api/v1/stacks/rot").await;
    assert!(!shown.to_string().contains(&fresh));
    let (status, _) = server.delete("/api/v1/stacks/rot").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(call(&server, "rot", &fresh, ping).await.status, StatusCode::UNAUTHORIZED);

    // The host's own routes answer for any name; there is no stop route.
    for path in ["/stacks/rot/", "/stacks/any/healthCheck"] {
        let resp = server.http.get(format!("{}{path}", server.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.text().await.unwrap(), r#"{"success":true}"#);
    }
    for path in ["/stacks/rot/livez", "/stacks/rot/readyz"] {
        assert_eq!(server.http.get(format!("{}{path}", server.base)).send().await.unwrap().status(), StatusCode::OK);
    }
    let open = server.http.get(format!("{}/stacks/rot/openConnections", server.base)).send().await.unwrap();
    assert_eq!(open.text().await.unwrap(), "0");
    let stop = server.http.get(format!("{}/stacks/rot/stopServer", server.base)).send().await.unwrap();
    assert_eq!(stop.status(), StatusCode::NOT_FOUND);
}

/// A loopback server that holds each request until `release` is called,
/// counting how many are held at once.
struct Gate {
    url: String,
    held: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    open: Arc<tokio::sync::Notify>,
    opened: Arc<std::sync::atomic::AtomicBool>,
}

impl Gate {
    async fn start() -> Gate {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (held, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let open = Arc::new(tokio::sync::Notify::new());
        let opened = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h, m, o, od) = (held.clone(), most.clone(), open.clone(), opened.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (h, m, o, od) = (h.clone(), m.clone(), o.clone(), od.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let now = h.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    while !od.load(Ordering::SeqCst) {
                        let _ = tokio::time::timeout(Duration::from_millis(50), o.notified()).await;
                    }
                    h.fetch_sub(1, Ordering::SeqCst);
                    let _ =
                        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                });
            }
        });
        Gate { url, held, most, open, opened }
    }

    async fn wait_held(&self, n: usize) {
        for _ in 0..400 {
            if self.held.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gate never held {n} requests (held {})", self.held.load(Ordering::SeqCst));
    }

    fn release(&self) {
        self.opened.store(true, Ordering::SeqCst);
        self.open.notify_waiters();
    }
}

const GATED: &str = r#"
const http = require('http');
// Pids are all alike inside the sandbox's PID namespace.
const processId = require('crypto').randomUUID();
exports.hooks = {
  wait(options, callback) {
    http.get(options.gate, (res) => { res.resume(); res.on('end', () => callback(null, { process: processId })); })
      .on('error', (e) => callback(e));
  },
};
"#;

#[tokio::test]
async fn concurrent_calls_use_several_processes_up_to_the_stack_limit() {
    let server = TestServer::sqlite().await;
    let token = upload(&server, "conc", GATED, json!({"max_concurrency": 2, "timeout_seconds": 30})).await;
    let gate = Gate::start().await;
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let (s, t, body) = (server.http.clone(), token.clone(), hook("wait", json!({"gate": gate.url})));
            let url = format!("{}/stacks/conc/function", server.base);
            tokio::spawn(async move {
                let resp = s.post(url).bearer_auth(t).json(&body).send().await.unwrap();
                (resp.status(), resp.json::<Value>().await.unwrap())
            })
        })
        .collect();
    gate.wait_held(2).await;
    let open = server.http.get(format!("{}/stacks/conc/openConnections", server.base)).send().await.unwrap();
    assert_eq!(open.text().await.unwrap(), "4", "all four calls are in flight (two waiting)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gate.held.load(Ordering::SeqCst), 2, "the other two wait for a slot");
    gate.release();
    let mut pids = std::collections::HashSet::new();
    for c in calls {
        let (status, body) = c.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        pids.insert(body["process"].as_str().unwrap().to_string());
    }
    assert_eq!(gate.most.load(Ordering::SeqCst), 2, "never more than max_concurrency at once");
    assert!(pids.len() >= 2, "served by several warm processes: {pids:?}");
}

#[tokio::test]
async fn a_full_stack_answers_503_after_a_bounded_wait() {
    let server = TestServer::sqlite().await;
    // The wait is half the call limit: 2 s here.
    let token = upload(&server, "full", GATED, json!({"max_concurrency": 1, "timeout_seconds": 4})).await;
    let gate = Gate::start().await;
    let first = {
        let (s, t, body) = (server.http.clone(), token.clone(), hook("wait", json!({"gate": gate.url})));
        let url = format!("{}/stacks/full/function", server.base);
        tokio::spawn(async move { s.post(url).bearer_auth(t).json(&body).send().await.unwrap().status() })
    };
    gate.wait_held(1).await;
    let second = call(&server, "full", &token, hook("wait", json!({"gate": gate.url}))).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE, "{}", second.text);
    assert_eq!(second.headers["retry-after"], "1");
    assert_eq!(second.json()["errors"][0]["code"], "busy");
    gate.release();
    assert_eq!(first.await.unwrap(), StatusCode::OK);
}

const FAULTY: &str = r#"
let served = 0;
exports.hooks = {
  hang(options, callback) { /* never answers */ },
  crash(options, callback) { process.exit(3); },
  leak(options, callback) { setInterval(() => {}, 1000); callback(null, 'leaked'); },
  count(options, callback) { served += 1; callback(null, { served }); },
  later(options, callback) { setTimeout(() => { throw new Error('late failure'); }, 10); },
};
"#;

#[tokio::test]
async fn timeouts_crashes_and_leaks_end_the_process_and_the_next_call_gets_a_fresh_one() {
    let server = TestServer::sqlite().await;
    let token = upload(&server, "faulty", FAULTY, json!({"timeout_seconds": 1})).await;
    let first = count(&server, &token).await;
    assert_eq!(first["served"], 1);
    assert_eq!(count(&server, &token).await["served"], 2, "warm: module state persists");

    let got = call(&server, "faulty", &token, hook("hang", json!({"a": 1}))).await;
    assert_eq!(got.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        got.json(),
        json!({"errors": [{"message": "The function did not answer within 1 seconds.", "code": "timeout"}]})
    );
    assert_eq!(count(&server, &token).await["served"], 1, "a fresh process after a timeout");

    let got = call(&server, "faulty", &token, hook("crash", json!({"a": 1}))).await;
    assert_eq!(got.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", got.text);
    assert_eq!(got.json()["errors"][0]["code"], "crashed");
    assert_eq!(count(&server, &token).await["served"], 1, "a fresh process after a crash");

    let got = call(&server, "faulty", &token, hook("leak", json!({"a": 1}))).await;
    assert_eq!(got.text, "\"leaked\"");
    assert_eq!(count(&server, &token).await["served"], 1, "a process that left a timer is not reused");

    let got = call(&server, "faulty", &token, hook("later", json!({"a": 1}))).await;
    assert_eq!(got.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", got.text);
    assert!(got.json()["errors"][0]["message"].as_str().unwrap().contains("late failure"), "{}", got.text);
    assert_eq!(count(&server, &token).await["served"], 1);
}

#[tokio::test]
async fn stacks_never_share_a_process_with_each_other() {
    let server = TestServer::sqlite().await;
    let source = "global.seen = global.seen || []; exports.hooks = { note(o, cb) { global.seen.push(o.who); cb(null, global.seen); } };";
    let a = upload(&server, "alpha", source, json!({})).await;
    let b = upload(&server, "beta", source, json!({})).await;
    assert_eq!(call(&server, "alpha", &a, hook("note", json!({"who": "a1"}))).await.json(), json!(["a1"]));
    assert_eq!(call(&server, "beta", &b, hook("note", json!({"who": "b1"}))).await.json(), json!(["b1"]));
    assert_eq!(call(&server, "alpha", &a, hook("note", json!({"who": "a2"}))).await.json(), json!(["a1", "a2"]));
    // A stack's token opens only its own stack.
    assert_eq!(call(&server, "beta", &a, hook("note", json!({"who": "x"}))).await.status, StatusCode::UNAUTHORIZED);
}

const SECRET: &str = "sk-live-4f2a9c7e1b";

async fn calls_are_recorded_with_their_logs_and_never_a_secret(server: &mut TestServer) {
    let source = r#"
exports.hooks = {
  preSavePage(options, callback) {
    console.log('using key', process.env.API_KEY, 'region', process.env.REGION);
    callback(null, { data: options.data, errors: [] });
  },
  failing(options, callback) { console.error('about to fail'); const e = new Error('nope ' + process.env.API_KEY); e.code = 'bad_thing'; callback(e); },
};
"#;
    let env = json!([{"name": "API_KEY", "value": SECRET, "encrypted": true}, {"name": "REGION", "value": "eu"}]);
    let token = upload(server, "rec", source, json!({"env": env})).await;
    let options = json!({"data": [{"a": 1}], "_integrationId": "int-1", "_flowId": "flow-9",
                         "lastExportDateTime": "2024-01-02T03:04:05.000Z"});
    let resp = server
        .http
        .post(format!("{}/stacks/rec/function", server.base))
        .bearer_auth(&token)
        .header("traceid", "trace-abc")
        .json(&hook("preSavePage", options))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let failed = call(server, "rec", &token, hook("failing", json!({"a": 1}))).await;
    assert_eq!(failed.json(), json!({"errors": [{"message": "nope ********", "code": "bad_thing"}]}));
    let _ = call(server, "rec", &token, json!({"diy": true, "options": {"a": 1}})).await;
    // NUL from a caller or a module never breaks the records (PostgreSQL
    // refuses NUL in text).
    let nul = json!({"diy": true, "type": "hook\u{0}", "function": "pre\u{0}", "options": {"_flowId": "f\u{0}"}});
    let got = call(server, "rec", &token, nul).await;
    assert_eq!(got.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", got.text);

    // Records are written just after the answer.
    let mut calls = Value::Null;
    for _ in 0..100 {
        calls = server.get("/api/v1/stacks/rec/calls").await.1;
        if calls.as_array().is_some_and(|c| c.len() == 4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = calls.as_array().expect("a list").clone();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!(calls[0]["function"], "pre\u{FFFD}");
    let (missing, failing, ok) = (&calls[1], &calls[2], &calls[3]);
    assert_eq!(
        (ok["function"].as_str(), ok["kind"].as_str(), ok["outcome"].as_str()),
        (Some("preSavePage"), Some("hook"), Some("succeeded"))
    );
    assert_eq!(
        (ok["integration_id"].as_str(), ok["flow_id"].as_str(), ok["trace_id"].as_str()),
        (Some("int-1"), Some("flow-9"), Some("trace-abc"))
    );
    assert_eq!(ok["target"], "diy");
    assert!(ok["response_size"].as_i64().unwrap() > 10);
    assert!(ok.get("log").is_none(), "listings leave the log out");
    assert_eq!((failing["outcome"].as_str(), failing["error_code"].as_str()), (Some("failed"), Some("bad_thing")));
    assert_eq!(missing["error_code"], "missing_required_field");

    let (_, detail) = server.get(&format!("/api/v1/stacks/rec/calls/{}", ok["id"])).await;
    let log = detail["log"].as_str().unwrap();
    assert!(log.contains("traceId=trace-abc"), "{log}");
    assert!(log.contains("] [LOG] \u{2013} using key ******** region eu"), "spec 000's format, the key masked: {log}");
    let (_, detail) = server.get(&format!("/api/v1/stacks/rec/calls/{}", failing["id"])).await;
    assert!(detail["log"].as_str().unwrap().contains("[ERROR] \u{2013} about to fail"), "{detail}");

    // Filters.
    let (_, only) = server.get("/api/v1/stacks/rec/calls?outcome=failed&function=failing").await;
    assert_eq!(only.as_array().unwrap().len(), 1);
    let (_, page) = server.get(&format!("/api/v1/stacks/rec/calls?limit=1&before={}", missing["id"])).await;
    assert_eq!(page[0]["id"], failing["id"]);
    let (status, body) = server.get("/api/v1/stacks/rec/calls?outcome=maybe&limit=0").await;
    assert_eq!(details(&body), vec![("outcome".into(), "one_of".into()), ("limit".into(), "range".into())]);
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The stack shows its env without the encrypted value; a settings
    // change keeps it.
    let (_, shown) = server.get("/api/v1/stacks/rec").await;
    assert_eq!(
        shown["env"],
        json!([{"name": "API_KEY", "encrypted": true}, {"name": "REGION", "value": "eu", "encrypted": false}])
    );
    let (status, changed) = server
        .patch(
            "/api/v1/stacks/rec",
            json!({"env": [{"name": "API_KEY", "encrypted": true}, {"name": "REGION", "value": "us"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let again = call(server, "rec", &token, hook("failing", json!({"a": 1}))).await;
    assert_eq!(again.json()["errors"][0]["message"], "nope ********", "the sealed value is still served");

    server.assert_never_sent(SECRET);
    server.stop().await;
    server.assert_not_in_database_files(&[SECRET]);
}

common::on_both!(&mut calls_are_recorded_with_their_logs_and_never_a_secret => calls_are_recorded_on_sqlite, calls_are_recorded_on_postgres);

#[tokio::test]
async fn a_server_that_never_saw_the_upload_installs_it_from_the_store() {
    let server = TestServer::postgres().await;
    let token = upload(&server, "shared", "exports.hooks = { hi(o, cb) { cb(null, 'hi ' + o.n); } };", json!({})).await;
    let other = server.sibling(common::Options::default()).await;
    let got = call(&other, "shared", &token, hook("hi", json!({"n": 2}))).await;
    assert_eq!((got.status, got.text.as_str()), (StatusCode::OK, "\"hi 2\""));
}

async fn count(server: &TestServer, token: &str) -> Value {
    call(server, "faulty", token, hook("count", json!({"a": 1}))).await.json()
}

#[tokio::test]
async fn junction_itself_calls_a_stack_function_with_the_same_answers() {
    let server = TestServer::sqlite().await;
    let source = "exports.hooks = { preMap(o, cb) { cb(null, o.data.map((r) => ({ ...r, mapped: true }))); } };";
    upload(&server, "inner", source, json!({})).await;
    let answer =
        server.engine.call_stack_function("inner", Some("hook"), "preMap", json!({"data": [{"a": 1}]})).await.unwrap();
    assert_eq!((answer.status, answer.body.as_deref()), (200, Some(r#"[{"a":1,"mapped":true}]"#)));
    let missing = server.engine.call_stack_function("inner", Some("hook"), "nope", json!({"a": 1})).await.unwrap();
    assert_eq!(missing.status, 422);
    assert!(missing.body.unwrap().contains("invalid_function"));
    assert!(server.engine.call_stack_function("ghost", None, "f", json!({})).await.is_err(), "an unknown stack");
}

#[tokio::test]
async fn a_function_body_over_50_mb_is_refused_in_the_contract_shape() {
    let server = TestServer::sqlite().await;
    let token = upload(&server, "big", "exports.hooks = { n(o, cb) { cb(null, o.s.length); } };", json!({})).await;
    let fits = hook("n", json!({"s": "a".repeat(20 * 1024 * 1024)}));
    let got = call(&server, "big", &token, fits).await;
    assert_eq!((got.status, got.text.as_str()), (StatusCode::OK, "20971520"));
    let over = hook("n", json!({"s": "a".repeat(51 * 1024 * 1024)}));
    let got = call(&server, "big", &token, over).await;
    assert_eq!(got.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(got.json()["errors"][0]["code"], "payload_too_large");
}

#[tokio::test]
async fn a_body_is_read_like_json_parse_and_cannot_break_the_runtime_protocol() {
    let server = TestServer::sqlite().await;
    let token = upload(&server, "lines", "exports.hooks = { echo(o, cb) { cb(null, o); } };", json!({})).await;
    // Pretty-printed options, and a request line smuggled inside them.
    let got = send_raw(&server, &token, "{\"diy\": true, \"type\": \"hook\", \"function\": \"echo\",\n \"options\": {\n  \"a\": 1,\r\n  \"b\": [1,\n2]\n}\n}").await;
    assert_eq!((got.status, got.text.as_str()), (StatusCode::OK, r#"{"a":1,"b":[1,2]}"#));
    let got = send_raw(
        &server,
        &token,
        "{\"diy\": true, \"type\": \"hook\", \"function\": \"echo\", \"options\": [1,\n{\"op\":\"shutdown\"}\n]}",
    )
    .await;
    assert_eq!((got.status, got.text.as_str()), (StatusCode::OK, r#"[1,{"op":"shutdown"}]"#));
    // The last of a key given twice counts; other keys are skipped.
    let got = send_raw(&server, &token, r#"{"function": "nope", "diy": true, "type": "hook", "x": {"deep": [1,2,3]}, "function": "echo", "options": {"a": 1}, "options": {"b": 2}}"#).await;
    assert_eq!((got.status, got.text.as_str()), (StatusCode::OK, r#"{"b":2}"#));
}

#[tokio::test]
async fn a_stack_cannot_set_the_environment_of_the_programs_junction_starts() {
    let server = TestServer::sqlite().await;
    for name in ["LD_PRELOAD", "LD_LIBRARY_PATH", "NODE_OPTIONS", "GLIBC_TUNABLES", "PYTHONPATH", "BWRAP_X", "LC_ALL"] {
        let (status, body) = server
            .post(
                "/api/v1/stacks",
                json!({"name": "env", "data": "exports.a = 1", "env": [{"name": name, "value": "/x"}]}),
            )
            .await;
        assert_eq!(
            (status, details(&body)),
            (StatusCode::BAD_REQUEST, vec![("env[0].name".into(), "reserved".into())]),
            "{name}"
        );
    }
    let big = "x".repeat(70 * 1024);
    let (status, body) = server
        .post("/api/v1/stacks", json!({"name": "env", "data": "exports.a = 1", "env": [{"name": "BIG", "value": big}]}))
        .await;
    assert_eq!((status, details(&body)), (StatusCode::BAD_REQUEST, vec![("env".into(), "too_large".into())]));
}

async fn send_raw(server: &TestServer, token: &str, body: &'static str) -> Answer {
    let req = server
        .http
        .post(format!("{}/stacks/lines/function", server.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body);
    answer(server, req.send().await.unwrap()).await
}
