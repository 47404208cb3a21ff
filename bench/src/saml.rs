//! The SAML side of the run: a service provider registered at SmartPlan's IdP (its metadata
//! and its AuthnRequests, HTTP-Redirect binding) and pysaml2's IdP as the peer to compare with.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use ciam_core::{Clock as _, SystemClock};
use flate2::Compression;
use flate2::write::DeflateEncoder;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::processes::WorkDir;
use crate::{BenchError, Result};

/// The benchmark's SP entity id.
const ENTITY_ID: &str = "http://127.0.0.1/bench-sp";
/// Its assertion consumer service (never called: the load generator reads the response).
const ACS_URL: &str = "http://127.0.0.1:9/bench-sp/acs";

/// The benchmark's service provider.
pub struct BenchSp {
    /// Its metadata file.
    pub metadata_path: PathBuf,
}

impl BenchSp {
    /// Writes the SP's metadata.
    pub fn write(work: &WorkDir) -> Result<Self> {
        let metadata_path = work.path.join("bench-sp.xml");
        let metadata = format!(
            "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" \
             entityID=\"{ENTITY_ID}\"><md:SPSSODescriptor AuthnRequestsSigned=\"false\" \
             WantAssertionsSigned=\"true\" \
             protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
             <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>\
             <md:AssertionConsumerService \
             Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{ACS_URL}\" \
             index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>"
        );
        std::fs::write(&metadata_path, metadata).map_err(BenchError::io("SP metadata"))?;
        Ok(Self { metadata_path })
    }

    /// The HTTP-Redirect URL of an AuthnRequest to the IdP at `sso_url`.
    pub fn redirect_url(&self, sso_url: &str) -> Result<String> {
        let issued = SystemClock.now().format("%Y-%m-%dT%H:%M:%SZ");
        let request = format!(
            "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
             xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_bench-request-1\" \
             Version=\"2.0\" IssueInstant=\"{issued}\" Destination=\"{sso_url}\" \
             AssertionConsumerServiceURL=\"{ACS_URL}\" \
             ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\">\
             <saml:Issuer>{ENTITY_ID}</saml:Issuer>\
             <samlp:NameIDPolicy Format=\"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent\" \
             AllowCreate=\"true\"/></samlp:AuthnRequest>"
        );
        let mut deflate = DeflateEncoder::new(Vec::new(), Compression::default());
        deflate
            .write_all(request.as_bytes())
            .map_err(BenchError::io("deflating the AuthnRequest"))?;
        let deflated = deflate
            .finish()
            .map_err(BenchError::io("deflating the AuthnRequest"))?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(deflated);
        let mut url = url::Url::parse(sso_url)
            .map_err(|error| BenchError::Step(format!("{sso_url}: {error}")))?;
        url.query_pairs_mut()
            .append_pair("SAMLRequest", &encoded)
            .append_pair("RelayState", "bench");
        Ok(url.to_string())
    }
}

/// pysaml2's IdP (`ciam-saml/tests/interop/pysaml2_server.py idp`), signing with the same key.
pub struct Pysaml2Idp {
    _child: Child,
    port: u16,
}

impl Pysaml2Idp {
    /// Starts the IdP and waits for its `READY <port>` line.
    pub async fn start(
        python: &Path,
        script: &Path,
        work: &WorkDir,
        key: &Path,
        cert: &Path,
        sp_metadata: &Path,
    ) -> Result<Self> {
        let dir = work.path.join("pysaml2");
        std::fs::create_dir_all(&dir).map_err(BenchError::io("pysaml2 dir"))?;
        let log = std::fs::File::create(work.path.join("pysaml2.log"))
            .map_err(BenchError::io("pysaml2 log"))?;
        let mut child = Command::new(python)
            .arg(script)
            .arg("idp")
            .arg(&dir)
            .arg(key)
            .arg(cert)
            .arg(sp_metadata)
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(BenchError::io(format!("starting {}", script.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Step("pysaml2: no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .map_err(|_| BenchError::Step("pysaml2 IdP not ready after 60 s".into()))?
            .map_err(BenchError::io("reading pysaml2's output"))?
            .unwrap_or_default();
        let port = ready
            .strip_prefix("READY ")
            .and_then(|port| port.trim().parse().ok())
            .ok_or_else(|| {
                BenchError::Step(format!(
                    "pysaml2 IdP said {ready:?} instead of READY <port>; see pysaml2.log"
                ))
            })?;
        Ok(Self {
            _child: child,
            port,
        })
    }

    /// Its single sign-on endpoint (HTTP-Redirect).
    pub fn sso_url(&self) -> String {
        format!("http://127.0.0.1:{}/sso", self.port)
    }
}
