//! The delivery loop under paused time, against a scripted stand-in for the server: backoff doubles
//! while the server is away and resets after a delivery, a refused entry is set aside and counted, and
//! every batch carries the spool's count of dropped samples.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;
use wattlas_protocol::{GpuBatch, GpuSample};

use super::{deliver_loop, Deliver, Delivery};
use crate::run::Stats;
use crate::spool::{Entry, Spool};

/// Runs the delivery loop until the spool is empty; its counters.
async fn deliver_all(server: &Arc<Scripted>, spool: &Arc<Mutex<Spool>>) -> Arc<Stats> {
    let stats = Arc::new(Stats::default());
    let (wake, delivering) = (Arc::new(Notify::new()), Arc::new(AtomicBool::new(true)));
    let task = tokio::spawn(deliver_loop(
        server.clone(),
        spool.clone(),
        stats.clone(),
        wake.clone(),
        delivering.clone(),
    ));
    while !spool.lock().expect("lock").is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    delivering.store(false, Ordering::SeqCst);
    wake.notify_one();
    task.await.expect("loop ends");
    stats
}

/// Milliseconds between one attempt and the next.
fn gaps(server: &Scripted) -> Vec<u128> {
    server
        .attempts
        .lock()
        .expect("lock")
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_millis())
        .collect()
}

/// Answers from a script; records when each attempt came and the dropped count each batch carried.
struct Scripted {
    answers: Mutex<VecDeque<Delivery>>,
    attempts: Mutex<Vec<(Instant, usize, Option<u64>)>>,
}

impl Deliver for Arc<Scripted> {
    async fn deliver(&self, entry: &Entry) -> Delivery {
        let Entry::Gpu(batch) = entry else {
            return Delivery::Rejected("not a GPU batch".into());
        };
        self.attempts.lock().expect("lock").push((
            Instant::now(),
            batch.samples.len(),
            batch.dropped_samples_total,
        ));
        self.answers
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(Delivery::Done)
    }
}

fn batch(samples: usize) -> Entry {
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
        .single()
        .expect("time");
    Entry::Gpu(GpuBatch {
        node: None,
        gpus: vec![],
        samples: (0..samples)
            .map(|i| GpuSample {
                time: t0 + chrono::Duration::milliseconds(100 * i as i64),
                gpu: 0,
                power_w: 100.0,
                energy_mj: None,
                power_limit_w: None,
                util_pct: None,
                mem_used_mib: None,
                temp_c: None,
                sm_clock_mhz: None,
                power_instant_w: None,
                power_source: None,
            })
            .collect(),
        dropped_samples_total: None,
        clock_steps: None,
        node_energy: vec![],
        node_cpus: None,
        dropped_ranges: Vec::new(),
    })
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_while_away_resets_after_delivery_and_refusals_are_set_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Arc::new(Mutex::new(Spool::open(dir.path(), 1 << 20).expect("spool")));
    {
        let mut s = spool.lock().expect("lock");
        for n in [10, 20, 30] {
            s.push(&batch(n)).expect("push");
        }
        // Samples the spool had to drop for room earlier: every batch tells the server.
        s.add_dropped(7).expect("dropped");
    }
    let server = Arc::new(Scripted {
        answers: Mutex::new(VecDeque::from([
            Delivery::Retry("connection refused".into()),
            Delivery::Retry("503".into()),
            Delivery::Done,
            Delivery::Rejected("400: samples[0].power_w".into()),
            Delivery::Retry("connection refused".into()),
            Delivery::Done,
        ])),
        attempts: Mutex::default(),
    });
    let stats = deliver_all(&server, &spool).await;

    let attempts = server.attempts.lock().expect("lock").clone();
    let sizes: Vec<usize> = attempts.iter().map(|a| a.1).collect();
    assert_eq!(
        sizes,
        [10, 10, 10, 20, 30, 30],
        "in order, each retried until answered"
    );
    // 250 ms, then 500 ms while away; a delivery and a refusal go straight on; after the delivery
    // the backoff starts again at 250 ms.
    assert_eq!(gaps(&server), [250, 500, 0, 0, 250]);
    assert!(
        attempts.iter().all(|a| a.2 == Some(7)),
        "every batch carries the dropped count: {attempts:?}"
    );
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 40);
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 20);
    assert!(stats.last_push_ms.load(Ordering::Relaxed) > 0);
    let rejected = std::fs::read_dir(dir.path().join("rejected"))
        .expect("rejected/")
        .count();
    assert_eq!(
        rejected, 1,
        "the refused batch is kept for a person to look at"
    );
}

#[tokio::test(start_paused = true)]
async fn a_long_outage_backs_off_to_two_seconds_at_most() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Arc::new(Mutex::new(Spool::open(dir.path(), 1 << 20).expect("spool")));
    spool.lock().expect("lock").push(&batch(5)).expect("push");
    let mut answers: VecDeque<Delivery> = (0..8).map(|_| Delivery::Retry("down".into())).collect();
    answers.push_back(Delivery::Done);
    let server = Arc::new(Scripted {
        answers: Mutex::new(answers),
        attempts: Mutex::default(),
    });
    let stats = deliver_all(&server, &spool).await;
    assert_eq!(
        gaps(&server),
        [250, 500, 1000, 2000, 2000, 2000, 2000, 2000]
    );
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 5);
}

/// A server that does not read the binary form (415) gets the batch again as JSON at once, and JSON
/// from then on; a batch with a value the binary form cannot carry goes as JSON (the server names it).
#[tokio::test]
async fn binary_batches_fall_back_to_json_where_the_server_does_not_read_them() {
    use axum::http::{HeaderMap, StatusCode};
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = axum::Router::new().route(
        wattlas_protocol::paths::INGEST_GPU,
        axum::routing::post({
            let seen = seen.clone();
            move |headers: HeaderMap| async move {
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().expect("seen").push(ct.clone());
                if ct == "application/json" {
                    (StatusCode::OK, r#"{"stored":1,"duplicates":0}"#)
                } else {
                    (
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        r#"{"error":"expected application/json"}"#,
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let uplink = super::Uplink::new(&base, "t").expect("client");
    let Entry::Gpu(b) = batch(10) else {
        unreachable!()
    };
    assert_eq!(uplink.post_batch(&b).await, Delivery::Done);
    assert_eq!(uplink.post_batch(&b).await, Delivery::Done);
    let binary = wattlas_protocol::wire::BATCH_CONTENT_TYPE;
    assert_eq!(
        *seen.lock().expect("seen"),
        [binary, "application/json", "application/json"]
    );

    // A fresh client, an out-of-bounds power: straight to JSON.
    seen.lock().expect("seen").clear();
    let uplink = super::Uplink::new(&base, "t").expect("client");
    let mut hot = b.clone();
    hot.samples[0].power_w = 1e9;
    assert_eq!(uplink.post_batch(&hot).await, Delivery::Done);
    assert_eq!(*seen.lock().expect("seen"), ["application/json"]);
}
