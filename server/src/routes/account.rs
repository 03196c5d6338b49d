//! Signing in and out, and one's own account: API tokens and password.

use askama::Template;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::auth::session::{self, LOGIN_COOKIE, SESSION_COOKIE};
use crate::auth::{new_token, password, Caller, Identity};
use crate::auth::{Nav, Viewer};
use crate::error::{AppError, PageError};
use crate::extract::{ApiJson, Form, Path};
use crate::service::{self, users};
use crate::state::AppState;

/// `/login`.
#[derive(Template)]
#[template(path = "account/login.html")]
pub(crate) struct LoginPage {
    /// Empty header.
    pub nav: Nav,
    /// The double-submit token (also in the cookie).
    pub csrf: String,
    /// Where to go after.
    pub next: String,
    /// The name typed, kept after a failure.
    pub username: String,
    /// What went wrong.
    pub error: Option<String>,
}

/// `?next=` of the sign-in page.
#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    /// A local path to return to.
    pub next: Option<String>,
}

/// Only a path of this site: never an open redirect. Browsers drop tabs and newlines from URLs, so
/// `/<TAB>/evil.example` would become `//evil.example`: control characters, backslashes and `//`
/// anywhere are refused, not only at the start.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && !n.contains(['\u{a0}', '\u{2028}', '\u{2029}', '\u{feff}']) =>
        {
            n.to_owned()
        }
        // None (or none safe): where the person lands by role, once known (`landing`).
        _ => String::new(),
    }
}

/// Where a sign-in leads: `next` where one was given, else by role: staff and admins to the overview,
/// researchers to their jobs.
fn landing(next: &str, role: users::Role) -> String {
    match next {
        "" if role >= users::Role::Staff => "/overview".to_owned(),
        "" => "/jobs".to_owned(),
        n => n.to_owned(),
    }
}

fn render(page: &impl Template) -> Result<String, AppError> {
    page.render().map_err(AppError::from)
}

fn login_page(
    state: &AppState,
    status: StatusCode,
    next: String,
    username: String,
    error: Option<String>,
) -> Result<Response, PageError> {
    let csrf = new_token("login");
    let page = LoginPage {
        nav: Nav::default(),
        csrf: csrf.clone(),
        next,
        username,
        error,
    };
    let cookie = session::set_cookie(&state.config, LOGIN_COOKIE, &csrf, 3600);
    Ok((status, [(SET_COOKIE, cookie)], Html(render(&page)?)).into_response())
}

/// `GET /login`.
pub(crate) async fn login_form(
    State(state): State<AppState>,
    identity: Option<axum::Extension<Identity>>,
    crate::extract::PageQuery(q): crate::extract::PageQuery<NextQuery>,
) -> Result<Response, PageError> {
    let next = safe_next(q.next.as_deref());
    if let Some(axum::Extension(Identity::Session(s))) = identity {
        return Ok(Redirect::to(&landing(&next, s.user.role)).into_response());
    }
    login_page(&state, StatusCode::OK, next, String::new(), None)
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    /// Double-submit token.
    #[serde(default)]
    pub csrf: String,
    /// Where to go after.
    pub next: Option<String>,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// `POST /login`: checks the password, starts a session.
pub(crate) async fn login(
    State(state): State<AppState>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let peer = crate::auth::limit::client(
        connect.map(|c| c.0 .0.ip()),
        &headers,
        &state.config.trusted_proxies,
    );
    let next = safe_next(form.next.as_deref());
    let cookie = session::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if !session::csrf_matches(cookie, &form.csrf) {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            next,
            form.username,
            Some("The sign-in form expired (or cookies are off): please try again.".into()),
        );
    }
    // Every hash holds 19 MiB: past the bound, answer at once instead of queueing them.
    let Some(slot) = password::slot(&state.hashing) else {
        state.metrics.sign_in("busy");
        let mut response = login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            next,
            form.username,
            Some("Too many sign-ins at once: try again in a second.".into()),
        )?;
        response.headers_mut().insert(RETRY_AFTER, 1.into());
        return Ok(response);
    };
    // Counted before the hash, so concurrent guesses cannot all slip under the limit.
    if let Err(wait) = state.sign_in.attempt(&form.username, peer) {
        state.metrics.sign_in("limited");
        tracing::info!(user = ?form.username, "sign-in held: too many failures");
        let secs = (wait.as_secs_f64().ceil() as u64).max(1);
        let when = if secs < 120 {
            format!("{secs} second{}", if secs == 1 { "" } else { "s" })
        } else {
            format!("{} minutes", secs.div_ceil(60))
        };
        let mut response = login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            next,
            form.username,
            Some(format!("Too many failed sign-ins: try again in {when}.")),
        )?;
        response.headers_mut().insert(RETRY_AFTER, secs.into());
        return Ok(response);
    }
    let found = users::password_hash(&state, &form.username).await?;
    let (stored, user_id) = match found {
        Some((id, Some(hash))) => (hash, Some(id)),
        _ => (password::dummy_hash().await?, None),
    };
    let matches = password::verify_in(slot, form.password, stored).await?;
    let user = match (matches, user_id) {
        (true, Some(_)) => users::by_name(&state, &form.username).await?,
        _ => None,
    };
    let Some(user) = user else {
        state.metrics.sign_in("refused");
        tracing::info!(user = ?form.username, "sign-in refused");
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            next,
            form.username,
            Some("Wrong user name or password.".into()),
        );
    };
    state.sign_in.succeeded(&form.username, peer);
    state.metrics.sign_in("accepted");
    // The browser's previous session ends with this sign-in: a second person signing in on a shared
    // browser leaves nothing of the first's (issue 33).
    if let Some(token) = session::cookie(&headers, SESSION_COOKIE).filter(|t| !t.is_empty()) {
        users::end_session(&state, token).await?;
    }
    let to = landing(&next, user.role);
    let (_, session_cookie) = session::start(&state, user).await?;
    let clear = session::set_cookie(&state.config, LOGIN_COOKIE, "", 0);
    let mut response = Redirect::to(&to).into_response();
    response.headers_mut().append(SET_COOKIE, session_cookie);
    response.headers_mut().append(SET_COOKIE, clear);
    Ok(response)
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    /// The session's token.
    #[serde(default)]
    pub csrf: String,
}

/// `POST /logout`.
pub(crate) async fn logout(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    if let Some(token) = session::cookie(&headers, SESSION_COOKIE) {
        // Forgotten here first: a sign-out while the database is away (503) still ends the session on
        // this server.
        state.identities.forget(&crate::auth::token_digest(token));
        users::end_session(&state, token).await?;
    }
    let clear = session::set_cookie(&state.config, SESSION_COOKIE, "", 0);
    Ok(([(SET_COOKIE, clear)], Redirect::to("/login")).into_response())
}

/// `/account`.
#[derive(Template)]
#[template(path = "account/show.html")]
pub(crate) struct AccountPage {
    /// Header.
    pub nav: Nav,
    /// User name.
    pub name: String,
    /// Role name.
    pub role: &'static str,
    /// Tokens (not their secrets).
    pub tokens: Vec<users::ApiToken>,
    /// A token just created, shown once.
    pub new_token: Option<String>,
    /// What was just done.
    pub message: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
    /// False for the bootstrap admin token, which has no account.
    pub editable: bool,
}

async fn account_page(
    state: &AppState,
    viewer: &Viewer,
    new_token: Option<String>,
    message: Option<String>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let (tokens, editable) = match &viewer.caller {
        Caller::User(u) => (users::tokens(state, u.id).await?, true),
        _ => (Vec::new(), false),
    };
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let page = AccountPage {
        nav: viewer.nav(),
        name: viewer.name.clone(),
        role: viewer.role.as_str(),
        tokens,
        new_token,
        message,
        error,
        editable,
    };
    Ok((status, Html(render(&page)?)).into_response())
}

/// `GET /account`.
pub(crate) async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    account_page(&state, &viewer, None, None, None).await
}

fn user_of(viewer: &Viewer) -> Result<&users::User, AppError> {
    match &viewer.caller {
        Caller::User(u) => Ok(u),
        _ => Err(AppError::forbidden(
            "the bootstrap admin token has no account",
        )),
    }
}

/// The new-token form.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    /// CSRF token.
    #[serde(default)]
    pub csrf: String,
    /// What the token is for.
    pub label: String,
}

/// `POST /account/tokens`: creates an API token and shows it once.
pub(crate) async fn create_token(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<TokenForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    // A stolen token must not mint more of itself: only a signed-in session (which has a CSRF token;
    // a bearer token has none) creates tokens.
    if viewer.csrf.is_none() {
        return Err(PageError(AppError::forbidden(
            "a new API token needs a signed-in session: an API token cannot make tokens",
        )));
    }
    let user = user_of(&viewer)?;
    match users::create_token(&state, user.id, &form.label).await {
        Ok(token) => account_page(&state, &viewer, Some(token), None, None).await,
        Err(e @ service::Error::Invalid { .. }) => {
            account_page(&state, &viewer, None, None, Some(e.to_string())).await
        }
        Err(e) => Err(AppError::from(e).into()),
    }
}

/// `POST /account/tokens/{id}/revoke`.
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<crate::ids::TokenId>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let user = user_of(&viewer)?;
    users::revoke_token(&state, user.id, id)
        .await
        .map_err(AppError::from)?;
    account_page(&state, &viewer, None, Some("Token revoked.".into()), None).await
}

/// The change-password form.
#[derive(Debug, Deserialize)]
pub(crate) struct PasswordForm {
    /// CSRF token.
    #[serde(default)]
    pub csrf: String,
    /// The current password (empty when none is set: trusted-header users).
    #[serde(default)]
    pub current: String,
    /// The new one.
    pub new: String,
}

/// `POST /account/password`.
pub(crate) async fn change_password(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    viewer.check_csrf(&form.csrf)?;
    let user = user_of(&viewer)?;
    if let Some((_, Some(stored))) = users::password_hash(&state, &user.name).await? {
        // Guesses of the current password (a session left open) are throttled like sign-ins.
        if let Err(wait) = state
            .sign_in
            .attempt(&format!("password:{}", user.name), None)
        {
            let mut response = account_page(
                &state,
                &viewer,
                None,
                None,
                Some(format!(
                    "Too many wrong current passwords: try again in {} seconds.",
                    (wait.as_secs_f64().ceil() as u64).max(1)
                )),
            )
            .await?;
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            return Ok(response);
        }
        if !password::verify(form.current, stored).await? {
            return account_page(
                &state,
                &viewer,
                None,
                None,
                Some("The current password is wrong.".into()),
            )
            .await;
        }
        state
            .sign_in
            .succeeded(&format!("password:{}", user.name), None);
    }
    let keep = session::cookie(&headers, SESSION_COOKIE);
    let ended = match users::set_password(&state, &user.name, form.new, keep).await {
        Ok(ended) => ended,
        Err(e @ service::Error::Invalid { .. }) => {
            return account_page(&state, &viewer, None, None, Some(e.to_string())).await
        }
        Err(e) => return Err(AppError::from(e).into()),
    };
    account_page(
        &state,
        &viewer,
        None,
        Some(format!(
            "Password changed. Your other sessions ({}) were signed out and your API tokens ({}) revoked: create new ones below.",
            ended.sessions, ended.tokens
        )),
        None,
    )
    .await
}

/// `GET /api/v1/me`: who the token or session is.
pub(crate) async fn me(caller: Caller) -> ApiJson<serde_json::Value> {
    let body = match &caller {
        Caller::Admin => serde_json::json!({"kind": "admin-token", "role": "admin"}),
        Caller::User(u) => serde_json::json!({"kind": "user", "name": u.name, "role": u.role}),
        Caller::Node { name, .. } => serde_json::json!({"kind": "node", "name": name}),
        Caller::Meter { name, .. } => serde_json::json!({"kind": "meter", "name": name}),
        Caller::Site { name, .. } => serde_json::json!({"kind": "site-write", "name": name}),
    };
    ApiJson(body)
}
