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

/// A protobuf length-delimited field.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut len = bytes.len() as u64;
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(bytes);
    out
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("compresses")
}

async fn dropped_series(app: &App, reason: &str) -> u64 {
    let (_, text) = app.get_text(ADMIN, "/metrics").await;
    let key = format!("wattlas_remote_write_dropped_series_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("{key} in {text}"))
        .parse()
        .expect("count")
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_write_is_bounded_in_what_it_decodes_to(db: PgPool) {
    // Issue 33, N2: 3.1 MB of snappy decoded into 64 MiB of empty labels (2.6 GB of memory), 204.
    // (The server's default body limit, 16 MiB; the tests' is 1 MiB.)
    let app = App::spawn_with(db, |c| c.max_body_bytes = 16 << 20).await;
    let n1 = app.node().await;
    let t0 = minute_aligned_past(10).timestamp_millis();
    let power = series(
        "DCGM_FI_DEV_POWER_USAGE",
        "n1",
        "0",
        &(0..=10).map(|s| (t0 + 1000 * s, 70.0)).collect::<Vec<_>>(),
    );
    let power = prost::Message::encode_to_vec(&power);

    // One series of 15 million empty labels beside a real one: dropped and counted, the real one kept.
    let empty_labels = [0x0a, 0x00].repeat(15_000_000);
    let mut raw = field(1, &empty_labels);
    raw.extend(field(1, &power));
    let body = snappy(&raw);
    assert!(body.len() < 3 << 20, "{} bytes sent", body.len());
    let (status, body) = write(&app, &n1, "", body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(app.stored().await, 11, "the real series is stored");
    assert_eq!(dropped_series(&app, "too_many_labels").await, 1);

    // A label longer than 4 KiB: the series is dropped, counted.
    let mut long = series("DCGM_FI_DEV_POWER_USAGE", "n1", "1", &[(t0, 70.0)]);
    long.labels.push(Label {
        name: "pod".into(),
        value: "x".repeat(5000),
    });
    let (status, body) = write(
        &app,
        &n1,
        "",
        encode(&WriteRequest {
            timeseries: vec![long],
        }),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(dropped_series(&app, "label_too_long").await, 1);
    assert_eq!(app.stored().await, 11);

    // Past a request's limits: refused whole with 413, naming what.
    let cases: [(&str, Vec<u8>); 3] = [
        // 40 MiB decompressed.
        ("body", [0x1a, 0x00].repeat(20 << 20)),
        // 100,001 empty series.
        ("timeseries", [0x0a, 0x00].repeat(100_001)),
        // 200,001 empty samples.
        ("samples", field(1, &[0x12, 0x00].repeat(200_001))),
    ];
    for (what, raw) in cases {
        let (status, body) = write(&app, &n1, "", snappy(&raw)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{what}: {body}");
        let error = body["error"].as_str().expect("error");
        assert!(error.contains(what), "{what}: {error}");
    }
    assert_eq!(app.stored().await, 11);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_token_that_may_not_write_is_refused_before_its_body_is_read(db: PgPool) {
    // N2: the token's kind was checked after the body was read and decoded.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = App::spawn(db).await;
    app.node().await;
    let meter = app.meter().await;
    let addr = app.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    // Announces 8 MB and sends 16 bytes of it, then waits.
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {meter}\r\n\
         Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n\
         Content-Length: 8000000\r\n\r\n0123456789abcdef"
    );
    conn.write_all(head.as_bytes()).await.expect("sends");
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .expect("reads");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("write token"), "{answer}");
}

/// Site s1 (with node n1) and its write token.
async fn site_token(app: &App) -> String {
    app.node().await;
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/sites/s1/write-token",
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

/// A write of one power sample from each of `hosts`.
fn from_hosts(hosts: &[String]) -> Vec<u8> {
    let t = Utc::now().timestamp_millis() - 5_000;
    encode(&WriteRequest {
        timeseries: hosts
            .iter()
            .map(|h| series("DCGM_FI_DEV_POWER_USAGE", h, "0", &[(t, 50.0)]))
            .collect(),
    })
}

async fn node_names(app: &App) -> Vec<String> {
    let (_, nodes) = app.get(ADMIN, "/api/v1/nodes").await;
    nodes
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["name"].as_str().expect("name").to_owned())
        .collect()
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_sites_write_token_registers_nodes_within_its_quota(db: PgPool) {
    // Issue 33, N3: one write registered 5,000 nodes.
    let app = App::spawn(db).await;
    let token = site_token(&app).await;
    let hosts = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i:04}")).collect()
    };
    // 257 new nodes in one write: refused whole, none registered.
    let (status, body) = write(&app, &token, "", from_hosts(&hosts("burst", 257))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("Hostname"),
        "{body}"
    );
    assert_eq!(node_names(&app).await, ["n1"]);

    // The site's quota, set by the admin: 3 nodes.
    let (status, body) = app
        .put(
            ADMIN,
            "/api/v1/sites/s1",
            &serde_json::json!({"node_quota": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["node_quota"], 3);
    let (status, body) = write(&app, &token, "", from_hosts(&hosts("a", 2))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = write(&app, &token, "", from_hosts(&hosts("b", 1))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("node_quota"),
        "{body}"
    );
    assert_eq!(
        node_names(&app).await.len(),
        3,
        "nothing registered past the quota"
    );
    // Nodes it holds still write.
    let (status, body) = write(&app, &token, "", from_hosts(&hosts("a", 2))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // The admin registers past it; raised, the token registers again.
    let (status, _) = app
        .post(
            ADMIN,
            "/api/v1/nodes",
            &serde_json::json!({"name": "c1", "site": "s1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.put(
        ADMIN,
        "/api/v1/sites/s1",
        &serde_json::json!({"node_quota": 5}),
    )
    .await;
    let (status, body) = write(&app, &token, "", from_hosts(&hosts("b", 1))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn gpu_indices_past_a_nodes_range_are_refused_everywhere(db: PgPool) {
    // N3: GPU index 2^32 - 1 was stored as -1; a node registered 3,000 GPUs.
    let app = App::spawn(db).await;
    let token = site_token(&app).await;
    let t = Utc::now().timestamp_millis() - 5_000;
    for gpu in ["64", "4294967295"] {
        let request = WriteRequest {
            timeseries: vec![series("DCGM_FI_DEV_POWER_USAGE", "n1", gpu, &[(t, 50.0)])],
        };
        let (status, body) = write(&app, &token, "", encode(&request)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{gpu}: {body}");
        assert!(
            body["error"].as_str().expect("error").contains("index"),
            "{body}"
        );
    }
    // A job's allocation.
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &serde_json::json!({"id": "1", "user": "ann", "site": "s1", "start": Utc::now(),
                "allocations": [{"node": "n1", "gpus": [4294967295u32]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("allocations[0].gpus"),
        "{body}"
    );
    assert_eq!(app.stored().await, 0);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_write_refused_for_a_full_queue_leaves_no_node_it_registered(db: PgPool) {
    // N3: 5,000 nodes stayed registered after the write answered 503.
    let app = App::spawn_with(db, |c| {
        c.ingest_queue = 1;
        c.ingest_writers = 1;
    })
    .await;
    let token = site_token(&app).await;
    let mut refused = false;
    for round in 0..20 {
        let hosts: Vec<String> = (0..40).map(|i| format!("r{round}-{i}")).collect();
        let (status, body) = write(&app, &token, "", from_hosts(&hosts)).await;
        match status {
            StatusCode::NO_CONTENT => continue,
            StatusCode::SERVICE_UNAVAILABLE => {
                refused = true;
                break;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(refused, "a queue of one refuses some of 40 batches at once");
    // Every node registered has what its write stored: none is left from a refused batch.
    let empty: Vec<String> = sqlx::query_scalar(
        "select name from nodes n where not exists (select 1 from gpus g where g.node_id = n.id)
            and name <> 'n1'",
    )
    .fetch_all(&app.state.db)
    .await
    .expect("query");
    assert!(empty.is_empty(), "registered without data: {empty:?}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_node_deleted_while_remembered_refuses_the_write_and_its_retry_registers_it_anew(
    db: PgPool,
) {
    // Issue 34: the server remembers the nodes a remote write names (no lookup a request); another
    // server deletes a node its refused write registered. The writers lock the node's row: the write
    // is refused 503 with nothing stored (not stored under an id no node has), and the retry finds it anew.
    let app = App::spawn(db).await;
    let token = site_token(&app).await;
    let one = || from_hosts(&["gone".to_owned()]);
    // Registered by the first write, found (and remembered) by the second.
    for _ in 0..2 {
        let (status, body) = write(&app, &token, "", one()).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let id: i32 = sqlx::query_scalar("select id from nodes where name = 'gone'")
        .fetch_one(&app.state.db)
        .await
        .expect("registered");
    for table in ["rollup_pending", "gpu_raw", "gpus", "nodes"] {
        let column = if table == "nodes" { "id" } else { "node_id" };
        sqlx::query(&format!("delete from {table} where {column} = $1"))
            .bind(id)
            .execute(&app.state.db)
            .await
            .expect("deleted");
    }
    let before = app.stored().await;
    let (status, body) = write(&app, &token, "", one()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .starts_with("Hostname: node"),
        "{body}"
    );
    assert_eq!(app.stored().await, before, "nothing stored");
    let orphans: i64 = sqlx::query_scalar(
        "select count(*) from gpu_raw g where not exists (select 1 from nodes n where n.id = g.node_id)",
    )
    .fetch_one(&app.state.db)
    .await
    .expect("query");
    assert_eq!(orphans, 0);
    // Sent again (Prometheus retries a 5xx): registered anew, stored once.
    let (status, body) = write(&app, &token, "", one()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let again: i32 = sqlx::query_scalar("select id from nodes where name = 'gone'")
        .fetch_one(&app.state.db)
        .await
        .expect("registered again");
    assert_ne!(again, id);
    assert_eq!(app.stored().await, before + 1);
}
