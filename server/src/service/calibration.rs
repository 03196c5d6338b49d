//! Sensors against meters (issue 35, item 6): the nodes a meter measures (a PDU or rack meter), set by
//! admins; what their collectors measured against what the meter saw, per day, with drift flagged
//! (`analytics::calibration`).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{Error, Result};
use crate::analytics::calibration::{self, DayRatio, Drift, HourPair};
use crate::db;
use crate::service::Context;

/// A meter's comparison with the collectors of its nodes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Calibration {
    /// The meter.
    pub meter: String,
    /// Its site.
    pub site: String,
    /// The nodes it measures.
    pub nodes: Vec<String>,
    /// Their GPU models (one: the ratio speaks for that model's sensors).
    pub models: Vec<String>,
    /// Compared days, oldest first.
    pub days: Vec<DayRatio>,
    /// The ratio's drift, where there are days enough.
    pub drift: Option<Drift>,
    /// Every figure is to this instant (`closure::figures_cut`).
    pub cut: DateTime<Utc>,
}

async fn meter(cx: &Context, name: &str) -> Result<db::facility::Meter> {
    db::facility::by_name(&cx.db, name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no meter '{name}'")))
}

/// Sets the nodes meter `name` measures: each must exist at the meter's site.
pub(crate) async fn set_nodes(cx: &Context, name: &str, nodes: &[String]) -> Result<Vec<String>> {
    let m = meter(cx, name).await?;
    if nodes.len() > 10_000 {
        return Err(Error::invalid("nodes", "at most 10000"));
    }
    let found = db::nodes::by_names(&cx.db, nodes).await?;
    for n in nodes {
        match found.iter().find(|f| &f.name == n) {
            None => return Err(Error::invalid("nodes", format!("no node '{n}'"))),
            Some(f) if f.site_id != m.site_id => {
                return Err(Error::invalid(
                    "nodes",
                    format!(
                        "node '{n}' is at site '{}', the meter at '{}'",
                        f.site, m.site
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let ids: Vec<_> = found.iter().map(|f| f.id).collect();
    let mut tx = cx.db.begin().await?;
    db::calibration::set_meter_nodes(&mut tx, m.id, &ids).await?;
    tx.commit().await?;
    let mut names: Vec<String> = found.into_iter().map(|f| f.name).collect();
    names.sort();
    Ok(names)
}

/// Meter `name` against its nodes' collectors over the last `days` days.
pub(crate) async fn calibration(cx: &Context, name: &str, days: i64) -> Result<Calibration> {
    if !(1..=366).contains(&days) {
        return Err(Error::invalid("days", "1 to 366"));
    }
    let m = meter(cx, name).await?;
    let read = cx.read_db();
    let nodes = db::calibration::meter_nodes(read, m.id).await?;
    let ids: Vec<_> = nodes.iter().map(|n| n.0).collect();
    // To where all of the site's data is rolled up, as the site's other figures.
    let (gpu_waits, node_waits) = super::closure::site_waits(read, m.site_id).await?;
    let cut = super::closure::figures_cut(Utc::now(), &[gpu_waits, node_waits]);
    let from = cut - Duration::days(days);
    let mut models: Vec<String> = nodes.iter().flat_map(|n| n.2.clone()).collect();
    models.sort();
    models.dedup();
    let mut out = Calibration {
        meter: m.name.clone(),
        site: m.site.clone(),
        nodes: nodes.iter().map(|n| n.1.clone()).collect(),
        models,
        days: Vec::new(),
        drift: None,
        cut,
    };
    if ids.is_empty() {
        return Ok(out);
    }
    let gpus = db::calibration::gpu_count(read, &ids).await?;
    let readings = db::closure::one_meter_readings(read, m.site_id, m.id, from, cut).await?;
    let metered = crate::analytics::closure::meter_it_by_hour(
        &readings,
        from.timestamp_millis(),
        cut.timestamp_millis(),
    );
    let pairs: Vec<HourPair> = db::calibration::collectors_by_hour(read, &ids, from, cut)
        .await?
        .into_iter()
        .map(|(hour, gpu_j, node_j, covered_s)| {
            let (meter_j, meter_covered_s) = metered
                .get(&hour.timestamp_millis())
                .copied()
                .unwrap_or((0.0, 0.0));
            HourPair {
                hour_ms: hour.timestamp_millis(),
                meter_j,
                meter_covered_s,
                collectors_j: gpu_j + node_j,
                gpu_covered_s: covered_s,
            }
        })
        .collect();
    out.days = calibration::daily(&pairs, gpus);
    out.drift = calibration::drift(&out.days);
    Ok(out)
}
