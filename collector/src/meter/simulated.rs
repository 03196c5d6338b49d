//! A simulated site: IT load around a base with a daily rhythm, and a PUE with the first paper's shape:
//! low and flat in winter (January ~1.05), high in summer (July ~1.47) with an afternoon peak and a
//! night minimum that make summer days swing by about 10 % (Figure 5, Table 1). Deterministic for a seed:
//! a reading depends only on its time, so a backfill sent twice stores nothing new.

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use wattlas_protocol::FacilityReading;

/// A simulated site.
#[derive(Debug, Clone)]
pub(crate) struct SimulatedSite {
    /// Local zone (the day/night rhythm follows local time).
    pub tz: Tz,
    /// Mean IT load, kW.
    pub it_base_kw: f64,
    /// Seed of the noise.
    pub seed: u64,
}

fn unit_noise(seed: u64, t_ms: i64, stream: u64) -> f64 {
    // splitmix64 of (seed, time, stream): uniform in [-1, 1), the same for the same inputs.
    let mut z = seed
        ^ (t_ms as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

impl SimulatedSite {
    /// The site's PUE at `t` (without noise), for tests and the reading.
    pub(crate) fn pue_at(&self, t: DateTime<Utc>) -> f64 {
        let local = t.with_timezone(&self.tz);
        let doy =
            f64::from(local.ordinal0()) + f64::from(local.num_seconds_from_midnight()) / 86_400.0;
        let hour = f64::from(local.num_seconds_from_midnight()) / 3600.0;
        // 0 in late January, 1 in late July.
        let summer = (1.0 - (std::f64::consts::TAU * (doy - 20.0) / 365.25).cos()) / 2.0;
        let base = 1.05 + 0.42 * summer.powf(1.3);
        let swing = 0.004 + 0.11 * summer.powi(2);
        let afternoon = (-(hour - 14.5).powi(2) / (2.0 * 3.5f64.powi(2))).exp();
        base * (1.0 + swing * (afternoon - 0.25))
    }

    /// The reading at `t`.
    pub(crate) fn reading_at(&self, t: DateTime<Utc>) -> FacilityReading {
        let ms = t.timestamp_millis();
        let hour = f64::from(t.with_timezone(&self.tz).num_seconds_from_midnight()) / 3600.0;
        let it_kw = self.it_base_kw
            * (1.0 + 0.05 * (std::f64::consts::TAU * hour / 24.0 + 1.0).sin())
            + 0.01 * self.it_base_kw * unit_noise(self.seed, ms, 1);
        let pue = self.pue_at(t) + 0.004 * unit_noise(self.seed, ms, 2);
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        FacilityReading {
            time: t,
            it_kw: Some(round(it_kw)),
            total_kw: Some(round(it_kw * pue.max(1.0))),
            ..FacilityReading::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn winter_is_low_and_flat_summer_high_with_an_afternoon_peak() {
        let site = SimulatedSite {
            tz: "America/New_York".parse().expect("tz"),
            it_base_kw: 800.0,
            seed: 3,
        };
        let at = |m, d, h| {
            site.pue_at(
                site.tz
                    .with_ymd_and_hms(2024, m, d, h, 0, 0)
                    .single()
                    .expect("time")
                    .with_timezone(&Utc),
            )
        };
        let day_mean = |m, d| (0..24).map(|h| at(m, d, h)).sum::<f64>() / 24.0;
        // The paper's Figure 4: January about 1.05, July about 1.49.
        assert!(
            (day_mean(1, 15) - 1.05).abs() < 0.02,
            "January {}",
            day_mean(1, 15)
        );
        assert!(
            (day_mean(7, 20) - 1.49).abs() < 0.03,
            "July {}",
            day_mean(7, 20)
        );
        let july_swing = (at(7, 27, 14) - at(7, 27, 1)) / at(7, 27, 1);
        assert!(
            july_swing > 0.07 && july_swing < 0.13,
            "July day swing {july_swing}"
        );
        let jan_swing = (at(1, 27, 14) - at(1, 27, 1)) / at(1, 27, 1);
        assert!(jan_swing < 0.01, "January day swing {jan_swing}");
        let r = site.reading_at(Utc::now());
        assert_eq!(r, site.reading_at(r.time), "deterministic");
        assert!(r.total_kw >= r.it_kw);
    }
}
