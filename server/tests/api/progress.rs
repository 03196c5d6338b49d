//! Training progress against energy: reported by the job's owner, charged the job's measured energy.

use crate::common::*;
use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_server::db::users::Role;

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn progress_is_plotted_against_the_jobs_energy(db: PgPool) {
    let app = App::spawn(db).await;
    let node = app.node().await;
    let t0 = minute_aligned_past(30);
    // 200 s at 200 W + 150 W: the job's energy grows 350 J per second.
    let (status, body) = app.ingest(&node, &batch(samples(t0, 200))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"site": "s1", "id": "train", "user": "alice", "start": t0, "end": t0 + Duration::seconds(190),
                    "allocations": [{"node": "n1", "gpus": [0, 1]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (name, role) in [
        ("alice", Role::Researcher),
        ("bob", Role::Researcher),
        ("sam", Role::Staff),
    ] {
        add_user(&app, name, role).await;
    }
    let alice = api_token(&app, "alice").await;

    // A report every 10 s; the loss falls from 3 to 1, reaching 1.015 at step 15 (150 s).
    let loss = |step: i64| -> f64 {
        match step {
            s if s < 15 => 3.0 - 1.9 * s as f64 / 14.0,
            15 => 1.015,
            s if s < 18 => 1.01,
            _ => 1.0,
        }
    };
    let reports: Vec<Value> = (0..=18)
        .map(|step| {
            json!({"time": t0 + Duration::seconds(10 * step), "step": step,
                   "metrics": {"loss": loss(step), "lr": 0.001}})
        })
        .collect();
    let path = "/api/v1/jobs/train/progress";
    let (status, body) = app.post(&alice, path, &Value::Array(reports.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stored"], 19);
    // Re-sending a step replaces it; one report alone is accepted too.
    let (status, body) = app.post(&alice, path, &reports[18]).await;
    assert_eq!((status, body["stored"].clone()), (StatusCode::OK, json!(1)));

    let (status, body) = app.get(&alice, path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reports"], 19);
    let metrics = body["metrics"].as_array().expect("metrics");
    assert_eq!(metrics.len(), 2, "loss and lr");
    let loss_m = metrics.iter().find(|m| m["name"] == "loss").expect("loss");
    for p in loss_m["points"].as_array().expect("points") {
        let step = p[0].as_i64().expect("step");
        let kwh = p[2].as_f64().expect("kwh");
        let expected = 350.0 * 10.0 * step as f64 / 3.6e6;
        assert!(
            (kwh - expected).abs() < 1e-9,
            "step {step}: {kwh} vs {expected}"
        );
    }
    // Within 1 % of the change (3 -> 1) is <= 1.02: first at step 15 (150 s); the last report is at
    // 180 s, so the last 1 % cost 30 s x 350 W.
    let lp = &loss_m["last_percent"];
    assert_eq!(lp["step"], 15);
    assert!(
        (lp["cost_kwh"].as_f64().expect("cost") - 350.0 * 30.0 / 3.6e6).abs() < 1e-9,
        "{lp}"
    );
    assert!(
        (lp["share"].as_f64().expect("share") - 30.0 / 180.0).abs() < 1e-9,
        "{lp}"
    );
    let lr = metrics.iter().find(|m| m["name"] == "lr").expect("lr");
    assert!(lr["last_percent"].is_null(), "a constant has no last 1 %");

    // The job page plots it and says what the last 1 % cost.
    let (_, page) = app.get_text(&alice, "/jobs/train").await;
    assert!(page.contains("/jobs/train/progress/loss.svg"), "{page}");
    assert!(
        page.contains(
            "The last 1 % of the change in loss (3 to 1, from step 15 on) cost 2.9 Wh, 16.7 %"
        ),
        "{page}"
    );
    let r = app
        .http
        .get(format!("{}/jobs/train/progress/loss.svg", app.base))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("svg");
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let svg = r.text().await.expect("svg");
    assert!(svg.contains("Cumulative IT energy of the job (kWh)") && svg.contains("last 1 %"));

    // Only the owner (or an admin) reports; another researcher does not even see the job.
    let bob = api_token(&app, "bob").await;
    let (status, _) = app.post(&bob, path, &reports[0]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get(&bob, path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let sam = api_token(&app, "sam").await;
    let (status, body) = app.post(&sam, path, &reports[0]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = app.get(&sam, path).await;
    assert_eq!(status, StatusCode::OK, "staff read every job");
    let (status, _) = app.post(&node, path, &reports[0]).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "node tokens do not report progress"
    );

    // Bad reports are refused whole, naming the field.
    let late =
        json!([reports[1], {"time": t0 + Duration::hours(3), "step": 99, "metrics": {"loss": 1}}]);
    let (status, body) = app.post(&alice, path, &late).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("[1].time:"),
        "{body}"
    );
    let (status, body) = app
        .post(
            &alice,
            path,
            &json!({"time": t0, "step": -1, "metrics": {"loss": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("[0].step:"),
        "{body}"
    );
    let (status, _) = app
        .post(&alice, path, &json!({"time": t0, "step": 1, "metrics": {}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, body) = app.get(&alice, path).await;
    assert_eq!(body["reports"], 19, "nothing partial stored");
}
