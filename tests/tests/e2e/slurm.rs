//! A real Slurm in the loop: Debian's slurm-wlm 22.05 (slurmctld, two slurmd on this host with four
//! GPUs each as gres on stand-in devices, slurmdbd on MariaDB, munge; `scripts/slurm`) running the
//! shipped `examples/slurm/prolog.sh` and `epilog.sh`, two simulated collectors as its nodes, jobs
//! submitted with sbatch, srun and salloc as an ordinary user (arrays, a heterogeneous job, two nodes,
//! a power cap, a time limit, a cancel, a requeue), then sacct imported. Every job Wattlas lists is a
//! job sacct lists, field by field, and its GPU energy is the simulator's truth over its span. A node
//! whose slurmd is killed runs no epilog: `slurm sync` ends its job as Slurm recorded. Importing sacct
//! again changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use wattlas_tests::harness::{add_node, bin, Running, ADMIN};

const FORMAT: &str =
    "JobID,JobIDRaw,User,Account,Partition,State,Start,End,NodeList,AllocTRES,Comment,JobName";

fn repo() -> PathBuf {
    wattlas_tests::manifest_dir().join("..")
}

/// The private cluster; stopped when dropped.
struct Slurm {
    dir: PathBuf,
    conf: String,
}

impl Slurm {
    fn up(dir: &Path) -> Slurm {
        let out = Command::new("bash")
            .arg(repo().join("scripts/slurm"))
            .args(["up"])
            .arg(dir)
            .arg("2")
            .output()
            .expect("scripts/slurm");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/slurm up failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = stdout
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("SLURM_CONF="))
            .expect("SLURM_CONF")
            .to_owned();
        Slurm {
            dir: dir.to_owned(),
            conf,
        }
    }

    /// A Slurm command as root.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf)
            .env("SLURM_TIME_FORMAT", "%s")
            .current_dir(self.dir.join("work"));
        c
    }

    /// A Slurm command as the ordinary user `nobody`.
    fn user(&self, program: &str, args: &[&str]) -> Command {
        let mut c = self.cmd("runuser");
        c.args(["-u", "nobody", "--", program]).args(args);
        c
    }

    /// `sbatch --parsable` as nobody: the job id.
    fn sbatch(&self, args: &[&str]) -> String {
        let mut all = vec!["--parsable", "--output=/dev/null"];
        all.extend_from_slice(args);
        let out = run(&mut self.user("sbatch", &all));
        out.trim().split(';').next().expect("id").to_owned()
    }

    fn log(&self) -> String {
        ["slurmctld.log", "slurmd-gpu01.log", "slurmd-gpu02.log"]
            .iter()
            .map(|f| {
                let text =
                    std::fs::read_to_string(self.dir.join("log").join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                format!(
                    "== {f}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .chain(std::iter::once(format!(
                "== sacct --duplicates\n{}\n== squeue\n{}",
                self.cmd("sacct")
                    .args(["-aXDP", "--format", FORMAT, "--starttime", "now-1days"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default(),
                self.cmd("squeue")
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            )))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// sacct's records of every job (allocations only), as a site would ask for them.
    fn sacct(&self, duplicates: bool) -> String {
        let mut c = self.cmd("sacct");
        c.args(["--allusers", "--allocations", "--parsable2", "--noheader"])
            .args(["--format", FORMAT, "--starttime", "now-1days"]);
        if duplicates {
            c.arg("--duplicates");
        }
        run(&mut c)
    }

    fn squeue_state(&self, id: &str) -> String {
        run(self.cmd("squeue").args(["-h", "-j", id, "-o", "%T"]))
            .trim()
            .to_owned()
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/slurm"))
            .arg("down")
            .arg(&self.dir)
            .output();
    }
}

fn run(c: &mut Command) -> String {
    let out: Output = c.output().expect("runs");
    assert!(
        out.status.success(),
        "{c:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One line of sacct, read here independently of the importer.
#[derive(Debug, Clone)]
struct Record {
    id: String,
    raw: String,
    user: String,
    account: String,
    partition: String,
    state: String,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    nodes: String,
    tres: String,
    comment: String,
    name: String,
}

/// sacct's times as SLURM_TIME_FORMAT=%s writes them (22.05 drops a %z offset).
fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(s.parse().ok()?, 0)
}

fn records(text: &str) -> Vec<Record> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.splitn(12, '|').collect();
            assert_eq!(c.len(), 12, "{l}");
            Record {
                id: c[0].into(),
                raw: c[1].into(),
                user: c[2].into(),
                account: c[3].into(),
                partition: c[4].into(),
                state: c[5].split_whitespace().next().unwrap_or("").into(),
                start: time(c[6]),
                end: time(c[7]),
                nodes: c[8].into(),
                tres: c[9].into(),
                comment: c[10].into(),
                name: c[11].into(),
            }
        })
        .collect()
}

fn tres(r: &Record, key: &str) -> u32 {
    r.tres
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map_or(0, |(_, v)| v.parse().expect("count"))
}

/// A simulated collector of four GPUs as node `node`, its token in the environment, keeping every
/// counter at every poll in its ledger.
fn collector(base: &str, token: &str, node: &str, seed: u64, dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join(format!("collector-{node}.log"))).expect("log");
    Command::new(bin("wattlas-collector"))
        .args(["run", "--source", "simulated", "--node", node])
        .args(["--server", base])
        .env("WATTLAS_TOKEN", token)
        .args(["--sim-gpus", "4", "--sim-seed", &seed.to_string()])
        .args(["--sim-trace", "true", "--run-seconds", "1200"])
        .arg("--sim-ledger")
        .arg(dir.join(format!("ledger-{node}.json")))
        .arg("--spool-dir")
        .arg(dir.join(format!("spool-{node}")))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("collector")
}

/// GPU `gpu`'s counter (mJ) at `t`, interpolated between the simulator's polls.
fn counter_at(trace: &[(i64, Vec<f64>)], gpu: usize, t: DateTime<Utc>) -> f64 {
    let ms = t.timestamp_millis();
    let i = trace.partition_point(|(t, _)| *t <= ms);
    assert!(
        i > 0 && i < trace.len(),
        "{t} outside the simulator's trace"
    );
    let ((t0, c0), (t1, c1)) = (&trace[i - 1], &trace[i]);
    c0[gpu] + (c1[gpu] - c0[gpu]) * (ms - t0) as f64 / (t1 - t0) as f64
}

async fn get(running: &Running, path: &str) -> Value {
    let r = running
        .http
        .get(format!("{}{path}", running.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("request");
    let status = r.status();
    let text = r.text().await.expect("text");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).expect("json")
}

async fn wait_for<F: FnMut() -> bool>(what: &str, within: Duration, slurm: &Slurm, mut f: F) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{what}: not within {within:?}\n{}", slurm.log());
}

/// Every job of the list, as Wattlas lists it.
async fn all_jobs(running: &Running) -> BTreeMap<String, Value> {
    let list = get(running, "/api/v1/jobs?limit=500&sort=id").await;
    list["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| (j["id"].as_str().expect("id").to_owned(), j.clone()))
        .collect()
}

fn import(running: &Running, slurm: &Slurm, file: &Path) -> String {
    let out = Command::new(bin("wattlas-collector"))
        .args(["import", "sacct"])
        .arg(file)
        .args(["--format", FORMAT, "--site", "lab", "--timezone", "UTC"])
        .args(["--server", &running.base])
        .env("WATTLAS_TOKEN", ADMIN)
        .output()
        .expect("import");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "import: {text}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        slurm.log()
    );
    text
}

#[sqlx::test(migrator = "wattlas_server::MIGRATOR")]
async fn slurm_jobs_are_recorded_as_sacct_knows_them_with_the_energy_they_drew(db: PgPool) {
    let root = Command::new("id").arg("-u").output().expect("id");
    if String::from_utf8_lossy(&root.stdout).trim() != "0"
        || !Path::new("/usr/sbin/slurmctld").exists()
    {
        eprintln!(
            "SKIPPED: a private Slurm needs root and Debian's slurmctld, slurmd, slurmdbd, \
             mariadb-server and munge (scripts/test installs them as root)"
        );
        return;
    }
    let running = Running::with_site(&db, "lab").await;
    let base = running.base.clone();
    // The jobs' user (nobody) must reach the cluster's work directory.
    let dir = tempfile::Builder::new()
        .prefix("wattlas-slurm")
        .tempdir()
        .expect("tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let sdir = dir.path().join("slurm");
    std::fs::create_dir_all(sdir.join("wattlas")).expect("mkdir");

    let mut collectors = Vec::new();
    for (i, node) in ["gpu01", "gpu02"].iter().enumerate() {
        let token = add_node(&running.http, &base, "lab", node).await;
        collectors.push(collector(&base, &token, node, 11 + i as u64, dir.path()));
        // What a site keeps in /etc/wattlas: the scripts read it through scripts/slurm's wrapper.
        std::fs::write(
            sdir.join(format!("wattlas/{node}.env")),
            format!(
                "export WATTLAS_SERVER={base} WATTLAS_TOKEN={token} WATTLAS_NODE={node} \
                 WATTLAS_COLLECTOR={} WATTLAS_SOURCE=simulated WATTLAS_SPOOL_DIR={} \
                 WATTLAS_STATE_DIR={}\n",
                bin("wattlas-collector").display(),
                dir.path().join(format!("spool-{node}")).display(),
                dir.path().join(format!("state-{node}")).display(),
            ),
        )
        .expect("env");
    }
    // The controller's MailProg (the shipped one) reads the admin token here and hands mail to a
    // catcher instead of mail(1).
    let mail = dir.path().join("mail.txt");
    let catcher = dir.path().join("catch-mail");
    std::fs::write(
        &catcher,
        format!(
            "#!/bin/bash\n{{ echo \"to: $*\"; cat; }} >> {}\n",
            mail.display()
        ),
    )
    .expect("catcher");
    std::fs::set_permissions(&catcher, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        sdir.join("wattlas/mail.env"),
        format!(
            "export WATTLAS_SERVER={base} WATTLAS_MAIL_TOKEN={ADMIN} WATTLAS_COLLECTOR={} WATTLAS_MAIL={}\n",
            bin("wattlas-collector").display(),
            catcher.display()
        ),
    )
    .expect("mail env");
    let slurm = Slurm::up(&sdir);

    // Phase 1: every kind of job, at once; the scheduler runs them as GPUs and CPUs free up.
    let plain = slurm.sbatch(&[
        "--gres=gpu:2",
        "-J",
        "train bert",
        "--comment",
        "workload=bert-mlm project=nlp",
        "--mail-type=END",
        "--mail-user=nobody",
        "--wrap",
        "sleep 12",
    ]);
    let capped = slurm.sbatch(&[
        "--gres=gpu:1",
        "-w",
        "gpu02",
        "-J",
        "capped",
        "--comment",
        "power_cap_w=150",
        "--wrap",
        "sleep 12",
    ]);
    let array = slurm.sbatch(&[
        "--array=1-3",
        "--gres=gpu:1",
        "-J",
        "sweep",
        "--wrap",
        "sleep 10",
    ]);
    let multi = slurm.sbatch(&[
        "-N2",
        "--gres=gpu:1",
        "-J",
        "two nodes",
        "--wrap",
        "sleep 10",
    ]);
    let het_script = sdir.join("work/het.sh");
    std::fs::write(
        &het_script,
        "#!/bin/bash\n#SBATCH -J het -n1 --gres=gpu:1\n#SBATCH hetjob\n#SBATCH -n1 --gres=gpu:1\nsleep 10\n",
    )
    .expect("het");
    let het = slurm.sbatch(&[het_script.to_str().expect("path")]);
    let slow = slurm.sbatch(&[
        "--gres=gpu:1",
        "-J",
        "slow",
        "--time=0:15",
        "--wrap",
        "sleep 600",
    ]);
    let cancel = slurm.sbatch(&["--gres=gpu:1", "-J", "cancel me", "--wrap", "sleep 600"]);
    // Its first run long enough to be still running when the cancel's job has started too; its
    // second (Slurm sets SLURM_RESTART_COUNT in a requeued job) short. Both on gpu01, and the
    // interactive jobs below (which wait for a free GPU) on gpu02: Wattlas keeps no runs of a job yet,
    // so a job requeued onto another node is charged both nodes' GPUs over its whole span, and a job
    // that took the GPU its requeue freed shared it with that span (issue 33's closing note).
    let requeue = slurm.sbatch(&[
        "--gres=gpu:1",
        "-w",
        "gpu01",
        "-J",
        "requeue me",
        "--wrap",
        "if [ \"${SLURM_RESTART_COUNT:-0}\" -gt 0 ]; then sleep 8; else sleep 60; fi",
    ]);
    let mut srun = slurm
        .user(
            "srun",
            &[
                "--gres=gpu:1",
                "-w",
                "gpu02",
                "-J",
                "interactive",
                "sleep",
                "10",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("srun");
    let mut salloc = slurm
        .user(
            "salloc",
            &[
                "--gres=gpu:1",
                "-w",
                "gpu02",
                "-J",
                "allocation",
                "sleep",
                "10",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("salloc");

    // The cap is on while its job runs (the prolog set it), and off after (the epilog reset it).
    let limits = dir.path().join("spool-gpu02/power-limits.json");
    wait_for(
        "the capped job's cap",
        Duration::from_secs(120),
        &slurm,
        || std::fs::read_to_string(&limits).is_ok_and(|t| t.contains("150")),
    )
    .await;
    // Cancelled and requeued once running (and registered by their prolog).
    for id in [&cancel, &requeue] {
        wait_for(
            &format!("job {id} running"),
            Duration::from_secs(180),
            &slurm,
            || slurm.squeue_state(id) == "RUNNING",
        )
        .await;
    }
    // Their prologs have registered them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    run(slurm.cmd("scancel").arg(&cancel));
    run(slurm.cmd("scontrol").args(["requeue", &requeue]));

    // A requeued job waits two minutes before it may start again; an admin lets it go now.
    wait_for(
        "the requeued job pending",
        Duration::from_secs(60),
        &slurm,
        || slurm.squeue_state(&requeue) == "PENDING",
    )
    .await;
    run(slurm
        .cmd("scontrol")
        .args(["update", &format!("jobid={requeue}"), "starttime=now"]));
    let srun_ok = tokio::task::spawn_blocking(move || srun.wait().expect("srun"))
        .await
        .expect("join");
    let salloc_ok = tokio::task::spawn_blocking(move || salloc.wait().expect("salloc"))
        .await
        .expect("join");
    assert!(
        srun_ok.success() && salloc_ok.success(),
        "srun/salloc failed\n{}",
        slurm.log()
    );
    wait_for("every job ended", Duration::from_secs(300), &slurm, || {
        run(slurm.cmd("squeue").args(["-h", "-o", "%i"]))
            .trim()
            .is_empty()
    })
    .await;
    // slurmdbd has every job's end.
    wait_for(
        "sacct has every end",
        Duration::from_secs(60),
        &slurm,
        || {
            let r = records(&slurm.sacct(false));
            r.len() >= 12 && r.iter().all(|r| r.end.is_some())
        },
    )
    .await;
    assert!(
        !std::fs::read_to_string(&limits)
            .unwrap_or_default()
            .contains("150"),
        "the epilog reset the cap"
    );

    // sacct imported as a site would; then the same again changes nothing.
    let sacct_file = sdir.join("sacct.txt");
    std::fs::write(&sacct_file, slurm.sacct(false)).expect("write");
    let report = import(&running, &slurm, &sacct_file);
    assert!(
        report.contains("jobs without some of their GPUs: 0"),
        "{report}"
    );
    assert!(report.contains("records refused: 0"), "{report}");
    // Samples of the last jobs' ends reach the server (1-s batches).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let recs = records(&std::fs::read_to_string(&sacct_file).expect("read"));
    let firsts: HashMap<String, DateTime<Utc>> = records(&slurm.sacct(true))
        .into_iter()
        .filter_map(|r| Some((r.id.clone(), r.start?)))
        .fold(HashMap::new(), |mut m, (id, t)| {
            m.entry(id)
                .and_modify(|s: &mut DateTime<Utc>| *s = (*s).min(t))
                .or_insert(t);
            m
        });
    let jobs = all_jobs(&running).await;
    let sacct_ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        jobs.keys().map(String::as_str).collect::<Vec<_>>(),
        {
            let mut ids = sacct_ids.clone();
            ids.sort();
            ids
        },
        "each job once, named as sacct names it"
    );
    for want in [
        format!("{array}_1"),
        format!("{array}_2"),
        format!("{array}_3"),
        format!("{het}+0"),
        format!("{het}+1"),
        plain.clone(),
        multi.clone(),
    ] {
        assert!(jobs.contains_key(&want), "{want} in {:?}", jobs.keys());
    }

    let ledgers: HashMap<&str, Vec<(i64, Vec<f64>)>> = ["gpu01", "gpu02"]
        .iter()
        .map(|n| {
            let l: Value = serde_json::from_slice(
                &std::fs::read(dir.path().join(format!("ledger-{n}.json"))).expect("ledger"),
            )
            .expect("json");
            let trace = serde_json::from_value(l["counters"].clone()).expect("counters");
            (*n, trace)
        })
        .collect();
    for r in &recs {
        let j = get(
            &running,
            &format!(
                "/api/v1/jobs/{}",
                wattlas_protocol::paths::encode_segment(&r.id)
            ),
        )
        .await;
        let what = format!("job {} as sacct: {r:?}\nas Wattlas: {j:#}", r.id);
        assert_eq!(j["user"], r.user.as_str(), "{what}");
        assert_eq!(j["name"], r.name.as_str(), "{what}");
        assert_eq!(j["raw_id"], r.raw.as_str(), "{what}");
        assert_eq!(
            j.get("account").and_then(Value::as_str),
            Some(r.account.as_str()).filter(|a| !a.is_empty()),
            "{what}"
        );
        assert_eq!(j["partition"], r.partition.as_str(), "{what}");
        assert_eq!(j["state"], r.state.as_str(), "{what}");
        assert_eq!(j["gpu_count"], tres(r, "gres/gpu"), "{what}");
        assert!(
            j.get("unknown_gpus").is_none(),
            "charged every GPU it held: {what}"
        );
        let nodes: Vec<&str> = j["allocations"]
            .as_array()
            .expect("allocations")
            .iter()
            .map(|a| a["node"].as_str().expect("node"))
            .collect();
        let expected_nodes =
            wattlas_collector::import::sacct::expand_hostlist(&r.nodes).expect("nodes");
        assert_eq!(nodes, expected_nodes, "{what}");
        let cpus: Option<i64> =
            sqlx::query_scalar("select sum(cpus)::bigint from job_node_cpus where job_id = $1")
                .bind(&r.id)
                .fetch_one(&db)
                .await
                .expect("cpus");
        assert_eq!(cpus, Some(i64::from(tres(r, "cpu"))), "{what}");
        let tags: BTreeMap<String, String> = r
            .comment
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            j["tags"],
            serde_json::to_value(&tags).expect("tags"),
            "{what}"
        );
        // Times: the prolog's and epilog's clocks, within sacct's one-second resolution (a requeued
        // job is one job from its first run's start to its last run's end).
        let start: DateTime<Utc> = serde_json::from_value(j["start"].clone()).expect("start");
        let end: DateTime<Utc> = serde_json::from_value(j["end"].clone()).expect("end");
        let s_start = firsts.get(&r.id).copied().or(r.start).expect("sacct start");
        assert!(
            (start - s_start).num_milliseconds().abs() <= 2_000,
            "start {start} vs {s_start}: {what}"
        );
        let s_end = r.end.expect("sacct end");
        assert!(
            (end - s_end).num_milliseconds().abs() <= 2_000,
            "end {end} vs {s_end}: {what}"
        );
        // Energy: what the simulated GPUs counted over the job's span.
        let mut truth_j = 0.0;
        for a in j["allocations"].as_array().expect("allocations") {
            let trace = &ledgers[a["node"].as_str().expect("node")];
            for g in a["gpus"].as_array().expect("gpus") {
                let g = g.as_u64().expect("gpu") as usize;
                truth_j += (counter_at(trace, g, end) - counter_at(trace, g, start)) / 1000.0;
            }
        }
        let got_j = j["gpu_energy_kwh"].as_f64().expect("energy") * 3.6e6;
        assert!(
            (got_j - truth_j).abs() <= 0.005 * truth_j,
            "energy {got_j:.1} J vs the simulator's {truth_j:.1} J: {what}"
        );
    }
    // The end-of-job mail carries what the job drew (`job show`, as the user would run it).
    wait_for(
        "the end-of-job mail",
        Duration::from_secs(60),
        &slurm,
        || std::fs::read_to_string(&mail).is_ok_and(|m| m.contains("Page: ")),
    )
    .await;
    let text = std::fs::read_to_string(&mail).expect("mail");
    for want in [
        format!("to: -s Slurm Job_id={plain} Name=train bert Ended"),
        format!("Job {plain} (train bert) of nobody at lab"),
        "GPUs: 2 on gpu0".to_owned(),
        "Energy: GPU ".to_owned(),
        format!("Page: {base}/jobs/{plain}"),
    ] {
        assert!(text.contains(&want), "{want:?} not in the mail:\n{text}");
    }
    let state = |id: &str| jobs[id]["state"].as_str().unwrap_or("").to_owned();
    assert_eq!(state(&slow), "TIMEOUT");
    // The prolog capped this job's GPU for it (the simulated driver honours the limit) and no other.
    assert_eq!(jobs[&capped]["power_cap_w"], 150.0, "{:#}", jobs[&capped]);
    assert_ne!(jobs[&plain]["power_cap_w"], 150.0, "{:#}", jobs[&plain]);
    assert_eq!(state(&cancel), "CANCELLED");

    // Phase 2: a node dies under its job (slurmd and the job's processes killed): no epilog.
    let doomed = slurm.sbatch(&[
        "--no-requeue",
        "-w",
        "gpu02",
        "--gres=gpu:1",
        "-J",
        "doomed",
        "--wrap",
        "sleep 600",
    ]);
    wait_for(
        "the doomed job running",
        Duration::from_secs(60),
        &slurm,
        || slurm.squeue_state(&doomed) == "RUNNING",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = std::fs::read_to_string(sdir.join("run/slurmd-gpu02.pid")).expect("pid");
    run(slurm.cmd("kill").args(["-9", pid.trim()]));
    let _ = slurm
        .cmd("pkill")
        .args(["-9", "-f", &format!("slurmstepd: \\[{doomed}")])
        .output();
    // The job's own process, orphaned (it would sleep on for ten minutes).
    let _ = slurm
        .cmd("pkill")
        .args(["-9", "-u", "nobody", "-f", "^sleep 600$"])
        .output();
    assert_eq!(
        get(&running, &format!("/api/v1/jobs/{doomed}")).await["running"],
        true
    );
    let sync = |running: &Running| {
        let out = Command::new(bin("wattlas-collector"))
            .args(["slurm", "sync", "--site", "lab", "--server", &running.base])
            .env("WATTLAS_TOKEN", ADMIN)
            .env("SLURM_CONF", &slurm.conf)
            .output()
            .expect("sync");
        assert!(
            out.status.success(),
            "sync: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for(
        "Slurm ends the doomed job",
        Duration::from_secs(120),
        &slurm,
        || {
            records(&slurm.sacct(false))
                .iter()
                .any(|r| r.id == doomed && r.end.is_some() && r.state == "NODE_FAIL")
        },
    )
    .await;
    let report = sync(&running);
    assert!(
        report.contains(&format!("ended now as Slurm ended them: 1 {doomed}")),
        "{report}"
    );
    let d = get(&running, &format!("/api/v1/jobs/{doomed}")).await;
    let s_end = records(&slurm.sacct(false))
        .into_iter()
        .find(|r| r.id == doomed)
        .and_then(|r| r.end)
        .expect("end");
    assert_eq!(d["running"], false, "{d:#}");
    assert_eq!(d["state"], "NODE_FAIL");
    let end: DateTime<Utc> = serde_json::from_value(d["end"].clone()).expect("end");
    assert_eq!(end, s_end, "ended when Slurm says");
    assert!(sync(&running).contains("running in Wattlas: 0"));

    // Importing sacct again changes nothing it says (the energies of a job that just ended still
    // grow as its node's last CPU readings arrive: not the import's doing).
    std::fs::write(&sacct_file, slurm.sacct(false)).expect("write");
    import(&running, &slurm, &sacct_file);
    let record_fields = |jobs: BTreeMap<String, Value>| -> Vec<Value> {
        let keys = [
            "id",
            "user",
            "name",
            "site",
            "start",
            "end",
            "running",
            "tags",
            "allocations",
            "gpu_count",
            "unknown_gpus",
            "raw_id",
            "account",
            "partition",
            "state",
        ];
        jobs.values()
            .map(|j| {
                keys.iter()
                    .map(|k| j.get(*k).cloned().unwrap_or(Value::Null))
                    .collect()
            })
            .collect()
    };
    let before = record_fields(all_jobs(&running).await);
    import(&running, &slurm, &sacct_file);
    let after = record_fields(all_jobs(&running).await);
    assert_eq!(before, after, "a second import changed something");
    assert_eq!(after.len(), recs.len() + 1);

    for mut c in collectors {
        let _ = c.kill();
        let _ = c.wait();
    }
}
