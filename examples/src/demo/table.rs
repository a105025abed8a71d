//! The demo's results table.

use std::fmt;
use std::time::Duration;

use super::Row;

/// The rows, with aligned columns and a footnote on efficiency.
#[derive(Debug)]
pub struct Table<'a> {
    /// One row per strategy.
    pub rows: &'a [Row],
}

const HEADERS: [&str; 7] = [
    "strategy",
    "succeeded",
    "failed",
    "retries",
    "429s",
    "elapsed",
    "efficiency",
];

impl Row {
    fn cells(&self) -> [String; 7] {
        [
            self.strategy.name().to_owned(),
            self.succeeded.to_string(),
            self.failed.to_string(),
            self.retries.to_string(),
            self.rate_limited.to_string(),
            format!("{:.1}s", self.elapsed.as_secs_f64()),
            self.efficiency
                .map_or_else(|| "-".to_owned(), |e| format!("{:.0}%", e * 100.0)),
        ]
    }
}

impl fmt::Display for Table<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 7]> = self.rows.iter().map(Row::cells).collect();
        let mut widths = HEADERS.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 7]| -> fmt::Result {
            write!(f, "| {:<w$} |", cells[0], w = widths[0])?;
            for (cell, w) in cells.iter().zip(widths).skip(1) {
                write!(f, " {cell:>w$} |")?;
            }
            writeln!(f)
        };
        line(f, HEADERS)?;
        write!(f, "|{}|", "-".repeat(widths[0] + 2))?;
        for w in widths.iter().skip(1) {
            write!(f, "{}:|", "-".repeat(w + 1))?;
        }
        writeln!(f)?;
        for row in &rows {
            line(f, row.each_ref().map(String::as_str))?;
        }
        Ok(())
    }
}

/// `0.4s`, `12.3s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
