//! Browser tests: headless Chromium driven over WebDriver (chromedriver) against the real server and
//! TimescaleDB. A researcher signs in, filters the jobs, opens a job and a power-cap comparison, and
//! signs out; every page must load all its resources with no console error. Screenshots of each step
//! are kept in `target/test-artifacts/browser/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/test and .ci/run install them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use sqlx::PgPool;
use wattlas_protocol::{GpuBatch, GpuIdentity, GpuSample};
use wattlas_server::config::{Config, UserAction};
use wattlas_server::db::users::Role;
use wattlas_server::state::AppState;
use wattlas_tests::post;

const ADMIN: &str = "browser-admin-token";
const PASSWORD: &str = "browser test password";

struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver on a port of the system's choosing (`--port=0`; it says which on its standard
/// output) and waits until it answers.
async fn chromedriver() -> (Driver, String) {
    let out = tempfile::NamedTempFile::new().expect("temp file");
    let child = Command::new("chromedriver")
        .arg("--port=0")
        .stdout(out.reopen().expect("stdout file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is not installed: apt-get install chromium chromium-driver");
    let driver = Driver { child };
    let deadline = Instant::now() + Duration::from_secs(20);
    let port = loop {
        let text = std::fs::read_to_string(out.path()).unwrap_or_default();
        let port = text
            .split("started successfully on port ")
            .nth(1)
            .and_then(|rest| rest.split('.').next())
            .and_then(|p| p.trim().parse::<u16>().ok());
        if let Some(port) = port {
            break port;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not say its port:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let url = format!("http://127.0.0.1:{port}");
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/status")).await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (driver, url)
}

async fn browser(webdriver: &str) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync"],
        },
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("a Chromium session")
}

/// chromedriver's console log (`POST /session/{id}/se/log`), which the W3C protocol lacks.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// Console errors since the last call, and resources that failed to load on the current page.
async fn problems(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    let log = client.issue_cmd(BrowserLog).await.expect("browser log");
    for entry in log.as_array().into_iter().flatten() {
        if entry["level"] == "SEVERE" {
            out.push(format!("console: {}", entry["message"]));
        }
    }
    let failed = client
        .execute(
            r#"return performance.getEntriesByType('resource')
                .filter(r => r.responseStatus && r.responseStatus >= 400)
                .map(r => r.name + ' ' + r.responseStatus)
                .concat([...document.images].filter(i => !i.complete || i.naturalWidth === 0)
                .map(i => 'image not shown: ' + i.src));"#,
            vec![],
        )
        .await
        .expect("script");
    for f in failed.as_array().into_iter().flatten() {
        out.push(f.as_str().unwrap_or_default().to_owned());
    }
    out
}

/// Every visible form control has a label (wrapping it, by `for`, or aria-label).
async fn unlabelled_controls(client: &Client) -> Vec<String> {
    let found = client
        .execute(
            r#"return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                .filter(e => !e.closest('label') && !e.getAttribute('aria-label')
                    && !(e.id && document.querySelector('label[for="' + e.id + '"]')))
                .map(e => e.outerHTML);"#,
            vec![],
        )
        .await
        .expect("script");
    found
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> -> target/test-artifacts/browser
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir");
    let dir = target.join("test-artifacts").join("browser");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(artifacts().join(format!("{name}.png")), png).expect("write screenshot");
}

/// A DevTools command through chromedriver (`POST /session/{id}/goog/cdp/execute`): the phone's
/// viewport is DevTools' device emulation (a headless window keeps a minimum width above a phone's).
#[derive(Debug)]
struct Cdp(serde_json::Value);

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or("")
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}

/// A phone's viewport (390 x 844 CSS pixels, as an iPhone 12-15), or the desktop window again.
async fn phone(client: &Client, on: bool) {
    let command = if on {
        json!({"cmd": "Emulation.setDeviceMetricsOverride",
               "params": {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}})
    } else {
        json!({"cmd": "Emulation.clearDeviceMetricsOverride", "params": {}})
    };
    client
        .issue_cmd(Cdp(command))
        .await
        .expect("device emulation");
}

/// axe-core's rules (from npm; scripts/test installs it and names it in `WATTLAS_AXE_JS`) run in the
/// current page: its critical and serious violations, each with the first elements it names.
async fn axe_violations(client: &Client) -> Vec<String> {
    let path = std::env::var("WATTLAS_AXE_JS").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/wattlas/axe-core-4.14.1/node_modules/axe-core/axe.min.js")
    });
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("axe-core at {path}: {e} (scripts/test installs it; or set WATTLAS_AXE_JS)")
    });
    client
        .execute(&format!("{source}\nreturn typeof axe;"), vec![])
        .await
        .expect("axe-core loads");
    let found = client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               axe.run(document, {resultTypes: ['violations']})
                 .then(r => done(r.violations
                   .filter(v => v.impact === 'critical' || v.impact === 'serious')
                   .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at '
                     + v.nodes.slice(0, 4).map(n => n.target.join(' ')
                       + (n.failureSummary ? ' (' + n.failureSummary.replace(/\s+/g, ' ') + ')' : ''))
                       .join('; '))))
                 .catch(e => done(['axe failed: ' + e]));"#,
            vec![],
        )
        .await
        .expect("axe.run");
    found
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// What sticks out of a phone's width: the page wider than the viewport, and the visible elements
/// (outside a box that scrolls on its own) whose right edge lies past it.
async fn off_screen(client: &Client) -> Vec<String> {
    let found = client
        .execute(
            r#"const w = document.documentElement.clientWidth;
               const out = [];
               if (document.documentElement.scrollWidth > w + 1)
                 out.push('page is ' + document.documentElement.scrollWidth + ' px wide in ' + w);
               const scrolls = e => { for (let p = e.parentElement; p; p = p.parentElement) {
                   const o = getComputedStyle(p).overflowX;
                   if (o === 'auto' || o === 'scroll') return true; } return false; };
               for (const e of document.querySelectorAll('body *')) {
                 const r = e.getBoundingClientRect();
                 if (r.width > 0 && r.height > 0 && r.right > w + 1 && !scrolls(e)
                     && getComputedStyle(e).visibility !== 'hidden')
                   out.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                     + (e.className && typeof e.className === 'string' ? '.' + e.className : '')
                     + ' ends at ' + Math.round(r.right));
               }
               // Text wider than its box (a long word) widens the page without its box doing so.
               const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
               for (let t = walker.nextNode(); t; t = walker.nextNode()) {
                 if (!t.textContent.trim() || scrolls(t)) continue;
                 const range = document.createRange();
                 range.selectNodeContents(t);
                 const r = range.getBoundingClientRect();
                 if (r.width > 0 && r.right > w + 1)
                   out.push('text "' + t.textContent.trim().slice(0, 40) + '" ends at ' + Math.round(r.right));
               }
               return out.slice(0, 12);"#,
            vec![],
        )
        .await
        .expect("script");
    found
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The smallest chart text on the page as drawn, in CSS pixels: inline SVG text by its font size
/// through the transform to the screen, chart images by the font sizes in their SVG scaled to the
/// width the image is shown at. `None` without a chart.
async fn smallest_chart_text(client: &Client) -> Option<f64> {
    let found = client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               (async () => {
                 let smallest = null;
                 const keep = px => { if (smallest === null || px < smallest) smallest = px; };
                 for (const t of document.querySelectorAll('main svg text')) {
                   const m = t.getScreenCTM();
                   const size = parseFloat(getComputedStyle(t).fontSize);
                   if (m && size && t.getBoundingClientRect().width > 0) keep(size * Math.hypot(m.a, m.b));
                 }
                 for (const img of document.querySelectorAll('main img[src*=".svg"]')) {
                   if (!img.naturalWidth) continue;
                   const svg = await (await fetch(img.src)).text();
                   for (const m of svg.matchAll(/font-size="([0-9.]+)"/g))
                     keep(parseFloat(m[1]) * img.clientWidth / img.naturalWidth);
                 }
                 return smallest;
               })().then(done, e => done('failed: ' + e));"#,
            vec![],
        )
        .await
        .expect("script");
    match found {
        serde_json::Value::Null => None,
        serde_json::Value::Number(n) => n.as_f64(),
        other => panic!("measuring chart text: {other}"),
    }
}

/// The page as loaded (desktop, 1280 px): every resource loaded, no console error, every control
/// labelled, and no critical or serious axe-core violation; then at a phone's 390 px: nothing off the
/// screen outside a box that scrolls, and no axe violation there either. Screenshots of both.
async fn check_page(client: &Client, name: &str) {
    screenshot(client, name).await;
    let problems = problems(client).await;
    assert!(problems.is_empty(), "{name}: {problems:#?}");
    let unlabelled = unlabelled_controls(client).await;
    assert!(
        unlabelled.is_empty(),
        "{name}: controls without a label: {unlabelled:#?}"
    );
    check_layout(client, name).await;
}

/// No critical or serious axe-core violation at 1280 px, and at a phone's 390 px none either and
/// nothing off the screen outside a box that scrolls (screenshot `{name}-phone`).
async fn check_layout(client: &Client, name: &str) {
    let axe = axe_violations(client).await;
    if let Some(px) = smallest_chart_text(client).await {
        assert!(px >= 13.0, "{name}: chart text of {px:.1} px at 1280 px");
    }
    phone(client, true).await;
    let axe_phone = axe_violations(client).await;
    let wide = off_screen(client).await;
    client
        .execute("window.scrollTo(0, 0);", vec![])
        .await
        .expect("scroll");
    screenshot(client, &format!("{name}-phone")).await;
    phone(client, false).await;
    assert!(
        axe.is_empty() && axe_phone.is_empty() && wide.is_empty(),
        "{name}: axe-core at 1280 px: {axe:#?}\nat 390 px: {axe_phone:#?}\noff a phone's screen: {wide:#?}"
    );
}

/// A node with 4 GPUs; alice's workload `bert` at caps 150, 200 and 250 W (one GPU each, the lower
/// caps slower), and one job of bob's.
async fn seed(base: &str) {
    let http = reqwest::Client::new();
    post(
        &http,
        base,
        ADMIN,
        "/api/v1/sites",
        json!({"name": "dc1", "timezone": "Europe/Berlin"}),
    )
    .await;
    let node = post(
        &http,
        base,
        ADMIN,
        "/api/v1/nodes",
        json!({"name": "gpu-1", "site": "dc1"}),
    )
    .await;
    let token = node["token"].as_str().expect("token").to_owned();
    let t0 = seed_start();
    let jobs = [
        ("alice-250", "alice", 0, 250.0, 120),
        ("alice-200", "alice", 1, 200.0, 126),
        ("alice-150", "alice", 2, 150.0, 140),
        ("bob-250", "bob", 3, 250.0, 120),
    ];
    let gpus: Vec<GpuIdentity> = (0..4)
        .map(|i| GpuIdentity {
            index: i,
            uuid: format!("GPU-{i}"),
            model: "Tesla V100-SXM2-32GB".into(),
            default_power_limit_w: Some(250.0),
            keep_known: false,
        })
        .collect();
    let mut samples = Vec::new();
    for (_, _, gpu, cap, seconds) in jobs {
        for i in 0..seconds * 10 {
            let time = t0 + chrono::Duration::milliseconds(100 * i64::from(i));
            samples.push(GpuSample {
                time,
                gpu,
                power_w: cap * 0.92 + f64::from(i % 7),
                energy_mj: None,
                power_limit_w: Some(cap),
                util_pct: Some(97.0),
                mem_used_mib: Some(20_000.0),
                temp_c: Some(61.0),
                sm_clock_mhz: Some(1300.0),
                power_instant_w: None,
                power_source: None,
            });
        }
    }
    samples.sort_by_key(|s| s.time);
    for chunk in samples.chunks(4000) {
        let batch = GpuBatch {
            node: None,
            gpus: gpus.clone(),
            samples: chunk.to_vec(),
            dropped_samples_total: Some(0),
            clock_steps: None,
            node_energy: vec![],
            node_cpus: None,
            dropped_ranges: Vec::new(),
        };
        post(
            &http,
            base,
            &token,
            "/api/v1/ingest/gpu",
            serde_json::to_value(batch).expect("json"),
        )
        .await;
    }
    for (id, user, gpu, _, seconds) in jobs {
        post(
            &http,
            base,
            ADMIN,
            "/api/v1/jobs",
            json!({
                "site": "dc1", "id": id, "user": user, "name": format!("{id} <run>"),
                "start": t0, "end": t0 + chrono::Duration::seconds(i64::from(seconds)),
                "tags": {"workload": "bert"},
                "allocations": [{"node": "gpu-1", "gpus": [gpu]}],
            }),
        )
        .await;
    }
}

/// When the seed's jobs start: half past the last hour but one, so that a page's month figures, which
/// stop at the start of the current hour, hold them once rolled up.
fn seed_start() -> chrono::DateTime<Utc> {
    Utc::now()
        .duration_trunc(chrono::Duration::hours(1))
        .expect("trunc")
        - chrono::Duration::minutes(30)
}

/// Adds `users` (with `PASSWORD`), starts a real server on loopback and seeds it (`seed`): the base
/// URL and the server's state (to run its background tasks by hand).
async fn seeded_server(db: PgPool, users: &[(&str, Role)]) -> (String, AppState) {
    for (name, role) in users {
        wattlas_server::cli::user(
            &db,
            UserAction::Add {
                name: (*name).into(),
                role: *role,
                no_password: false,
            },
            format!("{PASSWORD}\n").as_bytes(),
        )
        .await
        .expect("user");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let mut config = Config::with_admin_token(ADMIN);
    // The budget test's webhook receiver listens on loopback, as an internal receiver a site allows.
    config.webhook_allow = vec!["127.0.0.1".parse().expect("allowed")];
    let state = AppState::new(db, config);
    tokio::spawn(wattlas_server::startup::run(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    seed(&base).await;
    (base, state)
}

/// Fills the sign-in form in front of the browser as `name`, submits it and waits for its answer to
/// land on `lands` (the page asked for, else by role: researchers on their jobs, staff and admins on
/// the overview): a navigation started before then could be overtaken by the sign-in's redirect (CI
/// once found the staff test at `/jobs` after it went to `/`).
async fn submit_sign_in(client: &Client, name: &str, lands: &str) {
    client
        .find(Locator::Css("input[name=username]"))
        .await
        .expect("user field")
        .send_keys(name)
        .await
        .expect("type");
    client
        .find(Locator::Css("input[name=password]"))
        .await
        .expect("password field")
        .send_keys(PASSWORD)
        .await
        .expect("type");
    client
        .find(Locator::Css("form.signin button[type=submit]"))
        .await
        .expect("button")
        .click()
        .await
        .expect("submit");
    wait_path(client, lands).await;
}

/// Waits for a navigation that a click started to land on `path`.
async fn wait_path(client: &Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let url = client.current_url().await.expect("url");
        let ready = client
            .execute("return document.readyState", vec![])
            .await
            .expect("script");
        if url.path() == path && ready == json!("complete") {
            return;
        }
        assert!(Instant::now() < deadline, "still at {url}, expected {path}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pauses a live page's updates and resumes them (which updates at once), then waits for the update:
/// the status says when it was, the page was not reloaded (a mark set before is still there).
async fn live_update(client: &Client) {
    client
        .execute("window.notReloaded = true;", vec![])
        .await
        .expect("mark");
    let pause = client
        .find(Locator::Css("#live-pause"))
        .await
        .expect("pause button");
    assert_eq!(pause.text().await.expect("text"), "Pause updates");
    pause.click().await.expect("pause");
    assert_eq!(text(client, "#live-status").await, "Updates paused.");
    assert_eq!(
        pause.attr("aria-pressed").await.expect("attr").as_deref(),
        Some("true")
    );
    pause.click().await.expect("resume");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = text(client, "#live-status").await;
        if status.contains("last at") {
            break;
        }
        assert!(Instant::now() < deadline, "no update: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .expect("script");
    assert_eq!(kept, json!(true), "updated in place, not reloaded");
}

async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .expect("text")
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_researcher_signs_in_filters_opens_a_job_and_a_comparison(db: PgPool) {
    let (base, _state) = seeded_server(
        db,
        &[("alice", Role::Researcher), ("bob", Role::Researcher)],
    )
    .await;

    let (_driver, webdriver) = chromedriver().await;
    let client = browser(&webdriver).await;

    // Signing in: a page that needs it leads to the form and back.
    client.goto(&format!("{base}/jobs")).await.expect("goto");
    assert!(client.current_url().await.expect("url").path() == "/login");
    check_page(&client, "1-sign-in").await;
    submit_sign_in(&client, "alice", "/jobs").await;
    assert_eq!(client.title().await.expect("title"), "Jobs · Wattlas");
    let jobs_text = text(&client, "table.jobs tbody").await;
    assert!(
        jobs_text.contains("alice-150") && !jobs_text.contains("bob-250"),
        "{jobs_text}"
    );
    assert!(text(&client, "header.top .who").await.contains("alice"));
    check_page(&client, "2-jobs").await;

    // A filter the server cannot read: said above the form, which keeps what was typed.
    client
        .goto(&format!("{base}/jobs?user=alice&cap=lots"))
        .await
        .expect("goto");
    wait_path(&client, "/jobs").await;
    let error = text(&client, "main p.error").await;
    assert!(error.starts_with("cap:"), "{error}");
    let cap = client
        .find(Locator::Css("input[name=cap]"))
        .await
        .expect("cap field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(cap.as_deref(), Some("lots"));
    screenshot(&client, "2b-jobs-bad-filter").await;
    // The page answered 400 (as the API does): the browser logs that, and nothing else.
    let logged = problems(&client).await;
    assert!(
        logged.iter().all(|m| m.contains("status of 400")),
        "{logged:#?}"
    );
    client.goto(&format!("{base}/jobs")).await.expect("goto");
    wait_path(&client, "/jobs").await;

    // Filtering: the filter lands in the URL and narrows the rows.
    let field = client
        .find(Locator::Css("input[name=user]"))
        .await
        .expect("user filter");
    field.send_keys("alice").await.expect("type");
    let tag = client
        .find(Locator::Css("input[name=tag]"))
        .await
        .expect("tag filter");
    tag.send_keys("workload:bert").await.expect("type");
    client
        .find(Locator::Css("form.filters button[type=submit]"))
        .await
        .expect("filter button")
        .click()
        .await
        .expect("filter");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client
        .current_url()
        .await
        .expect("url")
        .query()
        .unwrap_or_default()
        .contains("tag=")
    {
        assert!(Instant::now() < deadline, "the filter did not navigate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_path(&client, "/jobs").await;
    let url = client.current_url().await.expect("url");
    let query = url.query().unwrap_or_default().to_owned();
    assert!(
        query.contains("tag=workload%3Abert") && query.contains("user=alice"),
        "{query}"
    );
    let rows = client
        .find_all(Locator::Css("table.jobs tbody tr"))
        .await
        .expect("rows");
    assert_eq!(rows.len(), 3, "alice's three jobs");
    check_page(&client, "3-jobs-filtered").await;

    // A job: its numbers and its power chart.
    client
        .find(Locator::LinkText("alice-150"))
        .await
        .expect("job link")
        .click()
        .await
        .expect("open job");
    wait_path(&client, "/jobs/alice-150").await;
    assert!(text(&client, "h1").await.contains("alice-150"));
    let main = text(&client, "main").await;
    assert!(
        main.contains("alice-150 <run>"),
        "the name escaped, shown as text: {main}"
    );
    let chart_ok = client
        .execute(
            "const i = document.querySelector('img[src$=\"power.svg\"]'); return i !== null && i.naturalWidth > 0;",
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(chart_ok, json!(true), "the power chart is drawn");
    check_page(&client, "4-job").await;

    // A running job of alice's (GPU 3 since the seed's start): its page updates its figures in place
    // and keeps a half-typed zoom range (a meta refresh wiped it, and axe-core counts it as critical).
    let t0 = seed_start();
    post(
        &reqwest::Client::new(),
        &base,
        ADMIN,
        "/api/v1/jobs",
        json!({"site": "dc1", "id": "alice-live", "user": "alice", "name": "still running",
               "start": t0, "allocations": [{"node": "gpu-1", "gpus": [3]}]}),
    )
    .await;
    client
        .goto(&format!("{base}/jobs/alice-live"))
        .await
        .expect("goto");
    assert!(text(&client, "h1").await.contains("running"));
    client
        .find(Locator::Css("input[name=from_min]"))
        .await
        .expect("zoom field")
        .send_keys("12")
        .await
        .expect("type");
    live_update(&client).await;
    let typed = client
        .find(Locator::Css("input[name=from_min]"))
        .await
        .expect("zoom field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(typed.as_deref(), Some("12"), "the half-typed range stays");
    check_page(&client, "4-job-running").await;

    // A comparison: from the list of comparisons to Figure 1.
    client
        .goto(&format!("{base}/powercap"))
        .await
        .expect("goto");
    check_page(&client, "5-comparisons").await;
    client
        .find(Locator::Css("a[href*='tag=workload']"))
        .await
        .expect("comparison link")
        .click()
        .await
        .expect("open comparison");
    wait_path(&client, "/powercap").await;
    let page = client.source().await.expect("source");
    assert!(page.contains("<svg"), "Figure 1 is inline SVG");
    for cap in ["150 W", "200 W", "250 W"] {
        assert!(page.contains(cap), "{cap} in the comparison");
    }
    check_page(&client, "6-comparison").await;

    // Another researcher's job is not there, even by URL.
    client
        .goto(&format!("{base}/jobs/bob-250"))
        .await
        .expect("goto");
    assert!(text(&client, "h1").await.contains("404"));
    let _ = problems(&client).await; // the 404 itself is logged; that is the point

    // Signing out.
    client.goto(&format!("{base}/jobs")).await.expect("goto");
    client
        .find(Locator::Css("form[action='/logout'] button"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("click");
    wait_path(&client, "/login").await;
    client.goto(&format!("{base}/jobs")).await.expect("goto");
    assert_eq!(
        client.current_url().await.expect("url").path(),
        "/login",
        "signed out"
    );
    client.close().await.expect("close");
}

/// Staff land on the overview: the fleet now, the month's energy by user as bars, the running jobs;
/// the page has no console problems or unlabelled controls (screenshot `7-overview`).
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn staff_sign_in_to_the_overview(db: PgPool) {
    let (base, refresh) = seeded_server(db, &[("sam", Role::Staff)]).await;
    wattlas_server::maintenance::refresh_job_energy(&refresh, 100)
        .await
        .expect("summaries");
    // Rolled up, the seed's hour is in the month's figures (every one of them stops where the rollup
    // has taken all data).
    wattlas_server::maintenance::rollup_settled_before(&refresh, Utc::now())
        .await
        .expect("rollup");

    let (_driver, webdriver) = chromedriver().await;
    let client = browser(&webdriver).await;
    client.goto(&format!("{base}/")).await.expect("goto");
    wait_path(&client, "/login").await;
    // Staff land on the overview (issue 31).
    submit_sign_in(&client, "sam", "/overview").await;
    client.goto(&format!("{base}/")).await.expect("goto");
    wait_path(&client, "/overview").await;
    assert_eq!(client.title().await.expect("title"), "Overview · Wattlas");
    let figures = text(&client, "dl.figures").await;
    assert!(
        figures.contains("GPU power now") && figures.contains("busy"),
        "{figures}"
    );
    let bars = text(&client, "table.bars").await;
    assert!(bars.contains("alice"), "{bars}");
    assert!(
        figures.contains("no meter reading in the last hour"),
        "{figures}"
    );

    // A meter at 1.5 kW of IT load for the last half hour, the rollup done: the power curve, then where
    // the site's energy went, each chart's points and segments saying their values on hover.
    let http = reqwest::Client::new();
    let meter = post(
        &http,
        &base,
        ADMIN,
        "/api/v1/meters",
        json!({"name": "dc1-main", "site": "dc1", "category": "PUE2"}),
    )
    .await;
    let readings: Vec<serde_json::Value> = (0..=30i32)
        .map(|k| {
            json!({"time": Utc::now() - chrono::Duration::minutes(i64::from(30 - k)),
                        "it_kw": 1.5, "total_kw": 1.5 * (1.3 + 0.002 * f64::from(k))})
        })
        .collect();
    post(
        &http,
        &base,
        meter["token"].as_str().expect("meter token"),
        "/api/v1/ingest/facility",
        json!({"readings": readings}),
    )
    .await;
    wattlas_server::maintenance::rollup_settled_before(
        &refresh,
        Utc::now() + chrono::Duration::hours(1),
    )
    .await
    .expect("rollup");
    wattlas_server::maintenance::refresh_job_energy(&refresh, 100)
        .await
        .expect("summaries");
    // The page updates its figures in place (every minute; resuming after a pause updates at once),
    // without reloading: a mark left in the page survives, and the new data is shown.
    let figures = text(&client, "dl.figures").await;
    assert!(!figures.contains("1.50 kW"), "{figures}");
    live_update(&client).await;
    let figures = text(&client, "dl.figures").await;
    assert!(figures.contains("1.50 kW"), "{figures}");
    assert!(
        figures.contains("PUE today so far\n1.3") && figures.contains("PUE yesterday"),
        "{figures}"
    );
    assert!(
        client
            .find_all(Locator::Css("meta[http-equiv=refresh]"))
            .await
            .expect("find")
            .is_empty(),
        "no meta refresh"
    );
    let hovers = client
        .find_all(Locator::Css("figure.chart svg circle > title"))
        .await
        .expect("point titles");
    assert!(!hovers.is_empty(), "the curves' points say their values");
    check_page(&client, "7-overview").await;
    client
        .find(Locator::LinkText("Where the energy of dc1 went"))
        .await
        .expect("link")
        .click()
        .await
        .expect("click");
    wait_path(&client, "/sites/dc1/energy").await;
    assert_eq!(
        client.title().await.expect("title"),
        "Where the energy went · dc1 · Wattlas"
    );
    let table = text(&client, "table.closure").await;
    assert!(table.contains("100 %") || table.contains(" %"), "{table}");
    let segments = client
        .find_all(Locator::Css("figure svg rect > title"))
        .await
        .expect("segment titles");
    assert!(!segments.is_empty(), "the stacked bars say their values");
    check_page(&client, "8-energy").await;
    client
        .goto(&format!("{base}/sites/dc1/pue"))
        .await
        .expect("goto");
    assert!(text(&client, "h1").await.contains("PUE"));
    // Today's PUE as a value, not only a chart: the meter's readings of the last half hour (PUE
    // 1.30 rising to 1.36) in one or two local hours.
    let figures = text(&client, "dl.figures").await;
    assert!(figures.contains("Today so far"), "{figures}");
    let today: f64 = figures
        .lines()
        .skip_while(|l| !l.starts_with("Today so far"))
        .nth(1)
        .expect("today's value")
        .parse()
        .unwrap_or_else(|e| panic!("today's PUE: {e}: {figures}"));
    assert!((1.30..=1.36).contains(&today), "{figures}");
    assert!(
        figures.contains("hours, 1.3"),
        "what it rests on: {figures}"
    );
    check_page(&client, "8b-pue").await;
    // The meter against its nodes (none named here: the page says so).
    client
        .goto(&format!("{base}/meters/dc1-main/calibration"))
        .await
        .expect("goto");
    assert!(text(&client, "h1").await.contains("dc1-main"));
    check_page(&client, "8e-meter-calibration").await;

    // The statement of the seed's finished jobs, kept beside the screenshots (README picture).
    let pdf = reqwest::Client::new()
        .get(format!(
            "{base}/api/v1/statement?tag=workload:bert&format=pdf"
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("statement")
        .bytes()
        .await
        .expect("pdf");
    assert!(pdf.starts_with(b"%PDF"));
    std::fs::write(artifacts().join("statement.pdf"), &pdf).expect("write");

    // An address that is no page: the 404 page with the header, signed in.
    client
        .goto(&format!("{base}/no/such/page"))
        .await
        .expect("goto");
    assert_eq!(text(&client, "h1").await, "Error 404");
    assert!(text(&client, "header").await.contains("sam"));
    // (The 404 is logged in the console: that is the point; only its layout is checked.)
    check_layout(&client, "8c-not-found").await;
    let _ = problems(&client).await;

    // The account page: the person's tokens.
    client.goto(&format!("{base}/account")).await.expect("goto");
    assert!(text(&client, "h1").await.contains("sam"));
    check_page(&client, "8d-account").await;
    client.close().await.expect("close");
}

/// Admins land on the overview too; on the admin page they set a site's carbon intensity, and a node's
/// new token is asked for first (screenshots `9-admin`, `10-new-token`).
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn an_admin_sets_a_sites_carbon_and_asks_before_a_new_token(db: PgPool) {
    let (base, tasks) = seeded_server(db, &[("root", Role::Admin)]).await;
    // A job of project atlas (the first 100 s of GPU 0), and a webhook receiver on loopback.
    let http = reqwest::Client::new();
    // (The seed's jobs start at `seed_start`.)
    let start = seed_start();
    post(
        &http,
        &base,
        ADMIN,
        "/api/v1/jobs",
        json!({"site": "dc1", "id": "atlas-1", "user": "alice", "name": "atlas run",
               "start": start, "end": start + chrono::Duration::seconds(100),
               "tags": {"project": "atlas"}, "allocations": [{"node": "gpu-1", "gpus": [0]}]}),
    )
    .await;
    let got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let seen = got.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .expect("lock")
                    .push(serde_json::from_slice(&body).expect("JSON"));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook_url = format!("http://{}/hook", hook_listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(hook_listener, hook).await;
    });

    let (_driver, webdriver) = chromedriver().await;
    let client = browser(&webdriver).await;
    client.goto(&format!("{base}/")).await.expect("goto");
    wait_path(&client, "/login").await;
    submit_sign_in(&client, "root", "/overview").await;
    client.goto(&format!("{base}/")).await.expect("goto");
    wait_path(&client, "/overview").await;
    client.goto(&format!("{base}/admin")).await.expect("goto");
    wait_path(&client, "/admin").await;
    let nodes = text(&client, "#nodes + table").await;
    assert!(
        nodes.contains("gpu-1") && nodes.contains("Tesla V100-SXM2-32GB"),
        "{nodes}"
    );
    let carbon = client
        .find(Locator::Css(
            "#sites + p + table input[name=carbon_g_per_kwh]",
        ))
        .await
        .expect("carbon field");
    carbon.send_keys("320").await.expect("type");
    client
        .find(Locator::Css("#sites + p + table form button[type=submit]"))
        .await
        .expect("save")
        .click()
        .await
        .expect("click");
    wait_path(&client, "/admin/sites/dc1").await;
    assert!(text(&client, "p.ok").await.contains("Saved site 'dc1'"));
    let saved = client
        .find(Locator::Css(
            "#sites + p + table input[name=carbon_g_per_kwh]",
        ))
        .await
        .expect("carbon field")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(saved.as_deref(), Some("320"));

    // A budget for atlas its job has already used up, with the receiver as its webhook: the budget
    // task posts the 80 % and the 100 % crossings, and the page shows the use.
    for (name, value) in [
        ("project", "atlas".to_owned()),
        ("kwh_per_month", "0.003".to_owned()),
        ("webhook_url", hook_url.clone()),
    ] {
        client
            .find(Locator::Css(&format!(
                "form[action='/admin/budgets'] input[name={name}]"
            )))
            .await
            .expect("budget field")
            .send_keys(&value)
            .await
            .expect("type");
    }
    client
        .find(Locator::Css(
            "form[action='/admin/budgets'] button[type=submit]",
        ))
        .await
        .expect("set budget")
        .click()
        .await
        .expect("click");
    wait_path(&client, "/admin/budgets").await;
    assert!(text(&client, "p.ok")
        .await
        .contains("Saved the budget of project 'atlas'"));
    wattlas_server::maintenance::refresh_job_energy(&tasks, 100)
        .await
        .expect("summaries");
    // The server's own budget and webhook tasks run beside this call: whichever holds a task's lock
    // delivers, so the receiver is waited on (a run that found the lock held posts nothing).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        wattlas_server::maintenance::budgets_once(&tasks)
            .await
            .expect("budgets");
        if got.lock().expect("lock").len() >= 2 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    {
        let got = got.lock().expect("lock");
        let crossed: Vec<i64> = got
            .iter()
            .map(|p| p["threshold_pct"].as_i64().expect("threshold"))
            .collect();
        assert_eq!(crossed, vec![80, 100], "{got:?}");
        assert_eq!(got[0]["project"], "atlas");
        let text = got[1]["text"].as_str().expect("text");
        assert!(
            text.contains(" Wh of 3.0 Wh."),
            "amounts people can read: {text}"
        );
    }
    client
        .goto(&format!("{base}/admin#budgets"))
        .await
        .expect("goto");
    wait_path(&client, "/admin").await;
    let budgets = text(&client, "#budgets + p + table").await;
    assert!(
        budgets.contains("atlas") && budgets.contains("3.0 Wh") && budgets.contains(" %)"),
        "{budgets}"
    );
    assert_eq!(client.title().await.expect("title"), "Admin · Wattlas");
    check_page(&client, "9-admin").await;

    client
        .find(Locator::LinkText("New token…"))
        .await
        .expect("link")
        .click()
        .await
        .expect("click");
    wait_path(&client, "/admin/nodes/gpu-1/token").await;
    assert!(text(&client, "main")
        .await
        .contains("keeps working until the collector first uses the new one"));
    check_page(&client, "10-new-token").await;
    client
        .find(Locator::Css("main form button[type=submit]"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_path(&client, "/admin/nodes/gpu-1/token").await;
    assert!(text(&client, "#new-token").await.starts_with("wn_"));
    // A statement's verify link, as a reader of the paper opens it.
    let statement: serde_json::Value = http
        .get(format!("{base}/api/v1/statement?jobs=atlas-1&format=json"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("statement")
        .json()
        .await
        .expect("json");
    let link = format!(
        "{}?sha256={}",
        statement["verify_url"].as_str().expect("verify url"),
        statement["digest"].as_str().expect("digest")
    );
    client.goto(&link).await.expect("goto");
    let status = text(&client, "main p.ok").await;
    assert!(
        status.starts_with("Authentic") && status.contains("Unchanged"),
        "{status}"
    );
    check_page(&client, "9b-statement-verified").await;
    client.close().await.expect("close");
}
