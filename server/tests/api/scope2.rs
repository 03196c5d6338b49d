//! Scope 2 as reporting rules ask (issue 35, item 4): a contractual instrument covering part of a job's
//! hours gives its market-based CO2e beside the location-based one, both labelled on its statement;
//! a GPU model's embodied figure gives the job's embodied CO2e, shown apart; admins set them, checked
//! field by field.

use chrono::{Duration, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_server::db::users::Role;

use crate::common::*;

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn market_based_and_embodied_co2e_beside_the_location_based(db: PgPool) {
    let app = App::spawn(db).await;
    let node = app.node().await;
    add_user(&app, "alice", Role::Researcher).await;
    let alice = api_token(&app, "alice").await;
    let (status, body) = app
        .put(
            ADMIN,
            "/api/v1/sites/s1",
            &json!({"carbon_g_per_kwh": 300.0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // GPU 0 at 200 W for 20 minutes, the first ten in hour h0 and the last ten in h1 (no meter: PUE
    // 1.58 throughout, so each half is half the facility energy).
    let h1 = (Utc::now() - Duration::hours(1))
        .duration_trunc(Duration::hours(1))
        .expect("trunc");
    let h0 = h1 - Duration::hours(1);
    let t0 = h1 - Duration::minutes(10);
    let only_gpu0: Vec<_> = samples(t0, 20 * 60)
        .into_iter()
        .filter(|s| s.gpu == 0)
        .collect();
    for chunk in only_gpu0.chunks(3000) {
        let (status, body) = app.ingest(&node, &batch(chunk.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    app.new_job("m1")
        .gpus(&[0])
        .start(t0)
        .end(t0 + Duration::minutes(20))
        .create()
        .await;

    // An instrument at 0 g/kWh for hour h1 only (a wind PPA, say); bad ones name their field.
    let contract = json!({"valid_from": h1, "valid_to": h1 + Duration::hours(1),
                          "g_per_kwh": 0.0, "instrument": "PPA, wind, 2026"});
    let (status, body) = app
        .post(&alice, "/api/v1/sites/s1/contracts", &contract)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app
        .post(ADMIN, "/api/v1/sites/s1/contracts", &contract)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for (bad, field, want) in [
        (
            json!({"valid_from": h0, "valid_to": h1 + Duration::minutes(30), "g_per_kwh": 10.0, "instrument": "x"}),
            "valid_from",
            StatusCode::CONFLICT,
        ),
        (
            json!({"valid_from": h0, "valid_to": h0, "g_per_kwh": 10.0, "instrument": "x"}),
            "valid_to",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"valid_from": h0, "valid_to": h1, "g_per_kwh": -1.0, "instrument": "x"}),
            "g_per_kwh",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"valid_from": h0, "valid_to": h1, "g_per_kwh": 1.0, "instrument": " "}),
            "instrument",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body) = app.post(ADMIN, "/api/v1/sites/s1/contracts", &bad).await;
        assert_eq!(status, want, "{bad}: {body}");
        assert!(
            body["error"].as_str().expect("error").starts_with(field),
            "{bad}: {body}"
        );
    }
    let (status, listed) = app.get(&alice, "/api/v1/sites/s1/contracts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // The model's embodied figure.
    let model = "Tesla V100-SXM2-32GB".replace(' ', "%20");
    let figure = json!({"kg_per_gpu_hour": 0.03, "source": "manufacturer's product carbon footprint over 5 years"});
    let (status, _) = app
        .put(
            &alice,
            &format!("/api/v1/gpu-models/{model}/embodied"),
            &figure,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .put(
            ADMIN,
            &format!("/api/v1/gpu-models/{model}/embodied"),
            &figure,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .put(
            ADMIN,
            &format!("/api/v1/gpu-models/{model}/embodied"),
            &json!({"kg_per_gpu_hour": 1e9, "source": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("error")
        .starts_with("kg_per_gpu_hour"));

    wattlas_server::maintenance::refresh_job_energy(&app.state, 100)
        .await
        .expect("summaries");
    let job = app.job("m1").await;
    let location = job.co2e_kg.expect("location-based");
    let market = job.co2e_market_kg.expect("market-based");
    // Half the facility energy in h1 at 0 g/kWh: half the location-based figure.
    assert!(
        (job.market_contract_share - 0.5).abs() < 0.01,
        "{}",
        job.market_contract_share
    );
    assert!(
        (market - location * (1.0 - job.market_contract_share)).abs() < 1e-9,
        "{market} vs {location}"
    );
    let embodied = job.embodied_kg.expect("embodied");
    assert!(
        (embodied - 0.03 * job.duration_s / 3600.0).abs() < 1e-12,
        "{embodied}"
    );
    assert!(
        (location - job.facility_energy_kwh * 0.3).abs() < 1e-9,
        "embodied is not added to the location-based figure"
    );

    // The statement labels each.
    let (status, md) = app
        .get_text(ADMIN, "/api/v1/statement?jobs=m1&format=md")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(md.contains("| CO2e, location-based | "), "{md}");
    assert!(
        md.contains("| CO2e, market-based | ")
            && md.contains("(instruments for 50 % of the energy, the rest location-based)"),
        "{md}"
    );
    assert!(md.contains("| Embodied CO2e (apart) | "), "{md}");
    assert!(md.contains("market-based: "), "in the paragraph: {md}");
    assert!(md.contains("not included above"), "{md}");

    // The instrument removed: no market-based figure once recomputed.
    let (status, body) = app
        .http
        .delete(format!(
            "{}/api/v1/sites/s1/contracts?valid_from={}",
            app.base,
            h1.to_rfc3339().replace('+', "%2B")
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .map(|r| (r.status(), r))
        .expect("delete");
    assert_eq!(status, StatusCode::OK);
    let gone: Value = body.json().await.expect("json");
    assert_eq!(gone["instrument"], "PPA, wind, 2026");
    wattlas_server::maintenance::refresh_job_energy(&app.state, 100)
        .await
        .expect("summaries");
    assert_eq!(app.job("m1").await.co2e_market_kg, None);
}
