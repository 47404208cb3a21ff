//! Fuzzes the initial user import as `smartplan import` runs it: the file readers
//! (`ciam_core::imports::files::rows`, CSV, JSON Lines and JSON array) over arbitrary bytes, then
//! the rows read through `Imports::import_chunk` (validation of every field, a dry run, and the
//! real write) against a fresh in-memory world.
//!
//! Checks beyond "no panic": every row read carries a line number within the input's lines,
//! and a row that the dry run accepts is accepted by the real import too (same outcome class).
#![no_main]

#[path = "../common/world.rs"]
mod world;

use ciam_core::imports::files::{Format, rows};
use ciam_core::imports::{ImportMode, RowOutcome};
use libfuzzer_sys::fuzz_target;

/// Rows handed to the import per input (enough for every path, small enough to stay fast).
const MAX_ROWS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let lines = data.iter().filter(|byte| **byte == b'\n').count() as u64 + 1;
    for format in [Format::Csv, Format::JsonLines, Format::JsonArray] {
        let read: Vec<_> = rows(data, format).take(MAX_ROWS).collect();
        for row in &read {
            let line = match row {
                Ok(row) => row.line,
                Err((line, _)) => *line,
            };
            // JSON array rows are numbered by item, which cannot exceed the bytes read.
            let bound = if format == Format::JsonArray {
                data.len() as u64 + 1
            } else {
                lines
            };
            assert!(
                line <= bound,
                "line {line} past the end ({bound}) in {format:?}"
            );
        }
        if read.is_empty() {
            continue;
        }
        let _ = world::block_on(async {
            let Some(w) = world::world().await else {
                return;
            };
            let mut imports = w.ciam.imports();
            let system = ciam_core::Principal::System;
            let Ok(dry) = imports
                .import_chunk(&system, read.clone(), ImportMode::DryRun)
                .await
            else {
                return;
            };
            let Ok(applied) = imports.import_chunk(&system, read, ImportMode::Apply).await else {
                return;
            };
            assert_eq!(dry.len(), applied.len());
            for (dry, applied) in dry.iter().zip(&applied) {
                let dry_rejected = matches!(dry.outcome, RowOutcome::Rejected(_));
                let applied_rejected = matches!(applied.outcome, RowOutcome::Rejected(_));
                assert_eq!(
                    dry_rejected, applied_rejected,
                    "dry run {:?} but import {:?} (line {})",
                    dry.outcome, applied.outcome, dry.line
                );
            }
        });
    }
});
