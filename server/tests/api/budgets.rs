//! Projects' budgets: set by admins, checked field by field; crossing 80 % and 100 % posts the
//! project's webhook once each (a real HTTP receiver on loopback), retried when the receiver fails;
//! members see a banner, others do not.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode as AxumStatus;
use chrono::{Duration, DurationRound};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_server::db::users::Role;

use crate::common::*;

/// A webhook receiver: answers 500 to its first request and 200 after; keeps every body.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let body: Value = serde_json::from_slice(&body).expect("a JSON body");
                let mut seen = seen.lock().expect("lock");
                seen.push(body);
                if seen.len() == 1 {
                    AxumStatus::INTERNAL_SERVER_ERROR
                } else {
                    AxumStatus::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn crossing_80_and_100_percent_posts_once_each_and_members_see_a_banner(db: PgPool) {
    // The receiver listens on loopback: an internal receiver the site allows.
    let app = App::spawn_with(db, |c| {
        c.webhook_allow = vec!["127.0.0.1".parse().expect("allowed")]
    })
    .await;
    let token = app.node().await;
    add_user(&app, "alice", Role::Researcher).await;
    add_user(&app, "bob", Role::Researcher).await;
    add_user(&app, "sam", Role::Staff).await;
    let (hook, got) = receiver().await;

    // Refusals name their field; only admins set budgets.
    for (body, field) in [
        (
            json!({"kwh_per_month": 1.0, "webhook_url": "ftp://example.org/x"}),
            "webhook_url",
        ),
        (
            json!({"kwh_per_month": 1.0, "webhook_url": "not a url"}),
            "webhook_url",
        ),
        (json!({"kwh_per_month": -1.0}), "kwh_per_month"),
        (json!({"co2e_kg_per_month": 1e300}), "co2e_kg_per_month"),
        (json!({"webhook_url": hook}), "kwh_per_month"),
    ] {
        let r = app
            .http
            .put(format!("{}/api/v1/projects/atlas/budget", app.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("put");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let e: Value = r.json().await.expect("json");
        assert!(
            e["error"].as_str().expect("error").starts_with(field),
            "{body}: {e}"
        );
    }
    let alice = api_token(&app, "alice").await;
    let put = |token: String, body: Value| {
        let r = app
            .http
            .put(format!("{}/api/v1/projects/atlas/budget", app.base))
            .bearer_auth(token)
            .json(&body);
        async move { r.send().await.expect("put") }
    };
    let r = put(alice.clone(), json!({"kwh_per_month": 1.0})).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Alice's job in atlas: 60 s of GPU 0 at 200 W and GPU 1 at 150 W (this month: started in the
    // last hour but one, whose figures the overview's bars show once rolled up).
    let t0 = minute_aligned_past(0)
        .duration_trunc(Duration::hours(1))
        .expect("trunc")
        - Duration::minutes(10);
    let first = app
        .new_job("a1")
        .user("alice")
        .tag("project", "atlas")
        .samples(&token, samples(t0, 60))
        .create()
        .await;
    let used = first.it_energy_kwh;
    assert!(used > 0.0);
    // A budget the job has used 85 % of.
    let budget = used / 0.85;
    let r = put(
        ADMIN.to_owned(),
        json!({"kwh_per_month": budget, "webhook_url": hook}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let run = || wattlas_server::maintenance::budgets_once(&app.state);
    run().await.expect("budgets");
    assert_eq!(
        got.lock().expect("lock").len(),
        1,
        "posted, refused by the receiver"
    );
    run().await.expect("budgets");
    run().await.expect("budgets");
    {
        let got = got.lock().expect("lock");
        assert_eq!(got.len(), 2, "retried once, then delivered: {got:?}");
        assert_eq!(got[0], got[1], "the same crossing");
        let p = &got[1];
        assert_eq!(p["project"], "atlas");
        assert_eq!(p["kind"], "energy");
        assert_eq!(p["threshold_pct"], 80);
        assert_eq!(p["unit"], "kWh");
        assert!((p["used"].as_f64().expect("used") - used).abs() < 1e-12);
        assert!(
            p["text"]
                .as_str()
                .expect("text")
                .starts_with("Project atlas has used 85 % of its IT energy budget for "),
            "{p}"
        );
    }

    // Alice sees the banner on her jobs page; bob, with no job in atlas, does not.
    let (_, page) = app
        .page(
            &crate::sign_in::browser(&app, "alice").await.cookie,
            "/jobs",
        )
        .await;
    assert!(
        page.contains("<p class=\"warning\" role=\"status\">Project atlas has used 85 % of its IT energy budget for "),
        "{page}"
    );
    let (_, page) = app
        .page(&crate::sign_in::browser(&app, "bob").await.cookie, "/jobs")
        .await;
    assert!(!page.contains("Project atlas"), "{page}");
    // The project's page (its jobs list) says its use against the budget to whoever opens it.
    let (_, page) = app.get_text(ADMIN, "/jobs?tag=project:atlas").await;
    assert!(
        page.contains("<p class=\"note\">Project atlas this month (")
            && page.contains("IT energy budget (85 %)"),
        "{page}"
    );

    // A second job takes atlas past 100 %: one more post, at 100.
    app.new_job("a2")
        .user("bob")
        .tag("project", "atlas")
        .gpus(&[1])
        .start(t0 + Duration::seconds(10))
        .end(t0 + Duration::seconds(50))
        .create()
        .await;
    run().await.expect("budgets");
    run().await.expect("budgets");
    {
        let got = got.lock().expect("lock");
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[2]["threshold_pct"], 100);
    }

    // Staff see every project and the month's crossings, delivered; researchers their own projects.
    let sam = api_token(&app, "sam").await;
    let (status, body) = app.get(&sam, "/api/v1/projects").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let atlas = &body["projects"][0];
    assert_eq!(atlas["project"], "atlas");
    assert_eq!(atlas["jobs"], 2);
    assert!(
        atlas["energy_pct"].as_f64().expect("pct") >= 100.0,
        "{body}"
    );
    // The use carries its jobs' bounds added (issue 35).
    let (_, jobs) = app.get(&sam, "/api/v1/jobs?tag=project:atlas").await;
    let added = |field: &str| -> f64 {
        jobs["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j[field].as_f64().expect("a job's bound"))
            .sum()
    };
    for (field, job_field) in [
        ("used_kwh_low", "it_energy_kwh_low"),
        ("used_kwh_high", "it_energy_kwh_high"),
    ] {
        let got = atlas[field].as_f64().expect("the use's bound");
        assert!(
            (got - added(job_field)).abs() < 1e-12,
            "{field}: {body} {jobs}"
        );
    }
    assert!(
        atlas["used_kwh_low"].as_f64() < atlas["used_kwh"].as_f64()
            && atlas["used_kwh"].as_f64() < atlas["used_kwh_high"].as_f64()
    );
    let alerts = body["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 2, "{body}");
    assert!(
        alerts.iter().all(|a| a["delivered_at"].is_string()),
        "{body}"
    );
    assert_eq!(
        alerts[1]["attempts"], 2,
        "the 80 % crossing took two attempts"
    );
    // The overview's project bars say each budget's use (rolled up: the page's figures are to the
    // current hour, after both jobs).
    wattlas_server::maintenance::rollup_settled_before(
        &app.state,
        chrono::Utc::now() + Duration::hours(1),
    )
    .await
    .expect("rollup");
    let pct = atlas["energy_pct"].as_f64().expect("pct");
    let (_, page) = app
        .page(
            &crate::sign_in::browser(&app, "sam").await.cookie,
            "/overview",
        )
        .await;
    let want = format!("<td>{pct:.0} % of {:.1} Wh</td>", budget * 1000.0);
    assert!(page.contains(&want), "{want} in {page}");
    // Each bar with its jobs' bounds (both jobs wholly in the month: their bounds whole).
    let want = format!(
        "<span class=\"basis\">between {:.1} Wh and {:.1} Wh</span>",
        added("it_energy_kwh_low") * 1000.0,
        added("it_energy_kwh_high") * 1000.0
    );
    assert!(page.contains(&want), "{want} in {page}");
    let (_, body) = app.get(&alice, "/api/v1/projects").await;
    assert_eq!(body["projects"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["alerts"], json!([]));
    add_user(&app, "carol", Role::Researcher).await;
    let carol = api_token(&app, "carol").await;
    let (_, body) = app.get(&carol, "/api/v1/projects").await;
    assert_eq!(body["projects"], json!([]), "not a member: {body}");
}

/// Sets atlas's budget with a webhook as the admin: the status and body.
async fn set_hook(app: &App, url: &str) -> (StatusCode, Value) {
    app.put(
        ADMIN,
        "/api/v1/projects/atlas/budget",
        &json!({"kwh_per_month": 1.0, "webhook_url": url}),
    )
    .await
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn webhooks_reach_no_internal_address_and_their_errors_scan_nothing(db: PgPool) {
    // Issue 33, N6: budget webhooks reached loopback and the database's port, and staff read each
    // attempt's error, URL path (a chat webhook's secret) included: a port scanner.
    let app = App::spawn(db.clone()).await;
    let (hook, got) = receiver().await;
    let db_port = db.connect_options().get_port();
    for url in [
        hook.clone(),
        format!("http://127.0.0.1:{db_port}/"),
        "http://localhost/".to_owned(),
        "http://2130706433/".to_owned(),
        "http://0.0.0.0:8080/".to_owned(),
        "http://[::1]/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.7/hook".to_owned(),
    ] {
        let (status, body) = set_hook(&app, &url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        let error = body["error"].as_str().expect("error");
        assert!(error.starts_with("webhook_url: "), "{url}: {error}");
        assert!(
            error.contains("WATTLAS_WEBHOOK_ALLOW") || error.contains("own"),
            "{error}"
        );
    }

    // A destination stored before (or resolving elsewhere since) is checked again at delivery: the
    // receiver gets nothing, and staff read why without the URL's path.
    let secret = "T0001/B0002/s3cr3tXYZ";
    sqlx::query(
        "insert into project_budgets (project, kwh_per_month, webhook_url) values ('atlas', 0.000001, $1)",
    )
    .bind(format!("{hook}/{secret}"))
    .execute(&db)
    .await
    .expect("a budget stored as an older release allowed");
    let token = app.node().await;
    app.new_job("1")
        .tag("project", "atlas")
        .samples(&token, samples(minute_aligned_past(3), 60))
        .create()
        .await;
    wattlas_server::maintenance::refresh_job_energy(&app.state, 100)
        .await
        .expect("summaries");
    wattlas_server::maintenance::budgets_once(&app.state)
        .await
        .expect("budgets");
    assert!(
        got.lock().expect("lock").is_empty(),
        "nothing reached loopback"
    );
    let (_, body) = app.get(ADMIN, "/api/v1/projects").await;
    let alerts = body["alerts"].as_array().expect("alerts");
    assert!(!alerts.is_empty(), "{body}");
    for a in alerts {
        let error = a["last_error"].as_str().expect("an error");
        assert!(error.starts_with("refused: "), "{error}");
        assert!(
            !error.contains(secret) && !error.contains("/hook"),
            "{error}"
        );
    }
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn an_allowed_receiver_that_is_down_is_reported_without_its_url(db: PgPool) {
    let secret = "T0001/B0002/s3cr3tXYZ";
    let app = App::spawn_with(db, |c| {
        c.webhook_allow = vec!["127.0.0.0/8".parse().expect("allowed")]
    })
    .await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        l.local_addr().expect("addr").port()
    };
    let (status, body) = set_hook(&app, &format!("http://127.0.0.1:{closed}/{secret}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = app.node().await;
    app.new_job("1")
        .tag("project", "atlas")
        .samples(&token, samples(minute_aligned_past(3), 60))
        .create()
        .await;
    // A budget its job has used up.
    sqlx::query("update project_budgets set kwh_per_month = 0.000001")
        .execute(&app.state.db)
        .await
        .expect("budget");
    wattlas_server::maintenance::refresh_job_energy(&app.state, 100)
        .await
        .expect("summaries");
    wattlas_server::maintenance::budgets_once(&app.state)
        .await
        .expect("budgets");
    let (_, body) = app.get(ADMIN, "/api/v1/projects").await;
    let alerts = body["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 2, "{body}");
    for a in alerts {
        assert_eq!(a["last_error"], "no answer: could not connect", "{body}");
    }
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn the_budget_form_keeps_what_it_does_not_show(db: PgPool) {
    // Issue 31: saving the form with only the kWh field filled removed the CO2e budget and the
    // webhook, so the 100 % crossing was never posted.
    let app = App::spawn_with(db, |c| {
        c.webhook_allow = vec!["127.0.0.1".parse().expect("allowed")]
    })
    .await;
    add_user(&app, "root", Role::Admin).await;
    let admin = crate::sign_in::browser(&app, "root").await;
    let (_, page) = app.page(&admin.cookie, "/admin").await;
    let csrf = crate::sign_in::hidden(&page, "csrf");
    let form = |fields: Vec<(&'static str, &str)>| {
        let mut fields: Vec<(String, String)> = fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        fields.push(("csrf".into(), csrf.clone()));
        fields.push(("project".into(), "atlas".into()));
        let r = app
            .http
            .post(format!("{}/admin/budgets", app.base))
            .header("cookie", format!("wattlas_session={}", admin.cookie))
            .form(&fields);
        async move {
            let r = r.send().await.expect("post");
            (r.status(), r.text().await.expect("text"))
        }
    };
    let budget = || async {
        let (_, body) = app.get(ADMIN, "/api/v1/projects").await;
        body["projects"][0].clone()
    };
    let (status, page) = form(vec![
        ("kwh_per_month", "50"),
        ("co2e_kg_per_month", "20"),
        ("webhook_url", "http://127.0.0.1:9/hook"),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // Only the kWh changed: the rest stays.
    let (status, page) = form(vec![
        ("kwh_per_month", "80"),
        ("co2e_kg_per_month", ""),
        ("webhook_url", ""),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let b = budget().await;
    assert_eq!(b["kwh_per_month"], 80.0, "{b}");
    assert_eq!(b["co2e_kg_per_month"], 20.0, "{b}");
    assert_eq!(b["webhook"], true, "{b}");
    // "none" removes one.
    let (status, page) = form(vec![
        ("kwh_per_month", ""),
        ("co2e_kg_per_month", "none"),
        ("webhook_url", "none"),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let b = budget().await;
    assert_eq!(b["kwh_per_month"], 80.0, "{b}");
    assert!(b["co2e_kg_per_month"].is_null(), "{b}");
    assert_eq!(b["webhook"], false, "{b}");
}
