//! Web UI sign-in through the real server: a session cookie (HttpOnly,
//! SameSite=Strict) opened with an API token or a user's password, CSRF
//! tokens on every change, sign-out, and sessions that end with their token.

mod common;

use common::{TestServer, ADMIN};
use junction_core::role::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Browser<'a> {
    s: &'a TestServer,
    cookie: String,
    csrf: String,
}

async fn sign_in(s: &TestServer, body: Value) -> Result<Browser<'_>, (StatusCode, Value)> {
    let resp = s.http.post(format!("{}/api/v1/session", s.base)).json(&body).send().await.unwrap();
    let status = resp.status();
    let set_cookie = resp.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_string());
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if status != StatusCode::OK {
        return Err((status, answer));
    }
    let set_cookie = set_cookie.expect("a session cookie");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    Ok(Browser { s, cookie, csrf: answer["csrf_token"].as_str().unwrap().to_string() })
}

impl Browser<'_> {
    async fn send(&self, method: Method, path: &str, csrf: bool, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.s.http.request(method, format!("{}{path}", self.s.base)).header("cookie", &self.cookie);
        if csrf {
            req = req.header("x-csrf-token", &self.csrf);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

#[tokio::test]
async fn a_token_session_reads_changes_with_csrf_and_signs_out() {
    let s = TestServer::sqlite().await;
    let b = sign_in(&s, json!({"token": ADMIN})).await.unwrap();
    let (status, me) = b.send(Method::GET, "/api/v1/session", false, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["role"], "admin");
    assert_eq!(b.send(Method::GET, "/api/v1/jobs", false, None).await.0, StatusCode::OK);
    // A change without the CSRF token is refused; with it, done.
    let settings = json!({"automated_jobs_enabled": true});
    let (status, body) = b.send(Method::PUT, "/api/v1/settings", false, Some(settings.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "csrf");
    let mut forged = Browser { s: &s, cookie: b.cookie.clone(), csrf: "forged".into() };
    assert_eq!(
        forged.send(Method::PUT, "/api/v1/settings", true, Some(settings.clone())).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(b.send(Method::PUT, "/api/v1/settings", true, Some(settings)).await.0, StatusCode::OK);
    // Sign out needs the CSRF token too; afterwards the cookie opens nothing.
    assert_eq!(b.send(Method::DELETE, "/api/v1/session", false, None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(b.send(Method::DELETE, "/api/v1/session", true, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(b.send(Method::GET, "/api/v1/jobs", false, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(b.send(Method::GET, "/api/v1/session", false, None).await.0, StatusCode::UNAUTHORIZED);
    forged.cookie = "junction_session=made-up".into();
    assert_eq!(forged.send(Method::GET, "/api/v1/jobs", false, None).await.0, StatusCode::UNAUTHORIZED);
    // The answers never carried the token.
    s.assert_never_sent(ADMIN);
}

#[tokio::test]
async fn users_sign_in_with_a_password_and_keep_their_role() {
    let s = TestServer::postgres().await;
    s.engine.store().put_user("alice", Role::Operator, "correct horse battery").await.unwrap();
    let (status, _) = sign_in(&s, json!({"user": "alice", "password": "wrong horse battery"})).await.err().unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = sign_in(&s, json!({"user": "bob", "password": "correct horse battery"})).await.err().unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = sign_in(&s, json!({"user": "alice"})).await.err().unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let b = sign_in(&s, json!({"user": "alice", "password": "correct horse battery"})).await.unwrap();
    let (_, me) = b.send(Method::GET, "/api/v1/session", false, None).await;
    assert_eq!(me["user"], "alice");
    assert_eq!(me["role"], "operator");
    // An operator may not change settings, even with the CSRF token.
    let (status, _) =
        b.send(Method::PUT, "/api/v1/settings", true, Some(json!({"automated_jobs_enabled": true}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(s.engine.store().put_user("carol", Role::Viewer, "short").await.is_err(), "8 characters at least");
}

#[tokio::test]
async fn a_session_ends_with_its_token_and_company_tokens_cannot_sign_in() {
    let s = TestServer::sqlite().await;
    let (status, t) = s.post("/api/v1/tokens", json!({"name": "ui", "role": "viewer"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let b = sign_in(&s, json!({"token": t["token"]})).await.unwrap();
    assert_eq!(b.send(Method::GET, "/api/v1/jobs", false, None).await.0, StatusCode::OK);
    let (status, _) = s.delete(&format!("/api/v1/tokens/{}", t["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(b.send(Method::GET, "/api/v1/jobs", false, None).await.0, StatusCode::UNAUTHORIZED);

    let (status, c) = s.post("/api/v1/companies", json!({"name": "acme"})).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let (status, pat) =
        s.post("/api/v1/tokens", json!({"name": "agent", "role": "operator", "company_id": c["id"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{pat}");
    let (status, _) = sign_in(&s, json!({"token": pat["token"]})).await.err().unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = sign_in(&s, json!({"token": "jct_nope"})).await.err().unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_ui_is_served_with_a_strict_content_security_policy() {
    let s = TestServer::sqlite().await;
    for (path, kind) in [("/", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")] {
        let resp = s.http.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let h = resp.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let body = resp.text().await.unwrap();
        assert!(!body.is_empty());
        if path == "/" {
            assert!(body.contains("/ui/app.js") && !body.contains("<script>"), "no inline script");
        }
    }
}
