//! Prometheus remote write of dcgm-exporter series: stored as the node's GPU samples, nodes registered on
//! first sight with the admin token and a site, bad bodies refused whole naming what is wrong.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use wattlas_server::service::remote_write::{encode, Label, Sample, TimeSeries, WriteRequest};

use crate::common::*;

fn series(name: &str, host: &str, gpu: &str, points: &[(i64, f64)]) -> TimeSeries {
    let label = |n: &str, v: &str| Label {
        name: n.into(),
        value: v.into(),
    };
    TimeSeries {
        labels: vec![
            label("__name__", name),
            label("gpu", gpu),
            label("UUID", &format!("GPU-{host}-{gpu}")),
            label("modelName", "Tesla T4"),
            label("Hostname", host),
            label("DCGM_FI_DRIVER_VERSION", "580.105.08"),
        ],
        samples: points
            .iter()
            .map(|(t, v)| Sample {
                value: *v,
                timestamp: *t,
            })
            .collect(),
    }
}

async fn write(app: &App, token: &str, query: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let r = app
        .http
        .post(format!("{}/api/v1/write{query}", app.base))
        .bearer_auth(token)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    let text = r.text().await.expect("text");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn remote_write_stores_dcgm_series_as_gpu_samples_and_refuses_bad_writes_whole(db: PgPool) {
    let app = App::spawn(db).await;
    let n1 = app.node().await;
    let t0 = minute_aligned_past(10).timestamp_millis();
    // 60 s of 1 s scrapes of a T4 at 70 W, its counter advancing 70 J a second.
    let points = |f: &dyn Fn(i64) -> f64| -> Vec<(i64, f64)> {
        (0..=60).map(|s| (t0 + 1000 * s, f(s))).collect()
    };
    let request = WriteRequest {
        timeseries: vec![
            series(
                "DCGM_FI_DEV_POWER_USAGE",
                "t4-node",
                "0",
                &points(&|_| 70.0),
            ),
            series(
                "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
                "t4-node",
                "0",
                &points(&|s| 9e9 + 70_000.0 * s as f64),
            ),
            series("DCGM_FI_DEV_XID_ERRORS", "t4-node", "0", &points(&|_| 0.0)),
        ],
    };
    // Unknown node without a site: refused, nothing stored.
    let (status, body) = write(&app, ADMIN, "", encode(&request)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("error")
        .contains("Hostname: unknown node 't4-node'"));
    assert_eq!(app.stored().await, 0);
    let (status, body) = write(&app, ADMIN, "?site=s1", encode(&request)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(app.stored().await, 61);
    // Sent again (a retry): nothing doubles.
    let (status, _) = write(&app, ADMIN, "?site=s1", encode(&request)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.stored().await, 61);

    let t = chrono::DateTime::from_timestamp_millis(t0).expect("t");
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &serde_json::json!({"id": "t4", "user": "ann", "site": "s1",
                "start": t + Duration::seconds(10), "end": t + Duration::seconds(50),
                "allocations": [{"node": "t4-node", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let j = body["gpu_energy_kwh"].as_f64().expect("energy") * 3.6e6;
    assert!(
        (j - 40.0 * 70.0).abs() < 1e-6,
        "{j} J from the counter over 40 s"
    );
    assert_eq!(body["energy_method"], "counter");

    // The ignored series are counted on /metrics.
    let (_, metrics) = app.get_text(ADMIN, "/metrics").await;
    assert!(
        metrics.contains("wattlas_remote_write_ignored_samples_total 122"),
        "{metrics}"
    );

    // Bad writes: each refused whole, naming what is wrong.
    let no_host = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "DCGM_FI_DEV_POWER_USAGE".into(),
                },
                Label {
                    name: "gpu".into(),
                    value: "0".into(),
                },
            ],
            samples: vec![Sample {
                value: 1.0,
                timestamp: t0,
            }],
        }],
    };
    let too_much = WriteRequest {
        timeseries: vec![series(
            "DCGM_FI_DEV_POWER_USAGE",
            "t4-node",
            "0",
            &[(Utc::now().timestamp_millis(), 1e9)],
        )],
    };
    for (body, what) in [
        (b"not snappy at all".to_vec(), "body"),
        (
            snap::raw::Encoder::new()
                .compress_vec(b"\xff\xff\xff")
                .expect("snappy"),
            "body",
        ),
        (encode(&no_host), "timeseries[0].labels"),
        (encode(&too_much), "power_w"),
    ] {
        let (status, answer) = write(&app, ADMIN, "?site=s1", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert!(
            answer["error"].as_str().expect("error").contains(what),
            "{what}: {answer}"
        );
    }
    assert_eq!(app.stored().await, 61, "nothing partial stored");
    // A node's token writes its own node only.
    let (status, _) = write(&app, &n1, "", encode(&request)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn an_encoding_a_route_does_not_read_is_refused_with_415(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let r = app
        .http
        .post(format!("{}/api/v1/ingest/gpu", app.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = r.json().await.expect("json");
    assert!(body["error"]
        .as_str()
        .expect("error")
        .contains("content-encoding: 'br'"));
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn the_fleet_exposition_gives_power_now_and_gpus_by_state_per_node(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    // The last 20 s of n1: GPU 0 at 200 W and GPU 1 at 100 W, both 98 % busy.
    let (status, body) = app
        .ingest(
            &token,
            &batch(samples(Utc::now() - Duration::seconds(20), 19)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.get_text("", "/api/v1/metrics/fleet").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "operators only");
    let (status, text) = app.get_text(ADMIN, "/api/v1/metrics/fleet").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{prefix}: {text}"))
            .rsplit(' ')
            .next()
            .expect("value")
            .parse::<f64>()
            .expect("number")
    };
    assert_eq!(
        line(r#"wattlas_fleet_node_power_watts{site="s1",node="n1"}"#),
        300.0
    );
    assert_eq!(
        line(r#"wattlas_fleet_node_gpus{site="s1",node="n1",state="busy"}"#),
        2.0
    );
    assert_eq!(
        line(r#"wattlas_fleet_node_gpus{site="s1",node="n1",state="not_reporting"}"#),
        0.0
    );
    assert!(text.contains("# TYPE wattlas_fleet_site_gpu_energy_joules_total counter"));
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_sites_write_token_writes_its_sites_nodes_only(db: PgPool) {
    let app = App::spawn(db).await;
    app.node().await;
    let (status, _) = app
        .post(
            ADMIN,
            "/api/v1/sites",
            &serde_json::json!({"name": "s2", "timezone": "UTC"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/nodes",
            &serde_json::json!({"name": "far", "site": "s2"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/sites/s1/write-token",
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("ws"));
    let (_, me) = app.get(&token, "/api/v1/me").await;
    assert_eq!(me["kind"], "site-write");

    let t = Utc::now().timestamp_millis() - 5_000;
    let one = |host: &str| {
        encode(&WriteRequest {
            timeseries: vec![series("DCGM_FI_DEV_POWER_USAGE", host, "0", &[(t, 50.0)])],
        })
    };
    // A node never seen is registered in the token's site, no ?site= needed.
    let (status, body) = write(&app, &token, "", one("new-node")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, nodes) = app.get(ADMIN, "/api/v1/nodes").await;
    let new = nodes
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == "new-node")
        .expect("registered");
    assert_eq!(new["site"], "s1");
    // Another site's node: refused, nothing stored.
    let before = app.stored().await;
    let (status, body) = write(&app, &token, "", one("far")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"]
        .as_str()
        .expect("error")
        .contains("not in site 's1'"));
    assert_eq!(app.stored().await, before);
    // It writes by remote write only, and reads nothing.
    let (status, _) = app.ingest(&token, &batch(samples(Utc::now(), 1))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.get(&token, "/api/v1/jobs").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A new token replaces it.
    let (status, _) = app
        .post(
            ADMIN,
            "/api/v1/sites/s1/write-token",
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = write(&app, &token, "", one("new-node")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
