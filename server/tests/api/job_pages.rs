//! Job pages and views: coverage gaps, stored views that follow late data, long jobs read in hours,
//! charts of many GPUs, and what one page costs (one read of the allocations, one integration).

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_protocol::{GpuBatch, GpuIdentity, GpuSample};
use wattlas_server::ids::NodeId;

use crate::common::*;

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
    let (status, body) = app.facility(&meter, &json!(readings)).await;
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
    let node: NodeId = sqlx::query_scalar("select id from nodes where name = 'n1'")
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
                power_instant_w: None,
                power_source: None,
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
                clock_steps: None,
                node_energy: vec![],
                node_cpus: None,
                dropped_ranges: Vec::new(),
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

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_job_page_reads_its_allocations_once_and_integrates_its_energy_once_at_most(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(30);
    // One workload at two caps: the advice line has a comparison to read.
    app.new_job("full")
        .tag("workload", "w")
        .samples(&token, capped(t0, 60, 1, 200.0, 250.0))
        .create()
        .await;
    let t1 = t0 + Duration::minutes(2);
    app.new_job("capped")
        .tag("workload", "w")
        .samples(&token, capped(t1, 70, 1, 150.0, 200.0))
        .create()
        .await;
    let reports: Vec<Value> = (0..=6)
        .map(|step| {
            json!({"time": t1 + Duration::seconds(10 * step), "step": step,
                           "metrics": {"loss": 3.0 - 0.3 * step as f64}})
        })
        .collect();
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs/capped/progress",
            &Value::Array(reports),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Rolled up and summarised, as the background tasks leave them.
    wattlas_server::maintenance::rollup_once(&app.state)
        .await
        .expect("rollup");
    wattlas_server::maintenance::refresh_job_energy(&app.state, 100)
        .await
        .expect("refresh");
    let reads = |app: &App| app.state.metrics.job_reads();
    let comparisons = |app: &App| {
        let db = app.state.db.clone();
        async move {
            sqlx::query_scalar::<_, chrono::DateTime<Utc>>(
                "select computed_at from cap_comparisons where tag = 'workload:w'",
            )
            .fetch_optional(&db)
            .await
            .expect("query")
        }
    };
    // A page with progress: the summary is fresh (stored at registration), progress needs minutes.
    for round in 0..2 {
        let before = reads(&app);
        let (status, page) = app.get_text(ADMIN, "/jobs/capped").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("/jobs/capped/progress/loss.svg"), "{page}");
        assert!(
            page.contains("/powercap?tag=workload%3Aw"),
            "the cap advice: {page}"
        );
        let after = reads(&app);
        assert_eq!(
            after.0 - before.0,
            1,
            "round {round}: one read of the allocations"
        );
        assert_eq!(
            after.1 - before.1,
            1,
            "round {round}: one integration, for progress"
        );
    }
    let stored_at = comparisons(&app)
        .await
        .expect("the page stored the comparison");
    // Without reports, and a fresh summary: no integration at all.
    let before = reads(&app);
    let (status, page) = app.get_text(ADMIN, "/jobs/full").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("/powercap?tag=workload%3Aw"), "{page}");
    let after = reads(&app);
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 0));
    assert_eq!(
        comparisons(&app).await,
        Some(stored_at),
        "read as stored, not compared again"
    );
    // A third job of the workload ends: the stored comparison is compared again on the next page.
    app.new_job("third")
        .tag("workload", "w")
        .samples(
            &token,
            capped(t1 + Duration::minutes(2), 80, 1, 120.0, 150.0),
        )
        .create()
        .await;
    wattlas_server::maintenance::rollup_once(&app.state)
        .await
        .expect("rollup");
    let (_, page) = app.get_text(ADMIN, "/jobs/full").await;
    assert!(page.contains("/powercap?tag=workload%3Aw"), "{page}");
    assert!(comparisons(&app).await > Some(stored_at), "compared again");
    // The API's view of a job reads the stored summary: no integration.
    let before = reads(&app);
    let job = app.job("full").await;
    assert!(job.it_energy_kwh > 0.0);
    assert_eq!(reads(&app).1, before.1);
}

/// A path no route has, and a job that does not exist, answer one HTML 404 page; a signed-in person
/// keeps the page header (name, role's links, sign out); the API answers JSON.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn missing_pages_answer_the_html_404_page_with_the_header(db: PgPool) {
    let app = App::spawn(db).await;
    add_user(&app, "alice", wattlas_server::db::users::Role::Researcher).await;
    let alice = crate::sign_in::browser(&app, "alice").await;
    for (path, says) in [
        ("/no/such/page", "There is no page at /no/such/page."),
        ("/jobs/nope", "no job"),
    ] {
        let r = app
            .http
            .get(format!("{}{path}", app.base))
            .header("cookie", format!("wattlas_session={}", alice.cookie))
            .send()
            .await
            .expect("page");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let ct = r.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .expect("ct")
            .to_owned();
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        let body = r.text().await.expect("text");
        assert!(body.contains("<h1>Error 404</h1>"), "{path}: {body}");
        assert!(
            body.to_lowercase().contains(&says.to_lowercase()),
            "{path}: {body}"
        );
        assert!(
            body.contains(">alice</a>")
                && body.contains("Sign out")
                && body.contains("href=\"/jobs\""),
            "{path}: the header is kept: {body}"
        );
        assert!(
            !body.contains("href=\"/admin\""),
            "{path}: a researcher's header"
        );
    }
    // Anonymous: the same page, without a header to show.
    let r = app
        .http
        .get(format!("{}/no/such/page", app.base))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body = r.text().await.expect("text");
    assert!(
        body.contains("There is no page at /no/such/page.") && !body.contains("Sign out"),
        "{body}"
    );
    // The path is shown escaped.
    let r = app
        .http
        .get(format!("{}/%3Cb%3Ebold", app.base))
        .send()
        .await
        .expect("page");
    let body = r.text().await.expect("text");
    assert!(!body.contains("<b>bold"), "{body}");
    // The API keeps JSON.
    let (status, body) = app.get(ADMIN, "/api/v1/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no such API route");
    // A refused query on a page: an HTML page with the header, not JSON.
    let r = app
        .http
        .get(format!("{}/jobs?limit=many", app.base))
        .header("cookie", format!("wattlas_session={}", alice.cookie))
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.expect("text");
    assert!(
        body.contains("limit") && body.contains(">alice</a>"),
        "{body}"
    );
}
