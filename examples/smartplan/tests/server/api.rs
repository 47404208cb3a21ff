//! The CRM REST API: every route, bearer keys with scopes, bad input refused plainly with
//! nothing changed, idempotency keys, the OpenAPI document.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use ciam_core::authz::IntegrationScope;
use serde_json::{Value, json};
use smartplan::api::keys;

use crate::support::{self, Client, TestApp};

static SEEDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);

async fn key(app: &TestApp, scopes: &[IntegrationScope]) -> String {
    keys::create(
        &app.state.store,
        &ciam_core::SeededRandom::new(SEEDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        app.clock_now(),
        "crm",
        scopes.iter().copied().collect::<BTreeSet<_>>(),
    )
    .await
    .unwrap()
    .key
}

async fn full_key(app: &TestApp) -> String {
    key(
        app,
        &[
            IntegrationScope::Provisioning,
            IntegrationScope::Invitations,
            IntegrationScope::Leads,
            IntegrationScope::Read,
        ],
    )
    .await
}

fn org_body() -> Value {
    json!({"name": "Nordic Heat Oy", "email_domains": ["nordicheat.example"]})
}

async fn get_org(client: &mut Client, key: &str, id: &str) -> support::TestResponse {
    client
        .api(
            Method::GET,
            &format!("/api/v1/organizations/{id}"),
            Some(key),
            None,
        )
        .await
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_refused_with_401() {
    let app = support::app_default().await;
    let mut client = app.client();
    let missing = client
        .api(
            Method::PUT,
            "/api/v1/organizations/ACC-9",
            None,
            Some(&org_body()),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.json()["error"]["code"], "unauthorized");
    assert!(
        missing
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    let wrong = client
        .api(
            Method::PUT,
            "/api/v1/organizations/ACC-9",
            Some("spk_nope_nope"),
            Some(&org_body()),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // A real id with a wrong secret.
    let real = full_key(&app).await;
    let forged = format!("{}x", &real[..real.len() - 1]);
    let forged = client
        .api(
            Method::PUT,
            "/api/v1/organizations/ACC-9",
            Some(&forged),
            Some(&org_body()),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let after = get_org(&mut client, &real, "ACC-9").await;
    assert_eq!(after.status, StatusCode::NOT_FOUND, "nothing was created");
}

#[tokio::test]
async fn organizations_are_upserted_and_read_with_their_users() {
    let app = support::app_default().await;
    let key = full_key(&app).await;
    let mut client = app.client();
    let created = client
        .api(
            Method::PUT,
            "/api/v1/organizations/ACC-9",
            Some(&key),
            Some(&org_body()),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(created.json()["crm_account_id"], "ACC-9");
    assert_eq!(created.json()["name"], "Nordic Heat Oy");
    let again = client
        .api(
            Method::PUT,
            "/api/v1/organizations/ACC-9",
            Some(&key),
            Some(&org_body()),
        )
        .await;
    assert_eq!(
        again.json()["version"],
        created.json()["version"],
        "no change the second time"
    );

    let city = get_org(&mut client, &key, "ACC-1001").await;
    assert_eq!(city.status, StatusCode::OK, "{}", city.body);
    let body = city.json();
    assert_eq!(body["organization"]["name"], "City Group, Inc.");
    assert_eq!(body["contracts"][0]["crm_contract_id"], "CON-2001");
    let users = body["users"].as_array().unwrap();
    let jeremy = users
        .iter()
        .find(|u| u["email"] == "jeremy.mills@citygroup.example")
        .expect("Jeremy is listed");
    assert_eq!(jeremy["membership_status"], "active");

    let missing = get_org(&mut client, &key, "ACC-404").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"]["code"], "not_found");
}

#[tokio::test]
async fn a_key_without_the_scope_is_refused_and_changes_nothing() {
    let app = support::app_default().await;
    let read_only = key(&app, &[IntegrationScope::Read]).await;
    let mut client = app.client();
    let refused = client
        .api(
            Method::PUT,
            "/api/v1/organizations/ACC-1001",
            Some(&read_only),
            Some(&json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "forbidden");
    let city = get_org(&mut client, &read_only, "ACC-1001").await;
    assert_eq!(city.json()["organization"]["name"], "City Group, Inc.");

    let invite_only = key(&app, &[IntegrationScope::Invitations]).await;
    let read = get_org(&mut client, &invite_only, "ACC-1001").await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_bodies_get_clear_errors_and_change_nothing() {
    let app = support::app_default().await;
    let key = full_key(&app).await;
    let mut client = app.client();
    let path = "/api/v1/organizations/ACC-9";

    let malformed = client
        .send(
            axum::http::Request::put(path)
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{\"name\": "))
                .unwrap(),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json()["error"]["code"], "malformed_json");

    let unknown = client
        .api(
            Method::PUT,
            path,
            Some(&key),
            Some(&json!({"name": "X", "colour": "red"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.json()["error"]["code"], "invalid");
    assert!(
        unknown.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );

    let wrong_type = client
        .api(Method::PUT, path, Some(&key), Some(&json!({"name": 42})))
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);

    let no_content_type = client
        .send(
            axum::http::Request::put(path)
                .header("authorization", format!("Bearer {key}"))
                .body(axum::body::Body::from(org_body().to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(no_content_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        no_content_type.json()["error"]["code"],
        "unsupported_media_type"
    );

    let huge = json!({"name": "x".repeat(2 * 1024 * 1024)});
    let oversized = client.api(Method::PUT, path, Some(&key), Some(&huge)).await;
    assert_eq!(oversized.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(oversized.json()["error"]["code"], "payload_too_large");

    let invalid_value = client
        .api(
            Method::PUT,
            "/api/v1/organizations/bad%20id",
            Some(&key),
            Some(&org_body()),
        )
        .await;
    assert_eq!(invalid_value.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        !invalid_value.json()["error"]["errors"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let bad_query = client
        .api(
            Method::GET,
            "/api/v1/organizations/ACC-1001?limit=lots",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(bad_query.status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        get_org(&mut client, &key, "ACC-9").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn contracts_are_upserted_and_ended() {
    let app = support::app_default().await;
    let key = full_key(&app).await;
    let mut client = app.client();
    let created = client
        .api(
            Method::PUT,
            "/api/v1/organizations/ACC-1001/contracts/CON-2002",
            Some(&key),
            Some(&json!({"services": ["smartplan-app"], "status": "active"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(created.json()["status"], "active");
    let unknown_service = client
        .api(
            Method::PUT,
            "/api/v1/organizations/ACC-1001/contracts/CON-2003",
            Some(&key),
            Some(&json!({"services": ["nope"], "status": "active"})),
        )
        .await;
    assert_eq!(unknown_service.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ended = client
        .api(
            Method::POST,
            "/api/v1/contracts/CON-2002/status",
            Some(&key),
            Some(&json!({"change": "end"})),
        )
        .await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.body);
    assert_eq!(ended.json()["status"], "ended");
    let bad_change = client
        .api(
            Method::POST,
            "/api/v1/contracts/CON-2002/status",
            Some(&key),
            Some(&json!({"change": "explode"})),
        )
        .await;
    assert_eq!(bad_change.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn invitations_give_per_row_results_and_an_idempotency_key_makes_a_retry_safe() {
    let app = support::app_default().await;
    let key = full_key(&app).await;
    let mut client = app.client();
    let body = json!({
        "crm_account_id": "ACC-1001",
        "items": [
            {"email": "mary.major@citygroup.example", "business_roles": ["energy-manager"]},
            {"email": "not-an-email"},
            {"email": "jeremy.mills@citygroup.example"}
        ]
    });
    let first = send_idem(&mut client, &key, body.clone(), "batch-1").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let result = first.json();
    assert_eq!(result["summary"]["total"], 3);
    assert_eq!(result["summary"]["created"], 1);
    assert_eq!(result["items"][0]["outcome"]["outcome"], "invited");
    assert_eq!(result["items"][1]["outcome"]["outcome"], "invalid");
    assert_eq!(result["items"][2]["outcome"]["outcome"], "already_member");
    let mails = app.mail.len();

    let retry = send_idem(&mut client, &key, body.clone(), "batch-1").await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.json(), result, "the retry answers the first response");
    assert_eq!(app.mail.len(), mails, "no second mail");

    let reused = send_idem(
        &mut client,
        &key,
        json!({"crm_account_id": "ACC-1001", "items": []}),
        "batch-1",
    )
    .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.json()["error"]["code"], "idempotency_key_reused");
}

#[tokio::test]
async fn leads_are_invited_and_identities_found() {
    let app = support::app_default().await;
    let key = full_key(&app).await;
    let mut client = app.client();
    let leads = client
        .api(
            Method::POST,
            "/api/v1/leads/invitations",
            Some(&key),
            Some(&json!({"crm_account_id": "ACC-1001", "items": [
                {"email": "leo.lead@citygroup.example", "crm_lead_id": "LEAD-88"}
            ]})),
        )
        .await;
    assert_eq!(leads.status, StatusCode::OK, "{}", leads.body);
    assert_eq!(leads.json()["summary"]["created"], 1);

    let found = client
        .api(
            Method::GET,
            "/api/v1/identities?email=jeremy.mills%40citygroup.example",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(found.json()["given_name"], "Jeremy");
    assert_eq!(found.json()["memberships"][0]["crm_account_id"], "ACC-1001");

    let nobody = client
        .api(
            Method::GET,
            "/api/v1/identities?email=nobody%40x.example",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
    let neither = client
        .api(Method::GET, "/api/v1/identities", Some(&key), None)
        .await;
    assert_eq!(neither.status, StatusCode::UNPROCESSABLE_ENTITY);
    let unknown_param = client
        .api(Method::GET, "/api/v1/identities?mail=x", Some(&key), None)
        .await;
    assert_eq!(unknown_param.status, StatusCode::UNPROCESSABLE_ENTITY);

    let contact = client
        .api(
            Method::PUT,
            "/api/v1/contacts/CNT-1",
            Some(&key),
            Some(&json!({"email": "jeremy.mills@citygroup.example"})),
        )
        .await;
    assert_eq!(contact.status, StatusCode::OK, "{}", contact.body);
    let by_contact = client
        .api(
            Method::GET,
            "/api/v1/identities?crm_contact_id=CNT-1",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(by_contact.json()["email"], "jeremy.mills@citygroup.example");
}

#[tokio::test]
async fn the_openapi_document_is_3_1_and_lists_every_route() {
    let app = support::app_default().await;
    let response = app.client().get("/api/openapi.json").await;
    assert_eq!(response.status, StatusCode::OK);
    let doc = response.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/organizations/{crm_account_id}",
        "/api/v1/organizations/{crm_account_id}/contracts/{crm_contract_id}",
        "/api/v1/contracts/{crm_contract_id}/status",
        "/api/v1/contacts/{crm_contact_id}",
        "/api/v1/invitations",
        "/api/v1/leads/invitations",
        "/api/v1/identities",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["BatchResponse"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

#[tokio::test]
async fn api_keys_are_listed_without_secrets_and_revoked() {
    let app = support::app_default().await;
    let key = full_key(&app).await;
    let listed = keys::list(&app.state.store).await.unwrap();
    assert_eq!(listed.len(), 1);
    let stored = app
        .state
        .store
        .settings(ciam_core::settings::SettingKind::ApiKey, None)
        .await
        .unwrap();
    assert!(
        !stored[0].body.to_string().contains(&key[10..]),
        "only the hash is stored"
    );
    keys::revoke(&app.state.store, &listed[0].id).await.unwrap();
    let refused = app
        .client()
        .api(
            Method::GET,
            "/api/v1/organizations/ACC-1001",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

async fn send_idem(
    client: &mut Client,
    key: &str,
    body: Value,
    idem: &str,
) -> support::TestResponse {
    let request = axum::http::Request::post("/api/v1/invitations")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("idempotency-key", idem)
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    client.send(request).await
}

/// The venv with schemathesis (PyPI), under the target directory; created on first use.
fn schemathesis() -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target").to_owned());
    let venv = std::path::PathBuf::from(target).join("schemathesis-venv");
    let st = venv.join("bin").join("st");
    if !st.exists() {
        let created = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv (install python3-venv)");
        assert!(created.success());
        let installed = std::process::Command::new(venv.join("bin").join("pip"))
            .args(["install", "-q", "schemathesis>=4,<5"])
            .status()
            .expect("pip");
        assert!(installed.success(), "pip install schemathesis failed");
    }
    st
}

/// An independent check of the OpenAPI document against the running server: schemathesis
/// generates requests from the document (a bounded number per operation) and checks that no
/// answer is a server error and that statuses, content types and bodies match the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_api_conforming_to_its_document() {
    let st = schemathesis();
    let app = support::app_default().await;
    let key = full_key(&app).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = app.router.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    // Run in the venv's directory: schemathesis keeps a cache in its working directory.
    let workdir = st.parent().and_then(|bin| bin.parent()).unwrap().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(st)
            .current_dir(workdir)
            .arg("run")
            .arg(format!("http://{address}/api/openapi.json"))
            .args(["--url", &format!("http://{address}")])
            .args(["-H", &format!("Authorization: Bearer {key}")])
            .args(["--max-examples", "25", "--workers", "1", "--no-color"])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    server.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis failed:\n{stdout}\n{stderr}"
    );
}
