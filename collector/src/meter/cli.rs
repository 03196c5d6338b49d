//! `wattlas-collector meter`: its flags (or a TOML file) and the run they start.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::uplink::Uplink;

/// Flags of `meter`; every one may also come from the TOML file given by `--config`.
#[derive(Debug, Clone, Default, Args, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterArgs {
    /// TOML file with any of these settings (snake_case keys).
    #[arg(long, env = "WATTLAS_METER_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Server base URL.
    #[arg(long, env = "WATTLAS_SERVER")]
    server: Option<String>,
    /// The meter's token (or admin, with --meter and --site).
    #[arg(long, env = "WATTLAS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Meter name (required with the admin token).
    #[arg(long, env = "WATTLAS_METER")]
    meter: Option<String>,
    /// Site of the meter (with the admin token a new meter is created there).
    #[arg(long, env = "WATTLAS_SITE")]
    site: Option<String>,
    /// Source: simulated or modbus.
    #[arg(long, env = "WATTLAS_METER_SOURCE")]
    source: Option<String>,
    /// Seconds between readings (default 60).
    #[arg(long, env = "WATTLAS_METER_INTERVAL_S")]
    interval_s: Option<u64>,
    /// Spool directory (default .wattlas/meter-spool).
    #[arg(long, env = "WATTLAS_SPOOL_DIR")]
    spool_dir: Option<PathBuf>,
    /// Spool bound in bytes (default 64 MiB).
    #[arg(long, env = "WATTLAS_SPOOL_MAX_BYTES")]
    spool_max_bytes: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    run_seconds: Option<f64>,
    /// Simulated: the site's IANA zone (the day/night rhythm is local; default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// Simulated: mean IT load, kW (default 800).
    #[arg(long)]
    it_base_kw: Option<f64>,
    /// Simulated: noise seed (default 1).
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated: first send this many days of history (default 0).
    #[arg(long)]
    backfill_days: Option<u32>,
    /// Modbus: meter address, host:port.
    #[arg(long)]
    modbus_addr: Option<String>,
    /// Modbus: unit id (default 1).
    #[arg(long)]
    modbus_unit: Option<u8>,
    /// Modbus: holding or input registers (default holding).
    #[arg(long, value_enum)]
    modbus_registers: Option<crate::meter::modbus::RegisterKind>,
    /// Modbus: address of total facility power.
    #[arg(long)]
    modbus_total_register: Option<u16>,
    /// Modbus: address of IT power.
    #[arg(long)]
    modbus_it_register: Option<u16>,
    /// Modbus: data type (u16, i16, u32, i32, f32; default f32).
    #[arg(long, value_enum)]
    modbus_data_type: Option<crate::meter::modbus::DataType>,
    /// Modbus: multiplier from register value to kW (default 1).
    #[arg(long)]
    modbus_scale: Option<f64>,
    /// Modbus: word order of 32-bit values (big or little; default big).
    #[arg(long, value_enum)]
    modbus_word_order: Option<crate::meter::modbus::WordOrder>,
}

impl MeterArgs {
    /// Flags over the TOML file given by `--config`.
    fn resolve(self) -> anyhow::Result<MeterArgs> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let mut out = crate::config::overlay_file(self, &path)?;
        out.config = Some(path);
        Ok(out)
    }
}

/// Runs `meter`: reads the meter every interval and pushes its readings until stopped.
pub async fn run(
    args: MeterArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use crate::meter::{modbus, simulated, Meter};
    let a = args.resolve()?;
    let server = a.server.context("--server is required")?;
    let token = a.token.context("--token is required")?;
    let interval_s = a.interval_s.unwrap_or(60).max(1);
    let source = a.source.as_deref().unwrap_or("simulated");
    let meter = match source {
        "simulated" => {
            let tz: chrono_tz::Tz = a
                .timezone
                .as_deref()
                .unwrap_or("UTC")
                .parse()
                .map_err(|_| anyhow::anyhow!("--timezone: not an IANA zone"))?;
            let site = simulated::SimulatedSite {
                tz,
                it_base_kw: a.it_base_kw.unwrap_or(800.0),
                seed: a.seed.unwrap_or(1),
            };
            if let Some(days) = a.backfill_days.filter(|d| *d > 0) {
                let now = chrono::Utc::now();
                let readings = crate::meter_run::backfill(
                    &site,
                    now - chrono::Duration::days(i64::from(days)),
                    now,
                    interval_s,
                );
                let uplink = Uplink::new(&server, &token)?;
                let report = crate::import::meter::send(
                    &uplink,
                    a.site.as_deref(),
                    a.meter.as_deref(),
                    &readings,
                )
                .await
                .map_err(|e| anyhow::anyhow!("backfill refused: {e}"))?;
                tracing::info!(
                    readings = readings.len(),
                    stored = report.stored,
                    "backfilled the simulated site"
                );
            }
            Meter::Simulated(site)
        }
        "modbus" => {
            let addr = a.modbus_addr.context("--modbus-addr is required")?;
            let addr = tokio::net::lookup_host(&addr)
                .await?
                .next()
                .with_context(|| format!("--modbus-addr: cannot resolve {addr}"))?;
            Meter::Modbus(modbus::ModbusMeter::new(modbus::ModbusConfig {
                addr,
                unit: a.modbus_unit.unwrap_or(1),
                kind: a.modbus_registers.unwrap_or(modbus::RegisterKind::Holding),
                total_register: a
                    .modbus_total_register
                    .context("--modbus-total-register is required")?,
                it_register: a
                    .modbus_it_register
                    .context("--modbus-it-register is required")?,
                data_type: a.modbus_data_type.unwrap_or(modbus::DataType::F32),
                scale: a.modbus_scale.unwrap_or(1.0),
                word_order: a.modbus_word_order.unwrap_or(modbus::WordOrder::Big),
            }))
        }
        other => anyhow::bail!("--source: '{other}' is not simulated or modbus"),
    };
    let config = crate::meter_run::MeterRun {
        server,
        token,
        meter: a.meter,
        site: a.site,
        interval_s,
        spool_dir: a
            .spool_dir
            .unwrap_or_else(|| PathBuf::from(".wattlas/meter-spool")),
        spool_max_bytes: a.spool_max_bytes.unwrap_or(64 * 1024 * 1024),
        run_seconds: a.run_seconds,
    };
    crate::meter_run::run(config, meter, shutdown).await?;
    Ok(())
}
