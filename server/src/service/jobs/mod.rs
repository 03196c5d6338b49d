//! Jobs: a job's context (its row and allocations, read once per request), its energy integrated over
//! its samples and charged at each hour's PUE and carbon intensity, and the stored summaries lists use.

pub(crate) mod coverage;
pub(crate) mod list;
pub(crate) mod register;
pub(crate) mod series;
pub(crate) mod timing;

use crate::ids::{NodeId, SiteId};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use wattlas_protocol::{Allocation, JobView, SharedGpu};

use super::{Error, Result};
use crate::analytics::node_energy::{self, NodeShare, Occupant};
use crate::analytics::sharing;
use crate::analytics::uncertainty;
use crate::db;
use crate::db::energy::JobEnergy;
use crate::service::caller::JobScope;
use crate::service::Context;

/// `read` of each node at once (each its own rows and connection), the results in the nodes' order; a
/// panic in one is the caller's, as if it had run here.
pub(crate) async fn per_node<T, E, F, Fut>(
    nodes: &[db::energy::NodeGpus],
    read: F,
) -> std::result::Result<Vec<T>, E>
where
    F: Fn(db::energy::NodeGpus) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let mut reads = tokio::task::JoinSet::new();
    for (i, node) in nodes.iter().cloned().enumerate() {
        let read = read(node);
        reads.spawn(async move { (i, read.await) });
    }
    let mut done = Vec::with_capacity(nodes.len());
    while let Some(joined) = reads.join_next().await {
        // The set is never aborted: an error here is a panic.
        let (i, result) = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        done.push((i, result?));
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, t)| t).collect())
}

/// What every view of a job starts from: its row and its allocated GPUs by node, read once.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job.
    pub job: db::jobs::Job,
    /// Its allocated GPUs, by node.
    pub nodes: Vec<db::energy::NodeGpus>,
}

impl JobContext {
    /// The job the scope may see, with its allocations; others are `NotFound` exactly as a job that
    /// does not exist.
    pub(crate) async fn load(cx: &Context, scope: &JobScope, id: &str) -> Result<Self> {
        let job = visible_job(cx, scope, id).await?;
        Self::of(cx, job).await
    }

    /// A job's context from its row.
    pub async fn of(cx: &Context, job: db::jobs::Job) -> Result<Self> {
        Self::with_allocations(cx, &cx.db, job).await
    }

    /// A job's context, its allocations read through `db` (the pool, or a transaction).
    async fn with_allocations(
        cx: &Context,
        db: impl sqlx::PgExecutor<'_>,
        job: db::jobs::Job,
    ) -> Result<Self> {
        cx.metrics.allocation_read();
        let allocated = db::jobs::allocations(db, &job.id).await?;
        Ok(Self {
            job,
            nodes: db::energy::node_gpus(&allocated),
        })
    }

    /// A job's context as a transaction that wrote it sees it, before its commit: what a registration
    /// answers, without reading it again afterwards.
    pub(crate) async fn in_transaction(
        cx: &Context,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        id: &str,
    ) -> Result<Self> {
        let job = db::jobs::by_id(&mut **tx, id)
            .await?
            .ok_or_else(|| Error::internal(format!("job {id} vanished while being written")))?;
        Self::with_allocations(cx, &mut **tx, job).await
    }

    /// GPUs allocated.
    pub(crate) fn gpu_count(&self) -> usize {
        self.nodes.iter().map(|n| n.gpus.len()).sum()
    }

    /// The job's span in ms since the epoch: start to end (or `now` while it runs).
    pub(crate) fn span_ms(&self, now: DateTime<Utc>) -> (i64, i64) {
        let from_ms = self.job.start_time.timestamp_millis();
        let to_ms = self
            .job
            .end_time
            .unwrap_or(now)
            .timestamp_millis()
            .max(from_ms);
        (from_ms, to_ms)
    }

    /// The job's energy over its span so far, in buckets of `bucket_ms` (whole minutes): its GPUs', and
    /// its share of its nodes' CPU and DRAM energy.
    pub(crate) async fn integrate(
        &self,
        cx: &Context,
        now: DateTime<Utc>,
        bucket_ms: i64,
    ) -> Result<Energy> {
        cx.metrics.energy_integration();
        let (from_ms, to_ms) = self.span_ms(now);
        let (gpu, shared) = self.gpu_energy(cx, from_ms, to_ms, bucket_ms).await?;
        let bucket_ms = (bucket_ms / db::energy::MINUTE_MS).max(1) * db::energy::MINUTE_MS;
        let mut node = NodeEnergy::default();
        let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.node_id).collect();
        let cpus = db::node_energy::node_cpus(&cx.db, &ids).await?;
        // Readings come every few seconds; a minute without one is a gap (the collector was away).
        let max_gap_ms = cx.config.max_gap_ms.max(60_000);
        for n in &self.nodes {
            let occupants = db::node_energy::occupants(&cx.db, n.node_id, from_ms, to_ms).await?;
            let me = occupants.iter().position(|(id, _)| *id == self.job.id);
            let occupants: Vec<Occupant> = occupants.into_iter().map(|(_, o)| o).collect();
            let share = match me {
                Some(me) => {
                    let part = NodePart {
                        node_id: n.node_id,
                        occupants: &occupants,
                        me,
                        node_cpus: cpus.get(&n.node_id).copied(),
                        bucket_ms,
                        max_gap_ms,
                    };
                    part.share(cx, from_ms, to_ms).await?
                }
                None => NodeShare::default(),
            };
            if share.measured {
                node.measured += 1;
                node.cpu_j += share.cpu_j;
                node.dram_j += share.dram_j;
                for (b, j) in share.by_bucket {
                    *node.by_bucket.entry(b).or_default() += j;
                }
            } else {
                node.unmeasured.push(n.name.clone());
            }
        }
        Ok(Energy { gpu, node, shared })
    }

    /// The GPUs' energy over `[from_ms, to_ms)`: whole where the job held a GPU alone; where other jobs
    /// held it too, cut where they came and went and each piece split equally between its holders.
    async fn gpu_energy(
        &self,
        cx: &Context,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<(JobEnergy, Vec<SharedGpu>)> {
        let max_gap_ms = cx.config.max_gap_ms;
        let others = db::jobs::shared_gpus(&cx.db, &self.job.id, from_ms, to_ms).await?;
        let has_mig = self.nodes.iter().any(|n| !n.mig.is_empty());
        if others.is_empty() && !has_mig {
            let e =
                db::energy::job_energy(&cx.db, &self.nodes, from_ms, to_ms, max_gap_ms, bucket_ms)
                    .await?;
            return Ok((e, Vec::new()));
        }
        // A MIG instance is the job's own slices of its GPU: charged their fraction of the GPU's energy,
        // whoever holds the other instances.
        let mig: BTreeMap<(NodeId, u32), u32> = self
            .nodes
            .iter()
            .flat_map(|n| n.mig.iter().map(|(g, (_, s))| ((n.node_id, *g), *s)))
            .collect();
        let mut by_gpu: BTreeMap<(NodeId, u32), Vec<(i64, i64)>> = BTreeMap::new();
        for (node, gpu, start, end) in others {
            if let Ok(gpu) = u32::try_from(gpu) {
                if !mig.contains_key(&(node, gpu)) {
                    by_gpu.entry((node, gpu)).or_default().push((start, end));
                }
            }
        }
        // The GPUs held alone, as one integration.
        let alone: Vec<db::energy::NodeGpus> = self
            .nodes
            .iter()
            .map(|n| db::energy::NodeGpus {
                gpus: n
                    .gpus
                    .iter()
                    .copied()
                    .filter(|g| {
                        !by_gpu.contains_key(&(n.node_id, *g))
                            && !mig.contains_key(&(n.node_id, *g))
                    })
                    .collect(),
                ..n.clone()
            })
            .collect();
        let mut out =
            db::energy::job_energy(&cx.db, &alone, from_ms, to_ms, max_gap_ms, bucket_ms).await?;
        let mut shared = Vec::new();
        for (&(node_id, gpu), &slices) in &mig {
            let Some(node) = self.nodes.iter().find(|n| n.node_id == node_id) else {
                continue;
            };
            let one = [node.only(gpu)];
            let part =
                db::energy::job_energy(&cx.db, &one, from_ms, to_ms, max_gap_ms, bucket_ms).await?;
            let fraction = f64::from(slices) / f64::from(wattlas_protocol::MIG_SLICES);
            out.add_share(part, fraction);
        }
        for ((node_id, gpu), spans) in by_gpu {
            let Some(node) = self.nodes.iter().find(|n| n.node_id == node_id) else {
                continue;
            };
            let one = [node.only(gpu)];
            let mut info = SharedGpu {
                node: node.name.clone(),
                gpu,
                shared_s: 0.0,
                max_jobs: 1,
            };
            for (a, b, holders) in sharing::segments(from_ms, to_ms, &spans) {
                let part =
                    db::energy::job_energy(&cx.db, &one, a, b, max_gap_ms, bucket_ms).await?;
                out.add_share(part, 1.0 / f64::from(holders));
                if holders > 1 {
                    info.shared_s += (b - a) as f64 / 1000.0;
                    info.max_jobs = info.max_jobs.max(holders);
                }
            }
            if info.shared_s > 0.0 {
                shared.push(info);
            }
        }
        Ok((out, shared))
    }
}

/// Spans up to this long read a node's raw CPU and DRAM readings; longer ones read rolled-up minutes
/// for their whole minutes where nobody came or went.
const NODE_RAW_SPAN_MS: i64 = 30 * 60_000;

/// One node of a job, for its share of the node's CPU and DRAM energy.
struct NodePart<'a> {
    node_id: NodeId,
    occupants: &'a [Occupant],
    me: usize,
    node_cpus: Option<u32>,
    bucket_ms: i64,
    max_gap_ms: i64,
}

impl NodePart<'_> {
    /// The job's share over `[from_ms, to_ms)` from raw readings.
    async fn raw(&self, cx: &Context, from_ms: i64, to_ms: i64) -> Result<NodeShare> {
        let zones =
            db::node_energy::readings(&cx.db, self.node_id, from_ms, to_ms, self.max_gap_ms)
                .await?;
        Ok(node_energy::attribute(
            &zones,
            self.occupants,
            self.me,
            self.node_cpus,
            from_ms,
            to_ms,
            self.bucket_ms,
            self.max_gap_ms,
        ))
    }

    /// The job's share over `[from_ms, to_ms)`, from raw readings where the span is short, and else from
    /// rolled-up minutes for its whole minutes in which no job on the node starts or ends (raw readings
    /// for the rest: its partial first and last minutes, those minutes, and minutes not rolled up yet).
    async fn share(&self, cx: &Context, from_ms: i64, to_ms: i64) -> Result<NodeShare> {
        if to_ms - from_ms <= NODE_RAW_SPAN_MS {
            return self.raw(cx, from_ms, to_ms).await;
        }
        let (m_first, m_last) = (
            db::energy::ceil_minute(from_ms),
            db::energy::floor_minute(to_ms),
        );
        let rolled = db::node_energy::minutes(&cx.db, self.node_id, m_first, m_last).await?;
        let events: std::collections::BTreeSet<i64> = self
            .occupants
            .iter()
            .flat_map(|o| [o.start_ms, o.end_ms])
            .filter(|t| m_first < *t && *t < m_last && t.rem_euclid(60_000) != 0)
            .map(db::energy::floor_minute)
            .collect();
        // The minutes with readings, never every minute of the span (a job said to have started
        // decades ago walked them all: issue 33, N1).
        let whole: Vec<i64> = rolled
            .iter()
            .flat_map(|(_, z)| z.range(m_first..m_last).map(|(m, _)| *m))
            .collect::<std::collections::BTreeSet<i64>>()
            .into_iter()
            .filter(|m| !events.contains(m))
            .collect();
        let mut out = node_energy::attribute_minutes(
            &rolled,
            self.occupants,
            self.me,
            self.node_cpus,
            &whole,
            self.bucket_ms,
        );
        // The rest of the span, as contiguous ranges, from raw readings.
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        let mut t = from_ms;
        for m in whole {
            if m > t {
                ranges.push((t, m));
            }
            t = m + 60_000;
        }
        if to_ms > t {
            ranges.push((t, to_ms));
        }
        for (a, b) in ranges {
            out.add(self.raw(cx, a, b).await?);
        }
        Ok(out)
    }
}

/// A job's energy: its GPUs', and its share of its nodes' CPU and DRAM.
#[derive(Debug, Clone, Default)]
pub(crate) struct Energy {
    /// The allocated GPUs.
    pub gpu: JobEnergy,
    /// The job's share of its nodes' CPU and DRAM counters.
    pub node: NodeEnergy,
    /// GPUs it shared with other jobs.
    pub shared: Vec<SharedGpu>,
}

/// A job's share of its nodes' CPU and DRAM energy.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeEnergy {
    /// CPU packages, J.
    pub cpu_j: f64,
    /// DRAM, J.
    pub dram_j: f64,
    /// CPU + DRAM per bucket.
    pub by_bucket: BTreeMap<i64, f64>,
    /// Nodes whose counters were read during the job.
    pub measured: usize,
    /// Nodes whose counters were not.
    pub unmeasured: Vec<String>,
}

impl Energy {
    /// IT energy (GPU + CPU + DRAM) per bucket.
    pub(crate) fn it_by_bucket(&self) -> BTreeMap<i64, f64> {
        let mut out = self.gpu.by_bucket.clone();
        for (b, j) in &self.node.by_bucket {
            *out.entry(*b).or_default() += j;
        }
        out
    }
}

/// A job the scope may see; others are `NotFound` exactly as a job that does not exist.
pub(crate) async fn visible_job(cx: &Context, scope: &JobScope, id: &str) -> Result<db::jobs::Job> {
    db::jobs::by_id(&cx.db, id)
        .await?
        .filter(|job| scope.allows(&job.user_name))
        .ok_or_else(|| Error::NotFound(format!("no job '{id}'")))
}

/// Energy per bucket summed into UTC hours (hour start ms -> J).
fn into_hours(by_bucket: &BTreeMap<i64, f64>) -> BTreeMap<i64, f64> {
    let mut out: BTreeMap<i64, f64> = BTreeMap::new();
    for (bucket, j) in by_bucket {
        *out.entry(bucket.div_euclid(db::energy::HOUR_MS) * db::energy::HOUR_MS)
            .or_default() += j;
    }
    out
}

/// IT energy per bucket summed into UTC hours (hour start ms -> J).
pub(crate) fn by_hour(energy: &Energy) -> BTreeMap<i64, f64> {
    into_hours(&energy.it_by_bucket())
}

/// GPU energy per bucket summed into UTC hours (hour start ms -> J), as the summary keeps it.
fn gpu_by_hour(energy: &Energy) -> BTreeMap<i64, f64> {
    into_hours(&energy.gpu.by_bucket)
}

/// The full view of a job from its context and its energy (integrated over the job's span at `now`):
/// with its IT energy per UTC hour.
pub(crate) async fn view(
    cx: &Context,
    ctx: &JobContext,
    energy: &Energy,
    now: DateTime<Utc>,
) -> Result<(JobView, BTreeMap<i64, f64>)> {
    let job = &ctx.job;
    let by_hour = by_hour(energy);
    let charged = charge(cx, job.site_id, &by_hour).await?;
    let facility = charged.facility;
    let total = &energy.gpu.total;
    let node = &energy.node;
    let measured = |j: f64| (node.measured > 0).then_some(j / 3.6e6);
    let gpu_count = ctx.gpu_count() as u32;
    let (from_ms, to_ms) = ctx.span_ms(now);
    let idle = db::closure::idle_allocated(&cx.db, &job.id, db::ts(from_ms), db::ts(to_ms)).await?;
    let duration_s = (to_ms - from_ms) as f64 / 1000.0;
    let coverage = if gpu_count > 0 && duration_s > 0.0 {
        (total.covered_s / (f64::from(gpu_count) * duration_s)).min(1.0)
    } else {
        0.0
    };
    // Where the truth lies (`analytics::uncertainty`): the IT energy widened by each term, the
    // facility energy by the PUE's, the CO2e by the carbon intensity's.
    let it_kwh = (total.energy_j + node.cpu_j + node.dram_j) / 3.6e6;
    let facility_kwh = facility.facility_j / 3.6e6;
    let sensor = sensor_readings(total);
    let bound_terms = uncertainty::it_terms(&uncertainty::ItInputs {
        gpu_kwh: total.energy_j / 3.6e6,
        uncovered_gpu_s: (f64::from(gpu_count) * duration_s - total.covered_s).max(0.0),
        limit_w: total.power_cap_w(),
        cpu_kwh: node.cpu_j / 3.6e6,
        dram_kwh: node.dram_j / 3.6e6,
        aliasing: total.readings.aliasing_share(),
    });
    let it_bounds = uncertainty::interval(it_kwh, &bound_terms);
    let facility_bounds = uncertainty::facility_interval(
        it_kwh,
        it_bounds,
        facility_kwh,
        facility.fallback_share(),
        charged.site.fallback_pue,
    );
    let co2e_kg = charged.carbon.co2e_g.map(|g| g / 1000.0);
    let co2e_bounds = co2e_kg.map(|kg| {
        uncertainty::co2e_interval(
            kg,
            facility_kwh,
            facility_bounds,
            charged.carbon.series_share,
        )
    });
    let (dropped, dropped_s) =
        db::nodes::dropped_for_job(&cx.db, &job.id, db::ts(from_ms), db::ts(to_ms)).await?;
    let lost = (dropped > 0.0).then(|| wattlas_protocol::LostSamples {
        samples: dropped.round() as u64,
        gpu_seconds: dropped_s,
    });
    let embodied_kg = db::scope2::job_embodied_rate(&cx.db, &job.id)
        .await?
        .map(|rate| rate * duration_s / 3600.0);
    let view = JobView {
        co2e_market_kg: charged.market.and_then(|m| m.co2e_g).map(|g| g / 1000.0),
        market_contract_share: charged.market.map_or(0.0, |m| m.contract_share),
        embodied_kg,
        it_energy_kwh_low: Some(it_bounds.0),
        it_energy_kwh_high: Some(it_bounds.1),
        facility_energy_kwh_low: Some(facility_bounds.0),
        facility_energy_kwh_high: Some(facility_bounds.1),
        co2e_kg_low: co2e_bounds.map(|b| b.0),
        co2e_kg_high: co2e_bounds.map(|b| b.1),
        bound_terms,
        sensor: Some(sensor),
        lost,
        running: job.end_time.is_none(),
        id: job.id.clone(),
        user: job.user_name.clone(),
        name: job.name.clone(),
        site: job.site.clone(),
        start: job.start_time,
        end: job.end_time,
        duration_s,
        gpu_count,
        allocations: ctx
            .nodes
            .iter()
            .map(|n| Allocation {
                node: n.name.clone(),
                gpus: n
                    .gpus
                    .iter()
                    .copied()
                    .filter(|g| !n.mig.contains_key(g))
                    .collect(),
                mig: n
                    .mig
                    .iter()
                    .map(|(gpu, (profile, _))| wattlas_protocol::MigInstance {
                        gpu: *gpu,
                        profile: profile.clone(),
                    })
                    .collect(),
                cpus: None,
            })
            .collect(),
        it_energy_kwh: it_kwh,
        gpu_energy_kwh: total.energy_j / 3.6e6,
        cpu_energy_kwh: measured(node.cpu_j),
        dram_energy_kwh: measured(node.dram_j),
        cpu_dram_unmeasured: node.unmeasured.clone(),
        shared_gpus: energy.shared.clone(),
        facility_energy_kwh: facility_kwh,
        pue: facility.pue(),
        pue_fallback_share: facility.fallback_share(),
        // Mean power of all allocated GPUs together: energy per second of the job's covered time.
        avg_power_w: if gpu_count > 0 {
            total.avg_power_w() * f64::from(gpu_count)
        } else {
            0.0
        },
        avg_power_per_gpu_w: (gpu_count > 0).then(|| total.avg_power_w()),
        power_cap_w: total.power_cap_w(),
        coverage,
        energy_method: total.method(),
        samples: total.samples,
        tags: job.tags.0.clone(),
        co2e_kg,
        carbon_series_share: charged.carbon.series_share,
        cost: charged
            .site
            .price_per_kwh
            .map(|p| p * facility.facility_j / 3.6e6),
        currency: charged
            .site
            .price_per_kwh
            .map(|_| charged.site.currency.clone()),
        unknown_gpus: job.unknown_gpus.0.clone(),
        idle_gpu_energy_kwh: idle.reported.then_some(idle.energy_j / 3.6e6),
        idle_gpu_minutes: idle.minutes,
        scheduler: job.scheduler(),
    };
    Ok((view, by_hour))
}

/// How the GPUs' power was read and what the sensor said beside it.
fn sensor_readings(
    total: &crate::analytics::energy::GpuEnergy,
) -> wattlas_protocol::SensorReadings {
    let r = &total.readings;
    let (readings_vs_counter, instant_vs_average) = r.disagreements();
    wattlas_protocol::SensorReadings {
        counter_gpu_s: total.counter_s,
        average_gpu_s: r.average_s,
        instant_gpu_s: r.instant_s,
        unknown_gpu_s: (total.covered_s - total.counter_s - r.average_s - r.instant_s).max(0.0),
        readings_vs_counter,
        instant_vs_average,
        aliasing: r.aliasing_share().is_some(),
    }
}

/// Where a job's GPU energy came from, in words for its page: "energy counter 99.2 %, 1-s averages
/// 0.8 %" of the covered GPU time.
pub(crate) fn read_from(s: &wattlas_protocol::SensorReadings) -> String {
    let Some(shares) = crate::analytics::energy::read_shares([s]) else {
        return "no samples".to_owned();
    };
    [
        "energy counter",
        "1-s averages",
        "instant readings",
        "readings of unknown kind",
    ]
    .iter()
    .zip(shares)
    .filter(|(_, v)| *v > 0.0)
    .map(|(how, v)| format!("{how} {:.1} %", v * 100.0))
    .collect::<Vec<_>>()
    .join(", ")
}

/// What a job's page says of samples its collectors dropped.
pub(crate) fn dropped_note(lost: &wattlas_protocol::LostSamples) -> String {
    format!(
        "Lost before they reached Wattlas: {} sample{} ({:.0} GPU-seconds of this job) that a collector \
         dropped when its spool was full (the server was unreachable for longer than the spool holds). \
         That time is uncovered: it lowers the coverage, and the bound reaches the GPUs' power limit over it.",
        lost.samples,
        if lost.samples == 1 { "" } else { "s" },
        lost.gpu_seconds
    )
}

/// What a job's page says where the sensor disagreed with itself.
pub(crate) fn aliasing_note(s: &wattlas_protocol::SensorReadings) -> Option<String> {
    if !s.aliasing {
        return None;
    }
    let mut said = Vec::new();
    if let Some(d) = s.readings_vs_counter {
        said.push(format!(
            "the power readings integrate to {:+.1} % of the energy counter",
            d * 100.0
        ));
    }
    if let Some(d) = s.instant_vs_average {
        said.push(format!(
            "the instant readings to {:+.1} % of the 1-s averages",
            d * 100.0
        ));
    }
    Some(format!(
        "The GPU sensor disagreed with itself: {} over the same intervals. A workload rhythm in step with the sensor's sampling window does this (A100 and H100 boards sample about 25 % of each 100 ms: Yang et al., SC24). The energy is the counter's where there is one; the bound reaches the other reading.",
        said.join(", and ")
    ))
}

/// A job's view integrated now, stored as its summary for lists; by hour, for maintenance.
pub(crate) async fn computed_view_by_hour(
    cx: &Context,
    ctx: &JobContext,
) -> Result<(JobView, BTreeMap<i64, f64>)> {
    let now = Utc::now();
    let energy = ctx.integrate(cx, now, db::energy::HOUR_MS).await?;
    let (view, by_hour) = view(cx, ctx, &energy, now).await?;
    db::jobs::upsert_energy(&cx.db, &view, &by_hour, &gpu_by_hour(&energy)).await?;
    Ok((view, by_hour))
}

/// A job's view integrated now, and stored as its summary.
pub async fn computed_view(cx: &Context, ctx: &JobContext) -> Result<JobView> {
    Ok(computed_view_by_hour(cx, ctx).await?.0)
}

/// Age below which a running job's stored summary is shown as is, s.
const LIST_MAX_AGE_S: i64 = 60;

/// Whether a stored summary can be shown as is: not stale, and computed after the job ended (or, while
/// it runs, within the last minute).
fn fresh(job: &db::jobs::Job, computed_at: DateTime<Utc>, stale: bool, now: DateTime<Utc>) -> bool {
    !stale
        && (job.end_time.is_some_and(|end| computed_at > end)
            || now - computed_at < chrono::Duration::seconds(LIST_MAX_AGE_S))
}

/// A job's stored summary, where fresh.
pub(crate) async fn stored_view(cx: &Context, job: &db::jobs::Job) -> Result<Option<JobView>> {
    Ok(match db::jobs::stored_energy(&cx.db, &job.id).await? {
        Some((summary, at, stale)) if fresh(job, at, stale, Utc::now()) => {
            Some(summary.0.with_derived())
        }
        _ => None,
    })
}

/// A job's view: its stored summary where fresh, else computed now (and stored).
pub(crate) async fn current_view(cx: &Context, job: db::jobs::Job) -> Result<JobView> {
    match stored_view(cx, &job).await? {
        Some(view) => Ok(view),
        None => computed_view(cx, &JobContext::of(cx, job).await?).await,
    }
}

/// The views of listed jobs: stored summaries where fresh, computed (and stored) where not.
pub(crate) async fn listed_views(
    cx: &Context,
    rows: Vec<db::jobs::ListedJob>,
) -> Result<Vec<JobView>> {
    let now = Utc::now();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let fresh = match (&row.summary, row.computed_at, row.stale) {
            (Some(_), Some(at), Some(stale)) => fresh(&row.job, at, stale, now),
            _ => false,
        };
        match row.summary {
            Some(summary) if fresh => out.push(summary.0.with_derived()),
            _ => out.push(computed_view(cx, &JobContext::of(cx, row.job).await?).await?),
        }
    }
    Ok(out)
}

/// A job's IT energy charged hour by hour: facility energy at each hour's PUE, and carbon at each
/// hour's intensity; with the site's settings.
struct Charged {
    facility: crate::analytics::facility::FacilityEnergy,
    carbon: crate::analytics::carbon::Carbon,
    /// Market-based, where the site records contractual instruments.
    market: Option<crate::analytics::carbon::Market>,
    site: db::sites::SiteRow,
}

/// Charges each UTC hour of IT energy the site's energy-weighted PUE and carbon intensity of that hour.
async fn charge(cx: &Context, site_id: SiteId, it_by_hour: &BTreeMap<i64, f64>) -> Result<Charged> {
    let site = db::sites::settings(&cx.db, site_id)
        .await?
        .ok_or_else(|| Error::internal(format!("site {site_id} vanished")))?;
    let (mut pue, mut ci, mut contracts) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
    if let (Some(first), Some(last)) = (it_by_hour.keys().next(), it_by_hour.keys().next_back()) {
        let (from, to) = (db::ts(*first), db::ts(*last + db::energy::HOUR_MS));
        pue = db::facility::hourly(&cx.db, site_id, from, to, db::ts(0))
            .await?
            .iter()
            .map(|h| (h.hour.timestamp_millis(), h.weighted_pue))
            .collect();
        ci = db::carbon::hourly(&cx.db, site_id, from, to).await?;
        contracts = db::scope2::contracts(&cx.db, site_id, from, to)
            .await?
            .into_iter()
            .map(|c| {
                (
                    c.valid_from.timestamp_millis(),
                    c.valid_to.timestamp_millis(),
                    c.g_per_kwh,
                )
            })
            .collect();
    }
    let market = if contracts.is_empty() && !db::scope2::has_contracts(&cx.db, site_id).await? {
        None
    } else {
        Some(crate::analytics::carbon::market(
            it_by_hour,
            &pue,
            site.fallback_pue,
            &ci,
            site.carbon_g_per_kwh,
            &contracts,
        ))
    };
    Ok(Charged {
        market,
        facility: crate::analytics::facility::facility_energy(it_by_hour, &pue, site.fallback_pue),
        carbon: crate::analytics::carbon::carbon(
            it_by_hour,
            &pue,
            site.fallback_pue,
            &ci,
            site.carbon_g_per_kwh,
        ),
        site,
    })
}

/// What a job's page shows of its energy: its view (the stored summary where fresh) and each reported
/// metric against its cumulative energy, from one integration of its samples at most (none where the
/// summary is fresh and nothing was reported).
pub(crate) async fn view_with_progress(
    cx: &Context,
    ctx: &JobContext,
) -> Result<(JobView, wattlas_protocol::JobProgress)> {
    let now = Utc::now();
    let reports = super::progress::reports(cx, &ctx.job).await?;
    let stored = stored_view(cx, &ctx.job).await?;
    let energy = if stored.is_none() || !reports.is_empty() {
        // Minutes where progress needs them; they add up to the hours charging needs.
        let bucket_ms = if reports.is_empty() {
            db::energy::HOUR_MS
        } else {
            db::energy::MINUTE_MS
        };
        ctx.integrate(cx, now, bucket_ms).await?
    } else {
        Energy::default()
    };
    let job = match stored {
        Some(view) => view,
        None => {
            let (view, by_hour) = view(cx, ctx, &energy, now).await?;
            db::jobs::upsert_energy(&cx.db, &view, &by_hour, &gpu_by_hour(&energy)).await?;
            view
        }
    };
    Ok((
        job,
        super::progress::progress_from(&ctx.job, &reports, &energy.it_by_bucket()),
    ))
}

/// Each metric of a job against its cumulative IT energy: integrated here, where the caller has no
/// integration of the job at hand.
pub(crate) async fn progress_of(
    cx: &Context,
    ctx: &JobContext,
) -> Result<wattlas_protocol::JobProgress> {
    let reports = super::progress::reports(cx, &ctx.job).await?;
    if reports.is_empty() {
        return Ok(super::progress::progress_from(
            &ctx.job,
            &reports,
            &BTreeMap::new(),
        ));
    }
    let energy = ctx.integrate(cx, Utc::now(), db::energy::MINUTE_MS).await?;
    Ok(super::progress::progress_from(
        &ctx.job,
        &reports,
        &energy.it_by_bucket(),
    ))
}

/// The power cap most of a job's samples reported, from its stored view (none before it is computed).
pub(crate) async fn stored_power_cap_w(cx: &Context, id: &str) -> Result<Option<f64>> {
    Ok(db::jobs::stored_energy(&cx.db, id)
        .await?
        .and_then(|(view, _, _)| view.0.power_cap_w))
}
