//! `POST /api/v1/sites` and `GET /api/v1/sites`.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::{header, HeaderMap};
use axum::response::Html;
use chrono::{DateTime, Utc};
use wattlas_protocol::{CarbonPoint, NewSite, SiteSettings, SiteView};

use crate::auth::Caller;
use crate::auth::{Nav, Viewer};
use crate::error::{AppError, PageError};
use crate::extract::{ApiJson, Path};
use crate::names::SiteName;
use crate::service::sites::{create_site, site_view};
use crate::state::AppState;

/// Creates a site (admin).
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(site): ApiJson<NewSite>,
) -> Result<(StatusCode, ApiJson<SiteView>), AppError> {
    caller.require_admin()?;
    Ok((
        StatusCode::CREATED,
        ApiJson(create_site(&state, &SiteName::parse("name", &site.name)?, &site).await?),
    ))
}

/// `PUT /api/v1/sites/{site}` (admin): fallback PUE, carbon intensity, price, currency.
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    ApiJson(settings): ApiJson<SiteSettings>,
) -> Result<ApiJson<SiteView>, AppError> {
    caller.require_admin()?;
    let row = crate::service::sites::update_settings(&state, &site, &settings).await?;
    Ok(ApiJson(site_view(row)))
}

/// Lists sites (people, any role).
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<ApiJson<Vec<SiteView>>, AppError> {
    caller.require_person()?;
    let sites = crate::service::sites::list(&state).await?;
    Ok(ApiJson(sites.into_iter().map(site_view).collect()))
}

/// Parses a carbon-intensity CSV (`time,g_per_kwh`, RFC 3339 times; a header line is optional),
/// naming the line and field of the first fault.
pub(crate) fn parse_carbon_csv(text: &str) -> Result<Vec<CarbonPoint>, AppError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with("time")) {
            continue;
        }
        let (time, g) = line.split_once(',').ok_or_else(|| {
            AppError::bad_request(format!("line {line_no}: expected time,g_per_kwh"))
        })?;
        let time = DateTime::parse_from_rfc3339(time.trim())
            .map_err(|_| {
                AppError::bad_request(format!(
                    "line {line_no}, time: '{}' is not an RFC 3339 time",
                    time.trim()
                ))
            })?
            .with_timezone(&Utc);
        let g_per_kwh = g.trim().parse::<f64>().map_err(|_| {
            AppError::bad_request(format!(
                "line {line_no}, g_per_kwh: '{}' is not a number",
                g.trim()
            ))
        })?;
        out.push(CarbonPoint { time, g_per_kwh });
    }
    Ok(out)
}

/// `POST /api/v1/sites/{site}/carbon` (admin): the hourly carbon-intensity series, as JSON
/// `[{"time","g_per_kwh"}]` or CSV (`Content-Type: text/csv`, `time,g_per_kwh`); stored whole or not
/// at all.
pub(crate) async fn carbon_ingest(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<ApiJson<serde_json::Value>, AppError> {
    caller.require_admin()?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or("");
    let points = if content_type.starts_with("text/csv") {
        let text = std::str::from_utf8(&body)
            .map_err(|_| AppError::bad_request("body: CSV must be UTF-8"))?;
        parse_carbon_csv(text)?
    } else if content_type.starts_with("application/json") {
        serde_json::from_slice::<Vec<CarbonPoint>>(&body)
            .map_err(|e| AppError::bad_request(format!("body: {e}")))?
    } else {
        return Err(AppError::Client(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected content-type application/json or text/csv".into(),
        ));
    };
    let stored = crate::service::sites::store_carbon(&state, &site, &points).await?;
    Ok(ApiJson(
        serde_json::json!({ "points": points.len(), "stored": stored }),
    ))
}

/// `/sites`.
#[derive(Template)]
#[template(path = "sites/list.html")]
pub(crate) struct ListPage {
    /// Header.
    pub nav: Nav,
    /// Sites by name.
    pub sites: Vec<crate::service::sites::SiteRow>,
}

/// `GET /sites`: the sites, each with a link to its PUE page.
pub(crate) async fn list_page(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Html<String>, PageError> {
    let sites = crate::service::sites::list(&state).await?;
    let page = ListPage {
        nav: viewer.nav(),
        sites,
    };
    Ok(Html(page.render().map_err(AppError::from)?))
}

/// `POST /api/v1/sites/{site}/write-token` (admin): a new write token for the site's Prometheus remote
/// write, shown in this answer only; the old one stops working (at once on this server, within 5 s on
/// others).
pub(crate) async fn write_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
) -> Result<(StatusCode, ApiJson<serde_json::Value>), AppError> {
    caller.require_admin()?;
    let token = crate::service::sites::rotate_write_token(&state, &site).await?;
    // The old token stops here at once (on other servers within auth::WRITER_TOKEN_TTL).
    state.writer_tokens.clear();
    Ok((
        StatusCode::CREATED,
        ApiJson(serde_json::json!({"site": site, "token": token})),
    ))
}
