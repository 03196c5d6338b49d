//! Power-cap comparisons: against the jobs' own numbers, split by GPU count, and hostile tag values.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use wattlas_protocol::JobView;

use crate::common::*;

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn power_cap_comparison_matches_the_jobs_own_numbers(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let t0 = minute_aligned_past(120);
    // The same workload at four caps (two runs at 250 W): lower cap, lower power, longer time.
    let runs = [
        (250.0, 200.0, 60),
        (250.0, 205.0, 62),
        (200.0, 180.0, 63),
        (150.0, 140.0, 66),
        (100.0, 95.0, 80),
    ];
    let mut start = t0;
    for (i, (cap, power, seconds)) in runs.iter().enumerate() {
        let end = start + Duration::seconds(*seconds);
        app.new_job(&format!("cap-{i}"))
            .user("eve")
            .tag("workload", "bert-mlm")
            .samples(&token, capped(start, *seconds, 1, *power, *cap))
            .create()
            .await;
        start = end + Duration::seconds(5);
    }
    // A job of another workload does not join.
    app.new_job("other")
        .user("eve")
        .tag("workload", "resnet")
        .start(t0)
        .end(t0 + Duration::seconds(10))
        .create()
        .await;

    let (status, c) = app
        .get(ADMIN, "/api/v1/powercap/comparison?tag=workload:bert-mlm")
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["baseline_w"], 250.0);
    // Independently, from each job's own numbers.
    let mut by_cap: std::collections::BTreeMap<i64, Vec<JobView>> =
        std::collections::BTreeMap::new();
    for i in 0..runs.len() {
        let job = app.job(&format!("cap-{i}")).await;
        by_cap
            .entry(job.power_cap_w.expect("cap") as i64)
            .or_default()
            .push(job);
    }
    let mean = |jobs: &[JobView], f: fn(&JobView) -> f64| {
        jobs.iter().map(f).sum::<f64>() / jobs.len() as f64
    };
    let base_t = mean(&by_cap[&250], |j| j.duration_s);
    let base_e = mean(&by_cap[&250], |j| j.it_energy_kwh);
    let caps = c["caps"].as_array().expect("caps");
    assert_eq!(caps.len(), 4);
    for row in caps {
        let cap = row["power_cap_w"].as_f64().expect("cap") as i64;
        let jobs = &by_cap[&cap];
        assert_eq!(row["jobs"].as_u64(), Some(jobs.len() as u64));
        let t = mean(jobs, |j| j.duration_s) / base_t * 100.0;
        let e = mean(jobs, |j| j.it_energy_kwh) / base_e * 100.0;
        assert!(
            (row["rel_time_pct"].as_f64().expect("t") - t).abs() < 1e-9,
            "{cap} W time"
        );
        assert!(
            (row["rel_energy_pct"].as_f64().expect("e") - e).abs() < 1e-9,
            "{cap} W energy"
        );
        // The mean's bound is the mean of its jobs' bounds (issue 35).
        for (field, of) in [
            (
                "mean_it_energy_kwh_low",
                (|j: &JobView| j.it_energy_kwh_low.expect("low")) as fn(&JobView) -> f64,
            ),
            ("mean_it_energy_kwh_high", |j: &JobView| {
                j.it_energy_kwh_high.expect("high")
            }),
        ] {
            assert!(
                (row[field].as_f64().expect(field) - mean(jobs, of)).abs() < 1e-12,
                "{cap} W {field}"
            );
        }
    }
    // The advice: least energy within a 10 % slowdown (100 W is 33 % slower here).
    let advice = &c["advice"];
    let best = caps
        .iter()
        .filter(|r| r["rel_time_pct"].as_f64().expect("t") <= 110.0)
        .min_by(|a, b| {
            a["rel_energy_pct"]
                .as_f64()
                .expect("e")
                .total_cmp(&b["rel_energy_pct"].as_f64().expect("e"))
        })
        .expect("a cap within the budget");
    assert_eq!(advice["power_cap_w"], best["power_cap_w"]);
    assert_ne!(advice["power_cap_w"], 100.0);
    // The pages of the workload's jobs carry the advice, and how to apply it.
    let page = app.get_text(ADMIN, "/jobs/cap-0").await.1;
    let cap = advice["power_cap_w"].as_f64().expect("cap");
    assert!(
        page.contains(&format!("advises\n{cap:.0} W within a 10 % slowdown"))
            && page.contains(&format!("power_cap_w={cap:.0}")),
        "{page}"
    );
    let at_100 = &caps[0];
    assert!(
        at_100["rel_time_pct"].as_f64().expect("t") > 100.0
            && at_100["rel_energy_pct"].as_f64().expect("e") < 100.0
    );

    let (status, body) = app
        .get(
            ADMIN,
            "/api/v1/powercap/comparison?tag=workload:bert-mlm&baseline_w=175",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"].as_str().expect("error").contains("175 W"),
        "{body}"
    );
    let (status, _) = app.get(ADMIN, "/api/v1/powercap/comparison").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let page = app
        .get_text(ADMIN, "/powercap?tag=workload:bert-mlm")
        .await
        .1;
    assert!(
        page.contains("<svg") && page.contains("100 % (baseline)"),
        "Figure 1 chart"
    );
    assert!(
        page.contains("100 W cap") && page.contains("250 W cap"),
        "Figure 6 has a line per cap"
    );
    // Each cap says its spread; a cap resting on one job says so.
    assert!(
        page.contains(">one job only: no spread to judge it by<"),
        "{page}"
    );
    let spread = format!(
        "{:.1}–{:.1} %",
        c["caps"][3]["rel_energy_min_pct"].as_f64().expect("min"),
        c["caps"][3]["rel_energy_max_pct"].as_f64().expect("max")
    );
    assert!(
        page.contains(&spread),
        "the 250 W pair's spread {spread}: {page}"
    );
    assert!(
        c["caps"][3]["rel_energy_min_pct"].as_f64() < c["caps"][3]["rel_energy_max_pct"].as_f64(),
        "two runs at 250 W differ"
    );
    let list = app.get_text(ADMIN, "/powercap").await.1;
    assert!(
        list.contains("workload:bert-mlm") && !list.contains("workload:resnet"),
        "only shared tags are listed"
    );
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn comparisons_split_by_gpu_count_where_jobs_differ(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let mut start = minute_aligned_past(60);
    // (GPUs, cap, power, seconds): one and two GPUs, each at 250 W and 150 W.
    for (i, (gpus, cap, power, seconds)) in [
        (1u32, 250.0, 200.0, 30i64),
        (1, 150.0, 140.0, 33),
        (2, 250.0, 190.0, 20),
        (2, 150.0, 135.0, 23),
    ]
    .into_iter()
    .enumerate()
    {
        let samples = capped(start, seconds, gpus, power, cap);
        let (status, _) = app.ingest(&token, &batch(samples)).await;
        assert_eq!(status, StatusCode::OK);
        let end = start + Duration::seconds(seconds);
        let gpu_list: Vec<u32> = (0..gpus).collect();
        let (status, _) = app
            .post(
                ADMIN,
                "/api/v1/jobs",
                &json!({"site": "s1", "id": format!("n-{i}"), "user": "fay", "start": start, "end": end,
                  "tags": {"workload": "gpt"}, "allocations": [{"node": "n1", "gpus": gpu_list}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        start = end + Duration::seconds(5);
    }
    let (status, c) = app
        .get(ADMIN, "/api/v1/powercap/comparison?tag=workload:gpt")
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let groups = c["by_gpu_count"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{c}");
    assert_eq!(groups[0]["label"], "1 GPU");
    assert_eq!(groups[1]["label"], "2 GPUs");
    // Within two GPUs: 150 W took 23/20 of the time, and 2 x 135 x 23 / (2 x 190 x 20) of the energy.
    let two = &groups[1]["caps"][0];
    assert_eq!(two["power_cap_w"], 150.0);
    assert!(
        (two["rel_time_pct"].as_f64().expect("t") - 115.0).abs() < 1e-6,
        "{two}"
    );
    assert!(
        (two["rel_energy_pct"].as_f64().expect("e") - 135.0 * 23.0 / (190.0 * 20.0) * 100.0).abs()
            < 1e-6,
        "{two}"
    );
    assert_eq!(
        c["by_gpu_model"].as_array().expect("models").len(),
        0,
        "one model: no split"
    );
    let page = app.get_text(ADMIN, "/powercap?tag=workload:gpt").await.1;
    assert_eq!(
        page.matches("By GPU count (Figure 2)").count(),
        1,
        "once, in the content"
    );
    assert!(!page.contains("By GPU model (Figure 3)"));
    let title = page
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .expect("title");
    assert_eq!(title, "Power caps · workload:gpt · Wattlas");
}

/// A tag value is the user's text: on the comparison page, in the figures drawn inline as SVG, and in
/// the API, it is text and never markup.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_hostile_tag_value_stays_text_in_the_comparison_page_and_its_figures(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    let hostile = r#"<img src=x onerror=alert(1)>&"'"#;
    let mut start = minute_aligned_past(60);
    for (i, (cap, power, seconds)) in [(250.0, 200.0, 60), (150.0, 140.0, 66)]
        .into_iter()
        .enumerate()
    {
        let samples = capped(start, seconds, 1, power, cap);
        let (status, body) = app.ingest(&token, &batch(samples)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let end = start + Duration::seconds(seconds);
        let (status, body) = app
            .post(
                ADMIN,
                "/api/v1/jobs",
                &json!({"site": "s1", "id": format!("h-{i}"), "user": "eve", "name": hostile, "start": start,
                        "end": end, "tags": {"workload": hostile}, "allocations": [{"node": "n1", "gpus": [0]}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        start = end + Duration::seconds(5);
    }
    let tag = format!("workload:{hostile}");
    let url = reqwest::Url::parse_with_params(&format!("{}/powercap", app.base), [("tag", &tag)])
        .expect("url");
    let r = app
        .http
        .get(url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("page");
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.expect("html");
    assert!(html.contains("<svg"), "the figures are drawn inline");
    assert!(
        !html.contains("<img src=x"),
        "markup from a tag value: {html}"
    );
    // Escaped as an entity, named (plotters' SVG) or numbered (askama's HTML).
    let escaped = |t: &str| t.contains("&lt;img src=x") || t.contains("&#60;img src=x");
    assert!(escaped(&html), "shown as text");
    // The list of comparisons and the jobs' own pages, likewise.
    let (status, list) = app.get_text(ADMIN, "/powercap").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!list.contains("<img src=x") && escaped(&list), "{list}");
    for path in ["/jobs/h-0", "/jobs/h-0/power.svg", "/jobs"] {
        let (status, text) = app.get_text(ADMIN, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            !text.contains("<img src=x"),
            "{path}: {}",
            &text[text.find("<img src=x").unwrap_or(0).saturating_sub(300)..]
                .chars()
                .take(600)
                .collect::<String>()
        );
    }
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_query_it_cannot_read_names_its_parameter_as_a_page_or_json(db: PgPool) {
    // Issue 31: `/powercap?slowdown_pct=abc` answered raw JSON; query errors began "Failed to
    // deserialize query string".
    let app = App::spawn(db).await;
    add_user(&app, "alice", wattlas_server::db::users::Role::Researcher).await;
    let alice = crate::sign_in::browser(&app, "alice").await;
    let (status, page) = app
        .page(&alice.cookie, "/powercap?tag=a:b&slowdown_pct=abc")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.starts_with("<!doctype html>"), "a page: {page}");
    assert!(page.contains("slowdown_pct: "), "{page}");
    assert!(!page.contains("Failed to deserialize"), "{page}");
    let (status, body) = app
        .get(
            ADMIN,
            "/api/v1/powercap/comparison?tag=a:b&slowdown_pct=abc",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = body["error"].as_str().expect("error");
    assert!(error.starts_with("slowdown_pct: "), "{error}");
}
