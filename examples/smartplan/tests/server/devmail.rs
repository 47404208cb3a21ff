//! The dev mailbox and SMS outbox: `/dev/mail`, `/dev/mail/{n}`, `/dev/sms` (demo mode only).

use axum::http::StatusCode;
use ciam_core::contact::{EmailAddress, PhoneNumber};
use ciam_core::delivery::{EmailMessage, Mailer, MessagePurpose, SmsMessage, SmsSender};

use crate::support::{self, Options};

async fn put_mail(app: &support::TestApp, to: &str, subject: &str, text: &str, html: Option<&str>) {
    app.mail
        .send(EmailMessage {
            to: EmailAddress::parse(to).unwrap(),
            subject: subject.to_owned(),
            text: text.to_owned(),
            html: html.map(str::to_owned),
            purpose: MessagePurpose::Notice,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn the_mailbox_lists_messages_newest_first_with_links_to_each() {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    let mut client = app.client();
    let empty = client.get("/dev/mail").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains("No mail yet"), "{}", empty.body);

    put_mail(&app, "first@example.com", "First subject", "one", None).await;
    put_mail(&app, "second@example.com", "Second subject", "two", None).await;
    let page = client.get("/dev/mail").await;
    assert_eq!(page.status, StatusCode::OK);
    let second = page.body.find("Second subject").unwrap();
    let first = page.body.find("First subject").unwrap();
    assert!(second < first, "newest first: {}", page.body);
    assert!(page.body.contains("href=\"/dev/mail/2\""), "{}", page.body);
    assert!(page.body.contains("href=\"/dev/mail/1\""), "{}", page.body);
    assert!(page.body.contains("second@example.com"));
    assert!(
        page.body
            .contains("<h1 id=\"mailbox-heading\">Dev mailbox</h1>")
    );
}

#[tokio::test]
async fn a_message_shows_its_text_with_clickable_links_and_never_its_raw_html() {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    put_mail(
        &app,
        "jeremy.mills@citygroup.example",
        "You are invited <b>now</b>",
        "Hello Jeremy,\n\nAccept here: http://127.0.0.1:8080/invitations/accept?token=abc&x=1.\n\nBye",
        Some("<p>Hello</p><script>alert('owned')</script><img src=x onerror=alert(1)>"),
    )
    .await;
    let mut client = app.client();
    let page = client.get("/dev/mail/1").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("<a href=\"http://127.0.0.1:8080/invitations/accept?token=abc&#38;x=1\">")
            || page.body.contains(
                "<a href=\"http://127.0.0.1:8080/invitations/accept?token=abc&amp;x=1\">"
            ),
        "the link is clickable: {}",
        page.body
    );
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(!page.body.contains("<img src=x"), "{}", page.body);
    assert!(!page.body.contains("<b>now</b>"), "{}", page.body);
    assert!(
        page.body.contains("&lt;script&gt;") || page.body.contains("&#60;script&#62;"),
        "the HTML is shown as escaped source: {}",
        page.body
    );
    assert!(page.body.contains("jeremy.mills@citygroup.example"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
}

#[tokio::test]
async fn unknown_or_malformed_message_numbers_are_not_found() {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    put_mail(&app, "a@example.com", "Only one", "text", None).await;
    let mut client = app.client();
    for path in [
        "/dev/mail/2",
        "/dev/mail/0",
        "/dev/mail/abc",
        "/dev/mail/-1",
        "/dev/mail/1x",
    ] {
        let response = client.get(path).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            response.body.contains("no message with this number")
                || response.body.contains("no page"),
            "{path}: {}",
            response.body
        );
    }
}

#[tokio::test]
async fn the_sms_outbox_lists_texts_newest_first() {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    let mut client = app.client();
    let empty = client.get("/dev/sms").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains("No text messages yet"));
    for (phone, text) in [
        ("+15555550100", "code 111111"),
        ("+15555550123", "code 222222"),
    ] {
        app.sms
            .send(SmsMessage {
                to: PhoneNumber::parse(phone).unwrap(),
                text: text.to_owned(),
                purpose: MessagePurpose::SignInCode,
            })
            .await
            .unwrap();
    }
    let page = client.get("/dev/sms").await;
    assert_eq!(page.status, StatusCode::OK);
    let newest = page.body.find("code 222222").unwrap();
    let oldest = page.body.find("code 111111").unwrap();
    assert!(newest < oldest, "{}", page.body);
    assert!(page.body.contains("+15555550123"));
}

#[tokio::test]
async fn outside_demo_mode_every_dev_page_is_not_found() {
    let app = support::build(Options {
        seed: None,
        demo: false,
        ..Options::default()
    })
    .await;
    put_mail(&app, "a@example.com", "Secret", "a reset link", None).await;
    let mut client = app.client();
    for path in ["/dev/mail", "/dev/mail/1", "/dev/sms"] {
        let response = client.get(path).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!response.body.contains("a reset link"));
    }
}

#[tokio::test]
async fn the_mailbox_works_on_sqlite_too() {
    let app = support::build(Options {
        backend: support::Backend::Sqlite,
        ..Options::default()
    })
    .await;
    let mut client = app.client();
    let response = client
        .post_form("/password/forgot", &[("email", smartplan::demo::SCOTT)])
        .await;
    assert_eq!(response.status, StatusCode::OK);
    let list = client.get("/dev/mail").await;
    assert!(list.body.contains(smartplan::demo::SCOTT), "{}", list.body);
    let number = app.mail.messages().last().unwrap().number;
    let message = client.get(&format!("/dev/mail/{number}")).await;
    assert_eq!(message.status, StatusCode::OK);
    assert!(
        message
            .body
            .contains("<a href=\"http://127.0.0.1:8080/password/reset?token="),
        "{}",
        message.body
    );
}
