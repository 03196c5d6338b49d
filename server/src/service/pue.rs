//! A site's hourly PUE as the pages and charging read it: the site with its zone, local hour buckets,
//! Table 1's variation, the month x hour profile and when to run.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{Error, Result};
use crate::analytics::pue::{self, HourPue, WhenToRun, YearVariation};
use crate::db;
use crate::service::Context;

/// A site and its zone.
pub(crate) struct SiteTz {
    /// The site.
    pub site: db::sites::Site,
    /// Its zone.
    pub tz: Tz,
}

/// The site by name, or 404.
pub(crate) async fn site_tz(cx: &Context, name: &str) -> Result<SiteTz> {
    let site = db::sites::by_name(&cx.db, name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no site '{name}'")))?;
    SiteTz::of(site)
}

impl SiteTz {
    /// A site read already, with its zone parsed.
    pub(crate) fn of(site: db::sites::Site) -> Result<SiteTz> {
        let tz: Tz = site
            .timezone
            .parse()
            .map_err(|_| Error::internal(format!("site {} has a bad zone", site.name)))?;
        Ok(SiteTz { site, tz })
    }
}

/// An instant on a local hour boundary, so hourly buckets are local hours even with half-hour offsets.
pub(crate) fn local_origin(tz: Tz) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| tz.from_local_datetime(&t).earliest())
        .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.with_timezone(&Utc))
}

pub(crate) fn local_midnight(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0)
        .and_then(|t| tz.from_local_datetime(&t).earliest())
        .map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.with_timezone(&Utc))
}

pub(crate) fn year_bounds(tz: Tz, year: i32) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let first = NaiveDate::from_ymd_opt(year, 1, 1)
        .ok_or_else(|| Error::invalid("year", format!("{year} is not a year")))?;
    let next = NaiveDate::from_ymd_opt(year + 1, 1, 1)
        .ok_or_else(|| Error::invalid("year", format!("{year} is not a year")))?;
    Ok((local_midnight(tz, first), local_midnight(tz, next)))
}

/// Hourly PUE of a site over `[from, to)` in local hours.
pub(crate) async fn hours(
    cx: &Context,
    s: &SiteTz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<db::facility::Hour>> {
    let origin = local_origin(s.tz);
    let key = (
        s.site.id,
        from.timestamp(),
        to.timestamp(),
        origin.timestamp(),
    );
    if let Some(hours) = cx.pue_cache.get(key) {
        return Ok(hours.to_vec());
    }
    let version = cx.pue_cache.version(s.site.id);
    let hours = db::facility::hourly(cx.read_db(), s.site.id, from, to, origin).await?;
    cx.pue_cache
        .put(key, version, std::sync::Arc::new(hours.clone()));
    Ok(hours)
}

pub(crate) fn as_hour_pue(hours: &[db::facility::Hour]) -> Vec<HourPue> {
    hours
        .iter()
        .map(|h| HourPue {
            start: h.hour,
            pue: h.mean_pue,
        })
        .collect()
}

/// Table 1 as served: the site, the year and the variation.
#[derive(Debug, Serialize)]
pub(crate) struct VariationView {
    /// Site.
    pub site: String,
    /// Year.
    pub year: i32,
    /// Table 1.
    #[serde(flatten)]
    pub variation: YearVariation,
}

pub(crate) async fn variation_of(
    cx: &Context,
    site: &str,
    year: Option<i32>,
) -> Result<VariationView> {
    let s = site_tz(cx, site).await?;
    let year = year.unwrap_or_else(|| Utc::now().with_timezone(&s.tz).year());
    let (from, to) = year_bounds(s.tz, year)?;
    let hourly = hours(cx, &s, from, to).await?;
    Ok(VariationView {
        site: s.site.name,
        year,
        variation: pue::variation(&as_hour_pue(&hourly), s.tz, year),
    })
}

/// When to run, with the saving versus now.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Advice {
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
pub(crate) async fn profile(cx: &Context, s: &SiteTz) -> Result<[[Option<f64>; 24]; 12]> {
    // To the end of this hour, so that the window (and the cached result) holds for the hour.
    let next_hour = (Utc::now().timestamp() / 3600 + 1) * 3600;
    let to = DateTime::from_timestamp(next_hour, 0).unwrap_or_else(Utc::now);
    let hourly = hours(cx, s, to - Duration::days(365), to).await?;
    Ok(pue::month_hour_profile(&as_hour_pue(&hourly), s.tz))
}

/// Advice for a job of `length_h` hours and `it_kwh` of IT energy, compared with starting now.
pub(crate) fn advice(
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

/// Month names for tables.
pub(crate) const MONTHS: [&str; 12] = [
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
