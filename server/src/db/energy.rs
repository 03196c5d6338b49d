//! A job's energy: rollups for the whole minutes already rolled up, raw samples for the rest.
//!
//! Energy over adjacent windows adds up exactly (`analytics::energy`), so a job's window is cut into
//! the whole minutes whose rollups are settled and the edges (partial minutes, and everything from the
//! first pending raw range on), which are computed from raw samples. The two parts never overlap.

use crate::ids::NodeId;
use std::collections::BTreeMap;

use sqlx::PgPool;

use crate::analytics::energy::{energy_buckets, fetch_margin_ms, GpuEnergy};
use crate::db::{rollups, samples};

/// One node's part of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGpus {
    /// Node id.
    pub node_id: NodeId,
    /// Node name.
    pub name: String,
    /// Allocated GPU indices on that node.
    pub gpus: Vec<u32>,
    /// Of those, GPUs held as a MIG instance: GPU -> (profile, compute slices of seven).
    pub mig: BTreeMap<u32, (String, u32)>,
}

impl NodeGpus {
    /// This node with one of its GPUs alone (held whole).
    pub(crate) fn only(&self, gpu: u32) -> NodeGpus {
        NodeGpus {
            node_id: self.node_id,
            name: self.name.clone(),
            gpus: vec![gpu],
            mig: BTreeMap::new(),
        }
    }
}

impl JobEnergy {
    /// Adds `share` (0..1) of another part's energy: a shared GPU's or a MIG instance's. Its covered
    /// time and samples count whole.
    pub(crate) fn add_share(&mut self, mut part: JobEnergy, share: f64) {
        part.total.energy_j *= share;
        self.total.add(&part.total);
        for (bucket, j) in part.by_bucket {
            *self.by_bucket.entry(bucket).or_default() += j * share;
        }
    }
}

/// A job's allocated GPUs grouped by node, in the order given.
pub(crate) fn node_gpus(allocated: &[crate::db::jobs::AllocatedGpu]) -> Vec<NodeGpus> {
    let mut nodes: Vec<NodeGpus> = Vec::new();
    for a in allocated {
        let gpu = a.gpu_index as u32;
        let i = match nodes.iter().position(|n| n.node_id == a.node_id) {
            Some(i) => i,
            None => {
                nodes.push(NodeGpus {
                    node_id: a.node_id,
                    name: a.node.clone(),
                    gpus: Vec::new(),
                    mig: BTreeMap::new(),
                });
                nodes.len() - 1
            }
        };
        nodes[i].gpus.push(gpu);
        if let (Some(profile), Some(slices)) = (&a.mig, a.mig_slices) {
            nodes[i]
                .mig
                .insert(gpu, (profile.clone(), slices.max(0) as u32));
        }
    }
    nodes
}

/// A job's energy: the total, and its IT energy per time bucket (per UTC hour to charge each hour its own
/// PUE; per minute to follow a job's cumulative energy).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct JobEnergy {
    /// All GPUs over the whole window.
    pub total: GpuEnergy,
    /// Start of each bucket (ms) -> joules in that bucket.
    pub by_bucket: BTreeMap<i64, f64>,
}

/// An hour, ms: the facility's PUE is hourly.
pub(crate) const HOUR_MS: i64 = 3_600_000;
/// A minute, ms: the rollups' resolution.
pub(crate) const MINUTE_MS: i64 = 60_000;

/// Energy of the allocated GPUs over `[from_ms, to_ms)`, all GPUs added, and split into buckets of
/// `bucket_ms` (a whole number of minutes) aligned to the epoch.
pub(crate) async fn job_energy(
    db: &PgPool,
    nodes: &[NodeGpus],
    from_ms: i64,
    to_ms: i64,
    max_gap_ms: i64,
    bucket_ms: i64,
) -> Result<JobEnergy, super::Error> {
    let bucket_ms = (bucket_ms / MINUTE_MS).max(1) * MINUTE_MS;
    let mut out = JobEnergy::default();
    if to_ms <= from_ms {
        return Ok(out);
    }
    for node in nodes {
        if node.gpus.is_empty() {
            continue;
        }
        let m_first = ceil_minute(from_ms);
        let m_last = floor_minute(to_ms);
        if m_first < m_last {
            let mut split = m_last;
            let pending = rollups::earliest_pending(
                db,
                node.node_id,
                from_ms - fetch_margin_ms(max_gap_ms),
                to_ms + fetch_margin_ms(max_gap_ms),
            )
            .await?;
            if let Some(p) = pending {
                // The minute holding p - margin is the first whose rollup could still change.
                split = floor_minute(p.timestamp_millis() - fetch_margin_ms(max_gap_ms))
                    .clamp(m_first, m_last);
            }
            for (_, e) in rollups::sum(db, node.node_id, &node.gpus, m_first, split).await? {
                out.total.add(&e);
            }
            for (bucket, j) in
                rollups::energy_by_bucket(db, node.node_id, &node.gpus, m_first, split, bucket_ms)
                    .await?
            {
                *out.by_bucket.entry(bucket).or_default() += j;
            }
            raw_energy(db, node, from_ms, m_first, max_gap_ms, bucket_ms, &mut out).await?;
            raw_energy(db, node, split, to_ms, max_gap_ms, bucket_ms, &mut out).await?;
        } else {
            raw_energy(db, node, from_ms, to_ms, max_gap_ms, bucket_ms, &mut out).await?;
        }
    }
    Ok(out)
}

/// Adds the energy of raw samples over `[from_ms, to_ms)`, split at bucket boundaries.
async fn raw_energy(
    db: &PgPool,
    node: &NodeGpus,
    from_ms: i64,
    to_ms: i64,
    max_gap_ms: i64,
    bucket_ms: i64,
    out: &mut JobEnergy,
) -> Result<(), super::Error> {
    if to_ms <= from_ms {
        return Ok(());
    }
    let raw = samples::fetch(
        db,
        node.node_id,
        &node.gpus,
        from_ms - fetch_margin_ms(max_gap_ms),
        to_ms + fetch_margin_ms(max_gap_ms) + 1,
    )
    .await?;
    for gpu_samples in raw.chunk_by(|a, b| a.gpu == b.gpu) {
        let refs: Vec<_> = gpu_samples.iter().collect();
        for (bucket, part) in energy_buckets(&refs, from_ms, to_ms, max_gap_ms, bucket_ms) {
            *out.by_bucket.entry(bucket).or_default() += part.energy_j;
            out.total.add(&part);
        }
    }
    Ok(())
}

/// Start of the minute holding `t_ms`.
pub(crate) fn floor_minute(t_ms: i64) -> i64 {
    t_ms.div_euclid(60_000) * 60_000
}

/// Start of the first minute at or after `t_ms`.
pub(crate) fn ceil_minute(t_ms: i64) -> i64 {
    -floor_minute(-t_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_rounding() {
        assert_eq!(floor_minute(61_000), 60_000);
        assert_eq!(ceil_minute(61_000), 120_000);
        assert_eq!(ceil_minute(60_000), 60_000);
        assert_eq!(floor_minute(-1), -60_000);
    }
}
