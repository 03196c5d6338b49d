//! Backup and restore (issue 32, item 2): `scripts/backup` taken while batches keep arriving, restored
//! by `scripts/restore` into a fresh PostgreSQL cluster, holds every sample acknowledged before the
//! backup began, each once, and a job that ended before it has the same energy there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_tests::harness::{
    add_node, job, run_script, sample_keys, stored_samples, Cluster, Running, Server, ADMIN,
};

/// Batch `k`: second `k` after `t0` of GPUs 0 and 1, ten samples each (GPU 1 with an energy counter).
fn batch(t0: chrono::DateTime<Utc>, k: i64) -> Value {
    let samples: Vec<Value> = (0..10)
        .flat_map(|i| {
            let time = t0 + chrono::Duration::milliseconds(1000 * k + 100 * i);
            let n = (10 * k + i) as u64;
            [
                json!({"time": time, "gpu": 0, "power_w": 200.0 + (n % 7) as f64}),
                json!({"time": time, "gpu": 1, "power_w": 150.0, "energy_mj": 5_000_000 + 15_000 * n}),
            ]
        })
        .collect();
    json!({
        "gpus": [
            {"index": 0, "uuid": "GPU-b0", "model": "NVIDIA A100-SXM4-40GB"},
            {"index": 1, "uuid": "GPU-b1", "model": "NVIDIA A100-SXM4-40GB"}
        ],
        "samples": samples,
    })
}

const ENERGY: &[&str] = &[
    "gpu_energy_kwh",
    "it_energy_kwh",
    "it_energy_kwh_low",
    "it_energy_kwh_high",
    "facility_energy_kwh",
    "samples",
    "coverage",
];

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_backup_taken_during_ingest_restores_every_acknowledged_sample(db: PgPool) {
    let app = Running::with_site(&db, "lab").await;
    let token = add_node(&app.http, &app.base, "lab", "b1").await;
    let t0 = (Utc::now() - chrono::Duration::minutes(20))
        .duration_trunc(chrono::Duration::seconds(1))
        .expect("trunc");

    // One sender, batch after batch, each recorded when its 200 came back.
    let acked: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acked, stop, http, base) = (
            acked.clone(),
            stop.clone(),
            app.http.clone(),
            app.base.clone(),
        );
        tokio::spawn(async move {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) && k < 1000 {
                let r = http
                    .post(format!("{base}/api/v1/ingest/gpu"))
                    .bearer_auth(&token)
                    .json(&batch(t0, k))
                    .send()
                    .await
                    .expect("request");
                assert!(r.status().is_success(), "batch {k}: {}", r.status());
                acked.lock().expect("lock").push((k, Instant::now()));
                k += 1;
            }
        })
    };
    let acked_count = || acked.lock().expect("lock").len();
    while acked_count() < 60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A job over the first 40 s, ended: all its samples acknowledged before the backup.
    wattlas_tests::post(
        &app.http,
        &app.base,
        ADMIN,
        "/api/v1/jobs",
        json!({"id": "b-1", "user": "ann", "site": "lab", "start": t0,
               "end": t0 + chrono::Duration::seconds(40),
               "allocations": [{"node": "b1", "gpus": [0, 1]}]}),
    )
    .await;

    let file = app.dir.path().join("wattlas.dump");
    let point = Instant::now();
    let url = app.url.clone();
    let backup_file = file.clone();
    tokio::task::spawn_blocking(move || run_script("backup", &backup_file, &url))
        .await
        .expect("backup");
    let at_backup = acked_count();
    // Ingest went on during the backup, and goes on after it.
    while acked_count() < at_backup + 20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    sender.await.expect("sender");
    let acked = acked.lock().expect("lock").clone();
    let before: Vec<i64> = acked
        .iter()
        .filter(|(_, t)| *t < point)
        .map(|(k, _)| *k)
        .collect();
    let during = acked.iter().filter(|(_, t)| *t >= point).count();
    assert!(
        before.len() >= 60 && during >= 20,
        "{} before, {during} during or after",
        before.len()
    );
    let meta = std::fs::read_to_string(file.with_extension("dump.txt")).expect("backup's .txt");
    assert!(
        meta.contains("timescaledb ") && meta.contains("migration "),
        "{meta}"
    );

    // A fresh cluster, an empty database in it, the backup restored.
    let cluster = Cluster::start();
    let admin_db = PgPool::connect(&cluster.url).await.expect("fresh cluster");
    sqlx::query("CREATE DATABASE restored")
        .execute(&admin_db)
        .await
        .expect("create");
    let restored_url = format!("{}/restored", cluster.url.rsplit_once('/').expect("url").0);
    run_script("restore", &file, &restored_url);
    let restored = PgPool::connect(&restored_url).await.expect("restored");

    let node: i32 = sqlx::query_scalar("SELECT id FROM nodes WHERE name = 'b1'")
        .fetch_one(&restored)
        .await
        .expect("the node is restored");
    let keys = sample_keys(&restored).await;
    let missing: Vec<i64> = before
        .iter()
        .copied()
        .filter(|k| {
            (0..10).any(|i| {
                let t =
                    (t0 + chrono::Duration::milliseconds(1000 * k + 100 * i)).timestamp_millis();
                !keys.contains(&(node, 0, t)) || !keys.contains(&(node, 1, t))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "batches acknowledged before the backup but not in it: {missing:?}"
    );
    let sent_until = (t0 + chrono::Duration::seconds(acked.len() as i64)).timestamp_millis();
    assert!(
        keys.iter()
            .all(|(n, g, t)| *n == node && *g < 2 && *t < sent_until),
        "the restore holds samples nobody sent"
    );
    assert_eq!(
        stored_samples(&restored).await,
        keys.len() as i64,
        "a sample is stored twice in the restore"
    );
    assert!(keys.len() >= before.len() * 20);
    eprintln!(
        "backup: {} batches acknowledged before it, {during} during or after; the restore holds {} \
         samples ({} acknowledged before)",
        before.len(),
        keys.len(),
        before.len() * 20
    );

    // The job's energy, on this release's server over the restore and over the original, once both
    // have summarised it.
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&restored_url, "127.0.0.1:0", &dir.path().join("server.log"));
    let base = format!("http://{}", server.addr);
    wattlas_tests::harness::wait_ready(&app.http, &base).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let original = job(&app.http, &app.base, "b-1").await;
    let copy = job(&app.http, &base, "b-1").await;
    for field in ENERGY {
        assert_eq!(original[field], copy[field], "{field}");
    }
    assert!(
        original["gpu_energy_kwh"].as_f64().expect("energy") > 0.0,
        "{original}"
    );
    assert_eq!(original["samples"], json!(800), "{original}");
    drop(server);
    restored.close().await;
    admin_db.close().await;
}
