//! The jobs list, API, page and CSV alike: its query, filters, sorting, paging and totals.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use wattlas_protocol::{JobList, JobView, PageCursor};

use crate::db;
use crate::service::caller::JobScope;
use crate::service::Context;

pub(crate) use crate::db::jobs::PageStart;
use crate::service::{csv_cell, Error, Result};

/// Query of the jobs list, API and page alike.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ListQuery {
    /// Owner.
    pub user: Option<String>,
    /// Site name.
    pub site: Option<String>,
    /// `key:value`.
    pub tag: Option<String>,
    /// `running` or `finished`.
    pub state: Option<String>,
    /// Jobs running at or after this time (RFC 3339, or a UTC date YYYY-MM-DD).
    pub from: Option<String>,
    /// Jobs starting before this time (RFC 3339, or a UTC date: before the end of that day).
    pub to: Option<String>,
    /// Power cap, W.
    pub cap: Option<String>,
    /// Sort key: start (default), energy, duration, gpus, user, id.
    pub sort: Option<String>,
    /// `asc` or `desc` (default: desc).
    pub order: Option<String>,
    /// Page size, 1..=500 (default 50).
    pub limit: Option<i64>,
    /// Jobs to skip.
    pub offset: Option<i64>,
    /// Start after this job (a keyset cursor from the previous page's `next`).
    pub after: Option<String>,
    /// The sort key of `after`.
    pub after_key: Option<String>,
}

/// RFC 3339, or a date meaning UTC midnight (`end_of_day`: the midnight after it).
fn parse_time(
    field: &str,
    text: Option<String>,
    end_of_day: bool,
) -> Result<Option<DateTime<Utc>>> {
    let Some(text) = text else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(&text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let date = chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| {
        Error::invalid(
            field,
            format!("expected a date (YYYY-MM-DD) or an RFC 3339 time, got '{text}'"),
        )
    })?;
    let date = if end_of_day {
        date.succ_opt().unwrap_or(date)
    } else {
        date
    };
    Ok(Some(date.and_time(chrono::NaiveTime::MIN).and_utc()))
}

impl ListQuery {
    /// The filter's parameters, each `key=value` URL-encoded, in one order (page links and the
    /// statement's "the same again" query share it).
    pub(crate) fn filter_params(&self) -> Vec<String> {
        [
            ("user", &self.user),
            ("site", &self.site),
            ("tag", &self.tag),
            ("state", &self.state),
            ("from", &self.from),
            ("to", &self.to),
            ("cap", &self.cap),
        ]
        .into_iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", wattlas_protocol::paths::encode_segment(v)))
        })
        .collect()
    }

    pub(crate) fn filter(&self, scope: &JobScope) -> Result<db::jobs::JobFilter> {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        let tag = match nonempty(&self.tag) {
            Some(t) => {
                let (k, v) = t.split_once([':', '=']).ok_or_else(|| {
                    Error::invalid("tag", format!("expected key:value, got '{t}'"))
                })?;
                Some((k.to_owned(), v.to_owned()))
            }
            None => None,
        };
        let running = match self.state.as_deref() {
            None | Some("") | Some("all") => None,
            Some("running") => Some(true),
            Some("finished") => Some(false),
            Some(other) => {
                return Err(Error::invalid(
                    "state",
                    format!("expected running or finished, got '{other}'"),
                ))
            }
        };
        let cap = match nonempty(&self.cap) {
            Some(c) => Some(
                c.trim_end_matches(['W', 'w', ' '])
                    .parse::<f64>()
                    .ok()
                    .filter(|w| w.is_finite() && *w > 0.0)
                    .ok_or_else(|| {
                        Error::invalid("cap", format!("expected watts, e.g. 150, got '{c}'"))
                    })?,
            ),
            None => None,
        };
        Ok(db::jobs::JobFilter {
            owner: scope.owner(),
            ids: None,
            power_cap_w: cap,
            user: nonempty(&self.user),
            site: nonempty(&self.site),
            tag,
            running,
            from: parse_time("from", nonempty(&self.from), false)?,
            to: parse_time("to", nonempty(&self.to), true)?,
        })
    }

    pub(crate) fn sort(&self) -> Result<(db::jobs::JobSort, bool)> {
        let sort = match self.sort.as_deref().filter(|s| !s.is_empty()) {
            None => db::jobs::JobSort::Start,
            Some(name) => db::jobs::JobSort::NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| *s)
                .ok_or_else(|| {
                    Error::invalid(
                        "sort",
                        format!(
                            "expected one of start, energy, duration, gpus, user, id; got '{name}'"
                        ),
                    )
                })?,
        };
        let descending = match self.order.as_deref() {
            None | Some("") | Some("desc") => true,
            Some("asc") => false,
            Some(other) => {
                return Err(Error::invalid(
                    "order",
                    format!("expected asc or desc, got '{other}'"),
                ))
            }
        };
        Ok((sort, descending))
    }

    /// Page size and where the page starts.
    pub(crate) fn page(&self) -> Result<(i64, db::jobs::PageStart)> {
        const MAX_OFFSET: i64 = 1_000_000_000;
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(Error::invalid("limit", "must be 1 to 500"));
        }
        let offset = self.offset.unwrap_or(0);
        // Bounded, so that offset + limit cannot overflow (i64::MAX made the jobs page panic).
        if !(0..=MAX_OFFSET).contains(&offset) {
            return Err(Error::invalid(
                "offset",
                format!("must be 0 to {MAX_OFFSET}"),
            ));
        }
        let key = self.after_key.as_deref().filter(|k| !k.is_empty());
        let Some(after) = self.after.clone().filter(|a| !a.is_empty()) else {
            if key.is_some() {
                return Err(Error::invalid(
                    "after_key",
                    "needs after (the job it belongs to)",
                ));
            }
            return Ok((limit, db::jobs::PageStart::Offset(offset)));
        };
        if offset != 0 {
            return Err(Error::invalid(
                "offset",
                "not with after: a page starts after a job or after a number of jobs",
            ));
        }
        let key = match key {
            None => None,
            Some(text) => Some(match self.sort()?.0.kind() {
                db::jobs::KeyKind::Time => db::jobs::SortKey::Time(
                    DateTime::parse_from_rfc3339(text)
                        .map_err(|_| {
                            Error::invalid(
                                "after_key",
                                format!("expected an RFC 3339 time, got '{text}'"),
                            )
                        })?
                        .with_timezone(&Utc),
                ),
                db::jobs::KeyKind::Number => db::jobs::SortKey::Number(
                    text.parse::<f64>()
                        .ok()
                        .filter(|n| n.is_finite())
                        .ok_or_else(|| {
                            Error::invalid("after_key", format!("expected a number, got '{text}'"))
                        })?,
                ),
                db::jobs::KeyKind::Text => db::jobs::SortKey::Text(text.to_owned()),
            }),
        };
        Ok((limit, db::jobs::PageStart::After(key, after)))
    }
}

/// The cursor that starts the page after `row`.
fn cursor(row: &db::jobs::ListedJob) -> PageCursor {
    PageCursor {
        after: row.job.id.clone(),
        after_key: row.sort_key().map(|k| match k {
            db::jobs::SortKey::Time(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            db::jobs::SortKey::Number(n) => n.to_string(),
            db::jobs::SortKey::Text(t) => t,
        }),
    }
}

/// One page of the jobs the scope may see, with the totals of all pages.
pub(crate) async fn list_views(cx: &Context, scope: &JobScope, q: &ListQuery) -> Result<JobList> {
    let filter = q.filter(scope)?;
    let (limit, start) = q.page()?;
    let (sort, descending) = q.sort()?;
    // The page (one row more: whether a next page exists) and the totals, on two connections at once.
    let (mut rows, (totals, updating)) = tokio::try_join!(
        db::jobs::list(&cx.db, &filter, sort, descending, limit + 1, &start),
        db::jobs::totals(&cx.db, &filter)
    )?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = rows.last().filter(|_| more).map(cursor);
    Ok(JobList {
        jobs: super::listed_views(cx, rows).await?,
        total: totals.jobs,
        totals,
        updating,
        next,
    })
}

/// The filtered jobs (all pages, at most `MAX_EXPORT`) in the list's order, for a CSV export.
pub(crate) async fn export_views(
    cx: &Context,
    scope: &JobScope,
    q: &ListQuery,
) -> Result<Vec<JobView>> {
    let filter = q.filter(scope)?;
    let (sort, descending) = q.sort()?;
    let rows = db::jobs::list(
        &cx.db,
        &filter,
        sort,
        descending,
        MAX_EXPORT,
        &db::jobs::PageStart::Offset(0),
    )
    .await?;
    super::listed_views(cx, rows).await
}

/// Most jobs one CSV export holds.
const MAX_EXPORT: i64 = 10_000;

/// The filtered jobs (all pages, newest first, at most 10,000) as CSV, one row per job.
pub(crate) fn jobs_csv(jobs: &[JobView]) -> String {
    let opt =
        |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_default();
    let mut out = String::from(
        "id,user,name,site,start,end,duration_s,gpu_count,it_energy_kwh,facility_energy_kwh,pue,\
         pue_fallback_share,avg_power_w,power_cap_w,coverage,energy_method,samples,tags,\
         gpu_energy_kwh,cpu_energy_kwh,dram_energy_kwh,cpu_dram_unmeasured,co2e_kg,cost,currency,\
         idle_gpu_energy_kwh,running,avg_power_per_gpu_w,it_energy_kwh_low,it_energy_kwh_high,\
         facility_energy_kwh_low,facility_energy_kwh_high,co2e_kg_low,co2e_kg_high,\
         sensor_aliasing\n",
    );
    for j in jobs {
        let tags: Vec<String> = j.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let method = serde_json::to_value(j.energy_method)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let cells = [
            csv_cell(&j.id),
            csv_cell(&j.user),
            csv_cell(&j.name),
            csv_cell(&j.site),
            j.start.to_rfc3339(),
            j.end.map(|e| e.to_rfc3339()).unwrap_or_default(),
            format!("{:.3}", j.duration_s),
            j.gpu_count.to_string(),
            format!("{:.6}", j.it_energy_kwh),
            format!("{:.6}", j.facility_energy_kwh),
            opt(j.pue, 4),
            format!("{:.4}", j.pue_fallback_share),
            format!("{:.2}", j.avg_power_w),
            opt(j.power_cap_w, 1),
            format!("{:.4}", j.coverage),
            method,
            j.samples.to_string(),
            csv_cell(&tags.join(";")),
            format!("{:.9}", j.gpu_energy_kwh),
            opt(j.cpu_energy_kwh, 9),
            opt(j.dram_energy_kwh, 9),
            csv_cell(&j.cpu_dram_unmeasured.join(";")),
            opt(j.co2e_kg, 6),
            opt(j.cost, 4),
            csv_cell(j.currency.as_deref().unwrap_or_default()),
            opt(j.idle_gpu_energy_kwh, 9),
            j.running.to_string(),
            // Beside the per-GPU cap (issue 31: only the whole job's power stood beside it).
            opt(j.avg_power_per_gpu_w, 2),
            opt(j.it_energy_kwh_low, 6),
            opt(j.it_energy_kwh_high, 6),
            opt(j.facility_energy_kwh_low, 6),
            opt(j.facility_energy_kwh_high, 6),
            opt(j.co2e_kg_low, 6),
            opt(j.co2e_kg_high, 6),
            // Whether the GPU sensor disagreed with itself (issue 35, item 3); empty where the view
            // was computed before it was kept.
            j.sensor
                .as_ref()
                .map(|s| s.aliasing.to_string())
                .unwrap_or_default(),
        ];
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The query string that selects the same jobs (`user=alice&tag=project%3Anlp`), filters only.
pub(crate) fn selection_query(q: &ListQuery, ids: Option<&[String]>) -> String {
    let mut parts = q.filter_params();
    if let Some(ids) = ids {
        parts.push(format!(
            "jobs={}",
            wattlas_protocol::paths::encode_segment(&ids.join(","))
        ));
    }
    parts.join("&")
}

/// The selection in words ("Finished jobs of user alice tagged project:nlp").
pub(crate) fn describe(q: &ListQuery, ids: Option<&[String]>) -> String {
    let mut parts = Vec::new();
    let which = match q.state.as_deref() {
        Some("running") => "running ",
        Some("finished") => "finished ",
        _ => "",
    };
    match ids {
        Some([one]) => parts.push(format!("job {one}")),
        Some(ids) => parts.push(format!("{} listed {which}jobs", ids.len())),
        None => parts.push(format!("{which}jobs")),
    }
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    if let Some(u) = nonempty(&q.user) {
        parts.push(format!("of user {u}"));
    }
    if let Some(s) = nonempty(&q.site) {
        parts.push(format!("at site {s}"));
    }
    if let Some(t) = nonempty(&q.tag) {
        parts.push(format!("tagged {t}"));
    }
    if let Some(c) = nonempty(&q.cap) {
        parts.push(format!("capped at {c} W"));
    }
    if let Some(f) = nonempty(&q.from) {
        parts.push(format!("from {f}"));
    }
    if let Some(t) = nonempty(&q.to) {
        parts.push(format!("to {t}"));
    }
    let mut out = parts.join(" ");
    if let Some(first) = out.get(..1) {
        out = first.to_uppercase() + &out[1..];
    }
    out
}
