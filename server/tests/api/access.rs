//! Who may see what: sign-in, sessions, CSRF, the trusted proxy header, and researcher isolation by
//! page, chart, export and API, against the real server and TimescaleDB.

use crate::common::*;
use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_server::db::users::Role;

/// A signed-in browser: its session cookie.
struct Browser {
    cookie: String,
}

/// The value a `Set-Cookie` header of `r` gives cookie `name`, with the header's attributes.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|h| h.to_str().ok())
        .find(|h| h.starts_with(&format!("{name}=")))
        .map(|h| {
            let value = h[name.len() + 1..]
                .split(';')
                .next()
                .unwrap_or("")
                .to_owned();
            (value, h.to_owned())
        })
}

/// The value of hidden input `name` in a page.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.find(&marker).expect("hidden input") + marker.len();
    page[at..].split('"').next().unwrap_or("").to_owned()
}

/// Signs in through the form as a browser would: GET the form (double-submit cookie), POST it.
async fn sign_in(app: &App, name: &str, password: &str) -> reqwest::Response {
    sign_in_as(app, None, name, password).await
}

/// `sign_in` from a client behind the trusted proxy (its address in X-Forwarded-For).
async fn sign_in_from(app: &App, client: &str, name: &str, password: &str) -> reqwest::Response {
    sign_in_as(app, Some(client), name, password).await
}

async fn sign_in_as(
    app: &App,
    client: Option<&str>,
    name: &str,
    password: &str,
) -> reqwest::Response {
    let form = app
        .http
        .get(format!("{}/login?next=/jobs", app.base))
        .send()
        .await
        .expect("login form");
    let (login_cookie, _) = set_cookie(&form, "wattlas_login").expect("login cookie");
    let csrf = hidden(&form.text().await.expect("text"), "csrf");
    let mut post = app
        .http
        .post(format!("{}/login", app.base))
        .header("cookie", format!("wattlas_login={login_cookie}"));
    if let Some(client) = client {
        post = post.header("x-forwarded-for", client);
    }
    post.form(&[
        ("csrf", csrf.as_str()),
        ("next", "/jobs"),
        ("username", name),
        ("password", password),
    ])
    .send()
    .await
    .expect("login")
}

async fn browser(app: &App, name: &str) -> Browser {
    let r = sign_in(app, name, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{name} signs in");
    let (cookie, _) = set_cookie(&r, "wattlas_session").expect("session cookie");
    Browser { cookie }
}

impl App {
    async fn page(&self, cookie: &str, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("wattlas_session={cookie}"))
            .send()
            .await
            .expect("page");
        (r.status(), r.text().await.expect("text"))
    }
}

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
    assert!(!filtered.contains("/jobs/b1") && filtered.contains("0 jobs"));
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
    assert_eq!(jobs, 1, "alice's comparison holds alice's job only");
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
    assert!(
        comparisons.contains("workload:x"),
        "staff compare both jobs"
    );
    let (status, _) = app.page(&sam.cookie, "/api/v1/nodes").await;
    assert_eq!(status, StatusCode::OK, "staff see the facility's nodes");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn sign_in_sessions_and_csrf(db: PgPool) {
    let app = App::spawn(db).await;
    add_user(&app, "alice", Role::Researcher).await;

    // Anonymous pages lead to sign-in, coming back after.
    let r = app
        .http
        .get(format!("{}/jobs?state=running", app.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"],
        "/login?next=%2Fjobs%3Fstate%3Drunning"
    );
    let (status, body) = app.get("", "/api/v1/jobs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Wrong password and unknown user: the same answer, and no session.
    for (name, pw) in [("alice", "not the password"), ("nobody", PASSWORD)] {
        let r = sign_in(&app, name, pw).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(set_cookie(&r, "wattlas_session").is_none());
        assert!(r
            .text()
            .await
            .expect("text")
            .contains("Wrong user name or password."));
    }
    // Without the form's double-submit cookie (a cross-site post), sign-in is refused.
    let r = app
        .http
        .post(format!("{}/login", app.base))
        .form(&[("csrf", "x"), ("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(&r, "wattlas_session").is_none());

    let r = sign_in(&app, "alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/jobs");
    let (cookie, attributes) = set_cookie(&r, "wattlas_session").expect("session");
    for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(attributes.contains(attr), "{attributes} has {attr}");
    }
    let stored: Vec<u8> = sqlx::query_scalar("select token_sha256 from sessions")
        .fetch_one(&app.state.db)
        .await
        .expect("session row");
    assert_ne!(
        stored,
        cookie.as_bytes(),
        "the database holds a digest only"
    );

    // Forms need the session's CSRF token.
    let (_, account) = app.page(&cookie, "/account").await;
    let csrf = hidden(&account, "csrf");
    let post = |path: &'static str, form: Vec<(&'static str, String)>| {
        let http = app.http.clone();
        let url = format!("{}{path}", app.base);
        let cookie = cookie.clone();
        async move {
            let r = http
                .post(url)
                .header("cookie", format!("wattlas_session={cookie}"))
                .form(&form)
                .send()
                .await
                .expect("post");
            (r.status(), r.text().await.expect("text"))
        }
    };
    let (status, _) = post("/account/tokens", vec![("label", "nb".into())]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    let (status, _) = post(
        "/account/tokens",
        vec![("label", "nb".into()), ("csrf", "csrf_forged".into())],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a wrong CSRF token");
    let (status, page) = post(
        "/account/tokens",
        vec![("label", "notebook".into()), ("csrf", csrf.clone())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let at = page.find("id=\"new-token\">").expect("token shown") + "id=\"new-token\">".len();
    let token = page[at..].split('<').next().expect("token").to_owned();
    let (status, me) = app.get(&token, "/api/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        me,
        json!({"kind": "user", "name": "alice", "role": "researcher"})
    );

    // Sign-in never redirects off the site: browsers drop tabs and newlines, so `/<TAB>/evil` is
    // `//evil` to them (it passed the check before).
    for next in [
        "//evil.example/",
        "/%09/evil.example",
        "/%0a/evil.example",
        "/jobs/..//evil.example",
        "/\\evil.example",
    ] {
        let form = app
            .http
            .get(format!("{}/login?next={next}", app.base))
            .send()
            .await
            .expect("form");
        let page = form.text().await.expect("text");
        assert_eq!(hidden(&page, "next"), "/jobs", "{next}");
    }

    // Signing out ends the session on the server, not just in the browser.
    let (status, _) = post("/logout", vec![("csrf", csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = app.page(&cookie, "/jobs").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the old cookie is dead");
    let (status, _) = app.get(&token, "/api/v1/me").await;
    assert_eq!(status, StatusCode::OK, "API tokens outlive sessions");

    // A disabled user's sessions and tokens stop working.
    let alice = browser(&app, "alice").await;
    assert!(
        wattlas_server::db::users::update(&app.state.db, "alice", Role::Researcher, true)
            .await
            .expect("disable")
    );
    let (status, _) = app.page(&alice.cookie, "/jobs").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = app.get(&token, "/api/v1/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_trusted_proxy_header_signs_in_from_trusted_proxies_only(db: PgPool) {
    // No address is trusted unless named.
    let untrusted = App::spawn_with(db.clone(), |c| {
        c.trusted_user_header = Some("X-Remote-User".into());
    })
    .await;
    let r = untrusted
        .http
        .get(format!("{}/jobs", untrusted.base))
        .header("x-remote-user", "carol")
        .send()
        .await
        .expect("get");
    assert_ne!(r.status(), StatusCode::OK, "the default trusts no proxy");
    let app = App::spawn_with(db.clone(), |c| {
        c.trusted_user_header = Some("X-Remote-User".into());
        c.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
    })
    .await;
    let r = app
        .http
        .get(format!("{}/jobs", app.base))
        .header("x-remote-user", "carol")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        set_cookie(&r, "wattlas_session").is_some(),
        "a session for forms' CSRF token"
    );
    let page = r.text().await.expect("text");
    assert!(
        page.contains(">carol</a>") && page.contains("researcher"),
        "{page}"
    );
    let carol = wattlas_server::db::users::by_name(&app.state.db, "carol")
        .await
        .expect("query")
        .expect("created on first sight");
    assert_eq!((carol.role, carol.has_password), (Role::Researcher, false));

    // The same header from an address that is not a trusted proxy is refused, not ignored.
    let untrusting = App::spawn_with(db, |c| {
        c.trusted_user_header = Some("X-Remote-User".into());
        c.trusted_proxies = vec!["10.1.2.3".parse().expect("ip")];
    })
    .await;
    let r = untrusting
        .http
        .get(format!("{}/jobs", untrusting.base))
        .header("x-remote-user", "admin")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
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
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get(&second, "/api/v1/me").await.0, StatusCode::OK);
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
async fn sign_in_is_throttled_per_name_and_client_never_locked(db: PgPool) {
    // Behind the trusted proxy (loopback) every client is the address the proxy adds.
    let app = App::spawn_with(db, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")]
    })
    .await;
    add_user(&app, "alice", Role::Researcher).await;
    add_user(&app, "bob", Role::Researcher).await;
    let guesser = "203.0.113.66";
    for i in 0..wattlas_server::auth::limit::FREE {
        let r = sign_in_from(&app, guesser, "alice", &format!("guess {i}")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Past the free failures the guesser waits, longer each time; even the right password is not
    // checked now.
    let r = sign_in_from(&app, guesser, "alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert_eq!(retry, 1);
    let page = r.text().await.expect("page");
    assert!(
        page.contains("Too many failed sign-ins: try again in 1 second."),
        "{page}"
    );
    assert!(set_cookie_absent(&page));
    // The real user, elsewhere, is not locked out by the guesser; nor is another name.
    let r = sign_in_from(&app, "198.51.100.7", "alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = sign_in_from(&app, guesser, "bob", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // After the delay the guesser may try once more, then waits twice as long.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = sign_in_from(&app, guesser, "alice", "guess again").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = sign_in_from(&app, guesser, "alice", "and again").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "2");

    // Counted for the operators (tests/tests/e2e.rs parses the whole exposition).
    let (status, metrics) = app.get_text(ADMIN, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        r#"wattlas_sign_ins_total{outcome="accepted"} 2"#,
        r#"wattlas_sign_ins_total{outcome="limited"} 2"#,
        r#"wattlas_sign_ins_total{outcome="refused"} 6"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

/// 64 sign-ins at once with wrong passwords: at most as many Argon2 hashes run as there are cores
/// (19 MiB each), the rest answer 429 at once; the name's attempts are counted before hashing.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn concurrent_sign_ins_are_bounded_before_hashing(db: PgPool) {
    let app = App::spawn(db).await;
    add_user(&app, "alice", Role::Researcher).await;
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    // Forms first (each a double-submit cookie), then all 64 posts at once.
    let mut forms = Vec::new();
    for _ in 0..64 {
        let form = app
            .http
            .get(format!("{}/login?next=/jobs", app.base))
            .send()
            .await
            .expect("login form");
        let (cookie, _) = set_cookie(&form, "wattlas_login").expect("login cookie");
        let csrf = hidden(&form.text().await.expect("text"), "csrf");
        forms.push((cookie, csrf));
    }
    let before = rss();
    let mut posts = tokio::task::JoinSet::new();
    for (i, (cookie, csrf)) in forms.into_iter().enumerate() {
        let (http, url) = (app.http.clone(), format!("{}/login", app.base));
        posts.spawn(async move {
            http.post(url)
                .header("cookie", format!("wattlas_login={cookie}"))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("next", "/jobs"),
                    ("username", if i % 2 == 0 { "alice" } else { "nobody" }),
                    ("password", "wrong password here"),
                ])
                .send()
                .await
        });
    }
    let answers = posts.join_all().await;
    let growth_mb = rss().saturating_sub(before) as f64 / 1024.0;
    let mut refused = 0;
    for a in answers {
        let status = a.expect("answer").status();
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
        refused += usize::from(status == StatusCode::UNAUTHORIZED);
    }
    // Each name's first five failures are free and counted before hashing: at most 5 + 5 hashed.
    assert!(
        refused <= 2 * wattlas_server::auth::limit::FREE,
        "{refused} hashed"
    );
    assert!(refused >= 1, "some were checked");
    assert!(growth_mb < 100.0, "RSS grew {growth_mb:.0} MB");
}

/// The refusal page starts no session.
fn set_cookie_absent(page: &str) -> bool {
    !page.contains("wattlas_session")
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

    let gpu_batch = json!({"gpus": [{"index": 0, "uuid": "GPU-m-0", "model": "A100"}],
        "samples": [{"time": t0, "gpu": 0, "power_w": 100.0}]});
    let readings = json!({"readings": [{"time": t0, "it_kw": 100.0, "total_kw": 120.0}]});
    let progress = json!({"time": t0, "step": 1, "metrics": {"loss": 2.0}});
    enum Body {
        None,
        Json(Value),
        Form(Vec<(&'static str, String)>),
        Csv(&'static str),
    }
    // (method, path, body, expected per caller); `{who}` in a path or body is the caller's name, so that
    // what one caller creates does not collide with the next.
    let table: Vec<(&str, &str, Body, &str)> = vec![
        // Public.
        ("GET", "/healthz", Body::None, "2xx 2xx 2xx 2xx 2xx 2xx 2xx"),
        ("GET", "/readyz", Body::None, "2xx 2xx 2xx 2xx 2xx 2xx 2xx"),
        // Operators' counters: the metrics or admin token only (tested in api.rs and e2e).
        ("GET", "/metrics", Body::None, "401 401 401 401 401 401 401"),
        (
            "GET",
            "/static/style.css",
            Body::None,
            "2xx 2xx 2xx 2xx 2xx 2xx 2xx",
        ),
        ("GET", "/login", Body::None, "2xx 2xx 2xx 2xx 2xx 2xx 2xx"),
        // Writes of collectors.
        (
            "POST",
            "/api/v1/ingest/gpu",
            Body::Json(gpu_batch),
            "401 403 403 403 in 2xx 403",
        ),
        (
            "POST",
            "/api/v1/ingest/facility",
            Body::Json(readings),
            "401 403 403 403 in 403 2xx",
        ),
        (
            "POST",
            "/api/v1/jobs",
            Body::Json(json!({"id": "j-{who}", "user": "alice", "start": t0,
                              "allocations": [{"node": "n2", "gpus": [0]}]})),
            "401 403 403 403 in 2xx 403",
        ),
        // A node registers its own part of a job running now: another's tags and a finished job
        // are refused (a node could rewrite any job it knew the id of).
        (
            "POST",
            "/api/v1/jobs",
            Body::Json(json!({"id": "r1", "user": "alice", "start": t0,
                              "tags": {"workload": "evil"},
                              "allocations": [{"node": "n2", "gpus": [0]}]})),
            "401 403 403 403 in 403 403",
        ),
        (
            "POST",
            "/api/v1/jobs",
            Body::Json(
                json!({"id": "done-{who}", "user": "alice", "start": t0, "end": t0,
                              "allocations": [{"node": "n2", "gpus": [0]}]}),
            ),
            "401 403 403 403 in 403 403",
        ),
        (
            "POST",
            "/api/v1/jobs/r1/end",
            Body::Json(json!({"end": Utc::now()})),
            "401 403 403 403 2xx 2xx 403",
        ),
        // Jobs: researchers see their own.
        (
            "GET",
            "/api/v1/jobs",
            Body::None,
            "401 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/jobs.csv",
            Body::None,
            "401 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/jobs/a1",
            Body::None,
            "401 2xx 404 2xx 2xx 403 403",
        ),
        (
            "POST",
            "/api/v1/jobs/a1/progress",
            Body::Json(progress),
            "401 2xx 404 403 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/jobs/a1/progress",
            Body::None,
            "401 2xx 404 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/powercap/comparison?tag=workload:x",
            Body::None,
            "401 in in 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/statement",
            Body::None,
            "401 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/me",
            Body::None,
            "401 2xx 2xx 2xx 2xx 2xx 2xx",
        ),
        // Sites and PUE: everyone signed in reads; admins write.
        (
            "GET",
            "/api/v1/sites",
            Body::None,
            "401 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/sites/s1/pue/variation",
            Body::None,
            "401 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/sites/s1/pue/variation.csv",
            Body::None,
            "401 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/sites/s1/pue/hourly",
            Body::None,
            "401 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/sites/s1/pue/daily",
            Body::None,
            "401 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/sites/s1/pue/advice",
            Body::None,
            "401 in in in in 403 403",
        ),
        (
            "POST",
            "/api/v1/sites",
            Body::Json(json!({"name": "s-{who}", "timezone": "UTC"})),
            "401 403 403 403 2xx 403 403",
        ),
        (
            "PUT",
            "/api/v1/sites/s1",
            Body::Json(json!({"carbon_g_per_kwh": 300.0})),
            "401 403 403 403 2xx 403 403",
        ),
        (
            "POST",
            "/api/v1/sites/s1/carbon",
            Body::Csv("time,g_per_kwh\n2026-01-01T00:00:00Z,300\n"),
            "401 403 403 403 2xx 403 403",
        ),
        // Fleet: staff read, admins write.
        (
            "GET",
            "/api/v1/nodes",
            Body::None,
            "401 403 403 2xx 2xx 403 403",
        ),
        (
            "POST",
            "/api/v1/nodes",
            Body::Json(json!({"name": "n-{who}", "site": "s1"})),
            "401 403 403 403 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/meters",
            Body::None,
            "401 403 403 2xx 2xx 403 403",
        ),
        (
            "POST",
            "/api/v1/meters",
            Body::Json(json!({"name": "m-{who}", "site": "s1", "category": "PUE2"})),
            "401 403 403 403 2xx 403 403",
        ),
        (
            "DELETE",
            "/api/v1/meters/m1/readings?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z",
            Body::None,
            "401 403 403 403 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/users",
            Body::None,
            "401 403 403 403 2xx 403 403",
        ),
        (
            "POST",
            "/api/v1/users",
            Body::Json(json!({"name": "u-{who}", "role": "researcher", "password": PASSWORD})),
            "401 403 403 403 2xx 403 403",
        ),
        (
            "GET",
            "/api/v1/no-such-route",
            Body::None,
            "404 404 404 404 404 404 404",
        ),
        // Pages: sign in first; collector tokens read none.
        ("GET", "/", Body::None, "303 303 303 303 303 303 303"),
        ("GET", "/jobs", Body::None, "login 2xx 2xx 2xx 2xx 403 403"),
        (
            "GET",
            "/jobs.csv",
            Body::None,
            "login 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/jobs/a1",
            Body::None,
            "login 2xx 404 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/jobs/a1/power.svg",
            Body::None,
            "login 2xx 404 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/jobs/a1/progress/loss",
            Body::None,
            "login 2xx 404 2xx 2xx 403 403",
        ),
        ("GET", "/sites", Body::None, "login 2xx 2xx 2xx 2xx 403 403"),
        (
            "GET",
            "/sites/s1/pue",
            Body::None,
            "login 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/statement",
            Body::None,
            "login 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/powercap",
            Body::None,
            "login 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "GET",
            "/account",
            Body::None,
            "login 2xx 2xx 2xx 2xx 403 403",
        ),
        (
            "POST",
            "/account/tokens",
            Body::Form(vec![("label", "matrix".into())]),
            "login 403 403 403 403 403 403",
        ),
        (
            "POST",
            "/account/password",
            Body::Form(vec![
                ("current", "not it".into()),
                ("new", "another long password".into()),
            ]),
            "login in in in in 403 403",
        ),
        (
            "POST",
            "/account/tokens/999999/revoke",
            Body::Form(vec![]),
            "login in in in in 403 403",
        ),
        // Signing out ends a session; a bearer token goes on working (the rows below use them).
        (
            "POST",
            "/logout",
            Body::Form(vec![]),
            "login login login login login 403 403",
        ),
        ("GET", "/admin", Body::None, "login 403 403 403 2xx 403 403"),
        (
            "POST",
            "/admin/users",
            Body::Form(vec![
                ("name", "f-{who}".into()),
                ("role", "researcher".into()),
                ("password", PASSWORD.into()),
            ]),
            "login 403 403 403 2xx 403 403",
        ),
        (
            "POST",
            "/admin/users/bob",
            Body::Form(vec![("role", "researcher".into())]),
            "login 403 403 403 2xx 403 403",
        ),
        (
            "POST",
            "/admin/sites",
            Body::Form(vec![
                ("name", "fs-{who}".into()),
                ("timezone", "UTC".into()),
            ]),
            "login 403 403 403 2xx 403 403",
        ),
        (
            "POST",
            "/admin/nodes",
            Body::Form(vec![("name", "fn-{who}".into()), ("site", "s1".into())]),
            "login 403 403 403 in 403 403",
        ),
        (
            "POST",
            "/admin/meters",
            Body::Form(vec![
                ("name", "fm-{who}".into()),
                ("site", "s1".into()),
                ("category", "PUE2".into()),
            ]),
            "login 403 403 403 in 403 403",
        ),
        (
            "POST",
            "/admin/nodes/n1/token",
            Body::Form(vec![]),
            "login 403 403 403 in 403 403",
        ),
    ];

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

/// Changing a password ends what the old one opened: other sessions and API tokens (the page says so);
/// guesses of the current password are throttled; a blank or short new password is refused.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_new_password_ends_other_sessions_and_tokens(db: PgPool) {
    let app = App::spawn(db).await;
    add_user(&app, "alice", Role::Researcher).await;
    let here = browser(&app, "alice").await;
    let elsewhere = browser(&app, "alice").await;
    let token = api_token(&app, "alice").await;
    assert_eq!(app.get(&token, "/api/v1/me").await.0, StatusCode::OK);
    let change = |current: &'static str, new: String| {
        let app = &app;
        let cookie = here.cookie.clone();
        async move {
            let (_, account) = app.page(&cookie, "/account").await;
            let csrf = hidden(&account, "csrf");
            let r = app
                .http
                .post(format!("{}/account/password", app.base))
                .header("cookie", format!("wattlas_session={cookie}"))
                .form(&[("csrf", csrf), ("current", current.into()), ("new", new)])
                .send()
                .await
                .expect("post");
            (r.status(), r.text().await.expect("page"))
        }
    };
    for (new, why) in [
        (" ".repeat(12), "password: not only spaces"),
        ("eleven char".into(), "password: at least 12 characters"),
        ("ALICE".into(), "password: at least 12 characters"),
    ] {
        let (_, page) = change(PASSWORD, new).await;
        assert!(page.contains(why), "{why}: {page}");
    }
    let (status, page) = change(PASSWORD, "a brand new passphrase".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Your other sessions (1) were signed out and your API tokens (1) revoked"),
        "{page}"
    );
    assert_eq!(app.page(&here.cookie, "/jobs").await.0, StatusCode::OK);
    assert_eq!(
        app.page(&elsewhere.cookie, "/jobs").await.0,
        StatusCode::SEE_OTHER,
        "the other session is over"
    );
    assert_eq!(
        app.get(&token, "/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Guessing the current password from an open session: five tries, then a wait.
    let mut statuses = Vec::new();
    for i in 0..7 {
        let (status, _) = change("not it", format!("guess number {i} here")).await;
        statuses.push(status);
    }
    assert!(
        statuses[..5]
            .iter()
            .all(|s| *s != StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(statuses[5..], [StatusCode::TOO_MANY_REQUESTS; 2]);
}

/// Slowloris: idle connections and ones that trickle a header a byte at a time held their slot for
/// ever (65 s in the attack, and on). Now each is closed once it has not sent whole headers within the
/// header timeout, open connections are bounded, and a good client is served meanwhile.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn slow_clients_are_cut_off_and_keep_no_good_client_out(db: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = App::spawn_with(db, |c| {
        c.header_timeout_s = 2;
        c.max_connections = 12;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let mut tricklers = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .expect("write");
        tricklers.push(s);
    }
    let started = std::time::Instant::now();
    // A good client meanwhile.
    let (status, body) = app.get_text("", "/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The tricklers keep sending, one byte every 300 ms: they are cut off all the same.
    let trickle = async {
        for s in &mut tricklers {
            for b in b"X-Slow: 1" {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(8), trickle)
        .await
        .ok();
    for s in idle.iter_mut().chain(tricklers.iter_mut()) {
        let mut buf = [0u8; 512];
        // Closed: EOF, an error, or at most a 408 before the close.
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a slow connection is still open");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // Past the bound a new connection is closed at once; once slots free up, clients are served.
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(1), extra.read(&mut buf))
        .await
        .expect("answered at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "the 13th connection is closed: {:?}", &buf[..n]);
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (status, _) = app.get_text("", "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}
