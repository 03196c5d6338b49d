//! Issue 33: every time a caller gives is bounded, and no computation walks a span nobody bounded.
//! A caller's times that are far apart cost what their data costs, never what the span does.

use std::time::Duration as StdDuration;

use chrono::{Duration, SubsecRound, Utc};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use wattlas_server::maintenance;

use crate::common::*;

/// What one call may take here before it counts as walking the span (a correct one takes ms; the
/// walks took minutes and held a core each).
const PATIENCE: StdDuration = StdDuration::from_secs(20);

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_job_said_to_run_since_2000_costs_its_samples_not_its_minutes(db: PgPool) {
    // N1: the job's energy, coverage and CPU share walked every minute (and hour) of its span.
    let app = App::spawn(db).await;
    let t0 = minute_aligned_past(10);
    let node = app.node().await;
    node_with_four_gpus(&app, &node, "n1", t0, 200.0).await;
    // Rolled up, as a live instance's minutes are.
    maintenance::rollup_settled_before(&app.state, Utc::now() + Duration::hours(1))
        .await
        .expect("rollup");

    let job = json!({"id": "old", "user": "ann", "site": "s1", "start": "2000-01-02T00:00:00Z",
                     "allocations": [{"node": "n1", "gpus": [0, 1, 2, 3], "cpus": 4}]});
    let register = app.post(ADMIN, "/api/v1/jobs", &job);
    let (status, body) = tokio::time::timeout(PATIENCE, register)
        .await
        .expect("registering a running job from 2000 returns");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Its energy is its samples': four GPUs at 200 W for 60 s.
    let kwh = body["gpu_energy_kwh"].as_f64().expect("energy");
    assert!((kwh - 4.0 * 200.0 * 60.0 / 3.6e6).abs() < 1e-4, "{body}");
    assert!(
        body["coverage"].as_f64().expect("coverage") < 0.01,
        "{body}"
    );
    for path in ["/api/v1/jobs/old", "/api/v1/jobs/old/progress"] {
        let (status, body) = tokio::time::timeout(PATIENCE, app.get(ADMIN, path))
            .await
            .unwrap_or_else(|_| panic!("{path} returns"));
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, svg) = tokio::time::timeout(PATIENCE, app.get_text(ADMIN, "/jobs/old/power.svg"))
        .await
        .expect("the job's power chart returns");
    assert_eq!(status, StatusCode::OK);
    assert!(svg.contains("<svg"), "{svg}");
    let (status, page) = tokio::time::timeout(PATIENCE, app.get_text(ADMIN, "/jobs/old"))
        .await
        .expect("the job's page returns");
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("2000-01-02"),
        "the page shows the job's start"
    );
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn an_admin_corrects_an_end_earlier_and_the_energy_follows(db: PgPool) {
    // N1: an end could only move later; a wrong one stayed.
    let app = App::spawn(db).await;
    let t0 = minute_aligned_past(10);
    let node = app.node().await;
    node_with_four_gpus(&app, &node, "n1", t0, 200.0).await;
    let (status, body) = app
        .post(
            &node,
            "/api/v1/jobs",
            &json!({"id": "7", "user": "ann", "start": t0,
                    "allocations": [{"node": "n1", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let late = Utc::now();
    let (status, body) = app
        .post(&node, "/api/v1/jobs/7/end", &json!({"end": late}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let full = body["gpu_energy_kwh"].as_f64().expect("energy");
    assert!((full - 200.0 * 60.0 / 3.6e6).abs() < 1e-4, "{body}");

    let half = t0 + Duration::seconds(30);
    let (status, body) = app
        .post(ADMIN, "/api/v1/jobs/7/end", &json!({"end": half}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let job = app.job("7").await;
    assert_eq!(
        job.end,
        Some(half),
        "the admin's end replaces the later one"
    );
    assert!(
        (job.gpu_energy_kwh - full / 2.0).abs() < 1e-5,
        "half the span, half the energy: {} of {full}",
        job.gpu_energy_kwh
    );
    // And later again: the end is the admin's, not the latest ever given.
    let (status, _) = app
        .post(ADMIN, "/api/v1/jobs/7/end", &json!({"end": late}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.job("7").await.end, Some(late.trunc_subsecs(6)));
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn dates_outside_any_measurement_are_refused_naming_the_parameter(db: PgPool) {
    // N8: -4713-01-01 and year -4714 answered 500.
    let app = App::spawn(db).await;
    app.node().await;
    for (path, param) in [
        ("/api/v1/jobs?from=-4713-01-01", "from"),
        ("/api/v1/jobs?to=%2B275760-01-01", "to"),
        ("/api/v1/jobs.csv?from=-4713-01-01", "from"),
        ("/api/v1/sites/s1/pue/variation?year=-4714", "year"),
        ("/api/v1/sites/s1/pue/variation.csv?year=99999", "year"),
        (
            "/api/v1/sites/s1/pue/hourly?from=-4713-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "from",
        ),
        (
            "/api/v1/sites/s1/pue/daily?from=0001-01-01T00:00:00Z",
            "from",
        ),
        ("/api/v1/sites/s1/energy?from=-4713-01-01", "from"),
        ("/api/v1/statement?from=-4713-01-01", "from"),
    ] {
        let (status, body) = app.get(ADMIN, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        let error = body["error"].as_str().expect("error");
        assert!(error.starts_with(&format!("{param}:")), "{path}: {error}");
    }
    // The page says so too, as a page.
    let (status, page) = app.get_text(ADMIN, "/jobs?from=-4713-01-01").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("from: -4713-01-01 is outside the years 1970 to 2200"),
        "{page}"
    );
    // Plausible dates still answer.
    let (status, body) = app.get(ADMIN, "/api/v1/jobs?from=2026-01-01").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn history_takes_the_admin_token_and_a_meter_batch_spans_a_year_at_most(db: PgPool) {
    // N7: any node token could ask for ?source=import and flood chunks; a meter batch spanning 24
    // years made 101 chunks.
    let app = App::spawn(db).await;
    let node = app.node().await;
    let old = minute_aligned_past(60 * 24 * 40);
    let history = serde_json::to_value(batch(samples(old, 2))).expect("json");
    let (status, body) = app
        .post(&node, "/api/v1/ingest/gpu?source=import", &history)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().expect("error").starts_with("source"),
        "{body}"
    );
    assert_eq!(app.stored().await, 0);

    let meter = app.meter().await;
    let reading = |t: chrono::DateTime<Utc>| json!({"time": t, "pue": 1.3});
    let now = Utc::now();
    let (status, body) = app
        .facility(
            &meter,
            &json!([
                reading(now - Duration::days(24 * 365)),
                reading(now - Duration::hours(1))
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("readings:"),
        "{body}"
    );
    let chunks: i64 = sqlx::query_scalar(
        "select count(*) from timescaledb_information.chunks where hypertable_name = 'facility_readings'",
    )
    .fetch_one(&app.state.db)
    .await
    .expect("chunks");
    assert_eq!(chunks, 0, "nothing stored");
    // A year is one batch.
    let (status, body) = app
        .facility(
            &meter,
            &json!([
                reading(now - Duration::days(365)),
                reading(now - Duration::hours(1))
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Node n2 of site s1 (beside n1) with four GPUs; its token.
async fn second_node(app: &App, t0: chrono::DateTime<Utc>) -> String {
    let (status, body) = app
        .post(ADMIN, "/api/v1/nodes", &json!({"name": "n2", "site": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    node_with_four_gpus(app, &token, "n2", t0, 100.0).await;
    token
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_node_never_reopens_or_squats_anothers_job(db: PgPool) {
    // N4: a node re-opened another node's finished job from 2000 and registered future Slurm ids so
    // the real prolog got 409.
    let app = App::spawn(db).await;
    let t0 = minute_aligned_past(10);
    let n1 = app.node().await;
    node_with_four_gpus(&app, &n1, "n1", t0, 200.0).await;
    let n2 = second_node(&app, t0).await;
    let part = |start: chrono::DateTime<Utc>, node: &str| {
        json!({"id": "20", "user": "ann", "start": start,
               "allocations": [{"node": node, "gpus": [0]}]})
    };
    let (status, body) = app.post(&n1, "/api/v1/jobs", &part(t0, "n1")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let end = t0 + Duration::seconds(60);
    let (status, body) = app
        .post(&n1, "/api/v1/jobs/20/end", &json!({"end": end}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = app.job("20").await;

    // Back into the time it ran, or before it: refused, nothing changes.
    for start in [t0 - Duration::hours(1), t0 + Duration::seconds(10)] {
        let (status, body) = app.post(&n2, "/api/v1/jobs", &part(start, "n2")).await;
        assert_eq!(status, StatusCode::CONFLICT, "{start}: {body}");
        assert!(
            body["error"].as_str().expect("error").starts_with("start"),
            "{body}"
        );
    }
    let after = app.job("20").await;
    assert_eq!((after.start, after.end), (before.start, before.end));
    assert_eq!(after.gpu_energy_kwh, before.gpu_energy_kwh);

    // A requeued run after its end: taken, the job runs again.
    let (status, body) = app
        .post(
            &n2,
            "/api/v1/jobs",
            &part(end + Duration::seconds(30), "n2"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["running"], true);

    // Ids far past the site's own: refused.
    let squat = json!({"id": "4000000", "user": "eve", "start": Utc::now(),
                       "allocations": [{"node": "n2", "gpus": [1]}]});
    let (status, body) = app.post(&n2, "/api/v1/jobs", &squat).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().expect("error").starts_with("raw_id"),
        "{body}"
    );
    let next = json!({"id": "21", "user": "bob", "start": Utc::now(),
                      "allocations": [{"node": "n2", "gpus": [1]}]});
    let (status, body) = app.post(&n2, "/api/v1/jobs", &next).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// A connection to the test server from the loopback address 127.0.0.`last`.
async fn connect_from(last: u8, addr: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("127.0.0.{last}:0").parse().expect("address"))
        .expect("binds");
    socket
        .connect(addr.parse().expect("address"))
        .await
        .expect("connects")
}

/// Whether the server has closed `s` (EOF or reset within a moment).
async fn closed(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(StdDuration::from_millis(300), s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// `GET /healthz` on a fresh connection from 127.0.0.`last`: the status line.
async fn healthz_from(last: u8, addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_from(last, addr).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(StdDuration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn one_client_holding_idle_connections_locks_nobody_out(db: PgPool) {
    // N5: 1,024 idle connections from one unauthenticated client locked everyone out.
    let app = App::spawn_with(db, |c| {
        c.max_connections = 16;
        c.max_connections_per_client = 4;
        c.header_timeout_s = 60;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut attacker = Vec::new();
    for _ in 0..40 {
        attacker.push(connect_from(2, &addr).await);
    }
    assert_eq!(healthz_from(3, &addr).await, "HTTP/1.1 200 OK");
    let mut open = 0;
    for s in &mut attacker {
        if !closed(s).await {
            open += 1;
        }
    }
    assert!(
        open <= 4,
        "{open} of one client's idle connections stay open"
    );

    // Four clients hold every place with idle connections: an idle one makes room for a fifth.
    let mut held = Vec::new();
    for last in 4..8 {
        for _ in 0..4 {
            held.push(connect_from(last, &addr).await);
        }
    }
    assert_eq!(healthz_from(9, &addr).await, "HTTP/1.1 200 OK");
    assert_eq!(healthz_from(10, &addr).await, "HTTP/1.1 200 OK");
}
