//! A simulated collector run by tests as a child process, and what tests ask of it.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::bin;
use crate::{address_in_log, exposition, log_len};

/// A simulated collector of 4 idle GPUs at 100 ms in 1 s batches, with its /metrics on a port of the
/// system's choosing, read back from its log (`collector.log` in the test's directory, appended to).
pub struct Collector {
    child: Option<Child>,
    metrics: String,
    log: std::path::PathBuf,
    from: u64,
}

impl Collector {
    pub fn start(
        server: &str,
        token: &str,
        dir: &Path,
        run_seconds: u32,
        extra: &[&str],
    ) -> Collector {
        Collector::start_as("gpu01", 7, server, token, dir, run_seconds, extra)
    }

    /// As node `node`, its simulator seeded with `seed`.
    pub fn start_as(
        node: &str,
        seed: u64,
        server: &str,
        token: &str,
        dir: &Path,
        run_seconds: u32,
        extra: &[&str],
    ) -> Collector {
        let log = dir.join("collector.log");
        let from = log_len(&log);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("collector log");
        let child = Command::new(bin("wattlas-collector"))
            .args(["run", "--source", "simulated", "--node", node])
            .args(["--server", server])
            .env("WATTLAS_TOKEN", token)
            .args(["--sim-gpus", "4", "--sim-seed", &seed.to_string()])
            .args(["--run-seconds", &run_seconds.to_string()])
            .arg("--sim-ledger")
            .arg(dir.join("ledger.json"))
            .arg("--spool-dir")
            .arg(dir.join("spool"))
            .args(["--metrics-bind", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("collector starts");
        let addr = address_in_log(&log, from, "serving /metrics", "addr");
        Collector {
            child: Some(child),
            metrics: format!("http://{addr}/metrics"),
            log,
            from,
        }
    }

    /// Its metrics; retried while it starts listening.
    pub async fn scrape(&self, http: &reqwest::Client) -> HashMap<String, f64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match http.get(&self.metrics).send().await {
                Ok(r) => return exposition(&r.text().await.expect("text")),
                Err(e) if Instant::now() > deadline => panic!("collector /metrics: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits for the end of its run; returns its log.
    pub async fn finish(mut self) -> String {
        let child = self.child.take().expect("running");
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("join")
            .expect("collector output");
        let log = std::fs::read(&self.log).expect("collector log");
        let log =
            String::from_utf8_lossy(log.get(self.from as usize..).unwrap_or_default()).into_owned();
        assert!(out.status.success(), "collector failed:\n{log}");
        log
    }

    /// SIGKILL: the batch it was filling in memory is lost; the spool on disk is not.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Samples the simulator of the collector run in `dir` emitted (its ledger).
pub fn emitted(dir: &Path) -> i64 {
    let ledger: Value =
        serde_json::from_slice(&std::fs::read(dir.join("ledger.json")).expect("ledger"))
            .expect("ledger json");
    ledger["samples_emitted"].as_i64().expect("samples_emitted")
}

/// Polls `check` every 200 ms until it holds; panics naming `what` after `within`.
pub async fn until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: not within {within:?}");
}
