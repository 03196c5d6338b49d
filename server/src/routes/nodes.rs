//! `POST /api/v1/nodes` (returns the node's token once) and `GET /api/v1/nodes`.

use axum::extract::State;
use axum::http::StatusCode;
use wattlas_protocol::{NewNode, NodeToken, NodeView};

use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::ApiJson;
use crate::names::NodeName;
use crate::service::nodes::create_node;
use crate::state::AppState;

/// Creates a node and its token (admin). The token is in this answer only; the server keeps a digest.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(node): ApiJson<NewNode>,
) -> Result<(StatusCode, ApiJson<NodeToken>), AppError> {
    caller.require_admin()?;
    Ok((
        StatusCode::CREATED,
        ApiJson(create_node(&state, &NodeName::parse("name", &node.name)?, &node.site).await?),
    ))
}

/// Lists nodes with their GPUs, what their collectors last reported, and their CPU and DRAM energy of
/// the last 24 h with its idle part (staff and admins).
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<ApiJson<Vec<NodeView>>, AppError> {
    caller.require_staff()?;
    Ok(ApiJson(crate::service::nodes::views(&state).await?))
}
