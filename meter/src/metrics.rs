//! Live power for dashboards: a Prometheus exporter that runs beside the capture.
//!
//! [`render`] turns a snapshot of the sources' [`MeterStatus`] into the Prometheus text
//! exposition format (0.0.4). [`serve`] answers `GET /metrics` with it over HTTP/1.1 (hyper),
//! on the capture's tokio runtime. The capture never waits for the exporter: a scrape clones
//! the latest statuses from the capture's watch channel and renders the copy; every
//! connection runs in its own task and answers one request; a client has a limited time to
//! send its request head and to take the response; the request head's size and the number
//! of connections served at once are capped. Nothing runs while nobody scrapes.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

use crate::status::{MeterStatus, StatusFeed};
use crate::Cancel;

/// Content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a connection is drained after its response before it is closed.
const LINGER: Duration = Duration::from_secs(1);

/// Smallest request-head limit hyper accepts (its read buffer never goes below this).
pub const MIN_REQUEST_BYTES: usize = 8192;

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
    /// Largest request head accepted, bytes (431 above it); at least [`MIN_REQUEST_BYTES`].
    pub max_request_bytes: usize,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            max_request_bytes: MIN_REQUEST_BYTES,
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
                    handle(stream, status, limits).await;
                    drop(permit);
                });
            }
            // Out of file descriptors and the like: wait a moment rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// How hyper's handling of a connection ended.
enum Ending {
    /// Answered (by the service, or by hyper for a malformed request), or the client left.
    Done,
    /// No request to answer: a canned error response is due.
    Unanswered(StatusCode, &'static str),
    /// The client did not take the response in time.
    Abandoned,
}

/// One connection: one request, answered, then closed after a short drain.
async fn handle(mut stream: TcpStream, status: StatusFeed, limits: Limits) {
    let ending = exchange(&mut stream, status, limits).await;
    let answered = match ending {
        Ending::Done => true,
        Ending::Abandoned => false,
        Ending::Unanswered(code, why) => write_plain(&mut stream, code, why, limits).await,
    };
    if answered {
        linger(&mut stream).await;
    }
}

/// Let hyper read the request and write the response, within the limits.
async fn exchange(stream: &mut TcpStream, status: StatusFeed, limits: Limits) -> Ending {
    let requested = Arc::new(Notify::new());
    let service = {
        let requested = requested.clone();
        service_fn(move |req: Request<Incoming>| {
            requested.notify_one();
            let response = respond(&req, &status);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    let conn = http1::Builder::new()
        .keep_alive(false)
        // A client may shut down its sending side once the request is out (curl, scripts):
        // without this hyper drops the connection on that EOF before answering.
        .half_close(true)
        // Header names as most servers spell them (`Content-Type`), as clients have seen them.
        .title_case_headers(true)
        .max_buf_size(limits.max_request_bytes.max(MIN_REQUEST_BYTES))
        .serve_connection(TokioIo::new(&mut *stream), service);
    tokio::pin!(conn);
    // Biased: a request that arrived is answered even if the request timer fires meanwhile.
    let finished = tokio::select! {
        biased;
        r = conn.as_mut() => Some(r),
        _ = requested.notified() => None,
        _ = tokio::time::sleep(limits.request_timeout) => {
            return Ending::Unanswered(StatusCode::REQUEST_TIMEOUT, "request not received in time");
        }
    };
    match finished {
        // Hyper answers malformed and oversized requests itself, but not one cut short.
        Some(Err(e)) if e.is_incomplete_message() => {
            Ending::Unanswered(StatusCode::BAD_REQUEST, "incomplete request")
        }
        Some(_) => Ending::Done,
        None => match tokio::time::timeout(limits.write_timeout, conn).await {
            Ok(_) => Ending::Done,
            Err(_) => Ending::Abandoned,
        },
    }
}

/// Write a plain-text error response for a request hyper never handed over.
async fn write_plain(stream: &mut TcpStream, code: StatusCode, why: &str, limits: Limits) -> bool {
    let body = format!("{why}\n");
    let bytes = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        code.as_u16(),
        code.canonical_reason().unwrap_or_default(),
        body.len()
    );
    let written = tokio::time::timeout(limits.write_timeout, stream.write_all(bytes.as_bytes()));
    matches!(written.await, Ok(Ok(())))
}

/// Close the sending side, then drain what the client still sends (e.g. the rest of an
/// oversized request) so that closing does not reset the connection before the client has
/// read the response.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
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

/// A response with a text body, its type and its length (explicit, so that HEAD gets the
/// length of the body it does not receive).
fn text(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let len = body.len();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(content_type));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    r
}

fn plain(code: StatusCode, message: &str) -> Response<Full<Bytes>> {
    text(code, "text/plain; charset=utf-8", format!("{message}\n"))
}

/// The response to a request whose head hyper parsed.
fn respond<B>(req: &Request<B>, status: &StatusFeed) -> Response<Full<Bytes>> {
    route(req, || {
        // Render a copy: the capture's channel is never held while formatting.
        let snapshot = status.borrow().clone();
        render(&snapshot, crate::clock::mono_ns())
    })
}

/// Route a request; `metrics` renders the body only when it is needed.
fn route<B>(req: &Request<B>, metrics: impl FnOnce() -> String) -> Response<Full<Bytes>> {
    let uri = req.uri();
    // Origin form (`/metrics`) or absolute form (`http://host/metrics`); not `host:port`.
    if uri.authority().is_some() && uri.scheme().is_none() || !uri.path().starts_with('/') {
        return plain(
            StatusCode::BAD_REQUEST,
            "bad request target: expected an absolute path",
        );
    }
    if uri.path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics",
        );
    }
    match *req.method() {
        Method::GET | Method::HEAD => text(StatusCode::OK, CONTENT_TYPE, metrics()),
        _ => {
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: use GET",
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
    }
}

/// Samples of a family as (labels, value), from the statuses and the monotonic clock now.
type Samples = fn(&[MeterStatus], i64) -> Vec<(String, f64)>;

/// One metric family: its name, type, help, and samples.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Samples,
}

fn host(m: &MeterStatus) -> String {
    format!("host=\"{}\"", escape_label(&m.name))
}

/// One sample per source where `f` has a value, labelled with the host.
fn per_host(meters: &[MeterStatus], f: impl Fn(&MeterStatus) -> Option<f64>) -> Vec<(String, f64)> {
    meters
        .iter()
        .filter_map(|m| f(m).map(|v| (host(m), v)))
        .collect()
}

fn rejected(meters: &[MeterStatus], _: i64) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for m in meters {
        // Kinds the source may report are exported at 0 until seen, so that rate() works
        // from the start.
        let known = m.reject_kinds.iter().map(|k| (*k, 0));
        let mut by_kind: std::collections::BTreeMap<&str, u64> = known.collect();
        for (k, n) in &m.rejected_by_kind {
            by_kind.insert(k.as_str(), *n);
        }
        for (k, n) in by_kind {
            let kind = escape_label(&k.replace(' ', "_"));
            out.push((format!("{},kind=\"{kind}\"", host(m)), n as f64));
        }
    }
    out
}

fn info(meters: &[MeterStatus], _: i64) -> Vec<(String, f64)> {
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
        .collect()
}

const FAMILIES: [Family; 11] = [
    Family {
        name: "migwatt_power_watts",
        kind: "gauge",
        help: "Latest power reading of the meter, W.",
        samples: |m, _| per_host(m, |m| m.watts),
    },
    Family {
        name: "migwatt_voltage_volts",
        kind: "gauge",
        help: "Latest voltage reading of the meter, V.",
        samples: |m, _| per_host(m, |m| m.volts),
    },
    Family {
        name: "migwatt_current_amperes",
        kind: "gauge",
        help: "Latest current reading of the meter, A.",
        samples: |m, _| per_host(m, |m| m.amps),
    },
    Family {
        name: "migwatt_power_factor_ratio",
        kind: "gauge",
        help: "Latest power factor reading of the meter, ratio 0..1.",
        samples: |m, _| per_host(m, |m| m.power_factor),
    },
    Family {
        name: "migwatt_energy_joules_total",
        kind: "counter",
        help: "Energy since the capture started, J (trapezoids over consecutive samples on the host's monotonic clock; intervals across gaps are not counted).",
        samples: |m, _| per_host(m, |m| Some(m.energy_j_total)),
    },
    Family {
        name: "migwatt_samples_total",
        kind: "counter",
        help: "Samples captured since the capture started.",
        samples: |m, _| per_host(m, |m| Some(m.samples as f64)),
    },
    Family {
        name: "migwatt_rejected_fragments_total",
        kind: "counter",
        help: "Fragments of the serial stream rejected by the decoder, by kind.",
        samples: rejected,
    },
    Family {
        name: "migwatt_gaps_total",
        kind: "counter",
        help: "Gaps in the samples (reconnects, stalls, lost records).",
        samples: |m, _| per_host(m, |m| Some(m.gaps as f64)),
    },
    Family {
        name: "migwatt_last_sample_age_seconds",
        kind: "gauge",
        help: "Time since the meter's last sample, s.",
        samples: |m, now| {
            per_host(m, |m| {
                let t = m.last_sample_mono_ns?;
                Some((now - t).max(0) as f64 / 1e9)
            })
        },
    },
    Family {
        name: "migwatt_meter_logging",
        kind: "gauge",
        help: "1 while the meter streams records, 0 while connecting, reconnecting or stopped.",
        samples: |m, _| per_host(m, |m| Some(if m.state == "logging" { 1.0 } else { 0.0 })),
    },
    Family {
        name: "migwatt_meter_info",
        kind: "gauge",
        help: "The meter's identity and firmware, from its version reply.",
        samples: info,
    },
];

/// Render the sources' statuses in the Prometheus text format; `now_mono_ns` is the host's
/// monotonic clock (for the age of the last sample).
pub fn render(meters: &[MeterStatus], now_mono_ns: i64) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(512 + meters.len() * 1024);
    for f in &FAMILIES {
        let _ = write!(
            out,
            "# HELP {} {}\n# TYPE {} {}\n",
            f.name, f.help, f.name, f.kind
        );
        for (labels, v) in (f.samples)(meters, now_mono_ns) {
            let _ = writeln!(out, "{}{{{labels}}} {}", f.name, fmt_value(v));
        }
    }
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

    fn request(method: &str, target: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(target)
            .body(())
            .unwrap()
    }

    #[test]
    fn requests_are_routed() {
        let body = || "m 1\n".to_string();
        let code = |m: &str, t: &str| route(&request(m, t), body).status().as_u16();
        let ok = route(&request("GET", "/metrics"), body);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[CONTENT_TYPE_HEADER], CONTENT_TYPE);
        assert_eq!(ok.headers()[CONTENT_LENGTH], "4");
        assert_eq!(code("GET", "/metrics?x=1"), 200);
        assert_eq!(code("HEAD", "/metrics"), 200);
        assert_eq!(code("GET", "http://example.org/metrics"), 200);
        assert_eq!(code("GET", "/"), 404);
        assert_eq!(code("GET", "example.org:80"), 400);
        assert_eq!(code("GET", "*"), 400);
        let post = route(&request("POST", "/metrics"), body);
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[ALLOW], "GET, HEAD");
        // The body is rendered only for the metrics themselves.
        let not_found = route(&request("GET", "/x"), || unreachable!());
        assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    }

    /// Send `request` to a real server and return the whole response.
    async fn response(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // A server that closes at once may reset the connection: what arrived is the answer.
        let _ = s.write_all(request).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Send `request` to a real server and return the status line.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let r = response(addr, request).await;
        r.lines().next().unwrap_or_default().to_string()
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
                ..Limits::default()
            };
            tokio::spawn(serve_with(l, feed, stop.clone(), limits));

            // A client that connects and says nothing holds no one up.
            let _silent = TcpStream::connect(addr).await.unwrap();
            let out = response(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await;
            assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
            assert!(out.contains(&format!("\r\nContent-Type: {CONTENT_TYPE}\r\n")));
            assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
            let (head, body) = out.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
            assert!(body.starts_with("# HELP migwatt_power_watts "));
            assert!(body.contains("migwatt_power_watts{host=\"src\"} 44.4\n"));

            // Later scrapes see the statuses as they are now.
            status.send_modify(|s| s[0].watts = Some(50.0));
            let out = response(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
            assert!(
                out.contains("migwatt_power_watts{host=\"src\"} 50\n"),
                "{out}"
            );

            // HEAD: the length of the body, not the body.
            let out = response(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
            let (head, body) = out.split_once("\r\n\r\n").unwrap();
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
            assert!(
                head.contains("\r\nContent-Length: ") && body.is_empty(),
                "{out}"
            );

            assert_eq!(
                exchange(addr, b"GET /other HTTP/1.1\r\n\r\n").await,
                "HTTP/1.1 404 Not Found"
            );
            let out = response(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
            assert!(
                out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
                "{out}"
            );
            assert!(out.contains("\r\nAllow: GET, HEAD\r\n"), "{out}");
            for bad in [
                &b"\x00\x01\x02junk\r\n\r\n"[..],
                b"garbage\r\n\r\n",
                b"GET /metrics\r\n\r\n",
                b"GET  /metrics HTTP/1.1\r\n\r\n",
                b"GET metrics HTTP/1.1\r\n\r\n",
                b"GET /metrics HTTP/2.0\r\n\r\n",
                b"G(T /metrics HTTP/1.1\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
                b"GET /met\x01rics HTTP/1.1\r\n\r\n",
                b"GET /\xff HTTP/1.1\r\n\r\n",
            ] {
                assert_eq!(
                    exchange(addr, bad).await,
                    "HTTP/1.1 400 Bad Request",
                    "{:?}",
                    String::from_utf8_lossy(bad)
                );
            }
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

    #[test]
    fn connections_over_the_cap_are_closed_at_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = TcpListener::from_std(bind("127.0.0.1:0".parse().unwrap()).unwrap()).unwrap();
            let addr = l.local_addr().unwrap();
            let (_status, feed) = tokio::sync::watch::channel(vec![meter()]);
            let limits = Limits {
                max_connections: 2,
                // Long enough that the held connections stay held during the test.
                request_timeout: Duration::from_secs(600),
                ..Limits::default()
            };
            let stop = Cancel::new();
            tokio::spawn(serve_with(l, feed, stop.clone(), limits));
            let _held: Vec<TcpStream> = vec![
                TcpStream::connect(addr).await.unwrap(),
                TcpStream::connect(addr).await.unwrap(),
            ];
            // The third is closed without an answer.
            assert_eq!(response(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await, "");
            drop(_held);
            // Once the held ones are gone, scrapes are answered again (the server sees the
            // closes when it next polls them).
            let mut answered = false;
            for _ in 0..1000 {
                if exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await == "HTTP/1.1 200 OK" {
                    answered = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(answered);
            stop.cancel();
        });
    }
}
