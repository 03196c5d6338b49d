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
    /// In its workload's power-cap comparison, the energy at the job's cap as % of the highest cap's.
    pub cap_rel_energy_pct: Option<f64>,
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
    /// The jobs.
    pub jobs: Vec<JobView>,
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
    /// IT energy saved by caps below the highest cap of each workload's comparison, kWh.
    pub cap_saving_kwh: f64,
    /// Facility energy saved against each site's mean PUE over the period, kWh (negative: lost).
    pub timing_saving_kwh: f64,
    /// Energy-weighted coverage of the GPUs' time by samples.
    pub coverage: f64,
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
    /// Mean PUE over the period's measured hours.
    pub mean_pue: Option<f64>,
}

/// A site's mean PUE per local (year, month), and over the whole period.
type SitePueMeans = (BTreeMap<(i32, u32), f64>, Option<f64>);

fn fmt_kwh(kwh: f64) -> String {
    super::units::energy(kwh)
}

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
    // Per site: the mean PUE of each local month of the measured hours, and of the whole period.
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
            let n: u32 = sums.values().map(|v| v.1).sum();
            let total: f64 = sums.values().map(|v| v.0).sum();
            let means = sums
                .into_iter()
                .map(|(k, (sum, n))| (k, sum / f64::from(n)))
                .collect();
            (
                name.as_str(),
                (means, (n > 0).then(|| total / f64::from(n))),
            )
        })
        .collect();

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
            mean_pue: month_means.get(v.site.as_str()).and_then(|m| m.1),
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
        if let Some(rel) = job.cap_rel_energy_pct.filter(|r| *r > 0.0 && *r < 100.0) {
            s.cap_saving_kwh += it_kwh * (100.0 / rel - 1.0);
        }
        // Hours: the day chart; low-PUE hours; the saving against the site's mean PUE.
        let site = sites.get(&v.site);
        let means = month_means.get(v.site.as_str());
        for (&hour, &j) in &job.it_j_by_hour {
            if let Some(t) = Utc.timestamp_millis_opt(hour).single() {
                *by_day.entry(t.date_naive()).or_default() += j / 3.6e6;
            }
            let (Some(site), Some((months, Some(mean)))) = (site, means) else {
                continue;
            };
            let Some(&pue) = site.pue_by_hour.get(&hour) else {
                continue;
            };
            s.timing_saving_kwh += j / 3.6e6 * (mean - pue);
            let month = site
                .tz
                .timestamp_millis_opt(hour)
                .single()
                .and_then(|t| months.get(&(t.year(), t.month())));
            if let Some(month_mean) = month {
                classified_j += j;
                if pue < *month_mean {
                    low_j += j;
                }
            }
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
        jobs: jobs.into_iter().map(|j| j.view).collect(),
        summary: s,
    };
    statement.paragraph = paragraph(&statement);
    statement
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
    out.push("Savings: caps against the highest cap in each workload's power-cap comparison (energy of the job at the highest cap estimated from the comparison's measured ratio); timing against each site's mean PUE over the period. Low-PUE hours: hours whose PUE was below their site's mean for that month.".to_owned());
    out
}

/// The statement as one paragraph, in the style of the first paper's Energy Statement.
pub(crate) fn paragraph(st: &Statement) -> String {
    let s = &st.summary;
    // A set with a running job has no total yet: its figures are so far, as of the statement's time
    // (issue 31: a running job's statement read as a final total).
    let running = st.jobs.iter().filter(|j| j.running).count();
    let how_much = if running == 0 {
        format!(
            "consumed a total of {} of IT energy in {} job{}",
            fmt_kwh(s.it_energy_kwh),
            s.jobs,
            if s.jobs == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "have consumed {} of IT energy so far in {} job{}, {} as of {} UTC",
            fmt_kwh(s.it_energy_kwh),
            s.jobs,
            if s.jobs == 1 { "" } else { "s" },
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
        if s.gpu_hours >= 1.0 {
            format!("{:.1}", s.gpu_hours)
        } else {
            format!("{:.2}", s.gpu_hours)
        }
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
            fmt_kwh(s.gpu_energy_kwh),
            fmt_kwh(s.cpu_energy_kwh),
            fmt_kwh(s.dram_energy_kwh)
        ));
    }
    // One PUE, the energy-weighted one (facility / IT energy), named for what it is.
    if let Some(pue) = s.pue {
        let how = if s.pue_fallback_share >= 0.999 {
            format!("an assumed PUE of {pue:.2} (no meter measured these hours)")
        } else if s.pue_fallback_share > 0.001 {
            format!(
                "an energy-weighted PUE of {pue:.2} (measured for {:.0} % of the IT energy, assumed for the rest)",
                (1.0 - s.pue_fallback_share) * 100.0
            )
        } else {
            format!("a measured, energy-weighted PUE of {pue:.2}")
        };
        p.push_str(&format!(
            ", and {} including the data center's overhead at {how}",
            fmt_kwh(s.facility_energy_kwh)
        ));
    }
    p.push('.');
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
            fmt_kwh(top.it_energy_kwh),
            top.site
        ));
    }
    if let Some(kg) = s.co2e_kg {
        let amount = if kg >= 1.0 {
            format!("{kg:.1} kg")
        } else {
            format!("{:.1} g", kg * 1000.0)
        };
        p.push_str(&format!(" This amounts to an estimated {amount} CO2e"));
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
    let capped: Vec<String> = st
        .caps
        .iter()
        .filter_map(|(w, _, _)| w.map(|w| format!("{w:.0} W")))
        .collect();
    // Facts only: what ran under which cap and when, never why (a statement cannot know intent).
    if s.cap_saving_kwh > 0.0 {
        p.push_str(&format!(
            " GPUs ran under power caps of {}: an estimated {} less energy than the highest caps of the same workloads would have drawn.",
            and_list(&capped),
            fmt_kwh(s.cap_saving_kwh)
        ));
    }
    if s.timing_saving_kwh > 0.0 {
        p.push_str(&format!(
            " {} of the IT energy was drawn in hours of below-average PUE: {} less facility energy than at the sites' mean PUE.",
            s.low_pue_share
                .map_or("Part".to_owned(), |l| format!("{:.0} %", l * 100.0)),
            fmt_kwh(s.timing_saving_kwh)
        ));
    }
    p.push_str(
        " Energy was measured by Wattlas from NVML readings of every GPU about every 100 ms.",
    );
    p
}

#[cfg(test)]
mod tests;
