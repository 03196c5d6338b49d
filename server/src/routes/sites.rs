//! `POST /api/v1/sites` and `GET /api/v1/sites`.

use axum::extract::State;
use axum::http::StatusCode;
use wattlas_protocol::{NewSite, SiteView};

use crate::auth::Caller;
use crate::db;
use crate::error::AppError;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Creates a site (admin).
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(site): ApiJson<NewSite>,
) -> Result<(StatusCode, axum::Json<SiteView>), AppError> {
    caller.require_admin()?;
    if site.name.trim().is_empty() || site.name.len() > 100 {
        return Err(AppError::bad_request("name: must be 1 to 100 characters"));
    }
    if site.timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(AppError::bad_request(format!(
            "timezone: '{}' is not an IANA time zone",
            site.timezone
        )));
    }
    let created = db::sites::create(&state.db, &site.name, &site.timezone)
        .await?
        .ok_or_else(|| AppError::conflict(format!("name: site '{}' exists", site.name)))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(SiteView {
            name: created.name,
            timezone: created.timezone,
        }),
    ))
}

/// Lists sites (any token).
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<axum::Json<Vec<SiteView>>, AppError> {
    let sites = db::sites::list(&state.db).await?;
    Ok(axum::Json(
        sites
            .into_iter()
            .map(|s| SiteView {
                name: s.name,
                timezone: s.timezone,
            })
            .collect(),
    ))
}
