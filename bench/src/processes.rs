//! The `smartplan` processes of a run: the demo that seeds the database, the administration
//! commands, the server (`smartplan serve`) and the import, each started as a user would.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::sinks::SmtpSink;
use crate::{BenchError, Result};

/// The run's temporary directory, removed at the end.
pub struct WorkDir {
    /// Its path.
    pub path: PathBuf,
}

impl WorkDir {
    /// A fresh directory in the system's temporary directory.
    pub fn create() -> Result<Self> {
        let path = Self::path_of_this_run();
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(BenchError::io("clearing the work dir"))?;
        }
        std::fs::create_dir_all(path.join("data")).map_err(BenchError::io("work dir"))?;
        Ok(Self { path })
    }

    /// Where this process's run keeps its files.
    pub fn path_of_this_run() -> PathBuf {
        std::env::temp_dir().join(format!("smartplan-bench-{}", std::process::id()))
    }

    /// Removes the directory (a failed run leaves it, with the logs, for a look).
    pub fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The database of the run.
pub struct Database {
    /// The URL the server uses.
    pub url: String,
    /// PostgreSQL: the server URL and the database to drop afterwards.
    postgres: Option<(String, String)>,
}

impl Database {
    /// SQLite in the work directory, or a fresh PostgreSQL database on `postgres`.
    pub async fn prepare(work: &WorkDir, postgres: Option<&str>) -> Result<Self> {
        let Some(server) = postgres else {
            return Ok(Self {
                url: format!("sqlite://{}", work.path.join("data/smartplan.db").display()),
                postgres: None,
            });
        };
        let name = format!("smartplan_bench_{}", std::process::id());
        crate::sessions::postgres_execute(server, &format!("CREATE DATABASE {name}")).await?;
        let mut url = url::Url::parse(server)
            .map_err(|error| BenchError::Step(format!("--postgres {server}: {error}")))?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            url: url.to_string(),
            postgres: Some((server.to_owned(), name)),
        })
    }

    /// Drops the PostgreSQL database of the run (nothing to do for SQLite).
    pub async fn drop(&self) {
        if let Some((server, name)) = &self.postgres {
            if let Err(error) = crate::sessions::postgres_execute(
                server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await
            {
                eprintln!("could not drop the database {name}: {error}");
            }
        }
    }
}

/// A free port on 127.0.0.1 (bound, then released for the process that takes it).
fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(BenchError::io("finding a port"))?;
    Ok(listener
        .local_addr()
        .map_err(BenchError::io("finding a port"))?
        .port())
}

/// The `smartplan` binary with a seeded database and a configuration file.
pub struct Smartplan {
    binary: PathBuf,
    config: PathBuf,
    port: u16,
    /// The IdP's signing key (PEM), shared with the raw RSA measurement and pysaml2.
    pub saml_key_path: PathBuf,
    /// The IdP's certificate (PEM).
    pub saml_cert_path: PathBuf,
}

impl Smartplan {
    /// Seeds the database with `smartplan demo` (the cast, the catalog, the keys), then writes
    /// the configuration of `smartplan serve`: mail to the SMTP sink, the demo's keys.
    pub async fn seed(
        binary: &Path,
        work: &WorkDir,
        database: &Database,
        smtp: &SmtpSink,
    ) -> Result<Self> {
        if !binary.exists() {
            return Err(BenchError::Step(format!(
                "{} not found: build it with `cargo build --release -p smartplan`",
                binary.display()
            )));
        }
        let data = work.path.join("data");
        let (port, app_port) = (free_port()?, free_port()?);
        let log = std::fs::File::create(work.path.join("demo.log"))
            .map_err(BenchError::io("demo log"))?;
        let mut demo = Command::new(binary);
        demo.arg("demo")
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--app-listen")
            .arg(format!("127.0.0.1:{app_port}"))
            .arg("--without-koko-registration")
            .arg("--database-url")
            .arg(&database.url)
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = demo
            .spawn()
            .map_err(BenchError::io("starting smartplan demo"))?;
        wait_healthy(
            &format!("http://127.0.0.1:{port}"),
            &mut child,
            "smartplan demo",
        )
        .await?;
        let _ = child.kill().await;

        let config = work.path.join("smartplan.toml");
        let serve_port = free_port()?;
        let mut toml = String::new();
        let _ = writeln!(toml, "listen = \"127.0.0.1:{serve_port}\"");
        let _ = writeln!(toml, "public_base_url = \"http://127.0.0.1:{serve_port}\"");
        let _ = writeln!(toml, "database_url = \"{}\"", database.url);
        let _ = writeln!(
            toml,
            "secret_key_file = \"{}\"",
            data.join("secret.key").display()
        );
        let _ = writeln!(toml, "\n[smtp]\nhost = \"127.0.0.1\"\nport = {}", smtp.port);
        let _ = writeln!(toml, "security = \"none\"");
        let _ = writeln!(toml, "from = \"SmartPlan <no-reply@smartplan.example>\"");
        // No SMS is sent in the run; the gateway address is a closed loopback port.
        let _ = writeln!(
            toml,
            "\n[sms]\nurl = \"http://127.0.0.1:9/sms\"\nauth_value = \"Bearer unused\"\nsender = \"SmartPlan\""
        );
        let (key, cert) = (data.join("saml-idp.key.pem"), data.join("saml-idp.crt.pem"));
        let _ = writeln!(
            toml,
            "\n[saml]\nkey_file = \"{}\"\ncertificate_file = \"{}\"",
            key.display(),
            cert.display()
        );
        std::fs::write(&config, toml).map_err(BenchError::io("writing the configuration"))?;
        Ok(Self {
            binary: binary.to_owned(),
            config,
            port: serve_port,
            saml_key_path: key,
            saml_cert_path: cert,
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.env("SMARTPLAN_CONFIG", &self.config);
        command
    }

    async fn run(&self, what: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .await
            .map_err(BenchError::io(format!("smartplan {what}")))?;
        if !out.status.success() {
            return Err(BenchError::Step(format!(
                "smartplan {what} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A CRM API key with the scopes the run uses.
    pub async fn create_api_key(&self) -> Result<String> {
        let out = self
            .run(
                "api-key create",
                &[
                    "api-key",
                    "create",
                    "--name",
                    "bench",
                    "--scope",
                    "provisioning,invitations,read",
                ],
            )
            .await?;
        out.split_whitespace()
            .find(|word| word.starts_with("spk_"))
            .map(str::to_owned)
            .ok_or_else(|| BenchError::Step(format!("no API key in {out:?}")))
    }

    /// Registers the benchmark's SAML SP for the SmartPlan Application service.
    pub async fn register_sp(&self, metadata: &Path) -> Result<()> {
        let path = metadata.display().to_string();
        self.run(
            "saml sp add",
            &["saml", "sp", "add", &path, "--service", "smartplan-app"],
        )
        .await
        .map(drop)
    }

    /// Imports `file` (CSV) and returns the wall time and peak memory measured by
    /// `/usr/bin/time -v`.
    pub async fn import_file(&self, file: &Path) -> Result<ImportRun> {
        let out = Command::new("/usr/bin/time")
            .arg("-v")
            .arg(&self.binary)
            .arg("import")
            .arg(file)
            .env("SMARTPLAN_CONFIG", &self.config)
            .stdout(Stdio::null())
            .output()
            .await
            .map_err(BenchError::io("/usr/bin/time -v smartplan import"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(BenchError::Step(format!(
                "smartplan import failed: {}",
                stderr.trim()
            )));
        }
        let field = |name: &str| {
            stderr
                .lines()
                .find_map(|line| line.trim().strip_prefix(name))
                .map(str::trim)
                .ok_or_else(|| BenchError::Step(format!("no {name:?} in the output of time -v")))
        };
        let wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss):")?;
        let seconds = wall
            .split(':')
            .try_fold(0.0, |total, part| {
                part.parse::<f64>().map(|p| total * 60.0 + p)
            })
            .map_err(|_| BenchError::Step(format!("wall time {wall:?}")))?;
        let peak_kib = field("Maximum resident set size (kbytes):")?
            .parse()
            .map_err(|_| BenchError::Step("peak memory".into()))?;
        Ok(ImportRun { seconds, peak_kib })
    }

    /// Writes `rows` new people of Bench Corp to a CSV file and imports it.
    pub async fn import_users(&self, work: &WorkDir, rows: usize, name: &str) -> Result<ImportRun> {
        let path = work.path.join(format!("import-{name}.csv"));
        {
            use std::io::Write as _;
            let file = std::fs::File::create(&path).map_err(BenchError::io("import file"))?;
            let mut out = std::io::BufWriter::new(file);
            let write = |out: &mut std::io::BufWriter<std::fs::File>| -> std::io::Result<()> {
                writeln!(
                    out,
                    "email,given_name,family_name,phone,organization,business_roles,password_hash"
                )?;
                for n in 0..rows {
                    writeln!(
                        out,
                        "{name}{n}@bench.example,Person,Number {n},,{},energy-manager,",
                        crate::load::BENCH_ACCOUNT
                    )?;
                }
                out.flush()
            };
            write(&mut out).map_err(BenchError::io("writing the import file"))?;
        }
        let run = self.import_file(&path).await;
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("csv.report.csv"));
        run
    }

    /// Starts `smartplan serve` and waits until it is healthy.
    pub async fn serve(&self) -> Result<Server> {
        let log_path = self.config.with_file_name("serve.log");
        let log = std::fs::File::create(&log_path).map_err(BenchError::io("serve log"))?;
        let mut child = self
            .command()
            .arg("serve")
            .env("SMARTPLAN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(BenchError::io("starting smartplan serve"))?;
        let base_url = format!("http://127.0.0.1:{}", self.port);
        wait_healthy(&base_url, &mut child, "smartplan serve").await?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Step("smartplan serve exited".into()))?;
        Ok(Server {
            child,
            pid,
            base_url,
        })
    }
}

/// A finished import.
pub struct ImportRun {
    /// Wall time.
    pub seconds: f64,
    /// Peak resident memory.
    pub peak_kib: u64,
}

/// A running `smartplan serve`.
pub struct Server {
    child: Child,
    pid: u32,
    /// Its base URL.
    pub base_url: String,
}

impl Server {
    /// The server's resident memory (VmRSS).
    pub fn resident_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .map_err(BenchError::io("reading the server's memory"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .ok_or_else(|| BenchError::Step("no VmRSS in /proc/PID/status".into()))
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Waits (at most 120 s) until `base/healthz` answers 200.
async fn wait_healthy(base: &str, child: &mut Child, what: &str) -> Result<()> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(BenchError::Step(format!(
                "{what} exited ({status}); see its log in the work directory"
            )));
        }
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::Step(format!("{what} not healthy after 120 s")))
}
