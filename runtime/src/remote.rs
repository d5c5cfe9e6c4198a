//! Talking to a running agent's admin endpoint from the command line
//! (`sluice top`, `sluice tap`): where it is, one GET, and a streamed GET.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Longest wait for an answer to a plain GET.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the agent's admin endpoint is and how to read it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host:port`.
    pub address: String,
    /// The bearer token, if the endpoint has one.
    pub token: Option<String>,
    /// The agent's plugin status file, if known.
    pub status_file: Option<std::path::PathBuf>,
}

/// Connects and sends `GET path` (with the token, if any).
fn request(target: &Target, path: &str) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(&target.address)
        .with_context(|| format!("connecting to {}", target.address))?;
    let auth = target
        .token
        .as_ref()
        .map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
        target.address
    )?;
    Ok(stream)
}

/// One GET: the status and the body.
pub fn get(target: &Target, path: &str) -> Result<(u16, String)> {
    let mut stream = request(target, path)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// A GET whose body is streamed: `each` gets every line as it arrives
/// (chunked or not), until the answer ends or `each` returns `false`.
/// `Err` if the status is not 200 (with the body, which says why).
pub fn stream_lines(target: &Target, path: &str, mut each: impl FnMut(&str) -> bool) -> Result<()> {
    let stream = request(target, path)?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        let lower = header.to_ascii_lowercase();
        chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
    }
    if status != 200 {
        let mut body = String::new();
        let _ = reader.read_to_string(&mut body);
        bail!("{path} answered {status}: {}", body.trim());
    }
    // The body's bytes in order, whatever the framing.
    let mut pending = Vec::new();
    let mut emit = |bytes: &[u8], pending: &mut Vec<u8>| -> bool {
        pending.extend_from_slice(bytes);
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            if !each(String::from_utf8_lossy(&line[..i]).as_ref()) {
                return false;
            }
        }
        true
    };
    if chunked {
        loop {
            let mut size = String::new();
            if reader.read_line(&mut size)? == 0 {
                break;
            }
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .context("a malformed chunk size")?;
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if !emit(&chunk[..n], &mut pending) {
                return Ok(());
            }
        }
    } else {
        let mut buf = [0u8; 8192];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 || !emit(&buf[..n], &mut pending) {
                break;
            }
        }
    }
    Ok(())
}
