//! `wattlas-collector import nvidia-smi FILE --node N --timezone TZ`: every log nvidia-smi writes.
//!
//! Layouts: `--query-gpu=... --format=csv[,nounits][,noheader]` in any column order and subset, and
//! `nvidia-smi dmon` (see [`layout`]). GPUs are told apart by what the file has: `index`, else `uuid`, else
//! `pci.bus_id` (indices in order of first appearance, which is nvidia-smi's index order), else their
//! position in each poll ([`polls`]). Power is `power.draw`, else `.average`, else `.instant`; an instant column beside it is kept too.
//! nvidia-smi writes local time without a zone, so the zone is given; in the hour a DST change repeats, a
//! time is read as the earlier instant unless that would go back in time for the same GPU.
//!
//! Real logs break: a crash leaves a cut-off last line or NUL padding, two runs appended repeat the
//! header, a lost newline fuses two records. Such lines are skipped and counted by reason with their first
//! line numbers, and the rest is imported; `strict` refuses the whole file at the first of them instead.
//! A row without a power reading is skipped and counted. The file is read line by line and sent in
//! batches, so memory stays bounded whatever its size. The server stores each (GPU, time) once, so
//! importing a file twice changes nothing.

pub(crate) mod layout;
pub(crate) mod polls;
mod rows;
pub(crate) mod send;

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use wattlas_protocol::{GpuIdentity, GpuSample};

pub(crate) use super::lines::{ImportError, Skips};
use super::lines::{Line, Lines};
use layout::{Kind, Layout, TimeCols};
use polls::{Closed, Grouper};

/// What the caller says about a log.
#[derive(Debug, Clone)]
pub struct Options {
    /// Zone of the log's local timestamps.
    pub tz: Tz,
    /// GPUs per poll in logs without identity columns (default: found from the rows' times).
    pub gpus: Option<u32>,
    /// Model of the GPUs where the file has no `name` column.
    pub model: Option<String>,
    /// Columns of a `--format=csv,noheader` log, as given to `--query-gpu`.
    pub columns: Option<String>,
    /// Date of a `dmon -o T` log (times of day only).
    pub date: Option<NaiveDate>,
    /// Refuse the file at its first bad line instead of skipping it.
    pub strict: bool,
}

impl Options {
    /// Defaults for a zone.
    pub fn new(tz: Tz) -> Options {
        Options {
            tz,
            gpus: None,
            model: None,
            columns: None,
            date: None,
            strict: false,
        }
    }
}

/// One GPU as found in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuFound {
    /// Its identity as sent (placeholders where the file had none).
    pub identity: GpuIdentity,
    /// Samples read.
    pub samples: u64,
    /// First and last sample time.
    pub first: DateTime<Utc>,
    /// Last sample time.
    pub last: DateTime<Utc>,
}

/// What reading a log found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Lines read, headers included.
    pub lines: u64,
    /// Samples read.
    pub samples: u64,
    /// Lines left out, by reason.
    pub skipped: Skips,
    /// How GPUs were told apart.
    pub identified_by: String,
    /// The power column used.
    pub power_column: String,
    /// GPUs by index.
    pub gpus: BTreeMap<u32, GpuFound>,
}

/// A log read whole into memory (tests and fuzzing; imports stream with [`stream`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// What was found.
    pub summary: Summary,
    /// The samples.
    pub samples: Vec<GpuSample>,
}

/// A row of a log without identity columns, kept until its poll is complete.
#[derive(Debug, Clone)]
struct PollRow {
    run: u32,
    lost: u32,
    sample: GpuSample,
    model: Option<String>,
    default_limit: Option<f64>,
}

/// Reads a log line by line and produces samples in batches.
pub(crate) struct Parser<'o> {
    opts: &'o Options,
    layout: Option<Layout>,
    cells: Vec<usize>,
    keys: HashMap<String, u32>,
    last_time: HashMap<u32, DateTime<Utc>>,
    /// dmon `-o T`: the day and time of the previous line, to follow midnight.
    day: Option<(NaiveDate, chrono::NaiveTime)>,
    /// Runs ended (repeated headers) and lines lost (skipped): where polls end or break.
    run: u32,
    lost: u32,
    probe: Vec<(i64, u64, PollRow)>,
    grouper: Option<(Grouper<PollRow>, u32, u32)>,
    now: DateTime<Utc>,
    summary: Summary,
    out: Vec<GpuSample>,
    /// Earliest and latest time of `out`.
    span: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Identity placeholder for a GPU the log does not name (never replaces one a collector reported).
pub(crate) const UNKNOWN_UUID: &str = "unknown (imported log)";

fn earliest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl<'o> Parser<'o> {
    /// A parser for `opts`; `--columns` gives the layout of a log without header.
    pub(crate) fn new(opts: &'o Options) -> Result<Parser<'o>, ImportError> {
        let layout = match &opts.columns {
            Some(c) => Some(Layout::csv(c).map_err(|e| ImportError::new(0, "--columns", e))?),
            None => None,
        };
        let mut p = Parser {
            opts,
            layout: None,
            cells: Vec::with_capacity(64),
            keys: HashMap::new(),
            last_time: HashMap::new(),
            day: None,
            run: 0,
            lost: 0,
            probe: Vec::new(),
            grouper: None,
            now: Utc::now(),
            summary: Summary::default(),
            out: Vec::new(),
            span: None,
        };
        if let Some(l) = layout {
            p.summary.power_column = l.power_name();
            p.layout = Some(l);
        }
        Ok(p)
    }

    /// Samples read so far and not yet taken.
    pub(crate) fn pending(&self) -> usize {
        self.out.len()
    }

    /// The time the samples not yet taken cover, ms.
    pub(crate) fn pending_span_ms(&self) -> i64 {
        self.span.map_or(0, |(lo, hi)| (hi - lo).num_milliseconds())
    }

    /// Takes the samples read so far, with the identities of every GPU seen.
    pub(crate) fn take(&mut self) -> (Vec<GpuSample>, Vec<GpuIdentity>) {
        self.span = None;
        (
            std::mem::take(&mut self.out),
            self.summary
                .gpus
                .values()
                .map(|g| g.identity.clone())
                .collect(),
        )
    }

    fn skip(&mut self, why: String, line: u64, n: u64, field: &str) -> Result<(), ImportError> {
        self.skip_rows(why, line, n, field)?;
        // A lost line breaks the order of rows in polls.
        self.lost += 1;
        Ok(())
    }

    /// Counts rows skipped that lose no line: those the poll grouper itself could not tell apart. (They
    /// once counted as lost lines, so each such poll broke the next: one vanished row of an 8-GPU log
    /// skipped every poll after it.)
    fn skip_rows(
        &mut self,
        why: String,
        line: u64,
        n: u64,
        field: &str,
    ) -> Result<(), ImportError> {
        if self.opts.strict {
            let message = why.strip_prefix(&format!("{field}: ")).unwrap_or(&why);
            return Err(ImportError::new(line, field, message));
        }
        self.summary.skipped.add(why, line, n);
        Ok(())
    }

    /// Reads one line.
    pub(crate) fn line(&mut self, line: Line<'_>) -> Result<(), ImportError> {
        self.summary.lines += 1;
        let (no, text, complete) = match line {
            Line::Broken { no, why } => return self.skip(why.to_owned(), no, 1, "row"),
            Line::Text { no, text, complete } => (no, text, complete),
        };
        if text.trim().is_empty() {
            return self.skip("blank line".into(), no, 1, "row");
        }
        if layout::is_dmon_comment(text) {
            return match Layout::dmon(text) {
                None => Ok(()),
                Some(Ok(l)) => self.set_layout(l, no),
                Some(Err(e)) => Err(ImportError::new(no, "header", e)),
            };
        }
        if layout::is_csv_header(text) {
            return match Layout::csv(text) {
                Ok(l) => self.set_layout(l, no),
                Err(e) => Err(ImportError::new(no, "header", e)),
            };
        }
        self.data(no, text, complete)
    }

    fn set_layout(&mut self, l: Layout, no: u64) -> Result<(), ImportError> {
        if matches!(l.time, TimeCols::TimeOnly(_)) && self.opts.date.is_none() {
            return Err(ImportError::new(
                no,
                "header",
                "dmon output with times of day only (-o T): give --date YYYY-MM-DD, or log with -o DT",
            ));
        }
        match &self.layout {
            // dmon repeats its header every screenful: nothing to report.
            Some(cur) if cur.header == l.header && l.kind == Kind::Dmon => return Ok(()),
            Some(cur) if cur.header == l.header => {
                self.end_run()?;
                return self.skip(
                    "repeated header (logs appended one after another)".into(),
                    no,
                    1,
                    "header",
                );
            }
            Some(_) => {
                self.end_run()?;
                self.skip(
                    "a different header (the layout changes from here)".into(),
                    no,
                    1,
                    "header",
                )?;
            }
            None => {}
        }
        if self.summary.power_column.is_empty() {
            self.summary.power_column = l.power_name();
        } else if self.summary.power_column != l.power_name() {
            self.summary.power_column =
                format!("{}, then {}", self.summary.power_column, l.power_name());
        }
        self.layout = Some(l);
        Ok(())
    }

    /// A run of the log ends (a repeated header): rows after it start a new poll.
    fn end_run(&mut self) -> Result<(), ImportError> {
        self.run += 1;
        Ok(())
    }

    fn to_utc(&self, naive: NaiveDateTime, key: u32) -> Option<DateTime<Utc>> {
        match self.opts.tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(early, late) => {
                let (early, late) = (early.with_timezone(&Utc), late.with_timezone(&Utc));
                if self.last_time.get(&key).is_some_and(|prev| *prev >= early) {
                    Some(late)
                } else {
                    Some(early)
                }
            }
            LocalResult::None => None,
        }
    }

    /// Ends the file: the last poll, and what was found.
    pub(crate) fn finish(&mut self) -> Result<Summary, ImportError> {
        if self.grouper.is_none() {
            self.decide()?;
        }
        if let Some((g, _, _)) = &mut self.grouper {
            let mut closed = Vec::new();
            g.end_run(&mut closed);
            for c in closed {
                self.closed(c)?;
            }
        }
        if self.layout.is_none() && self.summary.lines > 0 {
            return Err(ImportError::new(
                1,
                "header",
                "no nvidia-smi header (a --format=csv,noheader log needs --columns)",
            ));
        }
        Ok(self.summary.clone())
    }
}

/// Hands a row to the grouper, ending the run or breaking the poll first where that changed.
fn feed(
    g: &mut Grouper<PollRow>,
    run: &mut u32,
    lost: &mut u32,
    t_ms: i64,
    line: u64,
    row: PollRow,
    out: &mut Vec<Closed<PollRow>>,
) {
    if *run != row.run {
        g.end_run(out);
    } else if *lost != row.lost {
        g.disrupt(out);
    }
    (*run, *lost) = (row.run, row.lost);
    g.push(t_ms, line, row, out);
}

/// Reads a whole log into memory.
pub fn parse(input: impl BufRead, opts: &Options) -> Result<Parsed, ImportError> {
    let mut samples = Vec::new();
    let summary = stream(input, opts, usize::MAX, |batch, _| {
        samples.extend(batch);
        Ok(())
    })
    .map_err(|e| match e {
        StreamError::Import(e) => e,
        StreamError::Io(e) => ImportError::new(0, "file", e.to_string()),
        StreamError::Sink(e) => ImportError::new(0, "file", e),
    })?;
    Ok(Parsed { summary, samples })
}

/// Why streaming a log stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The log (strict mode, or a header that cannot be used).
    #[error("{0}")]
    Import(#[from] ImportError),
    /// Reading the file.
    #[error("reading: {0}")]
    Io(#[from] std::io::Error),
    /// The receiver of the batches.
    #[error("{0}")]
    Sink(String),
}

/// Longest time one batch covers: the server refuses batches over a day (its raw chunks are a day
/// each), and an hour keeps a batch's samples in few storage blocks.
pub(crate) const MAX_BATCH_SPAN_MS: i64 = 3_600_000;

/// Reads a log in bounded memory, handing `sink` batches of up to `batch` samples over at most an hour,
/// with the identities of the GPUs seen so far.
pub fn stream(
    input: impl BufRead,
    opts: &Options,
    batch: usize,
    mut sink: impl FnMut(Vec<GpuSample>, Vec<GpuIdentity>) -> Result<(), String>,
) -> Result<Summary, StreamError> {
    let mut parser = Parser::new(opts)?;
    let mut lines = Lines::new(input);
    while let Some(line) = lines.next_line()? {
        parser.line(line)?;
        if parser.pending() >= batch || parser.pending_span_ms() >= MAX_BATCH_SPAN_MS {
            let (s, g) = parser.take();
            sink(s, g).map_err(StreamError::Sink)?;
        }
    }
    let summary = parser.finish()?;
    if parser.pending() > 0 {
        let (s, g) = parser.take();
        sink(s, g).map_err(StreamError::Sink)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
