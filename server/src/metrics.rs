//! Self-observability: counters the server keeps in memory and `GET /metrics` exposes in Prometheus'
//! text format (0.0.4), with gauges read from the database at scrape time (rollup backlog, last runs of
//! the background tasks, database round-trip time). `/metrics` is public like `/readyz`: it holds
//! counts, no names, jobs or tokens.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What the server counts.
#[derive(Default)]
pub struct Metrics {
    pub(crate) batches: AtomicU64,
    pub(crate) samples_stored: AtomicU64,
    pub(crate) samples_duplicate: AtomicU64,
    pub(crate) readings_stored: AtomicU64,
    /// Reads of a job's allocations, and integrations of a job's energy over its samples: a job page
    /// costs one of each at most.
    pub(crate) allocation_reads: AtomicU64,
    /// Remote-write samples of series Wattlas does not store, and GPU timestamps without power.
    pub(crate) remote_write_ignored: AtomicU64,
    pub(crate) remote_write_without_power: AtomicU64,
    /// Remote-write series dropped over a per-series limit, by reason.
    pub(crate) remote_write_dropped: [AtomicU64; 2],
    pub(crate) energy_integrations: AtomicU64,
    /// Requests identified from memory while the database could not say (auth::remembered).
    pub(crate) identities_recalled: AtomicU64,
    /// Refused writes by route and HTTP status.
    pub(crate) rejected: Mutex<BTreeMap<(String, u16), u64>>,
    /// Sign-ins by outcome (accepted, refused, limited, busy).
    pub(crate) sign_ins: Mutex<BTreeMap<&'static str, u64>>,
    /// Background work done by this process, by task.
    pub(crate) maintenance: Mutex<BTreeMap<&'static str, u64>>,
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_default() += 1;
}

impl Metrics {
    /// A GPU batch was committed.
    pub(crate) fn ingested(&self, stored: u64, duplicates: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.samples_stored.fetch_add(stored, Ordering::Relaxed);
        self.samples_duplicate
            .fetch_add(duplicates, Ordering::Relaxed);
    }

    /// Facility readings were committed.
    pub(crate) fn readings(&self, stored: u64) {
        self.readings_stored.fetch_add(stored, Ordering::Relaxed);
    }

    /// A remote write was taken: samples of series ignored, GPU timestamps without power.
    pub(crate) fn remote_write(&self, ignored: u64, without_power: u64) {
        self.remote_write_ignored
            .fetch_add(ignored, Ordering::Relaxed);
        self.remote_write_without_power
            .fetch_add(without_power, Ordering::Relaxed);
    }

    /// Series of a remote write dropped: more labels than the limit, a label longer than it.
    pub(crate) fn remote_write_dropped(&self, too_many_labels: u64, label_too_long: u64) {
        self.remote_write_dropped[0].fetch_add(too_many_labels, Ordering::Relaxed);
        self.remote_write_dropped[1].fetch_add(label_too_long, Ordering::Relaxed);
    }

    /// A job's allocations were read.
    pub(crate) fn allocation_read(&self) {
        self.allocation_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// A job's energy was integrated over its samples.
    pub(crate) fn energy_integration(&self) {
        self.energy_integrations.fetch_add(1, Ordering::Relaxed);
    }

    /// `(allocation reads, energy integrations)` so far.
    pub fn job_reads(&self) -> (u64, u64) {
        (
            self.allocation_reads.load(Ordering::Relaxed),
            self.energy_integrations.load(Ordering::Relaxed),
        )
    }

    /// A request was identified from memory while the database was unreachable.
    pub(crate) fn identity_recalled(&self) {
        self.identities_recalled.fetch_add(1, Ordering::Relaxed);
    }

    /// A sign-in ended so.
    pub(crate) fn sign_in(&self, outcome: &'static str) {
        bump(&self.sign_ins, outcome);
    }

    /// A write route refused a request (4xx, 5xx): by its route template and status.
    pub(crate) fn rejected(&self, route: String, status: u16) {
        bump(&self.rejected, (route, status));
    }

    /// A background task did `n` pieces of work (ranges, nodes, job summaries, chunks).
    pub(crate) fn maintenance(&self, task: &'static str, n: u64) {
        *self
            .maintenance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(task)
            .or_default() += n;
    }

    /// Background work done by this process so far, by task.
    pub fn maintenance_work(&self) -> BTreeMap<&'static str, u64> {
        self.maintenance
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Label values are ours (routes, outcomes, task names), but escape them as the format asks anyway.
pub(crate) fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A family of one unlabelled sample.
pub(crate) fn single(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Resident memory of a process now (`/proc/PID/status`, VmRSS), KiB; `None` for this process. `None`
/// where it cannot be read (not Linux, the process gone).
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(
        || "/proc/self/status".to_owned(),
        |p| format!("/proc/{p}/status"),
    );
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
