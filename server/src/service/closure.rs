//! Where a site's energy went, per local day or month (`analytics::closure`), with what makes the
//! figures partial said beside them; and the month's idle allocated GPUs by job and by user (waste).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;

use super::pue::{local_midnight, site_tz};
use super::{Error, Result};
use crate::analytics::closure::{self, By, HourTerms, Row};
use crate::db;
use crate::service::Context;

/// Days one answer may hold by day.
pub(crate) const MAX_DAYS: i64 = 92;
/// Months one answer may hold by month.
pub(crate) const MAX_MONTHS: i64 = 24;

/// `GET /api/v1/sites/{site}/energy`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Closure {
    /// Site.
    pub site: String,
    /// Its zone: days and months are local.
    pub timezone: String,
    /// Rows by day or month.
    pub by: By,
    /// First local day asked for.
    pub from: NaiveDate,
    /// Last local day asked for (included).
    pub to: NaiveDate,
    /// Oldest first.
    pub rows: Vec<Row>,
    /// Meters at the site.
    pub meters: usize,
    /// What the figures do not include yet, in words; empty when they are complete.
    pub partial: Vec<String>,
    /// When it was read.
    pub as_of: DateTime<Utc>,
    /// Every figure is to this instant (`figures_cut`): the start of the hour holding the oldest of
    /// the site's data still waiting for the rollup, or of the current hour.
    pub cut: DateTime<Utc>,
    /// The relative bound of each kind of figure, ±% (issue 35).
    pub bounds: crate::analytics::uncertainty::SiteBounds,
}

/// Where a site's data still waits for the rollup: the oldest GPU sample and the oldest CPU/DRAM
/// reading not rolled up yet, if any (what `figures_cut` takes).
pub(crate) async fn site_waits(
    read: &sqlx::PgPool,
    site_id: crate::ids::SiteId,
) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
    let (waits, node_waits) = tokio::try_join!(
        db::overview::rollup_waits_since(read),
        db::closure::node_rollup_waits_since(read, site_id),
    )?;
    let gpu_waits = waits
        .iter()
        .find(|(site, _)| *site == site_id)
        .map(|(_, t)| *t);
    Ok((gpu_waits, node_waits))
}

/// The one instant every energy figure of a page is computed to: the start of the UTC hour holding
/// the earliest of `now` and the oldest raw data still waiting for the rollup (GPU samples, CPU and
/// DRAM readings). Jobs' stored energy counts every raw sample up to now while the GPU and node
/// totals count rolled-up data only; cut apart, the current hour's jobs outweighed its GPUs and the
/// idle part came out negative (issue 31). Whole hours, since jobs keep their energy per hour.
pub(crate) fn figures_cut(now: DateTime<Utc>, waiting: &[Option<DateTime<Utc>>]) -> DateTime<Utc> {
    let earliest = waiting.iter().flatten().fold(now, |a, &b| a.min(b));
    let ms = earliest.timestamp_millis().div_euclid(3_600_000) * 3_600_000;
    DateTime::from_timestamp_millis(ms).unwrap_or(earliest)
}

/// The days asked for: `[from, to]` (local, `to` included), defaults and bounds applied.
pub(crate) fn range(
    by: By,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate)> {
    // Dates chrono holds but cannot step from (year -262143) would panic below: plausible years only.
    for (field, d) in [("from", from), ("to", to)] {
        if let Some(d) = d {
            super::sites::check_year(field, d.year(), d)?;
        }
    }
    let to = to.unwrap_or(today);
    let first_of = |d: NaiveDate| d.with_day(1).unwrap_or(d);
    let (from, to) = match by {
        By::Day => (from.unwrap_or(to - Duration::days(6)), to),
        By::Month => {
            // By default the twelve months up to `to`'s.
            let back = to.year() * 12 + to.month0() as i32 - 11;
            let from = first_of(from.unwrap_or_else(|| {
                NaiveDate::from_ymd_opt(back.div_euclid(12), back.rem_euclid(12) as u32 + 1, 1)
                    .unwrap_or(to)
            }));
            let next = first_of(first_of(to) + Duration::days(32));
            (from, next - Duration::days(1))
        }
    };
    if from > to {
        return Err(Error::invalid("from", "must not be after to"));
    }
    let days = (to - from).num_days() + 1;
    match by {
        By::Day if days > MAX_DAYS => Err(Error::invalid(
            "to",
            format!("at most {MAX_DAYS} days by day (ask by=month for longer)"),
        )),
        By::Month if days > MAX_MONTHS * 31 => {
            Err(Error::invalid("to", format!("at most {MAX_MONTHS} months")))
        }
        _ => Ok((from, to)),
    }
}

/// The site's energy by day or month over local days `[from, to]`.
pub(crate) async fn closure(
    cx: &Context,
    site: &str,
    by: By,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<Closure> {
    let s = site_tz(cx, site).await?;
    let now = Utc::now();
    let today = now.with_timezone(&s.tz).date_naive();
    let (first, last) = range(by, from, to, today)?;
    let (t0, t1) = (
        local_midnight(s.tz, first),
        local_midnight(s.tz, last + Duration::days(1)),
    );
    if t1 <= t0 {
        return Err(Error::invalid(
            "to",
            "the range holds no time in the site's zone",
        ));
    }
    let read = cx.read_db();
    let id = s.site.id;
    let (gpu_waits, node_waits) = site_waits(read, id).await?;
    let cut = figures_cut(now, &[gpu_waits, node_waits]);
    // Every term over the same hours: `[t0, min(t1, cut))`.
    let end = t1.min(cut).max(t0);
    let (gpu, cpu_dram, jobs, meters, due) = tokio::try_join!(
        db::closure::gpu_by_hour(read, id, t0, end),
        db::closure::cpu_dram_by_hour(read, id, t0, end),
        db::closure::jobs_by_hour(read, id, t0, end),
        db::closure::meter_readings(read, id, t0, end),
        db::closure::jobs_due(read, id, t0, end),
    )?;
    let (from_ms, to_ms) = (t0.timestamp_millis(), t1.timestamp_millis());
    let end_ms = end.timestamp_millis();
    let mut hours: BTreeMap<i64, HourTerms> = BTreeMap::new();
    for (h, j) in gpu {
        hours.entry(h.timestamp_millis()).or_default().gpu_j += j;
    }
    for (h, j) in cpu_dram {
        hours.entry(h.timestamp_millis()).or_default().cpu_dram_j += j;
    }
    for (h, it, g) in jobs {
        let e = hours.entry(h).or_default();
        e.jobs_it_j += it;
        e.jobs_gpu_j += g;
    }
    for meter in &meters {
        for (h, (j, covered)) in closure::meter_it_by_hour(meter, from_ms, end_ms) {
            let e = hours.entry(h).or_default();
            e.meter_it_j += j;
            e.meter_covered_s += covered;
        }
    }
    let rows = closure::rows(&hours, s.tz, by, from_ms, to_ms);

    let local = |t: DateTime<Utc>| {
        format!(
            "{} {}",
            t.with_timezone(&s.tz).format("%Y-%m-%d %H:%M"),
            s.site.timezone
        )
    };
    let mut partial = Vec::new();
    if cut < t1 {
        let mut why = Vec::new();
        if let Some(t) = gpu_waits.filter(|t| *t < now) {
            why.push(format!(
                "GPU samples since {} wait for the rollup",
                local(t)
            ));
        }
        if let Some(t) = node_waits.filter(|t| *t < now) {
            why.push(format!(
                "CPU and DRAM readings since {} wait for the rollup",
                local(t)
            ));
        }
        if why.is_empty() {
            why.push(format!(
                "the last {} is not over",
                match by {
                    By::Day => "day",
                    By::Month => "month",
                }
            ));
        }
        partial.push(format!(
            "Every figure is to {}, the last whole hour with all of the site's data in: {}.",
            local(cut),
            why.join("; ")
        ));
    }
    if due > 0 {
        partial.push(format!(
            "{due} job{} of these {} ha{} an energy summary still being computed (seconds while the \
             server keeps up): until then its energy counts as idle.",
            if due == 1 { "" } else { "s" },
            match by {
                By::Day => "days",
                By::Month => "months",
            },
            if due == 1 { "s" } else { "ve" },
        ));
    }
    Ok(Closure {
        site: s.site.name,
        timezone: s.site.timezone,
        by,
        from: first,
        to: last,
        rows,
        meters: meters.len(),
        partial,
        as_of: now,
        cut,
        bounds: crate::analytics::uncertainty::SITE_BOUNDS,
    })
}

pub(crate) use db::closure::{IdleJob, IdleUser};

/// Idle allocated GPUs of jobs that started in `[from, to)`.
#[derive(Debug, Clone, Serialize)]
pub struct Waste {
    /// From.
    pub from: DateTime<Utc>,
    /// To.
    pub to: DateTime<Utc>,
    /// Utilisation under which a minute is idle, %.
    pub idle_below_util_pct: f64,
    /// Users, most idle energy first.
    pub by_user: Vec<IdleUser>,
    /// Jobs, most idle energy first.
    pub jobs: Vec<IdleJob>,
    /// Jobs of the range without a fresh summary (not counted yet).
    pub unsummarised: i64,
}

/// The idle allocated GPUs of jobs started in `[from, to)`: `limit` users and jobs.
pub(crate) async fn waste(
    cx: &Context,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Waste> {
    let read = cx.read_db();
    let (by_user, jobs, unsummarised) = tokio::try_join!(
        db::closure::idle_by_user(read, from, to, limit),
        db::closure::idle_jobs(read, from, to, limit),
        db::overview::unsummarised(read, from),
    )?;
    Ok(Waste {
        from,
        to,
        idle_below_util_pct: db::closure::IDLE_UTIL_PCT,
        by_user,
        jobs,
        unsummarised,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn the_cut_is_the_hour_of_the_oldest_waiting_data_or_of_now() {
        let t = |s: &str| -> DateTime<Utc> { s.parse().expect("time") };
        let now = t("2026-12-06T19:36:29Z");
        assert_eq!(figures_cut(now, &[]), t("2026-12-06T19:00:00Z"));
        assert_eq!(figures_cut(now, &[None, None]), t("2026-12-06T19:00:00Z"));
        assert_eq!(
            figures_cut(now, &[Some(t("2026-12-06T17:59:59Z")), None]),
            t("2026-12-06T17:00:00Z")
        );
        assert_eq!(
            figures_cut(
                now,
                &[
                    Some(t("2026-12-06T18:10:00Z")),
                    Some(t("2026-12-06T16:00:00Z"))
                ]
            ),
            t("2026-12-06T16:00:00Z"),
            "the oldest of them, already on the hour"
        );
        // Data stamped ahead of the server's clock does not move the cut past now.
        assert_eq!(
            figures_cut(now, &[Some(t("2026-12-07T00:00:00Z"))]),
            t("2026-12-06T19:00:00Z")
        );
    }

    #[test]
    fn ranges_default_to_a_week_or_a_year_and_are_bounded() {
        let today = d("2026-11-30");
        assert_eq!(
            range(By::Day, None, None, today).expect("test value"),
            (d("2026-11-24"), today)
        );
        assert_eq!(
            range(By::Month, None, None, today).expect("test value"),
            (d("2025-12-01"), today)
        );
        assert_eq!(
            range(
                By::Month,
                Some(d("2026-02-14")),
                Some(d("2026-02-15")),
                today
            )
            .expect("test value"),
            (d("2026-02-01"), d("2026-02-28"))
        );
        let e = range(By::Day, Some(d("2026-01-01")), Some(d("2026-06-01")), today)
            .expect_err("refused");
        assert!(e.to_string().starts_with("to: at most 92 days"), "{e}");
        let e = range(By::Day, Some(d("2026-12-01")), None, today).expect_err("refused");
        assert!(e.to_string().starts_with("from:"), "{e}");
        for by in [By::Day, By::Month] {
            let e = range(by, None, Some(NaiveDate::MIN), today).expect_err("refused");
            assert!(e.to_string().starts_with("to: "), "{e}");
            let e = range(by, Some(NaiveDate::MAX), None, today).expect_err("refused");
            assert!(e.to_string().starts_with("from: "), "{e}");
        }
    }
}
