//! The seed of the pages benchmark, written by SQL: jobs, per-minute rollups, the last week's raw
//! blocks, a year of meter readings, and the jobs' stored energy computed by the server's own code.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use sqlx::PgPool;

use super::ingest::*;
use super::pages::*;
use super::*;

/// The seed's rules as SQL functions, so jobs and GPU-minutes agree: job i runs on two-GPU slot i % 32,
/// in period i / 32; its user, workload, power cap, power demand and duration follow from i.
pub(crate) async fn seed_functions(db: &PgPool, scale: &Scale, period: i64) -> anyhow::Result<()> {
    let users = scale.users;
    for f in [
        "create function bench_cap(i bigint) returns real immutable language sql as
            'select (array[150, 200, 250])[(i % 3) + 1]::real'"
            .to_owned(),
        format!(
            "create function bench_workload(i bigint) returns int immutable language sql as
            'select ((i % {users}) * 3 + (i / {users}) % 3)::int'"
        ),
        // What the workload would draw uncapped, W.
        "create function bench_demand(i bigint) returns real immutable language sql as
            'select (160 + (bench_workload(i) % 7) * 20)::real'"
            .to_owned(),
        // Minutes: half to three quarters of the period, longer under a lower cap.
        format!(
            "create function bench_dur(i bigint) returns int immutable language sql as
            'select greatest(1, floor({period} * (50 + (i * 7919) % 26) / 100.0 * (1 + 0.003 * (250 - bench_cap(i)))))::int'"
        ),
        "create view bench_nodes as select id, substr(name, 6)::int as idx from nodes where name like 'bench%'"
            .to_owned(),
    ] {
        sqlx::query(&f).execute(db).await?;
    }
    Ok(())
}

pub(crate) async fn seed_jobs(
    db: &PgPool,
    scale: &Scale,
    t0: chrono::DateTime<Utc>,
    t_end: chrono::DateTime<Utc>,
    big_start: chrono::DateTime<Utc>,
    period: i64,
) -> anyhow::Result<()> {
    let site: i32 = sqlx::query_scalar("select id from sites where name = 'bench'")
        .fetch_one(db)
        .await?;
    let mut tx = db.begin().await?;
    sqlx::query(&format!(
        r#"insert into jobs (id, user_name, name, site_id, start_time, end_time, tags)
        select 'job-' || lpad(i::text, 6, '0'), 'user' || (i % {users}), 'train-w' || bench_workload(i), $1,
            $2 + make_interval(mins => ((i / {SLOTS}) * {period})::int),
            $2 + make_interval(mins => ((i / {SLOTS}) * {period} + bench_dur(i))::int),
            jsonb_build_object('workload', 'w' || bench_workload(i), 'power_cap_w', bench_cap(i)::int::text)
        from generate_series(0, {last}) i"#,
        users = scale.users,
        last = scale.jobs - 1,
    ))
    .bind(site)
    .bind(t0)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        r#"insert into job_allocations (job_id, node_id, gpu_index)
        select 'job-' || lpad(i::text, 6, '0'), n.id, 2 * ((i % {SLOTS}) % 4) + k
        from generate_series(0, {last}) i
        cross join generate_series(0, 1) k
        join bench_nodes n on n.idx = (i % {SLOTS}) / 4"#,
        last = scale.jobs - 1,
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        r#"insert into jobs (id, user_name, name, site_id, start_time, end_time, tags)
        values ('big', 'ops', 'pretrain-64gpu', $1, $2, $3, '{"workload": "pretrain", "power_cap_w": "250"}')"#,
    )
    .bind(site)
    .bind(big_start)
    .bind(t_end)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        r#"insert into job_allocations (job_id, node_id, gpu_index)
        select 'big', n.id, g from bench_nodes n cross join generate_series(0, {}) g"#,
        GPUS_PER_NODE - 1
    ))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Every GPU-minute of every GPU over the days: a job's minutes at its cap and power, idle minutes at
/// idle power, the long job's at 240 W. One statement per node.
pub(crate) async fn seed_minutes(
    db: &PgPool,
    scale: &Scale,
    t0: chrono::DateTime<Utc>,
    small_span: i64,
    period: i64,
) -> anyhow::Result<()> {
    for n in 0..NODES {
        sqlx::query(&format!(
            r#"insert into gpu_minute (node_id, gpu_index, minute, samples, covered_s, counter_s, energy_j,
                power_min_w, power_max_w, power_limit_w, power_limit_samples, util_avg_pct, mem_max_mib,
                temp_max_c, sm_avg_mhz)
            select nd.id, g, $1 + make_interval(mins => m::int), 600, 60, 60, p * 60, p - 4, p + 4, lim, 600,
                case st when 0 then 0 else 93 end, case st when 0 then 600 else 61000 end,
                case st when 0 then 34 else 30 + p / 8 end, case st when 0 then 210 else 1300 + p end
            from bench_nodes nd
            cross join generate_series(0, {gmax}) g
            cross join generate_series(0, {mmax}) m
            cross join lateral (select (m / {period}) * {SLOTS} + {n} * 4 + g / 2 as i) j
            cross join lateral (select case
                when m >= {small_span} then 2
                when j.i < {jobs} and m % {period} < bench_dur(j.i) then 1
                else 0 end as st) s
            cross join lateral (select
                (case s.st
                    when 2 then 240 + 6 * sin(m / 7.0 + g)
                    when 1 then least(bench_cap(j.i) * 0.97, bench_demand(j.i)) + 3 * sin(m / 5.0 + g)
                    else 58 + g end)::real as p,
                (case s.st when 1 then bench_cap(j.i) else 250 end)::real as lim) v
            where nd.idx = {n}"#,
            gmax = GPUS_PER_NODE - 1,
            mmax = scale.days * 1440 - 1,
            jobs = scale.jobs,
        ))
        .bind(t0)
        .execute(db)
        .await?;
    }
    // The hourly sums, as the rollup task keeps them.
    let ids: Vec<i32> = sqlx::query_scalar("select id from bench_nodes")
        .fetch_all(db)
        .await?;
    let mut tx = db.begin().await?;
    for id in ids {
        wattlas_server::db::rollups::refresh_hours(
            &mut tx,
            wattlas_server::ids::NodeId(id),
            t0.timestamp_millis(),
            (t0 + chrono::Duration::days(scale.days)).timestamp_millis(),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The long job: the whole span on 64 GPUs of their own (nodes `long0`..), whose per-minute rollups
/// are seeded at 240 W, with the hourly sums: what its 90-day power chart reads. (On the short jobs'
/// GPUs it would share each GPU with 1,500 jobs; a 64-GPU job does not share GPUs.)
pub(crate) async fn seed_long(
    db: &PgPool,
    t0: chrono::DateTime<Utc>,
    t_end: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let site: i32 = sqlx::query_scalar("select id from sites where name = 'bench'")
        .fetch_one(db)
        .await?;
    let nodes: Vec<i32> =
        sqlx::query_scalar("select id from nodes where name like 'long%' order by name")
            .fetch_all(db)
            .await?;
    let mut tx = db.begin().await?;
    sqlx::query(
        r#"insert into jobs (id, user_name, name, site_id, start_time, end_time, tags)
        values ('long', 'ops', 'pretrain-long-64gpu', $1, $2, $3, '{"workload": "pretrain-long", "power_cap_w": "250"}')"#,
    )
    .bind(site)
    .bind(t0)
    .bind(t_end)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        r#"insert into job_allocations (job_id, node_id, gpu_index)
        select 'long', n, g from unnest($1::int[]) n cross join generate_series(0, {}) g"#,
        GPUS_PER_NODE - 1
    ))
    .bind(&nodes)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let minutes = (t_end - t0).num_minutes();
    for node in &nodes {
        sqlx::query(&format!(
            r#"insert into gpu_minute (node_id, gpu_index, minute, samples, covered_s, counter_s, energy_j,
                power_min_w, power_max_w, power_limit_w, power_limit_samples, util_avg_pct, mem_max_mib,
                temp_max_c, sm_avg_mhz)
            select $1, g, $2 + make_interval(mins => m::int), 600, 60, 60, p * 60, p - 4, p + 4, 250, 600,
                93, 61000, 30 + p / 8, 1300 + p
            from generate_series(0, {gmax}) g
            cross join generate_series(0, {mmax}) m
            cross join lateral (select (240 + 6 * sin(m / 7.0 + g))::real as p) v"#,
            gmax = GPUS_PER_NODE - 1,
            mmax = minutes - 1,
        ))
        .bind(node)
        .bind(t0)
        .execute(db)
        .await?;
    }
    let mut tx = db.begin().await?;
    for node in nodes {
        wattlas_server::db::rollups::refresh_hours(
            &mut tx,
            wattlas_server::ids::NodeId(node),
            t0.timestamp_millis(),
            t_end.timestamp_millis(),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The last hours' raw 100 ms blocks: one simulated hour of the 64 GPUs, repeated hour by hour.
pub(crate) async fn seed_raw(
    db: &PgPool,
    scale: &Scale,
    big_start: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let ids: Vec<(i32, i32)> = sqlx::query_as("select idx, id from bench_nodes order by idx")
        .fetch_all(db)
        .await?;
    let sim = simulate(NODES as u32, GPUS_PER_NODE as u32, 3600, big_start);
    for ((_, id), node) in ids.iter().zip(&sim) {
        let mut copy = Copy::new();
        for batch in node {
            blocks(*id, &raw(batch), &mut copy);
        }
        copy_in(
            db,
            "copy gpu_raw (node_id, t_start, t_end, n_samples, data) from stdin (format binary)",
            copy.finish(),
        )
        .await?;
    }
    // The template hour's blocks, by their start: a copy shifted by an hour can start before the
    // template hour's end (a sample 2 ms early), so "before the hour's end" would copy copies again
    // (it doubled 45,440 samples of 387 M until settling the seed counted them).
    let template_last: chrono::DateTime<Utc> =
        sqlx::query_scalar("select max(t_start) from gpu_raw")
            .fetch_one(db)
            .await?;
    // A day at a time, to bound each transaction.
    let mut h = 1;
    while h < scale.raw_hours {
        let to = (h + 24).min(scale.raw_hours);
        sqlx::query(&format!(
            r#"insert into gpu_raw (node_id, t_start, t_end, n_samples, data)
            select node_id, t_start + make_interval(hours => h), t_end + make_interval(hours => h), n_samples, data
            from gpu_raw cross join generate_series({h}, {last}) h
            where t_start <= $1"#,
            last = to - 1
        ))
        .bind(template_last)
        .execute(db)
        .await?;
        h = to;
    }
    Ok(())
}

/// Readings every 5 minutes: IT power with a daily swing, PUE with a daily and a yearly one.
pub(crate) async fn seed_meter(
    db: &PgPool,
    scale: &Scale,
    t_end: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    sqlx::query(&format!(
        r#"insert into facility_readings (meter_id, time, it_kw, total_kw)
        select m.id, $1 - make_interval(mins => 5 * k), it, it * pue
        from meters m
        cross join generate_series(0, {last}) k
        cross join lateral (select
            400 + 60 * sin(k * 2 * pi() / 288) as it,
            1.35 + 0.12 * sin(k * 2 * pi() / 288 - 1) + 0.08 * sin(k * 2 * pi() / (288 * 365)) + 0.02 * sin(k * 0.7) as pue) x
        where m.name = 'bench-main'"#,
        last = scale.meter_days * 288 - 1
    ))
    .bind(t_end)
    .execute(db)
    .await?;
    Ok(())
}

/// Every job's stored energy, computed by the server's code, four jobs at a time.
pub(crate) async fn seed_energy(db: &PgPool, url: &str) -> anyhow::Result<usize> {
    let ids: Vec<String> = sqlx::query_scalar("select id from jobs order by id")
        .fetch_all(db)
        .await?;
    let pool = wattlas_server::startup::pool_options(
        &wattlas_server::config::Config::with_admin_token(ADMIN),
    )
    .connect(url)
    .await?;
    let state = wattlas_server::state::AppState::new(
        pool,
        wattlas_server::config::Config::with_admin_token(ADMIN),
    );
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (state, ids, next) = (state.clone(), ids.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let job = wattlas_server::db::jobs::by_id(&state.db, id)
                    .await?
                    .context("seeded job vanished")?;
                let ctx = wattlas_server::service::jobs::JobContext::of(&state, job)
                    .await
                    .map_err(|e| anyhow::anyhow!("job {id}: {e}"))?;
                wattlas_server::service::jobs::computed_view(&state, &ctx)
                    .await
                    .map_err(|e| anyhow::anyhow!("job {id}: {e}"))?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(ids.len())
}
