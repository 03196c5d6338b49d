//! Bad input, as a table: every write route given bodies it must refuse. Each row names the status and
//! a piece of the JSON `error` it must carry, and after each row nothing at all has been stored.

use std::io::Write;

use crate::common::*;
use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

/// Rows in the tables a refused request could have touched.
async fn footprint(app: &App) -> Vec<i64> {
    let mut out = Vec::new();
    for table in [
        "gpu_raw",
        "gpu_settled",
        "gpus",
        "facility_readings",
        "jobs",
        "job_allocations",
        "job_progress",
        "carbon_intensity",
        "sites",
        "nodes",
        "meters",
        "users",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&app.state.db)
            .await
            .expect("count");
        out.push(n);
    }
    out
}

fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .expect("snappy")
}

/// A remote-write body of one series.
fn remote_write(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> Vec<u8> {
    use wattlas_server::service::remote_write::{encode, Label, Sample, TimeSeries, WriteRequest};
    encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|(value, timestamp)| Sample {
                    value: *value,
                    timestamp: *timestamp,
                })
                .collect(),
        }],
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn every_write_refuses_bad_input_whole_and_says_why(db: PgPool) {
    let app = App::spawn(db).await;
    let node = app.node().await;
    let meter = app.meter().await;
    let (status, body) = app
        .post(ADMIN, "/api/v1/nodes", &json!({"name": "n2", "site": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let other_node = body["token"].as_str().expect("token").to_owned();
    let t0 = Utc::now() - Duration::minutes(5);
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"id": "j1", "user": "alice", "start": t0, "site": "s1",
                    "allocations": [{"node": "n1", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let gpus = json!([{"index": 0, "uuid": "GPU-b-0", "model": "A100"}]);
    let sample = |power: Value, time: Value| -> Vec<u8> {
        json!({"gpus": gpus, "samples": [
            {"time": t0, "gpu": 0, "power_w": 100.0},
            {"time": time, "gpu": 0, "power_w": power},
        ]})
        .to_string()
        .into_bytes()
    };
    let ok_time = json!(t0 + Duration::milliseconds(100));
    let reading = |it: Value, total: Value, time: Value| -> Vec<u8> {
        json!({"readings": [
            {"time": t0, "it_kw": 100.0, "total_kw": 120.0},
            {"time": time, "it_kw": it, "total_kw": total},
        ]})
        .to_string()
        .into_bytes()
    };
    let reading_time = json!(t0 + Duration::minutes(1));
    let huge = {
        let mut s = String::from(r#"{"gpus":[],"samples":["#);
        while s.len() < 2 * 1024 * 1024 {
            s.push_str(r#"{"time":"2026-01-01T00:00:00Z","gpu":0,"power_w":1.0},"#);
        }
        s.pop();
        s.push_str("]}");
        s.into_bytes()
    };
    let json_ct = "application/json";
    let pb = "application/x-protobuf";
    let ok_ms = (t0 + Duration::milliseconds(100)).timestamp_millis();

    // (what, method, path, token, content type, content encoding, body, status, part of the error)
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let gpu = "/api/v1/ingest/gpu";
    let fac = "/api/v1/ingest/facility";
    let rows: Vec<Row> = vec![
        // GPU samples.
        ("no token", "POST", gpu, "", json_ct, None, sample(json!(1.0), ok_time.clone()), 401, "token"),
        ("unknown token", "POST", gpu, "wat_nope", json_ct, None, sample(json!(1.0), ok_time.clone()), 401, "invalid token"),
        ("a meter's token", "POST", gpu, &meter, json_ct, None, sample(json!(1.0), ok_time.clone()), 403, "meter"),
        (
            "another node's data",
            "POST",
            gpu,
            &other_node,
            json_ct,
            None,
            json!({"node": "n1", "gpus": gpus, "samples": []}).to_string().into_bytes(),
            403,
            "n1",
        ),
        ("over the size limit", "POST", gpu, &node, json_ct, None, huge.clone(), 413, "size limit"),
        ("over the size limit once unzipped", "POST", gpu, &node, json_ct, Some("gzip"), gzip(&huge), 413, "size limit"),
        ("text, not JSON", "POST", gpu, &node, "text/plain", None, sample(json!(1.0), ok_time.clone()), 415, "application/json"),
        ("no content type", "POST", gpu, &node, "", None, sample(json!(1.0), ok_time.clone()), 415, "application/json"),
        ("cut-off JSON", "POST", gpu, &node, json_ct, None, br#"{"gpus": [], "samples": [{"time""#.to_vec(), 400, "EOF"),
        ("empty body", "POST", gpu, &node, json_ct, None, Vec::new(), 400, "EOF"),
        ("not gzip", "POST", gpu, &node, json_ct, Some("gzip"), b"plain text".to_vec(), 400, "gzip"),
        ("a string for power", "POST", gpu, &node, json_ct, None, sample(json!("lots"), ok_time.clone()), 400, "power_w"),
        ("null power", "POST", gpu, &node, json_ct, None, sample(Value::Null, ok_time.clone()), 400, "power_w"),
        (
            "NaN power",
            "POST",
            gpu,
            &node,
            json_ct,
            None,
            String::from_utf8(sample(json!("X"), ok_time.clone()))
                .expect("utf8")
                .replace(r#""X""#, "NaN")
                .into_bytes(),
            400,
            "samples[1].power_w",
        ),
        (
            "infinite power",
            "POST",
            gpu,
            &node,
            json_ct,
            None,
            String::from_utf8(sample(json!("X"), ok_time.clone()))
                .expect("utf8")
                .replace(r#""X""#, "1e999")
                .into_bytes(),
            400,
            "samples[1].power_w: number out of range",
        ),
        ("negative power", "POST", gpu, &node, json_ct, None, sample(json!(-1.0), ok_time.clone()), 400, "samples[1].power_w: -1 is outside"),
        ("an hour in the future", "POST", gpu, &node, json_ct, None, sample(json!(1.0), json!(Utc::now() + Duration::hours(1))), 400, "samples[1].time"),
        ("before 2000", "POST", gpu, &node, json_ct, None, sample(json!(1.0), json!("1999-12-31T23:59:59Z")), 400, "samples[1].time"),
        ("a time without a zone", "POST", gpu, &node, json_ct, None, sample(json!(1.0), json!("2026-01-01T00:00:00")), 400, "time"),
        (
            "an unknown GPU",
            "POST",
            gpu,
            &node,
            json_ct,
            None,
            json!({"gpus": gpus, "samples": [{"time": t0, "gpu": 7, "power_w": 1.0}]}).to_string().into_bytes(),
            400,
            "samples[0].gpu: unknown GPU index 7",
        ),
        // Facility readings.
        ("a node's token", "POST", fac, &node, json_ct, None, reading(json!(100.0), json!(120.0), reading_time.clone()), 403, "node"),
        ("total below IT", "POST", fac, &meter, json_ct, None, reading(json!(100.0), json!(90.0), reading_time.clone()), 400, "readings[1].total_kw"),
        ("negative IT power", "POST", fac, &meter, json_ct, None, reading(json!(-1.0), json!(90.0), reading_time.clone()), 400, "readings[1].it_kw"),
        ("a reading in the future", "POST", fac, &meter, json_ct, None, reading(json!(100.0), json!(120.0), json!(Utc::now() + Duration::hours(1))), 400, "readings[1].time"),
        ("a string for IT power", "POST", fac, &meter, json_ct, None, reading(json!("x"), json!(120.0), reading_time.clone()), 400, "it_kw"),
        ("readings as CSV", "POST", fac, &meter, "text/csv", None, b"time,it_kw\n".to_vec(), 415, "application/json"),
        // Jobs.
        (
            "a job on an unknown node",
            "POST",
            "/api/v1/jobs",
            ADMIN,
            json_ct,
            None,
            json!({"id": "j2", "user": "alice", "start": t0, "site": "s1",
                   "allocations": [{"node": "nope", "gpus": [0]}]}).to_string().into_bytes(),
            400,
            "nope",
        ),
        (
            "a job that ends before it starts",
            "POST",
            "/api/v1/jobs",
            ADMIN,
            json_ct,
            None,
            json!({"id": "j3", "user": "alice", "start": t0, "end": t0 - Duration::minutes(1), "site": "s1",
                   "allocations": [{"node": "n1", "gpus": [0]}]}).to_string().into_bytes(),
            400,
            "end",
        ),
        (
            "a job id with a slash",
            "POST",
            "/api/v1/jobs",
            ADMIN,
            json_ct,
            None,
            json!({"id": "a/b", "user": "alice", "start": t0, "site": "s1",
                   "allocations": [{"node": "n1", "gpus": [0]}]}).to_string().into_bytes(),
            400,
            "id",
        ),
        (
            "an end before the start",
            "POST",
            "/api/v1/jobs/j1/end",
            ADMIN,
            json_ct,
            None,
            json!({"end": t0 - Duration::hours(1)}).to_string().into_bytes(),
            400,
            "end",
        ),
        (
            "progress with an infinite metric",
            "POST",
            "/api/v1/jobs/j1/progress",
            ADMIN,
            json_ct,
            None,
            br#"{"time": "2026-01-01T00:00:00Z", "step": 1, "metrics": {"loss": 1e999}}"#.to_vec(),
            400,
            "metrics.loss: number out of range",
        ),
        (
            "progress with a negative step",
            "POST",
            "/api/v1/jobs/j1/progress",
            ADMIN,
            json_ct,
            None,
            json!({"time": t0, "step": -1, "metrics": {"loss": 1.0}}).to_string().into_bytes(),
            400,
            "step",
        ),
        // Sites, carbon, nodes, users.
        ("a site in no time zone", "POST", "/api/v1/sites", ADMIN, json_ct, None, json!({"name": "s2", "timezone": "Mars/Olympus"}).to_string().into_bytes(), 400, "timezone"),
        ("a PUE below 1", "PUT", "/api/v1/sites/s1", ADMIN, json_ct, None, json!({"fallback_pue": 0.9}).to_string().into_bytes(), 400, "fallback_pue"),
        (
            "carbon CSV with a word for a number",
            "POST",
            "/api/v1/sites/s1/carbon",
            ADMIN,
            "text/csv",
            None,
            b"time,g_per_kwh\n2026-01-01T00:00:00Z,300\n2026-01-01T01:00:00Z,lots\n".to_vec(),
            400,
            "line 3",
        ),
        ("carbon as XML", "POST", "/api/v1/sites/s1/carbon", ADMIN, "application/xml", None, b"<x/>".to_vec(), 415, "text/csv"),
        ("a node with a hostile name", "POST", "/api/v1/nodes", ADMIN, json_ct, None, json!({"name": "<script>", "site": "s1"}).to_string().into_bytes(), 400, "name"),
        ("a user with an unknown role", "POST", "/api/v1/users", ADMIN, json_ct, None, json!({"name": "eve", "role": "root"}).to_string().into_bytes(), 400, "role"),
        // 200 samples on 200 days made 200 chunk tables in one request.
        (
            "samples over more than a day",
            "POST",
            gpu,
            &node,
            json_ct,
            None,
            json!({"gpus": gpus, "samples": [
                {"time": t0 - Duration::days(3), "gpu": 0, "power_w": 100.0},
                {"time": t0, "gpu": 0, "power_w": 100.0},
            ]}).to_string().into_bytes(),
            400,
            "samples: they span 72.0 h",
        ),
        (
            "a live sample older than the raw retention",
            "POST",
            gpu,
            &node,
            json_ct,
            None,
            json!({"gpus": gpus, "samples": [{"time": t0 - Duration::days(40), "gpu": 0, "power_w": 100.0}]})
                .to_string()
                .into_bytes(),
            400,
            "older than the raw retention",
        ),
        // NUL characters, which PostgreSQL cannot store in text (they gave 500).
        ("a NUL in a job's user", "POST", "/api/v1/jobs", ADMIN, json_ct, None, json!({"id": "n1", "user": "al\u{0}ice", "start": t0, "site": "s1"}).to_string().into_bytes(), 400, "user: contains a NUL character"),
        ("a NUL in a job's name", "POST", "/api/v1/jobs", ADMIN, json_ct, None, json!({"id": "n2", "user": "alice", "name": "x\u{0}", "start": t0, "site": "s1"}).to_string().into_bytes(), 400, "name: contains a NUL character"),
        ("a NUL in a tag", "POST", "/api/v1/jobs", ADMIN, json_ct, None, json!({"id": "n3", "user": "alice", "start": t0, "site": "s1", "tags": {"k": "v\u{0}"}}).to_string().into_bytes(), 400, "tags.k: contains a NUL character"),
        ("a NUL in a GPU's uuid", "POST", gpu, &node, json_ct, None, json!({"gpus": [{"index": 1, "uuid": "GPU-\u{0}", "model": "A100"}], "samples": []}).to_string().into_bytes(), 400, "gpus[0].uuid: contains a NUL character"),
        ("a NUL in a path", "POST", "/api/v1/jobs/j%001/end", ADMIN, json_ct, None, json!({"end": t0}).to_string().into_bytes(), 400, "path: contains a NUL character"),
        // Prometheus remote write (snappy protobuf): refused whole, naming what is wrong; no node is
        // registered by a refused write.
        ("remote write: not snappy", "POST", "/api/v1/write?site=s1", ADMIN, pb, Some("snappy"), b"plain text".to_vec(), 400, "body: not snappy"),
        ("remote write: snappy, not protobuf", "POST", "/api/v1/write?site=s1", ADMIN, pb, Some("snappy"), snappy(b"\xff\xff\xff\xff"), 400, "WriteRequest"),
        ("remote write: a series without its node", "POST", "/api/v1/write?site=s1", ADMIN, pb, Some("snappy"), remote_write(&[("__name__", "DCGM_FI_DEV_POWER_USAGE"), ("gpu", "0")], &[(1.0, ok_ms)]), 400, "timeseries[0].labels"),
        ("remote write: a series without a GPU index", "POST", "/api/v1/write?site=s1", ADMIN, pb, Some("snappy"), remote_write(&[("__name__", "DCGM_FI_DEV_POWER_USAGE"), ("Hostname", "rw1")], &[(1.0, ok_ms)]), 400, "timeseries[0].labels.gpu"),
        ("remote write: power out of range", "POST", "/api/v1/write?site=s1", ADMIN, pb, Some("snappy"), remote_write(&[("__name__", "DCGM_FI_DEV_POWER_USAGE"), ("gpu", "0"), ("Hostname", "rw1")], &[(1e9, ok_ms)]), 400, "power_w"),
        ("remote write: samples before the raw retention", "POST", "/api/v1/write?site=s1", ADMIN, pb, Some("snappy"), remote_write(&[("__name__", "DCGM_FI_DEV_POWER_USAGE"), ("gpu", "0"), ("Hostname", "rw1")], &[(100.0, 946_684_800_000)]), 400, "retention"),
        ("remote write: an unknown node without a site", "POST", "/api/v1/write", ADMIN, pb, Some("snappy"), remote_write(&[("__name__", "DCGM_FI_DEV_POWER_USAGE"), ("gpu", "0"), ("Hostname", "rw1")], &[(100.0, ok_ms)]), 400, "Hostname: unknown node"),
        ("remote write: a meter's token", "POST", "/api/v1/write?site=s1", &meter, pb, Some("snappy"), remote_write(&[("__name__", "DCGM_FI_DEV_POWER_USAGE"), ("gpu", "0"), ("Hostname", "rw1")], &[(100.0, ok_ms)]), 403, "node's token or the admin token"),
    ];

    let before = footprint(&app).await;
    let mut wrong = Vec::new();
    for (what, method, path, token, content_type, encoding, body, status, needle) in &rows {
        let mut r = app
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{}{path}", app.base),
            )
            .body(body.clone());
        if !token.is_empty() {
            r = r.bearer_auth(token);
        }
        if !content_type.is_empty() {
            r = r.header("content-type", *content_type);
        }
        if let Some(e) = encoding {
            r = r.header("content-encoding", *e);
        }
        let response = r.send().await.expect("request");
        let got = response.status();
        let text = response.text().await.unwrap_or_default();
        let error = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        match error {
            Some(e) if got.as_u16() == *status && e.contains(needle) => {}
            _ => wrong.push(format!(
                "{what} ({method} {path}): expected {status} with an error naming '{needle}', got {got} {}",
                text.chars().take(200).collect::<String>()
            )),
        }
        let after = footprint(&app).await;
        if after != before {
            wrong.push(format!(
                "{what}: something was stored ({before:?} -> {after:?})"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} rows:\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n")
    );
}
