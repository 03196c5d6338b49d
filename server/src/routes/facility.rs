//! Facility meters: `POST/GET /api/v1/meters` and `POST /api/v1/ingest/facility`.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::json;
use wattlas_protocol::{FacilityBatch, MeterToken, MeterView, NewMeter};

use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{ApiJson, Path, Query};
use crate::names::MeterName;
use crate::service::meters::{self, create_meter, meter_views};
use crate::state::AppState;

/// Creates a meter and its token (admin); the token is in this answer only.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(meter): ApiJson<NewMeter>,
) -> Result<(StatusCode, ApiJson<MeterToken>), AppError> {
    caller.require_admin()?;
    Ok((
        StatusCode::CREATED,
        ApiJson(
            create_meter(
                &state,
                &MeterName::parse("name", &meter.name)?,
                &meter.site,
                meter.category.as_deref(),
            )
            .await?,
        ),
    ))
}

/// Lists meters with their last reading (staff and admins).
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<ApiJson<Vec<MeterView>>, AppError> {
    caller.require_staff()?;
    Ok(ApiJson(meter_views(&state, None).await?))
}

/// Takes a meter's readings: refuses the batch whole on the first invalid field; each (meter, time) once.
pub(crate) async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(batch): ApiJson<FacilityBatch>,
) -> Result<ApiJson<serde_json::Value>, AppError> {
    let caller = caller.writer()?;
    let (stored, duplicates) = meters::store_readings(&state, &caller, &batch, Utc::now()).await?;
    Ok(ApiJson(
        json!({ "stored": stored, "duplicates": duplicates }),
    ))
}

/// `?from=&to=` of a deletion.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct DeleteRange {
    /// From (inclusive).
    pub from: DateTime<Utc>,
    /// To (exclusive).
    pub to: DateTime<Utc>,
}

/// `DELETE /api/v1/meters/{name}/readings?from=&to=` (admin): removes a broken meter's readings in a
/// time range; the site's PUE and the jobs charged in that range are recomputed.
pub(crate) async fn delete_readings(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(range): Query<DeleteRange>,
) -> Result<ApiJson<serde_json::Value>, AppError> {
    caller.require_admin()?;
    let deleted = meters::delete_readings(&state, &name, range.from, range.to).await?;
    Ok(ApiJson(json!({ "deleted": deleted })))
}
