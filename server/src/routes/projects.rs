//! Projects' budgets: `PUT /api/v1/projects/{project}/budget` (admins), `GET /api/v1/projects` (this
//! month's use against budget: staff see every project and the month's crossings with their
//! deliveries, researchers the projects they ran jobs in).

use axum::extract::State;
use chrono::Utc;
use serde::Serialize;

use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::{ApiJson, Path};
use crate::service::budgets::{month_of, set, BudgetInput, Status};
use crate::service::budgets::{Alert, Budget};
use crate::state::AppState;

/// `PUT /api/v1/projects/{project}/budget`: sets or replaces the budget.
pub(crate) async fn put_budget(
    State(state): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
    ApiJson(input): ApiJson<BudgetInput>,
) -> Result<ApiJson<Budget>, AppError> {
    caller.require_admin()?;
    Ok(ApiJson(set(&state, &project, input).await?))
}

/// `GET /api/v1/projects`.
#[derive(Debug, Serialize)]
pub(crate) struct Projects {
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// Budgets with their use, by project.
    pub projects: Vec<Status>,
    /// This month's crossings, newest first (staff only; empty for others).
    pub alerts: Vec<Alert>,
}

/// `GET /api/v1/projects`.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<ApiJson<Projects>, AppError> {
    caller.require_person()?;
    let now = Utc::now();
    let (first, _) = month_of(now);
    let user = match &caller {
        _ if caller.require_staff().is_ok() => None,
        Caller::User(u) => Some(u.name.as_str()),
        _ => Some(""),
    };
    let (projects, alerts) = crate::service::budgets::projects(&state, now, user).await?;
    Ok(ApiJson(Projects {
        month: first.format("%Y-%m").to_string(),
        projects,
        alerts,
    }))
}
