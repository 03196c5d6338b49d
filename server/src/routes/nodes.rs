//! `POST /api/v1/nodes` (returns the node's token once) and `GET /api/v1/nodes`.

use axum::extract::State;
use axum::http::StatusCode;
use wattlas_protocol::{NewNode, NodeToken, NodeView};

use crate::auth::{self, Caller};
use crate::db;
use crate::error::AppError;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Creates a node and its token (admin). The token is in this answer only; the server keeps a digest.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(node): ApiJson<NewNode>,
) -> Result<(StatusCode, ApiJson<NodeToken>), AppError> {
    caller.require_admin()?;
    Ok((
        StatusCode::CREATED,
        ApiJson(create_node(&state, &node).await?),
    ))
}

/// Validates and stores a new node with a fresh token (the API and the admin page).
pub async fn create_node(state: &AppState, node: &NewNode) -> Result<NodeToken, AppError> {
    crate::service::check_name("name", &node.name)?;
    let site = db::sites::by_name(&state.db, &node.site)
        .await?
        .ok_or_else(|| AppError::bad_request(format!("site: unknown site '{}'", node.site)))?;
    let token = auth::new_token("wn");
    db::nodes::create(&state.db, &node.name, site.id, &auth::token_digest(&token))
        .await?
        .ok_or_else(|| AppError::conflict(format!("name: node '{}' exists", node.name)))?;
    Ok(NodeToken {
        name: node.name.clone(),
        token,
    })
}

/// Lists nodes with their GPUs and what their collectors last reported (staff and admins).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<ApiJson<Vec<NodeView>>, AppError> {
    caller.require_staff()?;
    let mut out = Vec::new();
    for n in db::nodes::list(&state.db).await? {
        out.push(NodeView {
            gpus: db::nodes::gpus(&state.db, n.id).await?,
            name: n.name,
            site: n.site,
            last_seen: n.last_seen,
            dropped_samples_total: n.dropped_samples_total.max(0) as u64,
        });
    }
    Ok(ApiJson(out))
}
