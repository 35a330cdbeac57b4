//! The store suite: every test here runs against SQLite and PostgreSQL.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use junction_core::application::Application;
use junction_core::clock::ManualClock;
use junction_core::configuration::Configuration;
use junction_core::role::Role;
use junction_core::step::Language;
use junction_core::Clock;
use junction_store::{Bootstrap, Location, NewStepVersion, Sealer, Store, StoreError};
use serde_json::json;

struct Harness {
    store: Store,
    clock: Arc<ManualClock>,
    location: Location,
    _dir: tempfile::TempDir,
    _pg: Option<junction_testkit::PgSchema>,
}

const KEY: [u8; 32] = [42; 32];

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::in_data_dir(dir.path());
        Harness::open(location, dir, None).await
    }

    async fn postgres() -> Harness {
        let pg = junction_testkit::postgres().await;
        let location = Location::Postgres(pg.url.clone());
        Harness::open(location, tempfile::tempdir().unwrap(), Some(pg)).await
    }

    async fn open(location: Location, dir: tempfile::TempDir, pg: Option<junction_testkit::PgSchema>) -> Harness {
        let clock = Arc::new(ManualClock::new(Timestamp::from_second(1_800_000_000).unwrap()));
        let store = Store::open(&location, Sealer::from_key(KEY), clock.clone()).await.expect("store opens");
        Harness { store, clock, location, _dir: dir, _pg: pg }
    }

    async fn reopen(&self, key: [u8; 32]) -> Result<Store, StoreError> {
        Store::open(&self.location, Sealer::from_key(key), self.clock.clone()).await
    }
}

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(&super::Harness::sqlite().await).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(&super::Harness::postgres().await).await } )*
        }
    };
}

store_suite!(
    first_start_creates_one_admin_token,
    given_admin_token_is_used_and_checked,
    tokens_are_created_listed_authenticated_and_revoked,
    last_admin_token_cannot_be_revoked,
    step_uploads_make_versions_and_identical_uploads_do_not,
    deleted_steps_keep_their_versions_and_numbering,
    applications_get_revisions_and_keep_their_document,
    encrypted_app_variables_are_sealed_and_kept_on_null,
    encrypted_values_never_turn_plain_and_the_refusal_changes_nothing,
    configurations_are_replaced_and_deleted_with_their_secrets,
    reopening_applies_no_migration_twice_and_checks_the_key,
    concurrent_uploads_of_one_name_all_land_with_distinct_versions,
    concurrent_admins_cannot_revoke_each_other_to_zero,
    an_encrypted_entry_needs_a_value_the_first_time,
    a_variable_that_becomes_encrypted_is_scrubbed_from_older_revisions,
    a_variable_that_becomes_encrypted_is_scrubbed_from_runs_schedules_and_triggers,
    update_configuration_is_a_read_modify_write,
    step_versions_keep_what_introspection_found,
);

async fn step_versions_keep_what_introspection_found(h: &Harness) {
    let params = vec![junction_core::step::StepParameter {
        name: "method".into(),
        description: Some("HTTP method".into()),
        sample_value: Some(json!("GET")),
        default_value: None,
        required: true,
        kind: Some("string".into()),
    }];
    let stored = h
        .store
        .put_step(&NewStepVersion {
            name: "QueryREST",
            language: Language::Python,
            source: "class QueryREST: pass",
            description: Some("REST calls"),
            parameters: &params,
            friendly_name: Some("Query REST"),
            declared_version: Some("1.0.0"),
        })
        .await
        .unwrap();
    let got = h.store.get_step("QueryREST").await.unwrap().unwrap();
    assert_eq!(got, stored);
    assert_eq!(got.parameters, params);
    assert_eq!((got.friendly_name.as_deref(), got.declared_version.as_deref()), (Some("Query REST"), Some("1.0.0")));
}

async fn concurrent_uploads_of_one_name_all_land_with_distinct_versions(h: &Harness) {
    let sources: Vec<String> = (0..8).map(|i| format!("module.exports = {{ n: {i} }};")).collect();
    let uploads = sources.into_iter().map(|src| {
        let store = h.store.clone();
        async move { store.put_step(&step("busy", &src)).await }
    });
    let results = futures_join_all(uploads).await;
    let mut versions: Vec<i64> = results.into_iter().map(|r| r.expect("every upload lands").version).collect();
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());

    let apps = (0..6).map(|i| {
        let store = h.store.clone();
        async move {
            store
                .put_application(&app(json!({"name": "busy", "description": format!("d{i}"),
                "steps": [{"name": "s", "file": "S"}]})))
                .await
        }
    });
    let mut revisions: Vec<i64> = futures_join_all(apps).await.into_iter().map(|r| r.unwrap().revision).collect();
    revisions.sort();
    revisions.dedup();
    assert_eq!(revisions.len(), 6, "six changing uploads make six revisions");
}

/// Runs futures concurrently on the test's runtime.
async fn futures_join_all<F, T>(futs: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task completes"));
    }
    out
}

async fn concurrent_admins_cannot_revoke_each_other_to_zero(h: &Harness) {
    let (a, _) = h.store.create_token("a", Role::Admin).await.unwrap();
    let (b, _) = h.store.create_token("b", Role::Admin).await.unwrap();
    let (s1, s2) = (h.store.clone(), h.store.clone());
    let results = futures_join_all([
        Box::pin(async move { s1.revoke_token(&a.id).await })
            as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>,
        Box::pin(async move { s2.revoke_token(&b.id).await }),
    ])
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert_eq!(h.store.list_tokens().await.unwrap().len(), 1);
}

async fn an_encrypted_entry_needs_a_value_the_first_time(h: &Harness) {
    let up = Configuration::parse(json!({"name": "c", "configuration_data": [
        {"name": "pw", "value": null, "encrypted": true}]}))
    .unwrap();
    let err = h.store.put_configuration(&up).await.unwrap_err();
    let StoreError::Invalid(inv) = err else { panic!("{err}") };
    assert_eq!((inv.0[0].field.as_str(), inv.0[0].rule.as_str()), ("configuration_data[0].value", "value_required"));
    assert!(h.store.get_configuration("c").await.unwrap().is_none());
}

async fn a_variable_that_becomes_encrypted_is_scrubbed_from_older_revisions(h: &Harness) {
    let doc = |var: serde_json::Value| {
        app(json!({"name": "a", "steps": [{"name": "s", "file": "S"}], "app_variables": [var]}))
    };
    h.store
        .put_application(&doc(json!({"name": "key", "value": "WAS-PLAIN-VALUE", "default_value": "WAS-PLAIN-DEFAULT"})))
        .await
        .unwrap();
    h.store.put_application(&doc(json!({"name": "other", "value": "x"}))).await.unwrap();
    let r3 =
        h.store.put_application(&doc(json!({"name": "key", "value": "now-secret", "encrypted": true}))).await.unwrap();
    assert_eq!(r3.revision, 3);
    let old = h.store.get_application_revision("a", 1).await.unwrap().unwrap();
    let text = serde_json::to_string(old.document()).unwrap();
    assert!(!text.contains("WAS-PLAIN"), "{text}");
    let untouched = h.store.get_application_revision("a", 2).await.unwrap().unwrap();
    assert_eq!(untouched.document()["app_variables"][0]["value"], json!("x"));
}

/// The clear values the test below gives a variable before it is made
/// encrypted.
const WAS_CLEAR: [&str; 4] = ["RUN-WAS-CLEAR-51", "SCHEDULE-WAS-CLEAR-52", "TRIGGER-WAS-CLEAR-53", "APP-WAS-CLEAR-54"];

async fn a_variable_that_becomes_encrypted_is_scrubbed_from_runs_schedules_and_triggers(h: &Harness) {
    let doc = |app_name: &str, pw: serde_json::Value| {
        app(json!({"name": app_name, "steps": [{"name": "s", "file": "S"}],
                   "app_variables": [pw, {"name": "region", "value": "eu"}]}))
    };
    h.store.put_application(&doc("a", json!({"name": "pw", "value": WAS_CLEAR[3]}))).await.unwrap();
    h.store.put_application(&doc("other", json!({"name": "pw", "value": "other-app-value"}))).await.unwrap();
    let run = |id: &str, application: &str, params: serde_json::Value| junction_store::NewRun {
        id: id.into(),
        application: application.into(),
        app_revision: 1,
        queue: "default".into(),
        trigger_kind: "manual".into(),
        triggered_by: None,
        configuration: None,
        params,
        secret_params: vec![],
        context: None,
        log_level: 20,
        idempotency_key: None,
        tasks: vec![junction_store::NewTask {
            id: format!("{id}-s"),
            step_name: "s".into(),
            step_index: 0,
            step_file: "S".into(),
            step_version: Some(1),
            waiting_on: 0,
        }],
        max_active: None,
    };
    h.store.create_run(&run("r-old", "a", json!({"pw": WAS_CLEAR[0], "region": "eu"}))).await.unwrap();
    h.store.create_run(&run("r-without", "a", json!({"region": "us"}))).await.unwrap();
    h.store.create_run(&run("r-other", "other", json!({"pw": "other-app-value"}))).await.unwrap();
    let schedule = |id: &str, application: &str, params: serde_json::Value| junction_store::PutSchedule {
        id: id.into(),
        application: application.into(),
        entry_id: None,
        kind: "cron".into(),
        info: json!({"cron": "0 * * * *"}),
        timezone: "UTC".into(),
        params,
        enabled: true,
        next_fire_at: Some(h.clock.now()),
        anchor: h.clock.now(),
    };
    h.store.put_schedule(&schedule("sch", "a", json!({"pw": WAS_CLEAR[1], "region": "eu"}))).await.unwrap();
    h.store.put_schedule(&schedule("sch-other", "other", json!({"pw": "other-app-value"}))).await.unwrap();
    let trigger = |name: &str, application: &str, arguments: serde_json::Value| junction_core::trigger::TriggerSpec {
        name: name.into(),
        application: application.into(),
        event: "cicd_job".into(),
        company_id: None,
        filter: serde_json::Map::new(),
        arguments: arguments.as_object().unwrap().clone(),
        enabled: true,
    };
    h.store.put_trigger(&trigger("trg", "a", json!({"pw": WAS_CLEAR[2], "region": "eu"}))).await.unwrap();
    h.store.put_trigger(&trigger("trg-other", "other", json!({"pw": "other-app-value"}))).await.unwrap();
    let schedule_before = h.store.get_schedule("sch").await.unwrap().unwrap();

    h.store
        .put_application(&doc("a", json!({"name": "pw", "value": "now-a-secret", "encrypted": true})))
        .await
        .unwrap();

    // The old run: the clear value is gone from its params, sealed with the
    // run instead (so it shows masked and a replay runs with it).
    let old = h.store.get_run("r-old").await.unwrap().unwrap();
    assert_eq!(old.params, json!({"region": "eu"}));
    let sealed = h.store.run_secret_params("r-old").await.unwrap();
    assert_eq!(sealed.len(), 1);
    assert_eq!((sealed[0].0.as_str(), sealed[0].1.expose()), ("pw", WAS_CLEAR[0]));
    assert_eq!(h.store.get_run("r-without").await.unwrap().unwrap().params, json!({"region": "us"}));
    assert!(h.store.run_secret_params("r-without").await.unwrap().is_empty());
    // Schedules and triggers may not name an encrypted variable: the key is
    // removed (their runs take the application's sealed value).
    let sch = h.store.get_schedule("sch").await.unwrap().unwrap();
    assert_eq!(sch.params, json!({"region": "eu"}));
    assert!(sch.updated_at > schedule_before.updated_at, "a firing prepared before the change is stale");
    assert_eq!(sch.next_fire_at, schedule_before.next_fire_at, "the next tick is kept");
    let trg = h.store.get_trigger("trg").await.unwrap().unwrap();
    assert_eq!(serde_json::Value::Object(trg.spec.arguments), json!({"region": "eu"}));
    // Another application's rows are left alone.
    assert_eq!(h.store.get_run("r-other").await.unwrap().unwrap().params, json!({"pw": "other-app-value"}));
    assert_eq!(h.store.get_schedule("sch-other").await.unwrap().unwrap().params, json!({"pw": "other-app-value"}));
    let other = h.store.get_trigger("trg-other").await.unwrap().unwrap();
    assert_eq!(serde_json::Value::Object(other.spec.arguments), json!({"pw": "other-app-value"}));

    // Read while the store is open, as on a running server: the WAL's older
    // page images are gone too.
    if let Location::Sqlite(_) = &h.location {
        junction_testkit::assert_not_in_files(h._dir.path(), "", &WAS_CLEAR);
    }
}

async fn update_configuration_is_a_read_modify_write(h: &Harness) {
    let add = |name: &'static str| {
        let store = h.store.clone();
        async move {
            store
                .update_configuration("shared", |current| {
                    let mut data: Vec<serde_json::Value> = current
                        .map(|c| c.document()["configuration_data"].as_array().cloned().unwrap_or_default())
                        .unwrap_or_default();
                    data.push(json!({"name": name, "value": name}));
                    Configuration::parse(json!({"name": "shared", "configuration_data": data}))
                })
                .await
        }
    };
    let results = futures_join_all(["a", "b", "c", "d", "e"].map(add)).await;
    assert!(results.iter().all(|r| r.is_ok()));
    let stored = h.store.get_configuration("shared").await.unwrap().unwrap();
    assert_eq!(stored.configuration.entries().len(), 5, "no concurrent edit was lost");
}

async fn first_start_creates_one_admin_token(h: &Harness) {
    let Bootstrap::Generated(secret) = h.store.bootstrap_admin(None).await.unwrap() else {
        panic!("first start generates a token");
    };
    assert!(secret.expose().starts_with("jct_"));
    assert!(secret.expose().len() >= 40);
    assert!(matches!(h.store.bootstrap_admin(None).await.unwrap(), Bootstrap::AlreadyDone));
    assert!(matches!(h.store.bootstrap_admin(Some("another-token-1234567")).await.unwrap(), Bootstrap::AlreadyDone));
    let tokens = h.store.list_tokens().await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].role, Role::Admin);
    let who = h.store.authenticate(secret.expose()).await.unwrap().expect("generated token works");
    assert_eq!(who.id, tokens[0].id);
}

async fn given_admin_token_is_used_and_checked(h: &Harness) {
    let err = h.store.bootstrap_admin(Some("short")).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(matches!(h.store.bootstrap_admin(Some("my-admin-token-0123456789")).await.unwrap(), Bootstrap::Given));
    let who = h.store.authenticate("my-admin-token-0123456789").await.unwrap().unwrap();
    assert_eq!(who.role, Role::Admin);
    assert!(h.store.authenticate("my-admin-token-012345678").await.unwrap().is_none());
}

async fn tokens_are_created_listed_authenticated_and_revoked(h: &Harness) {
    let (info, secret) = h.store.create_token("ci bot", Role::Operator).await.unwrap();
    assert_eq!((info.name.as_str(), info.role), ("ci bot", Role::Operator));
    assert_eq!(info.last_used_at, None);
    h.clock.advance(SignedDuration::from_secs(5));
    let who = h.store.authenticate(secret.expose()).await.unwrap().unwrap();
    assert_eq!(who.id, info.id);
    let listed = h.store.list_tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(h.clock_now()));
    assert!(matches!(h.store.create_token(" ", Role::Viewer).await, Err(StoreError::Invalid(_))));
    h.store.revoke_token(&info.id).await.unwrap();
    assert!(h.store.authenticate(secret.expose()).await.unwrap().is_none());
    assert!(matches!(h.store.revoke_token(&info.id).await, Err(StoreError::NotFound(_))));
}

impl Harness {
    fn clock_now(&self) -> Timestamp {
        use junction_core::Clock;
        self.clock.now()
    }
}

async fn last_admin_token_cannot_be_revoked(h: &Harness) {
    let (a, _) = h.store.create_token("a", Role::Admin).await.unwrap();
    let (b, _) = h.store.create_token("b", Role::Admin).await.unwrap();
    h.store.revoke_token(&a.id).await.unwrap();
    assert!(matches!(h.store.revoke_token(&b.id).await, Err(StoreError::Conflict(_))));
    assert_eq!(h.store.list_tokens().await.unwrap().len(), 1);
}

fn step<'a>(name: &'a str, source: &'a str) -> NewStepVersion<'a> {
    NewStepVersion {
        name,
        language: Language::Javascript,
        source,
        description: None,
        parameters: &[],
        friendly_name: None,
        declared_version: None,
    }
}

async fn step_uploads_make_versions_and_identical_uploads_do_not(h: &Harness) {
    let v1 = h.store.put_step(&step("sync", "module.exports = {run: async () => 'a'};")).await.unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.sha256.len(), 64);
    assert_eq!(v1.created_at, h.clock_now());
    h.clock.advance(SignedDuration::from_secs(60));
    let again = h.store.put_step(&step("sync", "module.exports = {run: async () => 'a'};")).await.unwrap();
    assert_eq!(again, v1, "identical upload is the same version");
    let v2 = h.store.put_step(&step("sync", "module.exports = {run: async () => 'b'};")).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_ne!(v2.sha256, v1.sha256);
    assert_eq!(h.store.get_step("sync").await.unwrap().unwrap(), v2);
    assert_eq!(h.store.get_step_version("sync", 1).await.unwrap().unwrap(), v1);
    let versions = h.store.list_step_versions("sync").await.unwrap().unwrap();
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);
    h.store.put_step(&step("another", "x")).await.unwrap();
    let list = h.store.list_steps().await.unwrap();
    assert_eq!(list.iter().map(|s| (s.name.as_str(), s.version)).collect::<Vec<_>>(), [("another", 1), ("sync", 2)]);
    assert_eq!(list[1].created_at, v1.created_at);
    assert_eq!(list[1].updated_at, v2.created_at);
}

async fn deleted_steps_keep_their_versions_and_numbering(h: &Harness) {
    h.store.put_step(&step("s", "1")).await.unwrap();
    h.store.put_step(&step("s", "2")).await.unwrap();
    h.store.delete_step("s").await.unwrap();
    assert!(h.store.get_step("s").await.unwrap().is_none());
    assert!(h.store.list_step_versions("s").await.unwrap().is_none());
    assert!(h.store.list_steps().await.unwrap().is_empty());
    assert_eq!(h.store.get_step_version("s", 2).await.unwrap().unwrap().data, "2");
    assert!(matches!(h.store.delete_step("s").await, Err(StoreError::NotFound(_))));
    assert_eq!(h.store.put_step(&step("s", "3")).await.unwrap().version, 3);
}

fn app(doc: serde_json::Value) -> junction_core::application::ApplicationUpload {
    Application::parse(doc).expect("valid application")
}

async fn applications_get_revisions_and_keep_their_document(h: &Harness) {
    let doc = json!({"name": "sync", "friendly_name": "Sync", "custom_key": {"kept": [1, 2]},
                     "steps": [{"name": "a b", "file": "S", "method": "GET", "output_to": ["c"]}, {"name": "c", "file": "T"}]});
    let r1 = h.store.put_application(&app(doc.clone())).await.unwrap();
    assert_eq!(r1.revision, 1);
    assert_eq!(serde_json::Value::Object(r1.application.document().clone()), doc);
    let same = h.store.put_application(&app(doc.clone())).await.unwrap();
    assert_eq!(same.revision, 1, "identical upload makes no revision");
    let mut changed = doc.clone();
    changed["description"] = json!("now described");
    h.clock.advance(SignedDuration::from_secs(1));
    let r2 = h.store.put_application(&app(changed)).await.unwrap();
    assert_eq!(r2.revision, 2);
    assert_eq!(r2.created_at, r1.created_at);
    assert!(r2.updated_at > r1.updated_at);
    assert_eq!(r2.application.description(), Some("now described"));
    let listed = h.store.list_applications().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revision, 2);
    h.store.delete_application("sync").await.unwrap();
    assert!(h.store.get_application("sync").await.unwrap().is_none());
    let old = h.store.get_application_revision("sync", 1).await.unwrap().expect("revision kept for runs");
    assert_eq!(old.description(), None);
    assert!(matches!(h.store.delete_application("sync").await, Err(StoreError::NotFound(_))));
    assert_eq!(h.store.put_application(&app(doc)).await.unwrap().revision, 3);
}

async fn encrypted_app_variables_are_sealed_and_kept_on_null(h: &Harness) {
    let with = |value: serde_json::Value| {
        app(json!({"name": "job", "steps": [{"name": "s", "file": "S"}],
                   "app_variables": [{"name": "token", "value": value, "encrypted": true}, {"name": "url", "value": "http://x"}]}))
    };
    let r1 = h.store.put_application(&with(json!("s3cr3t-app-token"))).await.unwrap();
    assert_eq!(r1.application.document()["app_variables"][0]["value"], json!(null));
    let secrets = h.store.application_secrets("job").await.unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!((secrets[0].0.as_str(), secrets[0].1.expose()), ("token", "s3cr3t-app-token"));
    let r2 = h.store.put_application(&with(json!(null))).await.unwrap();
    assert_eq!(r2.revision, 1, "sending the masked value back as null changes nothing");
    assert_eq!(h.store.application_secrets("job").await.unwrap()[0].1.expose(), "s3cr3t-app-token");
    let r3 = h.store.put_application(&with(json!("rotated"))).await.unwrap();
    assert_eq!(r3.revision, 2, "a new secret value is a new revision");
    assert_eq!(h.store.application_secrets("job").await.unwrap()[0].1.expose(), "rotated");
    h.store.delete_application("job").await.unwrap();
    assert!(h.store.application_secrets("job").await.unwrap().is_empty());
}

async fn encrypted_values_never_turn_plain_and_the_refusal_changes_nothing(h: &Harness) {
    let config = |encrypted: bool, value: &str| {
        Configuration::parse(json!({"name": "c", "configuration_data": [
            {"name": "user", "value": "u"}, {"name": "pw", "value": value, "encrypted": encrypted}]}))
        .unwrap()
    };
    h.store.put_configuration(&config(true, "pw-one")).await.unwrap();
    let err = h.store.put_configuration(&config(false, "pw-plain")).await.unwrap_err();
    let StoreError::Invalid(inv) = err else { panic!("expected a validation error, got {err}") };
    assert_eq!(inv.0[0].field, "configuration_data[1].encrypted");
    assert_eq!(inv.0[0].rule, "stays_encrypted");
    let stored = h.store.get_configuration("c").await.unwrap().unwrap();
    assert!(stored.configuration.entries()[1].encrypted);
    assert_eq!(h.store.configuration_secrets("c").await.unwrap()[0].1.expose(), "pw-one");

    let a = |encrypted: bool| {
        app(json!({"name": "a", "steps": [{"name": "s", "file": "S"}],
                   "app_variables": [{"name": "k", "value": "v-value", "encrypted": encrypted}]}))
    };
    h.store.put_application(&a(true)).await.unwrap();
    assert!(matches!(h.store.put_application(&a(false)).await, Err(StoreError::Invalid(_))));
    assert_eq!(h.store.get_application("a").await.unwrap().unwrap().revision, 1);
}

async fn configurations_are_replaced_and_deleted_with_their_secrets(h: &Harness) {
    let up = Configuration::parse(json!({"name": "em7", "friendly_name": "EM7", "configuration_data": [
        {"name": "host", "value": "10.0.0.1"}, {"name": "pw", "value": "em7-password", "encrypted": true},
        {"name": "old", "value": "gone-soon", "encrypted": true}]}))
    .unwrap();
    let r = h.store.put_configuration(&up).await.unwrap();
    assert_eq!(r.configuration.friendly_name(), Some("EM7"));
    assert_eq!(h.store.configuration_secrets("em7").await.unwrap().len(), 2);
    let up2 = Configuration::parse(json!({"name": "em7", "configuration_data": [
        {"name": "host", "value": "10.0.0.2"}, {"name": "pw", "value": null, "encrypted": true}]}))
    .unwrap();
    h.clock.advance(SignedDuration::from_secs(3));
    let r2 = h.store.put_configuration(&up2).await.unwrap();
    assert_eq!(r2.created_at, r.created_at);
    assert_eq!(r2.configuration.entries()[0].value, Some(json!("10.0.0.2")));
    let secrets = h.store.configuration_secrets("em7").await.unwrap();
    assert_eq!(secrets.len(), 1, "a removed encrypted entry loses its sealed value");
    assert_eq!((secrets[0].0.as_str(), secrets[0].1.expose()), ("pw", "em7-password"));
    assert_eq!(h.store.list_configurations().await.unwrap().len(), 1);
    h.store.delete_configuration("em7").await.unwrap();
    assert!(h.store.get_configuration("em7").await.unwrap().is_none());
    assert!(h.store.configuration_secrets("em7").await.unwrap().is_empty());
    assert!(matches!(h.store.delete_configuration("em7").await, Err(StoreError::NotFound(_))));
}

async fn reopening_applies_no_migration_twice_and_checks_the_key(h: &Harness) {
    h.store.put_step(&step("s", "1")).await.unwrap();
    let again = h.reopen(KEY).await.expect("reopens with the same key");
    assert_eq!(again.get_step("s").await.unwrap().unwrap().version, 1);
    let err = h.reopen([1; 32]).await.unwrap_err();
    assert!(err.to_string().contains("another secret key"), "{err}");
}

/// SQLite only: the database file (and its WAL) never holds a secret in
/// clear, nor a token.
#[tokio::test]
async fn sqlite_files_hold_no_clear_secret() {
    let h = Harness::sqlite().await;
    let Bootstrap::Generated(admin) = h.store.bootstrap_admin(None).await.unwrap() else { panic!() };
    let (_, token) = h.store.create_token("t", Role::Viewer).await.unwrap();
    let cfg = Configuration::parse(json!({"name": "c", "configuration_data": [
        {"name": "pw", "value": "PLAINTEXT-CONFIG-SECRET", "encrypted": true}]}))
    .unwrap();
    h.store.put_configuration(&cfg).await.unwrap();
    h.store
        .put_application(&app(json!({"name": "a", "steps": [{"name": "s", "file": "S"}],
            "app_variables": [{"name": "k", "value": "PLAINTEXT-APP-SECRET", "encrypted": true}]})))
        .await
        .unwrap();
    h.store.close().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(h._dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(bytes.len() > 10_000, "the database files were read");
    for needle in ["PLAINTEXT-CONFIG-SECRET", "PLAINTEXT-APP-SECRET", admin.expose(), token.expose()] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{needle} found in the database files");
    }
}
