//! Nodes: their registration (with a fresh token).

use wattlas_protocol::{NewNode, NodeToken};

use super::{Error, Result};
use crate::auth;
use crate::db;
use crate::state::AppState;

/// Validates and stores a new node with a fresh token (the API and the admin page).
pub async fn create_node(state: &AppState, node: &NewNode) -> Result<NodeToken> {
    super::check_name("name", &node.name)?;
    let site = db::sites::by_name(&state.db, &node.site)
        .await?
        .ok_or_else(|| Error::invalid("site", format!("unknown site '{}'", node.site)))?;
    let token = auth::new_token("wn");
    db::nodes::create(&state.db, &node.name, site.id, &auth::token_digest(&token))
        .await?
        .ok_or_else(|| Error::Conflict(format!("name: node '{}' exists", node.name)))?;
    Ok(NodeToken {
        name: node.name.clone(),
        token,
    })
}
