//! A stand-in for a node's dcgm-exporter: serves a real scrape (../shared/data/real/dcgm-exporter) with
//! its power at a fixed wattage and its energy counter advancing at that power from when it started.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A real scrape of `../shared/data/real/dcgm-exporter/`, by file name.
pub fn real_scrape(name: &str) -> String {
    let path = crate::manifest_dir()
        .join("../../shared/data/real/dcgm-exporter")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the real data lives in ../shared)", path.display()))
}

/// The counter's value in `template` (mJ).
pub fn start_mj(template: &str) -> f64 {
    template
        .lines()
        .find(|l| l.starts_with("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("an energy counter in the scrape")
}

/// The scrape now: power at `watts`, the counter advanced by `watts` since `t0`.
pub fn scrape(template: &str, watts: f64, t0: Instant) -> String {
    let mj = start_mj(template) + watts * t0.elapsed().as_secs_f64() * 1000.0;
    template
        .lines()
        .map(|l| {
            let head = l.rsplit_once(' ').map_or(l, |(h, _)| h);
            if l.starts_with("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{") {
                format!("{head} {}", mj as u64)
            } else if l.starts_with("DCGM_FI_DEV_POWER_USAGE{") {
                format!("{head} {watts:.6}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Serves `template` as it is at each request on a port of the system's choosing; its metrics URL.
pub async fn serve(template: String, watts: f64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
    let t0 = Instant::now();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let body = scrape(&template, watts, t0);
            tokio::spawn(async move {
                // The whole head of the request before answering.
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}
