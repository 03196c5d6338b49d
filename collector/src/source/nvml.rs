//! Real GPUs through NVML (`nvml-wrapper`), read-only: this module never changes a setting.
//!
//! `Nvml::init()` once; each poll reads, per GPU, the power (mW), the total energy counter (mJ; on Ampere
//! and newer `power_usage` is a 1-second average, so the counter is the truth for energy), the enforced
//! power limit, utilisation, memory used, temperature and SM clock. A field a GPU does not support is
//! left out of the sample, never sent as zero.

use chrono::{DateTime, Utc};
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use wattlas_protocol::{GpuIdentity, GpuSample};

use super::{Poll, Source, SourceError};

/// NVML-backed source.
pub struct NvmlSource {
    nvml: Nvml,
    identities: Vec<GpuIdentity>,
}

impl NvmlSource {
    /// Loads and initialises NVML and lists the GPUs. Fails cleanly where there is no driver or GPU.
    pub fn init() -> Result<Self, SourceError> {
        Self::init_with(Nvml::init)
    }

    /// As `init`, with the library loader given (tests pass a loader for a path that does not exist).
    pub(crate) fn init_with(
        load: impl FnOnce() -> Result<Nvml, NvmlError>,
    ) -> Result<Self, SourceError> {
        let nvml = load().map_err(|e| SourceError::NvmlInit(e.to_string()))?;
        let count = nvml
            .device_count()
            .map_err(|e| SourceError::NvmlInit(e.to_string()))?;
        if count == 0 {
            return Err(SourceError::NvmlInit("NVML sees no GPU".into()));
        }
        let mut identities = Vec::new();
        for index in 0..count {
            let d = nvml
                .device_by_index(index)
                .map_err(|e| SourceError::Query(format!("GPU {index}: {e}")))?;
            identities.push(GpuIdentity {
                index,
                uuid: d
                    .uuid()
                    .map_err(|e| SourceError::Query(format!("GPU {index} uuid: {e}")))?,
                model: d.name().unwrap_or_else(|_| "unknown".into()),
                default_power_limit_w: d
                    .power_management_limit_default()
                    .ok()
                    .map(|mw| f64::from(mw) / 1000.0),
                keep_known: false,
            });
        }
        Ok(Self { nvml, identities })
    }

    /// The driver version, for logs and notes.
    pub fn driver_version(&self) -> Option<String> {
        self.nvml.sys_driver_version().ok()
    }
}

impl Source for NvmlSource {
    fn identities(&self) -> Vec<GpuIdentity> {
        self.identities.clone()
    }

    fn poll(&mut self, now: DateTime<Utc>) -> Poll {
        let mut poll = Poll::default();
        for id in &self.identities {
            let Ok(d) = self.nvml.device_by_index(id.index) else {
                poll.errors += 1;
                continue;
            };
            // Power is the one field a sample cannot do without.
            let Ok(power_mw) = d.power_usage() else {
                poll.errors += 1;
                continue;
            };
            let util = d.utilization_rates().ok();
            poll.samples.push(GpuSample {
                time: now,
                gpu: id.index,
                power_w: f64::from(power_mw) / 1000.0,
                energy_mj: d.total_energy_consumption().ok(),
                power_limit_w: d
                    .enforced_power_limit()
                    .ok()
                    .map(|mw| f64::from(mw) / 1000.0),
                util_pct: util.map(|u| f64::from(u.gpu)),
                mem_used_mib: d
                    .memory_info()
                    .ok()
                    .map(|m| m.used as f64 / (1024.0 * 1024.0)),
                temp_c: d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
                sm_clock_mhz: d.clock_info(Clock::SM).ok().map(f64::from),
            });
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_a_clean_error() {
        let err = NvmlSource::init_with(|| {
            Nvml::builder()
                .lib_path(std::ffi::OsStr::new("/nonexistent/libnvidia-ml.so.1"))
                .init()
        })
        .err()
        .expect("no NVML at that path");
        assert!(matches!(err, SourceError::NvmlInit(_)), "{err}");
        assert!(err.to_string().starts_with("NVML unavailable"), "{err}");
    }

    /// Reads real GPUs. Needs an NVIDIA GPU and driver: `cargo test -p wattlas-collector -- --ignored nvml`.
    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn nvml_reads_real_gpus() {
        let mut source = NvmlSource::init().expect("NVML initialises on a GPU machine");
        let ids = source.identities();
        assert!(!ids.is_empty());
        let first = source.poll(Utc::now());
        std::thread::sleep(std::time::Duration::from_millis(500));
        let second = source.poll(Utc::now());
        assert_eq!(first.samples.len(), ids.len());
        for (a, b) in first.samples.iter().zip(&second.samples) {
            assert!(a.power_w > 0.0 && a.power_w < 2000.0);
            if let (Some(ea), Some(eb)) = (a.energy_mj, b.energy_mj) {
                assert!(eb >= ea, "energy counter went backwards");
            }
            println!("{ids:?}\n{a:?}\n{b:?}");
        }
    }
}
