//! `wattlas-collector import sacct FILE --site S --timezone TZ`: job history from Slurm's accounting.
//!
//! Reads `sacct --parsable2 --allocations --format=JobID,User,JobName,Start,End,NodeList,AllocTRES,Comment`
//! (a header line, any column order; `Comment` optional). Job steps (`1234.batch`) are skipped, array ids
//! (`1234_5`) kept, node lists expanded (`gpu[01-03,07]`), and times read in the cluster's zone. sacct
//! says how many GPUs a job had (`gres/gpu=N` in AllocTRES), not which: where a job held every GPU of its
//! nodes, those are its GPUs; where it held fewer (a shared node) or a node is unknown to the server, the
//! job is registered without that node's GPUs and says so (`unknown_gpus`), never guessed. Tags come from
//! `--tag` and `k=v` words of the Comment. Registering a job twice changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use clap::Args;
use wattlas_protocol::{paths, Allocation, NewJob, NodeView, UnknownGpus};

use super::lines::{ImportError, Line, Lines, Skips};
use crate::uplink::{Delivery, Uplink};

/// `import sacct`.
#[derive(Debug, Args)]
pub struct SacctArgs {
    /// Output of `sacct --parsable2 --allocations --format=JobID,User,JobName,Start,End,NodeList,AllocTRES,Comment`.
    pub file: PathBuf,
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
    pub server: super::cli::ServerArgs,
}

/// One job as sacct describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SacctJob {
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
}

/// A parsed sacct file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
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

/// GPUs in an AllocTRES list: `gres/gpu=4`, or the sum of typed counts (`gres/gpu:a100=4`) without it.
pub fn tres_gpus(tres: &str) -> Result<u32, String> {
    let mut plain = None;
    let mut typed = 0u32;
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
        } else if k.starts_with("gres/gpu:") {
            typed += n()?;
        }
    }
    Ok(plain.unwrap_or(typed))
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
    let naive = NaiveDateTime::parse_from_str(c, "%Y-%m-%dT%H:%M:%S").map_err(|_| "not a time")?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(Some(t.with_timezone(&Utc))),
        LocalResult::None => Err("a local time skipped by a DST change"),
    }
}

/// Parses sacct output.
pub fn parse(input: impl BufRead, tz: Tz, strict: bool) -> Result<Parsed, ImportError> {
    let mut out = Parsed::default();
    let mut lines = Lines::new(input);
    let mut header: Option<HashMap<String, usize>> = None;
    let mut width = 0;
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
            let map: HashMap<String, usize> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| (c.trim().to_ascii_lowercase(), i))
                .collect();
            for need in ["jobid", "user", "start", "end", "nodelist", "alloctres"] {
                if !map.contains_key(need) {
                    return Err(ImportError::new(
                        no,
                        "header",
                        format!("no {need} column (sacct --parsable2 --format=JobID,User,JobName,Start,End,NodeList,AllocTRES,Comment)"),
                    ));
                }
            }
            width = cells.len();
            header = Some(map);
            continue;
        };
        let col = |name: &str| h.get(name).copied();
        // A comment may hold the delimiter: it takes what is left when it is the last column.
        let mut comment = None;
        if cells.len() > width && col("comment") == Some(width - 1) {
            comment = Some(cells[width - 1..].join("|"));
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
        let cell = |name: &str| col(name).map_or("", |c| cells[c].trim());
        if cell("jobid").eq_ignore_ascii_case("jobid") {
            skip("repeated header".into(), no, "header")?;
            continue;
        }
        let id = cell("jobid");
        if id.contains('.') {
            skip("job step, not a job".into(), no, "JobID")?;
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
        let gpus = match tres_gpus(cell("alloctres")) {
            Ok(g) => g,
            Err(e) => {
                skip(format!("AllocTRES: {e}"), no, "AllocTRES")?;
                continue;
            }
        };
        let tags = comment
            .as_deref()
            .unwrap_or(cell("comment"))
            .split([' ', ',', ';'])
            .filter_map(|w| w.split_once('='))
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let cpus_per_node = match nodes.len() {
            1 => tres_count(cell("alloctres"), "cpu"),
            _ => None,
        };
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
        });
    }
    Ok(out)
}

/// The job to register: whole nodes' GPUs where the count says so, the rest named as unknown.
pub fn new_job(
    j: &SacctJob,
    site: &str,
    tags: &BTreeMap<String, String>,
    node_gpus: &HashMap<String, Vec<u32>>,
) -> (NewJob, Vec<String>) {
    let mut notes = Vec::new();
    let mut allocations = Vec::new();
    let mut unknown = Vec::new();
    let n = j.nodes.len() as u32;
    if j.gpus > 0 {
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
                            "{node}: {k} of its {} GPUs, which ones sacct cannot say (not charged)",
                            all.len()
                        ),
                        (Some(_), None) => format!(
                            "{node}: {} GPUs over {n} nodes do not split evenly (not charged)",
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
        },
        notes,
    )
}

/// Runs `import sacct` and prints its report.
pub async fn run(a: SacctArgs) -> anyhow::Result<()> {
    let tz: Tz = a
        .timezone
        .parse()
        .map_err(|_| anyhow::anyhow!("--timezone: '{}' is not an IANA time zone", a.timezone))?;
    let tags = super::cli::tags(&a.tags)?;
    let f =
        std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let parsed = parse(std::io::BufReader::new(f), tz, a.strict)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let uplink = Uplink::new(&a.server.server, &a.server.token)?;
    let nodes: Vec<NodeView> = uplink
        .get_json(paths::NODES)
        .await
        .map_err(|e| anyhow::anyhow!("reading the server's nodes: {e}"))?;
    let node_gpus: HashMap<String, Vec<u32>> = nodes
        .into_iter()
        .map(|n| (n.name, n.gpus.iter().map(|g| g.index).collect()))
        .collect();
    let (mut whole, mut partial) = (0, 0);
    let mut report = Vec::new();
    for j in &parsed.jobs {
        let (job, notes) = new_job(j, &a.site, &tags, &node_gpus);
        match uplink.post_json(paths::JOBS, &job).await {
            (Delivery::Done, _) => {}
            (Delivery::Rejected(why) | Delivery::Retry(why), _) => {
                anyhow::bail!("line {}, job {}: server refused it: {why}", j.line, j.id)
            }
        }
        if notes.is_empty() {
            whole += 1;
        } else {
            partial += 1;
            report.push(format!("  job {}: {}", j.id, notes.join("; ")));
        }
    }
    println!("lines read: {}", parsed.lines);
    // Registered now or already known: the server merges a job registered again, changing nothing.
    println!("jobs registered or already known: {}", whole + partial);
    println!("jobs without some of their GPUs: {partial}");
    for r in report {
        println!("{r}");
    }
    println!("lines skipped: {}", parsed.skipped.total());
    print!("{}", parsed.skipped);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lists_expand_with_their_padding() {
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
        let p = parse(SACCT.as_bytes(), chrono_tz::America::New_York, false).expect("parses");
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
        let e = parse(SACCT.as_bytes(), chrono_tz::UTC, true).expect_err("strict");
        assert_eq!((e.line, e.field.as_str()), (3, "JobID"));
    }
}
