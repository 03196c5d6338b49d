//! Jobs and their allocations.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool, Postgres, QueryBuilder, Transaction};
use wattlas_protocol::{JobTotals, JobView, UnknownGpus};

/// A job row with its site's name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    /// Scheduler job id.
    pub id: String,
    /// Owner.
    pub user_name: String,
    /// Name.
    pub name: String,
    /// Site id.
    pub site_id: i32,
    /// Site name.
    pub site: String,
    /// Start.
    pub start_time: DateTime<Utc>,
    /// End, when ended.
    pub end_time: Option<DateTime<Utc>>,
    /// Tags.
    pub tags: Json<BTreeMap<String, String>>,
    /// GPUs held where the scheduler's record cannot say which.
    pub unknown_gpus: Json<Vec<UnknownGpus>>,
}

/// One allocated GPU.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AllocatedGpu {
    /// Node id.
    pub node_id: i32,
    /// Node name.
    pub node: String,
    /// GPU index.
    pub gpu_index: i32,
}

/// Filters of the jobs list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// The only owner the caller may see (researchers), whatever `user` asks for.
    pub owner: Option<String>,
    /// Owner.
    pub user: Option<String>,
    /// Site name.
    pub site: Option<String>,
    /// Tag key and value.
    pub tag: Option<(String, String)>,
    /// Only these job ids (a statement of a paper's jobs).
    pub ids: Option<Vec<String>>,
    /// Power cap, W (as measured: the limit most samples reported).
    pub power_cap_w: Option<f64>,
    /// Only running (true) or only finished (false) jobs.
    pub running: Option<bool>,
    /// Jobs still running at or ending after this time.
    pub from: Option<DateTime<Utc>>,
    /// Jobs starting before this time.
    pub to: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = r#"select j.id, j.user_name, j.name, j.site_id, s.name as site, j.start_time, j.end_time, j.tags,
            j.unknown_gpus
        from jobs j
        join sites s on s.id = j.site_id"#;

/// A job by id.
pub async fn by_id(db: impl PgExecutor<'_>, id: &str) -> sqlx::Result<Option<Job>> {
    sqlx::query_as(&format!("{JOB_COLUMNS}\n        where j.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// A job by id, locked for update inside a transaction.
pub async fn by_id_for_update(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
) -> sqlx::Result<Option<Job>> {
    sqlx::query_as(&format!(
        "{JOB_COLUMNS}\n        where j.id = $1\n        for update of j"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// Inserts a new job; `false` when the id exists already.
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    user: &str,
    name: &str,
    site_id: i32,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    tags: &BTreeMap<String, String>,
    unknown_gpus: &[UnknownGpus],
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        r#"insert into jobs (id, user_name, name, site_id, start_time, end_time, tags, unknown_gpus)
        values ($1, $2, $3, $4, $5, $6, $7, $8)
        on conflict (id) do nothing"#,
    )
    .bind(id)
    .bind(user)
    .bind(name)
    .bind(site_id)
    .bind(start)
    .bind(end)
    .bind(Json(tags))
    .bind(Json(unknown_gpus))
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Merges a registration into an existing job: the earliest start, added tags, the latest end when
/// given, and the unknown GPUs when given (a second node's prolog, an admin's re-send, a re-import).
pub async fn merge(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    tags: &BTreeMap<String, String>,
    unknown_gpus: &[UnknownGpus],
) -> sqlx::Result<()> {
    sqlx::query(
        r#"update jobs
        set tags = tags || $2,
            start_time = least(start_time, $4),
            end_time = case when $3::timestamptz is null then end_time
                            else greatest(coalesce(end_time, $3), $3) end,
            unknown_gpus = case when $5::jsonb = '[]'::jsonb then unknown_gpus else $5 end
        where id = $1"#,
    )
    .bind(id)
    .bind(Json(tags))
    .bind(end)
    .bind(start)
    .bind(Json(unknown_gpus))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Registers (or re-opens) a node's part of a job, from its start; the job runs while a part does.
pub async fn start_part(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    node_id: i32,
    start: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"with part as (
            insert into job_parts (job_id, node_id, start_time)
            values ($1, $2, $3)
            on conflict (job_id, node_id) do update
            set start_time = least(job_parts.start_time, excluded.start_time), end_time = null
        )
        update jobs
        set end_time = null, start_time = least(start_time, $3)
        where id = $1"#,
    )
    .bind(id)
    .bind(node_id)
    .bind(start)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends a node's part of a job; the job ends when no part is open and every allocated node has ended
/// its part, at the latest part's end. Returns whether the job has ended.
pub async fn end_part(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    node_id: i32,
    end: DateTime<Utc>,
) -> sqlx::Result<bool> {
    sqlx::query(
        r#"insert into job_parts (job_id, node_id, start_time, end_time)
        select id, $2, least(start_time, $3), $3
        from jobs
        where id = $1
        on conflict (job_id, node_id) do update
        set end_time = greatest(excluded.end_time, job_parts.start_time)"#,
    )
    .bind(id)
    .bind(node_id)
    .bind(end)
    .execute(&mut **tx)
    .await?;
    let ended: Option<DateTime<Utc>> = sqlx::query_scalar(
        r#"update jobs j
        set end_time = greatest(j.end_time, (select max(end_time) from job_parts where job_id = $1))
        where j.id = $1
            and not exists (
                select 1 from job_parts p where p.job_id = $1 and p.end_time is null)
            and not exists (
                select 1 from job_allocations a
                where a.job_id = $1
                    and not exists (
                        select 1 from job_parts p where p.job_id = $1 and p.node_id = a.node_id))
        returning end_time"#,
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(ended.is_some())
}

/// Adds allocated GPUs (existing ones stay).
pub async fn add_allocations(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    gpus: &[(i32, i32)],
) -> sqlx::Result<()> {
    if gpus.is_empty() {
        return Ok(());
    }
    let node: Vec<i32> = gpus.iter().map(|g| g.0).collect();
    let index: Vec<i32> = gpus.iter().map(|g| g.1).collect();
    sqlx::query(
        r#"insert into job_allocations (job_id, node_id, gpu_index)
        select $1, * from unnest($2::int[], $3::int[])
        on conflict do nothing"#,
    )
    .bind(id)
    .bind(&node)
    .bind(&index)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Sets a job's end (admin): the latest end reported wins, and open parts end there.
pub async fn end(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    end: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"update job_parts
        set end_time = greatest($2, start_time)
        where job_id = $1 and end_time is null"#,
    )
    .bind(id)
    .bind(end)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        r#"update jobs
        set end_time = greatest(coalesce(end_time, $2), $2)
        where id = $1"#,
    )
    .bind(id)
    .bind(end)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A job's allocated GPUs, by node name then index.
pub async fn allocations(db: impl PgExecutor<'_>, id: &str) -> sqlx::Result<Vec<AllocatedGpu>> {
    sqlx::query_as(
        r#"select a.node_id, n.name as node, a.gpu_index
        from job_allocations a
        join nodes n on n.id = a.node_id
        where a.job_id = $1
        order by n.name, a.gpu_index"#,
    )
    .bind(id)
    .fetch_all(db)
    .await
}

/// Whether a node holds part of a job (GPUs, or a registered part).
pub async fn node_is_allocated(db: &PgPool, id: &str, node_id: i32) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        r#"select exists (
            select 1
            from job_allocations
            where job_id = $1
                and node_id = $2
        ) or exists (
            select 1
            from job_parts
            where job_id = $1
                and node_id = $2
        )"#,
    )
    .bind(id)
    .bind(node_id)
    .fetch_one(db)
    .await
}

fn push_filter<'a>(qb: &mut QueryBuilder<'a, Postgres>, filter: &'a JobFilter) {
    qb.push("\n        where true");
    if let Some(owner) = &filter.owner {
        qb.push("\n            and j.user_name = ").push_bind(owner);
    }
    if let Some(user) = &filter.user {
        qb.push("\n            and j.user_name = ").push_bind(user);
    }
    if let Some(site) = &filter.site {
        qb.push("\n            and s.name = ").push_bind(site);
    }
    if let Some((k, v)) = &filter.tag {
        let mut one = BTreeMap::new();
        one.insert(k.clone(), v.clone());
        qb.push("\n            and j.tags @> ").push_bind(Json(one));
    }
    if let Some(ids) = &filter.ids {
        qb.push("\n            and j.id = any(")
            .push_bind(ids)
            .push(")");
    }
    if let Some(cap) = filter.power_cap_w {
        qb.push("\n            and j.id in (select job_id from job_energy where power_cap_w = ")
            .push_bind(cap)
            .push(")");
    }
    match filter.running {
        Some(true) => {
            qb.push("\n            and j.end_time is null");
        }
        Some(false) => {
            qb.push("\n            and j.end_time is not null");
        }
        None => {}
    }
    if let Some(from) = filter.from {
        qb.push("\n            and (j.end_time is null or j.end_time >= ")
            .push_bind(from)
            .push(")");
    }
    if let Some(to) = filter.to {
        qb.push("\n            and j.start_time < ").push_bind(to);
    }
}

/// What the jobs list sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobSort {
    /// Start time (the default, newest first).
    #[default]
    Start,
    /// IT energy.
    Energy,
    /// Duration (running jobs: so far).
    Duration,
    /// Allocated GPUs.
    Gpus,
    /// Owner.
    User,
    /// Job id.
    Id,
}

impl JobSort {
    /// The names the URL uses.
    pub const NAMES: [(&'static str, JobSort); 6] = [
        ("start", Self::Start),
        ("energy", Self::Energy),
        ("duration", Self::Duration),
        ("gpus", Self::Gpus),
        ("user", Self::User),
        ("id", Self::Id),
    ];

    /// Whether the key is null for some jobs (those without stored energy).
    fn nullable(self) -> bool {
        matches!(self, Self::Energy | Self::Gpus)
    }

    fn column(self) -> &'static str {
        match self {
            Self::Start => "j.start_time",
            Self::Energy => "e.it_energy_kwh",
            Self::Duration => "coalesce(j.end_time, now()) - j.start_time",
            Self::Gpus => "e.gpu_count",
            Self::User => "j.user_name",
            Self::Id => "j.id",
        }
    }
}

/// Whether raw data for the job `j`'s GPUs and time waits for the rollup task: its stored summary
/// predates it (the task marks the summary stale only when it gets there).
const RAW_PENDING: &str = r#"exists (
                select 1
                from job_allocations a
                join rollup_pending p on p.node_id = a.node_id
                where a.job_id = j.id
                    and p.t_from <= coalesce(j.end_time, 'infinity')
                    and p.t_to >= j.start_time)"#;

/// A listed job with its stored energy summary, if computed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListedJob {
    /// The job.
    #[sqlx(flatten)]
    pub job: Job,
    /// Its view as last computed.
    pub summary: Option<Json<JobView>>,
    /// When.
    pub computed_at: Option<DateTime<Utc>>,
    /// Whether raw data arrived for it since.
    pub stale: Option<bool>,
}

/// Jobs matching a filter, one page, sorted (ties by id).
pub async fn list(
    db: &PgPool,
    filter: &JobFilter,
    sort: JobSort,
    descending: bool,
    limit: i64,
    offset: i64,
) -> sqlx::Result<Vec<ListedJob>> {
    // The page's ids are chosen first, sorting only (id, key): sorting whole rows (tags, summaries)
    // of 100,000 jobs spills to disk. Then the page's 50 rows are read whole.
    let dir = if descending { "desc" } else { "asc" };
    // `nulls last` only where the key can be null: on a not-null column it keeps the start-time
    // index from serving the default order.
    let nulls = if sort.nullable() { " nulls last" } else { "" };
    let mut qb = QueryBuilder::new(format!(
        r#"select j.id, j.user_name, j.name, j.site_id, s.name as site, j.start_time, j.end_time, j.tags,
            j.unknown_gpus, e.summary, e.computed_at, e.stale or {RAW_PENDING} as stale
        from (
            select j.id, {key} as sort_key
            from jobs j
            join sites s on s.id = j.site_id
            left join job_energy e on e.job_id = j.id"#,
        key = sort.column()
    ));
    push_filter(&mut qb, filter);
    qb.push(format!(
        "\n            order by {} {dir}{nulls}, j.id {dir}",
        sort.column()
    ))
    .push("\n            limit ")
    .push_bind(limit)
    .push(" offset ")
    .push_bind(offset);
    qb.push(format!(
        r#"
        ) page
        join jobs j on j.id = page.id
        join sites s on s.id = j.site_id
        left join job_energy e on e.job_id = j.id
        order by page.sort_key {dir}{nulls}, j.id {dir}"#
    ));
    qb.build_query_as().fetch_all(db).await
}

#[derive(sqlx::FromRow)]
struct TotalsRow {
    jobs: i64,
    gpu_hours: f64,
    it_energy_kwh: f64,
    facility_energy_kwh: f64,
    pending: i64,
    updating: i64,
}

/// Sums over all jobs matching a filter, from their stored energy summaries, and how many of them are
/// counted at a figure that data arrived since (stale, or raw data waiting for the rollup task).
pub async fn totals(db: &PgPool, filter: &JobFilter) -> sqlx::Result<(JobTotals, u64)> {
    let mut qb = QueryBuilder::new(
        // Jobs with raw data waiting for the rollup task, found from the (short) pending list rather
        // than asked of each of 100,000 jobs.
        r#"with raw_pending as (
            select distinct a.job_id
            from rollup_pending p
            join job_allocations a on a.node_id = p.node_id
            join jobs pj on pj.id = a.job_id
            where p.t_from <= coalesce(pj.end_time, 'infinity')
                and p.t_to >= pj.start_time
        )
        select count(*) as jobs, coalesce(sum(e.gpu_hours), 0) as gpu_hours,
            coalesce(sum(e.it_energy_kwh), 0) as it_energy_kwh,
            coalesce(sum(e.facility_energy_kwh), 0) as facility_energy_kwh,
            count(*) - count(e.job_id) as pending,
            count(*) filter (where e.stale or j.id in (select job_id from raw_pending)) as updating
        from jobs j
        join sites s on s.id = j.site_id
        left join job_energy e on e.job_id = j.id"#,
    );
    push_filter(&mut qb, filter);
    let t: TotalsRow = qb.build_query_as().fetch_one(db).await?;
    Ok((
        JobTotals {
            jobs: t.jobs.max(0) as u64,
            gpu_hours: t.gpu_hours,
            it_energy_kwh: t.it_energy_kwh,
            facility_energy_kwh: t.facility_energy_kwh,
            pending: t.pending.max(0) as u64,
        },
        t.updating.max(0) as u64,
    ))
}

/// Stores a job's freshly computed view as its energy summary.
pub async fn upsert_energy(
    db: &PgPool,
    view: &JobView,
    it_j_by_hour: &BTreeMap<i64, f64>,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"insert into job_energy (job_id, computed_at, stale, gpu_count, gpu_hours, it_energy_kwh,
            facility_energy_kwh, power_cap_w, summary, it_j_by_hour)
        values ($1, now(), false, $2, $3, $4, $5, $6, $7, $8)
        on conflict (job_id) do update
        set computed_at = excluded.computed_at, stale = false, gpu_count = excluded.gpu_count,
            gpu_hours = excluded.gpu_hours, it_energy_kwh = excluded.it_energy_kwh,
            facility_energy_kwh = excluded.facility_energy_kwh, power_cap_w = excluded.power_cap_w,
            summary = excluded.summary, it_j_by_hour = excluded.it_j_by_hour"#,
    )
    .bind(&view.id)
    .bind(view.gpu_count as i32)
    .bind(f64::from(view.gpu_count) * view.duration_s / 3600.0)
    .bind(view.it_energy_kwh)
    .bind(view.facility_energy_kwh)
    .bind(view.power_cap_w)
    .bind(Json(view))
    .bind(Json(it_j_by_hour))
    .execute(db)
    .await?;
    Ok(())
}

/// Jobs whose energy summary is missing, stale, or (running) older than `running_max_age_s`: most
/// needed first.
pub async fn needing_energy(
    db: &PgPool,
    running_max_age_s: f64,
    limit: i64,
) -> sqlx::Result<Vec<Job>> {
    // Three indexed questions instead of one OR over a join of every job with its summary (0.13 s
    // every few seconds at 100,000 jobs): jobs without a summary (an anti-join), stale summaries (a
    // partial index), running jobs (a partial index).
    sqlx::query_as(&format!(
        r#"with due as (
            (select j.id, null::timestamptz as computed_at
            from jobs j
            where not exists (select 1 from job_energy e where e.job_id = j.id)
            limit $2)
            union all
            (select job_id, computed_at
            from job_energy
            where stale
            order by computed_at
            limit $2)
            union all
            (select j.id, e.computed_at
            from jobs j
            join job_energy e on e.job_id = j.id
            where j.end_time is null
                and not e.stale
                and e.computed_at < now() - make_interval(secs => $1)
            limit $2)
        )
        {JOB_COLUMNS}
        join due on due.id = j.id
        order by due.computed_at nulls first, j.start_time desc
        limit $2"#
    ))
    .bind(running_max_age_s)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Marks stale the energy summaries of jobs on these nodes overlapping these raw time ranges
/// (raw data arrived for them): `(node, from, to)`.
pub async fn mark_energy_stale(
    tx: &mut Transaction<'_, Postgres>,
    ranges: &[(i32, DateTime<Utc>, DateTime<Utc>)],
) -> sqlx::Result<u64> {
    if ranges.is_empty() {
        return Ok(0);
    }
    let node: Vec<i32> = ranges.iter().map(|r| r.0).collect();
    let from: Vec<DateTime<Utc>> = ranges.iter().map(|r| r.1).collect();
    let to: Vec<DateTime<Utc>> = ranges.iter().map(|r| r.2).collect();
    let done = sqlx::query(
        r#"update job_energy e
        set stale = true
        from job_allocations a
        join jobs j on j.id = a.job_id
        join unnest($1::int[], $2::timestamptz[], $3::timestamptz[]) as p(node_id, t_from, t_to)
            on a.node_id = p.node_id
        where e.job_id = j.id
            and not e.stale
            and j.start_time <= p.t_to
            and coalesce(j.end_time, 'infinity') >= p.t_from"#,
    )
    .bind(&node)
    .bind(&from)
    .bind(&to)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Marks stale the energy summaries of a site's jobs overlapping `[from, to]` (unbounded where None),
/// widened by an hour each way: facility readings, carbon intensity or the site's settings changed, and
/// each hour's PUE and intensity enter the jobs of that hour.
pub async fn mark_site_energy_stale<'e>(
    db: impl PgExecutor<'e>,
    site_id: i32,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        r#"update job_energy e
        set stale = true
        from jobs j
        where e.job_id = j.id
            and not e.stale
            and j.site_id = $1
            and j.start_time <= coalesce($3 + interval '1 hour', 'infinity')
            and coalesce(j.end_time, 'infinity') >= coalesce($2 - interval '1 hour', '-infinity')"#,
    )
    .bind(site_id)
    .bind(from)
    .bind(to)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// A job's stored view: `(summary, computed_at, stale)`. Stale also while raw data for the job's GPUs
/// and time waits for the rollup task (which marks the summary stale only when it gets there).
pub async fn stored_energy(
    db: &PgPool,
    id: &str,
) -> sqlx::Result<Option<(Json<JobView>, DateTime<Utc>, bool)>> {
    sqlx::query_as(&format!(
        r#"select e.summary, e.computed_at,
            e.stale or {RAW_PENDING} as stale
        from job_energy e
        join jobs j on j.id = e.job_id
        where e.job_id = $1"#
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Tag values shared by at least two finished jobs, most jobs first: the candidate comparisons.
pub async fn shared_tags(
    db: &PgPool,
    owner: Option<&str>,
) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as(
        r#"select t.key, t.value, count(*) as jobs
        from jobs j
        cross join lateral jsonb_each_text(j.tags) as t(key, value)
        where j.end_time is not null
            and ($1::text is null or j.user_name = $1)
        group by t.key, t.value
        having count(*) >= 2
        order by jobs desc, t.key, t.value
        limit 200"#,
    )
    .bind(owner)
    .fetch_all(db)
    .await
}

/// The stored IT energy per UTC hour of jobs: job id -> (hour start ms -> J).
pub async fn energy_by_hour(
    db: &PgPool,
    ids: &[String],
) -> sqlx::Result<std::collections::HashMap<String, BTreeMap<i64, f64>>> {
    let rows: Vec<(String, Json<BTreeMap<i64, f64>>)> = sqlx::query_as(
        r#"select job_id, it_j_by_hour
        from job_energy
        where job_id = any($1)"#,
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(id, h)| (id, h.0)).collect())
}

/// The model of each job's first allocated GPU.
pub async fn gpu_models(
    db: &PgPool,
    ids: &[String],
) -> sqlx::Result<std::collections::HashMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        r#"select distinct on (a.job_id) a.job_id, g.model
        from job_allocations a
        join gpus g on g.node_id = a.node_id and g.gpu_index = a.gpu_index
        where a.job_id = any($1)
        order by a.job_id, a.node_id, a.gpu_index"#,
    )
    .bind(ids)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}
