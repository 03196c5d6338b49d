//! Who may see what: sign-in, sessions, CSRF, the trusted proxy header, and researcher isolation by
//! page, chart, export and API, against the real server and TimescaleDB.

use crate::common::*;
use crate::sign_in::*;
use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_server::db::users::Role;

/// Two researchers' finished jobs with samples, both tagged workload=x, at caps 200 and 250 W.
async fn two_researchers_jobs(app: &App) {
    let token = app.node().await;
    let t0 = minute_aligned_past(30);
    let (status, body) = app.ingest(&token, &batch(samples(t0, 60))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (id, user, from, to) in [("a1", "alice", 0, 20), ("b1", "bob", 30, 50)] {
        let (status, body) = app
            .post(
                ADMIN,
                "/api/v1/jobs",
                &json!({"site": "s1", "id": id, "user": user, "name": format!("{user}'s run"),
                        "start": t0 + Duration::seconds(from), "end": t0 + Duration::seconds(to),
                        "tags": {"workload": "x", "owner": user},
                        "allocations": [{"node": "n1", "gpus": [0, 1]}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_researcher_cannot_reach_another_researchers_job(db: PgPool) {
    let app = App::spawn(db).await;
    two_researchers_jobs(&app).await;
    add_user(&app, "alice", Role::Researcher).await;
    add_user(&app, "bob", Role::Researcher).await;
    add_user(&app, "sam", Role::Staff).await;
    let alice = browser(&app, "alice").await;

    // Pages: the list, a filter for bob, bob's job, its chart, the CSV export, the comparisons.
    let (status, list) = app.page(&alice.cookie, "/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.contains("href=\"/jobs/a1\""), "{list}");
    assert!(!list.contains("/jobs/b1"), "bob's job is not listed");
    let (_, filtered) = app.page(&alice.cookie, "/jobs?user=bob").await;
    assert!(!filtered.contains("/jobs/b1") && filtered.contains("<strong>No jobs</strong>"));
    for path in ["/jobs/b1", "/jobs/b1/power.svg"] {
        let (status, body) = app.page(&alice.cookie, path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!body.contains("bob's run"), "{path} leaks nothing");
    }
    let (status, csv) = app.page(&alice.cookie, "/jobs.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(csv.lines().count(), 2, "header and alice's job: {csv}");
    assert!(csv.contains("\na1,alice,"));
    let (_, csv) = app.page(&alice.cookie, "/jobs.csv?user=bob").await;
    assert_eq!(csv.lines().count(), 1, "{csv}");
    let (_, comparisons) = app.page(&alice.cookie, "/powercap").await;
    assert!(
        !comparisons.contains("owner:bob") && !comparisons.contains("workload:x"),
        "alice has one job tagged workload=x: no comparison of hers; bob's jobs count for nothing"
    );

    // The API, by session cookie (reads) and by alice's own token.
    let (status, body) = app.page(&alice.cookie, "/api/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["total"], 1);
    assert_eq!(body["jobs"][0]["id"], "a1");
    let token = api_token(&app, "alice").await;
    let (status, body) = app.get(&token, "/api/v1/jobs/b1").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "no job 'b1'", "as if it did not exist");
    let (status, body) = app.get(&token, "/api/v1/jobs?user=bob").await;
    assert_eq!((status, body["total"].clone()), (StatusCode::OK, json!(0)));
    let (status, body) = app
        .get(&token, "/api/v1/powercap/comparison?tag=workload:x")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jobs: i64 = body["caps"]
        .as_array()
        .expect("caps")
        .iter()
        .map(|c| c["jobs"].as_i64().expect("jobs"))
        .sum();
    // The advice is the same for whoever asks (issue 20): the rows count every finished job of the
    // workload, bob's too, as means and counts; no job of bob's is named in it.
    assert_eq!(jobs, 2, "the comparison counts every job of the workload");
    let examples = body["examples"].as_array().expect("examples");
    assert!(
        examples.iter().all(|e| e[1] == "a1"),
        "Figure 6's example jobs are alice's own: {body}"
    );
    let text = body.to_string();
    assert!(!text.contains("b1") && !text.contains("bob"), "{text}");
    let (_, staff) = app
        .get(
            &api_token(&app, "sam").await,
            "/api/v1/powercap/comparison?tag=workload:x",
        )
        .await;
    assert_eq!(staff["caps"], body["caps"], "staff see the same rows");
    assert_eq!(staff["advice"], body["advice"], "and the same advice");
    let r = app
        .http
        .get(format!("{}/api/v1/jobs.csv", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("csv");
    let csv = r.text().await.expect("text");
    assert!(csv.contains("\na1,") && !csv.contains("\nb1,"), "{csv}");
    // Facility detail and writes are not a researcher's.
    for path in ["/api/v1/nodes", "/api/v1/meters"] {
        let (status, _) = app.get(&token, path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    let (status, body) = app
        .post(&token, "/api/v1/jobs/b1/end", &json!({"end": Utc::now()}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let r = app
        .http
        .post(format!("{}/api/v1/jobs/a1/end", app.base))
        .header("cookie", format!("wattlas_session={}", alice.cookie))
        .json(&json!({"end": Utc::now()}))
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a cookie does not write to the API"
    );

    // Bob sees his; staff see both.
    let bob = browser(&app, "bob").await;
    let (status, page) = app.page(&bob.cookie, "/jobs/b1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("bob&#39;s run"), "{page}");
    let sam = browser(&app, "sam").await;
    let (_, list) = app.page(&sam.cookie, "/jobs").await;
    assert!(list.contains("/jobs/a1") && list.contains("/jobs/b1"));
    let (status, _) = app.page(&sam.cookie, "/jobs/b1/power.svg").await;
    assert_eq!(status, StatusCode::OK);
    let (_, comparisons) = app.page(&sam.cookie, "/powercap").await;
    // Both jobs ran at 250 W: one cap is nothing to compare, so the tag is not offered.
    assert!(
        !comparisons.contains("workload:x") && comparisons.contains("run at two or more caps"),
        "{comparisons}"
    );
    let (status, _) = app.page(&sam.cookie, "/api/v1/nodes").await;
    assert_eq!(status, StatusCode::OK, "staff see the facility's nodes");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn admins_manage_users_sites_nodes_and_tokens_on_their_pages(db: PgPool) {
    let app = App::spawn(db).await;
    add_user(&app, "root", Role::Admin).await;
    add_user(&app, "alice", Role::Researcher).await;
    let admin = browser(&app, "root").await;
    let (status, page) = app.page(&admin.cookie, "/admin").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = hidden(&page, "csrf");
    let form = |path: String, fields: Vec<(&'static str, String)>| {
        let http = app.http.clone();
        let url = format!("{}{path}", app.base);
        let cookie = admin.cookie.clone();
        async move {
            let r = http
                .post(url)
                .header("cookie", format!("wattlas_session={cookie}"))
                .form(&fields)
                .send()
                .await
                .expect("post");
            (r.status(), r.text().await.expect("text"))
        }
    };
    let token_in = |page: &str| -> String {
        let at = page.find("id=\"new-token\">").expect("token shown") + "id=\"new-token\">".len();
        page[at..].split('<').next().expect("token").to_owned()
    };

    let (status, page) = form(
        "/admin/sites".into(),
        vec![
            ("csrf", csrf.clone()),
            ("name", "dc9".into()),
            ("timezone", "Asia/Tokyo".into()),
            ("fallback_pue", "".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Created site &#39;dc9&#39;."), "{page}");
    let (status, page) = form(
        "/admin/sites".into(),
        vec![
            ("csrf", csrf.clone()),
            ("name", "dc10".into()),
            ("timezone", "Mars/Olympus".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("timezone: &#39;Mars/Olympus&#39; is not an IANA time zone"),
        "{page}"
    );

    // A node's token is shown once and works; a new token retires the old one.
    let (status, page) = form(
        "/admin/nodes".into(),
        vec![
            ("csrf", csrf.clone()),
            ("name", "gpu-9".into()),
            ("site", "dc9".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let first = token_in(&page);
    let (_, me) = app.get(&first, "/api/v1/me").await;
    assert_eq!(me, json!({"kind": "node", "name": "gpu-9"}));
    // "New token" asks first; the old token keeps working until the collector uses the new one.
    let (status, ask) = app.page(&admin.cookie, "/admin/nodes/gpu-9/token").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        ask.contains("the current token keeps working until the collector first uses the new one"),
        "{ask}"
    );
    let (status, page) = form(
        "/admin/nodes/gpu-9/token".into(),
        vec![("csrf", csrf.clone())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let second = token_in(&page);
    assert_ne!(first, second);
    assert_eq!(
        app.get(&first, "/api/v1/me").await.0,
        StatusCode::OK,
        "the old token works until the collector switches"
    );
    assert_eq!(app.get(&second, "/api/v1/me").await.0, StatusCode::OK);
    assert_eq!(
        app.get(&first, "/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED,
        "switched: the old token stops at once"
    );
    let (status, page) = form(
        "/admin/meters".into(),
        vec![
            ("csrf", csrf.clone()),
            ("name", "m-9".into()),
            ("site", "dc9".into()),
            ("category", "PUE2".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (_, me) = app.get(&token_in(&page), "/api/v1/me").await;
    assert_eq!(me["kind"], "meter");
    // The node's row says its GPUs (none yet) and that its collector never reported.
    let (_, page) = app.page(&admin.cookie, "/admin").await;
    assert!(
        page.contains("<td>gpu-9</td><td>dc9</td><td class=\"num\">0</td>"),
        "{page}"
    );
    assert!(page.contains("never reported"), "{page}");

    // A site's carbon intensity and price, set on the page; a bad number names its field.
    let (status, page) = form(
        "/admin/sites/dc9".into(),
        vec![
            ("csrf", csrf.clone()),
            ("fallback_pue", "1.4".into()),
            ("carbon_g_per_kwh", "350".into()),
            ("price_per_kwh", "0.21".into()),
            ("currency", "EUR".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (_, sites) = app.get(ADMIN, "/api/v1/sites").await;
    let dc9 = sites
        .as_array()
        .expect("sites")
        .iter()
        .find(|s| s["name"] == "dc9")
        .expect("dc9")
        .clone();
    assert_eq!(
        (
            dc9["carbon_g_per_kwh"].clone(),
            dc9["price_per_kwh"].clone(),
            dc9["currency"].clone()
        ),
        (json!(350.0), json!(0.21), json!("EUR"))
    );
    let (status, page) = form(
        "/admin/sites/dc9".into(),
        vec![("csrf", csrf.clone()), ("carbon_g_per_kwh", "lots".into())],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        page.contains("carbon_g_per_kwh: &#39;lots&#39; is not a number")
            || page.contains("carbon_g_per_kwh: 'lots' is not a number"),
        "{page}"
    );
    // The form keeps what it leaves empty and what it does not show (issue 31): the node quota set
    // through the API, the carbon intensity, price and currency, with only the fallback PUE typed.
    let (status, body) = app
        .put(ADMIN, "/api/v1/sites/dc9", &json!({"node_quota": 7}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, page) = form(
        "/admin/sites/dc9".into(),
        vec![
            ("csrf", csrf.clone()),
            ("fallback_pue", "1.6".into()),
            ("carbon_g_per_kwh", "".into()),
            ("price_per_kwh", "".into()),
            ("currency", "".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let (_, sites) = app.get(ADMIN, "/api/v1/sites").await;
    let dc9 = sites
        .as_array()
        .expect("sites")
        .iter()
        .find(|s| s["name"] == "dc9")
        .expect("dc9")
        .clone();
    assert_eq!(
        (
            dc9["fallback_pue"].clone(),
            dc9["carbon_g_per_kwh"].clone(),
            dc9["price_per_kwh"].clone(),
            dc9["currency"].clone(),
            dc9["node_quota"].clone()
        ),
        (
            json!(1.6),
            json!(350.0),
            json!(0.21),
            json!("EUR"),
            json!(7)
        ),
        "{dc9}"
    );

    // A project's budget, set on the page and listed.
    let (status, page) = form(
        "/admin/budgets".into(),
        vec![
            ("csrf", csrf.clone()),
            ("project", "atlas".into()),
            ("kwh_per_month", "120".into()),
            ("webhook_url", "".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Saved the budget of project"), "{page}");
    assert!(page.contains("<td class=\"num\">120 kWh</td>"), "{page}");

    // Users: add one, promote alice, and never lock oneself out.
    let (status, page) = form(
        "/admin/users".into(),
        vec![
            ("csrf", csrf.clone()),
            ("name", "sam".into()),
            ("role", "staff".into()),
            ("password", "".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let sam = wattlas_server::db::users::by_name(&app.state.db, "sam")
        .await
        .expect("q")
        .expect("sam");
    assert_eq!((sam.role, sam.has_password), (Role::Staff, false));
    let (status, _) = form(
        "/admin/users/alice".into(),
        vec![
            ("csrf", csrf.clone()),
            ("role", "staff".into()),
            ("password", "another long password".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let alice = wattlas_server::db::users::by_name(&app.state.db, "alice")
        .await
        .expect("q")
        .expect("alice");
    assert_eq!(alice.role, Role::Staff);
    assert_eq!(
        sign_in(&app, "alice", "another long password")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    // Saved again with the password field left empty (its placeholder says "unchanged"): the role
    // changes, the password stays.
    let (status, _) = form(
        "/admin/users/alice".into(),
        vec![
            ("csrf", csrf.clone()),
            ("role", "researcher".into()),
            ("password", "".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        sign_in(&app, "alice", "another long password")
            .await
            .status(),
        StatusCode::SEE_OTHER,
        "the password stays"
    );
    let (status, _) = form(
        "/admin/users/alice".into(),
        vec![
            ("csrf", csrf.clone()),
            ("role", "staff".into()),
            ("password", "".into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = form(
        "/admin/users/root".into(),
        vec![("csrf", csrf.clone()), ("role", "researcher".into())],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    let (status, _) = form("/admin/users/alice".into(), vec![("role", "admin".into())]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token, no change");
    let alice = wattlas_server::db::users::by_name(&app.state.db, "alice")
        .await
        .expect("q")
        .expect("alice");
    assert_eq!(alice.role, Role::Staff);

    // Not for anyone else.
    add_user(&app, "bob", Role::Researcher).await;
    let bob = browser(&app, "bob").await;
    let (status, _) = app.page(&bob.cookie, "/admin").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let token = api_token(&app, "bob").await;
    assert_eq!(
        app.get(&token, "/api/v1/users").await.0,
        StatusCode::FORBIDDEN
    );
    let (status, users) = app.get(ADMIN, "/api/v1/users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users.as_array().expect("users").len(), 4);
    assert!(
        !users.to_string().contains("argon2"),
        "no password hash leaves the server"
    );
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn every_response_carries_the_security_headers(db: PgPool) {
    let app = App::spawn(db).await;
    for (path, expected) in [
        ("/login", StatusCode::OK),
        ("/api/v1/me", StatusCode::UNAUTHORIZED),
        ("/static/style.css", StatusCode::OK),
        ("/no-such-page", StatusCode::NOT_FOUND),
    ] {
        let r = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), expected, "{path}");
        let h = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            h("content-security-policy"),
            wattlas_server::routes::CSP,
            "{path}"
        );
        assert!(h("content-security-policy").contains("frame-ancestors 'none'"));
        assert_eq!(h("x-frame-options"), "DENY", "{path}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("referrer-policy"), "same-origin", "{path}");
    }
}

/// What a caller should get from a route.
/// A remote write of node n2's GPU 0 power at `t` (dcgm-exporter's labels).
fn remote_write_of_n2(t: chrono::DateTime<Utc>) -> Vec<u8> {
    use wattlas_server::service::remote_write::{encode, Label, Sample, TimeSeries, WriteRequest};
    let label = |n: &str, v: &str| Label {
        name: n.into(),
        value: v.into(),
    };
    encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                label("__name__", "DCGM_FI_DEV_POWER_USAGE"),
                label("gpu", "0"),
                label("UUID", "GPU-rw-0"),
                label("modelName", "NVIDIA L40S"),
                label("Hostname", "n2"),
            ],
            samples: vec![Sample {
                value: 100.0,
                timestamp: t.timestamp_millis(),
            }],
        }],
    })
}

fn outcome_matches(expected: &str, status: StatusCode, location: &str) -> bool {
    match expected {
        // Success.
        "2xx" => status.is_success(),
        // A form's success: back to a page, not to sign-in.
        "303" => status == StatusCode::SEE_OTHER && !location.starts_with("/login"),
        // A page for someone not signed in.
        "login" => status == StatusCode::SEE_OTHER && location.starts_with("/login"),
        // Let in: whatever the route then says of the request, it is not about who asks.
        "in" => {
            !matches!(status.as_u16(), 401 | 403)
                && !status.is_server_error()
                && !location.starts_with("/login")
        }
        code => status.as_str() == code,
    }
}

/// Every route, every kind of caller. Columns: anonymous, researcher (alice, who owns job a1), another
/// researcher (bob), staff, admin (a user of that role), node token, meter token. "404" for bob is
/// the answer for a job that does not exist: another's job is not even confirmed to exist.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn every_route_answers_every_kind_of_caller_as_its_role_allows(db: PgPool) {
    let app = App::spawn(db).await;
    two_researchers_jobs(&app).await;
    for (name, role) in [
        ("alice", Role::Researcher),
        ("bob", Role::Researcher),
        ("sam", Role::Staff),
        ("ada", Role::Admin),
    ] {
        add_user(&app, name, role).await;
    }
    let meter = app.meter().await;
    let (status, body) = app
        .post(ADMIN, "/api/v1/nodes", &json!({"name": "n2", "site": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let node = body["token"].as_str().expect("token").to_owned();
    let t0 = Utc::now() - Duration::minutes(10);
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"id": "r1", "user": "alice", "start": t0, "site": "s1",
                    "allocations": [{"node": "n2", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut callers = vec![("anonymous", String::new())];
    for name in ["alice", "bob", "sam", "ada"] {
        callers.push((name, api_token(&app, name).await));
    }
    callers.push(("node", node));
    callers.push(("meter", meter));
    let (status, body) = app
        .post(ADMIN, "/api/v1/sites/s1/write-token", &json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    callers.push(("site", body["token"].as_str().expect("token").to_owned()));

    let gpu_batch = json!({"gpus": [{"index": 0, "uuid": "GPU-m-0", "model": "A100"}],
        "samples": [{"time": t0, "gpu": 0, "power_w": 100.0}]});
    let readings = json!({"readings": [{"time": t0, "it_kw": 100.0, "total_kw": 120.0}]});
    let progress = json!({"time": t0, "step": 1, "metrics": {"loss": 2.0}});
    enum Body {
        None,
        Json(Value),
        Form(Vec<(&'static str, String)>),
        Csv(&'static str),
        Snappy(Vec<u8>),
    }
    // The bodies the table names (`-`: none).
    let bodies: std::collections::HashMap<&str, Body> = [
        ("gpu_batch", Body::Json(gpu_batch)),
        ("readings", Body::Json(readings)),
        ("new_job", Body::Json(json!({"id": "j-{who}", "user": "alice", "start": t0, "allocations": [{"node": "n2", "gpus": [0]}]}))),
        ("others_tags", Body::Json(json!({"id": "r1", "user": "alice", "start": t0, "tags": {"workload": "evil"}, "allocations": [{"node": "n2", "gpus": [0]}]}))),
        ("finished_job", Body::Json( json!({"id": "done-{who}", "user": "alice", "start": t0, "end": t0, "allocations": [{"node": "n2", "gpus": [0]}]}), )),
        ("end", Body::Json(json!({"end": Utc::now()}))),
        ("progress", Body::Json(progress)),
        ("sites", Body::Json(json!({"name": "s-{who}", "timezone": "UTC"}))),
        ("site_settings", Body::Json(json!({"carbon_g_per_kwh": 300.0}))),
        ("carbon_csv", Body::Csv("time,g_per_kwh\n2026-01-01T00:00:00Z,300\n")),
        ("remote_write", Body::Snappy(remote_write_of_n2(t0))),
        ("nodes", Body::Json(json!({"name": "n-{who}", "site": "s1"}))),
        ("meters", Body::Json(json!({"name": "m-{who}", "site": "s1", "category": "PUE2"}))),
        ("users", Body::Json(json!({"name": "u-{who}", "role": "researcher", "password": PASSWORD}))),
        ("tokens_form", Body::Form(vec![("label", "matrix".into())])),
        ("password_form", Body::Form(vec![ ("current", "not it".into()), ("new", "another long password".into()), ])),
        ("empty_form", Body::Form(vec![])),
        ("users_form", Body::Form(vec![ ("name", "f-{who}".into()), ("role", "researcher".into()), ("password", PASSWORD.into()), ])),
        ("bob_form", Body::Form(vec![("role", "researcher".into())])),
        ("sites_form", Body::Form(vec![ ("name", "fs-{who}".into()), ("timezone", "UTC".into()), ])),
        ("nodes_form", Body::Form(vec![("name", "fn-{who}".into()), ("site", "s1".into())])),
        ("meters_form", Body::Form(vec![ ("name", "fm-{who}".into()), ("site", "s1".into()), ("category", "PUE2".into()), ])),
        ("budget", Body::Json(json!({"kwh_per_month": 100.0}))),
        ("budget_form", Body::Form(vec![("project", "pf-{who}".into()), ("kwh_per_month", "50".into())])),
        ("site_form", Body::Form(vec![("carbon_g_per_kwh", "300".into())])),
        ("statement_json", Body::Json(json!({"scope": "forged"}))),
        ("contract", Body::Json(json!({"valid_from": "2030-01-01T00:00:00Z", "valid_to": "2030-01-01T01:00:00Z", "g_per_kwh": 10.0, "instrument": "matrix {who}"}))),
        ("embodied", Body::Json(json!({"kg_per_gpu_hour": 0.01, "source": "matrix"}))),
        ("meter_nodes", Body::Json(json!({"nodes": []}))),
    ]
    .into_iter()
    .collect();
    // One row per route and body: the answer each kind of caller gets (2xx, a status, `login`: a
    // redirect to the sign-in page, `in`: signed in and redirected on). `{who}` in a path or body is the
    // caller's name, so that what one caller creates does not collide with the next.
    let table = "
        # method, path, body (`-`: none), and the answer to each caller:
        #                                                                anonymous alice bob   sam   ada   node  meter site
        # Public.
        GET    /healthz                                    -             2xx       2xx   2xx   2xx   2xx   2xx   2xx   2xx
        GET    /readyz                                     -             2xx       2xx   2xx   2xx   2xx   2xx   2xx   2xx
        # Operators' counters: the metrics or admin token only (tested in hardening.rs and e2e).
        GET    /metrics                                    -             401       401   401   401   401   401   401   401
        GET    /static/style.css                           -             2xx       2xx   2xx   2xx   2xx   2xx   2xx   2xx
        GET    /login                                      -             2xx       2xx   2xx   2xx   2xx   2xx   2xx   2xx
        # Writes of collectors.
        POST   /api/v1/ingest/gpu                          gpu_batch     401       403   403   403   in    2xx   403   403
        POST   /api/v1/write                               remote_write  401       403   403   403   in    2xx   403   2xx
        POST   /api/v1/ingest/facility                     readings      401       403   403   403   in    403   2xx   403
        POST   /api/v1/jobs                                new_job       401       403   403   403   in    2xx   403   403
        # A node registers its own part of a job running now: another's tags and a finished job
        # are refused (a node could rewrite any job it knew the id of).
        POST   /api/v1/jobs                                others_tags   401       403   403   403   in    403   403   403
        POST   /api/v1/jobs                                finished_job  401       403   403   403   in    403   403   403
        POST   /api/v1/jobs/r1/end                         end           401       403   403   403   2xx   2xx   403   403
        # Jobs: researchers see their own.
        GET    /api/v1/jobs                                -             401       2xx   2xx   2xx   2xx   403   403   403
        GET    /api/v1/jobs.csv                            -             401       2xx   2xx   2xx   2xx   403   403   403
        GET    /api/v1/jobs/a1                             -             401       2xx   404   2xx   2xx   403   403   403
        POST   /api/v1/jobs/a1/progress                    progress      401       2xx   404   403   2xx   403   403   403
        GET    /api/v1/jobs/a1/progress                    -             401       2xx   404   2xx   2xx   403   403   403
        GET    /api/v1/powercap/comparison?tag=workload:x  -             401       in    in    2xx   2xx   403   403   403
        GET    /api/v1/statement                           -             401       2xx   2xx   2xx   2xx   403   403   403
        GET    /api/v1/me                                  -             401       2xx   2xx   2xx   2xx   2xx   2xx   2xx
        # Sites and PUE: everyone signed in reads; admins write.
        GET    /api/v1/sites                               -             401       2xx   2xx   2xx   2xx   403   403   403
        GET    /api/v1/sites/s1/pue/variation              -             401       2xx   2xx   2xx   2xx   403   403   403
        GET    /api/v1/sites/s1/pue/variation.csv          -             401       2xx   2xx   2xx   2xx   403   403   403
        GET    /api/v1/sites/s1/pue/hourly                 -             401       2xx   2xx   2xx   2xx   403   403   403
        GET    /api/v1/sites/s1/pue/daily                  -             401       2xx   2xx   2xx   2xx   403   403   403
        GET    /api/v1/sites/s1/pue/recent                 -             401       2xx   2xx   2xx   2xx   403   403   403
        GET    /api/v1/sites/s1/contracts                  -             401       2xx   2xx   2xx   2xx   403   403   403
        POST   /api/v1/sites/s1/contracts                  contract      401       403   403   403   2xx   403   403   403
        DELETE /api/v1/sites/s1/contracts?valid_from=2031-01-01T00:00:00Z - 401  403   403   403   404   403   403   403
        GET    /api/v1/gpu-models/embodied                 -             401       2xx   2xx   2xx   2xx   403   403   403
        PUT    /api/v1/meters/m1/nodes                     meter_nodes   401       403   403   403   2xx   403   403   403
        GET    /api/v1/meters/m1/calibration               -             401       403   403   2xx   2xx   403   403   403
        PUT    /api/v1/gpu-models/matrix-gpu/embodied      embodied      401       403   403   403   2xx   403   403   403
        GET    /api/v1/sites/s1/pue/advice                 -             401       in    in    in    in    403   403   403
        POST   /api/v1/sites                               sites         401       403   403   403   2xx   403   403   403
        PUT    /api/v1/sites/s1                            site_settings 401       403   403   403   2xx   403   403   403
        POST   /api/v1/sites/s1/carbon                     carbon_csv    401       403   403   403   2xx   403   403   403
        # Where the energy went: everyone signed in (site totals); idle GPUs by user: staff.
        GET    /api/v1/sites/s1/energy                     -             401       2xx   2xx   2xx   2xx   403   403   403
        GET    /api/v1/waste                               -             401       403   403   2xx   2xx   403   403   403
        # Budgets: everyone reads (researchers their projects); admins set them.
        GET    /api/v1/projects                            -             401       2xx   2xx   2xx   2xx   403   403   403
        PUT    /api/v1/projects/p-{who}/budget             budget        401       403   403   403   2xx   403   403   403
        # Fleet: staff read, admins write.
        GET    /api/v1/nodes                               -             401       403   403   2xx   2xx   403   403   403
        POST   /api/v1/nodes                               nodes         401       403   403   403   2xx   403   403   403
        GET    /api/v1/meters                              -             401       403   403   2xx   2xx   403   403   403
        POST   /api/v1/meters                              meters        401       403   403   403   2xx   403   403   403
        DELETE /api/v1/meters/m1/readings?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z  -             401       403   403   403   2xx   403   403   403
        GET    /api/v1/users                               -             401       403   403   403   2xx   403   403   403
        POST   /api/v1/users                               users         401       403   403   403   2xx   403   403   403
        GET    /api/v1/no-such-route                       -             404       404   404   404   404   404   404   404
        # Pages: sign in first; collector tokens read none.
        GET    /                                           -             login     303   303   303   303   login login login
        GET    /jobs                                       -             login     2xx   2xx   2xx   2xx   403   403   403
        GET    /jobs.csv                                   -             login     2xx   2xx   2xx   2xx   403   403   403
        GET    /jobs/a1                                    -             login     2xx   404   2xx   2xx   403   403   403
        GET    /jobs/a1/power.svg                          -             login     2xx   404   2xx   2xx   403   403   403
        GET    /jobs/a1/progress/loss                      -             login     2xx   404   2xx   2xx   403   403   403
        GET    /sites                                      -             login     2xx   2xx   2xx   2xx   403   403   403
        GET    /sites/s1/pue                               -             login     2xx   2xx   2xx   2xx   403   403   403
        GET    /sites/s1/energy                            -             login     2xx   2xx   2xx   2xx   403   403   403
        GET    /statement                                  -             login     2xx   2xx   2xx   2xx   403   403   403
        # A statement's check is anyone's who holds it: no sign-in, and none issued under this id.
        GET    /s/0123456789abcdef01234567                  -             404       404   404   404   404   404   404   404
        GET    /meters/m1/calibration                      -             login     403   403   2xx   2xx   403   403   403
        POST   /api/v1/statements/verify                   statement_json 400      400   400   400   400   400   400   400
        GET    /powercap                                   -             login     2xx   2xx   2xx   2xx   403   403   403
        GET    /account                                    -             login     2xx   2xx   2xx   2xx   403   403   403
        POST   /account/tokens                             tokens_form   login     403   403   403   403   403   403   403
        POST   /account/password                           password_form login     in    in    in    in    403   403   403
        POST   /account/tokens/999999/revoke               empty_form    login     in    in    in    in    403   403   403
        # Signing out ends a session; a bearer token goes on working (the rows below use them).
        POST   /logout                                     empty_form    login     login login login login 403   403   403
        GET    /admin                                      -             login     403   403   403   2xx   403   403   403
        POST   /admin/users                                users_form    login     403   403   403   2xx   403   403   403
        POST   /admin/users/bob                            bob_form      login     403   403   403   2xx   403   403   403
        POST   /admin/sites                                sites_form    login     403   403   403   2xx   403   403   403
        POST   /admin/nodes                                nodes_form    login     403   403   403   in    403   403   403
        POST   /admin/meters                               meters_form   login     403   403   403   in    403   403   403
        POST   /admin/nodes/n1/token                       empty_form    login     403   403   403   in    403   403   403
        GET    /admin/nodes/n1/token                       -             login     403   403   403   2xx   403   403   403
        POST   /admin/sites/s1                             site_form     login     403   403   403   2xx   403   403   403
        POST   /admin/budgets                              budget_form   login     403   403   403   2xx   403   403   403
        # A site's write token (its Prometheus): admins make them.
        POST   /api/v1/sites/s-ada/write-token             -             401       403   403   403   2xx   403   403   403
    ";
    let table: Vec<(&str, &str, &Body, String)> = table
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            let body = match cells[2] {
                "-" => &Body::None,
                name => bodies
                    .get(name)
                    .unwrap_or_else(|| panic!("no body '{name}'")),
            };
            (cells[0], cells[1], body, cells[3..].join(" "))
        })
        .collect();

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (method, path, body, expected) in &table {
        let expected: Vec<&str> = expected.split(' ').collect();
        assert_eq!(
            expected.len(),
            callers.len(),
            "{method} {path}: a column per caller"
        );
        for ((who, token), want) in callers.iter().zip(expected) {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut r = http.request(method.clone(), format!("{}{path}", app.base));
            if !token.is_empty() {
                r = r.bearer_auth(token);
            }
            r = match body {
                Body::None => r,
                Body::Json(v) => r.json(
                    &serde_json::from_str::<Value>(&v.to_string().replace("{who}", who))
                        .expect("json"),
                ),
                Body::Form(fields) => r.form(
                    &fields
                        .iter()
                        .map(|(k, v)| (*k, v.replace("{who}", who)))
                        .collect::<Vec<_>>(),
                ),
                Body::Csv(text) => r.header("content-type", "text/csv").body(*text),
                Body::Snappy(bytes) => r
                    .header("content-type", "application/x-protobuf")
                    .header("content-encoding", "snappy")
                    .body(bytes.clone()),
            };
            let response = r.send().await.expect("request");
            let status = response.status();
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let text = response.text().await.unwrap_or_default();
            checked += 1;
            if !outcome_matches(want, status, &location) {
                wrong.push(format!(
                    "{method} {path} as {who}: expected {want}, got {status} {location} {}",
                    text.chars().take(120).collect::<String>()
                ));
            }
            // A refusal says why, in JSON on the API.
            if path.starts_with("/api/") && matches!(status.as_u16(), 401 | 403 | 404) {
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if !body["error"].is_string() {
                    wrong.push(format!(
                        "{method} {path} as {who}: {status} without a JSON error: {text}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} answers differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked > 300);
}
