use chrono::Duration;
use wattlas_protocol::PowerSource;

use super::*;

fn opts(tz: &str) -> Options {
    Options::new(tz.parse().expect("tz"))
}

fn parse_str(log: &str, o: &Options) -> Result<Parsed, ImportError> {
    parse(log.as_bytes(), o)
}

const LOG: &str = "timestamp, name, pci.bus_id, index, uuid, power.draw [W], enforced.power.limit [W], utilization.gpu [%], memory.used [MiB], temperature.gpu, clocks.sm [MHz]
2024/03/10 01:59:59.900, Tesla V100-SXM2-32GB, 00000000:1A:00.0, 0, GPU-aaa, 201.50 W, 250.00 W, 98 %, 30000 MiB, 61, 1380 MHz
2024/03/10 03:00:00.000, Tesla V100-SXM2-32GB, 00000000:1A:00.0, 0, GPU-aaa, 199.25 W, 250.00 W, 97 %, 30000 MiB, 62, [N/A]
2024/03/10 03:00:00.100, Tesla V100-SXM2-32GB, 00000000:1A:00.0, 0, GPU-aaa, [N/A], 250.00 W, 97 %, 30000 MiB, 62, 1380 MHz
";

#[test]
fn reads_units_missing_values_and_the_zone() {
    let p = parse_str(LOG, &opts("America/New_York")).expect("parses");
    assert_eq!(p.summary.lines, 4);
    assert_eq!(p.samples.len(), 2);
    assert_eq!(p.summary.skipped.count("power.draw [W] is [N/A]"), 1);
    let s = &p.samples[1];
    assert_eq!(s.power_w, 199.25);
    assert_eq!(s.sm_clock_mhz, None, "[N/A] is missing, not zero");
    // 01:59:59.9 EST and 03:00:00 EDT are 100 ms apart across the spring-forward gap.
    assert_eq!(
        (p.samples[1].time - p.samples[0].time).num_milliseconds(),
        100
    );
    let gpu = &p.summary.gpus[&0].identity;
    assert_eq!(
        (gpu.uuid.as_str(), gpu.model.as_str()),
        ("GPU-aaa", "Tesla V100-SXM2-32GB")
    );
    assert!(gpu.keep_known);
    assert_eq!(p.summary.identified_by, "index column");
}

#[test]
fn nounits_logs_and_column_order_do_not_matter() {
    let log = "power.draw [W], index, timestamp\n150.5, 1, 2024/01/01 00:00:00.000\n";
    let p = parse_str(log, &opts("UTC")).expect("parses");
    assert_eq!(p.samples[0].gpu, 1);
    assert_eq!(p.samples[0].power_w, 150.5);
    assert_eq!(p.summary.gpus[&1].identity.uuid, UNKNOWN_UUID);
}

#[test]
fn each_sample_says_which_power_column_it_read() {
    // A newer driver's log with both: the average is the power, the instant reading beside it.
    let log = "timestamp, index, power.draw.average [W], power.draw.instant [W]\n\
        2024/01/01 00:00:00.000, 0, 300.00 W, 412.50 W\n\
        2024/01/01 00:00:00.100, 0, 301.00 W, [N/A]\n";
    let p = parse_str(log, &opts("UTC")).expect("parses");
    let got: Vec<_> = p
        .samples
        .iter()
        .map(|s| (s.power_w, s.power_instant_w, s.power_source))
        .collect();
    assert_eq!(
        got,
        [
            (300.0, Some(412.5), Some(PowerSource::Average)),
            (301.0, None, Some(PowerSource::Average)),
        ]
    );
    // The instant column alone is the power, said to be instant, not repeated beside itself.
    let log = "timestamp, index, power.draw.instant [W]\n2024/01/01 00:00:00.000, 0, 250 W\n";
    let s = &parse_str(log, &opts("UTC")).expect("parses").samples[0];
    assert_eq!(
        (s.power_w, s.power_instant_w, s.power_source),
        (250.0, None, Some(PowerSource::Instant))
    );
    // power.draw is either, by the board's architecture: the sample does not say.
    let log = "timestamp, index, power.draw [W], power.draw.instant [W]\n2024/01/01 00:00:00.000, 0, 250 W, 260 W\n";
    let s = &parse_str(log, &opts("UTC")).expect("parses").samples[0];
    assert_eq!(
        (s.power_w, s.power_instant_w, s.power_source),
        (250.0, Some(260.0), None)
    );
}

#[test]
fn bad_lines_are_skipped_and_counted_or_refused_when_strict() {
    let log = "timestamp, index, power.draw [W]\n\
        2024/01/01 00:00:00.000, 0, 100 W\n\
        2024/01/01 00:00:00.100, 0, abc W\n\
        2024/01/01 00:00:00.200, 0, 101 W2024/01/01 00:00:00.300, 0, 102 W\n\
        \n\
        2024/01/01 00:00:00.400, 0, 103 W\n\
        2024/01/01 00:00:00.5";
    let p = parse_str(log, &opts("UTC")).expect("parses");
    assert_eq!(p.samples.len(), 2);
    assert_eq!(
        p.summary.skipped.lines(),
        vec![
            "1: 5 fields where the header has 3 (records fused or cut off) (line 4)",
            "1: blank line (line 5)",
            "1: last line cut off (line 7)",
            "1: power.draw [W]: not a number (line 3)",
        ]
    );
    let mut strict = opts("UTC");
    strict.strict = true;
    let err = parse_str(log, &strict).expect_err("strict refuses");
    assert_eq!((err.line, err.field.as_str()), (3, "power.draw [W]"));
    assert_eq!(err.to_string(), "line 3, power.draw [W]: not a number");
    // A cell that lost its unit is cut off, not a smaller number.
    let log = "timestamp, index, memory.used [MiB], power.draw [W]\n\
        2024/01/01 00:00:00.000, 0, 6773 MiB, 100 W\n2024/01/01 00:00:00.100, 0, 67";
    let p = parse_str(log, &opts("UTC")).expect("parses");
    assert_eq!(p.samples.len(), 1);
    assert_eq!(p.summary.skipped.total(), 1);
}

#[test]
fn a_local_time_that_does_not_exist_is_skipped() {
    let log = "timestamp, index, power.draw [W]\n2024/03/10 02:30:00.000, 0, 100 W\n";
    let p = parse_str(log, &opts("America/New_York")).expect("parses");
    assert_eq!(
        p.summary
            .skipped
            .count("timestamp: a local time skipped by a DST change"),
        1
    );
    let err = parse_str("index, power.draw\n", &opts("UTC")).expect_err("no timestamp");
    assert_eq!(err.field, "header");
}

#[test]
fn the_repeated_hour_of_autumn_is_read_in_order() {
    let log = "timestamp, index, power.draw [W]\n\
        2024/11/03 01:59:59.900, 0, 100\n2024/11/03 01:00:00.000, 0, 100\n";
    // Same wall clock hour twice: the second line is the later (EST) 01:00.
    let p = parse_str(log, &opts("America/New_York")).expect("parses");
    assert_eq!(
        (p.samples[1].time - p.samples[0].time).num_milliseconds(),
        100
    );
}

/// A log without index: `gpus` rows per poll, 4 ms apart, a poll every 100 ms.
fn no_index_log(gpus: u32, polls: u32) -> String {
    let mut log =
        String::from("timestamp, power.draw [W], utilization.gpu [%], memory.used [MiB]\n");
    let t0 = NaiveDate::from_ymd_opt(2025, 12, 2)
        .and_then(|d| d.and_hms_opt(20, 31, 56))
        .expect("t0");
    for p in 0..polls {
        for g in 0..gpus {
            let t = t0 + Duration::milliseconds(i64::from(p * 103 + g * 4));
            log.push_str(&format!(
                "{}, {}.00 W, 0 %, 1 MiB\n",
                t.format("%Y/%m/%d %H:%M:%S%.3f"),
                100 + g
            ));
        }
    }
    log
}

#[test]
fn logs_without_index_are_split_into_polls_by_time() {
    for gpus in [1, 2, 8] {
        let p = parse_str(&no_index_log(gpus, 500), &opts("UTC")).expect("parses");
        assert_eq!(p.summary.gpus.len(), gpus as usize);
        assert_eq!(p.samples.len(), (gpus * 500) as usize);
        // Each GPU's rows are its own: GPU g always drew 100 + g W.
        assert!(p
            .samples
            .iter()
            .all(|s| s.power_w == 100.0 + f64::from(s.gpu)));
        assert!(p.summary.identified_by.starts_with("position in each poll"));
    }
    // Two runs appended: the second header ends the first run; a poll that lost a line is skipped.
    let one = no_index_log(2, 300);
    let mut lines: Vec<&str> = one.lines().collect();
    lines[100] = "2025/12/02 20:32:01.05"; // line 101, GPU 1 of poll 49, cut off
    let mut log = lines.join("\n");
    log.push('\n');
    log.push_str(&no_index_log(2, 300).replace("2025/12/02 20:", "2025/12/02 21:"));
    let p = parse_str(&log, &opts("UTC")).expect("parses");
    assert_eq!(p.samples.len(), 2 * 599);
    assert_eq!(
        p.summary.skipped.lines(),
        vec![
            "1: 1 fields where the header has 4 (records fused or cut off) (line 101)",
            "1: repeated header (logs appended one after another) (line 602)",
            "1: rows of a poll broken by a lost line (2 GPUs per poll) (line 100)",
        ]
    );
    let mut given = opts("UTC");
    given.gpus = Some(2);
    given.model = Some("NVIDIA TITAN X (Pascal)".into());
    let p = parse_str(&no_index_log(2, 50), &given).expect("parses");
    assert_eq!(p.summary.gpus[&1].identity.model, "NVIDIA TITAN X (Pascal)");
    assert!(p.summary.identified_by.contains("as --gpus says"));
}

#[test]
fn gpus_are_identified_by_uuid_or_bus_id_without_index() {
    let log = "timestamp, uuid, power.draw [W]\n\
        2024/01/01 00:00:00.000, GPU-b, 50 W\n2024/01/01 00:00:00.002, GPU-a, 60 W\n\
        2024/01/01 00:00:00.100, GPU-b, 51 W\n2024/01/01 00:00:00.102, GPU-a, 61 W\n";
    let p = parse_str(log, &opts("UTC")).expect("parses");
    assert_eq!(p.summary.gpus[&0].identity.uuid, "GPU-b");
    assert_eq!(p.summary.gpus[&1].identity.uuid, "GPU-a");
    assert!(p
        .samples
        .iter()
        .all(|s| (s.gpu == 1) == (s.power_w >= 60.0)));
    let log =
        "timestamp, pci.bus_id, power.draw [W]\n2024/01/01 00:00:00.000, 00000000:1A:00.0, 50 W\n";
    let p = parse_str(log, &opts("UTC")).expect("parses");
    assert_eq!(p.summary.gpus[&0].identity.uuid, "pci:00000000:1A:00.0");
}

#[test]
fn nul_padding_an_empty_file_and_noheader_logs() {
    let mut log = b"timestamp, index, power.draw [W]\n2024/01/01 00:00:00.000, 0, 100 W\n".to_vec();
    log.extend([0u8; 300]);
    let p = parse(log.as_slice(), &opts("UTC")).expect("parses");
    assert_eq!(p.samples.len(), 1);
    assert_eq!(p.summary.skipped.count("NUL bytes (a crash's padding)"), 1);
    let p = parse_str("", &opts("UTC")).expect("an empty file is no error");
    assert_eq!((p.summary.lines, p.samples.len()), (0, 0));
    let noheader = "2024/01/01 00:00:00.000, 3, 100.5\n";
    let err = parse_str(noheader, &opts("UTC")).expect_err("no header, no columns");
    assert!(err.message.contains("--columns"), "{err}");
    let mut o = opts("UTC");
    o.columns = Some("timestamp,index,power.draw".into());
    let p = parse_str(noheader, &o).expect("parses");
    assert_eq!((p.samples[0].gpu, p.samples[0].power_w), (3, 100.5));
}

#[test]
fn dmon_output_with_dates_and_repeated_headers() {
    let log = "#Date       Time        gpu    pwr  gtemp  mtemp     sm    mem\n\
        #YYYYMMDD   HH:MM:SS    Idx      W      C      C      %      %\n \
        20240101   12:00:00      0     43     48      -      5      0\n \
        20240101   12:00:00      1     45     50      -      -      0\n\
        #Date       Time        gpu    pwr  gtemp  mtemp     sm    mem\n\
        #YYYYMMDD   HH:MM:SS    Idx      W      C      C      %      %\n \
        20240101   12:00:01      0     44     48      -      6      0\n";
    let p = parse_str(log, &opts("UTC")).expect("parses");
    assert_eq!(p.samples.len(), 3);
    assert_eq!(p.summary.skipped.total(), 0, "dmon repeats its header");
    assert_eq!(p.samples[1].util_pct, None, "- is missing");
    assert_eq!(p.samples[2].temp_c, Some(48.0));
    assert_eq!(p.summary.power_column, "pwr");
    // Times of day only: the date is given and midnight is followed.
    let log =
        "# Time        gpu    pwr\n# HH:MM:SS    Idx      W\n 23:59:59  0  40\n 00:00:00  0  41\n";
    assert!(parse_str(log, &opts("UTC")).is_err(), "no --date");
    let mut o = opts("UTC");
    o.date = NaiveDate::from_ymd_opt(2024, 1, 1);
    let p = parse_str(log, &o).expect("parses");
    assert_eq!(p.samples[1].time.to_rfc3339(), "2024-01-02T00:00:00+00:00");
}

#[test]
fn out_of_range_values_are_skipped_not_sent() {
    let log = "timestamp, index, power.draw [W], utilization.gpu [%]\n\
        2024/01/01 00:00:00.000, 0, 99999 W, 5 %\n2024/01/01 00:00:00.100, 0, 100 W, 500 %\n\
        1999/01/01 00:00:00.100, 0, 100 W, 5 %\n";
    let p = parse_str(log, &opts("UTC")).expect("parses");
    assert!(p.samples.is_empty());
    assert_eq!(p.summary.skipped.total(), 3);
}

#[test]
fn batches_cover_at_most_an_hour() {
    // One GPU every 10 s for 5 h: 1,800 samples, under the batch size, still five batches or more.
    let mut log = String::from("timestamp, index, power.draw [W]\n");
    let t0 = NaiveDate::from_ymd_opt(2025, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("t0");
    for i in 0..1800 {
        let t = t0 + Duration::seconds(10 * i);
        log.push_str(&format!(
            "{}, 0, 100 W\n",
            t.format("%Y/%m/%d %H:%M:%S%.3f")
        ));
    }
    let mut spans = Vec::new();
    stream(log.as_bytes(), &opts("UTC"), 20_000, |s, _| {
        let lo = s.iter().map(|s| s.time).min().expect("lo");
        let hi = s.iter().map(|s| s.time).max().expect("hi");
        spans.push((hi - lo).num_milliseconds());
        Ok(())
    })
    .expect("reads");
    assert!(spans.len() >= 5, "{spans:?}");
    assert!(spans.iter().all(|s| *s <= MAX_BATCH_SPAN_MS), "{spans:?}");
}

/// An eight-GPU log without an index as real loggers write it (issue 35, item 7): each poll's eight
/// rows within ~25 ms (1-7 ms apart, now and then one read 20-60 ms late), polls every ~100 ms, logger
/// stalls of 1-9 s at `stalls` (poll numbers), and the rows at `lost` (row numbers) missing. GPU g draws
/// its own curve. Returns the log and each GPU's true energy (trapezoids between its rows, no gap over
/// 1 s bridged), J.
pub(super) fn eight_gpu_log(
    polls: u32,
    seed: u64,
    stalls: &[u32],
    lost: &[usize],
) -> (String, [f64; 8]) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut log =
        String::from("timestamp, power.draw [W], utilization.gpu [%], memory.used [MiB]\n");
    let t0 = NaiveDate::from_ymd_opt(2025, 6, 2)
        .and_then(|d| d.and_hms_opt(9, 0, 0))
        .expect("t0")
        .and_utc()
        .timestamp_millis();
    let mut rows: Vec<(i64, u32, f64)> = Vec::new();
    let mut poll_start = t0;
    for p in 0..polls {
        // A stall falls between two polls, or inside one (after GPU `inside`).
        let stall = stalls
            .contains(&p)
            .then(|| (rng.gen_range(1_000..9_000), rng.gen_range(0..8u32)));
        let mut t = poll_start;
        for g in 0..8u32 {
            if let Some((ms, at)) = stall {
                if g == at {
                    t += ms;
                }
            }
            if g > 0 {
                t += if rng.gen_bool(0.01) {
                    rng.gen_range(20..60)
                } else {
                    rng.gen_range(1..7)
                };
            }
            let x = (t - t0) as f64 / 1000.0;
            let w = 60.0 + 25.0 * f64::from(g) + 40.0 * (x / 7.0 + f64::from(g)).sin();
            // Printed with two decimals, as nvidia-smi does: the truth is what was printed.
            rows.push((t, g, (w * 100.0).round() / 100.0));
        }
        // The next poll an interval after this one's first row (after a stall: after its last).
        poll_start = poll_start.max(t - 30) + 100 + rng.gen_range(0..4);
    }
    for (i, (t, _, w)) in rows.iter().enumerate() {
        if lost.contains(&i) {
            continue;
        }
        let time = chrono::DateTime::from_timestamp_millis(*t).expect("time");
        log.push_str(&format!(
            "{}, {w:.2} W, 50 %, 1000 MiB\n",
            time.format("%Y/%m/%d %H:%M:%S%.3f")
        ));
    }
    let mut truth = [0.0; 8];
    for g in 0..8u32 {
        let mine: Vec<(i64, f64)> = rows
            .iter()
            .enumerate()
            .filter(|(i, r)| r.1 == g && !lost.contains(i))
            .map(|(_, r)| (r.0, r.2))
            .collect();
        truth[g as usize] = trapezoids(&mine);
    }
    (log, truth)
}

/// Energy (J) of (time ms, power W) readings in time order, bridging no gap over 1 s.
pub(super) fn trapezoids(readings: &[(i64, f64)]) -> f64 {
    readings
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 <= 1_000)
        .map(|w| (w[1].0 - w[0].0) as f64 / 1000.0 * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

#[test]
fn eight_gpu_logs_without_an_index_import_within_half_a_percent() {
    for (seed, stalls, lost) in [
        (1, vec![], vec![]),
        (2, vec![3_000], vec![]),
        (3, vec![800, 4_100, 5_900], vec![]),
        (4, vec![2_000], vec![10_003, 30_050, 30_051]),
        (5, vec![100, 200, 300, 400, 500, 600, 700], vec![]),
        (6, vec![1_500, 1_501, 6_000], vec![44_444]),
    ] {
        let (log, truth) = eight_gpu_log(6_807, seed, &stalls, &lost);
        let p = parse_str(&log, &opts("UTC")).expect("parses");
        let mut got = [0.0; 8];
        for g in 0..8u32 {
            let mine: Vec<(i64, f64)> = p
                .samples
                .iter()
                .filter(|s| s.gpu == g)
                .map(|s| (s.time.timestamp_millis(), s.power_w))
                .collect();
            got[g as usize] = trapezoids(&mine);
        }
        let (t, g): (f64, f64) = (truth.iter().sum(), got.iter().sum());
        eprintln!(
            "seed {seed}: truth {t:.0} J, imported {g:.0} J ({:+.3} %), skipped {:?}, by {}",
            (g / t - 1.0) * 100.0,
            p.summary.skipped.lines().iter().take(4).collect::<Vec<_>>(),
            p.summary.identified_by
        );
        for k in 0..8 {
            assert!(
                (got[k] / truth[k] - 1.0).abs() < 0.005,
                "seed {seed}, GPU {k}: {} J imported, {} J true",
                got[k],
                truth[k]
            );
        }
    }
}
