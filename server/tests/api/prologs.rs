//! One job on several nodes: each node's prolog registers its own part with its own clock, the
//! server merges them into one job, and it ends with its last epilog.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::common::*;

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn three_prologs_with_their_own_clocks_register_one_twelve_gpu_job(db: PgPool) {
    let app = App::spawn(db).await;
    let n1 = app.node().await;
    let mut tokens = vec![("n1", n1)];
    for name in ["n2", "n3"] {
        let (status, body) = app
            .post(ADMIN, "/api/v1/nodes", &json!({"name": name, "site": "s1"}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        tokens.push((name, body["token"].as_str().expect("token").to_owned()));
    }
    let t0 = minute_aligned_past(10);
    let powers = [100.0, 150.0, 200.0];
    // Each node's clock: the prologs ran within 2 s of each other.
    let offsets_ms = [1_000, 0, 2_000];
    let end_offsets_ms = [59_000, 60_000, 58_500];
    for (i, (name, token)) in tokens.iter().enumerate() {
        node_with_four_gpus(&app, token, name, t0, powers[i]).await;
        let start = t0 + Duration::milliseconds(offsets_ms[i]);
        let (status, body) = app
            .post(
                token,
                "/api/v1/jobs",
                &json!({"id": "mn-1", "user": "carol", "name": "ddp", "start": start,
                        "tags": {"workload": "bert-mlm"},
                        "allocations": [{"node": name, "gpus": [0, 1, 2, 3]}]}),
            )
            .await;
        let want = if i == 0 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        assert_eq!(status, want, "{name}: {body}");
    }
    // Each epilog ends its node's part; the job runs until the last one.
    for (i, (name, token)) in tokens.iter().enumerate() {
        let end = t0 + Duration::milliseconds(end_offsets_ms[i]);
        let (status, body) = app
            .post(token, "/api/v1/jobs/mn-1/end", &json!({"end": end}))
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["running"], i < 2, "{name}: {body}");
    }
    let job = app.job("mn-1").await;
    assert_eq!(job.gpu_count, 12);
    assert_eq!(job.start, t0, "the earliest part's start");
    assert_eq!(
        job.end,
        Some(t0 + Duration::seconds(60)),
        "the last part's end"
    );
    // Every GPU drew its node's power over the whole minute: the energy of all 12.
    let expected_j: f64 = powers.iter().map(|p| 4.0 * p * 60.0).sum();
    let got_j = job.it_energy_kwh * 3.6e6;
    assert!(
        (got_j - expected_j).abs() < 1e-6,
        "{got_j} J vs {expected_j} J"
    );

    // A node rewrites no one else's job: not its tags, not its owner, not its end.
    let (n2, n3) = (&tokens[1].1, &tokens[2].1);
    let (status, body) = app
        .post(
            n2,
            "/api/v1/jobs",
            &json!({"id": "mn-1", "user": "carol", "start": t0,
                    "tags": {"workload": "other"},
                    "allocations": [{"node": "n2", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("tags.workload"),
        "{body}"
    );
    let (status, body) = app
        .post(
            n2,
            "/api/v1/jobs",
            &json!({"id": "mn-1", "user": "mallory", "start": t0,
                    "allocations": [{"node": "n2", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = app
        .post(
            n3,
            "/api/v1/jobs",
            &json!({"id": "old-1", "user": "carol", "start": t0, "end": t0 + Duration::seconds(5),
                    "allocations": [{"node": "n3", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a finished job is no node's to register: {body}"
    );
    assert!(
        body["error"].as_str().expect("error").starts_with("end:"),
        "{body}"
    );
    // n1's own job: n3 holds no part of it and cannot end it.
    let (status, body) = app
        .post(
            &tokens[0].1,
            "/api/v1/jobs",
            &json!({"id": "solo", "user": "dan", "start": t0,
                    "allocations": [{"node": "n1", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = app
        .post(
            n3,
            "/api/v1/jobs/solo/end",
            &json!({"end": t0 + Duration::seconds(30)}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let solo = app.job("solo").await;
    assert!(solo.running && solo.tags.is_empty() && solo.gpu_count == 1);
    let after = app.job("mn-1").await;
    assert_eq!(
        after.tags.get("workload").map(String::as_str),
        Some("bert-mlm")
    );
    assert_eq!((after.user.as_str(), after.gpu_count), ("carol", 12));
}
