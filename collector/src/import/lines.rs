//! What every importer shares: reading a log line by line in bounded memory whatever state a crash left
//! it in, and counting the lines it had to leave out, by reason, with the first line numbers.
//!
//! Real logs are cut off by a full disk or a killed job, padded with NUL bytes by a crashed file system,
//! appended to by a second run. A line is returned with its number and whether it ended in a newline;
//! one with NUL bytes or invalid UTF-8 is returned as a reason instead, so that the importer counts it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;

/// A file that cannot be imported: where and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}, {field}: {message}")]
pub struct ImportError {
    /// 1-based line number in the file.
    pub line: u64,
    /// Column (header name), `header` or `row`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ImportError {
    /// An error at `line` in `field`.
    pub(crate) fn new(
        line: u64,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ImportError {
        ImportError {
            line,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How many first line numbers a report keeps per reason.
const FIRST_LINES: usize = 5;

/// Lines of one reason left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// How many.
    pub count: u64,
    /// The first few line numbers.
    pub first_lines: Vec<u64>,
}

/// Lines left out, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skips(pub BTreeMap<String, Skipped>);

impl Skips {
    /// Counts `n` lines from `line` on, left out for `why`.
    pub(crate) fn add(&mut self, why: impl Into<String>, line: u64, n: u64) {
        let e = self.0.entry(why.into()).or_default();
        e.count += n;
        if e.first_lines.len() < FIRST_LINES {
            e.first_lines.push(line);
        }
    }

    /// Counts a line left out for `why`, or with `strict` refuses the file there (naming `field`).
    pub(crate) fn skip(
        &mut self,
        strict: bool,
        why: String,
        line: u64,
        field: &str,
    ) -> Result<(), ImportError> {
        if strict {
            return Err(ImportError::new(line, field, why));
        }
        self.add(why, line, 1);
        Ok(())
    }

    /// Lines left out in all.
    pub fn total(&self) -> u64 {
        self.0.values().map(|s| s.count).sum()
    }

    #[cfg(test)]
    /// How many were left out for `why`.
    pub(crate) fn count(&self, why: &str) -> u64 {
        self.0.get(why).map_or(0, |s| s.count)
    }

    /// The report's lines: `  N: why (lines a, b, ...)`.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(why, s)| {
                let first: Vec<String> = s.first_lines.iter().map(u64::to_string).collect();
                let more = if s.count > s.first_lines.len() as u64 {
                    ", ..."
                } else {
                    ""
                };
                let word = if s.first_lines.len() == 1 && s.count == 1 {
                    "line"
                } else {
                    "lines"
                };
                format!("{}: {why} ({word} {}{more})", s.count, first.join(", "))
            })
            .collect()
    }
}

impl fmt::Display for Skips {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in self.lines() {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// One line as read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// Text without its line end; `complete` is false for a last line without a newline.
    Text {
        /// 1-based line number.
        no: u64,
        /// The text, without `\r\n` or `\n`.
        text: &'a str,
        /// Whether a newline ended it.
        complete: bool,
    },
    /// A line that is no text: NUL bytes (a crash's padding) or invalid UTF-8.
    Broken {
        /// 1-based line number.
        no: u64,
        /// Why.
        why: &'static str,
    },
}

/// Reads lines of any length into one reused buffer.
pub(crate) struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    no: u64,
}

impl<R: BufRead> Lines<R> {
    /// Reads `reader`.
    pub(crate) fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            buf: Vec::with_capacity(256),
            no: 0,
        }
    }

    /// The next line, `None` at the end of the file.
    pub(crate) fn next_line(&mut self) -> std::io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.no += 1;
        let complete = self.buf.last() == Some(&b'\n');
        let mut end = self.buf.len();
        if complete {
            end -= 1;
            if end > 0 && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
        }
        let bytes = &self.buf[..end];
        if bytes.contains(&0) {
            return Ok(Some(Line::Broken {
                no: self.no,
                why: "NUL bytes (a crash's padding)",
            }));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(Some(Line::Text {
                no: self.no,
                text,
                complete,
            })),
            Err(_) => Ok(Some(Line::Broken {
                no: self.no,
                why: "not UTF-8 text",
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_report_nul_padding_and_a_missing_final_newline() {
        let input: &[u8] = b"a,b\r\nc\n\0\0\0\nlast";
        let mut lines = Lines::new(input);
        let mut got = Vec::new();
        while let Some(l) = lines.next_line().expect("read") {
            got.push(format!("{l:?}"));
        }
        assert_eq!(
            got,
            vec![
                r#"Text { no: 1, text: "a,b", complete: true }"#,
                r#"Text { no: 2, text: "c", complete: true }"#,
                r#"Broken { no: 3, why: "NUL bytes (a crash's padding)" }"#,
                r#"Text { no: 4, text: "last", complete: false }"#,
            ]
        );
    }

    #[test]
    fn skips_keep_counts_and_first_lines() {
        let mut s = Skips::default();
        for l in 1..=7 {
            s.add("cut off", l * 10, 1);
        }
        s.add("blank line", 3, 1);
        assert_eq!(s.total(), 8);
        assert_eq!(
            s.lines(),
            vec![
                "1: blank line (line 3)".to_owned(),
                "7: cut off (lines 10, 20, 30, 40, 50, ...)".to_owned()
            ]
        );
    }
}
