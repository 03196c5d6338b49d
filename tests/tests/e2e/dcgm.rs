//! The real collector reading a node's dcgm-exporter: a test endpoint serves a real dcgm-exporter scrape
//! (../shared/data/real) with its energy counter advancing at 250 W, the collector scrapes it every
//! second, and the job over five of those seconds gets the counter's advance.

use std::process::{Command, Stdio};

use sqlx::PgPool;
use wattlas_tests::harness::{add_node, bin, job_over, Running, ADMIN};

const WATTS: f64 = 250.0;

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn the_collector_reads_dcgm_exporter_and_the_job_gets_the_counters_advance(db: PgPool) {
    let running = Running::with_site(&db, "lab").await;
    let (base, http) = (running.base.clone(), running.http.clone());
    let token = add_node(&http, &base, "lab", "gpu01").await;
    let dir = running.dir.path();
    let url = wattlas_tests::exporter::serve(
        wattlas_tests::exporter::real_scrape("cncf-v1.35-upcloud-L40S.prom"),
        WATTS,
    )
    .await;

    let started = chrono::Utc::now();
    let log = dir.join("collector.log");
    let empty = dir.join("no-powercap");
    std::fs::create_dir_all(&empty).expect("dir");
    let collector = Command::new(bin("wattlas-collector"))
        .args(["run", "--source", "dcgm-exporter", "--url", &url])
        .args(["--node", "gpu01", "--server", &base])
        .env("WATTLAS_TOKEN", &token)
        .args(["--interval-ms", "1000", "--run-seconds", "9"])
        .arg("--powercap-root")
        .arg(&empty)
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("collector starts");
    let out = tokio::task::spawn_blocking(move || collector.wait_with_output())
        .await
        .expect("join")
        .expect("collector");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("dcgm-exporter ready"), "{text}");

    let (from, to) = (
        started + chrono::Duration::seconds(2),
        started + chrono::Duration::seconds(7),
    );
    let view = job_over(&http, &base, "dcgm", "gpu01", from, to).await;
    let got = view["gpu_energy_kwh"].as_f64().expect("energy") * 3.6e6;
    let expected = WATTS * (to - from).num_milliseconds() as f64 / 1000.0;
    assert!(
        (got / expected - 1.0).abs() < 0.005,
        "{got} J against the counter's {expected} J"
    );
    assert_eq!(view["energy_method"], "counter");
    // The GPU is known by the scrape's identity.
    let answer = http
        .get(format!("{base}/api/v1/nodes"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("nodes");
    assert!(answer.status().is_success());
    let nodes: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(nodes[0]["gpus"][0]["model"], "NVIDIA L40S", "{nodes}");
    assert!(
        nodes[0]["gpus"][0]["uuid"]
            .as_str()
            .is_some_and(|u| u.starts_with("GPU-")),
        "{nodes}"
    );
}
