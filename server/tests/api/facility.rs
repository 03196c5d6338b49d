//! Facility meters and PUE: readings validated and stored once, each hour charged its own PUE, energy
//! counters, and a broken meter's readings deleted.

use chrono::{Duration, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_protocol::GpuSample;

use crate::common::*;

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
    let (status, body) = app.facility(&token, &json!(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "readings[4].total_kw: 700 is below it_kw 800"
    );
    let mut bad = readings.clone();
    bad[2]["it_kw"] = json!(-5.0);
    let (status, body) = app.facility(&token, &json!(bad)).await;
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

    let (status, body) = app.facility(&token, &json!(readings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"stored": 12, "duplicates": 0}));
    let (_, body) = app.facility(&token, &json!(readings[6..])).await;
    assert_eq!(body, json!({"stored": 0, "duplicates": 6}));
    assert_eq!(count().await, 12);

    // Tokens keep to their kind.
    let (status, _) = app.facility(&node_token, &json!(readings)).await;
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
    // Each with where it lies (issue 35): two class-1 meters, ±2 %.
    assert!(hours.iter().all(|h| {
        (h["pue_low"].as_f64().expect("low") - 1.176).abs() < 1e-12
            && (h["pue_high"].as_f64().expect("high") - 1.224).abs() < 1e-12
    }));
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
    let (status, _) = app.facility(&mtoken, &json!(readings)).await;
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
    assert!(
        html.contains("<td>m1 (<a href=\"/meters/m1/calibration\">against its nodes</a>)</td>"),
        "meters listed, each with its comparison"
    );
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
    let (status, body) = app.facility(&token, &json!(readings)).await;
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

/// One reading stored before readings were bounded (`it_kw` 1e-300, `total_kw` 1e308) made every PUE
/// page and statement of its site a 500 (the ratio overflowed in SQL). Now such a reading is refused,
/// one already stored is left out of the hours, and an admin deletes a meter's readings in a range.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_broken_meter_reading_breaks_no_page_and_can_be_deleted(db: PgPool) {
    let app = App::spawn(db).await;
    let t0 = one_minute_job(&app, "m1", "ann", 120).await;
    let token = app.meter().await;
    let (status, body) = app
        .facility(
            &token,
            &json!([{"time": t0, "it_kw": 1e-300, "total_kw": 1e308}]),
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
    let (status, body) = app.facility(&token, &json!(readings)).await;
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

/// An admin's import may name a meter not yet known, with its site, and registers it: under the same
/// name check as `POST /api/v1/meters` (it had none: a name with spaces and a slash was stored, and its
/// pages' URLs broke).
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn an_import_registers_an_unknown_meter_only_under_a_valid_name(db: PgPool) {
    let app = App::spawn(db).await;
    app.node().await; // site s1
    app.meter().await;
    let t0 = minute_aligned_past(30);
    let readings = json!([{"time": t0, "it_kw": 800.0, "total_kw": 960.0}]);
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/ingest/facility",
            &json!({"meter": "hall 2/east", "site": "s1", "readings": readings}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"],
        "meter: must be 1 to 200 of A-Z a-z 0-9 - _ ."
    );
    let (_, meters) = app.get(ADMIN, "/api/v1/meters").await;
    let names: Vec<&str> = meters
        .as_array()
        .expect("meters")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["m1"], "nothing registered by the refused import");

    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/ingest/facility",
            &json!({"meter": "hall-2-east", "site": "s1", "readings": readings}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"], 1);
    let (_, meters) = app.get(ADMIN, "/api/v1/meters").await;
    let names: Vec<&str> = meters
        .as_array()
        .expect("meters")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["hall-2-east", "m1"]);
}

/// Yesterday's and today's PUE as values (issue 31: only charts showed them): each local day of the
/// site (America/New_York) is the mean of its measured hours, with how many of how many; each hour's
/// value is in its row; the overview says the same figures.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn yesterday_and_today_pue_are_values(db: PgPool) {
    use chrono::{TimeZone, Timelike};
    let app = App::spawn(db).await;
    app.node().await;
    let token = app.meter().await;
    let tz: chrono_tz::Tz = "America/New_York".parse().expect("zone");
    let now = Utc::now();
    let today = now.with_timezone(&tz).date_naive();
    let midnight = |d: chrono::NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .expect("local midnight")
            .with_timezone(&Utc)
    };
    let y0 = midnight(today.pred_opt().expect("yesterday"));
    let t0 = midnight(today);
    // Yesterday: every hour but 03:00, at PUE 1.2 + 0.01 x hour; today: every whole hour so far at 1.5.
    let mut readings = Vec::new();
    let mut yesterday_pues = Vec::new();
    let mut hour = y0;
    while hour < t0 {
        let local = hour.with_timezone(&tz).hour();
        if local != 3 {
            let pue = 1.2 + 0.01 * f64::from(local);
            yesterday_pues.push(pue);
            readings.push(json!({"time": hour + Duration::minutes(30), "it_kw": 100.0, "total_kw": 100.0 * pue}));
        }
        hour += Duration::hours(1);
    }
    let mut today_hours = 0;
    let mut hour = t0;
    while hour <= now - Duration::seconds(5) {
        readings.push(json!({"time": hour, "it_kw": 100.0, "total_kw": 150.0}));
        today_hours += 1;
        hour += Duration::hours(1);
    }
    let (status, body) = app.facility(&token, &json!(readings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, recent) = app.get(ADMIN, "/api/v1/sites/s1/pue/recent").await;
    assert_eq!(status, StatusCode::OK, "{recent}");
    let y = &recent["yesterday"];
    assert_eq!(y["date"], json!(today.pred_opt().expect("d").to_string()));
    assert_eq!(y["hours"], json!(yesterday_pues.len()), "{recent}");
    assert_eq!(y["of_hours"], json!((t0 - y0).num_hours()), "{recent}");
    let mean = yesterday_pues.iter().sum::<f64>() / yesterday_pues.len() as f64;
    assert!(
        (y["mean_pue"].as_f64().expect("mean") - mean).abs() < 1e-9,
        "{recent}"
    );
    assert!(
        (y["min_pue"].as_f64().expect("min") - 1.2).abs() < 1e-9,
        "{recent}"
    );
    let t = &recent["today"];
    assert_eq!(t["date"], json!(today.to_string()));
    assert_eq!(t["hours"], json!(today_hours), "{recent}");
    assert!(
        (t["mean_pue"].as_f64().expect("mean") - 1.5).abs() < 1e-9,
        "{recent}"
    );
    let rows = recent["by_hour"].as_array().expect("rows");
    assert_eq!(rows.len(), 24);
    assert_eq!(
        rows[3][1],
        json!(null),
        "the hour without a reading: {}",
        rows[3]
    );
    assert!((rows[4][1].as_f64().expect("04:00") - 1.24).abs() < 1e-9);
    assert!((rows[0][2].as_f64().expect("today 00:00") - 1.5).abs() < 1e-9);

    // The overview shows the same two figures.
    let (status, page) = app.get_text(ADMIN, "/overview").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&format!("<dt>PUE yesterday</dt><dd>{mean:.2}</dd>")),
        "{page}"
    );
    // With where it lies: ±2 % of the mean (issue 35), in the API and beside the value.
    let (lo, hi) = (mean * 0.98, mean * 1.02);
    assert!((recent["yesterday"]["mean_pue_low"].as_f64().expect("low") - lo).abs() < 1e-12);
    assert!((recent["yesterday"]["mean_pue_high"].as_f64().expect("high") - hi).abs() < 1e-12);
    assert!(
        page.contains(&format!(
            "mean of {} of {} hours, 1.20–1.43; true value {lo:.2}–{hi:.2} (meters ±2 %)",
            yesterday_pues.len(),
            (t0 - y0).num_hours()
        )),
        "{page}"
    );
    assert!(
        page.contains("<dt>PUE today so far</dt><dd>1.50</dd>"),
        "{page}"
    );
}

/// Issue 35, item 6: a meter that measures a known node (a PDU meter) is compared with the node's
/// collectors hour by hour where both covered the whole hour: 350 W of GPUs against 500 W metered is
/// a ratio of 0.7. Admins name the nodes (an unknown one is refused, naming the field); staff read it.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_meter_is_compared_with_the_collectors_of_its_nodes(db: PgPool) {
    use wattlas_server::db::users::Role;
    let app = App::spawn(db).await;
    let node = app.node().await;
    let meter = app.meter().await;
    add_user(&app, "sam", Role::Staff).await;
    add_user(&app, "alice", Role::Researcher).await;
    let (sam, alice) = (api_token(&app, "sam").await, api_token(&app, "alice").await);
    let h0 = Utc::now()
        .duration_trunc(Duration::hours(1))
        .expect("trunc")
        - Duration::hours(2);
    // Both GPUs of n1 over two whole hours (GPU 0 at 200 W, GPU 1's counter at 150 W).
    for chunk in samples(h0 - Duration::seconds(5), 2 * 3600 + 10).chunks(4000) {
        let (status, body) = app.ingest(&node, &batch(chunk.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    while wattlas_server::maintenance::rollup_settled_before(
        &app.state,
        Utc::now() + Duration::hours(1),
    )
    .await
    .expect("rollup")
        > 0
    {}
    // The PDU meter: 0.5 kW every 5 minutes from before h0 to now.
    let readings: Vec<Value> = (0..=40)
        .map(|k| json!({"time": h0 - Duration::minutes(10) + Duration::minutes(5 * k), "it_kw": 0.5, "total_kw": 0.6}))
        .filter(|r| r["time"].as_str().is_some_and(|t| t < Utc::now().to_rfc3339().as_str()))
        .collect();
    let (status, body) = app.facility(&meter, &json!(readings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Naming its nodes: admins only, known nodes only.
    let (status, _) = app
        .put(&alice, "/api/v1/meters/m1/nodes", &json!({"nodes": ["n1"]}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .put(
            ADMIN,
            "/api/v1/meters/m1/nodes",
            &json!({"nodes": ["n1", "nowhere"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("error")
        .starts_with("nodes: no node 'nowhere'"));
    let (status, body) = app
        .put(ADMIN, "/api/v1/meters/m1/nodes", &json!({"nodes": ["n1"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["nodes"], json!(["n1"]));

    let (status, _) = app
        .get(&alice, "/api/v1/meters/m1/calibration?days=2")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "facility detail is staff's");
    let (status, c) = app.get(&sam, "/api/v1/meters/m1/calibration?days=2").await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["nodes"], json!(["n1"]));
    assert_eq!(c["models"], json!(["Tesla V100-SXM2-32GB"]));
    let days = c["days"].as_array().expect("days");
    let hours: u64 = days
        .iter()
        .map(|d| d["hours"].as_u64().expect("hours"))
        .sum();
    assert_eq!(hours, 2, "the two whole hours: {c}");
    for d in days {
        let ratio = d["ratio"].as_f64().expect("ratio");
        assert!((ratio - 0.7).abs() < 0.005, "350 W of 500 W: {c}");
    }
    assert_eq!(c["drift"], Value::Null, "too few days to judge: {c}");
    let (status, _) = app
        .get(&sam, "/api/v1/meters/m1/calibration?days=999")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The page, for staff.
    let browser = crate::sign_in::browser(&app, "sam").await;
    let (status, page) = app.page(&browser.cookie, "/meters/m1/calibration").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<td class=\"num\">0.70"), "{page}");
    assert!(page.contains("Too few compared days"), "{page}");
    assert!(
        page.contains("a day's ratio lies within about ±6 % of the truth"),
        "{page}"
    );
}
