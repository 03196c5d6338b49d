use super::*;

fn at(t_ms: i64, power_w: i64) -> RawSample {
    RawSample {
        gpu: 0,
        t_ms,
        power_mw: power_w * 1000,
        energy_mj: None,
        limit_mw: None,
        util_dpct: None,
        mem_mib: None,
        temp_dc: None,
        sm_mhz: None,
        instant_mw: None,
        power_source: None,
    }
}

#[test]
fn the_gap_limit_follows_the_gpus_cadence() {
    // Every 1.09 s (nvidia-smi -l 1 with a slow query): every interval is bridged.
    let slow: Vec<RawSample> = (0..100).map(|i| at(i * 1090, 100)).collect();
    let e = gpu_energy(&slow, 0, 99 * 1090, DEFAULT_MAX_GAP_MS);
    assert!((e.energy_j - 100.0 * 99.0 * 1.09).abs() < 1e-6, "{e:?}");
    // Every 100 ms with a 3 s hole: the hole is a gap (3 x 100 ms < 1 s).
    let mut fast: Vec<RawSample> = (0..50).map(|i| at(i * 100, 100)).collect();
    fast.extend((0..50).map(|i| at(7_900 + i * 100, 100)));
    let e = gpu_energy(&fast, 0, 12_800, DEFAULT_MAX_GAP_MS);
    assert!((e.covered_s - 9.8).abs() < 1e-9, "{e:?}");
    // Every 10 s: 30 s intervals bridged, a 90 s one is not (the limit stops at 60 s).
    let mut sparse: Vec<RawSample> = (0..20).map(|i| at(i * 10_000, 100)).collect();
    sparse.push(at(190_000 + 90_000, 100));
    let e = gpu_energy(&sparse, 0, 280_000, DEFAULT_MAX_GAP_MS);
    assert!((e.covered_s - 190.0).abs() < 1e-9, "{e:?}");
}

#[test]
fn gaps_are_the_uncovered_stretches() {
    let t = [1_000, 1_100, 1_200, 5_000, 5_100];
    assert_eq!(
        gaps(&t, 0, 9_000, 1_000),
        vec![(1_200, 5_000), (5_100, 9_000)]
    );
    assert_eq!(gaps(&t, 1_000, 5_200, 1_000), vec![(1_200, 5_000)]);
    assert_eq!(gaps(&[], 0, 500, 1_000), vec![(0, 500)]);
    assert_eq!(gaps(&t, 0, 5_200, 5_000), Vec::<(i64, i64)>::new());
}

#[test]
fn gaps_between_runs_equal_gaps_of_every_minute() {
    // Minutes with holes, as a week-long job's rollups would have them; the database returns
    // runs of consecutive minutes instead of each minute.
    let minute = 60_000;
    let present: Vec<i64> = (0..500)
        .filter(|m| !(37..41).contains(m) && *m != 200 && !(450..).contains(m))
        .map(|m| 3 * minute + m * minute)
        .collect();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for t in &present {
        match runs.last_mut() {
            Some(run) if *t - run.1 == minute => run.1 = *t,
            _ => runs.push((*t, *t)),
        }
    }
    assert_eq!(runs.len(), 3);
    for (from, to) in [
        (0, 600 * minute),
        (3 * minute, 453 * minute),
        (50 * minute, 100 * minute),
    ] {
        let expected = gaps(&present, from, to, minute);
        assert_eq!(
            gaps_between_runs(&runs, from, to, minute),
            expected,
            "{from}..{to}"
        );
    }
    assert_eq!(
        gaps_between_runs(&runs, 0, 600 * minute, minute),
        vec![
            (0, 3 * minute),
            (39 * minute, 44 * minute),
            (202 * minute, 204 * minute),
            (452 * minute, 600 * minute)
        ]
    );
}

fn s(t_ms: i64, power_w: f64, energy_mj: Option<i64>) -> RawSample {
    RawSample {
        gpu: 0,
        t_ms,
        power_mw: (power_w * 1000.0).round() as i64,
        energy_mj,
        limit_mw: Some(250_000),
        util_dpct: None,
        mem_mib: None,
        temp_dc: None,
        sm_mhz: None,
        instant_mw: None,
        power_source: None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn constant_power_integrates_to_power_times_time() {
    let samples: Vec<RawSample> = (0..=100).map(|i| s(i * 100, 200.0, None)).collect();
    let e = gpu_energy(&samples, 0, 10_000, DEFAULT_MAX_GAP_MS);
    assert!(close(e.energy_j, 2000.0), "{}", e.energy_j);
    assert!(close(e.covered_s, 10.0));
    assert_eq!(e.method(), EnergyMethod::Integrated);
    assert_eq!(e.samples, 100);
}

#[test]
fn trapezoid_of_a_ramp_is_exact() {
    // Power rises linearly from 100 W to 300 W over 1 s: energy 200 J.
    let samples = vec![s(0, 100.0, None), s(500, 200.0, None), s(1000, 300.0, None)];
    let e = gpu_energy(&samples, 0, 1000, DEFAULT_MAX_GAP_MS);
    assert!(close(e.energy_j, 200.0), "{}", e.energy_j);
}

#[test]
fn counter_deltas_win_over_power_readings() {
    // Power readings say 100 W, the counter says 150 W: the counter is the truth.
    let samples: Vec<RawSample> = (0..=10)
        .map(|i| s(i * 100, 100.0, Some(1_000 + i * 15_000)))
        .collect();
    let e = gpu_energy(&samples, 0, 1000, DEFAULT_MAX_GAP_MS);
    assert!(close(e.energy_j, 150.0), "{}", e.energy_j);
    assert_eq!(e.method(), EnergyMethod::Counter);
}

#[test]
fn a_counter_reset_restarts_from_the_new_value() {
    let mut samples: Vec<RawSample> = (0..=4)
        .map(|i| s(i * 100, 100.0, Some(50_000 + i * 10_000)))
        .collect();
    // The driver reloaded between 400 and 500 ms: the counter starts again near zero.
    samples.extend((5..=9).map(|i| s(i * 100, 100.0, Some((i - 5) * 10_000 + 7))));
    let e = gpu_energy(&samples, 0, 900, DEFAULT_MAX_GAP_MS);
    // 8 counter intervals of 10 J, one reset interval integrated at 100 W for 0.1 s: 10 J.
    assert!(close(e.energy_j, 90.0), "{}", e.energy_j);
    assert_eq!(e.method(), EnergyMethod::Mixed);
}

#[test]
fn gaps_longer_than_max_gap_are_not_bridged() {
    let mut samples: Vec<RawSample> = (0..=10).map(|i| s(i * 100, 100.0, None)).collect();
    samples.extend((0..=10).map(|i| s(5_000 + i * 100, 100.0, None)));
    let e = gpu_energy(&samples, 0, 6_000, DEFAULT_MAX_GAP_MS);
    assert!(close(e.covered_s, 2.0), "{}", e.covered_s);
    assert!(close(e.energy_j, 200.0));
}

#[test]
fn counter_gaps_are_bridged_up_to_a_minute() {
    // A poller stalled for 2.5 s and then 90 s; the counter says 150 W throughout.
    let mut samples: Vec<RawSample> = Vec::new();
    for t in [0, 100, 2_600, 2_700, 92_700, 92_800] {
        samples.push(s(t, 150.0, Some(t * 150)));
    }
    let e = gpu_energy(&samples, 0, 92_800, DEFAULT_MAX_GAP_MS);
    assert!(close(e.covered_s, 2.8), "{}", e.covered_s);
    assert!(close(e.energy_j, 2.8 * 150.0), "{}", e.energy_j);
    // Without the counter the 2.5 s gap is lost coverage too.
    let power_only: Vec<RawSample> = samples
        .iter()
        .map(|x| RawSample {
            energy_mj: None,
            ..*x
        })
        .collect();
    let e = gpu_energy(&power_only, 0, 92_800, DEFAULT_MAX_GAP_MS);
    assert!(close(e.covered_s, 0.3), "{}", e.covered_s);
}

#[test]
fn order_and_duplicates_do_not_matter() {
    let samples: Vec<RawSample> = (0..=50)
        .map(|i| s(i * 100, 100.0 + i as f64, Some(i * 11_000)))
        .collect();
    let mut shuffled = samples.clone();
    shuffled.reverse();
    shuffled.extend(samples.iter().step_by(3).cloned());
    let a = gpu_energy(&samples, 0, 5_000, DEFAULT_MAX_GAP_MS);
    let b = gpu_energy(&shuffled, 0, 5_000, DEFAULT_MAX_GAP_MS);
    assert_eq!(a, b);
}

#[test]
fn job_boundaries_inside_an_interval_take_their_share() {
    // Samples every 100 ms; the job starts at 50 ms and ends at 950 ms.
    let samples: Vec<RawSample> = (0..=10)
        .map(|i| s(i * 100, 100.0 + 100.0 * i as f64, None))
        .collect();
    let e = gpu_energy(&samples, 50, 950, DEFAULT_MAX_GAP_MS);
    // Power is linear: p(t) = 100 + t(ms); integral from 50 to 950 ms = 0.9 s x mean(150, 1050) W.
    assert!(close(e.energy_j, 0.9 * 600.0), "{}", e.energy_j);
    assert!(close(e.covered_s, 0.9));
    // Counter energy is split in proportion to time.
    let counted: Vec<RawSample> = (0..=10)
        .map(|i| s(i * 100, 0.0, Some(i * 20_000)))
        .collect();
    let e = gpu_energy(&counted, 50, 950, DEFAULT_MAX_GAP_MS);
    assert!(close(e.energy_j, 180.0), "{}", e.energy_j);
}

#[test]
fn adjacent_windows_add_up_to_their_union() {
    let samples: Vec<RawSample> = (0..600)
        .map(|i| {
            s(
                i * 137,
                80.0 + (i % 17) as f64 * 9.0,
                (i % 5 != 0).then_some(i * 9_000),
            )
        })
        .collect();
    let whole = gpu_energy(&samples, 1_234, 70_000, DEFAULT_MAX_GAP_MS);
    let mut parts = GpuEnergy::default();
    for (from, to) in [(1_234, 20_000), (20_000, 20_050), (20_050, 70_000)] {
        parts.add(&gpu_energy(&samples, from, to, DEFAULT_MAX_GAP_MS));
    }
    assert!(
        close(whole.energy_j, parts.energy_j),
        "{} vs {}",
        whole.energy_j,
        parts.energy_j
    );
    assert!(close(whole.covered_s, parts.covered_s));
    assert_eq!(whole.samples, parts.samples);
}

#[test]
fn the_cap_is_the_limit_most_samples_report() {
    let mut samples: Vec<RawSample> = (0..10).map(|i| s(i * 100, 100.0, None)).collect();
    for x in &mut samples[..3] {
        x.limit_mw = Some(300_000);
    }
    samples[3].limit_mw = None;
    let e = gpu_energy(&samples, 0, 1_000, DEFAULT_MAX_GAP_MS);
    assert_eq!(e.power_cap_w(), Some(250.0));
}

#[test]
fn minute_rollups_add_up_to_the_window() {
    let samples: Vec<RawSample> = (0..3_000)
        .map(|i| s(i * 100, 150.0 + (i % 7) as f64, None))
        .collect();
    let rollups = minute_rollups(&samples, 0, 300_000, DEFAULT_MAX_GAP_MS);
    assert_eq!(rollups.len(), 5);
    let total: f64 = rollups.iter().map(|r| r.energy.energy_j).sum();
    let direct = gpu_energy(&samples, 0, 300_000, DEFAULT_MAX_GAP_MS);
    assert!(close(total, direct.energy_j));
    assert_eq!(rollups[0].energy.samples, 600);
    assert!(close(rollups[0].power_max_w, 156.0));
}

/// Samples at a mixed cadence in two clumps `years` apart: every 100 ms, every 2 s, a counter run.
fn two_clumps(years: i64) -> Vec<RawSample> {
    let far = years * 365 * 86_400_000;
    let mut out: Vec<RawSample> = (0..900).map(|i| at(7_300 + i * 100, 150 + i % 7)).collect();
    out.extend((0..40).map(|i| at(200_000 + i * 2_000, 90)));
    out.extend((0..600).map(|i| {
        let mut s = at(far + 13_000 + i * 100, 300);
        s.energy_mj = Some(1_000_000 + i * 30_000);
        s
    }));
    out
}

#[test]
fn buckets_are_visited_where_samples_are_and_equal_the_whole_walk() {
    // Issue 33, N1: a job said to span decades cut into minutes walked every one of them.
    let samples = two_clumps(30);
    let sorted: Vec<&RawSample> = samples.iter().collect();
    let to = samples.last().expect("samples").t_ms + 5_000;
    for bucket_ms in [60_000, 3_600_000] {
        let buckets = energy_buckets(&sorted, 0, to, DEFAULT_MAX_GAP_MS, bucket_ms);
        assert!(buckets.len() <= 12, "{} buckets", buckets.len());
        // Each bucket as the whole walk computes it over all the samples.
        for (bucket, part) in &buckets {
            let end = (bucket + bucket_ms).min(to);
            assert_eq!(
                *part,
                energy_sorted(&sorted, (*bucket).max(0), end, DEFAULT_MAX_GAP_MS)
            );
        }
        let mut sum = GpuEnergy::default();
        buckets.iter().for_each(|(_, e)| sum.add(e));
        let whole = energy_sorted(&sorted, 0, to, DEFAULT_MAX_GAP_MS);
        assert!(
            (sum.energy_j - whole.energy_j).abs() < 1e-6,
            "{sum:?} {whole:?}"
        );
        assert!((sum.covered_s - whole.covered_s).abs() < 1e-6);
        assert_eq!(sum.samples, whole.samples);
    }
}

#[test]
fn minute_rollups_skip_the_minutes_no_sample_reaches() {
    let samples = two_clumps(30);
    let to = ceil_to_minute(samples.last().expect("samples").t_ms + 5_000);
    let rolled = minute_rollups(&samples, 0, to, DEFAULT_MAX_GAP_MS);
    // The same minutes as rolling up each clump on its own.
    let far = 30 * 365 * 86_400_000;
    let mut apart = minute_rollups(&samples[..940], 0, 300_000, DEFAULT_MAX_GAP_MS);
    apart.extend(minute_rollups(&samples[940..], far, to, DEFAULT_MAX_GAP_MS));
    assert_eq!(rolled, apart);
    assert!(rolled.len() <= 12, "{} minutes", rolled.len());
}

fn ceil_to_minute(t: i64) -> i64 {
    (t + 59_999).div_euclid(60_000) * 60_000
}
