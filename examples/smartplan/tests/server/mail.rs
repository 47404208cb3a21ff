//! Mail through a real SMTP conversation: a small SMTP server on 127.0.0.1 receives the
//! invitation sent by `SmtpMailer`; the message has text and HTML parts and its link works.

use std::sync::Arc;

use ciam_core::Principal;
use ciam_core::delivery::DevSmsOutbox;
use ciam_core::invitations::InvitationRequest;
use ciam_core::secrets::SecretToken;
use smartplan::config::{SmtpConfig, SmtpSecurity};
use smartplan::mail::SmtpMailer;
use smartplan::state::{Assembly, Delivery, assemble};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::support;

/// Accepts SMTP connections and sends each message's DATA to `received`.
pub(crate) async fn smtp_sink(listener: TcpListener, received: mpsc::Sender<String>) {
    while let Ok((stream, _)) = listener.accept().await {
        let received = received.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let _ = write.write_all(b"220 sink.test ESMTP\r\n").await;
            let mut in_data = false;
            let mut data = String::new();
            for _ in 0..10_000 {
                let Ok(Some(line)) = lines.next_line().await else {
                    break;
                };
                if in_data {
                    if line == "." {
                        in_data = false;
                        let _ = received.send(std::mem::take(&mut data)).await;
                        let _ = write.write_all(b"250 2.0.0 queued\r\n").await;
                    } else {
                        data.push_str(line.strip_prefix('.').unwrap_or(&line));
                        data.push('\n');
                    }
                    continue;
                }
                let verb = line
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" => b"250-sink.test\r\n250 8BITMIME\r\n",
                    "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 ok\r\n",
                    "DATA" => {
                        in_data = true;
                        b"354 end with .\r\n"
                    }
                    "QUIT" => {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        break;
                    }
                    _ => b"502 5.5.2 not implemented\r\n",
                };
                let _ = write.write_all(reply).await;
            }
        });
    }
}

/// Undoes quoted-printable soft line breaks and `=3D`.
fn unfold(text: &str) -> String {
    text.replace("=\n", "").replace("=3D", "=")
}

#[tokio::test]
async fn an_invitation_goes_through_smtp_and_its_link_works() {
    let app = support::app_default().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sender, mut received) = mpsc::channel(4);
    let sink = tokio::spawn(smtp_sink(listener, sender));

    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        credentials: None,
        from: "SmartPlan <no-reply@smartplan.example>".into(),
    };
    let mailer = Arc::new(SmtpMailer::new(&smtp, Some(app.state.metrics.clone())).unwrap());
    let state = assemble(Assembly {
        config: (*app.state.config).clone(),
        store: app.state.store.clone(),
        clock: app.clock.clone(),
        random: Arc::new(ciam_core::SeededRandom::new(9)),
        saml_key: support::saml_key(),
        saml_registry: None,
        delivery: Delivery::Real {
            mailer,
            sms: Arc::new(DevSmsOutbox::default()),
        },
    })
    .unwrap();
    state
        .ciam
        .invitations()
        .invite(
            &Principal::System,
            app.cast().city_group,
            InvitationRequest {
                email: "mary.major@citygroup.example".into(),
                given_name: Some("Mary".into()),
                family_name: Some("Major".into()),
                ..InvitationRequest::default()
            },
        )
        .await
        .unwrap();
    let message = tokio::time::timeout(std::time::Duration::from_secs(30), received.recv())
        .await
        .expect("the SMTP server received the mail")
        .unwrap();
    sink.abort();

    assert!(
        message.contains("To: Mary Major <mary.major@citygroup.example>")
            || message.contains("mary.major@citygroup.example")
    );
    assert!(message.contains("multipart/alternative"), "{message}");
    assert!(
        message.contains("text/plain") && message.contains("text/html"),
        "{message}"
    );
    let text = unfold(&message);
    let at = text.find("token=").expect("a link with a token");
    let token: String = text[at + "token=".len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(
        text.contains("http://127.0.0.1:8080/invitations/accept?token="),
        "{text}"
    );
    let invitation = app
        .state
        .ciam
        .invitations()
        .preview(&SecretToken::from_presented(token))
        .await
        .expect("the link's token opens the invitation");
    assert_eq!(invitation.email.to_string(), "mary.major@citygroup.example");
    assert!(
        app.state
            .metrics
            .render(&smartplan::ops::Readings::default())
            .contains("smartplan_mail_total{result=\"sent\"} 1")
    );
}

/// A batch through the server's mail queue answers without waiting for the mail server: while
/// the SMTP server accepts connections but has not said a word yet, `invite_batch` returns with
/// every row invited and nothing delivered; once the server talks, every mail arrives, once.
/// A graceful drain then finds nothing left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_before_its_mail_goes_out_and_all_of_it_arrives_after() {
    use smartplan::outgoing::Outgoing;

    let app = support::app_default().await;
    // Connections are taken by the kernel's backlog; nobody answers until the sink starts.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        credentials: None,
        from: "SmartPlan <no-reply@smartplan.example>".into(),
    };
    let mailer = Arc::new(SmtpMailer::new(&smtp, None).unwrap());
    let outgoing = Outgoing::new(
        mailer,
        Arc::new(DevSmsOutbox::default()),
        app.clock.clone(),
        chrono::Duration::minutes(5),
    );
    let state = assemble(Assembly {
        config: (*app.state.config).clone(),
        store: app.state.store.clone(),
        clock: app.clock.clone(),
        random: Arc::new(ciam_core::SeededRandom::new(19)),
        saml_key: support::saml_key(),
        saml_registry: None,
        delivery: Delivery::Queued(outgoing.clone()),
    })
    .unwrap();
    let rows: Vec<InvitationRequest> = (0..40)
        .map(|n| InvitationRequest {
            email: format!("queued{n}@citygroup.example"),
            ..InvitationRequest::default()
        })
        .collect();
    let started = std::time::Instant::now();
    let (_, outcomes) = state
        .ciam
        .invitations()
        .invite_batch(&Principal::System, app.cast().city_group, rows)
        .await
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the batch waited for the mail server: {:?}",
        started.elapsed()
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ciam_core::invitations::BatchRowOutcome::Invited { .. }))
    );
    assert_eq!(outgoing.mail.sent(), 0, "nothing delivered yet");
    assert_eq!(outgoing.mail.pending(), 40);
    let metrics = queue_metrics(&state).await;
    assert!(
        metrics.contains("smartplan_outgoing_queue_depth{channel=\"mail\"} 40")
            && metrics.contains("smartplan_outgoing_queue_depth{channel=\"sms\"} 0"),
        "{metrics}"
    );

    let (sender, mut received) = mpsc::channel(64);
    let sink = tokio::spawn(smtp_sink(listener, sender));
    let mut addresses = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), received.recv())
            .await
            .expect("every mail arrives")
            .unwrap();
        let text = unfold(&message);
        let at = text.find("queued").expect("a queued invitee");
        addresses.insert(
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>(),
        );
    }
    assert_eq!(addresses.len(), 40, "each invitee once: {addresses:?}");
    let drained = outgoing.mail.drain(std::time::Duration::from_secs(5)).await;
    assert_eq!(drained.left, 0);
    assert_eq!(outgoing.mail.sent(), 40);
    assert!(received.try_recv().is_err(), "nothing twice");
    let metrics = queue_metrics(&state).await;
    assert!(
        metrics.contains("smartplan_outgoing_queue_depth{channel=\"mail\"} 0"),
        "{metrics}"
    );
    sink.abort();
}

/// The server's `/metrics` text.
async fn queue_metrics(state: &smartplan::state::AppState) -> String {
    use tower::ServiceExt;

    let response = smartplan::app::app(state.clone())
        .oneshot(
            axum::http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}
