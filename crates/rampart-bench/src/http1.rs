//! Just enough HTTP/1.1 over a raw TCP stream for the address spray (client) and the
//! webhook receiver (server): one message at a time, bodies framed by `Content-Length`.
//! Hand-written so that what goes on the wire is exactly what the code says.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest message head, and largest body (webhook payloads are a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// A message head: the request or status line, and the headers (names lower-cased).
#[derive(Debug)]
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The status code of a response head.
    pub fn status(&self) -> anyhow::Result<u16> {
        let code = self.start_line.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)?.parse().ok());
        code.ok_or_else(|| anyhow!("bad status line {:?}", self.start_line))
    }

    fn body_len(&self) -> anyhow::Result<usize> {
        if self.header("transfer-encoding").is_some() {
            bail!("chunked bodies are not supported");
        }
        let len = self.header("content-length").map_or(Ok(0), str::parse).context("bad Content-Length")?;
        if len > MAX_BODY {
            bail!("body of {len} bytes is too large");
        }
        Ok(len)
    }
}

/// `Some((head, head length including the blank line))` once the whole head is in `buf`.
pub fn parse_head(buf: &[u8]) -> anyhow::Result<Option<(Head, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            bail!("message head larger than {MAX_HEAD} bytes");
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(buf.get(..end).unwrap_or_default()).context("message head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or_default().to_owned();
    let headers = lines.filter_map(|line| line.split_once(':'));
    let headers = headers.map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned())).collect();
    Ok(Some((Head { start_line, headers }, end + 4)))
}

/// One HTTP/1.1 connection, either end.
pub struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet consumed: the start of the next message, if any.
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Self { stream, buf: Vec::with_capacity(1024) }
    }

    pub async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        Ok(self.stream.write_all(bytes).await?)
    }

    /// Reads the next message. `None` when the peer closed cleanly between messages.
    pub async fn read_message(&mut self) -> anyhow::Result<Option<(Head, Vec<u8>)>> {
        loop {
            if let Some((head, head_len)) = parse_head(&self.buf)? {
                let total = head_len + head.body_len()?;
                while self.buf.len() < total {
                    if !self.fill().await? {
                        bail!("connection closed inside a message");
                    }
                }
                let body = self.buf.drain(..total).skip(head_len).collect();
                return Ok(Some((head, body)));
            }
            if !self.fill().await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                bail!("connection closed inside a message head");
            }
        }
    }

    /// Sends `request` and reads the response, within `timeout`.
    pub async fn exchange(&mut self, request: &[u8], timeout: Duration) -> anyhow::Result<Head> {
        let exchange = async {
            self.write(request).await?;
            Ok(self.read_message().await?.ok_or_else(|| anyhow!("connection closed, no response"))?.0)
        };
        tokio::time::timeout(timeout, exchange).await.context("request timed out")?
    }

    /// Reads more bytes; false at end of stream.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let res = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-RateLimit-Limit: 1000\r\n\r\nhello";
        let (head, len) = parse_head(res).unwrap().unwrap();
        assert_eq!((len, head.status().unwrap(), head.body_len().unwrap()), (res.len() - 5, 200, 5));
        assert_eq!(head.header("x-ratelimit-limit"), Some("1000"));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-le").unwrap().is_none());
        let (head, _) = parse_head(b"POST /hook HTTP/1.1\r\nx-rampart-signature: t=1,v1=ab\r\n\r\n").unwrap().unwrap();
        assert_eq!((head.header("x-rampart-signature"), head.body_len().unwrap()), (Some("t=1,v1=ab"), 0));
        assert!(head.status().is_err());
        let chunked = parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").unwrap().unwrap().0;
        assert!(chunked.body_len().is_err());
    }

    #[tokio::test]
    async fn messages_round_trip_over_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut conn = Conn::new(listener.accept().await.unwrap().0);
            let mut bodies = Vec::new();
            while let Some((_, body)) = conn.read_message().await.unwrap() {
                bodies.push(body);
                conn.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            }
            bodies
        });
        let mut client = Conn::new(TcpStream::connect(addr).await.unwrap());
        for body in ["one", "two"] {
            let req = format!("POST / HTTP/1.1\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            assert_eq!(client.exchange(req.as_bytes(), Duration::from_secs(5)).await.unwrap().status().unwrap(), 204);
        }
        drop(client);
        assert_eq!(server.await.unwrap(), [b"one".to_vec(), b"two".to_vec()]);
    }
}
