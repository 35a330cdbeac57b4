//! Stacks in the store: every test here runs against SQLite and PostgreSQL.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use junction_core::clock::ManualClock;
use junction_core::stack::{CallOutcome, StackEnv, DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT_SECONDS};
use junction_store::{CallFilter, Location, NewStackCall, NewStackVersion, Sealer, StackSettings, Store, StoreError};
use serde_json::{json, Value};

struct Harness {
    store: Store,
    clock: Arc<ManualClock>,
    location: Location,
    dir: tempfile::TempDir,
    _pg: Option<junction_testkit::PgSchema>,
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::open(Location::in_data_dir(dir.path()), dir, None).await
    }

    async fn postgres() -> Harness {
        let pg = junction_testkit::postgres().await;
        Harness::open(Location::Postgres(pg.url.clone()), tempfile::tempdir().unwrap(), Some(pg)).await
    }

    async fn open(location: Location, dir: tempfile::TempDir, pg: Option<junction_testkit::PgSchema>) -> Harness {
        let clock = Arc::new(ManualClock::new(Timestamp::from_second(1_800_000_000).unwrap()));
        let store = Store::open(&location, Sealer::from_key([7; 32]), clock.clone()).await.expect("store opens");
        Harness { store, clock, location, dir, _pg: pg }
    }

    /// Asserts no table (SQLite: no database file) holds any of `needles`
    /// in clear, after checking (PostgreSQL) that `present` is found, so the
    /// scan cannot pass on rows it did not read.
    async fn assert_nowhere(&self, present: &str, needles: &[&str]) {
        match &self.location {
            Location::Sqlite(_) => junction_testkit::assert_not_in_files(self.dir.path(), "", needles),
            Location::Postgres(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
                     AND table_type = 'BASE TABLE'",
                )
                .fetch_all(&pool)
                .await
                .unwrap();
                assert!(tables.iter().any(|t| t == "stacks") && tables.iter().any(|t| t == "secrets"), "{tables:?}");
                let hex = |s: &str| -> String { s.bytes().map(|b| format!("{b:02x}")).collect() };
                let mut seen = false;
                for table in tables {
                    let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT CAST(t AS TEXT) FROM \"{table}\" t"))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                    for row in rows {
                        // bytea columns show as hex.
                        seen |= row.contains(present) || row.contains(&hex(present));
                        for needle in needles {
                            assert!(
                                !row.contains(needle) && !row.contains(&hex(needle)),
                                "{needle:?} is in table {table}"
                            );
                        }
                    }
                }
                assert!(seen, "{present:?} was found by the scan");
                pool.close().await;
            }
        }
    }
}

macro_rules! stack_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(&super::Harness::sqlite().await).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(&super::Harness::postgres().await).await } )*
        }
    };
}

stack_suite!(
    tokens_versions_rotation_and_deletion,
    settings_seal_encrypted_env_and_keep_it_on_none,
    calls_are_recorded_filtered_and_paged,
    concurrent_uploads_of_a_new_stack_make_one_token,
);

fn diy() -> Value {
    json!({"diy": "index.js"})
}

fn functions() -> Value {
    json!({"index.js": {"hooks": ["preSavePage"]}})
}

async fn put(
    store: &Store,
    name: &str,
    config: &Value,
    archive: &[u8],
    settings: &StackSettings,
) -> Result<(junction_core::stack::StackVersion, Option<junction_core::secret::SecretString>), StoreError> {
    let f = functions();
    store.put_stack_version(&NewStackVersion { name, config, format: "js", archive, functions: &f }, settings).await
}

async fn tokens_versions_rotation_and_deletion(h: &Harness) {
    let s = &h.store;
    let none = StackSettings::default();
    let (v1, token) = put(s, "hooks", &diy(), b"exports.preSavePage = o => o.data;", &none).await.unwrap();
    let token = token.expect("a new stack gets its token");
    assert!(token.expose().starts_with("jst_") && token.expose().len() == 4 + 43, "{}", token.expose());
    assert_eq!((v1.version, v1.format.as_str(), v1.size), (1, "js", 34));
    assert_eq!(v1.config, diy());
    assert_eq!(v1.functions, functions());

    let stack = s.stack_for_call("hooks", token.expose()).await.unwrap().expect("its token is accepted");
    assert_eq!((stack.name.as_str(), stack.version, stack.sha256.as_str()), ("hooks", 1, v1.sha256.as_str()));
    assert_eq!((stack.timeout_seconds, stack.max_concurrency), (DEFAULT_TIMEOUT_SECONDS, DEFAULT_MAX_CONCURRENCY));
    assert!(stack.env.is_empty());
    assert_eq!(s.get_stack("hooks").await.unwrap(), Some(stack.clone()));
    assert_eq!(s.stack_for_call("hooks", "jst_wrong").await.unwrap(), None, "a wrong token");
    assert_eq!(s.stack_for_call("other", token.expose()).await.unwrap(), None, "an unknown stack, alike");
    assert_eq!(s.stack_for_call("hooks", "").await.unwrap(), None);

    // An identical upload creates nothing and returns no token.
    h.clock.advance(SignedDuration::from_secs(5));
    let (again, t) = put(s, "hooks", &diy(), b"exports.preSavePage = o => o.data;", &none).await.unwrap();
    assert!(t.is_none());
    assert_eq!(again, v1);
    assert_eq!(s.stack_versions("hooks").await.unwrap().len(), 1);
    assert_eq!(s.get_stack("hooks").await.unwrap().unwrap().updated_at, stack.updated_at);

    // A changed upload is version 2; the token keeps working.
    let (v2, t) = put(s, "hooks", &diy(), b"exports.preSavePage = o => [];", &none).await.unwrap();
    assert!(t.is_none());
    assert_eq!(v2.version, 2);
    assert_ne!(v2.sha256, v1.sha256);
    let now = s.stack_for_call("hooks", token.expose()).await.unwrap().unwrap();
    assert_eq!(now.version, 2);
    assert_eq!(now.created_at, stack.created_at);
    assert!(now.updated_at > stack.updated_at);
    let versions: Vec<i64> = s.stack_versions("hooks").await.unwrap().iter().map(|v| v.version).collect();
    assert_eq!(versions, [2, 1], "newest first");
    assert_eq!(
        s.stack_archive("hooks", 1).await.unwrap(),
        Some(("js".to_string(), b"exports.preSavePage = o => o.data;".to_vec()))
    );
    assert_eq!(s.stack_archive("hooks", 9).await.unwrap(), None);

    // Rotation: the old token is refused, the new one accepted.
    h.clock.advance(SignedDuration::from_secs(5));
    let rotated = s.rotate_stack_token("hooks").await.unwrap().expect("the stack exists");
    assert_ne!(rotated.expose(), token.expose());
    assert_eq!(s.stack_for_call("hooks", token.expose()).await.unwrap(), None);
    let after = s.stack_for_call("hooks", rotated.expose()).await.unwrap().unwrap();
    assert!(after.token_created_at > now.token_created_at);
    assert!(s.rotate_stack_token("nope").await.unwrap().is_none());

    // Listing, by name.
    let (_, other) = put(s, "another", &json!({"connectors": {"c1": "a.js"}}), b"x", &none).await.unwrap();
    assert!(other.is_some());
    let names: Vec<String> = s.list_stacks().await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["another", "hooks"]);

    // Deletion: the token stops working; the versions stay; a re-created
    // stack continues the numbering with a new token.
    assert!(s.delete_stack("hooks").await.unwrap());
    assert!(!s.delete_stack("hooks").await.unwrap());
    assert_eq!(s.get_stack("hooks").await.unwrap(), None);
    assert_eq!(s.stack_for_call("hooks", rotated.expose()).await.unwrap(), None);
    assert_eq!(s.stack_versions("hooks").await.unwrap().len(), 2);
    let (v3, fresh) = put(s, "hooks", &diy(), b"exports.preSavePage = o => [];", &none).await.unwrap();
    assert_eq!(v3.version, 3, "identical to v2, but the stack was deleted: a new version");
    let fresh = fresh.expect("a re-created stack gets a new token");
    assert_ne!(fresh.expose(), rotated.expose());
    assert_eq!(s.stack_for_call("hooks", rotated.expose()).await.unwrap(), None);
    assert_eq!(s.stack_for_call("hooks", fresh.expose()).await.unwrap().unwrap().version, 3);

    // Same bytes, another config: a new version.
    let connectors = json!({"connectors": {"c1": "index.js"}});
    let (v4, _) = put(s, "hooks", &connectors, b"exports.preSavePage = o => [];", &none).await.unwrap();
    assert_eq!(v4.version, 4);
    assert_eq!(s.get_stack("hooks").await.unwrap().unwrap().config, connectors);

    h.assert_nowhere("exports.preSavePage = o => []", &[token.expose(), rotated.expose(), fresh.expose()]).await;
}

fn env(name: &str, value: Option<&str>, encrypted: bool) -> StackEnv {
    StackEnv { name: name.into(), value: value.map(str::to_string), encrypted }
}

fn env_settings(entries: Vec<StackEnv>) -> StackSettings {
    StackSettings { env: Some(entries), ..Default::default() }
}

async fn secrets_of(s: &Store, name: &str) -> Vec<(String, String)> {
    s.stack_env_secrets(name).await.unwrap().into_iter().map(|(n, v)| (n, v.expose().to_string())).collect()
}

async fn settings_seal_encrypted_env_and_keep_it_on_none(h: &Harness) {
    let s = &h.store;
    const SECRET: &str = "CLEAR-STACK-ENV-SECRET-1";
    const OTHER: &str = "CLEAR-STACK-ENV-SECRET-2";
    let settings = StackSettings {
        timeout_seconds: Some(60),
        max_concurrency: Some(2),
        env: Some(vec![env("REGION", Some("eu"), false), env("API_KEY", Some(SECRET), true)]),
    };
    let (_, token) = put(s, "envy", &diy(), b"module.exports = {};", &settings).await.unwrap();
    let token = token.unwrap();
    let stack = s.get_stack("envy").await.unwrap().unwrap();
    assert_eq!((stack.timeout_seconds, stack.max_concurrency), (60, 2));
    assert_eq!(stack.env, [env("REGION", Some("eu"), false), env("API_KEY", None, true)]);
    assert_eq!(s.stack_for_call("envy", token.expose()).await.unwrap().unwrap(), stack);
    assert_eq!(secrets_of(s, "envy").await, [("API_KEY".to_string(), SECRET.to_string())]);

    // Re-sent without its value: kept. Order follows the list.
    h.clock.advance(SignedDuration::from_secs(1));
    let kept = s
        .update_stack_settings(
            "envy",
            &env_settings(vec![
                env("API_KEY", None, true),
                env("REGION", Some("PLAIN-REGION-VALUE"), false),
                env("B", Some(OTHER), true),
            ]),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.env,
        [env("API_KEY", None, true), env("REGION", Some("PLAIN-REGION-VALUE"), false), env("B", None, true)]
    );
    assert_eq!((kept.timeout_seconds, kept.max_concurrency), (60, 2), "settings not given are kept");
    assert!(kept.updated_at > stack.updated_at);
    assert_eq!(
        secrets_of(s, "envy").await,
        [("API_KEY".to_string(), SECRET.to_string()), ("B".to_string(), OTHER.to_string())]
    );

    // Keeping a value never set is refused, naming the entry; nothing changes.
    let err = s
        .update_stack_settings("envy", &env_settings(vec![env("API_KEY", None, true), env("NEW", None, true)]))
        .await
        .unwrap_err();
    let StoreError::Invalid(invalid) = err else { panic!("{err:?}") };
    let got: Vec<_> = invalid.0.iter().map(|v| (v.field.as_str(), v.rule.as_str())).collect();
    assert_eq!(got, [("env[1].value", "value_required")]);
    assert_eq!(s.get_stack("envy").await.unwrap().unwrap(), kept);
    assert_eq!(secrets_of(s, "envy").await.len(), 2);
    // Also on a new stack, and the upload is not stored.
    let err = put(s, "fresh", &diy(), b"x", &env_settings(vec![env("K", None, true)])).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid(i) if i.0[0].field == "env[0].value"), "{err:?}");
    assert_eq!(s.get_stack("fresh").await.unwrap(), None);
    assert!(s.stack_versions("fresh").await.unwrap().is_empty());

    // Settings given with an identical upload apply.
    let (v, t) = put(
        s,
        "envy",
        &diy(),
        b"module.exports = {};",
        &StackSettings { timeout_seconds: Some(90), ..Default::default() },
    )
    .await
    .unwrap();
    assert_eq!((v.version, t.is_none()), (1, true));
    assert_eq!(s.get_stack("envy").await.unwrap().unwrap().timeout_seconds, 90);

    h.assert_nowhere("PLAIN-REGION-VALUE", &[SECRET, OTHER]).await;

    // An entry dropped from the list is removed from the sealed values.
    let dropped = s.update_stack_settings("envy", &env_settings(vec![env("B", None, true)])).await.unwrap().unwrap();
    assert_eq!(dropped.env, [env("B", None, true)]);
    assert_eq!(secrets_of(s, "envy").await, [("B".to_string(), OTHER.to_string())]);
    let cleared = s.update_stack_settings("envy", &env_settings(vec![])).await.unwrap().unwrap();
    assert!(cleared.env.is_empty());
    assert!(secrets_of(s, "envy").await.is_empty());

    // Deleting a stack removes its sealed env; re-creating starts empty.
    s.update_stack_settings("envy", &env_settings(vec![env("B", Some(OTHER), true)])).await.unwrap();
    assert!(s.delete_stack("envy").await.unwrap());
    assert!(secrets_of(s, "envy").await.is_empty());
    let (_, _) = put(s, "envy", &diy(), b"module.exports = {};", &StackSettings::default()).await.unwrap();
    let back = s.get_stack("envy").await.unwrap().unwrap();
    assert!(back.env.is_empty());
    assert_eq!((back.timeout_seconds, back.max_concurrency), (DEFAULT_TIMEOUT_SECONDS, DEFAULT_MAX_CONCURRENCY));
    assert_eq!(s.update_stack_settings("nope", &StackSettings::default()).await.unwrap(), None);
}

fn call(stack: &str, i: i64, function: &str, kind: Option<&str>, outcome: CallOutcome) -> NewStackCall {
    NewStackCall {
        stack: stack.into(),
        version: 1,
        started_at_ms: 1_800_000_000_000 + i * 1000,
        duration_ms: 10 + i,
        function: function.into(),
        kind: kind.map(str::to_string),
        target: Some("diy".into()),
        integration_id: Some(format!("int{i}")),
        flow_id: None,
        trace_id: Some(format!("trace{i}")),
        outcome,
        error_code: (outcome != CallOutcome::Succeeded).then(|| "boom".to_string()),
        response_size: if outcome == CallOutcome::Succeeded { 100 + i } else { 0 },
        log: format!("log of call {i}\n"),
    }
}

async fn calls_are_recorded_filtered_and_paged(h: &Harness) {
    let s = &h.store;
    s.insert_stack_calls(&[]).await.unwrap();
    // 0..6 on "calls", one on "elsewhere".
    let batch = vec![
        call("calls", 0, "preSavePage", Some("hook"), CallOutcome::Succeeded),
        call("calls", 1, "preSavePage", Some("hook"), CallOutcome::Failed),
        call("calls", 2, "wrap", Some("wrapper"), CallOutcome::Succeeded),
        call("elsewhere", 3, "preSavePage", Some("hook"), CallOutcome::Succeeded),
        call("calls", 4, "top", None, CallOutcome::TimedOut),
        call("calls", 5, "preSavePage", Some("hook"), CallOutcome::Succeeded),
    ];
    s.insert_stack_calls(&batch).await.unwrap();
    s.insert_stack_calls(&[call("calls", 6, "preSavePage", Some("hook"), CallOutcome::Succeeded)]).await.unwrap();

    let all = s.list_stack_calls("calls", &CallFilter::default()).await.unwrap();
    let seq = |calls: &[junction_core::stack::StackCall]| -> Vec<String> {
        calls.iter().map(|c| c.integration_id.clone().unwrap()).collect()
    };
    assert_eq!(seq(&all), ["int6", "int5", "int4", "int2", "int1", "int0"], "newest first, this stack only");
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert!(all.iter().all(|c| c.log.is_none()), "listings leave the log out");
    let c4 = &all[2];
    assert_eq!(
        (c4.function.as_str(), c4.kind.as_deref(), c4.outcome, c4.error_code.as_deref()),
        ("top", None, CallOutcome::TimedOut, Some("boom"))
    );
    assert_eq!(c4.started_at, Timestamp::from_millisecond(1_800_000_004_000).unwrap());
    assert_eq!((c4.duration_ms, c4.response_size, c4.version, c4.flow_id.as_deref()), (14, 0, 1, None));

    let by = |f: CallFilter| async move { seq(&s.list_stack_calls("calls", &f).await.unwrap()) };
    assert_eq!(
        by(CallFilter { function: Some("preSavePage".into()), ..Default::default() }).await,
        ["int6", "int5", "int1", "int0"]
    );
    assert_eq!(by(CallFilter { kind: Some("wrapper".into()), ..Default::default() }).await, ["int2"]);
    assert_eq!(by(CallFilter { outcome: Some(CallOutcome::Failed), ..Default::default() }).await, ["int1"]);
    assert_eq!(
        by(CallFilter { since_ms: Some(1_800_000_004_000), ..Default::default() }).await,
        ["int6", "int5", "int4"]
    );
    assert_eq!(
        by(CallFilter {
            function: Some("preSavePage".into()),
            kind: Some("hook".into()),
            outcome: Some(CallOutcome::Succeeded),
            since_ms: Some(1_800_000_000_000),
            ..Default::default()
        })
        .await,
        ["int6", "int5", "int0"]
    );

    // The cursor: pages of two.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .list_stack_calls("calls", &CallFilter { before_id: before, limit: 2, ..Default::default() })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        before = Some(page.last().unwrap().id);
        pages.push(seq(&page));
    }
    assert_eq!(pages, [vec!["int6", "int5"], vec!["int4", "int2"], vec!["int1", "int0"]]);

    // One call, with its log; not through another stack's name.
    let got = s.get_stack_call("calls", c4.id).await.unwrap().unwrap();
    assert_eq!(got.log.as_deref(), Some("log of call 4\n"));
    assert_eq!(StackCallWithoutLog(&got), StackCallWithoutLog(c4));
    assert_eq!(s.get_stack_call("elsewhere", c4.id).await.unwrap(), None);
    assert_eq!(s.get_stack_call("calls", 999_999).await.unwrap(), None);

    // A batch larger than one statement's rows; the limit's bounds.
    let many: Vec<NewStackCall> =
        (0..1_234).map(|i| call("bulk", i, "f", Some("hook"), CallOutcome::Succeeded)).collect();
    s.insert_stack_calls(&many).await.unwrap();
    assert_eq!(s.list_stack_calls("bulk", &CallFilter::default()).await.unwrap().len(), 50);
    let most = s.list_stack_calls("bulk", &CallFilter { limit: 10_000, ..Default::default() }).await.unwrap();
    assert_eq!(most.len(), 500);
    assert_eq!(most[0].integration_id.as_deref(), Some("int1233"));
}

/// A call compared without its log.
#[derive(Debug)]
struct StackCallWithoutLog<'a>(&'a junction_core::stack::StackCall);

impl PartialEq for StackCallWithoutLog<'_> {
    fn eq(&self, other: &Self) -> bool {
        junction_core::stack::StackCall { log: None, ..self.0.clone() }
            == junction_core::stack::StackCall { log: None, ..other.0.clone() }
    }
}

async fn concurrent_uploads_of_a_new_stack_make_one_token(h: &Harness) {
    let uploads = (0..6).map(|i| {
        let store = h.store.clone();
        tokio::spawn(async move {
            let archive = format!("module.exports = {{ n: {i} }};");
            put(&store, "race", &diy(), archive.as_bytes(), &StackSettings::default()).await
        })
    });
    let mut versions = Vec::new();
    let mut tokens = Vec::new();
    for u in uploads.collect::<Vec<_>>() {
        let (v, t) = u.await.unwrap().expect("every upload lands");
        versions.push(v.version);
        tokens.extend(t);
    }
    versions.sort();
    assert_eq!(versions, (1..=6).collect::<Vec<_>>());
    assert_eq!(tokens.len(), 1, "exactly one upload created the stack");
    assert!(h.store.stack_for_call("race", tokens[0].expose()).await.unwrap().is_some());
}
