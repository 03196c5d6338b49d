//! Browser sessions: the cookie, the trusted proxy header, CSRF tokens, and `Viewer`, the extractor of
//! every page.
//!
//! The session cookie is HttpOnly, SameSite=Lax and (unless configured off for plain-HTTP development)
//! Secure; it holds 32 random bytes whose sha256 is the session's key in the database. Each session has a
//! CSRF token that every form posts back; sign-in itself is protected by a double-submit cookie.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::header::COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;

use super::{identity, new_token, token_digest, Caller, Identity, JobScope};
use crate::config::Config;
use crate::db::users::{Role, User};
use crate::error::{AppError, PageError};
use crate::state::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "wattlas_session";
/// Name of the sign-in form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "wattlas_login";

/// A signed-in person's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The person.
    pub user: User,
    /// The token every form of this session carries.
    pub csrf_token: String,
}

impl Session {
    /// What the page header shows for this session.
    pub fn nav(&self) -> Nav {
        Nav {
            user: Some(self.user.name.clone()),
            role: self.user.role.as_str(),
            staff: self.user.role >= Role::Staff,
            admin: self.user.role == Role::Admin,
            csrf: self.csrf_token.clone(),
        }
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value with the attributes every Wattlas cookie has.
pub fn set_cookie(config: &Config, name: &str, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if config.cookie_secure { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session whose token the request's cookie holds, if live.
pub async fn from_cookie(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, AppError> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    Ok(crate::db::users::session(&state.db, &token_digest(token))
        .await?
        .map(|row| Session {
            user: row.user,
            csrf_token: row.csrf_token,
        }))
}

/// Starts a session for `user`: returns it and its `Set-Cookie` value.
pub async fn start(state: &AppState, user: User) -> Result<(Session, HeaderValue), AppError> {
    let token = new_token("ses");
    let csrf_token = new_token("csrf");
    let hours = i64::from(state.config.session_hours.max(1));
    let expires = chrono::Utc::now() + chrono::Duration::hours(hours);
    crate::db::users::create_session(
        &state.db,
        &token_digest(&token),
        user.id,
        &csrf_token,
        expires,
    )
    .await?;
    let cookie = set_cookie(&state.config, SESSION_COOKIE, &token, hours * 3600);
    Ok((Session { user, csrf_token }, cookie))
}

/// The user named by the trusted proxy header, when it is configured and the peer is a trusted proxy.
/// A request carrying the header from anywhere else is refused rather than silently ignored.
pub fn trusted_user(
    config: &Config,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Option<String>, AppError> {
    let Some(name) = config
        .trusted_user_header
        .as_deref()
        .filter(|h| !h.is_empty())
    else {
        return Ok(None);
    };
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    if !peer.is_some_and(|ip| config.trusted_proxies.contains(&ip)) {
        return Err(AppError::unauthorized(format!(
            "header {name} is only accepted from the configured trusted proxies"
        )));
    }
    let user = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|u| !u.is_empty() && u.len() <= 200 && !u.chars().any(char::is_control))
        .ok_or_else(|| AppError::unauthorized(format!("header {name}: not a user name")))?;
    Ok(Some(user.to_owned()))
}

/// Compares a posted CSRF token with the expected one in constant time.
pub fn csrf_matches(expected: &str, sent: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(sent.as_bytes()))
}

/// The person looking at a page: from a session, the trusted header, or a person's bearer token
/// (scripts may fetch pages and exports with their API token).
#[derive(Debug, Clone)]
pub struct Viewer {
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
    pub fn check_csrf(&self, sent: &str) -> Result<(), AppError> {
        match &self.csrf {
            Some(expected) if csrf_matches(expected, sent) => Ok(()),
            Some(_) => Err(AppError::forbidden(
                "the form's CSRF token is missing or stale: reload the page and try again",
            )),
            None => Ok(()),
        }
    }

    /// The jobs this viewer may see.
    pub fn job_scope(&self) -> JobScope {
        JobScope::for_person(self.role, &self.name)
    }

    /// Staff or admin.
    pub fn is_staff(&self) -> bool {
        self.role >= Role::Staff
    }

    /// Admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Refuses anyone but admins.
    pub fn require_admin(&self) -> Result<(), AppError> {
        self.caller.require_admin()
    }

    /// What the header shows.
    pub fn nav(&self) -> Nav {
        Nav {
            user: Some(self.name.clone()),
            role: self.role.as_str(),
            staff: self.is_staff(),
            admin: self.is_admin(),
            csrf: self.csrf.clone().unwrap_or_default(),
        }
    }
}

/// The page header's view of the viewer.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    /// Signed-in name, if any.
    pub user: Option<String>,
    /// Role name.
    pub role: &'static str,
    /// Show staff links.
    pub staff: bool,
    /// Show admin links.
    pub admin: bool,
    /// For the sign-out form.
    pub csrf: String,
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
