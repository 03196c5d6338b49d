//! Properties of the arithmetic the energy ledger rests on, over generated inputs (proptest): energy
//! adds up over any split of a window, does not depend on the order or repetition of samples, the raw
//! block codec gives back what it was given, and Table 1's variation does not depend on input order.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use wattlas_server::analytics::energy::gpu_energy;
use wattlas_server::analytics::pue::{variation, HourPue};
use wattlas_server::codec::{decode, encode, RawSample};

const MAX_GAP_MS: i64 = 1000;

/// One GPU's samples from generated steps: (ms since the previous, W, mJ since the previous).
fn series(steps: &[(i64, u32, u32)], with_counter: bool) -> Vec<RawSample> {
    let (mut t, mut counter) = (1_700_000_000_000i64, 5_000_000i64);
    steps
        .iter()
        .map(|(dt, w, mj)| {
            t += dt;
            counter += i64::from(*mj);
            RawSample {
                gpu: 0,
                t_ms: t,
                power_mw: i64::from(*w) * 1000,
                energy_mj: with_counter.then_some(counter),
                limit_mw: Some(250_000),
                util_dpct: Some(900),
                mem_mib: None,
                temp_dc: None,
                sm_mhz: None,
                instant_mw: None,
                power_source: None,
            }
        })
        .collect()
}

fn steps() -> impl Strategy<Value = Vec<(i64, u32, u32)>> {
    // 20 ms to 3 s apart (some gaps longer than the bridging limit), 0 to 700 W.
    prop::collection::vec((20i64..3000, 0u32..700, 0u32..2000), 2..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn energy_adds_up_over_any_split_of_the_window(
        steps in steps(),
        with_counter in any::<bool>(),
        at in 0.0f64..1.0,
    ) {
        let s = series(&steps, with_counter);
        let (from, to) = (s[0].t_ms - 500, s[s.len() - 1].t_ms + 500);
        let split = from + ((to - from) as f64 * at) as i64;
        let whole = gpu_energy(&s, from, to, MAX_GAP_MS);
        let left = gpu_energy(&s, from, split, MAX_GAP_MS);
        let right = gpu_energy(&s, split, to, MAX_GAP_MS);
        prop_assert!((left.energy_j + right.energy_j - whole.energy_j).abs() < 1e-6,
            "{} + {} != {}", left.energy_j, right.energy_j, whole.energy_j);
        prop_assert!((left.covered_s + right.covered_s - whole.covered_s).abs() < 1e-9);
        prop_assert_eq!(left.samples + right.samples, whole.samples);
    }

    #[test]
    fn energy_ignores_the_order_and_repetition_of_samples(
        steps in steps(),
        with_counter in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let s = series(&steps, with_counter);
        let (from, to) = (s[0].t_ms, s[s.len() - 1].t_ms + 1);
        let once = gpu_energy(&s, from, to, MAX_GAP_MS);
        // Resent batches: every sample twice, in a scrambled order.
        let mut again: Vec<RawSample> = s.iter().chain(s.iter()).copied().collect();
        let n = again.len();
        for i in 0..n {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % n as u64) as usize;
            again.swap(i, j);
        }
        prop_assert_eq!(gpu_energy(&again, from, to, MAX_GAP_MS), once);
    }

    #[test]
    fn a_block_decodes_to_what_was_encoded(
        raw in prop::collection::vec(
            (0u32..8, 0i64..600_000, 0i64..1_000_000, prop::option::of(0i64..1i64 << 40),
             prop::option::of(0i64..700_000), prop::option::of(0i64..1000)),
            1..300),
    ) {
        let t0 = 1_700_000_000_000i64;
        let samples: Vec<RawSample> = raw
            .iter()
            .map(|(gpu, dt, mw, mj, limit, util)| RawSample {
                gpu: *gpu,
                t_ms: t0 + dt,
                power_mw: *mw,
                energy_mj: *mj,
                limit_mw: *limit,
                util_dpct: *util,
                mem_mib: None,
                temp_dc: Some(655),
                sm_mhz: None,
                instant_mw: None,
                power_source: None,
            })
            .collect();
        let block = encode(t0, &samples);
        let mut decoded = Vec::new();
        decode(t0, &block, &mut decoded).expect("decodes");
        // By GPU and time, the first of a GPU's samples at one millisecond kept.
        let mut expected = samples.clone();
        expected.sort_by_key(|s| (s.gpu, s.t_ms));
        expected.dedup_by_key(|s| (s.gpu, s.t_ms));
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn table_1_ignores_the_order_of_hours(
        // A few hours missing (days with gaps are excluded from the table, as in the paper).
        pues in prop::collection::vec(prop::option::weighted(0.995, 1.05f64..2.5), 24 * 40),
        seed in any::<u64>(),
    ) {
        let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 1, 25, 0, 0, 0).single().expect("time");
        let hours: Vec<HourPue> = pues
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|pue| HourPue { start: start + Duration::hours(i as i64), pue }))
            .collect();
        let mut shuffled = hours.clone();
        let n = shuffled.len();
        for i in 0..n {
            let j = (seed.wrapping_mul(2862933555777941757).wrapping_add(i as u64) % n.max(1) as u64) as usize;
            shuffled.swap(i, j);
        }
        let tz = chrono_tz::Europe::Berlin;
        let (a, b) = (variation(&shuffled, tz, 2026), variation(&hours, tz, 2026));
        // Equal but for the last bits of sums taken in another order.
        let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
            (x, y) => x.is_none() && y.is_none(),
        };
        prop_assert!(b.days > 0, "some days are whole");
        prop_assert_eq!((a.days, a.days_excluded), (b.days, b.days_excluded));
        prop_assert!(close(a.annual_variation_pct, b.annual_variation_pct));
        prop_assert_eq!(a.months.len(), b.months.len());
        for (m, n) in a.months.iter().zip(&b.months) {
            prop_assert_eq!((m.month, m.days, m.days_excluded), (n.month, n.days, n.days_excluded));
            prop_assert!(close(m.avg_daily_variation_pct, n.avg_daily_variation_pct), "{m:?} {n:?}");
            prop_assert!(close(m.mean_pue, n.mean_pue), "{m:?} {n:?}");
        }
    }
}

/// Energy of a piecewise-constant power (W per 10 ms cell, 0 outside) over `[a, b)` ms, J.
fn cell_energy(power: &[u32], a: i64, b: i64) -> f64 {
    let mut e = 0.0;
    for (i, w) in power.iter().enumerate() {
        let (lo, hi) = (i as i64 * 10, i as i64 * 10 + 10);
        let (x, y) = (lo.max(a), hi.min(b));
        if y > x {
            e += f64::from(*w) * (y - x) as f64 / 1000.0;
        }
    }
    e
}

proptest! {
    /// Jobs sharing one GPU over random overlapping spans: each is charged its pieces split by the
    /// holders at the time; together they are charged exactly the GPU's energy over the union of their
    /// spans, so no GPU-second counts twice, and none is charged more than the GPU drew in its span.
    #[test]
    fn shared_gpu_shares_add_up_to_the_gpus_energy_once(
        spans in prop::collection::vec((0i64..900, 1i64..400), 1..6),
        power in prop::collection::vec(0u32..700, 130),
    ) {
        use wattlas_server::analytics::sharing::segments;
        let spans: Vec<(i64, i64)> = spans.iter().map(|(s, l)| (*s, (*s + *l).min(1300))).collect();
        let mut charged = 0.0;
        for (i, &(from, to)) in spans.iter().enumerate() {
            let others: Vec<(i64, i64)> = spans
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, s)| *s)
                .collect();
            let mine: f64 = segments(from, to, &others)
                .iter()
                .map(|&(a, b, k)| cell_energy(&power, a, b) / f64::from(k))
                .sum();
            prop_assert!(mine <= cell_energy(&power, from, to) + 1e-9);
            charged += mine;
        }
        // The union of the spans, in 1 ms steps of whether any job holds the GPU.
        let mut union = 0.0;
        for t in 0..1300i64 {
            if spans.iter().any(|&(s, e)| s <= t && t < e) {
                union += cell_energy(&power, t, t + 1);
            }
        }
        prop_assert!((charged - union).abs() < 1e-6, "charged {charged} vs {union}");
    }
}
