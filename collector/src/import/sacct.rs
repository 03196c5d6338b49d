//! `wattlas-collector import sacct FILE --site S --timezone TZ`: job history from Slurm's accounting.
//!
//! Reads `sacct --parsable2 --allocations` output with a header line in any column order, or
//! `--noheader` output with `--format` saying its columns as sacct was given them. Needed: JobID, User,
//! Start, End, NodeList, AllocTRES; used where present: JobIDRaw, JobName, Account, Partition, State,
//! Comment, any others ignored (`sacct -aP` with extra columns). Job steps (`1234.batch`) are skipped,
//! array tasks (`1234_5`) and heterogeneous components (`1234+1`) kept as sacct names them, pending jobs
//! skipped and counted, node lists expanded (`gpu[01-03,07]`), times read in the cluster's zone unless
//! they are seconds since the epoch (`SLURM_TIME_FORMAT=%s`) or carry an offset, `Unknown` ends read
//! as running. sacct says how
//! many GPUs a job had (`gres/gpu=N` in AllocTRES, typed `gres/gpu:a100=N` counted once beside it), not
//! which: where a job held every GPU of its nodes, those are its GPUs; where it held fewer (a shared node,
//! MIG slices) or a node is unknown to the server, the job is registered without that node's GPUs and
//! says so (`unknown_gpus`), never guessed, unless a prolog named them (the server keeps those). A job a
//! prolog registered is completed (name, account, partition, state, an end where no epilog gave one),
//! found by its id or raw id, never twinned; a record that contradicts it (another user, other nodes) is
//! reported by line and left out. Tags come from `--tag` and `k=v` words of the Comment. A field that may
//! hold the delimiter (JobName, Comment) is read whole when it is the last column. Registering a job
//! twice changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use clap::Args;
use wattlas_protocol::{
    paths, Allocation, JobView, NewJob, NodeView, SchedulerFields, UnknownGpus,
};

use super::lines::{ImportError, Line, Lines, Skips};
use crate::slurm::slurm_value;
use crate::uplink::{Delivery, Uplink};

/// `import sacct`.
#[derive(Debug, Args)]
pub struct SacctArgs {
    /// Output of `sacct --parsable2 --allocations --format=JobID,JobIDRaw,User,JobName,Account,Partition,State,Start,End,NodeList,AllocTRES,Comment`.
    pub file: PathBuf,
    /// The columns of a file written with `--noheader`, as given to sacct's `--format` (comma-separated).
    #[arg(long)]
    pub format: Option<String>,
    /// Site of the cluster.
    #[arg(long)]
    pub site: String,
    /// IANA zone sacct printed times in (the cluster's).
    #[arg(long)]
    pub timezone: String,
    /// Tags for every job, `key=value`, repeatable.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Refuse the whole file at its first bad line, registering nothing.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub server: super::ServerArgs,
}

/// One job as sacct describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SacctJob {
    /// Line in the file.
    pub line: u64,
    /// Job id.
    pub id: String,
    /// User.
    pub user: String,
    /// Name.
    pub name: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End; `None` while running.
    pub end: Option<DateTime<Utc>>,
    /// Nodes, expanded.
    pub nodes: Vec<String>,
    /// GPUs in all (`gres/gpu`).
    pub gpus: u32,
    /// Tags from the Comment.
    pub tags: BTreeMap<String, String>,
    /// CPUs it held on its node (`cpu=N` of AllocTRES), for a job of one node only: how Slurm spread
    /// the CPUs of a job of several nodes is not in the record.
    pub cpus_per_node: Option<u32>,
    /// MIG instances among its GPUs, by profile (`gres/gpu:1g.10gb=2`): slices, not whole GPUs.
    pub mig: BTreeMap<String, u32>,
    /// Raw id, account, partition and state, where the file has those columns.
    pub scheduler: SchedulerFields,
}

/// The columns every file needs.
pub(crate) const NEEDED: [&str; 6] = ["jobid", "user", "start", "end", "nodelist", "alloctres"];

/// The `--format` this importer reads best (every column it uses).
pub(crate) const FORMAT: &str =
    "JobID,JobIDRaw,User,JobName,Account,Partition,State,Start,End,NodeList,AllocTRES,Comment";

/// A parsed sacct file.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Parsed {
    /// Lines read.
    pub lines: u64,
    /// Jobs.
    pub jobs: Vec<SacctJob>,
    /// Lines left out, by reason.
    pub skipped: Skips,
}

/// Expands a Slurm host list: `gpu[01-03,07],cpu1` -> gpu01 gpu02 gpu03 gpu07 cpu1.
pub fn expand_hostlist(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => depth -= 1,
            b',' if depth == 0 => {
                expand_one(&s[start..i], &mut out)?;
                start = i + 1;
            }
            _ => {}
        }
    }
    expand_one(&s[start..], &mut out)?;
    Ok(out)
}

fn expand_one(item: &str, out: &mut Vec<String>) -> Result<(), String> {
    let item = item.trim();
    if item.is_empty() {
        return Ok(());
    }
    let Some(open) = item.find('[') else {
        out.push(item.to_owned());
        return Ok(());
    };
    let close = item[open..]
        .find(']')
        .map(|c| open + c)
        .ok_or_else(|| format!("'{item}': unclosed ["))?;
    let (prefix, ranges, rest) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
    let mut tails = Vec::new();
    expand_one(rest, &mut tails)?;
    if tails.is_empty() {
        tails.push(String::new());
    }
    for r in ranges.split(',') {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        let width = a.len();
        let (lo, hi): (u64, u64) = (
            a.parse().map_err(|_| format!("'{r}' is not a range"))?,
            b.parse().map_err(|_| format!("'{r}' is not a range"))?,
        );
        if hi < lo || hi - lo > 100_000 {
            return Err(format!("'{r}' is not a range"));
        }
        for n in lo..=hi {
            for t in &tails {
                out.push(format!("{prefix}{n:0width$}{t}"));
            }
        }
    }
    Ok(())
}

/// Whether a gres type names a MIG profile (`1g.10gb`, `a100_3g.40gb`, `nvidia_a100_1g.5gb`).
fn mig_profile(kind: &str) -> Option<String> {
    let last = kind.rsplit(['_', '-']).next().unwrap_or(kind);
    let (g, rest) = last.split_once("g.")?;
    (!g.is_empty()
        && g.bytes().all(|b| b.is_ascii_digit())
        && rest.ends_with("gb")
        && rest[..rest.len() - 2]
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.'))
    .then(|| last.to_owned())
}

/// GPUs of an AllocTRES list (the plain count, else the typed ones summed: each counted once) and the
/// MIG instances among them by profile.
pub(crate) fn tres_gpu_kinds(tres: &str) -> Result<(u32, BTreeMap<String, u32>), String> {
    let mut plain = None;
    let mut typed = 0u32;
    let mut mig = BTreeMap::new();
    for kv in tres.split(',').filter(|s| !s.is_empty()) {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        let n = || {
            v.parse::<u32>()
                .map_err(|_| format!("{k}: '{v}' is not a count"))
        };
        if k == "gres/gpu" {
            plain = Some(n()?);
        } else if let Some(kind) = k.strip_prefix("gres/gpu:") {
            let count = n()?;
            typed += count;
            if let Some(profile) = mig_profile(kind) {
                *mig.entry(profile).or_default() += count;
            }
        }
    }
    Ok((plain.unwrap_or(typed), mig))
}

/// A plain count of an AllocTRES list (`cpu=16`), if there and a number.
fn tres_count(tres: &str, key: &str) -> Option<u32> {
    tres.split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn local(cell: &str, tz: Tz) -> Result<Option<DateTime<Utc>>, &'static str> {
    let c = cell.trim();
    if c.is_empty() || c.eq_ignore_ascii_case("unknown") || c.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    // SLURM_TIME_FORMAT=%s writes seconds since the epoch (Slurm 22.05 drops a %z offset): no zone
    // needed.
    if c.len() >= 9 && c.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = c.parse().map_err(|_| "not a time")?;
        return DateTime::from_timestamp(secs, 0)
            .map(Some)
            .ok_or("not a time");
    }
    // A format with an offset (%z: +0100, or +01:00): then the zone is the time's own.
    for f in [
        "%Y-%m-%dT%H:%M:%S%z",
        "%Y-%m-%dT%H:%M:%S%:z",
        "%Y-%m-%d %H:%M:%S%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(c, f) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
    }
    let naive = NaiveDateTime::parse_from_str(c, "%Y-%m-%dT%H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(c, "%Y-%m-%d %H:%M:%S"))
        .map_err(|_| "not a time")?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(Some(t.with_timezone(&Utc))),
        LocalResult::None => Err("a local time skipped by a DST change"),
    }
}

/// Column name -> index, from a header line or `--format`'s list (`JobName%30` widths dropped).
fn columns(cells: &[&str]) -> HashMap<String, usize> {
    cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = c
                .trim()
                .split('%')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            (name, i)
        })
        .collect()
}

fn check_columns(map: &HashMap<String, usize>, line: u64) -> Result<(), ImportError> {
    for need in NEEDED {
        if !map.contains_key(need) {
            return Err(ImportError::new(
                line,
                "header",
                format!("no {need} column (sacct --parsable2 --format={FORMAT})"),
            ));
        }
    }
    Ok(())
}

/// Parses sacct output: with a header line, or with `format` (sacct's `--format` list) for a file
/// written with `--noheader`.
pub(crate) fn parse(
    input: impl BufRead,
    tz: Tz,
    strict: bool,
    format: Option<&str>,
) -> Result<Parsed, ImportError> {
    let mut out = Parsed::default();
    let mut lines = Lines::new(input);
    let mut header: Option<HashMap<String, usize>> = None;
    let mut width = 0;
    if let Some(f) = format {
        let cells: Vec<&str> = f.split(',').collect();
        let map = columns(&cells);
        check_columns(&map, 0).map_err(|e| ImportError::new(0, "--format", e.message))?;
        width = cells.len();
        header = Some(map);
    }
    while let Some(line) = lines
        .next_line()
        .map_err(|e| ImportError::new(out.lines + 1, "file", e.to_string()))?
    {
        out.lines += 1;
        let mut skip = |why: String, no: u64, field: &str| out.skipped.skip(strict, why, no, field);
        let (no, text) = match line {
            Line::Broken { no, why } => {
                skip(why.to_owned(), no, "row")?;
                continue;
            }
            Line::Text { no, text, .. } => (no, text),
        };
        if text.trim().is_empty() {
            continue;
        }
        let mut cells: Vec<&str> = text.split('|').collect();
        let Some(h) = &header else {
            let map = columns(&cells);
            check_columns(&map, no)?;
            width = cells.len();
            header = Some(map);
            continue;
        };
        let col = |name: &str| h.get(name).copied();
        // A name or comment may hold the delimiter: the last column takes what is left.
        let mut last = None;
        if cells.len() > width
            && (col("jobname") == Some(width - 1) || col("comment") == Some(width - 1))
        {
            last = Some(cells[width - 1..].join("|"));
            cells.truncate(width);
        }
        if cells.len() != width {
            skip(
                format!("{} fields where the header has {width}", cells.len()),
                no,
                "row",
            )?;
            continue;
        }
        let cell = |name: &str| match (col(name), &last) {
            (Some(c), Some(l)) if c == width - 1 => l.as_str(),
            (Some(c), _) => cells[c].trim(),
            (None, _) => "",
        };
        if cell("jobid").eq_ignore_ascii_case("jobid") {
            skip("repeated header".into(), no, "header")?;
            continue;
        }
        let id = cell("jobid");
        if id.contains('.') {
            skip("job step, not a job".into(), no, "JobID")?;
            continue;
        }
        let state = cell("state");
        if state.eq_ignore_ascii_case("pending") {
            skip("pending (not started)".into(), no, "State")?;
            continue;
        }
        let start = match local(cell("start"), tz) {
            Ok(Some(t)) => t,
            Ok(None) => {
                skip("not started (no start time)".into(), no, "Start")?;
                continue;
            }
            Err(e) => {
                skip(format!("Start: {e}"), no, "Start")?;
                continue;
            }
        };
        let end = match local(cell("end"), tz) {
            // A running job's End is Unknown; a finished one's, a time.
            Ok(_) if state.eq_ignore_ascii_case("running") => None,
            Ok(e) => e,
            Err(e) => {
                skip(format!("End: {e}"), no, "End")?;
                continue;
            }
        };
        let nodelist = cell("nodelist");
        if nodelist.is_empty() || nodelist.eq_ignore_ascii_case("none assigned") {
            skip("no nodes".into(), no, "NodeList")?;
            continue;
        }
        let nodes = match expand_hostlist(nodelist) {
            Ok(n) => n,
            Err(e) => {
                skip(format!("NodeList: {e}"), no, "NodeList")?;
                continue;
            }
        };
        let (gpus, mig) = match tres_gpu_kinds(cell("alloctres")) {
            Ok(g) => g,
            Err(e) => {
                skip(format!("AllocTRES: {e}"), no, "AllocTRES")?;
                continue;
            }
        };
        let tags = cell("comment")
            .split([' ', ',', ';'])
            .filter_map(|w| w.split_once('='))
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let cpus_per_node = match nodes.len() {
            1 => tres_count(cell("alloctres"), "cpu"),
            _ => None,
        };
        // sacct writes "CANCELLED by 1000": the state is its first word.
        let state = slurm_value(state.split_whitespace().next().unwrap_or(""));
        out.jobs.push(SacctJob {
            cpus_per_node,
            line: no,
            id: id.to_owned(),
            user: cell("user").to_owned(),
            name: cell("jobname").to_owned(),
            start,
            end,
            nodes,
            gpus,
            tags,
            mig,
            scheduler: SchedulerFields {
                raw_id: slurm_value(cell("jobidraw")),
                account: slurm_value(cell("account")),
                partition: slurm_value(cell("partition")),
                state,
            },
        });
    }
    Ok(out)
}

/// The job to register: whole nodes' GPUs where the count says so, the rest named as unknown (the
/// server drops those where a prolog named the GPUs).
pub(crate) fn new_job(
    j: &SacctJob,
    site: &str,
    tags: &BTreeMap<String, String>,
    node_gpus: &HashMap<String, Vec<u32>>,
) -> (NewJob, Vec<String>) {
    let mut notes = Vec::new();
    let mut allocations = Vec::new();
    let mut unknown = Vec::new();
    let n = j.nodes.len() as u32;
    let slices: u32 = j.mig.values().sum();
    if slices > 0 {
        // MIG instances: which GPU and slices each is, sacct cannot say.
        let kinds = j
            .mig
            .iter()
            .map(|(p, k)| format!("{k} x {p}"))
            .collect::<Vec<_>>()
            .join(", ");
        for node in &j.nodes {
            unknown.push(UnknownGpus {
                node: node.clone(),
                gpus: 0,
            });
        }
        notes.push(format!(
            "MIG instances ({kinds}) on {}: which GPUs and slices sacct cannot say (not charged)",
            j.nodes.join(", ")
        ));
    } else if j.gpus > 0 {
        let per_node = j.gpus.is_multiple_of(n).then_some(j.gpus / n);
        for node in &j.nodes {
            match (node_gpus.get(node), per_node) {
                (Some(all), Some(k)) if all.len() as u32 == k => allocations.push(Allocation {
                    node: node.clone(),
                    gpus: all.clone(),
                    mig: vec![],
                    cpus: j.cpus_per_node,
                }),
                (known, k) => {
                    notes.push(match (known, k) {
                        (None, _) => format!("{node}: unknown to the server (no GPUs registered)"),
                        (Some(all), Some(k)) => format!(
                            "{node}: {k} of its {} GPUs, which ones sacct cannot say (not charged unless its prolog named them)",
                            all.len()
                        ),
                        (Some(_), None) => format!(
                            "{node}: {} GPUs over {n} nodes do not split evenly (not charged unless its prolog named them)",
                            j.gpus
                        ),
                    });
                    unknown.push(UnknownGpus {
                        node: node.clone(),
                        gpus: k.unwrap_or(0),
                    });
                }
            }
        }
    }
    let mut all_tags = j.tags.clone();
    all_tags.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    (
        NewJob {
            id: j.id.clone(),
            user: j.user.clone(),
            name: j.name.clone(),
            site: Some(site.to_owned()),
            start: j.start,
            end: j.end,
            tags: all_tags,
            allocations,
            unknown_gpus: unknown,
            scheduler: j.scheduler.clone(),
            nodes: j.nodes.clone(),
        },
        notes,
    )
}

/// What registering a file's jobs came to.
#[derive(Debug, Default)]
pub(crate) struct Registered {
    /// Jobs registered now or already known, by their ids in the file.
    pub registered: Vec<String>,
    /// Of those, registered without some of their GPUs: `job id: why`.
    pub partial: Vec<String>,
    /// Records the server refused as contradicting what it has (another user, other nodes), by line.
    pub refused: Vec<String>,
    /// Records merged into a job of another id (a prolog registered it by its raw id).
    pub renamed: Vec<String>,
}

/// Registers each job (a re-sent record changes nothing); a record the server refuses is reported by
/// its line, or with `strict` stops the run.
pub(crate) async fn register(
    uplink: &Uplink,
    jobs: &[SacctJob],
    site: &str,
    tags: &BTreeMap<String, String>,
    strict: bool,
) -> anyhow::Result<Registered> {
    let nodes: Vec<NodeView> = uplink
        .get_json(paths::NODES)
        .await
        .map_err(|e| anyhow::anyhow!("reading the server's nodes: {e}"))?;
    let node_gpus: HashMap<String, Vec<u32>> = nodes
        .into_iter()
        .map(|n| (n.name, n.gpus.iter().map(|g| g.index).collect()))
        .collect();
    let mut out = Registered::default();
    for j in jobs {
        let (job, notes) = new_job(j, site, tags, &node_gpus);
        let view: Option<JobView> = match uplink.post_json(paths::JOBS, &job).await {
            (Delivery::Done, body) => body.and_then(|b| serde_json::from_str(&b).ok()),
            (Delivery::Rejected(why), _) if !strict => {
                out.refused
                    .push(format!("line {}, job {}: {why}", j.line, j.id));
                continue;
            }
            (Delivery::Rejected(why) | Delivery::Retry(why), _) => {
                anyhow::bail!("line {}, job {}: server refused it: {why}", j.line, j.id)
            }
        };
        out.registered.push(j.id.clone());
        if let Some(v) = view.as_ref().filter(|v| v.id != j.id) {
            out.renamed.push(format!(
                "job {} is registered as {} (its raw id)",
                j.id, v.id
            ));
        }
        // GPUs a prolog named are charged: the server keeps unknown only the nodes nobody named.
        let still_unknown = view.map_or(!notes.is_empty(), |v| !v.unknown_gpus.is_empty());
        if still_unknown && !notes.is_empty() {
            out.partial
                .push(format!("job {}: {}", j.id, notes.join("; ")));
        }
    }
    Ok(out)
}

/// Runs `import sacct` and prints its report.
pub(crate) async fn run(a: SacctArgs) -> anyhow::Result<()> {
    let tz: Tz = a
        .timezone
        .parse()
        .map_err(|_| anyhow::anyhow!("--timezone: '{}' is not an IANA time zone", a.timezone))?;
    let tags = super::tags(&a.tags)?;
    let f =
        std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let parsed = parse(
        std::io::BufReader::new(f),
        tz,
        a.strict,
        a.format.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let uplink = Uplink::new(&a.server.server, &a.server.token)?;
    let done = register(&uplink, &parsed.jobs, &a.site, &tags, a.strict).await?;
    println!("lines read: {}", parsed.lines);
    // Registered now or already known: the server merges a job registered again, changing nothing.
    println!(
        "jobs registered or already known: {}",
        done.registered.len()
    );
    println!("jobs without some of their GPUs: {}", done.partial.len());
    for r in &done.partial {
        println!("  {r}");
    }
    for r in &done.renamed {
        println!("  {r}");
    }
    println!("records refused: {}", done.refused.len());
    for r in &done.refused {
        println!("  {r}");
    }
    println!("lines skipped: {}", parsed.skipped.total());
    print!("{}", parsed.skipped);
    if !done.refused.is_empty() {
        anyhow::bail!(
            "{} records contradict what the server has (above); the rest are registered",
            done.refused.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lists_expand_with_their_padding() {
        let tres_gpus = |t: &str| tres_gpu_kinds(t).map(|(n, _)| n);
        assert_eq!(
            expand_hostlist("gpu[01-03,07],cpu1").expect("ok"),
            vec!["gpu01", "gpu02", "gpu03", "gpu07", "cpu1"]
        );
        assert_eq!(
            expand_hostlist("r[1-2]n[08-09]").expect("ok"),
            vec!["r1n08", "r1n09", "r2n08", "r2n09"]
        );
        assert!(expand_hostlist("gpu[01-").is_err());
        assert_eq!(
            tres_gpus("billing=8,cpu=8,gres/gpu=4,mem=64G,node=1"),
            Ok(4)
        );
        assert_eq!(tres_gpus("cpu=8,gres/gpu:a100=2,gres/gpu:v100=1"), Ok(3));
        assert_eq!(tres_gpus("cpu=8,mem=4G"), Ok(0));
    }

    const SACCT: &str = "JobID|User|JobName|Start|End|NodeList|AllocTRES|Comment
100|alice|bert|2024-07-01T10:00:00|2024-07-01T12:00:00|gpu[01-02]|billing=16,cpu=16,gres/gpu=8,node=2|workload=bert-mlm project=nlp
100.batch|||2024-07-01T10:00:00|2024-07-01T12:00:00|gpu01|cpu=8|
100.0|||2024-07-01T10:00:01|2024-07-01T11:59:00|gpu[01-02]|cpu=16,gres/gpu=8|
200_3|bob|sweep|2024-07-01T11:00:00|Unknown|gpu03|cpu=4,gres/gpu=2,node=1|
300|carol|pending|Unknown|Unknown|None assigned|cpu=4|
";

    #[test]
    fn steps_are_skipped_arrays_kept_shared_nodes_flagged() {
        let p = parse(SACCT.as_bytes(), chrono_tz::America::New_York, false, None).expect("parses");
        assert_eq!(p.jobs.len(), 2);
        assert_eq!(p.skipped.count("job step, not a job"), 2);
        assert_eq!(p.skipped.count("not started (no start time)"), 1);
        let j = &p.jobs[0];
        assert_eq!(j.start.to_rfc3339(), "2024-07-01T14:00:00+00:00");
        assert_eq!(j.tags["workload"], "bert-mlm");
        let node_gpus: HashMap<String, Vec<u32>> = [
            ("gpu01".to_owned(), vec![0, 1, 2, 3]),
            ("gpu02".to_owned(), vec![0, 1, 2, 3]),
            ("gpu03".to_owned(), vec![0, 1, 2, 3]),
        ]
        .into_iter()
        .collect();
        let (job, notes) = new_job(j, "lab", &BTreeMap::new(), &node_gpus);
        assert_eq!(job.allocations.len(), 2, "whole nodes: all their GPUs");
        assert!(notes.is_empty() && job.unknown_gpus.is_empty());
        let (job, notes) = new_job(&p.jobs[1], "lab", &BTreeMap::new(), &node_gpus);
        assert_eq!(job.id, "200_3");
        assert_eq!(job.end, None, "still running");
        assert!(job.allocations.is_empty(), "2 of 4 GPUs: never guessed");
        assert_eq!(
            job.unknown_gpus,
            vec![UnknownGpus {
                node: "gpu03".into(),
                gpus: 2
            }]
        );
        assert!(notes[0].contains("2 of its 4 GPUs"), "{notes:?}");
        let e = parse(SACCT.as_bytes(), chrono_tz::UTC, true, None).expect_err("strict");
        assert_eq!((e.line, e.field.as_str()), (3, "JobID"));
    }

    /// As Debian's Slurm 22.05 printed it for `sacct -aP --allocations --noheader
    /// --format=JobID,JobIDRaw,User,Account,Partition,State,Start,End,NodeList,AllocTRES,Comment,JobName`,
    /// with offsets written into its times (a site's format; 22.05 itself drops `%z`) and one MIG job
    /// added.
    const NOHEADER: &str = "4_1|5|nobody||gpu|COMPLETED|2026-12-06T11:17:00+0000|2026-12-06T11:17:02+0000|gpu01|billing=1,cpu=1,gres/gpu=1,node=1||arr
9+1|10|nobody|physics|gpu|CANCELLED by 0|2026-12-06T11:18:55+0100|2026-12-06T11:18:57+0100|gpu02|billing=1,cpu=1,gres/gpu=1,node=1|workload=x|het|job
12|12|nobody||gpu|RUNNING|2026-12-06T11:20:10+0000|Unknown|gpu01|cpu=1,gres/gpu:a100=1,gres/gpu=1||run
13|13|nobody||gpu|PENDING|Unknown|Unknown|None assigned|||wait
14|14|nobody||gpu|COMPLETED|2026-12-06T11:20:10+0000|2026-12-06T11:21:10+0000|gpu01|cpu=1,gres/gpu:a100_1g.10gb=2,gres/gpu=2||mig
";

    #[test]
    fn noheader_output_with_its_format_offsets_pipes_in_names_pending_and_mig() {
        let format = "JobID,JobIDRaw,User,Account,Partition,State,Start,End,NodeList,AllocTRES,Comment,JobName%30";
        let p = parse(
            NOHEADER.as_bytes(),
            chrono_tz::Europe::Berlin,
            false,
            Some(format),
        )
        .expect("parses");
        assert_eq!(
            p.skipped.count("pending (not started)"),
            1,
            "{:?}",
            p.skipped
        );
        assert_eq!(p.jobs.len(), 4);
        let task = &p.jobs[0];
        assert_eq!(task.id, "4_1");
        assert_eq!(task.scheduler.raw_id.as_deref(), Some("5"));
        assert_eq!(task.scheduler.account, None, "empty: no account");
        assert_eq!(
            task.start.to_rfc3339(),
            "2026-12-06T11:17:00+00:00",
            "the offset, not Berlin"
        );
        let het = &p.jobs[1];
        assert_eq!(het.name, "het|job", "the last column keeps its delimiter");
        assert_eq!(het.scheduler.state.as_deref(), Some("CANCELLED"));
        assert_eq!(het.scheduler.account.as_deref(), Some("physics"));
        assert_eq!(het.start.to_rfc3339(), "2026-12-06T10:18:55+00:00");
        assert_eq!(
            local("1796558553", chrono_tz::Europe::Berlin).expect("epoch"),
            DateTime::from_timestamp(1_796_558_553, 0)
        );
        let running = &p.jobs[2];
        assert_eq!(
            (running.end, running.gpus),
            (None, 1),
            "typed and plain counted once"
        );
        let mig = &p.jobs[3];
        assert_eq!(mig.mig.get("1g.10gb"), Some(&2));
        let node_gpus: HashMap<String, Vec<u32>> =
            [("gpu01".to_owned(), vec![0, 1])].into_iter().collect();
        let (job, notes) = new_job(mig, "lab", &BTreeMap::new(), &node_gpus);
        assert!(
            job.allocations.is_empty(),
            "two slices are not two whole GPUs"
        );
        assert!(
            notes[0].contains("MIG instances (2 x 1g.10gb)"),
            "{notes:?}"
        );
        let (job, _) = new_job(task, "lab", &BTreeMap::new(), &node_gpus);
        assert_eq!(job.nodes, vec!["gpu01"]);
        assert_eq!(job.scheduler.raw_id.as_deref(), Some("5"));
        // Without --format a header is needed, and says which.
        let e = parse(NOHEADER.as_bytes(), chrono_tz::UTC, false, None).expect_err("no header");
        assert_eq!((e.line, e.field.as_str()), (1, "header"));
        let e =
            parse("".as_bytes(), chrono_tz::UTC, false, Some("JobID,User")).expect_err("format");
        assert_eq!(e.field, "--format");
    }
}
