//! Operations endpoints: `/healthz` (the process is up), `/readyz` (the database answers),
//! `/metrics` (Prometheus text), and the static files (`/static/smartplan.css`, per-
//! organization accent stylesheets).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;
use crate::web::WebError;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/static/smartplan.css", get(stylesheet))
        .route("/static/brand/{file}", get(brand_stylesheet))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    // A cheap read that needs the database: the outbox depth.
    match tokio::time::timeout(Duration::from_secs(5), state.store.outbox_depth()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: the database is not reachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database timed out\n").into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let outbox_depth = state.store.outbox_depth().await.ok();
    let dead_letters = state
        .store
        .dead_letters(10_000)
        .await
        .ok()
        .map(|letters| letters.len());
    let readings = Readings {
        outbox_depth,
        dead_letters,
        queues: state.outgoing.as_ref().map(|outgoing| QueueDepths {
            mail: outgoing.mail.pending(),
            sms: outgoing.sms.pending(),
        }),
        password_work: Some(state.ciam.password_hasher().work()),
    };
    let body = state.metrics.render(&readings);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// The stylesheet of every page.
pub const STYLESHEET: &str = include_str!("../static/smartplan.css");

async fn stylesheet() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// `/static/brand/{organization_id}.css`: the accent colour of an organization (a valid
/// `#rrggbb` only, so nothing else can be injected).
async fn brand_stylesheet(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> Result<Response, WebError> {
    let key = file
        .strip_suffix(".css")
        .ok_or_else(|| WebError::not_found("no such stylesheet"))?;
    let id: ciam_core::ids::OrganizationId = key
        .parse()
        .map_err(|_| WebError::not_found("no such stylesheet"))?;
    let organization = state
        .store
        .organization(id)
        .await?
        .ok_or_else(|| WebError::not_found("no such stylesheet"))?;
    let colour = organization
        .branding
        .primary_color
        .filter(|colour| is_hex_colour(colour))
        .ok_or_else(|| WebError::not_found("no such stylesheet"))?;
    let css = format!(":root {{ --brand: {colour}; --brand-strong: {colour}; }}\n");
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        css,
    )
        .into_response())
}

/// Whether `text` is `#rrggbb`.
pub fn is_hex_colour(text: &str) -> bool {
    text.len() == 7 && text.starts_with('#') && text[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// Latency histogram bucket bounds, seconds.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default, Debug)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Default, Debug)]
struct Inner {
    logins: BTreeMap<(String, String), u64>,
    requests: BTreeMap<(String, String, u16), Histogram>,
    throttled: BTreeMap<String, u64>,
    mail: BTreeMap<String, u64>,
}

/// Counters and histograms served at `/metrics`.
#[derive(Default, Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut inner)
    }

    /// Counts a sign-in step: `method` (`password`, `sms`, `totp`, `google`, `saml`, `oidc`,
    /// `recovery_code`) and `result` (`success`, `failure`, `throttled`, ...).
    pub fn login(&self, method: &str, result: &str) {
        self.with(|inner| {
            *inner
                .logins
                .entry((method.to_owned(), result.to_owned()))
                .or_default() += 1;
        });
    }

    /// Counts a throttled request.
    pub fn throttled(&self, rule: &str) {
        self.with(|inner| *inner.throttled.entry(rule.to_owned()).or_default() += 1);
    }

    /// Counts a mail handed to the transport (`result`: `sent`, `failed`).
    pub fn mail(&self, result: &str) {
        self.with(|inner| *inner.mail.entry(result.to_owned()).or_default() += 1);
    }

    /// Records the latency of a request.
    pub fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.with(|inner| {
            inner
                .requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default()
                .observe(elapsed.as_secs_f64());
        });
    }

    /// The Prometheus text exposition of these counters and of `readings`.
    pub fn render(&self, readings: &Readings) -> String {
        let Readings {
            outbox_depth,
            dead_letters,
            queues,
            password_work,
        } = *readings;
        let mut out = String::new();
        self.with(|inner| {
            let _ = writeln!(
                out,
                "# HELP smartplan_logins_total Sign-in steps by method and result.\n# TYPE smartplan_logins_total counter"
            );
            for ((method, result), count) in &inner.logins {
                let _ = writeln!(
                    out,
                    "smartplan_logins_total{{method=\"{}\",result=\"{}\"}} {count}",
                    label(method),
                    label(result)
                );
            }
            let _ = writeln!(
                out,
                "# HELP smartplan_http_request_duration_seconds Request latency by route.\n# TYPE smartplan_http_request_duration_seconds histogram"
            );
            for ((method, route, status), histogram) in &inner.requests {
                let labels = format!(
                    "method=\"{}\",route=\"{}\",status=\"{status}\"",
                    label(method),
                    label(route)
                );
                for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter()) {
                    let _ = writeln!(
                        out,
                        "smartplan_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "smartplan_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    histogram.count
                );
                let _ = writeln!(
                    out,
                    "smartplan_http_request_duration_seconds_sum{{{labels}}} {}",
                    histogram.sum
                );
                let _ = writeln!(
                    out,
                    "smartplan_http_request_duration_seconds_count{{{labels}}} {}",
                    histogram.count
                );
            }
            let _ = writeln!(
                out,
                "# HELP smartplan_throttled_total Requests refused by throttling.\n# TYPE smartplan_throttled_total counter"
            );
            for (rule, count) in &inner.throttled {
                let _ = writeln!(
                    out,
                    "smartplan_throttled_total{{rule=\"{}\"}} {count}",
                    label(rule)
                );
            }
            let _ = writeln!(
                out,
                "# HELP smartplan_mail_total Mail handed to the transport.\n# TYPE smartplan_mail_total counter"
            );
            for (result, count) in &inner.mail {
                let _ = writeln!(
                    out,
                    "smartplan_mail_total{{result=\"{}\"}} {count}",
                    label(result)
                );
            }
        });
        let _ = writeln!(
            out,
            "# HELP smartplan_outbox_depth Events waiting for delivery to the CRM.\n# TYPE smartplan_outbox_depth gauge"
        );
        if let Some(depth) = outbox_depth {
            let _ = writeln!(out, "smartplan_outbox_depth {depth}");
        }
        let _ = writeln!(
            out,
            "# HELP smartplan_outbox_dead_letters Events that could not be delivered.\n# TYPE smartplan_outbox_dead_letters gauge"
        );
        if let Some(dead) = dead_letters {
            let _ = writeln!(out, "smartplan_outbox_dead_letters {dead}");
        }
        if let Some(work) = password_work {
            let _ = writeln!(
                out,
                "# HELP smartplan_password_work_total argon2id work done by this process: new hashes, verifications at the current parameters, verifications of other hashes (imported or outdated).\n# TYPE smartplan_password_work_total counter"
            );
            for (kind, count) in [
                ("hash", work.hashes),
                ("current_verification", work.current_verifications),
                ("other_verification", work.other_verifications),
            ] {
                let _ = writeln!(
                    out,
                    "smartplan_password_work_total{{kind=\"{kind}\"}} {count}"
                );
            }
        }
        if let Some(queues) = queues {
            let _ = writeln!(
                out,
                "# HELP smartplan_outgoing_queue_depth Mail and SMS accepted but not yet handed to their transport (queued or waiting for a retry).\n# TYPE smartplan_outgoing_queue_depth gauge"
            );
            let _ = writeln!(
                out,
                "smartplan_outgoing_queue_depth{{channel=\"mail\"}} {}",
                queues.mail
            );
            let _ = writeln!(
                out,
                "smartplan_outgoing_queue_depth{{channel=\"sms\"}} {}",
                queues.sms
            );
        }
        out
    }
}

/// What `/metrics` reads at the moment it answers, besides the counters of [`Metrics`]; an
/// absent reading is left out of the text.
#[derive(Clone, Copy, Debug, Default)]
pub struct Readings {
    /// Events waiting for delivery to the CRM.
    pub outbox_depth: Option<u64>,
    /// Events that could not be delivered.
    pub dead_letters: Option<usize>,
    /// The outgoing queues (absent in demo mode: messages go to the dev mailbox and outbox).
    pub queues: Option<QueueDepths>,
    /// The password hasher's work since start-up.
    pub password_work: Option<ciam_core::credentials::HashingWork>,
}

/// Messages waiting in the outgoing queues (see [`crate::outgoing::Outgoing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueDepths {
    /// Mail not yet handed to SMTP.
    pub mail: usize,
    /// SMS not yet handed to the gateway.
    pub sms: usize,
}

/// A label value with `\`, `"` and newlines escaped.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The middleware that records request latencies by matched route.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state.metrics.request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
