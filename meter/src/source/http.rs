//! A minimal HTTP/1.1 client over a tokio `TcpStream`, for polled sources on plain `http://`.
//!
//! Why by hand: hyper and reqwest left the build with polars' `lazy` feature (their build
//! cost was the reason), and a source needs one request per interval: `GET` (`POST` and
//! `DELETE` for a Redfish session's login and logout), a
//! `Connection: close` response, read to the end with a size cap and a deadline, status,
//! a few headers, and an identity or chunked body. Nothing else (no redirects, no
//! compression, no keep-alive, no TLS) is supported, and each is refused with a clear
//! error rather than misread.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL cannot be used.
    #[error("{url:?}: {problem}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Connecting, sending or receiving failed.
    #[error("{authority}: {what}")]
    Io {
        /// host:port.
        authority: String,
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No complete response within the deadline.
    #[error("{authority}: no complete response within {seconds} s")]
    Timeout {
        /// host:port.
        authority: String,
        /// The deadline, s.
        seconds: f64,
    },
    /// The response is not HTTP/1.x as this client reads it.
    #[error("{authority}: bad response: {problem}")]
    BadResponse {
        /// host:port.
        authority: String,
        /// What was wrong.
        problem: String,
    },
}

/// A parsed `http://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 when not given).
    pub port: u16,
    /// Path with its query, starting with `/`.
    pub path_and_query: String,
}

impl HttpUrl {
    /// Parse `http://host[:port][/path][?query]`; credentials in the URL are refused (they
    /// would end up in logs, metrics and datasets).
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |problem: &str| HttpError::Url {
            url: redact_userinfo(url),
            problem: problem.into(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("expected http://HOST[:PORT]/PATH"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err(bad(
                "credentials in the URL are not accepted (they would be logged)",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in host"))?;
            (h, p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| bad("port must be a number from 1 to 65535"))?,
        };
        if path
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_control())
        {
            return Err(bad("spaces and control characters must be %-encoded"));
        }
        Ok(HttpUrl {
            host: host.into(),
            port,
            path_and_query: path,
        })
    }

    /// `host:port`, for messages and the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `url` with any `user:password@` replaced by `***@`, for messages.
fn redact_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_string(),
    }
}

/// A response read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields as (lower-case name, value).
    pub headers: Vec<(String, String)>,
    /// Body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Send `GET` with `headers` and read the whole response, within `timeout` and at most
/// `max_bytes` of response.
pub async fn get(
    url: &HttpUrl,
    headers: &[(&str, &str)],
    timeout: Duration,
    max_bytes: usize,
) -> Result<Response, HttpError> {
    request("GET", url, headers, None, timeout, max_bytes).await
}

/// Send `method` (`GET`, `POST`, `DELETE`) with `headers` and `body` (sent with its
/// `Content-Length`) and read the whole response, within `timeout` and at most `max_bytes`.
pub async fn request(
    method: &str,
    url: &HttpUrl,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Response, HttpError> {
    let authority = url.authority();
    let work = async {
        let io = |what| {
            let authority = authority.clone();
            move |source| HttpError::Io {
                authority,
                what,
                source,
            }
        };
        let mut stream = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(io("connecting"))?;
        let mut req = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: migwatt/{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
            url.path_and_query,
            authority,
            env!("CARGO_PKG_VERSION")
        );
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        stream
            .write_all(&bytes)
            .await
            .map_err(io("sending the request"))?;
        let mut raw = Vec::with_capacity(16 * 1024);
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(io("reading the response"))?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
            if raw.len() > max_bytes {
                return Err(HttpError::BadResponse {
                    authority: authority.clone(),
                    problem: format!("larger than {max_bytes} bytes"),
                });
            }
        }
        parse_response(&raw).map_err(|problem| HttpError::BadResponse {
            authority: authority.clone(),
            problem,
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout {
            authority,
            seconds: timeout.as_secs_f64(),
        }),
    }
}

/// Parse a complete `Connection: close` response.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_len = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .ok_or("the connection closed before the end of the header")?;
    let head = std::str::from_utf8(&raw[..head_len]).map_err(|_| "header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("status line {status_line:?} is not HTTP/1.x"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| format!("status line {status_line:?} has no status code"))?;
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| format!("header line {l:?} has no ':'"))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let resp_body = &raw[head_len..];
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if let Some(enc) = find("content-encoding") {
        if !enc.eq_ignore_ascii_case("identity") {
            return Err(format!("content encoding {enc:?} (identity was asked)"));
        }
    }
    let body = match find("transfer-encoding") {
        Some(te) if te.eq_ignore_ascii_case("chunked") => dechunk(resp_body)?,
        Some(te) => return Err(format!("transfer encoding {te:?}")),
        None => match find("content-length") {
            Some(len) => {
                let len: usize = len
                    .parse()
                    .map_err(|_| format!("content-length {len:?} is not a number"))?;
                if resp_body.len() < len {
                    return Err(format!(
                        "body of {} bytes where content-length says {len}",
                        resp_body.len()
                    ));
                }
                resp_body[..len].to_vec()
            }
            None => resp_body.to_vec(),
        },
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(b.len());
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body cut short")?;
        let size_text = std::str::from_utf8(&b[..eol]).map_err(|_| "chunk size is not text")?;
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("chunk size {size_text:?} is not hexadecimal"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 || &b[size..size + 2] != b"\r\n" {
            return Err("chunked body cut short".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_refuse_credentials() {
        let u = HttpUrl::parse("http://127.0.0.1:9100/metrics?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("127.0.0.1", 9100, "/metrics?x=1")
        );
        let u = HttpUrl::parse("http://[::1]:8000").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.authority()),
            ("::1", 8000, "[::1]:8000".into())
        );
        assert_eq!(HttpUrl::parse("http://bmc").unwrap().port, 80);
        for bad in [
            "https://x/",
            "http://u:p@x/",
            "http://x:0/",
            "http://:80/",
            "http://x/a b",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
        let e = HttpUrl::parse("http://admin:secret@bmc/")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("credentials") && e.contains("http://***@bmc/"),
            "{e}"
        );
        assert!(!e.contains("secret") && !e.contains("admin"), "{e}");
    }

    #[test]
    fn responses_with_length_chunks_or_neither_are_read() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\nX-A: b\r\n\r\nnope").unwrap();
        assert_eq!(
            (r.status, r.header("x-a"), r.body.as_slice()),
            (404, Some("b"), &b"nope"[..])
        );
        for (bad, why) in [
            (&b"HTTP/1.1 200 OK\r\n"[..], "before the end of the header"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not HTTP/1.x"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
                "content-length says 9",
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n", "gzip"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                "cut short",
            ),
        ] {
            let e = parse_response(bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
