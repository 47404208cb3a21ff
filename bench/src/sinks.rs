//! An SMTP server on 127.0.0.1 that accepts every message and counts it: the mail relay of
//! the run, so that mail is really handed over SMTP (lettre) and nothing leaves the machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::{BenchError, Result};

/// The running sink.
pub struct SmtpSink {
    /// Its port on 127.0.0.1.
    pub port: u16,
    received: Arc<AtomicUsize>,
}

impl SmtpSink {
    /// Listens on a free port and serves until the process ends.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(BenchError::io("SMTP sink: bind"))?;
        let port = listener
            .local_addr()
            .map_err(BenchError::io("SMTP sink: address"))?
            .port();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    // A broken connection only ends that conversation.
                    let _ = converse(stream, &counter).await;
                });
            }
        });
        Ok(Self { port, received })
    }

    /// Messages accepted so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `count` messages have arrived: the seconds waited, or `None` after
    /// `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Option<f64> {
        let deadline = Instant::now() + timeout;
        let since = Instant::now();
        loop {
            if self.received() >= count {
                return Some(since.elapsed().as_secs_f64());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One SMTP conversation (RFC 5321, the subset a client without TLS or AUTH uses).
async fn converse(stream: TcpStream, received: &AtomicUsize) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 bench-sink ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => {
                write
                    .write_all(b"250-bench-sink\r\n250 8BITMIME\r\n")
                    .await?
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                }
                received.fetch_add(1, Ordering::Relaxed);
                write.write_all(b"250 queued\r\n").await?;
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => write.write_all(b"250 ok\r\n").await?,
        }
    }
}
