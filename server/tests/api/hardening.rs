//! Hostile queries, the metrics token, and statements one at a time per person.

use reqwest::StatusCode;
use sqlx::PgPool;

use crate::common::*;

/// Query values that made handlers panic (the connection dropped, a backtrace in the log) answer 400
/// naming the parameter.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn hostile_query_values_answer_400_not_a_panic(db: PgPool) {
    let app = App::spawn(db).await;
    one_minute_job(&app, "q1", "alice", 10).await;
    for (path, field) in [
        ("/api/v1/jobs?offset=9223372036854775807", "offset"),
        ("/jobs?offset=9223372036854775807", "offset"),
        ("/jobs/q1/power.svg?from_min=0&to_min=1e300", ""),
        (
            "/api/v1/sites/s1/pue/hourly?from=-262143-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "from",
        ),
    ] {
        let (status, body) = app.get_text(ADMIN, path).await;
        if field.is_empty() {
            // A window past the job's end is the job up to its end.
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert!(body.contains(&format!("{field}:")), "{path}: {body}");
        }
    }
}

/// Every GET route with a query, every parameter it reads, hostile values: never a 5xx (before, three
/// made handlers panic), and a 400 names the parameter. Pages and API alike.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn every_get_route_answers_hostile_query_values_with_400_naming_them(db: PgPool) {
    let app = App::spawn(db).await;
    one_minute_job(&app, "h1", "alice", 10).await;
    let list = [
        "user",
        "site",
        "tag",
        "cap",
        "state",
        "from",
        "to",
        "sort",
        "order",
        "limit",
        "offset",
        "after",
        "after_key",
    ];
    // (path, its parameters, a fixed part of its query)
    let routes: Vec<(&str, &[&str], &str)> = vec![
        ("/api/v1/jobs", &list, ""),
        ("/api/v1/jobs.csv", &list, ""),
        ("/jobs", &list, ""),
        ("/jobs.csv", &list, ""),
        ("/jobs/h1", &["from_min", "to_min"], ""),
        ("/jobs/h1/power.svg", &["from_min", "to_min"], ""),
        ("/api/v1/sites/s1/pue/hourly", &["from", "to"], ""),
        ("/api/v1/sites/s1/pue/daily", &["year"], ""),
        ("/api/v1/sites/s1/pue/variation", &["year"], ""),
        ("/api/v1/sites/s1/pue/advice", &["hours", "it_kwh"], ""),
        ("/sites/s1/pue", &["year", "week"], ""),
        (
            "/api/v1/powercap/comparison",
            &["tag", "baseline_w", "slowdown_pct"],
            "tag=workload:x&",
        ),
        ("/powercap", &["tag", "baseline_w", "slowdown_pct"], ""),
        (
            "/api/v1/statement",
            &["jobs", "user", "from", "to", "tag"],
            "format=json&",
        ),
        ("/statement", &["jobs", "user", "from", "to"], "format=md&"),
        ("/login", &["next"], ""),
    ];
    let hostile = [
        "",
        "-1",
        "0",
        "9223372036854775807",
        "-9223372036854775808",
        "1e300",
        "-1e300",
        "NaN",
        "inf",
        "%00",
        "%FF%FE",
        "-262143-01-01T00:00:00Z",
        "2024-13-45",
        "..%2F..%2Fetc%2Fpasswd",
        "%3Cscript%3E",
        "a:b:c",
        ",,,",
    ];
    let long = "x".repeat(5000);
    let mut wrong = Vec::new();
    let mut asked = 0;
    for (path, params, fixed) in &routes {
        for param in *params {
            for value in hostile.iter().copied().chain([long.as_str()]) {
                let url = format!("{path}?{fixed}{param}={value}");
                let (status, bytes) = app.get_bytes(ADMIN, &url).await;
                let body = String::from_utf8_lossy(&bytes);
                asked += 1;
                let named =
                    body.contains(&format!("{param}:")) || body.contains(&format!("{param}`"));
                if status.is_server_error() || (status == StatusCode::BAD_REQUEST && !named) {
                    let head: String = body.chars().take(200).collect();
                    wrong.push(format!("{}: {status} {head}", &url[..url.len().min(120)]));
                }
            }
        }
    }
    assert!(asked > 700, "{asked}");
    assert!(
        wrong.is_empty(),
        "{} of {asked}:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// `/metrics` holds the sign-in and refusal counters: it answers the metrics token and the admin token,
/// nobody else (it was public).
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn metrics_answer_their_token_only(db: PgPool) {
    let app = App::spawn_with(db, |c| {
        c.metrics_token = Some(secrecy::SecretString::from(
            "prometheus-scrape-token".to_owned(),
        ));
    })
    .await;
    let node = app.node().await;
    for (token, want) in [
        ("", StatusCode::UNAUTHORIZED),
        ("wrong", StatusCode::UNAUTHORIZED),
        (node.as_str(), StatusCode::UNAUTHORIZED),
        ("prometheus-scrape-token", StatusCode::OK),
        (ADMIN, StatusCode::OK),
    ] {
        let (status, body) = app.get_text(token, "/metrics").await;
        assert_eq!(status, want, "{token}: {body}");
        if want == StatusCode::OK {
            assert!(body.contains("wattlas_ingest_batches_total"), "{body}");
        }
    }
}

/// One statement at a time per person: concurrent renders of one person get 429 (a render takes a
/// core for seconds at 10,000 jobs); another person's is not held up, and the next one is made.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn statements_render_one_at_a_time_per_person(db: PgPool) {
    let app = App::spawn(db).await;
    one_minute_job(&app, "st1", "ann", 10).await;
    add_user(&app, "ann", wattlas_server::db::users::Role::Researcher).await;
    let ann = api_token(&app, "ann").await;
    let url = "/api/v1/statement?jobs=st1&format=pdf";
    let (a, b, c, d) = tokio::join!(
        app.get_bytes(&ann, url),
        app.get_bytes(&ann, url),
        app.get_bytes(&ann, url),
        app.get_bytes(&ann, url)
    );
    let statuses = [a.0, b.0, c.0, d.0];
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(statuses
        .iter()
        .all(|s| *s == StatusCode::OK || *s == StatusCode::TOO_MANY_REQUESTS));
    let (status, _) = app.get_bytes(&ann, url).await;
    assert_eq!(status, StatusCode::OK, "the next one is made");
    // The bootstrap admin token (scripts, the benchmark's load) is not held.
    let (a, b) = tokio::join!(app.get_bytes(ADMIN, url), app.get_bytes(ADMIN, url));
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
}
