//! `/overview`: the staff and admins' landing page (`service::overview`).

use askama::Template;
use axum::extract::State;

use crate::auth::{Nav, Viewer};
use crate::charts::inline::{self, Line, PALETTE};
use crate::error::{AppError, Page, PageError};
use crate::service::closure::{IdleJob, IdleUser};
use crate::service::jobs::timing::format_energy;
use crate::service::overview::{overview, Bar, Running, SiteNow, CURVE_BUCKET_MS};
use crate::state::AppState;

/// Seconds between the page's own refreshes.
const REFRESH_S: u32 = 60;

/// The page.
#[derive(Template)]
#[template(path = "overview.html")]
pub(crate) struct OverviewPage {
    /// Header.
    pub nav: Nav,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub as_of: String,
    /// Every energy figure of the month is to this instant (UTC).
    pub cut: String,
    /// Seconds between refreshes.
    pub refresh_s: u32,
    /// Per site.
    pub sites: Vec<SiteNow>,
    /// The month's energy by user.
    pub by_user: Vec<Bar>,
    /// By project.
    pub by_project: Vec<Bar>,
    /// Jobs not in the bars yet.
    pub unsummarised: i64,
    /// Running jobs.
    pub running: Vec<Running>,
    /// Per site (as `sites`): its 24-hour power chart and today's PUE chart (inline SVG).
    pub charts: Vec<(String, Option<String>)>,
    /// Per site: IT power now, formatted.
    pub it_now: Vec<Option<String>>,
    /// This month's idle allocated GPUs by user.
    pub idle_users: Vec<IdleUser>,
    /// And the jobs with the most.
    pub idle_jobs: Vec<IdleJob>,
    /// Per project bar (as `by_project`): its budget use this month, in words.
    pub project_budgets: Vec<Option<String>>,
}

/// Power in kW, as the charts say it.
fn kw(v: f64) -> String {
    format!("{} kW", inline::num(v))
}

/// A site's 24-hour power and today's PUE, drawn.
fn site_charts(s: &SiteNow, span: (i64, i64)) -> (String, Option<String>) {
    let tz: chrono_tz::Tz = s.timezone.parse().unwrap_or(chrono_tz::UTC);
    let label = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.with_timezone(&tz).format("%H:%M").to_string())
            .unwrap_or_default()
    };
    let power = inline::lines(
        &format!("Power at {}, last 24 hours ({})", s.name, s.timezone),
        "kW",
        0.0,
        span.0,
        span.1,
        3 * 3_600_000,
        2 * CURVE_BUCKET_MS,
        label,
        &[
            Line {
                name: "GPUs (collectors)",
                colour: PALETTE[0],
                points: s.gpu_kw_24h.clone(),
            },
            Line {
                name: "IT (meters)",
                colour: PALETTE[2],
                points: s.it_kw_24h.clone(),
            },
        ],
    );
    let pue = s.pue_today.first().map(|(first, _)| {
        let midnight = *first - first.rem_euclid(3_600_000);
        inline::lines(
            &format!("PUE today at {}, hourly ({})", s.name, s.timezone),
            "PUE",
            1.0,
            midnight,
            midnight + 24 * 3_600_000,
            3 * 3_600_000,
            3_600_000,
            label,
            &[Line {
                name: "PUE (meters)",
                colour: PALETTE[1],
                points: s.pue_today.clone(),
            }],
        )
    });
    (power, pue)
}

/// `GET /overview` (staff, admins).
pub(crate) async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Page<OverviewPage>, PageError> {
    if !viewer.is_staff() {
        return Err(AppError::forbidden(
            "the overview is for staff and admins; your jobs are on the jobs page",
        )
        .into());
    }
    let o = overview(&state).await?;
    let charts = o
        .sites
        .iter()
        .map(|s| site_charts(s, o.curve_span))
        .collect();
    let it_now = o.sites.iter().map(|s| s.it_kw_now.map(kw)).collect();
    let shown: Vec<String> = o.by_project.iter().map(|b| b.name.clone()).collect();
    let budgets = crate::service::budgets::statuses_of(&state, o.as_of, Some(&shown)).await?;
    let project_budgets = o
        .by_project
        .iter()
        .map(|b| {
            budgets.iter().find(|s| s.project == b.name).map(|s| {
                let mut parts = Vec::new();
                // Of the bar's own energy: the page's one cut-off (the budget task counts to now).
                if let Some(k) = s.kwh_per_month.filter(|k| *k > 0.0) {
                    parts.push(format!(
                        "{:.0} % of {}",
                        b.value / k * 100.0,
                        format_energy(k)
                    ));
                }
                if let (Some(p), Some(k)) = (s.co2e_pct, s.co2e_kg_per_month) {
                    parts.push(format!("{p:.0} % of {} kg CO2e", inline::num(k)));
                }
                parts.join(", ")
            })
        })
        .collect();
    Ok(Page(OverviewPage {
        nav: viewer.nav(),
        as_of: o.as_of.format("%Y-%m-%d %H:%M:%S").to_string(),
        cut: o.cut.format("%Y-%m-%d %H:%M").to_string(),
        refresh_s: REFRESH_S,
        sites: o.sites,
        by_user: o.by_user,
        by_project: o.by_project,
        unsummarised: o.unsummarised,
        running: o.running,
        charts,
        it_now,
        idle_users: o.idle.by_user,
        idle_jobs: o.idle.jobs,
        project_budgets,
    }))
}
