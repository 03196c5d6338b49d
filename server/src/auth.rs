//! Bearer tokens: the bootstrap admin token from the environment, and node tokens stored as sha256 hashes.
//!
//! Node tokens are 32 random bytes, so a plain sha256 (not a slow password hash) is the right digest:
//! there is nothing to brute-force. The lookup is by digest, so timing reveals nothing of the token; the
//! admin token is compared by digest in constant time.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use rand::RngCore;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::AppError;
use crate::state::AppState;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The bootstrap admin: may call every API.
    Admin,
    /// A node's collector: may write its own node's data and jobs.
    Node {
        /// Node id.
        id: i32,
        /// Node name.
        name: String,
        /// The node's site id.
        site_id: i32,
    },
    /// A facility meter's collector: may write its own meter's readings.
    Meter {
        /// Meter id.
        id: i32,
        /// Meter name.
        name: String,
    },
}

impl Caller {
    /// Only admin may pass.
    pub fn require_admin(&self) -> Result<(), AppError> {
        match self {
            Self::Admin => Ok(()),
            _ => Err(AppError::forbidden("this needs the admin token")),
        }
    }
}

/// A new random token with a recognisable prefix.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The digest stored for a token.
pub fn token_digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            AppError::unauthorized("missing bearer token (Authorization: Bearer ...)")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                AppError::unauthorized("malformed Authorization header: expected 'Bearer <token>'")
            })?;
        let digest = token_digest(token);
        if let Some(admin) = &state.config.admin_token {
            let admin_digest = token_digest(admin.expose_secret());
            if bool::from(admin_digest.ct_eq(&digest)) {
                return Ok(Self::Admin);
            }
        }
        if let Some(node) = crate::db::nodes::by_token_digest(&state.db, &digest).await? {
            return Ok(Self::Node {
                id: node.id,
                name: node.name,
                site_id: node.site_id,
            });
        }
        match crate::db::facility::by_token_digest(&state.db, &digest).await? {
            Some(meter) => Ok(Self::Meter {
                id: meter.id,
                name: meter.name,
            }),
            None => Err(AppError::unauthorized("invalid token")),
        }
    }
}
