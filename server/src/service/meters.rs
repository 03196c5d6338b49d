//! Facility meters: their registration, their readings (checked, stored, deleted), and the list with
//! each one's last reading.

use crate::ids::SiteId;
use chrono::{DateTime, TimeZone, Utc};
use wattlas_protocol::{
    FacilityBatch, FacilityReading, MeterToken, MeterView, MAX_READINGS_SPAN_DAYS,
};

use super::{Error, Result};
use crate::db;
use crate::names::MeterName;
use crate::service::caller::{self, Caller};
use crate::service::Context;

const CATEGORIES: [&str; 3] = ["PUE1", "PUE2", "PUE3"];

/// Stores a new meter in `site` of `category` (`PUE1` where none) with a fresh token (the API and the
/// admin page).
pub(crate) async fn create_meter(
    cx: &Context,
    name: &MeterName,
    site: &str,
    category: Option<&str>,
) -> Result<MeterToken> {
    let category = category.unwrap_or("PUE1").to_owned();
    if !CATEGORIES.contains(&category.as_str()) {
        return Err(Error::invalid(
            "category",
            format!("'{category}' is not PUE1, PUE2 or PUE3"),
        ));
    }
    let site_row = db::sites::by_name(&cx.db, site)
        .await?
        .ok_or_else(|| Error::invalid("site", format!("unknown site '{site}'")))?;
    let token = caller::new_token("wm");
    db::facility::create(
        &cx.db,
        name,
        site_row.id,
        &category,
        &caller::token_digest(&token),
    )
    .await?
    .ok_or_else(|| Error::Conflict(format!("name: meter '{name}' exists")))?;
    Ok(MeterToken {
        name: name.to_string(),
        token,
    })
}

/// Meters (of one site, or all) with their last reading.
pub(crate) async fn meter_views(cx: &Context, site_id: Option<SiteId>) -> Result<Vec<MeterView>> {
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

/// Stores a meter's readings (`caller` the meter itself, or an admin naming it): the batch is refused
/// whole on its first invalid field; each (meter, time) is stored once. An admin's import may name a
/// meter not yet known, with its site: it is registered as `create_meter` would (the same name check).
/// Returns (stored, duplicates).
pub(crate) async fn store_readings(
    cx: &Context,
    caller: &Caller,
    batch: &FacilityBatch,
    now: DateTime<Utc>,
) -> Result<(u64, u64)> {
    validate(&batch.readings, now)?;
    let meter = match (caller, &batch.meter) {
        (Caller::Meter { name, .. }, Some(named)) if named != name => {
            return Err(Error::Forbidden(format!(
                "meter: this token belongs to meter '{name}', not '{named}'"
            )));
        }
        (Caller::Meter { name, .. }, _) => db::facility::by_name(&cx.db, name).await?,
        (Caller::Admin, Some(named)) => match db::facility::by_name(&cx.db, named).await? {
            Some(m) => Some(m),
            None => {
                // An import names a meter not yet known: admin may create it in the given site.
                let site = batch.site.as_deref().ok_or_else(|| {
                    Error::invalid(
                        "meter",
                        format!("unknown meter '{named}' (give site to create it)"),
                    )
                })?;
                let named = MeterName::parse("meter", named)?;
                let site_row = db::sites::by_name(&cx.db, site)
                    .await?
                    .ok_or_else(|| Error::invalid("site", format!("unknown site '{site}'")))?;
                db::facility::create(
                    &cx.db,
                    &named,
                    site_row.id,
                    "PUE1",
                    &caller::token_digest(&caller::new_token("wm")),
                )
                .await?;
                db::facility::by_name(&cx.db, &named).await?
            }
        },
        (Caller::Admin, None) => {
            return Err(Error::invalid("meter", "required with the admin token"));
        }
        (Caller::Node { .. } | Caller::Site { .. }, _) => {
            return Err(Error::Forbidden(
                "a node token cannot send meter readings".into(),
            ));
        }
        (Caller::User(_), _) => return Err(Error::Forbidden("only meters send readings".into())),
    };
    let meter = meter.ok_or_else(|| Error::invalid("meter", "unknown meter"))?;
    if let Some(site) = &batch.site {
        if *site != meter.site {
            return Err(Error::invalid(
                "site",
                format!(
                    "meter '{}' is in site '{}', not '{site}'",
                    meter.name, meter.site
                ),
            ));
        }
    }
    let mut tx = cx.db.begin().await?;
    let stored = db::facility::insert(&mut tx, meter.id, &batch.readings).await?;
    let times = batch.readings.iter().map(|r| r.time);
    super::stale::site_changed(&mut tx, meter.site_id, times.clone().min(), times.max()).await?;
    tx.commit().await?;
    cx.pue_cache.invalidate(meter.site_id);
    cx.metrics.readings(stored);
    Ok((stored, batch.readings.len() as u64 - stored))
}

/// Removes a broken meter's readings in `[from, to)`; the site's PUE and the jobs charged in that
/// range are recomputed. Returns the readings deleted.
pub(crate) async fn delete_readings(
    cx: &Context,
    name: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<u64> {
    if to <= from {
        return Err(Error::invalid("to", "must be after from"));
    }
    let meter = db::facility::by_name(&cx.db, name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no meter '{name}'")))?;
    let mut tx = cx.db.begin().await?;
    let deleted = db::facility::delete_readings(&mut tx, meter.id, from, to).await?;
    super::stale::site_changed(&mut tx, meter.site_id, Some(from), Some(to)).await?;
    tx.commit().await?;
    cx.pue_cache.invalidate(meter.site_id);
    Ok(deleted)
}

/// Largest power of a site, kW (10 GW).
const MAX_KW: f64 = 1e7;
/// Largest energy counter, kWh.
const MAX_KWH: f64 = 1e12;
/// Largest PUE accepted.
const MAX_PUE: f64 = 10.0;

/// Checks every reading; the first bad field refuses the whole batch.
pub(crate) fn validate(readings: &[FacilityReading], now: DateTime<Utc>) -> Result<()> {
    if let (Some(first), Some(last)) = (
        readings.iter().map(|r| r.time).min(),
        readings.iter().map(|r| r.time).max(),
    ) {
        if last - first > chrono::Duration::days(MAX_READINGS_SPAN_DAYS) {
            return Err(Error::invalid(
                "readings",
                format!(
                    "they span {} days; one batch covers at most {MAX_READINGS_SPAN_DAYS} \
                     (send older readings in batches of their own)",
                    (last - first).num_days()
                ),
            ));
        }
    }
    let earliest = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let latest = now + chrono::Duration::minutes(5);
    let mut seen = std::collections::HashSet::new();
    for (i, r) in readings.iter().enumerate() {
        let bad = |field: &str, why: String| Error::invalid(format!("readings[{i}].{field}"), why);
        if r.time < earliest {
            return Err(bad(
                "time",
                format!("{} is before 2000", r.time.to_rfc3339()),
            ));
        }
        if r.time > latest {
            return Err(bad(
                "time",
                format!(
                    "{} is more than 5 minutes in the future",
                    r.time.to_rfc3339()
                ),
            ));
        }
        if !seen.insert(r.time) {
            return Err(bad(
                "time",
                format!("{} appears twice in the batch", r.time.to_rfc3339()),
            ));
        }
        // Physical bounds: a site draws at most 10 GW, a meter's counter holds at most 10^12 kWh.
        for (field, v, max) in [
            ("it_kw", r.it_kw, MAX_KW),
            ("total_kw", r.total_kw, MAX_KW),
            ("it_kwh", r.it_kwh, MAX_KWH),
            ("total_kwh", r.total_kwh, MAX_KWH),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err(bad(field, format!("{v} is not a non-negative number")));
                }
                if v > max {
                    return Err(bad(field, format!("{v:e} is over {max:e}")));
                }
            }
        }
        match (r.it_kw, r.total_kw) {
            (Some(it), Some(total)) if total < it => {
                return Err(bad("total_kw", format!("{total} is below it_kw {it}")))
            }
            // PUE is total / IT and lies within 1..10 (the worst facilities measured are near 3).
            (Some(it), Some(total)) if total > MAX_PUE * it => {
                return Err(bad(
                    "total_kw",
                    format!("{total} is over {MAX_PUE} x it_kw {it} (a PUE over {MAX_PUE})"),
                ))
            }
            (Some(_), None) => {
                return Err(bad("total_kw", "missing (it_kw needs total_kw)".into()))
            }
            (None, Some(_)) => return Err(bad("it_kw", "missing (total_kw needs it_kw)".into())),
            _ => {}
        }
        match (r.it_kwh, r.total_kwh) {
            (Some(_), None) => {
                return Err(bad("total_kwh", "missing (it_kwh needs total_kwh)".into()))
            }
            (None, Some(_)) => {
                return Err(bad("it_kwh", "missing (total_kwh needs it_kwh)".into()))
            }
            _ => {}
        }
        if let Some(p) = r.pue {
            if !p.is_finite() || !(1.0..=MAX_PUE).contains(&p) {
                return Err(bad("pue", format!("{p} is outside 1..{MAX_PUE}")));
            }
        }
        if r.it_kw.is_none() && r.it_kwh.is_none() && r.pue.is_none() {
            return Err(bad(
                "it_kw",
                "a reading needs it_kw and total_kw, it_kwh and total_kwh, or pue".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(it: f64, total: f64) -> FacilityReading {
        FacilityReading {
            time: Utc::now(),
            it_kw: Some(it),
            total_kw: Some(total),
            ..FacilityReading::default()
        }
    }

    fn err(readings: &[FacilityReading]) -> String {
        validate(readings, Utc::now())
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn names_the_field() {
        assert!(validate(&[r(100.0, 130.0)], Utc::now()).is_ok());
        assert_eq!(
            err(&[r(100.0, 90.0)]),
            "readings[0].total_kw: 90 is below it_kw 100"
        );
        assert_eq!(
            err(&[r(-1.0, 90.0)]),
            "readings[0].it_kw: -1 is not a non-negative number"
        );
        assert_eq!(
            err(&[r(f64::NAN, 90.0)]),
            "readings[0].it_kw: NaN is not a non-negative number"
        );
        let mut future = r(1.0, 2.0);
        future.time = Utc::now() + chrono::Duration::hours(1);
        assert!(err(&[future]).starts_with("readings[0].time"));
        let only_pue = FacilityReading {
            time: Utc::now(),
            pue: Some(0.9),
            ..FacilityReading::default()
        };
        assert_eq!(err(&[only_pue]), "readings[0].pue: 0.9 is outside 1..10");
        let empty = FacilityReading {
            time: Utc::now(),
            ..FacilityReading::default()
        };
        assert!(err(&[empty]).starts_with("readings[0].it_kw"));
        let half = FacilityReading {
            time: Utc::now(),
            it_kwh: Some(5.0),
            ..FacilityReading::default()
        };
        assert!(err(&[half]).starts_with("readings[0].total_kwh"));
    }
}
