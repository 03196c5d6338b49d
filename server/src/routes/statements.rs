//! Energy statements over HTTP: `GET /api/v1/statement` and `GET /statement` (signed in), with the
//! jobs list's filters or explicit job ids, in `format=pdf|md|tex|json|csv`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::Viewer;
use crate::auth::{Caller, JobScope};
use crate::error::{AppError, PageError};
use crate::extract::{PageQuery, Query};
use crate::service::jobs::list::{describe, ListQuery};
use crate::state::AppState;
use crate::statement::{self, Format};

/// What a statement adds to the jobs list's query.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct StatementQuery {
    /// Explicit job ids, comma-separated (e.g. all the jobs of a paper).
    pub jobs: Option<String>,
    /// pdf (default), md, tex, json or csv.
    pub format: Option<String>,
}

/// One statement at a time per person: a render of 10,000 jobs takes seconds and a core, so a second
/// request of the same person waits for the first (429 with Retry-After) instead of stacking renders.
struct Rendering<'a> {
    busy: &'a std::sync::Mutex<std::collections::HashSet<String>>,
    who: String,
}

impl<'a> Rendering<'a> {
    fn start(state: &'a AppState, who: &str) -> Result<Rendering<'a>, AppError> {
        let mut busy = state
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !busy.insert(who.to_owned()) {
            return Err(AppError::Client(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "a statement of yours is being made: wait for it, then ask again".into(),
            ));
        }
        Ok(Rendering {
            busy: &state.rendering,
            who: who.to_owned(),
        })
    }
}

impl Drop for Rendering<'_> {
    fn drop(&mut self) {
        self.busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.who);
    }
}

/// Where people reach this server, for the verify links printed on statements: the configured
/// public address, else the `Host` the request came to (as http).
pub(crate) fn base_url(state: &AppState, headers: &axum::http::HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Builds and renders a statement as `scope` may see it, for `who` (one at a time each; `None`: the
/// admin token, not held), issued with a verify link under `base`.
pub(crate) async fn statement_response(
    state: &AppState,
    who: Option<&str>,
    scope: &JobScope,
    q: &ListQuery,
    sq: &StatementQuery,
    base: &str,
) -> Result<Response, AppError> {
    let format = Format::parse(sq.format.as_deref().unwrap_or("pdf"))?;
    let _rendering = who.map(|w| Rendering::start(state, w)).transpose()?;
    let ids: Option<Vec<String>> = sq.jobs.as_deref().filter(|j| !j.is_empty()).map(|j| {
        j.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    let (q, left_out_running) = statement::finished_by_default(q, ids.is_some());
    let mut filter = q.filter(scope)?;
    filter.ids = ids.clone();
    let mut st = statement::gather(state, scope, filter, describe(&q, ids.as_deref())).await?;
    statement::say_selection(&mut st, &q, ids.as_deref(), left_out_running);
    // Issued with an id and a digest anyone can check (the CSV is the jobs' rows alone: nowhere to
    // print them).
    if format != Format::Csv {
        st = statement::verify::issue(state, st, who, base).await?;
    }
    // Typeset on a blocking thread: a long PDF would hold one of the runtime's threads (on a 2-core
    // machine, half of what answers every other request) for its whole second.
    let _slot = state
        .typesetting
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let (body, st) =
        tokio::task::spawn_blocking(move || statement::render(&st, format).map(|body| (body, st)))
            .await
            .map_err(|e| AppError::Internal(e.into()))??;
    let (mime, ext) = format.content();
    let name = statement::file_name(&st.scope, st.generated_at, ext);
    let disposition = if format == Format::Pdf {
        format!("inline; filename=\"{name}\"")
    } else {
        format!("attachment; filename=\"{name}\"")
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/v1/statement`.
pub(crate) async fn api(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    Query(q): Query<ListQuery>,
    Query(sq): Query<StatementQuery>,
) -> Result<Response, AppError> {
    // People take turns; the bootstrap admin token (an operator's scripts, the benchmark's load) is
    // not a person and is not held.
    let who = match &caller {
        crate::auth::Caller::User(u) => Some(u.name.clone()),
        _ => None,
    };
    let base = base_url(&state, &headers);
    statement_response(&state, who.as_deref(), &caller.job_scope()?, &q, &sq, &base).await
}

/// `GET /statement`: the same for a signed-in browser (links on the jobs list and job pages).
pub(crate) async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: axum::http::HeaderMap,
    PageQuery(q): PageQuery<ListQuery>,
    PageQuery(sq): PageQuery<StatementQuery>,
) -> Result<Response, PageError> {
    let base = base_url(&state, &headers);
    Ok(statement_response(
        &state,
        Some(&viewer.name),
        &viewer.job_scope(),
        &q,
        &sq,
        &base,
    )
    .await?)
}

/// Checks run anonymously recompute a statement: one at a time for everyone without an account.
const ANONYMOUS_CHECK: &str = "\u{0}anonymous statement check";

/// `?sha256=`: the digest a statement's link carries.
#[derive(Debug, Deserialize)]
pub(crate) struct VerifyQuery {
    /// Hex.
    pub sha256: Option<String>,
}

/// `/s/{id}`: a statement's check, for anyone holding it.
#[derive(askama::Template)]
#[template(path = "statements/verify.html")]
pub(crate) struct VerifyPage {
    /// Header (nobody signed in needed).
    pub nav: crate::auth::Nav,
    /// The check.
    pub v: statement::verify::Verification,
    /// The digest the link carried.
    pub given: String,
}

/// `GET /s/{id}?sha256=`: no sign-in. Authentic or refused, unchanged or what differs.
pub(crate) async fn verify_page(
    State(state): State<AppState>,
    crate::extract::Path(id): crate::extract::Path<String>,
    PageQuery(q): PageQuery<VerifyQuery>,
) -> Result<Response, PageError> {
    let _turn = Rendering::start(&state, ANONYMOUS_CHECK)?;
    let v = statement::verify::check(&state, &id, q.sha256.as_deref())
        .await
        .map_err(AppError::from)?;
    let status = if v.digest_matches == Some(false) {
        axum::http::StatusCode::CONFLICT
    } else {
        axum::http::StatusCode::OK
    };
    let page = VerifyPage {
        nav: crate::auth::Nav::default(),
        given: q.sha256.unwrap_or_default(),
        v,
    };
    Ok((status, crate::error::Page(page)).into_response())
}

/// `POST /api/v1/statements/verify`: a statement's JSON form, checked whole (no sign-in): 200 with the
/// check where its digest is the issued one, 400 naming `digest` where it was altered.
pub(crate) async fn verify_api(
    State(state): State<AppState>,
    crate::extract::ApiJson(body): crate::extract::ApiJson<serde_json::Value>,
) -> Result<crate::extract::ApiJson<statement::verify::Verification>, AppError> {
    let _turn = Rendering::start(&state, ANONYMOUS_CHECK)?;
    Ok(crate::extract::ApiJson(
        statement::verify::check_json(&state, &body).await?,
    ))
}
