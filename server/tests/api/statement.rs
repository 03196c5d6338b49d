//! Energy statements: totals, carbon and cost from measured data, in every format; the PDF read back
//! with pdftotext (Debian's poppler-utils).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;
use chrono::{Duration, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use wattlas_server::db::users::Role;

/// The text of a PDF, whitespace collapsed (pdftotext breaks lines where the page does).
pub fn pdf_text(pdf: &[u8]) -> String {
    pdf_pages(pdf, &[])
}

/// The text of a PDF's first page.
fn pdf_first_page(pdf: &[u8]) -> String {
    pdf_pages(pdf, &["-f", "1", "-l", "1"])
}

fn pdf_pages(pdf: &[u8], pages: &[&str]) -> String {
    let mut child = Command::new("pdftotext")
        .args(pages)
        .args(["-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("pdftotext is not installed: apt-get install poppler-utils");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pdf)
        .expect("write");
    let out = child.wait_with_output().expect("pdftotext");
    assert!(out.status.success(), "pdftotext failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_statement_charges_each_hour_its_pue_and_carbon_in_every_format(db: PgPool) {
    let app = App::spawn(db).await;
    let node = app.node().await;
    let (status, body) = app
        .http
        .put(format!("{}/api/v1/sites/s1", app.base))
        .bearer_auth(ADMIN)
        .json(&json!({"carbon_g_per_kwh": 300.0, "price_per_kwh": 0.25, "currency": "EUR"}))
        .send()
        .await
        .map(|r| (r.status(), r))
        .expect("put");
    assert_eq!(status, StatusCode::OK);
    let site: Value = body.json().await.expect("json");
    assert_eq!(
        (site["carbon_g_per_kwh"].clone(), site["currency"].clone()),
        (json!(300.0), json!("EUR"))
    );

    // Two hours: h0 at PUE 1.2, h1 at PUE 1.5; the grid's series says 100 g/kWh in h1 only.
    let h0 = (Utc::now() - Duration::hours(3))
        .duration_trunc(Duration::hours(1))
        .expect("trunc");
    let h1 = h0 + Duration::hours(1);
    let meter = app.meter().await;
    let readings: Vec<Value> = (0..24)
        .map(|i| {
            let t = h0 + Duration::minutes(5 * i);
            json!({"time": t, "pue": if t < h1 { 1.2 } else { 1.5 }})
        })
        .collect();
    let (status, body) = app.facility(&meter, &json!(readings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let carbon = |body: String, content_type: &'static str| {
        app.http
            .post(format!("{}/api/v1/sites/s1/carbon", app.base))
            .bearer_auth(ADMIN)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let bad = carbon(
        format!(
            "time,g_per_kwh\n{},100\n{},lots\n",
            h1.to_rfc3339(),
            h0.to_rfc3339()
        ),
        "text/csv",
    )
    .await
    .expect("post");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let err: Value = bad.json().await.expect("json");
    assert_eq!(err["error"], "line 3, g_per_kwh: 'lots' is not a number");
    let ok = carbon(
        format!("time,g_per_kwh\n{},100\n", h1.to_rfc3339()),
        "text/csv",
    )
    .await
    .expect("post");
    assert_eq!(ok.status(), StatusCode::OK);

    // 200 W on GPU 0 and 150 W on GPU 1, from h0 + 50 min for 20 minutes.
    let t0 = h0 + Duration::minutes(50);
    for chunk in samples(t0, 20 * 60).chunks(2000) {
        let (status, body) = app.ingest(&node, &batch(chunk.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (start, end) = (h0 + Duration::minutes(52), h0 + Duration::minutes(68));
    for (id, gpu, name) in [("a", 0, "pretrain_v2 50% {x}"), ("b", 1, "finetune")] {
        let (status, body) = app
            .post(
                ADMIN,
                "/api/v1/jobs",
                &json!({"site": "s1", "id": id, "user": "ann", "name": name, "start": start, "end": end,
                        "tags": {"workload": "w"}, "allocations": [{"node": "n1", "gpus": [gpu]}]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // By hand: 8 minutes of each job in each hour.
    let mut expected = (0.0, 0.0, 0.0); // IT kWh, facility kWh, g CO2e
    for watts in [200.0, 150.0] {
        let part_kwh = watts * 480.0 / 3.6e6;
        expected.0 += 2.0 * part_kwh;
        expected.1 += part_kwh * 1.2 + part_kwh * 1.5;
        expected.2 += part_kwh * 1.2 * 300.0 + part_kwh * 1.5 * 100.0;
    }
    let job = app.job("a").await;
    let job_g = (200.0 * 480.0 / 3.6e6) * (1.2 * 300.0 + 1.5 * 100.0);
    assert!(
        (job.co2e_kg.expect("co2e") * 1000.0 - job_g).abs() < 1e-6,
        "{:?}",
        job.co2e_kg
    );
    assert!((job.carbon_series_share - 1.5 / 2.7).abs() < 1e-9);
    assert_eq!(job.currency.as_deref(), Some("EUR"));

    add_user(&app, "ann", Role::Researcher).await;
    add_user(&app, "bob", Role::Researcher).await;
    let ann = api_token(&app, "ann").await;
    let (status, body) = app
        .get_bytes(&ann, "/api/v1/statement?user=ann&format=json")
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let st: Value = serde_json::from_slice(&body).expect("json");
    let s = &st["summary"];
    let close = |v: &Value, x: f64| (v.as_f64().expect("number") - x).abs() < 1e-9;
    assert!(close(&s["it_energy_kwh"], expected.0), "{s}");
    assert!(close(&s["facility_energy_kwh"], expected.1), "{s}");
    assert!(close(&s["co2e_kg"], expected.2 / 1000.0), "{s}");
    assert!(close(&s["cost"]["EUR"], expected.1 * 0.25), "{s}");
    assert!(close(&s["pue"], expected.1 / expected.0), "{s}");
    assert_eq!(
        s["low_pue_share"], 0.5,
        "half of the energy ran in the hour below the month's mean"
    );
    assert_eq!(st["scope"], "Finished jobs of user ann");
    assert_eq!(st["jobs"].as_array().expect("jobs").len(), 2);
    let paragraph = st["paragraph"].as_str().expect("paragraph").to_owned();
    assert!(
        paragraph.starts_with(&format!(
            "The experiments in this work consumed a total of {} of IT energy in 2 jobs",
            wattlas_server::analytics::units::energy(expected.0)
        )),
        "{paragraph}"
    );

    // The PDF says the same, read back as text.
    let (status, pdf) = app
        .get_bytes(&ann, "/api/v1/statement?user=ann&format=pdf")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    let text = pdf_text(&pdf);
    assert!(text.contains("Energy statement"), "{text}");
    assert!(
        text.contains(&format!("{:.1} Wh", expected.0 * 1000.0)),
        "GPU energy total: {text}"
    );
    assert!(
        text.contains(&format!("{:.1} g", expected.2)),
        "CO2e total: {text}"
    );
    // pdftotext joins a word broken at a hyphen at the end of a line without the hyphen.
    let unhyphenated = |t: &str| t.replace('-', "");
    assert!(
        unhyphenated(&text).contains(&unhyphenated(
            &paragraph.split_whitespace().collect::<Vec<_>>().join(" ")
        )),
        "the paragraph: {text}"
    );
    assert!(
        text.contains("pretrain_v2 50% {x}"),
        "names shown as text, not markup: {text}"
    );
    assert!(
        text.contains("m1 (PUE2)"),
        "the method names the meter and its category"
    );

    // Markdown and LaTeX.
    let (_, md) = app
        .get_bytes(&ann, "/api/v1/statement?user=ann&format=md")
        .await;
    let md = String::from_utf8(md).expect("utf-8");
    assert!(
        md.starts_with("# Energy statement") && md.contains(&paragraph),
        "{md}"
    );
    assert!(
        md.contains("| a | ann | pretrain\\_v2 50% {x} |"),
        "names escaped in their cell: {md}"
    );
    let (_, tex) = app
        .get_bytes(&ann, "/api/v1/statement?jobs=a&format=tex")
        .await;
    let tex = String::from_utf8(tex).expect("utf-8");
    assert!(
        tex.contains("\\section*{Energy Statement}") && tex.contains("in 1 job"),
        "{tex}"
    );
    let (_, csv) = app
        .get_bytes(&ann, "/api/v1/statement?jobs=a,b&format=csv")
        .await;
    assert_eq!(String::from_utf8(csv).expect("utf-8").lines().count(), 3);

    // Another researcher's jobs are not in theirs, by filter or by id.
    let bob = api_token(&app, "bob").await;
    let (status, body) = app
        .get_bytes(&bob, "/api/v1/statement?jobs=a&format=json")
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _) = app.get_bytes(&ann, "/api/v1/statement?format=docx").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The CLI writes the same statement.
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("paper.pdf");
    let said = wattlas_server::cli::statement(
        &app.state,
        wattlas_server::config::StatementArgs {
            user: None,
            tag: Some("workload:w".into()),
            site: None,
            from: None,
            to: None,
            jobs: vec![],
            output: out.clone(),
        },
    )
    .await
    .expect("statement");
    assert!(said.contains("2 jobs"), "{said}");
    let text = pdf_text(&std::fs::read(&out).expect("pdf"));
    assert!(text.contains("jobs tagged workload:w"), "{text}");
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_statement_of_ten_thousand_jobs_renders(db: PgPool) {
    let app = App::spawn(db).await;
    app.node().await;
    // 10,000 finished jobs with stored energy, made in SQL: the statement reads summaries, not samples.
    sqlx::query(
        r#"insert into jobs (id, user_name, name, site_id, start_time, end_time)
        select 'job-' || i, 'user' || (i % 7), 'run ' || i, 1,
            now() - interval '30 days' + i * interval '2 minutes',
            now() - interval '30 days' + i * interval '2 minutes' + interval '90 seconds'
        from generate_series(1, 10000) as i"#,
    )
    .execute(&app.state.db)
    .await
    .expect("jobs");
    sqlx::query(
        r#"insert into job_energy (job_id, computed_at, gpu_count, gpu_hours, it_energy_kwh,
            facility_energy_kwh, summary)
        select j.id, now(), 1, 0.025, 0.005, 0.0079, jsonb_build_object(
            'id', j.id, 'user', j.user_name, 'name', j.name, 'site', 's1',
            'start', j.start_time, 'end', j.end_time, 'running', false, 'duration_s', 90.0,
            'gpu_count', 1, 'allocations', '[]'::jsonb, 'it_energy_kwh', 0.005,
            'facility_energy_kwh', 0.0079, 'pue', 1.58, 'pue_fallback_share', 1.0,
            'avg_power_w', 200.0, 'power_cap_w', 250.0, 'coverage', 1.0,
            'energy_method', 'counter', 'samples', 900, 'tags', '{}'::jsonb)
        from jobs j"#,
    )
    .execute(&app.state.db)
    .await
    .expect("energy");
    // Health checks while it is made: answered at once (the PDF was typeset on the thread that
    // answers requests, which held every other request for the whole render).
    let started = std::time::Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let statement = async {
        let answer = app.get_bytes(ADMIN, "/api/v1/statement?format=pdf").await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        answer
    };
    // The longest time between two answered checks, each asked 20 ms after the last answer.
    let health = async {
        let (mut worst, mut checks) = (std::time::Duration::ZERO, 0);
        let mut last = std::time::Instant::now();
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let (status, _) = app.get_text(ADMIN, "/healthz").await;
            assert_eq!(status, StatusCode::OK);
            worst = worst.max(last.elapsed());
            last = std::time::Instant::now();
            checks += 1;
        }
        (worst, checks)
    };
    let ((status, pdf), (worst, checks)) = tokio::join!(statement, health);
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&pdf));
    assert!(
        worst < took / 5,
        "health checks waited up to {worst:?} apart during the statement's {took:?} ({checks} checks)"
    );
    let text = pdf_text(&pdf);
    assert!(text.contains("50.0 kWh"), "10,000 x 5 Wh");
    assert!(
        text.contains("job-1 ") && text.contains("job-10000 "),
        "first and last rows"
    );
    let pages = text.matches("Wattlas energy statement ·").count();
    assert!(pages > 100, "the jobs table runs over {pages} pages");
    eprintln!(
        "10,000-job statement: {} bytes, {pages} pages, {took:?}",
        pdf.len()
    );
}

/// A statement safe to paste: running jobs left out unless asked for (and then marked), facts without
/// claims of intent, GPU models named without a bracketed count, the selection in words and as a query
/// that makes it again, and a file name saying what and when. Read back from the PDF.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_statement_leaves_running_jobs_out_and_says_what_it_covers(db: PgPool) {
    let app = App::spawn(db).await;
    let node = app.node().await;
    let t0 = minute_aligned_past(30);
    app.new_job("done-1")
        .tag("project", "nlp")
        .samples(&node, samples(t0, 60))
        .create()
        .await;
    app.new_job("still-going")
        .tag("project", "nlp")
        .gpus(&[1])
        .start(t0 + Duration::seconds(10))
        .running()
        .create()
        .await;
    let get = |query: &'static str| {
        let r = app
            .http
            .get(format!("{}/api/v1/statement?{query}", app.base))
            .bearer_auth(ADMIN)
            .send();
        async move {
            let r = r.await.expect("statement");
            assert_eq!(r.status(), StatusCode::OK);
            let name = r.headers()["content-disposition"]
                .to_str()
                .expect("header")
                .to_owned();
            (name, r.bytes().await.expect("body").to_vec())
        }
    };
    let (name, pdf) = get("tag=project:nlp&format=pdf").await;
    let today = Utc::now().format("%Y-%m-%d");
    assert_eq!(
        name,
        format!("inline; filename=\"wattlas-energy-statement-finished-jobs-tagged-project-nlp-{today}.pdf\"")
    );
    let text = pdf_text(&pdf);
    assert!(
        text.contains("done-1") && !text.contains("still-going"),
        "{text}"
    );
    assert!(text.contains("Finished jobs tagged project:nlp"), "{text}");
    assert!(text.contains("Running jobs are left out"), "{text}");
    // (pdftotext may break the line after the "?")
    assert!(
        text.replace("? ", "?")
            .contains("GET /api/v1/statement?tag=project%3Anlp&state=finished&format=pdf"),
        "{text}"
    );
    assert!(
        text.contains("at an assumed PUE of 1.58 (no meter measured these hours)"),
        "no meter at s1: {text}"
    );
    assert!(text.contains("GPU-hours on Tesla V100"), "{text}");
    assert!(
        text.contains("No estimate of what the caps changed"),
        "{text}"
    );
    for intent in ["minimi", "What was done to reduce", "in order to"] {
        assert!(!text.contains(intent), "{intent}: {text}");
    }
    // Asked for: both, the running one marked as such.
    let (name, md) = get("tag=project:nlp&state=all&format=md").await;
    assert!(
        name.contains(&format!("statement-jobs-tagged-project-nlp-{today}.md")),
        "{name}"
    );
    let md = String::from_utf8(md).expect("utf-8");
    assert!(md.contains("still-going (running: energy so far)"), "{md}");
    assert!(!md.contains("Running jobs are left out"), "{md}");
    // By id: what was asked for, running or not.
    let (_, md) = get("jobs=still-going&format=md").await;
    let md = String::from_utf8(md).expect("utf-8");
    assert!(md.contains("still-going (running: energy so far)"), "{md}");
    // A running job's PDF says so on its first page, in the summary and in the paragraph (issue 31:
    // "consumed a total of" on page 1, "running" only in the jobs table on page 2).
    let (_, pdf) = get("jobs=still-going&format=pdf").await;
    let first = pdf_first_page(&pdf);
    assert!(
        first.contains("(1 running:") && first.contains("energy so far, as of "),
        "{first}"
    );
    // One PUE, written one way: the paragraph's and the summary's (the sites' rows have none).
    assert_eq!(first.matches("1.58").count(), 2, "{first}");
    assert!(!first.contains("1.580"), "{first}");
    // One unit: the chart's axis too.
    assert!(
        first.contains("IT energy (Wh)") && !first.contains("kWh"),
        "{first}"
    );
    assert!(
        first.contains("so far in 1 job, still running as of ") && !first.contains("total"),
        "{first}"
    );
}

/// Issue 35, item 5: a statement anyone can verify. The PDF prints its id, digest and link; the link,
/// opened without signing in, says "authentic" and "unchanged"; after a meter reading is corrected it
/// says which figures changed; a link carrying another digest is refused, and so is a JSON statement
/// with one number edited.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_statement_is_verified_by_anyone_and_says_what_changed(db: PgPool) {
    let app = App::spawn(db).await;
    let node = app.node().await;
    let meter = app.meter().await;
    let h0 = (Utc::now() - Duration::hours(3))
        .duration_trunc(Duration::hours(1))
        .expect("trunc");
    let readings: Vec<Value> = (0..24)
        .map(|i| json!({"time": h0 + Duration::minutes(5 * i), "pue": 1.2}))
        .collect();
    let (status, body) = app.facility(&meter, &json!(readings)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t0 = h0 + Duration::minutes(10);
    for chunk in samples(t0, 20 * 60).chunks(2000) {
        let (status, body) = app.ingest(&node, &batch(chunk.to_vec())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = app
        .post(
            ADMIN,
            "/api/v1/jobs",
            &json!({"site": "s1", "id": "v1", "user": "ann", "start": t0 + Duration::minutes(1),
                    "end": t0 + Duration::minutes(19), "allocations": [{"node": "n1", "gpus": [0]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The PDF: its first page names the statement and the link.
    let pdf = app
        .http
        .get(format!("{}/api/v1/statement?jobs=v1&format=pdf", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("pdf")
        .bytes()
        .await
        .expect("body");
    let first = pdf_first_page(&pdf);
    let id: String = first
        .split("Statement ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("the statement's id on page 1")
        .to_owned();
    assert_eq!(id.len(), 24, "{first}");
    let digest: String = first
        .split("SHA-256 ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .expect("its digest on page 1")
        .replace(' ', "");
    assert_eq!(digest.len(), 64, "{first}");
    assert!(first.contains(&format!("/s/{id}")), "the link: {first}");
    // The link (as printed: this server's address, the id and the digest), opened by anyone.
    let link = format!("{}/s/{id}?sha256={digest}", app.base);
    let anonymous = reqwest::Client::new();
    let page = anonymous.get(&link).send().await.expect("get");
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.expect("text");
    assert!(
        page.contains("<strong>Authentic</strong>") && page.contains("<strong>Unchanged</strong>"),
        "{page}"
    );
    assert!(page.contains(&digest), "{page}");
    assert!(!page.contains("Sign out"), "nobody is signed in: {page}");

    // A meter reading corrected (the hour's PUE was 1.5, not 1.2): the same link says what changed.
    let range = format!(
        "from={}&to={}",
        h0.to_rfc3339().replace('+', "%2B"),
        (h0 + Duration::hours(2)).to_rfc3339().replace('+', "%2B")
    );
    let r = app
        .http
        .delete(format!("{}/api/v1/meters/m1/readings?{range}", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::OK);
    let corrected: Vec<Value> = (0..24)
        .map(|i| json!({"time": h0 + Duration::minutes(5 * i), "pue": 1.5}))
        .collect();
    let (status, body) = app.facility(&meter, &json!(corrected)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = anonymous
        .get(&link)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("<strong>Authentic</strong>")
            && page.contains("<strong>Changed since</strong>"),
        "{page}"
    );
    assert!(
        page.contains("<li>Facility energy: ")
            && page.contains(
                "<li>PUE (energy-weighted): 1.20 (measured) then, 1.50 (measured) now</li>"
            ),
        "{page}"
    );
    assert!(
        !page.contains("<li>IT energy"),
        "the IT energy did not change: {page}"
    );

    // A link whose digest is not the issued one is refused.
    let mut forged = digest.clone().into_bytes();
    forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("hex");
    let r = anonymous
        .get(format!("{}/s/{id}?sha256={forged}", app.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let page = r.text().await.expect("text");
    assert!(page.contains("<strong>Refused.</strong>"), "{page}");

    // The JSON form, checked whole: as issued it is authentic; one number edited, it is refused.
    let (status, statement) = app
        .get(ADMIN, "/api/v1/statement?jobs=v1&format=json")
        .await;
    assert_eq!(status, StatusCode::OK);
    let check = |body: Value| {
        anonymous
            .post(format!("{}/api/v1/statements/verify", app.base))
            .json(&body)
            .send()
    };
    let r = check(statement.clone()).await.expect("post");
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["digest_matches"], json!(true), "{v}");
    assert_eq!(v["changes"], json!([]), "{v}");
    let mut edited = statement.clone();
    edited["summary"]["it_energy_kwh"] =
        json!(statement["summary"]["it_energy_kwh"].as_f64().expect("kwh") * 0.5);
    let r = check(edited).await.expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.expect("json");
    assert!(
        e["error"]
            .as_str()
            .expect("error")
            .starts_with("digest: the content does not match"),
        "{e}"
    );
    // An id nobody issued.
    let r = anonymous
        .get(format!("{}/s/ffffffffffffffffffffffff", app.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
