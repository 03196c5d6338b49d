//! Scope 2's inputs over HTTP (issue 35, item 4): a site's contractual instruments and GPU models'
//! embodied emissions. People read them; admins set them.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{ApiJson, Path, Query};
use crate::service::scope2::{self, Contract, Embodied, NewContract, NewEmbodied};
use crate::state::AppState;

/// `GET /api/v1/sites/{site}/contracts`: its instruments, oldest first.
pub(crate) async fn contracts(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
) -> Result<ApiJson<Vec<Contract>>, AppError> {
    caller.require_person()?;
    Ok(ApiJson(scope2::contracts(&state, &site).await?))
}

/// `POST /api/v1/sites/{site}/contracts` (admin): `{"valid_from", "valid_to", "g_per_kwh",
/// "instrument"}`; 409 where it overlaps another.
pub(crate) async fn add_contract(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    ApiJson(c): ApiJson<NewContract>,
) -> Result<(StatusCode, ApiJson<Contract>), AppError> {
    caller.require_admin()?;
    Ok((
        StatusCode::CREATED,
        ApiJson(scope2::add_contract(&state, &site, c).await?),
    ))
}

/// `?valid_from=`: which instrument.
#[derive(Debug, Deserialize)]
pub(crate) struct Which {
    /// Its first instant.
    pub valid_from: DateTime<Utc>,
}

/// `DELETE /api/v1/sites/{site}/contracts?valid_from=` (admin).
pub(crate) async fn delete_contract(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    Query(w): Query<Which>,
) -> Result<ApiJson<Contract>, AppError> {
    caller.require_admin()?;
    Ok(ApiJson(
        scope2::delete_contract(&state, &site, w.valid_from).await?,
    ))
}

/// `GET /api/v1/gpu-models/embodied`: every model's figure.
pub(crate) async fn embodied(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<ApiJson<Vec<Embodied>>, AppError> {
    caller.require_person()?;
    Ok(ApiJson(scope2::embodied(&state).await?))
}

/// `PUT /api/v1/gpu-models/{model}/embodied` (admin): `{"kg_per_gpu_hour", "source"}`.
pub(crate) async fn set_embodied(
    State(state): State<AppState>,
    caller: Caller,
    Path(model): Path<String>,
    ApiJson(e): ApiJson<NewEmbodied>,
) -> Result<ApiJson<Embodied>, AppError> {
    caller.require_admin()?;
    Ok(ApiJson(scope2::set_embodied(&state, &model, e).await?))
}
