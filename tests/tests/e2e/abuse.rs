//! Issue 33: one abusive client of each kind found on a live instance, all at once, while a normal
//! fleet ingests into the real server binary: the fleet keeps every sample, its batches are answered
//! within their one-second interval at the 99th percentile, and the server's memory stays bounded.
//! Each abuser gets the answer its finding now has (400, 403, 409, 413, or its connection closed).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_tests::harness::{add_node, distinct_samples, Running, ADMIN};

/// Fleet nodes, GPUs each, samples per GPU per batch (100 ms over a 1 s batch, as collectors send).
const NODES: usize = 8;
const GPUS: u32 = 4;
const PER_BATCH: i64 = 10;

/// One node's batch of `PER_BATCH` samples per GPU starting at `t0_ms`.
fn batch(node: usize, t0_ms: i64) -> Value {
    let gpus: Vec<Value> = (0..GPUS)
        .map(|g| json!({"index": g, "uuid": format!("GPU-fleet{node}-{g}"), "model": "NVIDIA A100-SXM4-40GB"}))
        .collect();
    let mut samples = Vec::new();
    for k in 0..PER_BATCH {
        let t = chrono::DateTime::from_timestamp_millis(t0_ms + 100 * k).expect("time");
        for g in 0..GPUS {
            samples.push(json!({"time": t, "gpu": g, "power_w": 150.0 + f64::from(g), "energy_mj": 1_000_000 + (t0_ms + 100 * k) * 150}));
        }
    }
    json!({"gpus": gpus, "samples": samples})
}

/// The fleet's requests: latencies (ms) and failures, per phase.
#[derive(Default)]
struct Fleet {
    latencies: Mutex<Vec<f64>>,
    failures: Mutex<Vec<String>>,
    sent: AtomicU64,
}

impl Fleet {
    /// Runs every node for `seconds`, a batch a second each.
    async fn run(self: &Arc<Self>, base: &str, tokens: &[String], seconds: u64) {
        let http = reqwest::Client::new();
        let mut nodes = Vec::new();
        for (n, token) in tokens.iter().enumerate() {
            let (fleet, http, base, token) =
                (self.clone(), http.clone(), base.to_owned(), token.clone());
            nodes.push(tokio::spawn(async move {
                let start = Instant::now();
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut last = 0;
                while start.elapsed() < Duration::from_secs(seconds) {
                    tick.tick().await;
                    // The second just past, never the same one twice.
                    let mut t0 = chrono::Utc::now().timestamp_millis() / 1000 * 1000 - 1000;
                    while t0 <= last {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        t0 = chrono::Utc::now().timestamp_millis() / 1000 * 1000 - 1000;
                    }
                    last = t0;
                    let body = batch(n, t0);
                    let sent = Instant::now();
                    let r = http
                        .post(format!("{base}/api/v1/ingest/gpu"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    let ms = sent.elapsed().as_secs_f64() * 1000.0;
                    fleet.latencies.lock().expect("lock").push(ms);
                    match r {
                        Ok(r) if r.status() == StatusCode::OK => {
                            fleet
                                .sent
                                .fetch_add((PER_BATCH * i64::from(GPUS)) as u64, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            fleet
                                .failures
                                .lock()
                                .expect("lock")
                                .push(format!("node {n}: {status} {text}"));
                        }
                        Err(e) => fleet
                            .failures
                            .lock()
                            .expect("lock")
                            .push(format!("node {n}: {e}")),
                    }
                }
            }));
        }
        for n in nodes {
            n.await.expect("fleet node");
        }
    }

    fn p99(&self) -> f64 {
        let mut l = self.latencies.lock().expect("lock").clone();
        l.sort_by(f64::total_cmp);
        l[((l.len() as f64 * 0.99).ceil() as usize)
            .saturating_sub(1)
            .min(l.len() - 1)]
    }
}

/// A remote-write body of one series with 15 million empty labels (issue 33, N2: such a body became
/// 64 MiB of labels and 2.6 GB of memory).
fn label_bomb() -> Vec<u8> {
    let labels = [0x0a_u8, 0x00].repeat(15_000_000);
    let mut raw = vec![0x0a];
    let mut len = labels.len() as u64;
    while len >= 0x80 {
        raw.push((len as u8) | 0x80);
        len >>= 7;
    }
    raw.push(len as u8);
    raw.extend(labels);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("compresses")
}

/// The server's peak resident memory (VmHWM), MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn abusers_of_every_kind_leave_a_normal_fleet_unaffected(db: PgPool) {
    let running = Running::with_site(&db, "lab").await;
    let (base, http) = (running.base.clone(), running.http.clone());
    let mut tokens = Vec::new();
    for n in 0..NODES {
        tokens.push(add_node(&http, &base, "lab", &format!("fleet{n}")).await);
    }
    let abuser = add_node(&http, &base, "lab", "rogue").await;
    // The rogue node's GPU, and a job of its own to end in 9999.
    let r = http
        .post(format!("{base}/api/v1/ingest/gpu"))
        .bearer_auth(&abuser)
        .json(&json!({"gpus": [{"index": 0, "uuid": "GPU-rogue-0", "model": "NVIDIA A100-SXM4-40GB"}], "samples": []}))
        .send()
        .await
        .expect("rogue's GPU");
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .post(format!("{base}/api/v1/jobs"))
        .bearer_auth(&abuser)
        .json(
            &json!({"id": "1", "user": "eve", "start": chrono::Utc::now(),
                      "allocations": [{"node": "rogue", "gpus": [0]}]}),
        )
        .send()
        .await
        .expect("rogue's job");
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let site_token = http
        .post(format!("{base}/api/v1/sites/lab/write-token"))
        .bearer_auth(ADMIN)
        .json(&json!({}))
        .send()
        .await
        .expect("site token")
        .json::<Value>()
        .await
        .expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();

    // Alone first.
    let alone = Arc::new(Fleet::default());
    alone.run(&base, &tokens, 8).await;
    assert!(alone.failures.lock().expect("lock").is_empty());

    // Then beside every abuser at once.
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(&'static str, u16)>>> = Arc::default();
    let mut abusers = Vec::new();
    let bomb = Arc::new(label_bomb());
    let kinds: Vec<(&'static str, reqwest::RequestBuilder)> = vec![
        // N1: an end in 9999, a running job from years ago.
        (
            "n1-end",
            http.post(format!("{base}/api/v1/jobs/1/end"))
                .bearer_auth(&abuser)
                .json(&json!({"end": "9999-12-31T00:00:00Z"})),
        ),
        (
            "n1-start",
            http.post(format!("{base}/api/v1/jobs"))
                .bearer_auth(&abuser)
                .json(&json!({"id": "77", "user": "eve", "start": "2000-01-01T00:00:00Z",
                              "allocations": [{"node": "rogue", "gpus": [0]}]})),
        ),
        // N2: the label bomb.
        (
            "n2",
            http.post(format!("{base}/api/v1/write"))
                .bearer_auth(&abuser)
                .header("content-encoding", "snappy")
                .body(bomb.as_ref().clone()),
        ),
        // N3: 300 new nodes in one write, a GPU index of 2^32 - 1.
        (
            "n3-nodes",
            http.post(format!("{base}/api/v1/write"))
                .bearer_auth(&site_token)
                .header("content-encoding", "snappy")
                .body(many_hosts(300)),
        ),
        (
            "n3-gpu",
            http.post(format!("{base}/api/v1/ingest/gpu"))
                .bearer_auth(&abuser)
                .json(&json!({"gpus": [{"index": 4294967295u32, "uuid": "GPU-x", "model": "x"}], "samples": []})),
        ),
        // N7: history by a node's token.
        (
            "n7",
            http.post(format!("{base}/api/v1/ingest/gpu?source=import"))
                .bearer_auth(&abuser)
                .json(&batch(99, 946_684_800_000)),
        ),
        // N8: dates no one measured.
        (
            "n8",
            http.get(format!("{base}/api/v1/jobs?from=-4713-01-01"))
                .bearer_auth(ADMIN),
        ),
    ];
    for (kind, request) in kinds {
        let (stop, answers) = (stop.clone(), answers.clone());
        abusers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = request
                    .try_clone()
                    .expect("cloneable")
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                answers.lock().expect("lock").push((kind, r));
            }
        }));
    }
    // N5: one client holding idle connections, from its own loopback address.
    let addr = base.trim_start_matches("http://").to_owned();
    let hoarder = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let socket = tokio::net::TcpSocket::new_v4().expect("socket");
                socket
                    .bind("127.0.0.2:0".parse().expect("address"))
                    .expect("binds");
                if let Ok(s) = socket.connect(addr.parse().expect("address")).await {
                    held.push(s);
                }
                if held.len() > 2000 {
                    held.remove(0);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            held.len()
        })
    };
    // The abusers under way (and the fleet's next batch in a second of its own).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let beside = Arc::new(Fleet::default());
    beside.run(&base, &tokens, 12).await;
    stop.store(true, Ordering::Relaxed);
    for a in abusers {
        a.await.expect("abuser");
    }
    hoarder.await.expect("hoarder");

    let failures = beside.failures.lock().expect("lock").clone();
    assert!(failures.is_empty(), "the fleet was refused: {failures:?}");
    // Every sample the fleet sent is stored, once.
    let sent = alone.sent.load(Ordering::Relaxed) + beside.sent.load(Ordering::Relaxed);
    assert_eq!(distinct_samples(&db).await, sent as i64);
    let (p99_alone, p99_beside) = (alone.p99(), beside.p99());
    eprintln!(
        "fleet p99: {p99_alone:.0} ms alone, {p99_beside:.0} ms beside the abusers; server peak RSS {:.0} MiB",
        peak_rss_mib(running.server.pid())
    );
    assert!(
        p99_beside < 1000.0,
        "a batch a second must be answered within its second: p99 {p99_beside:.0} ms (alone {p99_alone:.0} ms)"
    );
    assert!(
        peak_rss_mib(running.server.pid()) < 1024.0,
        "the server's memory stays bounded"
    );
    // Each abuser got its finding's answer, and none of them a 5xx.
    let answers = answers.lock().expect("lock").clone();
    let mut counts = std::collections::BTreeMap::new();
    for (kind, _) in &answers {
        *counts.entry(*kind).or_insert(0) += 1;
    }
    eprintln!("abusive requests answered: {counts:?}");
    for (kind, want) in [
        ("n1-end", 400),
        ("n1-start", 400),
        ("n2", 204),
        ("n3-nodes", 400),
        ("n3-gpu", 400),
        ("n7", 403),
        ("n8", 400),
    ] {
        let got: Vec<u16> = answers
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, s)| *s)
            .collect();
        assert!(!got.is_empty(), "{kind} ran");
        assert!(got.iter().all(|s| *s == want), "{kind}: {got:?}");
    }
    // No node was registered by the refused writes.
    let (_, nodes) = (
        (),
        http.get(format!("{base}/api/v1/nodes"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("nodes")
            .json::<Value>()
            .await
            .expect("json"),
    );
    assert_eq!(nodes.as_array().map(Vec::len), Some(NODES + 1), "{nodes}");
}

/// A remote write naming `n` hosts never seen.
fn many_hosts(n: usize) -> Vec<u8> {
    use wattlas_server::service::remote_write::{encode, Label, Sample, TimeSeries, WriteRequest};
    let t = chrono::Utc::now().timestamp_millis() - 5_000;
    encode(&WriteRequest {
        timeseries: (0..n)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "DCGM_FI_DEV_POWER_USAGE".into(),
                    },
                    Label {
                        name: "gpu".into(),
                        value: "0".into(),
                    },
                    Label {
                        name: "Hostname".into(),
                        value: format!("ghost{i}"),
                    },
                ],
                samples: vec![Sample {
                    value: 100.0,
                    timestamp: t,
                }],
            })
            .collect(),
    })
}
