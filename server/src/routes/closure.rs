//! Where the energy went: `GET /api/v1/sites/{site}/energy` and the page `/sites/{site}/energy`
//! (`service::closure`); the idle allocated GPUs, `GET /api/v1/waste` (staff).

use askama::Template;
use axum::extract::State;
use axum::response::Html;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::Deserialize;

use crate::analytics::closure::By;
use crate::auth::Caller;
use crate::auth::{Nav, Viewer};
use crate::charts::inline::{self, Stack, PALETTE};
use crate::error::{AppError, PageError};
use crate::extract::{ApiJson, Path, Query};
use crate::service::closure::{closure, waste, Closure, Waste};
use crate::service::jobs::timing::format_energy;
use crate::service::Error;
use crate::state::AppState;

/// `GET /api/v1/sites/{site}/energy?by=day|month&from=YYYY-MM-DD&to=YYYY-MM-DD`.
pub(crate) async fn api(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<ApiJson<Closure>, AppError> {
    caller.require_person()?;
    let (by, from, to) = parse_query(&q)?;
    Ok(ApiJson(closure(&state, &site, by, from, to).await?))
}

/// `?from=&to=` as instants.
#[derive(Debug, Deserialize)]
pub(crate) struct WasteQuery {
    /// Jobs started at or after (default: the first of this month, UTC).
    pub from: Option<DateTime<Utc>>,
    /// Jobs started before (default: now).
    pub to: Option<DateTime<Utc>>,
}

/// `GET /api/v1/waste?from=&to=`: idle allocated GPUs by user and by job (staff).
pub(crate) async fn waste_api(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<WasteQuery>,
) -> Result<ApiJson<Waste>, AppError> {
    caller.require_staff()?;
    let (from, to) = q.window(Utc::now())?;
    Ok(ApiJson(waste(&state, from, to, 50).await?))
}

impl WasteQuery {
    /// `[from, to)`: this UTC month to now by default; from before to.
    pub(crate) fn window(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), AppError> {
        for (field, t) in [("from", self.from), ("to", self.to)] {
            if let Some(t) = t {
                crate::service::sites::check_year(field, t.year(), t.to_rfc3339())?;
            }
        }
        let to = self.to.unwrap_or(now);
        let from = self.from.unwrap_or_else(|| month_start(now));
        if from >= to {
            return Err(AppError::bad_request("from: must be before to"));
        }
        Ok((from, to))
    }
}

/// The first instant of `t`'s UTC month.
pub(crate) fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(t)
}

/// The query as typed: checked here, so that errors name their field and the page can show its own
/// above the form.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    /// `day` or `month`.
    pub by: Option<String>,
    /// First day.
    pub from: Option<String>,
    /// Last day.
    pub to: Option<String>,
}

/// One table row, formatted.
pub(crate) struct RowView {
    /// Period.
    pub period: String,
    /// Cells, in the table's column order.
    pub cells: Vec<String>,
    /// Meters' coverage, %.
    pub coverage: String,
}

/// `/sites/{site}/energy`.
#[derive(Template)]
#[template(path = "sites/energy.html")]
pub(crate) struct EnergyPage {
    /// Header.
    pub nav: Nav,
    /// Site.
    pub site: String,
    /// Zone.
    pub timezone: String,
    /// The form's values as typed.
    pub by: String,
    /// .
    pub from: String,
    /// .
    pub to: String,
    /// The query's error, shown above the form.
    pub error: Option<String>,
    /// What is not in the figures yet.
    pub partial: Vec<String>,
    /// Inline SVG.
    pub chart: String,
    /// Rows.
    pub rows: Vec<RowView>,
    /// Meters at the site.
    pub meters: usize,
    /// `YYYY-MM-DD HH:MM zone`.
    pub as_of: String,
    /// The range shown, as a query string (`by=day&from=...&to=...`).
    pub range: String,
    /// The figures' relative bounds.
    pub bounds: crate::analytics::uncertainty::SiteBounds,
}

/// The names of the five parts (`Row::parts`), in stacking order.
pub(crate) const PARTS: [&str; 5] = [
    "Jobs, GPUs",
    "Jobs, CPU and DRAM",
    "Idle GPUs",
    "Idle CPU and DRAM",
    "Not measured by collectors",
];

pub(crate) fn parse_query(
    q: &PageQuery,
) -> Result<(By, Option<NaiveDate>, Option<NaiveDate>), Error> {
    let by = match q.by.as_deref().unwrap_or("day") {
        "day" | "" => By::Day,
        "month" => By::Month,
        other => {
            return Err(Error::invalid(
                "by",
                format!("{other} is neither day nor month"),
            ))
        }
    };
    let date = |field: &str, v: &Option<String>| -> Result<Option<NaiveDate>, Error> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| Error::invalid(field, format!("{s} is not a date (YYYY-MM-DD)"))),
        }
    };
    Ok((by, date("from", &q.from)?, date("to", &q.to)?))
}

/// `GET /sites/{site}/energy`: the chart and the table; a bad query is said above the form, which
/// keeps what was typed, and the default range is shown under it.
pub(crate) async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(site): Path<String>,
    crate::extract::PageQuery(q): crate::extract::PageQuery<PageQuery>,
) -> Result<(axum::http::StatusCode, Html<String>), PageError> {
    let (c, error) = match parse_query(&q) {
        Ok((by, from, to)) => match closure(&state, &site, by, from, to).await {
            Ok(c) => (c, None),
            Err(e @ Error::Invalid { .. }) => (
                closure(&state, &site, by, None, None).await?,
                Some(e.to_string()),
            ),
            Err(e) => return Err(AppError::from(e).into()),
        },
        Err(e) => (
            closure(&state, &site, By::Day, None, None).await?,
            Some(e.to_string()),
        ),
    };
    let labels: Vec<String> = c.rows.iter().map(|r| r.period.clone()).collect();
    let stacks: Vec<Stack<'_>> = PARTS
        .iter()
        .enumerate()
        .map(|(k, name)| Stack {
            name,
            colour: PALETTE[k],
            values: c.rows.iter().map(|r| r.parts()[k]).collect(),
        })
        .collect();
    let measured: Vec<Option<f64>> = c.rows.iter().map(|r| r.measured_it_kwh).collect();
    let chart = inline::stacked_bars(
        &format!(
            "Where the IT energy of {} went, by {}",
            c.site,
            match c.by {
                By::Day => "day",
                By::Month => "month",
            }
        ),
        "kWh",
        &labels,
        &stacks,
        Some(("IT energy the meters measured", &measured)),
    );
    let dash = || "–".to_owned();
    let rows = c
        .rows
        .iter()
        .rev()
        .map(|r| {
            let mut cells = vec![r.measured_it_kwh.map_or_else(dash, format_energy)];
            cells.extend(r.parts()[..4].iter().map(|v| format_energy(*v)));
            cells.push(match (r.unmeasured_kwh, r.unmeasured_kwh_width) {
                (Some(u), Some(w)) => format!("{} ± {}", format_energy(u), format_energy(w)),
                (Some(u), None) => format_energy(u),
                _ => dash(),
            });
            cells.push(format_energy(r.gpu_kwh));
            cells.push(format_energy(r.cpu_dram_kwh));
            RowView {
                period: r.period.clone(),
                cells,
                coverage: format!("{:.0} %", r.meter_coverage * 100.0),
            }
        })
        .collect();
    let tz: chrono_tz::Tz = c.timezone.parse().unwrap_or(chrono_tz::UTC);
    let page = EnergyPage {
        nav: viewer.nav(),
        range: format!(
            "by={}&from={}&to={}",
            match c.by {
                By::Day => "day",
                By::Month => "month",
            },
            c.from,
            c.to
        ),
        by: q.by.unwrap_or_else(|| "day".to_owned()),
        from: q.from.unwrap_or_else(|| c.from.to_string()),
        to: q.to.unwrap_or_else(|| c.to.to_string()),
        site: c.site,
        as_of: format!(
            "{} {}",
            c.as_of.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
            c.timezone
        ),
        timezone: c.timezone,
        error,
        partial: c.partial,
        chart,
        rows,
        meters: c.meters,
        bounds: c.bounds,
    };
    // A bad query answers 400 as the API does, with the page saying why above the form.
    let status = if page.error.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, Html(page.render().map_err(AppError::from)?)))
}
