//! One raw HTTP/1.1 request at a time, for tests that need exact status
//! codes, headers or malformed bodies the typed client cannot send.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// An HTTP answer read by [`http`].
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// The header block, as received (lines separated by CRLF).
    pub headers: String,
    /// The body (chunked transfer decoded).
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One raw HTTP/1.1 request (`Connection: close`) to `addr`, for tests that
/// need exact status codes, headers or malformed bodies the typed client
/// cannot send. Gives up after 5 seconds.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<HttpReply, String> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.unwrap_or_default());
        // The server may answer (413) and close before reading all of a large
        // body: a failed write is not the end, the answer may be waiting.
        let _ = s.write_all(&out).await;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if buf.is_empty() => return Err(e.to_string()),
                Err(_) => break,
            }
        }
        parse_http(&buf)
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| "HTTP request timed out".to_string())?
}

fn parse_http(buf: &[u8]) -> Result<HttpReply, String> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP header")?;
    let headers = String::from_utf8_lossy(buf.get(..split).unwrap_or_default()).into_owned();
    let raw_body = buf.get(split + 4..).unwrap_or_default();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {headers}"))?;
    let chunked = headers.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(raw_body)?
    } else {
        raw_body.to_vec()
    };
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_line = String::from_utf8_lossy(raw.get(..eol).unwrap_or_default()).into_owned();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size_line:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let data = raw.get(eol + 2..eol + 2 + size).ok_or("short chunk")?;
        out.extend_from_slice(data);
        raw = raw.get(eol + 4 + size..).unwrap_or_default();
    }
}
