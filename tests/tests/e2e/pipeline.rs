//! The collector -> server pipeline: a server killed mid-run loses and doubles nothing; the server's
//! metrics count what it took and refused; no secret reaches its log.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_tests::harness::{
    add_node, bin, distinct_samples, job, server_cli, sign_in, stored_samples, wait_ready, Running,
    Server, ADMIN,
};
use wattlas_tests::{address_in_log, exposition};

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
    // The server runs without transparent huge pages: with them a 2 MiB page stays resident while any
    // of it is used, and a 20-minute soak's RSS climbed to 150 MB for 12-28 MB the server held.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("status");
    if let Some(thp) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(thp.split_whitespace().nth(1), Some("0"), "{thp}");
    }

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
        ])
        .env("WATTLAS_TOKEN", &token)
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
        // The simulator's ledger is GPU energy; the node's simulated CPU and DRAM come on top.
        let server_j = view["gpu_energy_kwh"].as_f64().expect("energy") * 3.6e6;
        let truth_j = truth["energy_j"].as_f64().expect("energy");
        let node_j = (view["cpu_energy_kwh"].as_f64().expect("simulated CPU")
            + view["dram_energy_kwh"].as_f64().expect("simulated DRAM"))
            * 3.6e6;
        assert!(node_j > 0.0, "job {id}: the simulated node's CPU and DRAM");
        let it_j = view["it_energy_kwh"].as_f64().expect("energy") * 3.6e6;
        assert!(
            (it_j - server_j - node_j).abs() < 1e-6,
            "job {id}: IT = GPU + CPU + DRAM"
        );
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
    let running = Running::with_site(&db, "lab").await;
    let (base, http) = (&running.base, &running.http);
    let password = "correct horse battery staple 7";
    let wrong = "wrong horse battery staple 8";
    let cli = |args: &[&str], input: &str| server_cli(&running.url, args, input);
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
        let (status, _) = sign_in(http, base, name, attempt).await;
        assert_eq!(status, expected);
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
