//! Telling GPUs apart in logs without an index, uuid or bus id column.
//!
//! `nvidia-smi --query-gpu=timestamp,power.draw,... -lms 100` writes, for each poll, one row per GPU in
//! index order within a few milliseconds, and polls one interval apart. So the time between rows is
//! either short (the next GPU of the same poll) or long (the next poll). The GPU count comes from the
//! first rows: their gaps split into two clusters (Otsu's threshold on log gaps; the clusters' typical
//! gaps at least 5x apart), and the count is the usual number of rows between long gaps, if at least 75 %
//! of the rows are in polls of that size (else the rows are one GPU's, with jitter). Then rows are taken
//! N at a time in order: a GPU's read can stall for 200 ms, so gaps alone do not end a poll. Where a line
//! was lost (a skipped line, a repeated header), the poll in progress is skipped and counted, and the
//! next polls are checked by time until one is whole: a gap inside such a poll of more than 3/4 of the
//! usual gap between polls means it started at the wrong row. Nothing is guessed.

/// How rows group into polls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Polls {
    /// Rows per poll: the number of GPUs.
    pub gpus: u32,
    /// A gap longer than this (ms) starts a new poll; `None`: every row is a poll (one GPU).
    pub split_ms: Option<f64>,
}

/// Rows that decide [`Polls`] before the rest stream through.
pub(crate) const PROBE_ROWS: usize = 4096;

/// The threshold between short (in-poll) and long (between-poll) gaps of `times` (ms, in file order):
/// Otsu's split of the log gaps, if the two clusters are at least 5x apart.
fn split(times: &[i64]) -> Option<f64> {
    let mut logs: Vec<f64> = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g >= 0)
        // Two rows in the same millisecond: half a millisecond apart, so logs stay finite.
        .map(|g| (g as f64).max(0.5).ln())
        .collect();
    if logs.len() < 4 {
        return None;
    }
    logs.sort_by(f64::total_cmp);
    let n = logs.len();
    let total: f64 = logs.iter().sum();
    // The long gaps of a few appended runs or pauses are not a cluster: at least 1 % above.
    let min_above = (n / 100).max(1);
    let mut below = 0.0;
    let mut best: Option<(f64, usize)> = None;
    for k in 1..=n - min_above {
        below += logs[k - 1];
        let (w0, w1) = (k as f64, (n - k) as f64);
        let (m0, m1) = (below / w0, (total - below) / w1);
        let between = w0 * w1 * (m1 - m0) * (m1 - m0);
        if best.is_none_or(|(b, _)| between > b) {
            best = Some((between, k));
        }
    }
    let (_, k) = best?;
    let below: f64 = logs[..k].iter().sum::<f64>() / k as f64;
    let above: f64 = logs[k..].iter().sum::<f64>() / (n - k) as f64;
    ((above - below).exp() >= 5.0).then(|| ((logs[k - 1] + logs[k]) / 2.0).exp())
}

/// Rows in polls of each size, when rows more than `split` ms apart start a new poll.
fn rows_by_poll_size(times: &[i64], split: f64) -> std::collections::BTreeMap<u32, usize> {
    let mut rows_in = std::collections::BTreeMap::<u32, usize>::new();
    let mut size = 1;
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        if gap < 0 || gap as f64 > split {
            *rows_in.entry(size).or_default() += size as usize;
            size = 1;
        } else {
            size += 1;
        }
    }
    *rows_in.entry(size).or_default() += size as usize;
    rows_in
}

/// Half the poll interval: the median time from a row to the same GPU's next row, halved.
fn half_interval(times: &[i64], gpus: usize) -> Option<f64> {
    let mut d: Vec<i64> = times
        .windows(gpus + 1)
        .map(|w| w[gpus] - w[0])
        .filter(|d| *d > 0)
        .collect();
    if d.is_empty() {
        return None;
    }
    let mid = d.len() / 2;
    let (_, m, _) = d.select_nth_unstable(mid);
    Some(*m as f64 / 2.0)
}

/// Decides the GPU count and the realignment gap from the first rows' times; `gpus` overrides the count.
pub(crate) fn detect(times: &[i64], gpus: Option<u32>) -> Result<Polls, String> {
    let one = Polls {
        gpus: 1,
        split_ms: None,
    };
    let split = split(times);
    let n = match gpus {
        Some(0) => return Err("--gpus: must be at least 1".into()),
        Some(n) => n,
        None => {
            let Some(s) = split else {
                return Ok(one);
            };
            let rows_in = rows_by_poll_size(times, s);
            let (usual, rows) = rows_in
                .iter()
                .max_by_key(|(size, n)| (**n, **size))
                .map_or((1, 0), |(size, n)| (*size, *n));
            if rows * 4 < times.len() * 3 {
                return Ok(one);
            }
            usual
        }
    };
    if n == 1 {
        return Ok(one);
    }
    // A gap inside a poll longer than 3/4 of the usual gap between polls: a row was lost there (a late
    // GPU read can take 60 ms of a 100 ms interval, so the threshold sits near the long gaps).
    let realign = match split {
        Some(s) => {
            let mut long: Vec<i64> = times
                .windows(2)
                .map(|w| w[1] - w[0])
                .filter(|g| *g as f64 > s)
                .collect();
            let mid = long.len() / 2;
            long.select_nth_unstable(mid);
            long.get(mid).map(|m| *m as f64 * 0.75)
        }
        None => half_interval(times, n as usize),
    };
    Ok(Polls {
        gpus: n,
        split_ms: realign,
    })
}

/// Groups rows into polls as they come. `T` is whatever the caller keeps of a row.
#[derive(Debug)]
pub(crate) struct Grouper<T> {
    polls: Polls,
    current: Vec<(i64, u64, T)>,
    /// The rows of a poll a lost line cut short: the first GPUs of a poll if nothing follows in its run
    /// (a crash's last poll), a broken poll if rows follow.
    held: Vec<(i64, u64, T)>,
    /// After a lost line: polls are checked by time until one is whole.
    suspect: bool,
    /// Whole polls not yet given out, each with whether it had a long gap inside.
    pending: std::collections::VecDeque<(bool, u64, Vec<T>)>,
    /// Time of the last row of the last whole poll.
    last_t: Option<i64>,
}

/// Consecutive polls with a long gap inside that mean the rows lost their order (a row vanished
/// without a trace): one stalled read makes one such poll, a shifted order makes every poll one.
const MISALIGNED_POLLS: usize = 3;

/// What closing a poll gave.
#[derive(Debug, PartialEq)]
pub(crate) enum Closed<T> {
    /// A whole poll, or the first rows of a poll its run ended in: its rows in GPU order.
    Poll(Vec<T>),
    /// Rows that cannot be told apart, from this line: skipped.
    Odd {
        /// Its first line.
        line: u64,
        /// Its rows.
        rows: u64,
    },
}

impl<T> Grouper<T> {
    /// Groups by `polls`.
    pub(crate) fn new(polls: Polls) -> Grouper<T> {
        Grouper {
            polls,
            current: Vec::new(),
            held: Vec::new(),
            suspect: false,
            pending: std::collections::VecDeque::new(),
            last_t: None,
        }
    }

    /// Rows per poll.
    pub(crate) fn gpus(&self) -> u32 {
        self.polls.gpus
    }

    fn long(&self, gap: i64) -> bool {
        self.polls.split_ms.is_some_and(|s| gap as f64 > s)
    }

    fn odd(rows: &[(i64, u64, T)]) -> Option<Closed<T>> {
        rows.first().map(|r| Closed::Odd {
            line: r.1,
            rows: rows.len() as u64,
        })
    }

    /// Adds a row (time ms, line); polls it settles go to `out`.
    pub(crate) fn push(&mut self, t_ms: i64, line: u64, row: T, out: &mut Vec<Closed<T>>) {
        if !self.held.is_empty() {
            // Rows follow a poll cut short by a lost line: it was broken.
            out.extend(Self::odd(&std::mem::take(&mut self.held)));
        }
        let broken = match self.current.last() {
            Some((prev, _, _)) => t_ms < *prev || (self.suspect && self.long(t_ms - prev)),
            None => false,
        };
        if broken {
            out.extend(Self::odd(&std::mem::take(&mut self.current)));
        }
        self.current.push((t_ms, line, row));
        if self.current.len() == self.polls.gpus as usize {
            let rows = std::mem::take(&mut self.current);
            let gap_inside = rows.windows(2).any(|w| self.long(w[1].0 - w[0].0));
            self.suspect = false;
            self.last_t = rows.last().map(|r| r.0);
            let first = rows[0].1;
            self.pending
                .push_back((gap_inside, first, rows.into_iter().map(|r| r.2).collect()));
            if self.pending.len() >= MISALIGNED_POLLS {
                if self.pending.iter().all(|p| p.0) {
                    // Every recent poll has a long gap inside: the order shifted. Skip them and
                    // find the start of a poll by time again.
                    for (_, first, rows) in self.pending.drain(..) {
                        out.push(Closed::Odd {
                            line: first,
                            rows: rows.len() as u64,
                        });
                    }
                    self.suspect = true;
                } else if let Some((_, _, rows)) = self.pending.pop_front() {
                    out.push(Closed::Poll(rows));
                }
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<Closed<T>>) {
        out.extend(
            self.pending
                .drain(..)
                .map(|(_, _, rows)| Closed::Poll(rows)),
        );
    }

    /// A line was lost here (skipped): the poll in progress is cut short.
    pub(crate) fn disrupt(&mut self, out: &mut Vec<Closed<T>>) {
        if !self.held.is_empty() {
            out.extend(Self::odd(&std::mem::take(&mut self.held)));
        }
        self.held = std::mem::take(&mut self.current);
        self.suspect = true;
    }

    /// A run of the log ends (a repeated header, the end of the file): a poll cut short at its end
    /// holds the run's last rows in GPU order.
    pub(crate) fn end_run(&mut self, out: &mut Vec<Closed<T>>) {
        self.flush(out);
        for rows in [
            std::mem::take(&mut self.held),
            std::mem::take(&mut self.current),
        ] {
            if !rows.is_empty() {
                out.push(Closed::Poll(rows.into_iter().map(|r| r.2).collect()));
            }
        }
        self.suspect = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gpus` rows per poll, 3 ms apart, polls every 100 ms with a few ms of jitter.
    fn times(gpus: i64, polls: i64) -> Vec<i64> {
        let mut out = Vec::new();
        for p in 0..polls {
            for g in 0..gpus {
                out.push(p * 100 + (p * 7) % 5 + g * 3);
            }
        }
        out
    }

    #[test]
    fn finds_the_gpu_count_from_the_rows_times() {
        for gpus in [1, 2, 4, 8] {
            let p = detect(&times(gpus, 300), None).expect("detects");
            assert_eq!(p.gpus, gpus as u32, "{gpus} GPUs");
        }
        // One GPU every 3 ms with 1 ms jitter: no split, every row a poll.
        let jitter: Vec<i64> = (0..1000).map(|i| i * 3 + (i % 3)).collect();
        assert_eq!(detect(&jitter, None).expect("detects").gpus, 1);
        // A pause between two appended runs is no poll boundary pattern by itself.
        let mut two_runs = times(2, 300);
        two_runs.extend(times(2, 300).iter().map(|t| t + 3_600_000));
        assert_eq!(detect(&two_runs, None).expect("detects").gpus, 2);
        // Rows 3 and 4 ms apart alternately: one GPU, not two.
        let alternating: Vec<i64> = (0..1000).map(|i| i * 7 / 2).collect();
        assert_eq!(detect(&alternating, None).expect("detects").gpus, 1);
        assert_eq!(detect(&times(8, 100), Some(8)).expect("given").gpus, 8);
    }

    fn run(g: &mut Grouper<u64>, rows: &[(i64, u64)], out: &mut Vec<Closed<u64>>) {
        for (t, line) in rows {
            g.push(*t, *line, *line, out);
        }
    }

    #[test]
    fn after_a_lost_line_polls_realign_by_time() {
        let polls = detect(&times(2, 100), None).expect("detects");
        let mut g = Grouper::new(polls);
        let mut out = Vec::new();
        // Poll 0 whole; line 4 (GPU 0 of poll 1) lost: GPU 1 of poll 1 is skipped, not taken as GPU 0.
        run(&mut g, &[(0, 2), (3, 3)], &mut out);
        g.disrupt(&mut out);
        run(&mut g, &[(103, 5), (200, 6), (203, 7)], &mut out);
        // Poll 3 loses its second row; the run ends there: its first row is GPU 0's.
        run(&mut g, &[(300, 8)], &mut out);
        g.disrupt(&mut out);
        g.end_run(&mut out);
        assert_eq!(
            out,
            vec![
                Closed::Odd { line: 5, rows: 1 },
                Closed::Poll(vec![2, 3]),
                Closed::Poll(vec![6, 7]),
                Closed::Poll(vec![8]),
            ]
        );
    }

    #[test]
    fn a_stalled_read_keeps_the_poll_a_vanished_row_does_not() {
        let polls = detect(&times(2, 100), None).expect("detects");
        let mut g = Grouper::new(polls);
        let mut out = Vec::new();
        // Poll 1's second row is 190 ms late: still poll 1.
        run(
            &mut g,
            &[(0, 2), (3, 3), (100, 4), (290, 5), (300, 6), (303, 7)],
            &mut out,
        );
        // From line 9 on a row vanished without a trace (GPU 1 of poll 3): every later poll has a
        // long gap inside; those are skipped until the order is found again.
        let mut t = 400;
        let mut line = 8;
        let mut rows = vec![(t, line)];
        for _ in 0..6 {
            t += 100;
            line += 1;
            rows.push((t, line));
            line += 1;
            rows.push((t + 3, line));
        }
        run(&mut g, &rows, &mut out);
        g.end_run(&mut out);
        let polls: Vec<&Closed<u64>> = out
            .iter()
            .filter(|c| matches!(c, Closed::Poll(_)))
            .collect();
        assert_eq!(
            polls[..3],
            [
                &Closed::Poll(vec![2, 3]),
                &Closed::Poll(vec![4, 5]),
                &Closed::Poll(vec![6, 7])
            ]
        );
        // After the skipped polls, the rows are paired as written: (t, t + 3).
        assert!(out.contains(&Closed::Poll(vec![17, 18])), "{out:?}");
        assert!(
            !out.iter()
                .any(|c| matches!(c, Closed::Poll(r) if r.len() == 2 && r[1] != r[0] + 1)),
            "{out:?}"
        );
    }
}
