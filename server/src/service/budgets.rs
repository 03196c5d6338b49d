//! Projects and their monthly budgets: a project is the `project` tag of its jobs; admins set an IT
//! energy and/or CO2e budget per calendar month (UTC). The budgets task records each crossing of 80 %
//! and 100 % once and posts it as JSON to the project's webhook until the receiver takes it (2xx);
//! members see a banner on their jobs page.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::db;
use crate::service::Context;

pub(crate) use crate::db::budgets::{Alert, Budget};

/// Shares of a budget whose crossing is posted, %.
pub(crate) const THRESHOLDS: [i32; 2] = [80, 100];
/// Delivery attempts per crossing (one per run, every few seconds) before it is left undelivered.
pub(crate) const MAX_ATTEMPTS: i32 = 20;
/// How long a receiver has to answer, s.
const WEBHOOK_TIMEOUT_S: u64 = 5;

/// `PUT /api/v1/projects/{project}/budget`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetInput {
    /// IT energy per month, kWh.
    pub kwh_per_month: Option<f64>,
    /// CO2e per month, kg.
    pub co2e_kg_per_month: Option<f64>,
    /// `http://` or `https://` URL that crossings are posted to.
    pub webhook_url: Option<String>,
}

/// A project's budget and its use this month.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Status {
    /// The `project` tag.
    pub project: String,
    /// The month, `YYYY-MM` (UTC).
    pub month: String,
    /// Budget, kWh of IT energy.
    pub kwh_per_month: Option<f64>,
    /// Budget, kg CO2e.
    pub co2e_kg_per_month: Option<f64>,
    /// IT energy of the project's jobs started this month, kWh.
    pub used_kwh: f64,
    /// Where it lies: its jobs' bounds added (issue 35); absent where a job's summary has none.
    pub used_kwh_low: Option<f64>,
    /// .
    pub used_kwh_high: Option<f64>,
    /// The CO2e's bound, likewise.
    pub used_co2e_kg_low: Option<f64>,
    /// .
    pub used_co2e_kg_high: Option<f64>,
    /// Their CO2e, kg (`None` where no job has one: no carbon intensity at its site).
    pub used_co2e_kg: Option<f64>,
    /// Share of the energy budget used, %.
    pub energy_pct: Option<f64>,
    /// Share of the CO2e budget used, %.
    pub co2e_pct: Option<f64>,
    /// Jobs.
    pub jobs: i64,
    /// Jobs whose energy is still being computed (not in the use yet).
    pub pending: i64,
    /// Whether crossings are posted somewhere.
    pub webhook: bool,
}

/// The first day of `now`'s UTC month, as a date and an instant.
pub(crate) fn month_of(now: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>) {
    let first = NaiveDate::from_ymd_opt(now.year(), now.month(), 1).unwrap_or(now.date_naive());
    let start = Utc
        .from_local_datetime(&first.and_time(chrono::NaiveTime::MIN))
        .single()
        .unwrap_or(now);
    (first, start)
}

/// Checks and stores a project's budget.
pub(crate) async fn set(cx: &Context, project: &str, input: BudgetInput) -> Result<Budget> {
    if project.is_empty() || project.len() > 200 || project.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(
            "project",
            "must be 1 to 200 characters without control characters",
        ));
    }
    for (field, v) in [
        ("kwh_per_month", input.kwh_per_month),
        ("co2e_kg_per_month", input.co2e_kg_per_month),
    ] {
        if let Some(v) = v {
            if !(v.is_finite() && v > 0.0 && v <= 1e12) {
                return Err(Error::invalid(
                    field,
                    format!("{v} is not above 0 and at most 1e12"),
                ));
            }
        }
    }
    if input.kwh_per_month.is_none() && input.co2e_kg_per_month.is_none() {
        return Err(Error::invalid(
            "kwh_per_month",
            "a budget needs kwh_per_month, co2e_kg_per_month or both",
        ));
    }
    let webhook_url = match input.webhook_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(u) => {
            if u.len() > 2000 {
                return Err(Error::invalid("webhook_url", "at most 2000 characters"));
            }
            // A public receiver, or one the admin allowed (issue 33, N6).
            super::webhooks::check("webhook_url", u, &cx.config.webhook_allow, cx.config.bind)
                .await?;
            Some(u.to_owned())
        }
    };
    let budget = Budget {
        project: project.to_owned(),
        kwh_per_month: input.kwh_per_month,
        co2e_kg_per_month: input.co2e_kg_per_month,
        webhook_url,
    };
    db::budgets::upsert(&cx.db, &budget).await?;
    Ok(budget)
}

/// A project's budget as it stands, if any (the admin form's empty fields keep its values).
pub(crate) async fn current(cx: &Context, project: &str) -> Result<Option<db::budgets::Budget>> {
    Ok(db::budgets::by_project(&cx.db, project).await?)
}

/// Every budget with this month's use.
pub(crate) async fn statuses(cx: &Context, now: DateTime<Utc>) -> Result<Vec<Status>> {
    statuses_of(cx, now, None).await
}

/// The budgets of `only` (all where `None`) with this month's use: pages that concern a few projects
/// sum only theirs.
pub(crate) async fn statuses_of(
    cx: &Context,
    now: DateTime<Utc>,
    only: Option<&[String]>,
) -> Result<Vec<Status>> {
    let (first, start) = month_of(now);
    let pct = |used: Option<f64>, budget: Option<f64>| match (used, budget) {
        (Some(u), Some(b)) if b > 0.0 => Some(u / b * 100.0),
        (None, Some(_)) => Some(0.0),
        _ => None,
    };
    Ok(db::budgets::with_use(cx.read_db(), start, now, only)
        .await?
        .into_iter()
        .map(|(b, u)| Status {
            month: first.format("%Y-%m").to_string(),
            energy_pct: pct(Some(u.kwh), b.kwh_per_month),
            co2e_pct: pct(u.co2e_kg, b.co2e_kg_per_month),
            project: b.project,
            kwh_per_month: b.kwh_per_month,
            co2e_kg_per_month: b.co2e_kg_per_month,
            used_kwh: u.kwh,
            used_kwh_low: u.kwh_low,
            used_kwh_high: u.kwh_high,
            used_co2e_kg: u.co2e_kg,
            used_co2e_kg_low: u.co2e_kg_low,
            used_co2e_kg_high: u.co2e_kg_high,
            jobs: u.jobs,
            pending: u.pending,
            webhook: b.webhook_url.is_some(),
        })
        .collect())
}

/// The statuses of projects `user` ran jobs in this month that crossed 80 % of a budget.
pub(crate) async fn banners_for(cx: &Context, user: &str) -> Result<Vec<Status>> {
    let now = Utc::now();
    let mine = db::budgets::projects_of(cx.read_db(), user, month_of(now).1).await?;
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    Ok(statuses_of(cx, now, Some(&mine))
        .await?
        .into_iter()
        .filter(|s| s.budgets().any(|(_, pct, _, _)| pct >= 80.0))
        .collect())
}

/// A budget's kind, as its crossings name it (`energy`, `co2e`).
pub(crate) const KINDS: [&str; 2] = ["energy", "co2e"];

/// What a kind of budget limits, in words: `IT energy` or `CO2e`.
pub(crate) fn what(kind: &str) -> &'static str {
    if kind == "energy" {
        "IT energy"
    } else {
        "CO2e"
    }
}

/// A project's use of a budget in words (the webhook's `text`, the members' banner):
/// "Project atlas has used 85 % of its IT energy budget for 2026-11 (UTC): 3.2 Wh of 3.8 Wh."
pub(crate) fn used_text(project: &str, month: &str, kind: &str, used: f64, budget: f64) -> String {
    format!(
        "Project {project} has used {:.0} % of its {} budget for {month} (UTC): {} of {}.",
        used / budget * 100.0,
        what(kind),
        amount(kind, used),
        amount(kind, budget)
    )
}

impl Status {
    /// Each kind of budget the project has: (kind, % used, used, budget); use unknown (no job with
    /// CO2e) leaves `used` out.
    pub(crate) fn budgets(
        &self,
    ) -> impl Iterator<Item = (&'static str, f64, Option<f64>, f64)> + '_ {
        KINDS.into_iter().filter_map(|kind| {
            let (pct, used, budget) = if kind == "energy" {
                (self.energy_pct, Some(self.used_kwh), self.kwh_per_month)
            } else {
                (self.co2e_pct, self.used_co2e_kg, self.co2e_kg_per_month)
            };
            Some((kind, pct?, used, budget?))
        })
    }
}

/// An amount of a budget's kind as people read it: energy by the one energy formatter (Wh under a
/// kWh), CO2e in g under a kg.
pub(crate) fn amount(kind: &str, v: f64) -> String {
    if kind == "energy" {
        super::jobs::timing::format_energy(v)
    } else {
        format!("{} CO2e", crate::analytics::units::co2e(v))
    }
}

/// A used amount's bound in words: "between 1.20 kWh and 1.40 kWh"; empty without one.
pub(crate) fn bound(kind: &str, low: Option<f64>, high: Option<f64>) -> String {
    match (low, high) {
        (Some(lo), Some(hi)) => format!("between {} and {}", amount(kind, lo), amount(kind, hi)),
        _ => String::new(),
    }
}

/// What a receiver gets: the crossing, and a `text` line chat webhooks show as is.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Payload {
    /// Project.
    pub project: String,
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// `energy` or `co2e`.
    pub kind: String,
    /// 80 or 100.
    pub threshold_pct: i32,
    /// Use when crossed.
    pub used: f64,
    /// Budget.
    pub budget: f64,
    /// `kWh` or `kg CO2e`.
    pub unit: String,
    /// When it was seen.
    pub crossed_at: DateTime<Utc>,
    /// One line for people.
    pub text: String,
}

impl Payload {
    /// Of a recorded crossing.
    pub(crate) fn of(a: &Alert) -> Self {
        let unit = if a.kind == "energy" { "kWh" } else { "kg CO2e" };
        let month = a.month.format("%Y-%m").to_string();
        Self {
            text: used_text(&a.project, &month, &a.kind, a.used, a.budget),
            project: a.project.clone(),
            month,
            kind: a.kind.clone(),
            threshold_pct: a.threshold_pct,
            used: a.used,
            budget: a.budget,
            unit: unit.to_owned(),
            crossed_at: a.crossed_at,
        }
    }
}

/// Records this month's new crossings of 80 % and 100 %: how many.
pub(crate) async fn record_crossings(cx: &Context) -> Result<usize> {
    let now = Utc::now();
    let (first, _) = month_of(now);
    let mut recorded = 0;
    for s in statuses(cx, now).await? {
        for (kind, pct, used, budget) in s.budgets() {
            let Some(used) = used else { continue };
            for t in THRESHOLDS.into_iter().filter(|t| pct >= f64::from(*t)) {
                if db::budgets::record(&cx.db, &s.project, first, kind, t, used, budget).await? {
                    recorded += 1;
                }
            }
        }
    }
    Ok(recorded)
}

/// Whether any crossing waits to be posted.
pub(crate) async fn any_due(cx: &Context) -> Result<bool> {
    Ok(db::budgets::any_undelivered(&cx.db, MAX_ATTEMPTS).await?)
}

/// Deliveries under way at once: each waits up to `WEBHOOK_TIMEOUT_S` on its receiver.
const DELIVERIES_AT_ONCE: usize = 8;

/// Posts every undelivered crossing, `DELIVERIES_AT_ONCE` at a time, each to its destination checked
/// again (it may resolve elsewhere since it was set); notes each attempt: how many were delivered.
pub(crate) async fn deliver_due(cx: &Context) -> Result<usize> {
    let due = db::budgets::undelivered(&cx.db, MAX_ATTEMPTS).await?;
    let mut attempts = tokio::task::JoinSet::new();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(DELIVERIES_AT_ONCE));
    for (alert, url) in due {
        let slot = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::internal(format!("delivery slots: {e}")))?;
        let (allow, bind) = (cx.config.webhook_allow.clone(), cx.config.bind);
        attempts.spawn(async move {
            let error = deliver(&url, &Payload::of(&alert), &allow, bind)
                .await
                .err();
            drop(slot);
            (alert, error)
        });
    }
    let mut delivered = 0;
    while let Some(done) = attempts.join_next().await {
        let (alert, error) = done.map_err(|e| Error::internal(format!("a delivery: {e}")))?;
        match &error {
            None => delivered += 1,
            Some(e) => {
                tracing::warn!(project = %alert.project, error = %e, "budget webhook not delivered")
            }
        }
        db::budgets::attempted(&cx.db, &alert, error.as_deref()).await?;
    }
    Ok(delivered)
}

/// One delivery: the error staff may see (its kind, never the URL or the receiver's words).
async fn deliver(
    url: &str,
    payload: &Payload,
    allow: &[super::webhooks::Allowed],
    bind: std::net::SocketAddr,
) -> std::result::Result<(), String> {
    let dest = super::webhooks::check("webhook_url", url, allow, bind)
        .await
        .map_err(|e| match e {
            Error::Invalid { message, .. } => format!("refused: {message}"),
            other => format!("refused: {other}"),
        })?;
    let mut client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(WEBHOOK_TIMEOUT_S))
        .redirect(reqwest::redirect::Policy::none());
    // Connect to the addresses checked, not to what a second lookup says.
    if let Some(host) = &dest.host {
        client = client.resolve_to_addrs(host, &dest.addrs);
    }
    let client = client
        .build()
        .map_err(|_| "no answer: the client could not be built".to_owned())?;
    match client.post(dest.url).json(payload).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("the receiver answered {}", r.status().as_u16())),
        Err(e) => Err(super::webhooks::failure(&e)),
    }
}

/// The projects' budgets with their use this month and this month's alerts (staff), or only the
/// projects `user` ran jobs in this month, without alerts (researchers).
pub(crate) async fn projects(
    cx: &Context,
    now: DateTime<Utc>,
    user: Option<&str>,
) -> Result<(Vec<Status>, Vec<db::budgets::Alert>)> {
    let (first, start) = month_of(now);
    match user {
        None => Ok((
            statuses(cx, now).await?,
            db::budgets::alerts(cx.read_db(), first).await?,
        )),
        Some(name) => {
            let mine = db::budgets::projects_of(cx.read_db(), name, start).await?;
            Ok((statuses_of(cx, now, Some(&mine)).await?, Vec::new()))
        }
    }
}
