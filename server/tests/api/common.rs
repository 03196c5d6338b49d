//! What the HTTP tests share: a real server on 127.0.0.1:0 over the test's own database, and sample data.

use std::io::Write;

use chrono::{DateTime, Duration, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_protocol::{GpuBatch, GpuIdentity, GpuSample, JobView};
use wattlas_server::config::Config;
use wattlas_server::state::AppState;

pub const ADMIN: &str = "test-admin-token";

/// With `TEST_LOG=1`, the server's log goes to the test's output (shown for failing tests): a 500's
/// cause, with its route.
pub fn test_log() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
                    .unwrap_or_else(|_| "wattlas_server=debug,tower_http=info".into()),
            )
            .try_init();
    }
}

pub struct App {
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub _stop: tokio::sync::oneshot::Sender<()>,
}

impl App {
    /// An App whose state the caller replaces before `serve` (no database is touched here).
    pub async fn spawn_lazy() -> App {
        let config = Config::with_admin_token(ADMIN);
        let db =
            wattlas_server::startup::connect_lazy(&config, "postgres://unused@127.0.0.1:1/none")
                .expect("lazy pool");
        let (stop, _) = tokio::sync::oneshot::channel::<()>();
        App {
            base: String::new(),
            http: reqwest::Client::new(),
            state: AppState::new(db, config),
            _stop: stop,
        }
    }

    /// Serves this App's state on a fresh port; returns the base URL.
    pub async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = self.state.clone();
        tokio::spawn(async move {
            let _ = wattlas_server::startup::run(listener, state, std::future::pending()).await;
        });
        base
    }

    pub async fn spawn(db: PgPool) -> App {
        Self::spawn_with(db, |_| {}).await
    }

    /// `spawn` with settings changed by `configure`.
    pub async fn spawn_with(db: PgPool, configure: impl FnOnce(&mut Config)) -> App {
        test_log();
        let mut config = Config::with_admin_token(ADMIN);
        // Tests drive the rollup task by hand.
        config.rollup_interval_s = 3600;
        config.max_body_bytes = 1024 * 1024;
        configure(&mut config);
        let state = AppState::new(db, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve_state = state.clone();
        tokio::spawn(async move {
            let _ = wattlas_server::startup::run(listener, serve_state, async move {
                let _ = stopped.await;
            })
            .await;
        });
        App {
            base,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            state,
            _stop: stop,
        }
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send_json(reqwest::Method::POST, token, path, body)
            .await
    }

    pub async fn put(&self, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send_json(reqwest::Method::PUT, token, path, body)
            .await
    }

    async fn send_json(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GETs a page, chart or export with a bearer token: its status and bytes.
    pub async fn get_bytes(&self, token: &str, path: &str) -> (StatusCode, Vec<u8>) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        (r.status(), r.bytes().await.expect("body").to_vec())
    }

    /// `get_bytes` as text.
    pub async fn get_text(&self, token: &str, path: &str) -> (StatusCode, String) {
        let (status, body) = self.get_bytes(token, path).await;
        (status, String::from_utf8(body).expect("utf-8"))
    }

    /// Posts meter readings (`{"readings": readings}`) with `token`.
    pub async fn facility(&self, token: &str, readings: &Value) -> (StatusCode, Value) {
        self.post(
            token,
            "/api/v1/ingest/facility",
            &json!({ "readings": readings }),
        )
        .await
    }

    /// A meter `m1` (category PUE2) in site `s1`; returns its token.
    pub async fn meter(&self) -> String {
        let (status, body) = self
            .post(
                ADMIN,
                "/api/v1/meters",
                &json!({"name": "m1", "site": "s1", "category": "PUE2"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A site `s1` and node `n1` with GPUs 0 and 1; returns the node's token.
    pub async fn node(&self) -> String {
        let (status, body) = self
            .post(
                ADMIN,
                "/api/v1/sites",
                &json!({"name": "s1", "timezone": "America/New_York"}),
            )
            .await;
        assert_eq!(
            body["fallback_pue"], 1.58,
            "the papers' PUE unless configured"
        );
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = self
            .post(ADMIN, "/api/v1/nodes", &json!({"name": "n1", "site": "s1"}))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        body["token"].as_str().expect("token").to_owned()
    }

    /// Posts JSON to the GPU ingest route gzip'd, as collectors do.
    pub async fn post_gzip(&self, token: &str, json: &[u8]) -> reqwest::Response {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json).expect("gzip");
        self.http
            .post(format!("{}/api/v1/ingest/gpu", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gz.finish().expect("gzip"))
            .send()
            .await
            .expect("request")
    }

    pub async fn ingest(&self, token: &str, batch: &GpuBatch) -> (StatusCode, Value) {
        self.post(
            token,
            "/api/v1/ingest/gpu",
            &serde_json::to_value(batch).expect("json"),
        )
        .await
    }

    pub async fn stored(&self) -> i64 {
        sqlx::query_scalar(
            "select (select coalesce(sum(n_samples), 0) from gpu_raw)
                + (select coalesce(sum(n_samples), 0) from gpu_settled)",
        )
        .fetch_one(&self.state.db)
        .await
        .expect("count")
    }

    pub async fn job(&self, id: &str) -> JobView {
        let (status, body) = self.get(ADMIN, &format!("/api/v1/jobs/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).expect("job view")
    }
}

pub fn gpus() -> Vec<GpuIdentity> {
    (0..2)
        .map(|i| GpuIdentity {
            index: i,
            uuid: format!("GPU-{i}"),
            model: "Tesla V100-SXM2-32GB".into(),
            default_power_limit_w: Some(250.0),
            keep_known: false,
        })
        .collect()
}

/// GPU 0: 200 W, no energy counter. GPU 1: counter rising 15 J per 100 ms (150 W) while its power
/// readings say 100 W: the counter must win. Samples every 100 ms over `[t0, t0 + seconds)`.
pub fn samples(t0: DateTime<Utc>, seconds: i64) -> Vec<GpuSample> {
    let mut out = Vec::new();
    for i in 0..seconds * 10 {
        let time = t0 + Duration::milliseconds(100 * i);
        let base = GpuSample {
            time,
            gpu: 0,
            power_w: 200.0,
            energy_mj: None,
            power_limit_w: Some(250.0),
            util_pct: Some(98.0),
            mem_used_mib: Some(1000.0),
            temp_c: Some(60.0),
            sm_clock_mhz: Some(1380.0),
            power_instant_w: None,
            power_source: None,
        };
        out.push(base.clone());
        out.push(GpuSample {
            gpu: 1,
            power_w: 100.0,
            energy_mj: Some(9_000_000 + 15_000 * i as u64),
            ..base
        });
    }
    out
}

/// `seconds` of 100 ms samples (both ends included) of GPUs `0..gpus` from `start`, each drawing
/// `power` W under a `cap` W limit: a job of the power-cap experiment.
pub fn capped(
    start: DateTime<Utc>,
    seconds: i64,
    gpus: u32,
    power: f64,
    cap: f64,
) -> Vec<GpuSample> {
    (0..=seconds * 10)
        .flat_map(|k| {
            (0..gpus).map(move |gpu| GpuSample {
                time: start + Duration::milliseconds(100 * k),
                gpu,
                power_w: power,
                energy_mj: None,
                power_limit_w: Some(cap),
                util_pct: None,
                mem_used_mib: None,
                temp_c: None,
                sm_clock_mhz: None,
                power_instant_w: None,
                power_source: None,
            })
        })
        .collect()
}

pub fn batch(samples: Vec<GpuSample>) -> GpuBatch {
    GpuBatch {
        node: None,
        gpus: gpus(),
        samples,
        dropped_samples_total: None,
        clock_steps: None,
        node_energy: vec![],
        node_cpus: None,
        dropped_ranges: Vec::new(),
    }
}

pub fn minute_aligned_past(minutes: i64) -> DateTime<Utc> {
    (Utc::now() - Duration::minutes(minutes))
        .duration_trunc(Duration::minutes(1))
        .expect("trunc")
}

/// The password of users made by `add_user`.
pub const PASSWORD: &str = "a long enough password";

/// A user made with `wattlas-server user add`, with password `PASSWORD`.
pub async fn add_user(app: &App, name: &str, role: wattlas_server::db::users::Role) {
    let out = wattlas_server::cli::user(
        &app.state.db,
        wattlas_server::config::UserAction::Add {
            name: name.into(),
            role,
            no_password: false,
        },
        format!("{PASSWORD}\n").as_bytes(),
    )
    .await
    .expect("user add");
    assert_eq!(out, format!("created {} '{name}'", role.as_str()));
}

/// An API token of a user, made with `wattlas-server user token`.
pub async fn api_token(app: &App, name: &str) -> String {
    wattlas_server::cli::user(
        &app.state.db,
        wattlas_server::config::UserAction::Token {
            name: name.into(),
            label: "test".into(),
        },
        &b""[..],
    )
    .await
    .expect("token")
}

/// Site s1, node n1, a minute of its two GPUs' samples from `minutes_ago` (minute-aligned), and a
/// finished job `id` of `user` over that minute, tagged workload=x. Returns the job's start.
pub async fn one_minute_job(
    app: &App,
    id: &str,
    user: &str,
    minutes_ago: i64,
) -> chrono::DateTime<Utc> {
    let token = app.node().await;
    let t0 = minute_aligned_past(minutes_ago);
    app.new_job(id)
        .user(user)
        .gpus(&[0, 1])
        .tag("workload", "x")
        .samples(&token, samples(t0, 60))
        .start(t0)
        .end(t0 + Duration::seconds(60))
        .create()
        .await;
    t0
}

/// A job to set up, as a test states it: `app.new_job("cap-1").user("eve").tag("workload", "x")
/// .samples(&token, capped(..)).create().await`. Defaults: site s1, node n1, GPU 0, finished, its
/// span that of its samples (or the last minute without samples).
pub struct JobFixture<'a> {
    app: &'a App,
    id: String,
    user: String,
    site: String,
    node: String,
    gpus: Vec<u32>,
    cpus: Option<u32>,
    tags: serde_json::Map<String, Value>,
    start: Option<DateTime<Utc>>,
    end: Option<Option<DateTime<Utc>>>,
    samples: Option<(String, Vec<GpuSample>)>,
}

impl App {
    /// A job fixture (see `JobFixture`).
    pub fn new_job(&self, id: &str) -> JobFixture<'_> {
        JobFixture {
            app: self,
            id: id.to_owned(),
            user: "alice".to_owned(),
            site: "s1".to_owned(),
            node: "n1".to_owned(),
            gpus: vec![0],
            cpus: None,
            tags: serde_json::Map::new(),
            start: None,
            end: None,
            samples: None,
        }
    }
}

impl JobFixture<'_> {
    /// Owner.
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_owned();
        self
    }
    /// Its node (default n1).
    pub fn node(mut self, node: &str) -> Self {
        self.node = node.to_owned();
        self
    }
    /// Its site (default s1).
    pub fn site(mut self, site: &str) -> Self {
        self.site = site.to_owned();
        self
    }
    /// Allocated GPUs of the node.
    pub fn gpus(mut self, gpus: &[u32]) -> Self {
        self.gpus = gpus.to_vec();
        self
    }
    /// CPUs it holds on its node.
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = Some(cpus);
        self
    }
    /// A tag.
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_owned(), json!(value));
        self
    }
    /// Start (default: the first sample's time).
    pub fn start(mut self, start: DateTime<Utc>) -> Self {
        self.start = Some(start);
        self
    }
    /// End (default: the last sample's time).
    pub fn end(mut self, end: DateTime<Utc>) -> Self {
        self.end = Some(Some(end));
        self
    }
    /// Still running.
    pub fn running(mut self) -> Self {
        self.end = Some(None);
        self
    }
    /// Samples the node (its token) sends before the job is registered.
    pub fn samples(mut self, token: &str, samples: Vec<GpuSample>) -> Self {
        self.samples = Some((token.to_owned(), samples));
        self
    }

    /// Sends the samples, registers the job with the admin token (asserting 201), and returns its view.
    pub async fn create(self) -> JobView {
        let (mut first, mut last) = (None, None);
        if let Some((token, samples)) = &self.samples {
            first = samples.iter().map(|s| s.time).min();
            last = samples.iter().map(|s| s.time).max();
            let (status, body) = self.app.ingest(token, &batch(samples.clone())).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let start = self
            .start
            .or(first)
            .unwrap_or_else(|| minute_aligned_past(1));
        let end = self
            .end
            .unwrap_or_else(|| Some(last.unwrap_or(start + Duration::minutes(1))));
        let (status, body) = self
            .app
            .post(
                ADMIN,
                "/api/v1/jobs",
                &json!({"id": self.id, "user": self.user, "site": self.site, "start": start,
                        "end": end, "tags": self.tags,
                        "allocations": [{"node": self.node, "gpus": self.gpus, "cpus": self.cpus}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        serde_json::from_value(body).expect("job view")
    }
}

/// Four GPUs of `node` drawing `power_w` every 100 ms over `[t0, t0 + 60 s]`.
pub async fn node_with_four_gpus(
    app: &App,
    token: &str,
    node: &str,
    t0: chrono::DateTime<Utc>,
    power_w: f64,
) {
    let gpus: Vec<GpuIdentity> = (0..4)
        .map(|i| GpuIdentity {
            index: i,
            uuid: format!("GPU-{node}-{i}"),
            model: "NVIDIA A100-SXM4-40GB".into(),
            default_power_limit_w: Some(400.0),
            keep_known: false,
        })
        .collect();
    let batch = GpuBatch {
        node: None,
        gpus,
        samples: capped(t0, 60, 4, power_w, 400.0),
        dropped_samples_total: None,
        clock_steps: None,
        node_energy: vec![],
        node_cpus: None,
        dropped_ranges: Vec::new(),
    };
    let (status, body) = app.ingest(token, &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Holds a node's row lock (as the writers and the settle task take it) until the transaction ends,
/// after the retention task's first run, which a server starts with: it drops chunks of tables
/// referring to `nodes`, which waits for a lock on `nodes` and would wait behind this one.
pub async fn hold_node_row(
    db: &PgPool,
    node_id: i32,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let started = std::time::Instant::now();
    while sqlx::query_scalar::<_, i64>(
        "select count(*) from maintenance_runs where task = 'retention'",
    )
    .fetch_one(db)
    .await
    .expect("runs")
        == 0
    {
        assert!(started.elapsed().as_secs() < 30, "retention ran at start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut holder = db.begin().await.expect("tx");
    sqlx::query("select 1 from nodes where id = $1 for no key update")
        .bind(node_id)
        .execute(&mut *holder)
        .await
        .expect("lock");
    holder
}
