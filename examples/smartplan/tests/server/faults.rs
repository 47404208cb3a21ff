//! Faults: the database unavailable for a while, an import killed part way, and two nodes
//! racing on the same single-use thing. docs/security.md ("Faults") lists them.
//!
//! The PostgreSQL tests take their server from `CIAM_TEST_POSTGRES_URL` (see `postgres`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use ciam_core::Principal;
use ciam_core::invitations::{Acceptance, InvitationError, InvitationRequest};
use ciam_core::login::{LoginError, LoginStep};
use ciam_core::secrets::OneTimeCode;
use smartplan::demo::{DEMO_PASSWORD, JEREMY};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::postgres::{database, node};
use crate::support::{self, Backend, Options, TestApp};

// ---------------------------------------------------------------------------------------------
// The database unavailable for a while
// ---------------------------------------------------------------------------------------------

/// A TCP proxy on 127.0.0.1 in front of the database that the test can cut and restore. Cut:
/// every open connection is closed and new ones are accepted but never answered (the way a
/// partitioned network looks); restored: new connections reach the database again.
struct Proxy {
    address: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let proxy = Self {
            address,
            up: up.clone(),
            generation: generation.clone(),
        };
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let up = up.clone();
                let mut cut = generation.subscribe();
                tokio::spawn(async move {
                    let mut client = client;
                    if !up.load(Ordering::SeqCst) {
                        // Accept and stay silent until the next cut or restore.
                        let _ = cut.changed().await;
                        let _ = client.shutdown().await;
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        proxy
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }
}

/// `url` with its host and port replaced by `address`.
fn through(url: &str, address: std::net::SocketAddr) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_host(Some(&address.ip().to_string())).unwrap();
    parsed.set_port(Some(address.port())).unwrap();
    parsed.to_string()
}

/// GET `path` on `client`, failing the test if no answer comes within `bound`.
async fn get_within(client: &mut support::Client, path: &str, bound: Duration) -> StatusCode {
    let started = Instant::now();
    let response = tokio::time::timeout(bound, client.get(path))
        .await
        .unwrap_or_else(|_| panic!("GET {path} hung for more than {bound:?}"));
    eprintln!("GET {path}: {} in {:?}", response.status, started.elapsed());
    response.status
}

/// The server on PostgreSQL through a proxy: while the database is cut off, `/healthz` still
/// answers 200 (the process is alive), `/readyz` and a signed-in page answer 503 within a
/// bound (the store waits at most `DATABASE_WAIT` for a connection, not forever, and its
/// errors are `Unavailable`, not 500); once the database is back, the same state (no restart)
/// answers 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_answers_503_within_a_bound_and_recovers_without_restart() {
    let Some(db) = database("outage").await else {
        return;
    };
    let upstream = {
        let parsed = url::Url::parse(&db.url).unwrap();
        let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = parsed.port().unwrap_or(5432);
        tokio::net::lookup_host((host.as_str(), port))
            .await
            .unwrap()
            .next()
            .unwrap()
    };
    let proxy = Proxy::start(upstream).await;
    let url = through(&db.url, proxy.address);
    // The store opened the way `smartplan serve` opens it.
    let config = smartplan::Config::new(
        url::Url::parse(support::BASE_URL).unwrap(),
        url,
        support::secret(),
    );
    let store = smartplan::cli::serve::open_store(&config, true)
        .await
        .unwrap();
    let app = support::build(Options {
        backend: Backend::Store(store),
        ..Options::default()
    })
    .await;
    let mut client = app.client();
    client.sign_in_as(JEREMY).await;
    assert_eq!(
        get_within(&mut client, "/account", Duration::from_secs(10)).await,
        StatusCode::OK
    );
    assert_eq!(
        get_within(&mut client, "/readyz", Duration::from_secs(10)).await,
        StatusCode::OK
    );

    proxy.cut();
    // The bound: the store's wait for a connection (5 s) plus slack; without it a request
    // waits 30 s (sqlx's default) or longer.
    let bound = smartplan::cli::serve::DATABASE_WAIT + Duration::from_secs(5);
    for _ in 0..2 {
        assert_eq!(
            get_within(&mut client, "/healthz", bound).await,
            StatusCode::OK
        );
        assert_eq!(
            get_within(&mut client, "/readyz", bound).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get_within(&mut client, "/account", bound).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    // A form post (a write) too.
    let response = tokio::time::timeout(bound, client.post_form("/signin", &[("email", JEREMY)]))
        .await
        .expect("a sign-in post during the outage answers");
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        response.body
    );

    proxy.restore();
    let mut recovered = false;
    for _ in 0..40 {
        if get_within(&mut client, "/readyz", bound).await == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        recovered,
        "the server answers again once the database is back"
    );
    assert_eq!(
        get_within(&mut client, "/account", bound).await,
        StatusCode::OK
    );
    drop(app);
    db.drop().await;
}

// ---------------------------------------------------------------------------------------------
// Two nodes racing on the same single-use thing
// ---------------------------------------------------------------------------------------------

/// Two nodes (two pools, two façades) on one PostgreSQL database.
async fn two_nodes(label: &str) -> Option<(crate::postgres::Database, TestApp, TestApp)> {
    let db = database(label).await?;
    let a = node(&db.url, true).await;
    // Each node draws its own randomness (as real nodes do from the OS).
    let b = support::build(Options {
        backend: Backend::Store(Arc::new(ciam_store::SqlStore::open(&db.url).await.unwrap())),
        seed: None,
        random_seed: 4242,
        ..Options::default()
    })
    .await;
    Some((db, a, b))
}

/// How many of the results are `Ok`, and that the others are the expected refusals.
fn wins<T, E: std::fmt::Debug>(results: Vec<Result<T, E>>, loss: fn(&E) -> bool) -> usize {
    results
        .into_iter()
        .filter(|result| match result {
            Ok(_) => true,
            Err(error) => {
                assert!(loss(error), "unexpected error: {error:?}");
                false
            }
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_accepting_one_invitation_at_once_exactly_one_wins() {
    let Some((db, a, b)) = two_nodes("race_invite").await else {
        return;
    };
    let city = a.cast().city_group;
    for round in 0..10 {
        let issued = a
            .state
            .ciam
            .invitations()
            .invite(
                &Principal::System,
                city,
                InvitationRequest {
                    email: format!("racer{round}@citygroup.example"),
                    given_name: Some("Race".into()),
                    family_name: Some("Condition".into()),
                    ..InvitationRequest::default()
                },
            )
            .await
            .unwrap();
        let token = issued.token.unwrap();
        let accept = |app: &TestApp| {
            let ciam = app.state.ciam.clone();
            let token = token.clone();
            tokio::spawn(async move {
                ciam.invitations()
                    .accept(
                        &Principal::Anonymous,
                        &token,
                        Acceptance {
                            password: Some(ciam_core::credentials::Password::new(DEMO_PASSWORD)),
                            ..Acceptance::default()
                        },
                    )
                    .await
            })
        };
        let (first, second) = (accept(&a), accept(&b));
        let results = vec![first.await.unwrap(), second.await.unwrap()];
        let won = wins(results, |error| {
            matches!(
                error,
                InvitationError::Conflict | InvitationError::NotUsable(_)
            )
        });
        assert_eq!(won, 1, "round {round}");
        let email =
            ciam_core::contact::EmailAddress::parse(&format!("racer{round}@citygroup.example"))
                .unwrap();
        let identity = b
            .state
            .store
            .identity_by_email(&email)
            .await
            .unwrap()
            .unwrap();
        let memberships = b
            .state
            .store
            .memberships_of_identity(identity.id)
            .await
            .unwrap();
        assert_eq!(memberships.len(), 1, "round {round}");
    }
    drop((a, b));
    db.drop().await;
}

fn attempt_of(step: LoginStep) -> ciam_core::login::AttemptToken {
    match step {
        LoginStep::SecondFactor { attempt, .. } | LoginStep::CodeSent { attempt, .. } => attempt,
        other => panic!("expected a second-factor step, got {other:?}"),
    }
}

async fn second_factor(app: &TestApp) -> ciam_core::login::AttemptToken {
    let login = app.state.ciam.login();
    let step = login.start(JEREMY, Some("198.51.100.7")).await.unwrap();
    let LoginStep::Password { attempt } = step else {
        panic!("the password is next, got {step:?}")
    };
    let step = login
        .password(
            &attempt,
            &ciam_core::credentials::Password::new(DEMO_PASSWORD),
        )
        .await
        .unwrap();
    attempt_of(step)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_verifying_one_sms_code_at_once_exactly_one_wins() {
    let Some((db, a, b)) = two_nodes("race_sms").await else {
        return;
    };
    // City Group requires a second factor; Jeremy has a verified phone.
    let mut organization = a
        .state
        .store
        .organization(a.cast().city_group)
        .await
        .unwrap()
        .unwrap();
    organization.policy.require_mfa = true;
    let mut changes = ciam_core::store::ChangeSet::new();
    changes.put(organization);
    a.state.store.commit(changes).await.unwrap();
    support::verify_phone(&a, JEREMY, "+358401234567").await;
    for round in 0..3 {
        let second = second_factor(&a).await;
        let sent = attempt_of(a.state.ciam.login().send_sms_code(&second).await.unwrap());
        let text = a.sms.latest_to("+358401234567").unwrap().text;
        let code = OneTimeCode::from_presented(ciam_core::delivery::first_code(&text).unwrap());
        let verify = |app: &TestApp| {
            let ciam = app.state.ciam.clone();
            let (sent, code) = (sent.clone(), code.clone());
            tokio::spawn(async move { ciam.login().verify_sms_code(&sent, &code).await })
        };
        let (first, second) = (verify(&a), verify(&b));
        let results = vec![first.await.unwrap(), second.await.unwrap()];
        let signed_in = results
            .iter()
            .filter(|r| matches!(r, Ok(LoginStep::SignedIn(_))))
            .count();
        assert_eq!(signed_in, 1, "round {round}: {results:?}");
        for result in &results {
            assert!(
                matches!(
                    result,
                    Ok(LoginStep::SignedIn(_))
                        | Err(LoginError::WrongCode | LoginError::AttemptExpired)
                ),
                "round {round}: {result:?}"
            );
        }
        // The next round is a new attempt, well after this one.
        a.clock.advance(chrono::Duration::minutes(10));
        b.clock.advance(chrono::Duration::minutes(10));
    }
    drop((a, b));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_using_one_totp_step_at_once_exactly_one_wins() {
    let Some((db, a, b)) = two_nodes("race_totp").await else {
        return;
    };
    let (identity, principal) = support::principal_of(&a, JEREMY).await;
    let login = a.state.ciam.login();
    let enrollment = login.enroll_totp(&principal, identity).await.unwrap();
    let totp = totp_rs::TOTP::from_url(&enrollment.otpauth_uri).unwrap();
    let code_at =
        |app: &TestApp| totp.generate(u64::try_from(app.clock_now().timestamp()).unwrap());
    login
        .confirm_totp(&principal, identity, &code_at(&a))
        .await
        .unwrap();
    for round in 0..3 {
        // A fresh step each round (and the account's failure back-off long over): both clocks
        // move on by 20 steps.
        a.clock.advance(chrono::Duration::minutes(10));
        b.clock.advance(chrono::Duration::minutes(10));
        // Two sign-in attempts (one per node) present the same code at once.
        let (on_a, on_b) = (second_factor(&a).await, second_factor(&b).await);
        let code = code_at(&a);
        let verify = |app: &TestApp, attempt: ciam_core::login::AttemptToken| {
            let ciam = app.state.ciam.clone();
            let code = code.clone();
            tokio::spawn(async move { ciam.login().verify_totp(&attempt, &code).await })
        };
        let (first, second) = (verify(&a, on_a), verify(&b, on_b));
        let results = vec![first.await.unwrap(), second.await.unwrap()];
        let won = wins(results, |error| matches!(error, LoginError::WrongCode));
        assert_eq!(won, 1, "round {round}");
    }
    drop((a, b));
    db.drop().await;
}

// ---------------------------------------------------------------------------------------------
// An import killed part way
// ---------------------------------------------------------------------------------------------

/// The sum of `created` over the stored `users_imported` events.
fn created_by_events(events: &[String]) -> u64 {
    fn find(value: &serde_json::Value) -> Option<u64> {
        match value {
            serde_json::Value::Object(map) => {
                if map.contains_key("chunk") {
                    return map.get("created").and_then(serde_json::Value::as_u64);
                }
                map.values().find_map(find)
            }
            serde_json::Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    events
        .iter()
        .filter_map(|data| find(&serde_json::from_str(data).unwrap()))
        .sum()
}

/// `smartplan import` of a large file on SQLite, killed with SIGKILL once some chunks are
/// committed: every imported person is whole (identity, membership with its business role,
/// password credential) or absent, the audit events count exactly the people there, and
/// running the same file again completes it (no row twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_part_way_leaves_whole_rows_and_a_rerun_completes_it() {
    use sqlx::Row as _;

    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("smartplan.db").display());
    let role = {
        let store = Arc::new(ciam_store::SqlStore::open(&database).await.unwrap());
        let mailbox = Arc::new(ciam_core::delivery::DevMailbox::default());
        let ciam = ciam_core::Ciam::builder()
            .store(store.clone())
            .mailer(mailbox.clone())
            .clock(Arc::new(ciam_core::clock::SystemClock))
            .random(Arc::new(ciam_core::clock::OsRandom))
            .build()
            .unwrap();
        smartplan::demo::seed(&ciam, &mailbox, smartplan::demo::SeedOptions::default())
            .await
            .unwrap();
        let roles = ciam_core::store::Store::business_roles(store.as_ref())
            .await
            .unwrap();
        store.close().await;
        roles
            .into_iter()
            .find(|role| role.key == "energy-manager")
            .unwrap()
            .id
    };
    let total: u64 = 40_000;
    let hash = bcrypt::hash("imported from the old portal", 4).unwrap();
    let mut text =
        String::from("email,given_name,family_name,organization,business_roles,password_hash\n");
    for n in 0..total {
        text.push_str(&format!(
            "person{n}@citygroup.example,Person,Number {n},{},energy-manager,{hash}\n",
            smartplan::demo::CITY_GROUP_ACCOUNT
        ));
    }
    let file = dir.path().join("users.csv");
    std::fs::write(&file, text).unwrap();
    let import = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_smartplan"));
        command
            .arg("import")
            .arg(&file)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SMARTPLAN_DATABASE_URL", &database)
            .env("SMARTPLAN_PUBLIC_BASE_URL", "http://127.0.0.1:8080")
            .env(
                "SMARTPLAN_SECRET_KEY",
                "0101010101010101010101010101010101010101010101010101010101010101",
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    };
    let reader = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            std::str::FromStr::from_str(&database)
                .map(|o: sqlx::sqlite::SqliteConnectOptions| o.read_only(true))
                .unwrap(),
        )
        .await
        .unwrap();
    let imported = |pool: sqlx::SqlitePool| async move {
        sqlx::query(
            "SELECT count(*) FROM identities WHERE email_normalized LIKE 'person%@citygroup.example'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
        .get::<i64, _>(0) as u64
    };

    // Kill it once at least two chunks are in, well before the end.
    let mut child = import().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    while Instant::now() < deadline {
        seen = imported(reader.clone()).await;
        if seen >= 2_000 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended before it could be killed ({seen} rows)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    let _ = child.wait().unwrap();
    let after_kill = imported(reader.clone()).await;
    eprintln!("killed after {seen} rows seen; {after_kill} rows in the database");
    assert!(after_kill >= 2_000 && after_kill < total, "{after_kill}");

    let role = role.to_string();
    let role = role.as_str();
    let check = |pool: sqlx::SqlitePool| async move {
        let people = imported(pool.clone()).await;
        // Every imported identity has exactly one membership, with the business role, and
        // exactly one credential (the imported password hash).
        let whole: i64 = sqlx::query(
            "SELECT count(*) FROM identities i \
             WHERE i.email_normalized LIKE 'person%@citygroup.example' \
             AND (SELECT count(*) FROM memberships m WHERE m.identity_id = i.id \
                  AND m.data LIKE '%' || ? || '%') = 1 \
             AND (SELECT count(*) FROM credentials c WHERE c.identity_id = i.id) = 1",
        )
        .bind(role)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
        let orphans: i64 = sqlx::query(
            "SELECT (SELECT count(*) FROM memberships m WHERE NOT EXISTS \
                 (SELECT 1 FROM identities i WHERE i.id = m.identity_id)) + \
             (SELECT count(*) FROM credentials c WHERE NOT EXISTS \
                 (SELECT 1 FROM identities i WHERE i.id = c.identity_id))",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
        let events: Vec<String> = sqlx::query("SELECT data FROM events")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.get::<String, _>(0))
            .collect();
        assert_eq!(whole as u64, people, "a person is only partly there");
        assert_eq!(orphans, 0, "a membership or credential without its person");
        assert_eq!(
            created_by_events(&events),
            people,
            "the audit events count other people than are there"
        );
        people
    };
    assert_eq!(check(reader.clone()).await, after_kill);

    // The same file again finishes the job.
    let status = import().status().unwrap();
    assert!(status.success());
    assert_eq!(check(reader.clone()).await, total);
    reader.close().await;
}

// ---------------------------------------------------------------------------------------------
// The mail server and the SMS gateway down
// ---------------------------------------------------------------------------------------------

/// A loopback port with nothing listening on it (yet).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Counts the SMS that reach a gateway on `listener` and sends their JSON bodies to `received`.
async fn sms_gateway(listener: TcpListener, received: tokio::sync::mpsc::Sender<String>) {
    let router = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |body: String| {
            let received = received.clone();
            async move {
                let _ = received.send(body).await;
                StatusCode::ACCEPTED
            }
        }),
    );
    let _ = axum::serve(listener, router).await;
}

/// The server with SMTP and the SMS gateway behind the retry queues, both transports down:
/// invitation mail and a sign-in code are kept (once the queue has found the mail server down,
/// the pages tell the person they are delayed),
/// retries while the transports stay down keep them, and once the mail server and the gateway
/// answer on their ports the next retry delivers both; nothing is delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_and_sms_meeting_an_outage_are_queued_the_person_told_and_delivered_later() {
    use smartplan::config::{SmtpConfig, SmtpSecurity};
    use smartplan::outgoing::Outgoing;
    use smartplan::state::{Assembly, Delivery, assemble};

    let app = support::app_default().await;

    let (smtp_port, sms_port) = (closed_port().await, closed_port().await);
    let mailer = smartplan::mail::SmtpMailer::new(
        &SmtpConfig {
            host: "127.0.0.1".into(),
            port: smtp_port,
            security: SmtpSecurity::None,
            credentials: None,
            from: "SmartPlan <no-reply@smartplan.example>".into(),
        },
        None,
    )
    .unwrap();
    let sms = ciam_core::login::HttpSmsGateway::new(ciam_core::login::HttpSmsGatewayConfig::new(
        format!("http://127.0.0.1:{sms_port}/sms"),
        "authorization".to_owned(),
        "Bearer test",
    ))
    .unwrap();
    let outgoing = Outgoing::new(
        Arc::new(mailer),
        Arc::new(sms),
        app.clock.clone(),
        chrono::Duration::minutes(5),
    );
    let state = assemble(Assembly {
        config: (*app.state.config).clone(),
        store: app.state.store.clone(),
        clock: app.clock.clone(),
        random: Arc::new(ciam_core::SeededRandom::new(11)),
        saml_key: support::saml_key(),
        saml_registry: None,
        delivery: Delivery::Queued(outgoing.clone()),
    })
    .unwrap();
    let router = smartplan::app(state.clone());

    // Jeremy invites Nora: the invitation exists and its mail is queued (the response does not
    // wait for the mail server); the queue's worker finds the mail server down.
    let mut jeremy = support::Client::for_router(router.clone(), &state);
    jeremy.sign_in_as(JEREMY).await;
    let base = format!("/admin/orgs/{}/invitations", app.cast().city_group);
    jeremy.get(&base).await;
    let sent = jeremy
        .post_form(&base, &[("email", "nora@citygroup.example")])
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let started = Instant::now();
    while !outgoing.mail.delayed() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the queue finds the mail server down"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(outgoing.mail.pending(), 1);
    // Then he invites Olga: the invitation exists, the page says the mail is delayed.
    jeremy.get(&base).await;
    let sent = jeremy
        .post_form(&base, &[("email", "olga@citygroup.example")])
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let page = jeremy.get(sent.location().unwrap()).await;
    assert!(
        page.body.contains("mail is delayed right now"),
        "the person is told: {}",
        page.body
    );
    let started = Instant::now();
    while outgoing.mail.pending() != 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "both mails wait"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // City Group requires a second factor; Jeremy's phone is verified (through the dev outbox).
    let mut organization = app
        .state
        .store
        .organization(app.cast().city_group)
        .await
        .unwrap()
        .unwrap();
    organization.policy.require_mfa = true;
    let mut changes = ciam_core::store::ChangeSet::new();
    changes.put(organization);
    app.state.store.commit(changes).await.unwrap();
    support::verify_phone(&app, JEREMY, "+358401234523").await;

    // Jeremy signs in on another browser: the code is kept, the page says it is delayed.
    let mut browser = support::Client::for_router(router, &state);
    browser.post_form("/signin", &[("email", JEREMY)]).await;
    let after_password = browser
        .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
        .await;
    assert_eq!(after_password.location(), Some("/signin/sms"));
    browser.get("/signin/sms").await;
    let code_sent = browser
        .post_form("/signin/sms", &[("action", "send")])
        .await;
    assert_eq!(
        code_sent.location(),
        Some("/signin/sms"),
        "{}",
        code_sent.body
    );
    let page = browser.get("/signin/sms").await;
    assert!(
        page.body.contains("Text messages are delayed"),
        "the person is told: {}",
        page.body
    );
    assert_eq!(outgoing.sms.pending(), 1);

    // Retries while both are still down keep the messages.
    app.clock.advance(chrono::Duration::seconds(10));
    let (mail, text) = outgoing.retry_due().await;
    assert_eq!(
        (mail.sent, mail.waiting, text.sent, text.waiting),
        (0, 2, 0, 1)
    );

    // The mail server and the gateway come up on their ports.
    let (mail_to, mut mail_received) = tokio::sync::mpsc::channel(4);
    let smtp = tokio::spawn(crate::mail::smtp_sink(
        TcpListener::bind(("127.0.0.1", smtp_port)).await.unwrap(),
        mail_to,
    ));
    let (sms_to, mut sms_received) = tokio::sync::mpsc::channel(4);
    let gateway = tokio::spawn(sms_gateway(
        TcpListener::bind(("127.0.0.1", sms_port)).await.unwrap(),
        sms_to,
    ));
    app.clock.advance(chrono::Duration::seconds(60));
    let (mail, text) = outgoing.retry_due().await;
    assert_eq!(
        (mail.sent, mail.waiting, text.sent, text.waiting),
        (2, 0, 1, 0)
    );
    let mut messages = Vec::new();
    for _ in 0..2 {
        messages.push(
            tokio::time::timeout(Duration::from_secs(10), mail_received.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    for invitee in ["nora@citygroup.example", "olga@citygroup.example"] {
        assert!(
            messages.iter().any(|message| message.contains(invitee)),
            "{invitee}: {messages:?}"
        );
    }
    let sms = tokio::time::timeout(Duration::from_secs(10), sms_received.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        sms.contains("+358401234523") && sms.contains("sign-in code"),
        "{sms}"
    );
    // Nothing is left to send twice.
    app.clock.advance(chrono::Duration::minutes(10));
    assert_eq!(outgoing.retry_due().await, Default::default());
    assert!(mail_received.try_recv().is_err() && sms_received.try_recv().is_err());
    assert!(!outgoing.mail.delayed() && !outgoing.sms.delayed());
    smtp.abort();
    gateway.abort();
}
