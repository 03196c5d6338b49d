//! Identifies each request once (`middleware`, in the order the module `auth` describes) and hands the
//! result to the extractors: `Caller` for the API, `Viewer` for pages.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::nav::Nav;
use super::remembered::Who;
use super::session::{self, csrf_matches};
use crate::db::users::Role;
use crate::error::{AppError, PageError};
use crate::service::caller::{token_digest, Caller, JobScope};
use crate::state::AppState;

/// How a request was identified.
#[derive(Debug, Clone)]
pub(crate) enum Identity {
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
pub(crate) enum AppErrorKind {
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

async fn bearer(state: &AppState, token: &str) -> Result<Option<Caller>, AppError> {
    let digest = token_digest(token);
    if let Some(admin) = &state.config.admin_token {
        let admin_digest = token_digest(admin.expose_secret());
        if bool::from(admin_digest.ct_eq(&digest)) {
            return Ok(Some(Caller::Admin));
        }
    }
    // Writers first: their batches are by far the most frequent requests (one a second per node, a
    // site's Prometheus many a second), so their tokens are remembered for a few seconds instead of
    // read for each; and the user lookup writes (it marks the token used).
    if let Some(caller) = state.writer_tokens.get(&digest) {
        return Ok(Some(caller));
    }
    if let Some((node, switched)) = crate::db::nodes::by_token_digest(&state.db, &digest).await? {
        if switched {
            // The collector uses its new token: the old one, remembered, must stop now.
            state.writer_tokens.clear();
        }
        let caller = Caller::Node {
            id: node.id,
            name: node.name,
            site_id: node.site_id,
        };
        state.writer_tokens.put(digest, caller.clone());
        return Ok(Some(caller));
    }
    let found = match crate::db::facility::by_token_digest(&state.db, &digest).await? {
        Some(meter) => Some(Caller::Meter {
            id: meter.id,
            name: meter.name,
        }),
        None => match crate::db::sites::by_write_token_digest(&state.db, &digest).await? {
            Some((id, name)) => {
                let caller = Caller::Site { id, name };
                state.writer_tokens.put(digest.clone(), caller.clone());
                Some(caller)
            }
            None => crate::db::users::by_token_digest(&state.db, &digest)
                .await?
                .map(Caller::User),
        },
    };
    match &found {
        Some(caller) => state
            .identities
            .confirm(&digest, Who::Bearer(caller.clone()), None),
        None => state.identities.forget(&digest),
    }
    Ok(found)
}

/// The bearer token of an `Authorization` header: `Err` where the header is not `Bearer <token>`.
fn bearer_token(header: &HeaderValue) -> Result<&str, ()> {
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(())
}

/// While the database cannot say: the identity this server last confirmed for the request's token or
/// session cookie, within the grace period (`remembered`). A trusted proxy's header must name the
/// remembered session's user.
fn recalled(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Option<(Identity, Option<HeaderValue>)> {
    if let Some(header) = headers.get(AUTHORIZATION) {
        let token = bearer_token(header).ok()?;
        return match state.identities.recall(&token_digest(token))? {
            Who::Bearer(caller) => Some((Identity::Bearer(caller), None)),
            Who::Session(_) => None,
        };
    }
    let cookie = session::cookie(headers, session::SESSION_COOKIE).filter(|t| !t.is_empty())?;
    let Who::Session(s) = state.identities.recall(&token_digest(cookie))? else {
        return None;
    };
    match session::trusted_user(&state.config, headers, peer) {
        Ok(Some(name)) if name != s.user.name => None,
        Err(_) => None,
        _ => Some((Identity::Session(Arc::new(s)), None)),
    }
}

/// Identifies a request; returns the identity and, for a new trusted-header session, its cookie.
async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<(Identity, Option<HeaderValue>), AppError> {
    if let Some(header) = headers.get(AUTHORIZATION) {
        let Ok(token) = bearer_token(header) else {
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
pub(crate) async fn middleware(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let identified = match identify(&state, req.headers(), peer).await {
        // The lookup is each request's check of the primary: its reads go to the replica now (not for
        // a pool timeout, which a busy primary gives too, nor a full disk, which reads do not mind).
        Err(AppError::Unavailable(e)) if crate::db::unreachable(&e) => {
            if !matches!(e, sqlx::Error::PoolTimedOut) {
                state.reads.primary_unreachable();
            }
            let found = recalled(&state, req.headers(), peer);
            if found.is_some() {
                state.metrics.identity_recalled();
            }
            found.ok_or(AppError::Unavailable(e))
        }
        other => other,
    };
    let (identity, cookie) = match identified {
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
pub(crate) async fn error_pages_with_nav(req: Request, next: Next) -> Response {
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

/// The person looking at a page: from a session, the trusted header, or a person's bearer token
/// (scripts may fetch pages and exports with their API token).
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// As an API caller.
    pub caller: Caller,
    /// Name shown in the header.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The session's CSRF token; `None` for bearer tokens, which are not ambient and need none.
    pub csrf: Option<String>,
}

impl Viewer {
    /// Refuses a form whose CSRF token is not this session's.
    pub(crate) fn check_csrf(&self, sent: &str) -> Result<(), AppError> {
        match &self.csrf {
            Some(expected) if csrf_matches(expected, sent) => Ok(()),
            Some(_) => Err(AppError::forbidden(
                "the form's CSRF token is missing or stale: reload the page and try again",
            )),
            None => Ok(()),
        }
    }

    /// The jobs this viewer may see.
    pub(crate) fn job_scope(&self) -> JobScope {
        JobScope::for_person(self.role, &self.name)
    }

    /// Staff or admin.
    pub(crate) fn is_staff(&self) -> bool {
        self.role >= Role::Staff
    }

    /// Admin.
    pub(crate) fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Refuses anyone but admins.
    pub(crate) fn require_admin(&self) -> Result<(), AppError> {
        Ok(self.caller.require_admin()?)
    }

    /// What the header shows.
    pub(crate) fn nav(&self) -> Nav {
        Nav {
            user: Some(self.name.clone()),
            role: self.role.as_str(),
            staff: self.is_staff(),
            admin: self.is_admin(),
            csrf: self.csrf.clone().unwrap_or_default(),
        }
    }
}

/// Where a page request without a session is sent: the sign-in page, coming back here after.
fn sign_in_redirect(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    Redirect::to(&format!(
        "/login?next={}",
        wattlas_protocol::paths::encode_segment(next)
    ))
    .into_response()
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match identity(parts) {
            Identity::Session(s) => Ok(Self {
                caller: Caller::User(s.user.clone()),
                name: s.user.name.clone(),
                role: s.user.role,
                csrf: Some(s.csrf_token.clone()),
            }),
            Identity::Bearer(caller) => {
                let (name, role) = match &caller {
                    Caller::Admin => ("admin token".to_owned(), Role::Admin),
                    Caller::User(u) => (u.name.clone(), u.role),
                    Caller::Node { .. } | Caller::Meter { .. } | Caller::Site { .. } => {
                        return Err(PageError(AppError::forbidden(
                            "collector tokens cannot read pages",
                        ))
                        .into_response())
                    }
                };
                Ok(Self {
                    caller,
                    name,
                    role,
                    csrf: None,
                })
            }
            Identity::Anonymous => Err(sign_in_redirect(parts)),
            refused @ Identity::Refused(..) => Err(PageError(
                refused
                    .error()
                    .unwrap_or_else(|| AppError::unauthorized("not signed in")),
            )
            .into_response()),
        }
    }
}
