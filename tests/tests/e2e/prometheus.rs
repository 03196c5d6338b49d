//! A real Prometheus (Debian's `prometheus`, started here on loopback) scrapes stand-in dcgm-exporters
//! serving the real scrapes of ../shared (each a target at its own power, its energy counter advancing)
//! and remote-writes to Wattlas with the site's write token: each scrape's host is registered on first
//! sight, and a job on its GPU gets the counter's advance. The same Prometheus scrapes the fleet
//! exposition cleanly, and `promtool` checks it and Wattlas's own /metrics.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wattlas_server::service::remote_write::decode;
use wattlas_tests::harness::{job_over, metrics_text, Running, ADMIN};
use wattlas_tests::post;

/// The real scrapes served, each as its own target at its own power: those with an energy counter and
/// labels Prometheus parses (one published scrape elides its labels as `...`: Prometheus refuses it).
fn scrapes() -> Vec<(String, String, f64)> {
    let dir = wattlas_tests::manifest_dir().join("../../shared/data/real/dcgm-exporter");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("the real scrapes in ../shared")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".prom"))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let text = wattlas_tests::exporter::real_scrape(&name);
            let usable = text.contains("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{")
                && !text.contains(",...")
                && text.contains("Hostname=\"");
            usable.then_some((name, text))
        })
        .enumerate()
        .map(|(i, (name, text))| (name, text, 60.0 + 70.0 * i as f64))
        .collect()
}

/// The `Hostname` label of a scrape.
fn hostname(text: &str) -> String {
    let at = text.find("Hostname=\"").expect("Hostname") + "Hostname=\"".len();
    text[at..].split('"').next().expect("value").to_owned()
}

/// Prometheus, killed on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A remote-write receiver of Prometheus' own `up` series (for the fleet scrape): its URL, and the
/// values received.
async fn up_receiver() -> (String, Arc<Mutex<Vec<f64>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/receive", listener.local_addr().expect("addr"));
    let seen: Arc<Mutex<Vec<f64>>> = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                // HTTP/1.1 with a body of Content-Length bytes, possibly several on one connection.
                let mut buf: Vec<u8> = Vec::new();
                loop {
                    let mut chunk = [0u8; 8192];
                    let Ok(n) = socket.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() < end + 4 + len {
                            break;
                        }
                        let body = buf[end + 4..end + 4 + len].to_vec();
                        buf.drain(..end + 4 + len);
                        if let Ok(request) = decode(&body) {
                            for ts in &request.timeseries {
                                seen.lock()
                                    .expect("lock")
                                    .extend(ts.samples.iter().map(|s| s.value));
                            }
                        }
                        let _ = socket
                            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    (url, out)
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn prometheus_remote_writes_dcgm_exporter_series_and_a_job_gets_the_counters_advance(
    db: PgPool,
) {
    let running = Running::with_site(&db, "lab").await;
    let (base, http) = (running.base.clone(), running.http.clone());
    let dir = running.dir.path();
    let scrapes = scrapes();
    assert!(scrapes.len() >= 3, "{} usable scrapes", scrapes.len());
    let mut targets = Vec::new();
    let mut hosts = Vec::new();
    for (_, text, watts) in &scrapes {
        let url = wattlas_tests::exporter::serve(text.clone(), *watts).await;
        targets.push(format!(
            "\"{}\"",
            url.trim_start_matches("http://")
                .trim_end_matches("/metrics")
        ));
        hosts.push((hostname(text), *watts));
    }
    let target = targets.join(", ");
    let (up_url, up) = up_receiver().await;
    // The site's write token: what its Prometheus writes with (nodes registered in its site).
    let write_token = post(
        &http,
        &base,
        ADMIN,
        "/api/v1/sites/lab/write-token",
        json!({}),
    )
    .await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let server_target = base.trim_start_matches("http://").to_owned();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            r#"global:
  scrape_interval: 1s
  evaluation_interval: 1m
scrape_configs:
  - job_name: dcgm
    static_configs:
      - targets: [{target}]
  - job_name: wattlas
    metrics_path: /api/v1/metrics/fleet
    authorization:
      credentials: "{ADMIN}"
    static_configs:
      - targets: ["{server_target}"]
remote_write:
  - url: "{base}/api/v1/write"
    authorization:
      credentials: "{write_token}"
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
  - url: "{up_url}"
    write_relabel_configs:
      - source_labels: [__name__, job]
        regex: "up;wattlas"
        action: keep
    queue_config:
      batch_send_deadline: 1s
"#
        ),
    )
    .expect("config");
    let log = dir.join("prometheus.log");
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("prometheus is not installed: apt-get install prometheus"),
    );

    // Each scrape names its host: registered in site lab on the first write. Per host, once it has 12 s
    // of samples, a job over its middle gets the counter's advance.
    for (host, watts) in &hosts {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (first, last) = loop {
            let span: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> =
                sqlx::query_as(
                    r#"select min(r.t_start), max(r.t_end) from gpu_raw r
                    join nodes n on n.id = r.node_id where n.name = $1"#,
                )
                .bind(host)
                .fetch_optional(&db)
                .await
                .ok()
                .flatten()
                .and_then(|(a, b): (Option<_>, Option<_>)| a.zip(b));
            if let Some((a, b)) = span {
                if b - a >= chrono::Duration::seconds(12) {
                    break (a, b);
                }
            }
            assert!(
                Instant::now() < deadline,
                "{host}: no 12 s of remote-written samples within 60 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let (from, to) = (
            first + chrono::Duration::seconds(2),
            last - chrono::Duration::seconds(2),
        );
        let id = format!("prom-{host}");
        let view = job_over(&http, &base, &id, host, from, to).await;
        let got = view["gpu_energy_kwh"].as_f64().expect("energy") * 3.6e6;
        let expected = watts * (to - from).num_milliseconds() as f64 / 1000.0;
        assert!(
            (got / expected - 1.0).abs() < 0.005,
            "{host}: {got} J against the counter's {expected} J"
        );
        assert_eq!(view["energy_method"], "counter", "{host}");
    }

    // Prometheus scraped the fleet exposition cleanly: its `up` for the wattlas job is 1.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if up.lock().expect("lock").contains(&1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no up=1 of the fleet scrape: {:?}\n{}",
            up.lock().expect("lock"),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!up.lock().expect("lock").contains(&0.0), "a failed scrape");
    let fleet = http
        .get(format!("{base}/api/v1/metrics/fleet"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("fleet")
        .text()
        .await
        .expect("text");
    assert!(
        fleet.contains(r#"wattlas_fleet_node_gpus{site="lab",node="gpu1-wl8sg",state="idle"}"#),
        "{fleet}"
    );
    check_metrics(&fleet);

    // Wattlas's own exposition passes promtool.
    let text = metrics_text(&http, &base).await;
    assert!(
        text.contains("wattlas_remote_write_ignored_samples_total"),
        "{text}"
    );
    check_metrics(&text);
}

/// `promtool check metrics` passes on `text`.
fn check_metrics(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(promtool.stdin.as_mut().expect("stdin"), text.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
