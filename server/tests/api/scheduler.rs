//! One job from several sources: a prolog registers a node's part under the job's id (or, where it
//! could not learn it, Slurm's raw id), the epilog ends it by its raw id, and sacct's record completes
//! it: never a twin, never contradicting the prolog (its GPUs stay charged, its times stay), and a record
//! that contradicts what is there (another user, other nodes, another raw id) is refused, naming why.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::common::*;

/// Site s1, node n1 with four GPUs drawing 200 W over `[t0, t0 + 60 s]`; the node's token.
async fn four_gpu_node(app: &App, t0: chrono::DateTime<Utc>) -> String {
    let token = app.node().await;
    node_with_four_gpus(app, &token, "n1", t0, 200.0).await;
    token
}

async fn job_ids(app: &App) -> Vec<String> {
    let (status, body) = app.get(ADMIN, "/api/v1/jobs?sort=id&order=asc").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().expect("id").to_owned())
        .collect()
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn sacct_completes_what_the_prolog_registered_and_never_adds_a_twin(db: PgPool) {
    let app = App::spawn(db).await;
    let t0 = minute_aligned_past(10);
    let node = four_gpu_node(&app, t0).await;

    // Array task 4_1 (raw job 5) on GPU 1: the prolog's clock, no name (Slurm 22.05 gives none).
    let start = t0 + Duration::milliseconds(1_300);
    let (status, body) = app
        .post(
            &node,
            "/api/v1/jobs",
            &json!({"id": "4_1", "raw_id": "5", "user": "ann", "start": start, "partition": "gpu",
                    "allocations": [{"node": "n1", "gpus": [1], "cpus": 2}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The epilog knows only raw job 5.
    let end = t0 + Duration::milliseconds(40_700);
    let (status, body) = app
        .post(&node, "/api/v1/jobs/5/end", &json!({"end": end}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "4_1");
    assert_eq!(body["running"], false);

    // sacct: second-resolution times, a GPU count it cannot place (a shared node), the fields it keeps.
    let record = json!({"id": "4_1", "raw_id": "5", "user": "ann", "name": "sweep", "site": "s1",
        "account": "physics", "partition": "gpu", "state": "COMPLETED",
        "start": t0 + Duration::seconds(1), "end": t0 + Duration::seconds(41),
        "nodes": ["n1"], "unknown_gpus": [{"node": "n1", "gpus": 1}]});
    let (status, body) = app.post(ADMIN, "/api/v1/jobs", &record).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let job = app.job("4_1").await;
    assert_eq!(job.name, "sweep");
    assert_eq!(job.scheduler.account.as_deref(), Some("physics"));
    assert_eq!(job.scheduler.state.as_deref(), Some("COMPLETED"));
    assert_eq!(job.scheduler.raw_id.as_deref(), Some("5"));
    assert_eq!(
        (job.start, job.end),
        (start, Some(end)),
        "the prolog's and epilog's times stay"
    );
    assert!(
        job.unknown_gpus.is_empty(),
        "the prolog named GPU 1: {:?}",
        job.unknown_gpus
    );
    assert_eq!(job.gpu_count, 1);
    // The listed summary says the same (the record marked it for recomputation).
    let (_, list) = app.get(ADMIN, "/api/v1/jobs").await;
    assert_eq!(list["jobs"][0]["name"], "sweep", "{list}");
    // Sent again: nothing changes.
    let (status, _) = app.post(ADMIN, "/api/v1/jobs", &record).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.job("4_1").await, job);

    // A prolog that could not ask scontrol registered raw job 7; sacct names it 6_2: the same job.
    let (status, body) = app
        .post(
            &node,
            "/api/v1/jobs",
            &json!({"id": "7", "raw_id": "7", "user": "ann", "start": t0 + Duration::seconds(42),
                    "allocations": [{"node": "n1", "gpus": [2]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"id": "6_2", "raw_id": "7", "user": "ann", "name": "sweep", "site": "s1",
                    "start": t0 + Duration::seconds(42), "end": t0 + Duration::seconds(50),
                    "state": "COMPLETED", "nodes": ["n1"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "7", "merged into the job of raw id 7");
    assert_eq!(
        body["running"], false,
        "no epilog came: sacct's end ends it"
    );
    assert_eq!(job_ids(&app).await, vec!["4_1", "7"]);

    // sacct first, a prolog later: the prolog's GPU is charged and no longer unknown.
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"id": "8", "raw_id": "8", "user": "ann", "site": "s1", "start": t0 + Duration::seconds(50),
                    "nodes": ["n1"], "unknown_gpus": [{"node": "n1", "gpus": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.job("8").await.unknown_gpus.len(), 1);
    let (status, body) = app
        .post(
            &node,
            "/api/v1/jobs",
            &json!({"id": "8", "raw_id": "8", "user": "ann", "start": Utc::now() - Duration::seconds(1),
                    "allocations": [{"node": "n1", "gpus": [3]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let eight = app.job("8").await;
    assert!(
        eight.unknown_gpus.is_empty() && eight.gpu_count == 1,
        "{eight:?}"
    );
    assert_eq!(job_ids(&app).await, vec!["4_1", "7", "8"]);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_record_that_contradicts_the_job_is_refused_naming_why(db: PgPool) {
    let app = App::spawn(db).await;
    let t0 = minute_aligned_past(10);
    let node = four_gpu_node(&app, t0).await;
    let (status, body) = app
        .post(
            &node,
            "/api/v1/jobs",
            &json!({"id": "9", "raw_id": "9", "user": "ann", "start": t0,
                    "allocations": [{"node": "n1", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let record = |over: serde_json::Value| {
        let mut r = json!({"id": "9", "raw_id": "9", "user": "ann", "site": "s1", "start": t0,
                           "end": t0 + Duration::seconds(30), "nodes": ["n1"]});
        for (k, v) in over.as_object().expect("object") {
            r[k] = v.clone();
        }
        r
    };
    for (over, field) in [
        (json!({"user": "mallory"}), "user"),
        (json!({"nodes": ["n2"]}), "nodes"),
        (json!({"raw_id": "99"}), "raw_id"),
    ] {
        let (status, body) = app.post(ADMIN, "/api/v1/jobs", &record(over)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{field}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.starts_with(field)),
            "{field}: {body}"
        );
    }
    let job = app.job("9").await;
    assert!(job.running, "nothing of a refused record was stored");
    // Only an admin's record says the scheduler's state or node list.
    let (status, body) = app
        .post(
            &node,
            "/api/v1/jobs",
            &json!({"id": "9", "user": "ann", "start": t0, "state": "COMPLETED",
                    "allocations": [{"node": "n1", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &record(json!({"state": "x".repeat(51)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("state")),
        "{body}"
    );
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn no_caller_ends_a_job_in_the_future_and_a_node_registers_no_job_from_years_ago(db: PgPool) {
    // Issue 33, N1: a node ended its own job at 9999-12-31 and the job's energy walked every minute
    // of 8,000 years; a running job from 2000 took 10 s to register.
    let app = App::spawn(db).await;
    let t0 = minute_aligned_past(10);
    let node = four_gpu_node(&app, t0).await;
    let (status, body) = app
        .post(
            &node,
            "/api/v1/jobs",
            &json!({"id": "10", "user": "ann", "start": t0,
                    "allocations": [{"node": "n1", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (token, who) in [(node.as_str(), "node"), (ADMIN, "admin")] {
        let (status, body) = app
            .post(
                token,
                "/api/v1/jobs/10/end",
                &json!({"end": "9999-12-31T00:00:00Z"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{who}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.starts_with("end")),
            "{who}: {body}"
        );
    }
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"id": "11", "user": "ann", "site": "s1", "start": t0,
                    "end": Utc::now() + Duration::days(2)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(app.job("10").await.running, "nothing was ended");
    // A node's job from years ago: refused, naming start (an admin's history import may).
    let (status, body) = app
        .post(
            &node,
            "/api/v1/jobs",
            &json!({"id": "12", "user": "ann", "start": "2000-01-01T00:00:00Z",
                    "allocations": [{"node": "n1", "gpus": [1]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("start")),
        "{body}"
    );
    // A near end (the node's clock a minute ahead) still ends it.
    let (status, body) = app
        .post(
            &node,
            "/api/v1/jobs/10/end",
            &json!({"end": Utc::now() + Duration::minutes(1)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["running"], false);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_requeued_jobs_record_names_the_nodes_of_its_last_run(db: PgPool) {
    // Slurm requeued job 9 from gpu01 onto gpu02; sacct's record of it names gpu02 alone. It was refused
    // as contradicting the prolog of gpu01 (found by the Slurm e2e test when Slurm placed the second run
    // elsewhere).
    let app = App::spawn(db).await;
    let t0 = minute_aligned_past(10);
    let n1 = four_gpu_node(&app, t0).await;
    let (status, body) = app
        .post(ADMIN, "/api/v1/nodes", &json!({"name": "n2", "site": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let n2 = body["token"].as_str().expect("token").to_owned();
    node_with_four_gpus(&app, &n2, "n2", t0, 100.0).await;
    let run = |start: chrono::DateTime<Utc>, node: &str| {
        json!({"id": "9", "raw_id": "9", "user": "ann", "start": start,
               "allocations": [{"node": node, "gpus": [0]}]})
    };
    // Run 1 on n1, killed by the requeue; run 2 on n2 a second and a half later.
    let (status, body) = app.post(&n1, "/api/v1/jobs", &run(t0, "n1")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let end1 = t0 + Duration::milliseconds(3_800);
    let (status, body) = app
        .post(&n1, "/api/v1/jobs/9/end", &json!({"end": end1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let start2 = t0 + Duration::milliseconds(5_300);
    let (status, body) = app.post(&n2, "/api/v1/jobs", &run(start2, "n2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let end2 = t0 + Duration::seconds(13);
    let (status, body) = app
        .post(&n2, "/api/v1/jobs/9/end", &json!({"end": end2}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // sacct: the last run, in whole seconds, on n2.
    let record = json!({"id": "9", "raw_id": "9", "user": "ann", "site": "s1", "state": "COMPLETED",
        "start": t0 + Duration::seconds(5), "end": t0 + Duration::seconds(13), "nodes": ["n2"]});
    let (status, body) = app.post(ADMIN, "/api/v1/jobs", &record).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["allocations"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    // A record naming a node the run did not touch is still refused.
    let (status, body) = app
        .post(ADMIN, "/api/v1/jobs", &json!({"id": "9", "raw_id": "9", "user": "ann", "site": "s1",
            "start": t0 + Duration::seconds(5), "end": t0 + Duration::seconds(13), "nodes": ["n1"]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_requeued_run_whose_prolog_overtakes_the_first_runs_epilog_ends_at_its_own_end(
    db: PgPool,
) {
    // The Slurm e2e test: job 9 requeued on gpu01; the second run's prolog reached the server before
    // the first run's epilog, and the second run's end was refused (its part "had ended").
    let app = App::spawn(db).await;
    let t0 = minute_aligned_past(10);
    let n1 = four_gpu_node(&app, t0).await;
    let run = |start: chrono::DateTime<Utc>| {
        json!({"id": "9", "raw_id": "9", "user": "ann", "start": start,
               "allocations": [{"node": "n1", "gpus": [1]}]})
    };
    let (status, body) = app.post(&n1, "/api/v1/jobs", &run(t0)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post(&n1, "/api/v1/jobs", &run(t0 + Duration::seconds(5)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for end in [t0 + Duration::seconds(4), t0 + Duration::seconds(13)] {
        let (status, body) = app
            .post(&n1, "/api/v1/jobs/9/end", &json!({"end": end}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(app.job("9").await.end, Some(t0 + Duration::seconds(13)));
}
