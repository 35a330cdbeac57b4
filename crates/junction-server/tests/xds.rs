//! Spec 003's Extensible Data Sources through the real server: sources,
//! the schema registry, activity messages aggregated into activities with
//! sub-events, the activity stream, and every refused message recorded —
//! on SQLite and PostgreSQL, with the spec's own examples.

mod common;

use common::{details, on_both, Options, TestServer, ADMIN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The key spec 003's examples carry.
const SPEC_KEY: &str = "8578c900-f8df-0131-84ff-3c07547a48b0";
const SPEC_SCHEMA_ID: &str = "fc358dd0-11dc-0132-b9fe-3c07547a48b0";

/// Spec 003's complete example schema exactly as printed: a `//` comment
/// before the JSON.
const SPEC_SCHEMA_AS_PRINTED: &str = r#"// Example Deploy XDS Schema
{
"api_version": "1",
"source_association_key" : "8578c900-f8df-0131-84ff-3c07547a48b0",
"custom_schema": {
"name": "Faux Schema",
"schema_id": "fc358dd0-11dc-0132-b9fe-3c07547a48b0",
"schema_version": 2,
"event_time": "2015-02-02T17:15:32.320Z",
"fields": ["schema_id", "schema_version", "event_time", "remote_id", "associated_remote_id",
"summary", "status_name", "status_type", "rule", "deploy_url", "deploy_message",
"environment", "authorized_by"],
"required": ["schema_id", "schema_version", "event_time", "remote_id", "rule"],
"important": ["summary", "status_name"],
"parse": ["deploy_message"],
"link_to": ["deploy_url"],
"hidden": ["environment","authorized_by"]
}
}"#;

/// An earlier step of the same example as printed: trailing commas.
const SPEC_PARSE_SCHEMA_AS_PRINTED: &str = r#"// Example Deploy XDS Schema
{
"api_version": "1",
"source_association_key" : "8578c900-f8df-0131-84ff-3c07547a48b0",
"custom_schema": {
"name": "Faux Schema",
"schema_id": "fc358dd0-11dc-0132-b9fe-3c07547a48b0",
"schema_version": 2,
"event_time": "2015-02-02T17:15:32.320Z",
"fields": ["schema_id", "schema_version", "event_time", "remote_id",
"associated_remote_id", "summary", "status_name", "status_type",
"link_to", "rule", "deploy_url", "deploy_message"],
"required": ["schema_id", "schema_version", "event_time", "remote_id", "rule"],
"important": ["summary", "status_name"],
"parse": ["deploy_message"],
}
}"#;

/// Spec 003's example activity message exactly as printed: `//` comments.
const SPEC_ACTIVITY_AS_PRINTED: &str = r#"// Example Deploy XDS Activity Message
{
"api_version": "1",
"source_association_key" : "8578c900-f8df-0131-84ff-3c07547a48b0",
"custom_data": {
//required fields
"name": "Faux Schema",
"schema_id": "fc358dd0-11dc-0132-b9fe-3c07547a48b0",
"schema_version": 2,
"event_time": "2015-02-02T17:15:32.320Z",
"remote_id": "deploy-1234",
"rule": "1 comes before 2",
// stock fields
"summary": "Deploy at 4:52pm on a Friday",
"deploy_message": "Deploying to fix [artf12345] and [artf12346] as critical bugs.",
"associated_remote_id": "b4c8e50c908ade5c6f053e1ef6422f88",
"link_to": ["Deploy Details", "http://www.example.com/deploy/deploy-1234"],
"status_type": "open",
// other custom fields
"environment": "Dev Stage 1"
}
}"#;

/// A printed example made JSON: comment lines and trailing commas
/// dropped — nothing else — and the key of one of our sources put in.
fn corrected(printed: &str, key: &str) -> Value {
    let text: String = printed.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let text = text.replace(",\n}", "\n}").replace(",\n]", "\n]").replace(SPEC_KEY, key);
    serde_json::from_str(&text).unwrap()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(f, r)| (f.to_string(), r.to_string())).collect()
}

async fn source(s: &TestServer, name: &str) -> (i64, String) {
    let (status, src) = s.post("/api/v1/xds/sources", json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{src}");
    (src["id"].as_i64().unwrap(), src["source_association_key"].as_str().unwrap().to_string())
}

async fn rejections(s: &TestServer, query: &str) -> Vec<Value> {
    let (status, list) = s.get(&format!("/api/v1/xds/rejections{query}")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array().unwrap().clone()
}

/// Posts `body`, expects a 400 and that the refusal was recorded with the
/// same details; returns the details.
async fn refused(s: &TestServer, path: &str, body: &Value) -> Vec<(String, String)> {
    let before = rejections(s, "?limit=1").await;
    let (status, answer) = s.post(path, body.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
    assert_eq!(answer["error"]["code"], "validation_failed");
    let after = rejections(s, "?limit=1").await;
    assert_ne!(after.first().map(|r| &r["id"]), before.first().map(|r| &r["id"]), "recorded");
    let recorded = &after[0];
    assert_eq!(recorded["kind"], if path.ends_with("schemas") { "schema" } else { "activity" });
    assert_eq!(recorded["status"], 400);
    assert_eq!(recorded["details"], answer["error"]["details"]);
    assert_eq!(serde_json::from_str::<Value>(recorded["body"].as_str().unwrap()).unwrap(), *body);
    details(&answer)
}

/// A spec example (corrected) with `changes` applied to its `part`
/// (`custom_schema` / `custom_data`); a key `-name` removes `name`.
fn changed(printed: &str, part: &str, key: &str, changes: Value) -> Value {
    let mut body = corrected(printed, key);
    for (k, v) in changes.as_object().unwrap() {
        if let Some(k) = k.strip_prefix('-') {
            body[part].as_object_mut().unwrap().remove(k);
        } else {
            body[part][k] = v.clone();
        }
    }
    body
}

fn schema_with(key: &str, changes: Value) -> Value {
    changed(SPEC_SCHEMA_AS_PRINTED, "custom_schema", key, changes)
}

fn activity_with(key: &str, changes: Value) -> Value {
    changed(SPEC_ACTIVITY_AS_PRINTED, "custom_data", key, changes)
}

async fn activity(s: &TestServer, id: i64) -> Value {
    let (status, a) = s.get(&format!("/api/v1/xds/activities/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    a
}

async fn xds(s: &TestServer) {
    // Sources: a random association key each; names unique.
    let (deployer, key) = source(s, "deployer").await;
    assert_eq!(key.len(), 36, "a UUID: {key}");
    let (other, other_key) = source(s, "other tool").await;
    assert_ne!(key, other_key);
    let (status, body) = s.post("/api/v1/xds/sources", json!({"name": "deployer"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = s.post("/api/v1/xds/sources", json!({"name": " "})).await;
    assert_eq!((status, details(&body)), (StatusCode::BAD_REQUEST, pairs(&[("name", "name_syntax")])));
    let (status, body) = s.post("/api/v1/xds/sources", json!({"name": "x", "key": "mine"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, list) = s.get("/api/v1/xds/sources").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["schema_id"], Value::Null);
    assert_eq!(s.get("/api/v1/xds/sources/999999").await.0, StatusCode::NOT_FOUND);

    // The spec's examples as printed are not JSON: a clear 400, recorded
    // with the body as it came.
    for printed in [SPEC_SCHEMA_AS_PRINTED, SPEC_PARSE_SCHEMA_AS_PRINTED] {
        let (status, body) = s.post_raw("/api/1/schemas", ADMIN, "application/json", printed.as_bytes().to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "malformed_json");
        assert_eq!(details(&body), pairs(&[("body", "json")]));
        let last = &rejections(s, "?limit=1").await[0];
        assert_eq!((last["kind"].as_str(), last["code"].as_str()), (Some("schema"), Some("malformed_json")));
        assert_eq!(last["body"], printed);
        assert_eq!(last["body_truncated"], false);
    }
    let (status, body) =
        s.post_raw("/api/1/activities", ADMIN, "application/json", SPEC_ACTIVITY_AS_PRINTED.as_bytes().to_vec()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("malformed_json")));
    assert_eq!(rejections(s, "?limit=1").await[0]["kind"], "activity");

    // Corrected (comments and trailing commas dropped), the spec's schema
    // registers and associates the source its key names.
    let (status, reg) = s.post("/api/1/schemas", corrected(SPEC_SCHEMA_AS_PRINTED, &key)).await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    assert_eq!((reg["status"].as_str(), reg["identical"].as_bool()), (Some("created"), Some(true)));
    assert_eq!(reg["source_id"], deployer);
    assert_eq!(reg["schema"]["schema_id"], SPEC_SCHEMA_ID);
    assert_eq!(reg["schema"]["hidden"], json!(["environment", "authorized_by"]));
    assert_eq!(reg["schema"]["event_time"], "2015-02-02T17:15:32.32Z");
    let (_, src) = s.get(&format!("/api/v1/xds/sources/{deployer}")).await;
    assert_eq!(src["schema_id"], SPEC_SCHEMA_ID);
    // The same id and version again: ignored, even with another body; the
    // first one wins and the answer says so.
    let (status, again) = s.post("/api/1/schemas", corrected(SPEC_PARSE_SCHEMA_AS_PRINTED, &key)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!((again["status"].as_str(), again["identical"].as_bool()), (Some("unchanged"), Some(false)));
    assert_eq!(again["schema"], reg["schema"]);
    let mut resent = corrected(SPEC_SCHEMA_AS_PRINTED, &key);
    resent["custom_schema"]["event_time"] = json!("2024-01-01T00:00:00Z");
    let (status, again) = s.post("/api/1/schemas", resent).await;
    assert_eq!(
        (status, again["status"].as_str(), again["identical"].as_bool()),
        (StatusCode::OK, Some("unchanged"), Some(true))
    );
    // A higher version is a new version; the source key is optional.
    let mut v3 = schema_with(&key, json!({"schema_version": 3, "name": "Faux Schema v3"}));
    v3["custom_schema"]["fields"].as_array_mut().unwrap().push(json!("ticket"));
    v3.as_object_mut().unwrap().remove("source_association_key");
    let (status, reg3) = s.post("/api/1/schemas", v3).await;
    assert_eq!((status, reg3["source_id"].clone()), (StatusCode::CREATED, Value::Null), "{reg3}");
    let (_, all) = s.get("/api/1/schemas").await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!((all[0]["latest_version"].as_i64(), all[0]["name"].as_str()), (Some(3), Some("Faux Schema v3")));
    assert_eq!(all[0]["versions"], json!([2, 3]));
    let (status, one) = s.get(&format!("/api/1/schemas/{SPEC_SCHEMA_ID}")).await;
    assert_eq!(
        (status, one["schema_version"].as_i64(), one["versions"].clone()),
        (StatusCode::OK, Some(3), json!([2, 3]))
    );
    let (status, v2) = s.get(&format!("/api/1/schemas/{SPEC_SCHEMA_ID}/2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v2, reg["schema"]);
    assert_eq!(s.get(&format!("/api/1/schemas/{SPEC_SCHEMA_ID}/9")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/1/schemas/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&format!("/api/1/schemas/{SPEC_SCHEMA_ID}/two")).await.0, StatusCode::BAD_REQUEST);

    // Every schema rule, each violation named, each refusal recorded.
    let cases = [
        (json!({"schema_id": "not a uuid!"}), pairs(&[("custom_schema.schema_id", "schema_id")])),
        (json!({"schema_id": 42}), pairs(&[("custom_schema.schema_id", "type")])),
        (json!({"schema_version": 0}), pairs(&[("custom_schema.schema_version", "range")])),
        (json!({"schema_version": "3"}), pairs(&[("custom_schema.schema_version", "type")])),
        (json!({"schema_version": 3.5}), pairs(&[("custom_schema.schema_version", "type")])),
        (json!({"schema_version": 1e300}), pairs(&[("custom_schema.schema_version", "type")])),
        (json!({"schema_version": 99999999999999u64}), pairs(&[("custom_schema.schema_version", "range")])),
        (json!({"event_time": "2015-02-02T18:15:32+01:00"}), pairs(&[("custom_schema.event_time", "rfc3339_utc")])),
        (json!({"event_time": "Feb 2 2015"}), pairs(&[("custom_schema.event_time", "rfc3339_utc")])),
        (json!({"-name": null}), pairs(&[("custom_schema.name", "required")])),
        (
            json!({"fields": ["schema_id", "schema_version", "event_time", "rule", "deploy_url", "deploy_message", "environment", "authorized_by"]}),
            pairs(&[("custom_schema.fields", "mandatory"), ("custom_schema.required[3]", "undeclared")]),
        ),
        (
            json!({"required": ["schema_id", "schema_version", "remote_id", "rule"]}),
            pairs(&[("custom_schema.required", "mandatory")]),
        ),
        (json!({"-required": null}), pairs(&[("custom_schema.required", "required")])),
        (json!({"important": ["summary", "ghost"]}), pairs(&[("custom_schema.important[1]", "undeclared")])),
        (json!({"parse": ["ghost"]}), pairs(&[("custom_schema.parse[0]", "undeclared")])),
        (json!({"hidden": ["environment", "ghost"]}), pairs(&[("custom_schema.hidden[1]", "undeclared")])),
        (json!({"link_to": ["ghost"]}), pairs(&[("custom_schema.link_to[0]", "undeclared")])),
        (json!({"hidden": ["summary"]}), pairs(&[("custom_schema.hidden[0]", "custom_only")])),
        (json!({"hidden": ["remote_id"]}), pairs(&[("custom_schema.hidden[0]", "custom_only")])),
        (json!({"important": ["environment"]}), pairs(&[("custom_schema.important[0]", "hidden")])),
        (json!({"parse": ["status_type"]}), pairs(&[("custom_schema.parse[0]", "parse_field")])),
        (json!({"parse": ["deploy_url"]}), pairs(&[("custom_schema.parse[0]", "conflict")])),
        (json!({"link_to": ["summary"]}), pairs(&[("custom_schema.link_to[0]", "link_field")])),
        (json!({"important": ["summary", "summary"]}), pairs(&[("custom_schema.important[1]", "duplicate")])),
        (json!({"important": "summary"}), pairs(&[("custom_schema.important", "type")])),
        (json!({"colour": "red"}), pairs(&[("custom_schema.colour", "unknown_field")])),
        (
            json!({"fields": ["schema_id", "schema_version", "event_time", "remote_id", "rule", "name", "x y"], "-parse": null, "-link_to": null, "-hidden": null}),
            pairs(&[("custom_schema.fields[5]", "reserved"), ("custom_schema.fields[6]", "field_name")]),
        ),
        (json!({"name": "nul\u{0}name"}), pairs(&[("custom_schema.name", "no_nul")])),
    ];
    for (change, want) in cases {
        assert_eq!(refused(s, "/api/1/schemas", &schema_with(&key, change.clone())).await, want, "{change}");
    }
    // All violations at once, the envelope's too.
    let mut bad = schema_with(&key, json!({"schema_version": -1, "event_time": "now", "hidden": ["summary"]}));
    bad["api_version"] = json!("2");
    bad["source_association_key"] = json!("no-such-key");
    assert_eq!(
        refused(s, "/api/1/schemas", &bad).await,
        pairs(&[
            ("api_version", "one_of"),
            ("custom_schema.schema_version", "range"),
            ("custom_schema.event_time", "rfc3339_utc"),
            ("custom_schema.hidden[0]", "custom_only"),
            ("source_association_key", "unknown"),
        ])
    );
    assert_eq!(
        refused(s, "/api/1/schemas", &schema_with("no-such-key", json!({}))).await,
        pairs(&[("source_association_key", "unknown")])
    );
    assert_eq!(refused(s, "/api/1/schemas", &json!(["not", "an", "object"])).await, pairs(&[("body", "type")]));
    let last = &rejections(s, "?kind=schema&limit=1").await[0];
    assert_eq!(last["code"], "validation_failed");
    let r = &rejections(s, &format!("?schema_id={SPEC_SCHEMA_ID}&limit=500")).await;
    assert!(r.len() > 20 && r.iter().all(|x| x["schema_id"] == SPEC_SCHEMA_ID), "hints kept");

    // A source follows one schema: registering another with its key is
    // refused (409, recorded) and registers nothing.
    let other_schema = json!({"api_version": "1", "source_association_key": other_key, "custom_schema": {
        "name": "Builds", "schema_id": "builds", "schema_version": 1, "event_time": "2024-05-01T10:00:00Z",
        "fields": ["schema_id", "schema_version", "event_time", "remote_id"],
        "required": ["schema_id", "schema_version", "event_time", "remote_id"], "important": ["status_type"]}});
    assert_eq!(s.post("/api/1/schemas", other_schema).await.0, StatusCode::CREATED);
    let (status, body) = s.post("/api/1/schemas", schema_with(&other_key, json!({"schema_version": 4}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{body}");
    assert_eq!(s.get(&format!("/api/1/schemas/{SPEC_SCHEMA_ID}/4")).await.0, StatusCode::NOT_FOUND);
    let last = &rejections(s, "?limit=1").await[0];
    assert_eq!(
        (last["status"].as_i64(), last["code"].as_str(), last["source_id"].as_i64()),
        (Some(409), Some("conflict"), Some(other))
    );

    // The spec's activity message, corrected, against the spec's schema.
    let base = s.engine.xds_base_url().to_string();
    let (status, first) = s.post("/api/1/activities", corrected(SPEC_ACTIVITY_AS_PRINTED, &key)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!((first["status"].as_str(), first["changed"].clone()), (Some("created"), json!(["summary"])));
    assert!(first["stream_entry_id"].as_i64().is_some());
    let id = first["activity_id"].as_i64().unwrap();
    let a = activity(s, id).await;
    assert_eq!((a["remote_id"].as_str(), a["schema_version"].as_i64()), (Some("deploy-1234"), Some(2)));
    assert_eq!((a["source_id"].as_i64(), a["status_type"].as_str()), (Some(deployer), Some("open")));
    assert_eq!(a["event_time"], "2015-02-02T17:15:32.32Z");
    // Raw values, hidden ones included; `name` names the schema only.
    assert_eq!(a["fields"]["environment"], "Dev Stage 1");
    assert_eq!(a["fields"]["deploy_message"], "Deploying to fix [artf12345] and [artf12346] as critical bugs.");
    assert!(a["fields"].get("name").is_none() && a["fields"].get("remote_id").is_none());
    // Rendered: references and URLs linked, hidden fields left out.
    assert_eq!(
        a["rendered"]["fields"]["deploy_message"],
        format!(
            "Deploying to fix <a href=\"{base}/go/artf12345\">[artf12345]</a> and <a href=\"{base}/go/artf12346\">[artf12346]</a> as critical bugs."
        )
    );
    assert_eq!(a["rendered"]["references"], json!(["artf12345", "artf12346"]));
    assert_eq!(
        a["rendered"]["links"],
        json!([{"field": "link_to", "label": "Deploy Details", "url": "http://www.example.com/deploy/deploy-1234"}])
    );
    assert!(a["rendered"]["fields"].get("environment").is_none());
    assert_eq!(a["sub_event_count"], 1);
    assert_eq!(a["sub_events"].as_array().unwrap().len(), 1);
    assert_eq!(a["sub_events"][0]["fields"], a["fields"]);
    let (_, stream) = s.get("/api/v1/xds/stream").await;
    assert_eq!(stream.as_array().unwrap().len(), 1);
    assert_eq!((stream[0]["activity_id"].as_i64(), stream[0]["changed"].clone()), (Some(id), json!(["summary"])));
    assert_eq!(stream[0]["rendered"]["fields"]["summary"], "Deploy at 4:52pm on a Friday");

    // A later message changing no important field: a sub-event, no entry.
    let second = activity_with(
        &key,
        json!({"event_time": "2015-02-02T17:20:00Z", "rule": "2 comes after 1", "-summary": null, "-link_to": null}),
    );
    let (status, ack) = s.post("/api/1/activities", second).await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!((ack["status"].as_str(), ack["activity_id"].as_i64()), (Some("aggregated"), Some(id)));
    assert_eq!((ack["changed"].clone(), ack["stream_entry_id"].clone()), (json!([]), Value::Null));
    let a = activity(s, id).await;
    assert_eq!(
        (a["fields"]["rule"].as_str(), a["fields"]["summary"].as_str()),
        (Some("2 comes after 1"), Some("Deploy at 4:52pm on a Friday"))
    );
    assert_eq!(a["sub_event_count"], 2);
    // Important fields set and changed, a placeholder (spec 003's own),
    // markup that must stay text, and a link field with its default label.
    let third = activity_with(
        &key,
        json!({
            "event_time": "2015-02-02T17:30:00Z",
            "summary": "Deploy at 4:52pm on a Friday. See %CTF_GO_URL%/page1001 <script>alert(1)</script>",
            "status_name": "Deployed", "status_type": "success",
            "deploy_url": "%JUNCTION_BASE_URL%/deploys/1234",
            "-link_to": null
        }),
    );
    let (status, ack) = s.post("/api/1/activities", third).await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["changed"], json!(["summary", "status_name"]));
    let a = activity(s, id).await;
    assert_eq!(
        a["rendered"]["fields"]["summary"],
        format!("Deploy at 4:52pm on a Friday. See {base}/go/page1001 &lt;script&gt;alert(1)&lt;/script&gt;")
    );
    assert_eq!(
        a["fields"]["summary"], "Deploy at 4:52pm on a Friday. See %CTF_GO_URL%/page1001 <script>alert(1)</script>",
        "raw kept"
    );
    assert_eq!(
        a["rendered"]["links"],
        json!([
            {"field": "link_to", "label": "Deploy Details", "url": "http://www.example.com/deploy/deploy-1234"},
            {"field": "deploy_url", "label": "See More", "url": format!("{base}/deploys/1234")}
        ])
    );
    assert_eq!(a["status_type"], "success");
    // A message older than the latest, arriving late: it fills in what no
    // later message set and changes nothing a later one did.
    let late = activity_with(
        &key,
        json!({"event_time": "2015-02-02T17:25:00Z", "summary": "stale", "authorized_by": "alice", "-link_to": null}),
    );
    let (status, ack) = s.post("/api/1/activities", late).await;
    assert_eq!(
        (status, ack["changed"].clone(), ack["stream_entry_id"].clone()),
        (StatusCode::CREATED, json!([]), Value::Null)
    );
    let a = activity(s, id).await;
    assert!(a["fields"]["summary"].as_str().unwrap().starts_with("Deploy at 4:52pm on a Friday. See"));
    assert_eq!(a["fields"]["authorized_by"], "alice");
    assert_eq!(a["event_time"], "2015-02-02T17:30:00Z");
    let times: Vec<&str> =
        a["sub_events"].as_array().unwrap().iter().map(|e| e["event_time"].as_str().unwrap()).collect();
    assert_eq!(
        times,
        ["2015-02-02T17:15:32.32Z", "2015-02-02T17:20:00Z", "2015-02-02T17:25:00Z", "2015-02-02T17:30:00Z"]
    );
    assert_eq!(a["sub_events"][2]["rendered"]["fields"]["summary"], "stale");
    // Clearing an important field is a change too.
    let cleared = activity_with(
        &key,
        json!({"event_time": "2015-02-02T17:40:00Z", "status_name": null, "-summary": null, "-link_to": null, "-status_type": null}),
    );
    let (_, ack) = s.post("/api/1/activities", cleared).await;
    assert_eq!(ack["changed"], json!(["status_name"]));

    // The stream: newest first, hidden values never in it.
    let (_, stream) = s.get("/api/v1/xds/stream").await;
    let changes: Vec<Value> = stream.as_array().unwrap().iter().map(|e| e["changed"].clone()).collect();
    assert_eq!(changes, [json!(["status_name"]), json!(["summary", "status_name"]), json!(["summary"])]);
    assert!(!stream.to_string().contains("Dev Stage 1") && !stream.to_string().contains("alice"));
    assert!(!stream.to_string().contains("<script>"));
    let (_, page) = s.get(&format!("/api/v1/xds/stream?activity_id={id}&limit=1&offset=1")).await;
    assert_eq!(page[0]["changed"], json!(["summary", "status_name"]));

    // Another activity; remote_id as a number is its decimal text. The
    // listing filters and pages.
    let (status, ack) =
        s.post("/api/1/activities", activity_with(&key, json!({"remote_id": 1234, "status_type": "fail"}))).await;
    assert_eq!((status, ack["status"].as_str()), (StatusCode::CREATED, Some("created")), "{ack}");
    let (_, same) = s.post("/api/1/activities", activity_with(&key, json!({"remote_id": "1234"}))).await;
    assert_eq!(same["activity_id"], ack["activity_id"]);
    let (_, list) = s.get("/api/v1/xds/activities").await;
    let ids: Vec<i64> = list.as_array().unwrap().iter().map(|a| a["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [ack["activity_id"].as_i64().unwrap(), id], "most recently updated first");
    assert_eq!(list[1]["sub_events"].as_array().unwrap().len(), 5);
    let count = |q: &str| {
        let q = q.to_string();
        async move { s.get(&format!("/api/v1/xds/activities{q}")).await.1.as_array().map_or(usize::MAX, Vec::len) }
    };
    assert_eq!(count("?status_type=success").await, 1);
    assert_eq!(count("?status_type=open").await, 1, "the other activity's latest message says open");
    assert_eq!(count(&format!("?source_id={deployer}&schema_id={SPEC_SCHEMA_ID}")).await, 2);
    assert_eq!(count(&format!("?source_id={other}")).await, 0);
    assert_eq!(count("?remote_id=deploy-1234").await, 1);
    assert_eq!(count("?limit=1&offset=1").await, 1);
    for bad in ["?limit=0", "?limit=201", "?offset=-1", "?colour=red", "?source_id=x", "?schema_id=%00"] {
        assert_eq!(s.get(&format!("/api/v1/xds/activities{bad}")).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(s.get("/api/v1/xds/activities/999999").await.0, StatusCode::NOT_FOUND);

    // Every activity rule: each refused with all violations, recorded.
    let cases = [
        (activity_with("no-such-key", json!({})), pairs(&[("source_association_key", "unknown")])),
        (
            activity_with(&key, json!({"schema_id": "never-registered"})),
            pairs(&[("custom_data.schema_id", "unknown_schema")]),
        ),
        (
            activity_with(&key, json!({"schema_version": 7})),
            pairs(&[("custom_data.schema_version", "unknown_version")]),
        ),
        (activity_with(&key, json!({"-rule": null})), pairs(&[("custom_data.rule", "required")])),
        (activity_with(&key, json!({"-remote_id": null})), pairs(&[("custom_data.remote_id", "required")])),
        (activity_with(&key, json!({"-event_time": null})), pairs(&[("custom_data.event_time", "required")])),
        (
            activity_with(&key, json!({"event_time": "2015-02-02T17:15:32"})),
            pairs(&[("custom_data.event_time", "rfc3339_utc")]),
        ),
        (activity_with(&key, json!({"bad key": "T-1"})), pairs(&[("custom_data[\"bad key\"]", "field_name")])),
        (activity_with(&key, json!({"name": "Other Schema"})), pairs(&[("custom_data.name", "schema_name")])),
        (activity_with(&key, json!({"status_type": "done"})), pairs(&[("custom_data.status_type", "one_of")])),
        (activity_with(&key, json!({"summary": 5})), pairs(&[("custom_data.summary", "type")])),
        (activity_with(&key, json!({"summary": "a\u{0}b"})), pairs(&[("custom_data.summary", "no_nul")])),
        (
            activity_with(&key, json!({"environment": {"k": "v\u{0}"}})),
            pairs(&[("custom_data.environment.k", "no_nul")]),
        ),
        (activity_with(&key, json!({"deploy_message": ["x"]})), pairs(&[("custom_data.deploy_message", "type")])),
        (activity_with(&key, json!({"link_to": "javascript:alert(1)"})), pairs(&[("custom_data.link_to", "url")])),
        (
            activity_with(&key, json!({"deploy_url": ["label", "ftp://host/x"]})),
            pairs(&[("custom_data.deploy_url[1]", "url")]),
        ),
        (
            activity_with(&key, json!({"associated_remote_id": [1]})),
            pairs(&[("custom_data.associated_remote_id[0]", "type")]),
        ),
        (activity_with(&key, json!({"schema_version": 1e300})), pairs(&[("custom_data.schema_version", "type")])),
        (activity_with(&key, json!({"schema_version": u64::MAX})), pairs(&[("custom_data.schema_version", "range")])),
        (activity_with(&key, json!({"bad\u{0}key": 1})), pairs(&[("custom_data[\"bad\\u0000key\"]", "no_nul")])),
        (json!({"api_version": "1", "source_association_key": key}), pairs(&[("custom_data", "required")])),
        (json!("activity"), pairs(&[("body", "type")])),
    ];
    for (body, want) in cases {
        assert_eq!(refused(s, "/api/1/activities", &body).await, want, "{body}");
    }
    let mut deep = json!("x");
    for _ in 0..40 {
        deep = json!({"d": deep});
    }
    assert_eq!(
        refused(s, "/api/1/activities", &activity_with(&key, json!({"environment": deep}))).await,
        pairs(&[("custom_data.environment", "depth")])
    );
    let mut everything =
        activity_with(&key, json!({"-rule": null, "bad key": 1, "status_type": "done", "summary": false}));
    everything["api_version"] = json!(1);
    assert_eq!(
        refused(s, "/api/1/activities", &everything).await,
        pairs(&[
            ("api_version", "type"),
            ("custom_data.summary", "type"),
            ("custom_data.status_type", "one_of"),
            ("custom_data[\"bad key\"]", "field_name"),
            ("custom_data.rule", "required"),
        ])
    );
    let last = &rejections(s, "?kind=activity&limit=1").await[0];
    assert_eq!(
        (last["source_id"].as_i64(), last["schema_id"].as_str(), last["schema_version"].as_i64()),
        (Some(deployer), Some(SPEC_SCHEMA_ID), Some(2))
    );

    // Bodies that are not messages at all: never a 500.
    let nested = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    for body in [b"{\"api_version\": 1e999}".to_vec(), nested.into_bytes(), b"\xff\xfe".to_vec(), Vec::new()] {
        let (status, answer) = s.post_raw("/api/1/activities", ADMIN, "application/json", body).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("malformed_json")));
    }
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(1024 * 1024));
    assert_eq!(
        s.post_raw("/api/1/activities", ADMIN, "application/json", big.into_bytes()).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        s.post_raw("/api/1/schemas", ADMIN, "text/plain", b"{}".to_vec()).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // A refused body is kept up to 64 KiB.
    let long = format!("not json {}", "z".repeat(100_000));
    assert_eq!(
        s.post_raw("/api/1/activities", ADMIN, "application/json", long.into_bytes()).await.0,
        StatusCode::BAD_REQUEST
    );
    let last = &rejections(s, "?limit=1").await[0];
    assert_eq!((last["body_truncated"].as_bool(), last["body_bytes"].as_i64()), (Some(true), Some(100_009)));
    assert_eq!(last["body"].as_str().unwrap().len(), 64 * 1024);

    // A source follows the schema of its first message: another schema's
    // messages are refused (409, recorded); a source without a schema is
    // associated by its first activity.
    let (status, body) = s.post("/api/1/activities", activity_with(&other_key, json!({}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{body}");
    let last = &rejections(s, "?limit=1").await[0];
    assert_eq!(
        (last["kind"].as_str(), last["status"].as_i64(), last["source_id"].as_i64()),
        (Some("activity"), Some(409), Some(other))
    );
    let (fresh, fresh_key) = source(s, "fresh").await;
    let (status, ack) = s
        .post(
            "/api/1/activities",
            activity_with(&fresh_key, json!({"schema_version": 3, "ticket": "T-9", "-name": null})),
        )
        .await;
    assert_eq!((status, ack["source_id"].as_i64()), (StatusCode::CREATED, Some(fresh)), "{ack}");
    assert_ne!(ack["activity_id"], json!(id), "activities are per source");
    let (_, src) = s.get(&format!("/api/v1/xds/sources/{fresh}")).await;
    assert_eq!(src["schema_id"], SPEC_SCHEMA_ID);
    assert!(src["associated_at"].is_string());

    // Rejections: filters and paging.
    let all = rejections(s, "?limit=500").await;
    assert!(all.windows(2).all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()), "newest first");
    let kinds = |list: &[Value], k: &str| !list.is_empty() && list.iter().all(|r| r["kind"] == k);
    assert!(kinds(&rejections(s, "?kind=schema&limit=500").await, "schema"));
    assert!(kinds(&rejections(s, "?kind=activity&limit=500").await, "activity"));
    assert_eq!(rejections(s, "?limit=2&offset=1").await[0]["id"], all[1]["id"]);
    assert!(rejections(s, &format!("?source_id={other}")).await.len() >= 2);
    assert_eq!(s.get("/api/v1/xds/rejections?kind=bogus").await.0, StatusCode::BAD_REQUEST);

    // Roles: viewers read; operators send messages (event intake);
    // editors create sources; no token is 401.
    let viewer = s.token("viewer").await;
    let operator = s.token("operator").await;
    let (status, _) = s.send(Method::GET, "/api/1/schemas", Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK);
    let msg = activity_with(&key, json!({"event_time": "2015-02-02T18:00:00Z"}));
    assert_eq!(s.send(Method::POST, "/api/1/activities", Some(&viewer), Some(&msg)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.send(Method::POST, "/api/1/activities", Some(&operator), Some(&msg)).await.0, StatusCode::CREATED);
    let resent = corrected(SPEC_SCHEMA_AS_PRINTED, &key);
    assert_eq!(s.send(Method::POST, "/api/1/schemas", Some(&operator), Some(&resent)).await.0, StatusCode::OK);
    let new = json!({"name": "by operator"});
    assert_eq!(s.send(Method::POST, "/api/v1/xds/sources", Some(&operator), Some(&new)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.send(Method::POST, "/api/1/activities", None, Some(&msg)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.send(Method::GET, "/api/v1/xds/stream", None, None).await.0, StatusCode::UNAUTHORIZED);
}

on_both!(
    xds => xds_sources_schemas_activities_and_rejections_on_sqlite,
    xds_sources_schemas_activities_and_rejections_on_postgres
);

/// A schema with fifty custom fields `c0`..`c49`, important `c0`.
async fn counting_schema(s: &TestServer, key: &str) {
    let fields: Vec<String> = ["schema_id", "schema_version", "event_time", "remote_id"]
        .iter()
        .map(|f| f.to_string())
        .chain((0..50).map(|i| format!("c{i}")))
        .collect();
    let body = json!({"api_version": "1", "source_association_key": key, "custom_schema": {
        "name": "Counter", "schema_id": "counter", "schema_version": 1, "event_time": "2024-01-01T00:00:00Z",
        "fields": fields, "required": ["schema_id", "schema_version", "event_time", "remote_id"], "important": ["c0"]}});
    let (status, reg) = s.post("/api/1/schemas", body).await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
}

/// Many messages at once, to several servers over one database: every
/// message is one sub-event, and no field written by one is lost to
/// another (the read-modify-write of an activity is serialized). All carry
/// the same event time, so each is laid over the activity's current values
/// as it arrives, and each sets a field no other message of its activity
/// sets.
async fn concurrent(servers: &[&TestServer]) {
    let s = servers[0];
    let (_, key) = source(s, "busy").await;
    counting_schema(s, &key).await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        // Each activity gets messages through every server.
        let server = servers[(i / 6) % servers.len()];
        let (http, url) = (server.http.clone(), format!("{}/api/1/activities", server.base));
        let body = json!({"api_version": "1", "source_association_key": key, "custom_data": {
            "schema_id": "counter", "schema_version": 1, "event_time": "2024-01-01T00:00:00Z",
            "remote_id": format!("r{}", i % 6), format!("c{}", i / 6): i}});
        tasks.push(tokio::spawn(async move {
            let resp = http.post(url).bearer_auth(ADMIN).json(&body).send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (status, ack) = t.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{ack}");
        created += usize::from(ack["status"] == "created");
    }
    assert_eq!(created, 6, "one activity per remote_id");
    let (_, list) = s.get("/api/v1/xds/activities?limit=200").await;
    assert_eq!(list.as_array().unwrap().len(), 6);
    for a in list.as_array().unwrap() {
        assert_eq!(a["sub_event_count"], 50, "{}", a["remote_id"]);
        assert_eq!(a["sub_events"].as_array().unwrap().len(), 50);
        let fields = a["fields"].as_object().unwrap();
        assert_eq!(fields.len(), 50, "every field some message set is there: {fields:?}");
    }
}

#[tokio::test]
async fn concurrent_messages_aggregate_without_loss_on_sqlite() {
    let s = TestServer::sqlite_with(Options { workers: 0, ..Options::default() }).await;
    concurrent(&[&s]).await;
}

#[tokio::test]
async fn concurrent_messages_to_two_servers_aggregate_without_loss_on_postgres() {
    let a = TestServer::postgres_with(Options { workers: 0, ..Options::default() }).await;
    let b = a.sibling(Options { workers: 0, ..Options::default() }).await;
    concurrent(&[&a, &b]).await;
}

/// A message breaking a rule hundreds of times: the answer and the recorded
/// refusal list the first 100 violations and count the rest.
#[tokio::test]
async fn a_refusal_with_many_violations_is_answered_and_recorded_capped() {
    let s = TestServer::sqlite().await;
    let (_, key) = source(&s, "noisy").await;
    let mut fields: Vec<String> = ["schema_id", "schema_version", "event_time", "remote_id"].map(String::from).to_vec();
    fields.extend((0..190).map(|i| format!("bad name {i}")));
    let body = schema_with(&key, json!({"fields": fields, "-parse": null, "-link_to": null, "-hidden": null}));
    let got = refused(&s, "/api/1/schemas", &body).await;
    assert_eq!(got.len(), 101);
    assert_eq!(got[0], ("custom_schema.fields[4]".to_string(), "field_name".to_string()));
    assert_eq!(got[100], ("body".to_string(), "more_violations".to_string()));
    let last = &rejections(&s, "?limit=1").await[0];
    assert_eq!(last["details"][100]["message"], "91 more violations are not listed (191 in all)");
    assert!(last["reason"].as_str().unwrap().starts_with("191 violations; the first 100 are listed"), "{last}");
}

/// Spec 003's walkthrough sends its activity message — with the custom
/// field `environment` — while the schema registered is the one of its
/// "parse" step, which does not declare `environment`. Custom fields are
/// "truly arbitrary" and only messages missing required fields are
/// discarded: the message is stored, the undeclared field kept and listed,
/// and — like a hidden field — never rendered.
async fn walkthrough(s: &TestServer) {
    let (_, key) = source(s, "walkthrough").await;
    let (status, reg) = s.post("/api/1/schemas", corrected(SPEC_PARSE_SCHEMA_AS_PRINTED, &key)).await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    assert!(!reg["schema"]["fields"].as_array().unwrap().contains(&json!("environment")));
    let (status, ack) = s.post("/api/1/activities", corrected(SPEC_ACTIVITY_AS_PRINTED, &key)).await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["undeclared_fields"], json!(["environment"]));
    let id = ack["activity_id"].as_i64().unwrap();
    let a = activity(s, id).await;
    assert_eq!(a["fields"]["environment"], "Dev Stage 1");
    assert_eq!(a["undeclared_fields"], json!(["environment"]));
    assert_eq!(a["sub_events"][0]["undeclared_fields"], json!(["environment"]));
    assert!(a["rendered"]["fields"].get("environment").is_none(), "{a}");
    assert_eq!(a["rendered"]["fields"]["summary"], "Deploy at 4:52pm on a Friday");

    // A later message of the same activity: undeclared values with markup;
    // the activity keeps every undeclared field any message set.
    let later = activity_with(
        &key,
        json!({"event_time": "2015-02-02T17:20:00Z", "-environment": null, "-summary": null, "-link_to": null,
            "status_name": "Deployed", "authorized_by": "<script>alert('x')</script>", "approvals": {"qa": ["alice"]}}),
    );
    let (status, ack) = s.post("/api/1/activities", later).await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!((ack["status"].as_str(), ack["changed"].clone()), (Some("aggregated"), json!(["status_name"])));
    assert_eq!(ack["undeclared_fields"], json!(["authorized_by", "approvals"]));
    let a = activity(s, id).await;
    assert_eq!(a["undeclared_fields"], json!(["environment", "authorized_by", "approvals"]));
    assert_eq!(
        (a["fields"]["environment"].as_str(), a["fields"]["authorized_by"].as_str()),
        (Some("Dev Stage 1"), Some("<script>alert('x')</script>"))
    );
    assert_eq!(a["fields"]["approvals"], json!({"qa": ["alice"]}));
    assert_eq!(a["sub_events"][1]["undeclared_fields"], json!(["authorized_by", "approvals"]));
    let rendered = a["rendered"].to_string();
    assert!(
        !rendered.contains("script") && !rendered.contains("Dev Stage") && !rendered.contains("alice"),
        "{rendered}"
    );
    let (_, stream) = s.get(&format!("/api/v1/xds/stream?activity_id={id}")).await;
    assert_eq!(stream.as_array().unwrap().len(), 2, "{stream}");
    let stream = stream.to_string();
    assert!(
        !stream.contains("script") && !stream.contains("Dev Stage") && !stream.contains("authorized_by"),
        "{stream}"
    );

    // A later version that declares `environment` shows it (escaped); the
    // first sub-event still lists it under its own version.
    let mut v3 = corrected(SPEC_PARSE_SCHEMA_AS_PRINTED, &key);
    v3["custom_schema"]["schema_version"] = json!(3);
    v3["custom_schema"]["fields"].as_array_mut().unwrap().push(json!("environment"));
    assert_eq!(s.post("/api/1/schemas", v3).await.0, StatusCode::CREATED);
    let declared = activity_with(
        &key,
        json!({"schema_version": 3, "event_time": "2015-02-02T17:30:00Z", "environment": "Prod <b>1</b>",
            "-summary": null, "-link_to": null}),
    );
    let (status, ack) = s.post("/api/1/activities", declared).await;
    assert_eq!((status, ack["undeclared_fields"].clone()), (StatusCode::CREATED, json!([])), "{ack}");
    let a = activity(s, id).await;
    assert_eq!(a["undeclared_fields"], json!(["authorized_by", "approvals"]));
    assert_eq!(a["rendered"]["fields"]["environment"], "Prod &lt;b&gt;1&lt;/b&gt;");
    assert_eq!(a["sub_events"][0]["undeclared_fields"], json!(["environment"]));
    assert_eq!(a["sub_events"][2]["undeclared_fields"], json!([]));
    let (_, list) = s.get("/api/v1/xds/activities?remote_id=deploy-1234").await;
    assert_eq!(list[0], a, "the listing shows the same");

    // Still refused: a declared field of the wrong type (an undeclared one
    // beside it changes nothing), a required field missing, an undeclared
    // key that is no field name, an undeclared value beyond the caps.
    let deep = (0..20).fold(json!("x"), |inner, _| json!([inner]));
    let cases = [
        (activity_with(&key, json!({"summary": 5, "extra": "x"})), pairs(&[("custom_data.summary", "type")])),
        (activity_with(&key, json!({"-rule": null})), pairs(&[("custom_data.rule", "required")])),
        (activity_with(&key, json!({"two words": 1})), pairs(&[("custom_data[\"two words\"]", "field_name")])),
        (activity_with(&key, json!({"notes": deep})), pairs(&[("custom_data.notes", "depth")])),
    ];
    for (body, want) in cases {
        assert_eq!(refused(s, "/api/1/activities", &body).await, want, "{body}");
    }
    assert_eq!(activity(s, id).await["sub_event_count"], 3, "nothing refused was stored");
}

on_both!(
    walkthrough => the_walkthrough_activity_with_an_undeclared_field_is_stored_on_sqlite,
    the_walkthrough_activity_with_an_undeclared_field_is_stored_on_postgres
);
