//! Scale-out and failover with the real binaries and real engines on loopback: two `wattlas-server`
//! processes behind HAProxy (Debian's, run on `examples/haproxy/haproxy.cfg` unchanged), a PostgreSQL
//! primary with a hot standby, and four simulated collectors pushing through HAProxy while one server
//! is killed with SIGKILL, the standby's replay is paused, and the primary is stopped and the standby
//! promoted. Nothing is lost or doubled, every job's energy is the simulator's, and no page read from
//! the standby was older than the servers' bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_tests::collector::{emitted, until, Collector};
use wattlas_tests::harness::{
    add_node, distinct_samples, job, metrics_text, server_cli, sign_in, stored_samples, wait_ready,
    Cluster, Server, ADMIN,
};
use wattlas_tests::{exposition, post};

/// The servers' bound on the staleness of what they read from the standby, s.
const MAX_LAG_S: f64 = 2.0;

/// A port nothing listens on now. Only for HAProxy, which cannot bind port 0 and say what it got; it
/// is started at once, and a lost race shows as HAProxy failing to start, which the test reports.
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// HAProxy on the example configuration, addresses from the environment.
struct Haproxy {
    child: Child,
    http: String,
    pg: String,
    pg_read: String,
    stats: String,
    log: std::path::PathBuf,
}

impl Haproxy {
    fn start(dir: &Path, servers: [&str; 2], databases: [&str; 2], credentials: &str) -> Haproxy {
        let repo = wattlas_tests::manifest_dir().join("..");
        // The check and its credentials, beside each other as the example asks.
        let check = dir.join("pg-primary-check");
        std::fs::copy(repo.join("examples/haproxy/pg-primary-check"), &check).expect("check");
        std::fs::write(dir.join("pg-primary-check.conf"), credentials).expect("conf");
        let [http, pg, pg_read, stats] = [(); 4].map(|()| format!("127.0.0.1:{}", unused_port()));
        let log = dir.join("haproxy.log");
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(repo.join("examples/haproxy/haproxy.cfg"))
            .arg("-db")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/bin")
            .env("WATTLAS_LB_HTTP", &http)
            .env("WATTLAS_LB_PG", &pg)
            .env("WATTLAS_LB_PG_READ", &pg_read)
            .env("WATTLAS_LB_STATS", &stats)
            .env("WATTLAS_SERVER_1", servers[0])
            .env("WATTLAS_SERVER_2", servers[1])
            .env("WATTLAS_PG_1", databases[0])
            .env("WATTLAS_PG_2", databases[1])
            .env("WATTLAS_PG_CHECK", &check)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("haproxy starts (Debian package haproxy; scripts/test installs it)");
        Haproxy {
            child,
            http: format!("http://{http}"),
            pg,
            pg_read,
            stats: format!("http://{stats}/stats;csv"),
            log,
        }
    }

    /// `backend/server` -> status (UP, DOWN, ...), from its stats CSV.
    async fn states(&mut self, http: &reqwest::Client) -> BTreeMap<String, String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("haproxy exited ({status}):\n{log}");
        }
        let Ok(r) = http.get(&self.stats).send().await else {
            return BTreeMap::new();
        };
        let text = r.text().await.expect("csv");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f.len() > 17 && !["FRONTEND", "BACKEND"].contains(&f[1]))
                    .then(|| (format!("{}/{}", f[0], f[1]), f[17].to_owned()))
            })
            .collect()
    }

    async fn until_state(&mut self, http: &reqwest::Client, want: &[(&str, &str)]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let states = self.states(http).await;
            if want
                .iter()
                .all(|(k, v)| states.get(*k).is_some_and(|s| s.starts_with(v)))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy: {states:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the canary loop saw: nodes registered through the load balancer (name, when acknowledged)
/// and fleet reads (when sent, nodes in the answer).
#[derive(Default)]
struct Canaries {
    written: Vec<(String, Instant)>,
    reads: Vec<(Instant, String)>,
    /// A signed-in person's overview page and a staff token's energy API: when sent, the status.
    signed_in: Vec<(Instant, &'static str, u16, Duration)>,
}

#[tokio::test]
async fn two_servers_behind_haproxy_survive_a_killed_server_and_a_promoted_standby() {
    let primary = Cluster::start();
    let standby = primary.replica();
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // postgres://wattlas:PASSWORD@127.0.0.1:PORT/wattlas, for both clusters (same user and password).
    let parse = |url: &str| {
        let rest = url.strip_prefix("postgres://").expect("url");
        let (auth, rest) = rest.split_once('@').expect("auth");
        let (user, password) = auth.split_once(':').expect("password");
        let (addr, db) = rest.split_once('/').expect("db");
        (
            user.to_owned(),
            password.to_owned(),
            addr.to_owned(),
            db.to_owned(),
        )
    };
    let (user, password, pg1, database) = parse(&primary.url);
    let (_, _, pg2, _) = parse(&standby.url);
    let [s1, s2] = [(); 2].map(|()| format!("127.0.0.1:{}", unused_port()));
    let mut lb = Haproxy::start(
        dir.path(),
        [&s1, &s2],
        [&pg1, &pg2],
        &format!("PGUSER={user}\nPGPASSWORD={password}\nPGDATABASE={database}\n"),
    );
    // The check tells the primary from the standby before anything connects.
    lb.until_state(
        &http,
        &[
            ("postgres_primary/pg1", "UP"),
            ("postgres_primary/pg2", "DOWN"),
            ("postgres_read/pg2", "UP"),
        ],
    )
    .await;

    let through = |addr: &str| format!("postgres://{user}:{password}@{addr}/{database}");
    let env = [
        ("WATTLAS_READ_DATABASE_URL", through(&lb.pg_read)),
        ("WATTLAS_REPLICA_MAX_LAG_S", MAX_LAG_S.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server1 =
        Server::start_with(&through(&lb.pg), &s1, &dir.path().join("server1.log"), &env);
    let server2 = Server::start_with(&through(&lb.pg), &s2, &dir.path().join("server2.log"), &env);
    for s in [&s1, &s2] {
        wait_ready(&http, &format!("http://{s}")).await;
    }
    lb.until_state(
        &http,
        &[("wattlas_servers/s1", "UP"), ("wattlas_servers/s2", "UP")],
    )
    .await;
    let base = lb.http.clone();
    post(
        &http,
        &base,
        ADMIN,
        "/api/v1/sites",
        json!({"name": "lab", "timezone": "UTC"}),
    )
    .await;

    // A staff member, signed in through HAProxy, and an API token of theirs.
    let staff_password = "failover staff password 1";
    server_cli(
        &through(&lb.pg),
        &["user", "add", "sam", "--role", "staff"],
        &format!("{staff_password}\n"),
    );
    let staff_token = server_cli(
        &through(&lb.pg),
        &["user", "token", "sam", "--label", "failover"],
        "",
    );
    let (status, cookie) = sign_in(&http, &base, "sam", staff_password).await;
    assert_eq!(status, 303);
    let cookie = cookie.expect("session cookie");

    // Four collectors of 4 GPUs, two 5-s jobs on each pair of GPUs, through the load balancer.
    let mut collectors = Vec::new();
    let mut dirs = Vec::new();
    for n in 1..=4u64 {
        let node = format!("gpu0{n}");
        let token = add_node(&http, &base, "lab", &node).await;
        let cdir = dir.path().join(&node);
        std::fs::create_dir_all(&cdir).expect("dir");
        let jobs = [
            "--sim-caps",
            "100,250",
            "--sim-gpus-per-job",
            "2",
            "--sim-job-seconds",
            "5",
            "--sim-jobs",
            "2",
        ];
        collectors.push(Collector::start_as(
            &node,
            40 + n,
            &base,
            &token,
            &cdir,
            30,
            &jobs,
        ));
        dirs.push(cdir);
    }

    // Meanwhile: a node registered every 500 ms, the fleet read every 200 ms, all through HAProxy.
    let canaries = Arc::new(Mutex::new(Canaries::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loop_task = {
        let (canaries, stop, http, base) =
            (canaries.clone(), stop.clone(), http.clone(), base.clone());
        let (cookie, staff_token) = (cookie.clone(), staff_token.clone());
        tokio::spawn(async move {
            let mut k = 0;
            let mut last_write = Instant::now() - Duration::from_secs(1);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if last_write.elapsed() >= Duration::from_millis(500) {
                    last_write = Instant::now();
                    let name = format!("canary-{k}");
                    k += 1;
                    let r = http
                        .post(format!("{base}/api/v1/nodes"))
                        .bearer_auth(ADMIN)
                        .json(&json!({"name": name, "site": "lab"}))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == 201) {
                        canaries
                            .lock()
                            .expect("canaries")
                            .written
                            .push((name, Instant::now()));
                    }
                }
                let sent = Instant::now();
                let r = http
                    .get(format!("{base}/api/v1/metrics/fleet"))
                    .bearer_auth(ADMIN)
                    .send()
                    .await;
                if let Ok(r) = r {
                    if r.status() == 200 {
                        let text = r.text().await.unwrap_or_default();
                        canaries.lock().expect("canaries").reads.push((sent, text));
                    }
                }
                for (what, request) in [
                    (
                        "overview page",
                        http.get(format!("{base}/overview"))
                            .header("cookie", &cookie),
                    ),
                    (
                        "energy API",
                        http.get(format!("{base}/api/v1/sites/lab/energy"))
                            .bearer_auth(&staff_token),
                    ),
                ] {
                    let sent = Instant::now();
                    let status = request.send().await.map_or(0, |r| r.status().as_u16());
                    canaries.lock().expect("canaries").signed_in.push((
                        sent,
                        what,
                        status,
                        sent.elapsed(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    // 3 s in: the standby stops replaying for 4 s (it falls behind while the primary takes writes).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let replica_db = PgPool::connect(&standby.url).await.expect("standby");
    sqlx::query("select pg_wal_replay_pause()")
        .execute(&replica_db)
        .await
        .expect("pause");
    tokio::time::sleep(Duration::from_secs(4)).await;
    sqlx::query("select pg_wal_replay_resume()")
        .execute(&replica_db)
        .await
        .expect("resume");
    replica_db.close().await;
    // 9 s in: server 1 killed; HAProxy sends everything to server 2.
    tokio::time::sleep(Duration::from_secs(2)).await;
    server1.kill();
    lb.until_state(&http, &[("wattlas_servers/s1", "DOWN")])
        .await;
    // 14 s in: the primary stopped, the standby promoted; no server is restarted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outage = Instant::now();
    primary.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    standby.promote();
    lb.until_state(
        &http,
        &[
            ("postgres_primary/pg1", "DOWN"),
            ("postgres_primary/pg2", "UP"),
        ],
    )
    .await;
    let outage = outage..Instant::now();

    let mut logs = Vec::new();
    for c in collectors {
        logs.push(c.finish().await);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    loop_task.await.expect("canary loop");

    // Every sample emitted stored once, on the promoted standby.
    let db = PgPool::connect(&standby.url).await.expect("new primary");
    let emitted_total: i64 = dirs.iter().map(|d| emitted(d)).sum();
    until(
        "the last batches stored",
        Duration::from_secs(20),
        || async { stored_samples(&db).await >= emitted_total },
    )
    .await;
    let stored = stored_samples(&db).await;
    assert_eq!(
        stored,
        emitted_total,
        "collectors said:\n{}",
        logs.join("\n")
    );
    assert_eq!(distinct_samples(&db).await, stored, "nothing doubled");
    assert!(
        logs.iter().any(|l| l.contains("spooling")),
        "the outages went unseen:\n{}",
        logs.join("\n")
    );

    // Every job's GPU energy is what the simulator emitted, within 0.5 %.
    let mut jobs = 0;
    for d in &dirs {
        let ledger: Value =
            serde_json::from_slice(&std::fs::read(d.join("ledger.json")).expect("ledger"))
                .expect("json");
        let truth: BTreeMap<String, Value> =
            serde_json::from_value(ledger["jobs"].clone()).expect("jobs");
        for (id, t) in &truth {
            assert!(!t["end"].is_null(), "job {id} ended within the run");
            let view = job(&http, &base, id).await;
            let got = view["gpu_energy_kwh"].as_f64().expect("energy") * 3.6e6;
            let want = t["energy_j"].as_f64().expect("energy");
            assert!(
                (got - want).abs() / want < 0.005,
                "job {id}: server {got} J, simulator {want} J"
            );
            jobs += 1;
        }
    }
    assert_eq!(jobs, 16, "four nodes x two GPU pairs x two jobs");

    // No fleet read was older than the bound: every node acknowledged more than MAX_LAG_S before a
    // read was sent is in its answer.
    let c = std::mem::take(&mut *canaries.lock().expect("canaries"));
    let bound = Duration::from_secs_f64(MAX_LAG_S);
    let mut checked = 0;
    for (sent, text) in &c.reads {
        for (name, acked) in &c.written {
            if *acked + bound <= *sent {
                assert!(
                    text.contains(&format!("node=\"{name}\"")),
                    "a read sent {:?} after {name} was acknowledged lacks it",
                    sent.duration_since(*acked)
                );
                checked += 1;
            }
        }
    }
    eprintln!(
        "{} fleet reads, {} nodes registered, {checked} read-after-bound checks; {stored} samples, {jobs} jobs",
        c.reads.len(),
        c.written.len()
    );
    assert!(
        c.reads.len() > 50 && checked > 1000,
        "{} reads, {checked} checks",
        c.reads.len()
    );
    // The signed-in page and the token's read API answered throughout, the outage of the primary
    // included (from what server 2 last confirmed of the session and the token).
    let during: Vec<Duration> = c
        .signed_in
        .iter()
        .filter(|(sent, ..)| outage.contains(sent))
        .map(|(.., took)| *took)
        .collect();
    let refused: Vec<String> = c
        .signed_in
        .iter()
        .filter(|(.., status, _)| *status != 200)
        .map(|(sent, what, status, _)| {
            let at = if outage.contains(sent) {
                format!("{:?} into the outage", sent.duration_since(outage.start))
            } else {
                "outside it".to_owned()
            };
            format!("{what}: {status} ({at})")
        })
        .collect();
    eprintln!(
        "signed-in reads: {} ({} while the primary was away, {:?}; the slowest of those {:?}), \
         refused: {refused:?}",
        c.signed_in.len(),
        during.len(),
        outage.end - outage.start,
        during.iter().max()
    );
    assert!(
        during.len() >= 2,
        "{} signed-in reads in the outage",
        during.len()
    );
    assert!(refused.is_empty(), "{refused:?}");

    // The standby did serve reads, and the primary took them while it lagged.
    let m = exposition(&metrics_text(&http, &format!("http://{s2}")).await);
    eprintln!(
        "server 2 reads: replica {}, primary {}",
        m["wattlas_reads_total{pool=\"replica\"}"], m["wattlas_reads_total{pool=\"primary\"}"]
    );
    assert!(m["wattlas_reads_total{pool=\"replica\"}"] > 10.0, "{m:?}");
    assert!(m["wattlas_reads_total{pool=\"primary\"}"] > 0.0, "{m:?}");
    assert!(m["wattlas_identities_recalled_total"] > 0.0, "{m:?}");
    drop(server2);
}
