//! What Wattlas takes of NVIDIA dcgm-exporter's series, whether a collector scrapes the exporter or a
//! site's Prometheus remote-writes them: the one mapping from DCGM field names to a GPU sample.

use chrono::{DateTime, Utc};

use crate::GpuSample;

/// The stored fields of one GPU at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DcgmFields {
    /// `DCGM_FI_DEV_POWER_USAGE`, W.
    pub power_w: Option<f64>,
    /// `DCGM_FI_DEV_POWER_USAGE_INSTANT`, W (newer DCGM; charts draw it). `DCGM_FI_DEV_POWER_USAGE`
    /// is NVML's power usage, the 1-s average or instant by the board's architecture, which the
    /// series does not name: its samples do not say which.
    pub power_instant_w: Option<f64>,
    /// `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`, mJ since the driver loaded.
    pub energy_mj: Option<u64>,
    /// `DCGM_FI_DEV_GPU_UTIL`, %.
    pub util_pct: Option<f64>,
    /// `DCGM_FI_DEV_FB_USED`, MiB.
    pub mem_used_mib: Option<f64>,
    /// `DCGM_FI_DEV_GPU_TEMP`, °C.
    pub temp_c: Option<f64>,
    /// `DCGM_FI_DEV_SM_CLOCK`, MHz.
    pub sm_clock_mhz: Option<f64>,
    /// `DCGM_FI_DEV_POWER_MGMT_LIMIT` or `DCGM_FI_DEV_ENFORCED_POWER_LIMIT`, W.
    pub power_limit_w: Option<f64>,
}

impl DcgmFields {
    /// Sets the field series `metric` carries to `value` (none where it is not finite, nor for a
    /// negative power or energy); false where Wattlas does not store that series.
    pub fn set(&mut self, metric: &str, value: f64) -> bool {
        let v = value.is_finite().then_some(value);
        match metric {
            "DCGM_FI_DEV_POWER_USAGE" => self.power_w = v.filter(|w| *w >= 0.0),
            "DCGM_FI_DEV_POWER_USAGE_INSTANT" => self.power_instant_w = v.filter(|w| *w >= 0.0),
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" => {
                self.energy_mj = v.filter(|e| *e >= 0.0).map(|e| e as u64)
            }
            "DCGM_FI_DEV_GPU_UTIL" => self.util_pct = v,
            "DCGM_FI_DEV_FB_USED" => self.mem_used_mib = v,
            "DCGM_FI_DEV_GPU_TEMP" => self.temp_c = v,
            "DCGM_FI_DEV_SM_CLOCK" => self.sm_clock_mhz = v,
            "DCGM_FI_DEV_POWER_MGMT_LIMIT" | "DCGM_FI_DEV_ENFORCED_POWER_LIMIT" => {
                self.power_limit_w = v
            }
            _ => return false,
        }
        true
    }

    /// Whether Wattlas stores series `metric`.
    pub fn stores(metric: &str) -> bool {
        Self::default().set(metric, 0.0)
    }

    /// GPU `gpu`'s sample at `time`, where there is a power reading.
    pub fn sample(&self, time: DateTime<Utc>, gpu: u32) -> Option<GpuSample> {
        Some(GpuSample {
            time,
            gpu,
            power_w: self.power_w?,
            energy_mj: self.energy_mj,
            power_limit_w: self.power_limit_w,
            util_pct: self.util_pct,
            mem_used_mib: self.mem_used_mib,
            temp_c: self.temp_c,
            sm_clock_mhz: self.sm_clock_mhz,
            power_instant_w: self.power_instant_w,
            power_source: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instant_series_is_kept_beside_the_power_and_says_no_source() {
        let mut f = DcgmFields::default();
        assert!(f.set("DCGM_FI_DEV_POWER_USAGE", 301.5));
        assert!(f.set("DCGM_FI_DEV_POWER_USAGE_INSTANT", 455.0));
        assert!(!f.set("DCGM_FI_DEV_POWER_USAGE_INSTANTANEOUS", 1.0));
        let s = f.sample(DateTime::<Utc>::UNIX_EPOCH, 3).expect("a sample");
        assert_eq!(
            (s.power_w, s.power_instant_w, s.power_source),
            (301.5, Some(455.0), None)
        );
        // An instant reading alone makes no sample: power is the one field a sample needs.
        let mut only = DcgmFields::default();
        only.set("DCGM_FI_DEV_POWER_USAGE_INSTANT", 455.0);
        assert_eq!(only.sample(DateTime::<Utc>::UNIX_EPOCH, 3), None);
    }
}
