//! Per-GPU per-minute rollups: taking pending ranges, writing rollups, and summing them for jobs.

use crate::ids::{NodeId, SiteId};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use crate::analytics::energy::{GpuEnergy, MinuteRollup, Readings};
use crate::db::ts;

/// A range of raw data accepted but not yet rolled up.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Pending {
    /// Node id.
    pub node_id: NodeId,
    /// First sample time.
    pub t_from: DateTime<Utc>,
    /// Last sample time.
    pub t_to: DateTime<Utc>,
}

/// Removes and returns up to `limit` pending ranges that ended before `settled_before`. The caller
/// writes their rollups in the same transaction, so a crash loses neither. Behind, the oldest hour
/// of every node goes first (no node waits on another's backlog); within it, node by node in time
/// order, so a run reads each node's raw data once, in long contiguous spans.
pub async fn take_pending(
    tx: &mut Transaction<'_, Postgres>,
    settled_before: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<Pending>> {
    sqlx::query_as(
        r#"delete from rollup_pending
        where ctid in (
            select ctid
            from rollup_pending
            where t_to < $1
                and t_from < (select min(t_from) from rollup_pending) + interval '1 hour'
            order by node_id, t_from
            limit $2
            for update skip locked
        )
        returning node_id, t_from, t_to"#,
    )
    .bind(settled_before)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
}

/// The oldest pending range's start, if any, as the caller's transaction sees them.
pub(crate) async fn oldest_pending(
    tx: &mut Transaction<'_, Postgres>,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("select min(t_from) from rollup_pending")
        .fetch_one(&mut **tx)
        .await
}

/// Earliest pending time of a node inside `[from, to]`, if any.
pub(crate) async fn earliest_pending(
    db: &PgPool,
    node_id: NodeId,
    from_ms: i64,
    to_ms: i64,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        r#"select min(t_from)
        from rollup_pending
        where node_id = $1
            and t_to >= $2
            and t_from <= $3"#,
    )
    .bind(node_id)
    .bind(ts(from_ms))
    .bind(ts(to_ms))
    .fetch_one(db)
    .await
}

/// Pending ranges counted exactly up to this many; PostgreSQL's live-row estimate above.
pub const LAG_EXACT_UP_TO: i64 = 10_000;

/// Number of pending ranges and the oldest one's start: the rollup lag. Health checks and scrapes ask
/// every few seconds, and a fleet keeps millions of ranges waiting (a 5-minute step of 3,125 nodes
/// sending every second: 1.3 M, a count of ~180 ms): exact up to [`LAG_EXACT_UP_TO`], then the table's
/// live-row count from PostgreSQL's statistics (updated within a second or so of each commit).
pub(crate) async fn lag(db: &PgPool) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
    sqlx::query_as(
        r#"select case when c.n > $1 then greatest(c.n, (
                select n_live_tup from pg_stat_user_tables
                where relid = 'rollup_pending'::regclass)) else c.n end,
            (select min(t_from) from rollup_pending)
        from (select count(*) as n from (select from rollup_pending limit $1 + 1) l) c"#,
    )
    .bind(LAG_EXACT_UP_TO)
    .fetch_one(db)
    .await
}

/// Writes one GPU's rollups. A recomputation never replaces a minute with one built from fewer samples
/// (raw samples of that minute may already have expired).
pub(crate) async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    node_id: NodeId,
    gpu: u32,
    rollups: &[MinuteRollup],
) -> sqlx::Result<()> {
    if rollups.is_empty() {
        return Ok(());
    }
    let minute: Vec<DateTime<Utc>> = rollups.iter().map(|r| ts(r.minute_ms)).collect();
    let samples: Vec<i32> = rollups.iter().map(|r| r.energy.samples as i32).collect();
    let covered: Vec<f64> = rollups.iter().map(|r| r.energy.covered_s).collect();
    let counter: Vec<f64> = rollups.iter().map(|r| r.energy.counter_s).collect();
    let energy: Vec<f64> = rollups.iter().map(|r| r.energy.energy_j).collect();
    let pmin: Vec<f32> = rollups.iter().map(|r| r.power_min_w as f32).collect();
    let pmax: Vec<f32> = rollups.iter().map(|r| r.power_max_w as f32).collect();
    let limit: Vec<Option<f32>> = rollups
        .iter()
        .map(|r| r.energy.power_cap_w().map(|w| w as f32))
        .collect();
    let limit_n: Vec<i32> = rollups
        .iter()
        .map(|r| r.energy.limits.values().max().copied().unwrap_or(0) as i32)
        .collect();
    let util: Vec<Option<f32>> = rollups
        .iter()
        .map(|r| r.util_avg_pct.map(|v| v as f32))
        .collect();
    let mem: Vec<Option<f32>> = rollups
        .iter()
        .map(|r| r.mem_max_mib.map(|v| v as f32))
        .collect();
    let temp: Vec<Option<f32>> = rollups
        .iter()
        .map(|r| r.temp_max_c.map(|v| v as f32))
        .collect();
    let sm: Vec<Option<f32>> = rollups
        .iter()
        .map(|r| r.sm_avg_mhz.map(|v| v as f32))
        .collect();
    let reading = |f: fn(&Readings) -> f64| -> Vec<f64> {
        rollups.iter().map(|r| f(&r.energy.readings)).collect()
    };
    sqlx::query(
        r#"insert into gpu_minute (node_id, gpu_index, minute, samples, covered_s, counter_s, energy_j,
            power_min_w, power_max_w, power_limit_w, power_limit_samples, util_avg_pct, mem_max_mib,
            temp_max_c, sm_avg_mhz, average_s, instant_s, counter_j, counter_read_j, counter_compared_s,
            instant_j, instant_avg_j, instant_compared_s)
        select $1, $2, * from unnest($3::timestamptz[], $4::int[], $5::float8[], $6::float8[], $7::float8[],
            $8::real[], $9::real[], $10::real[], $11::int[], $12::real[], $13::real[], $14::real[], $15::real[],
            $16::float8[], $17::float8[], $18::float8[], $19::float8[], $20::float8[], $21::float8[],
            $22::float8[], $23::float8[])
        on conflict (node_id, gpu_index, minute) do update
        set samples = excluded.samples, covered_s = excluded.covered_s, counter_s = excluded.counter_s,
            energy_j = excluded.energy_j, power_min_w = excluded.power_min_w,
            power_max_w = excluded.power_max_w, power_limit_w = excluded.power_limit_w,
            power_limit_samples = excluded.power_limit_samples, util_avg_pct = excluded.util_avg_pct,
            mem_max_mib = excluded.mem_max_mib, temp_max_c = excluded.temp_max_c,
            sm_avg_mhz = excluded.sm_avg_mhz, average_s = excluded.average_s,
            instant_s = excluded.instant_s, counter_j = excluded.counter_j,
            counter_read_j = excluded.counter_read_j, counter_compared_s = excluded.counter_compared_s,
            instant_j = excluded.instant_j, instant_avg_j = excluded.instant_avg_j,
            instant_compared_s = excluded.instant_compared_s
        where excluded.samples >= gpu_minute.samples"#,
    )
    .bind(node_id)
    .bind(gpu as i32)
    .bind(&minute)
    .bind(&samples)
    .bind(&covered)
    .bind(&counter)
    .bind(&energy)
    .bind(&pmin)
    .bind(&pmax)
    .bind(&limit)
    .bind(&limit_n)
    .bind(&util)
    .bind(&mem)
    .bind(&temp)
    .bind(&sm)
    .bind(reading(|r| r.average_s))
    .bind(reading(|r| r.instant_s))
    .bind(reading(|r| r.counter_j))
    .bind(reading(|r| r.counter_read_j))
    .bind(reading(|r| r.counter_compared_s))
    .bind(reading(|r| r.instant_j))
    .bind(reading(|r| r.instant_avg_j))
    .bind(reading(|r| r.instant_compared_s))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Recomputes the hourly sums of a node's GPUs for every hour touching `[from_ms, to_ms)` from its
/// minutes (in the transaction that wrote them).
pub async fn refresh_hours(
    tx: &mut Transaction<'_, Postgres>,
    node_id: NodeId,
    from_ms: i64,
    to_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into gpu_hour (node_id, gpu_index, hour, minutes, last_minute, samples, covered_s,
            energy_j, util_covered, util_covered_s)
        select node_id, gpu_index, time_bucket('1 hour', minute),
            count(*) filter (where covered_s > 0), max(minute) filter (where covered_s > 0),
            sum(samples), sum(covered_s), sum(energy_j),
            coalesce(sum(util_avg_pct * covered_s), 0),
            coalesce(sum(covered_s) filter (where util_avg_pct is not null), 0)
        from gpu_minute
        where node_id = $1
            and minute >= time_bucket('1 hour', $2::timestamptz)
            and minute < time_bucket('1 hour', $3::timestamptz) + interval '1 hour'
        group by 1, 2, 3
        on conflict (node_id, gpu_index, hour) do update
        set minutes = excluded.minutes, last_minute = excluded.last_minute, samples = excluded.samples,
            covered_s = excluded.covered_s, energy_j = excluded.energy_j,
            util_covered = excluded.util_covered, util_covered_s = excluded.util_covered_s"#,
    )
    .bind(node_id)
    .bind(ts(from_ms))
    .bind(ts(to_ms - 1))
    .execute(&mut **tx)
    .await?;
    // The node's sums of the same hours, from the GPUs' just written (the view `node_hour_of_gpus`).
    sqlx::query(
        r#"insert into node_hour (node_id, hour, gpu_mask, last_minute, covered_s, energy_j,
            util_covered, util_covered_s)
        select node_id, hour, gpu_mask, last_minute, covered_s, energy_j, util_covered,
            util_covered_s
        from node_hour_of_gpus
        where node_id = $1
            and hour >= time_bucket('1 hour', $2::timestamptz)
            and hour < time_bucket('1 hour', $3::timestamptz) + interval '1 hour'
        on conflict (node_id, hour) do update
        set gpu_mask = excluded.gpu_mask, last_minute = excluded.last_minute,
            covered_s = excluded.covered_s, energy_j = excluded.energy_j,
            util_covered = excluded.util_covered, util_covered_s = excluded.util_covered_s"#,
    )
    .bind(node_id)
    .bind(ts(from_ms))
    .bind(ts(to_ms - 1))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `node_hour.gpu_mask` of these GPUs, when each has a bit of its own (index below 63).
fn gpu_mask(gpus: &[i32]) -> Option<i64> {
    gpus.iter().try_fold(0i64, |mask, g| {
        (0..63).contains(g).then(|| mask | (1i64 << g))
    })
}

#[derive(sqlx::FromRow)]
struct SumRow {
    gpu: i32,
    limit: Option<f32>,
    energy_j: f64,
    covered_s: f64,
    counter_s: f64,
    samples: i64,
    limit_samples: i64,
    average_s: f64,
    instant_s: f64,
    counter_j: f64,
    counter_read_j: f64,
    counter_compared_s: f64,
    instant_j: f64,
    instant_avg_j: f64,
    instant_compared_s: f64,
}

/// Sums rollups of the given GPUs of a node over whole minutes `[from_ms, to_ms)`, per GPU.
pub(crate) async fn sum(
    db: &PgPool,
    node_id: NodeId,
    gpus: &[u32],
    from_ms: i64,
    to_ms: i64,
) -> sqlx::Result<Vec<(u32, GpuEnergy)>> {
    let gpus: Vec<i32> = gpus.iter().map(|g| *g as i32).collect();
    let rows: Vec<SumRow> = sqlx::query_as(
        r#"select gpu_index as gpu, power_limit_w as limit, sum(energy_j) as energy_j,
            sum(covered_s) as covered_s, sum(counter_s) as counter_s, sum(samples)::int8 as samples,
            sum(power_limit_samples)::int8 as limit_samples, sum(average_s) as average_s,
            sum(instant_s) as instant_s, sum(counter_j) as counter_j,
            sum(counter_read_j) as counter_read_j, sum(counter_compared_s) as counter_compared_s,
            sum(instant_j) as instant_j, sum(instant_avg_j) as instant_avg_j,
            sum(instant_compared_s) as instant_compared_s
        from gpu_minute
        where node_id = $1
            and gpu_index = any($2)
            and minute >= $3
            and minute < $4
        group by gpu_index, power_limit_w"#,
    )
    .bind(node_id)
    .bind(&gpus)
    .bind(ts(from_ms))
    .bind(ts(to_ms))
    .fetch_all(db)
    .await?;
    let mut out: Vec<(u32, GpuEnergy)> = Vec::new();
    for r in rows {
        let (gpu, limit, limit_samples) = (r.gpu, r.limit, r.limit_samples);
        let part = GpuEnergy {
            energy_j: r.energy_j,
            covered_s: r.covered_s,
            counter_s: r.counter_s,
            samples: r.samples as u64,
            limits: limit
                .map(|w| ((f64::from(w) * 1000.0).round() as i64, limit_samples as u64))
                .into_iter()
                .collect(),
            readings: Readings {
                average_s: r.average_s,
                instant_s: r.instant_s,
                counter_j: r.counter_j,
                counter_read_j: r.counter_read_j,
                counter_compared_s: r.counter_compared_s,
                instant_j: r.instant_j,
                instant_avg_j: r.instant_avg_j,
                instant_compared_s: r.instant_compared_s,
            },
        };
        match out.iter_mut().find(|(g, _)| *g == gpu as u32) {
            Some((_, e)) => e.add(&part),
            None => out.push((gpu as u32, part)),
        }
    }
    Ok(out)
}

/// Energy of the given GPUs of a node per bucket of `bucket_ms` (whole minutes, aligned to the epoch)
/// over whole minutes `[from_ms, to_ms)`: `(bucket start ms, J)`.
pub(crate) async fn energy_by_bucket(
    db: &PgPool,
    node_id: NodeId,
    gpus: &[u32],
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
) -> sqlx::Result<Vec<(i64, f64)>> {
    let gpus: Vec<i32> = gpus.iter().map(|g| *g as i32).collect();
    let rows: Vec<(DateTime<Utc>, f64)> = sqlx::query_as(
        r#"select time_bucket(make_interval(secs => $5), minute, timestamptz 'epoch') as bucket,
            sum(energy_j)
        from gpu_minute
        where node_id = $1
            and gpu_index = any($2)
            and minute >= $3
            and minute < $4
        group by bucket"#,
    )
    .bind(node_id)
    .bind(&gpus)
    .bind(ts(from_ms))
    .bind(ts(to_ms))
    .bind(bucket_ms as f64 / 1000.0)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(b, j)| (b.timestamp_millis(), j))
        .collect())
}

/// What a per-GPU chart shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuMetric {
    /// Mean power, W.
    Power,
    /// Mean utilisation, %.
    Util,
}

/// One point of a rollup series: `gpu` (-1 for the node's GPUs together), the bucket's start, the
/// mean, and the last minute with data in the bucket.
pub(crate) type SeriesPoint = (i32, DateTime<Utc>, f64, DateTime<Utc>);

/// Means of `metric` in buckets of `bucket_ms` (whole minutes from `from_ms`) over `[from_ms, to_ms)`,
/// of each of the given GPUs of a node, or of all of them together when `by_gpu` is false; for
/// charts. Power is energy over covered time; utilisation is weighted by covered time.
#[allow(clippy::too_many_arguments)]
pub async fn series(
    db: &PgPool,
    node_id: NodeId,
    gpus: &[u32],
    from_ms: i64,
    to_ms: i64,
    metric: GpuMetric,
    bucket_ms: i64,
    by_gpu: bool,
) -> sqlx::Result<Vec<SeriesPoint>> {
    let gpus: Vec<i32> = gpus.iter().map(|g| *g as i32).collect();
    let (value, present) = match metric {
        GpuMetric::Power => ("sum(energy_j) / sum(covered_s)", "true"),
        GpuMetric::Util => (
            "sum(util_avg_pct * covered_s) / sum(covered_s)",
            "util_avg_pct is not null",
        ),
    };
    let gpu = if by_gpu { "gpu_index" } else { "-1" };
    if bucket_ms >= HOUR_MS && to_ms - from_ms > 2 * HOUR_MS {
        let hours = (bucket_ms / HOUR_MS).max(1);
        return hourly_series(db, node_id, &gpus, (from_ms, to_ms), metric, gpu, hours).await;
    }
    let bucket_ms = (bucket_ms / 60_000).max(1) * 60_000;
    sqlx::query_as(&format!(
        r#"select {gpu} as gpu, time_bucket(make_interval(secs => $5), minute, $3) as bucket,
            {value} as value, max(minute) as last
        from gpu_minute
        where node_id = $1
            and gpu_index = any($2)
            and minute >= $3
            and minute < $4
            and covered_s > 0
            and {present}
        group by 1, 2
        order by 1, 2"#
    ))
    .bind(node_id)
    .bind(&gpus)
    .bind(ts(from_ms))
    .bind(ts(to_ms))
    .bind(bucket_ms as f64 / 1000.0)
    .fetch_all(db)
    .await
}

const HOUR_MS: i64 = 3_600_000;

/// `series` in buckets of `hours` UTC hours (from the first whole hour): the hourly sums for whole
/// hours inside the window, minutes at its edges.
async fn hourly_series(
    db: &PgPool,
    node_id: NodeId,
    gpus: &[i32],
    (from_ms, to_ms): (i64, i64),
    metric: GpuMetric,
    gpu: &str,
    hours: i64,
) -> sqlx::Result<Vec<SeriesPoint>> {
    let (value, having) = match metric {
        GpuMetric::Power => ("sum(e) / sum(c)", "sum(c) > 0"),
        GpuMetric::Util => ("sum(uc) / sum(us)", "sum(us) > 0"),
    };
    let first_hour = (from_ms + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS;
    let last_hour = to_ms.div_euclid(HOUR_MS) * HOUR_MS;
    // One line for the node's GPUs: the node's hourly sums where every GPU in them is one of these,
    // the GPUs' own hours elsewhere (a node shared with another job). A line per GPU: the GPUs' hours.
    let mask = gpu_mask(gpus).filter(|_| gpu == "-1");
    let whole_hours = if mask.is_some() {
        r#"select -1 as gpu, time_bucket(make_interval(hours => $7), hour, $3) as bucket,
                energy_j as e, covered_s as c, util_covered as uc,
                util_covered_s as us, last_minute as last
            from node_hour
            where node_id = $1
                and hour >= $3
                and hour < $4
                and gpu_mask <> 0
                and gpu_mask & ~$8::int8 = 0
            union all
            select -1, time_bucket(make_interval(hours => $7), h.hour, $3), h.energy_j, h.covered_s,
                h.util_covered, h.util_covered_s, h.last_minute
            from node_hour n
            join gpu_hour h on h.node_id = n.node_id and h.hour = n.hour
            where n.node_id = $1
                and n.hour >= $3
                and n.hour < $4
                and n.gpu_mask & ~$8::int8 <> 0
                and h.gpu_index = any($2)
                and h.minutes > 0"#
            .to_owned()
    } else {
        format!(
            r#"select {gpu} as gpu, time_bucket(make_interval(hours => $7), hour, $3) as bucket,
                energy_j as e, covered_s as c, util_covered as uc,
                util_covered_s as us, last_minute as last
            from gpu_hour
            where node_id = $1
                and gpu_index = any($2)
                and hour >= $3
                and hour < $4
                and minutes > 0"#
        )
    };
    let sql = format!(
        r#"select gpu, bucket, {value} as value, max(last) as last
        from (
            {whole_hours}
            union all
            select {gpu}, time_bucket(make_interval(hours => $7), minute, $3), energy_j, covered_s,
                coalesce(util_avg_pct * covered_s, 0),
                case when util_avg_pct is null then 0 else covered_s end, minute
            from gpu_minute
            where node_id = $1
                and gpu_index = any($2)
                and covered_s > 0
                and ((minute >= $5 and minute < $3) or (minute >= $4 and minute < $6))
        ) x
        group by gpu, bucket
        having {having}
        order by 1, 2"#
    );
    let query = sqlx::query_as(&sql)
        .bind(node_id)
        .bind(gpus)
        .bind(ts(first_hour))
        .bind(ts(last_hour))
        .bind(ts(from_ms))
        .bind(ts(to_ms))
        .bind(hours as i32);
    match mask {
        Some(mask) => query.bind(mask),
        None => query,
    }
    .fetch_all(db)
    .await
}

/// Runs of minutes with data of each of the given GPUs of a node over `[from_ms, to_ms)`:
/// `(gpu, first minute ms, last minute ms)`, ordered by GPU and time; consecutive runs may touch.
/// Whole hours with all 60 minutes come from the hourly sums; minutes are read only at the window's
/// edges and in hours missing some (a week of 64 GPUs: 10,752 hours instead of 645,000 minutes).
pub(crate) async fn minute_runs(
    db: &PgPool,
    node_id: NodeId,
    gpus: &[u32],
    from_ms: i64,
    to_ms: i64,
) -> sqlx::Result<Vec<(u32, i64, i64)>> {
    let gpu_ids: Vec<i32> = gpus.iter().map(|g| *g as i32).collect();
    let first_hour = (from_ms + HOUR_MS - 1).div_euclid(HOUR_MS) * HOUR_MS;
    let last_hour = to_ms.div_euclid(HOUR_MS) * HOUR_MS;
    // Runs of consecutive whole hours, per GPU. Most GPUs report every hour: counted, their whole
    // window is one run; the others' runs are found in the database (gaps and islands). A 90-day job
    // of 64 GPUs has 138,000 whole hours: decoding a row for each took most of its page.
    let hours = ((last_hour - first_hour) / HOUR_MS).max(0);
    // The counted hours and the islands must be the same rows: one condition for both.
    const WHOLE_HOURS: &str = r#"from gpu_hour
        where node_id = $1
            and gpu_index = any($2)
            and hour >= $3
            and hour < $4
            and minutes = 60"#;
    let counts: Vec<(i32, i64)> = sqlx::query_as(&format!(
        "select gpu_index, count(*) {WHOLE_HOURS} group by gpu_index"
    ))
    .bind(node_id)
    .bind(&gpu_ids)
    .bind(ts(first_hour))
    .bind(ts(last_hour))
    .fetch_all(db)
    .await?;
    let mut full: Vec<(i32, DateTime<Utc>, DateTime<Utc>)> = counts
        .iter()
        .filter(|(_, n)| *n == hours)
        .map(|(g, _)| (*g, ts(first_hour), ts(last_hour - HOUR_MS)))
        .collect();
    let holed: Vec<i32> = counts
        .iter()
        .filter(|(_, n)| *n != hours)
        .map(|(g, _)| *g)
        .collect();
    if !holed.is_empty() {
        full.extend(
            sqlx::query_as::<_, (i32, DateTime<Utc>, DateTime<Utc>)>(&format!(
                r#"select gpu_index, min(hour), max(hour)
                from (
                    select gpu_index, hour,
                        hour - make_interval(hours => (row_number() over (
                            partition by gpu_index order by hour))::int) as island
                    {WHOLE_HOURS}
                ) h
                group by gpu_index, island"#
            ))
            .bind(node_id)
            .bind(&holed)
            .bind(ts(first_hour))
            .bind(ts(last_hour))
            .fetch_all(db)
            .await?,
        );
    }
    // Per GPU, its islands' first and last whole hours, in order.
    let mut whole: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for (g, first, last) in &full {
        whole
            .entry(*g)
            .or_default()
            .push((first.timestamp_millis(), last.timestamp_millis()));
    }
    // An island is a run of minutes from its first hour's first to its last hour's last.
    let mut runs: Vec<(u32, i64, i64)> = Vec::new();
    for g in &gpu_ids {
        let mut islands = whole.remove(g).unwrap_or_default();
        islands.sort_unstable();
        runs.extend(
            islands
                .iter()
                .map(|(first, last)| (*g as u32, *first, last + HOUR_MS - 60_000)),
        );
    }
    // The rest of the window, read minute by minute: the hours with some minutes but not all, and the
    // partial hours at its edges. Hours without data are not visited (a job said to have started
    // decades ago listed each of its 230,000 empty hours: issue 33, N1).
    let partial: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(
        r#"select gpu_index, hour
        from gpu_hour
        where node_id = $1
            and gpu_index = any($2)
            and hour >= $3
            and hour < $4
            and minutes > 0
            and (minutes < 60 or hour < $5 or hour >= $6)"#,
    )
    .bind(node_id)
    .bind(&gpu_ids)
    .bind(ts(from_ms.div_euclid(HOUR_MS) * HOUR_MS))
    .bind(ts(to_ms))
    .bind(ts(first_hour))
    .bind(ts(last_hour))
    .fetch_all(db)
    .await?;
    let (mut gpu, mut lo, mut hi) = (Vec::new(), Vec::new(), Vec::new());
    for (g, hour) in partial {
        let h = hour.timestamp_millis();
        gpu.push(g);
        lo.push(ts(h.max(from_ms)));
        hi.push(ts((h + HOUR_MS).min(to_ms)));
    }
    let minutes: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(
        r#"select p.gpu, m.minute
        from unnest($2::int[], $3::timestamptz[], $4::timestamptz[]) as p(gpu, lo, hi)
        cross join lateral (
            select minute
            from gpu_minute
            where node_id = $1
                and gpu_index = p.gpu
                and minute >= p.lo
                and minute < p.hi
                and covered_s > 0
            -- Keeps this an index lookup per hour: flattened, a generic plan hash-joins every
            -- minute of the node (0.3 s a node for a week-long job).
            offset 0
        ) m"#,
    )
    .bind(node_id)
    .bind(&gpu)
    .bind(&lo)
    .bind(&hi)
    .fetch_all(db)
    .await?;
    runs.extend(minutes.into_iter().map(|(g, m)| {
        let t = m.timestamp_millis();
        (g as u32, t, t)
    }));
    runs.sort_unstable();
    Ok(runs)
}

/// A site's GPUs' energy in rolled-up hours, J.
pub(crate) async fn site_energy_j(db: &PgPool, site_id: SiteId) -> sqlx::Result<f64> {
    sqlx::query_scalar(
        r#"select coalesce(sum(h.energy_j), 0)::float8
        from gpu_hour h
        join nodes n on n.id = h.node_id
        where n.site_id = $1"#,
    )
    .bind(site_id)
    .fetch_one(db)
    .await
}
