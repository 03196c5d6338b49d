//! HTTP tests of the server against the real TimescaleDB: each test gets its own database
//! (`#[sqlx::test]`) and a real server on 127.0.0.1:0.

mod common;

use chrono::{Duration, DurationRound, Utc};
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_protocol::{GpuBatch, GpuIdentity, GpuSample, IngestResult, JobView};
use wattlas_server::config::Config;
use wattlas_server::state::AppState;

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_bad_sample_refuses_the_whole_batch_and_names_the_field(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = Utc::now() - Duration::minutes(5);
    let mut s = samples(t0, 1);

    let mut bad = s.clone();
    bad[7].power_w = -3.0;
    let (status, body) = app.ingest(&token, &batch(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "samples[7].power_w: -3 is outside 0..2000");

    let mut bad = s.clone();
    bad[3].power_w = 2500.0;
    let (status, body) = app.ingest(&token, &batch(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("samples[3].power_w"),
        "{body}"
    );

    let mut bad = s.clone();
    bad[4].time = Utc::now() + Duration::minutes(10);
    let (status, body) = app.ingest(&token, &batch(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("samples[4].time"),
        "{body}"
    );

    let mut bad = s.clone();
    bad[5].gpu = 9;
    let (status, body) = app.ingest(&token, &batch(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("samples[5].gpu: unknown GPU index 9"),
        "{body}"
    );

    // Not JSON a sample can be made of: a string where a number belongs.
    let r = app
        .http
        .post(format!("{}/api/v1/ingest/gpu", app.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"samples":[{"time":"2026-01-01T00:00:00Z","gpu":0,"power_w":"lots"}]}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("json error");
    assert!(
        body["error"].as_str().expect("error").contains("power_w"),
        "{body}"
    );

    assert_eq!(app.stored().await, 0, "nothing partial is stored");

    s.truncate(4);
    let (status, body) = app.ingest(&token, &batch(s)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.stored().await, 4);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn tokens_and_bodies_are_checked(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let b = batch(samples(Utc::now() - Duration::minutes(1), 1));

    let (status, body) = app.ingest("not-a-token", &b).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid token");
    let r = app
        .http
        .post(format!("{}/api/v1/ingest/gpu", app.base))
        .json(&b)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Another node's token cannot write as n1.
    let (_, other) = app
        .post(ADMIN, "/api/v1/nodes", &json!({"name": "n2", "site": "s1"}))
        .await;
    let other = other["token"].as_str().expect("token");
    let mut as_n1 = b.clone();
    as_n1.node = Some("n1".into());
    let (status, body) = app.ingest(other, &as_n1).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().expect("error").contains("n2"),
        "{body}"
    );

    // A node token cannot create nodes.
    let (status, _) = app
        .post(
            &token,
            "/api/v1/nodes",
            &json!({"name": "n3", "site": "s1"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Over the body limit (1 MiB in these tests), after gzip decoding.
    let big = batch(samples(Utc::now() - Duration::minutes(15), 600));
    let json = serde_json::to_vec(&big).expect("json");
    assert!(json.len() > 1024 * 1024);
    let r = app.post_gzip(&token, &json).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.expect("json error");
    assert_eq!(body["error"], "request body is over the size limit");

    // Wrong content type.
    let r = app
        .http
        .post(format!("{}/api/v1/ingest/gpu", app.base))
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.stored().await, 0);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn gzip_batches_are_stored_once_however_they_are_resent(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let all = samples(Utc::now() - Duration::minutes(2), 3);
    let json = serde_json::to_vec(&batch(all.clone())).expect("json");
    let r = app.post_gzip(&token, &json).await;
    assert_eq!(r.status(), StatusCode::OK);
    let first: IngestResult = r.json().await.expect("result");
    assert_eq!(
        first,
        IngestResult {
            stored: 60,
            duplicates: 0
        }
    );

    // The same samples again, regrouped, with 10 new ones: only the new ones are stored.
    let mut again = all[20..].to_vec();
    again.extend(
        samples(Utc::now() - Duration::minutes(2) + Duration::seconds(3), 1)
            .into_iter()
            .take(10),
    );
    again.extend(all[..20].iter().cloned());
    let (status, body) = app.ingest(&token, &batch(again)).await;
    assert_eq!(status, StatusCode::OK);
    let second: IngestResult = serde_json::from_value(body).expect("result");
    assert_eq!(
        second,
        IngestResult {
            stored: 10,
            duplicates: 60
        }
    );
    assert_eq!(app.stored().await, 70);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn job_energy_matches_a_hand_computation_from_raw_and_from_rollups(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(30);
    for chunk in samples(t0, 240).chunks(2000) {
        let (status, body) = app.ingest(&token, &batch(chunk.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // The job starts and ends between two samples.
    let start = t0 + Duration::milliseconds(10_050);
    let end = t0 + Duration::milliseconds(190_050);
    let (status, body) = app
        .post(
            &token,
            "/api/v1/jobs",
            &json!({"id": "1001", "user": "alice", "name": "bert <mlm>", "start": start, "tags": {"workload": "bert-mlm"},
                    "allocations": [{"node": "n1", "gpus": [0, 1]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["site"], "s1",
        "a node token registers jobs in its own site"
    );
    let (status, body) = app
        .post(&token, "/api/v1/jobs/1001/end", &json!({"end": end}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // 180 s x (200 W + 150 W) = 63,000 J.
    let expected_kwh = 180.0 * (200.0 + 150.0) / 3.6e6;
    let from_raw = app.job("1001").await;
    assert!(
        (from_raw.it_energy_kwh - expected_kwh).abs() < 1e-9,
        "{} vs {expected_kwh}",
        from_raw.it_energy_kwh
    );
    assert!(
        (from_raw.coverage - 1.0).abs() < 1e-9,
        "coverage {}",
        from_raw.coverage
    );
    assert!((from_raw.avg_power_w - 350.0).abs() < 1e-6);
    assert_eq!(from_raw.power_cap_w, Some(250.0));
    assert_eq!(from_raw.gpu_count, 2);
    assert_eq!(from_raw.duration_s, 180.0);
    assert_eq!(
        from_raw.energy_method,
        wattlas_protocol::EnergyMethod::Mixed
    );
    assert_eq!(from_raw.samples, 2 * 1800);

    // Roll everything up: the whole minutes now come from rollups, the edges from raw samples.
    let taken = wattlas_server::maintenance::rollup_settled_before(
        &app.state,
        Utc::now() + Duration::hours(1),
    )
    .await
    .expect("rollup");
    assert!(taken > 0);
    let minutes: i64 = sqlx::query_scalar("select count(*) from gpu_minute")
        .fetch_one(&app.state.db)
        .await
        .expect("count");
    assert_eq!(minutes, 2 * 4);
    // The rollup task keeps the hourly sums with the minutes.
    let (hour_minutes, hour_j, minute_j): (i64, f64, f64) = sqlx::query_as(
        "select (select sum(minutes)::int8 from gpu_hour), (select sum(energy_j) from gpu_hour),
            (select sum(energy_j) from gpu_minute)",
    )
    .fetch_one(&app.state.db)
    .await
    .expect("hours");
    assert_eq!(hour_minutes, minutes);
    assert!((hour_j - minute_j).abs() < 1e-6, "{hour_j} vs {minute_j}");
    let from_rollups = app.job("1001").await;
    assert!(
        (from_rollups.it_energy_kwh - expected_kwh).abs() < 1e-9,
        "{} vs {expected_kwh}",
        from_rollups.it_energy_kwh
    );
    assert_eq!(from_rollups.samples, from_raw.samples);
    assert_eq!(from_rollups.power_cap_w, Some(250.0));

    // Raw samples expire. The stored summary, computed while they existed, keeps the edges.
    sqlx::query("delete from gpu_raw")
        .execute(&app.state.db)
        .await
        .expect("delete");
    let stored = app.job("1001").await;
    assert!(
        (stored.it_energy_kwh - expected_kwh).abs() < 1e-9,
        "{}",
        stored.it_energy_kwh
    );
    // Recomputed now, rollups carry the whole minutes (the edges are lost with the raw data).
    sqlx::query("update job_energy set stale = true")
        .execute(&app.state.db)
        .await
        .expect("mark stale");
    let after = app.job("1001").await;
    let whole_minutes_kwh = 120.0 * 350.0 / 3.6e6;
    assert!(
        (after.it_energy_kwh - whole_minutes_kwh).abs() < 1e-9,
        "{}",
        after.it_energy_kwh
    );

    // Pages show it, escaped.
    let page = app
        .http
        .get(format!("{}/jobs/1001", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("bert &lt;mlm&gt;") || html.contains("bert &#60;mlm&#62;"),
        "name must be escaped"
    );
    assert!(!html.contains("bert <mlm>"));
    assert!(
        html.contains(&format!("{:.4} kWh", after.it_energy_kwh)),
        "energy shown"
    );
    let list = app.get_text(ADMIN, "/jobs?tag=workload:bert-mlm").await.1;
    assert!(list.contains("href=\"/jobs/1001\""));
    let svg = app
        .http
        .get(format!("{}/jobs/1001/power.svg", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("svg");
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.expect("svg").contains("n1/gpu1"));

    // Utilisation, and a window chosen by URL: the page links its charts with the same window.
    let (status, util) = app.get_text(ADMIN, "/jobs/1001/util.svg").await;
    assert_eq!(status, StatusCode::OK);
    assert!(util.contains("GPU utilisation (%)") && util.contains("Utilisation per GPU"));
    let (status, page) = app.get_text(ADMIN, "/jobs/1001?from_min=1&to_min=2").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("/jobs/1001/power.svg?from_min=1&#38;to_min=2"),
        "{page}"
    );
    let (status, zoomed) = app
        .get_text(ADMIN, "/jobs/1001/power.svg?from_min=1&to_min=2")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, whole) = app.get_text(ADMIN, "/jobs/1001/power.svg").await;
    // 1 minute of raw 100 ms points (2 GPUs) against 3 minutes: the zoomed chart draws a third.
    // The raw samples are gone by now: both charts draw the minutes from the rollups (not nothing),
    // and the zoomed one spans minutes 1 to 2 of the job.
    let labels = |svg: &str| -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| t.split('>').nth(1))
            .map(|t| t.split('<').next().unwrap_or("").trim().to_owned())
            .collect()
    };
    let polyline_points = |svg: &str| -> usize {
        svg.split("<polyline")
            .skip(1)
            .filter(|p| p.contains("stroke-width=\"2\""))
            .map(|p| {
                p.split("points=\"")
                    .nth(1)
                    .and_then(|q| q.split('"').next())
                    .map_or(0, |q| q.split_whitespace().count())
            })
            .sum()
    };
    let (w, z) = (labels(&whole), labels(&zoomed));
    assert!(
        w.contains(&"2.5".to_owned()) && w.contains(&"0.5".to_owned()),
        "{w:?}"
    );
    assert!(
        z.contains(&"1.5".to_owned())
            && !z.contains(&"2.5".to_owned())
            && !z.contains(&"0.5".to_owned()),
        "{z:?}"
    );
    assert!(
        w.contains(&"200.0".to_owned()),
        "the y axis reaches the data: {w:?}"
    );
    assert!(
        polyline_points(&whole) >= 4,
        "two minutes of two GPUs at least"
    );
    let (status, _) = app
        .get_text(ADMIN, "/jobs/1001/power.svg?from_min=2&to_min=1")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.get_text(ADMIN, "/jobs/1001/heat.svg").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_running_job_reports_energy_so_far_and_jobs_filter(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let start = Utc::now() - Duration::seconds(20);
    let (status, _) = app
        .post(ADMIN, "/api/v1/jobs", &json!({"id": "r1", "user": "bob", "site": "s1", "start": start, "allocations": [{"node": "n1", "gpus": [0]}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app.ingest(&token, &batch(samples(start, 10))).await;
    assert_eq!(status, StatusCode::OK);
    let job = app.job("r1").await;
    assert!(job.running);
    assert!(job.end.is_none());
    // 200 W on GPU 0 for the 9.9 s its samples cover.
    assert!(
        (job.it_energy_kwh - 9.9 * 200.0 / 3.6e6).abs() < 1e-9,
        "{}",
        job.it_energy_kwh
    );
    assert!(
        job.coverage > 0.4 && job.coverage < 0.6,
        "coverage {}",
        job.coverage
    );

    let (status, list) = app.get(ADMIN, "/api/v1/jobs?state=running&user=bob").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(list["jobs"][0]["id"], "r1");
    let (_, list) = app.get(ADMIN, "/api/v1/jobs?state=finished").await;
    assert_eq!(list["total"], 0);
    let (status, body) = app.get(ADMIN, "/api/v1/jobs?state=sleeping").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().expect("error").starts_with("state:"));

    // A job with a bad allocation is refused whole.
    let (status, body) = app
        .post(ADMIN, "/api/v1/jobs", &json!({"id": "r2", "user": "bob", "site": "s1", "start": start, "allocations": [{"node": "nope", "gpus": [0]}]}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "allocations[0].node: unknown node 'nope'");
    let (status, _) = app.get(ADMIN, "/api/v1/jobs/r2").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs/r1/end",
            &json!({"end": start - Duration::seconds(1)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().expect("error").starts_with("end:"));
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn retention_drops_old_raw_chunks_and_keeps_rollups(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let old = minute_aligned_past(60 * 24 * 40);
    // A live collector does not send samples past the retention; an import does.
    let (status, body) = app.ingest(&token, &batch(samples(old, 120))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("older than the raw retention (30 days)"),
        "{body}"
    );
    let (status, _) = app
        .post(
            &token,
            "/api/v1/ingest/gpu?source=import",
            &serde_json::to_value(batch(samples(old, 120))).expect("json"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .ingest(
            &token,
            &batch(samples(Utc::now() - Duration::minutes(3), 1)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // An imported log older than the retention period stays until the rollup task has it.
    let dropped = wattlas_server::maintenance::retention_once(&app.state.db, 30)
        .await
        .expect("retention");
    assert_eq!(dropped, 0, "not rolled up yet");
    assert_eq!(app.stored().await, 2420);
    wattlas_server::maintenance::rollup_settled_before(&app.state, Utc::now() + Duration::hours(1))
        .await
        .expect("rollup");
    let dropped = wattlas_server::maintenance::retention_once(&app.state.db, 30)
        .await
        .expect("retention");
    assert_eq!(dropped, 1);
    assert_eq!(app.stored().await, 20, "recent raw samples stay");
    let energy: f64 = sqlx::query_scalar(
        "select sum(energy_j) from gpu_minute where minute < now() - interval '30 days'",
    )
    .fetch_one(&app.state.db)
    .await
    .expect("sum");
    // 119.9 s of samples at 200 W + 150 W.
    assert!(
        (energy - 119.9 * 350.0).abs() < 1e-6,
        "rollups keep the old energy: {energy}"
    );
}

/// A meter `m1` in site `s1`; returns its token.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn meter_readings_are_validated_whole_and_stored_once(db: PgPool) {
    let app = App::spawn(db).await;
    let node_token = app.node().await;
    let token = app.meter().await;
    let t0 = minute_aligned_past(60);
    let readings: Vec<Value> = (0..12)
        .map(|i| json!({"time": t0 + Duration::minutes(5 * i), "it_kw": 800.0, "total_kw": 960.0}))
        .collect();

    let mut bad = readings.clone();
    bad[4]["total_kw"] = json!(700.0);
    let (status, body) = app
        .post(&token, "/api/v1/ingest/facility", &json!({"readings": bad}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "readings[4].total_kw: 700 is below it_kw 800"
    );
    let mut bad = readings.clone();
    bad[2]["it_kw"] = json!(-5.0);
    let (status, body) = app
        .post(&token, "/api/v1/ingest/facility", &json!({"readings": bad}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("readings[2].it_kw"),
        "{body}"
    );
    let count = || async {
        sqlx::query_scalar::<_, i64>("select count(*) from facility_readings")
            .fetch_one(&app.state.db)
            .await
            .expect("count")
    };
    assert_eq!(count().await, 0, "nothing partial");

    let (status, body) = app
        .post(
            &token,
            "/api/v1/ingest/facility",
            &json!({"readings": readings}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"stored": 12, "duplicates": 0}));
    let (_, body) = app
        .post(
            &token,
            "/api/v1/ingest/facility",
            &json!({"readings": readings[6..]}),
        )
        .await;
    assert_eq!(body, json!({"stored": 0, "duplicates": 6}));
    assert_eq!(count().await, 12);

    // Tokens keep to their kind.
    let (status, _) = app
        .post(
            &node_token,
            "/api/v1/ingest/facility",
            &json!({"readings": readings}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.ingest(&token, &batch(samples(t0, 1))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, list) = app.get(ADMIN, "/api/v1/meters").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["category"], "PUE2");
    assert_eq!(list[0]["last_reading"]["total_kw"], 960.0);

    // Hourly PUE: 960 / 800 = 1.2 in every hour with readings.
    let (status, hourly) = app
        .get(
            ADMIN,
            &format!(
                "/api/v1/sites/s1/pue/hourly?from={}&to={}",
                (t0 - Duration::hours(1)).to_rfc3339().replace('+', "%2B"),
                Utc::now().to_rfc3339().replace('+', "%2B")
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{hourly}");
    let hours = hourly.as_array().expect("hours");
    assert!(!hours.is_empty());
    assert!(hours
        .iter()
        .all(|h| (h["pue"].as_f64().expect("pue") - 1.2).abs() < 1e-12));
    assert_eq!(
        hours
            .iter()
            .map(|h| h["readings"].as_u64().expect("n"))
            .sum::<u64>(),
        12
    );
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_job_across_a_pue_change_is_charged_each_hours_pue(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let mtoken = app.meter().await;
    let h0 = (Utc::now() - Duration::hours(5))
        .duration_trunc(Duration::hours(1))
        .expect("trunc");
    // Hour 0: PUE 1.2 throughout. Hour 1: readings alternate 140/100 kW and 460/300 kW, so the mean of
    // the readings' PUE is 1.467 but the energy-weighted PUE, which jobs are charged, is 600/400 = 1.5.
    // Hour 2: no meter data (the fallback, 1.58).
    let mut readings = Vec::new();
    for i in 0..12 {
        readings.push(
            json!({"time": h0 + Duration::minutes(5 * i), "it_kw": 100.0, "total_kw": 120.0}),
        );
        let (it, total) = if i % 2 == 0 {
            (100.0, 140.0)
        } else {
            (300.0, 460.0)
        };
        readings.push(json!({"time": h0 + Duration::hours(1) + Duration::minutes(5 * i), "it_kw": it, "total_kw": total}));
    }
    let (status, _) = app
        .post(
            &mtoken,
            "/api/v1/ingest/facility",
            &json!({"readings": readings}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // GPU 0 at 200 W from h0 + 30 min to h0 + 2 h 15 min.
    let start = h0 + Duration::minutes(30);
    let end = h0 + Duration::minutes(135);
    let mut s: Vec<GpuSample> = samples(start - Duration::seconds(1), 106 * 60)
        .into_iter()
        .filter(|s| s.gpu == 0)
        .collect();
    s.retain(|x| x.time <= end + Duration::seconds(1));
    for chunk in s.chunks(5000) {
        let (status, body) = app.ingest(&token, &batch(chunk.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"id": "pue-1", "user": "dana", "site": "s1", "start": start, "end": end,
              "allocations": [{"node": "n1", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // By hand: IT 100 Wh in hour 0, 200 Wh in hour 1, 50 Wh in hour 2.
    let it_kwh = 0.35;
    let facility_kwh = 0.100 * 1.2 + 0.200 * 1.5 + 0.050 * 1.58;
    for phase in ["raw", "rollups"] {
        if phase == "rollups" {
            wattlas_server::maintenance::rollup_settled_before(
                &app.state,
                Utc::now() + Duration::hours(1),
            )
            .await
            .expect("rollup");
        }
        let job = app.job("pue-1").await;
        assert!(
            (job.it_energy_kwh - it_kwh).abs() < 1e-9,
            "{phase}: IT {}",
            job.it_energy_kwh
        );
        assert!(
            (job.facility_energy_kwh - facility_kwh).abs() < 1e-9,
            "{phase}: facility {} vs {facility_kwh}",
            job.facility_energy_kwh
        );
        assert!((job.pue.expect("pue") - facility_kwh / it_kwh).abs() < 1e-9);
        assert!(
            (job.pue_fallback_share - 0.05 / 0.35).abs() < 1e-9,
            "{phase}: fallback share {}",
            job.pue_fallback_share
        );
    }

    // The page of the site shows the table and the charts; the CSV names the year.
    let page = app
        .http
        .get(format!("{}/sites/s1/pue", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("Daily PUE variation (Table 1)") && html.contains("<svg"),
        "page with charts"
    );
    assert!(html.contains("<td>m1</td>"), "meters listed");
    let csv = app
        .http
        .get(format!(
            "{}/api/v1/sites/s1/pue/variation.csv?year=2024",
            app.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.expect("csv");
    assert!(
        text.starts_with("site,year,month,days,days_excluded,avg_daily_variation_pct,mean_pue\n")
    );
    assert_eq!(text.lines().count(), 14, "header, 12 months, annual");
    let (status, _) = app.get(ADMIN, "/api/v1/sites/nowhere/pue/variation").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, advice) = app
        .get(ADMIN, "/api/v1/sites/s1/pue/advice?hours=2&it_kwh=10")
        .await;
    assert_eq!(status, StatusCode::OK, "{advice}");
    assert_eq!(advice["length_h"], 2);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn energy_counter_meters_give_the_pue_of_each_interval(db: PgPool) {
    let app = App::spawn(db).await;
    app.node().await;
    let token = app.meter().await;
    let h0 = (Utc::now() - Duration::hours(4))
        .duration_trunc(Duration::hours(1))
        .expect("trunc");
    // Counters every 15 minutes: IT rises 100 kWh per interval; total rises 130 kWh in the first hour
    // and 150 kWh in the second. The first reading has no predecessor and gives no PUE.
    let mut it = 10_000.0;
    let mut total = 13_000.0;
    let mut readings = vec![json!({"time": h0, "it_kwh": it, "total_kwh": total})];
    for i in 1..=8 {
        it += 100.0;
        total += if i <= 3 { 130.0 } else { 150.0 };
        readings.push(
            json!({"time": h0 + Duration::minutes(15 * i), "it_kwh": it, "total_kwh": total}),
        );
    }
    let (status, body) = app
        .post(
            &token,
            "/api/v1/ingest/facility",
            &json!({"readings": readings}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let from = (h0 - Duration::hours(1)).to_rfc3339().replace('+', "%2B");
    let to = (h0 + Duration::hours(3)).to_rfc3339().replace('+', "%2B");
    let (status, hourly) = app
        .get(
            ADMIN,
            &format!("/api/v1/sites/s1/pue/hourly?from={from}&to={to}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{hourly}");
    let pues: Vec<(f64, u64)> = hourly
        .as_array()
        .expect("hours")
        .iter()
        .map(|h| {
            (
                h["weighted_pue"].as_f64().expect("pue"),
                h["readings"].as_u64().expect("n"),
            )
        })
        .collect();
    // An interval counts in the hour it starts in. Hour 0: intervals from :00, :15, :30 (PUE 1.3) and
    // :45 (1.5): energy-weighted (3 x 130 + 150) / 400 = 1.35. Hour 1: four intervals at 1.5.
    assert_eq!(pues.len(), 2, "{pues:?}");
    assert!(
        (pues[0].0 - 1.35).abs() < 1e-9 && pues[0].1 == 4,
        "{pues:?}"
    );
    assert!((pues[1].0 - 1.5).abs() < 1e-9 && pues[1].1 == 4, "{pues:?}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn power_cap_comparison_matches_the_jobs_own_numbers(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(120);
    // The same workload at four caps (two runs at 250 W): lower cap, lower power, longer time.
    let runs = [
        (250.0, 200.0, 60),
        (250.0, 205.0, 62),
        (200.0, 180.0, 63),
        (150.0, 140.0, 66),
        (100.0, 95.0, 80),
    ];
    let mut start = t0;
    for (i, (cap, power, seconds)) in runs.iter().enumerate() {
        let samples = capped(start, *seconds, 1, *power, *cap);
        let (status, body) = app.ingest(&token, &batch(samples)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let end = start + Duration::seconds(*seconds);
        let (status, body) = app
            .post(
                ADMIN,
                "/api/v1/jobs",
                &json!({"site": "s1", "id": format!("cap-{i}"), "user": "eve", "start": start, "end": end,
                  "tags": {"workload": "bert-mlm"}, "allocations": [{"node": "n1", "gpus": [0]}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        start = end + Duration::seconds(5);
    }
    // A job of another workload does not join.
    let (status, _) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"site": "s1", "id": "other", "user": "eve", "start": t0, "end": t0 + Duration::seconds(10),
              "tags": {"workload": "resnet"}, "allocations": [{"node": "n1", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, c) = app
        .get(ADMIN, "/api/v1/powercap/comparison?tag=workload:bert-mlm")
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["baseline_w"], 250.0);
    // Independently, from each job's own numbers.
    let mut by_cap: std::collections::BTreeMap<i64, Vec<JobView>> =
        std::collections::BTreeMap::new();
    for i in 0..runs.len() {
        let job = app.job(&format!("cap-{i}")).await;
        by_cap
            .entry(job.power_cap_w.expect("cap") as i64)
            .or_default()
            .push(job);
    }
    let mean = |jobs: &[JobView], f: fn(&JobView) -> f64| {
        jobs.iter().map(f).sum::<f64>() / jobs.len() as f64
    };
    let base_t = mean(&by_cap[&250], |j| j.duration_s);
    let base_e = mean(&by_cap[&250], |j| j.it_energy_kwh);
    let caps = c["caps"].as_array().expect("caps");
    assert_eq!(caps.len(), 4);
    for row in caps {
        let cap = row["power_cap_w"].as_f64().expect("cap") as i64;
        let jobs = &by_cap[&cap];
        assert_eq!(row["jobs"].as_u64(), Some(jobs.len() as u64));
        let t = mean(jobs, |j| j.duration_s) / base_t * 100.0;
        let e = mean(jobs, |j| j.it_energy_kwh) / base_e * 100.0;
        assert!(
            (row["rel_time_pct"].as_f64().expect("t") - t).abs() < 1e-9,
            "{cap} W time"
        );
        assert!(
            (row["rel_energy_pct"].as_f64().expect("e") - e).abs() < 1e-9,
            "{cap} W energy"
        );
    }
    // The advice: least energy within a 10 % slowdown (100 W is 33 % slower here).
    let advice = &c["advice"];
    let best = caps
        .iter()
        .filter(|r| r["rel_time_pct"].as_f64().expect("t") <= 110.0)
        .min_by(|a, b| {
            a["rel_energy_pct"]
                .as_f64()
                .expect("e")
                .total_cmp(&b["rel_energy_pct"].as_f64().expect("e"))
        })
        .expect("a cap within the budget");
    assert_eq!(advice["power_cap_w"], best["power_cap_w"]);
    assert_ne!(advice["power_cap_w"], 100.0);
    // The pages of the workload's jobs carry the advice, and how to apply it.
    let page = app.get_text(ADMIN, "/jobs/cap-0").await.1;
    let cap = advice["power_cap_w"].as_f64().expect("cap");
    assert!(
        page.contains(&format!("advises\n{cap:.0} W within a 10 % slowdown"))
            && page.contains(&format!("power_cap_w={cap:.0}")),
        "{page}"
    );
    let at_100 = &caps[0];
    assert!(
        at_100["rel_time_pct"].as_f64().expect("t") > 100.0
            && at_100["rel_energy_pct"].as_f64().expect("e") < 100.0
    );

    let (status, body) = app
        .get(
            ADMIN,
            "/api/v1/powercap/comparison?tag=workload:bert-mlm&baseline_w=175",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"].as_str().expect("error").contains("175 W"),
        "{body}"
    );
    let (status, _) = app.get(ADMIN, "/api/v1/powercap/comparison").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let page = app
        .get_text(ADMIN, "/powercap?tag=workload:bert-mlm")
        .await
        .1;
    assert!(
        page.contains("<svg") && page.contains("100 % (baseline)"),
        "Figure 1 chart"
    );
    assert!(
        page.contains("100 W cap") && page.contains("250 W cap"),
        "Figure 6 has a line per cap"
    );
    let list = app.get_text(ADMIN, "/powercap").await.1;
    assert!(
        list.contains("workload:bert-mlm") && !list.contains("workload:resnet"),
        "only shared tags are listed"
    );
}

#[tokio::test]
async fn without_the_database_the_api_says_503_and_retry_after() {
    // A pool pointing at a port where nothing listens: the server starts, but every query fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut config = Config::with_admin_token(ADMIN);
    config.db_max_connections = 2;
    let url = format!("postgres://nobody:nothing@{closed}/none");
    let db = wattlas_server::startup::connect_lazy(&config, &url).expect("lazy pool");
    let app = App {
        state: AppState::new(db, config),
        ..App::spawn_lazy().await
    };
    let base = app.serve().await;

    let health = app
        .http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = app
        .http
        .post(format!("{base}/api/v1/ingest/gpu"))
        .bearer_auth("some-node-token")
        .json(&batch(samples(Utc::now() - Duration::minutes(1), 1)))
        .send()
        .await
        .expect("ingest");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "database unavailable, retry later");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn comparisons_split_by_gpu_count_where_jobs_differ(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let mut start = minute_aligned_past(60);
    // (GPUs, cap, power, seconds): one and two GPUs, each at 250 W and 150 W.
    for (i, (gpus, cap, power, seconds)) in [
        (1u32, 250.0, 200.0, 30i64),
        (1, 150.0, 140.0, 33),
        (2, 250.0, 190.0, 20),
        (2, 150.0, 135.0, 23),
    ]
    .into_iter()
    .enumerate()
    {
        let samples = capped(start, seconds, gpus, power, cap);
        let (status, _) = app.ingest(&token, &batch(samples)).await;
        assert_eq!(status, StatusCode::OK);
        let end = start + Duration::seconds(seconds);
        let gpu_list: Vec<u32> = (0..gpus).collect();
        let (status, _) = app
            .post(
                ADMIN,
                "/api/v1/jobs",
                &json!({"site": "s1", "id": format!("n-{i}"), "user": "fay", "start": start, "end": end,
                  "tags": {"workload": "gpt"}, "allocations": [{"node": "n1", "gpus": gpu_list}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        start = end + Duration::seconds(5);
    }
    let (status, c) = app
        .get(ADMIN, "/api/v1/powercap/comparison?tag=workload:gpt")
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let groups = c["by_gpu_count"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{c}");
    assert_eq!(groups[0]["label"], "1 GPU");
    assert_eq!(groups[1]["label"], "2 GPUs");
    // Within two GPUs: 150 W took 23/20 of the time, and 2 x 135 x 23 / (2 x 190 x 20) of the energy.
    let two = &groups[1]["caps"][0];
    assert_eq!(two["power_cap_w"], 150.0);
    assert!(
        (two["rel_time_pct"].as_f64().expect("t") - 115.0).abs() < 1e-6,
        "{two}"
    );
    assert!(
        (two["rel_energy_pct"].as_f64().expect("e") - 135.0 * 23.0 / (190.0 * 20.0) * 100.0).abs()
            < 1e-6,
        "{two}"
    );
    assert_eq!(
        c["by_gpu_model"].as_array().expect("models").len(),
        0,
        "one model: no split"
    );
    let page = app.get_text(ADMIN, "/powercap?tag=workload:gpt").await.1;
    assert_eq!(
        page.matches("By GPU count (Figure 2)").count(),
        1,
        "once, in the content"
    );
    assert!(!page.contains("By GPU model (Figure 3)"));
    let title = page
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .expect("title");
    assert_eq!(title, "Power caps · workload:gpt · Wattlas");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn the_jobs_csv_export_is_safe_to_open_in_a_spreadsheet(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let start = minute_aligned_past(30);
    let (status, _) = app.ingest(&token, &batch(samples(start, 10))).await;
    assert_eq!(status, StatusCode::OK);
    let hostile = r#"=HYPERLINK("http://x","click"), really"#;
    let (status, _) = app
        .post(ADMIN, "/api/v1/jobs", &json!({"site": "s1", "id": "csv-1", "user": "gil", "name": hostile, "start": start,
              "end": start + Duration::seconds(10), "tags": {"workload": "+sum"}, "allocations": [{"node": "n1", "gpus": [0, 1]}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let r = app
        .http
        .get(format!("{}/api/v1/jobs.csv?user=gil", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("csv");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let text = r.text().await.expect("text");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with(
        "id,user,name,site,start,end,duration_s,gpu_count,it_energy_kwh,facility_energy_kwh"
    ));
    let row = lines.next().expect("a row");
    assert!(lines.next().is_none(), "one job");
    // The name is defused (a leading quote) and quoted (it holds commas and quotes).
    assert!(
        row.contains(r#""'=HYPERLINK(""http://x"",""click""), really""#),
        "{row}"
    );
    assert!(
        row.contains(",'workload=+sum") || row.contains(",workload=+sum"),
        "{row}"
    );
    // 10 s of 200 W + 150 W, as in the JSON API.
    let job = app.job("csv-1").await;
    assert!(row.contains(&format!("{:.6}", job.it_energy_kwh)), "{row}");
    // The page links to the export of its filter.
    let page = app.get_text(ADMIN, "/jobs?user=gil").await.1;
    assert!(
        page.contains("/jobs.csv?user=gil"),
        "export link keeps the filter"
    );
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn the_jobs_list_sorts_totals_filters_by_cap_and_catches_late_data(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(30);
    let (status, body) = app.ingest(&token, &batch(samples(t0, 160))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // GPU 0 draws 200 W, GPU 1 150 W; every sample reports a 250 W limit.
    let jobs = [
        ("j1", vec![0], 0, 60),
        ("j2", vec![1], 0, 120),
        ("j3", vec![0, 1], 130, 150),
        ("j4", vec![0, 1], 300, 330),
    ];
    for (id, gpus, from, to) in &jobs {
        let (status, body) = app
            .post(
                ADMIN,
                "/api/v1/jobs",
                &json!({"site": "s1", "id": id, "user": "ann", "start": t0 + Duration::seconds(*from),
                        "end": t0 + Duration::seconds(*to), "allocations": [{"node": "n1", "gpus": gpus}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let ids = |body: &Value| -> Vec<String> {
        body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let (status, body) = app.get(ADMIN, "/api/v1/jobs?sort=energy").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // j4 has no data yet: 0 J, last.
    assert_eq!(ids(&body), ["j2", "j1", "j3", "j4"]);
    let (_, asc) = app.get(ADMIN, "/api/v1/jobs?sort=energy&order=asc").await;
    assert_eq!(ids(&asc), ["j4", "j3", "j1", "j2"]);
    let (_, by_gpus) = app
        .get(ADMIN, "/api/v1/jobs?sort=gpus&order=asc&limit=2")
        .await;
    assert_eq!(ids(&by_gpus), ["j1", "j2"], "ties by id");
    assert_eq!(by_gpus["total"], 4, "the total counts all pages");
    let expected_j = 200.0 * 60.0 + 150.0 * 120.0 + 350.0 * 20.0;
    let totals = &body["totals"];
    assert!(
        (totals["it_energy_kwh"].as_f64().expect("kwh") - expected_j / 3.6e6).abs() < 1e-9,
        "{totals}"
    );
    let gpu_hours = (60.0 + 120.0 + 2.0 * 20.0 + 2.0 * 30.0) / 3600.0;
    assert!(
        (totals["gpu_hours"].as_f64().expect("h") - gpu_hours).abs() < 1e-9,
        "{totals}"
    );
    assert_eq!(totals["jobs"], 4);
    assert_eq!(
        totals["pending"], 0,
        "each job's energy was stored when it was registered"
    );

    let (_, capped) = app.get(ADMIN, "/api/v1/jobs?cap=250").await;
    assert_eq!(capped["total"], 3, "j4 has no samples, so no measured cap");
    let (_, none) = app.get(ADMIN, "/api/v1/jobs?cap=100W").await;
    assert_eq!(none["total"], 0);
    for (query, field) in [
        ("cap=lots", "cap:"),
        ("sort=fun", "sort:"),
        ("order=up", "order:"),
        ("from=yesterday", "from:"),
    ] {
        let (status, body) = app.get(ADMIN, &format!("/api/v1/jobs?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body["error"].as_str().expect("error").starts_with(field),
            "{body}"
        );
    }
    let (_, day) = app
        .get(
            ADMIN,
            &format!(
                "/api/v1/jobs?from={}",
                (t0 + Duration::days(1)).format("%Y-%m-%d")
            ),
        )
        .await;
    assert_eq!(day["total"], 0, "a date means that day's UTC midnight");

    // Rolling up the first batch marks the jobs it overlaps stale (it was pending when they were
    // stored); recomputing them changes nothing.
    wattlas_server::maintenance::rollup_settled_before(&app.state, Utc::now() + Duration::hours(1))
        .await
        .expect("rollup");
    let refreshed = wattlas_server::maintenance::refresh_job_energy(&app.state, 100)
        .await
        .expect("refresh");
    assert_eq!(refreshed, 3);
    let (_, again) = app.get(ADMIN, "/api/v1/jobs?sort=energy").await;
    assert_eq!(again["totals"], body["totals"]);

    // Samples of j4 arrive late (a collector was offline): the rollup task marks its stored energy
    // stale and the energy task recomputes it; the list then sorts it above j3.
    let (status, body) = app
        .ingest(&token, &batch(samples(t0 + Duration::seconds(300), 30)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wattlas_server::maintenance::rollup_settled_before(&app.state, Utc::now() + Duration::hours(1))
        .await
        .expect("rollup");
    let refreshed = wattlas_server::maintenance::refresh_job_energy(&app.state, 100)
        .await
        .expect("refresh");
    assert_eq!(refreshed, 1, "only j4 was touched by the late data");
    let (_, body) = app.get(ADMIN, "/api/v1/jobs?sort=energy").await;
    assert_eq!(ids(&body), ["j2", "j1", "j4", "j3"]);
    let j4 = body["jobs"][2]["it_energy_kwh"].as_f64().expect("kwh") * 3.6e6;
    assert!((j4 - 350.0 * 30.0).abs() / (350.0 * 30.0) < 0.01, "{j4} J");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_job_page_lists_its_coverage_gaps(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(30);
    // A minute of samples, 30 s of nothing (the collector's host was stalled), another minute.
    for part in [samples(t0, 60), samples(t0 + Duration::seconds(90), 60)] {
        let (status, body) = app.ingest(&token, &batch(part)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"site": "s1", "id": "gappy", "user": "ann", "start": t0 + Duration::seconds(10),
                    "end": t0 + Duration::seconds(140), "allocations": [{"node": "n1", "gpus": [0, 1]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let page = app.get_text(ADMIN, "/jobs/gappy").await.1;
    assert!(
        page.contains("Coverage gaps: 2 stretches of GPU time without samples"),
        "{page}"
    );
    // From the last sample before the stall (59.9 s) to the first after (90.0 s), for each GPU.
    assert_eq!(
        page.matches("<td class=\"num\">30.1 s</td>").count(),
        2,
        "{page}"
    );
    assert!(page.contains("n1/gpu0") && page.contains("n1/gpu1"));
    let job = app.job("gappy").await;
    assert!(
        (job.coverage - 100.0 / 130.0).abs() < 0.002,
        "{}",
        job.coverage
    );
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_stored_job_view_follows_late_meter_readings_and_site_settings(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(90);
    let (status, body) = app.ingest(&token, &batch(samples(t0, 120))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"site": "s1", "id": "late", "user": "alice", "name": "late meter", "start": t0,
                    "end": t0 + Duration::seconds(120), "allocations": [{"node": "n1", "gpus": [0, 1]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // No meter yet: the site's fallback PUE; the summary is stored.
    let before = app.job("late").await;
    assert!((before.pue_fallback_share - 1.0).abs() < 1e-9);
    assert!((before.facility_energy_kwh - before.it_energy_kwh * 1.58).abs() < 1e-12);

    // The meter's readings for those hours arrive afterwards (an import): PUE 1.25.
    let meter = app.meter().await;
    let readings: Vec<Value> = (-14..=14)
        .map(|i| json!({"time": t0 + Duration::minutes(5 * i), "it_kw": 800.0, "total_kw": 1000.0}))
        .collect();
    let (status, body) = app
        .post(
            &meter,
            "/api/v1/ingest/facility",
            &json!({ "readings": readings }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = app.job("late").await;
    assert_eq!(after.pue_fallback_share, 0.0, "{after:?}");
    assert!((after.facility_energy_kwh - after.it_energy_kwh * 1.25).abs() < 1e-12);

    // So does a change of the site's carbon intensity.
    let r = app
        .http
        .put(format!("{}/api/v1/sites/s1", app.base))
        .bearer_auth(ADMIN)
        .json(&json!({"carbon_g_per_kwh": 400.0}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    let priced = app.job("late").await;
    let co2e = priced.co2e_kg.expect("co2e");
    assert!(
        (co2e - after.facility_energy_kwh * 0.4).abs() < 1e-12,
        "{co2e}"
    );
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_four_day_job_is_read_in_hours_and_shows_its_one_gap(db: PgPool) {
    let app = App::spawn(db).await;
    app.node().await;
    let t0 = minute_aligned_past(4 * 24 * 60 + 30);
    // Every minute of GPUs 0 and 1 for four days at 200 W, but none of GPU 1's from minute 3000 to 3119.
    sqlx::query(
        r#"insert into gpu_minute (node_id, gpu_index, minute, samples, covered_s, counter_s, energy_j,
            power_min_w, power_max_w, power_limit_w, power_limit_samples, util_avg_pct)
        select n.id, g, $1 + make_interval(mins => m), 600, 60, 60, 12000, 195, 205, 250, 600, 90
        from nodes n
        cross join generate_series(0, 1) g
        cross join generate_series(0, 4 * 1440 - 1) m
        where n.name = 'n1' and not (g = 1 and m >= 3000 and m < 3120)"#,
    )
    .bind(t0)
    .execute(&app.state.db)
    .await
    .expect("minutes");
    let node: i32 = sqlx::query_scalar("select id from nodes where name = 'n1'")
        .fetch_one(&app.state.db)
        .await
        .expect("node");
    let mut tx = app.state.db.begin().await.expect("tx");
    let end = t0 + Duration::days(4);
    wattlas_server::db::rollups::refresh_hours(
        &mut tx,
        node,
        t0.timestamp_millis(),
        end.timestamp_millis(),
    )
    .await
    .expect("hours");
    tx.commit().await.expect("commit");
    let (minutes, partial): (i64, i64) = sqlx::query_as(
        "select sum(minutes)::int8, count(*) filter (where minutes < 60) from gpu_hour",
    )
    .fetch_one(&app.state.db)
    .await
    .expect("hours");
    // Every minute counted once; incomplete hours only at the two edges of each GPU and around the
    // hole (at most three hours).
    assert_eq!(minutes, 2 * 4 * 1440 - 120);
    assert!(partial <= 7, "{partial}");

    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"site": "s1", "id": "long", "user": "alice", "name": "long run", "start": t0, "end": end,
                    "allocations": [{"node": "n1", "gpus": [0, 1]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let view = app.job("long").await;
    let expected_kwh = (2.0 * 4.0 * 1440.0 - 120.0) * 12_000.0 / 3.6e6;
    assert!((view.it_energy_kwh - expected_kwh).abs() < 1e-9, "{view:?}");

    let (status, page) = app.get_text(ADMIN, "/jobs/long").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Coverage gaps: 1 stretch of GPU time"),
        "{page}"
    );
    // From the last minute before the hole to the first after it.
    assert!(page.contains("<td>n1/gpu1</td>"), "{page}");
    assert!(page.contains("7260.0 s"), "{page}");

    // The chart is drawn from hours: 96 or 97 points a line, not 5,760.
    let (status, svg) = app.get_text(ADMIN, "/jobs/long/power.svg").await;
    assert_eq!(status, StatusCode::OK);
    assert!(svg.contains("n1/gpu0") && svg.contains("n1/gpu1"));
    assert!(svg.len() < 60_000, "{} bytes", svg.len());
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_job_of_many_gpus_is_charted_per_node(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(10);
    let gpus: Vec<GpuIdentity> = (0..18)
        .map(|i| GpuIdentity {
            index: i,
            uuid: format!("GPU-many-{i}"),
            model: "H100".into(),
            default_power_limit_w: Some(700.0),
            keep_known: false,
        })
        .collect();
    let samples: Vec<GpuSample> = (0..100)
        .flat_map(|k| {
            (0..18).map(move |g| GpuSample {
                time: t0 + Duration::milliseconds(100 * k),
                gpu: g,
                power_w: 300.0 + f64::from(g),
                energy_mj: None,
                power_limit_w: Some(700.0),
                util_pct: Some(90.0),
                mem_used_mib: None,
                temp_c: None,
                sm_clock_mhz: None,
            })
        })
        .collect();
    let (status, body) = app
        .ingest(
            &token,
            &GpuBatch {
                node: None,
                gpus,
                samples,
                dropped_samples_total: Some(0),
            },
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"site": "s1", "id": "wide", "user": "alice", "name": "wide", "start": t0,
                    "end": t0 + Duration::seconds(10), "allocations": [{"node": "n1", "gpus": (0..18).collect::<Vec<u32>>()}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, svg) = app.get_text(ADMIN, "/jobs/wide/power.svg").await;
    assert_eq!(status, StatusCode::OK);
    assert!(svg.contains("n1 (mean of 18 GPUs)"), "{svg}");
    assert!(!svg.contains("n1/gpu17"));
}

/// A tag value is the user's text: on the comparison page, in the figures drawn inline as SVG, and in
/// the API, it is text and never markup.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_hostile_tag_value_stays_text_in_the_comparison_page_and_its_figures(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let hostile = r#"<img src=x onerror=alert(1)>&"'"#;
    let mut start = minute_aligned_past(60);
    for (i, (cap, power, seconds)) in [(250.0, 200.0, 60), (150.0, 140.0, 66)]
        .into_iter()
        .enumerate()
    {
        let samples = capped(start, seconds, 1, power, cap);
        let (status, body) = app.ingest(&token, &batch(samples)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let end = start + Duration::seconds(seconds);
        let (status, body) = app
            .post(
                ADMIN,
                "/api/v1/jobs",
                &json!({"site": "s1", "id": format!("h-{i}"), "user": "eve", "name": hostile, "start": start,
                        "end": end, "tags": {"workload": hostile}, "allocations": [{"node": "n1", "gpus": [0]}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        start = end + Duration::seconds(5);
    }
    let tag = format!("workload:{hostile}");
    let url = reqwest::Url::parse_with_params(&format!("{}/powercap", app.base), [("tag", &tag)])
        .expect("url");
    let r = app
        .http
        .get(url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.expect("html");
    assert!(html.contains("<svg"), "the figures are drawn inline");
    assert!(
        !html.contains("<img src=x"),
        "markup from a tag value: {html}"
    );
    // Escaped as an entity, named (plotters' SVG) or numbered (askama's HTML).
    let escaped = |t: &str| t.contains("&lt;img src=x") || t.contains("&#60;img src=x");
    assert!(escaped(&html), "shown as text");
    // The list of comparisons and the jobs' own pages, likewise.
    let (status, list) = app.get_text(ADMIN, "/powercap").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!list.contains("<img src=x") && escaped(&list), "{list}");
    for path in ["/jobs/h-0", "/jobs/h-0/power.svg", "/jobs"] {
        let (status, text) = app.get_text(ADMIN, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            !text.contains("<img src=x"),
            "{path}: {}",
            &text[text.find("<img src=x").unwrap_or(0).saturating_sub(300)..]
                .chars()
                .take(600)
                .collect::<String>()
        );
    }
}

/// Four GPUs of `node` drawing `power_w` every 100 ms over `[t0, t0 + 60 s]`.
async fn node_with_four_gpus(
    app: &App,
    token: &str,
    node: &str,
    t0: chrono::DateTime<Utc>,
    power_w: f64,
) {
    let gpus: Vec<GpuIdentity> = (0..4)
        .map(|i| GpuIdentity {
            index: i,
            uuid: format!("GPU-{node}-{i}"),
            model: "NVIDIA A100-SXM4-40GB".into(),
            default_power_limit_w: Some(400.0),
            keep_known: false,
        })
        .collect();
    let batch = GpuBatch {
        node: None,
        gpus,
        samples: capped(t0, 60, 4, power_w, 400.0),
        dropped_samples_total: None,
    };
    let (status, body) = app.ingest(token, &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn three_prologs_with_their_own_clocks_register_one_twelve_gpu_job(db: PgPool) {
    let app = App::spawn(db).await;
    let n1 = app.node().await;
    let mut tokens = vec![("n1", n1)];
    for name in ["n2", "n3"] {
        let (status, body) = app
            .post(ADMIN, "/api/v1/nodes", &json!({"name": name, "site": "s1"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        tokens.push((name, body["token"].as_str().expect("token").to_owned()));
    }
    let t0 = minute_aligned_past(10);
    let powers = [100.0, 150.0, 200.0];
    // Each node's clock: the prologs ran within 2 s of each other.
    let offsets_ms = [1_000, 0, 2_000];
    let end_offsets_ms = [59_000, 60_000, 58_500];
    for (i, (name, token)) in tokens.iter().enumerate() {
        node_with_four_gpus(&app, token, name, t0, powers[i]).await;
        let start = t0 + Duration::milliseconds(offsets_ms[i]);
        let (status, body) = app
            .post(
                token,
                "/api/v1/jobs",
                &json!({"id": "mn-1", "user": "carol", "name": "ddp", "start": start,
                        "tags": {"workload": "bert-mlm"},
                        "allocations": [{"node": name, "gpus": [0, 1, 2, 3]}]}),
            )
            .await;
        let want = if i == 0 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        assert_eq!(status, want, "{name}: {body}");
    }
    // Each epilog ends its node's part; the job runs until the last one.
    for (i, (name, token)) in tokens.iter().enumerate() {
        let end = t0 + Duration::milliseconds(end_offsets_ms[i]);
        let (status, body) = app
            .post(token, "/api/v1/jobs/mn-1/end", &json!({"end": end}))
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["running"], i < 2, "{name}: {body}");
    }
    let job = app.job("mn-1").await;
    assert_eq!(job.gpu_count, 12);
    assert_eq!(job.start, t0, "the earliest part's start");
    assert_eq!(
        job.end,
        Some(t0 + Duration::seconds(60)),
        "the last part's end"
    );
    // Every GPU drew its node's power over the whole minute: the energy of all 12.
    let expected_j: f64 = powers.iter().map(|p| 4.0 * p * 60.0).sum();
    let got_j = job.it_energy_kwh * 3.6e6;
    assert!(
        (got_j - expected_j).abs() < 1e-6,
        "{got_j} J vs {expected_j} J"
    );

    // A node rewrites no one else's job: not its tags, not its owner, not its end.
    let (n2, n3) = (&tokens[1].1, &tokens[2].1);
    let (status, body) = app
        .post(
            n2,
            "/api/v1/jobs",
            &json!({"id": "mn-1", "user": "carol", "start": t0,
                    "tags": {"workload": "other"},
                    "allocations": [{"node": "n2", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("tags.workload"),
        "{body}"
    );
    let (status, body) = app
        .post(
            n2,
            "/api/v1/jobs",
            &json!({"id": "mn-1", "user": "mallory", "start": t0,
                    "allocations": [{"node": "n2", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = app
        .post(
            n3,
            "/api/v1/jobs",
            &json!({"id": "old-1", "user": "carol", "start": t0, "end": t0 + Duration::seconds(5),
                    "allocations": [{"node": "n3", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a finished job is no node's to register: {body}"
    );
    assert!(
        body["error"].as_str().expect("error").starts_with("end:"),
        "{body}"
    );
    // n1's own job: n3 holds no part of it and cannot end it.
    let (status, body) = app
        .post(
            &tokens[0].1,
            "/api/v1/jobs",
            &json!({"id": "solo", "user": "dan", "start": t0,
                    "allocations": [{"node": "n1", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = app
        .post(
            n3,
            "/api/v1/jobs/solo/end",
            &json!({"end": t0 + Duration::seconds(30)}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let solo = app.job("solo").await;
    assert!(solo.running && solo.tags.is_empty() && solo.gpu_count == 1);
    let after = app.job("mn-1").await;
    assert_eq!(
        after.tags.get("workload").map(String::as_str),
        Some("bert-mlm")
    );
    assert_eq!((after.user.as_str(), after.gpu_count), ("carol", 12));
}

/// An importer sends two batches of a node at once, both naming GPUs the server has not seen: whichever
/// commits second must still find them (it waited on the first's rows, which its snapshot predates).
/// Failed about one time in two on nodes of 8 new GPUs before the fix.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn concurrent_batches_of_new_gpus_both_find_them(db: PgPool) {
    let app = App::spawn(db).await;
    app.node().await;
    let t0 = minute_aligned_past(30);
    for n in 0..12 {
        let node = format!("imp{n}");
        let (status, body) = app
            .post(ADMIN, "/api/v1/nodes", &json!({"name": node, "site": "s1"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let gpus: Vec<GpuIdentity> = (0..8)
            .map(|i| GpuIdentity {
                index: i,
                uuid: "unknown (imported log)".into(),
                model: "unknown".into(),
                default_power_limit_w: None,
                keep_known: true,
            })
            .collect();
        let batch = |from_s: i64| GpuBatch {
            node: Some(node.clone()),
            gpus: gpus.clone(),
            samples: capped(t0 + Duration::seconds(from_s), 5, 8, 100.0, 300.0),
            dropped_samples_total: None,
        };
        let (a, b) = (batch(0), batch(600));
        let (ra, rb) = tokio::join!(app.ingest(ADMIN, &a), app.ingest(ADMIN, &b));
        assert_eq!(ra.0, StatusCode::OK, "{node}: {}", ra.1);
        assert_eq!(rb.0, StatusCode::OK, "{node}: {}", rb.1);
    }
}

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

/// One reading stored before readings were bounded (`it_kw` 1e-300, `total_kw` 1e308) made every PUE
/// page and statement of its site a 500 (the ratio overflowed in SQL). Now such a reading is refused,
/// one already stored is left out of the hours, and an admin deletes a meter's readings in a range.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_broken_meter_reading_breaks_no_page_and_can_be_deleted(db: PgPool) {
    let app = App::spawn(db).await;
    let t0 = one_minute_job(&app, "m1", "ann", 120).await;
    let token = app.meter().await;
    let (status, body) = app
        .post(
            &token,
            "/api/v1/ingest/facility",
            &json!({"readings": [{"time": t0, "it_kw": 1e-300, "total_kw": 1e308}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("readings[0].total_kw: 1e308 is over"),
        "{body}"
    );
    let readings: Vec<Value> = (0..6)
        .map(|i| json!({"time": t0 + Duration::minutes(5 * i), "it_kw": 100.0, "total_kw": 130.0}))
        .collect();
    let (status, body) = app
        .post(
            &token,
            "/api/v1/ingest/facility",
            &json!({"readings": readings}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // As an older server stored it.
    sqlx::query(
        "insert into facility_readings (meter_id, time, it_kw, total_kw) select id, $1, 1e-300, 1e308 from meters",
    )
    .bind(t0 + Duration::minutes(2))
    .execute(&app.state.db)
    .await
    .expect("insert");
    let range = format!(
        "from={}&to={}",
        (t0 - Duration::hours(1)).to_rfc3339().replace('+', "%2B"),
        (t0 + Duration::hours(1)).to_rfc3339().replace('+', "%2B")
    );
    let (status, hours) = app
        .get(ADMIN, &format!("/api/v1/sites/s1/pue/hourly?{range}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{hours}");
    let pue = hours[0]["weighted_pue"].as_f64().expect("pue");
    assert!(
        (pue - 1.3).abs() < 1e-9,
        "the broken reading is left out: {hours}"
    );
    for page in [
        "/sites/s1/pue",
        "/api/v1/statement?jobs=m1&format=json",
        "/jobs/m1",
    ] {
        let (status, body) = app.get_text(ADMIN, page).await;
        assert!(status.is_success(), "{page}: {status} {body}");
    }
    let (status, body) = app
        .http
        .delete(format!("{}/api/v1/meters/m1/readings?{range}", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .map(|r| (r.status(), r))
        .expect("delete");
    assert_eq!(status, StatusCode::OK);
    let body: Value = body.json().await.expect("json");
    assert_eq!(body["deleted"], 7);
    let (_, hours) = app
        .get(ADMIN, &format!("/api/v1/sites/s1/pue/hourly?{range}"))
        .await;
    assert_eq!(hours, json!([]));
}

/// Every GET route with a query, every parameter it reads, hostile values: never a 5xx (before, three
/// made handlers panic), and a 400 names the parameter. Pages and API alike.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn every_get_route_answers_hostile_query_values_with_400_naming_them(db: PgPool) {
    let app = App::spawn(db).await;
    one_minute_job(&app, "h1", "alice", 10).await;
    let list = [
        "user", "site", "tag", "cap", "state", "from", "to", "sort", "order", "limit", "offset",
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

/// Site s1, node n1, a minute of its two GPUs' samples from `minutes_ago` (minute-aligned), and a
/// finished job `id` of `user` over that minute, tagged workload=x. Returns the job's start.
async fn one_minute_job(
    app: &App,
    id: &str,
    user: &str,
    minutes_ago: i64,
) -> chrono::DateTime<Utc> {
    let token = app.node().await;
    let t0 = minute_aligned_past(minutes_ago);
    let (status, _) = app.ingest(&token, &batch(samples(t0, 60))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"id": id, "user": user, "site": "s1", "start": t0,
                    "end": t0 + Duration::seconds(60), "tags": {"workload": "x"},
                    "allocations": [{"node": "n1", "gpus": [0, 1]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    t0
}
