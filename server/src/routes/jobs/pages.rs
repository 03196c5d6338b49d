//! The jobs pages: `/jobs` (filtered, sorted, paged, with totals) and `/jobs/{id}`.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use wattlas_protocol::paths::encode_segment;
use wattlas_protocol::JobView;

use super::query::Window;
use crate::auth::{Nav, Viewer};
use crate::error::{Page, PageError};
use crate::extract::{PageQuery, Path};
use crate::service::comparisons;
use crate::service::jobs::coverage::{coverage_gaps, Gap};
use crate::service::jobs::list::PageStart;
use crate::service::jobs::list::{list_views, ListQuery};
use crate::service::jobs::timing::{format_energy, timing, Timing};
use crate::service::jobs::{view_with_progress, JobContext};
use crate::state::AppState;

/// One row of the jobs page.
pub(crate) struct JobRow {
    /// The job.
    pub job: JobView,
    /// Its page's path.
    pub href: String,
    /// Its duration as sacct writes it (`D-HH:MM:SS`).
    pub duration: String,
    /// Its start in its site's zone, the zone abbreviated (`2026-11-30 18:57 CET`).
    pub start: String,
}

/// `/jobs`.
#[derive(Template)]
#[template(path = "jobs/list.html")]
pub(crate) struct ListPage {
    /// Header.
    pub nav: Nav,
    /// Rows shown.
    pub rows: Vec<JobRow>,
    /// Matching jobs in all pages.
    pub total: u64,
    /// The query, to keep filters in the form.
    pub q: ListQuery,
    /// Link back (its label and href), if not on the first page.
    pub prev: Option<(&'static str, String)>,
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
    /// Which of them this page shows, in words (`1-50`, or `50 after job x`).
    pub shown: String,
    /// The query's error, said above the form that keeps what was typed (no jobs listed then).
    pub error: Option<String>,
    /// Budgets of the viewer's projects past 80 %, in words.
    pub banners: Vec<String>,
    /// Filtered to one project (`tag=project:x`) with a budget: its use this month, in words.
    pub project_budget: Option<String>,
}

/// The budget use of the project a `tag=project:x` filter selects, in words.
async fn project_budget(state: &AppState, q: &ListQuery) -> Result<Option<String>, PageError> {
    let Some(project) = q.tag.as_deref().and_then(|t| {
        t.strip_prefix("project:")
            .or_else(|| t.strip_prefix("project="))
    }) else {
        return Ok(None);
    };
    let statuses = crate::service::budgets::statuses_of(
        state,
        chrono::Utc::now(),
        Some(&[project.to_owned()]),
    )
    .await?;
    let Some(s) = statuses.iter().find(|s| s.project == project) else {
        return Ok(None);
    };
    use crate::service::budgets::{amount, what};
    let parts: Vec<String> = s
        .budgets()
        .map(|(kind, pct, used, budget)| {
            format!(
                "{} of its {} {} budget ({pct:.0} %)",
                amount(kind, used.unwrap_or(0.0)),
                amount(kind, budget),
                what(kind)
            )
        })
        .collect();
    Ok(Some(format!(
        "Project {project} this month ({} UTC, every member's jobs): {}{}.",
        s.month,
        parts.join(" and "),
        if s.pending > 0 {
            format!("; {} jobs still being computed are not in it", s.pending)
        } else {
            String::new()
        }
    )))
}

/// The banners of `user`'s projects that crossed 80 % of a budget this month.
async fn budget_banners(state: &AppState, user: &str) -> Result<Vec<String>, PageError> {
    let mut out = Vec::new();
    for s in crate::service::budgets::banners_for(state, user).await? {
        for (kind, pct, used, budget) in s.budgets() {
            if let (true, Some(used)) = (pct >= 80.0, used) {
                out.push(crate::service::budgets::used_text(
                    &s.project, &s.month, kind, used, budget,
                ));
            }
        }
    }
    Ok(out)
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
    pub(crate) fn sort_href(&self, key: &str) -> String {
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
    pub(crate) fn aria_sort(&self, key: &str) -> &'static str {
        match self.current_sort() {
            (k, true) if k == key => "descending",
            (k, false) if k == key => "ascending",
            _ => "none",
        }
    }

    /// The arrow shown by a sorted column's name.
    pub(crate) fn sort_mark(&self, key: &str) -> &'static str {
        match self.aria_sort(key) {
            "descending" => " ▼",
            "ascending" => " ▲",
            _ => "",
        }
    }
}

fn page_link(q: &ListQuery, offset: i64) -> String {
    let mut q = q.clone();
    (q.offset, q.after, q.after_key) = (Some(offset), None, None);
    list_link(&q)
}

/// The page that starts after `cursor`.
fn cursor_link(q: &ListQuery, cursor: &wattlas_protocol::PageCursor) -> String {
    let mut q = q.clone();
    (q.offset, q.after, q.after_key) = (None, Some(cursor.after.clone()), cursor.after_key.clone());
    list_link(&q)
}

fn list_link(q: &ListQuery) -> String {
    let mut parts = q.filter_params();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", encode_segment(&v)));
        }
    };
    add("sort", q.sort.clone());
    add("order", q.order.clone());
    add("limit", q.limit.map(|l| l.to_string()));
    add("offset", q.offset.filter(|o| *o > 0).map(|o| o.to_string()));
    add("after", q.after.clone());
    add("after_key", q.after_key.clone());
    format!("/jobs?{}", parts.join("&"))
}

/// `GET /jobs`: the jobs page.
pub(crate) async fn list_page(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(q): PageQuery<ListQuery>,
) -> Result<axum::response::Response, PageError> {
    use axum::response::IntoResponse;
    let banners = budget_banners(&state, &viewer.name).await?;
    let project_budget = project_budget(&state, &q).await?;
    let list = match list_views(&state, &viewer.job_scope(), &q).await {
        Ok(list) => list,
        Err(e @ crate::service::Error::Invalid { .. }) => {
            // 400 as for the API, with the page: the error above the form that keeps what was typed.
            return Ok((
                axum::http::StatusCode::BAD_REQUEST,
                Page(ListPage {
                    nav: viewer.nav(),
                    rows: Vec::new(),
                    total: 0,
                    totals: wattlas_protocol::JobTotals::default(),
                    updating: 0,
                    csv: String::new(),
                    statement: String::new(),
                    prev: None,
                    next: None,
                    shown: String::new(),
                    error: Some(e.to_string()),
                    banners,
                    project_budget,
                    q,
                }),
            )
                .into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let (limit, start) = q.page()?;
    let n = list.jobs.len();
    let shown = match &start {
        _ if n == 0 => String::new(),
        PageStart::Offset(offset) => format!("{}–{}", offset + 1, *offset + n as i64),
        PageStart::After(..) => {
            format!("{n} after job {}", q.after.as_deref().unwrap_or_default())
        }
    };
    let zones: BTreeMap<String, chrono_tz::Tz> = crate::service::sites::zones(&state).await?;
    let rows = list
        .jobs
        .into_iter()
        .map(|job| JobRow {
            start: job
                .start
                .with_timezone(&zones.get(&job.site).copied().unwrap_or(chrono_tz::UTC))
                .format("%Y-%m-%d %H:%M %Z")
                .to_string(),
            href: format!("/jobs/{}", encode_segment(&job.id)),
            duration: crate::service::overview::sacct_duration(job.duration_s.round() as i64),
            job,
        })
        .collect();
    // Next pages by keyset (as fast at any depth); back to the first, or one back from an offset.
    let prev = match start {
        PageStart::Offset(0) => None,
        // Past the last page: one back would be past it too.
        PageStart::Offset(_) if n == 0 => Some(("← First page", page_link(&q, 0))),
        PageStart::Offset(offset) => Some(("← Previous", page_link(&q, (offset - limit).max(0)))),
        PageStart::After(..) => Some(("← First page", page_link(&q, 0))),
    };
    let next = list.next.as_ref().map(|c| cursor_link(&q, c));
    let csv = page_link(&q, 0).replacen("/jobs?", "/jobs.csv?", 1);
    let statement = page_link(&q, 0).replacen("/jobs?", "/statement?", 1);
    Ok(Page(ListPage {
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
        shown,
        error: None,
        banners,
        project_budget,
    })
    .into_response())
}

/// `/jobs/{id}`.
#[derive(Template)]
#[template(path = "jobs/show.html")]
pub(crate) struct ShowPage {
    /// Header.
    pub nav: Nav,
    /// Its duration as sacct writes it (`D-HH:MM:SS`).
    pub duration: String,
    /// Start and end in the site's zone, with the zone (`2026-11-30 18:57:00 CET`).
    pub started: String,
    /// .
    pub ended: Option<String>,
    /// The site's zone.
    pub timezone: String,
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
    pub nodes: Vec<crate::service::nodes::Node>,
    /// What running at the site's best hour this month, or in its best month, would have saved.
    pub timing: Option<Timing>,
    /// Reported training metrics against energy.
    pub progress: Vec<ProgressRow>,
    /// The first coverage gaps, and how many there are.
    pub gaps: (Vec<Gap>, usize),
    /// The cap advisor's proposal for the job's workload, with the comparison's link.
    pub cap_advice: Option<(String, crate::analytics::powercap::CapAdvice)>,
}

/// One reported metric on the job page.
pub(crate) struct ProgressRow {
    /// Metric name.
    pub name: String,
    /// Its chart.
    pub chart: String,
    /// What its last 1 % cost, as a sentence.
    pub sentence: Option<String>,
}

/// `GET /jobs/{id}`: a job's page: its context read once, its energy integrated once at most.
pub(crate) async fn show_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    PageQuery(window): PageQuery<Window>,
) -> Result<Page<ShowPage>, PageError> {
    let scope = viewer.job_scope();
    let ctx = JobContext::load(&state, &scope, &id).await?;
    let (job, progress) = view_with_progress(&state, &ctx).await?;
    let tags: Vec<(String, String)> = job
        .tags
        .clone()
        .into_iter()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect();
    let href = format!("/jobs/{}", encode_segment(&job.id));
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
    }
    // The last 10 minutes, hour and day, where the job is longer (of a running job: up to now).
    for (label, span) in [
        ("Last 10 minutes", 10.0),
        ("Last hour", 60.0),
        ("Last 24 hours", 1440.0),
    ] {
        if minutes > span {
            zooms.push((
                label.to_owned(),
                format!(
                    "{href}?from_min={:.2}&to_min={:.2}",
                    minutes - span,
                    minutes
                ),
            ));
        }
    }
    let names: Vec<String> = ctx.nodes.iter().map(|n| n.name.clone()).collect();
    let nodes = crate::service::nodes::by_names(&state, &names).await?;
    let timing = timing(&state, &job).await?;
    let progress = progress
        .metrics
        .into_iter()
        .map(|m| ProgressRow {
            chart: format!(
                "/jobs/{}/progress/{}.svg",
                encode_segment(&job.id),
                encode_segment(&m.name)
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
    // The advisor, where the job's workload has a stored comparison (jobs at two caps or more).
    let mut cap_advice = None;
    if let Some(workload) = job.tags.get("workload") {
        let tag = format!("workload:{workload}");
        if let Some(c) = comparisons::stored(&state, &scope, &tag).await? {
            if c.caps.len() >= 2 {
                cap_advice = c
                    .advice
                    .map(|a| (format!("/powercap?tag={}", encode_segment(&tag)), a));
            }
        }
    }
    let gaps = coverage_gaps(&state, &ctx).await?;
    let tz = crate::service::pue::site_tz(&state, &job.site).await?.tz;
    let local = |t: chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    };
    Ok(Page(ShowPage {
        started: local(job.start),
        ended: job.end.map(local),
        timezone: tz.name().to_owned(),
        duration: crate::service::overview::sacct_duration(job.duration_s.round() as i64),
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
    }))
}
