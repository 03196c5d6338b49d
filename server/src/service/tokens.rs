//! Collectors' tokens: a new one for a node, a meter or a site's remote write. The secret is returned
//! once and stored as a digest.

use super::caller;
use super::error::{Error, Result};
use crate::db;
use crate::service::Context;

/// Who holds a collector token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A node's collector: the old token keeps working until the collector first uses the new one
    /// (24 h at most).
    Node,
    /// A facility meter's collector: the same grace.
    Meter,
    /// A site's Prometheus remote write: the old token stops at once.
    Site,
}

impl Holder {
    /// The admin page's path segment.
    fn plural(self) -> &'static str {
        match self {
            Self::Node => "nodes",
            Self::Meter => "meters",
            Self::Site => "sites",
        }
    }

    /// From the admin page's path segment (`nodes`, `meters`, `sites`).
    pub(crate) fn from_plural(kind: &str) -> Result<Self> {
        [Self::Node, Self::Meter, Self::Site]
            .into_iter()
            .find(|h| h.plural() == kind)
            .ok_or_else(|| Error::NotFound("only nodes, meters and sites have tokens".into()))
    }
}

/// A new token for `name`; the old one stops as `Holder` says. A node's callers remembered by a
/// server must be forgotten by the caller (`AppState::writer_tokens`).
pub(crate) async fn rotate(cx: &Context, holder: Holder, name: &str) -> Result<String> {
    let (token, found) = match holder {
        Holder::Node => {
            let token = caller::new_token("wn");
            let found = db::nodes::set_token(&cx.db, name, &caller::token_digest(&token)).await?;
            (token, found)
        }
        Holder::Meter => {
            let token = caller::new_token("wm");
            let found =
                db::facility::set_token(&cx.db, name, &caller::token_digest(&token)).await?;
            (token, found)
        }
        Holder::Site => {
            let token = caller::new_token("ws");
            let found =
                db::sites::set_write_token(&cx.db, name, &caller::token_digest(&token)).await?;
            (token, found)
        }
    };
    if !found {
        return Err(Error::NotFound(format!("no {} '{name}'", holder.plural())));
    }
    Ok(token)
}
