//! `smartplan import FILE [--dry-run] [--report REPORT.csv]`: the initial user import.
//!
//! A reader thread streams the file (CSV, JSON Lines or a JSON array, through
//! `ciam_core::imports::files`) into chunks of [`CHUNK_ROWS`] rows and hands them over a channel
//! that holds at most two chunks, so memory stays flat whatever the file's size. The async side
//! imports chunk after chunk with `Imports::import_chunk` as the system principal, appends one
//! line per row to the report (CSV: line, email, outcome, identity, reason) and moves the
//! progress bar (bytes read; drawn only on a terminal). Every row lands whole or not at all, so
//! an interrupted import is finished by running the same file again (rows already there are
//! `unchanged`).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ciam_core::imports::files::{self, Format, ReadRow};
use ciam_core::imports::{ImportError, ImportMode, PendingChunk, RowError, RowOutcome, RowReport};
use ciam_core::{Ciam, Principal};

/// Rows per chunk handed to the importer (one commit per chunk on the fast path).
pub const CHUNK_ROWS: usize = 1_000;

/// `smartplan import` arguments.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The file: `.csv` (with a header line), `.jsonl`/`.ndjson` or `.json` (an array).
    pub file: PathBuf,
    /// Check every row and report what would happen; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the per-row report goes (CSV; default: FILE.report.csv beside the file).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The file's format when its name does not tell (csv, jsonl, json).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<Format>,
}

fn parse_format(text: &str) -> Result<Format, String> {
    match text {
        "csv" => Ok(Format::Csv),
        "jsonl" | "ndjson" => Ok(Format::JsonLines),
        "json" => Ok(Format::JsonArray),
        other => Err(format!("unknown format {other:?}; use csv, jsonl or json")),
    }
}

/// What an import did, row by row counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Rows read (readable or not).
    pub rows: u64,
    /// New people created.
    pub created: u64,
    /// Existing people added to an organization.
    pub added: u64,
    /// Rows already in place.
    pub unchanged: u64,
    /// Dry run: rows that would create a person.
    pub would_create: u64,
    /// Dry run: rows that would add a person to an organization.
    pub would_add: u64,
    /// Rows rejected (see the report for the reason).
    pub rejected: u64,
}

impl ImportSummary {
    fn count(&mut self, outcome: &RowOutcome) {
        self.rows += 1;
        match outcome {
            RowOutcome::Created(_) => self.created += 1,
            RowOutcome::AddedToOrganization(_) => self.added += 1,
            RowOutcome::Unchanged(_) => self.unchanged += 1,
            RowOutcome::WouldCreate => self.would_create += 1,
            RowOutcome::WouldAdd => self.would_add += 1,
            RowOutcome::Rejected(_) => self.rejected += 1,
        }
    }
}

/// Why an import stopped before the end of the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportCommandError {
    /// The input file.
    #[error("cannot read {path}: {source}")]
    Input {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The format cannot be told from the name.
    #[error("cannot tell the format of {0} from its name; pass --format csv, jsonl or json")]
    UnknownFormat(String),
    /// The report file.
    #[error("cannot write the report {path}: {source}")]
    Report {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The import stopped (the database failed, or the import was refused). Rows reported
    /// before stay written; running the same file again finishes the import.
    #[error(
        "the import stopped after {written} rows: {source}; rows before that are written, run the same file again to finish"
    )]
    Stopped {
        /// Rows reported before the stop.
        written: u64,
        /// Why.
        source: ImportError,
    },
    /// The reader thread failed.
    #[error("the file reader stopped unexpectedly")]
    Reader,
}

/// Where the report goes by default: `FILE.report.csv`.
pub fn default_report_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".report.csv");
    PathBuf::from(name)
}

/// A reader that counts the bytes read (for the progress bar).
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Runs the import of `args` through `ciam`, writing progress and the summary to `out`.
pub async fn run(
    ciam: &Ciam,
    args: &ImportArgs,
    out: &mut dyn Write,
) -> Result<ImportSummary, ImportCommandError> {
    let path_text = args.file.display().to_string();
    let format = match args.format {
        Some(format) => format,
        None => Format::from_file_name(&path_text)
            .ok_or_else(|| ImportCommandError::UnknownFormat(path_text.clone()))?,
    };
    let input = File::open(&args.file).map_err(|source| ImportCommandError::Input {
        path: path_text.clone(),
        source,
    })?;
    let size = input.metadata().map(|m| m.len()).unwrap_or(0);
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| default_report_path(&args.file));
    let report_error = |source| ImportCommandError::Report {
        path: report_path.display().to_string(),
        source,
    };
    let mut report = csv::Writer::from_writer(BufWriter::new(
        File::create(&report_path).map_err(report_error)?,
    ));
    report
        .write_record(["line", "email", "outcome", "identity", "reason"])
        .map_err(|e| report_error(e.into()))?;

    let read = Arc::new(AtomicU64::new(0));
    let (sender, mut chunks) = tokio::sync::mpsc::channel::<Vec<ReadRow>>(2);
    let counting = Counting {
        inner: input,
        read: read.clone(),
    };
    let reader = std::thread::spawn(move || {
        let mut chunk = Vec::with_capacity(CHUNK_ROWS);
        for row in files::rows(counting, format) {
            chunk.push(row);
            if chunk.len() == CHUNK_ROWS {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
                if sender.blocking_send(full).is_err() {
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = sender.blocking_send(chunk);
        }
    });

    let progress = indicatif::ProgressBar::new(size);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {msg} ({elapsed}, about {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mode = if args.dry_run {
        ImportMode::DryRun
    } else {
        ImportMode::Apply
    };
    let started = Instant::now();
    let mut summary = ImportSummary::default();
    let mut imports = ciam.imports();
    let principal = Principal::System;
    // Chunk n is written while chunk n + 1 is checked (parsing, validation and authorization
    // on this thread; SQLite's work on its connection's thread), always finished in file
    // order.
    let mut pending = None;
    loop {
        let next = chunks.recv().await;
        let (written, checked) = match (pending.take(), next) {
            (None, None) => break,
            (None, Some(chunk)) => (
                None,
                Some(imports.check_chunk(&principal, chunk, mode).await),
            ),
            (Some(chunk), None) => (Some(PendingChunk::finish(chunk).await), None),
            (Some(chunk), Some(next)) => {
                let (written, checked) = tokio::join!(
                    PendingChunk::finish(chunk),
                    imports.check_chunk(&principal, next, mode)
                );
                (Some(written), Some(checked))
            }
        };
        let outcome = (|| -> Result<(), ImportCommandError> {
            if let Some(written) = written {
                let reports = written.map_err(|source| ImportCommandError::Stopped {
                    written: summary.rows,
                    source,
                })?;
                for row in &reports {
                    summary.count(&row.outcome);
                    report
                        .write_record(report_line(row))
                        .map_err(|e| report_error(e.into()))?;
                }
            }
            if let Some(checked) = checked {
                pending = Some(checked.map_err(|source| ImportCommandError::Stopped {
                    written: summary.rows,
                    source,
                })?);
            }
            Ok(())
        })();
        if let Err(error) = outcome {
            progress.abandon();
            let _ = report.flush();
            drop(chunks);
            let _ = reader.join();
            return Err(error);
        }
        progress.set_position(read.load(Ordering::Relaxed));
        progress.set_message(format!("{} rows", summary.rows));
    }
    reader.join().map_err(|_| ImportCommandError::Reader)?;
    report.flush().map_err(report_error)?;
    progress.finish_and_clear();
    write_summary(out, &summary, args.dry_run, started.elapsed(), &report_path);
    Ok(summary)
}

fn report_line(row: &RowReport) -> [String; 5] {
    let (identity, reason) = match &row.outcome {
        RowOutcome::Created(id)
        | RowOutcome::AddedToOrganization(id)
        | RowOutcome::Unchanged(id) => (id.to_string(), String::new()),
        RowOutcome::WouldCreate | RowOutcome::WouldAdd => (String::new(), String::new()),
        RowOutcome::Rejected(error) => (String::new(), reason_text(error)),
    };
    [
        row.line.to_string(),
        row.email.clone(),
        row.outcome.name().to_owned(),
        identity,
        reason,
    ]
}

fn reason_text(error: &RowError) -> String {
    error.to_string()
}

fn write_summary(
    out: &mut dyn Write,
    summary: &ImportSummary,
    dry_run: bool,
    elapsed: Duration,
    report: &Path,
) {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        summary.rows as f64 / seconds
    } else {
        0.0
    };
    let _ = if dry_run {
        writeln!(
            out,
            "dry run: {} rows read, {} would be created, {} would be added to an organization, {} already there, {} rejected; nothing was written",
            summary.rows,
            summary.would_create,
            summary.would_add,
            summary.unchanged,
            summary.rejected
        )
    } else {
        writeln!(
            out,
            "imported: {} rows read, {} created, {} added to an organization, {} already there, {} rejected",
            summary.rows, summary.created, summary.added, summary.unchanged, summary.rejected
        )
    };
    let _ = writeln!(
        out,
        "{:.1} s ({rate:.0} rows/s); the report of every row is in {}",
        seconds,
        report.display()
    );
    if summary.rejected > 0 {
        let _ = writeln!(
            out,
            "{} rows were rejected and changed nothing: the report says why; fix them and run the file again",
            summary.rejected
        );
    }
}
