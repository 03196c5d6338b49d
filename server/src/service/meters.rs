//! Facility meters: their registration, and the list with each one's last reading.

use wattlas_protocol::{MeterToken, MeterView, NewMeter};

use super::{Error, Result};
use crate::db;
use crate::service::caller;
use crate::service::Context;

const CATEGORIES: [&str; 3] = ["PUE1", "PUE2", "PUE3"];

/// Validates and stores a new meter with a fresh token (the API and the admin page).
pub async fn create_meter(cx: &Context, meter: &NewMeter) -> Result<MeterToken> {
    super::check_name("name", &meter.name)?;
    let category = meter.category.clone().unwrap_or_else(|| "PUE1".into());
    if !CATEGORIES.contains(&category.as_str()) {
        return Err(Error::invalid(
            "category",
            format!("'{category}' is not PUE1, PUE2 or PUE3"),
        ));
    }
    let site = db::sites::by_name(&cx.db, &meter.site)
        .await?
        .ok_or_else(|| Error::invalid("site", format!("unknown site '{}'", meter.site)))?;
    let token = caller::new_token("wm");
    db::facility::create(
        &cx.db,
        &meter.name,
        site.id,
        &category,
        &caller::token_digest(&token),
    )
    .await?
    .ok_or_else(|| Error::Conflict(format!("name: meter '{}' exists", meter.name)))?;
    Ok(MeterToken {
        name: meter.name.clone(),
        token,
    })
}

/// Meters (of one site, or all) with their last reading.
pub async fn meter_views(cx: &Context, site_id: Option<i32>) -> Result<Vec<MeterView>> {
    let mut out = Vec::new();
    for m in db::facility::list(&cx.db, site_id).await? {
        out.push(MeterView {
            last_reading: db::facility::last_reading(&cx.db, m.id).await?,
            name: m.name,
            site: m.site,
            category: m.category,
        });
    }
    Ok(out)
}
