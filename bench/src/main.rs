#![doc = include_str!("../README.md")]

mod load;
mod machine;
mod processes;
mod raw;
mod report;
mod saml;
mod sessions;
mod sinks;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::report::{Bar, Figure, Report};

/// The end-to-end benchmark of SmartPlan (see bench/README.md).
#[derive(Debug, Parser)]
#[command(name = "smartplan-bench", about, long_about = None)]
struct Args {
    /// The release build of `smartplan` to measure.
    #[arg(long, default_value = "target/release/smartplan")]
    smartplan: PathBuf,
    /// Run the server on PostgreSQL: a server URL (a database is created for the run and
    /// dropped afterwards). Default: SQLite in the run's temporary directory.
    #[arg(long)]
    postgres: Option<String>,
    /// Seconds of each load phase (after a warm-up of a fifth of it).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Users imported from CSV.
    #[arg(long, default_value_t = 1_000_000)]
    import_rows: usize,
    /// Rows of the batch invitation.
    #[arg(long, default_value_t = 10_000)]
    invite_rows: usize,
    /// Sessions created and used before the memory is read.
    #[arg(long, default_value_t = 100_000)]
    sessions: usize,
    /// The Python with pysaml2 installed (the pysaml2 comparison is left out without it).
    #[arg(long)]
    pysaml2_python: Option<PathBuf>,
    /// The pysaml2 IdP script.
    #[arg(long, default_value = "ciam-saml/tests/interop/pysaml2_server.py")]
    pysaml2_script: PathBuf,
    /// Replace the generated section of this Markdown file with the results.
    #[arg(long)]
    write: Option<PathBuf>,
    /// The command line to print as the command of the run (the wrapper script passes its own).
    #[arg(long, default_value = "smartplan-bench")]
    command: String,
    /// Run only these phases (comma-separated; default: all). `sso` and `account` need the
    /// session of a password login, so they run the `login` phase too.
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Phase>,
}

/// A phase of the run (see bench/README.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    /// Password login against raw argon2id.
    Login,
    /// SAML SSO against raw RSA and pysaml2.
    Sso,
    /// The authenticated page and the authorization decision.
    Account,
    /// The batch invitation.
    Batch,
    /// Resident memory after many sessions.
    Memory,
    /// The import.
    Import,
}

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    /// A step failed; the message says which and why.
    #[error("{0}")]
    Step(String),
    /// Reading or writing a file, starting a process.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// An HTTP request failed.
    #[error("{what}: {source}")]
    Http {
        /// The request.
        what: String,
        /// The cause.
        source: reqwest::Error,
    },
}

impl BenchError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    fn http(what: impl Into<String>) -> impl FnOnce(reqwest::Error) -> Self {
        let what = what.into();
        move |source| Self::Http { what, source }
    }
}

type Result<T, E = BenchError> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("smartplan-bench: tokio: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("smartplan-bench: {error}");
            eprintln!(
                "the logs of the run are in {}",
                processes::WorkDir::path_of_this_run().display()
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let machine = machine::Machine::read(&args.command);
    println!("{}", machine.describe());
    let phase = Duration::from_secs(args.seconds.max(1));
    let mut report = Report::new(machine);
    let wants = |phase: Phase| args.only.is_empty() || args.only.contains(&phase);

    let work = processes::WorkDir::create()?;
    let database = processes::Database::prepare(&work, args.postgres.as_deref()).await?;
    let smtp = sinks::SmtpSink::start().await?;
    let smartplan = processes::Smartplan::seed(&args.smartplan, &work, &database, &smtp).await?;
    let api_key = smartplan.create_api_key().await?;
    let sp = saml::BenchSp::write(&work)?;
    smartplan.register_sp(&sp.metadata_path).await?;

    let server = smartplan.serve().await?;
    let idle_kib = server.resident_kib()?;
    println!(
        "server started; resident memory idle: {} MiB",
        idle_kib / 1024
    );
    let api = load::Api::new(&server.base_url, &api_key)?;
    api.provision_bench_corp().await?;
    let signed_in = wants(Phase::Login) || wants(Phase::Sso) || wants(Phase::Account);
    let logins = if signed_in || wants(Phase::Memory) {
        Some(load::LoginUsers::create(&smartplan, &work, 4 * report.machine.cores).await?)
    } else {
        None
    };

    if let (true, Some(logins)) = (signed_in, &logins) {
        password_sso_and_account(
            &args,
            &mut report,
            &server,
            &smartplan,
            &work,
            &sp,
            logins,
            phase,
        )
        .await?;
    }

    // 4. Batch invitation.
    if wants(Phase::Batch) {
        println!(
            "measuring a batch invitation of {} rows ...",
            args.invite_rows
        );
        let mails_before = smtp.received();
        let batch = api.invite_batch(args.invite_rows).await?;
        let delivered = smtp
            .wait_for(mails_before + batch.invited, Duration::from_secs(300))
            .await;
        report.push(Figure::at_most(
            &format!(
                "batch invitation of {} rows over the API (s)",
                args.invite_rows
            ),
            batch.seconds,
            5.0,
            format!(
                "{} invited; every mail handed to SMTP {}",
                batch.invited,
                match delivered {
                    Some(seconds) => format!("{seconds:.1} s after the response"),
                    None => "NOT within 300 s".into(),
                }
            ),
        ));
    }

    // 6. Memory after many sessions.
    if let (true, Some(logins)) = (wants(Phase::Memory), &logins) {
        println!("creating and using {} sessions ...", args.sessions);
        let tokens = sessions::create(&database.url, &logins.first_email(), args.sessions).await?;
        let sweep = load::sweep_sessions(&server.base_url, &tokens).await?;
        let after_kib = server.resident_kib()?;
        // A second sweep over the same sessions tells growth with the number of sessions
        // (it would go on growing) from memory the allocator and the database keep once
        // touched (it stays where it is).
        println!("using the same {} sessions again, twice ...", args.sessions);
        load::sweep_sessions(&server.base_url, &tokens).await?;
        let again_kib = server.resident_kib()?;
        load::sweep_sessions(&server.base_url, &tokens).await?;
        let third_kib = server.resident_kib()?;
        report.push(Figure::plain(
            "server resident memory idle (MiB)",
            idle_kib as f64 / 1024.0,
            "after start-up, before any request".into(),
        ));
        report.push(Figure::plain(
            &format!("server resident memory after {} sessions (MiB)", args.sessions),
            after_kib as f64 / 1024.0,
            format!(
                "every session used once by GET /account ({:.0} requests/s); {} MiB after a second use of each, {} MiB after a third; sessions live in the database",
                sweep,
                again_kib / 1024,
                third_kib / 1024
            ),
        ));
    }
    server.stop().await;

    // 5. Import.
    if wants(Phase::Import) {
        let small = (args.import_rows / 10).max(1);
        println!("importing {small} users (memory baseline) ...");
        let baseline = smartplan.import_users(&work, small, "small").await?;
        println!("importing {} users ...", args.import_rows);
        let import = smartplan
            .import_users(&work, args.import_rows, "large")
            .await?;
        report.push(Figure::at_most(
            &format!("import of {} users from CSV (s)", args.import_rows),
            import.seconds,
            60.0,
            format!(
                "{:.0} rows/s; peak memory {} MiB ({} MiB for {} rows)",
                args.import_rows as f64 / import.seconds,
                import.peak_kib / 1024,
                baseline.peak_kib / 1024,
                small
            ),
        ));
    }

    database.drop().await;
    work.remove();
    report.print();
    if let Some(path) = &args.write {
        report.write_markdown(path)?;
        println!("results written to {}", path.display());
    }
    if !report.all_met() {
        println!("some bars were missed (see the table)");
    }
    Ok(())
}

/// Rounds of raw argon2id and password login (odd, so that one round is the median).
const LOGIN_ROUNDS: usize = 3;

/// Phases 1 to 3: password login, SAML SSO, the authenticated page and the decision.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of the run that these phases share"
)]
async fn password_sso_and_account(
    args: &Args,
    report: &mut Report,
    server: &processes::Server,
    smartplan: &processes::Smartplan,
    work: &processes::WorkDir,
    sp: &saml::BenchSp,
    logins: &load::LoginUsers,
    phase: Duration,
) -> Result<()> {
    let wants = |p: Phase| args.only.is_empty() || args.only.contains(&p);
    // 1. Password login against raw argon2id, in alternating rounds: the raw rate of this
    //    machine drifts by several percent between runs of the same binary, so one raw
    //    measurement beside one login measurement gives a ratio with that drift in it. Each
    //    round measures both back to back; the verdict is the median round's ratio.
    let round_length = (phase / 2).max(Duration::from_secs(1));
    let mut rounds = Vec::with_capacity(LOGIN_ROUNDS);
    let mut hashing = [0u64; 3];
    for round in 1..=LOGIN_ROUNDS {
        println!(
            "round {round}/{LOGIN_ROUNDS}: raw argon2id ({} threads), then password login over HTTP ...",
            report.machine.cores
        );
        let raw = raw::argon2id_rate(report.machine.cores, round_length)?;
        let before = load::password_work(&server.base_url).await?;
        let login = load::password_logins(&server.base_url, logins, round_length).await?;
        let after = load::password_work(&server.base_url).await?;
        println!(
            "  raw {raw:.1}/s, login {:.1}/s: {:.2}",
            login.rate,
            login.rate / raw
        );
        rounds.push((raw, login));
        hashing = [0, 1, 2].map(|i| hashing[i] + after[i].saturating_sub(before[i]));
    }
    // What the server hashed per login (the warm-up's logins included on both sides): one
    // verification at the current parameters is the whole cost of a login.
    let logins_done: usize = rounds.iter().map(|(_, login)| login.all).sum();
    let per_login = |n: u64| n as f64 / logins_done.max(1) as f64;
    rounds.sort_by(|(raw_a, a), (raw_b, b)| (a.rate / raw_a).total_cmp(&(b.rate / raw_b)));
    let all_rounds = rounds
        .iter()
        .map(|(raw, login)| format!("{:.1}/{raw:.1}", login.rate))
        .collect::<Vec<_>>()
        .join(", ");
    let (argon, login) = rounds
        .get(LOGIN_ROUNDS / 2)
        .ok_or_else(|| BenchError::Step("no login round".into()))?;
    let session_cookie = rounds
        .iter()
        .find_map(|(_, login)| login.session_cookie.clone());
    report.push(Figure::ratio(
        "password login over HTTP (logins/s)",
        login.rate,
        *argon,
        "raw argon2id verifications/s",
        Bar::AtLeastRatio(0.9),
        format!(
            "median of {LOGIN_ROUNDS} rounds of {} s each (login/raw: {all_rounds}); {} clients; p50 {:.1} ms, p99 {:.1} ms; {} logins in that round; argon2id work per login: {:.2} verifications at the current parameters, {:.2} other verifications, {:.2} new hashes",
            round_length.as_secs(),
            logins.len(),
            login.p50_ms,
            login.p99_ms,
            login.count,
            per_login(hashing[1]),
            per_login(hashing[2]),
            per_login(hashing[0])
        ),
    ));

    // 2. SAML SSO against raw RSA-2048 and pysaml2.
    let session =
        session_cookie.ok_or_else(|| BenchError::Step("no session from the login phase".into()))?;
    if wants(Phase::Sso) {
        println!("measuring raw RSA-2048 signatures ...");
        let rsa = raw::rsa_rate(&smartplan.saml_key_path, report.machine.cores, phase)?;
        println!("measuring SAML SSO over HTTP ...");
        let sso_url = sp.redirect_url(&format!("{}/saml/sso", server.base_url))?;
        load::expect_saml_response(&sso_url, &session).await?;
        let sso = load::wrk(&sso_url, Some(&session), phase).await?;
        report.push(Figure::ratio(
            "SAML SSO, signed response over HTTP (responses/s)",
            sso.rate,
            rsa,
            "raw RSA-2048 signatures/s",
            Bar::AtLeastRatio(0.7),
            format!("wrk; p50 {:.2} ms, p99 {:.2} ms", sso.p50_ms, sso.p99_ms),
        ));
        match &args.pysaml2_python {
            Some(python) => {
                println!("measuring pysaml2's IdP ...");
                let peer = saml::Pysaml2Idp::start(
                    python,
                    &args.pysaml2_script,
                    work,
                    &smartplan.saml_key_path,
                    &smartplan.saml_cert_path,
                    &sp.metadata_path,
                )
                .await?;
                let peer_url = sp.redirect_url(&peer.sso_url())?;
                load::expect_pysaml2_response(&peer_url).await?;
                let pysaml2 = load::wrk(&peer_url, None, phase).await?;
                report.push(Figure::ratio(
                    "SAML SSO against pysaml2's IdP (responses/s)",
                    sso.rate,
                    pysaml2.rate,
                    "pysaml2 IdP responses/s (same request, same key)",
                    Bar::AtLeastRatio(10.0),
                    format!(
                        "pysaml2 {:.1}/s, p50 {:.1} ms, p99 {:.1} ms",
                        pysaml2.rate, pysaml2.p50_ms, pysaml2.p99_ms
                    ),
                ));
            }
            None => report.note("pysaml2 comparison left out: no --pysaml2-python given"),
        }
    }

    // 3. Session check and authorization.
    if wants(Phase::Account) {
        println!("measuring session check + authorization ...");
        load::expect_account_page(&server.base_url, &session).await?;
        let account = load::wrk(
            &format!("{}/account", server.base_url),
            Some(&session),
            phase,
        )
        .await?;
        report.push(Figure::plain(
            "authenticated page: session check + grants + decision (requests/s)",
            account.rate,
            format!(
                "GET /account with wrk; p50 {:.2} ms, p99 {:.2} ms",
                account.p50_ms, account.p99_ms
            ),
        ));
        let decision_ns = raw::decision_nanos();
        report.push(Figure::at_most(
            "authorization decision in memory (ns)",
            decision_ns,
            1000.0,
            "median of 21 batches of 200 000 calls of ciam_core::authorize".into(),
        ));
    }
    Ok(())
}
