//! Facility-adjusted energy: each hour of a job's IT energy times that hour's measured PUE.
//!
//! The hour's PUE is energy-weighted (total kWh / IT kWh of the site's meters in that hour), so that the
//! facility energy of all jobs in an hour adds up to their share of the facility's energy. Hours without
//! meter data use the site's configured fallback PUE, and the share of IT energy that did is reported.

use std::collections::BTreeMap;

/// A job's facility energy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FacilityEnergy {
    /// IT energy, J.
    pub it_j: f64,
    /// Facility energy (IT x PUE, hour by hour), J.
    pub facility_j: f64,
    /// IT energy of hours without meter data, charged the fallback PUE, J.
    pub fallback_it_j: f64,
}

impl FacilityEnergy {
    /// Effective PUE: facility / IT (`None` without IT energy).
    pub(crate) fn pue(&self) -> Option<f64> {
        (self.it_j > 0.0).then(|| self.facility_j / self.it_j)
    }

    /// Share of IT energy charged the fallback PUE, 0..1.
    pub(crate) fn fallback_share(&self) -> f64 {
        if self.it_j > 0.0 {
            self.fallback_it_j / self.it_j
        } else {
            0.0
        }
    }
}

/// Charges each hour (keys: hour start, ms) its PUE, or `fallback_pue` where none was measured.
pub(crate) fn facility_energy(
    it_by_hour: &BTreeMap<i64, f64>,
    pue_by_hour: &BTreeMap<i64, f64>,
    fallback_pue: f64,
) -> FacilityEnergy {
    let mut out = FacilityEnergy {
        it_j: 0.0,
        facility_j: 0.0,
        fallback_it_j: 0.0,
    };
    for (hour, it_j) in it_by_hour {
        out.it_j += it_j;
        match pue_by_hour.get(hour) {
            Some(pue) => out.facility_j += it_j * pue,
            None => {
                out.facility_j += it_j * fallback_pue;
                out.fallback_it_j += it_j;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hour_pays_its_own_pue_and_gaps_pay_the_fallback() {
        const H: i64 = 3_600_000;
        let it: BTreeMap<i64, f64> = [(0, 100.0), (H, 300.0), (2 * H, 50.0)]
            .into_iter()
            .collect();
        let pue: BTreeMap<i64, f64> = [(0, 1.1), (H, 1.5)].into_iter().collect();
        let f = facility_energy(&it, &pue, 1.58);
        assert!((f.facility_j - (110.0 + 450.0 + 79.0)).abs() < 1e-9);
        assert!((f.fallback_share() - 50.0 / 450.0).abs() < 1e-12);
        assert!((f.pue().expect("pue") - 639.0 / 450.0).abs() < 1e-12);
    }
}
