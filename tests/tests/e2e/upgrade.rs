//! Upgrades: each database an earlier release filled (fixtures/upgrade/<commit>/, made by
//! `scripts/upgrade-fixture`), restored with `scripts/restore` and migrated by this release's server,
//! answers what that release answered: every job's energy, the statement's JSON, the PUE tables and the
//! power-cap comparison. Fields this release added are free; a field changed or removed must be one
//! the CHANGELOG declares (`DECLARED` below, each with its reason).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sqlx::PgPool;
use wattlas_tests::harness::{bin, database_url, run_script, wait_ready, Server, ADMIN};

/// Changes between a release's answers and this one's that the CHANGELOG declares, by path (array
/// indices written `[]`): (path, why).
const DECLARED: &[(&str, &str)] = &[
    (
        "statement.generated_at",
        "the time the statement was made: each one its own",
    ),
    (
        "statement.paragraph",
        "0.2.0: the paragraph says each figure to three digits, its bounds, and each claim against one \
         baseline (issues 31, 35)",
    ),
    (
        "statement.method",
        "0.2.0: the method lines gained the power readings and the bounds, and say each baseline \
         (issues 31, 35)",
    ),
    (
        "statement.sites[].mean_pue",
        "0.2.0: removed; a statement has one PUE per site, `pue`, the energy-weighted facility / IT \
         energy (issue 31)",
    ),
];

fn repo() -> PathBuf {
    wattlas_tests::manifest_dir().join("..")
}

/// `wattlas-server migrate --check` over `url`: its exit status and output.
fn migrate_check(url: &str) -> (i32, String) {
    let out = Command::new(bin("wattlas-server"))
        .args(["migrate", "--check"])
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("wattlas-server runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Every difference of `new` from `old` that matters: a value of `old` missing or different in `new`
/// (numbers equal within 1e-9 relative). `at` names the place, indices as `[]`.
fn differences(old: &Value, new: &Value, at: &str, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let here = format!("{at}.{k}");
                match b.get(k) {
                    Some(w) => differences(v, w, &here, out),
                    None => out.push(format!("{here}: removed (was {v})")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (v, w) in a.iter().zip(b) {
                differences(v, w, &format!("{at}[]"), out);
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let (x, y) = (a.as_f64().expect("number"), b.as_f64().expect("number"));
            if (x - y).abs() > 1e-9 * x.abs().max(1.0) {
                out.push(format!("{at}: {x} became {y}"));
            }
        }
        _ if old == new => {}
        _ => out.push(format!("{at}: {old} became {new}")),
    }
}

/// What kind of answer a kept path is, for `DECLARED`.
fn kind(path: &str) -> &'static str {
    if path.starts_with("/api/v1/statement") {
        "statement"
    } else if path.starts_with("/api/v1/jobs/") {
        "job"
    } else if path.contains("/pue/") {
        "pue"
    } else {
        "other"
    }
}

async fn upgrade_one(db: &PgPool, fixture: &Path) {
    let name = fixture
        .file_name()
        .expect("test setup")
        .to_string_lossy()
        .into_owned();
    let url = database_url(db);
    run_script("restore", &fixture.join("dump.sql.gz"), &url);

    // Before: the release's migrations applied, this release's later ones pending, nothing unknown.
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY 1")
        .fetch_all(db)
        .await
        .expect("test setup");
    let ours: Vec<i64> = wattlas_server::MIGRATOR.iter().map(|m| m.version).collect();
    assert!(
        applied.iter().all(|v| ours.contains(v)),
        "{name}: a migration of that release is missing from this one's"
    );
    let pending: Vec<String> = ours
        .iter()
        .filter(|v| !applied.contains(v))
        .map(i64::to_string)
        .collect();
    let (code, text) = migrate_check(&url);
    let would_run = if pending.is_empty() { 0 } else { 1 };
    assert_eq!(code, would_run, "{name}: migrate --check says\n{text}");
    assert!(
        (pending.is_empty() || text.contains(&format!("would run {} migration(s)", pending.len())))
            && pending.iter().all(|v| text.contains(v.as_str())),
        "{name}: migrate --check should list {pending:?}:\n{text}"
    );
    let untouched: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(db)
        .await
        .expect("test setup");
    assert_eq!(
        untouched as usize,
        applied.len(),
        "{name}: --check migrated"
    );

    // The upgrade: this release's server starts on it.
    let dir = tempfile::tempdir().expect("test setup");
    let server = Server::start(&url, "127.0.0.1:0", &dir.path().join("server.log"));
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    assert_eq!(
        migrate_check(&url).0,
        0,
        "{name}: migrations left after the start"
    );

    let expected: serde_json::Map<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("expected.json")).expect("expected.json"),
    )
    .expect("expected.json is JSON");
    assert!(
        expected.keys().filter(|p| kind(p) == "job").count() >= 3
            && expected.keys().any(|p| kind(p) == "statement")
            && expected.keys().filter(|p| kind(p) == "pue").count() >= 3,
        "{name}: the fixture keeps too little"
    );
    let mut found = Vec::new();
    let mut declared_seen = 0;
    for (path, old) in &expected {
        let response = http
            .get(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("test setup");
        assert!(
            response.status().is_success(),
            "{name}: GET {path}: {}",
            response.status()
        );
        let new: Value = response.json().await.expect("test setup");
        let mut diffs = Vec::new();
        differences(old, &new, kind(path), &mut diffs);
        for d in diffs {
            let place = d.split(':').next().unwrap_or_default();
            if DECLARED.iter().any(|(p, _)| *p == place) {
                declared_seen += 1;
            } else {
                found.push(format!("GET {path}: {d}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{name}: answers changed by the upgrade and not declared in the CHANGELOG:\n{}",
        found.join("\n")
    );
    // The comparison compares: the statement's time of making differs in every upgrade.
    assert!(declared_seen >= 1, "{name}: nothing was compared");
    drop(server);

    // A database a later release migrated: --check says this release cannot run it (exit 2).
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (29991231000001, 'from the future', true, '\\x00', 0)",
    )
    .execute(db)
    .await
    .expect("test setup");
    let (code, text) = migrate_check(&url);
    assert_eq!(code, 2, "{name}: {text}");
    assert!(
        text.contains("1 migration(s) this release does not know")
            && text.contains("29991231000001"),
        "{text}"
    );
}

#[sqlx::test(migrations = false)]
async fn every_earlier_release_upgrades_with_its_answers_unchanged(db: PgPool) {
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(repo().join("fixtures/upgrade"))
        .expect("fixtures/upgrade")
        .map(|e| e.expect("test setup").path())
        .filter(|p| p.join("dump.sql.gz").exists())
        .collect();
    fixtures.sort();
    assert!(!fixtures.is_empty(), "no upgrade fixture");
    // One database per fixture: the first in the test's own, the others in databases made beside it.
    for (i, fixture) in fixtures.iter().enumerate() {
        if i == 0 {
            upgrade_one(&db, fixture).await;
        } else {
            let name = format!(
                "{}_{i}",
                db.connect_options().get_database().expect("test setup")
            );
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&db)
                .await
                .expect("test setup");
            let url = format!(
                "{}/{name}",
                database_url(&db).rsplit_once('/').expect("test setup").0
            );
            let other = PgPool::connect(&url).await.expect("test setup");
            upgrade_one(&other, fixture).await;
            other.close().await;
            sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&db)
                .await
                .expect("test setup");
        }
    }
}
