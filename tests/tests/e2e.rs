//! End to end with the real binaries: `wattlas-collector` -> HTTP -> `wattlas-server` -> TimescaleDB.
//!
//! Needs the binaries built (`cargo build --workspace --bins`, which `scripts/test` does) and
//! `DATABASE_URL` pointing at the cluster of `scripts/db up`; each test gets its own database.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_tests::harness::{
    add_node, bin, distinct_samples, job, stored_samples, wait_ready, Running, Server, ADMIN,
};
use wattlas_tests::{address_in_log, exposition, post};

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn collector_to_server_survives_a_server_kill_without_loss_or_doubles(db: PgPool) {
    let Running {
        dir,
        url,
        port,
        base,
        http,
        mut server,
    } = Running::with_site(&db, "lab").await;
    let log = dir.path().join("server.log");
    let token = add_node(&http, &base, "lab", "gpu01").await;

    let ledger = dir.path().join("ledger.json");
    let collector_log = dir.path().join("collector.log");
    let collector = Command::new(bin("wattlas-collector"))
        .args([
            "run",
            "--source",
            "simulated",
            "--node",
            "gpu01",
            "--server",
            &base,
            "--token",
            &token,
        ])
        .args([
            "--sim-gpus",
            "4",
            "--sim-caps",
            "100,250",
            "--sim-gpus-per-job",
            "2",
            "--sim-job-seconds",
            "5",
            "--sim-jobs",
            "2",
        ])
        .args(["--run-seconds", "24", "--sim-seed", "42"])
        .arg("--sim-ledger")
        .arg(&ledger)
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .args(["--metrics-bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&collector_log).expect("collector log"))
        .spawn()
        .expect("collector starts");
    let metrics_addr = address_in_log(&collector_log, 0, "serving /metrics", "addr");
    let collector_metrics = || {
        let http = http.clone();
        async move {
            let text = http
                .get(format!("http://{metrics_addr}/metrics"))
                .send()
                .await
                .expect("collector /metrics")
                .text()
                .await
                .expect("text");
            exposition(&text)
        }
    };

    // Kill the server mid-run; the collector spools and replays when it is back.
    tokio::time::sleep(Duration::from_secs(6)).await;
    server.kill();
    let killed_at = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The outage shows: batches wait in the spool, the last push is from before the kill.
    let during = collector_metrics().await;
    assert!(
        during["wattlas_collector_spool_entries"] >= 2.0,
        "{during:?}"
    );
    assert!(during["wattlas_collector_spool_bytes"] > 0.0);
    assert!(
        during["wattlas_collector_samples_read_total"]
            > during["wattlas_collector_samples_delivered_total"]
    );
    let last_push = during["wattlas_collector_last_push_timestamp_seconds"];
    assert!(
        last_push > 0.0 && last_push <= killed_at + 1.0,
        "{last_push} vs {killed_at}"
    );
    assert_eq!(during["wattlas_collector_samples_dropped_total"], 0.0);
    let _server = Server::start(&url, &format!("127.0.0.1:{port}"), &log);
    wait_ready(&http, &base).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = collector_metrics().await;
    assert!(
        after["wattlas_collector_samples_delivered_total"]
            > during["wattlas_collector_samples_delivered_total"]
    );
    assert!(after["wattlas_collector_last_push_timestamp_seconds"] > killed_at);
    assert!(after["wattlas_collector_spool_entries"] <= 2.0, "{after:?}");

    let output = tokio::task::spawn_blocking(move || collector.wait_with_output())
        .await
        .expect("join")
        .expect("collector output");
    let stderr = std::fs::read_to_string(&collector_log).expect("collector log");
    assert!(output.status.success(), "collector failed:\n{stderr}");
    assert!(
        stderr.contains("spooling"),
        "the collector should have seen the outage:\n{stderr}"
    );

    let ledger: Value =
        serde_json::from_slice(&std::fs::read(&ledger).expect("ledger")).expect("ledger json");
    let emitted = ledger["samples_emitted"].as_i64().expect("count");
    assert!(emitted > 4 * 200, "emitted {emitted}");
    let stored = stored_samples(&db).await;
    let left: Vec<String> = std::fs::read_dir(dir.path().join("spool"))
        .expect("spool")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".json.gz"))
        .collect();
    assert!(
        left.is_empty(),
        "undelivered spool entries: {left:?}\n{stderr}"
    );
    let summary = stderr
        .lines()
        .filter(|l| l.contains("collector stopped"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        stored, emitted,
        "every emitted sample stored once; collector said: {summary}"
    );
    assert_eq!(distinct_samples(&db).await, stored, "nothing doubled");

    let jobs: BTreeMap<String, Value> =
        serde_json::from_value(ledger["jobs"].clone()).expect("jobs");
    assert_eq!(jobs.len(), 4, "two groups x two jobs");
    for (id, truth) in &jobs {
        assert!(!truth["end"].is_null(), "job {id} ended within the run");
        let view = job(&http, &base, id).await;
        let server_j = view["it_energy_kwh"].as_f64().expect("energy") * 3.6e6;
        let truth_j = truth["energy_j"].as_f64().expect("energy");
        let error = (server_j - truth_j).abs() / truth_j;
        eprintln!(
            "job {id}: server {server_j:.3} J, simulator {truth_j:.3} J, error {:.4} %",
            error * 100.0
        );
        assert!(
            error < 0.005,
            "job {id}: server {server_j} J, simulator {truth_j} J ({:.3} %)",
            error * 100.0
        );
        assert_eq!(view["running"], false);
        assert_eq!(
            view["power_cap_w"].as_f64(),
            truth["cap_w"].as_f64(),
            "job {id} cap"
        );
        assert_eq!(view["energy_method"], "counter");
        assert!(
            view["coverage"].as_f64().expect("coverage") > 0.99,
            "job {id}: {view}"
        );
    }
    // The node shows its GPUs and that its collector dropped nothing.
    let r = http
        .get(format!("{base}/api/v1/nodes"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("nodes");
    let nodes: Value = r.json().await.expect("json");
    assert_eq!(nodes[0]["name"], "gpu01");
    assert_eq!(nodes[0]["gpus"].as_array().expect("gpus").len(), 4);
    assert_eq!(nodes[0]["dropped_samples_total"], 0);
    assert_eq!(nodes[0]["gpus"][0]["model"], "Tesla V100-SXM2-32GB");

    // The lower cap drew less power and took longer, as the simulator models it.
    let by_cap = |cap: f64| {
        jobs.values()
            .find(|j| j["cap_w"].as_f64() == Some(cap))
            .expect("job at cap")
    };
    let dur = |j: &Value| {
        let s: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(j["start"].clone()).expect("start");
        let e: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(j["end"].clone()).expect("end");
        (e - s).num_milliseconds()
    };
    assert!(dur(by_cap(100.0)) > dur(by_cap(250.0)));
}

fn nvidia_smi_log(path: &Path) {
    let mut text = String::from(
        "timestamp, name, index, uuid, power.draw [W], enforced.power.limit [W], utilization.gpu [%], memory.used [MiB], temperature.gpu, clocks.sm [MHz]\n",
    );
    // Two GPUs, 100 ms apart, 2 minutes, local time in New York.
    let t0 = chrono::NaiveDate::from_ymd_opt(2025, 7, 1)
        .and_then(|d| d.and_hms_opt(14, 0, 0))
        .expect("time");
    for i in 0..1200 {
        let t = t0 + chrono::Duration::milliseconds(100 * i);
        for gpu in 0..2 {
            let power = 120.0 + gpu as f64 * 30.0 + (i % 10) as f64;
            let sm = if i == 7 {
                "[N/A]".to_owned()
            } else {
                "1380 MHz".to_owned()
            };
            text.push_str(&format!(
                "{}, Tesla V100-SXM2-32GB, {gpu}, GPU-imp-{gpu}, {power:.2} W, 250.00 W, 97 %, 30000 MiB, 60, {sm}\n",
                t.format("%Y/%m/%d %H:%M:%S%.3f")
            ));
        }
    }
    text.push_str("2025/07/01 14:02:00.000, Tesla V100-SXM2-32GB, 0, GPU-imp-0, [N/A], 250.00 W, 0 %, 0 MiB, 40, 210 MHz\n");
    std::fs::write(path, text).expect("write log");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn importing_the_same_nvidia_smi_log_twice_changes_nothing(db: PgPool) {
    let Running {
        dir,
        base,
        http,
        server: _server,
        ..
    } = Running::with_site(&db, "lab").await;
    add_node(&http, &base, "lab", "gpu01").await;
    // 14:00:30 to 14:01:30 EDT = 18:00:30Z to 18:01:30Z.
    post(
        &http,
        &base,
        ADMIN,
        "/api/v1/jobs",
        json!({"id": "imp-1", "user": "carol", "site": "lab", "start": "2025-07-01T18:00:30Z", "end": "2025-07-01T18:01:30Z",
               "allocations": [{"node": "gpu01", "gpus": [0, 1]}]}),
    )
    .await;
    let log = dir.path().join("smi.csv");
    nvidia_smi_log(&log);
    let import = || {
        let out = Command::new(bin("wattlas-collector"))
            .args(["import", "nvidia-smi"])
            .arg(&log)
            .args([
                "--node",
                "gpu01",
                "--timezone",
                "America/New_York",
                "--server",
                &base,
                "--token",
                ADMIN,
            ])
            .output()
            .expect("import runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    };
    let first = import();
    assert!(first.contains("lines read: 2402"), "{first}");
    assert!(first.contains("samples stored: 2400"), "{first}");
    assert!(first.contains("1: power.draw [W] is [N/A]"), "{first}");
    let e1 = job(&http, &base, "imp-1").await;

    let second = import();
    assert!(second.contains("samples stored: 0"), "{second}");
    assert!(second.contains("samples already stored: 2400"), "{second}");
    let e2 = job(&http, &base, "imp-1").await;
    assert_eq!(e1["it_energy_kwh"], e2["it_energy_kwh"]);
    assert_eq!(stored_samples(&db).await, 2400);

    // Independent computation: power is linear between samples, so the trapezoids over the 60 s window
    // are the mean of the interval endpoints. GPU g at sample i draws 120 + 30 g + (i mod 10) W.
    let p = |g: i64, i: i64| 120.0 + 30.0 * g as f64 + (i % 10) as f64;
    let mut expected_j = 0.0;
    for g in 0..2 {
        for i in 300..900 {
            expected_j += 0.1 * (p(g, i) + p(g, i + 1)) / 2.0;
        }
    }
    let got_j = e1["it_energy_kwh"].as_f64().expect("energy") * 3.6e6;
    assert!((got_j - expected_j).abs() < 1e-6, "{got_j} vs {expected_j}");
    assert_eq!(e1["energy_method"], "integrated");
    assert_eq!(e1["coverage"].as_f64(), Some(1.0));

    // With --strict, a malformed log names line and column, and nothing of it is stored.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "timestamp, index, power.draw [W]\n2025/07/02 00:00:00.000, 0, 100 W\n2025/07/02 00:00:00.100, 0, lots W\n").expect("write");
    let import_bad = |strict: bool| {
        Command::new(bin("wattlas-collector"))
            .args(["import", "nvidia-smi"])
            .arg(&bad)
            .args([
                "--node",
                "gpu01",
                "--timezone",
                "UTC",
                "--server",
                &base,
                "--token",
                ADMIN,
            ])
            .args(strict.then_some("--strict"))
            .output()
            .expect("import runs")
    };
    let out = import_bad(true);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3, power.draw [W]: not a number"),
        "{err}"
    );
    assert_eq!(stored_samples(&db).await, 2400);
    // Without it, the bad line is reported by number and the rest imported.
    let out = import_bad(false);
    assert!(out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("1: power.draw [W]: not a number (line 3)"),
        "{report}"
    );
    assert_eq!(stored_samples(&db).await, 2401);
}

/// A year of 5-minute readings of a site in New York: seasonal and daily swings, noise from a fixed
/// LCG, a day with only 12 hours of data (left out of Table 1), and the two DST changes of 2024.
fn leap_year_export(path: &Path) -> Vec<(chrono::DateTime<chrono::Utc>, f64, f64)> {
    use chrono::{TimeZone, Timelike};
    let tz: chrono_tz::Tz = "America/New_York".parse().expect("tz");
    let start = tz
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("start")
        .with_timezone(&chrono::Utc);
    let end = tz
        .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .expect("end")
        .with_timezone(&chrono::Utc);
    let sparse = chrono::NaiveDate::from_ymd_opt(2024, 2, 10).expect("date");
    let mut state: u64 = 12345;
    let mut noise = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64 - 0.5
    };
    let mut rows = Vec::new();
    let mut text = String::from("time,it_kw,total_kw\n");
    let mut t = start;
    while t < end {
        let local = t.with_timezone(&tz);
        if !(local.date_naive() == sparse && local.hour() >= 12) {
            let doy = f64::from(chrono::Datelike::ordinal0(&local));
            let summer = (1.0 - (std::f64::consts::TAU * (doy - 20.0) / 366.0).cos()) / 2.0;
            let hour = f64::from(local.hour()) + f64::from(local.minute()) / 60.0;
            let pue = (1.05 + 0.4 * summer)
                * (1.0 + 0.1 * summer * (-(hour - 14.0).powi(2) / 18.0).exp())
                + 0.01 * noise();
            let it = 500.0 + 40.0 * noise();
            let (it, total) = (
                (it * 1000.0).round() / 1000.0,
                (it * pue * 1000.0).round() / 1000.0,
            );
            text.push_str(&format!("{},{it},{total}\n", t.to_rfc3339()));
            rows.push((t, it, total));
        }
        t += chrono::Duration::minutes(5);
    }
    std::fs::write(path, text).expect("write export");
    rows
}

/// Table 1 computed here from the readings, independently of the server's SQL and analytics:
/// hourly mean of the readings' PUE, each local day's (max - min) / min, days with 18+ hours.
fn table_1(
    rows: &[(chrono::DateTime<chrono::Utc>, f64, f64)],
) -> (BTreeMap<u32, f64>, f64, usize, usize) {
    use chrono::Datelike;
    let tz: chrono_tz::Tz = "America/New_York".parse().expect("tz");
    let mut hours: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
    for (t, it, total) in rows {
        let h = t.timestamp().div_euclid(3600);
        let e = hours.entry(h).or_default();
        e.0 += total / it;
        e.1 += 1;
    }
    let mut days: BTreeMap<chrono::NaiveDate, Vec<f64>> = BTreeMap::new();
    for (h, (sum, n)) in hours {
        let local = chrono::DateTime::from_timestamp(h * 3600, 0)
            .expect("time")
            .with_timezone(&tz);
        days.entry(local.date_naive())
            .or_default()
            .push(sum / f64::from(n));
    }
    let mut months: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    let mut all = Vec::new();
    let mut excluded = 0;
    let mut dst_hours = Vec::new();
    for (date, pues) in &days {
        if date.month() == 3 && date.day() == 10 || date.month() == 11 && date.day() == 3 {
            dst_hours.push(pues.len());
        }
        if pues.len() < 18 {
            excluded += 1;
            continue;
        }
        let min = pues.iter().copied().fold(f64::MAX, f64::min);
        let max = pues.iter().copied().fold(f64::MIN, f64::max);
        let v = (max - min) / min * 100.0;
        months.entry(date.month()).or_default().push(v);
        all.push(v);
    }
    assert_eq!(
        dst_hours,
        vec![23, 25],
        "the export covers both DST changes"
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    (
        months.iter().map(|(m, v)| (*m, mean(v))).collect(),
        mean(&all),
        all.len(),
        excluded,
    )
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_leap_year_of_meter_readings_gives_table_1(db: PgPool) {
    let Running {
        dir,
        base,
        http,
        server: _server,
        ..
    } = Running::with_site(&db, "ll").await;
    let export = dir.path().join("bms.csv");
    let rows = leap_year_export(&export);
    let import = || {
        let out = Command::new(bin("wattlas-collector"))
            .args(["import", "meter"])
            .arg(&export)
            .args(["--site", "ll", "--server", &base, "--token", ADMIN])
            .output()
            .expect("import runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8")
    };
    // With --strict, a malformed export names line and field, and nothing of it is stored.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "time,it_kw,total_kw\n2024-01-01T00:00:00Z,800,880\n2024-01-01T00:05:00Z,800,lots\n",
    )
    .expect("write");
    let out = Command::new(bin("wattlas-collector"))
        .args(["import", "meter"])
        .arg(&bad)
        .args([
            "--strict", "--site", "ll", "--server", &base, "--token", ADMIN,
        ])
        .output()
        .expect("import runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3, total_kw"), "{err}");
    let readings: i64 = sqlx::query_scalar("select count(*) from facility_readings")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(readings, 0, "nothing of a malformed export is stored");

    let first = import();
    assert!(
        first.contains(&format!("readings stored: {}", rows.len())),
        "{first}"
    );
    let second = import();
    assert!(
        second.contains("readings stored: 0"),
        "re-import stores nothing: {second}"
    );

    let r = http
        .get(format!("{base}/api/v1/sites/ll/pue/variation?year=2024"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("variation");
    assert!(r.status().is_success());
    let v: Value = r.json().await.expect("json");
    let (months, annual, days, excluded) = table_1(&rows);
    assert_eq!(v["days"].as_u64(), Some(days as u64));
    assert_eq!(days, 365, "366 days, one left out");
    assert_eq!(v["days_excluded"].as_u64(), Some(excluded as u64));
    let got_annual = v["annual_variation_pct"].as_f64().expect("annual");
    assert!(
        (got_annual - annual).abs() < 0.01,
        "annual {got_annual} vs {annual}"
    );
    for m in v["months"].as_array().expect("months") {
        let month = m["month"].as_u64().expect("month") as u32;
        let got = m["avg_daily_variation_pct"].as_f64().expect("value");
        assert!(
            (got - months[&month]).abs() < 0.01,
            "month {month}: {got} vs {}",
            months[&month]
        );
    }
    assert_eq!(
        v["months"][1]["days_excluded"], 1,
        "February 10 has 12 hours of data"
    );
    // Summer swings more than winter, as in the paper's Table 1.
    assert!(
        months[&7] > 3.0 * months[&1],
        "July {} vs January {}",
        months[&7],
        months[&1]
    );

    let r = http
        .get(format!("{base}/api/v1/sites/ll/pue/daily?year=2024"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("daily");
    let daily: Value = r.json().await.expect("json");
    let hours_of = |date: &str| {
        daily
            .as_array()
            .expect("days")
            .iter()
            .find(|d| d["date"] == date)
            .expect("day")["hours"]
            .clone()
    };
    assert_eq!(hours_of("2024-03-10"), 23);
    assert_eq!(hours_of("2024-11-03"), 25);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn server_metrics_count_ingest_and_refusals_and_read_the_database(db: PgPool) {
    // Held whole: dropping it stops the server.
    let running = Running::with_site(&db, "lab").await;
    let (base, http) = (running.base.clone(), running.http.clone());
    let token = add_node(&http, &base, "lab", "gpu01").await;
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(5);
    let body = |power: f64| {
        json!({
            "gpus": [{"index": 0, "uuid": "GPU-e2e-0", "model": "A100"}],
            "samples": (0..30).map(|i| json!({
                "time": t0 + chrono::Duration::milliseconds(100 * i),
                "gpu": 0,
                "power_w": if i == 7 { power } else { 250.0 },
            })).collect::<Vec<_>>(),
        })
    };
    let ingest = |token: String, body: Value| {
        let http = http.clone();
        let url = format!("{base}/api/v1/ingest/gpu");
        async move {
            http.post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("ingest")
                .status()
        }
    };
    assert!(ingest(token.clone(), body(250.0)).await.is_success());
    assert!(
        ingest(token.clone(), body(250.0)).await.is_success(),
        "a re-send"
    );
    assert_eq!(ingest(token.clone(), body(-5.0)).await, 400);
    assert_eq!(ingest("wrong".into(), body(250.0)).await, 401);

    let r = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 401, "not public");
    let r = http
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200, "scraped with the admin token");
    assert!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")));
    let text = r.text().await.expect("text");
    let parsed = exposition(&text);
    let m = |key: &str| -> f64 {
        *parsed
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not in the exposition:\n{text}"))
    };
    assert_eq!(m("wattlas_ingest_batches_total"), 2.0);
    assert_eq!(m(r#"wattlas_ingest_samples_total{outcome="stored"}"#), 30.0);
    assert_eq!(
        m(r#"wattlas_ingest_samples_total{outcome="duplicate"}"#),
        30.0
    );
    assert_eq!(
        m(r#"wattlas_rejected_requests_total{route="/api/v1/ingest/gpu",status="400"}"#),
        1.0
    );
    assert_eq!(
        m(r#"wattlas_rejected_requests_total{route="/api/v1/ingest/gpu",status="401"}"#),
        1.0
    );
    assert_eq!(m("wattlas_db_up"), 1.0);
    assert!(m("wattlas_db_round_trip_seconds") > 0.0);
    assert!(parsed.contains_key("wattlas_rollup_pending_ranges"));
    assert!(parsed.contains_key("wattlas_rollup_lag_seconds"));
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn no_secret_reaches_the_server_log(db: PgPool) {
    use std::io::Write;
    let running = Running::with_site(&db, "lab").await;
    let (base, http) = (&running.base, &running.http);
    let password = "correct horse battery staple 7";
    let wrong = "wrong horse battery staple 8";
    let cli = |args: &[&str], input: &str| {
        let mut child = Command::new(bin("wattlas-server"))
            .args(args)
            .env("DATABASE_URL", &running.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cli");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("cli output");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    cli(
        &["user", "add", "alice", "--role", "researcher"],
        &format!("{password}\n"),
    );
    let api_token = cli(&["user", "token", "alice", "--label", "laptop"], "");
    let node_token = add_node(http, base, "lab", "gpu01").await;

    // Sign in through the form, wrongly then rightly, and once with a name that forges a log line;
    // use every token.
    let forged = "x\n2026-11-30T00:00:00.000000Z  INFO wattlas_server: sign-in accepted user=admin";
    for (name, attempt, expected) in [
        ("alice", wrong, 401),
        ("alice", password, 303),
        (forged, wrong, 401),
    ] {
        let form = http
            .get(format!("{base}/login"))
            .send()
            .await
            .expect("form");
        let cookie = form
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|h| h.to_str().ok())
            .find_map(|h| h.strip_prefix("wattlas_login="))
            .and_then(|h| h.split(';').next())
            .expect("login cookie")
            .to_owned();
        let page = form.text().await.expect("page");
        let marker = "name=\"csrf\" value=\"";
        let at = page.find(marker).expect("csrf") + marker.len();
        let csrf = page[at..].split('"').next().expect("csrf").to_owned();
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .post(format!("{base}/login"))
            .header("cookie", format!("wattlas_login={cookie}"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("username", name),
                ("password", attempt),
            ])
            .send()
            .await
            .expect("sign in");
        assert_eq!(r.status().as_u16(), expected);
    }
    for token in [
        api_token.as_str(),
        ADMIN,
        node_token.as_str(),
        "wat_not_a_real_token",
    ] {
        let _ = http
            .get(format!("{base}/api/v1/me"))
            .bearer_auth(token)
            .send()
            .await;
    }
    let log = std::fs::read_to_string(running.dir.path().join("server.log")).expect("log");
    assert!(log.contains("sign-in refused"), "the log is written at all");
    // User-supplied text is logged escaped: no line of the log is the forged one.
    assert!(
        !log.lines()
            .any(|l| l.contains("sign-in accepted user=admin") && !l.contains("\\n")),
        "a user name forged a log line"
    );
    for secret in [
        password,
        wrong,
        api_token.as_str(),
        ADMIN,
        node_token.as_str(),
        "wat_not_a_real_token",
    ] {
        assert!(
            !log.contains(secret),
            "the server log holds a secret: {secret}"
        );
    }
}

/// A building-management export as it comes: local times without a zone, power in W, a repeated
/// header and a cut-off line; imported with the meter's own token, which names the meter and its site.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_meter_token_imports_a_local_time_export_in_watts(db: PgPool) {
    let Running {
        dir,
        base,
        http,
        server: _server,
        ..
    } = Running::with_site(&db, "bms").await;
    let meter = post(
        &http,
        &base,
        ADMIN,
        "/api/v1/meters",
        json!({"name": "main-board", "site": "bms"}),
    )
    .await;
    let token = meter["token"].as_str().expect("token").to_owned();
    let export = dir.path().join("export.csv");
    std::fs::write(
        &export,
        "Timestamp,IT Power [W],Facility Power [W]\n\
         2024-07-01 14:00,800000,1040000\n\
         2024-07-01 14:05,800000,1040000\n\
         Timestamp,IT Power [W],Facility Power [W]\n\
         2024-07-01 14:10,800000,1040000\n\
         2024-07-01 14:15,800",
    )
    .expect("write");
    let out = Command::new(bin("wattlas-collector"))
        .args(["import", "meter"])
        .arg(&export)
        .args([
            "--timezone",
            "America/New_York",
            "--server",
            &base,
            "--token",
            &token,
        ])
        .output()
        .expect("import runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{report}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("readings stored: 3"), "{report}");
    assert!(report.contains("1: repeated header (line 4)"), "{report}");
    assert!(report.contains("1: last line cut off (line 6)"), "{report}");
    let rows: Vec<(chrono::DateTime<chrono::Utc>, f64, f64)> =
        sqlx::query_as("select time, it_kw, total_kw from facility_readings order by time")
            .fetch_all(&db)
            .await
            .expect("readings");
    assert_eq!(rows.len(), 3);
    // 14:00 EDT is 18:00 UTC; watts are stored as kW.
    assert_eq!(rows[0].0.to_rfc3339(), "2024-07-01T18:00:00+00:00");
    assert_eq!((rows[0].1, rows[0].2), (800.0, 1040.0));
}

/// Job history from sacct: steps skipped, arrays kept, node lists expanded, whole nodes charged their
/// GPUs, shared nodes registered without GPUs and flagged; a re-import changes nothing.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn sacct_history_registers_jobs_once_and_never_guesses_gpus(db: PgPool) {
    let Running {
        dir,
        base,
        http,
        server: _server,
        ..
    } = Running::with_site(&db, "hpc").await;
    for node in ["gpu01", "gpu02", "gpu03"] {
        add_node(&http, &base, "hpc", node).await;
        let gpus: Vec<serde_json::Value> = (0..4)
            .map(|i| json!({"index": i, "uuid": format!("GPU-{node}-{i}"), "model": "NVIDIA A100"}))
            .collect();
        post(
            &http,
            &base,
            ADMIN,
            "/api/v1/ingest/gpu",
            json!({"node": node, "gpus": gpus, "samples": []}),
        )
        .await;
    }
    let file = dir.path().join("sacct.txt");
    std::fs::write(
        &file,
        "JobID|User|JobName|Start|End|NodeList|AllocTRES|Comment\n\
         100|alice|bert|2024-07-01T10:00:00|2024-07-01T12:00:00|gpu[01-02]|billing=16,cpu=16,gres/gpu=8,node=2|workload=bert-mlm\n\
         100.batch|||2024-07-01T10:00:00|2024-07-01T12:00:00|gpu01|cpu=8|\n\
         100.0|||2024-07-01T10:00:01|2024-07-01T11:59:00|gpu[01-02]|cpu=16,gres/gpu=8|\n\
         200_3|bob|sweep|2024-07-01T11:00:00|2024-07-01T11:30:00|gpu03|cpu=4,gres/gpu=2,node=1|\n\
         300|carol|pending|Unknown|Unknown|None assigned|cpu=4|\n",
    )
    .expect("write");
    let import = || {
        let out = Command::new(bin("wattlas-collector"))
            .args(["import", "sacct"])
            .arg(&file)
            .args([
                "--site",
                "hpc",
                "--timezone",
                "Europe/Berlin",
                "--tag",
                "project=nlp",
            ])
            .args(["--server", &base, "--token", ADMIN])
            .output()
            .expect("import runs");
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{}\n{report}",
            String::from_utf8_lossy(&out.stderr)
        );
        report
    };
    let first = import();
    assert!(
        first.contains("jobs registered or already known: 2"),
        "{first}"
    );
    assert!(
        first.contains("2: job step, not a job (lines 3, 4)"),
        "{first}"
    );
    assert!(
        first.contains("job 200_3: gpu03: 2 of its 4 GPUs"),
        "{first}"
    );
    let whole = job(&http, &base, "100").await;
    assert_eq!(whole["gpu_count"], 8);
    assert_eq!(whole["start"], "2024-07-01T08:00:00Z");
    assert_eq!(whole["tags"]["workload"], "bert-mlm");
    assert_eq!(whole["tags"]["project"], "nlp");
    let shared = job(&http, &base, "200_3").await;
    assert_eq!(shared["gpu_count"], 0, "which 2 of 4 GPUs is never guessed");
    assert_eq!(
        shared["unknown_gpus"],
        json!([{"node": "gpu03", "gpus": 2}])
    );
    let page = http
        .get(format!("{base}/jobs/200_3"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Not charged: 2 GPUs of node gpu03"), "{page}");

    let second = import();
    assert!(
        second.contains("jobs registered or already known: 2"),
        "{second}"
    );
    assert_eq!(
        job(&http, &base, "100").await,
        whole,
        "a re-import changes nothing"
    );
    assert_eq!(job(&http, &base, "200_3").await, shared);
    let jobs: i64 = sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(jobs, 2);
}
