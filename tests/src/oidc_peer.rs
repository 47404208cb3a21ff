//! The real OpenID Connect provider of the tests: the npm package `oidc-provider`
//! (`tests/oidc-peer/peer.mjs`), started on 127.0.0.1 for a test binary, and a small "browser"
//! that walks its development login form. Used by the scenario tests and by the SmartPlan
//! server's router tests.
//!
//! [`start`] copies the peer into the calling crate's target directory and runs `npm ci` there
//! when `node_modules` is missing; [`or_skip`] turns "node or npm is missing" into a skip outside
//! CI and a failure when `CI=true`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The peer processes, kept for the life of the test binary: each stops when its standard
/// input closes, that is when this process exits.
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

fn prepared_dir(work_dir: &Path) -> Result<(), String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc-peer");
    std::fs::create_dir_all(work_dir).map_err(|e| format!("create {}: {e}", work_dir.display()))?;
    let mut changed = false;
    for file in ["package.json", "package-lock.json", "peer.mjs"] {
        let wanted = std::fs::read(source.join(file)).map_err(|e| format!("read {file}: {e}"))?;
        if std::fs::read(work_dir.join(file)).ok().as_ref() != Some(&wanted) {
            changed |= file != "peer.mjs";
            std::fs::write(work_dir.join(file), wanted)
                .map_err(|e| format!("write {file}: {e}"))?;
        }
    }
    if changed
        || !work_dir
            .join("node_modules/oidc-provider/package.json")
            .exists()
    {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(work_dir)
            .output()
            .map_err(|e| format!("npm: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "npm ci failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    Ok(())
}

/// Starts the peer in `work_dir` (a folder of the caller's target directory) for clients whose
/// callback is `redirect_uri`; answers its issuers by name (`google`, `city`, `mixup`,
/// `redirector`). Its log is `work_dir/peer.log`.
pub fn start(work_dir: &Path, redirect_uri: &str) -> Result<BTreeMap<String, String>, String> {
    prepared_dir(work_dir)?;
    let log = std::fs::File::create(work_dir.join("peer.log")).map_err(|e| format!("log: {e}"))?;
    let mut child = Command::new("node")
        .arg("peer.mjs")
        .arg(redirect_uri)
        .current_dir(work_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("node: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("read peer: {e}"))?;
    let ready = line
        .trim()
        .strip_prefix("READY ")
        .ok_or_else(|| format!("the OIDC peer did not start: {line:?}"))?;
    let issuers: BTreeMap<String, String> =
        serde_json::from_str(ready).map_err(|e| format!("peer said {ready}: {e}"))?;
    CHILDREN
        .lock()
        .map_err(|_| "peer list poisoned".to_owned())?
        .push(child);
    Ok(issuers)
}

/// The started peer's value, or `None` (skip, with a message naming `test`) when it could not
/// start outside CI; with `CI=true` a peer that could not start fails the test.
#[expect(
    clippy::panic,
    reason = "test harness: a missing peer in CI is a failed test"
)]
pub fn or_skip<T: Clone>(started: &Result<T, String>, test: &str) -> Option<T> {
    match started {
        Ok(value) => Some(value.clone()),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("the OIDC tests need node, npm and the npm registry in CI: {why}")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED {test}: oidc-provider unavailable ({why}); set CI=true to make this fatal"
            );
            None
        }
    }
}

/// Plays the browser at the provider: follows its redirects by hand (no automatic redirects),
/// signs in as `account` on the development login form, and answers the URL of the redirect
/// back to `redirect_uri` (with `code` and `state`, or `error`).
pub async fn browser(
    authorization_url: &str,
    redirect_uri: &str,
    account: &str,
) -> Result<url::Url, String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let mut next = url::Url::parse(authorization_url).map_err(|e| e.to_string())?;
    let mut form: Option<Vec<(&str, &str)>> = None;
    for _ in 0..12 {
        if next.as_str().starts_with(redirect_uri) {
            return Ok(next);
        }
        let cookie = cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = match form.take() {
            Some(fields) => http.post(next.clone()).form(&fields),
            None => http.get(next.clone()),
        };
        let response = request
            .header("cookie", cookie)
            .send()
            .await
            .map_err(|e| format!("at {next}: {e}"))?;
        for set in response.headers().get_all("set-cookie") {
            let text = set.to_str().map_err(|e| e.to_string())?;
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() {
                    cookies.remove(name);
                } else {
                    cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("a redirect without a location at {next}"))?
                .to_owned();
            next = next.join(&location).map_err(|e| e.to_string())?;
            continue;
        }
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("at {next}: {status}: {body}"));
        }
        if !next.path().starts_with("/interaction/") {
            return Err(format!("unexpected page {next}"));
        }
        form = Some(vec![
            ("prompt", "login"),
            ("login", account),
            ("password", "anything"),
        ]);
    }
    Err(format!("too many redirects from {authorization_url}"))
}
