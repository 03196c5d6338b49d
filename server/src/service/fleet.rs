//! The fleet at a glance, for Grafana users (`GET /api/v1/metrics/fleet` in Prometheus' text format): per
//! site and node, never per job (a job id per series would grow without bound): power now, GPUs busy,
//! idle or not reporting, the site's PUE of the last hour, and its GPUs' energy as a counter.

use std::collections::BTreeMap;

use chrono::Utc;

use sqlx::PgPool;

use super::Result;
use crate::db;

/// A GPU reporting within this long is "reporting now", ms.
const NOW_MS: i64 = 60_000;
/// Utilisation from which a GPU counts as busy, %.
const BUSY_PCT: f64 = 5.0;

/// One node now.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NodeNow {
    /// Site.
    pub site: String,
    /// Power of its GPUs' latest samples, W.
    pub power_w: f64,
    /// GPUs at or over 5 % utilisation.
    pub busy: u32,
    /// GPUs reporting, under 5 % (or without utilisation).
    pub idle: u32,
    /// GPUs known but silent for a minute.
    pub not_reporting: u32,
    /// Time of its collector's last accepted batch.
    pub last_seen: Option<chrono::DateTime<Utc>>,
    /// Its clock against the server's, in words, where flagged (`db::nodes::CLOCK_WARN_MS`).
    pub clock_off: Option<String>,
}

/// The fleet now.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Fleet {
    /// Node -> its state.
    pub nodes: BTreeMap<String, NodeNow>,
    /// Site -> PUE of its latest measured hour within the last two.
    pub pue: BTreeMap<String, f64>,
    /// Site -> its GPUs' energy in rolled-up hours, J (a counter: it only grows).
    pub gpu_energy_j: BTreeMap<String, f64>,
}

/// The fleet now, read from `read` (the caller's one pool for its view: `Context::read_db`, the read
/// replica within its bound).
pub(crate) async fn fleet(read: &PgPool) -> Result<Fleet> {
    let mut out = Fleet::default();
    let now = Utc::now().timestamp_millis();
    for n in db::nodes::list(read).await? {
        let known: Vec<u32> = db::nodes::gpus(read, n.id)
            .await?
            .iter()
            .map(|g| g.index)
            .collect();
        // Each GPU's latest sample: (power mW, utilisation in tenths of a percent).
        let mut latest: BTreeMap<u32, (i64, Option<i64>)> = BTreeMap::new();
        for s in db::samples::fetch(read, n.id, &[], now - NOW_MS, now + 1).await? {
            latest.insert(s.gpu, (s.power_mw, s.util_dpct));
        }
        let mut node = NodeNow {
            site: n.site.clone(),
            last_seen: n.last_seen,
            clock_off: n.clock().filter(|c| c.1).map(|c| c.0),
            ..NodeNow::default()
        };
        for (power_mw, util_dpct) in latest.values() {
            node.power_w += *power_mw as f64 / 1000.0;
            if util_dpct.is_some_and(|u| u as f64 / 10.0 >= BUSY_PCT) {
                node.busy += 1;
            } else {
                node.idle += 1;
            }
        }
        node.not_reporting = known.iter().filter(|g| !latest.contains_key(g)).count() as u32;
        out.nodes.insert(n.name, node);
    }
    for site in db::sites::list_with_fallback(read).await? {
        let to = Utc::now();
        let hours = db::facility::hourly(
            read,
            site.id,
            to - chrono::Duration::hours(2),
            to,
            db::ts(0),
        )
        .await?;
        if let Some(h) = hours.iter().rev().find(|h| h.readings > 0) {
            out.pue.insert(site.name.clone(), h.weighted_pue);
        }
        out.gpu_energy_j.insert(
            site.name.clone(),
            db::rollups::site_energy_j(read, site.id).await?,
        );
    }
    Ok(out)
}
