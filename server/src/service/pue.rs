//! A site's hourly PUE as the pages and charging read it: the site with its zone, local hour buckets,
//! Table 1's variation, the month x hour profile and when to run.

use crate::analytics::uncertainty;
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
    let site = match db::sites::by_name(&cx.db, name).await {
        // The primary away (a failover): a site's settings from the replica, so that the pages and
        // APIs reading the rest from it keep answering.
        Err(e) if db::unreachable(&e) => match cx.reads.replica_while_primary_away() {
            Some(replica) => db::sites::by_name(replica, name).await?,
            None => return Err(e.into()),
        },
        found => found?,
    }
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

/// One local day's PUE from its measured hours: the mean of the hourly PUE (as Figure 4 and Table 1
/// take a day), its lowest and highest hour, and how many hours had a reading.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub(crate) struct DayFigure {
    /// The local date.
    pub date: NaiveDate,
    /// Mean of the measured hours' PUE; none without a measured hour.
    pub mean_pue: Option<f64>,
    /// Where it lies: ±2 % (`uncertainty::pue_interval`).
    pub mean_pue_low: Option<f64>,
    /// .
    pub mean_pue_high: Option<f64>,
    /// Lowest hourly PUE.
    pub min_pue: Option<f64>,
    /// Highest hourly PUE.
    pub max_pue: Option<f64>,
    /// Hours with a reading.
    pub hours: usize,
    /// Hours the day has had up to the cut (24 for yesterday, but 23 or 25 on a clock change; today's
    /// so far, the current one included).
    pub of_hours: usize,
}

/// Yesterday's and today's PUE of a site, and each local hour's value on both days, all to the same
/// instant (`now`): the values the overview and the PUE page show beside their charts.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RecentPue {
    /// The instant the figures are computed to.
    pub as_of: DateTime<Utc>,
    /// Yesterday (local).
    pub yesterday: DayFigure,
    /// Today so far (local).
    pub today: DayFigure,
    /// Local hour of day, yesterday's and today's PUE of that hour (the first of a repeated hour on
    /// a clock change).
    pub by_hour: Vec<(u32, Option<f64>, Option<f64>)>,
}

impl DayFigure {
    /// The PUE with two decimals, or why there is none.
    pub(crate) fn value(&self) -> String {
        self.mean_pue
            .map_or_else(|| "no meter reading".to_owned(), |p| format!("{p:.2}"))
    }

    /// What the value rests on: "mean of 9 of 11 hours, 1.28-1.36; true value 1.29-1.35 (meters
    /// ±2 %)".
    pub(crate) fn basis(&self) -> String {
        match (self.min_pue, self.max_pue, self.mean_pue_low, self.mean_pue_high) {
            (Some(lo), Some(hi), Some(b_lo), Some(b_hi)) => format!(
                "mean of {} of {} hours, {lo:.2}–{hi:.2}; true value {b_lo:.2}–{b_hi:.2} (meters ±2 %)",
                self.hours, self.of_hours
            ),
            _ => format!("0 of {} hours measured", self.of_hours),
        }
    }
}

/// Yesterday's and today's PUE of `s` up to `now`.
pub(crate) async fn recent(cx: &Context, s: &SiteTz, now: DateTime<Utc>) -> Result<RecentPue> {
    Ok(recent_with_hours(cx, s, now).await?.0)
}

/// `recent`, with the hours it was computed from (yesterday's and today's so far, local).
pub(crate) async fn recent_with_hours(
    cx: &Context,
    s: &SiteTz,
    now: DateTime<Utc>,
) -> Result<(RecentPue, Vec<db::facility::Hour>)> {
    let today = now.with_timezone(&s.tz).date_naive();
    let yesterday = today.pred_opt().unwrap_or(today);
    let from = local_midnight(s.tz, yesterday);
    let midnight = local_midnight(s.tz, today);
    let hourly = hours(cx, s, from, now).await?;
    Ok((recent_of(&hourly, s.tz, now, from, midnight), hourly))
}

/// `recent` over hours already read.
fn recent_of(
    hourly: &[db::facility::Hour],
    tz: Tz,
    now: DateTime<Utc>,
    from: DateTime<Utc>,
    midnight: DateTime<Utc>,
) -> RecentPue {
    let day = |date: NaiveDate, start: DateTime<Utc>, end: DateTime<Utc>| {
        let values: Vec<f64> = hourly
            .iter()
            .filter(|h| h.hour >= start && h.hour < end)
            .map(|h| h.mean_pue)
            .collect();
        let n = values.len();
        let mean_pue = (n > 0).then(|| values.iter().sum::<f64>() / n as f64);
        let bound = mean_pue.map(uncertainty::pue_interval);
        DayFigure {
            date,
            mean_pue,
            mean_pue_low: bound.map(|b| b.0),
            mean_pue_high: bound.map(|b| b.1),
            min_pue: values.iter().copied().reduce(f64::min),
            max_pue: values.iter().copied().reduce(f64::max),
            hours: n,
            of_hours: ((end - start).num_seconds() as f64 / 3600.0).ceil() as usize,
        }
    };
    let today = now.with_timezone(&tz).date_naive();
    let mut by_hour: Vec<(u32, Option<f64>, Option<f64>)> =
        (0..24).map(|h| (h, None, None)).collect();
    for h in hourly {
        let local = h.hour.with_timezone(&tz);
        let row = &mut by_hour[local.hour() as usize];
        let slot = if local.date_naive() == today {
            &mut row.2
        } else {
            &mut row.1
        };
        slot.get_or_insert(h.mean_pue);
    }
    RecentPue {
        as_of: now,
        yesterday: day(today.pred_opt().unwrap_or(today), from, midnight),
        today: day(today, midnight, now),
        by_hour,
    }
}

#[cfg(test)]
mod recent_tests {
    use super::*;

    fn hour(at: DateTime<Utc>, pue: f64) -> db::facility::Hour {
        db::facility::Hour {
            hour: at,
            mean_pue: pue,
            weighted_pue: pue,
            readings: 4,
        }
    }

    /// Yesterday is the mean of its measured hours; today counts its hours so far (the current one
    /// included); a clock change's day has 25 hours; each local hour's value lands in its row.
    #[test]
    fn yesterday_and_today_from_local_hours() {
        let tz: Tz = "Europe/Berlin".parse().expect("zone");
        // 2026-10-26 10:30 local (UTC+1): yesterday, 2026-10-25, had 25 hours (summer time ended).
        let now = Utc
            .with_ymd_and_hms(2026, 10, 26, 9, 30, 0)
            .single()
            .expect("now");
        let from = local_midnight(tz, NaiveDate::from_ymd_opt(2026, 10, 25).expect("date"));
        let midnight = local_midnight(tz, NaiveDate::from_ymd_opt(2026, 10, 26).expect("date"));
        let hourly = vec![
            hour(from, 1.2),                           // 00:00 yesterday
            hour(from + Duration::hours(5), 1.4),      // 04:00 (after the repeated 02:00)
            hour(midnight, 1.3),                       // 00:00 today
            hour(midnight + Duration::hours(10), 1.5), // 10:00 today
        ];
        let r = recent_of(&hourly, tz, now, from, midnight);
        assert_eq!(r.yesterday.hours, 2);
        assert_eq!(r.yesterday.of_hours, 25);
        assert!((r.yesterday.mean_pue.expect("mean") - 1.3).abs() < 1e-12);
        assert_eq!(r.yesterday.min_pue, Some(1.2));
        assert_eq!(r.yesterday.max_pue, Some(1.4));
        assert_eq!(r.today.hours, 2);
        assert_eq!(r.today.of_hours, 11, "00:00 to 10:30 is 11 hours begun");
        assert!((r.today.mean_pue.expect("mean") - 1.4).abs() < 1e-12);
        assert_eq!(r.by_hour[0], (0, Some(1.2), Some(1.3)));
        assert_eq!(r.by_hour[4], (4, Some(1.4), None));
        assert_eq!(r.by_hour[10], (10, None, Some(1.5)));
        let empty = recent_of(&[], tz, now, from, midnight);
        assert_eq!(empty.today.mean_pue, None);
        assert_eq!(empty.today.hours, 0);
    }
}
