//! Job rows and their allocations: registration by parts, reopening, ends.

use crate::ids::{NodeId, SiteId};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};
use wattlas_protocol::{JobTotals, SchedulerFields, UnknownGpus};

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
    pub site_id: SiteId,
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
    /// The scheduler's raw id, where known.
    pub raw_id: Option<String>,
    /// Account.
    pub account: Option<String>,
    /// Partition.
    pub partition: Option<String>,
    /// The scheduler's state as its accounting last said it.
    pub scheduler_state: Option<String>,
}

impl Job {
    /// The scheduler's fields as the API says them.
    pub(crate) fn scheduler(&self) -> SchedulerFields {
        SchedulerFields {
            raw_id: self.raw_id.clone(),
            account: self.account.clone(),
            partition: self.partition.clone(),
            state: self.scheduler_state.clone(),
        }
    }
}

/// A job's row as a registration gives it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobRecord<'a> {
    /// Scheduler job id.
    pub id: &'a str,
    /// Owner.
    pub user: &'a str,
    /// Name (empty: not known).
    pub name: &'a str,
    /// Site id.
    pub site_id: SiteId,
    /// Start.
    pub start: DateTime<Utc>,
    /// End, where known.
    pub end: Option<DateTime<Utc>>,
    /// Tags.
    pub tags: &'a BTreeMap<String, String>,
    /// GPUs held where the record cannot say which.
    pub unknown_gpus: &'a [UnknownGpus],
    /// Raw id, account, partition, state.
    pub scheduler: &'a SchedulerFields,
}

/// One allocated GPU.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct AllocatedGpu {
    /// Node id.
    pub node_id: NodeId,
    /// Node name.
    pub node: String,
    /// GPU index.
    pub gpu_index: i32,
    /// The MIG instance's profile, where the job holds one rather than the whole GPU.
    pub mig: Option<String>,
    /// Its compute slices of the GPU's seven.
    pub mig_slices: Option<i16>,
}

pub(super) const JOB_COLUMNS: &str = r#"select j.id, j.user_name, j.name, j.site_id, s.name as site, j.start_time, j.end_time, j.tags,
            j.unknown_gpus, j.raw_id, j.account, j.partition, j.scheduler_state
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
pub(crate) async fn by_id_for_update(
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
pub(crate) async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    job: &JobRecord<'_>,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        r#"insert into jobs (id, user_name, name, site_id, start_time, end_time, tags, unknown_gpus,
            raw_id, account, partition, scheduler_state)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        on conflict (id) do nothing"#,
    )
    .bind(job.id)
    .bind(job.user)
    .bind(job.name)
    .bind(job.site_id)
    .bind(job.start)
    .bind(job.end)
    .bind(Json(job.tags))
    .bind(Json(job.unknown_gpus))
    .bind(&job.scheduler.raw_id)
    .bind(&job.scheduler.account)
    .bind(&job.scheduler.partition)
    .bind(&job.scheduler.state)
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The id of the site's job whose raw id is `raw_id`, if any.
pub(crate) async fn id_by_raw_id(
    db: impl PgExecutor<'_>,
    site_id: SiteId,
    raw_id: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "select id from jobs where site_id = $1 and raw_id = $2 order by start_time desc limit 1",
    )
    .bind(site_id)
    .bind(raw_id)
    .fetch_optional(db)
    .await
}

/// Whether any node's prolog registered a part of the job (its times then come from the nodes).
pub(crate) async fn has_parts(tx: &mut Transaction<'_, Postgres>, id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from job_parts where job_id = $1)")
        .bind(id)
        .fetch_one(&mut **tx)
        .await
}

/// The nodes a job holds GPUs on during `[from, to]` (`to` absent: from `from` on): those without a
/// part, and those whose part overlaps it within a second (a scheduler's times are whole seconds).
/// A requeued job's record describes its last run: the nodes of an earlier run are not in it.
pub(crate) async fn allocated_node_names_during(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        r#"select distinct n.name
        from job_allocations a
        join nodes n on n.id = a.node_id
        left join job_parts p on p.job_id = a.job_id and p.node_id = a.node_id
        where a.job_id = $1
            and (p.node_id is null
                or ((p.end_time is null or p.end_time > $2 - interval '1 second')
                    and ($3::timestamptz is null or p.start_time < $3 + interval '1 second')))
        order by n.name"#,
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut **tx)
    .await
}

/// Merges a registration into an existing job (a second node's prolog, an admin's re-send, a
/// re-import, sacct completing what a prolog registered): tags added; a name, raw id, account and
/// partition where the job has none; the scheduler's state when given. Times: with `keep_times` (a
/// scheduler's record of a job its nodes registered: their clocks at the prolog and epilog are finer
/// than sacct's seconds) the start stays and the end is filled only where none is; otherwise the earliest
/// start and the latest end given. The unknown GPUs when given.
pub(crate) async fn merge(
    tx: &mut Transaction<'_, Postgres>,
    job: &JobRecord<'_>,
    keep_times: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"update jobs
        set tags = tags || $2,
            start_time = case when $6 then start_time else least(start_time, $4) end,
            end_time = case when $3::timestamptz is null then end_time
                            when $6 then coalesce(end_time, $3)
                            else greatest(coalesce(end_time, $3), $3) end,
            unknown_gpus = case when $5::jsonb = '[]'::jsonb then unknown_gpus else $5 end,
            name = case when name = '' then $7 else name end,
            raw_id = coalesce(raw_id, $8),
            account = coalesce(account, $9),
            partition = coalesce(partition, $10),
            scheduler_state = coalesce($11, scheduler_state)
        where id = $1"#,
    )
    .bind(job.id)
    .bind(Json(job.tags))
    .bind(job.end)
    .bind(job.start)
    .bind(Json(job.unknown_gpus))
    .bind(keep_times)
    .bind(job.name)
    .bind(&job.scheduler.raw_id)
    .bind(&job.scheduler.account)
    .bind(&job.scheduler.partition)
    .bind(&job.scheduler.state)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Drops the unknown-GPU entries of nodes where the job holds named GPUs: a prolog named them, so they
/// are charged and not unknown, whichever source came first.
pub(crate) async fn drop_named_unknown_gpus(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        r#"update jobs j
        set unknown_gpus = coalesce((
            select jsonb_agg(u order by ord)
            from jsonb_array_elements(j.unknown_gpus) with ordinality as e(u, ord)
            where not exists (
                select 1 from job_allocations a join nodes n on n.id = a.node_id
                where a.job_id = j.id and n.name = u ->> 'node')), '[]'::jsonb)
        where j.id = $1 and j.unknown_gpus <> '[]'::jsonb"#,
    )
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Registers (or re-opens) a node's part of a job, from its start; the job runs while a part does.
pub(crate) async fn start_part(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    node_id: NodeId,
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

/// The highest number a site's jobs' raw ids (else ids) start with, other than `except`'s: one entry
/// of the index `jobs_site_raw_number`, whose expression this must repeat exactly.
pub(crate) async fn highest_raw_number(
    tx: &mut Transaction<'_, Postgres>,
    site_id: SiteId,
    except: &str,
) -> sqlx::Result<Option<u64>> {
    let n: Option<i64> = sqlx::query_scalar(
        r#"select max(substring(coalesce(raw_id, id) from '^[0-9]{1,18}')::int8)
        from jobs
        where site_id = $1 and id <> $2"#,
    )
    .bind(site_id)
    .bind(except)
    .fetch_one(&mut **tx)
    .await?;
    Ok(n.map(|n| n.max(0) as u64))
}

/// Ends a node's part of a job; the job ends when no part is open and every allocated node has ended
/// its part, at the latest part's end. Returns whether the job has ended.
pub(crate) async fn end_part(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    node_id: NodeId,
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

/// An allocated GPU to add: (node, GPU, its MIG instance's profile and slices where not whole).
pub(crate) type NewAllocation = (NodeId, i32, Option<(String, i16)>);

/// Adds allocated GPUs (existing ones stay).
pub(crate) async fn add_allocations(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    gpus: &[NewAllocation],
) -> sqlx::Result<()> {
    if gpus.is_empty() {
        return Ok(());
    }
    let node: Vec<NodeId> = gpus.iter().map(|g| g.0).collect();
    let index: Vec<i32> = gpus.iter().map(|g| g.1).collect();
    let mig: Vec<Option<String>> = gpus
        .iter()
        .map(|g| g.2.as_ref().map(|m| m.0.clone()))
        .collect();
    let slices: Vec<Option<i16>> = gpus.iter().map(|g| g.2.as_ref().map(|m| m.1)).collect();
    sqlx::query(
        r#"insert into job_allocations (job_id, node_id, gpu_index, mig, mig_slices)
        select $1, * from unnest($2::int[], $3::int[], $4::text[], $5::int2[])
        on conflict do nothing"#,
    )
    .bind(id)
    .bind(&node)
    .bind(&index)
    .bind(&mig)
    .bind(&slices)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How an end meets the times a job already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// A scheduler's end of a job none of whose parts ended it (a node died): its open parts end
    /// there, the parts that ended keep their times, and the job's end is set only if it has none.
    OpenParts,
    /// An admin's end is the job's end: it ends the parts still running and corrects those that
    /// ended later (an end moved earlier), and it replaces the job's own, earlier or later.
    Correct,
}

/// Ends a job at `end`, as `how` says.
pub(crate) async fn end(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    end: DateTime<Utc>,
    how: Ending,
) -> sqlx::Result<()> {
    let (parts, job) = match how {
        Ending::OpenParts => ("end_time is null", "end_time is null"),
        Ending::Correct => ("(end_time is null or end_time > $2)", "true"),
    };
    sqlx::query(&format!(
        "update job_parts set end_time = greatest($2, start_time) where job_id = $1 and {parts}"
    ))
    .bind(id)
    .bind(end)
    .execute(&mut **tx)
    .await?;
    sqlx::query(&format!(
        "update jobs set end_time = $2 where id = $1 and {job}"
    ))
    .bind(id)
    .bind(end)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A job's allocated GPUs, by node name then index.
pub(crate) async fn allocations(
    db: impl PgExecutor<'_>,
    id: &str,
) -> sqlx::Result<Vec<AllocatedGpu>> {
    sqlx::query_as(
        r#"select a.node_id, n.name as node, a.gpu_index, a.mig, a.mig_slices
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
pub(crate) async fn node_is_allocated(
    db: &PgPool,
    id: &str,
    node_id: NodeId,
) -> sqlx::Result<bool> {
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

/// Whether raw data for the job `j`'s GPUs and time waits for the rollup task: its stored summary
/// predates it (the task marks the summary stale only when it gets there).
pub(super) const RAW_PENDING: &str = r#"exists (
                select 1
                from job_allocations a
                join rollup_pending p on p.node_id = a.node_id
                where a.job_id = j.id
                    and p.t_from <= coalesce(j.end_time, 'infinity')
                    and p.t_to >= j.start_time)"#;

#[derive(sqlx::FromRow)]
pub(super) struct TotalsRow {
    jobs: i64,
    gpu_hours: f64,
    it_energy_kwh: f64,
    facility_energy_kwh: f64,
    pending: i64,
    updating: i64,
    summaries: i64,
    bounded: i64,
    it_low: f64,
    it_high: f64,
    facility_low: f64,
    facility_high: f64,
}

impl From<TotalsRow> for (JobTotals, u64) {
    fn from(t: TotalsRow) -> Self {
        // Bounded where every summary is (each job's bound added: nothing assumed to cancel).
        let bounded = |v: f64| (t.bounded == t.summaries).then_some(v);
        (
            JobTotals {
                jobs: t.jobs.max(0) as u64,
                gpu_hours: t.gpu_hours,
                it_energy_kwh: t.it_energy_kwh,
                facility_energy_kwh: t.facility_energy_kwh,
                pending: t.pending.max(0) as u64,
                it_energy_kwh_low: bounded(t.it_low),
                it_energy_kwh_high: bounded(t.it_high),
                facility_energy_kwh_low: bounded(t.facility_low),
                facility_energy_kwh_high: bounded(t.facility_high),
            },
            t.updating.max(0) as u64,
        )
    }
}

/// Other jobs holding a GPU of job `id` at some time in `[from_ms, to_ms)`: (node, GPU, their start and
/// end in ms, `i64::MAX` while running).
pub(crate) async fn shared_gpus(
    db: &PgPool,
    id: &str,
    from_ms: i64,
    to_ms: i64,
) -> sqlx::Result<Vec<(NodeId, i32, i64, i64)>> {
    type Row = (NodeId, i32, DateTime<Utc>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = sqlx::query_as(
        // The jobs overlapping the window first (by the span index), then their GPUs that are the
        // job's: going from the job's GPUs to every job that ever held them read ~2,000 allocations
        // a GPU at 100,000 jobs (120-175 ms a job; now 3-4 ms).
        &format!(
            r#"with {}
        select mine.node_id, mine.gpu_index, o.start_time, o.end_time
        from overlapping o
        join job_allocations theirs on theirs.job_id = o.id
        join job_allocations mine
            on mine.job_id = $1
            and mine.node_id = theirs.node_id
            and mine.gpu_index = theirs.gpu_index
        where o.id <> $1
        order by 1, 2, 3"#,
            crate::db::OVERLAPPING_JOBS
        ),
    )
    .bind(id)
    .bind(crate::db::ts(from_ms))
    .bind(crate::db::ts(to_ms))
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(n, g, s, e)| {
            (
                n,
                g,
                s.timestamp_millis(),
                e.map_or(i64::MAX, |e| e.timestamp_millis()),
            )
        })
        .collect())
}
