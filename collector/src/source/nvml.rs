//! Real GPUs through NVML (`nvml-wrapper`), read-only: this module never changes a setting.
//!
//! `Nvml::init()` once; each poll reads, per GPU, the power (mW), the total energy counter (mJ; on Ampere
//! and newer `power_usage` is a 1-second average, so the counter is the truth for energy), the enforced
//! power limit, utilisation, memory used, temperature and SM clock. A field a GPU does not support is
//! left out of the sample, never sent as zero.
//!
//! Power, as the sensor offers it (issue 35, item 3): where the driver has the field values
//! `NVML_FI_DEV_POWER_AVERAGE` (185, the 1-s average; Ampere and newer, GA100 aside) and
//! `NVML_FI_DEV_POWER_INSTANT` (186, every architecture), one `nvmlDeviceGetFieldValues` call reads both:
//! `power_w` is the average, `power_instant_w` the instant reading. Elsewhere `power_w` is
//! `nvmlDeviceGetPowerUsage`, which NVML documents as the 1-s average on Ampere and newer (GA100 aside)
//! and as instant power on GA100 and older: each sample says which (`power_source`). A field the driver
//! answers "not supported" for is not asked again.

use chrono::{DateTime, Utc};
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::enums::device::{DeviceArchitecture, SampleValue};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::Nvml;
use wattlas_protocol::{GpuIdentity, GpuSample, PowerSource};

/// `NVML_FI_DEV_POWER_AVERAGE`: power averaged over the last second, mW.
const FIELD_POWER_AVERAGE: u32 = 185;
/// `NVML_FI_DEV_POWER_INSTANT`: the instant power, mW.
const FIELD_POWER_INSTANT: u32 = 186;

/// What `nvmlDeviceGetPowerUsage` returns on a GPU: the 1-s average on Ampere and newer except GA100
/// boards (A100, A30, A800), an instant reading on those and older architectures; `None` for an
/// architecture this build does not know.
pub(crate) fn usage_source(arch: Option<DeviceArchitecture>, model: &str) -> Option<PowerSource> {
    let ga100 = model
        .split([' ', '-'])
        .any(|t| t.starts_with("A100") || t == "A30" || t == "A800");
    match arch? {
        DeviceArchitecture::Kepler
        | DeviceArchitecture::Maxwell
        | DeviceArchitecture::Pascal
        | DeviceArchitecture::Volta
        | DeviceArchitecture::Turing => Some(PowerSource::Instant),
        DeviceArchitecture::Ampere if ga100 => Some(PowerSource::Instant),
        DeviceArchitecture::Ampere
        | DeviceArchitecture::Ada
        | DeviceArchitecture::Hopper
        | DeviceArchitecture::Blackwell => Some(PowerSource::Average),
        DeviceArchitecture::Unknown => None,
    }
}

/// A GPU's power readings as a sample carries them, from what one poll read (mW): `(power_w,
/// power_instant_w, power_source)`; `None` where no reading answered. The 1-s average is `power_w`
/// wherever one was read (energy integrates it where there is no counter); an instant reading beside it
/// is kept for charts, never as a copy of `power_w`.
pub(crate) fn power_reading(
    usage_mw: Option<u32>,
    usage_is: Option<PowerSource>,
    average_mw: Option<u32>,
    instant_mw: Option<u32>,
) -> Option<(f64, Option<f64>, Option<PowerSource>)> {
    let w = |mw: u32| f64::from(mw) / 1000.0;
    let (power, source) = match (average_mw, usage_mw, instant_mw) {
        (Some(a), _, _) => (a, Some(PowerSource::Average)),
        (None, Some(u), _) => (u, usage_is),
        (None, None, Some(i)) => return Some((w(i), None, Some(PowerSource::Instant))),
        (None, None, None) => return None,
    };
    let instant = instant_mw.filter(|_| source != Some(PowerSource::Instant));
    Some((w(power), instant.map(w), source))
}

/// Which of the power fields a GPU still answers.
#[derive(Debug, Clone, Copy)]
struct PowerFields {
    average: bool,
    instant: bool,
    usage_is: Option<PowerSource>,
}

use super::{Poll, Source, SourceError};

/// NVML-backed source.
pub struct NvmlSource {
    nvml: Nvml,
    identities: Vec<GpuIdentity>,
    fields: Vec<PowerFields>,
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
        let mut fields = Vec::new();
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
            let model = identities.last().map(|i| i.model.as_str()).unwrap_or("");
            fields.push(PowerFields {
                average: true,
                instant: true,
                usage_is: usage_source(d.architecture().ok(), model),
            });
        }
        Ok(Self {
            nvml,
            identities,
            fields,
        })
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
        for (id, fields) in self.identities.iter().zip(self.fields.iter_mut()) {
            let Ok(d) = self.nvml.device_by_index(id.index) else {
                poll.errors += 1;
                continue;
            };
            let (average_mw, instant_mw) = read_fields(&d, fields);
            let usage_mw = if average_mw.is_some() {
                None
            } else {
                d.power_usage().ok()
            };
            // Power is the one field a sample cannot do without.
            let Some((power_w, power_instant_w, power_source)) =
                power_reading(usage_mw, fields.usage_is, average_mw, instant_mw)
            else {
                poll.errors += 1;
                continue;
            };
            let util = d.utilization_rates().ok();
            poll.samples.push(GpuSample {
                time: now,
                gpu: id.index,
                power_w,
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
                power_instant_w,
                power_source,
            });
        }
        poll
    }
}

/// The 1-s average and instant power fields (mW) a GPU answers, in one call; a field the driver does
/// not support is not asked for again.
fn read_fields(
    d: &nvml_wrapper::Device<'_>,
    fields: &mut PowerFields,
) -> (Option<u32>, Option<u32>) {
    let mut ids = Vec::new();
    if fields.average {
        ids.push(FieldId(FIELD_POWER_AVERAGE));
    }
    if fields.instant {
        ids.push(FieldId(FIELD_POWER_INSTANT));
    }
    if ids.is_empty() {
        return (None, None);
    }
    let Ok(values) = d.field_values_for(&ids) else {
        // An old driver without field values at all.
        fields.average = false;
        fields.instant = false;
        return (None, None);
    };
    let (mut average, mut instant) = (None, None);
    for v in values {
        let Ok(v) = v else { continue };
        let field = v.field.0;
        let mw = match v.value {
            Ok(SampleValue::U32(x)) => Some(x),
            Ok(SampleValue::U64(x)) => u32::try_from(x).ok(),
            Ok(SampleValue::I64(x)) => u32::try_from(x).ok(),
            Ok(SampleValue::F64(x)) if x.is_finite() && x >= 0.0 => Some(x.round() as u32),
            Ok(_) => None,
            Err(NvmlError::NotSupported | NvmlError::InvalidArg) => {
                if field == FIELD_POWER_AVERAGE {
                    fields.average = false;
                } else {
                    fields.instant = false;
                }
                None
            }
            Err(_) => None,
        };
        if field == FIELD_POWER_AVERAGE {
            average = mw;
        } else if field == FIELD_POWER_INSTANT {
            instant = mw;
        }
    }
    (average, instant)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded answers of real boards (NVML 535+): what each sample then says.
    #[test]
    fn each_sample_says_what_its_power_is() {
        use DeviceArchitecture as A;
        // An H100 with both fields: the average is power_w, the instant beside it.
        assert_eq!(
            power_reading(
                None,
                Some(PowerSource::Average),
                Some(412_345),
                Some(655_010)
            ),
            Some((412.345, Some(655.01), Some(PowerSource::Average)))
        );
        // An older driver on an H100: power usage, known to be the 1-s average.
        assert_eq!(
            usage_source(Some(A::Hopper), "NVIDIA H100 80GB HBM3"),
            Some(PowerSource::Average)
        );
        assert_eq!(
            power_reading(Some(301_000), Some(PowerSource::Average), None, None),
            Some((301.0, None, Some(PowerSource::Average)))
        );
        // GA100 boards and older architectures read instant power; no copy of it as instant.
        for model in [
            "NVIDIA A100-SXM4-40GB",
            "NVIDIA A100 80GB PCIe",
            "NVIDIA A30",
        ] {
            assert_eq!(
                usage_source(Some(A::Ampere), model),
                Some(PowerSource::Instant),
                "{model}"
            );
        }
        assert_eq!(
            usage_source(Some(A::Ampere), "NVIDIA RTX A3000 Laptop GPU"),
            Some(PowerSource::Average)
        );
        assert_eq!(
            usage_source(Some(A::Volta), "Tesla V100-SXM2-32GB"),
            Some(PowerSource::Instant)
        );
        assert_eq!(
            power_reading(
                Some(250_500),
                Some(PowerSource::Instant),
                None,
                Some(251_000)
            ),
            Some((250.5, None, Some(PowerSource::Instant)))
        );
        // An architecture this build does not know: the reading, said to be of unknown kind.
        assert_eq!(usage_source(Some(A::Unknown), "NVIDIA B300"), None);
        assert_eq!(
            power_reading(Some(900_000), None, None, Some(950_000)),
            Some((900.0, Some(950.0), None))
        );
        // Only the instant field answered.
        assert_eq!(
            power_reading(None, None, None, Some(120_000)),
            Some((120.0, None, Some(PowerSource::Instant)))
        );
        assert_eq!(power_reading(None, None, None, None), None);
    }

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
            // Every architecture this build knows says what its power reading is.
            assert!(a.power_source.is_some(), "{a:?}");
            if let (Some(ea), Some(eb)) = (a.energy_mj, b.energy_mj) {
                assert!(eb >= ea, "energy counter went backwards");
            }
            println!("{ids:?}\n{a:?}\n{b:?}");
        }
    }
}
