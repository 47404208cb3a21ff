//! Loading [`Config`] for `smartplan serve`: a TOML file, then `SMARTPLAN_*` environment
//! variables over it, then one check of everything. The first wrong or missing setting is
//! reported by its file key and its variable name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::Duration;
use serde::Deserialize;
use url::Url;

use super::{
    Config, DEFAULT_CATALOG_CACHE_SECONDS, GoogleConfig, IpNetwork, Lifetimes, Limits,
    PasswordSettings, Redacted, SamlKeyFiles, SecuritySettings, ServerSecret, SmsConfig,
    SmtpConfig, SmtpSecurity, WebhookConfig,
};

/// The prefix of the environment variables.
pub const ENV_PREFIX: &str = "SMARTPLAN_";

/// Why the configuration was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not valid TOML or has an unknown or mistyped key.
    #[error("the configuration file {path} is not valid: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// What is wrong (names the key).
        reason: String,
    },
    /// A required setting is missing.
    #[error("missing setting `{key}` (or environment variable {env}): {hint}")]
    Missing {
        /// The file key.
        key: &'static str,
        /// The environment variable.
        env: String,
        /// What to put there.
        hint: &'static str,
    },
    /// A setting has a wrong value.
    #[error("setting `{key}` (or environment variable {env}) is wrong: {problem}")]
    Invalid {
        /// The file key.
        key: &'static str,
        /// The environment variable.
        env: String,
        /// What is wrong.
        problem: String,
    },
    /// An environment variable starting with `SMARTPLAN_` is not a known setting.
    #[error("unknown environment variable {0}; see docs/operations.md for the settings")]
    UnknownVariable(String),
}

/// Where the configuration comes from: an optional file and the environment (given
/// explicitly, so that tests need not touch the process environment).
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    /// The TOML file.
    pub file: Option<PathBuf>,
    /// Environment variables (only `SMARTPLAN_*` ones are read).
    pub env: BTreeMap<String, String>,
}

impl ConfigSource {
    /// The file (if any) and the process environment.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        Self {
            file,
            env: std::env::vars()
                .filter(|(name, _)| name.starts_with(ENV_PREFIX))
                .collect(),
        }
    }

    /// Reads and checks the configuration.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut raw = match &self.file {
            Some(path) => read_file(path)?,
            None => RawConfig::default(),
        };
        apply_env(&mut raw, &self.env)?;
        raw.check()
    }
}

fn read_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::File {
        path: path.display().to_string(),
        reason: error.to_string(),
    })?;
    toml::from_str(&text).map_err(|error| ConfigError::Syntax {
        path: path.display().to_string(),
        reason: error.message().to_owned()
            + &error
                .span()
                .map(|span| format!(" (at byte {})", span.start))
                .unwrap_or_default(),
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    public_base_url: Option<String>,
    database_url: Option<String>,
    secret_key: Option<String>,
    secret_key_file: Option<PathBuf>,
    trusted_proxies: Option<Vec<String>>,
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    passwords: RawPasswords,
    #[serde(default)]
    security: RawSecurity,
    smtp: Option<RawSmtp>,
    sms: Option<RawSms>,
    google: Option<RawGoogle>,
    #[serde(default)]
    webhooks: Vec<RawWebhook>,
    saml: Option<RawSaml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    idle_minutes: Option<i64>,
    absolute_hours: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    invitation_days: Option<i64>,
    code_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    catalog_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    body_bytes: Option<usize>,
    upload_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    reauthentication_minutes: Option<i64>,
    require_mfa: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPasswords {
    context_words: Option<Vec<String>>,
    breached_list: Option<PathBuf>,
    breached_list_unavailable: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: Option<String>,
    port: Option<u16>,
    security: Option<String>,
    username: Option<String>,
    password: Option<String>,
    from: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSms {
    url: Option<String>,
    auth_header: Option<String>,
    auth_value: Option<String>,
    sender: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoogle {
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: Option<String>,
    url: Option<String>,
    secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSaml {
    key_file: Option<PathBuf>,
    certificate_file: Option<PathBuf>,
}

/// The environment variable of a file key: `smtp.port` → `SMARTPLAN_SMTP_PORT`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        env: env_name(key),
        problem: problem.into(),
    }
}

fn missing(key: &'static str, hint: &'static str) -> ConfigError {
    ConfigError::Missing {
        key,
        env: env_name(key),
        hint,
    }
}

fn number<T: std::str::FromStr>(key: &'static str, text: &str) -> Result<T, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| invalid(key, format!("expected a whole number, got {text:?}")))
}

/// The settings an environment variable may set, by file key.
const ENV_KEYS: &[&str] = &[
    "listen",
    "public_base_url",
    "database_url",
    "secret_key",
    "secret_key_file",
    "trusted_proxies",
    "sessions.idle_minutes",
    "sessions.absolute_hours",
    "tokens.invitation_days",
    "tokens.code_minutes",
    "limits.body_bytes",
    "limits.upload_bytes",
    "cache.catalog_seconds",
    "security.reauthentication_minutes",
    "security.require_mfa",
    "passwords.context_words",
    "passwords.breached_list",
    "passwords.breached_list_unavailable",
    "smtp.host",
    "smtp.port",
    "smtp.security",
    "smtp.username",
    "smtp.password",
    "smtp.from",
    "sms.url",
    "sms.auth_header",
    "sms.auth_value",
    "sms.sender",
    "google.client_id",
    "google.client_secret",
    "webhook.url",
    "webhook.secret",
    "saml.key_file",
    "saml.certificate_file",
];

fn apply_env(raw: &mut RawConfig, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let by_name: BTreeMap<String, &'static str> =
        ENV_KEYS.iter().map(|key| (env_name(key), *key)).collect();
    let mut webhook = RawWebhook::default();
    for (name, value) in env {
        if !name.starts_with(ENV_PREFIX) {
            continue;
        }
        // Variables of the tools around the server (logging) are not settings.
        if name == "SMARTPLAN_LOG" {
            continue;
        }
        let Some(key) = by_name.get(name) else {
            return Err(ConfigError::UnknownVariable(name.clone()));
        };
        let text = value.clone();
        let key: &'static str = key;
        match key {
            "listen" => raw.listen = Some(text),
            "public_base_url" => raw.public_base_url = Some(text),
            "database_url" => raw.database_url = Some(text),
            "secret_key" => raw.secret_key = Some(text),
            "secret_key_file" => raw.secret_key_file = Some(PathBuf::from(text)),
            "trusted_proxies" => {
                raw.trusted_proxies = Some(
                    text.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            "sessions.idle_minutes" => raw.sessions.idle_minutes = Some(number(key, &text)?),
            "sessions.absolute_hours" => raw.sessions.absolute_hours = Some(number(key, &text)?),
            "tokens.invitation_days" => raw.tokens.invitation_days = Some(number(key, &text)?),
            "tokens.code_minutes" => raw.tokens.code_minutes = Some(number(key, &text)?),
            "limits.body_bytes" => raw.limits.body_bytes = Some(number(key, &text)?),
            "limits.upload_bytes" => raw.limits.upload_bytes = Some(number(key, &text)?),
            "cache.catalog_seconds" => raw.cache.catalog_seconds = Some(number(key, &text)?),
            "security.require_mfa" => raw.security.require_mfa = Some(text),
            "security.reauthentication_minutes" => {
                raw.security.reauthentication_minutes = Some(number(key, &text)?);
            }
            "passwords.context_words" => {
                raw.passwords.context_words = Some(
                    text.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                );
            }
            "passwords.breached_list" => raw.passwords.breached_list = Some(PathBuf::from(text)),
            "passwords.breached_list_unavailable" => {
                raw.passwords.breached_list_unavailable = Some(text);
            }
            "smtp.host" => raw.smtp.get_or_insert_with(Default::default).host = Some(text),
            "smtp.port" => {
                raw.smtp.get_or_insert_with(Default::default).port = Some(number(key, &text)?);
            }
            "smtp.security" => {
                raw.smtp.get_or_insert_with(Default::default).security = Some(text);
            }
            "smtp.username" => {
                raw.smtp.get_or_insert_with(Default::default).username = Some(text);
            }
            "smtp.password" => {
                raw.smtp.get_or_insert_with(Default::default).password = Some(text);
            }
            "smtp.from" => raw.smtp.get_or_insert_with(Default::default).from = Some(text),
            "sms.url" => raw.sms.get_or_insert_with(Default::default).url = Some(text),
            "sms.auth_header" => {
                raw.sms.get_or_insert_with(Default::default).auth_header = Some(text);
            }
            "sms.auth_value" => {
                raw.sms.get_or_insert_with(Default::default).auth_value = Some(text);
            }
            "sms.sender" => raw.sms.get_or_insert_with(Default::default).sender = Some(text),
            "google.client_id" => {
                raw.google.get_or_insert_with(Default::default).client_id = Some(text);
            }
            "google.client_secret" => {
                raw.google
                    .get_or_insert_with(Default::default)
                    .client_secret = Some(text);
            }
            "webhook.url" => webhook.url = Some(text),
            "webhook.secret" => webhook.secret = Some(text),
            "saml.key_file" => {
                raw.saml.get_or_insert_with(Default::default).key_file = Some(PathBuf::from(text));
            }
            "saml.certificate_file" => {
                raw.saml
                    .get_or_insert_with(Default::default)
                    .certificate_file = Some(PathBuf::from(text));
            }
            _ => return Err(ConfigError::UnknownVariable(name.clone())),
        }
    }
    if webhook.url.is_some() || webhook.secret.is_some() {
        webhook.name = Some("env".to_owned());
        raw.webhooks.push(webhook);
    }
    Ok(())
}

fn positive(key: &'static str, value: Option<i64>, max: i64) -> Result<Option<i64>, ConfigError> {
    match value {
        Some(v) if v < 1 || v > max => Err(invalid(key, format!("must be between 1 and {max}"))),
        other => Ok(other),
    }
}

impl RawConfig {
    fn check(self) -> Result<Config, ConfigError> {
        let listen = match self.listen {
            Some(text) => text.trim().parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "listen",
                    format!("expected an address such as 0.0.0.0:8080, got {text:?}"),
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let base_text = self.public_base_url.ok_or_else(|| {
            missing(
                "public_base_url",
                "the URL people open, such as https://id.smartplan.example",
            )
        })?;
        let public_base_url = Url::parse(base_text.trim())
            .map_err(|error| invalid("public_base_url", format!("not a URL: {error}")))?;
        if !matches!(public_base_url.scheme(), "http" | "https")
            || public_base_url.host().is_none()
            || public_base_url.query().is_some()
            || public_base_url.fragment().is_some()
            || !matches!(public_base_url.path(), "" | "/")
        {
            return Err(invalid(
                "public_base_url",
                "expected http(s)://host[:port] without path, query or fragment",
            ));
        }
        let database_url = self.database_url.ok_or_else(|| {
            missing(
                "database_url",
                "sqlite:///var/lib/smartplan/smartplan.db or postgres://user@host/db",
            )
        })?;
        let database_url = database_url.trim().to_owned();
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "expected sqlite:PATH or postgres://... (postgresql:// also accepted)",
            ));
        }
        let secret_text = match (self.secret_key, self.secret_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "secret_key",
                    "give secret_key or secret_key_file, not both",
                ));
            }
            (Some(text), None) => text,
            (None, Some(path)) => std::fs::read_to_string(&path).map_err(|error| {
                invalid(
                    "secret_key_file",
                    format!("cannot read {}: {error}", path.display()),
                )
            })?,
            (None, None) => {
                return Err(missing(
                    "secret_key",
                    "64 hexadecimal characters (openssl rand -hex 32), or secret_key_file",
                ));
            }
        };
        let secret = ServerSecret::from_hex(&secret_text).ok_or_else(|| {
            invalid(
                "secret_key",
                "expected 64 hexadecimal characters (openssl rand -hex 32)",
            )
        })?;
        let trusted_proxies = self
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|text| {
                IpNetwork::parse(text).ok_or_else(|| {
                    invalid(
                        "trusted_proxies",
                        format!("{text:?} is not an address or network such as 10.0.0.0/8"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let defaults = Lifetimes::default();
        let idle = positive(
            "sessions.idle_minutes",
            self.sessions.idle_minutes,
            7 * 24 * 60,
        )?;
        let absolute = positive(
            "sessions.absolute_hours",
            self.sessions.absolute_hours,
            24 * 90,
        )?;
        let invitation = positive("tokens.invitation_days", self.tokens.invitation_days, 90)?;
        let code = positive("tokens.code_minutes", self.tokens.code_minutes, 60)?;
        let lifetimes = Lifetimes {
            session_idle: idle.map_or(defaults.session_idle, Duration::minutes),
            session_absolute: absolute.map_or(defaults.session_absolute, Duration::hours),
            invitation: invitation.map_or(defaults.invitation, Duration::days),
            code: code.map_or(defaults.code, Duration::minutes),
        };
        if lifetimes.session_idle > lifetimes.session_absolute {
            return Err(invalid(
                "sessions.idle_minutes",
                "the idle timeout must not be longer than the absolute lifetime",
            ));
        }
        let catalog_cache = match self.cache.catalog_seconds {
            None => Duration::seconds(DEFAULT_CATALOG_CACHE_SECONDS),
            Some(seconds @ 0..=300) => Duration::seconds(seconds),
            Some(_) => {
                return Err(invalid(
                    "cache.catalog_seconds",
                    "must be between 0 (read on every request) and 300",
                ));
            }
        };
        let default_limits = Limits::default();
        let limits = Limits {
            body_bytes: self.limits.body_bytes.unwrap_or(default_limits.body_bytes),
            upload_bytes: self
                .limits
                .upload_bytes
                .unwrap_or(default_limits.upload_bytes),
        };
        if limits.body_bytes < 1024 {
            return Err(invalid("limits.body_bytes", "must be at least 1024"));
        }
        if limits.upload_bytes < limits.body_bytes {
            return Err(invalid(
                "limits.upload_bytes",
                "must be at least limits.body_bytes",
            ));
        }

        let passwords = check_passwords(self.passwords)?;
        let security = SecuritySettings {
            reauthentication: positive(
                "security.reauthentication_minutes",
                self.security.reauthentication_minutes,
                24 * 60,
            )?
            .map_or(
                SecuritySettings::default().reauthentication,
                Duration::minutes,
            ),
            require_mfa: match self.security.require_mfa.as_deref() {
                None | Some("staff") => super::MfaRequirement::Staff,
                Some("all") => super::MfaRequirement::All,
                Some("organization_policy") => super::MfaRequirement::OrganizationPolicy,
                Some(other) => {
                    return Err(invalid(
                        "security.require_mfa",
                        format!(
                            "{other:?} is not one of \"all\", \"staff\", \"organization_policy\""
                        ),
                    ));
                }
            },
        };
        let smtp = self.smtp.map(check_smtp).transpose()?;
        let sms = self.sms.map(check_sms).transpose()?;
        let google = self.google.map(check_google).transpose()?;
        let webhooks = self
            .webhooks
            .into_iter()
            .enumerate()
            .map(|(index, raw)| check_webhook(index, raw))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = std::collections::BTreeSet::new();
        for webhook in &webhooks {
            if !names.insert(webhook.name.clone()) {
                return Err(invalid(
                    "webhooks.name",
                    format!("the name {:?} is used twice", webhook.name),
                ));
            }
        }
        let saml_keys = match self.saml {
            Some(RawSaml {
                key_file: Some(key),
                certificate_file: Some(certificate),
            }) => Some(SamlKeyFiles { key, certificate }),
            Some(RawSaml { key_file: None, .. }) => {
                return Err(missing(
                    "saml.key_file",
                    "the PEM private key of the SAML IdP",
                ));
            }
            Some(RawSaml {
                certificate_file: None,
                ..
            }) => {
                return Err(missing(
                    "saml.certificate_file",
                    "the PEM certificate of the SAML IdP",
                ));
            }
            None => None,
        };
        Ok(Config {
            listen,
            public_base_url,
            database_url,
            secret,
            demo: false,
            trusted_proxies,
            lifetimes,
            limits,
            catalog_cache,
            smtp,
            sms,
            google,
            webhooks,
            saml_keys,
            passwords,
            security,
        })
    }
}

fn check_passwords(raw: RawPasswords) -> Result<PasswordSettings, ConfigError> {
    use ciam_core::credentials::{BreachCheckFailure, MIN_CONTEXT_WORD_LEN, context_words};
    let defaults = PasswordSettings::default();
    let context_words = raw.context_words.unwrap_or(defaults.context_words);
    if let Some(short) = context_words
        .iter()
        .find(|word| context_words::fold(word).chars().count() < MIN_CONTEXT_WORD_LEN)
    {
        return Err(invalid(
            "passwords.context_words",
            format!(
                "{short:?} is shorter than {MIN_CONTEXT_WORD_LEN} letters and digits; such words would refuse too many passwords"
            ),
        ));
    }
    let breached_list_unavailable = match raw.breached_list_unavailable.as_deref() {
        None | Some("refuse") => BreachCheckFailure::Refuse,
        Some("allow") => BreachCheckFailure::Allow,
        Some(other) => {
            return Err(invalid(
                "passwords.breached_list_unavailable",
                format!("{other:?} is neither \"refuse\" nor \"allow\""),
            ));
        }
    };
    if let Some(path) = &raw.breached_list {
        ciam_core::credentials::PwnedPasswordsFile::open(path)
            .map_err(|error| invalid("passwords.breached_list", error.to_string()))?;
    }
    Ok(PasswordSettings {
        context_words,
        breached_list: raw.breached_list,
        breached_list_unavailable,
    })
}

fn check_smtp(raw: RawSmtp) -> Result<SmtpConfig, ConfigError> {
    let host = raw
        .host
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| missing("smtp.host", "the SMTP server's host name"))?;
    let security = match raw.security.as_deref().map(str::trim) {
        None | Some("starttls") => SmtpSecurity::StartTls,
        Some("tls") => SmtpSecurity::Tls,
        Some("none") => SmtpSecurity::None,
        Some(other) => {
            return Err(invalid(
                "smtp.security",
                format!("expected starttls, tls or none, got {other:?}"),
            ));
        }
    };
    let port = raw.port.unwrap_or(match security {
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::Tls => 465,
        SmtpSecurity::None => 25,
    });
    if port == 0 {
        return Err(invalid("smtp.port", "must be between 1 and 65535"));
    }
    let credentials = match (raw.username, raw.password) {
        (Some(user), Some(password)) => Some((user, Redacted::new(password))),
        (None, None) => None,
        (Some(_), None) => return Err(missing("smtp.password", "the SMTP password")),
        (None, Some(_)) => return Err(missing("smtp.username", "the SMTP user name")),
    };
    let from = raw.from.ok_or_else(|| {
        missing(
            "smtp.from",
            "the sender, such as SmartPlan <no-reply@smartplan.example>",
        )
    })?;
    crate::mail::parse_mailbox(&from).map_err(|problem| invalid("smtp.from", problem))?;
    Ok(SmtpConfig {
        host,
        port,
        security,
        credentials,
        from,
    })
}

fn check_sms(raw: RawSms) -> Result<SmsConfig, ConfigError> {
    let url = raw
        .url
        .ok_or_else(|| missing("sms.url", "the URL of the SMS gateway"))?;
    let url = Url::parse(url.trim())
        .map_err(|error| invalid("sms.url", format!("not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("sms.url", "expected an http(s) URL"));
    }
    let auth_value = raw.auth_value.ok_or_else(|| {
        missing(
            "sms.auth_value",
            "the gateway credential, such as Bearer ...",
        )
    })?;
    Ok(SmsConfig {
        url,
        auth_header: raw
            .auth_header
            .unwrap_or_else(|| "Authorization".to_owned()),
        auth_value: Redacted::new(auth_value),
        sender: raw.sender,
    })
}

fn check_google(raw: RawGoogle) -> Result<GoogleConfig, ConfigError> {
    Ok(GoogleConfig {
        client_id: raw
            .client_id
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| missing("google.client_id", "the OAuth client id from Google"))?,
        client_secret: Redacted::new(
            raw.client_secret
                .ok_or_else(|| missing("google.client_secret", "the OAuth client secret"))?,
        ),
    })
}

fn check_webhook(index: usize, raw: RawWebhook) -> Result<WebhookConfig, ConfigError> {
    let name = raw.name.unwrap_or_else(|| format!("webhook-{}", index + 1));
    let url = raw
        .url
        .ok_or_else(|| missing("webhooks.url", "where the CRM receives events"))?;
    let url = Url::parse(url.trim())
        .map_err(|error| invalid("webhooks.url", format!("{name}: not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(
            "webhooks.url",
            format!("{name}: expected an http(s) URL"),
        ));
    }
    let secret = raw.secret.ok_or_else(|| {
        missing(
            "webhooks.secret",
            "the Standard Webhooks secret (whsec_...)",
        )
    })?;
    if ciam_crm::webhook::WebhookSecret::parse(&secret).is_err() {
        return Err(invalid(
            "webhooks.secret",
            format!("{name}: expected a Standard Webhooks secret (whsec_ followed by base64)"),
        ));
    }
    Ok(WebhookConfig {
        name,
        url,
        secret: Redacted::new(secret),
    })
}
