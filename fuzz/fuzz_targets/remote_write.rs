//! Any bytes as the body of `POST /api/v1/write`, read as the server reads it (`decode_map`: snappy,
//! then the protobuf walked in place within `wire::LIMITS`), with every byte it allocates counted: the
//! peak stays within a bound linear in what the body declares and capped by the limits (issue 33, N2:
//! 3.1 MB once became 2.6 GB). What maps has finite, non-negative power and one identity per GPU of a
//! node, and agrees with decoding into owned messages (`decode` then `map`) wherever no series was
//! dropped over a limit.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use wattlas_server::service::remote_write::{decode, decode_map, map, wire};

/// The system allocator, counting the bytes live and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed to `System` unchanged; only counters are updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    let limits = wire::LIMITS;
    // What the body says it decompresses to (refused before any allocation past the limit).
    let declared = wire::decompressed_len(data, &limits).unwrap_or(0);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = decode_map(data, &limits);
    let peak = PEAK.load(Ordering::Relaxed) - base;
    // Every sample and series is at least two bytes on the wire.
    let bound = 3 * declared
        + 600 * (declared / 2).min(limits.samples)
        + 256 * (declared / 2).min(limits.series)
        + (64 << 10);
    assert!(
        peak <= bound,
        "{peak} bytes allocated for a body declaring {declared}"
    );
    let Ok(mapped) = result else {
        return;
    };
    for (node, series) in &mapped.nodes {
        assert!(!node.is_empty());
        let mut seen = std::collections::HashSet::new();
        for g in &series.gpus {
            assert!(seen.insert(g.index), "GPU {} of {node} twice", g.index);
        }
        for s in &series.samples {
            assert!(s.power_w.is_finite() && s.power_w >= 0.0);
        }
    }
    let dropped = mapped.read.dropped_too_many_labels + mapped.read.dropped_label_too_long;
    if dropped == 0 {
        if let Ok(owned) = decode(data).and_then(|request| map(&request)) {
            assert_eq!(owned.nodes, mapped.nodes);
            assert_eq!(
                (owned.ignored, owned.without_power),
                (mapped.ignored, mapped.without_power)
            );
        }
    }
});
