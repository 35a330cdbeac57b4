//! Database exports and imports against the machine's PostgreSQL
//! (`JUNCTION_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`)
//! and MariaDB/MySQL (`JUNCTION_TEST_MYSQL_URL`, default
//! `mysql://root@127.0.0.1:3306/test`). Each test makes its own table and
//! drops it.

use std::time::Instant;

use junction_adapters::{AdapterError, DatabaseSource, Databases, Page};
use junction_core::flow::adapters::{
    parse_connection, parse_database_export, parse_database_import, Connection, DatabaseConnection, DatabaseKind,
};
use serde_json::{json, Value};
use sqlx::{Connection as _, Executor};

fn url(kind: DatabaseKind) -> String {
    match kind {
        DatabaseKind::Postgres => std::env::var("JUNCTION_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        DatabaseKind::MySql => {
            std::env::var("JUNCTION_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
        }
    }
}

/// The connection of the test server's URL, with `password` if given.
fn connection(kind: DatabaseKind, user: Option<&str>, password: Option<&str>) -> DatabaseConnection {
    let u = reqwest::Url::parse(&url(kind)).unwrap();
    let password = password.map(str::to_string).or_else(|| u.password().map(str::to_string));
    let mut c = json!({"type": kind.name(), "host": u.host_str().unwrap(), "port": u.port(),
                       "database": u.path().trim_start_matches('/'), "user": user.unwrap_or(u.username())});
    if let Some(p) = password {
        c["encrypted"] = json!({"password": p});
    }
    let Connection::Database(c) = parse_connection("c", &c).unwrap() else { panic!() };
    c
}

/// Runs setup statements on a fresh connection.
async fn run(kind: DatabaseKind, statements: &[String]) {
    match kind {
        DatabaseKind::Postgres => {
            let mut c = sqlx::PgConnection::connect(&url(kind)).await.unwrap();
            for s in statements {
                c.execute(s.as_str()).await.unwrap();
            }
        }
        DatabaseKind::MySql => {
            let mut c = sqlx::MySqlConnection::connect(&url(kind)).await.unwrap();
            for s in statements {
                c.execute(s.as_str()).await.unwrap();
            }
        }
    }
}

/// MariaDB's JSON is LONGTEXT (a JSON column reads as its text there; on
/// MySQL 8 and PostgreSQL as JSON): read text in `doc` as JSON.
fn json_doc(mut row: Value) -> Value {
    if let Some(Value::String(s)) = row.get("doc") {
        row["doc"] = serde_json::from_str(s).unwrap();
    }
    row
}

/// Rows of `sql` as JSON, read through a database export.
async fn select(kind: DatabaseKind, sql: &str) -> Vec<Value> {
    let export = parse_database_export("e", json!({"query": sql}).as_object().unwrap(), &[]).unwrap();
    let mut source = DatabaseSource::new(&connection(kind, None, None), &export, json!({}), 1000, None);
    let mut out = Vec::new();
    while let Some(page) = source.next_page().await.unwrap() {
        out.extend(page.records);
    }
    out
}

fn table(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("jt_{name}_{}_{nanos}", std::process::id())
}

async fn pages(source: &mut DatabaseSource) -> Vec<Page> {
    let mut out = Vec::new();
    while let Some(p) = source.next_page().await.unwrap() {
        out.push(p);
    }
    out
}

fn ids(pages: &[Page]) -> Vec<i64> {
    pages.iter().flat_map(|p| p.records.iter().map(|r| r["id"].as_i64().unwrap())).collect()
}

async fn export_pages_types_and_resume(kind: DatabaseKind) {
    let t = table("export");
    let (ts, json_type, bool_type) = match kind {
        DatabaseKind::Postgres => ("timestamptz", "jsonb", "boolean"),
        DatabaseKind::MySql => ("datetime(3)", "json", "boolean"),
    };
    let mut setup = vec![format!(
        "CREATE TABLE {t} (id integer PRIMARY KEY, name varchar(50), amount numeric(10,2), at {ts}, \
         flag {bool_type}, doc {json_type}, day date, big bigint, ratio double precision)"
    )];
    for i in 0..25 {
        setup.push(format!(
            "INSERT INTO {t} VALUES ({i}, 'n{i}', {i}.25, '2024-01-02 03:04:05.5', {}, '{{\"k\": {i}}}', '2024-02-29', \
             {}, 0.5)",
            if i % 2 == 0 { "true" } else { "false" },
            9_000_000_000_000_000_000i64 + i
        ));
    }
    setup.push(format!("INSERT INTO {t} (id) VALUES (100)"));
    run(kind, &setup).await;

    let export = parse_database_export(
        "e",
        json!({"query": format!("SELECT * FROM {t} WHERE id < {{{{settings.below}}}} AND name <> {{{{settings.not}}}} ORDER BY id")})
            .as_object()
            .unwrap(),
        &[],
    )
    .unwrap();
    let vars = json!({"settings": {"below": 100, "not": "x' OR '1'='1"}});
    let conn = connection(kind, None, None);
    let mut source = DatabaseSource::new(&conn, &export, vars.clone(), 10, None);
    let all = pages(&mut source).await;
    assert_eq!(all.iter().map(|p| p.records.len()).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(all.iter().map(|p| p.last).collect::<Vec<_>>(), [false, false, true]);
    assert_eq!(ids(&all), (0..25).collect::<Vec<_>>());
    let at = match kind {
        DatabaseKind::Postgres => "2024-01-02T03:04:05.5Z",
        DatabaseKind::MySql => "2024-01-02T03:04:05.500000",
    };
    let doc = json!({"k": 3});
    // MariaDB's BOOLEAN is TINYINT(1), read as a boolean too.
    let flag = json!(false);
    assert_eq!(
        json_doc(all[0].records[3].clone()),
        json!({"id": 3, "name": "n3", "amount": 3.25, "at": at, "flag": flag, "doc": doc, "day": "2024-02-29",
               "big": 9_000_000_000_000_000_003i64, "ratio": 0.5})
    );
    // Resume after the first page: the rest only.
    let mut resumed = DatabaseSource::new(&conn, &export, vars.clone(), 10, Some(all[0].state.clone()));
    assert_eq!(ids(&pages(&mut resumed).await), (10..25).collect::<Vec<_>>());
    // No rows: no page.
    let mut none = DatabaseSource::new(&conn, &export, json!({"settings": {"below": 0, "not": ""}}), 10, None);
    assert!(none.next_page().await.unwrap().is_none());
    // NULLs and the row outside the filter.
    let rows = select(kind, &format!("SELECT id, name, amount, doc FROM {t} WHERE id = 100")).await;
    assert_eq!(rows, [json!({"id": 100, "name": null, "amount": null, "doc": null})]);
    run(kind, &[format!("DROP TABLE {t}")]).await;
}

#[tokio::test]
async fn postgres_export_pages_types_and_resume() {
    export_pages_types_and_resume(DatabaseKind::Postgres).await;
}

#[tokio::test]
async fn mysql_export_pages_types_and_resume() {
    export_pages_types_and_resume(DatabaseKind::MySql).await;
}

fn import(v: Value) -> junction_core::flow::adapters::DatabaseImport {
    parse_database_import("i", v.as_object().unwrap(), &[]).unwrap()
}

async fn insert_upsert_update_and_a_failing_record(kind: DatabaseKind) {
    let t = table("import");
    let doc_type = if kind == DatabaseKind::Postgres { "jsonb" } else { "json" };
    run(
        kind,
        &[format!("CREATE TABLE {t} (id integer PRIMARY KEY, name varchar(20) NOT NULL, n integer, doc {doc_type})")],
    )
    .await;
    let dbs = Databases::new();
    let conn = connection(kind, None, None);

    let records: Vec<Value> = (1..=5)
        .map(|i| {
            if i == 3 {
                json!({"id": i, "name": null})
            } else {
                json!({"id": i, "name": format!("n{i}"), "n": i, "doc": {"a": i}})
            }
        })
        .collect();
    let results = dbs.database_import(&conn, &import(json!({"table": t, "key": "id"})), &records).await.unwrap();
    let codes: Vec<u16> = results.iter().map(|r| r.status_code).collect();
    assert_eq!(codes, [200, 200, 422, 200, 200]);
    assert_eq!(results[0].id.as_deref(), Some("1"));
    let message = results[2].errors[0]["message"].as_str().unwrap().to_lowercase();
    assert!(message.contains("null") && message.contains("name"), "{message}");
    assert_eq!(results[2].errors[0]["source"], "database");
    let rows = select(kind, &format!("SELECT id, name, n, doc FROM {t} ORDER BY id")).await;
    assert_eq!(rows.len(), 4);
    assert_eq!(json_doc(rows[0].clone()), json!({"id": 1, "name": "n1", "n": 1, "doc": {"a": 1}}));

    // A duplicate key fails an insert, for that record only.
    let again = [json!({"id": 1, "name": "dup"}), json!({"id": 6, "name": "n6"})];
    let results = dbs.database_import(&conn, &import(json!({"table": t})), &again).await.unwrap();
    assert_eq!(results.iter().map(|r| r.status_code).collect::<Vec<_>>(), [422, 200]);

    // Upsert: 1 changes, 7 is new; columns default to the records' keys, so n stays.
    let up = [json!({"id": 1, "name": "one"}), json!({"id": 7, "name": "n7", "n": "70"})];
    let results = dbs
        .database_import(&conn, &import(json!({"table": t, "operation": "upsert", "key": ["id"]})), &up)
        .await
        .unwrap();
    assert_eq!(results.iter().map(|r| r.status_code).collect::<Vec<_>>(), [200, 200]);
    let rows = select(kind, &format!("SELECT id, name, n FROM {t} WHERE id IN (1, 7) ORDER BY id")).await;
    assert_eq!(rows, [json!({"id": 1, "name": "one", "n": 1}), json!({"id": 7, "name": "n7", "n": 70})]);

    // Update: 2 exists (also with unchanged values), 99 does not, one has no key.
    let upd = [json!({"id": 2, "n": 20}), json!({"id": 99, "n": 1}), json!({"n": 5}), json!({"id": 4, "name": "n4"})];
    let results = dbs
        .database_import(&conn, &import(json!({"table": t, "operation": "update", "key": "id"})), &upd)
        .await
        .unwrap();
    assert_eq!(results.iter().map(|r| r.status_code).collect::<Vec<_>>(), [200, 422, 422, 200]);
    assert_eq!(results[1].errors[0]["code"], "not_found");
    assert_eq!(results[2].errors[0]["code"], "missing_key");
    let rows = select(kind, &format!("SELECT id, name, n FROM {t} WHERE id IN (2, 4) ORDER BY id")).await;
    assert_eq!(rows, [json!({"id": 2, "name": "n2", "n": 20}), json!({"id": 4, "name": "n4", "n": 4})]);

    // An update whose batch fails (a name too long / NOT NULL) falls back per record.
    let upd = [json!({"id": 5, "name": null}), json!({"id": 6, "name": "six"})];
    let results = dbs
        .database_import(&conn, &import(json!({"table": t, "operation": "update", "key": "id"})), &upd)
        .await
        .unwrap();
    assert_eq!(results.iter().map(|r| r.status_code).collect::<Vec<_>>(), [422, 200]);
    let rows = select(kind, &format!("SELECT id, name FROM {t} WHERE id IN (5, 6) ORDER BY id")).await;
    assert_eq!(rows, [json!({"id": 5, "name": "n5"}), json!({"id": 6, "name": "six"})]);
    run(kind, &[format!("DROP TABLE {t}")]).await;
}

#[tokio::test]
async fn postgres_insert_upsert_update_and_a_failing_record() {
    insert_upsert_update_and_a_failing_record(DatabaseKind::Postgres).await;
}

#[tokio::test]
async fn mysql_insert_upsert_update_and_a_failing_record() {
    insert_upsert_update_and_a_failing_record(DatabaseKind::MySql).await;
}

#[tokio::test]
async fn a_refused_login_takes_the_connection_offline() {
    for kind in [DatabaseKind::Postgres, DatabaseKind::MySql] {
        let conn = connection(kind, Some("junction_no_such_user"), Some("pw-not-shown"));
        let export = parse_database_export("e", json!({"query": "SELECT 1"}).as_object().unwrap(), &[]).unwrap();
        let err = DatabaseSource::new(&conn, &export, json!({}), 10, None).next_page().await.unwrap_err();
        assert!(matches!(err, AdapterError::Offline(_)), "{kind:?}: {err:?}");
        let err = Databases::new().database_import(&conn, &import(json!({"table": "t"})), &[json!({"a": 1})]).await;
        assert!(matches!(err, Err(AdapterError::Offline(_))), "{kind:?}: {err:?}");
    }
}

#[tokio::test]
async fn secrets_are_redacted_from_error_messages() {
    let conn = connection(DatabaseKind::Postgres, None, Some("hunter2-secret"));
    let export = parse_database_export(
        "e",
        json!({"query": "SELECT CAST({{connection.encrypted.password}} AS integer) AS n"}).as_object().unwrap(),
        &[],
    )
    .unwrap();
    let err = DatabaseSource::new(&conn, &export, json!({}), 10, None).next_page().await.unwrap_err();
    let AdapterError::Failed(message) = err else { panic!("{err:?}") };
    assert!(message.contains("invalid input syntax"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(message.contains("***"), "{message}");
}

#[tokio::test]
async fn postgres_to_postgres_throughput() {
    // `JUNCTION_ADAPTERS_RECORDS=100000 cargo test --release ...` measures the benchmark's size.
    let total: u64 = std::env::var("JUNCTION_ADAPTERS_RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let (from, to) = (table("from"), table("to"));
    run(
        DatabaseKind::Postgres,
        &[
            format!("CREATE TABLE {from} (id integer PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)"),
            format!(
                "INSERT INTO {from} SELECT i, 'name ' || i, i * 1.5, now() FROM generate_series(1, {total}) AS s(i)"
            ),
            format!("CREATE TABLE {to} (id integer PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)"),
        ],
    )
    .await;
    let conn = connection(DatabaseKind::Postgres, None, None);
    let export = parse_database_export(
        "e",
        json!({"query": format!("SELECT * FROM {from} ORDER BY id")}).as_object().unwrap(),
        &[],
    )
    .unwrap();
    let imp = import(json!({"table": to, "operation": "upsert", "key": "id"}));
    let dbs = Databases::new();
    let started = Instant::now();
    let mut source = DatabaseSource::new(&conn, &export, json!({}), 1000, None);
    while source.next_page().await.unwrap().is_some() {}
    eprintln!("{total} records exported in {:?}", started.elapsed());
    let started = Instant::now();
    let mut source = DatabaseSource::new(&conn, &export, json!({}), 1000, None);
    let mut n = 0;
    while let Some(page) = source.next_page().await.unwrap() {
        let results = dbs.database_import(&conn, &imp, &page.records).await.unwrap();
        assert!(results.iter().all(|r| r.status_code == 200));
        n += page.records.len();
    }
    let elapsed = started.elapsed();
    assert_eq!(n as u64, total);
    eprintln!(
        "{total} records PostgreSQL → PostgreSQL in {elapsed:?}: {:.0} records/s",
        n as f64 / elapsed.as_secs_f64()
    );
    let rows =
        select(DatabaseKind::Postgres, &format!("SELECT count(*)::int AS n, sum(amount)::text AS s FROM {to}")).await;
    let sum = total * (total + 1) / 2 * 3;
    assert_eq!(rows, [json!({"n": total, "s": format!("{}.{}0", sum / 2, if sum % 2 == 1 { 5 } else { 0 })})]);
    run(DatabaseKind::Postgres, &[format!("DROP TABLE {from}"), format!("DROP TABLE {to}")]).await;
}
