//! A site's PUE: `GET /api/v1/sites/{site}/pue/{variation,hourly,daily,advice}` and the page
//! `/sites/{site}/pue` (Figure 4, Figure 5, Table 1, an hour x month heat map, meters, when to run).

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Deserialize;
use wattlas_protocol::{HourlyPue, MeterView};

use crate::analytics::pue::{self, DayPue, YearVariation};
use crate::auth::Caller;
use crate::auth::{Nav, Viewer};
use crate::charts;
use crate::error::{AppError, PageError};
use crate::extract::{ApiJson, Path, Query};
use crate::service::csv_cell;
use crate::service::pue::{
    advice, as_hour_pue, hours, local_midnight, profile, site_tz, variation_of, year_bounds,
    Advice, VariationView, MONTHS,
};
use crate::state::AppState;

/// `?year=`.
#[derive(Debug, Deserialize)]
pub(crate) struct YearQuery {
    /// Year (default: the current one in the site's zone).
    pub year: Option<i32>,
}

/// Table 1 as CSV: a row per month and one for the year.
pub(crate) fn variation_csv(v: &VariationView) -> String {
    let fmt = |x: Option<f64>| x.map(|x| format!("{x:.4}")).unwrap_or_default();
    let mut out =
        String::from("site,year,month,days,days_excluded,avg_daily_variation_pct,mean_pue\n");
    let site = csv_cell(&v.site);
    for m in &v.variation.months {
        out.push_str(&format!(
            "{site},{},{},{},{},{},{}\n",
            v.year,
            m.month,
            m.days,
            m.days_excluded,
            fmt(m.avg_daily_variation_pct),
            fmt(m.mean_pue)
        ));
    }
    out.push_str(&format!(
        "{site},{},annual,{},{},{},\n",
        v.year,
        v.variation.days,
        v.variation.days_excluded,
        fmt(v.variation.annual_variation_pct)
    ));
    out
}

/// `GET /api/v1/sites/{site}/pue/variation?year=Y` (JSON, or CSV with `Accept: text/csv`).
pub(crate) async fn variation(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    Query(q): Query<YearQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    caller.require_person()?;
    let v = variation_of(&state, &site, q.year).await?;
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    Ok(if wants_csv {
        csv_response(&v)
    } else {
        ApiJson(v).into_response()
    })
}

/// `GET /api/v1/sites/{site}/pue/variation.csv?year=Y`.
pub(crate) async fn variation_csv_route(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    Query(q): Query<YearQuery>,
) -> Result<Response, AppError> {
    caller.require_person()?;
    Ok(csv_response(&variation_of(&state, &site, q.year).await?))
}

fn csv_response(v: &VariationView) -> Response {
    let name = format!("attachment; filename=\"pue-variation-{}.csv\"", v.year);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        variation_csv(v),
    )
        .into_response()
}

/// `?from=&to=`.
#[derive(Debug, Deserialize)]
pub(crate) struct RangeQuery {
    /// Start (default: 7 days before `to`).
    pub from: Option<DateTime<Utc>>,
    /// End (default: now).
    pub to: Option<DateTime<Utc>>,
}

impl RangeQuery {
    /// The window asked for: the last 7 days by default, at most 366 days.
    pub(crate) fn window(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), AppError> {
        // Times chrono can hold but not subtract (year -262143) made this a panic: plausible years only.
        for (field, t) in [("from", self.from), ("to", self.to)] {
            if let Some(t) = t {
                crate::service::sites::check_year(field, t.year(), t.to_rfc3339())?;
            }
        }
        let to = self.to.unwrap_or(now);
        let from = self.from.unwrap_or(to - Duration::days(7));
        if from >= to {
            return Err(AppError::bad_request("from: must be before to"));
        }
        if to - from > Duration::days(366) {
            return Err(AppError::bad_request("to: at most 366 days after from"));
        }
        Ok((from, to))
    }
}

/// `GET /api/v1/sites/{site}/pue/hourly?from=&to=` (at most 366 days).
pub(crate) async fn hourly(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<ApiJson<Vec<HourlyPue>>, AppError> {
    caller.require_person()?;
    let s = site_tz(&state, &site).await?;
    let (from, to) = q.window(Utc::now())?;
    let hourly = hours(&state, &s, from, to).await?;
    Ok(ApiJson(
        hourly
            .into_iter()
            .map(|h| {
                let (pue_low, pue_high) = crate::analytics::uncertainty::pue_interval(h.mean_pue);
                HourlyPue {
                    hour: h.hour,
                    local_hour: h.hour.with_timezone(&s.tz).to_rfc3339(),
                    pue: h.mean_pue,
                    weighted_pue: h.weighted_pue,
                    pue_low,
                    pue_high,
                    readings: h.readings.max(0) as u64,
                }
            })
            .collect(),
    ))
}

/// `GET /api/v1/sites/{site}/pue/daily?year=Y`: each local day's mean, min, max and variation.
pub(crate) async fn daily(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    Query(q): Query<YearQuery>,
) -> Result<ApiJson<Vec<DayPue>>, AppError> {
    caller.require_person()?;
    let s = site_tz(&state, &site).await?;
    let year = q
        .year
        .unwrap_or_else(|| Utc::now().with_timezone(&s.tz).year());
    let (from, to) = year_bounds(s.tz, year)?;
    let hourly = hours(&state, &s, from, to).await?;
    Ok(ApiJson(pue::days(&as_hour_pue(&hourly), s.tz)))
}

/// `GET /api/v1/sites/{site}/pue/recent`: yesterday's and today's PUE (local days, the mean of the
/// measured hours, with how many) and each local hour's value on both days, as the pages show them.
pub(crate) async fn recent(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
) -> Result<ApiJson<crate::service::pue::RecentPue>, AppError> {
    caller.require_person()?;
    let s = site_tz(&state, &site).await?;
    Ok(ApiJson(
        crate::service::pue::recent(&state, &s, Utc::now()).await?,
    ))
}

/// `?hours=&it_kwh=`.
#[derive(Debug, Deserialize)]
pub(crate) struct AdviceQuery {
    /// Job length in hours (default 1).
    pub hours: Option<usize>,
    /// The job's IT energy, to express savings in kWh.
    pub it_kwh: Option<f64>,
}

/// `GET /api/v1/sites/{site}/pue/advice?hours=N[&it_kwh=E]`.
pub(crate) async fn advice_route(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    Query(q): Query<AdviceQuery>,
) -> Result<ApiJson<Advice>, AppError> {
    caller.require_person()?;
    let s = site_tz(&state, &site).await?;
    let length = q.hours.unwrap_or(1);
    if !(1..=24 * 31).contains(&length) {
        return Err(AppError::bad_request("hours: must be 1 to 744"));
    }
    let p = profile(&state, &s).await?;
    Ok(ApiJson(advice(
        &p,
        Utc::now().with_timezone(&s.tz),
        length,
        q.it_kwh,
    )))
}

/// `?year=&week=`.
#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    /// Year of Figure 4 and Table 1.
    pub year: Option<i32>,
    /// First day of the week of Figure 5 (default: the last full week with data).
    pub week: Option<NaiveDate>,
}

/// One row of the "when to run" table.
pub(crate) struct AdviceRow {
    /// Job length, h.
    pub hours: usize,
    /// The advice.
    pub advice: Advice,
}

/// `/sites/{site}/pue`.
#[derive(Template)]
#[template(path = "pue/show.html")]
pub(crate) struct PuePage {
    /// Header.
    pub nav: Nav,
    /// Site.
    pub site: String,
    /// Zone.
    pub timezone: String,
    /// Year shown.
    pub year: i32,
    /// Table 1.
    pub variation: YearVariation,
    /// Figure 4, SVG.
    pub daily_svg: String,
    /// Figure 5, SVG.
    pub week_svg: String,
    /// First day of the week shown.
    pub week: NaiveDate,
    /// Heat map, SVG.
    pub heatmap_svg: String,
    /// Meters.
    pub meters: Vec<MeterView>,
    /// When to run.
    pub advice: Vec<AdviceRow>,
    /// Month names.
    pub month_names: [&'static str; 12],
    /// Yesterday's and today's PUE, with each hour's value.
    pub recent: crate::service::pue::RecentPue,
}

/// `GET /sites/{site}/pue`.
pub(crate) async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(site): Path<String>,
    crate::extract::PageQuery(q): crate::extract::PageQuery<PageQuery>,
) -> Result<Html<String>, PageError> {
    let s = site_tz(&state, &site).await?;
    let recent = crate::service::pue::recent(&state, &s, Utc::now()).await?;
    let now = recent.as_of.with_timezone(&s.tz);
    let year = q.year.unwrap_or(now.year());
    let (from, to) = year_bounds(s.tz, year)?;
    let hourly = hours(&state, &s, from, to).await?;
    let hour_pue = as_hour_pue(&hourly);
    let days = pue::days(&hour_pue, s.tz);
    let variation = pue::variation(&hour_pue, s.tz, year);
    let daily_svg = charts::pue::daily(
        &format!("Daily mean PUE, {} {year}", s.site.name),
        &days,
        year,
    )
    .map_err(charts::ChartError::from)?;

    // Figure 5: the chosen week, or the last full week of the year's data.
    let week = match q.week {
        Some(w) => w,
        None => days
            .iter()
            .rev()
            .nth(7)
            .or(days.first())
            .map_or(now.date_naive() - Duration::days(7), |d| d.date),
    };
    let week_from = local_midnight(s.tz, week);
    let week_to = local_midnight(s.tz, week + Duration::days(7));
    let week_hours = hours(&state, &s, week_from, week_to).await?;
    let points: Vec<(DateTime<Utc>, f64)> =
        week_hours.iter().map(|h| (h.hour, h.mean_pue)).collect();
    let week_svg = charts::pue::week(
        &format!("Hourly PUE, week of {week}"),
        &points,
        week_from,
        s.tz,
    )
    .map_err(charts::ChartError::from)?;

    let profile = pue::month_hour_profile(&hour_pue, s.tz);
    let heatmap_svg = charts::pue::heatmap(
        &format!("Mean PUE by month and hour of day, {year}"),
        &profile,
    )
    .map_err(charts::ChartError::from)?;
    let last_year = crate::service::pue::profile(&state, &s).await?;
    let advice = [1, 4, 12, 24, 24 * 7]
        .into_iter()
        .map(|h| AdviceRow {
            hours: h,
            advice: advice(&last_year, now, h, None),
        })
        .collect();
    // Meters are facility detail: staff and admins see them.
    let meters = if viewer.is_staff() {
        crate::service::meters::meter_views(&state, Some(s.site.id)).await?
    } else {
        Vec::new()
    };
    let page = PuePage {
        nav: viewer.nav(),
        site: s.site.name,
        timezone: s.site.timezone,
        year,
        variation,
        daily_svg,
        week_svg,
        week,
        heatmap_svg,
        meters,
        advice,
        month_names: MONTHS,
        recent,
    };
    Ok(Html(page.render().map_err(AppError::from)?))
}
