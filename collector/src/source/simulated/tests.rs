use super::*;

fn config(caps: Vec<f64>) -> SimConfig {
    SimConfig {
        node: "n1".into(),
        gpus: 8,
        model: GpuModel::named("V100").expect("known"),
        seed: 7,
        caps,
        gpus_per_job: 2,
        job_seconds: 20.0,
        jobs_per_group: Some(1),
        user: "alice".into(),
        limits_file: None,
        trace: false,
    }
}

fn run(sim: &mut SimulatedSource, seconds: f64) -> Vec<Poll> {
    let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    (0..(seconds * 10.0) as i64)
        .map(|i| sim.poll(t0 + chrono::Duration::milliseconds(100 * i)))
        .collect()
}

#[test]
fn stopping_ends_the_running_jobs() {
    let mut sim = SimulatedSource::new(config(vec![150.0, 250.0]));
    let t0 = Utc::now();
    let started = sim.poll(t0).events.len();
    assert_eq!(started, 4, "one job per group of 2 of the 8 GPUs");
    let end = t0 + chrono::Duration::seconds(3);
    let events = sim.finish(end);
    assert_eq!(events.len(), 4);
    assert!(events
        .iter()
        .all(|e| matches!(e, Event::JobEnd { end: e, .. } if *e == end)));
    assert!(sim.ledger().jobs.values().all(|j| j.end == Some(end)));
    assert!(sim.finish(end).is_empty(), "only once");
}

#[test]
fn a_limit_set_by_cap_set_is_honoured_and_reset() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = crate::cap::sim_limits_path(dir.path());
    let mut sim = SimulatedSource::new(SimConfig {
        limits_file: Some(file.clone()),
        trace: false,
        ..config(vec![250.0])
    });
    let t0 = Utc::now();
    let at = |s: f64| t0 + chrono::Duration::milliseconds((s * 1000.0) as i64);
    let limit_of = |poll: &Poll, gpu: u32| {
        poll.samples
            .iter()
            .find(|s| s.gpu == gpu)
            .and_then(|s| s.power_limit_w)
    };
    let p = sim.poll(at(0.0));
    assert_eq!(limit_of(&p, 0), Some(250.0));
    crate::cap::set_sim(&file, &[0, 1], Some(120.0)).expect("cap set");
    let mut last = p;
    for i in 1..=20 {
        last = sim.poll(at(f64::from(i) * 0.1));
    }
    assert_eq!(limit_of(&last, 0), Some(120.0), "read within a second");
    assert_eq!(limit_of(&last, 2), Some(250.0), "other GPUs keep theirs");
    let p0 = last.samples.iter().find(|s| s.gpu == 0).expect("gpu 0");
    assert!(p0.power_w <= 120.0, "never above the limit: {}", p0.power_w);
    crate::cap::set_sim(&file, &[], None).expect("cap reset");
    for i in 21..=40 {
        last = sim.poll(at(f64::from(i) * 0.1));
    }
    assert_eq!(
        limit_of(&last, 0),
        Some(250.0),
        "back to the experiment's cap"
    );
}

#[test]
fn lower_caps_draw_less_power_and_take_longer() {
    let mut sim = SimulatedSource::new(config(vec![100.0, 150.0, 200.0, 250.0]));
    let polls = run(&mut sim, 40.0);
    let ledger = sim.ledger();
    let mut by_cap: Vec<(f64, f64, f64)> = ledger
        .jobs
        .values()
        .map(|j| {
            let end = j.end.expect("every job ends within 40 s");
            (
                (j.cap_w),
                (end - j.start).num_milliseconds() as f64 / 1000.0,
                j.energy_j,
            )
        })
        .collect();
    by_cap.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, t250, e250) = by_cap[3];
    let (_, t150, e150) = by_cap[1];
    let (_, t100, _) = by_cap[0];
    // Figure 1's shape: at 150 W about 108.5 % of the time and 87.7 % of the energy.
    assert!(
        (t150 / t250 - 1.085).abs() < 0.02,
        "time ratio {}",
        t150 / t250
    );
    assert!(
        (e150 / e250 - 0.877).abs() < 0.03,
        "energy ratio {}",
        e150 / e250
    );
    assert!(t100 > t150);
    // Never above the cap.
    for p in &polls {
        for s in &p.samples {
            assert!(s.power_w <= s.power_limit_w.expect("limit") + 1e-9);
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_readings() {
    let a = run(&mut SimulatedSource::new(config(vec![150.0])), 5.0);
    let b = run(&mut SimulatedSource::new(config(vec![150.0])), 5.0);
    assert_eq!(a, b);
    let mut other = config(vec![150.0]);
    other.seed = 8;
    assert_ne!(a, run(&mut SimulatedSource::new(other), 5.0));
}

#[test]
fn the_ledger_energy_is_the_counter_delta() {
    let mut sim = SimulatedSource::new(config(vec![200.0]));
    let polls = run(&mut sim, 30.0);
    let (id, job) = sim.ledger().jobs.iter().next().expect("one job");
    let end = job.end.expect("ended");
    let at = |t: DateTime<Utc>, gpu: u32| {
        polls
            .iter()
            .flat_map(|p| &p.samples)
            .find(|s| s.time == t && s.gpu == gpu)
            .and_then(|s| s.energy_mj)
            .expect("sample")
    };
    let counted: f64 = (0..2)
        .map(|g| (at(end, g) - at(job.start, g)) as f64 / 1000.0)
        .sum();
    assert!(
        (counted - job.energy_j).abs() < 1e-6,
        "{id}: {counted} vs {}",
        job.energy_j
    );
}
