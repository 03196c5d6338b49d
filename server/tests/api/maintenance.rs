//! Background tasks in several server processes at once on one database: each piece of work done once.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use wattlas_server::maintenance;
use wattlas_server::state::AppState;

use crate::common::*;

/// Every background task of one server, once, forcing what has settled (the future as the bound).
async fn run_tasks(state: &AppState) {
    let settled = Utc::now() + Duration::hours(1);
    maintenance::rollup_settled_before(state, settled)
        .await
        .expect("rollup");
    maintenance::node_energy_rollup(state, settled)
        .await
        .expect("node energy");
    maintenance::refresh_job_energy(state, 200)
        .await
        .expect("job energy");
    maintenance::retention_once(state).await.expect("retention");
}

/// CPU package readings every 5 s at 100 W for ten minutes from `from`.
fn package_readings(from: chrono::DateTime<Utc>) -> serde_json::Value {
    let readings: Vec<_> = (0..=120)
        .map(|k| {
            json!({"time": from + Duration::seconds(5 * k), "zone": "package-0", "kind": "cpu",
                   "energy_uj": 1_000_000 + k * 500_000_000, "max_energy_range_uj": 262_143_328_850u64})
        })
        .collect();
    json!({"samples": [], "node_energy": readings, "node_cpus": 64})
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn two_servers_running_their_background_tasks_at_once_do_each_piece_once(db: PgPool) {
    let a = App::spawn(db.clone()).await;
    // The second server: its own process state and pool over the same database.
    let pool = PgPoolOptions::new()
        .connect_with((*db.connect_options()).clone())
        .await
        .expect("second pool");
    let b = App::spawn(pool).await;

    // Work for every task: twelve finished jobs without a summary, their raw ranges pending, two
    // nodes' CPU readings, and an imported log past the raw retention (a chunk to drop once rolled up).
    let token = a.node().await;
    let t0 = minute_aligned_past(60);
    for k in 0..12 {
        a.new_job(&format!("j{k}"))
            .samples(&token, samples(t0 + Duration::seconds(30 * k), 20))
            .create()
            .await;
    }
    let (status, body) = a
        .post(ADMIN, "/api/v1/nodes", &json!({"name": "n2", "site": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token2 = body["token"].as_str().expect("token").to_owned();
    for t in [&token, &token2] {
        let (status, body) = a.post(t, "/api/v1/ingest/gpu", &package_readings(t0)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let old = minute_aligned_past(60 * 24 * 40);
    let mut history = batch(samples(old, 60));
    history.node = Some("n1".into());
    let (status, body) = a
        .post(
            ADMIN,
            "/api/v1/ingest/gpu?source=import",
            &serde_json::to_value(history).expect("json"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sqlx::query("delete from job_energy")
        .execute(&db)
        .await
        .expect("summaries gone");
    // A backlog is rolled up oldest hour first: the import on its own, before the jobs' ranges (whose
    // rollup would otherwise find their summaries computed and count them again in a later round).
    let import = maintenance::rollup_settled_before(&a.state, Utc::now() + Duration::hours(1))
        .await
        .expect("rollup");
    assert_eq!(import, 1, "the import's one range, alone");
    let pending: i64 = sqlx::query_scalar("select count(*) from rollup_pending")
        .fetch_one(&db)
        .await
        .expect("pending");
    assert!(pending >= 12, "{pending}");
    let before = (
        a.state.metrics.maintenance_work(),
        b.state.metrics.maintenance_work(),
    );

    // Both servers run every task at the same time, three rounds (a round's job summaries and
    // retention follow its rollup, so any piece left by one round is done by the next).
    for _ in 0..3 {
        tokio::join!(run_tasks(&a.state), run_tasks(&b.state));
    }

    let (wa, wb) = (
        a.state.metrics.maintenance_work(),
        b.state.metrics.maintenance_work(),
    );
    let done = |task: &str| {
        let of = |m: &std::collections::BTreeMap<&str, u64>| m.get(task).copied().unwrap_or(0);
        (of(&wa) - of(&before.0)) + (of(&wb) - of(&before.1))
    };
    let (rollup, nodes, jobs, chunks) = (
        done("rollup"),
        done("node_energy"),
        done("job_energy"),
        done("retention"),
    );
    assert_eq!(
        (rollup, nodes, jobs, chunks),
        (pending as u64, 2, 12, 1),
        "pending ranges, nodes, job summaries and raw chunks, each done once by one of the servers: \
         a {wa:?}, b {wb:?}"
    );
    // And done: nothing pending, every summary fresh, both nodes rolled up to their last reading.
    let left: (i64, i64, i64) = sqlx::query_as(
        r#"select (select count(*) from rollup_pending),
                  (select count(*) from job_energy where not stale),
                  (select count(*) from node_energy_rollup r
                   where r.rolled_to = (select max(t) from node_energy e where e.node_id = r.node_id))"#,
    )
    .fetch_one(&db)
    .await
    .expect("state");
    assert_eq!(left, (0, 12, 2));
    // The job's figures from the summaries the two servers wrote: GPU 0, 19.9 s at 200 W.
    let view = a.job("j5").await;
    let gpu_j = view.gpu_energy_kwh * 3.6e6;
    assert!((gpu_j - 19.9 * 200.0).abs() < 1e-6, "{gpu_j}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn retention_behind_a_held_node_row_gives_up_within_a_second_and_holds_up_no_reader(
    db: PgPool,
) {
    // drop_chunks of node_energy (a foreign key to nodes) waits for a lock on nodes even with nothing to
    // drop; queued behind a transaction holding a node's row, it made every later reader of nodes wait
    // as long (an API request's token lookup answered 503 after 5 s).
    let app = App::spawn(db.clone()).await;
    app.node().await;
    let holder = hold_node_row(&db, 1).await;
    let started = std::time::Instant::now();
    let retention = tokio::spawn({
        let state = app.state.clone();
        async move { maintenance::retention_once(&state).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // A reader of nodes after retention asked for its lock.
    let (status, nodes) = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.get(ADMIN, "/api/v1/nodes"),
    )
    .await
    .expect("the nodes list answers while the row is held");
    assert_eq!(status, StatusCode::OK, "{nodes}");
    assert_eq!(nodes[0]["name"], "n1");
    tokio::time::timeout(std::time::Duration::from_secs(10), retention)
        .await
        .expect("retention ends while the row is held")
        .expect("joins")
        .expect("retention");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let detail: serde_json::Value =
        sqlx::query_scalar("select detail from maintenance_runs where task = 'retention'")
            .fetch_one(&db)
            .await
            .expect("run");
    assert_eq!(detail["waited_out"], json!(["node_energy"]), "{detail}");
    // Released, the next run does it all.
    holder.rollback().await.expect("release");
    maintenance::retention_once(&app.state)
        .await
        .expect("retention");
    let detail: serde_json::Value =
        sqlx::query_scalar("select detail from maintenance_runs where task = 'retention'")
            .fetch_one(&db)
            .await
            .expect("run");
    assert_eq!(detail["waited_out"], json!([]), "{detail}");
}
