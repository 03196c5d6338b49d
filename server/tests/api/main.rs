//! The server's HTTP tests, one binary (one link of the server and typst), a module per feature: each
//! test gets its own database (`#[sqlx::test]`) on the real TimescaleDB and a real server on
//! 127.0.0.1:0. `TEST_LOG=1` prints the server's log (a 500's cause, a slow query) beside the failures.

mod access;
mod bad_input;
mod bounds;
mod budgets;
mod closure;
mod common;
mod facility;
mod hardening;
mod ingest;
mod job_pages;
mod jobs;
mod maintenance;
mod node_energy;
mod outage;
mod overview;
mod paging;
mod powercap;
mod progress;
mod prologs;
mod properties;
mod remote_write;
mod rollups;
mod scheduler;
mod scope2;
mod sensor;
mod settle;
mod sign_in;
mod statement;
