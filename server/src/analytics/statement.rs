//! Energy statements (the first paper's closing "Energy Statement"; the second paper's call to report
//! energy, carbon and cost): totals of a set of jobs from their measured energy, what caps and timing
//! saved, how every number was obtained, and a paragraph to paste into a paper.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use wattlas_protocol::{EnergyMethod, JobView};

/// One job as a statement sees it.
#[derive(Debug, Clone)]
pub(crate) struct JobInput {
    /// The job's view (its stored energy summary).
    pub view: JobView,
    /// IT energy per UTC hour: hour start (ms) -> J.
    pub it_j_by_hour: BTreeMap<i64, f64>,
    /// GPU model, where known.
    pub gpu_model: Option<String>,
    /// Its place in its workload's power-cap comparison, where the workload has one.
    pub cap: Option<CapComparison>,
}

/// A job's place in its workload's power-cap comparison: the one baseline of every cap claim is the
/// comparison's highest cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CapComparison {
    /// Energy at the job's cap, % of the highest cap's.
    pub rel_energy_pct: f64,
    /// Jobs the comparison measured at the job's cap.
    pub jobs_at_cap: usize,
    /// The highest cap, W.
    pub baseline_w: f64,
    /// Jobs the comparison measured at the highest cap.
    pub jobs_at_baseline: usize,
}

/// The one unit of energy a statement's text uses for every amount (issue 31: "4.00 kWh" beside
/// "500.0 Wh"): Wh under 1 kWh of IT energy in all, MWh from 10,000 kWh, kWh between. The JSON form
/// keeps its `_kwh` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum EnergyUnit {
    /// Watt-hours.
    Wh,
    /// Kilowatt-hours.
    #[serde(rename = "kWh")]
    KWh,
    /// Megawatt-hours.
    #[serde(rename = "MWh")]
    MWh,
}

impl EnergyUnit {
    /// The unit of a statement whose IT energy is `total_kwh`.
    pub(crate) fn for_total(total_kwh: f64) -> Self {
        if total_kwh < 1.0 {
            Self::Wh
        } else if total_kwh < 10_000.0 {
            Self::KWh
        } else {
            Self::MWh
        }
    }

    /// Its symbol.
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Self::Wh => "Wh",
            Self::KWh => "kWh",
            Self::MWh => "MWh",
        }
    }

    /// `kwh` in this unit.
    pub(crate) fn value(self, kwh: f64) -> f64 {
        match self {
            Self::Wh => kwh * 1000.0,
            Self::KWh => kwh,
            Self::MWh => kwh / 1000.0,
        }
    }

    /// The number alone: two decimals from 1, one from 10, none from 100; three significant digits
    /// under 1 (at most six decimals).
    pub(crate) fn number(self, kwh: f64) -> String {
        if self.is_zero(kwh) {
            return "0.00".to_owned();
        }
        let v = self.value(kwh);
        let a = v.abs();
        let decimals = if a >= 100.0 {
            0
        } else if a >= 10.0 {
            1
        } else if a >= 1.0 || a == 0.0 {
            2
        } else {
            ((2.0 - a.log10().floor()) as usize).min(6)
        };
        format!("{v:.decimals$}")
    }

    /// Whether `kwh` reads as zero in this unit (under half of the sixth decimal).
    pub(crate) fn is_zero(self, kwh: f64) -> bool {
        self.value(kwh).abs() < 0.5e-6
    }

    /// `kwh` as text in this unit: "4.00 kWh", "0.500 kWh", "14.2 Wh".
    pub(crate) fn format(self, kwh: f64) -> String {
        format!("{} {}", self.number(kwh), self.symbol())
    }

    /// Decimals of the jobs table's energy columns.
    pub(crate) fn table_decimals(self) -> usize {
        match self {
            Self::Wh => 2,
            Self::KWh => 4,
            Self::MWh => 6,
        }
    }
}

/// One site as a statement sees it.
#[derive(Debug, Clone)]
pub(crate) struct SiteInput {
    /// Time zone.
    pub tz: Tz,
    /// Energy-weighted PUE of each measured hour around the statement's jobs: hour start (ms) -> PUE.
    pub pue_by_hour: BTreeMap<i64, f64>,
    /// The PUE charged to hours without meter data.
    pub fallback_pue: f64,
    /// Meters: (name, ISO/IEC 30134-2 category).
    pub meters: Vec<(String, String)>,
    /// Static grid carbon intensity, g/kWh.
    pub carbon_g_per_kwh: Option<f64>,
    /// Whether the site has an hourly carbon-intensity series.
    pub carbon_series: bool,
}

/// A statement: totals, savings, method, paragraph, and the jobs behind it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Statement {
    /// What it covers, in words (the filter).
    pub scope: String,
    /// When it was made.
    pub generated_at: DateTime<Utc>,
    /// Totals.
    pub summary: Summary,
    /// Per site.
    pub sites: Vec<SiteLine>,
    /// Per power cap: (W, jobs, IT kWh); `None`: cap unknown.
    pub caps: Vec<(Option<f64>, u64, f64)>,
    /// Per GPU model: (model, jobs).
    pub gpu_models: Vec<(String, u64)>,
    /// IT kWh per UTC day.
    pub by_day: Vec<(NaiveDate, f64)>,
    /// How the numbers were obtained.
    pub method: Vec<String>,
    /// The paragraph, in the first paper's style.
    pub paragraph: String,
    /// The unit every amount of energy in the text is in.
    pub unit: EnergyUnit,
    /// The jobs.
    pub jobs: Vec<JobView>,
    /// Its id, once issued (`statement::verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where anyone checks it (`GET /s/{id}`), once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_url: Option<String>,
    /// SHA-256 (hex) of this JSON form without this field, once issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// The totals of a statement.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Summary {
    /// Jobs.
    pub jobs: u64,
    /// First start.
    pub from: Option<DateTime<Utc>>,
    /// Last end (or now, for running jobs).
    pub to: Option<DateTime<Utc>>,
    /// GPU-hours.
    pub gpu_hours: f64,
    /// IT energy (GPU + CPU + DRAM), kWh.
    pub it_energy_kwh: f64,
    /// GPU energy, kWh.
    pub gpu_energy_kwh: f64,
    /// The jobs' share of their nodes' CPU package energy, kWh (of the nodes that measured it).
    pub cpu_energy_kwh: f64,
    /// The jobs' share of their nodes' DRAM energy, kWh.
    pub dram_energy_kwh: f64,
    /// Distinct nodes the jobs ran on.
    pub nodes: u64,
    /// Of those, nodes whose CPU and DRAM energy was not measured for some job.
    pub nodes_unmeasured: u64,
    /// Facility energy, kWh.
    pub facility_energy_kwh: f64,
    /// Facility / IT.
    pub pue: Option<f64>,
    /// Share of IT energy charged a configured (not measured) PUE.
    pub pue_fallback_share: f64,
    /// CO2e, kg (of the jobs whose site has a carbon intensity).
    pub co2e_kg: Option<f64>,
    /// Share of facility energy whose carbon is known.
    pub co2e_coverage: f64,
    /// Cost, per currency.
    pub cost: BTreeMap<String, f64>,
    /// Share of IT energy drawn in hours whose PUE was below its site's mean for that month.
    pub low_pue_share: Option<f64>,
    /// IT energy the caps saved against the highest cap of each workload's power-cap comparison, kWh
    /// (negative: what they cost).
    pub cap_saving_kwh: f64,
    /// Jobs that ran under a cap other than their comparison's highest.
    pub cap_jobs: u64,
    /// The fewest jobs any of those comparisons measured at a cap it compares (1: the claim rests
    /// on one job).
    pub cap_fewest_jobs: Option<u64>,
    /// Facility energy saved against the mean PUE of the same local calendar month at each job's
    /// site, kWh (negative: what the timing cost).
    pub timing_saving_kwh: f64,
    /// Jobs with IT energy in hours of measured PUE (what the timing figures rest on).
    pub timing_jobs: u64,
    /// Energy-weighted coverage of the GPUs' time by samples.
    pub coverage: f64,
    /// Where the true IT energy lies, kWh: each job's bound added (none where a job has none yet).
    pub it_energy_kwh_low: Option<f64>,
    /// .
    pub it_energy_kwh_high: Option<f64>,
    /// Where the true facility energy lies, kWh.
    pub facility_energy_kwh_low: Option<f64>,
    /// .
    pub facility_energy_kwh_high: Option<f64>,
    /// Where the true CO2e lies, kg (of the jobs with a CO2e).
    pub co2e_kg_low: Option<f64>,
    /// .
    pub co2e_kg_high: Option<f64>,
    /// Each kind of term's share of the IT bound's width, by kind (`gpu_sensor`, `gpu_gaps`, ...).
    pub bound_shares: BTreeMap<String, f64>,
    /// Market-based CO2e, kg (Scope 2): jobs at sites with contractual instruments at their factors,
    /// the rest at their location-based figure; none where no job's site records an instrument.
    pub co2e_market_kg: Option<f64>,
    /// Share of the facility energy an instrument covered.
    pub market_contract_share: f64,
    /// Embodied CO2e of the jobs' GPU-hours at the per-model figures, kg (apart, never added).
    pub embodied_kg: Option<f64>,
    /// Jobs without an embodied figure (some GPU's model has none).
    pub embodied_missing: u64,
}

/// One site's part.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SiteLine {
    /// Site.
    pub site: String,
    /// Jobs.
    pub jobs: u64,
    /// IT kWh.
    pub it_energy_kwh: f64,
    /// Facility kWh.
    pub facility_energy_kwh: f64,
    /// Facility / IT energy of its jobs: the statement's one kind of PUE, energy-weighted.
    pub pue: Option<f64>,
}

/// A site's mean PUE per local (year, month): the baseline of timing claims.
type SitePueMeans = BTreeMap<(i32, u32), f64>;

/// Joins words: "a", "a and b", "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Builds a statement from its jobs and their sites (by name).
pub(crate) fn build(
    scope: String,
    jobs: Vec<JobInput>,
    sites: &BTreeMap<String, SiteInput>,
    now: DateTime<Utc>,
) -> Statement {
    let mut s = Summary {
        jobs: jobs.len() as u64,
        ..Summary::default()
    };
    let (mut fallback_j, mut co2e_g, mut co2e_known_j) = (0.0, 0.0, 0.0);
    let (mut low_j, mut classified_j, mut covered_weighted) = (0.0, 0.0, 0.0);
    let mut per_site: BTreeMap<String, SiteLine> = BTreeMap::new();
    let mut caps: BTreeMap<Option<i64>, (u64, f64)> = BTreeMap::new();
    let mut models: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_day: BTreeMap<NaiveDate, f64> = BTreeMap::new();
    let mut methods: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut samples, mut gpu_seconds_covered) = (0u64, 0.0);
    // Per site: the mean PUE of each local month of the measured hours.
    let month_means: BTreeMap<&str, SitePueMeans> = sites
        .iter()
        .map(|(name, site)| {
            let mut sums: BTreeMap<(i32, u32), (f64, u32)> = BTreeMap::new();
            for (&h, &pue) in &site.pue_by_hour {
                let local = site
                    .tz
                    .timestamp_millis_opt(h)
                    .single()
                    .map(|t| (t.year(), t.month()));
                if let Some(key) = local {
                    let e = sums.entry(key).or_default();
                    e.0 += pue;
                    e.1 += 1;
                }
            }
            let means = sums
                .into_iter()
                .map(|(k, (sum, n))| (k, sum / f64::from(n)))
                .collect();
            (name.as_str(), means)
        })
        .collect();
    let mut cap_fewest: Option<u64> = None;
    // Bounds add up job by job (nothing assumed to cancel); a job without one leaves the total without.
    let mut bounds = Some((0.0, 0.0, 0.0, 0.0));
    let mut co2e_bounds: Option<(f64, f64)> = None;
    let mut widths: BTreeMap<String, f64> = BTreeMap::new();
    // Market-based: any job at a site with instruments makes the statement show it.
    let (mut market_any, mut market_g, mut covered_j) = (false, 0.0, 0.0);

    let (mut all_nodes, mut unmeasured) = (
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    );
    for job in &jobs {
        let v = &job.view;
        all_nodes.extend(v.allocations.iter().map(|a| a.node.clone()));
        unmeasured.extend(v.cpu_dram_unmeasured.iter().cloned());
        s.gpu_energy_kwh += v.gpu_energy_kwh;
        s.cpu_energy_kwh += v.cpu_energy_kwh.unwrap_or(0.0);
        s.dram_energy_kwh += v.dram_energy_kwh.unwrap_or(0.0);
        let it_kwh = v.it_energy_kwh;
        s.gpu_hours += f64::from(v.gpu_count) * v.duration_s / 3600.0;
        s.it_energy_kwh += it_kwh;
        s.facility_energy_kwh += v.facility_energy_kwh;
        fallback_j += v.pue_fallback_share * it_kwh;
        if let Some(kg) = v.co2e_kg {
            co2e_g += kg * 1000.0;
            co2e_known_j += v.facility_energy_kwh;
        }
        if let (Some(cost), Some(cur)) = (v.cost, &v.currency) {
            *s.cost.entry(cur.clone()).or_default() += cost;
        }
        covered_weighted += v.coverage * it_kwh;
        bounds = match (
            bounds,
            v.it_energy_kwh_low,
            v.it_energy_kwh_high,
            v.facility_energy_kwh_low,
            v.facility_energy_kwh_high,
        ) {
            (Some(b), Some(il), Some(ih), Some(fl), Some(fh)) => {
                Some((b.0 + il, b.1 + ih, b.2 + fl, b.3 + fh))
            }
            _ => None,
        };
        if let (Some(l), Some(h)) = (v.co2e_kg_low, v.co2e_kg_high) {
            let b = co2e_bounds.get_or_insert((0.0, 0.0));
            b.0 += l;
            b.1 += h;
        }
        for t in &v.bound_terms {
            *widths.entry(t.kind.clone()).or_default() += t.below_kwh + t.above_kwh;
        }
        market_any |= v.co2e_market_kg.is_some();
        if let Some(kg) = v.co2e_market_kg.or(v.co2e_kg) {
            market_g += kg * 1000.0;
        }
        covered_j += v.market_contract_share * v.facility_energy_kwh;
        match v.embodied_kg {
            Some(kg) => *s.embodied_kg.get_or_insert(0.0) += kg,
            None => s.embodied_missing += 1,
        }
        samples += v.samples;
        gpu_seconds_covered += v.coverage * f64::from(v.gpu_count) * v.duration_s;
        *methods
            .entry(match v.energy_method {
                EnergyMethod::Counter => "the NVML energy counter",
                EnergyMethod::Integrated => "power integrated over time",
                EnergyMethod::Mixed => "the counter where GPUs had one, integrated power elsewhere",
                EnergyMethod::None => "no samples",
            })
            .or_default() += 1;
        let end = v.end.unwrap_or(now);
        s.from = Some(s.from.map_or(v.start, |f| f.min(v.start)));
        s.to = Some(s.to.map_or(end, |t| t.max(end)));
        let line = per_site.entry(v.site.clone()).or_insert_with(|| SiteLine {
            site: v.site.clone(),
            jobs: 0,
            it_energy_kwh: 0.0,
            facility_energy_kwh: 0.0,
            pue: None,
        });
        line.jobs += 1;
        line.it_energy_kwh += it_kwh;
        line.facility_energy_kwh += v.facility_energy_kwh;
        let cap = caps
            .entry(v.power_cap_w.map(|w| w.round() as i64))
            .or_default();
        cap.0 += 1;
        cap.1 += it_kwh;
        *models
            .entry(
                job.gpu_model
                    .clone()
                    .unwrap_or_else(|| "unknown GPU".to_owned()),
            )
            .or_default() += 1;
        // Savings and costs alike, against the comparison's highest cap (a job at that cap changed
        // nothing).
        if let Some(c) = job
            .cap
            .filter(|c| c.rel_energy_pct > 0.0 && (c.rel_energy_pct - 100.0).abs() > 1e-9)
        {
            s.cap_saving_kwh += it_kwh * (100.0 / c.rel_energy_pct - 1.0);
            s.cap_jobs += 1;
            let fewest = c.jobs_at_cap.min(c.jobs_at_baseline) as u64;
            cap_fewest = Some(cap_fewest.map_or(fewest, |f| f.min(fewest)));
        }
        // Hours: the day chart; low-PUE hours and the timing, both against the mean PUE of the same
        // local calendar month at the site.
        let site = sites.get(&v.site);
        let means = month_means.get(v.site.as_str());
        let mut timed = false;
        for (&hour, &j) in &job.it_j_by_hour {
            if let Some(t) = Utc.timestamp_millis_opt(hour).single() {
                *by_day.entry(t.date_naive()).or_default() += j / 3.6e6;
            }
            let (Some(site), Some(months)) = (site, means) else {
                continue;
            };
            let Some(&pue) = site.pue_by_hour.get(&hour) else {
                continue;
            };
            let month = site
                .tz
                .timestamp_millis_opt(hour)
                .single()
                .and_then(|t| months.get(&(t.year(), t.month())));
            if let Some(month_mean) = month {
                s.timing_saving_kwh += j / 3.6e6 * (month_mean - pue);
                classified_j += j;
                timed = true;
                if pue < *month_mean {
                    low_j += j;
                }
            }
        }
        s.timing_jobs += u64::from(timed);
    }
    s.cap_fewest_jobs = cap_fewest;
    if let Some((il, ih, fl, fh)) = bounds {
        s.it_energy_kwh_low = Some(il);
        s.it_energy_kwh_high = Some(ih);
        s.facility_energy_kwh_low = Some(fl);
        s.facility_energy_kwh_high = Some(fh);
    }
    if let Some((l, h)) = co2e_bounds {
        s.co2e_kg_low = Some(l);
        s.co2e_kg_high = Some(h);
    }
    let width: f64 = widths.values().sum();
    if width > 0.0 {
        s.bound_shares = widths.into_iter().map(|(k, w)| (k, w / width)).collect();
    }
    for line in per_site.values_mut() {
        if line.it_energy_kwh > 0.0 {
            line.pue = Some(line.facility_energy_kwh / line.it_energy_kwh);
        }
    }
    s.nodes = all_nodes.len() as u64;
    s.nodes_unmeasured = unmeasured.len() as u64;
    if s.it_energy_kwh > 0.0 {
        s.pue = Some(s.facility_energy_kwh / s.it_energy_kwh);
        s.pue_fallback_share = fallback_j / s.it_energy_kwh;
        s.coverage = covered_weighted / s.it_energy_kwh;
    }
    if co2e_known_j > 0.0 {
        s.co2e_kg = Some(co2e_g / 1000.0);
        s.co2e_coverage = co2e_known_j / s.facility_energy_kwh.max(f64::MIN_POSITIVE);
    }
    if classified_j > 0.0 {
        s.low_pue_share = Some(low_j / classified_j);
    }
    if market_any {
        s.co2e_market_kg = Some(market_g / 1000.0);
        if s.facility_energy_kwh > 0.0 {
            s.market_contract_share = covered_j / s.facility_energy_kwh;
        }
    }

    let method = method_lines(&s, sites, &jobs, samples, gpu_seconds_covered, &methods);
    let mut statement = Statement {
        scope,
        generated_at: now,
        sites: per_site.into_values().collect(),
        caps: caps
            .into_iter()
            .map(|(w, (n, kwh))| (w.map(|w| w as f64), n, kwh))
            .collect(),
        gpu_models: models.into_iter().collect(),
        by_day: by_day.into_iter().collect(),
        method,
        paragraph: String::new(),
        unit: EnergyUnit::for_total(s.it_energy_kwh),
        jobs: jobs.into_iter().map(|j| j.view).collect(),
        summary: s,
        id: None,
        verify_url: None,
        digest: None,
    };
    statement.paragraph = paragraph(&statement);
    statement
}

/// How the jobs' GPU power was read (issue 35, item 3), and which jobs the sensor disagreed with
/// itself in; `None` where no job says (views computed before it was kept).
fn readings_line(jobs: &[JobInput]) -> Option<String> {
    let sensors: Vec<&wattlas_protocol::SensorReadings> =
        jobs.iter().filter_map(|j| j.view.sensor.as_ref()).collect();
    let shares = crate::analytics::energy::read_shares(sensors.iter().copied())?;
    let said: Vec<String> = [
        "the energy counter",
        "the sensor's 1-s averages, integrated",
        "instant readings, integrated",
        "readings that did not say which they were (an nvidia-smi power.draw column, a dcgm-exporter series), integrated",
    ]
    .iter()
    .zip(shares)
    .filter(|(_, s)| *s > 0.0)
    .map(|(how, s)| format!("{how} {:.1} %", s * 100.0))
    .collect();
    let flagged = sensors.iter().filter(|r| r.aliasing).count();
    let aliasing = match flagged {
        0 => "no job's readings disagreed with its counter (or its instant readings with its averages) beyond 3 %".to_owned(),
        n => format!(
            "{n} job{} had readings that disagreed with {} counter or averages beyond 3 %, which a workload rhythm in step with the sensor's sampling window makes (A100 and H100 boards sample about 25 % of each 100 ms: Yang et al., SC24); {} energy is still the counter's, and {} bound reaches the other reading",
            if n == 1 { "" } else { "s" },
            if n == 1 { "its" } else { "their" },
            if n == 1 { "its" } else { "their" },
            if n == 1 { "its" } else { "each one's" },
        ),
    };
    Some(format!(
        "Power readings: of the GPU time covered, {}; {aliasing}.",
        and_list(&said)
    ))
}

fn method_lines(
    s: &Summary,
    sites: &BTreeMap<String, SiteInput>,
    jobs: &[JobInput],
    samples: u64,
    gpu_seconds_covered: f64,
    methods: &BTreeMap<&'static str, u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    if samples > 0 {
        out.push(format!(
            "Sampling: every GPU was read through NVML about every {:.0} ms ({samples} samples over {:.1} GPU-hours covered).",
            gpu_seconds_covered * 1000.0 / samples as f64,
            gpu_seconds_covered / 3600.0
        ));
    }
    let m: Vec<String> = methods
        .iter()
        .map(|(how, n)| format!("{how} ({n} job{})", if *n == 1 { "" } else { "s" }))
        .collect();
    out.push(format!(
        "IT energy = GPU + CPU + DRAM, each measured (the second paper's PUE x (CPU + DRAM + GPU)). GPU: the allocated GPUs' energy between each job's start and end, from {}.",
        and_list(&m)
    ));
    if let Some(line) = readings_line(jobs) {
        out.push(line);
    }
    out.push(match (s.nodes, s.nodes_unmeasured) {
        (0, _) => "CPU and DRAM: no node.".to_owned(),
        (n, 0) => format!(
            "CPU and DRAM: each job's share of its nodes' RAPL package and DRAM energy counters (Linux powercap), by the CPUs it held (jobs without a count share what is left equally); measured on all {n} node{}.",
            if n == 1 { "" } else { "s" }
        ),
        (n, k) => format!(
            "CPU and DRAM: each job's share of its nodes' RAPL package and DRAM energy counters (Linux powercap), by the CPUs it held; not measured on {k} of {n} nodes (no readable counters), whose CPU and DRAM energy is missing from the totals, not estimated."
        ),
    });
    out.push(format!(
        "Coverage: samples covered {:.1} % of the jobs' GPU time (energy-weighted); gaps longer than the integration limit count as uncovered, not estimated.",
        s.coverage * 100.0
    ));
    if let (Some(lo), Some(hi)) = (s.it_energy_kwh_low, s.it_energy_kwh_high) {
        let unit = EnergyUnit::for_total(s.it_energy_kwh);
        let share = |kind: &str| {
            s.bound_shares.get(kind).map_or(String::new(), |f| {
                format!(", {:.0} % of the width", f * 100.0)
            })
        };
        out.push(format!(
            "Bounds: the true IT energy lies between {} and {} (each job's bound added: no error is assumed to cancel another), from the documented accuracy of each measurement: the GPU sensor ±5 % (NVML's documented accuracy, taken for every generation; Yang et al., SC24, found that A100 and H100 boards sample 25 % of the runtime){}; GPU time without samples, from nothing up to the GPUs' power limit{}; RAPL CPU packages ±5 %{} and DRAM ±15 %{} (assumed widths). Facility energy: metered PUE ±2 % (two meters of accuracy class 1), an assumed PUE from 1 to twice its overhead. CO2e: ±10 % with an hourly grid series, ±30 % with a static factor. A simulation with a known true energy (sensor gain errors, 1-s averaged and partial-window readings, dropped samples, collector outages) finds the truth inside the bound in 99 % of runs.",
            unit.format(lo),
            unit.format(hi),
            share("gpu_sensor"),
            share("gpu_gaps"),
            share("rapl_cpu"),
            share("rapl_dram"),
        ));
    }
    let used: Vec<&String> = {
        let mut v: Vec<&String> = jobs.iter().map(|j| &j.view.site).collect();
        v.sort();
        v.dedup();
        v
    };
    for name in used {
        let Some(site) = sites.get(name) else {
            continue;
        };
        let meters = if site.meters.is_empty() {
            "no meters".to_owned()
        } else {
            and_list(
                &site
                    .meters
                    .iter()
                    .map(|(n, c)| format!("{n} ({c})"))
                    .collect::<Vec<_>>(),
            )
        };
        let carbon = match (site.carbon_series, site.carbon_g_per_kwh) {
            (true, Some(g)) => format!(
                "an hourly grid carbon-intensity series, {g:.0} g CO2e/kWh in hours it lacks"
            ),
            (true, None) => "an hourly grid carbon-intensity series".to_owned(),
            (false, Some(g)) => format!("a static grid carbon intensity of {g:.0} g CO2e/kWh"),
            (false, None) => "no carbon intensity configured".to_owned(),
        };
        out.push(if site.meters.is_empty() {
            format!(
                "Site {name}: no facility meter, so no PUE is measured there: every hour is charged the site's assumed PUE of {:.2}; carbon from {carbon}.",
                site.fallback_pue
            )
        } else {
            format!(
                "Site {name}: PUE = (facility energy) / (IT energy) measured hourly by {meters} (ISO/IEC 30134-2 category); hours without meter data are charged the site's assumed {:.2}; carbon from {carbon}.",
                site.fallback_pue
            )
        });
    }
    out.push(format!(
        "Facility energy: each hour of IT energy times that hour's energy-weighted PUE; {:.1} % of the IT energy fell in hours without meter data.",
        s.pue_fallback_share * 100.0
    ));
    out.push("Savings and costs, each against one baseline: caps against the highest cap in each workload's power-cap comparison (the job's energy at that cap estimated from the comparison's measured ratio of mean energies; the count of jobs behind each cap is said); timing against the mean PUE of the same local calendar month at the job's site (the mean of that month's measured hours, so far for the current month). Low-PUE hours: hours whose PUE was below that month's mean.".to_owned());
    out
}

impl Statement {
    /// The link printed on an issued statement: its verify address with the digest it was issued
    /// with.
    pub(crate) fn verify_link(&self) -> Option<String> {
        match (&self.verify_url, &self.digest) {
            (Some(url), Some(d)) => Some(format!("{url}?sha256={d}")),
            _ => None,
        }
    }
}

/// "1 job", "3 jobs".
pub(crate) fn jobs_count(n: u64) -> String {
    format!("{n} job{}", if n == 1 { "" } else { "s" })
}

/// The caps' claim, said against its baseline with its count, costs as plainly as savings; `None`
/// where no job ran under a cap its comparison can compare.
pub(crate) fn cap_claim(st: &Statement) -> Option<String> {
    let s = &st.summary;
    if s.cap_jobs == 0 {
        return None;
    }
    let mut claim = format!(
        "under these caps, {} drew {} at the highest cap of {} workload's power-cap comparison",
        jobs_count(s.cap_jobs),
        change(st.unit, s.cap_saving_kwh, "an estimated", "IT energy"),
        if s.cap_jobs == 1 { "its" } else { "their" },
    );
    if s.cap_fewest_jobs == Some(1) {
        claim.push_str(" (a comparison that rests on one job at a cap)");
    }
    Some(claim)
}

/// The timing's claim, against the mean PUE of the same calendar month, with its count; `None`
/// without a job in hours of measured PUE.
pub(crate) fn timing_claim(st: &Statement) -> Option<String> {
    let s = &st.summary;
    let share = s.low_pue_share?;
    if s.timing_jobs == 0 {
        return None;
    }
    Some(format!(
        "{:.0} % of the IT energy of the {} in hours of measured PUE was drawn in hours below the mean PUE of the same calendar month at {}: {} at that mean",
        share * 100.0,
        jobs_count(s.timing_jobs),
        if st.sites.len() == 1 { "the site" } else { "each site" },
        change(st.unit, s.timing_saving_kwh, "", "facility energy"),
    ))
}

/// A saving (positive) or a cost (negative) of `what` in words, up to the baseline: "an estimated
/// 0.500 kWh less IT energy than", "1.20 kWh more facility energy than", "the same facility energy
/// as" (a change that reads as 0).
fn change(unit: EnergyUnit, saving_kwh: f64, hedge: &str, what: &str) -> String {
    if unit.is_zero(saving_kwh) {
        return format!("the same {what} as");
    }
    let hedge = if hedge.is_empty() {
        String::new()
    } else {
        format!("{hedge} ")
    };
    format!(
        "{hedge}{} {} {what} than",
        unit.format(saving_kwh.abs()),
        if saving_kwh > 0.0 { "less" } else { "more" }
    )
}

/// The statement as one paragraph, in the style of the first paper's Energy Statement. Every amount
/// of energy is in the statement's one unit, every PUE is the energy-weighted one, and every claim
/// says its baseline and how many jobs it rests on.
pub(crate) fn paragraph(st: &Statement) -> String {
    let s = &st.summary;
    let e = |kwh: f64| st.unit.format(kwh);
    // A set with a running job has no total yet: its figures are so far, as of the statement's time
    // (issue 31: a running job's statement read as a final total).
    let running = st.jobs.iter().filter(|j| j.running).count();
    let how_much = if running == 0 {
        format!(
            "consumed a total of {} of IT energy in {}",
            e(s.it_energy_kwh),
            jobs_count(s.jobs)
        )
    } else {
        format!(
            "have consumed {} of IT energy so far in {}, {} as of {} UTC",
            e(s.it_energy_kwh),
            jobs_count(s.jobs),
            if s.jobs == 1 {
                "still running".to_owned()
            } else {
                format!("{running} of them still running")
            },
            st.generated_at.format("%Y-%m-%d %H:%M")
        )
    };
    let mut p = format!(
        "The experiments in this work {how_much} ({} GPU-hours",
        gpu_hours(s.gpu_hours)
    );
    // Models by name ("on V100 and A100 GPUs"): a count in brackets read as GPUs though it counted jobs.
    let models: Vec<String> = st
        .gpu_models
        .iter()
        .map(|(m, _)| m.clone())
        .filter(|m| m != "unknown GPU")
        .collect();
    if !models.is_empty() {
        p.push_str(&format!(" on {} GPUs", and_list(&models)));
    }
    p.push(')');
    if s.nodes_unmeasured < s.nodes {
        p.push_str(&format!(
            ": {} GPU, {} CPU and {} DRAM",
            e(s.gpu_energy_kwh),
            e(s.cpu_energy_kwh),
            e(s.dram_energy_kwh)
        ));
    }
    // One PUE, the energy-weighted one (facility / IT energy), named for what it is.
    if let Some(pue) = s.pue {
        p.push_str(&format!(
            ", and {} including the data center's overhead at {}",
            e(s.facility_energy_kwh),
            pue_words(pue, s.pue_fallback_share)
        ));
    }
    p.push('.');
    if let (Some(lo), Some(hi)) = (s.it_energy_kwh_low, s.it_energy_kwh_high) {
        p.push_str(&format!(
            " By the documented accuracy of each measurement, the IT energy lies between {} and {}",
            e(lo),
            e(hi)
        ));
        if let (Some(flo), Some(fhi)) = (s.facility_energy_kwh_low, s.facility_energy_kwh_high) {
            p.push_str(&format!(
                " and the facility energy between {} and {}",
                e(flo),
                e(fhi)
            ));
        }
        p.push('.');
    }
    match (s.nodes, s.nodes_unmeasured) {
        (n, k) if k > 0 && k == n => p.push_str(&format!(
            " CPU and DRAM energy were not measured on {} (GPU energy only).",
            if n == 1 {
                "its node".to_owned()
            } else {
                format!("any of its {n} nodes")
            }
        )),
        (n, k) if k > 0 => p.push_str(&format!(
            " CPU and DRAM energy were not measured on {k} of {n} nodes."
        )),
        _ => {}
    }
    if let [site] = st.sites.as_slice() {
        p.push_str(&format!(" All of it ran at {}.", site.site));
    } else if let Some(top) = st
        .sites
        .iter()
        .max_by(|a, b| a.it_energy_kwh.total_cmp(&b.it_energy_kwh))
    {
        p.push_str(&format!(
            " Most of it ({}) ran at {}.",
            e(top.it_energy_kwh),
            top.site
        ));
    }
    if let Some(kg) = s.co2e_kg {
        p.push_str(&format!(
            " This amounts to an estimated {} CO2e (location-based, from the grid's intensity",
            super::units::co2e(kg)
        ));
        if let Some(m) = s.co2e_market_kg {
            p.push_str(&format!(
                "; market-based: {}, with contractual instruments for {:.0} % of the energy",
                super::units::co2e(m),
                s.market_contract_share * 100.0
            ));
        }
        p.push(')');
        if s.co2e_coverage < 0.999 {
            p.push_str(&format!(
                " (for the {:.0} % of the energy whose grid carbon intensity is known)",
                s.co2e_coverage * 100.0
            ));
        }
        let costs: Vec<String> = s
            .cost
            .iter()
            .map(|(cur, c)| format!("{c:.2} {cur}"))
            .collect();
        if !costs.is_empty() {
            p.push_str(&format!(" and {} of electricity", and_list(&costs)));
        }
        p.push('.');
    }
    if let Some(kg) = s.embodied_kg {
        p.push_str(&format!(
            " Apart from that, making the GPUs is estimated at {} CO2e for the GPU-hours used{} (embodied emissions at the figures set for each GPU model; not included above).",
            super::units::co2e(kg),
            if s.embodied_missing > 0 {
                format!(
                    " by the jobs whose GPU models have one ({} without)",
                    jobs_count(s.embodied_missing)
                )
            } else {
                String::new()
            }
        ));
    }
    // Facts only: what ran under which cap and when, never why (a statement cannot know intent).
    if let Some(claim) = cap_claim(st) {
        let capped: Vec<String> = st
            .caps
            .iter()
            .filter_map(|(w, _, _)| w.map(|w| format!("{w:.0} W")))
            .collect();
        p.push_str(&format!(
            " GPUs ran under power caps of {}: {claim}.",
            and_list(&capped)
        ));
    }
    if let Some(claim) = timing_claim(st) {
        p.push_str(&format!(" {claim}."));
    }
    p.push_str(
        " Energy was measured by Wattlas from NVML readings of every GPU about every 100 ms.",
    );
    p
}

/// GPU-hours as every format writes them.
pub(crate) fn gpu_hours(h: f64) -> String {
    if h >= 1.0 {
        format!("{h:.1}")
    } else {
        format!("{h:.2}")
    }
}

/// The one PUE, in words: measured, partly measured or assumed.
pub(crate) fn pue_words(pue: f64, fallback_share: f64) -> String {
    if fallback_share >= 0.999 {
        format!("an assumed PUE of {pue:.2} (no meter measured these hours)")
    } else if fallback_share > 0.001 {
        format!(
            "an energy-weighted PUE of {pue:.2} (measured for {:.0} % of the IT energy, assumed for the rest)",
            (1.0 - fallback_share) * 100.0
        )
    } else {
        format!("a measured, energy-weighted PUE of {pue:.2}")
    }
}

#[cfg(test)]
mod tests;
