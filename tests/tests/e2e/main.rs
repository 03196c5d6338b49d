//! End to end with the real binaries: `wattlas-collector` -> HTTP -> `wattlas-server` -> TimescaleDB.
//!
//! Needs the binaries built (`cargo test --workspace --no-run`, which `scripts/test` does) and
//! `DATABASE_URL` pointing at the cluster of `scripts/db up`; each test gets its own database.

mod abuse;
mod backup;
mod dcgm;
mod imports;
mod node_energy;
mod pipeline;
mod prometheus;
mod slurm;
mod upgrade;
