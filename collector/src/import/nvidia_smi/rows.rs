//! The rows of a log: each line's cells read into a sample (time, GPU, power and the rest, each checked),
//! and rows grouped into polls told apart into GPUs, then emitted as samples.

use chrono::Duration;
use wattlas_protocol::{GpuIdentity, GpuSample, MAX_GPU_POWER_W};

use super::layout::TimeCols;
use super::polls::{Closed, Grouper, Polls, PROBE_ROWS};
use super::*;

impl Parser<'_> {
    pub(super) fn data(&mut self, no: u64, text: &str, complete: bool) -> Result<(), ImportError> {
        let Some(l) = self.layout.as_mut() else {
            return self.skip(
                "data before any header (a --format=csv,noheader log needs --columns)".into(),
                no,
                1,
                "row",
            );
        };
        layout::cells(l.kind, text, &mut self.cells);
        let n = self.cells.len() / 2;
        if n != l.names.len() {
            let why = if complete {
                format!(
                    "{n} fields where the header has {} (records fused or cut off)",
                    l.names.len()
                )
            } else {
                "last line cut off".to_owned()
            };
            return self.skip(why, no, 1, "row");
        }
        let cells = &self.cells;
        let cell = |c: usize| &text[cells[2 * c]..cells[2 * c + 1]];
        if l.units.is_none() && !layout::is_missing(cell(l.power)) {
            l.units = Some(cell(l.power).trim().contains(' '));
        }
        let l = self.layout.as_ref().unwrap_or_else(|| unreachable!());
        let units = l.units.unwrap_or(false);

        // Which GPU.
        enum Key<'a> {
            Index(u32),
            Named(&'a str, &'static str),
            Position,
        }
        let key = if let Some(c) = l.index {
            match cell(c).trim().parse::<u32>() {
                Ok(i) => Key::Index(i),
                Err(_) => {
                    let why = format!("{}: '{}' is not a GPU index", l.names[c], cell(c).trim());
                    let field = l.names[c].clone();
                    return self.skip(why, no, 1, &field);
                }
            }
        } else if let Some(c) = l.uuid.filter(|c| !layout::is_missing(cell(*c))) {
            Key::Named(cell(c).trim(), "uuid")
        } else if let Some(c) = l.bus.filter(|c| !layout::is_missing(cell(*c))) {
            Key::Named(cell(c).trim(), "pci.bus_id")
        } else {
            Key::Position
        };

        // When.
        let naive = match l.time {
            TimeCols::Stamp(c) => layout::parse_stamp(cell(c)),
            TimeCols::DateTime(d, t) => layout::parse_dmon_time(Some(cell(d)), cell(t))
                .and_then(|(d, t)| d.map(|d| d.and_time(t))),
            TimeCols::TimeOnly(t) => layout::parse_dmon_time(None, cell(t)).map(|(_, t)| {
                let (mut day, prev) = self.day.unwrap_or((self.opts.date.unwrap_or_default(), t));
                // Past midnight: the time of day goes back by more than half a day.
                if prev - t > Duration::hours(12) {
                    day = day.succ_opt().unwrap_or(day);
                }
                self.day = Some((day, t));
                day.and_time(t)
            }),
        };
        let time_col = match l.time {
            TimeCols::Stamp(c) | TimeCols::DateTime(_, c) | TimeCols::TimeOnly(c) => c,
        };
        let Some(naive) = naive else {
            let why = if complete {
                format!("{}: not a timestamp", l.names[time_col])
            } else {
                "last line cut off".to_owned()
            };
            let field = l.names[time_col].clone();
            return self.skip(why, no, 1, &field);
        };
        let dst_key = match key {
            Key::Index(i) => i,
            Key::Named(name, _) => self.keys.get(name).copied().unwrap_or(u32::MAX - 1),
            Key::Position => u32::MAX,
        };
        let Some(time) = self.to_utc(naive, dst_key) else {
            let why = format!(
                "{}: a local time skipped by a DST change",
                l.names[time_col]
            );
            let field = l.names[time_col].clone();
            return self.skip(why, no, 1, &field);
        };
        if time < earliest() || time > self.now + Duration::minutes(5) {
            let why = format!("{}: before 2000 or in the future", l.names[time_col]);
            let field = l.names[time_col].clone();
            return self.skip(why, no, 1, &field);
        }

        // What.
        let mut bad: Option<(String, String)> = None;
        let mut num = |c: Option<usize>, lo: f64, hi: f64| -> Option<f64> {
            let c = c?;
            match layout::number(cell(c), units && l.has_unit[c]) {
                Ok(Some(v)) if v < lo || v > hi => {
                    bad.get_or_insert((
                        format!("{}: {v} is outside {lo}..{hi}", l.names[c]),
                        l.names[c].clone(),
                    ));
                    None
                }
                Ok(v) => v,
                Err(why) => {
                    let why = if complete { why } else { "last line cut off" };
                    bad.get_or_insert((format!("{}: {why}", l.names[c]), l.names[c].clone()));
                    None
                }
            }
        };
        let power_w = num(Some(l.power), 0.0, MAX_GPU_POWER_W);
        let sample = GpuSample {
            time,
            gpu: 0,
            power_w: power_w.unwrap_or_default(),
            energy_mj: None,
            power_limit_w: num(l.limit, 0.0, MAX_GPU_POWER_W),
            util_pct: num(l.util, 0.0, 100.0),
            mem_used_mib: num(l.mem, 0.0, 1.0e9),
            temp_c: num(l.temp, -100.0, 300.0),
            sm_clock_mhz: num(l.sm, 0.0, 100_000.0),
            power_instant_w: num(l.instant, 0.0, MAX_GPU_POWER_W),
            power_source: l.power_source(),
        };
        let default_limit = num(l.default_limit, 0.0, MAX_GPU_POWER_W).filter(|w| *w > 0.0);
        if let Some((why, field)) = bad {
            return self.skip(why, no, 1, &field);
        }
        if power_w.is_none() {
            let why = format!("{} is [N/A]", l.names[l.power]);
            let field = l.names[l.power].clone();
            return self.skip(why, no, 1, &field);
        }
        let model = l
            .name
            .map(|c| cell(c).trim())
            .filter(|m| !layout::is_missing(m))
            .map(str::to_owned);

        match key {
            Key::Index(i) => {
                let uuid = l
                    .uuid
                    .map(|c| cell(c).trim())
                    .filter(|u| !layout::is_missing(u))
                    .map(str::to_owned);
                self.identify("index column".into());
                self.emit(i, sample, uuid, model, default_limit);
            }
            Key::Named(name, column) => {
                self.identify(format!(
                    "{column} column (indices in order of first appearance)"
                ));
                let next = self.keys.len() as u32;
                let i = *self.keys.entry(name.to_owned()).or_insert(next);
                let uuid = Some(if column == "uuid" {
                    name.to_owned()
                } else {
                    format!("pci:{name}")
                });
                self.emit(i, sample, uuid, model, default_limit);
            }
            Key::Position => {
                let row = PollRow {
                    run: self.run,
                    lost: self.lost,
                    sample,
                    model,
                    default_limit,
                };
                let t_ms = time.timestamp_millis();
                match &mut self.grouper {
                    None => {
                        self.probe.push((t_ms, no, row));
                        if self.probe.len() >= PROBE_ROWS {
                            self.decide()?;
                        }
                    }
                    Some((g, run, lost)) => {
                        let mut closed = Vec::new();
                        feed(g, run, lost, t_ms, no, row, &mut closed);
                        for c in closed {
                            self.closed(c)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn identify(&mut self, how: String) {
        if self.summary.identified_by.is_empty() {
            self.summary.identified_by = how;
        } else if !self.summary.identified_by.starts_with(&how) {
            // Two runs of different layouts: say both.
            if !self.summary.identified_by.contains(&how) {
                self.summary.identified_by = format!("{}; {how}", self.summary.identified_by);
            }
        }
    }

    /// Decides how rows group into polls from the first rows, then groups those.
    pub(super) fn decide(&mut self) -> Result<(), ImportError> {
        if self.probe.is_empty() {
            return Ok(());
        }
        let times: Vec<i64> = self.probe.iter().map(|(t, _, _)| *t).collect();
        let polls: Polls = polls::detect(&times, self.opts.gpus)
            .map_err(|e| ImportError::new(self.probe[0].1, "row", e))?;
        self.identify(format!(
            "position in each poll ({} GPU{} per poll, {})",
            polls.gpus,
            if polls.gpus == 1 { "" } else { "s" },
            if self.opts.gpus.is_some() {
                "as --gpus says"
            } else {
                "found from the rows' times"
            }
        ));
        let rows = std::mem::take(&mut self.probe);
        let (run, lost) = rows.first().map_or((0, 0), |r| (r.2.run, r.2.lost));
        self.grouper = Some((Grouper::new(polls), run, lost));
        for (t, no, row) in rows {
            let Some((g, run, lost)) = &mut self.grouper else {
                break;
            };
            let mut closed = Vec::new();
            feed(g, run, lost, t, no, row, &mut closed);
            for c in closed {
                self.closed(c)?;
            }
        }
        Ok(())
    }

    pub(super) fn closed(&mut self, c: Closed<PollRow>) -> Result<(), ImportError> {
        match c {
            Closed::Poll(rows) => {
                for (i, row) in rows.into_iter().enumerate() {
                    self.emit(i as u32, row.sample, None, row.model, row.default_limit);
                }
                Ok(())
            }
            Closed::Odd { line, rows } => {
                let gpus = self.grouper.as_ref().map_or(0, |(g, _, _)| g.gpus());
                self.skip_rows(
                    format!("rows of a poll broken by a lost line ({gpus} GPUs per poll)"),
                    line,
                    rows,
                    "row",
                )
            }
        }
    }

    pub(super) fn emit(
        &mut self,
        index: u32,
        mut sample: GpuSample,
        uuid: Option<String>,
        model: Option<String>,
        default_limit: Option<f64>,
    ) {
        sample.gpu = index;
        self.last_time.insert(index, sample.time);
        let time = sample.time;
        let opts_model = &self.opts.model;
        let found = self.summary.gpus.entry(index).or_insert_with(|| GpuFound {
            identity: GpuIdentity {
                index,
                uuid: uuid.clone().unwrap_or_else(|| UNKNOWN_UUID.to_owned()),
                model: model
                    .clone()
                    .or_else(|| opts_model.clone())
                    .unwrap_or_else(|| "unknown".to_owned()),
                default_power_limit_w: None,
                keep_known: true,
            },
            samples: 0,
            first: time,
            last: time,
        });
        if found.identity.default_power_limit_w.is_none() {
            found.identity.default_power_limit_w = default_limit;
        }
        found.samples += 1;
        found.first = found.first.min(time);
        found.last = found.last.max(time);
        self.summary.samples += 1;
        self.span = Some(match self.span {
            None => (time, time),
            Some((lo, hi)) => (lo.min(time), hi.max(time)),
        });
        self.out.push(sample);
    }
}
