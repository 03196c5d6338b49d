//! The real collector reading a generated powercap tree while the test advances its counters: two
//! packages and a DRAM counter read, one wrapping mid-job, one unreadable DRAM counter named at start;
//! the job they run for is charged what the counters advanced.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use wattlas_collector::source::rapl::write_tree;
use wattlas_tests::harness::{add_node, bin, job_over, Running};

const PKG_MAX: u64 = 262_143_328_850;
const DRAM_MAX: u64 = 65_712_999_613;
/// (directory, name, W, start µJ, wraps at µJ). package-0 starts 3 s of its power below its wrap point.
const ZONES: [(&str, &str, f64, u64, u64); 3] = [
    (
        "intel-rapl:0",
        "package-0",
        100.0,
        PKG_MAX - 300_000_000,
        PKG_MAX,
    ),
    ("intel-rapl:0:0", "dram", 10.0, 7_000_000, DRAM_MAX),
    ("intel-rapl:1", "package-1", 80.0, 9_000_000_000, PKG_MAX),
];

/// Advances each counter at its power, every 20 ms, each file replaced whole (as sysfs reads are).
fn advance(root: &Path, stop: &AtomicBool) {
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let s = t0.elapsed().as_secs_f64();
        for (dir, _, w, start, max) in ZONES {
            let value = ((start as f64 + w * s * 1e6) as u64) % max;
            let tmp = root.join(dir).join("energy_uj.tmp");
            std::fs::write(&tmp, format!("{value}\n")).expect("write");
            std::fs::rename(&tmp, root.join(dir).join("energy_uj")).expect("rename");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn the_collector_reads_rapl_through_a_wrap_and_the_job_gets_what_the_counters_advanced(
    db: PgPool,
) {
    let running = Running::with_site(&db, "lab").await;
    let (base, http) = (running.base.clone(), running.http.clone());
    let token = add_node(&http, &base, "lab", "gpu01").await;
    let dir = running.dir.path();
    let tree = dir.join("powercap");
    let mut zones: Vec<(&str, &str, u64, u64)> = ZONES
        .iter()
        .map(|(d, n, _, start, max)| (*d, *n, *start, *max))
        .collect();
    zones.push(("intel-rapl:1:0", "dram", 1, DRAM_MAX));
    write_tree(&tree, &zones).expect("tree");
    // package-1's DRAM counter cannot be read (as for a collector without root).
    let locked = tree.join("intel-rapl:1:0/energy_uj");
    std::fs::remove_file(&locked).expect("rm");
    std::fs::create_dir(&locked).expect("dir");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (tree, stop) = (tree.clone(), stop.clone());
        std::thread::spawn(move || advance(&tree, &stop))
    };
    let started = chrono::Utc::now();
    let log = dir.join("collector.log");
    let collector = Command::new(bin("wattlas-collector"))
        .args(["run", "--source", "simulated", "--node", "gpu01"])
        .args(["--server", &base])
        .env("WATTLAS_TOKEN", &token)
        .args(["--sim-gpus", "1", "--run-seconds", "9"])
        .arg("--powercap-root")
        .arg(&tree)
        .args(["--rapl-interval-ms", "500"])
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("collector starts");
    let out = tokio::task::spawn_blocking(move || collector.wait_with_output())
        .await
        .expect("join")
        .expect("collector");
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("RAPL counters read: package-0, package-0/dram, package-1")
            && text.contains("unreadable: package-1/dram"),
        "{text}"
    );

    // A job over 6 s in the middle of the run (package-0 wrapped 3 s after the start).
    let (from, to) = (
        started + chrono::Duration::seconds(2),
        started + chrono::Duration::seconds(8),
    );
    let view = job_over(&http, &base, "rapl", "gpu01", from, to).await;
    let seconds = (to - from).num_milliseconds() as f64 / 1000.0;
    // Alone on the node: the whole 100 + 80 W of the packages and 10 W of the one readable DRAM.
    let cpu_j = view["cpu_energy_kwh"].as_f64().expect("cpu") * 3.6e6;
    let dram_j = view["dram_energy_kwh"].as_f64().expect("dram") * 3.6e6;
    assert!(
        (cpu_j / (180.0 * seconds) - 1.0).abs() < 0.03,
        "{cpu_j} J of CPU for {seconds} s at 180 W"
    );
    assert!(
        (dram_j / (10.0 * seconds) - 1.0).abs() < 0.03,
        "{dram_j} J of DRAM for {seconds} s at 10 W"
    );
    let readings: i64 = sqlx::query_scalar("select count(*) from node_energy")
        .fetch_one(&db)
        .await
        .expect("count");
    assert!(
        readings >= 3 * 15,
        "{readings} readings of 3 counters at 2 Hz"
    );
}
