//! Sites: their registration and settings.

use wattlas_protocol::{CarbonPoint, NewSite, SiteSettings, SiteView};

pub(crate) use crate::db::sites::SiteRow;

use super::{Error, Result};
use crate::db;
use crate::names::SiteName;
use crate::service::Context;

/// Checks settings a site is created or updated with.
pub(crate) fn check_settings(s: &SiteSettings) -> Result<()> {
    if s.node_quota.is_some_and(|q| q > 1_000_000) {
        return Err(Error::invalid("node_quota", "at most 1000000"));
    }
    if let Some(p) = s.fallback_pue {
        if !p.is_finite() || !(1.0..=10.0).contains(&p) {
            return Err(Error::invalid(
                "fallback_pue",
                format!("{p} is outside 1..10"),
            ));
        }
    }
    if let Some(g) = s.carbon_g_per_kwh {
        if !g.is_finite() || !(0.0..=5000.0).contains(&g) {
            return Err(Error::invalid(
                "carbon_g_per_kwh",
                format!("{g} is outside 0..5000"),
            ));
        }
    }
    if let Some(p) = s.price_per_kwh {
        if !p.is_finite() || !(0.0..=100.0).contains(&p) {
            return Err(Error::invalid(
                "price_per_kwh",
                format!("{p} is outside 0..100"),
            ));
        }
    }
    if let Some(c) = &s.currency {
        if c.len() != 3 || !c.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(Error::invalid(
                "currency",
                format!("'{c}' is not an ISO 4217 code like EUR"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn site_view(row: db::sites::SiteRow) -> SiteView {
    SiteView {
        name: row.name,
        timezone: row.timezone,
        fallback_pue: row.fallback_pue,
        carbon_g_per_kwh: row.carbon_g_per_kwh,
        price_per_kwh: row.price_per_kwh,
        currency: row.currency,
        node_quota: row.node_quota.max(0) as u32,
    }
}

/// Stores a new site named `name` with the zone and settings of `site` (the API and the admin page).
pub(crate) async fn create_site(cx: &Context, name: &SiteName, site: &NewSite) -> Result<SiteView> {
    if site.timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(Error::invalid(
            "timezone",
            format!("'{}' is not an IANA time zone", site.timezone),
        ));
    }
    let settings = SiteSettings {
        fallback_pue: site.fallback_pue,
        carbon_g_per_kwh: site.carbon_g_per_kwh,
        price_per_kwh: site.price_per_kwh,
        currency: site.currency.clone(),
        node_quota: None,
    };
    check_settings(&settings)?;
    let mut tx = cx.db.begin().await?;
    let created = db::sites::create(
        &mut tx,
        name,
        &site.timezone,
        site.fallback_pue.unwrap_or(1.58),
    )
    .await?
    .ok_or_else(|| Error::Conflict(format!("name: site '{name}' exists")))?;
    let row = db::sites::update_settings(
        &mut *tx,
        &created.name,
        None,
        settings.carbon_g_per_kwh,
        settings.price_per_kwh,
        settings.currency.as_deref(),
        None,
    )
    .await?
    .ok_or_else(|| Error::internal("site vanished"))?;
    tx.commit().await?;
    Ok(site_view(row))
}

/// Checks and stores a site's settings (absent ones stay as they are), and marks its jobs' stored
/// views stale: fallback PUE, carbon intensity and price enter each of them (the API and the admin
/// page).
pub(crate) async fn update_settings(
    cx: &Context,
    site: &str,
    settings: &SiteSettings,
) -> Result<db::sites::SiteRow> {
    check_settings(settings)?;
    let mut tx = cx.db.begin().await?;
    let row = db::sites::update_settings(
        &mut *tx,
        site,
        settings.fallback_pue,
        settings.carbon_g_per_kwh,
        settings.price_per_kwh,
        settings.currency.as_deref(),
        settings.node_quota.map(|q| q.min(i32::MAX as u32) as i32),
    )
    .await?
    .ok_or_else(|| Error::NotFound(format!("no site '{site}'")))?;
    super::stale::site_changed(&mut tx, row.id, None, None).await?;
    tx.commit().await?;
    Ok(row)
}

/// Dates chrono holds but cannot step from (year -262143) make date arithmetic panic: a field's year
/// must be a plausible one, 1970 to 2200.
pub(crate) fn check_year(field: &str, year: i32, shown: impl std::fmt::Display) -> Result<()> {
    let years = wattlas_protocol::PLAUSIBLE_YEARS;
    if years.contains(&year) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{shown} is outside the years {} to {}",
                years.start(),
                years.end()
            ),
        ))
    }
}

/// Every site, by name, with its settings.
pub(crate) async fn list(cx: &Context) -> Result<Vec<SiteRow>> {
    Ok(db::sites::list_with_fallback(&cx.db).await?)
}

/// Stores a site's hourly carbon intensity (each point replaces the one of its hour), whole or not at
/// all, and marks the views of the jobs of those hours stale in the same transaction. Returns the
/// points stored.
pub(crate) async fn store_carbon(cx: &Context, site: &str, points: &[CarbonPoint]) -> Result<u64> {
    let site_row = db::sites::by_name(&cx.db, site)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no site '{site}'")))?;
    for (i, p) in points.iter().enumerate() {
        if !p.g_per_kwh.is_finite() || !(0.0..=5000.0).contains(&p.g_per_kwh) {
            return Err(Error::invalid(
                format!("[{i}].g_per_kwh"),
                format!("{} is outside 0..5000", p.g_per_kwh),
            ));
        }
    }
    let mut tx = cx.db.begin().await?;
    let stored = db::carbon::upsert(&mut *tx, site_row.id, points).await?;
    let times = points.iter().map(|p| p.time);
    super::stale::site_changed(&mut tx, site_row.id, times.clone().min(), times.max()).await?;
    tx.commit().await?;
    Ok(stored)
}

/// A new write token for the site's Prometheus remote write; the old one stops working. The token is
/// returned once, never stored.
pub(crate) async fn rotate_write_token(cx: &Context, site: &str) -> Result<String> {
    super::tokens::rotate(cx, super::tokens::Holder::Site, site)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!("no site '{site}'")),
            e => e,
        })
}

/// Each site's time zone, by name (UTC where its zone does not parse).
pub(crate) async fn zones(
    cx: &Context,
) -> Result<std::collections::BTreeMap<String, chrono_tz::Tz>> {
    Ok(db::sites::list_with_fallback(&cx.db)
        .await?
        .into_iter()
        .map(|s| (s.name, s.timezone.parse().unwrap_or(chrono_tz::UTC)))
        .collect())
}
