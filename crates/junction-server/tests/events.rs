//! Spec 002's CI/CD job webhook through the real server: companies, their
//! tokens and Custom CD services, strict validation with every violation
//! listed, and what arrived read back.

mod common;

use common::{details, on_both, TestServer, ADMIN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The spec's sample payload, as JSON.
fn sample(service_id: i64) -> Value {
    json!({
        "job_id": "1",
        "status": "Succeeded",
        "commit_sha": "a2e7da86cc392417b0d9f605b28038aae80b002f",
        "triggered_by": "testuser@org.com",
        "repo_id": "12345",
        "service_id": service_id,
        "job_start_time": 1704018030,
        "job_duration": 300,
        "job_type": "Production Deploy",
        "optional": [
            {"key": "microservice", "value": ["frontend", "backend"], "type": "string"},
            {"key": "lead_time", "value": 20, "type": "duration"},
            {"key": "float_key", "value": 20.5, "type": "float"},
            {"key": "qa_approved_on", "value": 1704018030, "type": "timestamp"}
        ]
    })
}

/// The sample exactly as spec 002 prints it: curly quotes, single quotes,
/// an unterminated string and a trailing comma — not JSON.
const SAMPLE_AS_PRINTED: &str = "{\n   \"job_id\": \"1\",\n   \"status\": \"Succeeded\",\n   \"commit_sha\": \"a2e7da86cc392417b0d9f605b28038aae80b002f\",\n   \"triggered_by\": \"testuser@org.com\n   \"repo_id\": \u{201c}12345\u{201d},\n   \"service_id\": 2,\n   \"job_start_time\": 1704018030,\n   \"job_duration\": 300,\n   \"job_type\": \"Production Deploy\",\n   \"optional\": [\n     {\n       \"key\": 'microservice',\n       \"value\": ['frontend', 'backend'],\n       \"type\": 'string'\n     },\n   ]\n}";

struct Company {
    id: i64,
    service: i64,
    token: String,
}

async fn company(s: &TestServer, name: &str) -> Company {
    let (status, c) = s.post("/api/v1/companies", json!({"name": name})).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let id = c["id"].as_i64().unwrap();
    let (status, svc) = s.post(&format!("/api/v1/companies/{id}/cicd_services"), json!({"name": "deployer"})).await;
    assert_eq!(status, StatusCode::CREATED, "{svc}");
    assert_eq!(svc["type"], "custom_cd");
    let (status, t) =
        s.post("/api/v1/tokens", json!({"name": format!("{name} agent"), "role": "operator", "company_id": id})).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    assert_eq!(t["company_id"], id);
    Company { id, service: svc["id"].as_i64().unwrap(), token: t["token"].as_str().unwrap().to_string() }
}

async fn post_job(s: &TestServer, company: i64, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
    s.send(Method::POST, &format!("/webhook/company/{company}/cicd_job"), token, Some(body)).await
}

async fn raw_post(s: &TestServer, company: i64, token: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
    s.post_raw(&format!("/webhook/company/{company}/cicd_job"), token, content_type, body).await
}

async fn webhook(s: &TestServer) {
    let acme = company(s, "acme").await;
    let globex = company(s, "globex").await;

    // Accepted: 201 with Junction's own id and the normalised item.
    let (status, item) = post_job(s, acme.id, Some(&acme.token), &sample(acme.service)).await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    assert!(item["id"].as_i64().unwrap() > 0);
    assert_eq!(item["job_id"], "1");
    assert_eq!(item["company_id"], acme.id);
    assert_eq!(item["job_type"], "Production Deploy");
    assert_eq!(item["optional"][0]["value"], json!(["frontend", "backend"]));
    // job_id is not trusted to be unique: the same post is a new item.
    let (status, again) = post_job(s, acme.id, Some(&acme.token), &sample(acme.service)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(again["id"], item["id"]);
    // The same triggering user is one service user.
    assert_eq!(again["service_user_id"], item["service_user_id"]);
    // Defaults for blank optional fields.
    let mut minimal = sample(acme.service);
    for k in ["triggered_by", "job_type", "optional", "repo_id"] {
        minimal.as_object_mut().unwrap().remove(k);
    }
    minimal["repo_name"] = json!("payments");
    minimal["status"] = json!("On Hold");
    let (status, m) = post_job(s, acme.id, Some(&acme.token), &minimal).await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["triggered_by"], "Custom CD Agent");
    assert_eq!(m["job_type"], "CUSTOM_CD_JOB");
    assert_ne!(m["service_user_id"], item["service_user_id"]);

    // Every violation at once.
    let mut bad = sample(acme.service);
    bad["service_id"] = json!("2");
    bad["job_start_time"] = json!(1704018030.5);
    bad["job_duration"] = json!(null);
    bad["status"] = json!("Done");
    bad["commit_sha"] = json!("abc123");
    bad["optional"][1]["key"] = json!("microservice");
    bad["optional"][2]["value"] = json!(true);
    let (status, body) = post_job(s, acme.id, Some(&acme.token), &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let mut got = details(&body);
    got.sort();
    let mut want: Vec<(String, String)> = [
        ("commit_sha", "sha"),
        ("service_id", "type"),
        ("job_start_time", "type"),
        ("job_duration", "type"),
        ("status", "one_of"),
        ("optional[1].key", "duplicate"),
        ("optional[2].value", "type"),
    ]
    .iter()
    .map(|(f, r)| (f.to_string(), r.to_string()))
    .collect();
    want.sort();
    assert_eq!(got, want, "{body}");

    // The sample as printed in the spec is not JSON: a clear 400.
    let (status, body) =
        raw_post(s, acme.id, &acme.token, "application/json", SAMPLE_AS_PRINTED.as_bytes().to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "malformed_json");
    // Not JSON, too big.
    let (status, _) = raw_post(s, acme.id, &acme.token, "text/plain", b"job_id=1".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut big = sample(acme.service);
    big["job_id"] = json!("x".repeat(1024 * 1024));
    let (status, _) = raw_post(s, acme.id, &acme.token, "application/json", serde_json::to_vec(&big).unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // A service of another company, or none: 422.
    let (status, body) = post_job(s, acme.id, Some(&acme.token), &sample(globex.service)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(details(&body), vec![("service_id".to_string(), "custom_cd_service".to_string())]);
    let (status, _) = post_job(s, acme.id, Some(&acme.token), &sample(999_999)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Tokens: none 401, another company's 403, unknown company 404, a
    // viewer 403; a company token reaches nothing else.
    let (status, _) = post_job(s, acme.id, None, &sample(acme.service)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post_job(s, acme.id, Some("jct_not-a-token"), &sample(acme.service)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = post_job(s, acme.id, Some(&globex.token), &sample(acme.service)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = post_job(s, 424242, Some(ADMIN), &sample(acme.service)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let viewer = s.token("viewer").await;
    let (status, _) = post_job(s, acme.id, Some(&viewer), &sample(acme.service)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for path in ["/api/v1/steps", "/api/v1/companies", &format!("/api/v1/companies/{}/cicd_jobs", globex.id)] {
        let (status, _) = s.send(Method::GET, path, Some(&acme.token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, body) = s.post("/api/v1/tokens", json!({"name": "x", "role": "admin", "company_id": acme.id})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = s.post("/api/v1/tokens", json!({"name": "x", "role": "operator", "company_id": 777})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let operator = s.token("operator").await;
    let (status, _) = s.send(Method::POST, "/api/v1/companies", Some(&operator), Some(&json!({"name": "x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only administrators create companies");

    // What arrived, read back by the company itself; filters and paging.
    let list = |q: &str| format!("/api/v1/companies/{}/cicd_jobs{q}", acme.id);
    let (status, jobs) = s.send(Method::GET, &list(""), Some(&acme.token), None).await;
    assert_eq!(status, StatusCode::OK, "{jobs}");
    assert_eq!(jobs.as_array().unwrap().len(), 3);
    let (_, held) = s.get(&list("?status=On%20Hold")).await;
    assert_eq!(held.as_array().unwrap().len(), 1);
    let (_, by_repo) = s.get(&list("?repo=12345&limit=1")).await;
    assert_eq!(by_repo.as_array().unwrap().len(), 1);
    let (_, none) = s.get(&list("?from=1704018031")).await;
    assert_eq!(none, json!([]));
    let (status, _) = s.get(&list("?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s.get(&list("?colour=red")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = s.get(&list("?repo=%00")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a NUL is refused, not a 500: {body}");
    let (status, one) = s.get(&format!("/api/v1/companies/{}/cicd_jobs/{}", acme.id, item["id"])).await;
    assert_eq!(status, StatusCode::OK);
    let mut answered = item.clone();
    answered.as_object_mut().unwrap().remove("triggered_runs");
    assert_eq!(one, answered, "read back as answered");
    let (status, _) = s.get(&format!("/api/v1/companies/{}/cicd_jobs/{}", globex.id, item["id"])).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "items are per company");
    let (_, globex_jobs) = s.get(&format!("/api/v1/companies/{}/cicd_jobs", globex.id)).await;
    assert_eq!(globex_jobs, json!([]), "acme's jobs are not globex's");
}

on_both!(
    webhook => cicd_jobs_are_validated_stored_and_scoped_on_sqlite,
    cicd_jobs_are_validated_stored_and_scoped_on_postgres
);

/// A body with 10,000 violations gets a short answer: the first 100 are
/// listed and a last entry says how many more there are.
#[tokio::test]
async fn a_refusal_lists_the_first_hundred_violations_and_counts_the_rest() {
    let s = TestServer::sqlite().await;
    let acme = company(&s, "acme").await;
    let mut body = sample(acme.service);
    for i in 0..10_000 {
        body[format!("extra{i}")] = json!(1);
    }
    let url = format!("{}/webhook/company/{}/cicd_job", s.base, acme.id);
    let resp = s.http.post(url).bearer_auth(&acme.token).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let text = resp.text().await.unwrap();
    assert!(text.len() < 20_000, "a short answer, not {} bytes", text.len());
    let answer: Value = serde_json::from_str(&text).unwrap();
    let listed = details(&answer);
    assert_eq!(listed.len(), 101, "{answer}");
    assert_eq!(listed[0], ("extra0".to_string(), "unknown_field".to_string()));
    assert_eq!(listed[99], ("extra99".to_string(), "unknown_field".to_string()));
    assert_eq!(listed[100], ("body".to_string(), "more_violations".to_string()));
    let last = &answer["error"]["details"][100]["message"];
    assert_eq!(last, "9900 more violations are not listed (10000 in all)");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("10000 violations; the first 100 are listed"), "{message}");
    // Up to 100 violations are all listed, with no extra entry.
    let mut body = sample(acme.service);
    for i in 0..100 {
        body[format!("extra{i}")] = json!(1);
    }
    let (status, answer) = post_job(&s, acme.id, Some(&acme.token), &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let listed = details(&answer);
    assert_eq!(listed.len(), 100);
    assert!(listed.iter().all(|(_, rule)| rule == "unknown_field"), "{answer}");
    assert_eq!(answer["error"]["message"], "extra0: \"extra0\" is not a field of a CI/CD job (spec 002) (and 99 more)");
}

/// Many agents at once: every accepted post is stored exactly once.
#[tokio::test]
async fn concurrent_posts_are_all_stored() {
    let s = TestServer::sqlite().await;
    let acme = company(&s, "acme").await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, base, token) = (s.http.clone(), s.base.clone(), acme.token.clone());
        let mut body = sample(acme.service);
        body["job_id"] = json!(format!("job-{i}"));
        body["triggered_by"] = json!(format!("user{}", i % 7));
        let url = format!("{base}/webhook/company/{}/cicd_job", acme.id);
        tasks.push(tokio::spawn(async move {
            let resp = http.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut users = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, item) = t.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{item}");
        ids.insert(item["id"].as_i64().unwrap());
        users.insert(item["service_user_id"].as_i64().unwrap());
    }
    assert_eq!(ids.len(), 200);
    assert_eq!(users.len(), 7, "one service user per distinct triggered_by");
    let (_, stored) = s.get(&format!("/api/v1/companies/{}/cicd_jobs?limit=500", acme.id)).await;
    assert_eq!(stored.as_array().unwrap().len(), 200);
}

const EVENT_JS: &str = r#"module.exports = { run: async (args) => {
    console.log('event ' + JSON.stringify(args.plutoraValues) + ' env ' + args.arguments.env);
    return 'done';
} };"#;

/// A CI/CD job that matches a trigger starts its job, stored in the same
/// transaction as the event; the job's log shows the event.
#[tokio::test]
async fn an_event_trigger_starts_a_job_with_the_event_as_context() {
    let s = TestServer::sqlite().await;
    let acme = company(&s, "acme").await;
    let (status, _) = s.post("/api/v1/steps", json!({"name": "onevent", "data": EVENT_JS})).await;
    assert_eq!(status, StatusCode::OK);
    let app = json!({"name": "deploy-sync", "automated": true,
        "app_variables": [{"name": "env", "value": "staging"}, {"name": "pw", "value": "trigger-secret-1", "encrypted": true}],
        "steps": [{"name": "main", "file": "onevent"}]});
    let (status, body) = s.post("/api/v1/applications", app).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Bad triggers are refused naming the field.
    let trigger = |extra: Value| {
        let mut t = json!({"name": "on-deploy", "application": "deploy-sync", "event": "cicd_job", "company_id": acme.id,
            "filter": {"status": "Succeeded", "service_id": acme.service}, "arguments": {"env": "production"}});
        for (k, v) in extra.as_object().unwrap() {
            t[k] = v.clone();
        }
        t
    };
    for (extra, field, rule) in [
        (json!({"application": "nope"}), "application", "exists"),
        (json!({"arguments": {"colour": "red"}}), "arguments.colour", "unknown_parameter"),
        (json!({"arguments": {"pw": "x"}}), "arguments.pw", "encrypted"),
        (json!({"event": "build"}), "event", "one_of"),
        (json!({"company_id": 999}), "company_id", "exists"),
    ] {
        let (status, body) = s.post("/api/v1/triggers", trigger(extra.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        assert_eq!(details(&body), vec![(field.to_string(), rule.to_string())], "{extra}");
    }
    let (status, body) = s.post("/api/v1/triggers", trigger(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Automated jobs off: the event is stored, nothing runs.
    let (status, item) = post_job(&s, acme.id, Some(&acme.token), &sample(acme.service)).await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    assert_eq!(item["triggered_runs"], json!([]));

    let (status, _) = s.put("/api/v1/settings", json!({"automated_jobs_enabled": true})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, item) = post_job(&s, acme.id, Some(&acme.token), &sample(acme.service)).await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    let runs = item["triggered_runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1, "{item}");
    let run = s.engine.wait_run(runs[0].as_str().unwrap(), std::time::Duration::from_secs(30)).await.unwrap();
    assert_eq!(run.state.as_str(), "SUCCESS", "{run:?}");
    assert_eq!(run.trigger_kind, "automated");
    let log = s.text(&format!("/api/v1/tasks/{}/log", run.id)).await;
    let line = log.lines().find(|l| l.contains("event {")).unwrap_or_else(|| panic!("{log}"));
    let context: Value =
        serde_json::from_str(line.split("event ").nth(1).unwrap().split(" env ").next().unwrap()).unwrap();
    assert_eq!(context["JobName"], "deploy-sync");
    assert_eq!(context["EventId"], item["id"]);
    assert_eq!(context["CicdJob"]["commit_sha"], "a2e7da86cc392417b0d9f605b28038aae80b002f");
    assert_eq!(context["Company"]["Name"], "acme");
    assert!(line.ends_with(" env production"), "trigger arguments override: {line}");
    let (_, history) = s.get("/api/v1/jobs/deploy-sync/history").await;
    assert_eq!(history[0]["triggered_by"], "trigger:on-deploy");

    // Not matching: a failed job, another company's job.
    let mut failed = sample(acme.service);
    failed["status"] = json!("Failed");
    let (_, item) = post_job(&s, acme.id, Some(&acme.token), &failed).await;
    assert_eq!(item["triggered_runs"], json!([]));
    // Deleted: no more runs.
    let (status, _) = s.delete("/api/v1/triggers/on-deploy").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, item) = post_job(&s, acme.id, Some(&acme.token), &sample(acme.service)).await;
    assert_eq!(item["triggered_runs"], json!([]));
    let (_, jobs) = s.get(&format!("/api/v1/companies/{}/cicd_jobs", acme.id)).await;
    assert_eq!(jobs.as_array().unwrap().len(), 4, "every event was stored");
    s.assert_never_sent("trigger-secret-1");
}

/// An XDS activity message whose important field changes starts the
/// trigger's job; a message that changes nothing important does not.
#[tokio::test]
async fn an_xds_trigger_fires_on_important_changes() {
    let s = TestServer::sqlite().await;
    let (status, _) = s.post("/api/v1/steps", json!({"name": "onevent", "data": EVENT_JS})).await;
    assert_eq!(status, StatusCode::OK);
    let app = json!({"name": "on-deploy", "automated": true, "app_variables": [{"name": "env", "value": "x"}],
        "steps": [{"name": "main", "file": "onevent"}]});
    assert_eq!(s.post("/api/v1/applications", app).await.0, StatusCode::OK);
    let (_, src) = s.post("/api/v1/xds/sources", json!({"name": "deployer"})).await;
    let key = src["source_association_key"].as_str().unwrap().to_string();
    let schema = json!({"api_version": "1", "source_association_key": key, "custom_schema": {
        "name": "Deploy", "schema_id": "deploy-t", "schema_version": 1, "event_time": "2024-01-01T00:00:00Z",
        "fields": ["schema_id", "schema_version", "event_time", "remote_id", "env", "note"],
        "required": ["schema_id", "schema_version", "event_time", "remote_id"], "important": ["env"]}});
    let (status, body) = s.post("/api/1/schemas", schema).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = s
        .post(
            "/api/v1/triggers",
            json!({"name": "deploys", "application": "on-deploy", "event": "xds_activity",
            "filter": {"schema_id": "deploy-t", "important_change": true}, "arguments": {"env": "from-trigger"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = s.put("/api/v1/settings", json!({"automated_jobs_enabled": true})).await;
    assert_eq!(status, StatusCode::OK);

    let message = |t: &str, fields: Value| {
        let mut data = json!({"schema_id": "deploy-t", "schema_version": 1, "event_time": t, "remote_id": "d-9"});
        for (k, v) in fields.as_object().unwrap() {
            data[k] = v.clone();
        }
        json!({"api_version": "1", "source_association_key": key, "custom_data": data})
    };
    let (status, first) = s.post("/api/1/activities", message("2024-01-02T00:00:00Z", json!({"env": "staging"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["triggered_runs"].as_array().unwrap().len(), 1, "{first}");
    let (_, same) =
        s.post("/api/1/activities", message("2024-01-02T00:01:00Z", json!({"note": "still staging"}))).await;
    assert_eq!(same["triggered_runs"], json!([]), "nothing important changed: {same}");
    let (_, changed) = s.post("/api/1/activities", message("2024-01-02T00:02:00Z", json!({"env": "prod"}))).await;
    assert_eq!(changed["triggered_runs"].as_array().unwrap().len(), 1, "{changed}");

    let run_id = changed["triggered_runs"][0].as_str().unwrap();
    let run = s.engine.wait_run(run_id, std::time::Duration::from_secs(30)).await.unwrap();
    assert_eq!(run.state.as_str(), "SUCCESS", "{run:?}");
    let log = s.text(&format!("/api/v1/tasks/{run_id}/log")).await;
    let line = log.lines().find(|l| l.contains("event {")).unwrap_or_else(|| panic!("{log}"));
    let context: Value =
        serde_json::from_str(line.split("event ").nth(1).unwrap().split(" env ").next().unwrap()).unwrap();
    assert_eq!(context["XdsActivity"]["remote_id"], "d-9");
    assert_eq!(context["XdsActivity"]["fields"]["env"], "prod");
    assert_eq!(context["EventId"], changed["activity_id"]);
    assert_eq!(context["SubEventId"], changed["sub_event_id"]);
    assert!(line.ends_with(" env from-trigger"), "{line}");
}

/// A trigger may start a record flow (`"flow": NAME`): the event is the
/// run's context, and every hook gets it as `options.event`.
#[tokio::test]
async fn an_event_trigger_starts_a_flow_whose_hooks_get_the_event() {
    let s = TestServer::sqlite().await;
    let acme = company(&s, "acme").await;
    let shop = include_str!("fixtures/flows/shop.js");
    let (status, body) = s.post("/api/v1/stacks", json!({"name": "shop", "data": shop})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let flow = json!({"name": "deploy_flow",
        "pageGenerators": [{"name": "one", "type": "wrapper", "stack": "shop", "function": "quietOrders"}],
        "pageProcessors": [{"name": "push", "type": "wrapper", "stack": "shop", "function": "importOrders",
            "hooks": {"preMap": {"stack": "shop", "function": "rejectWithEvent"}}}]});
    let (status, body) = s.post("/api/v1/flows", flow).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let trigger = json!({"name": "flow-on-deploy", "flow": "deploy_flow", "event": "cicd_job", "company_id": acme.id,
        "filter": {"status": "Succeeded"}});
    let (status, body) = s.post("/api/v1/triggers", trigger.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["application"], ".flow.deploy_flow");
    // Read back, it posts back unchanged; a flow that does not exist, both
    // targets, or arguments are refused.
    let (status, _) = s.post("/api/v1/triggers", body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    for (extra, field, rule) in [
        (json!({"flow": "nope"}), "application", "exists"),
        (json!({"application": "x"}), "flow", "conflict"),
        (json!({"arguments": {"a": 1}}), "arguments", "conflict"),
    ] {
        let mut t = trigger.clone();
        for (k, v) in extra.as_object().unwrap() {
            t[k] = v.clone();
        }
        let (status, body) = s.post("/api/v1/triggers", t).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        assert_eq!(details(&body), vec![(field.to_string(), rule.to_string())], "{extra}");
    }
    let (status, _) = s.put("/api/v1/settings", json!({"automated_jobs_enabled": true})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, item) = post_job(&s, acme.id, Some(&acme.token), &sample(acme.service)).await;
    assert_eq!(status, StatusCode::CREATED, "{item}");
    let runs = item["triggered_runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 1, "{item}");
    let run = s.engine.wait_run(runs[0].as_str().unwrap(), std::time::Duration::from_secs(30)).await.unwrap();
    assert_eq!(run.state.as_str(), "SUCCESS", "{run:?}");
    assert_eq!(run.trigger_kind, "automated");
    assert_eq!(run.application, ".flow.deploy_flow");
    let (_, errors) = s.get("/api/v1/flows/deploy_flow/errors").await;
    assert_eq!(errors[0]["message"], "a2e7da86cc392417b0d9f605b28038aae80b002f", "{errors}");
}
