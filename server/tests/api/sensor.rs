//! Issue 35, item 3: sensors as they are. Each sample says what its power reading is and carries the
//! instant reading beside it; the energy comes from the counter, the charts from the instant readings,
//! and a job whose readings disagree with its counter is flagged, its bound reaching the readings.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use wattlas_protocol::wire::{encode_batch, BATCH_CONTENT_TYPE};
use wattlas_protocol::{GpuSample, PowerSource};

use wattlas_server::maintenance;

use crate::common::*;

/// Three minutes of GPUs 0 and 1 at 100 ms. Both counters rise at 300 W. GPU 0's 1-s averages read
/// 330 W (10 % above its counter: a rhythm in step with the sensor) and its instant readings 450 W;
/// GPU 1's averages agree with its counter, and its instant readings alternate 250 and 350 W.
fn readings(t0: DateTime<Utc>) -> Vec<GpuSample> {
    let mut out = Vec::new();
    for k in 0..=1800i64 {
        for gpu in 0..2u32 {
            out.push(GpuSample {
                time: t0 + Duration::milliseconds(100 * k),
                gpu,
                power_w: if gpu == 0 { 330.0 } else { 300.0 },
                energy_mj: Some(5_000_000 + 30_000 * k as u64),
                power_limit_w: Some(700.0),
                util_pct: None,
                mem_used_mib: None,
                temp_c: None,
                sm_clock_mhz: None,
                power_instant_w: Some(match (gpu, k % 2) {
                    (0, _) => 450.0,
                    (_, 0) => 250.0,
                    _ => 350.0,
                }),
                power_source: Some(PowerSource::Average),
            });
        }
    }
    out
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn readings_that_disagree_with_the_counter_flag_the_job_and_widen_its_bound(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(10);
    // The binary form carries both new columns (the collector's default).
    let frame = encode_batch(&batch(readings(t0))).expect("frame");
    let r = app
        .http
        .post(format!("{}/api/v1/ingest/gpu", app.base))
        .bearer_auth(&token)
        .header("content-type", BATCH_CONTENT_TYPE)
        .body(frame)
        .send()
        .await
        .expect("post");
    let status = r.status();
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let end = t0 + Duration::minutes(3);
    app.new_job("alias")
        .gpus(&[0])
        .start(t0)
        .end(end)
        .create()
        .await;
    app.new_job("steady")
        .gpus(&[1])
        .start(t0)
        .end(end)
        .create()
        .await;

    for pass in ["raw samples", "rolled-up minutes"] {
        let job = app.job("alias").await;
        // The energy is the counter's: 300 W for 180 s.
        assert!(
            (job.gpu_energy_kwh - 300.0 * 180.0 / 3.6e6).abs() < 1e-6,
            "{pass}: {}",
            job.gpu_energy_kwh
        );
        let sensor = job.sensor.clone().expect("sensor readings");
        assert!(
            (sensor.counter_gpu_s - 180.0).abs() < 1e-6,
            "{pass}: {sensor:?}"
        );
        assert_eq!(sensor.average_gpu_s + sensor.instant_gpu_s, 0.0);
        let vs_counter = sensor.readings_vs_counter.expect("compared");
        let vs_average = sensor.instant_vs_average.expect("compared");
        assert!((vs_counter - 0.1).abs() < 1e-9, "{pass}: {vs_counter}");
        assert!(
            (vs_average - (450.0 / 330.0 - 1.0)).abs() < 1e-9,
            "{pass}: {vs_average}"
        );
        assert!(sensor.aliasing, "{pass}");
        // The bound reaches the farther reading, above only.
        let term = job
            .bound_terms
            .iter()
            .find(|t| t.kind == "sensor_aliasing")
            .expect("the aliasing term");
        assert_eq!(term.below_kwh, 0.0);
        assert!((term.above_kwh - job.gpu_energy_kwh * vs_average).abs() < 1e-12);
        let steady = app.job("steady").await;
        let s = steady.sensor.expect("sensor readings");
        assert_eq!(s.readings_vs_counter, Some(0.0), "{pass}");
        assert!(
            s.instant_vs_average.expect("compared").abs() < 1e-3,
            "{pass}"
        );
        assert!(!s.aliasing, "{pass}");
        assert!(steady
            .bound_terms
            .iter()
            .all(|t| t.kind != "sensor_aliasing"));
        maintenance::rollup_settled_before(&app.state, Utc::now() + Duration::hours(1))
            .await
            .expect("rollup");
        // Views are recomputed from the minutes.
        sqlx::query("update job_energy set stale = true")
            .execute(&app.state.db)
            .await
            .expect("stale");
    }

    // The page says where the energy came from and why the job is flagged.
    let (_, page) = app.get_text(ADMIN, "/jobs/alias").await;
    assert!(page.contains("<dd>energy counter 100.0 %</dd>"), "{page}");
    assert!(
        page.contains("id=\"aliasing\"")
            && page.contains("the power readings integrate to +10.0 % of the energy counter")
            && page.contains("the instant readings to +36.4 % of the 1-s averages"),
        "{page}"
    );
    let (_, page) = app.get_text(ADMIN, "/jobs/steady").await;
    assert!(!page.contains("id=\"aliasing\""));
    // Charts draw the instant readings: GPU 0's line stands at 450 W, not 330.
    let (status, svg) = app.get_text(ADMIN, "/jobs/alias/power.svg").await;
    assert_eq!(status, StatusCode::OK);
    let label_y = |label: &str| -> f64 {
        let at = svg.find(&format!("\n{label}\n")).expect("the axis label");
        let tag = &svg[svg[..at].rfind("<text").expect("its tag")..at];
        let y = tag
            .split(" y=\"")
            .nth(1)
            .expect("y")
            .split('"')
            .next()
            .expect("y");
        y.parse().expect("a number")
    };
    let line = svg
        .split("<polyline")
        .find(|p| p.contains("stroke=\"#0072B2\""))
        .expect("GPU 0's line");
    let first_y: f64 = line
        .split("points=\"")
        .nth(1)
        .and_then(|p| p.split(' ').next())
        .and_then(|xy| xy.split(',').nth(1))
        .and_then(|y| y.parse().ok())
        .expect("a point");
    let at_450 = (label_y("400.0") + label_y("500.0")) / 2.0;
    assert!((first_y - at_450).abs() <= 1.0, "{first_y} vs {at_450}");
    // A statement names how the power was read and the flagged job.
    let (status, md) = app
        .get_text(ADMIN, "/api/v1/statement?user=alice&format=md")
        .await;
    assert_eq!(status, StatusCode::OK, "{md}");
    assert!(
        md.contains("Power readings: of the GPU time covered, the energy counter 100.0 %; 1 job had readings that disagreed with its counter or averages beyond 3 %"),
        "{md}"
    );
    let json: Value = app.get(ADMIN, "/api/v1/jobs/alias").await.1;
    assert_eq!(json["sensor"]["aliasing"], true);
    // The jobs CSV says it in its last column.
    let (_, csv) = app.get_text(ADMIN, "/api/v1/jobs.csv?user=alice").await;
    let row = |id: &str| {
        csv.lines()
            .find(|l| l.starts_with(&format!("{id},")))
            .unwrap_or_else(|| panic!("{id} in {csv}"))
            .to_owned()
    };
    assert!(csv
        .lines()
        .next()
        .is_some_and(|h| h.ends_with(",sensor_aliasing")));
    assert!(
        row("alias").ends_with(",true") && row("steady").ends_with(",false"),
        "{csv}"
    );
}
