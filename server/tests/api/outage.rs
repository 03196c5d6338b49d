//! Identities through a database outage (issue 32, item 3): the primary reached through a TCP hop the
//! test cuts, a read replica (the same database, reached directly) beside it. A signed-in person whose
//! session this server confirmed keeps their page while the primary is away, within the grace period;
//! a session ended while the database answered is not served from memory, nor is any past the grace
//! period; and when the primary answers again every request is checked against it again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use sqlx::PgPool;
use wattlas_server::config::Config;
use wattlas_server::db::users::Role;
use wattlas_server::reads::Reads;
use wattlas_server::state::AppState;

use crate::common::{add_user, App, ADMIN};
use crate::sign_in::browser;

/// A TCP hop to the database that the test can cut: open connections are closed and new ones are
/// accepted and closed at once (as a load balancer with no server behind it does).
struct Hop {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Hop {
    async fn to(target: SocketAddr) -> Hop {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (o, l) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                l.lock().expect("links").push(link.abort_handle());
            }
        });
        Hop { addr, open, links }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }

    fn mend(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

async fn overview(app: &App, cookie: &str) -> StatusCode {
    app.page(cookie, "/overview").await.0
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_confirmed_session_keeps_its_page_through_an_outage_within_the_grace_only(db: PgPool) {
    let options = db.connect_options();
    let target: SocketAddr = format!("{}:{}", options.get_host(), options.get_port())
        .parse()
        .expect("database address");
    let hop = Hop::to(target).await;
    let mut config = Config::with_admin_token(ADMIN);
    config.rollup_interval_s = 3600;
    config.identity_grace_s = 3;
    let primary = wattlas_server::startup::pool_options(&config)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with((*options).clone().host("127.0.0.1").port(hop.addr.port()));
    let reads = Reads::new(primary.clone(), Some(db.clone()), Duration::from_secs(5));
    let mut app = App {
        state: AppState::with_reads(primary, config, reads),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        ..App::spawn_lazy().await
    };
    app.base = app.serve().await;

    add_user(&app, "sam", Role::Staff).await;
    add_user(&app, "kim", Role::Staff).await;
    let sam = browser(&app, "sam").await.cookie;
    let kim = browser(&app, "kim").await.cookie;
    assert_eq!(overview(&app, &sam).await, StatusCode::OK);
    assert_eq!(overview(&app, &kim).await, StatusCode::OK);
    // Kim's session ends while the database answers (another server signed her out, an admin
    // disabled her): her next request finds it gone, and this server forgets it.
    sqlx::query("delete from sessions where user_id = (select id from users where name = 'kim')")
        .execute(&db)
        .await
        .expect("end kim's session");
    assert_eq!(
        overview(&app, &kim).await,
        StatusCode::SEE_OTHER,
        "to /login"
    );
    assert_eq!(overview(&app, &sam).await, StatusCode::OK);

    // The primary goes away.
    hop.cut();
    assert_eq!(
        overview(&app, &sam).await,
        StatusCode::OK,
        "sam's page, from the replica and the session this server confirmed"
    );
    let kim_status = overview(&app, &kim).await;
    assert_eq!(
        kim_status,
        StatusCode::SERVICE_UNAVAILABLE,
        "an ended session is not served from memory"
    );
    let (status, _) = app.get_text(ADMIN, "/api/v1/metrics/fleet").await;
    assert_eq!(status, StatusCode::OK, "reads go to the replica");
    let (_, metrics) = app.get_text(ADMIN, "/metrics").await;
    assert!(
        metrics.contains("wattlas_identities_recalled_total 1\n"),
        "{metrics}"
    );
    let (status, body) = app.get(ADMIN, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["status"]
            .as_str()
            .is_some_and(|s| s.starts_with("degraded: the primary does not answer")),
        "{body}"
    );

    // Past the grace period the remembered session is not enough.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(overview(&app, &sam).await, StatusCode::SERVICE_UNAVAILABLE);

    // The primary back: checked against it again.
    hop.mend();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = overview(&app, &sam).await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK);
    assert_eq!(overview(&app, &kim).await, StatusCode::SEE_OTHER);
}
