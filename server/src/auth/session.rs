//! Browser sessions: the cookie, the trusted proxy header, CSRF tokens (`Viewer`, the extractor of
//! every page, is `identify`'s).
//!
//! The session cookie is HttpOnly, SameSite=Lax and (unless configured off for plain-HTTP development)
//! Secure; it holds 32 random bytes whose sha256 is the session's key in the database. Each session has a
//! CSRF token that every form posts back; sign-in itself is protected by a double-submit cookie.

use std::net::IpAddr;

use axum::http::header::COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

use super::who::Who;
use crate::config::Config;
use crate::db::users::User;
use crate::error::AppError;
use crate::service::caller::{new_token, token_digest};
use crate::state::AppState;

/// Name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "wattlas_session";
/// Name of the sign-in form's double-submit cookie.
pub(crate) const LOGIN_COOKIE: &str = "wattlas_login";

pub(crate) use super::who::Session;

/// The value of cookie `name` in the request, if any.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
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
pub(crate) fn set_cookie(config: &Config, name: &str, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if config.cookie_secure { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session whose token the request's cookie holds, if live. What the database says is what this
/// server remembers of the cookie for an outage (`remembered`): the session until its expiry, or
/// nothing.
pub(crate) async fn from_cookie(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, AppError> {
    let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let digest = token_digest(token);
    let Some(row) = crate::db::users::session(&state.db, &digest).await? else {
        state.identities.forget(&digest);
        return Ok(None);
    };
    let session = Session {
        user: row.user,
        csrf_token: row.csrf_token,
    };
    state
        .identities
        .confirm(&digest, Who::Session(session.clone()), Some(row.expires_at));
    Ok(Some(session))
}

/// Starts a session for `user`: returns it and its `Set-Cookie` value.
pub(crate) async fn start(
    state: &AppState,
    user: User,
) -> Result<(Session, HeaderValue), AppError> {
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
pub(crate) fn trusted_user(
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
pub(crate) fn csrf_matches(expected: &str, sent: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(sent.as_bytes()))
}
