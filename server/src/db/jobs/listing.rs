//! The jobs list: filters, sorting, paging, totals, and what comparisons and statements read of it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use wattlas_protocol::{JobTotals, JobView};

use super::rows::*;

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
pub(crate) enum JobSort {
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
    pub(crate) const NAMES: [(&'static str, JobSort); 6] = [
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
            // The job's copy of its summary's energy (one index on jobs serves every depth).
            Self::Energy => "j.it_energy_kwh",
            Self::Duration => {
                "extract(epoch from coalesce(j.end_time, now()) - j.start_time)::float8"
            }
            Self::Gpus => "e.gpu_count::float8",
            Self::User => "j.user_name",
            Self::Id => "j.id",
        }
    }

    /// The type of the key, as a keyset cursor carries it.
    pub(crate) fn kind(self) -> KeyKind {
        match self {
            Self::Start => KeyKind::Time,
            Self::Energy | Self::Duration | Self::Gpus => KeyKind::Number,
            Self::User | Self::Id => KeyKind::Text,
        }
    }
}

/// The type of a sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// A time.
    Time,
    /// A number (energy, seconds, GPUs).
    Number,
    /// Text.
    Text,
}

/// A sort key's value, as a keyset cursor carries it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SortKey {
    /// Start time.
    Time(DateTime<Utc>),
    /// Energy, seconds or GPUs.
    Number(f64),
    /// User or id.
    Text(String),
}

/// Where a page starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PageStart {
    /// After this many rows (deep offsets sort every row before them).
    Offset(i64),
    /// After the row with this sort key (`None`: a job without one, listed last) and id (keyset: as
    /// cheap at any depth as on the first page).
    After(Option<SortKey>, String),
}

fn push_key<'a>(qb: &mut QueryBuilder<'a, Postgres>, key: &'a SortKey) {
    match key {
        SortKey::Time(t) => qb.push_bind(*t),
        SortKey::Number(n) => qb.push_bind(*n),
        SortKey::Text(t) => qb.push_bind(t.as_str()),
    };
}

/// A listed job with its stored energy summary, if computed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ListedJob {
    /// The job.
    #[sqlx(flatten)]
    pub job: Job,
    /// Its view as last computed.
    pub summary: Option<Json<JobView>>,
    /// When.
    pub computed_at: Option<DateTime<Utc>>,
    /// Whether raw data arrived for it since.
    pub stale: Option<bool>,
    /// Its sort key, of the kind the list was sorted by.
    pub sort_time: Option<DateTime<Utc>>,
    /// See `sort_time`.
    pub sort_number: Option<f64>,
    /// See `sort_time`.
    pub sort_text: Option<String>,
}

impl ListedJob {
    /// Its sort key (`None`: it has none and is listed last).
    pub(crate) fn sort_key(&self) -> Option<SortKey> {
        self.sort_time
            .map(SortKey::Time)
            .or(self.sort_number.map(SortKey::Number))
            .or(self.sort_text.clone().map(SortKey::Text))
    }
}

/// Jobs matching a filter, one page, sorted (ties by id), each with its sort key (for the next page's
/// cursor).
pub(crate) async fn list<'a>(
    db: &PgPool,
    filter: &'a JobFilter,
    sort: JobSort,
    descending: bool,
    limit: i64,
    start: &'a PageStart,
) -> sqlx::Result<Vec<ListedJob>> {
    // The page's ids are chosen first, sorting only (id, key): sorting whole rows (tags, summaries)
    // of 100,000 jobs spills to disk. Then the page's 50 rows are read whole.
    let dir = if descending { "desc" } else { "asc" };
    // `nulls last` only where the key can be null: on a not-null column it keeps the start-time
    // index from serving the default order.
    let nulls = if sort.nullable() { " nulls last" } else { "" };
    let key = sort.column();
    let mut qb = QueryBuilder::new(format!(
        r#"select j.id, j.user_name, j.name, j.site_id, s.name as site, j.start_time, j.end_time, j.tags,
            j.unknown_gpus, j.raw_id, j.account, j.partition, j.scheduler_state, e.summary, e.computed_at, e.stale or {RAW_PENDING} as stale,
            {sort_time} as sort_time, {sort_number} as sort_number, {sort_text} as sort_text
        from ("#,
        sort_time = if sort.kind() == KeyKind::Time {
            "page.sort_key"
        } else {
            "null::timestamptz"
        },
        sort_number = if sort.kind() == KeyKind::Number {
            "page.sort_key"
        } else {
            "null::float8"
        },
        sort_text = if sort.kind() == KeyKind::Text {
            "page.sort_key"
        } else {
            "null::text"
        },
    ));
    let (later, offset) = match start {
        PageStart::Offset(n) => (None, *n),
        PageStart::After(k, id) => (Some((k, id)), 0),
    };
    let past = if descending { "<" } else { ">" };
    // One selection of (id, key) in the list's order: `keyed` the jobs with a key, after the cursor's
    // (a row comparison an index on (key, id) starts from), or those without one, after the cursor's id.
    let branch = |qb: &mut QueryBuilder<'a, Postgres>, keyed: bool, rows: i64| {
        qb.push(format!(
            r#"
            (select j.id, {key} as sort_key
            from jobs j"#
        ));
        // The site's name only where filtered by it: without it an index on the key alone answers.
        if filter.site.is_some() {
            qb.push("\n            join sites s on s.id = j.site_id");
        }
        qb.push("\n            left join job_energy e on e.job_id = j.id");
        push_filter(qb, filter);
        match (keyed, later) {
            (true, Some((Some(k), id))) => {
                qb.push(format!("\n            and ({key}, j.id) {past} ("));
                push_key(qb, k);
                qb.push(", ").push_bind(id.as_str()).push(")");
            }
            (true, _) if sort.nullable() => {
                qb.push(format!("\n            and {key} is not null"));
            }
            (true, _) => {}
            (false, Some((None, id))) => {
                qb.push(format!("\n            and {key} is null and j.id {past} "))
                    .push_bind(id.as_str());
            }
            (false, _) => {
                qb.push(format!("\n            and {key} is null"));
            }
        }
        // In the order of the index on the key: descending with nulls last, or that read backwards.
        // Where the key is not null, either way of placing nulls is the list's order; the jobs
        // without one are all null, so `nulls last` is theirs.
        let nulls = match (keyed, sort.nullable(), descending) {
            (_, false, _) => "",
            (true, true, false) => " nulls first",
            (_, true, _) => " nulls last",
        };
        qb.push(format!(
            "\n            order by {key} {dir}{nulls}, j.id {dir}\n            limit "
        ))
        .push_bind(rows)
        .push(")");
    };
    // Jobs without a key (no summary yet) come last, by id, in either order: a second selection
    // merged after the first, so that each reads its part of an index in order.
    qb.push("\n            select id, sort_key from (");
    if !sort.nullable() {
        branch(&mut qb, true, limit + offset);
    } else if matches!(later, Some((None, _))) {
        branch(&mut qb, false, limit + offset);
    } else {
        branch(&mut qb, true, limit + offset);
        qb.push("\n            union all");
        branch(&mut qb, false, limit + offset);
    }
    qb.push(") keyed");
    qb.push(format!(
        "
            order by sort_key {dir}{nulls}, id {dir}
            limit "
    ))
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

/// Sums over all jobs matching a filter, from their stored energy summaries, and how many of them are
/// counted at a figure that data arrived since (stale, or raw data waiting for the rollup task).
///
/// A filter of owner, site and state only (the lists' usual ones) is answered from the kept totals
/// (`job_totals`, a few rows per user) instead of reading every matching job.
pub async fn totals(db: &PgPool, filter: &JobFilter) -> sqlx::Result<(JobTotals, u64)> {
    if filter.by_key_only() {
        return kept_totals(db, filter).await;
    }
    counted_totals(db, filter).await
}

impl JobFilter {
    /// Whether it filters only on what `job_totals` is kept by: owner, site and state.
    fn by_key_only(&self) -> bool {
        let JobFilter {
            owner: _,
            user: _,
            site: _,
            running: _,
            tag,
            ids,
            power_cap_w,
            from,
            to,
        } = self;
        tag.is_none() && ids.is_none() && power_cap_w.is_none() && from.is_none() && to.is_none()
    }
}

/// Totals from the kept rows of the filter's keys (folded or not); how many are being updated is
/// counted: stale summaries (a partial index) and jobs with raw data waiting for the rollup (the short
/// pending list) whose summaries are not stale.
async fn kept_totals(db: &PgPool, filter: &JobFilter) -> sqlx::Result<(JobTotals, u64)> {
    let mut qb = QueryBuilder::new(format!(
        r#"{RAW_PENDING_JOBS}
        select coalesce(sum(t.jobs), 0)::int8 as jobs,
            coalesce(sum(t.gpu_hours), 0)::float8 as gpu_hours,
            coalesce(sum(t.it_energy_kwh), 0)::float8 as it_energy_kwh,
            coalesce(sum(t.facility_energy_kwh), 0)::float8 as facility_energy_kwh,
            coalesce(sum(t.jobs - t.summaries), 0)::int8 as pending,
            coalesce(sum(t.summaries), 0)::int8 as summaries,
            coalesce(sum(t.bounded), 0)::int8 as bounded,
            coalesce(sum(t.it_low), 0)::float8 as it_low,
            coalesce(sum(t.it_high), 0)::float8 as it_high,
            coalesce(sum(t.facility_low), 0)::float8 as facility_low,
            coalesce(sum(t.facility_high), 0)::float8 as facility_high,
            (select count(*)
                from job_energy e
                join jobs j on j.id = e.job_id
                join sites s on s.id = j.site_id"#
    ));
    push_filter(&mut qb, filter);
    qb.push(
        r#"
                    and e.stale
            ) + (
                select count(*)
                from raw_pending r
                join jobs j on j.id = r.job_id
                join sites s on s.id = j.site_id
                left join job_energy e on e.job_id = j.id"#,
    );
    push_filter(&mut qb, filter);
    qb.push(
        r#"
                    and not coalesce(e.stale, false)
            ) as updating
        from job_totals t
        join sites s on s.id = t.site_id
        where true"#,
    );
    for user in [&filter.owner, &filter.user].into_iter().flatten() {
        qb.push("\n            and t.user_name = ").push_bind(user);
    }
    if let Some(site) = &filter.site {
        qb.push("\n            and s.name = ").push_bind(site);
    }
    if let Some(running) = filter.running {
        qb.push("\n            and t.finished = ")
            .push_bind(!running);
    }
    let t: TotalsRow = qb.build_query_as().fetch_one(db).await?;
    Ok(t.into())
}

/// Folds the kept totals' rows of changes into one row per key (what the triggers of `job_totals`
/// added since); returns how many rows it folded. Rows added while it runs stay for the next fold.
pub async fn fold_totals(db: &PgPool) -> sqlx::Result<u64> {
    let folded: Option<i64> = sqlx::query_scalar(
        r#"with gone as (
            delete from job_totals returning *
        ), folded as (
            insert into job_totals (site_id, user_name, finished, jobs, summaries, gpu_hours,
                it_energy_kwh, facility_energy_kwh, bounded, it_low, it_high, facility_low,
                facility_high)
            select site_id, user_name, finished, sum(jobs), sum(summaries), sum(gpu_hours),
                sum(it_energy_kwh), sum(facility_energy_kwh), sum(bounded), sum(it_low),
                sum(it_high), sum(facility_low), sum(facility_high)
            from gone
            group by 1, 2, 3
            having sum(jobs) <> 0 or sum(summaries) <> 0 or sum(gpu_hours) <> 0 or sum(it_energy_kwh) <> 0 or sum(facility_energy_kwh) <> 0
                or sum(bounded) <> 0 or sum(it_low) <> 0 or sum(it_high) <> 0 or sum(facility_low) <> 0 or sum(facility_high) <> 0
        )
        select count(*) from gone"#,
    )
    .fetch_one(db)
    .await?;
    Ok(folded.unwrap_or(0) as u64)
}

/// Totals counted over the matching jobs themselves.
async fn counted_totals(db: &PgPool, filter: &JobFilter) -> sqlx::Result<(JobTotals, u64)> {
    let mut qb = QueryBuilder::new(format!(
        r#"{RAW_PENDING_JOBS}
        select count(*) as jobs, coalesce(sum(e.gpu_hours), 0) as gpu_hours,
            coalesce(sum(e.it_energy_kwh), 0) as it_energy_kwh,
            coalesce(sum(e.facility_energy_kwh), 0) as facility_energy_kwh,
            count(*) - count(e.job_id) as pending,
            count(e.job_id) as summaries, count(e.it_low) as bounded,
            coalesce(sum(e.it_low), 0) as it_low, coalesce(sum(e.it_high), 0) as it_high,
            coalesce(sum(e.facility_low), 0) as facility_low,
            coalesce(sum(e.facility_high), 0) as facility_high,
            count(*) filter (where e.stale or j.id in (select job_id from raw_pending)) as updating
        from jobs j
        join sites s on s.id = j.site_id
        left join job_energy e on e.job_id = j.id"#
    ));
    push_filter(&mut qb, filter);
    let t: TotalsRow = qb.build_query_as().fetch_one(db).await?;
    Ok(t.into())
}

/// A common table `raw_pending (job_id)`: the jobs with raw data waiting for the rollup task, found
/// from the (short) pending list rather than asked of each of 100,000 jobs.
const RAW_PENDING_JOBS: &str = r#"with raw_pending as (
            select distinct a.job_id
            from rollup_pending p
            join job_allocations a on a.node_id = p.node_id
            join jobs pj on pj.id = a.job_id
            where p.t_from <= coalesce(pj.end_time, 'infinity')
                and p.t_to >= pj.start_time
        )"#;

/// Tag values whose finished jobs ran at two or more caps (among them one of `owner`'s, where given),
/// most jobs first: the comparisons worth offering.
pub(crate) async fn shared_tags(
    db: &PgPool,
    owner: Option<&str>,
) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as(
        r#"select t.key, t.value, count(*) as jobs
        from jobs j
        join job_energy e on e.job_id = j.id
        cross join lateral jsonb_each_text(j.tags) as t(key, value)
        where j.end_time is not null
        group by t.key, t.value
        having count(distinct round(e.power_cap_w)) >= 2
            and ($1::text is null or bool_or(j.user_name = $1))
        order by jobs desc, t.key, t.value
        limit 200"#,
    )
    .bind(owner)
    .fetch_all(db)
    .await
}

/// The model of each job's first allocated GPU.
pub(crate) async fn gpu_models(
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
