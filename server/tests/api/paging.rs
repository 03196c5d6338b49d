//! Keyset pages of the jobs list: following `next` visits every job once, in the order one long page
//! lists them, for every sort and both orders, ties and jobs without energy included.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use wattlas_protocol::paths::encode_segment;

use crate::common::*;

fn ids(body: &Value) -> Vec<String> {
    body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().expect("id").to_owned())
        .collect()
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn following_next_lists_every_job_once_in_order(db: PgPool) {
    let app = App::spawn(db.clone()).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(120);
    // 17 jobs: pairs with the same start (ties on start), the same samples (ties on energy, GPUs,
    // duration), three users; then four without a stored energy summary (listed last by energy).
    for k in 0..17i64 {
        let start = t0 + Duration::minutes(k / 2 * 3);
        let seconds = 20 + (k % 3) * 10;
        app.new_job(&format!("p{k:02}"))
            .user(["ada", "bob", "cyd"][(k % 3) as usize])
            .gpus(if k % 4 == 0 { &[0, 1] } else { &[0] })
            .samples(&token, samples(start, seconds))
            .start(start)
            .end(start + Duration::seconds(seconds))
            .create()
            .await;
    }
    wattlas_server::maintenance::refresh_job_energy(&app.state, 100)
        .await
        .expect("summaries");
    // Listing a job without a summary computes it: taken away again before each listing.
    let four_without = || async {
        sqlx::query("delete from job_energy where job_id in ('p03', 'p08', 'p11', 'p16')")
            .execute(&db)
            .await
            .expect("four without");
    };

    for sort in ["start", "energy", "duration", "gpus", "user", "id"] {
        for order in ["desc", "asc"] {
            four_without().await;
            let (status, whole) = app
                .get(
                    ADMIN,
                    &format!("/api/v1/jobs?sort={sort}&order={order}&limit=500"),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{whole}");
            let expected = ids(&whole);
            assert_eq!(expected.len(), 17);
            assert!(whole.get("next").is_none(), "one page holds them all");
            four_without().await;
            let mut walked = Vec::new();
            let mut query = String::new();
            loop {
                let (status, page) = app
                    .get(
                        ADMIN,
                        &format!("/api/v1/jobs?sort={sort}&order={order}&limit=4{query}"),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK, "{sort} {order} {query}: {page}");
                assert_eq!(page["total"], 17);
                walked.extend(ids(&page));
                let Some(next) = page.get("next") else { break };
                query = format!(
                    "&after={}",
                    encode_segment(next["after"].as_str().expect("after"))
                );
                if let Some(key) = next["after_key"].as_str() {
                    query.push_str(&format!("&after_key={}", encode_segment(key)));
                }
                assert!(walked.len() <= 17, "{sort} {order}: the walk does not end");
            }
            assert_eq!(walked, expected, "{sort} {order}");
        }
    }

    // The page links to the next by its cursor, and back to the first.
    let (status, html) = app.get_text(ADMIN, "/jobs?sort=energy&limit=5").await;
    assert_eq!(status, StatusCode::OK);
    let href = html
        .split("rel=\"next\"")
        .next()
        .and_then(|before| before.rsplit("href=\"").next())
        .and_then(|h| h.split('"').next())
        .expect("a next link")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(
        href.contains("after=") && href.contains("after_key="),
        "{href}"
    );
    assert!(html.contains("<strong>Jobs 1–5 of 17</strong>"), "{html}");
    let (status, second) = app.get_text(ADMIN, &href).await;
    assert_eq!(status, StatusCode::OK);
    assert!(second.contains("← First page"), "{second}");
    assert!(second.contains("<strong>Jobs 5 after job "), "{second}");
    let (_, third) = app
        .get_text(ADMIN, "/jobs?sort=energy&limit=5&offset=10")
        .await;
    assert!(
        third.contains("<strong>Jobs 11–15 of 17</strong>"),
        "{third}"
    );
    // A page past the end says so and links back (it read "Jobs  of 17" above "No jobs match.").
    let (status, past) = app
        .get_text(ADMIN, "/jobs?sort=energy&limit=5&offset=40")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        past.contains("<strong>None of 17 on this page</strong>"),
        "{past}"
    );
    assert!(
        !past.contains("No jobs match.") && !past.contains("<strong>Jobs  of"),
        "{past}"
    );
    assert!(past.contains("past the last of the 17 jobs"), "{past}");
    assert!(past.contains("← First page"), "{past}");
    // Nothing matches: no statement or CSV of nothing.
    let (_, none) = app.get_text(ADMIN, "/jobs?user=nobody").await;
    assert!(none.contains("<strong>No jobs</strong>"), "{none}");
    assert!(
        !none.contains("format=pdf") && !none.contains("Export CSV"),
        "{none}"
    );
    // A bad filter on the page: said above the form, which keeps what was typed; no table.
    let (status, bad) = app.get_text(ADMIN, "/jobs?user=ada&from=30.11.2026").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let error = bad.find("<p class=\"error\" role=\"alert\">from: expected a date");
    let form = bad.find("<form class=\"filters\"").expect("form");
    assert!(error.is_some_and(|e| e < form), "{bad}");
    assert!(
        bad.contains("name=\"user\" value=\"ada\"") && bad.contains("value=\"30.11.2026\""),
        "{bad}"
    );
    assert!(!bad.contains("<table class=\"jobs\">"), "{bad}");
    let (_, api) = app.get(ADMIN, "/api/v1/jobs?sort=energy&limit=10").await;
    for id in &ids(&api)[5..10] {
        assert!(
            second.contains(&format!("/jobs/{id}\"")),
            "{id} on the second page"
        );
    }

    // Bad cursors name their field.
    for (query, field) in [
        ("sort=energy&after=p01&after_key=lots", "after_key"),
        ("sort=start&after=p01&after_key=yesterday", "after_key"),
        ("after_key=1", "after_key"),
        ("after=p01&offset=5", "offset"),
    ] {
        let (status, body) = app.get(ADMIN, &format!("/api/v1/jobs?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["error"].as_str().expect("error").starts_with(field),
            "{query}: {body}"
        );
    }
}
