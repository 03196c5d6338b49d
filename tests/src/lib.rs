//! Test-only crate: end-to-end and browser tests live in tests/, the benchmark in src/bin. What they
//! share is here.

use serde_json::Value;

pub mod collector;

/// This package's directory as the running test sees it: cargo sets `CARGO_MANIFEST_DIR` when it runs
/// a test, so a test binary built in another checkout sharing the build folder (CI's clone and a
/// session's share `~/.cache/wattlas/target`) reads this checkout's files, not the other one's; the
/// path compiled in is the fallback for a binary run by hand.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
pub mod exporter;
pub mod harness;

/// The address a child process bound on port 0, read back from the first line of its log, written
/// after byte `from`, that holds `marker`: the value of its `key=` field (`address=127.0.0.1:41234`).
/// Waits up to 30 s for the line. (Nothing binds a port, frees it and hopes the child gets it.)
pub fn address_in_log(
    log: &std::path::Path,
    from: u64,
    marker: &str,
    key: &str,
) -> std::net::SocketAddr {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        let text = strip_ansi(&String::from_utf8_lossy(
            text.get(from as usize..).unwrap_or_default(),
        ));
        let found = text.lines().filter(|l| l.contains(marker)).find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
                .and_then(|a| a.trim_matches('"').parse().ok())
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no '{marker}' line with {key}= in {} within 30 s:\n{text}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Text without its ANSI colour sequences (`ESC [ ... m`), as tracing writes them on a terminal.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The length of a file now (0 if it does not exist): where a restarted process's lines begin.
pub fn log_len(log: &std::path::Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// POSTs JSON with a bearer token; panics (naming the path, status and body) unless it succeeds.
pub async fn post(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
) -> Value {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    let text = r.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).expect("json")
}

/// Parses Prometheus' text format strictly: every sample's family has its HELP and TYPE lines first,
/// names and labels are well formed, values are numbers. Returns `name{labels}` -> value.
pub fn exposition(text: &str) -> std::collections::HashMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut helped = std::collections::HashSet::new();
    let mut out = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().expect("name").to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("name").to_owned();
            let kind = parts.next().expect("kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(helped.contains(&name), "TYPE before HELP: {line}");
            typed.insert(name);
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let name = series.split('{').next().expect("name");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split("\",") {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{line}"
                    );
                    assert!(!v.trim_end_matches('"').contains('"'), "{line}");
                }
            }
        }
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        assert!(v.is_finite(), "{line}");
        out.insert(series.to_owned(), v);
    }
    out
}
