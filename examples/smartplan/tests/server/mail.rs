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
            .render(None, None)
            .contains("smartplan_mail_total{result=\"sent\"} 1")
    );
}
