//! The staff overview: fleet power and GPU states now, quiet collectors, a site without a meter, the
//! month's energy by user and by project, running jobs; refreshing itself; staff's landing page.

use chrono::{Duration, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use wattlas_server::db::users::Role;

use crate::common::*;

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn staff_see_the_fleet_now_and_the_months_energy_researchers_do_not(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    add_user(&app, "alice", Role::Researcher).await;
    add_user(&app, "sam", Role::Staff).await;
    let (status, body) = app
        .post(ADMIN, "/api/v1/nodes", &json!({"name": "n2", "site": "s1"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // A finished job of alice's in project atlas (GPU 0 at 200 W for 19.9 s, in the last hour but one:
    // in the 24-hour curve, which ends where the rollup has taken everything, up to 7 minutes before
    // now), then 3 s of both GPUs just now (200 W + 100 W, 98 % busy), and a job of bob's running for
    // an hour on n2 (which has not reported: no energy, and not sharing alice's GPU).
    let t0 = Utc::now()
        .duration_trunc(Duration::hours(1))
        .expect("trunc")
        - Duration::minutes(20);
    app.new_job("j1")
        .user("alice")
        .tag("project", "atlas")
        .samples(&token, samples(t0, 20))
        .create()
        .await;
    let (status, body) = app
        .ingest(
            &token,
            &batch(samples(Utc::now() - Duration::seconds(4), 3)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.new_job("r1")
        .user("bob")
        .node("n2")
        .start(Utc::now() - Duration::hours(1))
        .running()
        .create()
        .await;
    wattlas_server::maintenance::refresh_job_energy(&app.state, 100)
        .await
        .expect("summaries");

    let sam = crate::sign_in::browser(&app, "sam").await;
    let (status, page) = app.page(&sam.cookie, "/overview").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    for want in [
        "<p class=\"live\" data-live-s=\"60\">",
        "<script src=\"/static/live.js\" defer></script>",
        "<h2 id=\"site-1\">s1</h2>",
        "<dd>300 W</dd>",
        "<dd>2 busy · 0 idle · 0 not reporting</dd>",
        "Collectors silent for over 5 minutes: n2.",
        "No facility meter at this site",
        "no meter reading in the last two hours",
        // Nothing rolled up yet: every figure of the month stops before the hour of alice's job, and
        // the page says so; her job's energy is not in the bars yet (issue 31: it was, beside a
        // month's GPU energy without it).
        "<dd>0.0 Wh</dd>",
        "is waiting for the rollup",
        "No job energy this month yet.",
        "<a href=\"/jobs/r1\">r1</a></td><td>bob</td>",
        "<td>01:00:",
        "href=\"/overview\"",
    ] {
        assert!(page.contains(want), "{want:?} not in:\n{page}");
    }
    assert!(
        !page.contains("j1</a></td><td>alice"),
        "a finished job is not running"
    );
    assert!(page.contains("As of ") && page.contains(" UTC"), "{page}");
    // Rolled up: the month's figure is whole, and says nothing is left out. (A run takes the oldest
    // hour of pending data: alice's job and the samples of just now may be two.)
    while wattlas_server::maintenance::rollup_settled_before(
        &app.state,
        Utc::now() + Duration::hours(1),
    )
    .await
    .expect("rollup")
        > 0
    {}
    let (_, page) = app.page(&sam.cookie, "/overview").await;
    assert!(!page.contains("waiting for the rollup"), "{page}");
    assert!(!page.contains("<dd>0.0 Wh</dd>"), "{page}");
    // Now both to the current hour: 19.9 s x 200 W = 1.1 Wh, alice's and atlas's (the month's GPU
    // energy above holds GPU 1's too).
    for want in [
        "<a href=\"/jobs?user=alice\">alice</a></td><td class=\"num\">1.1 Wh<br><span class=\"basis\">between ",
        "<a href=\"/jobs?tag=project:atlas\">atlas</a></td><td class=\"num\">1.1 Wh<br><span class=\"basis\">between ",
    ] {
        assert!(page.contains(want), "{want:?} not in:\n{page}");
    }
    let cut = Utc::now()
        .duration_trunc(Duration::hours(1))
        .expect("trunc")
        .format("%Y-%m-%d %H:%M")
        .to_string();
    assert!(
        page.contains(&format!("is to {cut} UTC, the last whole hour")),
        "{cut}: {page}"
    );
    // The last 24 hours' power from the rolled-up minutes, each point saying its value on hover; no
    // meter, so no IT power; nobody left a GPU idle (98 % busy).
    assert!(
        page.contains("<title>Power at s1, last 24 hours (America/New_York)</title>"),
        "{page}"
    );
    assert!(page.contains(" · GPUs (collectors): "), "{page}");
    assert!(!page.contains(" · IT (meters): "), "{page}");
    assert!(
        page.contains("<dd>no meter reading in the last hour</dd>"),
        "{page}"
    );
    assert!(
        page.contains("No job started this month left an allocated GPU idle"),
        "{page}"
    );
    assert!(page.contains("<a href=\"/sites/s1/energy\">Where the energy of s1 went</a>"));
    // On the jobs page, tags are links to the jobs sharing them; starts are in the site's zone.
    let (_, jobs) = app.page(&sam.cookie, "/jobs").await;
    let tz: chrono_tz::Tz = "America/New_York".parse().expect("zone");
    let start = t0
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string();
    assert!(
        jobs.contains(&format!("<td class=\"nowrap\">{start}</td>")),
        "{start}: {jobs}"
    );
    assert!(
        jobs.contains("<a class=\"tag\" href=\"/jobs?tag=project:atlas\""),
        "{jobs}"
    );
    // A meter reporting 5 kW of IT load every 5 minutes for the last hour: IT power now, and its curve.
    let meter = app.meter().await;
    let readings: Vec<serde_json::Value> = (0..=12)
        .map(|k| json!({"time": Utc::now() - Duration::minutes(60 - 5 * k), "it_kw": 5.0, "total_kw": 6.0}))
        .collect();
    let (status, body) = app.facility(&meter, &json!(readings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, page) = app.page(&sam.cookie, "/overview").await;
    assert!(page.contains("<dd>5.00 kW</dd>"), "{page}");
    // The GPU figures with their bound (issue 35).
    assert!(
        page.contains("<dt>GPU power now</dt><dd>")
            && page.contains("<dd class=\"basis\">±5 % (NVML)</dd>")
            && page.contains("UTC; ±5 % (NVML), GPU time without samples not estimated</dd>"),
        "{page}"
    );
    assert!(page.contains(" · IT (meters): 5.00 kW</title>"), "{page}");
    assert!(
        page.contains("<title>PUE today at s1, hourly (America/New_York)</title>"),
        "{page}"
    );

    // Researchers: refused, with their header; their landing page stays the jobs list.
    let alice = crate::sign_in::browser(&app, "alice").await;
    let (status, page) = app.page(&alice.cookie, "/overview").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        page.contains("the overview is for staff and admins") && page.contains(">alice</a>"),
        "{page}"
    );
    assert!(
        !page.contains("href=\"/overview\""),
        "no overview link for researchers"
    );
    for (who, landing) in [(&sam.cookie, "/overview"), (&alice.cookie, "/jobs")] {
        let r = app
            .http
            .get(format!("{}/", app.base))
            .header("cookie", format!("wattlas_session={who}"))
            .send()
            .await
            .expect("landing");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], landing);
    }
}
