//! Signing in: sessions and CSRF, the trusted proxy header, throttling per name and client, bounded
//! hashing, a new password ending what the old one opened, and slow clients cut off.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use wattlas_server::db::users::Role;

/// A signed-in browser: its session cookie.
pub struct Browser {
    pub cookie: String,
}

/// The value a `Set-Cookie` header of `r` gives cookie `name`, with the header's attributes.
pub fn set_cookie(r: &reqwest::Response, name: &str) -> Option<(String, String)> {
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
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.find(&marker).expect("hidden input") + marker.len();
    page[at..].split('"').next().unwrap_or("").to_owned()
}

/// Signs in through the form as a browser would: GET the form (double-submit cookie), POST it.
pub async fn sign_in(app: &App, name: &str, password: &str) -> reqwest::Response {
    sign_in_as(app, None, name, password).await
}

/// `sign_in` from a client behind the trusted proxy (its address in X-Forwarded-For).
pub async fn sign_in_from(
    app: &App,
    client: &str,
    name: &str,
    password: &str,
) -> reqwest::Response {
    sign_in_as(app, Some(client), name, password).await
}

pub async fn sign_in_as(
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

pub async fn browser(app: &App, name: &str) -> Browser {
    let r = sign_in(app, name, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{name} signs in");
    let (cookie, _) = set_cookie(&r, "wattlas_session").expect("session cookie");
    Browser { cookie }
}

impl App {
    pub async fn page(&self, cookie: &str, path: &str) -> (StatusCode, String) {
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
        // Refused: the sign-in lands by role instead (issue 31).
        assert_eq!(hidden(&page, "next"), "", "{next}");
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
    let rss = || wattlas_server::metrics::rss_kib(None).unwrap_or(0);
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
    // Past the bound the oldest idle connection makes room (issue 33, N5: one client's idle
    // connections locked everyone out): the 13th is answered, the first held is closed.
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
    let n = tokio::time::timeout(std::time::Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("answered at once")
        .unwrap_or(0);
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "the 13th connection is served: {:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let n = tokio::time::timeout(std::time::Duration::from_secs(2), held[0].read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "the oldest idle connection is closed");
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (status, _) = app.get_text("", "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

/// The refusal page starts no session.
pub fn set_cookie_absent(page: &str) -> bool {
    !page.contains("wattlas_session")
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_sign_in_ends_the_browsers_previous_session(db: PgPool) {
    // Issue 33: a second user signing in on the same browser left the first's session valid.
    let app = App::spawn(db).await;
    add_user(&app, "alice", Role::Researcher).await;
    add_user(&app, "bob", Role::Researcher).await;
    let alice = browser(&app, "alice").await;
    let (status, _) = app.page(&alice.cookie, "/account").await;
    assert_eq!(status, StatusCode::OK);
    // Bob signs in on the browser that still holds Alice's session cookie (from a sign-in form
    // opened before, in another tab).
    let form = app
        .http
        .get(format!("{}/login", app.base))
        .send()
        .await
        .expect("login form");
    let (login_cookie, _) = set_cookie(&form, "wattlas_login").expect("login cookie");
    let csrf = hidden(&form.text().await.expect("text"), "csrf");
    let r = app
        .http
        .post(format!("{}/login", app.base))
        .header(
            "cookie",
            format!(
                "wattlas_login={login_cookie}; wattlas_session={}",
                alice.cookie
            ),
        )
        .form(&[
            ("csrf", csrf.as_str()),
            ("next", "/jobs"),
            ("username", "bob"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (bob, _) = set_cookie(&r, "wattlas_session").expect("bob's session");
    let (status, page) = app.page(&bob, "/account").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("bob"), "{page}");
    // Alice's session is gone: her cookie, kept by anyone, opens nothing.
    let (status, page) = app.page(&alice.cookie, "/account").await;
    assert_ne!(status, StatusCode::OK, "{page}");
    assert!(!page.contains("alice"), "{page}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn people_land_by_role_after_signing_in(db: PgPool) {
    // Issue 31: staff and admins landed on /jobs (anonymous / sent to /login?next=/jobs).
    let app = App::spawn(db).await;
    add_user(&app, "alice", Role::Researcher).await;
    add_user(&app, "sam", Role::Staff).await;
    add_user(&app, "root", Role::Admin).await;
    let r = app
        .http
        .get(format!("{}/", app.base))
        .send()
        .await
        .expect("/");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login");
    for (name, lands) in [
        ("alice", "/jobs"),
        ("sam", "/overview"),
        ("root", "/overview"),
    ] {
        // The sign-in form without `next`, as `/` leads to it.
        let form = app
            .http
            .get(format!("{}/login", app.base))
            .send()
            .await
            .expect("login form");
        let (login_cookie, _) = set_cookie(&form, "wattlas_login").expect("login cookie");
        let page = form.text().await.expect("text");
        let csrf = hidden(&page, "csrf");
        let next = hidden(&page, "next");
        let r = app
            .http
            .post(format!("{}/login", app.base))
            .header("cookie", format!("wattlas_login={login_cookie}"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("next", next.as_str()),
                ("username", name),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{name}");
        assert_eq!(r.headers()["location"], lands, "{name}");
        let (session, _) = set_cookie(&r, "wattlas_session").expect("session");
        // Signed in, `/` and `/login` lead to the same place.
        for path in ["/", "/login"] {
            let r = app
                .http
                .get(format!("{}{path}", app.base))
                .header("cookie", format!("wattlas_session={session}"))
                .send()
                .await
                .expect("page");
            assert_eq!(r.headers()["location"], lands, "{name} at {path}");
        }
    }
    // A `next` given still wins.
    let r = sign_in(&app, "sam", PASSWORD).await;
    assert_eq!(r.headers()["location"], "/jobs");
}

/// WCAG's contrast ratio of two `#rrggbb` colours.
fn contrast(a: &str, b: &str) -> f64 {
    let luminance = |hex: &str| {
        let c = |i: usize| {
            let v = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")) / 255.0;
            if v <= 0.039_28 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * c(1) + 0.7152 * c(3) + 0.0722 * c(5)
    };
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_keyboard_finds_a_skip_link_first_and_a_focus_ring_it_can_see(db: PgPool) {
    // Issue 31: no skip link, and a focus ring of ~1.9:1 on white.
    let app = App::spawn(db).await;
    add_user(&app, "alice", Role::Researcher).await;
    let alice = browser(&app, "alice").await;
    for path in ["/jobs", "/account", "/sites"] {
        let (status, page) = app.page(&alice.cookie, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let body = &page[page.find("<body>").expect("body")..];
        let first_link = body.find("<a ").expect("a link");
        assert!(
            body[first_link..].starts_with("<a class=\"skip\" href=\"#main\">"),
            "{path}: the first link skips to the content"
        );
        assert!(page.contains("<main id=\"main\""), "{path}");
    }
    let (_, css) = app.get_text("", "/static/style.css").await;
    let rule = |selector: &str| -> String {
        let at = css
            .find(selector)
            .unwrap_or_else(|| panic!("{selector} in the stylesheet"));
        css[at..].split('}').next().expect("rule").to_owned()
    };
    let colour = |rule: &str| -> String {
        let at = rule.find('#').expect("a colour");
        rule[at..at + 7].to_owned()
    };
    // On the page (white) and in the header (dark blue): at least 3:1, as WCAG 2.2 asks of focus.
    let page_ring = colour(&rule("a:focus-visible, button:focus-visible"));
    assert!(contrast(&page_ring, "#ffffff") >= 3.0, "{page_ring}");
    let header_ring = colour(&rule("header.top a:focus-visible"));
    let header_bg = colour(&rule("header.top {"));
    assert!(
        contrast(&header_ring, &header_bg) >= 3.0,
        "{header_ring} on {header_bg}"
    );
}
