//! Energy statements of a set of jobs: gathered from the stored job energy, the sites' measured PUE and
//! carbon settings and the power-cap comparisons, then rendered as PDF, Markdown, LaTeX, JSON or CSV.

pub(crate) mod pdf;
pub(crate) mod verify;

use crate::ids::SiteId;
use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, Utc};
use serde_json::json;

use crate::analytics::statement::{build, CapComparison, JobInput, SiteInput, Statement};
use crate::db;
use crate::service::caller::JobScope;
use crate::service::jobs::list::ListQuery;
use crate::service::Context;
use crate::service::{Error, Result};

/// Most jobs one statement covers.
pub(crate) const MAX_JOBS: i64 = 20_000;

/// The formats a statement comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Typeset PDF.
    Pdf,
    /// Markdown.
    Markdown,
    /// A LaTeX snippet.
    Latex,
    /// JSON.
    Json,
    /// CSV of the jobs.
    Csv,
}

impl Format {
    /// By name (`pdf`, `md`, `tex`, `json`, `csv`) or by file extension.
    pub(crate) fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "pdf" => Ok(Self::Pdf),
            "md" | "markdown" => Ok(Self::Markdown),
            "tex" | "latex" => Ok(Self::Latex),
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            other => Err(Error::invalid(
                "format",
                format!("expected pdf, md, tex, json or csv, got '{other}'"),
            )),
        }
    }

    /// MIME type and file extension.
    pub(crate) fn content(self) -> (&'static str, &'static str) {
        match self {
            Self::Pdf => ("application/pdf", "pdf"),
            Self::Markdown => ("text/markdown; charset=utf-8", "md"),
            Self::Latex => ("application/x-tex; charset=utf-8", "tex"),
            Self::Json => ("application/json", "json"),
            Self::Csv => ("text/csv; charset=utf-8", "csv"),
        }
    }
}

/// Gathers the statement of the jobs matching `filter` (with `ids`: only those), as `scope` may see.
pub(crate) async fn gather(
    cx: &Context,
    scope: &JobScope,
    filter: db::jobs::JobFilter,
    description: String,
) -> Result<Statement> {
    let rows = db::jobs::list(
        &cx.db,
        &filter,
        db::jobs::JobSort::Start,
        false,
        MAX_JOBS + 1,
        &db::jobs::PageStart::Offset(0),
    )
    .await?;
    if rows.len() as i64 > MAX_JOBS {
        return Err(Error::TooMany(format!(
            "a statement covers at most {MAX_JOBS} jobs: narrow the filter"
        )));
    }
    if rows.is_empty() {
        return Err(Error::NotFound("no jobs match: nothing to state".into()));
    }
    let site_ids: BTreeMap<String, SiteId> = rows
        .iter()
        .map(|r| (r.job.site.clone(), r.job.site_id))
        .collect();
    // Stored summaries, recomputed where stale or missing; then each job's energy per hour.
    let views = crate::service::jobs::listed_views(cx, rows).await?;
    let ids: Vec<String> = views.iter().map(|v| v.id.clone()).collect();
    let mut by_hour = db::jobs::energy_by_hour(&cx.db, &ids).await?;
    let models = db::jobs::gpu_models(&cx.db, &ids).await?;

    // Each workload's comparison: the energy at each cap relative to the highest, how many jobs it
    // measured there, and at the highest.
    let mut rel: HashMap<(String, i64), (f64, usize)> = HashMap::new();
    let mut baselines: HashMap<String, (f64, usize)> = HashMap::new();
    let mut workloads: Vec<&String> = views
        .iter()
        .filter_map(|v| v.tags.get("workload"))
        .collect();
    workloads.sort();
    workloads.dedup();
    let tags: Vec<String> = workloads.iter().map(|w| format!("workload:{w}")).collect();
    for (w, (_, c)) in workloads
        .into_iter()
        .zip(crate::service::comparisons::stored_many(cx, scope, &tags).await?)
    {
        for c in c.iter() {
            let at_baseline = c
                .caps
                .iter()
                .find(|r| (r.power_cap_w - c.baseline_w).abs() < 0.5)
                .map_or(0, |r| r.jobs);
            baselines.insert(w.clone(), (c.baseline_w, at_baseline));
            for row in &c.caps {
                rel.insert(
                    (w.clone(), row.power_cap_w.round() as i64),
                    (row.rel_energy_pct, row.jobs),
                );
            }
        }
    }

    let (from, to) = (
        views.iter().map(|v| v.start).min().unwrap_or_else(Utc::now),
        views
            .iter()
            .map(|v| v.end.unwrap_or_else(Utc::now))
            .max()
            .unwrap_or_else(Utc::now),
    );
    let mut sites = BTreeMap::new();
    for (name, id) in &site_ids {
        let settings = db::sites::settings(&cx.db, *id)
            .await?
            .ok_or_else(|| Error::internal(format!("site {name} vanished")))?;
        // The whole local months of the jobs: each month's mean PUE is the baseline of the timing.
        let pue_by_hour = db::facility::hourly(
            &cx.db,
            *id,
            from - Duration::days(32),
            (to + Duration::days(32)).min(Utc::now()),
            db::ts(0),
        )
        .await?
        .into_iter()
        .map(|h| (h.hour.timestamp_millis(), h.weighted_pue))
        .collect();
        let meters = db::facility::list(&cx.db, Some(*id))
            .await?
            .into_iter()
            .map(|m| (m.name, m.category))
            .collect();
        let carbon_series = !db::carbon::hourly(&cx.db, *id, from, to + Duration::hours(1))
            .await?
            .is_empty();
        sites.insert(
            name.clone(),
            SiteInput {
                tz: settings.timezone.parse().unwrap_or(chrono_tz::UTC),
                pue_by_hour,
                fallback_pue: settings.fallback_pue,
                meters,
                carbon_g_per_kwh: settings.carbon_g_per_kwh,
                carbon_series,
            },
        );
    }
    let jobs = views
        .into_iter()
        .map(|view| {
            let cap = match (view.tags.get("workload"), view.power_cap_w) {
                (Some(w), Some(cap)) => rel.get(&(w.clone(), cap.round() as i64)).and_then(
                    |&(rel_energy_pct, jobs_at_cap)| {
                        baselines
                            .get(w)
                            .map(|&(baseline_w, jobs_at_baseline)| CapComparison {
                                rel_energy_pct,
                                jobs_at_cap,
                                baseline_w,
                                jobs_at_baseline,
                            })
                    },
                ),
                _ => None,
            };
            JobInput {
                it_j_by_hour: by_hour.remove(&view.id).unwrap_or_default(),
                gpu_model: models.get(&view.id).cloned(),
                cap,
                view,
            }
        })
        .collect();
    Ok(build(description, jobs, &sites, Utc::now()))
}

/// CPU or DRAM energy as shown: with how many nodes did not measure it.
fn cpu_dram(st: &Statement, kwh_value: f64) -> String {
    let s = &st.summary;
    match (s.nodes, s.nodes_unmeasured) {
        (n, k) if k > 0 && k == n => "not measured".to_owned(),
        (n, k) if k > 0 => format!(
            "{} (not measured on {k} of {n} nodes)",
            st.unit.format(kwh_value)
        ),
        _ => st.unit.format(kwh_value),
    }
}

/// The summary's labelled values, as every format shows them (every amount of energy in the
/// statement's one unit).
fn summary_pairs(st: &Statement) -> Vec<(String, String)> {
    let s = &st.summary;
    let kwh = |v: f64| st.unit.format(v);
    // A value with its bound: "4.00 kWh (3.80–4.30)".
    let bounded = |v: f64, lo: Option<f64>, hi: Option<f64>| match (lo, hi) {
        (Some(lo), Some(hi)) => {
            format!("{} ({}–{})", kwh(v), st.unit.number(lo), st.unit.number(hi))
        }
        _ => kwh(v),
    };
    let mut out = vec![
        (
            "IT energy (GPU + CPU + DRAM)".to_owned(),
            bounded(s.it_energy_kwh, s.it_energy_kwh_low, s.it_energy_kwh_high),
        ),
        ("GPU energy".to_owned(), kwh(s.gpu_energy_kwh)),
        ("CPU energy".to_owned(), cpu_dram(st, s.cpu_energy_kwh)),
        ("DRAM energy".to_owned(), cpu_dram(st, s.dram_energy_kwh)),
        (
            "Facility energy".to_owned(),
            bounded(
                s.facility_energy_kwh,
                s.facility_energy_kwh_low,
                s.facility_energy_kwh_high,
            ),
        ),
        (
            "PUE (energy-weighted)".to_owned(),
            s.pue.map_or("–".to_owned(), |p| {
                if s.pue_fallback_share >= 0.999 {
                    format!("{p:.2} (assumed: no meter data)")
                } else if s.pue_fallback_share > 0.001 {
                    format!(
                        "{p:.2} ({:.0} % measured)",
                        (1.0 - s.pue_fallback_share) * 100.0
                    )
                } else {
                    format!("{p:.2} (measured)")
                }
            }),
        ),
        (
            "CO2e, location-based".to_owned(),
            match (s.co2e_kg, s.co2e_kg_low, s.co2e_kg_high) {
                (Some(kg), Some(lo), Some(hi)) => format!(
                    "{} ({}–{})",
                    crate::analytics::units::co2e(kg),
                    crate::analytics::units::co2e(lo),
                    crate::analytics::units::co2e(hi)
                ),
                (Some(kg), _, _) => crate::analytics::units::co2e(kg),
                (None, _, _) => "not configured".to_owned(),
            },
        ),
        (
            "CO2e, market-based".to_owned(),
            s.co2e_market_kg
                .map_or("no contractual instrument recorded".to_owned(), |kg| {
                    format!(
                        "{} (instruments for {:.0} % of the energy, the rest location-based)",
                        crate::analytics::units::co2e(kg),
                        s.market_contract_share * 100.0
                    )
                }),
        ),
        (
            "Embodied CO2e (apart)".to_owned(),
            match (s.embodied_kg, s.embodied_missing) {
                (Some(kg), 0) => crate::analytics::units::co2e(kg),
                (Some(kg), n) => format!(
                    "{} ({} without a figure)",
                    crate::analytics::units::co2e(kg),
                    crate::analytics::statement::jobs_count(n)
                ),
                (None, _) => "no figure for these GPU models".to_owned(),
            },
        ),
        (
            "Cost".to_owned(),
            if s.cost.is_empty() {
                "not configured".to_owned()
            } else {
                s.cost
                    .iter()
                    .map(|(c, v)| format!("{v:.2} {c}"))
                    .collect::<Vec<_>>()
                    .join(" + ")
            },
        ),
        (
            "GPU-hours".to_owned(),
            crate::analytics::statement::gpu_hours(s.gpu_hours),
        ),
        ("Jobs".to_owned(), {
            let running = st.jobs.iter().filter(|j| j.running).count();
            if running == 0 {
                s.jobs.to_string()
            } else {
                format!(
                    "{} ({running} running: energy so far, as of {} UTC)",
                    s.jobs,
                    st.generated_at.format("%Y-%m-%d %H:%M")
                )
            }
        }),
        (
            "Low-PUE hours".to_owned(),
            s.low_pue_share.map_or("–".to_owned(), |l| {
                format!(
                    "{:.0} % of IT energy below the same month's mean PUE",
                    l * 100.0
                )
            }),
        ),
    ];
    if let (Some(f), Some(t)) = (s.from, s.to) {
        out.push((
            "Period (UTC)".to_owned(),
            format!(
                "{} to {}",
                f.format("%Y-%m-%d %H:%M"),
                t.format("%Y-%m-%d %H:%M")
            ),
        ));
    }
    out
}

fn savings(st: &Statement) -> Vec<String> {
    let mut out = Vec::new();
    let caps: Vec<String> = st
        .caps
        .iter()
        .map(|(w, n, e)| {
            format!(
                "{}: {}, {}",
                w.map_or("cap unknown".to_owned(), |w| format!("{w:.0} W")),
                crate::analytics::statement::jobs_count(*n),
                st.unit.format(*e)
            )
        })
        .collect();
    out.push(format!("Power caps used: {}.", caps.join("; ")));
    match crate::analytics::statement::cap_claim(st) {
        Some(claim) => {
            let mut c = claim;
            c[..1].make_ascii_uppercase();
            out.push(format!("{c}."));
        }
        None => out.push("No estimate of what the caps changed: no job ran under a cap its workload's power-cap comparison (a `workload` tag run at two or more caps) compares with a higher one.".to_owned()),
    }
    match crate::analytics::statement::timing_claim(st) {
        Some(claim) => out.push(format!("{claim}.")),
        None => out.push(
            "No estimate of what the timing changed: no measured PUE in these jobs' hours."
                .to_owned(),
        ),
    }
    out
}

/// The jobs table's header, its energy columns in the statement's unit.
fn jobs_header(st: &Statement) -> [String; 12] {
    let u = st.unit.symbol();
    [
        "Job".to_owned(),
        "User".to_owned(),
        "Name".to_owned(),
        "Site".to_owned(),
        "Start (UTC)".to_owned(),
        "Hours".to_owned(),
        "GPUs".to_owned(),
        "Cap (W)".to_owned(),
        format!("GPU {u}"),
        format!("CPU+DRAM {u}"),
        format!("IT {u}"),
        format!("Facility {u}"),
    ]
}

fn job_cells(st: &Statement) -> Vec<[String; 12]> {
    let d = st.unit.table_decimals();
    let n = |kwh: f64| format!("{:.d$}", st.unit.value(kwh));
    st.jobs
        .iter()
        .map(|j| {
            [
                if j.running {
                    format!("{} (running: energy so far)", j.id)
                } else {
                    j.id.clone()
                },
                j.user.clone(),
                j.name.clone(),
                j.site.clone(),
                j.start.format("%Y-%m-%d %H:%M").to_string(),
                format!("{:.2}", j.duration_s / 3600.0),
                j.gpu_count.to_string(),
                j.power_cap_w.map_or("–".to_owned(), |w| format!("{w:.0}")),
                n(j.gpu_energy_kwh),
                match (j.cpu_energy_kwh, j.dram_energy_kwh) {
                    (None, None) => "not measured".to_owned(),
                    (c, dram) => n(c.unwrap_or(0.0) + dram.unwrap_or(0.0)),
                },
                n(j.it_energy_kwh),
                n(j.facility_energy_kwh),
            ]
        })
        .collect()
}

/// The statement as Markdown.
pub(crate) fn markdown(st: &Statement) -> String {
    // Job names and tags are the users': nothing in them may become a link, markup or a new cell.
    let esc = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '\\' | '|' | '*' | '_' | '[' | ']' | '`' | '#' | '!' => {
                    out.push('\\');
                    out.push(c);
                }
                '<' => out.push_str("&lt;"),
                '\n' | '\r' => out.push(' '),
                c => out.push(c),
            }
        }
        out
    };
    let mut out = format!("# Energy statement\n\n{}\n\n", esc(&st.scope));
    if let (Some(id), Some(digest), Some(link)) = (&st.id, &st.digest, st.verify_link()) {
        out.push_str(&format!(
            "Statement {id}, SHA-256 {digest}. Anyone can check it, and whether its data has changed since: <{link}>\n\n"
        ));
    }
    out.push_str("| | |\n| --- | --- |\n");
    for (k, v) in summary_pairs(st) {
        out.push_str(&format!("| {k} | {} |\n", esc(&v)));
    }
    out.push_str(&format!(
        "\n## Energy statement\n\n{}\n\n",
        esc(&st.paragraph)
    ));
    out.push_str("## Power caps and timing\n\n");
    for s in savings(st) {
        out.push_str(&format!("- {}\n", esc(&s)));
    }
    out.push_str("\n## Method\n\n");
    for m in &st.method {
        out.push_str(&format!("- {}\n", esc(m)));
    }
    let header = jobs_header(st);
    out.push_str(&format!(
        "\n## Jobs\n\n| {} |\n|{}\n",
        header.join(" | "),
        " --- |".repeat(header.len())
    ));
    for row in job_cells(st) {
        let cells: Vec<String> = row.iter().map(|c| esc(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// Escapes text for LaTeX.
fn tex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '{' | '}' | '$' | '&' | '#' | '_' | '%' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A LaTeX snippet: the paragraph and a table of the totals, to paste into a paper.
pub(crate) fn latex(st: &Statement) -> String {
    let mut out = String::from("% Energy statement generated by Wattlas: paste into your paper.\n");
    out.push_str("\\section*{Energy Statement}\n");
    out.push_str(&tex(&st.paragraph));
    out.push_str("\n\n\\begin{table}[h]\n\\centering\n\\begin{tabular}{lr}\n\\hline\n");
    for (k, v) in summary_pairs(st) {
        out.push_str(&format!("{} & {} \\\\\n", tex(&k), tex(&v)));
    }
    out.push_str("\\hline\n\\end{tabular}\n");
    out.push_str(&format!(
        "\\caption{{Energy of {}, measured by Wattlas.}}\n\\end{{table}}\n",
        tex(&st.scope)
    ));
    if let (Some(id), Some(digest), Some(link)) = (&st.id, &st.digest, st.verify_link()) {
        out.push_str(&format!(
            "% Statement {}, SHA-256 {digest}: anyone can check it at the link below.\n\\noindent{{\\footnotesize Statement {}, verifiable at \\url{{{}}}}}\n",
            tex(id),
            tex(id),
            link
        ));
    }
    out
}

/// The jobs as fixed-width text lines for the PDF, set in blocks of 60 lines: 10,000 jobs typeset in
/// about 0.9 s (release build), where a table of 120,000 cells took 7 s (typst lays out and sizes each
/// cell) and one block of 10,000 lines 12.6 s. Columns are as wide as their widest cell; names are
/// cut at 32 characters (the CSV has them whole).
fn jobs_text(st: &Statement) -> String {
    const NAME_MAX: usize = 32;
    let header = jobs_header(st);
    let mut rows: Vec<Vec<String>> = vec![header.to_vec()];
    for mut row in job_cells(st) {
        if row[2].chars().count() > NAME_MAX {
            row[2] = row[2].chars().take(NAME_MAX - 1).collect::<String>() + "…";
        }
        rows.push(row.to_vec());
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    // Text columns left, numbers (from "Hours" on) right.
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let pad = widths[c] - cell.chars().count();
                if c >= 5 {
                    format!("{}{cell}", " ".repeat(pad))
                } else {
                    format!("{cell}{}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    out
}

/// The statement as PDF.
pub(crate) fn pdf(st: &Statement) -> Result<Vec<u8>> {
    let chart = crate::charts::statement::by_day("IT energy per day", &st.by_day, st.unit)
        .map_err(|e| Error::Internal(crate::charts::ChartError::from(e).into()))?;
    // One PUE per statement, the summary's: the sites' rows give their energy, not a PUE of their own.
    let sites: Vec<[String; 4]> = st
        .sites
        .iter()
        .map(|s| {
            [
                s.site.clone(),
                s.jobs.to_string(),
                st.unit.format(s.it_energy_kwh),
                st.unit.format(s.facility_energy_kwh),
            ]
        })
        .collect();
    let data = json!({
        "title": "Energy statement",
        "scope": st.scope,
        "generated": st.generated_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        "summary": summary_pairs(st).into_iter().map(|(k, v)| [k, v]).collect::<Vec<_>>(),
        "paragraph": st.paragraph,
        "id": st.id.clone().unwrap_or_default(),
        "digest": st.digest.clone().unwrap_or_default(),
        "link": st.verify_link().unwrap_or_default(),
        "savings": savings(st),
        "sites_header": ["Site", "Jobs", "IT energy", "Facility energy"],
        "sites": sites,
        "method": st.method,
        "jobs_text": jobs_text(st)
            .lines()
            .collect::<Vec<_>>()
            .chunks(60)
            .map(|c| c.join("\n"))
            .collect::<Vec<_>>(),
    });
    pdf::render(&data, &chart).map_err(|e| Error::internal(format!("typesetting: {e}")))
}

/// A running job's energy is a figure so far: a filter leaves running jobs out unless it asks for them
/// (`state=running`, their ids, or `state=all` for both). The query to use, and whether it left them out.
pub(crate) fn finished_by_default(q: &ListQuery, has_ids: bool) -> (ListQuery, bool) {
    let mut q = q.clone();
    match q.state.as_deref() {
        Some("all") => {
            q.state = None;
            (q, false)
        }
        None | Some("") if !has_ids => {
            q.state = Some("finished".to_owned());
            (q, true)
        }
        _ => (q, false),
    }
}

/// Adds to the method what the statement left out and how to make it again.
pub(crate) fn say_selection(
    st: &mut Statement,
    q: &ListQuery,
    ids: Option<&[String]>,
    left_out: bool,
) {
    if left_out {
        st.method.push(
            "Running jobs are left out: their energy is a figure so far (add state=running or state=all to include them, marked as running)."
                .to_owned(),
        );
    }
    st.method.push(format!(
        "This selection: {}; the same statement again: GET /api/v1/statement?{}",
        st.scope,
        reproduce_query(&crate::service::jobs::list::selection_query(q, ids))
    ));
}

/// A statement's file name: what (its selection, as a slug) and when (the day it was made, UTC):
/// `wattlas-energy-statement-finished-jobs-tagged-project-nlp-2026-11-30.pdf`.
pub(crate) fn file_name(scope: &str, made: chrono::DateTime<Utc>, ext: &str) -> String {
    let mut slug = String::new();
    for c in scope.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_end_matches('-').chars().take(80).collect();
    format!(
        "wattlas-energy-statement-{}{}{}.{ext}",
        slug.trim_end_matches('-'),
        if slug.is_empty() { "" } else { "-" },
        made.format("%Y-%m-%d")
    )
}

/// The statement query of a selection query (`user=a&tag=b`), ending in the format to ask for.
pub(crate) fn reproduce_query(selection: &str) -> String {
    if selection.is_empty() {
        "format=pdf".to_owned()
    } else {
        format!("{selection}&format=pdf")
    }
}

/// The statement in `format`.
pub(crate) fn render(st: &Statement, format: Format) -> Result<Vec<u8>> {
    Ok(match format {
        Format::Pdf => pdf(st)?,
        Format::Markdown => markdown(st).into_bytes(),
        Format::Latex => latex(st).into_bytes(),
        Format::Json => serde_json::to_vec_pretty(st).map_err(anyhow::Error::from)?,
        Format::Csv => crate::service::jobs::list::jobs_csv(&st.jobs).into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_say_what_and_when() {
        let made = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 30, 12, 0, 0)
            .single()
            .expect("time");
        assert_eq!(
            file_name("Finished jobs of user alice tagged project:nlp", made, "pdf"),
            "wattlas-energy-statement-finished-jobs-of-user-alice-tagged-project-nlp-2026-11-30.pdf"
        );
        assert_eq!(
            file_name("\"; rm -rf / é", made, "md"),
            "wattlas-energy-statement-rm-rf-2026-11-30.md"
        );
        assert_eq!(
            file_name("", made, "csv"),
            "wattlas-energy-statement-2026-11-30.csv"
        );
    }

    #[test]
    fn latex_and_markdown_escape_what_they_must() {
        assert_eq!(
            tex("50% of $x_1 & {y}#"),
            "50\\% of \\$x\\_1 \\& \\{y\\}\\#"
        );
        assert_eq!(Format::parse("TEX").expect("known"), Format::Latex);
        assert!(Format::parse("docx").is_err());
    }
}
