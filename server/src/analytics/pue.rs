//! PUE analytics, the first paper's section 3.2 and Table 1, in the site's local time.
//!
//! - PUE = (FE + IT) / IT = total facility power / IT power.
//! - An hour's PUE is the mean of the PUE readings taken in it (the paper's method); for charging jobs the
//!   energy-weighted PUE (total kWh / IT kWh of the hour) is used instead (`db::facility`).
//! - A day's variation = (max hourly PUE - min hourly PUE) / min hourly PUE x 100. Days are local days, so
//!   a day with a DST change has 23 or 25 hours. Days with fewer than `MIN_HOURS_PER_DAY` hours of data
//!   are left out and counted.
//! - A month's variation is the mean over its days; the year's is the mean over all days of the year, not
//!   over the months.
//!
//! Input: hourly means keyed by the hour's start instant, so the two 01:00 hours of an autumn DST day stay
//! two hours. Output: plain numbers; callers render them.

use crate::analytics::uncertainty::pue_interval;
use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// A day needs this many hours with data to count in the variation tables.
pub(crate) const MIN_HOURS_PER_DAY: usize = 18;

/// One hour's mean PUE.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourPue {
    /// Start of the hour.
    pub start: DateTime<Utc>,
    /// Mean of the PUE readings in the hour.
    pub pue: f64,
}

/// One local day's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DayPue {
    /// Local date.
    pub date: NaiveDate,
    /// Hours with data.
    pub hours: usize,
    /// Mean of the day's hourly PUE.
    pub mean_pue: f64,
    /// Where it lies: ±2 % (`uncertainty::pue_interval`).
    pub mean_pue_low: f64,
    /// .
    pub mean_pue_high: f64,
    /// Lowest hourly PUE.
    pub min_pue: f64,
    /// Highest hourly PUE.
    pub max_pue: f64,
    /// (max - min) / min x 100; `None` when the day has fewer than 18 hours of data.
    pub variation_pct: Option<f64>,
}

/// One month of Table 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthVariation {
    /// Month, 1..=12.
    pub month: u32,
    /// Days counted (18 hours of data or more).
    pub days: usize,
    /// Days left out for lack of data (some data, fewer than 18 hours).
    pub days_excluded: usize,
    /// Mean daily variation over the counted days, %.
    pub avg_daily_variation_pct: Option<f64>,
    /// Mean of the month's hourly PUE.
    pub mean_pue: Option<f64>,
    /// Where it lies: ±2 %.
    pub mean_pue_low: Option<f64>,
    /// .
    pub mean_pue_high: Option<f64>,
}

/// Table 1 for one year.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct YearVariation {
    /// Mean daily variation over all counted days of the year (not over the months), %.
    pub annual_variation_pct: Option<f64>,
    /// Days counted.
    pub days: usize,
    /// Days left out for lack of data.
    pub days_excluded: usize,
    /// The twelve months.
    pub months: Vec<MonthVariation>,
}

/// Groups hours into local days.
pub(crate) fn days(hours: &[HourPue], tz: Tz) -> Vec<DayPue> {
    let mut by_day: BTreeMap<NaiveDate, Vec<f64>> = BTreeMap::new();
    for h in hours {
        by_day
            .entry(h.start.with_timezone(&tz).date_naive())
            .or_default()
            .push(h.pue);
    }
    by_day
        .into_iter()
        .map(|(date, pues)| {
            let min_pue = pues.iter().copied().fold(f64::INFINITY, f64::min);
            let max_pue = pues.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mean_pue = pues.iter().sum::<f64>() / pues.len() as f64;
            let (mean_pue_low, mean_pue_high) = pue_interval(mean_pue);
            DayPue {
                date,
                hours: pues.len(),
                mean_pue,
                mean_pue_low,
                mean_pue_high,
                min_pue,
                max_pue,
                variation_pct: (pues.len() >= MIN_HOURS_PER_DAY && min_pue > 0.0)
                    .then(|| (max_pue - min_pue) / min_pue * 100.0),
            }
        })
        .collect()
}

/// Table 1 of `year` from hourly means (hours outside the year's local days are ignored).
pub fn variation(hours: &[HourPue], tz: Tz, year: i32) -> YearVariation {
    let in_year: Vec<HourPue> = hours
        .iter()
        .copied()
        .filter(|h| h.start.with_timezone(&tz).year() == year)
        .collect();
    let days = days(&in_year, tz);
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let months = (1..=12)
        .map(|month| {
            let of_month: Vec<&DayPue> = days.iter().filter(|d| d.date.month() == month).collect();
            let variations: Vec<f64> = of_month.iter().filter_map(|d| d.variation_pct).collect();
            let hourly: Vec<f64> = in_year
                .iter()
                .filter(|h| h.start.with_timezone(&tz).month() == month)
                .map(|h| h.pue)
                .collect();
            let mean_pue = mean(&hourly);
            let bound = mean_pue.map(pue_interval);
            MonthVariation {
                month,
                days: variations.len(),
                days_excluded: of_month.len() - variations.len(),
                avg_daily_variation_pct: mean(&variations),
                mean_pue,
                mean_pue_low: bound.map(|b| b.0),
                mean_pue_high: bound.map(|b| b.1),
            }
        })
        .collect();
    let all: Vec<f64> = days.iter().filter_map(|d| d.variation_pct).collect();
    YearVariation {
        annual_variation_pct: mean(&all),
        days: all.len(),
        days_excluded: days.len() - all.len(),
        months,
    }
}

/// Mean PUE by (month, local hour of day) over the given hours: the heat map, and the history the
/// "when to run" advice is drawn from. `None` where no data fell.
pub(crate) fn month_hour_profile(hours: &[HourPue], tz: Tz) -> [[Option<f64>; 24]; 12] {
    use chrono::Timelike;
    let mut sums = [[(0.0f64, 0u32); 24]; 12];
    for h in hours {
        let local = h.start.with_timezone(&tz);
        let cell = &mut sums[local.month0() as usize][local.hour() as usize];
        cell.0 += h.pue;
        cell.1 += 1;
    }
    sums.map(|row| row.map(|(s, n)| (n > 0).then(|| s / f64::from(n))))
}

/// Expected mean PUE of a job of `length_h` hours that starts at local hour `start_hour` in `month`
/// (0-based), from the profile; hours past midnight wrap to the same month's early hours.
pub(crate) fn expected_pue(
    profile: &[[Option<f64>; 24]; 12],
    month0: usize,
    start_hour: usize,
    length_h: usize,
) -> Option<f64> {
    let length_h = length_h.max(1);
    let mut sum = 0.0;
    for k in 0..length_h {
        sum += profile[month0][(start_hour + k) % 24]?;
    }
    Some(sum / length_h as f64)
}

/// Advice on when to run a job of `length_h` hours: the best start hour in `month0` and the best month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WhenToRun {
    /// Job length the advice is for, hours.
    pub length_h: usize,
    /// Expected PUE starting at `now_hour` in `now_month`.
    pub now_pue: Option<f64>,
    /// Best local start hour this month, and its expected PUE.
    pub best_hour: Option<(usize, f64)>,
    /// Best month (1-based) at its best start hour, and its expected PUE.
    pub best_month: Option<(u32, usize, f64)>,
}

/// Finds the lowest expected PUE by start hour (this month) and by month.
pub(crate) fn when_to_run(
    profile: &[[Option<f64>; 24]; 12],
    now_month0: usize,
    now_hour: usize,
    length_h: usize,
) -> WhenToRun {
    let best_in = |m: usize| {
        (0..24)
            .filter_map(|h| expected_pue(profile, m, h, length_h).map(|p| (h, p)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    };
    let best_month = (0..12)
        .filter_map(|m| best_in(m).map(|(h, p)| (m as u32 + 1, h, p)))
        .min_by(|a, b| a.2.total_cmp(&b.2));
    WhenToRun {
        length_h,
        now_pue: expected_pue(profile, now_month0, now_hour, length_h),
        best_hour: best_in(now_month0),
        best_month,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn ny() -> Tz {
        "America/New_York".parse().expect("tz")
    }

    fn hours_of(
        tz: Tz,
        from: NaiveDate,
        days: i64,
        pue: impl Fn(DateTime<Tz>) -> f64,
    ) -> Vec<HourPue> {
        let start = tz
            .from_local_datetime(&from.and_hms_opt(0, 0, 0).expect("midnight"))
            .single()
            .expect("time");
        let end = start + Duration::days(days) + Duration::hours(2);
        let mut out = Vec::new();
        let mut t = start.with_timezone(&Utc);
        while t < end.with_timezone(&Utc) {
            out.push(HourPue {
                start: t,
                pue: pue(t.with_timezone(&tz)),
            });
            t += Duration::hours(1);
        }
        out.retain(|h| h.start.with_timezone(&tz).date_naive() < from + Duration::days(days));
        out
    }

    #[test]
    fn the_papers_july_27_example() {
        // Minimum 1.48 at midnight, maximum 1.63 at 2 p.m.: a daily variation of 10.1 % by the formula
        // (the paper rounds its own numbers loosely: it says 10.4 %).
        use chrono::Timelike;
        let tz = ny();
        let day = NaiveDate::from_ymd_opt(2020, 7, 27).expect("date");
        let hours = hours_of(tz, day, 1, |t| match t.hour() {
            0 => 1.48,
            14 => 1.63,
            _ => 1.55,
        });
        let d = days(&hours, tz);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].hours, 24);
        let v = d[0].variation_pct.expect("a full day");
        assert!((v - (1.63 - 1.48) / 1.48 * 100.0).abs() < 1e-12);
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let tz = ny();
        let spring = days(
            &hours_of(
                tz,
                NaiveDate::from_ymd_opt(2024, 3, 10).expect("date"),
                1,
                |_| 1.2,
            ),
            tz,
        );
        assert_eq!(spring[0].hours, 23);
        let autumn = days(
            &hours_of(
                tz,
                NaiveDate::from_ymd_opt(2024, 11, 3).expect("date"),
                1,
                |_| 1.2,
            ),
            tz,
        );
        assert_eq!(autumn[0].hours, 25);
    }

    #[test]
    fn the_year_is_the_mean_over_days_not_over_months() {
        use chrono::Timelike;
        let tz = ny();
        // January: 31 days at 10 % variation; February: 29 days at 20 %.
        let hours: Vec<HourPue> = hours_of(
            tz,
            NaiveDate::from_ymd_opt(2024, 1, 1).expect("date"),
            60,
            |t| {
                let base = 1.0;
                let swing = if t.month() == 1 { 0.10 } else { 0.20 };
                if t.hour() == 15 {
                    base * (1.0 + swing)
                } else {
                    base
                }
            },
        );
        let y = variation(&hours, tz, 2024);
        let jan = &y.months[0];
        let feb = &y.months[1];
        assert_eq!((jan.days, feb.days), (31, 29));
        assert!((jan.avg_daily_variation_pct.expect("jan") - 10.0).abs() < 1e-9);
        assert!((feb.avg_daily_variation_pct.expect("feb") - 20.0).abs() < 1e-9);
        let by_days = (31.0 * 10.0 + 29.0 * 20.0) / 60.0;
        assert!(
            (y.annual_variation_pct.expect("year") - by_days).abs() < 1e-9,
            "not (10 + 20) / 2"
        );
        assert_eq!(y.days, 60);
        assert_eq!(y.months[2].days, 0);
        assert_eq!(y.months[2].avg_daily_variation_pct, None);
    }

    #[test]
    fn days_with_fewer_than_18_hours_are_left_out_and_counted() {
        let tz = ny();
        let mut hours = hours_of(
            tz,
            NaiveDate::from_ymd_opt(2024, 5, 1).expect("date"),
            2,
            |t| {
                use chrono::Timelike;
                1.1 + 0.01 * f64::from(t.hour())
            },
        );
        // Keep only 17 hours of the first day.
        let first = NaiveDate::from_ymd_opt(2024, 5, 1).expect("date");
        let mut kept = 0;
        hours.retain(|h| {
            if h.start.with_timezone(&tz).date_naive() == first {
                kept += 1;
                kept <= 17
            } else {
                true
            }
        });
        let y = variation(&hours, tz, 2024);
        assert_eq!(y.days, 1);
        assert_eq!(y.days_excluded, 1);
        assert_eq!(y.months[4].days_excluded, 1);
    }

    #[test]
    fn when_to_run_finds_the_cool_hours_and_months() {
        let mut profile = [[Some(1.3); 24]; 12];
        for (m, row) in profile.iter_mut().enumerate() {
            for (h, cell) in row.iter_mut().enumerate() {
                let summer = if (5..=7).contains(&m) { 0.3 } else { 0.0 };
                let afternoon = if (12..=17).contains(&h) { 0.1 } else { 0.0 };
                *cell = Some(1.1 + summer + afternoon + if m == 0 { -0.05 } else { 0.0 });
            }
        }
        let advice = when_to_run(&profile, 6, 14, 4);
        let (hour, pue) = advice.best_hour.expect("an hour");
        assert!(
            !(9..=17).contains(&hour),
            "a 4-hour job avoids the afternoon: {hour}"
        );
        assert!((pue - 1.4).abs() < 1e-9);
        assert!((advice.now_pue.expect("now") - 1.5).abs() < 1e-9);
        let (month, _, best) = advice.best_month.expect("a month");
        assert_eq!(month, 1);
        assert!((best - 1.05).abs() < 1e-9);
    }
}
