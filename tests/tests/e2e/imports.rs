//! Imports with the real collector binary: an nvidia-smi log twice, a meter's local-time export in
//! watts, a leap year of meter readings giving Table 1, and sacct history.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_tests::harness::{add_node, bin, job, stored_samples, Running, ADMIN};
use wattlas_tests::post;

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
            ])
            .env("WATTLAS_TOKEN", ADMIN)
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
            .args(["--node", "gpu01", "--timezone", "UTC", "--server", &base])
            .env("WATTLAS_TOKEN", ADMIN)
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
            .args(["--site", "ll", "--server", &base])
            .env("WATTLAS_TOKEN", ADMIN)
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
        .args(["--strict", "--site", "ll", "--server", &base])
        .env("WATTLAS_TOKEN", ADMIN)
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
        .args(["--timezone", "America/New_York", "--server", &base])
        .env("WATTLAS_TOKEN", &token)
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
            .args(["--server", &base])
            .env("WATTLAS_TOKEN", ADMIN)
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
