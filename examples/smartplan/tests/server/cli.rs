//! The command line's pieces: configuration loading and its errors, API keys and webhooks.

use std::collections::BTreeMap;
use std::io::Write;

use smartplan::cli::admin::{self, ApiKeyCommand, WebhookCommand};
use smartplan::config::{ConfigError, ConfigSource, SmtpSecurity};

use crate::support;

const SECRET: &str = "0101010101010101010101010101010101010101010101010101010101010101";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

const FULL: &str = r#"
listen = "127.0.0.1:9090"
public_base_url = "https://id.smartplan.example"
database_url = "postgres://smartplan@db/smartplan"
secret_key = "0101010101010101010101010101010101010101010101010101010101010101"
trusted_proxies = ["10.0.0.0/8", "::1"]

[sessions]
idle_minutes = 30
absolute_hours = 12

[smtp]
host = "smtp.example"
username = "smartplan"
password = "hunter2"
from = "SmartPlan <no-reply@smartplan.example>"

[sms]
url = "https://sms.example/send"
auth_value = "Bearer abc"

[[webhooks]]
name = "crm"
url = "https://crm.example/hooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[saml]
key_file = "/etc/smartplan/idp.key"
certificate_file = "/etc/smartplan/idp.crt"
"#;

#[test]
fn a_full_file_loads_and_the_environment_overrides_it() {
    let config_file = file(FULL);
    let config = ConfigSource {
        file: Some(config_file.path().to_owned()),
        env: env(&[("SMARTPLAN_SMTP_PORT", "2525")]),
    }
    .load()
    .unwrap();
    assert_eq!(config.listen.port(), 9090);
    assert!(config.is_https());
    let smtp = config.smtp.unwrap();
    assert_eq!(smtp.port, 2525, "the environment wins");
    assert_eq!(smtp.security, SmtpSecurity::StartTls);
    assert_eq!(config.lifetimes.session_idle, chrono::Duration::minutes(30));
    assert_eq!(config.webhooks.len(), 1);
    assert_eq!(config.trusted_proxies.len(), 2);
    assert!(
        !format!("{:?}", config.secret).contains("0101"),
        "secrets are redacted"
    );
}

#[test]
fn the_catalog_cache_defaults_to_five_seconds_and_is_bounded() {
    let default = ConfigSource {
        file: Some(file(FULL).path().to_owned()),
        env: BTreeMap::new(),
    }
    .load()
    .unwrap();
    assert_eq!(default.catalog_cache, chrono::Duration::seconds(5));
    assert_eq!(
        default.policy().catalog_max_age,
        chrono::Duration::seconds(5)
    );
    let config_file = file(&format!("{FULL}\n[cache]\ncatalog_seconds = 30\n"));
    let from_file = ConfigSource {
        file: Some(config_file.path().to_owned()),
        env: BTreeMap::new(),
    }
    .load()
    .unwrap();
    assert_eq!(from_file.catalog_cache, chrono::Duration::seconds(30));
    let off = ConfigSource {
        file: Some(config_file.path().to_owned()),
        env: env(&[("SMARTPLAN_CACHE_CATALOG_SECONDS", "0")]),
    }
    .load()
    .unwrap();
    assert_eq!(off.policy().catalog_max_age, chrono::Duration::zero());
    for wrong in ["-1", "301"] {
        let error = error_of(FULL, &[("SMARTPLAN_CACHE_CATALOG_SECONDS", wrong)]);
        assert!(
            error.to_string().contains("cache.catalog_seconds")
                && error.to_string().contains("between 0"),
            "{error}"
        );
    }
}

#[test]
fn environment_only_configuration_works() {
    let config = ConfigSource {
        file: None,
        env: env(&[
            ("SMARTPLAN_PUBLIC_BASE_URL", "http://127.0.0.1:8080"),
            ("SMARTPLAN_DATABASE_URL", "sqlite:///tmp/x.db"),
            ("SMARTPLAN_SECRET_KEY", SECRET),
        ]),
    }
    .load()
    .unwrap();
    assert!(!config.is_https());
    assert!(config.smtp.is_none());
}

fn error_of(text: &str, vars: &[(&str, &str)]) -> ConfigError {
    let config_file = file(text);
    ConfigSource {
        file: Some(config_file.path().to_owned()),
        env: env(vars),
    }
    .load()
    .unwrap_err()
}

#[test]
fn missing_and_wrong_settings_are_named() {
    let missing = error_of("database_url = \"sqlite:x.db\"", &[]);
    assert!(
        matches!(
            missing,
            ConfigError::Missing {
                key: "public_base_url",
                ..
            }
        ),
        "{missing}"
    );
    assert!(
        missing.to_string().contains("SMARTPLAN_PUBLIC_BASE_URL"),
        "{missing}"
    );

    let base = "public_base_url = \"https://id.example\"\ndatabase_url = \"sqlite:x.db\"\n";
    let no_secret = error_of(base, &[]);
    assert!(no_secret.to_string().contains("secret_key"), "{no_secret}");

    let short_secret = error_of(&format!("{base}secret_key = \"abc\""), &[]);
    assert!(
        matches!(
            short_secret,
            ConfigError::Invalid {
                key: "secret_key",
                ..
            }
        ),
        "{short_secret}"
    );

    let with_secret = format!("{base}secret_key = \"{SECRET}\"\n");
    let bad_port = error_of(
        &format!("{with_secret}[smtp]\nhost = \"x\"\nport = \"many\"\n"),
        &[],
    );
    assert!(matches!(bad_port, ConfigError::Syntax { .. }), "{bad_port}");
    let unknown_key = error_of(&format!("{with_secret}colour = \"red\"\n"), &[]);
    assert!(unknown_key.to_string().contains("colour"), "{unknown_key}");
    let bad_env_number = error_of(&with_secret, &[("SMARTPLAN_SMTP_PORT", "lots")]);
    assert!(
        bad_env_number.to_string().contains("SMARTPLAN_SMTP_PORT"),
        "{bad_env_number}"
    );
    let unknown_env = error_of(&with_secret, &[("SMARTPLAN_COLOUR", "red")]);
    assert_eq!(
        unknown_env,
        ConfigError::UnknownVariable("SMARTPLAN_COLOUR".into())
    );
    let bad_url = error_of(
        &with_secret,
        &[("SMARTPLAN_PUBLIC_BASE_URL", "https://x.example/path")],
    );
    assert!(
        matches!(
            bad_url,
            ConfigError::Invalid {
                key: "public_base_url",
                ..
            }
        ),
        "{bad_url}"
    );
    let bad_db = error_of(&with_secret, &[("SMARTPLAN_DATABASE_URL", "mysql://x")]);
    assert!(
        matches!(
            bad_db,
            ConfigError::Invalid {
                key: "database_url",
                ..
            }
        ),
        "{bad_db}"
    );
    let bad_proxy = error_of(
        &format!("{with_secret}trusted_proxies = [\"10.0.0.0/99\"]\n"),
        &[],
    );
    assert!(
        bad_proxy.to_string().contains("trusted_proxies"),
        "{bad_proxy}"
    );
    let smtp_without_from = error_of(&format!("{with_secret}[smtp]\nhost = \"x\"\n"), &[]);
    assert!(matches!(
        smtp_without_from,
        ConfigError::Missing {
            key: "smtp.from",
            ..
        }
    ));
    let bad_webhook = error_of(
        &format!("{with_secret}[[webhooks]]\nurl = \"https://crm.example\"\nsecret = \"plain\"\n"),
        &[],
    );
    assert!(
        bad_webhook.to_string().contains("webhooks.secret"),
        "{bad_webhook}"
    );
    let idle_over_absolute = error_of(
        &format!("{with_secret}[sessions]\nidle_minutes = 1000\nabsolute_hours = 1\n"),
        &[],
    );
    assert!(
        idle_over_absolute.to_string().contains("idle"),
        "{idle_over_absolute}"
    );
}

#[tokio::test]
async fn api_keys_are_created_once_listed_and_revoked_from_the_command_line() {
    let app = support::app_default().await;
    let mut out = Vec::new();
    admin::api_key(
        &app.state.store,
        ApiKeyCommand::Create {
            name: "crm".into(),
            scopes: vec!["provisioning".into(), "read".into()],
        },
        &mut out,
    )
    .await
    .unwrap();
    let printed = String::from_utf8(out).unwrap();
    let key = printed.lines().next().unwrap().to_owned();
    assert!(key.starts_with("spk_"));
    let mut out = Vec::new();
    admin::api_key(&app.state.store, ApiKeyCommand::List, &mut out)
        .await
        .unwrap();
    let listed = String::from_utf8(out).unwrap();
    assert!(listed.contains("crm\tprovisioning,read"), "{listed}");
    assert!(!listed.contains(&key), "the secret is never listed");
    let id = listed.split('\t').next().unwrap().to_owned();
    let bad_scope = admin::api_key(
        &app.state.store,
        ApiKeyCommand::Create {
            name: "crm".into(),
            scopes: vec!["everything".into()],
        },
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(bad_scope.to_string().contains("everything"));
    admin::api_key(
        &app.state.store,
        ApiKeyCommand::Revoke { id: id.clone() },
        &mut Vec::new(),
    )
    .await
    .unwrap();
    let again = admin::api_key(
        &app.state.store,
        ApiKeyCommand::Revoke { id },
        &mut Vec::new(),
    )
    .await;
    assert!(again.is_err(), "revoking twice says there is no such key");
}

#[tokio::test]
async fn webhooks_are_stored_with_a_sealed_secret() {
    let app = support::app_default().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    admin::webhook(
        &app.state.config,
        app.state.store.clone(),
        WebhookCommand::Add {
            name: "crm".into(),
            url: "https://crm.example/hooks".into(),
            secret: secret.into(),
        },
        &mut Vec::new(),
    )
    .await
    .unwrap();
    let stored = app
        .state
        .store
        .settings(ciam_core::settings::SettingKind::WebhookEndpoint, None)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(
        !stored[0].body.to_string().contains("MfKQ9r8"),
        "the secret is sealed"
    );
    let endpoints = smartplan::webhooks::endpoints(&app.state.store, &app.state.config.secret, &[])
        .await
        .unwrap();
    assert_eq!(endpoints[0].secret.expose(), secret);
    let dispatchers = smartplan::webhooks::dispatchers(&app.state.ciam, &endpoints).unwrap();
    assert_eq!(dispatchers.len(), 1);
    let plain_http = admin::webhook(
        &app.state.config,
        app.state.store.clone(),
        WebhookCommand::Add {
            name: "bad".into(),
            url: "http://crm.example/hooks".into(),
            secret: secret.into(),
        },
        &mut Vec::new(),
    )
    .await;
    assert!(plain_http.is_err(), "http only to loopback");
    let mut out = Vec::new();
    admin::webhook(
        &app.state.config,
        app.state.store.clone(),
        WebhookCommand::List,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "crm\thttps://crm.example/hooks\n"
    );
    admin::webhook(
        &app.state.config,
        app.state.store.clone(),
        WebhookCommand::Remove { name: "crm".into() },
        &mut Vec::new(),
    )
    .await
    .unwrap();
    assert!(
        smartplan::webhooks::list(&app.state.store)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_demo_registers_smartplan_application_once() {
    let app = support::app_default().await;
    let listen: std::net::SocketAddr = "127.0.0.1:8081".parse().unwrap();
    let first = smartplan::cli::demo::smartplan_application(&app.state, listen)
        .await
        .unwrap();
    smartplan::cli::demo::smartplan_application(&app.state, listen)
        .await
        .unwrap();
    let registered = app
        .state
        .store
        .settings(ciam_core::settings::SettingKind::ServiceProvider, None)
        .await
        .unwrap();
    assert_eq!(
        registered.len(),
        1,
        "registered once, updated the second time"
    );
    assert_eq!(registered[0].key, first.entity_id());
    let found = app
        .state
        .saml_registry
        .get(first.entity_id())
        .await
        .unwrap();
    assert!(
        found.is_some(),
        "the IdP finds it through the stored registry"
    );
}
