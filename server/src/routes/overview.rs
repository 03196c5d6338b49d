//! `/overview`: the staff and admins' landing page (`service::overview`).

use askama::Template;
use axum::extract::State;

use crate::auth::session::{Nav, Viewer};
use crate::error::{AppError, Page, PageError};
use crate::service::overview::{overview, Bar, Running, SiteNow};
use crate::state::AppState;

/// Seconds between the page's own refreshes.
const REFRESH_S: u32 = 60;

/// The page.
#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    /// Header.
    pub nav: Nav,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub as_of: String,
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
}

/// `GET /overview` (staff, admins).
pub async fn page(
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
    Ok(Page(OverviewPage {
        nav: viewer.nav(),
        as_of: o.as_of.format("%Y-%m-%d %H:%M:%S").to_string(),
        refresh_s: REFRESH_S,
        sites: o.sites,
        by_user: o.by_user,
        by_project: o.by_project,
        unsummarised: o.unsummarised,
        running: o.running,
    }))
}
