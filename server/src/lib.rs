//! Wattlas server: ingest of GPU samples, per-job energy on TimescaleDB, the JSON API and pages.
//!
//! Layers at the top (`routes`, `db`, `charts`, `analytics`), features inside each with matching names.
//! `startup::run` serves a bound listener until a shutdown future resolves, so tests run the real server
//! on port 0.

pub mod analytics;
pub mod auth;
pub mod cache;
pub mod charts;
pub mod cli;
/// The block codec lives in `wattlas_protocol` (collectors encode with it); re-exported where it was.
pub use wattlas_protocol::codec;
pub mod config;
pub(crate) mod connections;
pub mod db;
pub mod error;
pub mod extract;
pub mod ids;
pub mod maintenance;
pub mod metrics;
pub mod names;
pub mod reads;
pub mod routes;
pub mod service;
pub mod startup;
pub mod state;
pub mod statement;

/// The embedded migrations, run at start-up and by `wattlas-server migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
