//! Facility meters: `POST/GET /api/v1/meters` and `POST /api/v1/ingest/facility`.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use wattlas_protocol::{FacilityBatch, FacilityReading, MeterToken, MeterView, NewMeter};

use crate::auth::{self, Caller};
use crate::db;
use crate::error::AppError;
use crate::extract::{ApiJson, Path, Query};
use crate::service::meters::{create_meter, meter_views};
use crate::state::AppState;

/// Creates a meter and its token (admin); the token is in this answer only.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(meter): ApiJson<NewMeter>,
) -> Result<(StatusCode, ApiJson<MeterToken>), AppError> {
    caller.require_admin()?;
    Ok((
        StatusCode::CREATED,
        ApiJson(create_meter(&state, &meter).await?),
    ))
}

/// Lists meters with their last reading (staff and admins).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<ApiJson<Vec<MeterView>>, AppError> {
    caller.require_staff()?;
    Ok(ApiJson(meter_views(&state, None).await?))
}

/// Takes a meter's readings: refuses the batch whole on the first invalid field; each (meter, time) once.
pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(batch): ApiJson<FacilityBatch>,
) -> Result<ApiJson<serde_json::Value>, AppError> {
    validate(&batch.readings, Utc::now())?;
    let caller = caller.writer()?;
    let meter = match (&caller, &batch.meter) {
        (Caller::Meter { name, .. }, Some(named)) if named != name => {
            return Err(AppError::forbidden(format!(
                "meter: this token belongs to meter '{name}', not '{named}'"
            )));
        }
        (Caller::Meter { name, .. }, _) => db::facility::by_name(&state.db, name).await?,
        (Caller::Admin, Some(named)) => match db::facility::by_name(&state.db, named).await? {
            Some(m) => Some(m),
            None => {
                // An import names a meter not yet known: admin may create it in the given site.
                let site_name = batch.site.as_deref().ok_or_else(|| {
                    AppError::bad_request(format!(
                        "meter: unknown meter '{named}' (give site to create it)"
                    ))
                })?;
                let site = db::sites::by_name(&state.db, site_name)
                    .await?
                    .ok_or_else(|| {
                        AppError::bad_request(format!("site: unknown site '{site_name}'"))
                    })?;
                db::facility::create(
                    &state.db,
                    named,
                    site.id,
                    "PUE1",
                    &auth::token_digest(&auth::new_token("wm")),
                )
                .await?;
                db::facility::by_name(&state.db, named).await?
            }
        },
        (Caller::Admin, None) => {
            return Err(AppError::bad_request(
                "meter: required with the admin token",
            ))
        }
        (Caller::Node { .. } | Caller::Site { .. }, _) => {
            return Err(AppError::forbidden(
                "a node token cannot send meter readings",
            ))
        }
        (Caller::User(_), _) => return Err(AppError::forbidden("only meters send readings")),
    };
    let meter = meter.ok_or_else(|| AppError::bad_request("meter: unknown meter"))?;
    if let Some(site) = &batch.site {
        if *site != meter.site {
            return Err(AppError::bad_request(format!(
                "site: meter '{}' is in site '{}', not '{site}'",
                meter.name, meter.site
            )));
        }
    }
    let mut tx = state.db.begin().await?;
    let stored = db::facility::insert(&mut tx, meter.id, &batch.readings).await?;
    let times = batch.readings.iter().map(|r| r.time);
    db::jobs::mark_site_energy_stale(&mut *tx, meter.site_id, times.clone().min(), times.max())
        .await?;
    tx.commit().await?;
    state.pue_cache.invalidate(meter.site_id);
    state.metrics.readings(stored);
    let received = batch.readings.len() as u64;
    Ok(ApiJson(
        json!({ "stored": stored, "duplicates": received - stored }),
    ))
}

/// Largest power of a site, kW (10 GW).
const MAX_KW: f64 = 1e7;
/// Largest energy counter, kWh.
const MAX_KWH: f64 = 1e12;
/// Largest PUE accepted.
const MAX_PUE: f64 = 10.0;

/// `?from=&to=` of a deletion.
#[derive(Debug, serde::Deserialize)]
pub struct DeleteRange {
    /// From (inclusive).
    pub from: DateTime<Utc>,
    /// To (exclusive).
    pub to: DateTime<Utc>,
}

/// `DELETE /api/v1/meters/{name}/readings?from=&to=` (admin): removes a broken meter's readings in a
/// time range; the site's PUE and the jobs charged in that range are recomputed.
pub async fn delete_readings(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(range): Query<DeleteRange>,
) -> Result<ApiJson<serde_json::Value>, AppError> {
    caller.require_admin()?;
    if range.to <= range.from {
        return Err(AppError::bad_request("to: must be after from"));
    }
    let meter = db::facility::by_name(&state.db, &name)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no meter '{name}'")))?;
    let mut tx = state.db.begin().await?;
    let deleted = db::facility::delete_readings(&mut tx, meter.id, range.from, range.to).await?;
    db::jobs::mark_site_energy_stale(&mut *tx, meter.site_id, Some(range.from), Some(range.to))
        .await?;
    tx.commit().await?;
    state.pue_cache.invalidate(meter.site_id);
    Ok(ApiJson(json!({ "deleted": deleted })))
}

use wattlas_protocol::MAX_READINGS_SPAN_DAYS;

/// Checks every reading; the first bad field refuses the whole batch.
pub fn validate(readings: &[FacilityReading], now: DateTime<Utc>) -> Result<(), AppError> {
    if let (Some(first), Some(last)) = (
        readings.iter().map(|r| r.time).min(),
        readings.iter().map(|r| r.time).max(),
    ) {
        if last - first > chrono::Duration::days(MAX_READINGS_SPAN_DAYS) {
            return Err(AppError::bad_request(format!(
                "readings: they span {} days; one batch covers at most {MAX_READINGS_SPAN_DAYS} \
                 (send older readings in batches of their own)",
                (last - first).num_days()
            )));
        }
    }
    let earliest = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let latest = now + chrono::Duration::minutes(5);
    let mut seen = std::collections::HashSet::new();
    for (i, r) in readings.iter().enumerate() {
        let bad = |field: &str, why: String| {
            AppError::bad_request(format!("readings[{i}].{field}: {why}"))
        };
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
