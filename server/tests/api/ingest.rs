//! GPU sample ingest: whole-batch validation, tokens and bodies, gzip and resends, concurrent new GPUs,
//! the database away, and retention.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_protocol::{GpuBatch, GpuIdentity, IngestResult};
use wattlas_server::config::Config;
use wattlas_server::ids::NodeId;
use wattlas_server::state::AppState;

use crate::common::*;

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_bad_sample_refuses_the_whole_batch_and_names_the_field(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = Utc::now() - Duration::minutes(5);
    let mut s = samples(t0, 1);

    let mut bad = s.clone();
    bad[7].power_w = -3.0;
    let (status, body) = app.ingest(&token, &batch(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "samples[7].power_w: -3 is outside 0..2000");

    let mut bad = s.clone();
    bad[3].power_w = 2500.0;
    let (status, body) = app.ingest(&token, &batch(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("samples[3].power_w"),
        "{body}"
    );

    let mut bad = s.clone();
    bad[4].time = Utc::now() + Duration::minutes(10);
    let (status, body) = app.ingest(&token, &batch(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("samples[4].time"),
        "{body}"
    );

    let mut bad = s.clone();
    bad[5].gpu = 9;
    let (status, body) = app.ingest(&token, &batch(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("samples[5].gpu: unknown GPU index 9"),
        "{body}"
    );

    // Not JSON a sample can be made of: a string where a number belongs.
    let r = app
        .http
        .post(format!("{}/api/v1/ingest/gpu", app.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"samples":[{"time":"2026-01-01T00:00:00Z","gpu":0,"power_w":"lots"}]}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("json error");
    assert!(
        body["error"].as_str().expect("error").contains("power_w"),
        "{body}"
    );

    assert_eq!(app.stored().await, 0, "nothing partial is stored");

    s.truncate(4);
    let (status, body) = app.ingest(&token, &batch(s)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.stored().await, 4);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn tokens_and_bodies_are_checked(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let b = batch(samples(Utc::now() - Duration::minutes(1), 1));

    let (status, body) = app.ingest("not-a-token", &b).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid token");
    let r = app
        .http
        .post(format!("{}/api/v1/ingest/gpu", app.base))
        .json(&b)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Another node's token cannot write as n1.
    let (_, other) = app
        .post(ADMIN, "/api/v1/nodes", &json!({"name": "n2", "site": "s1"}))
        .await;
    let other = other["token"].as_str().expect("token");
    let mut as_n1 = b.clone();
    as_n1.node = Some("n1".into());
    let (status, body) = app.ingest(other, &as_n1).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().expect("error").contains("n2"),
        "{body}"
    );

    // A node token cannot create nodes.
    let (status, _) = app
        .post(
            &token,
            "/api/v1/nodes",
            &json!({"name": "n3", "site": "s1"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Over the body limit (1 MiB in these tests), after gzip decoding.
    let big = batch(samples(Utc::now() - Duration::minutes(15), 600));
    let json = serde_json::to_vec(&big).expect("json");
    assert!(json.len() > 1024 * 1024);
    let r = app.post_gzip(&token, &json).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.expect("json error");
    assert_eq!(body["error"], "request body is over the size limit");

    // Wrong content type.
    let r = app
        .http
        .post(format!("{}/api/v1/ingest/gpu", app.base))
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.stored().await, 0);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn gzip_batches_are_stored_once_however_they_are_resent(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let all = samples(Utc::now() - Duration::minutes(2), 3);
    let json = serde_json::to_vec(&batch(all.clone())).expect("json");
    let r = app.post_gzip(&token, &json).await;
    assert_eq!(r.status(), StatusCode::OK);
    let first: IngestResult = r.json().await.expect("result");
    assert_eq!(
        first,
        IngestResult {
            stored: 60,
            duplicates: 0
        }
    );

    // The same samples again, regrouped, with 10 new ones: only the new ones are stored.
    let mut again = all[20..].to_vec();
    again.extend(
        samples(Utc::now() - Duration::minutes(2) + Duration::seconds(3), 1)
            .into_iter()
            .take(10),
    );
    again.extend(all[..20].iter().cloned());
    let (status, body) = app.ingest(&token, &batch(again)).await;
    assert_eq!(status, StatusCode::OK);
    let second: IngestResult = serde_json::from_value(body).expect("result");
    assert_eq!(
        second,
        IngestResult {
            stored: 10,
            duplicates: 60
        }
    );
    assert_eq!(app.stored().await, 70);
}

/// An importer sends two batches of a node at once, both naming GPUs the server has not seen: whichever
/// commits second must still find them (it waited on the first's rows, which its snapshot predates).
/// Failed about one time in two on nodes of 8 new GPUs before the fix.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn concurrent_batches_of_new_gpus_both_find_them(db: PgPool) {
    let app = App::spawn(db).await;
    app.node().await;
    let t0 = minute_aligned_past(30);
    for n in 0..12 {
        let node = format!("imp{n}");
        let (status, body) = app
            .post(ADMIN, "/api/v1/nodes", &json!({"name": node, "site": "s1"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let gpus: Vec<GpuIdentity> = (0..8)
            .map(|i| GpuIdentity {
                index: i,
                uuid: "unknown (imported log)".into(),
                model: "unknown".into(),
                default_power_limit_w: None,
                keep_known: true,
            })
            .collect();
        let batch = |from_s: i64| GpuBatch {
            node: Some(node.clone()),
            gpus: gpus.clone(),
            samples: capped(t0 + Duration::seconds(from_s), 5, 8, 100.0, 300.0),
            dropped_samples_total: None,
            clock_steps: None,
            node_energy: vec![],
            node_cpus: None,
            dropped_ranges: Vec::new(),
        };
        let (a, b) = (batch(0), batch(600));
        let (ra, rb) = tokio::join!(app.ingest(ADMIN, &a), app.ingest(ADMIN, &b));
        assert_eq!(ra.0, StatusCode::OK, "{node}: {}", ra.1);
        assert_eq!(rb.0, StatusCode::OK, "{node}: {}", rb.1);
    }
}

#[tokio::test]
async fn without_the_database_the_api_says_503_and_retry_after() {
    // A pool pointing at a port that never answers: the server starts, but every query fails. The
    // port stays bound (and never accepts) for the whole test: a port freed at once was taken by
    // another test's server under the full suite's load, and the pool then spoke to it (500).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = silent.local_addr().expect("addr");
    let mut config = Config::with_admin_token(ADMIN);
    config.db_max_connections = 2;
    let url = format!("postgres://nobody:nothing@{closed}/none");
    let db = wattlas_server::startup::connect_lazy(&config, &url).expect("lazy pool");
    let app = App {
        state: AppState::new(db, config),
        ..App::spawn_lazy().await
    };
    let base = app.serve().await;

    let health = app
        .http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = app
        .http
        .post(format!("{base}/api/v1/ingest/gpu"))
        .bearer_auth("some-node-token")
        .json(&batch(samples(Utc::now() - Duration::minutes(1), 1)))
        .send()
        .await
        .expect("ingest");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "database unavailable, retry later");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn retention_drops_old_raw_chunks_and_keeps_rollups(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let old = minute_aligned_past(60 * 24 * 40);
    // A live collector does not send samples past the retention; an import does.
    let (status, body) = app.ingest(&token, &batch(samples(old, 120))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("older than the raw retention (30 days)"),
        "{body}"
    );
    // (History takes the admin token, naming the node: issue 33, N7.)
    let mut history = batch(samples(old, 120));
    history.node = Some("n1".into());
    let (status, _) = app
        .post(
            ADMIN,
            "/api/v1/ingest/gpu?source=import",
            &serde_json::to_value(history).expect("json"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .ingest(
            &token,
            &batch(samples(Utc::now() - Duration::minutes(3), 1)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // An imported log older than the retention period stays until the rollup task has it.
    let dropped = wattlas_server::maintenance::retention_once(&app.state)
        .await
        .expect("retention");
    assert_eq!(dropped, 0, "not rolled up yet");
    assert_eq!(app.stored().await, 2420);
    wattlas_server::maintenance::rollup_settled_before(&app.state, Utc::now() + Duration::hours(1))
        .await
        .expect("rollup");
    let dropped = wattlas_server::maintenance::retention_once(&app.state)
        .await
        .expect("retention");
    assert_eq!(dropped, 1);
    assert_eq!(app.stored().await, 20, "recent raw samples stay");
    let energy: f64 = sqlx::query_scalar(
        "select sum(energy_j) from gpu_minute where minute < now() - interval '30 days'",
    )
    .fetch_one(&app.state.db)
    .await
    .expect("sum");
    // 119.9 s of samples at 200 W + 150 W.
    assert!(
        (energy - 119.9 * 350.0).abs() < 1e-6,
        "rollups keep the old energy: {energy}"
    );
}

/// Many collectors at once: their batches are stored in shared transactions (group commit), each
/// sample once, and each request is answered with what its own batch stored, duplicates included
/// (a batch sent twice at the same moment, as a spool replay beside the live push would).
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn concurrent_batches_are_committed_in_groups_each_sample_once(db: PgPool) {
    let app = App::spawn_with(db, |c| c.ingest_writers = 1).await;
    app.node().await;
    let mut tokens = Vec::new();
    for n in 2..=8 {
        let (status, body) = app
            .post(
                ADMIN,
                "/api/v1/nodes",
                &json!({"name": format!("n{n}"), "site": "s1"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        tokens.push(body["token"].as_str().expect("token").to_owned());
    }
    let t0 = minute_aligned_past(10);
    // 7 nodes x 10 one-second batches (20 samples each), every batch sent twice, all at once.
    let mut requests = Vec::new();
    for token in &tokens {
        for k in 0..10 {
            let body = batch(samples(t0 + Duration::seconds(k), 1));
            for _ in 0..2 {
                let (base, http, token, body) = (
                    app.base.clone(),
                    app.http.clone(),
                    token.clone(),
                    body.clone(),
                );
                requests.push(tokio::spawn(async move {
                    let r = http
                        .post(format!("{base}/api/v1/ingest/gpu"))
                        .bearer_auth(token)
                        .json(&body)
                        .send()
                        .await
                        .expect("ingest");
                    (r.status(), r.json::<Value>().await.expect("json"))
                }));
            }
        }
    }
    let mut answers = Vec::new();
    for r in requests {
        answers.push(r.await.expect("request"));
    }
    let mut stored = 0;
    for pair in answers.chunks(2) {
        let mut seen = Vec::new();
        for (status, body) in pair {
            assert_eq!(*status, StatusCode::OK, "{body}");
            seen.push((
                body["stored"].as_u64().expect("stored"),
                body["duplicates"].as_u64().expect("dups"),
            ));
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            vec![(0, 20), (20, 0)],
            "one of the two stored it, the other saw it stored"
        );
        stored += 20;
    }
    assert_eq!(app.stored().await, stored);
    assert_eq!(stored, 7 * 10 * 20);
    let (_, text) = app.get_text(ADMIN, "/metrics").await;
    let metric = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    let (commits, batches) = (
        metric("wattlas_ingest_commits_total"),
        metric("wattlas_ingest_committed_batches_total"),
    );
    assert_eq!(batches, 140.0, "every request went through the writers");
    // 140 requests at once, one writer: it cannot have committed them one at a time.
    assert!(commits < batches, "{commits} commits for {batches} batches");
    eprintln!("140 batches in {commits} commits");
}

/// When the writers cannot keep up and the queue is full, a batch is refused with 503 and Retry-After
/// (the collector keeps it in its spool), and nothing of it is stored; what was queued is stored.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_full_ingest_queue_answers_503_and_stores_nothing_of_the_refused_batch(db: PgPool) {
    let app = App::spawn_with(db.clone(), |c| {
        c.ingest_writers = 1;
        c.ingest_queue = 1;
    })
    .await;
    let token = app.node().await;
    let t0 = minute_aligned_past(10);
    // Hold node 1's ingest lock: the writer blocks on the first batch it takes.
    let holder = hold_node_row(&db, 1).await;
    let send = |k: i64| {
        let (app, token) = (&app, token.clone());
        async move {
            app.ingest(&token, &batch(samples(t0 + Duration::seconds(k), 1)))
                .await
        }
    };
    let first = tokio::spawn({
        let (base, http, token) = (app.base.clone(), app.http.clone(), token.clone());
        async move {
            http.post(format!("{base}/api/v1/ingest/gpu"))
                .bearer_auth(token)
                .json(&batch(samples(t0, 1)))
                .send()
                .await
                .expect("first")
                .status()
        }
    });
    // The writer has the first batch (and waits on the lock); the second fills the queue.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = tokio::spawn({
        let (base, http, token) = (app.base.clone(), app.http.clone(), token.clone());
        async move {
            http.post(format!("{base}/api/v1/ingest/gpu"))
                .bearer_auth(token)
                .json(&batch(samples(t0 + Duration::seconds(1), 1)))
                .send()
                .await
                .expect("second")
                .status()
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = app
        .http
        .post(format!("{}/api/v1/ingest/gpu", app.base))
        .bearer_auth(&token)
        .json(&batch(samples(t0 + Duration::seconds(2), 1)))
        .send()
        .await
        .expect("third");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "the ingest queue is full, retry later");
    holder.rollback().await.expect("release");
    assert_eq!(first.await.expect("first"), StatusCode::OK);
    assert_eq!(second.await.expect("second"), StatusCode::OK);
    assert_eq!(
        app.stored().await,
        40,
        "the two queued batches, not the refused one"
    );
    // Sent again once there is room: stored.
    let (status, body) = send(2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.stored().await, 60);
    let (_, text) = app.get_text(ADMIN, "/metrics").await;
    assert!(
        text.contains("wattlas_ingest_queue_full_total 1\n"),
        "{text}"
    );
}

/// The binary form stores exactly what the same batch as JSON stores (either form's resend is a
/// duplicate of the other), and is refused by the same rules, naming the field.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn binary_batches_store_what_json_stores_and_are_checked_alike(db: PgPool) {
    use wattlas_protocol::wire::{encode_batch, BATCH_CONTENT_TYPE};
    let app = App::spawn(db.clone()).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(10);
    let post = |body: Vec<u8>| {
        let (http, base, token) = (app.http.clone(), app.base.clone(), token.clone());
        async move {
            let r = http
                .post(format!("{base}/api/v1/ingest/gpu"))
                .bearer_auth(token)
                .header("content-type", BATCH_CONTENT_TYPE)
                .body(body)
                .send()
                .await
                .expect("post");
            (r.status(), r.json::<Value>().await.expect("json"))
        }
    };
    let first = batch(samples(t0, 2));
    let frame = encode_batch(&first).expect("frame");
    let json = serde_json::to_vec(&first).expect("json");
    assert!(
        frame.len() * 8 < json.len(),
        "{} vs {}",
        frame.len(),
        json.len()
    );
    let (status, body) = post(frame.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["stored"].as_u64(), body["duplicates"].as_u64()),
        (Some(40), Some(0))
    );
    // The same batch as JSON, and the frame again: all duplicates.
    let (status, body) = app.ingest(&token, &first).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicates"], 40);
    let (_, body) = post(frame).await;
    assert_eq!(body["duplicates"], 40);
    let window = (t0.timestamp_millis(), t0.timestamp_millis() + 60_000);
    let stored =
        wattlas_server::db::samples::fetch(&app.state.db, NodeId(1), &[], window.0, window.1)
            .await
            .expect("fetch");
    let want = wattlas_server::service::ingest::checks::validate_samples(
        &first.samples,
        &[0, 1].into_iter().collect(),
        "n1",
        Utc::now(),
    )
    .expect("valid");
    let mut want = want;
    want.sort_by_key(|s| (s.gpu, s.t_ms));
    assert_eq!(stored, want, "what is stored is what JSON would store");
    let job = app
        .new_job("j-binary")
        .start(t0)
        .end(t0 + Duration::milliseconds(1900))
        .gpus(&[0, 1])
        .create()
        .await;
    // 1.9 s at 200 W (GPU 0) and 150 W by counter (GPU 1).
    assert!(
        (job.gpu_energy_kwh * 3.6e6 - 1.9 * 350.0).abs() < 1e-6,
        "{}",
        job.gpu_energy_kwh
    );

    // Refusals name the field and the sample (its place in the block: by GPU, then time).
    let mut bad = batch(samples(t0 + Duration::seconds(5), 1));
    bad.samples[3].temp_c = Some(300.0);
    let mut frame = encode_batch(&bad).expect("frame");
    let (status, body) = post(frame.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Bytes changed after encoding: a utilisation of 100.1 % in the block.
    let mut raw = wattlas_protocol::wire::decode_batch(&frame)
        .expect("decodes")
        .1;
    raw[12].util_dpct = Some(1001);
    let meta_len = u32::from_le_bytes(frame[4..8].try_into().expect("len")) as usize;
    frame.truncate(8 + meta_len + 8);
    frame.extend(wattlas_protocol::codec::encode(raw[0].t_ms, &raw));
    let before = app.stored().await;
    let (status, body) = post(frame.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"],
        "samples[12].util_pct: 100.1 is outside 0..100"
    );
    frame.truncate(frame.len() - 3);
    let (status, body) = post(frame).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("body: samples:"),
        "{body}"
    );
    // A block format of a later release: 415, on which the collector sends JSON (not 400, on which
    // it would drop the batch).
    let mut later = encode_batch(&batch(samples(t0 + Duration::seconds(9), 1))).expect("frame");
    let later_meta = u32::from_le_bytes(later[4..8].try_into().expect("len")) as usize;
    later[8 + later_meta + 8] = 9;
    let (status, body) = post(later).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert_eq!(
        body["error"],
        "body: block format 9 is not read by this server (formats 1 and 3): send the batch as JSON"
    );
    let (status, body) = post(b"{\"samples\": []}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "body: not a Wattlas binary batch (no WTB1 header)"
    );
    let mut nul = batch(vec![]);
    nul.gpus[0].model = "A\u{0}100".into();
    let (status, body) = post(encode_batch(&nul).expect("frame")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "gpus[0].model: contains a NUL character");
    assert_eq!(
        app.stored().await,
        before,
        "nothing of a refused batch is stored"
    );
}

/// A batch starting after the node's latest stored sample (`nodes.raw_until`) skips the duplicate
/// check; one reaching back before it (a spool replaying an older minute after newer ones, a resend
/// after the hour was settled) is checked against the blocks, even when its first samples are new.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn batches_out_of_order_or_resent_after_settling_are_each_stored_once(db: PgPool) {
    let app = App::spawn(db.clone()).await;
    let token = app.node().await;
    let raw_until = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<Utc>>>(
            "select raw_until from nodes where name = 'n1'",
        )
        .fetch_one(&db)
        .await
        .expect("raw_until")
    };
    assert_eq!(raw_until().await, None, "nothing stored");
    let t0 = minute_aligned_past(150);
    let send = |s: Vec<wattlas_protocol::GpuSample>| {
        let (app, token) = (&app, &token);
        async move {
            let (status, body) = app.ingest(token, &batch(s)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let r: IngestResult = serde_json::from_value(body).expect("result");
            (r.stored, r.duplicates)
        }
    };
    let (early, late) = (samples(t0, 4), samples(t0 + Duration::seconds(10), 4));
    assert_eq!(send(late.clone()).await, (80, 0));
    let last = late.last().expect("sample").time;
    assert_eq!(raw_until().await, Some(last));
    // Older than what is stored, all new: checked, all stored; the mark stays.
    assert_eq!(send(early.clone()).await, (80, 0));
    assert_eq!(raw_until().await, Some(last));
    assert_eq!(send(early.clone()).await, (0, 80));
    // New samples first, then repeats of both stored batches.
    let mut mixed = samples(t0 + Duration::seconds(5), 2);
    mixed.extend(early[40..].iter().cloned());
    mixed.extend(late[..20].iter().cloned());
    assert_eq!(send(mixed).await, (40, 60));
    // Past the mark: stored without reading blocks, and the mark moves on.
    let next = samples(t0 + Duration::seconds(14), 1);
    assert_eq!(send(next.clone()).await, (20, 0));
    assert_eq!(raw_until().await, Some(next.last().expect("sample").time));

    // Settled blocks keep the mark, and a resend of their samples is caught there.
    let settled = wattlas_server::maintenance::settle_before(&app.state, Utc::now())
        .await
        .expect("settle");
    assert!(settled >= 1, "{settled} node-hours settled");
    let live: i64 = sqlx::query_scalar("select count(*) from gpu_raw")
        .fetch_one(&db)
        .await
        .expect("live");
    assert_eq!(live, 0, "all settled");
    assert_eq!(raw_until().await, Some(next.last().expect("sample").time));
    let mut resent = early.clone();
    resent.extend(next);
    resent.extend(samples(t0 + Duration::seconds(20), 1));
    assert_eq!(send(resent).await, (20, 100));
    assert_eq!(app.stored().await, 80 + 80 + 40 + 20 + 20);
}

/// A collector's token (or the one it replaced, in its grace) is found through indexes, not by reading
/// every node: a fleet of thousands of nodes looks each token up every few seconds. The plan read all
/// 6,250 nodes of the binary soak (3.3 ms of PostgreSQL's CPU a lookup) before the grace column had
/// its index.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_collector_token_is_looked_up_through_indexes_in_a_large_fleet(db: PgPool) {
    sqlx::query("insert into sites (name, timezone) values ('s', 'UTC')")
        .execute(&db)
        .await
        .expect("site");
    // 5,000 nodes, one in ten with a replaced token still in its grace; then fresh statistics.
    sqlx::query(
        "insert into nodes (name, site_id, token_sha256, prev_token_sha256, prev_token_until)
        select 'n' || k, (select id from sites), sha256(('new' || k)::bytea),
            case when k % 10 = 0 then sha256(('old' || k)::bytea) end,
            case when k % 10 = 0 then now() + interval '1 hour' end
        from generate_series(1, 5000) k",
    )
    .execute(&db)
    .await
    .expect("nodes");
    sqlx::query("analyze nodes")
        .execute(&db)
        .await
        .expect("analyze");
    for digest_of in ["new4321", "old4320"] {
        let sql = format!(
            "explain (format json) select n.id from nodes n where {}",
            wattlas_server::db::tokens::matches("n")
        );
        let plan: Value = sqlx::query_scalar(&sql)
            .bind(wattlas_server::auth::token_digest(digest_of))
            .fetch_one(&db)
            .await
            .expect("plan");
        assert!(
            !plan.to_string().contains("Seq Scan"),
            "the token {digest_of} is looked up by reading the table: {plan}"
        );
    }
}

/// Issue 32, item 4: a collector sends its clock with each push; the server keeps the node's offset,
/// shows it on the admin page and flags it on the overview beyond 2 s (a node 30 s behind here). A
/// push without the clock leaves the last offset as it was.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_nodes_clock_offset_is_kept_shown_and_flagged(db: PgPool) {
    use wattlas_server::db::users::Role;
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(3);
    let push = |clock: Option<i64>, from: chrono::DateTime<Utc>| {
        let mut r = app
            .http
            .post(format!("{}/api/v1/ingest/gpu", app.base))
            .bearer_auth(&token)
            .json(&batch(samples(from, 2)));
        if let Some(ms) = clock {
            r = r.header(wattlas_protocol::CLOCK_HEADER, ms.to_string());
        }
        r.send()
    };
    let behind = Utc::now().timestamp_millis() - 30_000;
    let r = push(Some(behind), t0).await.expect("push");
    assert_eq!(r.status(), StatusCode::OK);
    let offset_of = || {
        sqlx::query_scalar::<_, Option<i32>>("select clock_offset_ms from nodes where name = 'n1'")
            .fetch_one(&app.state.db)
    };
    let offset = offset_of().await.expect("q").expect("offset kept");
    assert!((30_000..31_000).contains(&offset), "{offset}");
    let r = push(None, t0 + chrono::Duration::seconds(10))
        .await
        .expect("push");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        offset_of().await.expect("q"),
        Some(offset),
        "kept without a clock"
    );
    add_user(&app, "sam", Role::Staff).await;
    add_user(&app, "ada", Role::Admin).await;
    let ada = crate::sign_in::browser(&app, "ada").await;
    let (_, page) = app.page(&ada.cookie, "/admin").await;
    assert!(
        page.contains("<span class=\"error\">30.") && page.contains(" s behind at "),
        "{page}"
    );
    let sam = crate::sign_in::browser(&app, "sam").await;
    let (_, page) = app.page(&sam.cookie, "/overview").await;
    assert!(
        page.contains("Node clocks off by more than 2 s") && page.contains("n1 (30."),
        "{page}"
    );
    // A job of the node says its clock beside its collector.
    app.new_job("c1")
        .start(t0)
        .end(t0 + chrono::Duration::seconds(2))
        .create()
        .await;
    let (_, page) = app.get_text(ADMIN, "/jobs/c1").await;
    assert!(
        page.contains("<td><span class=\"error\">30.") && page.contains(" s behind at "),
        "{page}"
    );
    // In step: no warning.
    let r = push(
        Some(Utc::now().timestamp_millis()),
        t0 + chrono::Duration::seconds(20),
    )
    .await
    .expect("push");
    assert_eq!(r.status(), StatusCode::OK);
    let (_, page) = app.page(&sam.cookie, "/overview").await;
    assert!(!page.contains("Node clocks off"), "{page}");
}

/// A collector's dropped ranges (its spool overflowed in an outage) reach the jobs that lost them:
/// stored once however often sent, refused whole when bad (named), said on the job's view and page.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn dropped_ranges_reach_the_jobs_that_lost_them_once(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(30);
    // GPU 0 for a minute: samples for the first 20 s and the last 20 s; the middle was dropped.
    let mut s = samples(t0, 20);
    s.extend(samples(t0 + Duration::seconds(40), 20));
    let job = app
        .new_job("lossy")
        .gpus(&[0])
        .start(t0)
        .end(t0 + Duration::seconds(60))
        .samples(&token, s)
        .create()
        .await;
    assert_eq!(job.lost, None);
    let coverage = job.coverage;

    let range = |gpu: u32, samples: u64| wattlas_protocol::DroppedRange {
        gpu,
        from: t0 + Duration::seconds(20),
        to: t0 + Duration::milliseconds(39_900),
        samples,
    };
    let mut report = batch(vec![]);
    report.dropped_ranges = vec![range(0, 200), range(1, 200)];
    for _ in 0..2 {
        let (status, body) = app.ingest(&token, &report).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let job = app.job("lossy").await;
    let lost = job.lost.clone().expect("the job says what it lost");
    assert_eq!(
        lost.samples, 200,
        "GPU 1 is not the job's; sent twice, counted once"
    );
    assert!((lost.gpu_seconds - 19.9).abs() < 1e-6, "{lost:?}");
    assert!(
        (job.coverage - coverage).abs() < 1e-9,
        "the gap was uncovered already"
    );
    let (status, page) = app.get_text(ADMIN, "/jobs/lossy").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Lost before they reached Wattlas: 200 samples (20 GPU-seconds of this job)"),
        "{page}"
    );

    // Bad ranges are refused whole, named, and store nothing.
    let before = app.stored().await;
    for (bad, error) in [
        (
            wattlas_protocol::DroppedRange {
                to: t0,
                ..range(0, 5)
            },
            "dropped_ranges[1].to: is before from",
        ),
        (range(64, 5), "dropped_ranges[1].gpu: 64 is over 63"),
        (
            range(0, 100_000),
            "dropped_ranges[1].samples: 100000 in 19 s is not a count of dropped samples",
        ),
    ] {
        let mut refused = batch(samples(t0 + Duration::seconds(61), 1));
        refused.dropped_ranges = vec![range(0, 200), bad];
        let (status, body) = app.ingest(&token, &refused).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], error);
    }
    assert_eq!(app.stored().await, before, "nothing of a refused batch");
    assert_eq!(app.job("lossy").await.lost.expect("lost").samples, 200);
}
