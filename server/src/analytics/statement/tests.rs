use super::*;

const H: i64 = 3_600_000;

fn view(id: &str, site: &str, it_kwh: f64, pue: f64, cap: f64) -> JobView {
    JobView {
        id: id.into(),
        user: "ann".into(),
        name: "run".into(),
        site: site.into(),
        start: Utc.timestamp_millis_opt(0).single().expect("t"),
        end: Some(Utc.timestamp_millis_opt(2 * H).single().expect("t")),
        running: false,
        duration_s: 7200.0,
        gpu_count: 2,
        allocations: Vec::new(),
        it_energy_kwh: it_kwh,
        gpu_energy_kwh: it_kwh,
        cpu_energy_kwh: None,
        dram_energy_kwh: None,
        cpu_dram_unmeasured: Vec::new(),
        shared_gpus: Vec::new(),
        facility_energy_kwh: it_kwh * pue,
        pue: Some(pue),
        pue_fallback_share: 0.0,
        avg_power_w: 0.0,
        power_cap_w: Some(cap),
        coverage: 1.0,
        energy_method: EnergyMethod::Counter,
        samples: 144_000,
        tags: BTreeMap::new(),
        co2e_kg: Some(it_kwh * pue * 0.3),
        carbon_series_share: 0.0,
        cost: Some(it_kwh * pue * 0.2),
        currency: Some("EUR".into()),
        unknown_gpus: Vec::new(),
        idle_gpu_energy_kwh: None,
        idle_gpu_minutes: 0,
        scheduler: Default::default(),
    }
}

#[test]
fn totals_savings_and_the_paragraph() {
    // Two hours of 1 kWh each per job; the site's hours have PUE 1.2 then 1.4 (mean 1.3).
    let hours: BTreeMap<i64, f64> = [(0, 3.6e6), (H, 3.6e6)].into();
    let site = SiteInput {
        tz: chrono_tz::UTC,
        pue_by_hour: [(0, 1.2), (H, 1.4)].into(),
        fallback_pue: 1.58,
        meters: vec![("main".into(), "PUE2".into())],
        carbon_g_per_kwh: Some(300.0),
        carbon_series: false,
    };
    let jobs = vec![
        JobInput {
            view: view("a", "dc", 2.0, 1.3, 150.0),
            it_j_by_hour: hours.clone(),
            gpu_model: Some("V100".into()),
            // At 150 W the workload used 80 % of the energy of the highest cap.
            cap_rel_energy_pct: Some(80.0),
        },
        JobInput {
            view: view("b", "dc", 2.0, 1.3, 250.0),
            it_j_by_hour: hours,
            gpu_model: Some("V100".into()),
            cap_rel_energy_pct: Some(100.0),
        },
    ];
    let sites = BTreeMap::from([("dc".to_owned(), site)]);
    let st = build("all jobs".into(), jobs, &sites, Utc::now());
    let s = &st.summary;
    assert_eq!(s.jobs, 2);
    assert!((s.it_energy_kwh - 4.0).abs() < 1e-12);
    assert!((s.facility_energy_kwh - 5.2).abs() < 1e-12);
    assert!((s.gpu_hours - 8.0).abs() < 1e-12);
    // Job a: 2 kWh at 80 % -> 2.5 kWh at the highest cap: 0.5 kWh saved.
    assert!((s.cap_saving_kwh - 0.5).abs() < 1e-12);
    // Each job: 1 kWh at 1.2 (saves 0.1 vs 1.3) and 1 kWh at 1.4 (loses 0.1): 0 in all.
    assert!(s.timing_saving_kwh.abs() < 1e-12);
    assert_eq!(s.low_pue_share, Some(0.5));
    assert!((s.co2e_kg.expect("co2e") - 5.2 * 0.3).abs() < 1e-12);
    assert!((s.cost["EUR"] - 5.2 * 0.2).abs() < 1e-12);
    assert_eq!(st.by_day.len(), 1);
    assert!(st
        .paragraph
        .starts_with("The experiments in this work consumed a total of 4.00 kWh of IT energy in 2 jobs (8.0 GPU-hours on V100 GPUs), and 5.20 kWh including the data center's overhead at a measured, energy-weighted PUE of 1.30."));
    assert!(
        st.paragraph.contains(
            "GPUs ran under power caps of 150 W and 250 W: an estimated 500.0 Wh less energy than the highest caps"
        ),
        "{}",
        st.paragraph
    );
    assert!(st.method.iter().any(|m| m.contains("main (PUE2)")));
    for intent in ["minimi", "to reduce", "in order to", "chose"] {
        assert!(!st.paragraph.contains(intent), "{intent}: {}", st.paragraph);
    }
}

#[test]
fn a_set_with_a_running_job_is_never_called_a_total() {
    // Issue 31: a running job's statement said "consumed a total of"; with state=all, "13 jobs" (4
    // running) without saying so.
    let site = SiteInput {
        tz: chrono_tz::UTC,
        pue_by_hour: [(0, 1.2), (H, 1.4)].into(),
        fallback_pue: 1.58,
        meters: vec![("main".into(), "PUE2".into())],
        carbon_g_per_kwh: Some(300.0),
        carbon_series: false,
    };
    let sites = BTreeMap::from([("dc".to_owned(), site)]);
    let input = |id: &str, running: bool| {
        let mut v = view(id, "dc", 1.0, 1.3, 250.0);
        if running {
            v.running = true;
            v.end = None;
        }
        JobInput {
            view: v,
            it_j_by_hour: [(0, 3.6e6)].into(),
            gpu_model: Some("V100".into()),
            cap_rel_energy_pct: None,
        }
    };
    let at = Utc
        .with_ymd_and_hms(2026, 12, 6, 15, 4, 0)
        .single()
        .expect("t");
    let one = build("job r".into(), vec![input("r", true)], &sites, at);
    assert!(
        one.paragraph.starts_with(
            "The experiments in this work have consumed 1.00 kWh of IT energy so far in 1 job, still running as of 2026-12-06 15:04 UTC ("
        ),
        "{}",
        one.paragraph
    );
    let mixed = build(
        "all".into(),
        vec![input("a", false), input("b", true), input("c", true)],
        &sites,
        at,
    );
    assert!(
        mixed
            .paragraph
            .contains("so far in 3 jobs, 2 of them still running as of 2026-12-06 15:04 UTC"),
        "{}",
        mixed.paragraph
    );
    for st in [&one, &mixed] {
        assert!(!st.paragraph.contains("total"), "{}", st.paragraph);
    }
    let done = build("all".into(), vec![input("a", false)], &sites, at);
    assert!(
        done.paragraph.contains("consumed a total of 1.00 kWh"),
        "{}",
        done.paragraph
    );
}
