//! An HTTP SMS gateway adapter: a generic JSON POST to a configured URL with a configured
//! authorization header. Redirects are not followed; requests time out.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::delivery::{DeliveryError, SmsMessage, SmsSender};

/// Where and how to post messages. Redacted `Debug` (the header holds a credential).
#[derive(Clone)]
pub struct HttpSmsGatewayConfig {
    /// The gateway's URL (https in production).
    pub url: String,
    /// The authorization header's name (such as `Authorization` or `X-Api-Key`).
    pub auth_header: String,
    /// Its value (such as `Bearer ...`). Never logged.
    pub auth_value: String,
    /// The sender name or number, sent as `from` when given.
    pub from: Option<String>,
    /// Request timeout (default 10 seconds).
    pub timeout: Duration,
}

impl HttpSmsGatewayConfig {
    /// A configuration with the default timeout.
    pub fn new(
        url: impl Into<String>,
        auth_header: impl Into<String>,
        auth_value: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            auth_header: auth_header.into(),
            auth_value: auth_value.into(),
            from: None,
            timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for HttpSmsGatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSmsGatewayConfig")
            .field("url", &self.url)
            .field("auth_header", &self.auth_header)
            .field("auth_value", &"<redacted>")
            .field("from", &self.from)
            .finish()
    }
}

/// Posts `{"to": "+358...", "text": "...", "from": "..."}` as JSON to the gateway. A 2xx answer
/// is success; 4xx other than 408 and 429 is a refusal; anything else is unavailability.
#[derive(Debug, Clone)]
pub struct HttpSmsGateway {
    config: HttpSmsGatewayConfig,
    client: reqwest::Client,
}

/// Errors of building the gateway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmsGatewayError {
    /// The HTTP client could not be built.
    #[error("the sms gateway client could not be built: {0}")]
    Client(String),
}

impl HttpSmsGateway {
    /// A gateway for `config`.
    pub fn new(config: HttpSmsGatewayConfig) -> Result<Self, SmsGatewayError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .build()
            .map_err(|error| SmsGatewayError::Client(error.to_string()))?;
        Ok(Self { config, client })
    }
}

#[async_trait]
impl SmsSender for HttpSmsGateway {
    async fn send(&self, message: SmsMessage) -> Result<(), DeliveryError> {
        let mut body = serde_json::json!({
            "to": message.to.as_str(),
            "text": message.text,
        });
        if let (Some(from), Some(object)) = (&self.config.from, body.as_object_mut()) {
            object.insert("from".into(), serde_json::Value::String(from.clone()));
        }
        let response = self
            .client
            .post(&self.config.url)
            .header(
                self.config.auth_header.as_str(),
                self.config.auth_value.as_str(),
            )
            .json(&body)
            .send()
            .await
            .map_err(|error| DeliveryError::Unavailable(error.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            Err(DeliveryError::Rejected(format!(
                "gateway answered {status}"
            )))
        } else {
            Err(DeliveryError::Unavailable(format!(
                "gateway answered {status}"
            )))
        }
    }
}
