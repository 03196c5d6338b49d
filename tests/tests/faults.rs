//! Faults, end to end with the real binaries: PostgreSQL stopped and started again under ingest, and a
//! collector killed with a full spool at its bound and started again. Each counts what was generated
//! against what was stored: nothing lost that the spool could hold, nothing doubled, every drop counted
//! and shown. (A server killed with SIGKILL mid-run is in e2e.rs.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_tests::collector::{emitted, until, Collector};
use wattlas_tests::harness::{
    add_node, distinct_samples, job, metrics_text, stored_samples, wait_ready, Cluster, Running,
    ADMIN,
};
use wattlas_tests::{exposition, post};

/// PostgreSQL stopped for several seconds under a running collector, then started again: the server
/// stays up and says why it refuses, the collector spools, and every sample is stored once.
#[tokio::test]
async fn ingest_waits_out_postgresql_stopped_and_started_again() {
    let cluster = Cluster::start();
    // Held whole: dropping it stops the server.
    let running = Running::start(cluster.url.clone(), "lab").await;
    let (base, http, dir) = (&running.base, &running.http, running.dir.path());
    let token = add_node(http, base, "lab", "gpu01").await;
    let collector = Collector::start(base, &token, dir, 24, &[]);

    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = collector.scrape(http).await;
    assert!(before["wattlas_collector_samples_delivered_total"] > 0.0);
    cluster.stop();

    // The database is away: the process answers, says it is not ready, and refuses writes with 503
    // and a time to come back; its own metrics say the database is down.
    let r = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status"], "database unavailable");
    let r = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/api/v1/ingest/gpu"))
        .bearer_auth(&token)
        .json(&json!({"gpus": [], "samples": []}))
        .send()
        .await
        .expect("ingest");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("database")),
        "{body}"
    );
    let text = metrics_text(http, base).await;
    assert_eq!(exposition(&text)["wattlas_db_up"], 0.0, "{text}");
    // Meanwhile the collector keeps sampling into its spool.
    until(
        "batches wait in the spool",
        Duration::from_secs(10),
        || async { collector.scrape(http).await["wattlas_collector_spool_entries"] >= 3.0 },
    )
    .await;

    cluster.restart();
    wait_ready(http, base).await;
    let log = collector.finish().await;
    assert!(log.contains("spooling"), "the outage went unseen:\n{log}");

    let db = PgPool::connect(&cluster.url).await.expect("connect");
    let stored = stored_samples(&db).await;
    assert_eq!(
        stored,
        emitted(dir),
        "every sample stored; collector said:\n{log}"
    );
    assert_eq!(distinct_samples(&db).await, stored, "nothing doubled");
    let left = std::fs::read_dir(dir.join("spool"))
        .expect("spool")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json.gz"))
        .count();
    assert_eq!(left, 0, "spool drained");
}

/// A collector cut off from the server fills its spool to the bound (dropping the oldest batches and
/// counting them), is killed with SIGKILL, and started again once the server is back: what the spool
/// held is delivered once, and what was dropped is counted on the server.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_collector_killed_with_a_full_spool_delivers_it_after_restart(db: PgPool) {
    let running = Running::with_site(&db, "lab").await;
    let (base, http) = (running.base.clone(), running.http.clone());
    let token = add_node(&http, &base, "lab", "gpu01").await;
    let dir = running.dir.path();
    // About five 1-second batches of 4 GPUs (1.2 kB each, gzipped JSON).
    let bound = ["--spool-max-bytes", "6000"];
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);

    // Port 9 (discard): nothing listens there on a test machine, so every push is refused.
    let nowhere = "http://127.0.0.1:9".to_owned();
    let first = Collector::start(&nowhere, &token, dir, 120, &bound);
    until(
        "the spool drops for room",
        Duration::from_secs(30),
        || async { first.scrape(&http).await["wattlas_collector_samples_dropped_total"] >= 80.0 },
    )
    .await;
    let seen = first.scrape(&http).await;
    first.kill();
    assert!(seen["wattlas_collector_spool_bytes"] <= 6000.0, "{seen:?}");

    // What the killed collector left: whole entries (each written under a temporary name, then
    // renamed; a torn temporary file is discarded at the next start) and a persistent count of dropped
    // samples.
    let mut spooled = 0i64;
    for e in std::fs::read_dir(dir.join("spool")).expect("spool") {
        let path = e.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.ends_with("-gpu.json.gz") {
            let entry = wattlas_collector::spool::read_entry(&path).expect("a whole entry");
            spooled += entry.samples() as i64;
        }
    }
    let dropped_before: i64 = std::fs::read_to_string(dir.join("spool/dropped_samples"))
        .expect("dropped count")
        .trim()
        .parse()
        .expect("a number");
    assert!(spooled > 0 && dropped_before >= 80);
    // SIGKILL loses only the batch in memory: at most a second of 4 GPUs at 100 ms (and a tick).
    let read = seen["wattlas_collector_samples_read_total"] as i64;
    assert!(
        read - (spooled + dropped_before) <= 44,
        "read {read}, spooled {spooled}, dropped {dropped_before}"
    );

    // Started again, against the server this time.
    let second = Collector::start(&base, &token, dir, 6, &bound);
    let log = second.finish().await;
    let stored = stored_samples(&db).await;
    let r = http
        .get(format!("{base}/api/v1/nodes"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("nodes");
    let nodes: Value = r.json().await.expect("json");
    let dropped = nodes[0]["dropped_samples_total"]
        .as_i64()
        .expect("dropped on the server");
    assert!(dropped >= dropped_before, "{dropped} < {dropped_before}");
    assert_eq!(
        stored + dropped,
        spooled + dropped_before + emitted(dir),
        "stored + dropped = what the first left + what the second read; the second said:\n{log}"
    );
    assert_eq!(distinct_samples(&db).await, stored, "nothing doubled");

    // Which samples were dropped reached the server too: a job over the whole run on the node's GPUs
    // says it lost every one of them.
    post(
        &http,
        &base,
        ADMIN,
        "/api/v1/jobs",
        json!({"id": "through-the-outage", "user": "ann", "site": "lab", "start": started,
               "end": chrono::Utc::now(), "allocations": [{"node": "gpu01", "gpus": [0, 1, 2, 3]}]}),
    )
    .await;
    let view = job(&http, &base, "through-the-outage").await;
    assert_eq!(view["lost"]["samples"], json!(dropped), "{view}");
    let files =
        std::fs::read_to_string(dir.join("spool/dropped_ranges.json")).expect("ranges file");
    assert_eq!(files.trim(), "[]", "delivered ranges are forgotten");
}

/// `scripts/db replica` makes a hot standby that streams the primary's writes (TimescaleDB with them),
/// refuses writes itself, and takes them once `scripts/db promote` made it the primary.
#[tokio::test]
async fn a_replica_follows_its_primary_and_takes_writes_once_promoted() {
    let primary = Cluster::start();
    let replica = primary.replica();
    let p = PgPool::connect(&primary.url).await.expect("primary");
    sqlx::query("create extension if not exists timescaledb")
        .execute(&p)
        .await
        .expect("extension");
    sqlx::query("create table readings (t timestamptz not null, w float8)")
        .execute(&p)
        .await
        .expect("table");
    sqlx::query("select create_hypertable('readings', 't')")
        .execute(&p)
        .await
        .expect("hypertable");
    sqlx::query("insert into readings values (now(), 42)")
        .execute(&p)
        .await
        .expect("insert");
    let r = PgPool::connect(&replica.url).await.expect("replica");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: Option<i64> = sqlx::query_scalar("select count(*) from readings")
            .fetch_one(&r)
            .await
            .ok();
        if n == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the replica did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let standby: bool = sqlx::query_scalar("select pg_is_in_recovery()")
        .fetch_one(&r)
        .await
        .expect("recovery");
    assert!(standby);
    assert!(
        sqlx::query("insert into readings values (now(), 1)")
            .execute(&r)
            .await
            .is_err(),
        "a standby refuses writes"
    );
    replica.promote();
    let standby: bool = sqlx::query_scalar("select pg_is_in_recovery()")
        .fetch_one(&r)
        .await
        .expect("recovery");
    assert!(!standby, "promoted");
    sqlx::query("insert into readings values (now(), 7)")
        .execute(&r)
        .await
        .expect("the promoted replica takes writes");
    let n: i64 = sqlx::query_scalar("select count(*) from readings")
        .fetch_one(&r)
        .await
        .expect("count");
    assert_eq!(n, 2);
    r.close().await;
    p.close().await;
}

/// A server with a read replica (`WATTLAS_READ_DATABASE_URL`) and a bound of 3 s: the fleet view reads
/// the replica, so right after its replay is paused a node registered on the primary is not in it yet;
/// once the replica may be more than 3 s behind, reads go to the primary (the node shows), /readyz says
/// degraded and /metrics shows the lag and where reads went (one pool per view: never a mix); once
/// replay resumes, reads return to it.
#[tokio::test]
async fn heavy_reads_go_to_the_read_replica_only_within_its_bound() {
    use wattlas_tests::harness::Server;
    let primary = Cluster::start();
    let replica = primary.replica();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let server = Server::start_with(
        &primary.url,
        "127.0.0.1:0",
        &log,
        &[
            ("WATTLAS_READ_DATABASE_URL", replica.url.as_str()),
            ("WATTLAS_REPLICA_MAX_LAG_S", "3"),
        ],
    );
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    wattlas_tests::post(
        &http,
        &base,
        ADMIN,
        "/api/v1/sites",
        json!({"name": "lab", "timezone": "UTC"}),
    )
    .await;
    add_node(&http, &base, "lab", "n1").await;
    let get = |path: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.get(format!("{base}{path}"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("request")
                .text()
                .await
                .expect("text")
        }
    };
    let served = |pool: &str, m: &HashMap<String, f64>| {
        m[&format!("wattlas_reads_total{{pool=\"{pool}\"}}")]
    };
    // Caught up and probed: ready, and the fleet has n1. (Ready means at most 3 s behind, and n1 was
    // registered just now: under a loaded machine's replay the replica may take a moment to have it;
    // the full suite once read the fleet without it.)
    until(
        "the replica is ready and has n1",
        Duration::from_secs(20),
        || async {
            let ready: Value = serde_json::from_str(&get("/readyz").await).expect("json");
            ready["status"] == "ready" && get("/api/v1/metrics/fleet").await.contains("node=\"n1\"")
        },
    )
    .await;
    let before = exposition(&get("/metrics").await);
    assert!(served("replica", &before) >= 1.0, "{before:?}");

    let r = PgPool::connect(&replica.url).await.expect("replica");
    sqlx::query("select pg_wal_replay_pause()")
        .execute(&r)
        .await
        .expect("pause");
    let paused = Instant::now();
    add_node(&http, &base, "lab", "n2").await;
    // Within the bound: read from the paused replica, without n2.
    let fleet = get("/api/v1/metrics/fleet").await;
    assert!(
        fleet.contains("node=\"n1\"") && !fleet.contains("node=\"n2\""),
        "read from the paused replica: {fleet}"
    );
    // Past it: from the primary, with n2; not before the bound could have passed (the replica's last
    // replayed probe was at most one probe interval, 750 ms, before the pause).
    until(
        "reads leave the lagging replica",
        Duration::from_secs(10),
        || async { get("/api/v1/metrics/fleet").await.contains("node=\"n2\"") },
    )
    .await;
    assert!(
        paused.elapsed() >= Duration::from_millis(2250),
        "{:?}",
        paused.elapsed()
    );
    let ready: Value = serde_json::from_str(&get("/readyz").await).expect("json");
    assert!(
        ready["status"]
            .as_str()
            .expect("status")
            .starts_with("degraded"),
        "{ready}"
    );
    assert!(
        ready["replica_lag_s"].as_f64().expect("lag") > 3.0,
        "{ready}"
    );
    assert_eq!(ready["replica_max_lag_s"], 3.0);
    let during = exposition(&get("/metrics").await);
    assert!(during["wattlas_replica_lag_seconds"] > 3.0, "{during:?}");
    assert!(
        served("primary", &during) > served("primary", &before),
        "{during:?}"
    );

    sqlx::query("select pg_wal_replay_resume()")
        .execute(&r)
        .await
        .expect("resume");
    until(
        "the replica is ready again",
        Duration::from_secs(20),
        || async {
            let ready: Value = serde_json::from_str(&get("/readyz").await).expect("json");
            ready["status"] == "ready"
        },
    )
    .await;
    let back = exposition(&get("/metrics").await);
    assert!(get("/api/v1/metrics/fleet").await.contains("node=\"n2\""));
    let after = exposition(&get("/metrics").await);
    assert_eq!(
        served("replica", &after),
        served("replica", &back) + 1.0,
        "one view, one read"
    );
    assert_eq!(served("primary", &after), served("primary", &back));
    r.close().await;
    drop(server);
}

/// Issue 32, item 4: a node's wall clock steps back 2 s (NTP) in the middle of job A, which job B
/// follows on the same GPU (300 W, 120 s, counter 30 J a tick). Stamped with the wall clock, the 2 s
/// after the step repeat times already sent: the server keeps the first of each, and the counter's
/// jump across the repeated span is refused as implausible: 600 J lost. Stamped as the collector
/// stamps (`clock::StampClock`: monotonic, slewed 10 ms a second), nothing repeats: A and B add up to
/// every joule, and what moves from B to A is under the 2 s step.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_clock_step_mid_job_loses_and_doubles_no_energy(db: PgPool) {
    use chrono::{DurationRound, TimeZone, Utc};
    use wattlas_collector::clock::StampClock;

    let running = Running::with_site(&db, "lab").await;
    let (base, http) = (running.base.clone(), running.http.clone());
    let t0 = (Utc::now() - chrono::Duration::minutes(10))
        .duration_trunc(chrono::Duration::minutes(1))
        .expect("trunc")
        .timestamp_millis();
    let real_ms = |k: i64| t0 + 100 * k;
    // The node's wall clock: 2 s behind from 30 s in.
    let wall_ms = |k: i64| real_ms(k) - if k >= 300 { 2000 } else { 0 };
    let mut clock = StampClock::new();
    let slewed: Vec<i64> = (0..=1200)
        .map(|k| clock.stamp(100 * k, wall_ms(k)))
        .collect();
    assert_eq!(clock.steps, 1);
    for (node, stamp) in [("wall", None), ("slewed", Some(&slewed))] {
        let token = add_node(&http, &base, "lab", node).await;
        // One batch a second, in the order the collector sends them.
        for second in 0..=120i64 {
            let samples: Vec<Value> = (second * 10..((second + 1) * 10).min(1201))
                .map(|k| {
                    let t = stamp.map_or_else(|| wall_ms(k), |s| s[k as usize]);
                    json!({"time": Utc.timestamp_millis_opt(t).single().expect("time"),
                           "gpu": 0, "power_w": 300.0, "energy_mj": 1_000_000 + 30_000 * k,
                           "power_limit_w": 400.0})
                })
                .collect();
            // The collector says so with the batch of the tick it saw the step on.
            let steps = (stamp.is_some() && second == 30).then_some(1);
            post(
                &http,
                &base,
                &token,
                "/api/v1/ingest/gpu",
                json!({"gpus": [{"index": 0, "uuid": format!("GPU-{node}"), "model": "NVIDIA H100 80GB HBM3"}],
                       "samples": samples, "clock_steps": steps}),
            )
            .await;
        }
        // The jobs' edges come from the controller's clock: real time.
        for (id, from, to) in [("a", 0, 600), ("b", 600, 1200)] {
            post(
                &http,
                &base,
                ADMIN,
                "/api/v1/jobs",
                json!({"id": format!("{node}-{id}"), "user": "ann", "site": "lab",
                       "start": Utc.timestamp_millis_opt(real_ms(from)).single().expect("t"),
                       "end": Utc.timestamp_millis_opt(real_ms(to)).single().expect("t"),
                       "allocations": [{"node": node, "gpus": [0]}]}),
            )
            .await;
        }
    }
    let kwh = |v: &Value| v["gpu_energy_kwh"].as_f64().expect("energy") * 3.6e6;
    let (wall_a, wall_b) = (
        job(&http, &base, "wall-a").await,
        job(&http, &base, "wall-b").await,
    );
    let (slew_a, slew_b) = (
        job(&http, &base, "slewed-a").await,
        job(&http, &base, "slewed-b").await,
    );
    let truth = 120.0 * 300.0;
    let wall_total = kwh(&wall_a) + kwh(&wall_b);
    let slew_total = kwh(&slew_a) + kwh(&slew_b);
    eprintln!(
        "clock step: wall-clock stamps {wall_total:.0} J ({:.0} + {:.0}), slewed stamps {slew_total:.0} J ({:.0} + {:.0}), truth {truth:.0} J",
        kwh(&wall_a),
        kwh(&wall_b),
        kwh(&slew_a),
        kwh(&slew_b)
    );
    // What wall-clock stamps cost: the 2 s the step repeated.
    assert!((truth - wall_total - 600.0).abs() < 31.0, "{wall_total}");
    // Slewed stamps: every joule once; A holds at most the step's 2 s of B's.
    assert!((slew_total - truth).abs() < 1.0, "{slew_total}");
    let moved = kwh(&slew_a) - 60.0 * 300.0;
    assert!(
        (0.0..=600.0).contains(&moved),
        "{moved} J moved from B to A"
    );
    // Staff see the step beside the node's clock, on the admin page and the job's.
    for path in ["/admin", "/jobs/slewed-a"] {
        let page = http
            .get(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("text");
        assert!(
            page.contains("; its wall clock stepped 1 time (last "),
            "{path}: {page}"
        );
    }
}

/// A small filesystem of the test's own (tmpfs), mounted where PostgreSQL's user can reach it, owned by
/// it; unmounted on drop. `None` where this machine does not let the test mount one.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(megabytes: u32, owner: u32) -> Option<SmallDisk> {
        let path = std::env::temp_dir().join(format!("wattlas-disk-{}", std::process::id()));
        std::fs::create_dir_all(&path).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0700")])
            .arg("tmpfs")
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&path);
            return None;
        }
        std::os::unix::fs::chown(&path, Some(owner), None).ok()?;
        Some(SmallDisk { path })
    }

    /// Fills what is free with a file of its own; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let ballast = self.path.join("ballast");
        let mut f = std::fs::File::create(&ballast).expect("ballast");
        let chunk = vec![0u8; 1 << 16];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        ballast
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// The database's disk fills during ingest (its tablespace on a small filesystem the test mounts):
/// ingest answers 503 (not 500), the collector spools, nothing acknowledged is lost, and ingest
/// resumes once space returns; every sample the collector read is stored once.
#[tokio::test]
async fn a_full_database_disk_answers_503_and_ingest_resumes_when_space_returns() {
    use std::os::unix::fs::MetadataExt;
    let cluster = Cluster::start();
    let admin = PgPool::connect(&cluster.url).await.expect("cluster");
    let data: String = sqlx::query_scalar("show data_directory")
        .fetch_one(&admin)
        .await
        .expect("data directory");
    let owner = std::fs::metadata(&data).expect("data directory").uid();
    let Some(disk) = SmallDisk::mount(64, owner) else {
        // Mounting needs CAP_SYS_ADMIN (root outside a restricted container).
        eprintln!("skipped: this machine does not let the test mount a small filesystem");
        return;
    };
    let location = disk.path.join("pg");
    std::fs::create_dir(&location).expect("tablespace dir");
    std::os::unix::fs::chown(&location, Some(owner), None).expect("chown");
    sqlx::query(&format!(
        "create tablespace small location '{}'",
        location.display()
    ))
    .execute(&admin)
    .await
    .expect("tablespace");
    sqlx::query("create database filled tablespace small")
        .execute(&admin)
        .await
        .expect("database");
    let url = format!("{}/filled", cluster.url.rsplit_once('/').expect("url").0);
    let running = Running::start(url.clone(), "lab").await;
    let (base, http, dir) = (&running.base, &running.http, running.dir.path());
    let token = add_node(http, base, "lab", "gpu01").await;
    let collector = Collector::start(base, &token, dir, 24, &[]);

    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = collector.scrape(http).await;
    assert!(before["wattlas_collector_samples_delivered_total"] > 0.0);
    // The disk fills.
    let ballast = disk.fill();
    let refused = |m: &HashMap<String, f64>, status: u16| {
        m.get(&format!(
            "wattlas_rejected_requests_total{{route=\"/api/v1/ingest/gpu\",status=\"{status}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    let metrics = || async { exposition(&metrics_text(http, base).await) };
    until(
        "ingest refused for the full disk",
        Duration::from_secs(20),
        || async { refused(&metrics().await, 503) >= 3.0 },
    )
    .await;
    let full = collector.scrape(http).await;
    assert!(
        full["wattlas_collector_spool_bytes"] > 0.0,
        "the collector spools: {full:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Space returns.
    std::fs::remove_file(&ballast).expect("free the disk");
    let log = collector.finish().await;
    let db = PgPool::connect(&url).await.expect("database");
    let emitted = emitted(dir);
    until("the spool delivered", Duration::from_secs(20), || async {
        stored_samples(&db).await >= emitted
    })
    .await;
    let m = metrics().await;
    let stored = stored_samples(&db).await;
    eprintln!(
        "full disk: {} batches refused with 503, {} with 500; {stored} of {emitted} samples stored",
        refused(&m, 503),
        refused(&m, 500)
    );
    assert_eq!(
        refused(&m, 500),
        0.0,
        "a full disk is not an internal error"
    );
    assert_eq!(stored, emitted, "the collector said:\n{log}");
    assert_eq!(distinct_samples(&db).await, stored, "nothing doubled");
    db.close().await;
    admin.close().await;
    drop(running);
}
