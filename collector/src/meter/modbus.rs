//! A facility power meter over Modbus TCP: total facility power and IT power from two register
//! addresses, with the data type, scale and word order of the meter's register map.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_modbus::client::{tcp, Context, Reader};
use tokio_modbus::Slave;
use wattlas_protocol::FacilityReading;

use super::error::MeterError;

/// How a value is laid out in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DataType {
    /// One register, unsigned.
    U16,
    /// One register, signed.
    I16,
    /// Two registers, unsigned.
    U32,
    /// Two registers, signed.
    I32,
    /// Two registers, IEEE 754 single precision.
    F32,
}

impl DataType {
    fn registers(self) -> u16 {
        match self {
            Self::U16 | Self::I16 => 1,
            _ => 2,
        }
    }
}

/// Which register of a 32-bit pair comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WordOrder {
    /// High word first (the Modbus convention).
    Big,
    /// Low word first (many meters).
    Little,
}

/// Holding (function 3) or input (function 4) registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RegisterKind {
    /// Holding registers.
    Holding,
    /// Input registers.
    Input,
}

/// The meter's register map.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModbusConfig {
    /// Meter address.
    pub addr: SocketAddr,
    /// Modbus unit id.
    pub unit: u8,
    /// Register kind.
    pub kind: RegisterKind,
    /// Address of total facility power.
    pub total_register: u16,
    /// Address of IT power.
    pub it_register: u16,
    /// Layout of both values.
    pub data_type: DataType,
    /// Multiplier from the register value to kW (e.g. 0.001 for a meter that reports W).
    pub scale: f64,
    /// Word order of 32-bit values.
    pub word_order: WordOrder,
}

/// Decodes a value from its registers.
pub(crate) fn decode(words: &[u16], data_type: DataType, order: WordOrder) -> Option<f64> {
    let pair = || -> Option<u32> {
        let (hi, lo) = match order {
            WordOrder::Big => (*words.first()?, *words.get(1)?),
            WordOrder::Little => (*words.get(1)?, *words.first()?),
        };
        Some((u32::from(hi) << 16) | u32::from(lo))
    };
    Some(match data_type {
        DataType::U16 => f64::from(*words.first()?),
        DataType::I16 => f64::from(*words.first()? as i16),
        DataType::U32 => f64::from(pair()?),
        DataType::I32 => f64::from(pair()? as i32),
        DataType::F32 => f64::from(f32::from_bits(pair()?)),
    })
}

/// A connected (or reconnecting) meter.
pub(crate) struct ModbusMeter {
    config: ModbusConfig,
    ctx: Option<Context>,
}

impl ModbusMeter {
    /// A meter that connects on its first read.
    pub(crate) fn new(config: ModbusConfig) -> Self {
        Self { config, ctx: None }
    }

    async fn value(ctx: &mut Context, c: &ModbusConfig, addr: u16) -> Result<f64, MeterError> {
        let n = c.data_type.registers();
        let words = match c.kind {
            RegisterKind::Holding => ctx.read_holding_registers(addr, n).await,
            RegisterKind::Input => ctx.read_input_registers(addr, n).await,
        }
        .map_err(|e| MeterError::Read(format!("register {addr}: {e}")))?
        .map_err(|e| MeterError::Read(format!("register {addr}: exception {e:?}")))?;
        let raw = decode(&words, c.data_type, c.word_order)
            .ok_or_else(|| MeterError::Read(format!("register {addr}: short answer")))?;
        Ok(raw * c.scale)
    }

    /// Reads total and IT power; reconnects on the next read after any error.
    pub(crate) async fn read(&mut self, now: DateTime<Utc>) -> Result<FacilityReading, MeterError> {
        if self.ctx.is_none() {
            let connect = tcp::connect_slave(self.config.addr, Slave(self.config.unit));
            let ctx = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .map_err(|_| MeterError::Read(format!("{}: connect timed out", self.config.addr)))?
                .map_err(|e| MeterError::Read(format!("{}: {e}", self.config.addr)))?;
            self.ctx = Some(ctx);
        }
        let Some(ctx) = self.ctx.as_mut() else {
            return Err(MeterError::Read("not connected".into()));
        };
        let result = async {
            let total = Self::value(ctx, &self.config, self.config.total_register).await?;
            let it = Self::value(ctx, &self.config, self.config.it_register).await?;
            Ok::<_, MeterError>((total, it))
        };
        let (total_kw, it_kw) = match tokio::time::timeout(Duration::from_secs(5), result).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.ctx = None;
                return Err(e);
            }
            Err(_) => {
                self.ctx = None;
                return Err(MeterError::Read("read timed out".into()));
            }
        };
        if !total_kw.is_finite() || !it_kw.is_finite() || it_kw < 0.0 || total_kw < it_kw {
            return Err(MeterError::Implausible(format!(
                "total {total_kw} kW, IT {it_kw} kW"
            )));
        }
        Ok(FacilityReading {
            time: now,
            it_kw: Some(it_kw),
            total_kw: Some(total_kw),
            ..FacilityReading::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
    use tokio_modbus::{ExceptionCode, Request, Response};

    #[test]
    fn decodes_types_and_word_orders() {
        let f = 1234.5f32.to_bits();
        let (hi, lo) = ((f >> 16) as u16, (f & 0xffff) as u16);
        assert_eq!(
            decode(&[hi, lo], DataType::F32, WordOrder::Big),
            Some(1234.5)
        );
        assert_eq!(
            decode(&[lo, hi], DataType::F32, WordOrder::Little),
            Some(1234.5)
        );
        assert_eq!(
            decode(&[0x0001, 0x0002], DataType::U32, WordOrder::Big),
            Some(65538.0)
        );
        assert_eq!(decode(&[0xffff], DataType::I16, WordOrder::Big), Some(-1.0));
        assert_eq!(
            decode(&[0xffff, 0xfffe], DataType::I32, WordOrder::Big),
            Some(-2.0)
        );
        assert_eq!(decode(&[7], DataType::U32, WordOrder::Big), None);
    }

    /// A Modbus TCP server with a register map, serving holding registers.
    struct Registers(Arc<Mutex<HashMap<u16, u16>>>);

    impl tokio_modbus::server::Service for Registers {
        type Request = Request<'static>;
        type Response = Response;
        type Exception = ExceptionCode;
        type Future = std::future::Ready<Result<Response, ExceptionCode>>;

        fn call(&self, req: Self::Request) -> Self::Future {
            let map = self.0.lock().map(|m| m.clone()).unwrap_or_default();
            std::future::ready(match req {
                Request::ReadHoldingRegisters(addr, n) => (addr..addr + n)
                    .map(|a| map.get(&a).copied())
                    .collect::<Option<Vec<u16>>>()
                    .map(Response::ReadHoldingRegisters)
                    .ok_or(ExceptionCode::IllegalDataAddress),
                _ => Err(ExceptionCode::IllegalFunction),
            })
        }
    }

    async fn serve(map: HashMap<u16, u16>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("addr");
        let map = Arc::new(Mutex::new(map));
        tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, socket_addr| {
                let map = map.clone();
                async move {
                    accept_tcp_connection(stream, socket_addr, move |_| {
                        Ok(Some(Registers(map.clone())))
                    })
                }
            };
            let _ = server.serve(&on_connected, |_err| {}).await;
        });
        addr
    }

    fn config(
        addr: SocketAddr,
        data_type: DataType,
        word_order: WordOrder,
        scale: f64,
    ) -> ModbusConfig {
        ModbusConfig {
            addr,
            unit: 1,
            kind: RegisterKind::Holding,
            total_register: 100,
            it_register: 200,
            data_type,
            scale,
            word_order,
        }
    }

    #[tokio::test]
    async fn reads_a_real_modbus_tcp_server_on_loopback() {
        // Total 1,250.5 kW and IT 900.25 kW as little-endian-word f32.
        let words = |v: f32| {
            let b = v.to_bits();
            [(b & 0xffff) as u16, (b >> 16) as u16]
        };
        let (t, i) = (words(1250.5), words(900.25));
        let addr = serve(
            [(100, t[0]), (101, t[1]), (200, i[0]), (201, i[1])]
                .into_iter()
                .collect(),
        )
        .await;
        let mut meter = ModbusMeter::new(config(addr, DataType::F32, WordOrder::Little, 1.0));
        let r = meter.read(Utc::now()).await.expect("reads");
        assert_eq!(r.total_kw, Some(1250.5));
        assert_eq!(r.it_kw, Some(900.25));

        // A meter reporting watts as u32, high word first, scaled to kW.
        let addr = serve(
            [(100, 0x0013), (101, 0x1D58), (200, 0x000D), (201, 0xBBA0)]
                .into_iter()
                .collect(),
        )
        .await;
        let mut meter = ModbusMeter::new(config(addr, DataType::U32, WordOrder::Big, 0.001));
        let r = meter.read(Utc::now()).await.expect("reads");
        assert_eq!(r.total_kw, Some(1_252.696));
        assert_eq!(r.it_kw, Some(900.0));
    }

    #[tokio::test]
    async fn errors_are_clean_and_reconnect() {
        // Registers missing: the server answers with an exception.
        let addr = serve(HashMap::new()).await;
        let mut meter = ModbusMeter::new(config(addr, DataType::U16, WordOrder::Big, 1.0));
        let err = meter.read(Utc::now()).await.expect_err("exception");
        assert!(err.to_string().contains("register 100"), "{err}");
        // Nobody listening.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        let mut meter = ModbusMeter::new(config(closed, DataType::U16, WordOrder::Big, 1.0));
        assert!(meter.read(Utc::now()).await.is_err());
        // IT above total is not a power reading.
        let addr = serve([(100, 10), (200, 20)].into_iter().collect()).await;
        let mut meter = ModbusMeter::new(config(addr, DataType::U16, WordOrder::Big, 1.0));
        assert!(matches!(
            meter.read(Utc::now()).await,
            Err(MeterError::Implausible(_))
        ));
    }
}
