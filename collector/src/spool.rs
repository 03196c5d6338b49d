//! The disk spool between the batcher and the uplink: one gzip'd JSON file per batch or job event,
//! named by a sequence number so they replay in order. Bounded in bytes: when a new entry would not fit,
//! the oldest sample batches are dropped, and the samples in them are added to a persistent counter that
//! goes to the server with the next batch. Job events are never dropped for room (they are tiny).
//!
//! Files are written to a temporary name and renamed, so a crash leaves whole entries or none.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use wattlas_protocol::{DroppedRange, FacilityBatch, GpuBatch, GpuSample, JobEnd, NewJob};

/// One entry to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// Samples for `POST /api/v1/ingest/gpu`.
    Gpu(GpuBatch),
    /// A job for `POST /api/v1/jobs`.
    JobStart(NewJob),
    /// Meter readings for `POST /api/v1/ingest/facility`.
    Facility(FacilityBatch),
    /// A job's end for `POST /api/v1/jobs/{id}/end`.
    JobEnd {
        /// Job id.
        id: String,
        /// Body.
        body: JobEnd,
    },
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Self::Gpu(_) => "gpu",
            Self::JobStart(_) => "job",
            Self::JobEnd { .. } => "end",
            Self::Facility(_) => "facility",
        }
    }

    /// Samples in the entry.
    pub fn samples(&self) -> u64 {
        match self {
            Self::Gpu(b) => b.samples.len() as u64,
            Self::Facility(b) => b.readings.len() as u64,
            _ => 0,
        }
    }
}

/// A spool file, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// Sequence number.
    pub seq: u64,
    /// File path.
    pub path: PathBuf,
    /// Size on disk.
    pub bytes: u64,
    /// Whether it holds samples (and may be dropped for room).
    pub droppable: bool,
}

/// Spool errors.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// File system trouble.
    #[error("spool {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An entry that cannot be read back.
    #[error("spool entry {path} is unreadable: {reason}")]
    Corrupt {
        /// Which.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The spool directory with its bound.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    items: VecDeque<Item>,
    bytes: u64,
    next_seq: u64,
    dropped_samples: u64,
    /// Which samples were dropped, by GPU and time, until a batch carrying them is acknowledged.
    dropped_ranges: Vec<DroppedRange>,
    /// The entry the uplink is sending: never dropped for room, or its samples would be counted as
    /// dropped and stored both.
    in_flight: Option<u64>,
}

const DROPPED_FILE: &str = "dropped_samples";
const RANGES_FILE: &str = "dropped_ranges.json";
/// Dropped ranges kept at most: past it a new range widens the latest of its GPU instead (a range may
/// then hold time whose samples were delivered; never less than was dropped).
const MAX_RANGES: usize = 1000;
/// Ranges one batch carries at most (the rest go with the next ones).
pub(crate) const RANGES_PER_BATCH: usize = 500;

/// The ranges of GPU time `samples` cover, one per GPU: what dropping them loses.
pub(crate) fn ranges_of(samples: &[GpuSample]) -> Vec<DroppedRange> {
    let mut by_gpu: std::collections::BTreeMap<u32, DroppedRange> =
        std::collections::BTreeMap::new();
    for s in samples {
        by_gpu
            .entry(s.gpu)
            .and_modify(|r| {
                r.from = r.from.min(s.time);
                r.to = r.to.max(s.time);
                r.samples += 1;
            })
            .or_insert(DroppedRange {
                gpu: s.gpu,
                from: s.time,
                to: s.time,
                samples: 1,
            });
    }
    by_gpu.into_values().collect()
}

impl Spool {
    /// Opens (creating) a spool directory and lists what an earlier run left to deliver.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut items = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.ends_with(".tmp") {
                // A write cut short by a crash: never renamed, so never acknowledged to anyone.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some((seq, kind)) = parse_name(&name) else {
                continue;
            };
            let bytes = entry.metadata().map_err(io(&path))?.len();
            items.push(Item {
                seq,
                path,
                bytes,
                droppable: kind == "gpu" || kind == "facility",
            });
        }
        items.sort_by_key(|i| i.seq);
        let next_seq = items.last().map_or(1, |i| i.seq + 1);
        let bytes = items.iter().map(|i| i.bytes).sum();
        let dropped_samples = std::fs::read_to_string(dir.join(DROPPED_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let dropped_ranges = std::fs::read(dir.join(RANGES_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            items: items.into(),
            bytes,
            next_seq,
            dropped_samples,
            dropped_ranges,
            in_flight: None,
        })
    }

    /// Appends an entry, dropping the oldest sample batches if it would not fit. Returns samples dropped.
    pub(crate) fn push(&mut self, entry: &Entry) -> Result<u64, SpoolError> {
        let json = serde_json::to_vec(entry).map_err(|e| SpoolError::Corrupt {
            path: self.dir.clone(),
            reason: e.to_string(),
        })?;
        let mut gz = GzEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&json).map_err(io(&self.dir))?;
        let data = gz.finish().map_err(io(&self.dir))?;
        let size = data.len() as u64;

        let mut dropped = 0;
        while self.bytes + size > self.max_bytes {
            let in_flight = self.in_flight;
            let Some(pos) = self
                .items
                .iter()
                .position(|i| i.droppable && Some(i.seq) != in_flight)
            else {
                break;
            };
            let Some(victim) = self.items.remove(pos) else {
                break;
            };
            if let Ok(e) = read_entry(&victim.path) {
                dropped += e.samples();
                if let Entry::Gpu(b) = &e {
                    self.add_dropped_ranges(ranges_of(&b.samples))?;
                }
            }
            std::fs::remove_file(&victim.path).map_err(io(&victim.path))?;
            self.bytes -= victim.bytes;
        }
        if self.bytes + size > self.max_bytes && entry.samples() > 0 {
            // Even an empty spool cannot hold it: the entry itself is the drop.
            dropped += entry.samples();
            if let Entry::Gpu(b) = entry {
                self.add_dropped_ranges(ranges_of(&b.samples))?;
            }
            self.add_dropped(dropped)?;
            return Ok(dropped);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.dir.join(format!("{seq:016}-{}.json.gz", entry.kind()));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &data).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.items.push_back(Item {
            seq,
            path,
            bytes: size,
            droppable: entry.samples() > 0,
        });
        self.bytes += size;
        if dropped > 0 {
            self.add_dropped(dropped)?;
        }
        Ok(dropped)
    }

    /// Counts samples lost before they reached the spool (or dropped for room), persistently.
    pub(crate) fn add_dropped(&mut self, n: u64) -> Result<(), SpoolError> {
        self.dropped_samples += n;
        let path = self.dir.join(DROPPED_FILE);
        let tmp = self.dir.join(format!("{DROPPED_FILE}.tmp"));
        std::fs::write(&tmp, self.dropped_samples.to_string()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Records which samples were dropped (persistently, until delivered): a range continuing the
    /// latest of its GPU extends it; past [`MAX_RANGES`] any new one widens the latest of its GPU.
    pub(crate) fn add_dropped_ranges(
        &mut self,
        ranges: Vec<DroppedRange>,
    ) -> Result<(), SpoolError> {
        if ranges.is_empty() {
            return Ok(());
        }
        for r in ranges {
            let full = self.dropped_ranges.len() >= MAX_RANGES;
            let latest = self
                .dropped_ranges
                .iter_mut()
                .rev()
                .find(|l| l.gpu == r.gpu)
                .filter(|l| {
                    full || (r.from >= l.from && r.from <= l.to + chrono::Duration::seconds(2))
                });
            match latest {
                Some(l) => {
                    l.from = l.from.min(r.from);
                    l.to = l.to.max(r.to);
                    l.samples += r.samples;
                }
                None => self.dropped_ranges.push(r),
            }
        }
        self.save_ranges()
    }

    /// The dropped ranges to send with the next batch.
    pub(crate) fn pending_ranges(&self) -> Vec<DroppedRange> {
        self.dropped_ranges
            .iter()
            .take(RANGES_PER_BATCH)
            .cloned()
            .collect()
    }

    /// The server acknowledged a batch carrying `sent`: those are delivered (unless widened since).
    pub(crate) fn ranges_delivered(&mut self, sent: &[DroppedRange]) -> Result<(), SpoolError> {
        let before = self.dropped_ranges.len();
        self.dropped_ranges.retain(|r| !sent.contains(r));
        if self.dropped_ranges.len() == before {
            return Ok(());
        }
        self.save_ranges()
    }

    fn save_ranges(&self) -> Result<(), SpoolError> {
        let path = self.dir.join(RANGES_FILE);
        let tmp = self.dir.join(format!("{RANGES_FILE}.tmp"));
        let json = serde_json::to_vec(&self.dropped_ranges).map_err(|e| SpoolError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, json).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    #[cfg(test)]
    /// The oldest entry, if any.
    pub(crate) fn front(&self) -> Option<&Item> {
        self.items.front()
    }

    /// The oldest entry, marked in flight until it is removed, rejected or released.
    pub(crate) fn next_to_send(&mut self) -> Option<Item> {
        let item = self.items.front().cloned();
        self.in_flight = item.as_ref().map(|i| i.seq);
        item
    }

    /// The entry was not delivered (it stays, first in line) and may again be dropped for room.
    pub(crate) fn release(&mut self, seq: u64) {
        if self.in_flight == Some(seq) {
            self.in_flight = None;
        }
    }

    /// Removes a delivered entry (no-op if already dropped for room).
    pub(crate) fn remove(&mut self, seq: u64) -> Result<(), SpoolError> {
        self.release(seq);
        if let Some(pos) = self.items.iter().position(|i| i.seq == seq) {
            if let Some(item) = self.items.remove(pos) {
                self.bytes -= item.bytes;
                match std::fs::remove_file(&item.path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io(&item.path)(e))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Moves an entry the server refused for good into `rejected/`, kept for inspection.
    pub(crate) fn reject(&mut self, seq: u64) -> Result<(), SpoolError> {
        self.release(seq);
        if let Some(pos) = self.items.iter().position(|i| i.seq == seq) {
            if let Some(item) = self.items.remove(pos) {
                self.bytes -= item.bytes;
                let dir = self.dir.join("rejected");
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                let target = dir.join(item.path.file_name().unwrap_or_default());
                std::fs::rename(&item.path, &target).map_err(io(&target))?;
            }
        }
        Ok(())
    }

    /// Entries waiting.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes waiting.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Samples dropped for room, running total across restarts.
    pub(crate) fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }
}

fn parse_name(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(".json.gz")?;
    let (seq, kind) = stem.split_once('-')?;
    Some((seq.parse().ok()?, kind))
}

/// Reads an entry back from its file.
pub fn read_entry(path: &Path) -> Result<Entry, SpoolError> {
    let data = std::fs::read(path).map_err(io(path))?;
    let mut json = Vec::new();
    GzDecoder::new(&data[..])
        .read_to_end(&mut json)
        .map_err(|e| SpoolError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    serde_json::from_slice(&json).map_err(|e| SpoolError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use wattlas_protocol::GpuSample;

    fn batch(n: usize) -> Entry {
        let samples = (0..n)
            .map(|i| GpuSample {
                time: Utc::now(),
                gpu: (i % 8) as u32,
                power_w: 100.0 + i as f64,
                energy_mj: Some(i as u64 * 1000),
                power_limit_w: Some(250.0),
                util_pct: None,
                mem_used_mib: None,
                temp_c: None,
                sm_clock_mhz: None,
                power_instant_w: None,
                power_source: None,
            })
            .collect();
        Entry::Gpu(GpuBatch {
            node: None,
            gpus: vec![],
            samples,
            dropped_samples_total: None,
            clock_steps: None,
            node_energy: vec![],
            node_cpus: None,
            dropped_ranges: Vec::new(),
        })
    }

    #[test]
    fn entries_survive_a_restart_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).expect("opens");
            spool.push(&batch(10)).expect("push");
            spool
                .push(&Entry::JobEnd {
                    id: "j".into(),
                    body: JobEnd { end: Utc::now() },
                })
                .expect("push");
            spool.push(&batch(20)).expect("push");
        }
        let spool = Spool::open(dir.path(), 1 << 20).expect("reopens");
        assert_eq!(spool.len(), 3);
        let first = spool.front().expect("front");
        assert_eq!(read_entry(&first.path).expect("reads").samples(), 10);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_batches_and_counts_their_samples() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = {
            let mut probe = Spool::open(&dir.path().join("probe"), 1 << 20).expect("opens");
            probe.push(&batch(80)).expect("push");
            probe.bytes()
        };
        // Room for about three batches.
        let mut spool = Spool::open(&dir.path().join("s"), one * 3 + one / 2).expect("opens");
        let mut dropped = 0;
        spool
            .push(&Entry::JobEnd {
                id: "keep".into(),
                body: JobEnd { end: Utc::now() },
            })
            .expect("push");
        for _ in 0..6 {
            dropped += spool.push(&batch(80)).expect("push");
        }
        assert!(dropped >= 240, "dropped {dropped}");
        assert_eq!(dropped % 80, 0);
        assert_eq!(spool.dropped_samples(), dropped);
        assert!(spool.bytes() <= one * 3 + one / 2);
        // The job event is still first in line.
        assert!(matches!(
            read_entry(&spool.front().expect("front").path).expect("reads"),
            Entry::JobEnd { .. }
        ));
        drop(spool);
        let reopened = Spool::open(&dir.path().join("s"), one * 4).expect("reopens");
        assert_eq!(
            reopened.dropped_samples(),
            dropped,
            "the drop count persists"
        );
    }

    /// Second `k` after `t0` of GPUs 0 and 1, ten samples each.
    fn second(t0: chrono::DateTime<Utc>, k: i64) -> Entry {
        let Entry::Gpu(mut b) = batch(0) else {
            unreachable!()
        };
        b.samples = (0..20)
            .map(|i| GpuSample {
                time: t0 + chrono::Duration::milliseconds(1000 * k + 100 * (i / 2)),
                gpu: (i % 2) as u32,
                power_w: 100.0,
                energy_mj: None,
                power_limit_w: None,
                util_pct: None,
                mem_used_mib: None,
                temp_c: None,
                sm_clock_mhz: None,
                power_instant_w: None,
                power_source: None,
            })
            .collect();
        Entry::Gpu(b)
    }

    #[test]
    fn dropped_samples_are_kept_as_ranges_until_delivered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = Utc::now() - chrono::Duration::hours(1);
        let one = {
            let mut probe = Spool::open(&dir.path().join("probe"), 1 << 20).expect("opens");
            probe.push(&second(t0, 0)).expect("push");
            probe.bytes()
        };
        let mut spool = Spool::open(&dir.path().join("s"), one * 2 + one / 2).expect("opens");
        let mut dropped = 0;
        for k in 0..10 {
            dropped += spool.push(&second(t0, k)).expect("push");
        }
        // Seconds 0..8 dropped in order: one range per GPU, extended batch after batch.
        let ranges = spool.pending_ranges();
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        assert_eq!(ranges.iter().map(|r| r.samples).sum::<u64>(), dropped);
        for r in &ranges {
            assert_eq!(r.from, t0);
            assert_eq!(
                r.to,
                t0 + chrono::Duration::milliseconds(1000 * (dropped as i64 / 20 - 1) + 900)
            );
        }
        // They persist, and go once delivered; a range added meanwhile stays.
        drop(spool);
        let mut spool = Spool::open(&dir.path().join("s"), one * 2 + one / 2).expect("reopens");
        assert_eq!(spool.pending_ranges(), ranges);
        let later = ranges_of(match &second(t0, 100) {
            Entry::Gpu(b) => &b.samples,
            _ => unreachable!(),
        });
        spool.add_dropped_ranges(later.clone()).expect("add");
        spool.ranges_delivered(&ranges).expect("delivered");
        assert_eq!(
            spool.pending_ranges(),
            later,
            "a gap over 2 s is a range of its own"
        );
        // Bounded: past MAX_RANGES a new range widens the latest of its GPU.
        for k in 0..(MAX_RANGES as i64 + 50) {
            spool
                .add_dropped_ranges(vec![DroppedRange {
                    gpu: 3,
                    from: t0 + chrono::Duration::seconds(10 * k),
                    to: t0 + chrono::Duration::seconds(10 * k),
                    samples: 1,
                }])
                .expect("add");
        }
        assert!(spool.dropped_ranges.len() <= MAX_RANGES);
        let gpu3: Vec<_> = spool.dropped_ranges.iter().filter(|r| r.gpu == 3).collect();
        assert_eq!(
            gpu3.iter().map(|r| r.samples).sum::<u64>(),
            MAX_RANGES as u64 + 50
        );
        assert_eq!(
            gpu3.last().expect("range").to,
            t0 + chrono::Duration::seconds(10 * (MAX_RANGES as i64 + 49))
        );
    }

    #[test]
    fn the_entry_in_flight_is_never_dropped_for_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = {
            let mut probe = Spool::open(&dir.path().join("probe"), 1 << 20).expect("opens");
            probe.push(&batch(80)).expect("push");
            probe.bytes()
        };
        let mut spool = Spool::open(&dir.path().join("s"), one * 2 + one / 2).expect("opens");
        spool.push(&batch(80)).expect("push");
        spool.push(&batch(80)).expect("push");
        let sending = spool.next_to_send().expect("an entry");
        // No room for a third: the second goes, not the one being sent.
        assert_eq!(spool.push(&batch(80)).expect("push"), 80);
        assert_eq!(spool.front().expect("front").seq, sending.seq);
        assert_eq!(spool.len(), 2);
        // Delivered: removed, and nothing counted twice.
        spool.remove(sending.seq).expect("remove");
        assert_eq!(spool.len(), 1);
        assert_eq!(spool.dropped_samples(), 80);
        // Released after a failed send, the oldest may go for room again.
        let next = spool.next_to_send().expect("an entry");
        spool.release(next.seq);
        spool.push(&batch(80)).expect("push");
        assert_eq!(spool.push(&batch(80)).expect("push"), 80);
        assert_ne!(spool.front().expect("front").seq, next.seq);
    }
}
