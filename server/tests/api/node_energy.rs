//! Whole-node energy: CPU packages and DRAM from the nodes' RAPL counters, charged to jobs by the CPUs
//! they hold, in the job's figures and in statements; nodes without counters said so.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::*;

const PKG_MAX: u64 = 262_143_328_850;
const DRAM_MAX: u64 = 65_712_999_613;

/// Readings every 5 s over `[from, to]` of two packages (at `pkg_w` each) and their DRAM (at `dram_w`
/// each); package-1 starts 40 J below its wrap point, so it wraps 10 s into a 150 W run.
fn readings(from: DateTime<Utc>, to: DateTime<Utc>, pkg_w: f64, dram_w: f64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut t = from;
    while t <= to {
        let s = (t - from).num_milliseconds() as f64 / 1000.0;
        let uj = |w: f64, start: u64, max: u64| ((start as f64 + w * s * 1e6) as u64) % max;
        for (zone, kind, w, start, max) in [
            ("package-0", "cpu", pkg_w, 5_000_000_000, PKG_MAX),
            ("package-1", "cpu", pkg_w, PKG_MAX - 1_500_000_000, PKG_MAX),
            ("package-0/dram", "dram", dram_w, 1_000_000, DRAM_MAX),
            ("package-1/dram", "dram", dram_w, 2_000_000, DRAM_MAX),
        ] {
            out.push(json!({"time": t, "zone": zone, "kind": kind,
                            "energy_uj": uj(w, start, max), "max_energy_range_uj": max}));
        }
        t += Duration::seconds(5);
    }
    out
}

async fn send_readings(app: &App, token: &str, node_energy: Vec<Value>) {
    let (status, body) = app
        .post(
            token,
            "/api/v1/ingest/gpu",
            &json!({"samples": [], "node_energy": node_energy, "node_cpus": 64}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_job_holding_16_of_64_cpus_is_charged_a_quarter_of_its_nodes_cpu_and_dram(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(30);
    // 150 W per package and 20 W per DRAM, from 20 s before the job to 20 s after it.
    send_readings(
        &app,
        &token,
        readings(
            t0 - Duration::seconds(20),
            t0 + Duration::seconds(80),
            150.0,
            20.0,
        ),
    )
    .await;
    // The same readings again change nothing (idempotent).
    send_readings(
        &app,
        &token,
        readings(
            t0 - Duration::seconds(20),
            t0 + Duration::seconds(80),
            150.0,
            20.0,
        ),
    )
    .await;
    let job = app
        .new_job("quarter")
        .gpus(&[0, 1])
        .cpus(16)
        .samples(&token, samples(t0, 60))
        .start(t0)
        .end(t0 + Duration::seconds(60))
        .create()
        .await;
    // By hand: 60 s x (2 x 150 W) x 16/64 = 4,500 J of CPU; 60 s x (2 x 20 W) / 4 = 600 J of DRAM.
    let cpu_j = job.cpu_energy_kwh.expect("measured") * 3.6e6;
    let dram_j = job.dram_energy_kwh.expect("measured") * 3.6e6;
    assert!((cpu_j - 4_500.0).abs() < 1e-6, "{cpu_j}");
    assert!((dram_j - 600.0).abs() < 1e-6, "{dram_j}");
    assert!(job.gpu_energy_kwh > 0.0);
    assert!(
        (job.it_energy_kwh - (job.gpu_energy_kwh + (cpu_j + dram_j) / 3.6e6)).abs() < 1e-12,
        "IT = GPU + CPU + DRAM"
    );
    assert!(job.cpu_dram_unmeasured.is_empty());

    // A second job on the node, without a count, over the same minute: it gets the other 3/4. Their
    // shares add up to the node's whole energy over that minute.
    let other = app
        .new_job("rest")
        .gpus(&[2])
        .start(t0)
        .end(t0 + Duration::seconds(60))
        .create()
        .await;
    let rest_j = other.cpu_energy_kwh.expect("measured") * 3.6e6;
    assert!((rest_j - 13_500.0).abs() < 1e-6, "{rest_j}");
    assert!((rest_j + cpu_j - 18_000.0).abs() < 1e-6);

    // Staff see the node's energy of the last 24 h and the part no job held: the 40 s of readings
    // outside the jobs' minute, at 2 x 150 + 2 x 20 W.
    let (status, nodes) = app.get(ADMIN, "/api/v1/nodes").await;
    assert_eq!(status, StatusCode::OK, "{nodes}");
    let n1 = &nodes[0];
    let total_j = n1["cpu_dram_24h_kwh"].as_f64().expect("measured") * 3.6e6;
    let idle_j = n1["idle_24h_kwh"].as_f64().expect("measured") * 3.6e6;
    assert!((total_j - 34_000.0).abs() < 1e-6, "{total_j}");
    assert!((idle_j - 13_600.0).abs() < 1e-6, "{idle_j}");
    let rest_dram_j = other.dram_energy_kwh.expect("measured") * 3.6e6;
    assert!(
        (idle_j + cpu_j + dram_j + rest_j + rest_dram_j - total_j).abs() < 1e-6,
        "charged to jobs + idle = the node's energy"
    );

    // The jobs list's CSV carries the parts.
    let (_, csv) = app
        .get_text(ADMIN, "/api/v1/jobs.csv?sort=id&order=asc")
        .await;
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let row: Vec<&str> = csv
        .lines()
        .find(|l| l.starts_with("quarter,"))
        .expect("row")
        .split(',')
        .collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).expect(name)];
    assert!((col("cpu_energy_kwh").parse::<f64>().expect("number") * 3.6e6 - 4_500.0).abs() < 0.01);
    assert!((col("dram_energy_kwh").parse::<f64>().expect("number") * 3.6e6 - 600.0).abs() < 0.01);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_node_without_counters_is_named_in_the_job_and_in_every_statement_format(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let (status, body) = app
        .post(ADMIN, "/api/v1/nodes", &json!({"name": "n2", "site": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let t0 = minute_aligned_past(30);
    send_readings(
        &app,
        &token,
        readings(
            t0 - Duration::seconds(10),
            t0 + Duration::seconds(70),
            100.0,
            10.0,
        ),
    )
    .await;
    let (status, body) = app.ingest(&token, &batch(samples(t0, 60))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"id": "two", "user": "ann", "site": "s1", "start": t0,
                    "end": t0 + Duration::seconds(60),
                    "allocations": [{"node": "n1", "gpus": [0]}, {"node": "n2", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["cpu_dram_unmeasured"], json!(["n2"]));
    // n1 alone, no count: the whole node's 2 x 100 W over 60 s.
    let cpu_j = body["cpu_energy_kwh"].as_f64().expect("cpu") * 3.6e6;
    assert!((cpu_j - 12_000.0).abs() < 1e-6, "{cpu_j}");

    let (_, page) = app.get_text(ADMIN, "/jobs/two").await;
    assert!(
        page.contains("CPU and DRAM energy not measured on n2"),
        "{page}"
    );
    let says = "CPU and DRAM energy were not measured on 1 of 2 nodes";
    for format in ["md", "tex", "json"] {
        let (status, text) = app
            .get_text(
                ADMIN,
                &format!("/api/v1/statement?jobs=two&format={format}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(text.contains(says), "{format}: {text}");
        assert!(text.contains("IT energy"), "{format}");
    }
    let (_, csv) = app
        .get_text(ADMIN, "/api/v1/statement?jobs=two&format=csv")
        .await;
    let header: Vec<&str> = csv.lines().next().expect("header").split(',').collect();
    let row: Vec<&str> = csv.lines().nth(1).expect("row").split(',').collect();
    let col = |name: &str| {
        let i = header.iter().position(|h| *h == name).expect("column");
        row[i]
    };
    assert_eq!(col("cpu_dram_unmeasured"), "n2", "{csv}");
    assert_eq!(col("running"), "false", "{csv}");
    let (status, pdf) = app
        .get_bytes(ADMIN, "/api/v1/statement?jobs=two&format=pdf")
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = crate::statement::pdf_text(&pdf);
    assert!(text.contains(says), "{text}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn bad_counter_readings_refuse_the_batch_naming_the_field(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t = Utc::now();
    let reading = json!({"time": t, "zone": "package-0", "kind": "cpu", "energy_uj": 5,
                         "max_energy_range_uj": 10});
    let cases = [
        (json!({"energy_uj": 11}), "node_energy[0].energy_uj"),
        (
            json!({"max_energy_range_uj": 0, "energy_uj": 0}),
            "node_energy[0].max_energy_range_uj",
        ),
        (json!({"zone": ""}), "node_energy[0].zone"),
        (json!({"zone": "a b"}), "node_energy[0].zone"),
        (
            json!({"time": t + Duration::hours(1)}),
            "node_energy[0].time",
        ),
        (json!({"kind": "gpu"}), "node_energy"),
    ];
    for (change, field) in cases {
        let mut r = reading.clone();
        for (k, v) in change.as_object().expect("object") {
            r[k] = v.clone();
        }
        let (status, body) = app
            .post(
                &token,
                "/api/v1/ingest/gpu",
                &json!({"samples": [], "node_energy": [r]}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
        assert!(
            body["error"].as_str().expect("error").contains(field),
            "{field}: {body}"
        );
    }
    let (status, body) = app
        .post(
            &token,
            "/api/v1/ingest/gpu",
            &json!({"samples": [], "node_cpus": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().expect("error").contains("node_cpus"));
    let stored: i64 = sqlx::query_scalar("select count(*) from node_energy")
        .fetch_one(&app.state.db)
        .await
        .expect("count");
    assert_eq!(stored, 0, "nothing partial stored");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn two_jobs_sharing_a_gpu_are_each_charged_their_share_and_the_gpu_once(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(30);
    // GPU 0 draws 200 W from 10 s before the first job to 10 s after the second.
    let (status, body) = app
        .ingest(&token, &batch(samples(t0 - Duration::seconds(10), 110)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let a = app
        .new_job("a")
        .start(t0)
        .end(t0 + Duration::seconds(60))
        .create()
        .await;
    // Alone so far: the whole GPU over its minute.
    assert!(
        (a.gpu_energy_kwh * 3.6e6 - 12_000.0).abs() < 1e-6,
        "{}",
        a.gpu_energy_kwh * 3.6e6
    );
    let b = app
        .new_job("b")
        .start(t0 + Duration::seconds(30))
        .end(t0 + Duration::seconds(90))
        .create()
        .await;
    let a = app.job("a").await;
    // Each: 30 s alone (6,000 J) and 30 s shared (3,000 J).
    let (ea, eb) = (a.gpu_energy_kwh * 3.6e6, b.gpu_energy_kwh * 3.6e6);
    assert!((ea - 9_000.0).abs() < 1e-6, "{ea}");
    assert!((eb - 9_000.0).abs() < 1e-6, "{eb}");
    // Together exactly the GPU's 90 s at 200 W: nothing counted twice.
    assert!((ea + eb - 18_000.0).abs() < 1e-6);
    assert_eq!(a.shared_gpus.len(), 1);
    assert_eq!((a.shared_gpus[0].gpu, a.shared_gpus[0].max_jobs), (0, 2));
    assert!((a.shared_gpus[0].shared_s - 30.0).abs() < 1e-9);
    let (_, page) = app.get_text(ADMIN, "/jobs/a").await;
    assert!(page.contains("Shared GPU"), "{page}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn jobs_on_mig_instances_are_charged_their_slices_of_the_gpu(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(30);
    let (status, body) = app
        .ingest(&token, &batch(samples(t0 - Duration::seconds(10), 80)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut charged = 0.0;
    for (id, profile, slices) in [("small", "3g.40gb", 3.0), ("large", "4g.40gb", 4.0)] {
        let (status, body) = app
            .post(
                ADMIN,
                "/api/v1/jobs",
                &json!({"id": id, "user": "ann", "site": "s1", "start": t0,
                        "end": t0 + Duration::seconds(60),
                        "allocations": [{"node": "n1", "gpus": [],
                                         "mig": [{"gpu": 0, "profile": profile}]}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        // GPU 0 at 200 W over the minute: 12,000 J, of which this instance's slices of seven.
        let j = body["gpu_energy_kwh"].as_f64().expect("gpu") * 3.6e6;
        assert!((j - 12_000.0 * slices / 7.0).abs() < 1e-6, "{id}: {j}");
        assert_eq!(body["allocations"][0]["mig"][0]["profile"], profile);
        charged += j;
    }
    assert!(
        (charged - 12_000.0).abs() < 1e-6,
        "the GPU charged once: {charged}"
    );
    let (_, page) = app.get_text(ADMIN, "/jobs/small").await;
    assert!(page.contains("MIG instance 3g.40gb of n1/gpu0"), "{page}");
    // A profile that is not one is refused, naming it.
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"id": "bad", "user": "ann", "site": "s1", "start": t0,
                    "allocations": [{"node": "n1", "gpus": [], "mig": [{"gpu": 0, "profile": "9g.80gb"}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("allocations[0].mig[0].profile"),
        "{body}"
    );
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_long_job_reads_rolled_up_minutes_and_keeps_its_energy_once_raw_readings_go(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(120);
    // 42 minutes of readings every 5 s at 150 W per package and 20 W per DRAM.
    send_readings(
        &app,
        &token,
        readings(
            t0 - Duration::minutes(1),
            t0 + Duration::minutes(41),
            150.0,
            20.0,
        ),
    )
    .await;
    // A job of 40 minutes holding 16 of 64 CPUs; a second job without a count joins at 20.5 minutes
    // (inside a minute: that minute is read raw) and stays.
    let long = app
        .new_job("long")
        .gpus(&[0])
        .cpus(16)
        .start(t0 + Duration::seconds(10))
        .end(t0 + Duration::seconds(10) + Duration::minutes(40))
        .create()
        .await;
    app.new_job("joins")
        .gpus(&[1])
        .start(t0 + Duration::seconds(20 * 60 + 30))
        .end(t0 + Duration::minutes(42))
        .create()
        .await;
    let raw_only = app.job("long").await;
    // By hand: 40 min x 340 W x 16/64 whatever the other job does (counted jobs keep their share).
    let expected = 40.0 * 60.0 * 340.0 / 4.0;
    let got = |v: &wattlas_protocol::JobView| {
        (v.cpu_energy_kwh.expect("cpu") + v.dram_energy_kwh.expect("dram")) * 3.6e6
    };
    assert!((got(&long) - expected).abs() < 1e-6, "{}", got(&long));
    assert!((got(&raw_only) - expected).abs() < 1e-6);

    wattlas_server::maintenance::rollup_once(&app.state)
        .await
        .expect("rollup");
    let minutes: i64 = sqlx::query_scalar("select count(*) from node_energy_minute")
        .fetch_one(&app.state.db)
        .await
        .expect("count");
    assert_eq!(minutes, 4 * 42, "four counters x 42 minutes");
    // The interior's raw readings go (as retention drops them once rolled up): the job's share is
    // unchanged, read from the minutes. The joining job's share moves to the rest of the node.
    sqlx::query("delete from node_energy where t > $1 and t < $2")
        .bind(t0 + Duration::minutes(2))
        .bind(t0 + Duration::minutes(20))
        .execute(&app.state.db)
        .await
        .expect("delete");
    sqlx::query("update job_energy set stale = true")
        .execute(&app.state.db)
        .await
        .expect("stale");
    let from_minutes = app.job("long").await;
    assert!(
        (got(&from_minutes) - expected).abs() < 1e-6,
        "{} vs {expected}",
        got(&from_minutes)
    );
    // The joining job without a count gets what is left while it is there: 3/4 of the node, and the
    // whole node once the long job ended (until the readings stop at 41 minutes).
    let joins = app.job("joins").await;
    let joined_s = (41.0 - 20.5) * 60.0;
    let inside_long = (40.0 * 60.0 + 10.0) - 20.5 * 60.0;
    let expected_joins = inside_long * 340.0 * 0.75 + (joined_s - inside_long) * 340.0;
    assert!(
        (got(&joins) - expected_joins).abs() < 1e-6,
        "{} vs {expected_joins}",
        got(&joins)
    );
}
