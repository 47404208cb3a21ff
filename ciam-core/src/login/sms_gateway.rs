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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;
    use crate::contact::PhoneNumber;
    use crate::delivery::MessagePurpose;

    /// A one-request HTTP server answering `status`; returns the URL and the raw request.
    async fn one_shot(status: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/sms", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let response = format!(
                "HTTP/1.1 {status}\r\nlocation: http://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request).to_string()
        });
        (url, handle)
    }

    fn message() -> SmsMessage {
        SmsMessage {
            to: PhoneNumber::parse("+358401234567").unwrap(),
            text: "code 123456".into(),
            purpose: MessagePurpose::SignInCode,
        }
    }

    #[tokio::test]
    async fn posts_json_with_the_auth_header_and_maps_statuses() {
        let (url, server) = one_shot("202 Accepted").await;
        let mut config = HttpSmsGatewayConfig::new(url, "X-Api-Key", "s3cret");
        config.from = Some("SmartPlan".into());
        assert!(!format!("{config:?}").contains("s3cret"));
        let gateway = HttpSmsGateway::new(config).unwrap();
        gateway.send(message()).await.unwrap();
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /sms HTTP/1.1"), "{request}");
        assert!(request.to_ascii_lowercase().contains("x-api-key: s3cret"));
        assert!(request.contains(r#""to":"+358401234567""#), "{request}");
        assert!(request.contains(r#""text":"code 123456""#));
        assert!(request.contains(r#""from":"SmartPlan""#));

        for (status, rejected) in [
            ("400 Bad Request", true),
            ("429 Too Many Requests", false),
            ("503 Service Unavailable", false),
            // A redirect is not followed (and is not success).
            ("302 Found", false),
        ] {
            let (url, server) = one_shot(status).await;
            let gateway =
                HttpSmsGateway::new(HttpSmsGatewayConfig::new(url, "Authorization", "Bearer x"))
                    .unwrap();
            let error = gateway.send(message()).await.unwrap_err();
            server.await.unwrap();
            assert_eq!(
                matches!(error, DeliveryError::Rejected(_)),
                rejected,
                "{status}: {error}"
            );
        }
    }
}
