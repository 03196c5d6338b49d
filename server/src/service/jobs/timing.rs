//! When to run: what starting a job at its site's best hour this month, or in its best month, would
//! have saved in facility energy.

use wattlas_protocol::JobView;

use crate::service::Context;
use crate::service::Result;

/// The job page's "when to run" sentence: savings of facility energy versus what the job used.
pub(crate) struct Timing {
    /// Best local start hour in the job's month.
    pub best_hour: usize,
    /// Energy less at that hour, formatted (Wh below 1 kWh).
    pub hour_saving: String,
    /// Best month.
    pub best_month: &'static str,
    /// Energy less in that month, formatted.
    pub month_saving: String,
}

/// kWh as text: Wh below 1 kWh, so small jobs do not read "0.000 kWh".
pub(crate) fn format_energy(kwh: f64) -> String {
    crate::analytics::units::energy(kwh)
}

/// The sentence's figures, where the job's PUE was measured and the site has a profile.
pub(crate) async fn timing(cx: &Context, job: &JobView) -> Result<Option<Timing>> {
    let Some(pue) = job.pue else { return Ok(None) };
    if job.pue_fallback_share >= 1.0 {
        return Ok(None);
    }
    let site = crate::service::pue::site_tz(cx, &job.site).await?;
    let profile = crate::service::pue::profile(cx, &site).await?;
    let hours = (job.duration_s / 3600.0).ceil().max(1.0) as usize;
    let month0 = chrono::Datelike::month0(&job.start.with_timezone(&site.tz)) as usize;
    let when = crate::analytics::pue::when_to_run(&profile, month0, 0, hours);
    let (Some((best_hour, hour_pue)), Some((month, _, month_pue))) =
        (when.best_hour, when.best_month)
    else {
        return Ok(None);
    };
    Ok(Some(Timing {
        best_hour,
        hour_saving: format_energy((job.it_energy_kwh * (pue - hour_pue)).max(0.0)),
        best_month: crate::service::pue::MONTHS[(month as usize).saturating_sub(1) % 12],
        month_saving: format_energy((job.it_energy_kwh * (pue - month_pue)).max(0.0)),
    }))
}
