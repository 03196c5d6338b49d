//! Carbon and cost of a job: each hour's facility energy (IT x that hour's PUE) times that hour's grid
//! carbon intensity, from the site's hourly series where it has a value, else the site's static one.

use std::collections::BTreeMap;

/// A job's emissions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Carbon {
    /// CO2e, g; `None` when some hour had no intensity at all (no series value, no static value).
    pub co2e_g: Option<f64>,
    /// Share of the facility energy charged an hourly series value (the rest: the static value).
    pub series_share: f64,
}

/// Charges each hour (keys: hour start, ms) of IT energy (J) its PUE (or `fallback_pue`) and its carbon
/// intensity (g/kWh; the series' value of that hour, or `static_g_per_kwh`).
pub(crate) fn carbon(
    it_by_hour: &BTreeMap<i64, f64>,
    pue_by_hour: &BTreeMap<i64, f64>,
    fallback_pue: f64,
    ci_by_hour: &BTreeMap<i64, f64>,
    static_g_per_kwh: Option<f64>,
) -> Carbon {
    let (mut grams, mut facility_j, mut series_j) = (0.0, 0.0, 0.0);
    let mut unknown = false;
    for (hour, it_j) in it_by_hour {
        let f_j = it_j * pue_by_hour.get(hour).copied().unwrap_or(fallback_pue);
        facility_j += f_j;
        match (ci_by_hour.get(hour), static_g_per_kwh) {
            (Some(g), _) => {
                grams += f_j / 3.6e6 * g;
                series_j += f_j;
            }
            (None, Some(g)) => grams += f_j / 3.6e6 * g,
            (None, None) => unknown |= f_j > 0.0,
        }
    }
    Carbon {
        co2e_g: (!unknown).then_some(grams),
        series_share: if facility_j > 0.0 {
            series_j / facility_j
        } else {
            0.0
        },
    }
}

/// A job's market-based emissions (the GHG Protocol's Scope 2 guidance): each hour's facility energy
/// at the factor of the contractual instrument covering the hour's start (`contracts`: `(from ms, to
/// ms, g/kWh)`), else at its location-based factor (the series' value of that hour, or the static
/// one). `None` when some uncovered hour has no location-based factor either.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Market {
    /// CO2e, g.
    pub co2e_g: Option<f64>,
    /// Share of the facility energy an instrument covered.
    pub contract_share: f64,
}

/// See [`Market`].
pub(crate) fn market(
    it_by_hour: &BTreeMap<i64, f64>,
    pue_by_hour: &BTreeMap<i64, f64>,
    fallback_pue: f64,
    ci_by_hour: &BTreeMap<i64, f64>,
    static_g_per_kwh: Option<f64>,
    contracts: &[(i64, i64, f64)],
) -> Market {
    let (mut grams, mut facility_j, mut covered_j) = (0.0, 0.0, 0.0);
    let mut unknown = false;
    for (hour, it_j) in it_by_hour {
        let f_j = it_j * pue_by_hour.get(hour).copied().unwrap_or(fallback_pue);
        facility_j += f_j;
        let contract = contracts
            .iter()
            .find(|(from, to, _)| *from <= *hour && *hour < *to)
            .map(|c| c.2);
        match (contract, ci_by_hour.get(hour).copied().or(static_g_per_kwh)) {
            (Some(g), _) => {
                grams += f_j / 3.6e6 * g;
                covered_j += f_j;
            }
            (None, Some(g)) => grams += f_j / 3.6e6 * g,
            (None, None) => unknown |= f_j > 0.0,
        }
    }
    Market {
        co2e_g: (!unknown).then_some(grams),
        contract_share: if facility_j > 0.0 {
            covered_j / facility_j
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn each_hour_pays_its_pue_and_its_intensity() {
        // 3.6 MJ = 1 kWh IT in each of three hours; PUE 1.5, 1.2 and (no meter) 1.58.
        let it: BTreeMap<i64, f64> = [(0, 3.6e6), (H, 3.6e6), (2 * H, 3.6e6)].into();
        let pue: BTreeMap<i64, f64> = [(0, 1.5), (H, 1.2)].into();
        let ci: BTreeMap<i64, f64> = [(0, 400.0), (2 * H, 100.0)].into();
        let c = carbon(&it, &pue, 1.58, &ci, Some(300.0));
        let expected = 1.5 * 400.0 + 1.2 * 300.0 + 1.58 * 100.0;
        assert!((c.co2e_g.expect("known") - expected).abs() < 1e-9);
        assert!((c.series_share - (1.5 + 1.58) / (1.5 + 1.2 + 1.58)).abs() < 1e-12);
        // Without a static value, an hour outside the series leaves the total unknown.
        assert_eq!(carbon(&it, &pue, 1.58, &ci, None).co2e_g, None);
        assert_eq!(
            carbon(&BTreeMap::new(), &pue, 1.58, &ci, None).co2e_g,
            Some(0.0)
        );
    }

    #[test]
    fn instruments_cover_their_hours_and_the_rest_stays_location_based() {
        // Three hours of 1 kWh facility energy (PUE 1): a 0 g/kWh instrument covers the second.
        let it: BTreeMap<i64, f64> = [(0, 3.6e6), (H, 3.6e6), (2 * H, 3.6e6)].into();
        let ci: BTreeMap<i64, f64> = [(0, 400.0)].into();
        let m = market(
            &it,
            &BTreeMap::new(),
            1.0,
            &ci,
            Some(300.0),
            &[(H, 2 * H, 0.0)],
        );
        assert!((m.co2e_g.expect("known") - (400.0 + 0.0 + 300.0)).abs() < 1e-9);
        assert!((m.contract_share - 1.0 / 3.0).abs() < 1e-12);
        // No instrument: the location-based figure.
        let none = market(&it, &BTreeMap::new(), 1.0, &ci, Some(300.0), &[]);
        let location = carbon(&it, &BTreeMap::new(), 1.0, &ci, Some(300.0));
        assert_eq!(none.co2e_g, location.co2e_g);
        assert_eq!(none.contract_share, 0.0);
        // An uncovered hour without any factor leaves it unknown; covered, it is known.
        assert_eq!(
            market(&it, &BTreeMap::new(), 1.0, &BTreeMap::new(), None, &[]).co2e_g,
            None
        );
        assert_eq!(
            market(
                &it,
                &BTreeMap::new(),
                1.0,
                &BTreeMap::new(),
                None,
                &[(0, 3 * H, 50.0)]
            )
            .co2e_g,
            Some(150.0)
        );
    }
}
