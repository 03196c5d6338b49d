//! Who is calling, and what they may see.
//!
//! Credentials, in the order they are tried (`identify`, run once per request by `middleware`):
//! 1. `Authorization: Bearer`: the bootstrap admin token from the environment, a user's API token, a
//!    node's token or a meter's token. Tokens are 32 random bytes stored as sha256 digests: there is
//!    nothing to brute-force, so a fast digest is right, and the lookup by digest reveals nothing by timing.
//! 2. The session cookie of a signed-in user (`session`).
//! 3. When configured, a trusted reverse proxy's user header (single sign-on); the user is created as a
//!    researcher on first sight, and gets a session so that forms carry a CSRF token like everyone's.
//!
//! Cookies and the proxy header are ambient credentials: on the JSON API they only read (GET/HEAD);
//! writes need a bearer token. Page forms check the session's CSRF token.

pub mod limit;
pub mod password;
pub mod session;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use rand::RngCore;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::users::{Role, User};
use crate::error::AppError;
use crate::state::AppState;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The bootstrap admin token: may call every API.
    Admin,
    /// A person, by API token, session or trusted header.
    User(User),
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
    /// A site's write token (its Prometheus' remote write): may write the GPU series of the site's nodes.
    Site {
        /// Site id.
        id: i32,
        /// Site name.
        name: String,
    },
}

/// Which jobs a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobScope {
    /// Every job (staff, admin).
    All,
    /// The jobs of this user name (researchers).
    Own(String),
}

impl JobScope {
    /// The jobs a person of `role` named `name` may see: researchers their own, others all.
    pub fn for_person(role: Role, name: &str) -> Self {
        match role {
            Role::Researcher => Self::Own(name.to_owned()),
            Role::Staff | Role::Admin => Self::All,
        }
    }

    /// Whether a job of `user_name` is visible.
    pub fn allows(&self, user_name: &str) -> bool {
        match self {
            Self::All => true,
            Self::Own(own) => own == user_name,
        }
    }

    /// The owner every listed job must have, if restricted.
    pub fn owner(&self) -> Option<String> {
        match self {
            Self::All => None,
            Self::Own(own) => Some(own.clone()),
        }
    }
}

impl Caller {
    /// The role of a person, or of the bootstrap admin token; collectors have none.
    pub fn role(&self) -> Option<Role> {
        match self {
            Self::Admin => Some(Role::Admin),
            Self::User(u) => Some(u.role),
            Self::Node { .. } | Self::Meter { .. } | Self::Site { .. } => None,
        }
    }

    /// Only admins (the token or a user) may pass.
    pub fn require_admin(&self) -> Result<(), AppError> {
        match self.role() {
            Some(Role::Admin) => Ok(()),
            _ => Err(AppError::forbidden("this needs an admin")),
        }
    }

    /// Staff and admins may pass (facility pages and data: meters, nodes).
    pub fn require_staff(&self) -> Result<(), AppError> {
        match self.role() {
            Some(Role::Staff | Role::Admin) => Ok(()),
            _ => Err(AppError::forbidden("this needs staff or admin")),
        }
    }

    /// People may pass (site PUE pages and data); collectors' tokens only write.
    pub fn require_person(&self) -> Result<(), AppError> {
        match self.role() {
            Some(_) => Ok(()),
            None => Err(AppError::forbidden(
                "collector tokens only write data: reading needs a user's token",
            )),
        }
    }

    /// For routes that write measurements and jobs (collectors and admins): an admin user acts as the
    /// admin token; other people are refused.
    pub fn writer(self) -> Result<Caller, AppError> {
        match self {
            Self::User(u) if u.role == Role::Admin => Ok(Self::Admin),
            Self::User(u) => Err(AppError::forbidden(format!(
                "user '{}' ({}) cannot write measurements or jobs: that is for collectors and admins",
                u.name,
                u.role.as_str()
            ))),
            other => Ok(other),
        }
    }

    /// The jobs this caller may read.
    pub fn job_scope(&self) -> Result<JobScope, AppError> {
        match self {
            Self::User(u) => Ok(JobScope::for_person(u.role, &u.name)),
            Self::Admin => Ok(JobScope::All),
            Self::Node { .. } | Self::Meter { .. } | Self::Site { .. } => {
                self.require_person()?;
                Ok(JobScope::All)
            }
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

/// How a request was identified.
#[derive(Debug, Clone)]
pub enum Identity {
    /// No credentials.
    Anonymous,
    /// Credentials that were refused (status, message).
    Refused(AppErrorKind, String),
    /// By bearer token.
    Bearer(Caller),
    /// By session cookie or trusted header: a signed-in person with a session.
    Session(Arc<session::Session>),
}

/// The kind of a refusal, kept so the extractors answer it as JSON (API) or as a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppErrorKind {
    /// 401.
    Unauthorized,
    /// 503: the database is away.
    Unavailable,
    /// 500.
    Internal,
}

impl Identity {
    fn error(&self) -> Option<AppError> {
        match self {
            Self::Refused(AppErrorKind::Unauthorized, msg) => Some(AppError::unauthorized(msg)),
            Self::Refused(AppErrorKind::Unavailable, msg) => Some(AppError::Client(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                msg.clone(),
            )),
            Self::Refused(AppErrorKind::Internal, msg) => Some(AppError::internal(msg)),
            _ => None,
        }
    }
}

/// Node tokens recently found, by digest, for `NODE_TOKEN_TTL`: a replaced node token keeps
/// working that long on a server that saw it (DEVELOPERS.md, Access).
#[derive(Default)]
pub struct NodeTokens(
    std::sync::Mutex<std::collections::HashMap<Vec<u8>, (Caller, std::time::Instant)>>,
);

/// How long a node token found in the database is believed without asking again.
pub const NODE_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Entries at most (all are dropped when full: one lookup each to fill it again).
const NODE_TOKENS_MAX: usize = 100_000;

impl NodeTokens {
    fn get(&self, digest: &[u8]) -> Option<Caller> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(digest)
            .filter(|(_, at)| at.elapsed() < NODE_TOKEN_TTL)
            .map(|(c, _)| c.clone())
    }

    fn put(&self, digest: Vec<u8>, caller: Caller) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= NODE_TOKENS_MAX {
            map.clear();
        }
        map.insert(digest, (caller, std::time::Instant::now()));
    }

    /// Forgets every token (a node's token was replaced on this server).
    pub fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

async fn bearer(state: &AppState, token: &str) -> Result<Option<Caller>, AppError> {
    let digest = token_digest(token);
    if let Some(admin) = &state.config.admin_token {
        let admin_digest = token_digest(admin.expose_secret());
        if bool::from(admin_digest.ct_eq(&digest)) {
            return Ok(Some(Caller::Admin));
        }
    }
    // Collectors first: their batches are by far the most frequent requests (one a second per node),
    // so a node's token is remembered for a few seconds instead of read for each; and the user lookup
    // writes (it marks the token used).
    if let Some(caller) = state.node_tokens.get(&digest) {
        return Ok(Some(caller));
    }
    if let Some((node, switched)) = crate::db::nodes::by_token_digest(&state.db, &digest).await? {
        if switched {
            // The collector uses its new token: the old one, remembered, must stop now.
            state.node_tokens.clear();
        }
        let caller = Caller::Node {
            id: node.id,
            name: node.name,
            site_id: node.site_id,
        };
        state.node_tokens.put(digest, caller.clone());
        return Ok(Some(caller));
    }
    if let Some(meter) = crate::db::facility::by_token_digest(&state.db, &digest).await? {
        return Ok(Some(Caller::Meter {
            id: meter.id,
            name: meter.name,
        }));
    }
    if let Some((id, name)) = crate::db::sites::by_write_token_digest(&state.db, &digest).await? {
        return Ok(Some(Caller::Site { id, name }));
    }
    Ok(crate::db::users::by_token_digest(&state.db, &digest)
        .await?
        .map(Caller::User))
}

/// Identifies a request; returns the identity and, for a new trusted-header session, its cookie.
async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<(Identity, Option<HeaderValue>), AppError> {
    if let Some(header) = headers.get(AUTHORIZATION) {
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Ok((
                Identity::Refused(
                    AppErrorKind::Unauthorized,
                    "malformed Authorization header: expected 'Bearer <token>'".into(),
                ),
                None,
            ));
        };
        return Ok(match bearer(state, token).await? {
            Some(caller) => (Identity::Bearer(caller), None),
            None => (
                Identity::Refused(AppErrorKind::Unauthorized, "invalid token".into()),
                None,
            ),
        });
    }
    let existing = session::from_cookie(state, headers).await?;
    if let Some(header_user) = session::trusted_user(&state.config, headers, peer)? {
        if let Some(s) = existing.filter(|s| s.user.name == header_user) {
            return Ok((Identity::Session(Arc::new(s)), None));
        }
        let user = crate::db::users::get_or_create_external(&state.db, &header_user).await?;
        if user.disabled {
            return Ok((
                Identity::Refused(
                    AppErrorKind::Unauthorized,
                    format!("user '{header_user}' is disabled"),
                ),
                None,
            ));
        }
        let (s, cookie) = session::start(state, user).await?;
        return Ok((Identity::Session(Arc::new(s)), Some(cookie)));
    }
    Ok(match existing {
        Some(s) => (Identity::Session(Arc::new(s)), None),
        None => (Identity::Anonymous, None),
    })
}

/// Identifies each request once and hands the result to the extractors (`Caller`, `session::Viewer`).
pub async fn middleware(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (identity, cookie) = match identify(&state, req.headers(), peer).await {
        Ok(found) => found,
        Err(e) => {
            let kind = match e.status() {
                axum::http::StatusCode::SERVICE_UNAVAILABLE => AppErrorKind::Unavailable,
                axum::http::StatusCode::UNAUTHORIZED => AppErrorKind::Unauthorized,
                _ => AppErrorKind::Internal,
            };
            let msg = match &e {
                AppError::Client(_, m) => m.clone(),
                AppError::Unavailable(_) => "database unavailable, retry later".to_owned(),
                other => {
                    tracing::error!(error = ?other, "identifying a request failed");
                    "internal error".to_owned()
                }
            };
            (Identity::Refused(kind, msg), None)
        }
    };
    req.extensions_mut().insert(identity);
    let mut response = next.run(req).await;
    if let Some(cookie) = cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// Error pages are rendered where they arise, without asking who is looking; for a signed-in person this
/// renders them again with the page header (their name, the links of their role, sign out), so a 404 or
/// a refused query keeps the navigation. Runs inside `middleware`, which identified the request.
pub async fn error_pages_with_nav(req: Request, next: Next) -> Response {
    let nav = match req.extensions().get::<Identity>() {
        Some(Identity::Session(s)) => Some(s.nav()),
        _ => None,
    };
    let response = next.run(req).await;
    let Some(nav) = nav else {
        return response;
    };
    let Some(shown) = response
        .extensions()
        .get::<crate::error::ErrorPageShown>()
        .cloned()
    else {
        return response;
    };
    let page = crate::error::ErrorPage {
        status: shown.status,
        message: shown.message,
        nav,
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(page.render_or_text()))
}

fn identity(parts: &Parts) -> Identity {
    parts
        .extensions
        .get::<Identity>()
        .cloned()
        .unwrap_or(Identity::Anonymous)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let id = identity(parts);
        if let Some(e) = id.error() {
            return Err(e);
        }
        match id {
            Identity::Bearer(caller) => Ok(caller),
            Identity::Session(s) => {
                if parts.method == Method::GET || parts.method == Method::HEAD {
                    Ok(Caller::User(s.user.clone()))
                } else {
                    Err(AppError::forbidden(
                        "API writes need a bearer token (create one on your account page)",
                    ))
                }
            }
            _ => Err(AppError::unauthorized(
                "missing bearer token (Authorization: Bearer ...)",
            )),
        }
    }
}
