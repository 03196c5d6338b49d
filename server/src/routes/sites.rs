//! `POST /api/v1/sites` and `GET /api/v1/sites`.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use wattlas_protocol::{NewSite, SiteView};

use crate::auth::session::{Nav, Viewer};
use crate::auth::Caller;
use crate::db;
use crate::error::{AppError, PageError};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Creates a site (admin).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(site): ApiJson<NewSite>,
) -> Result<(StatusCode, axum::Json<SiteView>), AppError> {
    caller.require_admin()?;
    Ok((
        StatusCode::CREATED,
        axum::Json(create_site(&state, &site).await?),
    ))
}

/// Validates and stores a new site (the API and the admin page).
pub async fn create_site(state: &AppState, site: &NewSite) -> Result<SiteView, AppError> {
    if site.name.trim().is_empty() || site.name.len() > 100 {
        return Err(AppError::bad_request("name: must be 1 to 100 characters"));
    }
    if site.timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(AppError::bad_request(format!(
            "timezone: '{}' is not an IANA time zone",
            site.timezone
        )));
    }
    let fallback_pue = site.fallback_pue.unwrap_or(1.58);
    if !fallback_pue.is_finite() || !(1.0..=10.0).contains(&fallback_pue) {
        return Err(AppError::bad_request(format!(
            "fallback_pue: {fallback_pue} is outside 1..10"
        )));
    }
    let created = db::sites::create(&state.db, &site.name, &site.timezone, fallback_pue)
        .await?
        .ok_or_else(|| AppError::conflict(format!("name: site '{}' exists", site.name)))?;
    Ok(SiteView {
        name: created.name,
        timezone: created.timezone,
        fallback_pue,
    })
}

/// Lists sites (people, any role).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<SiteView>>, AppError> {
    caller.require_person()?;
    let sites = db::sites::list_with_fallback(&state.db).await?;
    Ok(axum::Json(
        sites
            .into_iter()
            .map(|s| SiteView {
                name: s.name,
                timezone: s.timezone,
                fallback_pue: s.fallback_pue,
            })
            .collect(),
    ))
}

/// `/sites`.
#[derive(Template)]
#[template(path = "sites/list.html")]
pub struct ListPage {
    /// Header.
    pub nav: Nav,
    /// Sites by name.
    pub sites: Vec<db::sites::SiteRow>,
}

/// `GET /sites`: the sites, each with a link to its PUE page.
pub async fn list_page(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Html<String>, PageError> {
    let sites = db::sites::list_with_fallback(&state.db).await?;
    let page = ListPage {
        nav: viewer.nav(),
        sites,
    };
    Ok(Html(
        page.render()
            .map_err(|e| AppError::Internal(e.to_string()))?,
    ))
}
