//! Live power for dashboards: a Prometheus exporter that runs beside the capture.
//!
//! [`render`] turns a snapshot of the meters' [`MeterStatus`] into the Prometheus text
//! exposition format (0.0.4). [`serve`] is a small HTTP/1.1 server on the capture's tokio
//! runtime that answers `GET /metrics` with it. The capture never waits for the exporter: it
//! only reads the statuses the capture publishes on its watch channel (cloned per scrape),
//! every connection runs in its own task with a read timeout, a size limit and a write
//! timeout, and the number of open connections is capped. Nothing runs while nobody scrapes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::status::{MeterStatus, StatusFeed};
use crate::Cancel;

/// Content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a connection is drained after its response before it is closed.
const LINGER: Duration = Duration::from_secs(1);

/// Errors of the exporter's configuration.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A listen address that cannot be parsed.
    #[error(
        "metrics address {input:?}: expected PORT, :PORT, IP:PORT, [IPv6]:PORT or localhost:PORT"
    )]
    BadAddress {
        /// What was given.
        input: String,
    },
}

/// Parse a listen address; a bare port (`9105` or `:9105`) or `localhost:PORT` binds to
/// loopback (127.0.0.1).
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, MetricsError> {
    let s = s.trim();
    let bad = || MetricsError::BadAddress { input: s.into() };
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let port = s
        .strip_prefix("localhost:")
        .or_else(|| s.strip_prefix(':'))
        .unwrap_or(s);
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// Bind a non-blocking listener for [`serve`] (port 0 picks a free port).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Limits that keep slow or hostile clients from holding resources.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time allowed to receive a whole request head (408 after it).
    pub request_timeout: Duration,
    /// Time allowed to write a response.
    pub write_timeout: Duration,
    /// Largest request head accepted, bytes (431 above it).
    pub max_request_bytes: usize,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_request_bytes: 8 * 1024,
            max_connections: 64,
        }
    }
}

/// Serve `/metrics` from `status` until `stop` is set, with the default [`Limits`].
pub async fn serve(listener: TcpListener, status: StatusFeed, stop: Cancel) {
    serve_with(listener, status, stop, Limits::default()).await
}

/// Serve `/metrics` from `status` until `stop` is set.
pub async fn serve_with(listener: TcpListener, status: StatusFeed, stop: Cancel, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                // Over the cap the connection is dropped (closed) right away.
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    continue;
                };
                let status = status.clone();
                tokio::spawn(async move {
                    handle(stream, &status, limits).await;
                    drop(permit);
                });
            }
            // Out of file descriptors and the like: wait a moment rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// An HTTP response, before serialisation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    code: u16,
    content_type: &'static str,
    extra_header: Option<&'static str>,
    body: String,
    head_only: bool,
}

impl Response {
    fn error(code: u16, message: &str) -> Self {
        Response {
            code,
            content_type: "text/plain; charset=utf-8",
            extra_header: None,
            body: format!("{message}\n"),
            head_only: false,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.code {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.code,
            self.content_type,
            self.body.len()
        );
        if let Some(h) = self.extra_header {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !self.head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// One connection: read one request head, answer, close.
async fn handle(mut stream: TcpStream, status: &StatusFeed, limits: Limits) {
    let response = match read_head(&mut stream, limits).await {
        Ok(Some(head)) => route(&head, || {
            let snapshot = status.borrow().clone();
            render(&snapshot, crate::clock::mono_ns())
        }),
        Ok(None) => return,
        Err(r) => r,
    };
    let bytes = response.to_bytes();
    let written = tokio::time::timeout(limits.write_timeout, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        // Drain what the client still sends (e.g. the rest of an oversized request) so that
        // closing does not reset the connection before it has read the response.
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(LINGER, async {
            let mut left = 1usize << 20;
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
    }
}

/// Read up to the end of the request head; `Ok(None)` if the client left without a byte.
async fn read_head(stream: &mut TcpStream, limits: Limits) -> Result<Option<Vec<u8>>, Response> {
    let deadline = tokio::time::Instant::now() + limits.request_timeout;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Err(Response::error(408, "request not received in time")),
            Ok(Err(_)) => return Ok(None),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(Response::error(400, "incomplete request"))
            };
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf[scan_from..]) {
            buf.truncate(scan_from + end);
            return Ok(Some(buf));
        }
        if buf.len() > limits.max_request_bytes {
            return Err(Response::error(431, "request head too large"));
        }
    }
}

/// Length of the head up to and including its blank line (`\r\n\r\n` or `\n\n`).
fn head_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if buf[i..].starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// Answer a complete request head; `metrics` renders the body only when it is needed.
fn route(head: &[u8], metrics: impl FnOnce() -> String) -> Response {
    let (method, path) = match parse_head(head) {
        Ok(r) => r,
        Err(why) => return Response::error(400, why),
    };
    if path != "/metrics" {
        return Response::error(404, "not found: the metrics are at /metrics");
    }
    match method {
        "GET" | "HEAD" => Response {
            code: 200,
            content_type: CONTENT_TYPE,
            extra_header: None,
            body: metrics(),
            head_only: method == "HEAD",
        },
        _ => Response {
            extra_header: Some("Allow: GET, HEAD"),
            ..Response::error(405, "method not allowed: use GET")
        },
    }
}

/// Check a request head; returns its method and path (query string dropped).
fn parse_head(head: &[u8]) -> Result<(&str, &str), &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("request line must be METHOD SP PATH SP HTTP/1.x");
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(method) {
        return Err("bad method");
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return Err("bad request target: expected an absolute path");
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err("unsupported HTTP version: expected HTTP/1.0 or HTTP/1.1");
    }
    for line in lines.take_while(|l| !l.is_empty()) {
        match line.split_once(':') {
            Some((name, _)) if token(name) => {}
            _ => return Err("bad header line: expected NAME: VALUE"),
        }
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    Ok((method, path))
}

/// Render the meters' statuses in the Prometheus text format; `now_mono_ns` is the host's
/// monotonic clock (for the age of the last sample).
pub fn render(meters: &[MeterStatus], now_mono_ns: i64) -> String {
    let mut out = String::with_capacity(512 + meters.len() * 1024);
    let host = |m: &MeterStatus| format!("host=\"{}\"", escape_label(&m.name));
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in samples {
            out.push_str(&format!("{name}{{{labels}}} {}\n", fmt_value(v)));
        }
    };
    let gauge = |f: fn(&MeterStatus) -> Option<f64>| -> Vec<(String, f64)> {
        meters
            .iter()
            .filter_map(|m| f(m).map(|v| (host(m), v)))
            .collect()
    };
    family(
        "migwatt_power_watts",
        "gauge",
        "Latest power reading of the meter, W.",
        gauge(|m| m.watts),
    );
    family(
        "migwatt_voltage_volts",
        "gauge",
        "Latest voltage reading of the meter, V.",
        gauge(|m| m.volts),
    );
    family(
        "migwatt_current_amperes",
        "gauge",
        "Latest current reading of the meter, A.",
        gauge(|m| m.amps),
    );
    family(
        "migwatt_power_factor_ratio",
        "gauge",
        "Latest power factor reading of the meter, ratio 0..1.",
        gauge(|m| m.power_factor),
    );
    family(
        "migwatt_energy_joules_total",
        "counter",
        "Energy since the capture started, J (trapezoids over consecutive samples on the host's monotonic clock; intervals across gaps are not counted).",
        gauge(|m| Some(m.energy_j_total)),
    );
    family(
        "migwatt_samples_total",
        "counter",
        "Samples captured since the capture started.",
        gauge(|m| Some(m.samples as f64)),
    );
    let mut rejected = Vec::new();
    for m in meters {
        // Kinds the source may report are exported at 0 until seen, so that `rate()` works
        // from the start.
        let known = m.reject_kinds.iter().map(|k| (*k, 0));
        let mut by_kind: std::collections::BTreeMap<&str, u64> = known.collect();
        for (k, n) in &m.rejected_by_kind {
            by_kind.insert(k.as_str(), *n);
        }
        for (k, n) in by_kind {
            let kind = escape_label(&k.replace(' ', "_"));
            rejected.push((format!("{},kind=\"{kind}\"", host(m)), n as f64));
        }
    }
    family(
        "migwatt_rejected_fragments_total",
        "counter",
        "Fragments of the serial stream rejected by the decoder, by kind.",
        rejected,
    );
    family(
        "migwatt_gaps_total",
        "counter",
        "Gaps in the samples (reconnects, stalls, lost records).",
        gauge(|m| Some(m.gaps as f64)),
    );
    family(
        "migwatt_last_sample_age_seconds",
        "gauge",
        "Time since the meter's last sample, s.",
        meters
            .iter()
            .filter_map(|m| {
                let t = m.last_sample_mono_ns?;
                Some((host(m), (now_mono_ns - t).max(0) as f64 / 1e9))
            })
            .collect(),
    );
    family(
        "migwatt_meter_logging",
        "gauge",
        "1 while the meter streams records, 0 while connecting, reconnecting or stopped.",
        gauge(|m| Some(if m.state == "logging" { 1.0 } else { 0.0 })),
    );
    family(
        "migwatt_meter_info",
        "gauge",
        "The meter's identity and firmware, from its version reply.",
        meters
            .iter()
            .filter_map(|m| {
                let id = m.meter_id.as_deref()?;
                let labels = format!(
                    "{},meter_id=\"{}\",firmware=\"{}\"",
                    host(m),
                    escape_label(id),
                    escape_label(m.firmware.as_deref().unwrap_or_default())
                );
                Some((labels, 1.0))
            })
            .collect(),
    );
    out
}

/// Escape a label value: backslash, double quote and newline.
fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as Prometheus spells it (shortest exact decimal; `+Inf`, `-Inf`, `NaN`).
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter() -> MeterStatus {
        MeterStatus {
            name: "src".into(),
            device: "/dev/ttyUSB0".into(),
            state: "logging".into(),
            meter_id: Some("wattsup-PRO-hw5.2-fw3.14-200612211910".into()),
            baud: Some(115_200),
            watts: Some(44.4),
            volts: Some(119.8),
            amps: Some(0.378),
            power_factor: Some(0.88),
            energy_j_total: 1234.5,
            firmware: Some("3.14 (200612211910)".into()),
            last_sample_mono_ns: Some(10_000_000_000),
            samples: 42,
            gaps: 1,
            rejected: 3,
            rejected_by_kind: [("truncated".to_string(), 2), ("lost prefix".to_string(), 1)]
                .into_iter()
                .collect(),
            connections: 2,
            last_error: None,
            kind: "wattsup".into(),
            reject_kinds: &crate::source::wattsup::REJECT_KINDS,
        }
    }

    /// Every non-comment line as (name{labels}, value).
    fn samples(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("NAME VALUE");
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn value(text: &str, key: &str) -> Option<String> {
        samples(text)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    #[test]
    fn renders_every_metric_with_units_and_labels() {
        let text = render(&[meter()], 12_500_000_000);
        let v = |k: &str| value(&text, k).unwrap_or_else(|| panic!("{k} missing in\n{text}"));
        assert_eq!(v("migwatt_power_watts{host=\"src\"}"), "44.4");
        assert_eq!(v("migwatt_voltage_volts{host=\"src\"}"), "119.8");
        assert_eq!(v("migwatt_current_amperes{host=\"src\"}"), "0.378");
        assert_eq!(v("migwatt_power_factor_ratio{host=\"src\"}"), "0.88");
        assert_eq!(v("migwatt_energy_joules_total{host=\"src\"}"), "1234.5");
        assert_eq!(v("migwatt_samples_total{host=\"src\"}"), "42");
        assert_eq!(v("migwatt_gaps_total{host=\"src\"}"), "1");
        assert_eq!(v("migwatt_last_sample_age_seconds{host=\"src\"}"), "2.5");
        assert_eq!(v("migwatt_meter_logging{host=\"src\"}"), "1");
        assert_eq!(
            v("migwatt_rejected_fragments_total{host=\"src\",kind=\"truncated\"}"),
            "2"
        );
        assert_eq!(
            v("migwatt_rejected_fragments_total{host=\"src\",kind=\"lost_prefix\"}"),
            "1"
        );
        assert_eq!(
            v("migwatt_rejected_fragments_total{host=\"src\",kind=\"junk\"}"),
            "0"
        );
        assert_eq!(
            v("migwatt_meter_info{host=\"src\",meter_id=\"wattsup-PRO-hw5.2-fw3.14-200612211910\",firmware=\"3.14 (200612211910)\"}"),
            "1"
        );
        // Every family has HELP and TYPE lines right before its samples, and counters end in
        // _total.
        let mut declared = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(kind == "gauge" || kind == "counter", "{l}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{l}");
                declared.push(name.to_string());
            } else if let Some(rest) = l.strip_prefix("# HELP ") {
                assert!(rest.split_once(' ').is_some_and(|(_, h)| !h.is_empty()));
            } else {
                let name = l.split('{').next().unwrap();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{l}");
            }
        }
        assert_eq!(declared.len(), 11);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_meter_without_samples_has_counters_but_no_readings() {
        let m = MeterStatus {
            name: "dst".into(),
            state: "connecting".into(),
            ..Default::default()
        };
        let text = render(&[m], 0);
        assert_eq!(
            value(&text, "migwatt_samples_total{host=\"dst\"}").as_deref(),
            Some("0")
        );
        assert_eq!(
            value(&text, "migwatt_energy_joules_total{host=\"dst\"}").as_deref(),
            Some("0")
        );
        assert_eq!(
            value(&text, "migwatt_meter_logging{host=\"dst\"}").as_deref(),
            Some("0")
        );
        for absent in [
            "migwatt_power_watts{",
            "migwatt_last_sample_age_seconds{",
            "migwatt_meter_info{",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }

    #[test]
    fn label_values_and_odd_numbers_are_escaped() {
        let mut m = meter();
        m.meter_id = Some("a\"b\\c\nd".into());
        m.watts = Some(f64::INFINITY);
        m.volts = Some(f64::NAN);
        let text = render(&[m], 0);
        assert!(text.contains("meter_id=\"a\\\"b\\\\c\\nd\""), "{text}");
        assert!(text.contains("migwatt_power_watts{host=\"src\"} +Inf\n"));
        assert!(text.contains("migwatt_voltage_volts{host=\"src\"} NaN\n"));
        // The age never goes negative, whatever the clocks say.
        assert!(text.contains("migwatt_last_sample_age_seconds{host=\"src\"} 0\n"));
    }

    #[test]
    fn listen_addresses_default_to_loopback() {
        let lo = |p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p);
        assert_eq!(parse_listen_addr("9105").unwrap(), lo(9105));
        assert_eq!(parse_listen_addr(":9105").unwrap(), lo(9105));
        assert_eq!(parse_listen_addr("localhost:0").unwrap(), lo(0));
        assert_eq!(
            parse_listen_addr("0.0.0.0:9105").unwrap(),
            "0.0.0.0:9105".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("[::1]:9105").unwrap(),
            "[::1]:9105".parse().unwrap()
        );
        for bad in ["", ":", "host:9105", "99999", "1.2.3.4", "-1"] {
            assert!(parse_listen_addr(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn requests_are_routed_and_checked() {
        let body = || "m 1\n".to_string();
        let code = |req: &str| route(req.as_bytes(), body).code;
        let ok = route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", body);
        assert_eq!(
            (ok.code, ok.content_type, ok.body.as_str()),
            (200, CONTENT_TYPE, "m 1\n")
        );
        assert_eq!(code("GET /metrics?x=1 HTTP/1.0\n\n"), 200);
        let head = route(b"HEAD /metrics HTTP/1.1\r\n\r\n", body);
        assert!(head.head_only && !String::from_utf8_lossy(&head.to_bytes()).contains("m 1"));
        assert_eq!(code("GET / HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(code("POST /metrics HTTP/1.1\r\n\r\n"), 405);
        for bad in [
            "garbage\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/2.0\r\n\r\n",
            "G(T /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            "GET /met\x01rics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(code(bad), 400, "{bad:?}");
        }
        assert_eq!(route(b"GET /\xff HTTP/1.1\r\n\r\n", body).code, 400);
        let r =
            String::from_utf8(route(b"PUT /metrics HTTP/1.1\r\n\r\n", body).to_bytes()).unwrap();
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("\r\nAllow: GET, HEAD\r\n") && r.contains("Content-Length: "));
    }

    /// Send `request` to a real server and return the status line.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn the_server_answers_over_tcp_and_survives_bad_clients() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = TcpListener::from_std(bind("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
            let addr = l.local_addr().unwrap();
            let (status, feed) = tokio::sync::watch::channel(vec![meter()]);
            let stop = Cancel::new();
            let limits = Limits {
                request_timeout: Duration::from_millis(200),
                max_request_bytes: 1024,
                ..Limits::default()
            };
            tokio::spawn(serve_with(l, feed, stop.clone(), limits));

            // A client that connects and says nothing holds no one up.
            let _silent = TcpStream::connect(addr).await.unwrap();
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
            assert!(out.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")));
            assert!(out.contains("\r\n\r\n# HELP migwatt_power_watts "));
            assert!(out.contains("migwatt_power_watts{host=\"src\"} 44.4\n"));

            // Later scrapes see the statuses as they are now.
            status.send_modify(|s| s[0].watts = Some(50.0));
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            assert!(
                out.contains("migwatt_power_watts{host=\"src\"} 50\n"),
                "{out}"
            );

            assert_eq!(
                exchange(addr, b"GET /other HTTP/1.1\r\n\r\n").await,
                "HTTP/1.1 404 Not Found"
            );
            assert_eq!(
                exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await,
                "HTTP/1.1 405 Method Not Allowed"
            );
            assert_eq!(
                exchange(addr, b"\x00\x01\x02junk\r\n\r\n").await,
                "HTTP/1.1 400 Bad Request"
            );
            // A partial request that stalls times out with 408.
            assert_eq!(
                exchange(addr, b"GET /metr").await,
                "HTTP/1.1 408 Request Timeout"
            );
            // An oversized head is refused, and the response still arrives whole.
            let mut big = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
            big.extend(std::iter::repeat_n(b'a', 20_000));
            big.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                exchange(addr, &big).await,
                "HTTP/1.1 431 Request Header Fields Too Large"
            );
            // A request cut off by the client gets 400.
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
            s.shutdown().await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");

            stop.cancel();
        });
    }
}
