//! Sign-in pages: identifier, password, SMS code, authenticator app, recovery code, sign-out,
//! `/login`, the forgotten password, and the federation endpoints' answers to bad input.

use axum::http::StatusCode;
use ciam_core::secrets::SecretToken;
use smartplan::demo::{BETTY, DEMO_PASSWORD, JEREMY, SCOTT};

use crate::support::{self, Backend, Client, Options, TestApp, TestResponse, signed_in};

const PHONE: &str = "+15555550123";

async fn enter_email(client: &mut Client, email: &str) -> TestResponse {
    client.post_form("/signin", &[("email", email)]).await
}

async fn enter_password(client: &mut Client, email: &str, password: &str) -> TestResponse {
    let started = enter_email(client, email).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    assert_eq!(started.location(), Some("/signin/password"));
    client
        .post_form("/signin/password", &[("password", password)])
        .await
}

/// City Group requires a second factor, and Jeremy has a verified phone.
async fn jeremy_with_sms(app: &TestApp) {
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
    support::verify_phone(app, JEREMY, PHONE).await;
}

fn flash_of(response: &TestResponse) -> bool {
    response
        .set_cookies()
        .iter()
        .any(|cookie| cookie.starts_with("smartplan_flash="))
}

#[tokio::test]
async fn the_identifier_page_asks_for_the_email_and_keeps_a_safe_next() {
    let app = support::app_default().await;
    let mut client = app.client();
    let page = client.get("/signin?next=/admin/approvals").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("<label for=\"email\">Email address</label>")
    );
    assert!(
        page.body
            .contains("name=\"next\" value=\"/admin/approvals\""),
        "{}",
        page.body
    );
    assert!(support::csrf_in(&page.body).is_some());
    assert!(
        !page.body.contains("Sign in with Google"),
        "no Google connection configured"
    );
    for unsafe_next in [
        "//evil.example/x",
        "https://evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let encoded: String =
            url::form_urlencoded::byte_serialize(unsafe_next.as_bytes()).collect();
        let page = client.get(&format!("/signin?next={encoded}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body.contains("name=\"next\" value=\"\""),
            "{unsafe_next}: dropped"
        );
    }
    let login = client.get("/login").await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert_eq!(login.location(), Some("/signin"));
    let login = client.get("/login?next=/account/mfa").await;
    assert_eq!(login.location(), Some("/signin?next=%2Faccount%2Fmfa"));
    let login = client.get("/login?next=https://evil.example").await;
    assert_eq!(login.location(), Some("/signin"));
}

#[tokio::test]
async fn a_bad_email_is_explained_kept_and_starts_nothing() {
    let app = support::app_default().await;
    let mut client = app.client();
    for (typed, message) in [
        ("", "enter your email address"),
        ("   ", "enter your email address"),
        ("scott.long", "this is not an email address"),
        ("<script>@x", "this is not an email address"),
    ] {
        let response = client
            .post_form("/signin", &[("email", typed), ("next", "/account")])
            .await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{typed:?}"
        );
        assert!(
            response.body.contains(message),
            "{typed:?}: {}",
            response.body
        );
        assert!(response.body.contains("aria-invalid=\"true\""));
        assert!(response.body.contains("aria-describedby=\"error-email\""));
        assert!(
            !client.jar.contains_key("smartplan_login"),
            "no attempt for {typed:?}"
        );
    }
    let kept = client
        .post_form("/signin", &[("email", "scott.long")])
        .await;
    assert!(
        kept.body.contains("value=\"scott.long\""),
        "typed value kept: {}",
        kept.body
    );
    let escaped = client
        .post_form("/signin", &[("email", "<script>@x")])
        .await;
    assert!(!escaped.body.contains("<script>@x"), "escaped");
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_are_refused_and_change_nothing() {
    let app = support::app_default().await;
    let mut client = app.client();
    client.get("/signin").await;
    let response = client.post_form_raw("/signin", &[("email", SCOTT)]).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert!(!client.jar.contains_key("smartplan_login"));
    let response = client
        .post_form_raw("/signin", &[("csrf", "0000"), ("email", SCOTT)])
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    // A password post without the token does not even check the password.
    enter_email(&mut client, SCOTT).await;
    let response = client
        .post_form_raw("/signin/password", &[("password", DEMO_PASSWORD)])
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert!(!signed_in(&app, &client).await);
    let mail_before = app.mail.len();
    let response = client
        .post_form_raw("/password/forgot", &[("email", SCOTT)])
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(app.mail.len(), mail_before, "no reset mail");
}

#[tokio::test]
async fn scott_signs_in_with_his_password_and_lands_on_his_account() {
    let app = support::app_default().await;
    let mut client = app.client();
    let page = client.get("/signin").await;
    assert_eq!(page.status, StatusCode::OK);
    let started = enter_email(&mut client, SCOTT).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER);
    assert_eq!(started.location(), Some("/signin/password"));
    let attempt_cookie = started
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("smartplan_login="))
        .unwrap()
        .to_owned();
    assert!(attempt_cookie.contains("HttpOnly") && attempt_cookie.contains("SameSite=Lax"));

    let password_page = client.get("/signin/password").await;
    assert_eq!(password_page.status, StatusCode::OK);
    assert!(password_page.body.contains(SCOTT), "the email is shown");
    assert!(
        password_page
            .body
            .contains("autocomplete=\"current-password\"")
    );
    assert!(password_page.body.contains("href=\"/password/forgot\""));

    let done = client
        .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), Some("/account"));
    let session_cookie = done
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("smartplan_session="))
        .unwrap()
        .to_owned();
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"));
    assert!(signed_in(&app, &client).await);
    assert!(
        !client.jar.contains_key("smartplan_login"),
        "the attempt is gone"
    );
    assert!(!client.jar.contains_key("smartplan_signin"));
    // Signed in: /signin sends the person on.
    let again = client.get("/signin").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), Some("/account"));
    assert!(
        app.state
            .metrics
            .render(&smartplan::ops::Readings::default())
            .contains("smartplan_logins_total{method=\"signin\",result=\"success\"} 1")
    );
}

#[tokio::test]
async fn next_is_followed_when_local_and_refused_when_it_leaves_the_site() {
    let app = support::app_default().await;
    for (next, expected) in [
        ("/admin/approvals", "/admin/approvals"),
        ("/account/mfa?tab=1", "/account/mfa?tab=1"),
        ("https://evil.example/phish", "/account"),
        ("//evil.example", "/account"),
        ("/\\evil.example", "/account"),
        ("", "/account"),
    ] {
        let mut client = app.client();
        let started = client
            .post_form("/signin", &[("email", BETTY), ("next", next)])
            .await;
        assert_eq!(started.location(), Some("/signin/password"), "{next}");
        let done = client
            .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{next}: {}", done.body);
        assert_eq!(done.location(), Some(expected), "{next}");
    }
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_plain_answer() {
    let app = support::app_default().await;
    let mut client = app.client();
    let wrong = enter_password(&mut client, SCOTT, "not-his-password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("the email or password is wrong"),
        "{}",
        wrong.body
    );
    assert!(wrong.body.contains(SCOTT), "the page stays on the step");
    assert!(
        !wrong.body.contains("not-his-password"),
        "the password is not echoed"
    );
    assert!(!signed_in(&app, &client).await);

    let mut other = app.client();
    let unknown = enter_password(&mut other, "nobody@nowhere.example", "whatever-123").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("the email or password is wrong"));
    assert!(!other.jar.contains_key("smartplan_session"));

    let empty = client
        .post_form("/signin/password", &[("password", "")])
        .await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.body.contains("enter your password"));

    // The same attempt still accepts the right password afterwards.
    let right = client
        .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
        .await;
    assert_eq!(right.location(), Some("/account"), "{}", right.body);
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_the_wait_time() {
    let app = support::app_default().await;
    let mut client = app.client();
    let mut last = enter_password(&mut client, SCOTT, "wrong-1").await;
    for attempt in 2..=8 {
        last = client
            .post_form(
                "/signin/password",
                &[("password", &format!("wrong-{attempt}"))],
            )
            .await;
        if last.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS, "{}", last.body);
    assert!(
        last.body.contains("too many failed attempts; wait"),
        "{}",
        last.body
    );
    assert!(
        last.body.contains("seconds")
            || last.body.contains("minutes")
            || last.body.contains("second")
    );
    let retry: u64 = last.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    // Even the right password waits.
    let blocked = client
        .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
        .await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!signed_in(&app, &client).await);
    // After the wait it works.
    app.clock
        .advance(chrono::Duration::seconds(i64::try_from(retry).unwrap() + 1));
    let mut fresh = app.client();
    let done = enter_password(&mut fresh, SCOTT, DEMO_PASSWORD).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
}

#[tokio::test]
async fn steps_without_an_attempt_or_with_an_altered_one_start_over() {
    let app = support::app_default().await;
    let mut client = app.client();
    for path in [
        "/signin/password",
        "/signin/sms",
        "/signin/totp",
        "/signin/recovery",
        "/signin/link",
    ] {
        let response = client.get(path).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.location(), Some("/signin"), "{path}");
    }
    let response = client
        .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
        .await;
    assert_eq!(response.location(), Some("/signin"));
    assert!(!signed_in(&app, &client).await);

    enter_email(&mut client, SCOTT).await;
    client.jar.insert(
        "smartplan_login".to_owned(),
        "altered-attempt-token".to_owned(),
    );
    let response = client
        .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(response.location(), Some("/signin"));
    assert!(flash_of(&response));
    assert!(!signed_in(&app, &client).await);

    // An altered progress cookie is ignored too.
    enter_email(&mut client, SCOTT).await;
    client
        .jar
        .insert("smartplan_signin".to_owned(), "e30.deadbeef".to_owned());
    let response = client.get("/signin/password").await;
    assert_eq!(response.location(), Some("/signin"));
}

#[tokio::test]
async fn an_expired_attempt_says_so_and_keeps_next() {
    let app = support::app_default().await;
    let mut client = app.client();
    client
        .post_form("/signin", &[("email", SCOTT), ("next", "/backoffice")])
        .await;
    app.clock.advance(chrono::Duration::minutes(11));
    let response = client
        .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(response.location(), Some("/signin?next=%2Fbackoffice"));
    let page = client.get(response.location().unwrap()).await;
    assert!(page.body.contains("start again"), "{}", page.body);
    assert!(!signed_in(&app, &client).await);
}

#[tokio::test]
async fn jeremy_signs_in_with_password_and_an_sms_code() {
    let app = support::app_default().await;
    jeremy_with_sms(&app).await;
    let mut client = app.client();
    let after_password = enter_password(&mut client, JEREMY, DEMO_PASSWORD).await;
    assert_eq!(
        after_password.status,
        StatusCode::SEE_OTHER,
        "{}",
        after_password.body
    );
    assert_eq!(after_password.location(), Some("/signin/sms"));
    assert!(!signed_in(&app, &client).await, "not yet");

    let sms_page = client.get("/signin/sms").await;
    assert_eq!(sms_page.status, StatusCode::OK);
    assert!(
        sms_page.body.contains("ending …23"),
        "phone hint: {}",
        sms_page.body
    );
    assert!(sms_page.body.contains(">Send code</button>"));
    assert!(
        !sms_page.body.contains("name=\"code\""),
        "no code field before sending"
    );

    let texts_before = app.sms.messages().len();
    let sent = client.post_form("/signin/sms", &[("action", "send")]).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    assert_eq!(sent.location(), Some("/signin/sms"));
    assert_eq!(app.sms.messages().len(), texts_before + 1);
    let code = {
        let text = app.sms.latest_to(PHONE).unwrap().text;
        ciam_core::delivery::first_code(&text).unwrap().to_owned()
    };
    let code_page = client.get("/signin/sms").await;
    assert!(
        code_page
            .body
            .contains("We sent a code to your phone number ending …23"),
        "flash"
    );
    assert!(code_page.body.contains("name=\"code\""));
    assert!(code_page.body.contains("autocomplete=\"one-time-code\""));
    assert!(code_page.body.contains(">Send a new code</button>"));

    // A new code right away is refused with a plain reason, and nothing is sent.
    let too_soon = client.post_form("/signin/sms", &[("action", "send")]).await;
    assert_eq!(too_soon.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        too_soon.body.contains("wait half a minute"),
        "{}",
        too_soon.body
    );
    assert_eq!(app.sms.messages().len(), texts_before + 1);

    let empty = client.post_form("/signin/sms", &[("code", "")]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.body.contains("enter the 6-digit code"));
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    let wrong = client
        .post_form("/signin/sms", &[("code", wrong_code)])
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("the code is wrong"), "{}", wrong.body);
    assert!(wrong.body.contains("aria-invalid=\"true\""));
    assert!(!signed_in(&app, &client).await);

    let done = client.post_form("/signin/sms", &[("code", &code)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), Some("/account"));
    assert!(signed_in(&app, &client).await);
}

#[tokio::test]
async fn a_resent_code_replaces_the_first_one() {
    let app = support::app_default().await;
    jeremy_with_sms(&app).await;
    let mut client = app.client();
    enter_password(&mut client, JEREMY, DEMO_PASSWORD).await;
    client.post_form("/signin/sms", &[("action", "send")]).await;
    let first = ciam_core::delivery::first_code(&app.sms.latest_to(PHONE).unwrap().text)
        .unwrap()
        .to_owned();
    app.clock.advance(chrono::Duration::seconds(31));
    let resent = client.post_form("/signin/sms", &[("action", "send")]).await;
    assert_eq!(resent.location(), Some("/signin/sms"), "{}", resent.body);
    let second = ciam_core::delivery::first_code(&app.sms.latest_to(PHONE).unwrap().text)
        .unwrap()
        .to_owned();
    if first != second {
        let old = client.post_form("/signin/sms", &[("code", &first)]).await;
        assert_eq!(old.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", old.body);
        assert!(old.body.contains("the code is wrong"), "{}", old.body);
    }
    let done = client.post_form("/signin/sms", &[("code", &second)]).await;
    assert_eq!(done.location(), Some("/account"));
}

#[tokio::test]
async fn sms_sending_is_throttled_per_network() {
    let mut app = support::app_default().await;
    let mut state = app.state.clone();
    let mut throttle = (*state.throttle).clone();
    throttle.sms.max = 1;
    state.throttle = std::sync::Arc::new(throttle);
    app.router = smartplan::app(state.clone());
    app.state = state;
    jeremy_with_sms(&app).await;
    let mut client = app.client();
    enter_password(&mut client, JEREMY, DEMO_PASSWORD).await;
    let first = client.post_form("/signin/sms", &[("action", "send")]).await;
    assert_eq!(first.location(), Some("/signin/sms"));
    let sent = app.sms.messages().len();
    app.clock.advance(chrono::Duration::seconds(31));
    let second = client.post_form("/signin/sms", &[("action", "send")]).await;
    assert_eq!(
        second.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        second.body
    );
    assert!(
        second
            .body
            .contains("too many codes were asked for from this network; wait")
    );
    assert!(second.header("retry-after").is_some());
    assert_eq!(app.sms.messages().len(), sent, "nothing sent");
}

#[tokio::test]
async fn five_wrong_codes_end_the_attempt() {
    let app = support::app_default().await;
    jeremy_with_sms(&app).await;
    let mut client = app.client();
    enter_password(&mut client, JEREMY, DEMO_PASSWORD).await;
    client.post_form("/signin/sms", &[("action", "send")]).await;
    let code = ciam_core::delivery::first_code(&app.sms.latest_to(PHONE).unwrap().text)
        .unwrap()
        .to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut last = None;
    for _ in 0..5 {
        last = Some(client.post_form("/signin/sms", &[("code", wrong)]).await);
    }
    let last = last.unwrap();
    assert_eq!(last.status, StatusCode::SEE_OTHER, "{}", last.body);
    assert_eq!(last.location(), Some("/signin"));
    let after = client.post_form("/signin/sms", &[("code", &code)]).await;
    assert_eq!(after.location(), Some("/signin"), "the attempt is over");
    assert!(!signed_in(&app, &client).await);
}

#[tokio::test]
async fn a_required_second_factor_without_any_set_up_leads_to_setting_one_up() {
    let app = support::app_default().await;
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

    let mut client = app.client();
    let response = enter_password(&mut client, JEREMY, DEMO_PASSWORD).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    assert_eq!(response.location(), Some("/signin/enrol"));
    assert!(!signed_in(&app, &client).await);
    let page = client.get("/signin/enrol").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("needs a second step"), "{}", page.body);
    assert!(page.body.contains("secret-key"), "{}", page.body);
    assert!(!signed_in(&app, &client).await);
}

fn totp_now(otpauth_uri: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    totp_rs::TOTP::from_url(otpauth_uri)
        .unwrap()
        .generate(u64::try_from(at.timestamp()).unwrap())
}

async fn enroll_totp(app: &TestApp, email: &str) -> (String, Vec<String>) {
    let (identity, principal) = support::principal_of(app, email).await;
    let login = app.state.ciam.login();
    let enrollment = login.enroll_totp(&principal, identity).await.unwrap();
    let code = totp_now(&enrollment.otpauth_uri, app.clock_now());
    let recovery = login
        .confirm_totp(&principal, identity, &code)
        .await
        .unwrap();
    (
        enrollment.otpauth_uri,
        recovery.iter().map(|c| c.expose().to_owned()).collect(),
    )
}

#[tokio::test]
async fn an_authenticator_app_code_completes_the_sign_in() {
    let app = support::app_default().await;
    let (secret, _) = enroll_totp(&app, SCOTT).await;
    app.clock.advance(chrono::Duration::seconds(60));
    let mut client = app.client();
    let after_password = enter_password(&mut client, SCOTT, DEMO_PASSWORD).await;
    assert_eq!(
        after_password.location(),
        Some("/signin/totp"),
        "{}",
        after_password.body
    );
    let page = client.get("/signin/totp").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("authenticator app"));
    assert!(
        page.body.contains("href=\"/signin/recovery\""),
        "recovery offered"
    );
    let wrong = client
        .post_form("/signin/totp", &[("code", "12 34 5")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!signed_in(&app, &client).await);
    let code = totp_now(&secret, app.clock_now());
    let done = client.post_form("/signin/totp", &[("code", &code)]).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
    assert!(signed_in(&app, &client).await);
}

#[tokio::test]
async fn a_recovery_code_works_once() {
    let app = support::app_default().await;
    let (_, recovery) = enroll_totp(&app, SCOTT).await;
    let mut client = app.client();
    enter_password(&mut client, SCOTT, DEMO_PASSWORD).await;
    let page = client.get("/signin/recovery").await;
    assert!(page.body.contains("Recovery code"));
    let empty = client.post_form("/signin/recovery", &[("code", " ")]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.body.contains("enter one of your recovery codes"));
    let wrong = client
        .post_form("/signin/recovery", &[("code", "not-a-code")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let done = client
        .post_form("/signin/recovery", &[("code", &recovery[0])])
        .await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);

    let mut again = app.client();
    enter_password(&mut again, SCOTT, DEMO_PASSWORD).await;
    let reused = again
        .post_form("/signin/recovery", &[("code", &recovery[0])])
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY, "used up");
    assert!(!signed_in(&app, &again).await);
}

#[tokio::test]
async fn sign_out_ends_the_session_and_needs_the_csrf_token() {
    let app = support::app_default().await;
    let mut client = app.client();
    enter_password(&mut client, SCOTT, DEMO_PASSWORD).await;
    assert!(signed_in(&app, &client).await);
    let refused = client.post_form_raw("/signout", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(signed_in(&app, &client).await, "still signed in");

    let token = client.jar.get("smartplan_session").cloned().unwrap();
    let out = client.post_form("/signout", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), Some("/signin"));
    assert!(
        out.set_cookies()
            .iter()
            .any(|c| c.starts_with("smartplan_session=;") && c.contains("Max-Age=0"))
    );
    assert!(
        app.state
            .ciam
            .sessions()
            .validate(&SecretToken::from_presented(token.as_str()))
            .await
            .is_err(),
        "the session is revoked, not only forgotten"
    );
    let page = client.get("/signin").await;
    assert!(page.body.contains("You are signed out"));
    // Signing out when signed out is harmless.
    let again = client.post_form("/signout", &[]).await;
    assert_eq!(again.location(), Some("/signin"));
}

#[tokio::test]
async fn a_forgotten_password_gets_the_same_answer_for_known_and_unknown_emails() {
    let app = support::app_default().await;
    let mut client = app.client();
    let page = client.get("/password/forgot").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("<label for=\"email\">Email address</label>")
    );

    let known = client
        .post_form("/password/forgot", &[("email", SCOTT)])
        .await;
    let unknown = client
        .post_form("/password/forgot", &[("email", "nobody@nowhere.example")])
        .await;
    assert_eq!(known.status, StatusCode::OK);
    assert_eq!(unknown.status, StatusCode::OK);
    let normalise = |body: &str, email: &str| {
        body.replace(email, "EMAIL")
            .replace(&support::csrf_in(body).unwrap_or_default(), "")
    };
    assert_eq!(
        normalise(&known.body, SCOTT),
        normalise(&unknown.body, "nobody@nowhere.example"),
        "the same page"
    );
    assert!(known.body.contains("If <strong>"));
    assert!(app.mail.latest_to(SCOTT).is_some());
    assert!(app.mail.latest_to("nobody@nowhere.example").is_none());

    let bad = client
        .post_form("/password/forgot", &[("email", "not-an-email")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("value=\"not-an-email\""));
    assert!(bad.body.contains("this is not an email address"));
}

#[tokio::test]
async fn the_reset_link_sets_a_new_password_and_ends_every_session() {
    let app = support::app_default().await;
    let mut old_device = app.client();
    enter_password(&mut old_device, BETTY, DEMO_PASSWORD).await;
    assert!(signed_in(&app, &old_device).await);

    let mut client = app.client();
    client
        .post_form("/password/forgot", &[("email", BETTY)])
        .await;
    let mail = app.mail.latest_to(BETTY).unwrap();
    let link = ciam_core::delivery::first_link(&mail.text)
        .unwrap()
        .to_owned();
    let path = link.strip_prefix(support::BASE_URL).unwrap().to_owned();
    assert!(path.starts_with("/password/reset?token="), "{path}");

    let opened = client.get(&path).await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.body);
    assert_eq!(
        opened.location(),
        Some("/password/reset"),
        "the token leaves the address"
    );
    let form = client.get("/password/reset").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("autocomplete=\"new-password\""));

    let mismatch = client
        .post_form(
            "/password/reset",
            &[
                ("password", "a-new-long-password"),
                ("confirm", "something-else"),
            ],
        )
        .await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(mismatch.body.contains("the two passwords are not the same"));
    let short = client
        .post_form(
            "/password/reset",
            &[("password", "short"), ("confirm", "short")],
        )
        .await;
    assert_eq!(
        short.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        short.body
    );
    assert!(signed_in(&app, &old_device).await, "nothing changed yet");

    let done = client
        .post_form(
            "/password/reset",
            &[
                ("password", "a-new-long-password"),
                ("confirm", "a-new-long-password"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), Some("/signin"));
    assert!(!signed_in(&app, &old_device).await, "every session ended");

    let mut fresh = app.client();
    let old = enter_password(&mut fresh, BETTY, DEMO_PASSWORD).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = fresh
        .post_form("/signin/password", &[("password", "a-new-long-password")])
        .await;
    assert_eq!(new.location(), Some("/account"));

    // The link is used up.
    let mut later = app.client();
    let reused = later.get(&path).await;
    assert_eq!(reused.status, StatusCode::SEE_OTHER);
    assert_eq!(reused.location(), Some("/password/forgot"));
}

#[tokio::test]
async fn bad_reset_links_and_posts_without_a_link_change_nothing() {
    let app = support::app_default().await;
    let mut client = app.client();
    for path in ["/password/reset?token=forged", "/password/reset?token="] {
        let response = client.get(path).await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.location(), Some("/password/forgot"), "{path}");
    }
    let no_link = client.get("/password/reset").await;
    assert_eq!(no_link.location(), Some("/password/forgot"));
    let post = client
        .post_form(
            "/password/reset",
            &[
                ("password", "a-new-long-password"),
                ("confirm", "a-new-long-password"),
            ],
        )
        .await;
    assert_eq!(post.location(), Some("/password/forgot"));
    let mut fresh = app.client();
    let still = enter_password(&mut fresh, SCOTT, DEMO_PASSWORD).await;
    assert_eq!(still.location(), Some("/account"));
}

#[tokio::test]
async fn the_federation_endpoints_refuse_what_they_cannot_use() {
    let app = support::app_default().await;
    let mut client = app.client();
    let google = client.get("/signin/google").await;
    assert_eq!(google.status, StatusCode::NOT_FOUND);
    assert!(google.body.contains("not set up"));

    let callback = client.get("/signin/oidc/callback?code=x&state=y").await;
    assert_eq!(callback.status, StatusCode::SEE_OTHER);
    assert_eq!(callback.location(), Some("/signin"));
    assert!(!signed_in(&app, &client).await);

    let empty = client.post_form_raw("/signin/saml/acs", &[]).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    // Without our cookie (a cross-site POST), the answer is posted again from our origin.
    let continue_page = client
        .post_form_raw(
            "/signin/saml/acs",
            &[("SAMLResponse", "PHNhbWw+"), ("RelayState", "r\"1")],
        )
        .await;
    assert_eq!(continue_page.status, StatusCode::OK);
    assert!(continue_page.body.contains("action=\"/signin/saml/acs\""));
    assert!(continue_page.body.contains("name=\"resubmitted\""));
    assert!(
        continue_page
            .body
            .contains("src=\"/static/signin-continue.js\"")
    );
    assert!(!continue_page.body.contains("r\"1"), "escaped");
    let resubmitted = client
        .post_form_raw(
            "/signin/saml/acs",
            &[("SAMLResponse", "PHNhbWw+"), ("resubmitted", "1")],
        )
        .await;
    assert_eq!(resubmitted.status, StatusCode::SEE_OTHER);
    assert_eq!(resubmitted.location(), Some("/signin"));
    // With an attempt that is not a SAML one, the response is refused and nobody signs in.
    enter_email(&mut client, SCOTT).await;
    let wrong = client
        .post_form_raw("/signin/saml/acs", &[("SAMLResponse", "PHNhbWw+")])
        .await;
    assert!(
        wrong.status.is_client_error() || wrong.status == StatusCode::SEE_OTHER,
        "{}",
        wrong.status
    );
    assert!(!signed_in(&app, &client).await);

    let metadata = client.get("/signin/saml/metadata").await;
    assert_eq!(metadata.status, StatusCode::OK);
    assert_eq!(
        metadata.header("content-type"),
        Some("application/samlmetadata+xml")
    );
    assert!(
        metadata
            .body
            .contains("entityID=\"http://127.0.0.1:8080/signin/saml/metadata\""),
        "{}",
        metadata.body
    );
    assert!(
        metadata
            .body
            .contains("Location=\"http://127.0.0.1:8080/signin/saml/acs\"")
    );

    let script = client.get("/static/signin-continue.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(
        script
            .header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );

    let company = client.get("/signin/company").await;
    assert_eq!(company.location(), Some("/signin"));
    let company = client.get("/signin/company?email=not-an-email").await;
    assert_eq!(company.location(), Some("/signin"));
    // A domain without a company login continues with the password.
    let mut other = app.client();
    let company = other.get(&format!("/signin/company?email={JEREMY}")).await;
    assert_eq!(company.location(), Some("/signin/password"));
    let invitation = other.get("/signin/company?invitation=forged").await;
    assert_eq!(invitation.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn password_sign_in_and_sms_work_on_sqlite() {
    let app = support::build(Options {
        backend: Backend::Sqlite,
        ..Options::default()
    })
    .await;
    let mut client = app.client();
    let done = enter_password(&mut client, SCOTT, DEMO_PASSWORD).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);
    assert!(signed_in(&app, &client).await);

    jeremy_with_sms(&app).await;
    let mut jeremy = app.client();
    enter_password(&mut jeremy, JEREMY, DEMO_PASSWORD).await;
    jeremy.post_form("/signin/sms", &[("action", "send")]).await;
    let code = ciam_core::delivery::first_code(&app.sms.latest_to(PHONE).unwrap().text)
        .unwrap()
        .to_owned();
    let done = jeremy.post_form("/signin/sms", &[("code", &code)]).await;
    assert_eq!(done.location(), Some("/account"));
}

#[tokio::test]
async fn the_google_configuration_is_stored_once_and_shows_the_button() {
    use smartplan::config::{GoogleConfig, Redacted};
    use smartplan::signin::federation::{GoogleConnectionChange, store_google_connection};

    let app = support::app_default().await;
    let page = app.client().get("/signin").await;
    assert!(!page.body.contains("Sign in with Google"));
    assert_eq!(
        app.client().get("/signin/google").await.status,
        StatusCode::NOT_FOUND
    );

    let google = GoogleConfig {
        client_id: "smartplan.apps.googleusercontent.com".into(),
        client_secret: Redacted::new("first-secret"),
    };
    let store = |config: GoogleConfig| {
        let ciam = app.state.ciam.clone();
        async move { store_google_connection(&ciam, &config).await.unwrap() }
    };
    assert_eq!(store(google.clone()).await, GoogleConnectionChange::Added);
    let page = app.client().get("/signin").await;
    assert!(page.body.contains("Sign in with Google"), "{}", page.body);

    // A restart with the same configuration writes nothing; a new secret replaces the old one.
    assert_eq!(
        store(google.clone()).await,
        GoogleConnectionChange::Unchanged
    );
    let rotated = GoogleConfig {
        client_secret: Redacted::new("second-secret"),
        ..google.clone()
    };
    assert_eq!(
        store(rotated.clone()).await,
        GoogleConnectionChange::Updated
    );
    assert_eq!(store(rotated).await, GoogleConnectionChange::Unchanged);
    let stored = app
        .state
        .ciam
        .identity_providers()
        .connection(ciam_core::login::GOOGLE_ISSUER)
        .await
        .unwrap()
        .unwrap();
    let body = serde_json::to_string(&stored.connection).unwrap();
    assert!(
        !body.contains("second-secret"),
        "the secret is stored sealed"
    );
}

/// ASVS 6.2.6 to 6.2.8: the password field is masked, carries the hints password managers use,
/// no script can block pasting (the CSP allows no inline script), and the password is checked
/// exactly as typed: no trimming, no case folding, no truncation.
#[tokio::test]
async fn password_fields_are_masked_and_work_with_password_managers() {
    let app = support::app_default().await;
    let mut client = app.client();
    enter_email(&mut client, SCOTT).await;
    let page = client.get("/signin/password").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("type=\"password\""), "{}", page.body);
    assert!(page.body.contains("autocomplete=\"current-password\""));
    assert!(page.body.contains("autocomplete=\"username\""));
    assert!(!page.body.contains("onpaste"), "nothing blocks pasting");
    let csp = page
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );

    let longer = format!("{DEMO_PASSWORD}x");
    // Four wrong tries: the fifth failure would start the account's back-off.
    let variants = [
        format!(" {DEMO_PASSWORD} "),
        DEMO_PASSWORD.to_uppercase(),
        longer,
        DEMO_PASSWORD[..DEMO_PASSWORD.len() - 1].to_owned(),
    ];
    for wrong in &variants {
        let refused = client
            .post_form("/signin/password", &[("password", wrong.as_str())])
            .await;
        assert_ne!(refused.status, StatusCode::SEE_OTHER, "{wrong:?} signed in");
        assert!(!signed_in(&app, &client).await);
    }
    let done = client
        .post_form("/signin/password", &[("password", DEMO_PASSWORD)])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(signed_in(&app, &client).await);
}
