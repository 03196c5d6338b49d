//! Sensors against meters over HTTP (issue 35, item 6): a meter's nodes (admins set them) and its
//! comparison with their collectors (staff and admins: facility detail).

use askama::Template;
use axum::extract::State;
use serde::Deserialize;

use crate::auth::{Caller, Nav, Viewer};
use crate::error::{AppError, Page, PageError};
use crate::extract::{ApiJson, PageQuery, Path, Query};
use crate::service::calibration::{self, Calibration};
use crate::state::AppState;

/// `{"nodes": [...]}`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MeterNodes {
    /// Node names.
    pub nodes: Vec<String>,
}

/// `PUT /api/v1/meters/{name}/nodes` (admin): the nodes the meter measures.
pub(crate) async fn set_nodes(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<MeterNodes>,
) -> Result<ApiJson<MeterNodes>, AppError> {
    caller.require_admin()?;
    Ok(ApiJson(MeterNodes {
        nodes: calibration::set_nodes(&state, &name, &body.nodes).await?,
    }))
}

/// `?days=`.
#[derive(Debug, Deserialize)]
pub(crate) struct Days {
    /// How many days back (default 60).
    pub days: Option<i64>,
}

/// `GET /api/v1/meters/{name}/calibration?days=` (staff).
pub(crate) async fn api(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<Days>,
) -> Result<ApiJson<Calibration>, AppError> {
    caller.require_staff()?;
    Ok(ApiJson(
        calibration::calibration(&state, &name, q.days.unwrap_or(60)).await?,
    ))
}

/// `/meters/{name}/calibration`.
#[derive(Template)]
#[template(path = "meters/calibration.html")]
pub(crate) struct CalibrationPage {
    /// Header.
    pub nav: Nav,
    /// The comparison.
    pub c: Calibration,
}

/// `GET /meters/{name}/calibration?days=` (staff).
pub(crate) async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
    PageQuery(q): PageQuery<Days>,
) -> Result<Page<CalibrationPage>, PageError> {
    if !viewer.is_staff() {
        return Err(AppError::forbidden("a meter's calibration is for staff and admins").into());
    }
    Ok(Page(CalibrationPage {
        nav: viewer.nav(),
        c: calibration::calibration(&state, &name, q.days.unwrap_or(60)).await?,
    }))
}
