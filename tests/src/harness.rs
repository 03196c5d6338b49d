//! The end-to-end harness: the real `wattlas-server` and `wattlas-collector` binaries as child
//! processes over a test's own database, and what the tests count in that database.
//!
//! Needs the binaries built (`cargo test --workspace --no-run`, which `scripts/test` does).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::{address_in_log, log_len, post};

/// The admin token of every test server.
pub const ADMIN: &str = "e2e-admin-token";

pub fn bin(name: &str) -> PathBuf {
    // tests run from target/<profile>/deps; the binaries sit in target/<profile>.
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace --no-run` first",
        path.display()
    );
    path
}

/// The URL of the test's own database.
pub fn database_url(db: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let name = db
        .connect_options()
        .get_database()
        .expect("database name")
        .to_owned();
    let (prefix, _) = base.rsplit_once('/').expect("url with a database");
    format!("{prefix}/{name}")
}

pub struct Server {
    child: Child,
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
}

impl Server {
    /// Starts the server on `bind` (`127.0.0.1:0` for a port of the system's choosing; a restart gives
    /// the address it had) and reads back the address it bound from its log.
    pub fn start(url: &str, bind: &str, log_path: &Path) -> Server {
        Self::start_with(url, bind, log_path, &[])
    }

    /// `start` with more environment (`WATTLAS_READ_DATABASE_URL`, say).
    pub fn start_with(url: &str, bind: &str, log_path: &Path, env: &[(&str, &str)]) -> Server {
        let from = log_len(log_path);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("log");
        let child = Command::new(bin("wattlas-server"))
            .env("DATABASE_URL", url)
            .env("WATTLAS_BIND", bind)
            .env("WATTLAS_ADMIN_TOKEN", ADMIN)
            .env("WATTLAS_ROLLUP_INTERVAL_S", "2")
            .env("WATTLAS_ROLLUP_SETTLE_S", "3")
            // Everything, so that the no-secrets test reads every line the server could write.
            .env("RUST_LOG", "debug,tower_http=trace")
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("server starts");
        let mut server = Server {
            child,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        server.addr = address_in_log(log_path, from, "wattlas-server listening", "address");
        server
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no graceful shutdown, requests in flight are cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server at {base} not ready within 30 s");
}

/// Registers (admin) a finished job `id` of user ann at site lab on GPU 0 of `node` over `[from, to]`;
/// its view.
pub async fn job_over(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    node: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Value {
    post(
        http,
        base,
        ADMIN,
        "/api/v1/jobs",
        json!({"id": id, "user": "ann", "site": "lab", "start": from, "end": to,
               "allocations": [{"node": node, "gpus": [0]}]}),
    )
    .await;
    job(http, base, id).await
}

pub async fn job(http: &reqwest::Client, base: &str, id: &str) -> Value {
    let r = http
        .get(format!("{base}/api/v1/jobs/{id}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("request");
    assert!(r.status().is_success(), "job {id}: {}", r.status());
    r.json().await.expect("json")
}

pub async fn stored_samples(db: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select (select coalesce(sum(n_samples), 0) from gpu_raw)
                + (select coalesce(sum(n_samples), 0) from gpu_settled)",
    )
    .fetch_one(db)
    .await
    .expect("count")
}

/// Distinct (node, GPU, time) stored: equal to the stored count only if nothing is doubled.
pub async fn distinct_samples(db: &PgPool) -> i64 {
    sample_keys(db).await.len() as i64
}

/// Every (node id, GPU index, time in ms) stored, raw or settled.
pub async fn sample_keys(db: &PgPool) -> std::collections::HashSet<(i32, u32, i64)> {
    let rows: Vec<(i32, chrono::DateTime<chrono::Utc>, Vec<u8>)> = sqlx::query_as(
        "select node_id, t_start, data from gpu_raw
            union all select node_id, t_start, data from gpu_settled",
    )
    .fetch_all(db)
    .await
    .expect("rows");
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (node, t0, data) in rows {
        out.clear();
        wattlas_server::codec::decode(t0.timestamp_millis(), &data, &mut out).expect("decodes");
        seen.extend(out.iter().map(|s| (node, s.gpu, s.t_ms)));
    }
    seen
}

/// A real server on a free port over the test's database, with one site in New York.
pub struct Running {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub port: u16,
    pub base: String,
    pub http: reqwest::Client,
    pub server: Server,
}

impl Running {
    /// Over the test's own database.
    pub async fn with_site(db: &PgPool, site: &str) -> Running {
        Running::start(database_url(db), site).await
    }

    /// Over the database at `url`.
    pub async fn start(url: String, site: &str) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(&url, "127.0.0.1:0", &dir.path().join("server.log"));
        let port = server.addr.port();
        let base = format!("http://{}", server.addr);
        let http = reqwest::Client::new();
        wait_ready(&http, &base).await;
        post(
            &http,
            &base,
            ADMIN,
            "/api/v1/sites",
            json!({"name": site, "timezone": "America/New_York"}),
        )
        .await;
        Running {
            dir,
            url,
            port,
            base,
            http,
            server,
        }
    }
}

/// A PostgreSQL cluster of the test's own, made by `scripts/db up DIR`, that the test may stop and
/// start again (the shared cluster of the other tests is never touched). Stopped and removed on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    /// Its `DATABASE_URL`.
    pub url: String,
}

fn db_script(command: &str, dir: &Path) -> String {
    let script = crate::manifest_dir().join("../scripts/db");
    let out = Command::new("bash")
        .arg(&script)
        .arg(command)
        .arg(dir)
        .output()
        .expect("scripts/db runs");
    assert!(
        out.status.success(),
        "scripts/db {command} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Cluster {
    /// Initialises and starts a cluster in a new temporary directory.
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = db_script("up", dir.path())
            .lines()
            .last()
            .expect("url")
            .to_owned();
        Cluster { dir, url }
    }

    /// `pg_ctl stop -m fast`: sessions are cut, as in a crash of the database host or a restart.
    pub fn stop(&self) {
        db_script("down", self.dir.path());
    }

    /// Starts it again, on the same port and data.
    pub fn restart(&self) {
        db_script("up", self.dir.path());
    }

    /// A hot standby of this cluster (`scripts/db replica DIR --of THIS`), streaming from it.
    pub fn replica(&self) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = crate::manifest_dir().join("../scripts/db");
        let out = Command::new("bash")
            .arg(&script)
            .arg("replica")
            .arg(dir.path())
            .arg("--of")
            .arg(self.dir.path())
            .output()
            .expect("scripts/db runs");
        assert!(
            out.status.success(),
            "scripts/db replica failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("url")
            .to_owned();
        Cluster { dir, url }
    }

    /// `scripts/db promote`: a standby becomes a primary.
    pub fn promote(&self) {
        db_script("promote", self.dir.path());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(crate::manifest_dir().join("../scripts/db"))
            .arg("down")
            .arg(self.dir.path())
            .output();
        // Where the postgres user could not reach the temporary directory, the data lives outside it.
        if let Ok(data) = std::fs::read_to_string(self.dir.path().join("datadir")) {
            let _ = std::fs::remove_dir_all(data.trim());
        }
    }
}

/// Registers node `name` at `site` with the admin token; returns the node's token.
pub async fn add_node(http: &reqwest::Client, base: &str, site: &str, name: &str) -> String {
    let node = post(
        http,
        base,
        ADMIN,
        "/api/v1/nodes",
        json!({"name": name, "site": site}),
    )
    .await;
    node["token"].as_str().expect("token").to_owned()
}

/// `wattlas-server ARGS` over the database at `url` with `input` on standard input; its standard output
/// (panics unless it succeeds).
pub fn server_cli(url: &str, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(bin("wattlas-server"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("wattlas-server runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "wattlas-server {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Signs in through the form as a browser does (the form's double-submit cookie and CSRF token, then
/// the post): the answer's status and the session cookie it set (`wattlas_session=...`), if any.
pub async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    password: &str,
) -> (u16, Option<String>) {
    let form = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("form");
    let cookie_of = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|h| h.to_str().ok())
            .find_map(|h| h.strip_prefix(&format!("{name}=")).map(str::to_owned))
            .and_then(|h| h.split(';').next().map(str::to_owned))
    };
    let login = cookie_of(&form, "wattlas_login").expect("login cookie");
    let page = form.text().await.expect("page");
    let marker = "name=\"csrf\" value=\"";
    let at = page.find(marker).expect("csrf") + marker.len();
    let csrf = page[at..].split('"').next().expect("csrf").to_owned();
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{base}/login"))
        .header("cookie", format!("wattlas_login={login}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", name),
            ("password", password),
        ])
        .send()
        .await
        .expect("sign in");
    let session = cookie_of(&r, "wattlas_session")
        .filter(|v| !v.is_empty())
        .map(|v| format!("wattlas_session={v}"));
    (r.status().as_u16(), session)
}

/// `scripts/SCRIPT ARG` with `DATABASE_URL=url` (`scripts/backup`, `scripts/restore`); panics, with
/// its standard error, unless it succeeds.
pub fn run_script(script: &str, arg: &Path, url: &str) {
    let out = Command::new("bash")
        .arg(crate::manifest_dir().join("../scripts").join(script))
        .arg(arg)
        .env("DATABASE_URL", url)
        .output()
        .expect("script runs");
    assert!(
        out.status.success(),
        "scripts/{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The server's `/metrics` text, scraped with the admin token.
pub async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}
