//! Jobs: the JSON API (`/api/v1/jobs...`) and the pages (`/jobs`, `/jobs/{id}`), sharing `job_view`.

use std::collections::{BTreeMap, HashSet};

use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use wattlas_protocol::{Allocation, JobEnd, JobList, JobView, NewJob};

use crate::auth::session::{Nav, Viewer};
use crate::auth::{Caller, JobScope};
use crate::charts;
use crate::db;
use crate::error::{AppError, PageError};
use crate::extract::{ApiJson, Path, Query};
use crate::state::AppState;

/// Builds the full view of a job: its row, allocations and measured energy (so far, while running).
pub async fn job_view(
    state: &AppState,
    job: db::jobs::Job,
    now: DateTime<Utc>,
) -> Result<JobView, AppError> {
    Ok(job_view_by_hour(state, job, now).await?.0)
}

/// `job_view`, with the job's IT energy per UTC hour (hour start ms -> J).
pub async fn job_view_by_hour(
    state: &AppState,
    job: db::jobs::Job,
    now: DateTime<Utc>,
) -> Result<(JobView, BTreeMap<i64, f64>), AppError> {
    let allocated = db::jobs::allocations(&state.db, &job.id).await?;
    let nodes = db::energy::node_gpus(&allocated);
    let allocations: Vec<Allocation> = nodes
        .iter()
        .map(|n| Allocation {
            node: n.name.clone(),
            gpus: n.gpus.clone(),
        })
        .collect();
    let from_ms = job.start_time.timestamp_millis();
    let to_ms = job.end_time.unwrap_or(now).timestamp_millis().max(from_ms);
    let job_energy = db::energy::job_energy(
        &state.db,
        &nodes,
        from_ms,
        to_ms,
        state.config.max_gap_ms,
        db::energy::HOUR_MS,
    )
    .await?;
    let charged = charge(state, job.site_id, &job_energy.by_bucket).await?;
    let facility = charged.facility;
    let energy = job_energy.total;
    let gpu_count = allocated.len() as u32;
    let duration_s = (to_ms - from_ms) as f64 / 1000.0;
    let coverage = if gpu_count > 0 && duration_s > 0.0 {
        (energy.covered_s / (f64::from(gpu_count) * duration_s)).min(1.0)
    } else {
        0.0
    };
    let view = JobView {
        running: job.end_time.is_none(),
        id: job.id,
        user: job.user_name,
        name: job.name,
        site: job.site,
        start: job.start_time,
        end: job.end_time,
        duration_s,
        gpu_count,
        allocations,
        it_energy_kwh: energy.energy_j / 3.6e6,
        facility_energy_kwh: facility.facility_j / 3.6e6,
        pue: facility.pue(),
        pue_fallback_share: facility.fallback_share(),
        // Mean power of all allocated GPUs together: energy per second of the job's covered time.
        avg_power_w: if gpu_count > 0 {
            energy.avg_power_w() * f64::from(gpu_count)
        } else {
            0.0
        },
        power_cap_w: energy.power_cap_w(),
        coverage,
        energy_method: energy.method(),
        samples: energy.samples,
        tags: job.tags.0,
        co2e_kg: charged.carbon.co2e_g.map(|g| g / 1000.0),
        carbon_series_share: charged.carbon.series_share,
        cost: charged
            .site
            .price_per_kwh
            .map(|p| p * facility.facility_j / 3.6e6),
        currency: charged
            .site
            .price_per_kwh
            .map(|_| charged.site.currency.clone()),
        unknown_gpus: job.unknown_gpus.0,
    };
    Ok((view, job_energy.by_bucket))
}

/// A job's view computed now, and stored as its energy summary for the jobs list.
pub async fn computed_view(state: &AppState, job: db::jobs::Job) -> Result<JobView, AppError> {
    let (view, by_hour) = job_view_by_hour(state, job, Utc::now()).await?;
    db::jobs::upsert_energy(&state.db, &view, &by_hour).await?;
    Ok(view)
}

/// Age below which a running job's stored summary is shown as is, s.
const LIST_MAX_AGE_S: i64 = 60;

/// Whether a stored summary can be shown as is: not stale, and computed after the job ended (or, while
/// it runs, within the last minute).
fn fresh(job: &db::jobs::Job, computed_at: DateTime<Utc>, stale: bool, now: DateTime<Utc>) -> bool {
    !stale
        && (job.end_time.is_some_and(|end| computed_at > end)
            || now - computed_at < chrono::Duration::seconds(LIST_MAX_AGE_S))
}

/// A job's view: its stored summary where fresh, else computed now (and stored).
pub async fn current_view(state: &AppState, job: db::jobs::Job) -> Result<JobView, AppError> {
    match db::jobs::stored_energy(&state.db, &job.id).await? {
        Some((summary, at, stale)) if fresh(&job, at, stale, Utc::now()) => Ok(summary.0),
        _ => computed_view(state, job).await,
    }
}

/// The views of listed jobs: stored summaries where fresh, computed (and stored) where not.
pub async fn listed_views(
    state: &AppState,
    rows: Vec<db::jobs::ListedJob>,
) -> Result<Vec<JobView>, AppError> {
    let now = Utc::now();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let fresh = match (&row.summary, row.computed_at, row.stale) {
            (Some(_), Some(at), Some(stale)) => fresh(&row.job, at, stale, now),
            _ => false,
        };
        match row.summary {
            Some(summary) if fresh => out.push(summary.0),
            _ => out.push(computed_view(state, row.job).await?),
        }
    }
    Ok(out)
}

/// A job's IT energy charged hour by hour: facility energy at each hour's PUE, and carbon at each
/// hour's intensity; with the site's settings.
struct Charged {
    facility: crate::analytics::facility::FacilityEnergy,
    carbon: crate::analytics::carbon::Carbon,
    site: db::sites::SiteRow,
}

/// Charges each UTC hour of IT energy the site's energy-weighted PUE and carbon intensity of that hour.
async fn charge(
    state: &AppState,
    site_id: i32,
    it_by_hour: &BTreeMap<i64, f64>,
) -> Result<Charged, AppError> {
    let site = db::sites::settings(&state.db, site_id)
        .await?
        .ok_or_else(|| AppError::Internal(format!("site {site_id} vanished")))?;
    let (mut pue, mut ci) = (BTreeMap::new(), BTreeMap::new());
    if let (Some(first), Some(last)) = (it_by_hour.keys().next(), it_by_hour.keys().next_back()) {
        let (from, to) = (db::ts(*first), db::ts(*last + db::energy::HOUR_MS));
        pue = db::facility::hourly(&state.db, site_id, from, to, db::ts(0))
            .await?
            .iter()
            .map(|h| (h.hour.timestamp_millis(), h.weighted_pue))
            .collect();
        ci = db::carbon::hourly(&state.db, site_id, from, to).await?;
    }
    Ok(Charged {
        facility: crate::analytics::facility::facility_energy(it_by_hour, &pue, site.fallback_pue),
        carbon: crate::analytics::carbon::carbon(
            it_by_hour,
            &pue,
            site.fallback_pue,
            &ci,
            site.carbon_g_per_kwh,
        ),
        site,
    })
}

fn check_job_fields(job: &NewJob) -> Result<(), AppError> {
    // Schedulers' ids (1234, 1234_5, 1234+1, 1234.head, 1234[5]) are one path segment of a URL.
    let id_ok = !job.id.is_empty()
        && job.id.len() <= 200
        && job
            .id
            .chars()
            .all(|c| c.is_ascii_graphic() && !"/\\?#%".contains(c));
    if !id_ok {
        return Err(AppError::bad_request(
            "id: must be 1 to 200 visible ASCII characters, none of / \\ ? # %",
        ));
    }
    if job.user.trim().is_empty() || job.user.len() > 200 {
        return Err(AppError::bad_request("user: must be 1 to 200 characters"));
    }
    if job.name.len() > 500 {
        return Err(AppError::bad_request("name: longer than 500 characters"));
    }
    let earliest = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if job.start < earliest {
        return Err(AppError::bad_request("start: before 2000"));
    }
    if job.start > Utc::now() + chrono::Duration::days(1) {
        return Err(AppError::bad_request(
            "start: more than a day in the future",
        ));
    }
    if let Some(end) = job.end {
        if end < job.start {
            return Err(AppError::bad_request("end: before start"));
        }
    }
    if job.tags.len() > 64 {
        return Err(AppError::bad_request("tags: more than 64 tags"));
    }
    for (k, v) in &job.tags {
        if k.is_empty() || k.len() > 100 || v.len() > 500 {
            return Err(AppError::bad_request(format!(
                "tags.{k}: keys must be 1 to 100 characters, values at most 500"
            )));
        }
    }
    let mut seen = HashSet::new();
    for (i, a) in job.allocations.iter().enumerate() {
        if a.gpus.is_empty() {
            return Err(AppError::bad_request(format!(
                "allocations[{i}].gpus: empty"
            )));
        }
        for g in &a.gpus {
            if !seen.insert((a.node.clone(), *g)) {
                return Err(AppError::bad_request(format!(
                    "allocations[{i}].gpus: GPU {g} of node '{}' listed twice",
                    a.node
                )));
            }
        }
    }
    Ok(())
}

/// `POST /api/v1/jobs`: registers a job, or adds to one (each node's prolog posts its own allocation).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(job): ApiJson<NewJob>,
) -> Result<Response, AppError> {
    check_job_fields(&job)?;
    let caller = caller.writer()?;
    let site = match (&caller, &job.site) {
        (Caller::Node { site_id, .. }, None) => db::sites::by_id(&state.db, *site_id).await?,
        (Caller::Node { site_id, name, .. }, Some(s)) => {
            let site = db::sites::by_name(&state.db, s).await?;
            if site.as_ref().is_some_and(|site| site.id != *site_id) {
                return Err(AppError::forbidden(format!(
                    "site: node '{name}' is not in site '{s}'"
                )));
            }
            site
        }
        (Caller::Admin, Some(s)) => db::sites::by_name(&state.db, s).await?,
        (Caller::Meter { .. }, _) => {
            return Err(AppError::forbidden("a meter token cannot register jobs"))
        }
        (Caller::Admin, None) => {
            return Err(AppError::bad_request("site: required with the admin token"))
        }
        (Caller::User(_), _) => {
            return Err(AppError::forbidden(
                "only collectors and admins register jobs",
            ))
        }
    };
    let site = site.ok_or_else(|| {
        AppError::bad_request(format!(
            "site: unknown site '{}'",
            job.site.as_deref().unwrap_or("")
        ))
    })?;

    let names: Vec<String> = job.allocations.iter().map(|a| a.node.clone()).collect();
    let nodes = db::nodes::by_names(&state.db, &names).await?;
    let mut gpus = Vec::new();
    for (i, a) in job.allocations.iter().enumerate() {
        let node = nodes.iter().find(|n| n.name == a.node).ok_or_else(|| {
            AppError::bad_request(format!("allocations[{i}].node: unknown node '{}'", a.node))
        })?;
        if let Caller::Node { id, name, .. } = &caller {
            if node.id != *id {
                return Err(AppError::forbidden(format!(
                    "allocations[{i}].node: node '{name}' may only register its own GPUs"
                )));
            }
        }
        if node.site_id != site.id {
            return Err(AppError::bad_request(format!(
                "allocations[{i}].node: node '{}' is not in site '{}'",
                a.node, site.name
            )));
        }
        gpus.extend(a.gpus.iter().map(|g| (node.id, *g as i32)));
    }

    // A node registers its own part of a job running on it now: never a finished job, never another
    // node's GPUs (above), never someone else's tags.
    if let Caller::Node { name, .. } = &caller {
        if job.end.is_some() {
            return Err(AppError::forbidden(format!(
                "end: node '{name}' registers its part of a running job; its epilog ends it"
            )));
        }
        if job.start > Utc::now() + chrono::Duration::minutes(5) {
            return Err(AppError::forbidden(format!(
                "start: {} is not running on node '{name}' now",
                job.start.to_rfc3339()
            )));
        }
        if !job.unknown_gpus.is_empty() {
            return Err(AppError::forbidden(
                "unknown_gpus: only an admin registers a scheduler's record",
            ));
        }
    }
    for (i, u) in job.unknown_gpus.iter().enumerate() {
        if u.node.is_empty() || u.node.len() > 200 {
            return Err(AppError::bad_request(format!(
                "unknown_gpus[{i}].node: must be 1 to 200 characters"
            )));
        }
    }

    let mut tx = state.db.begin().await?;
    let created = db::jobs::insert(
        &mut tx,
        &job.id,
        &job.user,
        &job.name,
        site.id,
        job.start,
        job.end,
        &job.tags,
        &job.unknown_gpus,
    )
    .await?;
    if !created {
        let existing = db::jobs::by_id_for_update(&mut tx, &job.id)
            .await?
            .ok_or_else(|| AppError::Internal("job vanished while being merged".into()))?;
        // The parts of one job come with each node's own clock: starts may differ, owners may not.
        if existing.user_name != job.user || existing.site_id != site.id {
            return Err(AppError::conflict(format!(
                "id: job '{}' exists with another user or site",
                job.id
            )));
        }
        if let Caller::Node { id, name, .. } = &caller {
            if gpus.is_empty() && !db::jobs::node_is_allocated(&state.db, &job.id, *id).await? {
                return Err(AppError::forbidden(format!(
                    "id: node '{name}' holds no part of job '{}'",
                    job.id
                )));
            }
            if let Some((k, _)) = job
                .tags
                .iter()
                .find(|(k, v)| existing.tags.0.get(*k) != Some(*v))
            {
                return Err(AppError::forbidden(format!(
                    "tags.{k}: node '{name}' may not change the tags of job '{}'",
                    job.id
                )));
            }
        }
        db::jobs::merge(
            &mut tx,
            &job.id,
            job.start,
            job.end,
            &job.tags,
            &job.unknown_gpus,
        )
        .await?;
    }
    if let Caller::Node { id, .. } = &caller {
        db::jobs::start_part(&mut tx, &job.id, *id, job.start).await?;
    }
    db::jobs::add_allocations(&mut tx, &job.id, &gpus).await?;
    tx.commit().await?;
    let row = db::jobs::by_id(&state.db, &job.id)
        .await?
        .ok_or_else(|| AppError::not_found("job vanished"))?;
    let view = computed_view(&state, row).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(view)).into_response())
}

/// `POST /api/v1/jobs/{id}/end`.
pub async fn end(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<JobEnd>,
) -> Result<axum::Json<JobView>, AppError> {
    let caller = caller.writer()?;
    let job = db::jobs::by_id(&state.db, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no job '{id}'")))?;
    match &caller {
        Caller::Node {
            id: node_id, name, ..
        } => {
            if !db::jobs::node_is_allocated(&state.db, &id, *node_id).await? {
                return Err(AppError::forbidden(format!(
                    "node '{name}' holds no part of job '{id}'"
                )));
            }
        }
        Caller::Meter { .. } => return Err(AppError::forbidden("a meter token cannot end jobs")),
        Caller::Admin => {}
        Caller::User(_) => return Err(AppError::forbidden("only collectors and admins end jobs")),
    }

    if body.end < job.start_time {
        return Err(AppError::bad_request(format!(
            "end: {} is before the job's start {}",
            body.end.to_rfc3339(),
            job.start_time.to_rfc3339()
        )));
    }
    let mut tx = state.db.begin().await?;
    match &caller {
        // A node's epilog ends its own part; the job ends with its last part.
        Caller::Node { id: node_id, .. } => {
            db::jobs::end_part(&mut tx, &id, *node_id, body.end).await?;
        }
        _ => db::jobs::end(&mut tx, &id, body.end).await?,
    }
    tx.commit().await?;
    let row = db::jobs::by_id(&state.db, &id)
        .await?
        .ok_or_else(|| AppError::not_found("job vanished"))?;
    Ok(axum::Json(computed_view(&state, row).await?))
}

/// A job the scope may see; others answer 404 exactly as a job that does not exist.
pub async fn visible_job(
    state: &AppState,
    scope: &JobScope,
    id: &str,
) -> Result<db::jobs::Job, AppError> {
    db::jobs::by_id(&state.db, id)
        .await?
        .filter(|job| scope.allows(&job.user_name))
        .ok_or_else(|| AppError::not_found(format!("no job '{id}'")))
}

/// `GET /api/v1/jobs/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<JobView>, AppError> {
    let job = visible_job(&state, &caller.job_scope()?, &id).await?;
    Ok(axum::Json(current_view(&state, job).await?))
}

/// Query of the jobs list, API and page alike.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    /// Owner.
    pub user: Option<String>,
    /// Site name.
    pub site: Option<String>,
    /// `key:value`.
    pub tag: Option<String>,
    /// `running` or `finished`.
    pub state: Option<String>,
    /// Jobs running at or after this time (RFC 3339, or a UTC date YYYY-MM-DD).
    pub from: Option<String>,
    /// Jobs starting before this time (RFC 3339, or a UTC date: before the end of that day).
    pub to: Option<String>,
    /// Power cap, W.
    pub cap: Option<String>,
    /// Sort key: start (default), energy, duration, gpus, user, id.
    pub sort: Option<String>,
    /// `asc` or `desc` (default: desc).
    pub order: Option<String>,
    /// Page size, 1..=500 (default 50).
    pub limit: Option<i64>,
    /// Jobs to skip.
    pub offset: Option<i64>,
}

/// RFC 3339, or a date meaning UTC midnight (`end_of_day`: the midnight after it).
fn parse_time(
    field: &str,
    text: Option<String>,
    end_of_day: bool,
) -> Result<Option<DateTime<Utc>>, AppError> {
    let Some(text) = text else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(&text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let date = chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
        AppError::bad_request(format!(
            "{field}: expected a date (YYYY-MM-DD) or an RFC 3339 time, got '{text}'"
        ))
    })?;
    let date = if end_of_day {
        date.succ_opt().unwrap_or(date)
    } else {
        date
    };
    Ok(Some(date.and_time(chrono::NaiveTime::MIN).and_utc()))
}

impl ListQuery {
    pub fn filter(&self, scope: &JobScope) -> Result<db::jobs::JobFilter, AppError> {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let tag = match nonempty(&self.tag) {
            Some(t) => {
                let (k, v) = t.split_once([':', '=']).ok_or_else(|| {
                    AppError::bad_request(format!("tag: expected key:value, got '{t}'"))
                })?;
                Some((k.to_owned(), v.to_owned()))
            }
            None => None,
        };
        let running = match self.state.as_deref() {
            None | Some("") | Some("all") => None,
            Some("running") => Some(true),
            Some("finished") => Some(false),
            Some(other) => {
                return Err(AppError::bad_request(format!(
                    "state: expected running or finished, got '{other}'"
                )))
            }
        };
        let cap = match nonempty(&self.cap) {
            Some(c) => Some(
                c.trim_end_matches(['W', 'w', ' '])
                    .parse::<f64>()
                    .ok()
                    .filter(|w| w.is_finite() && *w > 0.0)
                    .ok_or_else(|| {
                        AppError::bad_request(format!("cap: expected watts, e.g. 150, got '{c}'"))
                    })?,
            ),
            None => None,
        };
        Ok(db::jobs::JobFilter {
            owner: scope.owner(),
            ids: None,
            power_cap_w: cap,
            user: nonempty(&self.user),
            site: nonempty(&self.site),
            tag,
            running,
            from: parse_time("from", nonempty(&self.from), false)?,
            to: parse_time("to", nonempty(&self.to), true)?,
        })
    }

    pub(crate) fn sort(&self) -> Result<(db::jobs::JobSort, bool), AppError> {
        let sort = match self.sort.as_deref().filter(|s| !s.is_empty()) {
            None => db::jobs::JobSort::Start,
            Some(name) => db::jobs::JobSort::NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| *s)
                .ok_or_else(|| {
                    AppError::bad_request(format!(
                        "sort: expected one of start, energy, duration, gpus, user, id; got '{name}'"
                    ))
                })?,
        };
        let descending = match self.order.as_deref() {
            None | Some("") | Some("desc") => true,
            Some("asc") => false,
            Some(other) => {
                return Err(AppError::bad_request(format!(
                    "order: expected asc or desc, got '{other}'"
                )))
            }
        };
        Ok((sort, descending))
    }

    pub(crate) fn page(&self) -> Result<(i64, i64), AppError> {
        const MAX_OFFSET: i64 = 1_000_000_000;
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(AppError::bad_request("limit: must be 1 to 500"));
        }
        let offset = self.offset.unwrap_or(0);
        // Bounded, so that offset + limit cannot overflow (i64::MAX made the jobs page panic).
        if !(0..=MAX_OFFSET).contains(&offset) {
            return Err(AppError::bad_request(format!(
                "offset: must be 0 to {MAX_OFFSET}"
            )));
        }
        Ok((limit, offset))
    }
}

async fn list_views(
    state: &AppState,
    scope: &JobScope,
    q: &ListQuery,
) -> Result<JobList, AppError> {
    let filter = q.filter(scope)?;
    let (limit, offset) = q.page()?;
    let (sort, descending) = q.sort()?;
    let rows = db::jobs::list(&state.db, &filter, sort, descending, limit, offset).await?;
    let (totals, updating) = db::jobs::totals(&state.db, &filter).await?;
    Ok(JobList {
        jobs: listed_views(state, rows).await?,
        total: totals.jobs,
        totals,
        updating,
    })
}

/// `GET /api/v1/jobs`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<JobList>, AppError> {
    Ok(axum::Json(
        list_views(&state, &caller.job_scope()?, &q).await?,
    ))
}

/// Most jobs one CSV export holds.
const MAX_EXPORT: i64 = 10_000;

/// The filtered jobs (all pages, newest first, at most 10,000) as CSV, one row per job.
pub fn jobs_csv(jobs: &[JobView]) -> String {
    use super::pue::csv_cell;
    let opt =
        |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_default();
    let mut out = String::from(
        "id,user,name,site,start,end,duration_s,gpu_count,it_energy_kwh,facility_energy_kwh,pue,\
         pue_fallback_share,avg_power_w,power_cap_w,coverage,energy_method,samples,tags\n",
    );
    for j in jobs {
        let tags: Vec<String> = j.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let method = serde_json::to_value(j.energy_method)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let cells = [
            csv_cell(&j.id),
            csv_cell(&j.user),
            csv_cell(&j.name),
            csv_cell(&j.site),
            j.start.to_rfc3339(),
            j.end.map(|e| e.to_rfc3339()).unwrap_or_default(),
            format!("{:.3}", j.duration_s),
            j.gpu_count.to_string(),
            format!("{:.6}", j.it_energy_kwh),
            format!("{:.6}", j.facility_energy_kwh),
            opt(j.pue, 4),
            format!("{:.4}", j.pue_fallback_share),
            format!("{:.2}", j.avg_power_w),
            opt(j.power_cap_w, 1),
            format!("{:.4}", j.coverage),
            method,
            j.samples.to_string(),
            csv_cell(&tags.join(";")),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// `GET /api/v1/jobs.csv` and `GET /jobs.csv`: the filtered set as CSV (filters as for the list).
async fn export(
    state: &AppState,
    scope: &JobScope,
    q: &ListQuery,
) -> Result<axum::response::Response, AppError> {
    let filter = q.filter(scope)?;
    let (sort, descending) = q.sort()?;
    let rows = db::jobs::list(&state.db, &filter, sort, descending, MAX_EXPORT, 0).await?;
    let jobs = listed_views(state, rows).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"wattlas-jobs.csv\"",
            ),
        ],
        jobs_csv(&jobs),
    )
        .into_response())
}

/// `GET /api/v1/jobs.csv`.
pub async fn export_api(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::response::Response, AppError> {
    export(&state, &caller.job_scope()?, &q).await
}

/// `GET /jobs.csv`: the jobs page's filtered set.
pub async fn export_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<axum::response::Response, PageError> {
    Ok(export(&state, &viewer.job_scope(), &q).await?)
}

/// One row of the jobs page.
pub struct JobRow {
    /// The job.
    pub job: JobView,
    /// Its page's path.
    pub href: String,
}

/// `/jobs`.
#[derive(Template)]
#[template(path = "jobs/list.html")]
pub struct ListPage {
    /// Header.
    pub nav: Nav,
    /// Rows shown.
    pub rows: Vec<JobRow>,
    /// Matching jobs in all pages.
    pub total: u64,
    /// The query, to keep filters in the form.
    pub q: ListQuery,
    /// Link to the previous page, if any.
    pub prev: Option<String>,
    /// Link to the next page, if any.
    pub next: Option<String>,
    /// Link to the CSV export of the filtered set.
    pub csv: String,
    /// Link to the energy statement of the filtered set (append the format).
    pub statement: String,
    /// Sums over the filtered set.
    pub totals: wattlas_protocol::JobTotals,
    /// Jobs of the set whose figure data arrived since is updating.
    pub updating: u64,
}

impl ListPage {
    fn current_sort(&self) -> (&str, bool) {
        let key = self
            .q
            .sort
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("start");
        (key, self.q.order.as_deref() != Some("asc"))
    }

    /// Link that sorts by `key`: descending first, flipping when already sorted by it.
    pub fn sort_href(&self, key: &str) -> String {
        let (current, descending) = self.current_sort();
        let mut q = self.q.clone();
        q.sort = Some(key.to_owned());
        q.order = Some(
            if current == key && descending {
                "asc"
            } else {
                "desc"
            }
            .to_owned(),
        );
        page_link(&q, 0)
    }

    /// `aria-sort` of a column.
    pub fn aria_sort(&self, key: &str) -> &'static str {
        match self.current_sort() {
            (k, true) if k == key => "descending",
            (k, false) if k == key => "ascending",
            _ => "none",
        }
    }

    /// The arrow shown by a sorted column's name.
    pub fn sort_mark(&self, key: &str) -> &'static str {
        match self.aria_sort(key) {
            "descending" => " ▼",
            "ascending" => " ▲",
            _ => "",
        }
    }
}

fn page_link(q: &ListQuery, offset: i64) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            parts.push(format!(
                "{k}={}",
                wattlas_protocol::paths::encode_segment(&v)
            ));
        }
    };
    add("user", q.user.clone());
    add("site", q.site.clone());
    add("tag", q.tag.clone());
    add("state", q.state.clone());
    add("from", q.from.clone());
    add("to", q.to.clone());
    add("cap", q.cap.clone());
    add("sort", q.sort.clone());
    add("order", q.order.clone());
    add("limit", q.limit.map(|l| l.to_string()));
    add("offset", Some(offset.to_string()));
    format!("/jobs?{}", parts.join("&"))
}

/// `GET /jobs`: the jobs page.
pub async fn list_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, PageError> {
    let list = list_views(&state, &viewer.job_scope(), &q).await?;
    let (limit, offset) = q.page()?;
    let rows = list
        .jobs
        .into_iter()
        .map(|job| JobRow {
            href: format!("/jobs/{}", wattlas_protocol::paths::encode_segment(&job.id)),
            job,
        })
        .collect();
    let prev = (offset > 0).then(|| page_link(&q, (offset - limit).max(0)));
    let next = ((offset + limit) < list.total as i64).then(|| page_link(&q, offset + limit));
    let csv = page_link(&q, 0).replacen("/jobs?", "/jobs.csv?", 1);
    let statement = page_link(&q, 0).replacen("/jobs?", "/statement?", 1);
    let page = ListPage {
        nav: viewer.nav(),
        rows,
        total: list.total,
        totals: list.totals,
        updating: list.updating,
        q,
        prev,
        next,
        csv,
        statement,
    };
    Ok(Html(
        page.render()
            .map_err(|e| AppError::Internal(e.to_string()))?,
    ))
}

/// `/jobs/{id}`.
#[derive(Template)]
#[template(path = "jobs/show.html")]
pub struct ShowPage {
    /// Header.
    pub nav: Nav,
    /// The job.
    pub job: JobView,
    /// Tags as `key=value`, sorted.
    pub tags: Vec<(String, String)>,
    /// Path of the power chart (of the window shown).
    pub chart: String,
    /// Path of the utilisation chart.
    pub util_chart: String,
    /// The window shown, and links to others: (label, href).
    pub window: Window,
    /// Zoom links.
    pub zooms: Vec<(String, String)>,
    /// The allocated nodes' collectors: what they last reported, and what they had to drop.
    pub nodes: Vec<db::nodes::Node>,
    /// What running at the site's best hour this month, or in its best month, would have saved.
    pub timing: Option<Timing>,
    /// Reported training metrics against energy.
    pub progress: Vec<ProgressRow>,
    /// The first coverage gaps, and how many there are.
    pub gaps: (Vec<Gap>, usize),
    /// The cap advisor's proposal for the job's workload, with the comparison's link.
    pub cap_advice: Option<(String, crate::analytics::powercap::CapAdvice)>,
}

/// A stretch of one GPU's time in the job without samples.
pub struct Gap {
    /// `node/gpuN`.
    pub gpu: String,
    /// Start.
    pub from: DateTime<Utc>,
    /// End.
    pub to: DateTime<Utc>,
    /// Length, s.
    pub seconds: f64,
}

/// Gaps shown on a job page at most.
const MAX_GAPS: usize = 20;

/// The job's coverage gaps, per GPU: from the raw samples for jobs up to 30 minutes (any interval over
/// the integration limit), from the minute rollups for longer ones (minutes without data). Returns
/// the first `MAX_GAPS` and how many there are.
async fn coverage_gaps(
    state: &AppState,
    job: &db::jobs::Job,
) -> Result<(Vec<Gap>, usize), AppError> {
    let allocated = db::jobs::allocations(&state.db, &job.id).await?;
    let from_ms = job.start_time.timestamp_millis();
    // A running job's last seconds are still on their way.
    let to_ms = job.end_time.map_or_else(
        || Utc::now().timestamp_millis() - 5_000,
        |e| e.timestamp_millis(),
    );
    if to_ms <= from_ms {
        return Ok((Vec::new(), 0));
    }
    let raw = to_ms - from_ms <= 30 * 60_000;
    let mut out: Vec<Gap> = Vec::new();
    for node in db::energy::node_gpus(&allocated) {
        // Per GPU, runs of samples no further apart than the limit: every raw sample of a short job,
        // runs of whole minutes of a long one (a week of 64 GPUs is 645,000 minutes).
        let mut runs: BTreeMap<u32, Vec<(i64, i64)>> =
            node.gpus.iter().map(|g| (*g, Vec::new())).collect();
        let (start, limit) = if raw {
            let mut times: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
            for s in db::samples::fetch(&state.db, node.node_id, &node.gpus, from_ms, to_ms).await?
            {
                times.entry(s.gpu).or_default().push(s.t_ms);
            }
            for (gpu, mut t) in times {
                t.sort_unstable();
                t.dedup();
                runs.insert(
                    gpu,
                    crate::analytics::energy::cadence_runs(&t, state.config.max_gap_ms),
                );
            }
            (from_ms, state.config.max_gap_ms)
        } else {
            for (gpu, first, last) in db::rollups::minute_runs(
                &state.db,
                node.node_id,
                &node.gpus,
                db::energy::floor_minute(from_ms),
                to_ms,
            )
            .await?
            {
                runs.entry(gpu).or_default().push((first, last));
            }
            (db::energy::floor_minute(from_ms), 60_000)
        };
        for (gpu, r) in runs {
            for (a, b) in crate::analytics::energy::gaps_between_runs(&r, start, to_ms, limit) {
                out.push(Gap {
                    gpu: format!("{}/gpu{gpu}", node.name),
                    from: db::ts(a.max(from_ms)),
                    to: db::ts(b),
                    seconds: (b - a.max(from_ms)) as f64 / 1000.0,
                });
            }
        }
    }
    out.sort_by_key(|g| g.from);
    let total = out.len();
    out.truncate(MAX_GAPS);
    Ok((out, total))
}

/// One reported metric on the job page.
pub struct ProgressRow {
    /// Metric name.
    pub name: String,
    /// Its chart.
    pub chart: String,
    /// What its last 1 % cost, as a sentence.
    pub sentence: Option<String>,
}

/// The job page's "when to run" sentence: savings of facility energy versus what the job used.
pub struct Timing {
    /// Best local start hour in the job's month.
    pub best_hour: usize,
    /// Energy less at that hour, formatted (Wh below 1 kWh).
    pub hour_saving: String,
    /// Best month.
    pub best_month: &'static str,
    /// Energy less in that month, formatted.
    pub month_saving: String,
}

/// kWh as text: Wh below 1 kWh, so small jobs do not read "0.000 kWh".
pub fn format_energy(kwh: f64) -> String {
    if kwh < 1.0 {
        format!("{:.1} Wh", kwh * 1000.0)
    } else {
        format!("{kwh:.2} kWh")
    }
}

async fn timing(state: &AppState, job: &JobView) -> Result<Option<Timing>, AppError> {
    let Some(pue) = job.pue else { return Ok(None) };
    if job.pue_fallback_share >= 1.0 {
        return Ok(None);
    }
    let site = super::pue::site_tz(state, &job.site).await?;
    let profile = super::pue::profile(state, &site).await?;
    let hours = (job.duration_s / 3600.0).ceil().max(1.0) as usize;
    let month0 = chrono::Datelike::month0(&job.start.with_timezone(&site.tz)) as usize;
    let when = crate::analytics::pue::when_to_run(&profile, month0, 0, hours);
    let (Some((best_hour, hour_pue)), Some((month, _, month_pue))) =
        (when.best_hour, when.best_month)
    else {
        return Ok(None);
    };
    Ok(Some(Timing {
        best_hour,
        hour_saving: format_energy((job.it_energy_kwh * (pue - hour_pue)).max(0.0)),
        best_month: super::pue::MONTHS[(month as usize).saturating_sub(1) % 12],
        month_saving: format_energy((job.it_energy_kwh * (pue - month_pue)).max(0.0)),
    }))
}

/// `GET /jobs/{id}`: a job's page.
pub async fn show_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(window): Query<Window>,
) -> Result<Html<String>, PageError> {
    let row = visible_job(&state, &viewer.job_scope(), &id).await?;
    let job = current_view(&state, row.clone()).await?;
    let tags: Vec<(String, String)> = job
        .tags
        .clone()
        .into_iter()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let href = format!("/jobs/{}", wattlas_protocol::paths::encode_segment(&job.id));
    let end_ms = (job.start.timestamp_millis() as f64 + job.duration_s * 1000.0) as i64;
    window.bounds(
        job.start.timestamp_millis(),
        end_ms.max(job.start.timestamp_millis() + 1),
    )?;
    let chart = format!("{href}/power.svg{}", window.query());
    let util_chart = format!("{href}/util.svg{}", window.query());
    let minutes = job.duration_s / 60.0;
    let mut zooms = vec![("Whole job".to_owned(), href.clone())];
    if minutes > 10.0 {
        zooms.push((
            "First 5 minutes".to_owned(),
            format!("{href}?from_min=0&to_min=5"),
        ));
        zooms.push((
            "Last 5 minutes".to_owned(),
            format!("{href}?from_min={:.2}&to_min={:.2}", minutes - 5.0, minutes),
        ));
    }
    let names: Vec<String> = job.allocations.iter().map(|a| a.node.clone()).collect();
    let nodes = db::nodes::by_names(&state.db, &names).await?;
    let timing = timing(&state, &job).await?;
    let progress = super::progress::progress_of(&state, &row)
        .await?
        .metrics
        .into_iter()
        .map(|m| ProgressRow {
            chart: format!(
                "/jobs/{}/progress/{}.svg",
                wattlas_protocol::paths::encode_segment(&job.id),
                wattlas_protocol::paths::encode_segment(&m.name)
            ),
            sentence: m.last_percent.map(|lp| {
                format!(
                    "The last 1 % of the change in {} ({} to {}, from step {} on) cost {}, {:.1} % of the job's IT energy up to its last report.",
                    m.name,
                    lp.first,
                    lp.last,
                    lp.step,
                    format_energy(lp.cost_kwh),
                    lp.share * 100.0
                )
            }),
            name: m.name,
        })
        .collect();
    // The advisor, where the job's workload has a comparison (jobs at two caps or more).
    let mut cap_advice = None;
    if let Some(workload) = job.tags.get("workload") {
        let tag = format!("workload:{workload}");
        match super::powercap::comparison(&state, &viewer.job_scope(), &tag, None, None).await {
            Ok(c) if c.caps.len() >= 2 => {
                cap_advice = c.advice.map(|a| {
                    (
                        format!(
                            "/powercap?tag={}",
                            wattlas_protocol::paths::encode_segment(&tag)
                        ),
                        a,
                    )
                });
            }
            Ok(_) => {}
            Err(AppError::Client(..)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let gaps = coverage_gaps(&state, &row).await?;
    let page = ShowPage {
        gaps,
        util_chart,
        window,
        zooms,
        cap_advice,
        progress,
        nav: viewer.nav(),
        job,
        tags,
        chart,
        nodes,
        timing,
    };
    Ok(Html(
        page.render()
            .map_err(|e| AppError::Internal(e.to_string()))?,
    ))
}

/// `?from_min=&to_min=`: a window of a job, in minutes since its start (default: the whole job).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Window {
    /// Start, minutes since the job's start.
    pub from_min: Option<f64>,
    /// End, minutes since the job's start.
    pub to_min: Option<f64>,
}

impl Window {
    /// The window in ms since the epoch, within the job `[start_ms, end_ms)`.
    pub fn bounds(&self, start_ms: i64, end_ms: i64) -> Result<(i64, i64), AppError> {
        let at = |field: &str, m: Option<f64>, default: i64| -> Result<i64, AppError> {
            match m {
                None => Ok(default),
                // Clamped to the job before adding: 1e300 minutes made the addition overflow.
                Some(m) if m.is_finite() && m >= 0.0 => {
                    Ok(start_ms + (m * 60_000.0).min((end_ms - start_ms) as f64) as i64)
                }
                Some(m) => Err(AppError::bad_request(format!(
                    "{field}: {m} is not a number of minutes since the job's start"
                ))),
            }
        };
        let from = at("from_min", self.from_min, start_ms)?;
        if from >= end_ms && end_ms > start_ms {
            return Err(AppError::bad_request(format!(
                "from_min: {} is past the job's end",
                self.from_min.unwrap_or_default()
            )));
        }
        let to = at("to_min", self.to_min, end_ms)?;
        if to <= from {
            return Err(AppError::bad_request("to_min: must be after from_min"));
        }
        Ok((from, to))
    }

    /// The query string of this window (empty for the whole job).
    pub fn query(&self) -> String {
        match (self.from_min, self.to_min) {
            (None, None) => String::new(),
            (f, t) => format!(
                "?{}",
                [
                    f.map(|f| format!("from_min={f}")),
                    t.map(|t| format!("to_min={t}"))
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("&")
            ),
        }
    }
}

/// `GET /jobs/{id}/power.svg` and `/jobs/{id}/util.svg`: per-GPU power or utilisation over the job or a
/// window of it (`?from_min=&to_min=`): raw 100 ms samples when the window is short, minute means when
/// long.
pub async fn gpu_chart(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, chart)): Path<(String, String)>,
    Query(window): Query<Window>,
) -> Result<Response, PageError> {
    let (metric, title, y) = match chart.as_str() {
        "power.svg" => (
            charts::power::GpuMetric::Power,
            "Power per GPU",
            "Power (W)",
        ),
        "util.svg" => (
            charts::power::GpuMetric::Util,
            "Utilisation per GPU",
            "GPU utilisation (%)",
        ),
        _ => return Err(AppError::not_found("charts: power.svg, util.svg").into()),
    };
    let row = visible_job(&state, &viewer.job_scope(), &id).await?;
    let start_ms = row.start_time.timestamp_millis();
    let end_ms = row
        .end_time
        .unwrap_or_else(Utc::now)
        .timestamp_millis()
        .max(start_ms + 1);
    let (from_ms, to_ms) = window.bounds(start_ms, end_ms)?;
    let allocated = db::jobs::allocations(&state.db, &id).await?;
    let series = charts::power::job_series(&state.db, &allocated, from_ms, to_ms, metric).await?;
    Ok(charts::svg_response(charts::power::render(
        &format!("{title}, job {}", row.id),
        y,
        &series,
        start_ms,
        (from_ms, to_ms),
    ))?)
}
