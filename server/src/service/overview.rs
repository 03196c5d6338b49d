//! The staff overview (`/overview`): per site, GPU power and states now, the last measured PUE, the
//! month's GPU energy, collectors and meters gone quiet; the month's energy by user and by project (a
//! `project` tag); the running jobs with the most energy. Read from the read replica where there is one
//! (within its bound), like the fleet exposition it builds on.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};

use super::fleet::fleet;
use super::jobs::timing::format_energy;
use super::Result;
use crate::db;
use crate::service::Context;

/// A collector silent this long is named, s.
pub(crate) const STALE_NODE_S: i64 = 300;
/// A meter without a reading this long is named, s.
pub(crate) const STALE_METER_S: i64 = 3600;
/// Rows per bar chart and running jobs listed.
const TOP: i64 = 12;

/// One site now.
#[derive(Debug, Clone, Default)]
pub struct SiteNow {
    /// Site name.
    pub name: String,
    /// GPU power now, formatted.
    pub power_now: String,
    /// Its GPU power now, W.
    pub power_now_w: f64,
    /// GPUs busy, idle, not reporting.
    pub busy: u32,
    /// .
    pub idle: u32,
    /// .
    pub not_reporting: u32,
    /// PUE of its last measured hour within two.
    pub pue: Option<f64>,
    /// GPU energy this month (rolled-up hours), formatted.
    pub month_energy: String,
    /// Where raw data still waits for the rollup: the oldest such time, `YYYY-MM-DD HH:MM` UTC (the
    /// month's figure leaves it out).
    pub rollup_waits_since: Option<String>,
    /// Collectors silent for over `STALE_NODE_S` (or never heard).
    pub stale_nodes: Vec<String>,
    /// Meters without a reading for over `STALE_METER_S`.
    pub stale_meters: Vec<String>,
    /// Nodes whose clock is off by more than `db::nodes::CLOCK_WARN_MS`: (name, offset in words).
    pub clocks_off: Vec<(String, String)>,
    /// Meters at the site.
    pub meters: usize,
    /// Its IANA zone.
    pub timezone: String,
    /// GPU power over the last 24 h from rolled-up minutes, per `CURVE_BUCKET_MS`: (start ms, kW).
    pub gpu_kw_24h: Vec<(i64, f64)>,
    /// The meters' IT power over the last 24 h, per `CURVE_BUCKET_MS`: (start ms, kW).
    pub it_kw_24h: Vec<(i64, f64)>,
    /// The meters' IT power in the latest bucket with readings, if within the last hour, kW.
    pub it_kw_now: Option<f64>,
    /// Today's hourly mean PUE (local day so far): (hour start ms, PUE).
    pub pue_today: Vec<(i64, f64)>,
    /// Yesterday's and today's PUE, to the page's instant.
    pub(crate) pue_recent: super::pue::RecentPue,
}

/// Buckets of the 24-hour power curves, ms.
pub(crate) const CURVE_BUCKET_MS: i64 = 600_000;
/// Where the curves end: where the rollup's last run had taken every range of raw data (as of a
/// minute; never after now). Before its first run: where it takes data once `rollup_settle_s` old, up
/// to a multiple of its step, every `rollup_interval_s`. The note on data waiting for it says when
/// it is behind.
pub(crate) fn curve_end(
    config: &crate::config::Config,
    rolled_up_to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    let end = rolled_up_to.map_or_else(
        || {
            crate::maintenance::rollup_cut_ms(
                now.timestamp_millis()
                    - (config.rollup_settle_s + config.rollup_interval_s) as i64 * 1000,
            )
        },
        |t| t.timestamp_millis().min(now.timestamp_millis()),
    );
    db::ts(db::energy::floor_minute(end))
}

/// One bar: a name, its energy formatted, its value and the largest value (kWh).
#[derive(Debug, Clone)]
pub struct Bar {
    /// User or project.
    pub name: String,
    /// Formatted.
    pub energy: String,
    /// Where the truth lies: its jobs' bounds, each hour its share.
    pub bound: String,
    /// kWh.
    pub value: f64,
    /// The largest bar's kWh.
    pub max: f64,
}

/// A running job.
#[derive(Debug, Clone)]
pub struct Running {
    /// Job id.
    pub id: String,
    /// Owner.
    pub user: String,
    /// GPUs.
    pub gpus: i32,
    /// `D-HH:MM:SS`, as sacct writes elapsed times.
    pub running_for: String,
    /// IT energy so far, formatted.
    pub energy: String,
}

/// The overview.
#[derive(Debug, Clone)]
pub struct Overview {
    /// When it was read.
    pub as_of: DateTime<Utc>,
    /// Per site.
    pub sites: Vec<SiteNow>,
    /// The month's energy by user.
    pub by_user: Vec<Bar>,
    /// By `project` tag.
    pub by_project: Vec<Bar>,
    /// This month's jobs without a fresh summary (not in the bars).
    pub unsummarised: i64,
    /// Every energy figure of the month is to this instant (`closure::figures_cut`; the month's
    /// start at the earliest).
    pub cut: DateTime<Utc>,
    /// Running jobs, most energy first.
    pub running: Vec<Running>,
    /// The 24-hour curves' span, ms: `[from, to)`, `to` where the rollup has taken everything (`curve_end`).
    pub curve_span: (i64, i64),
    /// This month's idle allocated GPUs.
    pub idle: super::closure::Waste,
}

/// A duration as sacct writes it: `D-HH:MM:SS`, or `HH:MM:SS` under a day.
pub(crate) fn sacct_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// Power in W or kW.
fn format_power(w: f64) -> String {
    if w >= 10_000.0 {
        format!("{:.1} kW", w / 1000.0)
    } else {
        format!("{w:.0} W")
    }
}

fn bars(rows: Vec<(String, f64, Option<f64>, Option<f64>)>) -> Vec<Bar> {
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    rows.into_iter()
        .map(|(name, value, low, high)| Bar {
            name,
            energy: format_energy(value),
            bound: match (low, high) {
                (Some(lo), Some(hi)) => format!(
                    "between {} and {}",
                    format_energy(lo.min(value)),
                    format_energy(hi.max(value))
                ),
                _ => "no bound: a job's energy was computed before bounds existed".to_owned(),
            },
            value,
            max,
        })
        .collect()
}

/// The overview now.
pub async fn overview(cx: &Context) -> Result<Overview> {
    let now = Utc::now();
    let month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    // One pool for the whole view.
    let read = cx.read_db();
    // To where the rollup has had time for every minute; the last bucket may be part of one.
    let curve_to = curve_end(&cx.config, db::overview::rolled_up_to(read).await?, now);
    let curve_from = db::ts(
        (curve_to.timestamp_millis() - 86_400_000).div_euclid(CURVE_BUCKET_MS) * CURVE_BUCKET_MS,
    );
    let fleet = fleet(read).await?;
    let waiting = db::overview::rollup_waits_since(read).await?;
    let site_list = db::sites::list_with_fallback(read).await?;
    // One instant for every energy figure of the page (`closure::figures_cut`): the sites' month, the
    // bars by user and project, all to the start of the hour holding the oldest data not rolled up.
    let mut waits: Vec<Option<DateTime<Utc>>> = waiting.iter().map(|(_, t)| Some(*t)).collect();
    for site in &site_list {
        waits.push(db::closure::node_rollup_waits_since(read, site.id).await?);
    }
    let cut = super::closure::figures_cut(now, &waits).max(month);
    let mut sites = Vec::new();
    for site in site_list {
        let mut s = SiteNow {
            name: site.name.clone(),
            pue: fleet.pue.get(&site.name).copied(),
            ..SiteNow::default()
        };
        for (name, n) in fleet.nodes.iter().filter(|(_, n)| n.site == site.name) {
            s.power_now_w += n.power_w;
            s.busy += n.busy;
            s.idle += n.idle;
            s.not_reporting += n.not_reporting;
            if n.last_seen
                .is_none_or(|t| (now - t).num_seconds() > STALE_NODE_S)
            {
                s.stale_nodes.push(name.clone());
            }
            if let Some(off) = &n.clock_off {
                s.clocks_off.push((name.clone(), off.clone()));
            }
        }
        s.power_now = format_power(s.power_now_w);
        s.timezone.clone_from(&site.timezone);
        let zone = super::pue::SiteTz::of(db::sites::Site {
            id: site.id,
            name: site.name.clone(),
            timezone: site.timezone.clone(),
        })?;
        curves(cx, &mut s, &zone, curve_from, curve_to).await?;
        // Yesterday's and today's PUE, and today's hours for the chart, from one read.
        let (recent, hours) = super::pue::recent_with_hours(cx, &zone, now).await?;
        let midnight =
            super::pue::local_midnight(zone.tz, now.with_timezone(&zone.tz).date_naive());
        s.pue_today = hours
            .iter()
            .filter(|h| h.hour >= midnight)
            .map(|h| (h.hour.timestamp_millis(), h.mean_pue))
            .collect();
        s.pue_recent = recent;
        let j = db::overview::site_gpu_energy_between(read, site.id, month, cut).await?;
        s.month_energy = format_energy(j / 3.6e6);
        s.rollup_waits_since = waiting
            .iter()
            .find(|(id, _)| *id == site.id)
            .map(|(_, t)| t.format("%Y-%m-%d %H:%M").to_string());
        let meters = db::overview::meters(read, site.id).await?;
        s.meters = meters.len();
        s.stale_meters = meters
            .into_iter()
            .filter(|(_, last)| last.is_none_or(|t| (now - t).num_seconds() > STALE_METER_S))
            .map(|(name, _)| name)
            .collect();
        sites.push(s);
    }
    let running = db::overview::running(read, TOP)
        .await?
        .into_iter()
        .map(|(id, user, start, gpus, kwh)| Running {
            id,
            user,
            gpus,
            running_for: sacct_duration((now - start).num_seconds()),
            energy: format_energy(kwh),
        })
        .collect();
    Ok(Overview {
        as_of: now,
        sites,
        by_user: bars(db::overview::energy_by(read, month, cut, None, TOP).await?),
        by_project: bars(db::overview::energy_by(read, month, cut, Some("project"), TOP).await?),
        unsummarised: db::overview::unsummarised_between(read, month, cut).await?,
        cut,
        running,
        curve_span: (curve_from.timestamp_millis(), curve_to.timestamp_millis()),
        idle: super::closure::waste(cx, month, now, TOP).await?,
    })
}
/// A site's GPU and IT power over `[from, to)`.
/// A site's GPU and IT power over `[from, to)` and today's PUE.
async fn curves(
    cx: &Context,
    s: &mut SiteNow,
    site: &super::pue::SiteTz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<()> {
    let site_id = site.site.id;
    let read = cx.read_db();
    let bucket_s = (CURVE_BUCKET_MS / 1000) as f64;
    s.gpu_kw_24h =
        db::overview::site_gpu_energy_by_bucket(read, site_id, from, to, bucket_s as i32)
            .await?
            .into_iter()
            .map(|(t, j)| {
                let b = t.timestamp_millis();
                // The last bucket holds only the minutes up to `to`.
                let seconds =
                    ((b + CURVE_BUCKET_MS).min(to.timestamp_millis()) - b) as f64 / 1000.0;
                (b, j / seconds.max(1.0) / 1000.0)
            })
            .collect();
    // Each meter's mean power over the part of the bucket it covered; meters added.
    let mut it: BTreeMap<i64, f64> = BTreeMap::new();
    for meter in db::closure::meter_readings(read, site_id, from, to).await? {
        let buckets = crate::analytics::closure::meter_it_by_bucket(
            &meter,
            from.timestamp_millis(),
            to.timestamp_millis(),
            CURVE_BUCKET_MS,
        );
        for (b, (j, covered_s)) in buckets {
            if covered_s > 0.0 {
                *it.entry(b).or_default() += j / covered_s / 1000.0;
            }
        }
    }
    s.it_kw_now = it
        .iter()
        .next_back()
        .filter(|(b, _)| to.timestamp_millis() - **b <= 3_600_000)
        .map(|(_, kw)| *kw);
    s.it_kw_24h = it.into_iter().collect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_sacct_writes_them() {
        assert_eq!(sacct_duration(59), "00:00:59");
        assert_eq!(
            sacct_duration(3 * 86_400 + 4 * 3600 + 5 * 60 + 6),
            "3-04:05:06"
        );
        assert_eq!(sacct_duration(-5), "00:00:00");
    }
}
