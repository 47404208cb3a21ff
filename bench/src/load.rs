//! Load over HTTP: the CRM API calls that set the run up, the password-login clients, the
//! session sweep, and `wrk` for the GET-shaped phases.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ciam_core::OsRandom;
use ciam_core::credentials::{Password, PasswordHasher, PasswordParams};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::processes::{Smartplan, WorkDir};
use crate::{BenchError, Result};

/// The CRM account of the benchmark's organization.
pub const BENCH_ACCOUNT: &str = "ACC-BENCH";
/// The password of every login user.
const LOGIN_PASSWORD: &str = "bench-login-password-2026";
/// Cookie names of the SmartPlan pages.
const CSRF_COOKIE: &str = "smartplan_csrf";
const LOGIN_COOKIE: &str = "smartplan_login";
const SESSION_COOKIE: &str = "smartplan_session";

fn client() -> Result<Client> {
    Client::builder()
        .redirect(Policy::none())
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(BenchError::http("HTTP client"))
}

/// The CRM REST API with the run's key.
pub struct Api {
    client: Client,
    base: String,
    key: String,
}

/// A finished batch invitation.
pub struct BatchRun {
    /// From sending the request to the full response.
    pub seconds: f64,
    /// Rows invited.
    pub invited: usize,
}

impl Api {
    /// The API of the server at `base`.
    pub fn new(base: &str, key: &str) -> Result<Self> {
        Ok(Self {
            client: client()?,
            base: base.to_owned(),
            key: key.to_owned(),
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<Value> {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .map_err(BenchError::http(path))?;
        let status = response.status();
        let text = response.text().await.map_err(BenchError::http(path))?;
        if !status.is_success() {
            return Err(BenchError::Step(format!("{path}: {status}: {text}")));
        }
        serde_json::from_str(&text).map_err(|error| BenchError::Step(format!("{path}: {error}")))
    }

    /// Bench Corp, a customer with an active contract for SmartPlan Application.
    pub async fn provision_bench_corp(&self) -> Result<()> {
        self.call(
            reqwest::Method::PUT,
            &format!("/api/v1/organizations/{BENCH_ACCOUNT}"),
            &json!({ "name": "Bench Corp", "kind": "customer" }),
        )
        .await?;
        self.call(
            reqwest::Method::PUT,
            &format!("/api/v1/organizations/{BENCH_ACCOUNT}/contracts/CON-BENCH"),
            &json!({ "services": ["smartplan-app"], "status": "active" }),
        )
        .await?;
        Ok(())
    }

    /// Invites `rows` new people into Bench Corp in one request.
    pub async fn invite_batch(&self, rows: usize) -> Result<BatchRun> {
        let items: Vec<Value> = (0..rows)
            .map(|n| json!({ "email": format!("invitee{n}@bench.example"), "business_roles": ["energy-manager"] }))
            .collect();
        let body = json!({ "crm_account_id": BENCH_ACCOUNT, "items": items });
        let started = Instant::now();
        let response = self
            .call(reqwest::Method::POST, "/api/v1/invitations", &body)
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        let invited = response["summary"]["created"].as_u64().unwrap_or(0) as usize;
        if invited != rows {
            return Err(BenchError::Step(format!(
                "batch invitation: {invited} of {rows} rows invited: {}",
                response["summary"]
            )));
        }
        Ok(BatchRun { seconds, invited })
    }
}

/// People of Bench Corp who sign in with a password (one per login client).
pub struct LoginUsers {
    emails: Vec<String>,
}

impl LoginUsers {
    /// Imports `count` people with argon2id password hashes (default parameters).
    pub async fn create(smartplan: &Smartplan, work: &WorkDir, count: usize) -> Result<Self> {
        let hasher = PasswordHasher::new(PasswordParams::OWASP)
            .map_err(|error| BenchError::Step(format!("password hasher: {error}")))?;
        let mut csv = String::from(
            "email,given_name,family_name,phone,organization,business_roles,password_hash\n",
        );
        let mut emails = Vec::with_capacity(count);
        for n in 0..count {
            let hash = hasher
                .hash(&Password::new(LOGIN_PASSWORD), &OsRandom)
                .await
                .map_err(|error| BenchError::Step(format!("hashing: {error}")))?;
            let email = format!("login{n}@bench.example");
            // The PHC string holds commas: quoted.
            csv.push_str(&format!(
                "{email},Login,User {n},,{BENCH_ACCOUNT},energy-manager,\"{}\"\n",
                hash.as_str()
            ));
            emails.push(email);
        }
        let path = work.path.join("login-users.csv");
        std::fs::write(&path, csv).map_err(BenchError::io("login users file"))?;
        smartplan.import_file(&path).await?;
        let report = std::fs::read_to_string(path.with_extension("csv.report.csv"))
            .map_err(BenchError::io("the login users' import report"))?;
        if let Some(rejected) = report.lines().find(|line| line.contains(",rejected,")) {
            return Err(BenchError::Step(format!(
                "importing the login users: {rejected}"
            )));
        }
        Ok(Self { emails })
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.emails.len()
    }

    /// The first one's email.
    pub fn first_email(&self) -> String {
        self.emails.first().cloned().unwrap_or_default()
    }
}

/// Throughput and latency of a load phase.
pub struct LoadResult {
    /// Operations per second in the measured part.
    pub rate: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Operations measured.
    pub count: usize,
    /// Operations done in all, the warm-up's and those around the window included.
    pub all: usize,
    /// A session cookie value from the phase (password logins).
    pub session_cookie: Option<String>,
}

fn cookie_from(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| value.strip_prefix(name)?.strip_prefix('='))
        .and_then(|rest| rest.split(';').next())
        .map(str::to_owned)
}

/// One browser-like client: its CSRF cookie and form token.
struct SigninClient {
    client: Client,
    base: String,
    csrf_cookie: String,
    csrf_token: String,
}

impl SigninClient {
    async fn open(base: &str) -> Result<Self> {
        let client = client()?;
        let response = client
            .get(format!("{base}/signin"))
            .send()
            .await
            .map_err(BenchError::http("GET /signin"))?;
        let csrf_cookie = cookie_from(&response, CSRF_COOKIE)
            .ok_or_else(|| BenchError::Step("GET /signin set no CSRF cookie".into()))?;
        let html = response
            .text()
            .await
            .map_err(BenchError::http("GET /signin"))?;
        let csrf_token = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .ok_or_else(|| BenchError::Step("no CSRF field on /signin".into()))?
            .to_owned();
        Ok(Self {
            client,
            base: base.to_owned(),
            csrf_cookie,
            csrf_token,
        })
    }

    /// Identifier, then password: the session cookie.
    async fn sign_in(&self, email: &str) -> Result<String> {
        let response = self
            .client
            .post(format!("{}/signin", self.base))
            .header(COOKIE, format!("{CSRF_COOKIE}={}", self.csrf_cookie))
            .form(&[("email", email), ("next", ""), ("csrf", &self.csrf_token)])
            .send()
            .await
            .map_err(BenchError::http("POST /signin"))?;
        if response.status() != StatusCode::SEE_OTHER
            || cookie_from(&response, LOGIN_COOKIE).is_none()
        {
            return Err(BenchError::Step(format!(
                "POST /signin for {email}: {} without a sign-in cookie",
                response.status()
            )));
        }
        // The attempt and the progress of the sign-in, as a browser would send them back.
        let mut cookies = format!("{CSRF_COOKIE}={}", self.csrf_cookie);
        for set in response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
        {
            if let Some(pair) = set.split(';').next() {
                cookies.push_str("; ");
                cookies.push_str(pair);
            }
        }
        let response = self
            .client
            .post(format!("{}/signin/password", self.base))
            .header(COOKIE, cookies)
            .form(&[("password", LOGIN_PASSWORD), ("csrf", &self.csrf_token)])
            .send()
            .await
            .map_err(BenchError::http("POST /signin/password"))?;
        match cookie_from(&response, SESSION_COOKIE) {
            Some(session) if response.status() == StatusCode::SEE_OTHER => Ok(session),
            _ => Err(BenchError::Step(format!(
                "POST /signin/password for {email}: {} without a session cookie",
                response.status()
            ))),
        }
    }
}

fn percentile(sorted_ms: &[f64], fraction: f64) -> f64 {
    if sorted_ms.is_empty() {
        return 0.0;
    }
    let index = ((sorted_ms.len() as f64 - 1.0) * fraction).round() as usize;
    sorted_ms[index.min(sorted_ms.len() - 1)]
}

/// Every user signs in again and again (identifier, password) for a warm-up of a fifth of
/// `duration`, then for `duration`; each client is one user.
pub async fn password_logins(
    base: &str,
    users: &LoginUsers,
    duration: Duration,
) -> Result<LoadResult> {
    let warm_up = duration / 5;
    let started = Instant::now();
    let measure_from = started + warm_up;
    let stop_at = measure_from + duration;
    let mut tasks = Vec::new();
    for email in &users.emails {
        let client = SigninClient::open(base).await?;
        let email = email.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut completed = 0usize;
            let mut all = 0usize;
            let mut session = None;
            loop {
                let began = Instant::now();
                if began >= stop_at {
                    break;
                }
                session = Some(client.sign_in(&email).await?);
                all += 1;
                let ended = Instant::now();
                // The rate counts the logins that end inside the window (in a steady state
                // that is the throughput; counting only logins that also began inside it
                // would leave out one per client at the window's start); the latencies are
                // those of the logins that began inside it.
                if ended >= measure_from && ended <= stop_at {
                    completed += 1;
                    if began >= measure_from {
                        latencies.push((ended - began).as_secs_f64() * 1000.0);
                    }
                }
            }
            Ok::<_, BenchError>((completed, all, latencies, session))
        }));
    }
    let mut latencies = Vec::new();
    let mut completed = 0usize;
    let mut all = 0usize;
    let mut session_cookie = None;
    for task in tasks {
        let (done, done_in_all, mine, session) = task
            .await
            .map_err(|_| BenchError::Step("a login client failed".into()))??;
        completed += done;
        all += done_in_all;
        latencies.extend(mine);
        session_cookie = session_cookie.or(session);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(LoadResult {
        rate: completed as f64 / duration.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        count: completed,
        all,
        session_cookie,
    })
}

async fn get_ok(url: &str, session: Option<&str>, must_contain: &str) -> Result<()> {
    let mut request = client()?.get(url);
    if let Some(session) = session {
        request = request.header(COOKIE, format!("{SESSION_COOKIE}={session}"));
    }
    let response = request
        .send()
        .await
        .map_err(BenchError::http(url.to_owned()))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(BenchError::http(url.to_owned()))?;
    if status != StatusCode::OK || !body.contains(must_contain) {
        return Err(BenchError::Step(format!(
            "GET {}: {status}, expected 200 with {must_contain:?}: {}",
            url.split('?').next().unwrap_or(url),
            body.chars().take(300).collect::<String>()
        )));
    }
    Ok(())
}

/// Checks that SmartPlan's IdP answers the request with a signed response for the session.
pub async fn expect_saml_response(url: &str, session: &str) -> Result<()> {
    get_ok(url, Some(session), "name=\"SAMLResponse\"").await
}

/// Checks that pysaml2's IdP answers the request with a response.
pub async fn expect_pysaml2_response(url: &str) -> Result<()> {
    get_ok(url, None, "\"SAMLResponse\"").await
}

/// Checks that the session opens the account page.
pub async fn expect_account_page(base: &str, session: &str) -> Result<()> {
    get_ok(&format!("{base}/account"), Some(session), "Bench Corp").await
}

/// Requests `url` with `wrk` (one thread, 8 connections) for `duration`, with the session
/// cookie when given. Any response other than 2xx or 3xx fails the phase.
pub async fn wrk(url: &str, session: Option<&str>, duration: Duration) -> Result<LoadResult> {
    let mut command = tokio::process::Command::new("wrk");
    command
        .args(["-t1", "-c8", "--latency"])
        .arg(format!("-d{}s", duration.as_secs().max(1)));
    if let Some(session) = session {
        command
            .arg("-H")
            .arg(format!("Cookie: {SESSION_COOKIE}={session}"));
    }
    let out = command
        .arg(url)
        .output()
        .await
        .map_err(BenchError::io("running wrk (apt-get install wrk)"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(BenchError::Step(format!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    parse_wrk(&text)
}

fn parse_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(text: &str) -> Result<LoadResult> {
    let field = |prefix: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(str::trim)
    };
    if let Some(bad) = field("Non-2xx or 3xx responses:") {
        return Err(BenchError::Step(format!(
            "wrk saw {bad} failed responses:\n{text}"
        )));
    }
    let rate = field("Requests/sec:")
        .and_then(|rate| rate.parse().ok())
        .ok_or_else(|| BenchError::Step(format!("no Requests/sec in wrk's output:\n{text}")))?;
    let latency = |label: &str| {
        field(label)
            .and_then(parse_duration_ms)
            .ok_or_else(|| BenchError::Step(format!("no {label} latency in wrk's output")))
    };
    let count = text
        .lines()
        .find(|line| line.contains("requests in"))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    Ok(LoadResult {
        rate,
        p50_ms: latency("50%")?,
        p99_ms: latency("99%")?,
        count,
        all: count,
        session_cookie: None,
    })
}

/// Opens the account page once with every session (8 at a time); requests per second.
pub async fn sweep_sessions(base: &str, tokens: &[String]) -> Result<f64> {
    let tokens: Arc<[String]> = tokens.into();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (tokens, next, client, url) = (
            Arc::clone(&tokens),
            Arc::clone(&next),
            client()?,
            format!("{base}/account"),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(index) else {
                    return Ok::<_, BenchError>(());
                };
                let response = client
                    .get(&url)
                    .header(COOKIE, format!("{SESSION_COOKIE}={token}"))
                    .send()
                    .await
                    .map_err(BenchError::http("GET /account"))?;
                if response.status() != StatusCode::OK {
                    return Err(BenchError::Step(format!(
                        "GET /account with session {index}: {}",
                        response.status()
                    )));
                }
                // Read the page as a browser would.
                response
                    .bytes()
                    .await
                    .map_err(BenchError::http("GET /account"))?;
            }
        }));
    }
    for task in tasks {
        task.await
            .map_err(|_| BenchError::Step("a session client failed".into()))??;
    }
    Ok(tokens.len() as f64 / started.elapsed().as_secs_f64())
}

/// The server's argon2id work counters (`smartplan_password_work_total` on `/metrics`): new
/// hashes, verifications at the current parameters, other verifications.
pub async fn password_work(base: &str) -> Result<[u64; 3]> {
    let body = client()?
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(BenchError::http("GET /metrics"))?
        .text()
        .await
        .map_err(BenchError::http("GET /metrics"))?;
    let mut work = [0u64; 3];
    for (slot, kind) in work
        .iter_mut()
        .zip(["hash", "current_verification", "other_verification"])
    {
        let name = format!("smartplan_password_work_total{{kind=\"{kind}\"}} ");
        *slot = body
            .lines()
            .find_map(|line| line.strip_prefix(&name))
            .and_then(|value| value.trim().parse().ok())
            .ok_or_else(|| BenchError::Step(format!("no {name}on /metrics")))?;
    }
    Ok(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 2s test @ http://127.0.0.1:1/account\n  1 threads and 8 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     2.01ms  400.00us   9.00ms   90.00%\n    Req/Sec     3.98k   100.00     4.10k    80.00%\n  Latency Distribution\n     50%  850.00us\n     75%    2.10ms\n     90%    2.50ms\n     99%    1.20s\n  7960 requests in 2.00s, 10.00MB read\nRequests/sec:   3979.50\nTransfer/sec:      5.00MB\n";
        let result = parse_wrk(text).unwrap();
        assert!((result.rate - 3979.5).abs() < 1e-9);
        assert!((result.p50_ms - 0.85).abs() < 1e-9);
        assert!((result.p99_ms - 1200.0).abs() < 1e-9);
        assert_eq!(result.count, 7960);
        let failed = text.replace(
            "Requests/sec",
            "  Non-2xx or 3xx responses: 3\nRequests/sec",
        );
        assert!(parse_wrk(&failed).is_err());
    }
}
