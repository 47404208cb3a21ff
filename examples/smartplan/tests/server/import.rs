//! `smartplan import`: the command in process on SQLite (outcomes, report, dry run, rerun,
//! formats, bad files), and the real binary on a SQLite file with the configuration from the
//! environment.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ciam_core::contact::EmailAddress;
use ciam_core::delivery::DevMailbox;
use smartplan::cli::import::{self, ImportArgs, ImportCommandError, ImportSummary};
use smartplan::demo::{CITY_GROUP_ACCOUNT, SCOTT, SeedOptions};

use crate::support::{self, Backend, Options};

fn sqlite_app() -> Options {
    Options {
        backend: Backend::Sqlite,
        ..Options::default()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

fn args(file: &Path, dry_run: bool) -> ImportArgs {
    ImportArgs {
        file: file.to_path_buf(),
        dry_run,
        report: None,
        format: None,
    }
}

/// The report as (line, email, outcome, reason) rows.
fn report(file: &Path) -> Vec<(String, String, String, String)> {
    let mut reader = csv::Reader::from_path(import::default_report_path(file)).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["line", "email", "outcome", "identity", "reason"]
    );
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[0].to_owned(),
                r[1].to_owned(),
                r[2].to_owned(),
                r[4].to_owned(),
            )
        })
        .collect()
}

fn city_group_file() -> String {
    let bcrypt_hash = bcrypt::hash("imported from the old portal", 4).unwrap();
    format!(
        "email,given_name,family_name,phone,organization,business_roles,password_hash\n\
         anna.berg@citygroup.example,Anna,Berg,+358401234567,{CITY_GROUP_ACCOUNT},energy-manager,\n\
         {SCOTT},Scott,Long,,{CITY_GROUP_ACCOUNT},,\n\
         not-an-email,Bad,Row,,{CITY_GROUP_ACCOUNT},,\n\
         olli.outsider@elsewhere.example,Olli,Outsider,,ACC-404,,\n\
         bert.bcrypt@citygroup.example,Bert,Bcrypt,,{CITY_GROUP_ACCOUNT},energy-manager;billing-viewer,{bcrypt_hash}\n"
    )
}

#[tokio::test]
async fn a_csv_file_lands_row_by_row_with_a_report_and_a_rerun_changes_nothing() {
    let app = support::build(sqlite_app()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "users.csv", &city_group_file());

    let mut out = Vec::new();
    let summary = import::run(&app.state.ciam, &args(&file, false), &mut out)
        .await
        .unwrap();
    assert_eq!(
        summary,
        ImportSummary {
            rows: 5,
            created: 2,
            added: 1,
            rejected: 2,
            ..ImportSummary::default()
        }
    );
    let printed = String::from_utf8(out).unwrap();
    assert!(printed.contains("2 created"), "{printed}");
    assert!(printed.contains("2 rows were rejected"), "{printed}");

    let rows = report(&file);
    let outcomes: Vec<(&str, &str)> = rows
        .iter()
        .map(|(line, _, outcome, _)| (line.as_str(), outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("2", "created"),
            ("3", "added"),
            ("4", "rejected"),
            ("5", "rejected"),
            ("6", "created"),
        ]
    );
    assert!(rows[2].3.contains("email"), "reason: {}", rows[2].3);
    assert!(rows[3].3.contains("organization"), "reason: {}", rows[3].3);

    let anna = app
        .state
        .store
        .identity_by_email(&EmailAddress::parse("anna.berg@citygroup.example").unwrap())
        .await
        .unwrap()
        .expect("anna was imported");
    assert_eq!(anna.name.full(), "Anna Berg");
    let city_group = app.cast().city_group;
    let memberships = app
        .state
        .store
        .memberships_of_identity(anna.id)
        .await
        .unwrap();
    assert!(memberships.iter().any(|m| m.organization == city_group));

    // The same file again: everything already there; the rejected rows still rejected.
    let mut out = Vec::new();
    let again = import::run(&app.state.ciam, &args(&file, false), &mut out)
        .await
        .unwrap();
    assert_eq!(
        again,
        ImportSummary {
            rows: 5,
            unchanged: 3,
            rejected: 2,
            ..ImportSummary::default()
        }
    );
}

#[tokio::test]
async fn a_dry_run_reports_what_would_happen_and_writes_nothing() {
    let app = support::build(sqlite_app()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "users.csv", &city_group_file());
    let events = |store: ciam_core::store::SharedStore| async move {
        store
            .events(ciam_core::store::EventQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .len()
    };
    let before = events(app.state.store.clone()).await;

    let mut out = Vec::new();
    let summary = import::run(&app.state.ciam, &args(&file, true), &mut out)
        .await
        .unwrap();
    assert_eq!(
        summary,
        ImportSummary {
            rows: 5,
            would_create: 2,
            would_add: 1,
            rejected: 2,
            ..ImportSummary::default()
        }
    );
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains("nothing was written")
    );
    assert!(
        app.state
            .store
            .identity_by_email(&EmailAddress::parse("anna.berg@citygroup.example").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(events(app.state.store.clone()).await, before);
}

#[tokio::test]
async fn json_lines_and_json_arrays_import_like_csv_and_bad_files_are_refused() {
    let app = support::build(sqlite_app()).await;
    let dir = tempfile::tempdir().unwrap();
    let lines = write(
        dir.path(),
        "users.jsonl",
        &format!(
            "{{\"email\":\"jo.lines@citygroup.example\",\"given_name\":\"Jo\",\"family_name\":\"Lines\",\"organization\":\"{CITY_GROUP_ACCOUNT}\",\"business_roles\":[\"energy-manager\"]}}\n{{broken\n"
        ),
    );
    let summary = import::run(&app.state.ciam, &args(&lines, false), &mut Vec::new())
        .await
        .unwrap();
    assert_eq!((summary.created, summary.rejected), (1, 1));
    let array = write(
        dir.path(),
        "users.json",
        &format!(
            "[{{\"email\":\"ari.array@citygroup.example\",\"given_name\":\"Ari\",\"family_name\":\"Array\",\"organization\":\"{CITY_GROUP_ACCOUNT}\"}}]"
        ),
    );
    let summary = import::run(&app.state.ciam, &args(&array, false), &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(summary.created, 1);

    // A name that does not tell the format, and a file that is not there: clear errors.
    let unknown = write(dir.path(), "users.txt", "email\n");
    let error = import::run(&app.state.ciam, &args(&unknown, false), &mut Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(error, ImportCommandError::UnknownFormat(_)));
    assert!(error.to_string().contains("--format"), "{error}");
    let missing = dir.path().join("missing.csv");
    let error = import::run(&app.state.ciam, &args(&missing, false), &mut Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(error, ImportCommandError::Input { .. }), "{error}");
    // A CSV with an unknown column: every row rejected, nothing written.
    let misspelt = write(
        dir.path(),
        "misspelt.csv",
        &format!(
            "emial,given_name,family_name,organization\nzed@citygroup.example,Zed,Z,{CITY_GROUP_ACCOUNT}\n"
        ),
    );
    let summary = import::run(&app.state.ciam, &args(&misspelt, false), &mut Vec::new())
        .await
        .unwrap();
    assert_eq!((summary.rows, summary.rejected), (1, 1));
}

#[tokio::test]
async fn more_rows_than_a_chunk_are_imported_in_several_commits() {
    let app = support::build(sqlite_app()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("email,given_name,family_name,organization\n");
    let total = import::CHUNK_ROWS + 10;
    for n in 0..total {
        text.push_str(&format!(
            "person{n}@citygroup.example,Person,Number {n},{CITY_GROUP_ACCOUNT}\n"
        ));
    }
    let file = write(dir.path(), "many.csv", &text);
    let summary = import::run(&app.state.ciam, &args(&file, false), &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(summary.created, total as u64);
    assert_eq!(report(&file).len(), total);
}

/// Chunk n + 1 is checked while chunk n is written: people repeated in a later chunk are
/// still found (unchanged, not created twice), a bad row in the middle changes nothing, and
/// the report keeps the file's order.
#[tokio::test]
async fn people_repeated_in_later_chunks_are_found_while_chunks_overlap() {
    let app = support::build(sqlite_app()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("email,given_name,family_name,organization\n");
    let first = import::CHUNK_ROWS;
    let mut expected = Vec::new();
    for n in 0..first {
        text.push_str(&format!(
            "person{n}@citygroup.example,Person,Number {n},{CITY_GROUP_ACCOUNT}\n"
        ));
        expected.push("created");
    }
    // The second chunk starts with people of the first, then a bad row, then new people.
    for n in 0..5 {
        text.push_str(&format!(
            "PERSON{n}@citygroup.example,Person,Number {n},{CITY_GROUP_ACCOUNT}\n"
        ));
        expected.push("unchanged");
    }
    text.push_str(&format!("not-an-email,Bad,Row,{CITY_GROUP_ACCOUNT}\n"));
    expected.push("rejected");
    for n in first..first + first / 2 {
        text.push_str(&format!(
            "person{n}@citygroup.example,Person,Number {n},{CITY_GROUP_ACCOUNT}\n"
        ));
        expected.push("created");
    }
    // The third chunk repeats one person of each earlier chunk.
    for n in [3, first + 7] {
        text.push_str(&format!(
            "person{n}@citygroup.example,Person,Number {n},{CITY_GROUP_ACCOUNT}\n"
        ));
        expected.push("unchanged");
    }
    let file = write(dir.path(), "overlap.csv", &text);
    let summary = import::run(&app.state.ciam, &args(&file, false), &mut Vec::new())
        .await
        .unwrap();
    let created = (first + first / 2) as u64;
    assert_eq!(
        summary,
        ImportSummary {
            rows: expected.len() as u64,
            created,
            unchanged: 7,
            rejected: 1,
            ..ImportSummary::default()
        }
    );
    let rows = report(&file);
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|(_, _, outcome, _)| outcome.as_str())
        .collect();
    assert_eq!(outcomes, expected);
    let lines: Vec<u64> = rows
        .iter()
        .map(|(line, ..)| line.parse().unwrap())
        .collect();
    assert!(
        lines.windows(2).all(|pair| pair[0] < pair[1]),
        "report out of file order"
    );
}

/// The binary, configured by `SMARTPLAN_*` variables, on a SQLite file seeded with the cast.
#[tokio::test]
async fn the_binary_imports_a_file_into_the_configured_database() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("smartplan.db").display());
    {
        let store = Arc::new(ciam_store::SqlStore::open(&database).await.unwrap());
        let mailbox = Arc::new(DevMailbox::default());
        let ciam = ciam_core::Ciam::builder()
            .store(store.clone())
            .mailer(mailbox.clone())
            .clock(Arc::new(ciam_core::clock::SystemClock))
            .random(Arc::new(ciam_core::clock::OsRandom))
            .build()
            .unwrap();
        smartplan::demo::seed(&ciam, &mailbox, SeedOptions::default())
            .await
            .unwrap();
        store.close().await;
    }
    let file = write(dir.path(), "users.csv", &city_group_file());
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_smartplan"))
            .arg("import")
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SMARTPLAN_DATABASE_URL", &database)
            .env("SMARTPLAN_PUBLIC_BASE_URL", "http://127.0.0.1:8080")
            .env(
                "SMARTPLAN_SECRET_KEY",
                "0101010101010101010101010101010101010101010101010101010101010101",
            )
            .output()
            .unwrap()
    };
    let output = run(&[file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("2 created"), "{stdout}");
    assert_eq!(report(&file).len(), 5);

    // A file with a name that tells no format: a clear message, a failure, nothing written.
    let other = write(dir.path(), "users.txt", "email\n");
    let output = run(&[other.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("pass --format"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
