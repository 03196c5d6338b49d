//! The rollup task's work: a streaming node's minutes computed about once each, and a backlog served
//! oldest hour first across nodes.

use chrono::{Duration, DurationRound, Utc};
use reqwest::StatusCode;
use sqlx::PgPool;
use wattlas_server::db::rollups;
use wattlas_server::ids::NodeId;
use wattlas_server::maintenance;

use crate::common::*;

type MinuteRow = (i32, chrono::DateTime<Utc>, f64, f64, i32);

async fn minute_rows(db: &PgPool) -> Vec<MinuteRow> {
    sqlx::query_as(
        "select gpu_index, minute, energy_j, covered_s, samples
        from gpu_minute order by gpu_index, minute",
    )
    .fetch_all(db)
    .await
    .expect("minutes")
}

/// A collector sends a batch every 10 s and the rollup runs after each as its data settles: each
/// GPU-minute is computed about once (it was 18 times: every run recomputed the three minutes around
/// its 10 s), and the minutes are those of rolling up the whole half hour at once.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn streaming_data_is_rolled_up_in_steps_each_minute_about_once(db: PgPool) {
    let app = App::spawn(db.clone()).await;
    let token = app.node().await;
    let t0 = (Utc::now() - Duration::hours(3))
        .duration_trunc(Duration::hours(1))
        .expect("trunc");
    let computed = || {
        app.state
            .metrics
            .maintenance_work()
            .get("rollup_gpu_minutes")
            .copied()
            .unwrap_or(0)
    };
    let before = computed();
    for k in 0..180 {
        let from = t0 + Duration::seconds(10 * k);
        let (status, body) = app.ingest(&token, &batch(samples(from, 10))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Settled as soon as sent: the run sees what a server would see 90 s later.
        maintenance::rollup_settled_before(&app.state, from + Duration::seconds(10))
            .await
            .expect("rollup");
    }
    maintenance::rollup_settled_before(&app.state, Utc::now() + Duration::hours(1))
        .await
        .expect("rollup");
    let pending: i64 = sqlx::query_scalar("select count(*) from rollup_pending")
        .fetch_one(&db)
        .await
        .expect("pending");
    assert_eq!(pending, 0);
    // 30 minutes of 2 GPUs, and the minute after the data (its boundary interval is looked at).
    let data_minutes = 2 * 30;
    let work = computed() - before;
    assert!(
        work <= 2 * data_minutes,
        "{work} GPU-minutes computed for {data_minutes} of data"
    );
    eprintln!("{work} GPU-minutes computed for {data_minutes} of data");
    let streamed = minute_rows(&db).await;
    assert_eq!(streamed.len(), data_minutes as usize);

    // The same half hour rolled up at once gives the same minutes.
    sqlx::query("delete from gpu_minute")
        .execute(&db)
        .await
        .expect("delete");
    sqlx::query("insert into rollup_pending (node_id, t_from, t_to) select id, $1, $2 from nodes")
        .bind(t0)
        .bind(t0 + Duration::minutes(30))
        .execute(&db)
        .await
        .expect("pending");
    maintenance::rollup_settled_before(&app.state, Utc::now() + Duration::hours(1))
        .await
        .expect("rollup");
    assert_eq!(minute_rows(&db).await, streamed);
}

/// A backlog of three hours on three nodes: a run takes every node's oldest hour before any node's
/// next, node by node (it took the first node's whole backlog before the next node's first range).
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_backlog_is_taken_oldest_hour_first_across_nodes(db: PgPool) {
    let t0 = (Utc::now() - Duration::hours(6))
        .duration_trunc(Duration::hours(1))
        .expect("trunc");
    // A range a minute for three hours on nodes 1, 2 and 3.
    sqlx::query(
        "insert into rollup_pending (node_id, t_from, t_to)
        select n, $1 + make_interval(mins => m), $1 + make_interval(mins => m, secs => 59)
        from generate_series(1, 3) n, generate_series(0, 179) m",
    )
    .bind(t0)
    .execute(&db)
    .await
    .expect("pending");
    let take = |limit: i64| {
        let db = db.clone();
        async move {
            let mut tx = db.begin().await.expect("tx");
            let taken = rollups::take_pending(&mut tx, Utc::now(), limit)
                .await
                .expect("take");
            tx.commit().await.expect("commit");
            taken
        }
    };
    let first = take(200).await;
    assert_eq!(first.len(), 180, "the oldest hour of each node, no more");
    for node in (1..=3).map(NodeId) {
        let of: Vec<_> = first.iter().filter(|p| p.node_id == node).collect();
        assert_eq!(of.len(), 60, "node {node}");
        assert!(of.iter().all(|p| p.t_from < t0 + Duration::hours(1)));
    }
    // Then the next hour, a part of it in node order when the limit is smaller.
    let second = take(100).await;
    assert_eq!(second.len(), 100);
    assert!(second
        .iter()
        .all(|p| p.t_from >= t0 + Duration::hours(1) && p.t_from < t0 + Duration::hours(2)));
    assert_eq!(second.iter().filter(|p| p.node_id == NodeId(1)).count(), 60);
    assert_eq!(second.iter().filter(|p| p.node_id == NodeId(2)).count(), 40);
}

/// The staff overview's GPU power curve ends where the rollup, run as in service, has taken every
/// minute: its last point is whole. (It ended 2 minutes before now, inside the rollup's five-minute
/// step, so its last bucket divided part of its minutes' energy by all of its time: a dip.)
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn the_overview_power_curve_ends_where_every_minute_is_rolled_up(db: PgPool) {
    let app = App::spawn(db).await;
    let token = app.node().await;
    // Both GPUs (200 W and a counter at 150 W) for the last 30 minutes, in 10-s batches: the curve's
    // 10-minute buckets end at most ~7 minutes before now, so its last one is inside the data.
    let start = Utc::now() - Duration::minutes(30);
    for k in 0..180 {
        let (status, body) = app
            .ingest(
                &token,
                &batch(samples(start + Duration::seconds(10 * k), 10)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    maintenance::rollup_once(&app.state).await.expect("rollup");
    let overview = wattlas_server::service::overview::overview(&app.state)
        .await
        .expect("overview");
    let curve = &overview.sites[0].gpu_kw_24h;
    let (_, last_kw) = curve.last().copied().expect("a point");
    assert!((last_kw - 0.35).abs() < 0.005, "{curve:?}");
}

/// A node's hourly sums (`node_hour`) follow its GPUs' (`gpu_hour`), and a one-line-per-node chart
/// reads them only for hours in which every GPU with data is one of the job's: a node shared with
/// another job's GPUs still charts the job's GPUs alone.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn a_nodes_hourly_sums_are_charted_only_where_they_hold_the_jobs_gpus_alone(db: PgPool) {
    let app = App::spawn(db.clone()).await;
    app.node().await;
    let node: NodeId = sqlx::query_scalar("select id from nodes where name = 'n1'")
        .fetch_one(&db)
        .await
        .expect("node");
    let t0 = minute_aligned_past(4 * 24 * 60 + 30);
    let end = t0 + Duration::days(4);
    // GPUs 0 and 1 every minute for four days at 200 W; GPUs 2 and 3 (another job's) at 400 W from
    // the second day on.
    let minutes = |gpus: (i32, i32), from_minute: i32, joules: f64| {
        sqlx::query(
            r#"insert into gpu_minute (node_id, gpu_index, minute, samples, covered_s, counter_s,
                energy_j, power_min_w, power_max_w, power_limit_w, power_limit_samples, util_avg_pct)
            select $1, g, $2 + make_interval(mins => m), 600, 60, 60, $5, 0, 0, 700, 600, 90
            from generate_series($3::int, $4::int) g
            cross join generate_series($6::int, 4 * 1440 - 1) m"#,
        )
        .bind(node)
        .bind(t0)
        .bind(gpus.0)
        .bind(gpus.1)
        .bind(joules)
        .bind(from_minute)
        .execute(&db)
    };
    minutes((0, 1), 0, 12_000.0).await.expect("minutes");
    minutes((2, 3), 1440, 24_000.0).await.expect("minutes");
    let refresh = || async {
        let mut tx = db.begin().await.expect("tx");
        rollups::refresh_hours(&mut tx, node, t0.timestamp_millis(), end.timestamp_millis())
            .await
            .expect("hours");
        tx.commit().await.expect("commit");
    };
    refresh().await;
    // The node's hours are the sums of its GPUs' hours, and say which GPUs they hold.
    let check = || async {
        let rows: Vec<(i64, i64, i64, f64, f64)> = sqlx::query_as(
            r#"select count(*), count(*) filter (where n.gpu_mask = 3),
                count(*) filter (where n.gpu_mask = 15),
                max(abs(n.energy_j - g.energy_j)), max(abs(n.covered_s - g.covered_s))
            from node_hour n
            join (select hour, sum(energy_j) as energy_j, sum(covered_s) as covered_s
                from gpu_hour where minutes > 0 group by hour) g on g.hour = n.hour"#,
        )
        .fetch_all(&db)
        .await
        .expect("sums");
        rows[0]
    };
    let (hours, two, four, de, dc) = check().await;
    assert!((97..=98).contains(&hours), "{hours}");
    assert_eq!(two + four, hours);
    assert!((24..=25).contains(&two), "{two}");
    assert!(de < 1e-6 && dc < 1e-9, "{de} {dc}");

    let series = |gpus: Vec<u32>| {
        let db = db.clone();
        async move {
            rollups::series(
                &db,
                node,
                &gpus,
                t0.timestamp_millis(),
                end.timestamp_millis(),
                rollups::GpuMetric::Power,
                2 * 3_600_000,
                false,
            )
            .await
            .expect("series")
        }
    };
    // The job of GPUs 0 and 1: 200 W all along, also where the node's hours hold GPUs 2 and 3.
    let job = series(vec![0, 1]).await;
    assert!(job.len() >= 48, "{}", job.len());
    for (_, bucket, watts, _) in &job {
        assert!((watts - 200.0).abs() < 1e-9, "{bucket}: {watts}");
    }
    // GPU 0 alone (never the node's whole hour) and the four GPUs (the node's hours).
    assert!(series(vec![0])
        .await
        .iter()
        .all(|(_, _, w, _)| (w - 200.0).abs() < 1e-9));
    let all = series(vec![0, 1, 2, 3]).await;
    let switch = t0 + Duration::days(1);
    for (_, bucket, watts, _) in &all {
        if *bucket + Duration::hours(2) <= switch {
            assert!((watts - 200.0).abs() < 1e-9, "{bucket}: {watts}");
        } else if *bucket >= switch {
            assert!((watts - 300.0).abs() < 1e-9, "{bucket}: {watts}");
        }
    }
    assert_eq!(all.len(), job.len());

    // Minutes of GPU 2 rewritten at 300 W (a late import): both sums follow.
    sqlx::query("update gpu_minute set energy_j = 18000 where gpu_index = 2")
        .execute(&db)
        .await
        .expect("update");
    refresh().await;
    let (_, _, _, de, _) = check().await;
    assert!(de < 1e-6, "{de}");
    let after = series(vec![0, 1, 2, 3]).await;
    let last = after.last().expect("points").2;
    assert!((last - 275.0).abs() < 1e-9, "{last}");
}

/// `/readyz` counts waiting ranges exactly while few, and past 10,000 gives PostgreSQL's estimate
/// instead of counting millions on every health check; the oldest range's start is exact either way.
#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn the_rollup_lag_is_counted_exactly_while_small_and_estimated_past_ten_thousand(db: PgPool) {
    let app = App::spawn(db.clone()).await;
    app.node().await;
    let t0 = minute_aligned_past(600);
    let pend = |from: i64, n: i64| {
        sqlx::query(
            "insert into rollup_pending (node_id, t_from, t_to)
            select n.id, $1 + make_interval(secs => k), $1 + make_interval(secs => k + 1)
            from nodes n cross join generate_series($2::int8, $3::int8) k",
        )
        .bind(t0)
        .bind(from)
        .bind(from + n - 1)
        .execute(&db)
    };
    pend(0, 3).await.expect("pending");
    let ready = |app: &App| {
        let (http, base) = (app.http.clone(), app.base.clone());
        async move {
            let body: serde_json::Value = http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .expect("readyz")
                .json()
                .await
                .expect("json");
            body
        }
    };
    let body = ready(&app).await;
    assert_eq!(body["rollup_pending"], 3, "{body}");
    pend(3, 20_000).await.expect("pending");
    let body = ready(&app).await;
    let n = body["rollup_pending"].as_i64().expect("count");
    assert!(n > rollups::LAG_EXACT_UP_TO && n <= 20_003, "{body}");
    let oldest: chrono::DateTime<Utc> =
        serde_json::from_value(body["rollup_oldest_pending"].clone()).expect("oldest");
    assert_eq!(oldest, t0);
}
