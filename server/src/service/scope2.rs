//! Scope 2 as reporting rules ask (issue 35, item 4): a site's contractual instruments (market-based
//! factors for a period) and GPU models' embodied emissions, set by admins, checked field by field;
//! each change marks the job views it reaches stale in its own transaction.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Error, Result};
use crate::db;
pub(crate) use crate::db::scope2::{Contract, Embodied};
use crate::service::Context;

/// A contractual instrument as an admin sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewContract {
    /// First instant covered.
    pub valid_from: DateTime<Utc>,
    /// First instant not covered.
    pub valid_to: DateTime<Utc>,
    /// Its factor, g CO2e/kWh.
    pub g_per_kwh: f64,
    /// What it is, in words.
    pub instrument: String,
}

/// A GPU model's embodied emissions as an admin sends them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEmbodied {
    /// kg CO2e per GPU-hour.
    pub kg_per_gpu_hour: f64,
    /// Where the figure comes from (a manufacturer's product carbon footprint over its service life,
    /// a study).
    pub source: String,
}

fn check_text(field: &str, s: &str, max: usize) -> Result<String> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("1 to {max} characters, no control characters"),
        ));
    }
    Ok(s.to_owned())
}

/// The site by name, or 404.
async fn site_row(cx: &Context, site: &str) -> Result<db::sites::Site> {
    db::sites::by_name(&cx.db, site)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no site '{site}'")))
}

/// A site's instruments.
pub(crate) async fn contracts(cx: &Context, site: &str) -> Result<Vec<Contract>> {
    let row = site_row(cx, site).await?;
    // Every instrument: instants are plausible years only (`sites::check_year`), 1970 to 2200.
    let (from, to) = (
        DateTime::<Utc>::UNIX_EPOCH,
        DateTime::<Utc>::from_timestamp(7_258_118_400, 0).unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
    );
    Ok(db::scope2::contracts(cx.read_db(), row.id, from, to).await?)
}

/// Records an instrument of `site`; one overlapping another is refused (409).
pub(crate) async fn add_contract(cx: &Context, site: &str, c: NewContract) -> Result<Contract> {
    for (field, t) in [("valid_from", c.valid_from), ("valid_to", c.valid_to)] {
        super::sites::check_year(field, chrono::Datelike::year(&t), t)?;
    }
    if c.valid_to <= c.valid_from {
        return Err(Error::invalid("valid_to", "must be after valid_from"));
    }
    if !c.g_per_kwh.is_finite() || !(0.0..=2000.0).contains(&c.g_per_kwh) {
        return Err(Error::invalid(
            "g_per_kwh",
            format!("{} is outside 0..2000", c.g_per_kwh),
        ));
    }
    let contract = Contract {
        valid_from: c.valid_from,
        valid_to: c.valid_to,
        g_per_kwh: c.g_per_kwh,
        instrument: check_text("instrument", &c.instrument, 200)?,
    };
    let row = site_row(cx, site).await?;
    let mut tx = cx.db.begin().await?;
    if !db::scope2::insert_contract(&mut tx, row.id, &contract).await? {
        return Err(Error::Conflict(format!(
            "valid_from: site '{site}' already has an instrument overlapping {} to {}",
            contract.valid_from, contract.valid_to
        )));
    }
    super::stale::site_changed(
        &mut tx,
        row.id,
        Some(contract.valid_from),
        Some(contract.valid_to),
    )
    .await?;
    tx.commit().await?;
    Ok(contract)
}

/// Removes the instrument of `site` starting at `valid_from`.
pub(crate) async fn delete_contract(
    cx: &Context,
    site: &str,
    valid_from: DateTime<Utc>,
) -> Result<Contract> {
    let row = site_row(cx, site).await?;
    let mut tx = cx.db.begin().await?;
    let gone = db::scope2::delete_contract(&mut tx, row.id, valid_from)
        .await?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "site '{site}' has no instrument starting {valid_from}"
            ))
        })?;
    super::stale::site_changed(&mut tx, row.id, Some(gone.valid_from), Some(gone.valid_to)).await?;
    tx.commit().await?;
    Ok(gone)
}

/// Every model's embodied figure.
pub(crate) async fn embodied(cx: &Context) -> Result<Vec<Embodied>> {
    Ok(db::scope2::embodied(cx.read_db()).await?)
}

/// Sets `model`'s embodied figure; every site's views are recomputed (a model runs anywhere).
pub(crate) async fn set_embodied(cx: &Context, model: &str, e: NewEmbodied) -> Result<Embodied> {
    if !e.kg_per_gpu_hour.is_finite() || !(0.0..=100.0).contains(&e.kg_per_gpu_hour) {
        return Err(Error::invalid(
            "kg_per_gpu_hour",
            format!("{} is outside 0..100", e.kg_per_gpu_hour),
        ));
    }
    let figure = Embodied {
        model: check_text("model", model, 200)?,
        kg_per_gpu_hour: e.kg_per_gpu_hour,
        source: check_text("source", &e.source, 500)?,
    };
    let mut tx = cx.db.begin().await?;
    db::scope2::set_embodied(&mut tx, &figure).await?;
    for site in db::sites::list_with_fallback(&cx.db).await? {
        super::stale::site_changed(&mut tx, site.id, None, None).await?;
    }
    tx.commit().await?;
    Ok(figure)
}
