//! Operations endpoints: readiness, metrics, client address from trusted proxies only,
//! throttling.

use axum::http::StatusCode;
use smartplan::config::IpNetwork;
use smartplan::web::client_addr::resolve;
use smartplan::web::throttle::Rule;

use crate::support::{self, Options};

#[tokio::test]
async fn readyz_and_metrics_answer() {
    let app = support::app_default().await;
    let mut client = app.client();
    assert_eq!(client.get("/readyz").await.status, StatusCode::OK);
    client.get("/healthz").await;
    app.state.metrics.login("password", "success");
    let metrics = client.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let body = metrics.body;
    assert!(
        body.contains("smartplan_logins_total{method=\"password\",result=\"success\"} 1"),
        "{body}"
    );
    assert!(body.contains("smartplan_http_request_duration_seconds_count{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"), "{body}");
    assert!(body.contains("smartplan_outbox_depth "), "{body}");
    assert!(body.contains("smartplan_outbox_dead_letters 0"), "{body}");
    // The password hasher's work, counted: one new hash and one verification at the current
    // parameters more after hashing and checking one password.
    let work = |body: &str, kind: &str| -> u64 {
        let name = format!("smartplan_password_work_total{{kind=\"{kind}\"}} ");
        let line = body.lines().find(|line| line.starts_with(&name)).unwrap();
        line[name.len()..].parse().unwrap()
    };
    let (hashes, verifications) = (work(&body, "hash"), work(&body, "current_verification"));
    let hasher = app.state.ciam.password_hasher();
    let random = app.state.ciam.random().as_ref();
    let password = ciam_core::credentials::Password::new("a long enough password");
    let stored = hasher.hash(&password, random).await.unwrap();
    hasher.verify(&password, &stored, random).await.unwrap();
    let body = client.get("/metrics").await.body;
    assert_eq!(work(&body, "hash"), hashes + 1, "{body}");
    assert_eq!(
        work(&body, "current_verification"),
        verifications + 1,
        "{body}"
    );
}

#[test]
fn the_client_address_comes_from_trusted_proxies_only() {
    let trusted = vec![IpNetwork::parse("10.0.0.0/8").unwrap()];
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("x-forwarded-for", "203.0.113.9, 10.1.2.3".parse().unwrap());
    // From the proxy: the right-most untrusted address.
    assert_eq!(
        resolve("10.0.0.1".parse().unwrap(), &headers, &trusted).to_string(),
        "203.0.113.9"
    );
    // From anyone else: the header is ignored.
    assert_eq!(
        resolve("198.51.100.7".parse().unwrap(), &headers, &trusted).to_string(),
        "198.51.100.7"
    );
    assert!(IpNetwork::parse("10.0.0.0/33").is_none());
    assert!(IpNetwork::parse("::ffff:10.0.0.1").is_some());
}

#[tokio::test]
async fn throttling_refuses_after_the_limit_and_frees_the_next_window() {
    let app = support::build(Options {
        seed: None,
        ..Options::default()
    })
    .await;
    let limit = app.state.throttle.limit(Rule::Registration);
    for _ in 0..limit.max {
        app.state
            .throttle
            .check(&app.state, Rule::Registration, "192.0.2.1")
            .await
            .unwrap();
    }
    let refused = app
        .state
        .throttle
        .check(&app.state, Rule::Registration, "192.0.2.1")
        .await
        .unwrap_err();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another client is not affected; the next window starts afresh.
    app.state
        .throttle
        .check(&app.state, Rule::Registration, "192.0.2.2")
        .await
        .unwrap();
    app.clock.advance(limit.window);
    app.state
        .throttle
        .check(&app.state, Rule::Registration, "192.0.2.1")
        .await
        .unwrap();
}
