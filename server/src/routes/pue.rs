//! A site's PUE: `GET /api/v1/sites/{site}/pue/{variation,hourly,daily,advice}` and the page
//! `/sites/{site}/pue` (Figure 4, Figure 5, Table 1, an hour x month heat map, meters, when to run).

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use wattlas_protocol::{HourlyPue, MeterView};

use crate::analytics::pue::{self, DayPue, HourPue, WhenToRun, YearVariation};
use crate::auth::session::{Nav, Viewer};
use crate::auth::Caller;
use crate::charts;
use crate::db;
use crate::error::{AppError, PageError};
use crate::extract::{Path, Query};
use crate::state::AppState;

/// A site and its zone.
pub struct SiteTz {
    /// The site.
    pub site: db::sites::Site,
    /// Its zone.
    pub tz: Tz,
}

/// The site by name, or 404.
pub async fn site_tz(state: &AppState, name: &str) -> Result<SiteTz, AppError> {
    let site = db::sites::by_name(&state.db, name)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no site '{name}'")))?;
    let tz: Tz = site
        .timezone
        .parse()
        .map_err(|_| AppError::Internal(format!("site {} has a bad zone", site.name)))?;
    Ok(SiteTz { site, tz })
}

/// An instant on a local hour boundary, so hourly buckets are local hours even with half-hour offsets.
fn local_origin(tz: Tz) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| tz.from_local_datetime(&t).earliest())
        .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.with_timezone(&Utc))
}

fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .and_then(|t| tz.from_local_datetime(&t).earliest())
        .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.with_timezone(&Utc))
}

fn year_bounds(tz: Tz, year: i32) -> Result<(DateTime<Utc>, DateTime<Utc>), AppError> {
    let first = NaiveDate::from_ymd_opt(year, 1, 1)
        .ok_or_else(|| AppError::bad_request(format!("year: {year} is not a year")))?;
    let next = NaiveDate::from_ymd_opt(year + 1, 1, 1)
        .ok_or_else(|| AppError::bad_request(format!("year: {year} is not a year")))?;
    Ok((local_midnight(tz, first), local_midnight(tz, next)))
}

/// Hourly PUE of a site over `[from, to)` in local hours.
pub async fn hours(
    state: &AppState,
    s: &SiteTz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<db::facility::Hour>, AppError> {
    let origin = local_origin(s.tz);
    let key = (
        s.site.id,
        from.timestamp(),
        to.timestamp(),
        origin.timestamp(),
    );
    if let Some(hours) = state.pue_cache.get(key) {
        return Ok(hours.to_vec());
    }
    let version = state.pue_cache.version(s.site.id);
    let hours = db::facility::hourly(&state.db, s.site.id, from, to, origin).await?;
    state
        .pue_cache
        .put(key, version, std::sync::Arc::new(hours.clone()));
    Ok(hours)
}

fn as_hour_pue(hours: &[db::facility::Hour]) -> Vec<HourPue> {
    hours
        .iter()
        .map(|h| HourPue {
            start: h.hour,
            pue: h.mean_pue,
        })
        .collect()
}

/// `?year=`.
#[derive(Debug, Deserialize)]
pub struct YearQuery {
    /// Year (default: the current one in the site's zone).
    pub year: Option<i32>,
}

/// Table 1 as served: the site, the year and the variation.
#[derive(Debug, Serialize)]
pub struct VariationView {
    /// Site.
    pub site: String,
    /// Year.
    pub year: i32,
    /// Table 1.
    #[serde(flatten)]
    pub variation: YearVariation,
}

async fn variation_of(
    state: &AppState,
    site: &str,
    year: Option<i32>,
) -> Result<VariationView, AppError> {
    let s = site_tz(state, site).await?;
    let year = year.unwrap_or_else(|| Utc::now().with_timezone(&s.tz).year());
    let (from, to) = year_bounds(s.tz, year)?;
    let hourly = hours(state, &s, from, to).await?;
    Ok(VariationView {
        site: s.site.name,
        year,
        variation: pue::variation(&as_hour_pue(&hourly), s.tz, year),
    })
}

/// Table 1 as CSV: a row per month and one for the year.
pub fn variation_csv(v: &VariationView) -> String {
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

/// A CSV cell, quoted where needed and defused against spreadsheet formula injection.
pub fn csv_cell(s: &str) -> String {
    // Spreadsheets skip leading blanks before reading a formula: `  =cmd` is one too.
    let defused = if s.starts_with(['\t', '\r'])
        || s.trim_start_matches([' ', '\t', '\r', '\n', '\u{a0}'])
            .starts_with(['=', '+', '-', '@'])
    {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

/// `GET /api/v1/sites/{site}/pue/variation?year=Y` (JSON, or CSV with `Accept: text/csv`).
pub async fn variation(
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
        axum::Json(v).into_response()
    })
}

/// `GET /api/v1/sites/{site}/pue/variation.csv?year=Y`.
pub async fn variation_csv_route(
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
pub struct RangeQuery {
    /// Start (default: 7 days before `to`).
    pub from: Option<DateTime<Utc>>,
    /// End (default: now).
    pub to: Option<DateTime<Utc>>,
}

impl RangeQuery {
    /// The window asked for: the last 7 days by default, at most 366 days.
    pub fn window(&self, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), AppError> {
        // Times chrono can hold but not subtract (year -262143) made this a panic: plausible years only.
        for (field, t) in [("from", self.from), ("to", self.to)] {
            if let Some(t) = t {
                if !(1970..=2200).contains(&t.year()) {
                    return Err(AppError::bad_request(format!(
                        "{field}: {} is outside the years 1970 to 2200",
                        t.to_rfc3339()
                    )));
                }
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
pub async fn hourly(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<axum::Json<Vec<HourlyPue>>, AppError> {
    caller.require_person()?;
    let s = site_tz(&state, &site).await?;
    let (from, to) = q.window(Utc::now())?;
    let hourly = hours(&state, &s, from, to).await?;
    Ok(axum::Json(
        hourly
            .into_iter()
            .map(|h| HourlyPue {
                hour: h.hour,
                local_hour: h.hour.with_timezone(&s.tz).to_rfc3339(),
                pue: h.mean_pue,
                weighted_pue: h.weighted_pue,
                readings: h.readings.max(0) as u64,
            })
            .collect(),
    ))
}

/// `GET /api/v1/sites/{site}/pue/daily?year=Y`: each local day's mean, min, max and variation.
pub async fn daily(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    Query(q): Query<YearQuery>,
) -> Result<axum::Json<Vec<DayPue>>, AppError> {
    caller.require_person()?;
    let s = site_tz(&state, &site).await?;
    let year = q
        .year
        .unwrap_or_else(|| Utc::now().with_timezone(&s.tz).year());
    let (from, to) = year_bounds(s.tz, year)?;
    let hourly = hours(&state, &s, from, to).await?;
    Ok(axum::Json(pue::days(&as_hour_pue(&hourly), s.tz)))
}

/// `?hours=&it_kwh=`.
#[derive(Debug, Deserialize)]
pub struct AdviceQuery {
    /// Job length in hours (default 1).
    pub hours: Option<usize>,
    /// The job's IT energy, to express savings in kWh.
    pub it_kwh: Option<f64>,
}

/// When to run, with the saving versus now.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    /// The expected PUE now and at the best hour and month.
    #[serde(flatten)]
    pub when: WhenToRun,
    /// Saving of the best hour this month versus now, % of facility energy.
    pub best_hour_saving_pct: Option<f64>,
    /// Same, kWh (given `it_kwh`).
    pub best_hour_saving_kwh: Option<f64>,
    /// Saving of the best month versus now, %.
    pub best_month_saving_pct: Option<f64>,
    /// Same, kWh (given `it_kwh`).
    pub best_month_saving_kwh: Option<f64>,
}

/// The month x hour profile of the last 365 days.
pub async fn profile(state: &AppState, s: &SiteTz) -> Result<[[Option<f64>; 24]; 12], AppError> {
    // To the end of this hour, so that the window (and the cached result) holds for the hour.
    let next_hour = (Utc::now().timestamp() / 3600 + 1) * 3600;
    let to = DateTime::from_timestamp(next_hour, 0).unwrap_or_else(Utc::now);
    let hourly = hours(state, s, to - Duration::days(365), to).await?;
    Ok(pue::month_hour_profile(&as_hour_pue(&hourly), s.tz))
}

/// Advice for a job of `length_h` hours and `it_kwh` of IT energy, compared with starting now.
pub fn advice(
    profile: &[[Option<f64>; 24]; 12],
    now: DateTime<Tz>,
    length_h: usize,
    it_kwh: Option<f64>,
) -> Advice {
    let when = pue::when_to_run(
        profile,
        now.month0() as usize,
        now.hour() as usize,
        length_h,
    );
    let pct = |best: Option<f64>| match (when.now_pue, best) {
        (Some(n), Some(b)) if n > 0.0 => Some((n - b) / n * 100.0),
        _ => None,
    };
    let kwh = |best: Option<f64>| match (when.now_pue, best, it_kwh) {
        (Some(n), Some(b), Some(e)) => Some(e * (n - b)),
        _ => None,
    };
    let hour_pue = when.best_hour.map(|h| h.1);
    let month_pue = when.best_month.map(|m| m.2);
    Advice {
        best_hour_saving_pct: pct(hour_pue),
        best_hour_saving_kwh: kwh(hour_pue),
        best_month_saving_pct: pct(month_pue),
        best_month_saving_kwh: kwh(month_pue),
        when,
    }
}

/// `GET /api/v1/sites/{site}/pue/advice?hours=N[&it_kwh=E]`.
pub async fn advice_route(
    State(state): State<AppState>,
    caller: Caller,
    Path(site): Path<String>,
    Query(q): Query<AdviceQuery>,
) -> Result<axum::Json<Advice>, AppError> {
    caller.require_person()?;
    let s = site_tz(&state, &site).await?;
    let length = q.hours.unwrap_or(1);
    if !(1..=24 * 31).contains(&length) {
        return Err(AppError::bad_request("hours: must be 1 to 744"));
    }
    let p = profile(&state, &s).await?;
    Ok(axum::Json(advice(
        &p,
        Utc::now().with_timezone(&s.tz),
        length,
        q.it_kwh,
    )))
}

/// `?year=&week=`.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    /// Year of Figure 4 and Table 1.
    pub year: Option<i32>,
    /// First day of the week of Figure 5 (default: the last full week with data).
    pub week: Option<NaiveDate>,
}

/// One row of the "when to run" table.
pub struct AdviceRow {
    /// Job length, h.
    pub hours: usize,
    /// The advice.
    pub advice: Advice,
}

/// `/sites/{site}/pue`.
#[derive(Template)]
#[template(path = "pue/show.html")]
pub struct PuePage {
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
}

/// Month names for tables.
pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `GET /sites/{site}/pue`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(site): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Html<String>, PageError> {
    let s = site_tz(&state, &site).await?;
    let now = Utc::now().with_timezone(&s.tz);
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
    .map_err(|e| AppError::Internal(e.to_string()))?;

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
    .map_err(|e| AppError::Internal(e.to_string()))?;

    let profile = pue::month_hour_profile(&hour_pue, s.tz);
    let heatmap_svg = charts::pue::heatmap(
        &format!("Mean PUE by month and hour of day, {year}"),
        &profile,
    )
    .map_err(|e| AppError::Internal(e.to_string()))?;
    let last_year = self::profile(&state, &s).await?;
    let advice = [1, 4, 12, 24, 24 * 7]
        .into_iter()
        .map(|h| AdviceRow {
            hours: h,
            advice: advice(&last_year, now, h, None),
        })
        .collect();
    // Meters are facility detail: staff and admins see them.
    let meters = if viewer.is_staff() {
        super::facility::meter_views(&state, Some(s.site.id)).await?
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
    };
    Ok(Html(
        page.render()
            .map_err(|e| AppError::Internal(e.to_string()))?,
    ))
}

#[cfg(test)]
mod csv_tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_defused_behind_blanks_too() {
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("  =HYPERLINK(1)"), "'  =HYPERLINK(1)");
        assert_eq!(csv_cell("\n@SUM(A1)"), "\"'\n@SUM(A1)\"");
        assert_eq!(csv_cell("a - b"), "a - b");
    }
}
