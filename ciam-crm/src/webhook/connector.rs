//! The reference connector: Standard Webhooks over HTTPS with reqwest.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ciam_core::Clock;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::connector::{CrmConnector, DeliveryResult};
use crate::events::CrmEvent;
use crate::webhook::signing::{
    HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, WebhookSecret, signature_header,
};

/// Errors setting up a webhook endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL cannot be used.
    #[error("invalid webhook url: {0}")]
    InvalidUrl(String),
    /// No signing secret.
    #[error("at least one webhook secret is required")]
    NoSecret,
    /// The HTTP client could not be built.
    #[error("cannot build the http client: {0}")]
    Client(String),
}

/// Where and how to send webhooks.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// The endpoint (https).
    pub url: String,
    /// Active signing secrets; during a rotation, the new and the old one (each message
    /// carries one signature per secret).
    pub secrets: Vec<WebhookSecret>,
    /// Time limit of one request (default 10 s).
    pub timeout: Duration,
    /// Allow private, loopback and link-local targets (default false: refused, after
    /// resolving the host name, to keep webhooks from reaching internal services).
    pub allow_private_targets: bool,
    /// Allow plain `http` URLs (default false).
    pub allow_http: bool,
    /// The `User-Agent` sent.
    pub user_agent: String,
}

impl WebhookConfig {
    /// A configuration with the defaults for `url` and `secrets`.
    pub fn new(url: impl Into<String>, secrets: Vec<WebhookSecret>) -> Self {
        Self {
            url: url.into(),
            secrets,
            timeout: Duration::from_secs(10),
            allow_private_targets: false,
            allow_http: false,
            user_agent: concat!("ciam-crm/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Whether an address is fit for webhooks when private targets are not allowed: not
/// loopback, private, link-local (cloud metadata), shared, documentation, multicast,
/// unspecified or reserved.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || (segments[0] == 0x0064 && segments[1] == 0xff9b))
}

#[derive(Debug, thiserror::Error)]
#[error("webhook target {0} is a private or loopback address")]
struct TargetRefused(String);

/// Resolves host names and refuses private addresses; reqwest then connects only to the
/// addresses checked here (no second lookup that DNS rebinding could change).
#[derive(Debug)]
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow_private {
                if let Some(bad) = addrs.iter().find(|addr| !is_public_address(addr.ip())) {
                    return Err(Box::new(TargetRefused(format!("{host} ({})", bad.ip())))
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Sends each event as a signed Standard Webhooks POST (JSON body, the event id as
/// `webhook-id`). Redirects are not followed; `410 Gone` disables the endpoint (further events
/// become dead letters until [`WebhookConnector::enable`]); `Retry-After` is honoured.
pub struct WebhookConnector {
    client: reqwest::Client,
    url: Url,
    secrets: RwLock<Vec<WebhookSecret>>,
    clock: Arc<dyn Clock>,
    disabled: AtomicBool,
    allow_private: bool,
}

impl std::fmt::Debug for WebhookConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConnector")
            .field("url", &self.url.as_str())
            .field("disabled", &self.is_disabled())
            .finish_non_exhaustive()
    }
}

impl WebhookConnector {
    /// A connector for one endpoint; time (for `webhook-timestamp`) from `clock`.
    pub fn new(config: WebhookConfig, clock: Arc<dyn Clock>) -> Result<Self, WebhookError> {
        let url =
            Url::parse(&config.url).map_err(|error| WebhookError::InvalidUrl(error.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if config.allow_http => {}
            other => {
                return Err(WebhookError::InvalidUrl(format!(
                    "scheme {other} is not allowed (https only)"
                )));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookError::InvalidUrl(
                "credentials in the url".to_owned(),
            ));
        }
        let host = url
            .host()
            .ok_or_else(|| WebhookError::InvalidUrl("no host".to_owned()))?;
        if !config.allow_private_targets {
            let literal = match host {
                Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
                Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
                Host::Domain(_) => None,
            };
            if literal.is_some_and(|ip| !is_public_address(ip)) {
                return Err(WebhookError::InvalidUrl(
                    "private and loopback targets are not allowed".to_owned(),
                ));
            }
        }
        if config.secrets.is_empty() {
            return Err(WebhookError::NoSecret);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(config.user_agent.clone())
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: config.allow_private_targets,
            }))
            .build()
            .map_err(|error| WebhookError::Client(error.to_string()))?;
        Ok(Self {
            client,
            url,
            secrets: RwLock::new(config.secrets),
            clock,
            disabled: AtomicBool::new(false),
            allow_private: config.allow_private_targets,
        })
    }

    /// Replaces the signing secrets (rotation: pass the new and the old one, later the new
    /// one alone).
    pub fn set_secrets(&self, secrets: Vec<WebhookSecret>) -> Result<(), WebhookError> {
        if secrets.is_empty() {
            return Err(WebhookError::NoSecret);
        }
        *self
            .secrets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = secrets;
        Ok(())
    }

    /// Whether the endpoint answered `410 Gone` and is switched off.
    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::SeqCst)
    }

    /// Switches the endpoint on again (then redeliver the dead letters).
    pub fn enable(&self) {
        self.disabled.store(false, Ordering::SeqCst);
    }

    fn literal_refused(&self) -> bool {
        if self.allow_private {
            return false;
        }
        match self.url.host() {
            Some(Host::Ipv4(v4)) => !is_public_address(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => !is_public_address(IpAddr::V6(v6)),
            Some(Host::Domain(_)) | None => false,
        }
    }
}

/// The delay a `Retry-After` value asks for (seconds, or an HTTP date relative to `now`).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

fn refused(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.downcast_ref::<TargetRefused>().is_some() {
            return true;
        }
        source = current.source();
    }
    false
}

#[async_trait]
impl CrmConnector for WebhookConnector {
    async fn deliver(&self, event: &CrmEvent) -> DeliveryResult {
        if self.is_disabled() {
            return DeliveryResult::permanent("endpoint disabled after 410 gone");
        }
        if self.literal_refused() {
            return DeliveryResult::permanent("private and loopback targets are not allowed");
        }
        let body = match serde_json::to_vec(event) {
            Ok(body) => body,
            Err(error) => {
                return DeliveryResult::permanent(format!("cannot encode event: {error}"));
            }
        };
        let id = event.id.to_string();
        let now = self.clock.now();
        let timestamp = now.timestamp();
        let signature = {
            let secrets = self
                .secrets
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            signature_header(&secrets, &id, timestamp, &body)
        };
        let signature = match signature {
            Ok(signature) => signature,
            Err(error) => return DeliveryResult::permanent(error.to_string()),
        };
        let response = self
            .client
            .post(self.url.clone())
            .header(HEADER_ID, &id)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) if refused(&error) => {
                return DeliveryResult::permanent(
                    "the endpoint resolves to a private or loopback address",
                );
            }
            Err(error) if error.is_timeout() => return DeliveryResult::retry("request timed out"),
            Err(error) if error.is_connect() => return DeliveryResult::retry("connection failed"),
            Err(error) => return DeliveryResult::retry(format!("request failed: {error}")),
        };
        let status = response.status();
        if status.is_success() {
            return DeliveryResult::Delivered;
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, now));
        match status.as_u16() {
            410 => {
                self.disabled.store(true, Ordering::SeqCst);
                tracing::warn!(url = %self.url, "webhook endpoint answered 410 gone: disabled");
                DeliveryResult::permanent("endpoint answered 410 gone and is disabled")
            }
            400 | 413 | 422 => {
                DeliveryResult::permanent(format!("endpoint refused the event: {status}"))
            }
            code if (300..400).contains(&code) => DeliveryResult::Retry {
                reason: format!("redirects are not followed: {status}"),
                after: retry_after,
            },
            _ => DeliveryResult::Retry {
                reason: format!("endpoint answered {status}"),
                after: retry_after,
            },
        }
    }
}
