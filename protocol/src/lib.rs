//! Wattlas wire types: the JSON that collectors, scheduler hooks and browsers exchange with the server.
//!
//! This crate owns the shape of every request and response body and the API paths. It owns no I/O: no
//! tokio, axum, sqlx or reqwest here, so the collector and the server agree on types without sharing
//! runtime code. Units are in the field names (`power_w`, `energy_mj`); times are RFC 3339 in UTC.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod codec;
pub mod dcgm;
pub mod paths;
pub mod units;
pub mod wire;

/// Largest plausible power of one GPU; anything above is a broken reading, refused at ingest.
pub const MAX_GPU_POWER_W: f64 = 2000.0;

/// The years a date a caller gives may fall in: the database holds 4713 BC to 294276 AD, chrono
/// panics stepping from its own ends, and no energy was measured outside these.
pub const PLAUSIBLE_YEARS: std::ops::RangeInclusive<i32> = 1970..=2200;

/// The longest time one batch of facility readings may cover, days: they are stored in chunks of 90
/// days, and a batch over 24 years made 101 of them. Importers send a year at most per batch.
pub const MAX_READINGS_SPAN_DAYS: i64 = 366;

/// The highest GPU index a node may have: 64 GPUs a node (nodes have 4 to 16; an index of 2^32 - 1
/// once was stored as -1, and a node once registered 3,000 GPUs).
pub const MAX_GPU_INDEX: u32 = 63;

/// The header a collector sends its clock in with every push (ms since the Unix epoch, as it reads
/// them when it sends): the server keeps each node's offset against its own clock.
pub const CLOCK_HEADER: &str = "wattlas-clock";

/// Identity of one GPU of a node, sent with every batch so the server learns new or swapped GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuIdentity {
    /// NVML index on the node (what `CUDA_VISIBLE_DEVICES` and Slurm's GPU ids refer to).
    pub index: u32,
    /// NVML UUID, e.g. `GPU-5c1b...`.
    pub uuid: String,
    /// Model name as NVML reports it, e.g. `NVIDIA A100-SXM4-40GB`.
    pub model: String,
    /// The board's default power limit in watts, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_power_limit_w: Option<f64>,
    /// Register this GPU only where the node has none at this index, never replacing a known one: an
    /// imported log's identity (often a placeholder where the log names no uuid) must not overwrite what
    /// a collector reported.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_known: bool,
}

/// One 100 ms reading of one GPU. A field the GPU cannot report is absent, never zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    /// When the reading was taken.
    pub time: DateTime<Utc>,
    /// NVML index of the GPU on the node.
    pub gpu: u32,
    /// Power draw in watts.
    pub power_w: f64,
    /// NVML total energy counter in millijoules since the driver loaded (Volta and newer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_mj: Option<u64>,
    /// Enforced power limit in watts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_limit_w: Option<f64>,
    /// GPU utilisation in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub util_pct: Option<f64>,
    /// Memory used in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_used_mib: Option<f64>,
    /// GPU temperature in degrees Celsius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_c: Option<f64>,
    /// SM clock in MHz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<f64>,
    /// The sensor's instant power in watts, where it offers one beside `power_w` (NVML's
    /// `NVML_FI_DEV_POWER_INSTANT` field; nvidia-smi's `power.draw.instant`): charts draw it, energy
    /// comes from the counter or `power_w`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_instant_w: Option<f64>,
    /// What `power_w` is: the sensor's 1-s average or an instant reading; absent where the reader
    /// cannot tell (an nvidia-smi `power.draw` column, a dcgm-exporter series).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_source: Option<PowerSource>,
}

/// What a GPU's power reading is (issue 35, item 3). NVML's `nvmlDeviceGetPowerUsage` returns the
/// power averaged over one second on Ampere and newer GPUs, GA100 aside, and an instant reading on
/// GA100 and older ones (NVML API reference); on A100 and H100 the readings sample about 25 % of each
/// 100 ms (Yang et al., SC24, arXiv 2312.02741).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSource {
    /// The sensor's own average over the last second.
    Average,
    /// An instant reading (of the sensor's last update window).
    Instant,
}

impl PowerSource {
    /// The code a stored block keeps it as.
    pub fn code(self) -> i64 {
        match self {
            Self::Average => 1,
            Self::Instant => 2,
        }
    }

    /// The source of a stored code; `None` for a code no build wrote.
    pub fn of_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Average),
            2 => Some(Self::Instant),
            _ => None,
        }
    }

    /// In words, for pages and statements.
    pub fn words(self) -> &'static str {
        match self {
            Self::Average => "the sensor's 1-s average",
            Self::Instant => "instant readings",
        }
    }
}

/// A batch of samples from one node, `POST /api/v1/ingest/gpu`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuBatch {
    /// Node name. Optional with a node token (the token names the node); required with the admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The node's GPUs (at least those the samples mention, unless the server already knows them).
    #[serde(default)]
    pub gpus: Vec<GpuIdentity>,
    /// The readings, in any order.
    pub samples: Vec<GpuSample>,
    /// The collector's running total of samples it had to drop (spool full), so losses are visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_samples_total: Option<u64>,
    /// Steps of the node's wall clock (over 1 s) seen while these samples were taken; the collector's
    /// stamps slew over them instead of repeating or skipping time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_steps: Option<u64>,
    /// The node's CPU and DRAM energy counters (Linux powercap), read on the sampling tick.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_energy: Vec<NodeEnergyReading>,
    /// The node's logical CPUs: what jobs' `cpus` are a share of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_cpus: Option<u32>,
    /// Samples the collector dropped (its spool full), by GPU and time range, until the server has
    /// acknowledged a batch carrying them: which jobs lost what.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_ranges: Vec<DroppedRange>,
}

/// Samples of one GPU a collector dropped over `[from, to]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedRange {
    /// NVML index of the GPU.
    pub gpu: u32,
    /// The first dropped sample's time.
    pub from: DateTime<Utc>,
    /// The last dropped sample's time.
    pub to: DateTime<Utc>,
    /// Samples dropped in the range.
    pub samples: u64,
}

/// What a job lost to its collectors' drops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LostSamples {
    /// Samples dropped within the job's GPUs and time (a range's samples in proportion to its
    /// overlap).
    pub samples: u64,
    /// GPU-seconds of the job within dropped ranges.
    pub gpu_seconds: f64,
}

/// Which of a node's energy counters a reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeEnergyKind {
    /// A CPU package (RAPL `package-N`).
    Cpu,
    /// The DRAM of a package (RAPL `dram`).
    Dram,
    /// The whole platform (RAPL `psys`), where present: kept, not charged to jobs.
    Psys,
}

/// One reading of one of a node's energy counters, as the hardware counts it: `energy_uj` wraps to 0
/// after `max_energy_range_uj`, and the server unwraps it between consecutive readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEnergyReading {
    /// When it was read.
    pub time: DateTime<Utc>,
    /// The counter, e.g. `package-0`, `package-0/dram`, `psys`.
    pub zone: String,
    /// What it counts.
    pub kind: NodeEnergyKind,
    /// The counter, µJ.
    pub energy_uj: u64,
    /// Where the counter wraps, µJ.
    pub max_energy_range_uj: u64,
}

/// Answer to an accepted batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResult {
    /// Samples stored now.
    pub stored: u64,
    /// Samples the server already had (a retry or a re-import): not stored again.
    pub duplicates: u64,
}

/// One node's part of a job: which of its GPUs the job holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Node name.
    pub node: String,
    /// NVML indices of the GPUs allocated on that node.
    pub gpus: Vec<u32>,
    /// MIG instances the job holds on that node (instead of whole GPUs): each is charged its compute
    /// slices' fraction of its GPU's energy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mig: Vec<MigInstance>,
    /// Logical CPUs the job holds on that node (Slurm's `SLURM_CPUS_ON_NODE`): its share of the node's
    /// CPU and DRAM energy. Absent: it shares equally with the node's other jobs without a count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
}

/// A MIG instance of a GPU (A100, H100: seven compute slices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigInstance {
    /// NVML index of the GPU.
    pub gpu: u32,
    /// The instance's profile as NVIDIA names it, e.g. `3g.40gb` (3 of the GPU's 7 compute slices).
    pub profile: String,
}

impl MigInstance {
    /// Compute slices of the GPU's seven the profile holds (`3g.40gb` -> 3), if it reads as one.
    pub fn slices(&self) -> Option<u32> {
        let n: u32 = self.profile.split_once('g')?.0.parse().ok()?;
        (1..=MIG_SLICES).contains(&n).then_some(n)
    }
}

/// Compute slices of a MIG-capable GPU.
pub const MIG_SLICES: u32 = 7;

/// A GPU a job held together with other jobs for a while: its energy over that time split equally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedGpu {
    /// Node name.
    pub node: String,
    /// GPU index.
    pub gpu: u32,
    /// Seconds of the job during which it was shared.
    pub shared_s: f64,
    /// Most jobs holding it at once.
    pub max_jobs: u32,
}

/// GPUs a job held on a node without anyone saying which (sacct on a shared node): not charged to the
/// job, and said so on its page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownGpus {
    /// Node name.
    pub node: String,
    /// How many GPUs (0: unknown too).
    pub gpus: u32,
}

/// `POST /api/v1/jobs`. Posting the same id again adds allocations (each node's prolog registers its part).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// The scheduler's job id.
    pub id: String,
    /// The user who owns the job.
    pub user: String,
    /// The job's name.
    #[serde(default)]
    pub name: String,
    /// Site name. Optional with a node token (the node's site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Start time.
    pub start: DateTime<Utc>,
    /// End time, when already known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    /// Free key/value tags such as `workload=bert-mlm`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Allocated GPUs per node.
    #[serde(default)]
    pub allocations: Vec<Allocation>,
    /// GPUs held where the scheduler's record cannot say which (not charged; shown on the job's page).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_gpus: Vec<UnknownGpus>,
    /// The scheduler's own fields of the job (Slurm's raw id, account, partition, state).
    #[serde(flatten)]
    pub scheduler: SchedulerFields,
    /// Every node the scheduler's record says the job ran on (an admin's record, e.g. sacct's
    /// NodeList): a part a prolog registered on another node is a conflict, reported, never merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// What the scheduler records of a job beyond its owner, name and times: each absent where no source
/// said it. A record from a second source fills what is absent and never blanks what is there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerFields {
    /// The scheduler's own unique id where the job's id is another form of it (Slurm's `JobIDRaw`:
    /// array task `4_2` is raw job 5, component `9+1` of a heterogeneous job raw job 10). A record
    /// naming a raw id the site already knows merges into that job, whatever id it was registered as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_id: Option<String>,
    /// Account the job was charged to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Partition (queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The scheduler's state of the job as its accounting last said it (`COMPLETED`, `TIMEOUT`,
    /// `CANCELLED`, `NODE_FAIL`, `RUNNING`, ...): only an admin's record (sacct, the sync) sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// `POST /api/v1/jobs/{id}/end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEnd {
    /// End time.
    pub end: DateTime<Utc>,
}

/// How a job's energy was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnergyMethod {
    /// NVML energy counter deltas throughout.
    Counter,
    /// Power integrated by trapezoids throughout.
    Integrated,
    /// Counter where the samples carried it, integrated power elsewhere.
    Mixed,
    /// No samples at all.
    None,
}

/// A job with its measured energy, `GET /api/v1/jobs/{id}` and items of `GET /api/v1/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Scheduler job id.
    pub id: String,
    /// Owner.
    pub user: String,
    /// Name.
    pub name: String,
    /// Site name.
    pub site: String,
    /// Start time.
    pub start: DateTime<Utc>,
    /// End time; absent while the job runs.
    pub end: Option<DateTime<Utc>>,
    /// Whether the job is still running.
    pub running: bool,
    /// Seconds from start to end (to now while running).
    pub duration_s: f64,
    /// Number of allocated GPUs.
    pub gpu_count: u32,
    /// Allocated GPUs per node.
    pub allocations: Vec<Allocation>,
    /// IT energy of the job (so far, while running): GPU + CPU + DRAM, kWh.
    pub it_energy_kwh: f64,
    /// Energy of the allocated GPUs (a shared GPU's share), kWh.
    #[serde(default)]
    pub gpu_energy_kwh: f64,
    /// The job's share of its nodes' CPU package energy, kWh (`None` where no node measured it).
    #[serde(default)]
    pub cpu_energy_kwh: Option<f64>,
    /// The job's share of its nodes' DRAM energy, kWh (`None` where no node measured it).
    #[serde(default)]
    pub dram_energy_kwh: Option<f64>,
    /// Nodes of the job whose CPU and DRAM energy was not measured (no readable powercap counters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_dram_unmeasured: Vec<String>,
    /// GPUs the job shared with other jobs, and for how long: their energy was split between them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_gpus: Vec<SharedGpu>,
    /// IT energy times the site's measured PUE, hour by hour, kWh.
    pub facility_energy_kwh: f64,
    /// Effective PUE of the job: facility / IT energy (absent without IT energy).
    pub pue: Option<f64>,
    /// Share of IT energy in hours without meter data, charged the site's fallback PUE, 0..1.
    pub pue_fallback_share: f64,
    /// Mean power of all allocated GPUs together over the covered time, W.
    pub avg_power_w: f64,
    /// The same per GPU (`avg_power_w / gpu_count`), beside the per-GPU `power_cap_w`; absent without
    /// GPUs. Views stored before it existed get it when read (`JobView::with_derived`).
    #[serde(default)]
    pub avg_power_per_gpu_w: Option<f64>,
    /// Where the true IT energy lies, kWh: the measured value widened by each term of
    /// `bound_terms` (the server's `analytics::uncertainty` model); absent for views stored before.
    #[serde(default)]
    pub it_energy_kwh_low: Option<f64>,
    /// .
    #[serde(default)]
    pub it_energy_kwh_high: Option<f64>,
    /// Where the true facility energy lies, kWh (the IT bound times the PUE's).
    #[serde(default)]
    pub facility_energy_kwh_low: Option<f64>,
    /// .
    #[serde(default)]
    pub facility_energy_kwh_high: Option<f64>,
    /// Where the true CO2e lies, kg (the facility bound times the carbon intensity's).
    #[serde(default)]
    pub co2e_kg_low: Option<f64>,
    /// .
    #[serde(default)]
    pub co2e_kg_high: Option<f64>,
    /// The terms of the IT energy's bound.
    #[serde(default)]
    pub bound_terms: Vec<BoundTerm>,
    /// How the GPUs' power was read and whether the sensor disagreed with itself; absent in views
    /// computed before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<SensorReadings>,
    /// Samples its nodes' collectors dropped within its GPUs and time (a spool full through a long
    /// outage), as they reported the ranges: that time is uncovered, which the coverage and the bound
    /// count; absent where none was reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<LostSamples>,
    /// Market-based CO2e, kg (Scope 2's market-based method): each hour at the factor of the site's
    /// contractual instrument covering it, else at its location-based factor; absent where the site
    /// records no instrument. `co2e_kg` is the location-based figure.
    #[serde(default)]
    pub co2e_market_kg: Option<f64>,
    /// Share of the facility energy an instrument covered.
    #[serde(default)]
    pub market_contract_share: f64,
    /// Embodied CO2e of the job's GPU-hours at the per-model figures admins set, kg: shown apart,
    /// never added to `co2e_kg`; absent where some GPU's model has no figure.
    #[serde(default)]
    pub embodied_kg: Option<f64>,
    /// The enforced power limit most of the job's samples report, W.
    pub power_cap_w: Option<f64>,
    /// Covered GPU-seconds / (allocated GPUs x duration), 0..1.
    pub coverage: f64,
    /// How the energy was obtained.
    pub energy_method: EnergyMethod,
    /// Number of samples behind the numbers.
    pub samples: u64,
    /// Free key/value tags.
    pub tags: BTreeMap<String, String>,
    /// CO2e of the facility energy, kg: each hour at its grid carbon intensity (`None` where the site
    /// has no carbon intensity configured).
    #[serde(default)]
    pub co2e_kg: Option<f64>,
    /// Share of the facility energy charged an hourly carbon-intensity value (the rest: the site's
    /// static value).
    #[serde(default)]
    pub carbon_series_share: f64,
    /// Electricity cost of the facility energy at the site's price (`None` without a price).
    #[serde(default)]
    pub cost: Option<f64>,
    /// Currency of `cost` (ISO 4217).
    #[serde(default)]
    pub currency: Option<String>,
    /// GPUs the job held where the scheduler's record cannot say which: not in its energy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_gpus: Vec<UnknownGpus>,
    /// Energy the allocated GPUs drew in whole minutes of the job in which their utilisation stayed
    /// under 5 % (allocated, idle), kWh; `None` where no rolled-up minute of the job reports
    /// utilisation (yet: minutes are rolled up within seconds while the server keeps up).
    #[serde(default)]
    pub idle_gpu_energy_kwh: Option<f64>,
    /// GPU-minutes of the job at under 5 % utilisation.
    #[serde(default)]
    pub idle_gpu_minutes: u64,
    /// The scheduler's own fields of the job (raw id, account, partition, state).
    #[serde(flatten)]
    pub scheduler: SchedulerFields,
}

/// How a job's GPU power was read (issue 35, item 3), in GPU-seconds of its energy, and two comparisons
/// of the sensor with itself over the same intervals. A disagreement beyond 3 % over a minute or more
/// is what a workload rhythm in step with the sensor's sampling window makes (on A100 and H100 the
/// readings sample about 25 % of each 100 ms: Yang et al., SC24): the job is flagged `aliasing`, its
/// energy still comes from the counter where there is one, and its bound reaches the other reading.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SensorReadings {
    /// GPU-seconds whose energy came from the NVML energy counter.
    pub counter_gpu_s: f64,
    /// GPU-seconds integrated from the sensor's 1-s averages.
    pub average_gpu_s: f64,
    /// GPU-seconds integrated from instant readings.
    pub instant_gpu_s: f64,
    /// GPU-seconds integrated from readings that did not say which they were.
    pub unknown_gpu_s: f64,
    /// Power readings integrated over the counter's intervals relative to the counter (0.05: 5 % more);
    /// absent where under a minute was compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readings_vs_counter: Option<f64>,
    /// Instant readings integrated relative to the power readings over the same intervals; likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instant_vs_average: Option<f64>,
    /// Whether either comparison is beyond 3 %: the job's rhythm aliases with the sensor's cycle.
    pub aliasing: bool,
}

/// One term of an energy bound: how far below and above the measured value it lets the truth lie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundTerm {
    /// Which term: `gpu_sensor`, `gpu_gaps`, `rapl_cpu`, `rapl_dram`.
    pub kind: String,
    /// What it is, in words.
    pub term: String,
    /// kWh below the measured value.
    pub below_kwh: f64,
    /// kWh above.
    pub above_kwh: f64,
}

impl JobView {
    /// Fills what is derived from the stored fields (a view stored before a derived field existed
    /// reads with it).
    pub fn with_derived(mut self) -> Self {
        if self.avg_power_per_gpu_w.is_none() && self.gpu_count > 0 {
            self.avg_power_per_gpu_w = Some(self.avg_power_w / f64::from(self.gpu_count));
        }
        self
    }
}

/// `GET /api/v1/jobs` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    /// One page of the jobs matching the filters, in the order asked for (newest start first).
    pub jobs: Vec<JobView>,
    /// Number of jobs matching the filters (all pages).
    pub total: u64,
    /// Sums over all jobs matching the filters (all pages).
    pub totals: JobTotals,
    /// Jobs in the totals at a figure computed before data that has arrived since (a late import,
    /// meter readings): their figures are being updated.
    #[serde(default)]
    pub updating: u64,
    /// Where the next page starts, when there is one: pass both as query parameters (`after`, and
    /// `after_key` unless absent). As cheap at any depth as the first page, unlike `offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<PageCursor>,
}

/// A keyset cursor of the jobs list: the last job of a page and its sort key as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageCursor {
    /// The job id.
    pub after: String,
    /// Its sort key (a time in RFC 3339, a number, or text); absent for a job without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_key: Option<String>,
}

/// Sums over a filtered set of jobs, from each job's last computed energy (at most about a minute old
/// for running jobs; `pending` jobs have none yet and count as zero).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobTotals {
    /// Jobs.
    pub jobs: u64,
    /// Allocated GPUs x duration, hours.
    pub gpu_hours: f64,
    /// IT energy, kWh.
    pub it_energy_kwh: f64,
    /// Facility energy (IT x measured PUE), kWh.
    pub facility_energy_kwh: f64,
    /// Jobs whose energy is not computed yet.
    pub pending: u64,
    /// Where the true IT energy lies: each job's bound added (nothing assumed to cancel); absent
    /// where a summary computed before bounds existed is among them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub it_energy_kwh_low: Option<f64>,
    /// .
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub it_energy_kwh_high: Option<f64>,
    /// The facility energy's bound, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility_energy_kwh_low: Option<f64>,
    /// .
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility_energy_kwh_high: Option<f64>,
}

/// `POST /api/v1/sites`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewSite {
    /// Unique site name.
    pub name: String,
    /// IANA time zone, e.g. `America/New_York`.
    pub timezone: String,
    /// PUE charged to hours without meter data (default 1.58, the papers' assumed value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_pue: Option<f64>,
    /// Static grid carbon intensity, g CO2e per kWh (hours of the hourly series use its value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carbon_g_per_kwh: Option<f64>,
    /// Electricity price per kWh of facility energy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_kwh: Option<f64>,
    /// ISO 4217 currency of the price (default EUR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// `PUT /api/v1/sites/{site}`: the settings to change (absent: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteSettings {
    /// PUE charged to hours without meter data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_pue: Option<f64>,
    /// Static grid carbon intensity, g CO2e per kWh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carbon_g_per_kwh: Option<f64>,
    /// Electricity price per kWh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_kwh: Option<f64>,
    /// ISO 4217 currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Most nodes the site may hold for its write token to register one more (the admin may add more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_quota: Option<u32>,
}

/// One value of a site's hourly carbon-intensity series (`POST /api/v1/sites/{site}/carbon`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarbonPoint {
    /// Start of the hour (or any time in it: values of an hour are averaged).
    pub time: DateTime<Utc>,
    /// g CO2e per kWh.
    pub g_per_kwh: f64,
}

/// A site as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteView {
    /// Unique site name.
    pub name: String,
    /// IANA time zone.
    pub timezone: String,
    /// PUE charged to hours without meter data.
    pub fallback_pue: f64,
    /// Static grid carbon intensity, g CO2e per kWh.
    pub carbon_g_per_kwh: Option<f64>,
    /// Electricity price per kWh.
    pub price_per_kwh: Option<f64>,
    /// Currency of the price.
    pub currency: String,
    /// Most nodes the site may hold when its write token registers them.
    #[serde(default)]
    pub node_quota: u32,
}

/// `POST /api/v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewNode {
    /// Unique node name (the host name).
    pub name: String,
    /// Site the node is in.
    pub site: String,
}

/// Answer to `POST /api/v1/nodes`: the node's bearer token, shown this once (the server keeps a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeToken {
    /// Node name.
    pub name: String,
    /// Bearer token for the node's collector.
    pub token: String,
}

/// A node as listed, with what its collector reported last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Site name.
    pub site: String,
    /// GPUs the node reported.
    pub gpus: Vec<GpuIdentity>,
    /// Time of the last accepted batch.
    pub last_seen: Option<DateTime<Utc>>,
    /// Samples the collector reported as dropped (spool full), running total.
    pub dropped_samples_total: u64,
    /// The node's CPU and DRAM energy over the last 24 h, kWh (`None`: not measured).
    #[serde(default)]
    pub cpu_dram_24h_kwh: Option<f64>,
    /// Of it, the share no job held (idle, charged to nobody), kWh.
    #[serde(default)]
    pub idle_24h_kwh: Option<f64>,
}

/// One facility meter reading: power (kW), or cumulative energy counters (kWh), or only a PUE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FacilityReading {
    /// When the meter was read.
    pub time: DateTime<Utc>,
    /// IT power, kW (with `total_kw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub it_kw: Option<f64>,
    /// Total facility power, kW (with `it_kw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_kw: Option<f64>,
    /// IT energy counter, kWh (with `total_kwh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub it_kwh: Option<f64>,
    /// Total facility energy counter, kWh (with `it_kwh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_kwh: Option<f64>,
    /// PUE alone, where IT power is unknown (building-management exports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pue: Option<f64>,
}

/// `POST /api/v1/ingest/facility`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FacilityBatch {
    /// Meter name. Optional with a meter token; required with the admin token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<String>,
    /// Site of the meter: with the admin token, a meter not yet known is created in this site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Readings, in any order.
    pub readings: Vec<FacilityReading>,
}

/// `POST /api/v1/meters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMeter {
    /// Unique meter name.
    pub name: String,
    /// Site it measures.
    pub site: String,
    /// ISO/IEC 30134-2 measurement category: `PUE1` (default), `PUE2` or `PUE3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// Answer to `POST /api/v1/meters`: the meter's bearer token, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterToken {
    /// Meter name.
    pub name: String,
    /// Bearer token for the meter's collector.
    pub token: String,
}

/// A meter as listed, with its last reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterView {
    /// Meter name.
    pub name: String,
    /// Site.
    pub site: String,
    /// ISO/IEC 30134-2 category.
    pub category: String,
    /// Last reading, if any.
    pub last_reading: Option<FacilityReading>,
}

/// One hour of a site's PUE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourlyPue {
    /// Start of the hour.
    pub hour: DateTime<Utc>,
    /// Local start of the hour in the site's zone, e.g. `2024-07-27T14:00:00-04:00`.
    pub local_hour: String,
    /// Mean of the PUE readings in the hour (the paper's method).
    pub pue: f64,
    /// Energy-weighted PUE of the hour (total kWh / IT kWh), what jobs are charged.
    pub weighted_pue: f64,
    /// Where `pue` lies: ±2 % (two meters of accuracy class 1), never below 1; `weighted_pue` lies
    /// within the same ±2 % of itself.
    #[serde(default)]
    pub pue_low: f64,
    /// .
    #[serde(default)]
    pub pue_high: f64,
    /// Readings in the hour.
    pub readings: u64,
}

/// One report of a training script, `POST /api/v1/jobs/{id}/progress` (one, or a list of them).
/// A report with a step already stored replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressReport {
    /// When the step finished.
    pub time: DateTime<Utc>,
    /// Training step (or epoch), from 0.
    pub step: i64,
    /// Metric name -> value, e.g. `{"loss": 1.93, "accuracy": 0.61}`.
    pub metrics: BTreeMap<String, f64>,
}

/// A body of `POST /api/v1/jobs/{id}/progress`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProgressBody {
    /// One report.
    One(ProgressReport),
    /// Several.
    Many(Vec<ProgressReport>),
}

/// `GET /api/v1/jobs/{id}/progress`: each metric against the job's cumulative IT energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    /// Job id.
    pub job: String,
    /// Reports stored.
    pub reports: u64,
    /// Per metric, by name.
    pub metrics: Vec<MetricProgress>,
}

/// One metric over a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricProgress {
    /// Name.
    pub name: String,
    /// `(step, time, cumulative IT energy kWh at that time, value)`, by step.
    pub points: Vec<ProgressPoint>,
    /// What the last 1 % of the metric's change (first to last report) cost.
    pub last_percent: Option<LastPercentCost>,
}

/// `(step, time, cumulative IT energy kWh at that time, value)`.
pub type ProgressPoint = (i64, DateTime<Utc>, f64, f64);

/// The energy of the last 1 % of a metric's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastPercentCost {
    /// Value at the first report.
    pub first: f64,
    /// Value at the last report.
    pub last: f64,
    /// First step within 1 % of the whole change.
    pub step: i64,
    /// IT energy from that step to the last report, kWh.
    pub cost_kwh: f64,
    /// Share of the IT energy up to the last report.
    pub share: f64,
}

/// Every error body under `/api`: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, naming the field where one is at fault.
    pub error: String,
}

#[cfg(test)]
mod tests;
