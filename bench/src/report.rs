//! The figures of a run beside their bars: printed as a table and written into
//! docs/performance.md between the `bench:begin` and `bench:end` markers.

use std::fmt::Write as _;
use std::path::Path;

use ciam_core::{Clock as _, SystemClock};

use crate::machine::Machine;
use crate::{BenchError, Result};

const BEGIN: &str = "<!-- bench:begin (written by bench/run; do not edit by hand) -->";
const END: &str = "<!-- bench:end -->";

/// What a figure must reach.
#[derive(Clone, Copy, Debug)]
pub enum Bar {
    /// No bar: reported for the record.
    None,
    /// At least this ratio to the reference figure.
    AtLeastRatio(f64),
    /// At most this value.
    AtMost(f64),
}

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Figure {
    what: String,
    value: f64,
    reference: Option<(f64, String)>,
    bar: Bar,
    detail: String,
}

impl Figure {
    /// A figure held against a reference measured in the same run.
    pub fn ratio(
        what: &str,
        value: f64,
        reference: f64,
        reference_what: &str,
        bar: Bar,
        detail: String,
    ) -> Self {
        Self {
            what: what.to_owned(),
            value,
            reference: Some((reference, reference_what.to_owned())),
            bar,
            detail,
        }
    }

    /// A figure with an upper bound.
    pub fn at_most(what: &str, value: f64, limit: f64, detail: String) -> Self {
        Self {
            what: what.to_owned(),
            value,
            reference: None,
            bar: Bar::AtMost(limit),
            detail,
        }
    }

    /// A figure without a bar.
    pub fn plain(what: &str, value: f64, detail: String) -> Self {
        Self {
            what: what.to_owned(),
            value,
            reference: None,
            bar: Bar::None,
            detail,
        }
    }

    /// The ratio to the reference, if any.
    fn ratio_value(&self) -> Option<f64> {
        self.reference
            .as_ref()
            .map(|(reference, _)| self.value / reference)
    }

    /// Whether the bar is met (`None` without a bar).
    pub fn met(&self) -> Option<bool> {
        match self.bar {
            Bar::None => None,
            Bar::AtLeastRatio(min) => self.ratio_value().map(|ratio| ratio >= min),
            Bar::AtMost(max) => Some(self.value <= max),
        }
    }

    fn cells(&self) -> [String; 5] {
        let reference = self.reference.as_ref().map_or_else(
            || "".to_owned(),
            |(value, what)| format!("{} {what}", number(*value)),
        );
        let bar = match self.bar {
            Bar::None => "".to_owned(),
            Bar::AtLeastRatio(min) => format!("≥ {min} ×"),
            Bar::AtMost(max) => format!("≤ {}", number(max)),
        };
        let result = match (self.met(), self.ratio_value()) {
            (Some(true), Some(ratio)) => format!("{ratio:.2} ×, met"),
            (Some(false), Some(ratio)) => format!("{ratio:.2} ×, **missed**"),
            (Some(true), None) => "met".to_owned(),
            (Some(false), None) => "**missed**".to_owned(),
            (None, _) => "".to_owned(),
        };
        [
            self.what.clone(),
            number(self.value),
            reference,
            bar,
            format!(
                "{result}{}{}",
                if result.is_empty() { "" } else { "; " },
                self.detail
            ),
        ]
    }
}

/// A number with sensible precision.
fn number(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The whole run.
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    figures: Vec<Figure>,
    notes: Vec<String>,
}

impl Report {
    /// An empty report for `machine`.
    pub fn new(machine: Machine) -> Self {
        Self {
            machine,
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a figure and prints it at once.
    pub fn push(&mut self, figure: Figure) {
        let [what, value, reference, bar, result] = figure.cells();
        println!("  {what}: {value}  [{reference}] bar {bar}: {result}");
        self.figures.push(figure);
    }

    /// Adds a note.
    pub fn note(&mut self, note: &str) {
        println!("  note: {note}");
        self.notes.push(note.to_owned());
    }

    /// Whether every bar is met.
    pub fn all_met(&self) -> bool {
        self.figures
            .iter()
            .all(|figure| figure.met() != Some(false))
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Run of {} on {} cores ({}), {:.0} GiB, {}; commit {}.\n",
            SystemClock.now().format("%Y-%m-%d %H:%M UTC"),
            self.machine.cores,
            self.machine.cpu,
            self.machine.memory_gib,
            self.machine.system,
            self.machine.commit
        );
        let _ = writeln!(out, "Command: `{}`\n", self.machine.command);
        let _ = writeln!(out, "| what | figure | measured beside it | bar | result |");
        let _ = writeln!(out, "|---|---:|---|---|---|");
        for figure in &self.figures {
            let _ = writeln!(out, "| {} |", figure.cells().join(" | "));
        }
        for note in &self.notes {
            let _ = writeln!(out, "\n{note}");
        }
        out
    }

    /// Prints the table.
    pub fn print(&self) {
        println!("\n{}", self.machine.describe());
        println!("{}", self.markdown());
    }

    /// Replaces the generated section of `path` (or appends one).
    pub fn write_markdown(&self, path: &Path) -> Result<()> {
        let current = std::fs::read_to_string(path).unwrap_or_default();
        let section = format!("{BEGIN}\n{}{END}", self.markdown());
        let updated = match (current.find(BEGIN), current.find(END)) {
            (Some(begin), Some(end)) if begin < end => {
                format!(
                    "{}{section}{}",
                    &current[..begin],
                    &current[end + END.len()..]
                )
            }
            _ => format!("{current}\n{section}\n"),
        };
        std::fs::write(path, updated).map_err(BenchError::io(format!("writing {}", path.display())))
    }
}
