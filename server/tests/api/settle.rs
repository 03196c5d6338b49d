//! Settling: a node's live blocks of an hour that ended, rewritten as one packed block per GPU. Nothing
//! is lost or doubled, readers see the same samples, and late samples for a settled hour still dedupe.

use chrono::{Duration, DurationRound, Utc};
use reqwest::StatusCode;
use sqlx::PgPool;
use wattlas_server::db::samples;
use wattlas_server::ids::NodeId;
use wattlas_server::maintenance;

use crate::common::*;

async fn scalar(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn settled_hours_keep_every_sample_once_in_fewer_bytes(db: PgPool) {
    let app = App::spawn(db.clone()).await;
    let token = app.node().await;
    let node_id = NodeId(scalar(&db, "select id::int8 from nodes where name = 'n1'").await as i32);
    // 10-s batches from 40 minutes into an hour five hours ago to 20 minutes into the next.
    let hour = (Utc::now() - Duration::hours(5))
        .duration_trunc(Duration::hours(1))
        .expect("trunc");
    let t0 = hour + Duration::minutes(40);
    for k in 0..240 {
        let (status, body) = app
            .ingest(&token, &batch(samples(t0 + Duration::seconds(10 * k), 10)))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let total = 240 * 10 * 10 * 2;
    assert_eq!(app.stored().await, total);
    let window = (
        t0.timestamp_millis(),
        (t0 + Duration::minutes(40)).timestamp_millis(),
    );
    let before = samples::fetch(&db, node_id, &[], window.0, window.1)
        .await
        .expect("fetch");
    let one_gpu = samples::fetch(&db, node_id, &[1], window.0 + 1234, window.1 - 999)
        .await
        .expect("fetch");
    app.new_job("j")
        .start(t0 + Duration::minutes(5))
        .end(t0 + Duration::minutes(35))
        .create()
        .await;
    let job_before = app.job("j").await;
    let live_bytes = scalar(&db, "select sum(length(data))::int8 from gpu_raw").await;

    // Hours that have not ended long enough stay live.
    assert_eq!(
        maintenance::settle_before(&app.state, hour)
            .await
            .expect("settle"),
        0
    );
    let settled = maintenance::settle_before(&app.state, Utc::now())
        .await
        .expect("settle");
    assert_eq!(settled, 2, "two node-hours");
    assert_eq!(scalar(&db, "select count(*) from gpu_raw").await, 0);
    assert_eq!(
        scalar(&db, "select count(*) from gpu_settled").await,
        4,
        "a block per GPU-hour"
    );
    assert_eq!(app.stored().await, total);
    let packed_bytes = scalar(&db, "select sum(length(data))::int8 from gpu_settled").await;
    assert!(
        packed_bytes * 4 < live_bytes,
        "{packed_bytes} bytes settled, {live_bytes} live"
    );
    let after = samples::fetch(&db, node_id, &[], window.0, window.1)
        .await
        .expect("fetch");
    assert_eq!(after, before, "readers see the same samples");
    assert_eq!(
        samples::fetch(&db, node_id, &[1], window.0 + 1234, window.1 - 999)
            .await
            .expect("fetch"),
        one_gpu
    );
    sqlx::query("delete from job_energy")
        .execute(&db)
        .await
        .expect("summary recomputed");
    let job_after = app.job("j").await;
    assert_eq!(job_after.samples, job_before.samples);
    assert!((job_after.it_energy_kwh - job_before.it_energy_kwh).abs() < 1e-12);

    // A replayed batch of a settled hour stores nothing; a late one stores only what is new.
    let (_, body) = app.ingest(&token, &batch(samples(t0, 10))).await;
    assert_eq!(
        (body["stored"].as_i64(), body["duplicates"].as_i64()),
        (Some(0), Some(200))
    );
    let mut late = samples(t0 + Duration::milliseconds(50), 10);
    late.extend(samples(t0 + Duration::seconds(10), 10));
    let (_, body) = app.ingest(&token, &batch(late)).await;
    assert_eq!(
        (body["stored"].as_i64(), body["duplicates"].as_i64()),
        (Some(200), Some(200))
    );
    // Settling while a late batch of the same hour comes in: one waits for the other's lock.
    let late = batch(samples(
        t0 + Duration::seconds(20) + Duration::milliseconds(50),
        10,
    ));
    let (settled, (status, body)) = tokio::join!(
        maintenance::settle_before(&app.state, Utc::now()),
        app.ingest(&token, &late)
    );
    settled.expect("settle");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"].as_i64(), Some(200));
    maintenance::settle_before(&app.state, Utc::now())
        .await
        .expect("settle");
    assert_eq!(scalar(&db, "select count(*) from gpu_raw").await, 0);
    assert_eq!(scalar(&db, "select count(*) from gpu_settled").await, 4);
    assert_eq!(app.stored().await, total + 400);
    let all = samples::fetch(&db, node_id, &[], window.0, window.1)
        .await
        .expect("fetch");
    assert_eq!(all.len() as i64, total + 400, "every sample once");
    assert_eq!(
        maintenance::settle_before(&app.state, Utc::now())
            .await
            .expect("settle"),
        0,
        "nothing left to settle"
    );
}
