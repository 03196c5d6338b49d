//! Simulated GPUs for machines without them, and the demo's power-cap experiment.
//!
//! Each GPU model carries the response of a training job to a power cap, as relative time and relative
//! energy versus the default cap, shaped on the first paper (Figure 1: BERT on V100 at 150 W took
//! 108.5 % of the time and 87.7 % of the energy; Figure 2: 100 W is ~31 % slower; Figure 3: T4 gains
//! nothing below its 70 W default). A job's mean power at cap c is then P_default x E(c) / T(c): lower
//! cap, lower power, longer time. Readings fluctuate around that mean (a slow oscillation plus noise),
//! never above the cap. The energy counter integrates exactly what is reported, so the simulator knows
//! the true energy of every job (its ledger), which end-to-end tests compare with the server's numbers.
//! Deterministic for a seed and a sequence of poll times.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use wattlas_protocol::{
    Allocation, GpuIdentity, GpuSample, NewJob, NodeEnergyKind, NodeEnergyReading,
};

use super::{Event, Poll, Source};

/// A simulated GPU model.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuModel {
    /// NVML-style name.
    pub name: &'static str,
    /// Default power limit, W.
    pub default_limit_w: f64,
    /// Idle power, W.
    pub idle_w: f64,
    /// SM clock at full speed, MHz.
    pub sm_max_mhz: f64,
    /// Memory a training job holds, MiB.
    pub job_mem_mib: f64,
    /// (cap / default cap, relative time, relative energy), ascending.
    pub response: &'static [(f64, f64, f64)],
}

/// Mean power of the workload at the default cap, as a share of that cap.
const LOAD_SHARE: f64 = 0.58;

const MODELS: &[GpuModel] = &[
    GpuModel {
        name: "Tesla V100-SXM2-32GB",
        default_limit_w: 250.0,
        idle_w: 39.0,
        sm_max_mhz: 1530.0,
        job_mem_mib: 28_500.0,
        response: &[
            (0.4, 1.314, 0.86),
            (0.6, 1.085, 0.877),
            (0.8, 1.02, 0.93),
            (1.0, 1.0, 1.0),
        ],
    },
    GpuModel {
        name: "NVIDIA A100-SXM4-40GB",
        default_limit_w: 250.0,
        idle_w: 52.0,
        sm_max_mhz: 1410.0,
        job_mem_mib: 36_000.0,
        response: &[
            (0.4, 1.35, 0.80),
            (0.6, 1.10, 0.80),
            (0.8, 1.03, 0.86),
            (1.0, 1.0, 1.0),
        ],
    },
    GpuModel {
        name: "Tesla T4",
        default_limit_w: 70.0,
        idle_w: 10.0,
        sm_max_mhz: 1590.0,
        job_mem_mib: 14_000.0,
        response: &[(0.5, 1.6, 1.05), (0.75, 1.2, 1.02), (1.0, 1.0, 1.0)],
    },
    GpuModel {
        name: "Tesla K80",
        default_limit_w: 150.0,
        idle_w: 28.0,
        sm_max_mhz: 875.0,
        job_mem_mib: 11_000.0,
        response: &[(0.67, 1.15, 0.97), (1.0, 1.0, 1.0)],
    },
    GpuModel {
        name: "NVIDIA H100 80GB HBM3",
        default_limit_w: 700.0,
        idle_w: 70.0,
        sm_max_mhz: 1980.0,
        job_mem_mib: 72_000.0,
        response: &[
            (0.4, 1.4, 0.85),
            (0.6, 1.12, 0.84),
            (0.8, 1.03, 0.9),
            (1.0, 1.0, 1.0),
        ],
    },
];

impl GpuModel {
    /// A model by short name (`V100`, `A100`, `T4`, `K80`, `H100`), case-insensitive.
    pub fn named(short: &str) -> Option<GpuModel> {
        let short = short.to_ascii_uppercase();
        MODELS
            .iter()
            .find(|m| m.name.to_ascii_uppercase().contains(&short))
            .cloned()
    }

    /// Relative time and energy at `cap_w`, interpolated between the model's points.
    pub(crate) fn response_at(&self, cap_w: f64) -> (f64, f64) {
        let f = cap_w / self.default_limit_w;
        let pts = self.response;
        if f <= pts[0].0 {
            return (pts[0].1, pts[0].2);
        }
        for w in pts.windows(2) {
            let (a, b) = (w[0], w[1]);
            if f <= b.0 {
                let x = (f - a.0) / (b.0 - a.0);
                return (a.1 + (b.1 - a.1) * x, a.2 + (b.2 - a.2) * x);
            }
        }
        (1.0, 1.0)
    }

    /// Mean power of the workload at `cap_w`.
    pub(crate) fn mean_power_w(&self, cap_w: f64) -> f64 {
        let (t, e) = self.response_at(cap_w);
        (LOAD_SHARE * self.default_limit_w * e / t).min(cap_w)
    }
}

/// Settings of the simulated source.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Node name (in GPU UUIDs and job ids).
    pub node: String,
    /// Number of GPUs.
    pub gpus: u32,
    /// Model.
    pub model: GpuModel,
    /// Random seed.
    pub seed: u64,
    /// Experiment caps, W; empty: no experiment, the GPUs idle.
    pub caps: Vec<f64>,
    /// GPUs per experiment job.
    pub gpus_per_job: u32,
    /// Seconds a job takes at the default cap.
    pub job_seconds: f64,
    /// Jobs per GPU group before it idles for good; `None`: forever.
    pub jobs_per_group: Option<u32>,
    /// Owner of the experiment jobs.
    pub user: String,
    /// Power limits set by `wattlas-collector cap set` (GPU index -> W), read every second; they win
    /// over the experiment's caps, as a driver's limit would.
    pub limits_file: Option<std::path::PathBuf>,
    /// Keep every GPU's counter at every poll in the ledger.
    pub trace: bool,
}

/// What the simulator emitted: the truth the server's numbers are checked against.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Ledger {
    /// Samples emitted.
    pub samples_emitted: u64,
    /// Per job: energy the job's GPUs counted between its start and end polls.
    pub jobs: BTreeMap<String, LedgerJob>,
    /// With `trace`: at every poll, its time (ms) and each GPU's energy counter (mJ) as emitted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<(i64, Vec<f64>)>,
}

/// One job in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LedgerJob {
    /// Start.
    pub start: DateTime<Utc>,
    /// End, once ended.
    pub end: Option<DateTime<Utc>>,
    /// Cap, W.
    pub cap_w: f64,
    /// Energy counted so far, J.
    pub energy_j: f64,
}

struct SimGpu {
    limit_w: f64,
    energy_mj: f64,
    power_w: f64,
}

struct Group {
    gpus: Vec<u32>,
    cap_w: f64,
    job: Option<(String, f64, Vec<f64>)>,
    jobs_started: u32,
    rest_until: Option<DateTime<Utc>>,
}

/// The simulated source.
pub struct SimulatedSource {
    config: SimConfig,
    rng: ChaCha8Rng,
    gpus: Vec<SimGpu>,
    groups: Vec<Group>,
    last: Option<DateTime<Utc>>,
    elapsed_s: f64,
    ledger: Ledger,
    /// Limits from the limits file, and when it was last read (elapsed s).
    external: std::collections::BTreeMap<u32, f64>,
    external_read_at: Option<f64>,
    /// The simulated node's CPU and DRAM counters (µJ) and when they were last advanced.
    node_counters: [f64; 4],
    node_last: Option<DateTime<Utc>>,
}

/// The simulated node's counters: two packages and their DRAM, as (zone, kind, idle W, W at full
/// GPU load, wraps at µJ); the wrap points are a real Xeon's.
const SIM_ZONES: [(&str, NodeEnergyKind, f64, f64, u64); 4] = [
    (
        "package-0",
        NodeEnergyKind::Cpu,
        55.0,
        150.0,
        262_143_328_850,
    ),
    (
        "package-0/dram",
        NodeEnergyKind::Dram,
        9.0,
        15.0,
        65_712_999_613,
    ),
    (
        "package-1",
        NodeEnergyKind::Cpu,
        55.0,
        150.0,
        262_143_328_850,
    ),
    (
        "package-1/dram",
        NodeEnergyKind::Dram,
        9.0,
        15.0,
        65_712_999_613,
    ),
];

/// Seconds a GPU group rests between two experiment jobs.
const REST_S: i64 = 5;

impl SimulatedSource {
    /// A simulator in its initial state.
    pub fn new(config: SimConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let gpus = (0..config.gpus)
            .map(|_| SimGpu {
                limit_w: config.model.default_limit_w,
                // The counter counts from the driver's load, not from zero.
                energy_mj: rng.gen_range(1.0e8..5.0e9_f64).round(),
                power_w: config.model.idle_w,
            })
            .collect();
        let mut groups = Vec::new();
        if !config.caps.is_empty() {
            let per = config.gpus_per_job as usize;
            for (i, chunk) in (0..config.gpus).collect::<Vec<_>>().chunks(per).enumerate() {
                if chunk.len() < per {
                    break;
                }
                groups.push(Group {
                    gpus: chunk.to_vec(),
                    cap_w: config.caps[i % config.caps.len()],
                    job: None,
                    jobs_started: 0,
                    rest_until: None,
                });
            }
        }
        Self {
            config,
            rng,
            gpus,
            groups,
            last: None,
            elapsed_s: 0.0,
            ledger: Ledger::default(),
            node_counters: [1.0e9, 2.0e8, 3.0e9, 4.0e8],
            node_last: None,
            external: Default::default(),
            external_read_at: None,
        }
    }

    /// What was emitted so far.
    #[cfg(test)]
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Applies the limits file: GPUs in it take its limit; a GPU taken out of it goes back to its
    /// experiment cap or the default.
    fn apply_external_limits(&mut self) {
        let Some(path) = &self.config.limits_file else {
            return;
        };
        if self
            .external_read_at
            .is_some_and(|t| self.elapsed_s - t < 1.0)
        {
            return;
        }
        self.external_read_at = Some(self.elapsed_s);
        let limits = match crate::cap::read_sim_limits(path) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the power limits file");
                return;
            }
        };
        for (i, g) in self.gpus.iter_mut().enumerate() {
            let i = i as u32;
            match limits.get(&i) {
                Some(w) => g.limit_w = *w,
                None if self.external.contains_key(&i) => {
                    g.limit_w = self
                        .groups
                        .iter()
                        .find(|grp| grp.job.is_some() && grp.gpus.contains(&i))
                        .map_or(self.config.model.default_limit_w, |grp| grp.cap_w);
                }
                None => {}
            }
        }
        self.external = limits;
    }

    fn start_jobs(&mut self, now: DateTime<Utc>, events: &mut Vec<Event>) {
        for gi in 0..self.groups.len() {
            let g = &self.groups[gi];
            let resting = g.rest_until.is_some_and(|t| now < t);
            let exhausted = self
                .config
                .jobs_per_group
                .is_some_and(|n| g.jobs_started >= n);
            if g.job.is_some() || resting || exhausted {
                continue;
            }
            let id = format!("{}-g{}-{}", self.config.node, gi, now.timestamp_millis());
            let cap = g.cap_w;
            let gpus = g.gpus.clone();
            let start_counters: Vec<f64> = gpus
                .iter()
                .map(|i| self.gpus[*i as usize].energy_mj)
                .collect();
            for i in &gpus {
                let limit = self.external.get(i).copied().unwrap_or(cap);
                self.gpus[*i as usize].limit_w = limit;
            }
            let mut tags = BTreeMap::new();
            tags.insert("workload".to_owned(), "bert-mlm".to_owned());
            tags.insert("power_cap_w".to_owned(), format!("{cap:.0}"));
            tags.insert("source".to_owned(), "simulated".to_owned());
            events.push(Event::JobStart(Box::new(NewJob {
                id: id.clone(),
                user: self.config.user.clone(),
                name: format!("bert-mlm at {cap:.0} W"),
                site: None,
                start: now,
                end: None,
                tags,
                allocations: vec![Allocation {
                    node: self.config.node.clone(),
                    gpus: gpus.clone(),
                    mig: vec![],
                    cpus: None,
                }],
                unknown_gpus: vec![],
                scheduler: Default::default(),
                nodes: vec![],
            })));
            self.ledger.jobs.insert(
                id.clone(),
                LedgerJob {
                    start: now,
                    end: None,
                    cap_w: cap,
                    energy_j: 0.0,
                },
            );
            let g = &mut self.groups[gi];
            g.jobs_started += 1;
            g.job = Some((id, 0.0, start_counters));
        }
    }
}

impl Source for SimulatedSource {
    fn identities(&self) -> Vec<GpuIdentity> {
        (0..self.config.gpus)
            .map(|i| GpuIdentity {
                index: i,
                uuid: format!("GPU-sim-{:08x}-{}-{i}", self.config.seed, self.config.node),
                model: self.config.model.name.to_owned(),
                default_power_limit_w: Some(self.config.model.default_limit_w),
                keep_known: false,
            })
            .collect()
    }

    fn poll(&mut self, now: DateTime<Utc>) -> Poll {
        let mut poll = Poll::default();
        let dt = self.last.map_or(0.0, |l| {
            ((now - l).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0)
        });
        self.last = Some(now);
        self.elapsed_s += dt;

        // Energy over the interval just ended, at the power reported at its start (what the counter saw).
        for g in &mut self.gpus {
            g.energy_mj += g.power_w * dt * 1000.0;
        }
        // Progress of running jobs; those that finished end now.
        for group in &mut self.groups {
            let Some((id, progress, start)) = &mut group.job else {
                continue;
            };
            // The work goes at the pace of the limit the GPUs actually have.
            let limit = group
                .gpus
                .first()
                .map_or(group.cap_w, |i| self.gpus[*i as usize].limit_w);
            let (t_rel, _) = self.config.model.response_at(limit);
            *progress += dt / (self.config.job_seconds * t_rel);
            let energy_j: f64 = group
                .gpus
                .iter()
                .zip(start.iter())
                .map(|(i, s)| (self.gpus[*i as usize].energy_mj.round() - s.round()) / 1000.0)
                .sum();
            if let Some(entry) = self.ledger.jobs.get_mut(id.as_str()) {
                entry.energy_j = energy_j;
            }
            if *progress >= 1.0 {
                if let Some(entry) = self.ledger.jobs.get_mut(id.as_str()) {
                    entry.end = Some(now);
                }
                poll.events.push(Event::JobEnd {
                    id: id.clone(),
                    end: now,
                });
                group.job = None;
                group.rest_until = Some(now + chrono::Duration::seconds(REST_S));
            }
        }
        self.start_jobs(now, &mut poll.events);
        self.apply_external_limits();

        let busy: Vec<bool> = (0..self.gpus.len())
            .map(|i| {
                self.groups
                    .iter()
                    .any(|g| g.job.is_some() && g.gpus.contains(&(i as u32)))
            })
            .collect();
        let model = self.config.model.clone();
        for (i, g) in self.gpus.iter_mut().enumerate() {
            let (power, util, mem, sm) = if busy[i] {
                let mean = model.mean_power_w(g.limit_w);
                let wave = 0.06 * (self.elapsed_s * std::f64::consts::TAU / 20.0 + i as f64).sin();
                let noise: f64 = self.rng.gen_range(-0.02..0.02);
                let p = (mean * (1.0 + wave + noise)).clamp(model.idle_w, g.limit_w);
                let (t_rel, _) = model.response_at(g.limit_w);
                let util = (97.0 + self.rng.gen_range(-2.0..2.0_f64)).min(100.0);
                (p, util, model.job_mem_mib, model.sm_max_mhz / t_rel)
            } else {
                let p = model.idle_w + self.rng.gen_range(-0.5..0.5);
                (p, 0.0, 300.0, 210.0)
            };
            // NVML reports whole milliwatts and millijoules.
            g.power_w = (power * 1000.0).round() / 1000.0;
            poll.samples.push(GpuSample {
                time: now,
                gpu: i as u32,
                power_w: g.power_w,
                energy_mj: Some(g.energy_mj.round() as u64),
                power_limit_w: Some(g.limit_w),
                util_pct: Some(util.round()),
                mem_used_mib: Some(mem),
                temp_c: Some((30.0 + g.power_w * 0.18).round()),
                sm_clock_mhz: Some(sm.round()),
                power_instant_w: None,
                power_source: None,
            });
        }
        self.ledger.samples_emitted += poll.samples.len() as u64;
        if self.config.trace {
            let counters = self.gpus.iter().map(|g| g.energy_mj.round()).collect();
            self.ledger
                .counters
                .push((now.timestamp_millis(), counters));
        }
        poll
    }

    fn finish(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        let mut events = Vec::new();
        for group in &mut self.groups {
            if let Some((id, _, _)) = group.job.take() {
                if let Some(entry) = self.ledger.jobs.get_mut(id.as_str()) {
                    entry.end = Some(now);
                }
                events.push(Event::JobEnd { id, end: now });
            }
        }
        events
    }

    fn node_energy(&mut self, now: DateTime<Utc>) -> Vec<NodeEnergyReading> {
        // The CPUs work with the GPUs: package and DRAM power between idle and full with the GPUs'
        // mean load (power above idle over the headroom to the limit).
        let idle = self.config.model.idle_w;
        let load = if self.gpus.is_empty() {
            0.0
        } else {
            self.gpus
                .iter()
                .map(|g| ((g.power_w - idle) / (g.limit_w - idle).max(1.0)).clamp(0.0, 1.0))
                .sum::<f64>()
                / self.gpus.len() as f64
        };
        let dt = self.node_last.map_or(0.0, |l| {
            ((now - l).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0)
        });
        self.node_last = Some(now);
        SIM_ZONES
            .iter()
            .zip(self.node_counters.iter_mut())
            .map(|((zone, kind, idle_w, full_w, max), counter)| {
                let w = idle_w + (full_w - idle_w) * load;
                *counter = (*counter + w * dt * 1e6) % (*max as f64 + 1.0);
                NodeEnergyReading {
                    time: now,
                    zone: (*zone).to_owned(),
                    kind: *kind,
                    energy_uj: *counter as u64,
                    max_energy_range_uj: *max,
                }
            })
            .collect()
    }

    fn ledger_json(&self) -> Option<String> {
        if self.ledger.counters.is_empty() {
            serde_json::to_string_pretty(&self.ledger).ok()
        } else {
            serde_json::to_string(&self.ledger).ok()
        }
    }
}

#[cfg(test)]
mod tests;
