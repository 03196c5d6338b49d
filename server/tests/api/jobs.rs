//! Jobs: energy against a hand computation, running jobs, the list, CSV, coverage gaps, stored views,
//! long jobs, many GPUs, and one job registered by several nodes' prologs.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_protocol::{GpuBatch, GpuIdentity, GpuSample};

use crate::common::*;

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
    app.new_job("r1")
        .user("bob")
        .start(start)
        .running()
        .create()
        .await;
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
