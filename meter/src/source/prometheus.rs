//! One series of a Prometheus exporter, scraped at a set interval, as a [`PowerSource`].
//!
//! Spelled `prometheus+http://HOST:PORT/PATH?metric=NAME[&LABEL=VALUE...]`: `metric` names
//! the series, every other query parameter is a label it must carry (and is not sent to the
//! exporter). Exactly one series must match; several are an error that lists them.
//!
//! The unit comes from the metric's name, as Prometheus naming conventions put it there:
//! `*_joules[_total]`, `*_millijoules[_total]`, `*_microjoules[_total]` are energy counters
//! (Kepler's `kepler_node_platform_joules_total`, Scaphandre's
//! `scaphandre_host_energy_microjoules`, migwatt's `migwatt_energy_joules_total`): the
//! source then measures an energy counter, undoes counter resets (a restarted exporter
//! counts from 0 again) and derives power from the counter's difference, like RAPL. Any other
//! name is power: `*_microwatts` and `*_milliwatts` are scaled, anything else is taken in W
//! (`node_hwmon_power_average_watt`, `migwatt_power_watts`).
//!
//! Plain `http://` only (see [`super::http`]); an exporter behind TLS or authentication is
//! better scraped by a Prometheus server next to it.

use std::collections::VecDeque;
use std::time::Duration;

use datasets::samples::FIELD_COUNT;

use super::http::{self, HttpUrl};
use super::{
    BoxFuture, Identity, Measures, PowerSource, Reading, Session, SourceError, SourceEvent,
    SourceOptions,
};

/// Largest exposition accepted (node_exporter's is a few hundred kB).
const MAX_BYTES: usize = 16 << 20;

/// Labels of the rejections a scrape may report.
pub const REJECT_KINDS: [&str; 1] = ["not a number"];

/// What the series' name says about its unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeriesUnit {
    /// Power, in W after multiplying by the factor.
    Power(f64),
    /// An energy counter, in J after multiplying by the factor.
    Counter(f64),
}

impl SeriesUnit {
    /// The unit of a metric named `name` (see the module documentation).
    pub fn of(name: &str) -> Self {
        let base = name.strip_suffix("_total").unwrap_or(name);
        for (suffix, f) in [
            ("_microjoules", 1e-6),
            ("_millijoules", 1e-3),
            ("_joules", 1.0),
        ] {
            if base.ends_with(suffix) {
                return SeriesUnit::Counter(f);
            }
        }
        for (suffix, f) in [("_microwatts", 1e-6), ("_milliwatts", 1e-3)] {
            if name.ends_with(suffix) {
                return SeriesUnit::Power(f);
            }
        }
        SeriesUnit::Power(1.0)
    }
}

/// A series of an exporter.
#[derive(Debug, Clone)]
pub struct Prometheus {
    url: HttpUrl,
    metric: String,
    labels: Vec<(String, String)>,
    unit: SeriesUnit,
    interval: Duration,
    timeout: Duration,
}

/// Why a spelling is not a usable series.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PrometheusSpecError(pub String);

/// `name="value"` pairs of a series, in its order.
pub type Labels = Vec<(String, String)>;

impl Prometheus {
    /// Parse the target after `prometheus+` (`http://HOST:PORT/PATH?metric=NAME[&L=V...]`).
    pub fn parse(target: &str, opts: &SourceOptions) -> Result<Self, PrometheusSpecError> {
        let (base, query) = target.split_once('?').unwrap_or((target, ""));
        let url = HttpUrl::parse(base).map_err(|e| PrometheusSpecError(e.to_string()))?;
        if url.path_and_query.contains('?') {
            return Err(PrometheusSpecError("unexpected '?'".into()));
        }
        let mut metric = None;
        let mut labels = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                PrometheusSpecError(format!("{pair:?}: expected NAME=VALUE in the query"))
            })?;
            let k = percent_decode(k)?;
            let v = percent_decode(v)?;
            if !valid_name(&k) {
                return Err(PrometheusSpecError(format!(
                    "{k:?} is not a Prometheus metric or label name"
                )));
            }
            if k == "metric" {
                if !valid_name(&v) {
                    return Err(PrometheusSpecError(format!(
                        "metric {v:?} is not a Prometheus metric name"
                    )));
                }
                metric = Some(v);
            } else {
                labels.push((k, v));
            }
        }
        let metric = metric.ok_or_else(|| {
            PrometheusSpecError(
                "missing ?metric=NAME (e.g. ?metric=migwatt_power_watts&host=src)".into(),
            )
        })?;
        Ok(Prometheus {
            url,
            unit: SeriesUnit::of(&metric),
            metric,
            labels,
            interval: Duration::from_secs(u64::from(opts.interval_s.max(1))),
            timeout: opts.reply_timeout,
        })
    }
    /// The same series scraped every `interval`.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
    /// The series as a selector, e.g. `migwatt_power_watts{host="src"}`.
    pub fn selector(&self) -> String {
        selector(&self.metric, &self.labels)
    }
}

fn selector(metric: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return metric.to_string();
    }
    let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{metric}{{{}}}", l.join(","))
}

fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn percent_decode(s: &str) -> Result<String, PrometheusSpecError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| PrometheusSpecError(format!("{s:?}: bad %-escape")))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| PrometheusSpecError(format!("{s:?}: not UTF-8")))
}

/// One sample line of the text exposition format: name, labels, value.
pub fn parse_line(line: &str) -> Option<(&str, Labels, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut r = r;
        loop {
            r = r.trim_start_matches([' ', ',']);
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = r.find('=')?;
            let key = r[..eq].trim().to_string();
            r = r[eq + 1..].trim_start().strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.push((key, value));
            r = &r[end + 1..];
        }
    }
    let value = rest.split_whitespace().next()?;
    let v = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, v))
}

/// The value of the one series named `metric` carrying every label of `want`.
pub fn find_series(text: &str, metric: &str, want: &[(String, String)]) -> Result<f64, String> {
    let mut found: Vec<(Labels, f64)> = Vec::new();
    let mut same_name = 0usize;
    for line in text.lines() {
        let Some((name, labels, v)) = parse_line(line) else {
            continue;
        };
        if name != metric {
            continue;
        }
        same_name += 1;
        if want.iter().all(|w| labels.contains(w)) {
            found.push((labels, v));
        }
    }
    match found.len() {
        1 => Ok(found[0].1),
        0 if same_name == 0 => Err(format!("no series named {metric} in the exposition")),
        0 => Err(format!(
            "none of the {same_name} series named {metric} has the labels of {}",
            selector(metric, want)
        )),
        n => {
            let list: Vec<String> = found
                .iter()
                .take(5)
                .map(|(l, _)| selector(metric, l))
                .collect();
            Err(format!(
                "{n} series match {} ({}{}): add labels to pick one",
                selector(metric, want),
                list.join(", "),
                if n > 5 { ", ..." } else { "" }
            ))
        }
    }
}

impl PowerSource for Prometheus {
    fn kind(&self) -> &'static str {
        super::spec::PROMETHEUS_KIND
    }
    fn location(&self) -> String {
        format!(
            "http://{}{} {}",
            self.url.authority(),
            self.url.path_and_query,
            self.selector()
        )
    }
    fn measures(&self) -> Measures {
        match self.unit {
            SeriesUnit::Power(_) => Measures::Power,
            SeriesUnit::Counter(_) => Measures::EnergyCounter,
        }
    }
    fn native_interval(&self) -> Duration {
        self.interval
    }
    fn reject_kinds(&self) -> &'static [&'static str] {
        &REJECT_KINDS
    }
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Session>, SourceError>> {
        Box::pin(async move {
            Ok(Box::new(PrometheusSession {
                src: self.clone(),
                counter: None,
                last: None,
                ticker: None,
                pending: VecDeque::new(),
            }) as Box<dyn Session>)
        })
    }
}

struct PrometheusSession {
    src: Prometheus,
    /// Last raw counter value (J) and the total with resets undone (J).
    counter: Option<(f64, f64)>,
    /// Monotonic time (ns) and total (J) of the previous reading, for counters.
    last: Option<(i64, f64)>,
    ticker: Option<tokio::time::Interval>,
    pending: VecDeque<SourceEvent>,
}

impl PrometheusSession {
    /// Scrape once: the series' value as exposed, stamped at the response's arrival.
    async fn scrape(&self) -> Result<(Reading, f64), SourceError> {
        let s = &self.src;
        let resp = http::get(
            &s.url,
            &[("Accept", "text/plain;version=0.0.4")],
            s.timeout,
            MAX_BYTES,
        )
        .await
        .map_err(|e| SourceError::Open {
            location: s.location(),
            source: Box::new(e),
        })?;
        let r = Reading::stamped_now([None; FIELD_COUNT]);
        if resp.status != 200 {
            let body = String::from_utf8_lossy(&resp.body);
            let body: String = body.chars().take(200).collect();
            return Err(SourceError::NoReply(format!(
                "{}: HTTP status {} ({})",
                s.location(),
                resp.status,
                body.trim()
            )));
        }
        let text = std::str::from_utf8(&resp.body).map_err(|_| {
            SourceError::NoReply(format!("{}: the exposition is not UTF-8", s.location()))
        })?;
        let v = find_series(text, &s.metric, &s.labels)
            .map_err(|e| SourceError::NoReply(format!("{}: {e}", s.location())))?;
        Ok((r, v))
    }

    /// Turn a scraped value into an event; None for a counter's origin.
    fn event(&mut self, mut r: Reading, v: f64) -> Option<SourceEvent> {
        if !v.is_finite() || v < 0.0 {
            return Some(SourceEvent::Rejected {
                kind: REJECT_KINDS[0],
            });
        }
        match self.src.unit {
            SeriesUnit::Power(f) => {
                r.fields[0] = Some(v * f);
                Some(SourceEvent::Reading(r))
            }
            SeriesUnit::Counter(f) => {
                let now = v * f;
                let total = match self.counter {
                    None => now,
                    // A counter that went back was reset (the exporter restarted): it
                    // counted from 0 to `now` since.
                    Some((prev, total)) if now < prev => total + now,
                    Some((prev, total)) => total + (now - prev),
                };
                self.counter = Some((now, total));
                let prev = self.last.replace((r.mono_ns, total));
                let (t0, e0) = prev?;
                let dt_s = (r.mono_ns - t0) as f64 / 1e9;
                if dt_s > 0.0 {
                    r.fields[0] = Some((total - e0) / dt_s);
                }
                r.energy_counter_j = Some(total);
                Some(SourceEvent::Reading(r))
            }
        }
    }
}

impl Session for PrometheusSession {
    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, SourceError>> {
        Box::pin(async move {
            // The first scrape proves the series is there; it is also the first reading
            // (or a counter's origin).
            let (r, v) = self.scrape().await?;
            if let Some(e) = self.event(r, v) {
                self.pending.push_back(e);
            }
            let s = &self.src;
            let mut id = format!("prometheus-{}", s.metric);
            for (k, v) in &s.labels {
                id.push_str(&format!("-{k}-{v}"));
            }
            Ok(Identity {
                meter_id: id,
                description: format!(
                    "Prometheus series {} at http://{}{}, every {:.1} s",
                    s.selector(),
                    s.url.authority(),
                    s.url.path_and_query,
                    s.interval.as_secs_f64()
                ),
                firmware: None,
                baud: None,
            })
        })
    }
    fn start(&mut self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(async move {
            self.ticker = Some(super::poll_ticker(self.src.interval));
            Ok(())
        })
    }
    fn next_event(&mut self) -> BoxFuture<'_, Result<SourceEvent, SourceError>> {
        Box::pin(async move {
            loop {
                if let Some(e) = self.pending.pop_front() {
                    return Ok(e);
                }
                let Some(t) = self.ticker.as_mut() else {
                    return Err(SourceError::Closed);
                };
                t.tick().await;
                // A scrape dropped half-way (cancel) is simply not taken: nothing was
                // received yet that could be lost.
                let (r, v) = self.scrape().await?;
                if let Some(e) = self.event(r, v) {
                    self.pending.push_back(e);
                }
            }
        })
    }
    fn take_pending(&mut self) -> Vec<SourceEvent> {
        self.pending.drain(..).collect()
    }
    fn stop(mut self: Box<Self>) -> BoxFuture<'static, Vec<SourceEvent>> {
        Box::pin(async move { self.pending.drain(..).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# HELP migwatt_power_watts Power, W.
# TYPE migwatt_power_watts gauge
migwatt_power_watts{host="src"} 44.4
migwatt_power_watts{host="dst",rack="a \"b\", c"} 120
migwatt_energy_joules_total{host="src"} 1234.5 1700000000000
node_hwmon_power_average_watt{chip="platform",sensor="power1"} NaN
up 1
"#;

    fn parse(s: &str) -> Result<Prometheus, PrometheusSpecError> {
        Prometheus::parse(s, &SourceOptions::default())
    }

    #[test]
    fn spellings_name_one_series_and_its_unit() {
        let p = parse("http://127.0.0.1:9100/metrics?metric=migwatt_power_watts&host=src").unwrap();
        assert_eq!(p.selector(), "migwatt_power_watts{host=\"src\"}");
        assert_eq!(p.url.path_and_query, "/metrics");
        assert_eq!(p.measures(), Measures::Power);
        let p = parse("http://h/metrics?metric=kepler_node_platform_joules_total").unwrap();
        assert_eq!(p.measures(), Measures::EnergyCounter);
        assert_eq!(
            SeriesUnit::of("scaphandre_host_energy_microjoules"),
            SeriesUnit::Counter(1e-6)
        );
        assert_eq!(
            SeriesUnit::of("scaphandre_host_power_microwatts"),
            SeriesUnit::Power(1e-6)
        );
        let p = parse("http://h/m?metric=a&rack=a%20b").unwrap();
        assert_eq!(p.labels, vec![("rack".to_string(), "a b".to_string())]);
        for (bad, why) in [
            ("http://h/metrics", "missing ?metric=NAME"),
            ("http://h/metrics?metric=9x", "not a Prometheus metric name"),
            ("http://h/metrics?metric=a&b", "expected NAME=VALUE"),
            ("http://u:p@h/metrics?metric=a", "credentials"),
            ("https://h/metrics?metric=a", "expected http://"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn exposition_lines_parse_with_escaped_labels() {
        let (n, l, v) = parse_line(r#"a_b{x="1",y="q\"z, }"} 2.5e1 123"#).unwrap();
        assert_eq!((n, v), ("a_b", 25.0));
        assert_eq!(l[1], ("y".to_string(), "q\"z, }".to_string()));
        assert!(parse_line("# TYPE a gauge").is_none());
        assert!(parse_line("a{x=\"1\"").is_none());
        assert!(parse_line("a{x=\"1\"} notanumber").is_none());
        assert!(parse_line("a NaN").unwrap().2.is_nan());
    }

    #[test]
    fn exactly_one_series_must_match() {
        let l = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(
            find_series(EXPOSITION, "migwatt_power_watts", &l("host", "src")),
            Ok(44.4)
        );
        assert_eq!(
            find_series(EXPOSITION, "migwatt_energy_joules_total", &[]),
            Ok(1234.5)
        );
        let e = find_series(EXPOSITION, "migwatt_power_watts", &[]).unwrap_err();
        assert!(
            e.contains("2 series match") && e.contains("add labels"),
            "{e}"
        );
        let e = find_series(EXPOSITION, "migwatt_power_watts", &l("host", "x")).unwrap_err();
        assert!(e.contains("none of the 2 series"), "{e}");
        let e = find_series(EXPOSITION, "nope", &[]).unwrap_err();
        assert!(e.contains("no series named nope"), "{e}");
    }

    #[test]
    fn counters_undo_resets_and_give_power_from_their_difference() {
        let src = parse("http://h/m?metric=x_joules_total").unwrap();
        let mut s = PrometheusSession {
            src,
            counter: None,
            last: None,
            ticker: None,
            pending: VecDeque::new(),
        };
        let at = |t_s: i64| Reading {
            utc_ns: 0,
            mono_ns: t_s * 1_000_000_000,
            fields: [None; FIELD_COUNT],
            energy_counter_j: None,
        };
        let got = |e: Option<SourceEvent>| match e {
            Some(SourceEvent::Reading(r)) => (r.energy_counter_j.unwrap(), r.power_w().unwrap()),
            e => panic!("{e:?}"),
        };
        assert!(s.event(at(0), 1000.0).is_none());
        assert_eq!(got(s.event(at(1), 1100.0)), (1100.0, 100.0));
        // Reset: the exporter restarted and counted 30 J since.
        assert_eq!(got(s.event(at(2), 30.0)), (1130.0, 30.0));
        assert!(matches!(
            s.event(at(3), f64::NAN),
            Some(SourceEvent::Rejected { .. })
        ));
        assert_eq!(got(s.event(at(4), 130.0)), (1230.0, 50.0));
    }
}
