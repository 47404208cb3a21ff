//! Reading import files row by row, in constant memory: CSV with a header line, JSON Lines
//! (one object per line) and a JSON array of objects.
//!
//! CSV columns (header names, any order): `email`, `given_name`, `family_name`, `phone`,
//! `organization` (the CRM account id), `business_roles` (keys separated by `;` or `|`),
//! `password_hash`. `phone`, `business_roles` and `password_hash` may be left out or empty.
//! JSON objects use the same names, with `business_roles` as an array of keys; unknown fields
//! are refused so that a misspelt column is not silently ignored.
//!
//! ```
//! use ciam_core::imports::files::{Format, rows};
//! let csv = "email,given_name,family_name,organization,business_roles\n\
//!            ann@city.example,Ann,Lee,CRM-1,energy-manager;viewer\n";
//! let read: Vec<_> = rows(csv.as_bytes(), Format::Csv).collect();
//! let row = read[0].as_ref().unwrap();
//! assert_eq!((row.line, row.business_roles.len()), (2, 2));
//! ```

use std::io::{BufRead, Read};

use serde::Deserialize;

use super::ImportRow;

/// The largest JSON object of one row, in bytes (a longer one is reported, not read).
pub const MAX_JSON_ROW_BYTES: usize = 64 * 1024;

/// The format of an import file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    JsonLines,
    /// One JSON array of objects.
    JsonArray,
}

impl Format {
    /// The format a file name suggests (`.csv`, `.jsonl`/`.ndjson`, `.json`), if any.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(Self::Csv)
        } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            Some(Self::JsonLines)
        } else if lower.ends_with(".json") {
            Some(Self::JsonArray)
        } else {
            None
        }
    }
}

/// One row read, or the line number and the reason it could not be read.
pub type ReadRow = Result<ImportRow, (u64, String)>;

/// The rows of `input` in `format`, read lazily.
pub fn rows<'r, R: Read + 'r>(input: R, format: Format) -> Box<dyn Iterator<Item = ReadRow> + 'r> {
    match format {
        Format::Csv => Box::new(CsvRows::new(input)),
        Format::JsonLines => Box::new(JsonLineRows {
            lines: std::io::BufReader::new(input),
            line: 0,
            buffer: String::new(),
            done: false,
        }),
        Format::JsonArray => Box::new(JsonArrayRows::new(input)),
    }
}

/// A CSV record as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvRow {
    email: String,
    given_name: String,
    family_name: String,
    #[serde(default)]
    phone: Option<String>,
    organization: String,
    #[serde(default)]
    business_roles: Option<String>,
    #[serde(default)]
    password_hash: Option<String>,
}

struct CsvRows<R: Read> {
    reader: csv::Reader<R>,
    record: csv::StringRecord,
    headers: Option<Result<csv::StringRecord, String>>,
    done: bool,
}

impl<R: Read> CsvRows<R> {
    fn new(input: R) -> Self {
        let reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(false)
            .from_reader(input);
        Self {
            reader,
            record: csv::StringRecord::new(),
            headers: None,
            done: false,
        }
    }
}

impl<R: Read> Iterator for CsvRows<R> {
    type Item = ReadRow;

    fn next(&mut self) -> Option<ReadRow> {
        if self.done {
            return None;
        }
        let headers = match self.headers.get_or_insert_with(|| {
            self.reader
                .headers()
                .cloned()
                .map_err(|error| format!("the header line cannot be read: {error}"))
        }) {
            Ok(headers) => headers.clone(),
            Err(message) => {
                self.done = true;
                return Some(Err((1, message.clone())));
            }
        };
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let line = self.record.position().map_or(0, csv::Position::line);
                Some(
                    self.record
                        .deserialize::<CsvRow>(Some(&headers))
                        .map(|row| ImportRow {
                            line,
                            email: row.email,
                            given_name: row.given_name,
                            family_name: row.family_name,
                            phone: row.phone.filter(|p| !p.is_empty()),
                            organization: row.organization,
                            business_roles: row
                                .business_roles
                                .unwrap_or_default()
                                .split([';', '|'])
                                .map(str::trim)
                                .filter(|key| !key.is_empty())
                                .map(str::to_owned)
                                .collect(),
                            password_hash: row.password_hash.filter(|h| !h.is_empty()),
                        })
                        .map_err(|error| (line, csv_message(&error))),
                )
            }
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                // An I/O error ends the file; a malformed record is reported and skipped.
                if matches!(error.kind(), csv::ErrorKind::Io(_)) {
                    self.done = true;
                }
                Some(Err((line, csv_message(&error))))
            }
        }
    }
}

fn csv_message(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(field) => format!("column {}: {}", field + 1, err.kind()),
            None => err.kind().to_string(),
        },
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("expected {expected_len} columns, found {len}"),
        _ => error.to_string(),
    }
}

struct JsonLineRows<R: Read> {
    lines: std::io::BufReader<R>,
    line: u64,
    buffer: String,
    done: bool,
}

impl<R: Read> Iterator for JsonLineRows<R> {
    type Item = ReadRow;

    fn next(&mut self) -> Option<ReadRow> {
        loop {
            if self.done {
                return None;
            }
            self.buffer.clear();
            self.line += 1;
            let read = (&mut self.lines)
                .take(MAX_JSON_ROW_BYTES as u64 + 1)
                .read_line(&mut self.buffer);
            match read {
                Ok(0) => return None,
                Ok(_) if self.buffer.len() > MAX_JSON_ROW_BYTES && !self.buffer.ends_with('\n') => {
                    // Skip the rest of the over-long line.
                    let mut sink = Vec::new();
                    if self.lines.read_until(b'\n', &mut sink).is_err() {
                        self.done = true;
                    }
                    return Some(Err((
                        self.line,
                        format!("a row is longer than {MAX_JSON_ROW_BYTES} bytes"),
                    )));
                }
                Ok(_) => {
                    let text = self.buffer.trim();
                    if text.is_empty() {
                        continue;
                    }
                    return Some(parse_object(text.as_bytes(), self.line));
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err((
                        self.line,
                        format!("the file cannot be read: {error}"),
                    )));
                }
            }
        }
    }
}

fn parse_object(bytes: &[u8], line: u64) -> ReadRow {
    serde_json::from_slice::<ImportRow>(bytes)
        .map(|mut row| {
            row.line = line;
            row
        })
        .map_err(|error| (line, format!("invalid row: {error}")))
}

/// Splits a top-level JSON array into its elements without reading the whole file: a small
/// scanner tracks strings, escapes and nesting, and hands each element to serde_json.
struct JsonArrayRows<R: Read> {
    bytes: std::io::Bytes<std::io::BufReader<R>>,
    state: ArrayState,
    item: u64,
    element: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ArrayState {
    /// Before the opening bracket.
    Start,
    /// Inside the array, between elements.
    Between,
    /// After the closing bracket, or after an unrecoverable error.
    Done,
}

impl<R: Read> JsonArrayRows<R> {
    fn new(input: R) -> Self {
        Self {
            bytes: std::io::BufReader::new(input).bytes(),
            state: ArrayState::Start,
            item: 0,
            element: Vec::new(),
        }
    }

    fn fail(&mut self, message: String) -> Option<ReadRow> {
        self.state = ArrayState::Done;
        Some(Err((self.item.max(1), message)))
    }

    fn next_byte(&mut self) -> Result<Option<u8>, String> {
        match self.bytes.next() {
            None => Ok(None),
            Some(Ok(byte)) => Ok(Some(byte)),
            Some(Err(error)) => Err(format!("the file cannot be read: {error}")),
        }
    }

    fn next_significant(&mut self) -> Result<Option<u8>, String> {
        loop {
            match self.next_byte()? {
                Some(b' ' | b'\t' | b'\r' | b'\n') => continue,
                other => return Ok(other),
            }
        }
    }
}

impl<R: Read> Iterator for JsonArrayRows<R> {
    type Item = ReadRow;

    fn next(&mut self) -> Option<ReadRow> {
        if self.state == ArrayState::Start {
            match self.next_significant() {
                Ok(Some(b'[')) => self.state = ArrayState::Between,
                Ok(_) => return self.fail("the file must be a JSON array of objects".to_owned()),
                Err(message) => return self.fail(message),
            }
        }
        if self.state == ArrayState::Done {
            return None;
        }
        // Between elements: skip separators, find the next element or the end.
        let first = loop {
            match self.next_significant() {
                Ok(Some(b',')) => continue,
                Ok(Some(b']')) => {
                    self.state = ArrayState::Done;
                    return None;
                }
                Ok(Some(byte)) => break byte,
                Ok(None) => return self.fail("the JSON array is not closed".to_owned()),
                Err(message) => return self.fail(message),
            }
        };
        self.item += 1;
        self.element.clear();
        self.element.push(first);
        let (mut depth, mut in_string, mut escaped) = match first {
            b'{' | b'[' => (1_u32, false, false),
            b'"' => (0, true, false),
            _ => (0, false, false),
        };
        // Read until the element is complete: nesting back to zero outside a string, or for a
        // scalar the next separator.
        loop {
            if depth == 0 && !in_string && matches!(first, b'{' | b'[' | b'"') {
                break;
            }
            let byte = match self.next_byte() {
                Ok(Some(byte)) => byte,
                Ok(None) => return self.fail("the JSON array ends inside an element".to_owned()),
                Err(message) => return self.fail(message),
            };
            if !matches!(first, b'{' | b'[' | b'"') && depth == 0 && matches!(byte, b',' | b']') {
                if byte == b']' {
                    self.state = ArrayState::Done;
                }
                break;
            }
            if self.element.len() >= MAX_JSON_ROW_BYTES {
                return self.fail(format!(
                    "item {} is longer than {MAX_JSON_ROW_BYTES} bytes",
                    self.item
                ));
            }
            self.element.push(byte);
            if in_string {
                match (escaped, byte) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Some(parse_object(&self.element, self.item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, format: Format) -> Vec<ReadRow> {
        rows(text.as_bytes(), format).collect()
    }

    #[test]
    fn csv_rows_with_optional_columns_in_any_order() {
        let text = "organization,family_name,given_name,email,business_roles,phone,password_hash\n\
                    CRM-1,Lee,Ann,ann@city.example,energy-manager|viewer,+358401234567,\n\
                    CRM-2,Stone,Bob,bob@koko.example,,,$2b$10$abc\n";
        let got = read(text, Format::Csv);
        let ann = got[0].as_ref().unwrap();
        assert_eq!(ann.line, 2);
        assert_eq!(ann.business_roles, vec!["energy-manager", "viewer"]);
        assert_eq!(ann.phone.as_deref(), Some("+358401234567"));
        assert_eq!(ann.password_hash, None);
        let bob = got[1].as_ref().unwrap();
        assert_eq!(bob.line, 3);
        assert!(bob.business_roles.is_empty());
        assert_eq!(bob.phone, None);
        assert_eq!(bob.password_hash.as_deref(), Some("$2b$10$abc"));
    }

    #[test]
    fn csv_errors_name_the_line_and_go_on() {
        let text = "email,given_name,family_name,organization\n\
                    a@x.example,A,B\n\
                    c@x.example,C,D,CRM-1\n";
        let got = read(text, Format::Csv);
        assert_eq!(got.len(), 2);
        let (line, message) = got[0].as_ref().unwrap_err();
        assert_eq!(*line, 2);
        assert!(message.contains("columns"), "{message}");
        assert_eq!(got[1].as_ref().unwrap().email, "c@x.example");
    }

    #[test]
    fn csv_refuses_unknown_columns() {
        let text = "email,given_name,family_name,organization,emial\na@x.example,A,B,C,x\n";
        assert!(read(text, Format::Csv)[0].is_err());
    }

    #[test]
    fn json_lines_skip_blank_lines_and_report_bad_ones() {
        let text = "{\"email\":\"a@x.example\",\"given_name\":\"A\",\"family_name\":\"B\",\"organization\":\"C\"}\n\n\
                    {\"email\":1}\n";
        let got = read(text, Format::JsonLines);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().line, 1);
        assert_eq!(got[1].as_ref().unwrap_err().0, 3);
    }

    #[test]
    fn json_array_elements_stream_one_by_one() {
        let text = r#" [ {"email":"a@x.example","given_name":"A]{","family_name":"B\"}","organization":"C","business_roles":["r1","r2"]},
            {"email":"b@x.example","given_name":"B","family_name":"C","organization":"D"} ] "#;
        let got = read(text, Format::JsonArray);
        assert_eq!(got.len(), 2, "{got:?}");
        let first = got[0].as_ref().unwrap();
        assert_eq!(first.given_name, "A]{");
        assert_eq!(first.family_name, "B\"}");
        assert_eq!(first.business_roles, vec!["r1", "r2"]);
        assert_eq!(got[1].as_ref().unwrap().line, 2);
    }

    #[test]
    fn json_array_errors() {
        assert!(read("{}", Format::JsonArray)[0].is_err());
        assert!(read("[{\"email\":", Format::JsonArray)[0].is_err());
        let got = read("[1, {\"email\":\"a\"}]", Format::JsonArray);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(Result::is_err));
        assert!(read("[]", Format::JsonArray).is_empty());
    }

    #[test]
    fn format_from_file_name() {
        assert_eq!(Format::from_file_name("users.CSV"), Some(Format::Csv));
        assert_eq!(Format::from_file_name("u.jsonl"), Some(Format::JsonLines));
        assert_eq!(Format::from_file_name("u.json"), Some(Format::JsonArray));
        assert_eq!(Format::from_file_name("u.txt"), None);
    }
}
