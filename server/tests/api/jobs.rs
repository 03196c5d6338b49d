//! Jobs: energy against a hand computation, running jobs, the list and its CSV, and one job registered
//! by several nodes' prologs.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

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
    // Its bound (issue 35): the sensor's ±5 % of the GPU energy below, and above that plus what the
    // GPU could have drawn at its 250 W limit in the uncovered half of its time.
    let it = job.it_energy_kwh;
    let sensor = job
        .bound_terms
        .iter()
        .find(|t| t.kind == "gpu_sensor")
        .expect("the sensor's term");
    assert!((sensor.below_kwh - 0.05 * job.gpu_energy_kwh).abs() < 1e-12);
    let gaps = job
        .bound_terms
        .iter()
        .find(|t| t.kind == "gpu_gaps")
        .expect("the gaps' term");
    let uncovered_s = (1.0 - job.coverage) * job.duration_s;
    assert!(
        (gaps.above_kwh - 250.0 * uncovered_s / 3.6e6).abs() < 250.0 * 0.5 / 3.6e6,
        "{} vs {uncovered_s} s at 250 W",
        gaps.above_kwh
    );
    assert!((job.it_energy_kwh_low.expect("low") - (it - sensor.below_kwh)).abs() < 1e-12);
    assert!(
        (job.it_energy_kwh_high.expect("high") - (it + sensor.above_kwh + gaps.above_kwh)).abs()
            < 1e-12
    );
    // No meter: every hour charged the assumed PUE, so the facility energy may hold anywhere from no
    // overhead to twice the assumed one.
    let (fl, fh) = (
        job.facility_energy_kwh_low.expect("low"),
        job.facility_energy_kwh_high.expect("high"),
    );
    assert!(
        (fl - job.it_energy_kwh_low.expect("low")).abs() < 1e-12,
        "PUE 1 below"
    );
    let pue = job.pue.expect("pue");
    assert!(
        (fh - job.it_energy_kwh_high.expect("high") * (1.0 + 2.0 * (pue - 1.0))).abs() < 1e-9,
        "twice the overhead above: {fh}"
    );

    // Its page updates its figures in place (the browser test drives it) and says they are so far;
    // its power chart draws its cap.
    let (_, page) = app.get_text(ADMIN, "/jobs/r1").await;
    assert!(
        page.contains("<script src=\"/static/live.js\" defer></script>")
            && page.contains("<p class=\"live\" data-live-s=\"30\">")
            && !page.contains("http-equiv=\"refresh\""),
        "{page}"
    );
    assert!(page.contains("its figures are so far"), "{page}");
    let (_, svg) = app.get_text(ADMIN, "/jobs/r1/power.svg").await;
    assert!(svg.contains("Power cap per GPU, 250 W"), "{svg}");

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
    // Power per GPU beside the per-GPU cap, then the bounds (issue 35).
    assert!(
        header.ends_with(",running,avg_power_per_gpu_w,it_energy_kwh_low,it_energy_kwh_high,facility_energy_kwh_low,facility_energy_kwh_high,co2e_kg_low,co2e_kg_high,sensor_aliasing"),
        "{header}"
    );
    let cells: Vec<&str> = row.rsplit(',').collect();
    // Ten seconds compare nothing: not flagged (and said, not left empty).
    assert_eq!(cells[0], "false", "{row}");
    let per_gpu: f64 = cells[7].parse().expect("a number");
    let (low, high): (f64, f64) = (
        cells[6].parse().expect("low"),
        cells[5].parse().expect("high"),
    );
    assert!(
        low < job.it_energy_kwh && job.it_energy_kwh < high,
        "{low} {high}"
    );
    assert!(job.gpu_count > 0);
    assert_eq!(
        job.avg_power_per_gpu_w.map(|w| format!("{w:.2}")),
        Some(format!("{per_gpu:.2}")),
        "the JSON's and the CSV's"
    );
    assert!(
        (per_gpu - job.avg_power_w / f64::from(job.gpu_count)).abs() < 0.01,
        "{per_gpu} vs {} W over {} GPUs",
        job.avg_power_w,
        job.gpu_count
    );
    // The page links to the export of its filter.
    let page = app.get_text(ADMIN, "/jobs?user=gil").await.1;
    assert!(
        page.contains("/jobs.csv?user=gil"),
        "export link keeps the filter"
    );
    // Each row's energy says its bound on hover.
    assert!(
        page.contains(&format!(
            "title=\"between {:.4} and {:.4} kWh\">{:.4}</td>",
            job.it_energy_kwh_low.expect("low"),
            job.it_energy_kwh_high.expect("high"),
            job.it_energy_kwh
        )),
        "{page}"
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
    // The totals' bounds are the jobs' added (issue 35): nothing is assumed to cancel.
    for field in [
        "it_energy_kwh_low",
        "it_energy_kwh_high",
        "facility_energy_kwh_low",
        "facility_energy_kwh_high",
    ] {
        let added: f64 = body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j[field].as_f64().expect("each job's bound"))
            .sum();
        let total = totals[field].as_f64().expect("the total's bound");
        assert!((total - added).abs() < 1e-12, "{field}: {total} vs {added}");
    }
    assert!(
        totals["it_energy_kwh_low"].as_f64() < totals["it_energy_kwh"].as_f64()
            && totals["it_energy_kwh"].as_f64() < totals["it_energy_kwh_high"].as_f64()
    );
    // The page says them beside the totals.
    let (_, page) = app.get_text(ADMIN, "/jobs").await;
    let (lo, hi) = (
        totals["it_energy_kwh_low"].as_f64().expect("lo"),
        totals["it_energy_kwh_high"].as_f64().expect("hi"),
    );
    assert!(
        page.contains(&format!(
            "kWh IT <span class=\"basis\">(between {lo:.2} and {hi:.2})</span>"
        )),
        "{page}"
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
    // (Bounds are sums of floating-point terms recomputed from the minutes: equal to 1e-12.)
    let fields = body["totals"].as_object().expect("totals");
    assert_eq!(
        again["totals"].as_object().expect("totals").len(),
        fields.len()
    );
    for (field, was) in fields {
        let now = again["totals"][field].as_f64().expect("a number");
        let was = was.as_f64().expect("a number");
        assert!(
            (now - was).abs() <= 1e-12 * was.abs().max(1.0),
            "{field}: {now} vs {was}"
        );
    }

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

/// The kept totals (`job_totals`, kept by triggers, folded by the energy task) against the same totals
/// counted over the jobs, for every filter they serve, through every change: jobs registered, their
/// energy stored, marked stale by late data and recomputed, jobs ending (while their energy is written
/// at the same time), a job deleted; before and after folding.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn the_kept_job_totals_match_totals_counted_over_the_jobs_through_every_change(db: PgPool) {
    use wattlas_server::db::jobs::{fold_totals, totals, JobFilter};

    let app = App::spawn(db).await;
    let token = app.node().await;
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/sites",
            &json!({"name": "s2", "timezone": "UTC"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post(ADMIN, "/api/v1/nodes", &json!({"name": "n2", "site": "s2"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let t0 = minute_aligned_past(40);
    for part in 0..6 {
        let (status, body) = app
            .ingest(
                &token,
                &batch(samples(t0 + Duration::seconds(100 * part), 100)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let check = |stage: &'static str| {
        let db = app.state.db.clone();
        async move {
            let mut filters = Vec::new();
            for user in [None, Some("ann"), Some("bob"), Some("nobody")] {
                for site in [None, Some("s1"), Some("s2")] {
                    for running in [None, Some(true), Some(false)] {
                        filters.push(JobFilter {
                            user: user.map(str::to_owned),
                            site: site.map(str::to_owned),
                            running,
                            ..JobFilter::default()
                        });
                    }
                }
            }
            filters.push(JobFilter {
                owner: Some("ann".to_owned()),
                ..JobFilter::default()
            });
            for filter in filters {
                let (kept, kept_updating) = totals(&db, &filter).await.expect("kept");
                // A `from` before every job makes the same selection, counted job by job.
                let counted_filter = JobFilter {
                    from: Some(Utc::now() - Duration::days(3650)),
                    ..filter.clone()
                };
                let (counted, counted_updating) =
                    totals(&db, &counted_filter).await.expect("counted");
                let what = format!("{stage}: {filter:?}: kept {kept:?}, counted {counted:?}");
                assert_eq!(kept.jobs, counted.jobs, "{what}");
                assert_eq!(kept.pending, counted.pending, "{what}");
                assert_eq!(kept_updating, counted_updating, "{what}");
                // Every summary is computed with its bound here: both totals carry theirs.
                let bound = |t: &wattlas_protocol::JobTotals| {
                    [
                        t.it_energy_kwh_low,
                        t.it_energy_kwh_high,
                        t.facility_energy_kwh_low,
                        t.facility_energy_kwh_high,
                    ]
                    .map(|v| v.expect("a bound"))
                };
                let (kb, cb) = (bound(&kept), bound(&counted));
                assert!(
                    kb[0] <= kept.it_energy_kwh && kept.it_energy_kwh <= kb[1],
                    "{what}"
                );
                for (a, b) in [
                    (kept.gpu_hours, counted.gpu_hours),
                    (kept.it_energy_kwh, counted.it_energy_kwh),
                    (kept.facility_energy_kwh, counted.facility_energy_kwh),
                    (kb[0], cb[0]),
                    (kb[1], cb[1]),
                    (kb[2], cb[2]),
                    (kb[3], cb[3]),
                ] {
                    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}");
                }
            }
        }
    };

    // Finished and running jobs of two users at two sites.
    for (i, user) in ["ann", "bob", "ann"].iter().enumerate() {
        let from = t0 + Duration::seconds(60 * i as i64);
        app.new_job(&format!("done-{i}"))
            .user(user)
            .gpus(&[0])
            .start(from)
            .end(from + Duration::seconds(50))
            .create()
            .await;
    }
    for i in 0..12 {
        app.new_job(&format!("run-{i}"))
            .user(if i % 3 == 0 { "bob" } else { "ann" })
            .node(if i % 2 == 0 { "n1" } else { "n2" })
            .site(if i % 2 == 0 { "s1" } else { "s2" })
            .gpus(&[1])
            .start(t0 + Duration::seconds(200 + i))
            .running()
            .create()
            .await;
    }
    check("registered").await;
    let (_, body) = app.get(ADMIN, "/api/v1/jobs").await;
    assert_eq!(body["totals"]["jobs"], 15, "{body}");
    assert!(body["totals"]["it_energy_kwh"].as_f64().expect("kwh") > 0.0);

    // Late data for the first minutes: the rollup marks jobs there stale; the energy task recomputes.
    let (status, body) = app
        .ingest(&token, &batch(samples(t0 - Duration::seconds(30), 30)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    check("raw data waiting").await;
    wattlas_server::maintenance::rollup_settled_before(&app.state, Utc::now() + Duration::hours(1))
        .await
        .expect("rollup");
    check("marked stale").await;
    wattlas_server::maintenance::refresh_job_energy(&app.state, 100)
        .await
        .expect("refresh");
    check("recomputed").await;
    let folded = fold_totals(&app.state.db).await.expect("fold");
    assert!(folded > 10, "{folded} rows of changes");
    check("folded").await;
    let rows: i64 = sqlx::query_scalar("select count(*) from job_totals")
        .fetch_one(&app.state.db)
        .await
        .expect("rows");
    assert!(rows <= 6, "one row per site, user and state: {rows}");

    // The running jobs end while their energy is written (each job at once by both).
    let mut work = Vec::new();
    for i in 0..12 {
        let id = format!("run-{i}");
        let end = t0 + Duration::seconds(400 + i);
        let (http, base) = (app.http.clone(), app.base.clone());
        let (site, node) = if i % 2 == 0 {
            ("s1", "n1")
        } else {
            ("s2", "n2")
        };
        let user = if i % 3 == 0 { "bob" } else { "ann" };
        let body = json!({"id": id, "user": user, "site": site, "start": t0 + Duration::seconds(200 + i),
            "end": end, "allocations": [{"node": node, "gpus": [1]}]});
        work.push(tokio::spawn(async move {
            let r = http
                .post(format!("{base}/api/v1/jobs"))
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
                .await
                .expect("end");
            let status = r.status();
            assert!(
                status.is_success(),
                "{status}: {}",
                r.text().await.unwrap_or_default()
            );
        }));
        let state = app.state.clone();
        work.push(tokio::spawn(async move {
            let job = wattlas_server::db::jobs::by_id(&state.db, &id)
                .await
                .expect("job")
                .expect("there");
            let ctx = wattlas_server::service::jobs::JobContext::of(&state, job)
                .await
                .expect("context");
            wattlas_server::service::jobs::computed_view(&state, &ctx)
                .await
                .expect("energy");
        }));
    }
    for w in work {
        w.await.expect("task");
    }
    check("ended while computed").await;
    wattlas_server::maintenance::refresh_job_energy(&app.state, 100)
        .await
        .expect("refresh");
    check("ended, recomputed").await;
    let (_, body) = app.get(ADMIN, "/api/v1/jobs?state=running").await;
    assert_eq!(body["totals"]["jobs"], 0, "{body}");

    // A job deleted (by hand: the server never deletes jobs) leaves with its energy.
    for table in ["job_allocations", "job_parts", "job_node_cpus"] {
        sqlx::query(&format!("delete from {table} where job_id = 'done-1'"))
            .execute(&app.state.db)
            .await
            .expect("delete");
    }
    sqlx::query("delete from jobs where id = 'done-1'")
        .execute(&app.state.db)
        .await
        .expect("delete");
    check("deleted").await;
    fold_totals(&app.state.db).await.expect("fold");
    check("deleted, folded").await;
    let (_, body) = app.get(ADMIN, "/api/v1/jobs?user=bob").await;
    assert_eq!(body["totals"]["jobs"], 4, "{body}");
}
