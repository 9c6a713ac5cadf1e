//! Chassis power from a BMC's Redfish service, polled every interval, as a [`PowerSource`].
//!
//! Spelled `redfish+http://BMC[:PORT]/redfish/v1/Chassis/ID[?credentials=FILE][&auth=session]`.
//! On each connection the chassis resource is read once (its manufacturer, model and serial
//! number are the identity) and tells where power is: the newer `EnvironmentMetrics` resource
//! (`PowerWatts.Reading`) where the chassis links one, else the `Power` resource
//! (`PowerControl[0].PowerConsumedWatts`, the chassis total). `PowerSubsystem` has no total
//! and is not read.
//!
//! Credentials never appear on the command line, in logs, metrics or datasets: they come from
//! `credentials=FILE` (one line `USER:PASSWORD`; the path is not a secret) or from the
//! environment (`MIGWATT_REDFISH_USERNAME`, `MIGWATT_REDFISH_PASSWORD`), and go out as HTTP
//! basic authentication, or with `auth=session` as a Redfish session: one login per connection
//! (`POST /redfish/v1/SessionService/Sessions` with `UserName` and `Password`), its
//! `X-Auth-Token` on every request, a new login when a request gets 401 (the session expired
//! or the BMC restarted), and a logout (`DELETE` of the session) when capture stops. Without
//! credentials, requests are anonymous (`auth=session` needs them).
//!
//! Only plain `http://` in this build: `https://` needs a TLS library (rustls), which left the
//! build with hyper; until it is back, a `redfish+https` spelling is refused with that reason
//! rather than sent in clear.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use datasets::samples::FIELD_COUNT;

use super::http::{self, HttpUrl};
use super::{
    BoxFuture, Identity, Measures, PowerSource, Reading, Session, SourceError, SourceEvent,
    SourceOptions,
};

/// Environment variable holding the Redfish user name.
pub const ENV_USERNAME: &str = "MIGWATT_REDFISH_USERNAME";
/// Environment variable holding the Redfish password.
pub const ENV_PASSWORD: &str = "MIGWATT_REDFISH_PASSWORD";
/// Largest Redfish resource accepted.
const MAX_BYTES: usize = 4 << 20;
/// Labels of the rejections a poll may report.
pub const REJECT_KINDS: [&str; 1] = ["no reading"];
/// The Redfish session collection (login).
const SESSIONS_PATH: &str = "/redfish/v1/SessionService/Sessions";

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// HTTP basic authentication on every request (`auth=basic`, the default).
    Basic,
    /// A Redfish session and its `X-Auth-Token` (`auth=session`).
    Session,
}

/// A logged-in session; `Debug` never shows the token.
struct SessionToken {
    token: String,
    /// The session resource to DELETE on logout, when the service said where it is.
    path: Option<String>,
}

/// The path of a `Location` header (absolute URL or path).
fn path_of(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map_or_else(|| "/".to_string(), |i| rest[i..].to_string()),
        None => location.to_string(),
    }
}

/// A user and password; `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <hidden> }}",
            self.user
        )
    }
}

impl Credentials {
    /// The user name.
    pub(crate) fn user(&self) -> &str {
        &self.user
    }
    /// The password (to hand to the BMC only; never to format).
    pub(crate) fn password(&self) -> &str {
        &self.password
    }
    /// The `Authorization` header value for basic authentication.
    fn basic(&self) -> String {
        format!(
            "Basic {}",
            base64(format!("{}:{}", self.user, self.password).as_bytes())
        )
    }
}

/// Standard base64 with padding (RFC 4648), for one header.
fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Where credentials come from (resolved when a connection opens, so a rotated file is
/// picked up on reconnect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `credentials=FILE`.
    File(PathBuf),
    /// The environment, if set.
    Environment,
}

impl CredentialSource {
    fn resolve(&self) -> Result<Option<Credentials>, SourceError> {
        self.resolve_from(ENV_USERNAME, ENV_PASSWORD)
    }

    /// The credentials from the file, or from the environment variables `user_var` and
    /// `password_var` (other sources keep their own variables).
    pub(crate) fn resolve_from(
        &self,
        user_var: &str,
        password_var: &str,
    ) -> Result<Option<Credentials>, SourceError> {
        match self {
            CredentialSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SourceError::Open {
                    location: path.display().to_string(),
                    source: Box::new(source),
                })?;
                let line = text.lines().next().unwrap_or_default();
                // Never echo the line: it holds the password.
                let (user, password) = line.split_once(':').ok_or_else(|| {
                    SourceError::NoReply(format!(
                        "{}: expected one line USER:PASSWORD",
                        path.display()
                    ))
                })?;
                Ok(Some(Credentials {
                    user: user.to_string(),
                    password: password.to_string(),
                }))
            }
            CredentialSource::Environment => {
                match (std::env::var(user_var), std::env::var(password_var)) {
                    (Ok(user), Ok(password)) => Ok(Some(Credentials { user, password })),
                    (Err(_), Err(_)) => Ok(None),
                    _ => Err(SourceError::NoReply(format!(
                        "{user_var} and {password_var} must be set together"
                    ))),
                }
            }
        }
    }
}

/// A chassis of a Redfish service.
#[derive(Debug, Clone)]
pub struct Redfish {
    url: HttpUrl,
    credentials: CredentialSource,
    auth: Auth,
    interval: Duration,
    timeout: Duration,
}

impl Redfish {
    /// Parse the target after `redfish+` (`http://BMC/redfish/v1/Chassis/ID[?credentials=F]`).
    pub fn parse(target: &str, opts: &SourceOptions) -> Result<Self, String> {
        if target.starts_with("https://") {
            return Err(
                "redfish+https is not available in this build: TLS needs a TLS library \
                 (rustls), which is not in the build; use redfish+http to a BMC or proxy on a \
                 trusted network"
                    .into(),
            );
        }
        let (base, query) = target.split_once('?').unwrap_or((target, ""));
        let mut credentials = CredentialSource::Environment;
        let mut auth = Auth::Basic;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("credentials", f)) if !f.is_empty() => {
                    credentials = CredentialSource::File(PathBuf::from(f))
                }
                Some(("auth", "basic")) => auth = Auth::Basic,
                Some(("auth", "session")) => auth = Auth::Session,
                _ => {
                    // The key only: a value given here may be a password.
                    let key = pair.split('=').next().unwrap_or_default();
                    return Err(format!(
                        "{key:?}: the options are credentials=FILE and auth=basic|session \
                         (user and password never go in the spelling)"
                    ));
                }
            }
        }
        let url = HttpUrl::parse(base).map_err(|e| e.to_string())?;
        if !url.path_and_query.starts_with("/redfish/v1/") {
            return Err(format!(
                "{base}: expected a chassis, e.g. http://BMC/redfish/v1/Chassis/1"
            ));
        }
        Ok(Redfish {
            url,
            credentials,
            auth,
            interval: Duration::from_secs(u64::from(opts.interval_s.max(1))),
            timeout: opts.reply_timeout,
        })
    }
    /// The same chassis polled every `interval`.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

/// Where a chassis keeps its power reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerPath {
    /// `EnvironmentMetrics` resource at this path: `PowerWatts.Reading`.
    EnvironmentMetrics(String),
    /// `Power` resource at this path: `PowerControl[0].PowerConsumedWatts`.
    Power(String),
}

/// The power reading of a resource fetched from `path`, W, or why there is none.
pub fn power_of(path: &PowerPath, doc: &serde_json::Value) -> Result<Option<f64>, String> {
    let v = match path {
        PowerPath::EnvironmentMetrics(_) => doc.pointer("/PowerWatts/Reading"),
        PowerPath::Power(_) => doc.pointer("/PowerControl/0/PowerConsumedWatts"),
    };
    match v {
        // Redfish says null when the BMC has no reading (yet).
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => match n.as_f64() {
            Some(w) if w.is_finite() && w >= 0.0 => Ok(Some(w)),
            _ => Err(format!("power {n} is not a number of W >= 0")),
        },
        Some(other) => Err(format!("power {other} is not a number")),
    }
}

/// Where the chassis resource `doc` says power is.
pub fn power_path(doc: &serde_json::Value) -> Option<PowerPath> {
    let link = |name: &str| {
        doc.pointer(&format!("/{name}/@odata.id"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    link("EnvironmentMetrics")
        .map(PowerPath::EnvironmentMetrics)
        .or_else(|| link("Power").map(PowerPath::Power))
}

impl PowerSource for Redfish {
    fn kind(&self) -> &'static str {
        super::spec::REDFISH_KIND
    }
    fn location(&self) -> String {
        format!("http://{}{}", self.url.authority(), self.url.path_and_query)
    }
    fn measures(&self) -> Measures {
        Measures::Power
    }
    fn native_interval(&self) -> Duration {
        self.interval
    }
    fn reject_kinds(&self) -> &'static [&'static str] {
        &REJECT_KINDS
    }
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Session>, SourceError>> {
        Box::pin(async move {
            let creds = self.credentials.resolve()?;
            let mut s = RedfishSession {
                src: self.clone(),
                auth: None,
                creds: None,
                token: None,
                power: None,
                ticker: None,
                pending: VecDeque::new(),
            };
            match self.auth {
                Auth::Basic => s.auth = creds.map(|c| c.basic()),
                Auth::Session => {
                    s.creds = Some(creds.ok_or_else(|| {
                        SourceError::NoReply(format!(
                            "auth=session needs credentials: credentials=FILE or \
                             {ENV_USERNAME} and {ENV_PASSWORD}"
                        ))
                    })?);
                    s.login().await?;
                }
            }
            Ok(Box::new(s) as Box<dyn Session>)
        })
    }
}

struct RedfishSession {
    src: Redfish,
    /// Credentials kept for logging in again (auth=session).
    creds: Option<Credentials>,
    /// The session logged in (auth=session; kept out of every message).
    token: Option<SessionToken>,
    /// `Authorization` header value (kept out of every message).
    auth: Option<String>,
    power: Option<PowerPath>,
    ticker: Option<tokio::time::Interval>,
    pending: VecDeque<SourceEvent>,
}

impl RedfishSession {
    fn url(&self, path: &str) -> HttpUrl {
        HttpUrl {
            path_and_query: path.to_string(),
            ..self.src.url.clone()
        }
    }

    fn credentials_from(&self) -> String {
        match &self.src.credentials {
            CredentialSource::File(f) => f.display().to_string(),
            CredentialSource::Environment => format!("{ENV_USERNAME}/{ENV_PASSWORD}"),
        }
    }

    /// Log in (auth=session): a new session and its token.
    async fn login(&mut self) -> Result<(), SourceError> {
        let c = self.creds.as_ref().ok_or(SourceError::Closed)?;
        let body = serde_json::json!({"UserName": c.user(), "Password": c.password()}).to_string();
        let url = self.url(SESSIONS_PATH);
        let headers = [
            ("Accept", "application/json"),
            ("Content-Type", "application/json"),
        ];
        let resp = http::request(
            "POST",
            &url,
            &headers,
            Some(body.as_bytes()),
            self.src.timeout,
            MAX_BYTES,
        )
        .await
        .map_err(|e| SourceError::Open {
            location: format!("http://{}{SESSIONS_PATH}", url.authority()),
            source: Box::new(e),
        })?;
        match resp.status {
            200 | 201 => {}
            401 | 403 => {
                return Err(SourceError::NoReply(format!(
                    "{SESSIONS_PATH}: HTTP {} (login refused; credentials from {})",
                    resp.status,
                    self.credentials_from()
                )))
            }
            s => {
                return Err(SourceError::NoReply(format!(
                    "{SESSIONS_PATH}: HTTP status {s} to the login (does the service offer \
                     sessions? auth=basic needs none)"
                )))
            }
        }
        let token = resp.header("x-auth-token").ok_or_else(|| {
            SourceError::NoReply(format!(
                "{SESSIONS_PATH}: the login answered without an X-Auth-Token header"
            ))
        })?;
        let path = resp.header("location").map(path_of).or_else(|| {
            serde_json::from_slice::<serde_json::Value>(&resp.body)
                .ok()?
                .get("@odata.id")?
                .as_str()
                .map(str::to_string)
        });
        self.token = Some(SessionToken {
            token: token.to_string(),
            path,
        });
        Ok(())
    }

    /// Log out (best effort, bounded by the reply timeout): the BMC's sessions are few.
    async fn logout(&mut self) {
        if let Some(SessionToken {
            token,
            path: Some(path),
        }) = self.token.take()
        {
            let _ = http::request(
                "DELETE",
                &self.url(&path),
                &[("X-Auth-Token", token.as_str())],
                None,
                self.src.timeout,
                MAX_BYTES,
            )
            .await;
        }
    }

    async fn get_json(&mut self, path: &str) -> Result<serde_json::Value, SourceError> {
        let url = self.url(path);
        let mut relogged = false;
        let resp = loop {
            let mut headers = vec![("Accept", "application/json")];
            if let Some(a) = &self.auth {
                headers.push(("Authorization", a.as_str()));
            }
            if let Some(t) = &self.token {
                headers.push(("X-Auth-Token", t.token.as_str()));
            }
            let resp = http::get(&url, &headers, self.src.timeout, MAX_BYTES)
                .await
                .map_err(|e| SourceError::Open {
                    location: format!("http://{}{path}", url.authority()),
                    source: Box::new(e),
                })?;
            // The session expired or the BMC forgot it: log in again, once.
            if resp.status == 401 && self.token.is_some() && !relogged {
                relogged = true;
                self.token = None;
                self.login().await?;
                continue;
            }
            break resp;
        };
        match resp.status {
            200 => {}
            401 | 403 => {
                return Err(SourceError::NoReply(format!(
                    "{path}: HTTP {} (authentication refused; credentials from {})",
                    resp.status,
                    self.credentials_from()
                )))
            }
            s => return Err(SourceError::NoReply(format!("{path}: HTTP status {s}"))),
        }
        serde_json::from_slice(&resp.body)
            .map_err(|e| SourceError::NoReply(format!("{path}: not a JSON resource ({e})")))
    }

    async fn poll(&mut self) -> Result<SourceEvent, SourceError> {
        let path = self.power.clone().ok_or(SourceError::Closed)?;
        let p = match &path {
            PowerPath::EnvironmentMetrics(p) | PowerPath::Power(p) => p.clone(),
        };
        let doc = self.get_json(&p).await?;
        let r = Reading::stamped_now([None; FIELD_COUNT]);
        match power_of(&path, &doc) {
            Ok(Some(w)) => {
                let mut r = r;
                r.fields[0] = Some(w);
                Ok(SourceEvent::Reading(r))
            }
            Ok(None) => Ok(SourceEvent::Rejected {
                kind: REJECT_KINDS[0],
            }),
            Err(e) => Err(SourceError::NoReply(format!("{p}: {e}"))),
        }
    }
}

impl Session for RedfishSession {
    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, SourceError>> {
        Box::pin(async move {
            let chassis_path = self.src.url.path_and_query.clone();
            let doc = self.get_json(&chassis_path).await?;
            let power = power_path(&doc).ok_or_else(|| {
                SourceError::NoReply(format!(
                    "{chassis_path}: the chassis links neither EnvironmentMetrics nor Power: is \
                     this a Chassis resource?"
                ))
            })?;
            self.power = Some(power.clone());
            let s = |k: &str| doc.get(k).and_then(|v| v.as_str()).unwrap_or("");
            let (maker, model, serial) = (s("Manufacturer"), s("Model"), s("SerialNumber"));
            let id = [maker, model, serial, s("Id")]
                .iter()
                .filter(|p| !p.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join("-");
            let from = match &power {
                PowerPath::EnvironmentMetrics(p) => format!("{p} PowerWatts"),
                PowerPath::Power(p) => format!("{p} PowerControl[0].PowerConsumedWatts"),
            };
            Ok(Identity {
                meter_id: format!("redfish-{id}"),
                description: format!(
                    "Redfish chassis {maker} {model} (serial {serial}), power from {from}"
                ),
                firmware: None,
                baud: None,
            })
        })
    }
    fn start(&mut self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(async move {
            // The first reading at once, then one per interval.
            let e = self.poll().await?;
            self.pending.push_back(e);
            self.ticker = Some(super::poll_ticker(self.src.interval));
            Ok(())
        })
    }
    fn next_event(&mut self) -> BoxFuture<'_, Result<SourceEvent, SourceError>> {
        Box::pin(async move {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            let t = self.ticker.as_mut().ok_or(SourceError::Closed)?;
            t.tick().await;
            self.poll().await
        })
    }
    fn take_pending(&mut self) -> Vec<SourceEvent> {
        self.pending.drain(..).collect()
    }
    fn stop(mut self: Box<Self>) -> BoxFuture<'static, Vec<SourceEvent>> {
        Box::pin(async move {
            let events = self.pending.drain(..).collect();
            self.logout().await;
            events
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn power_comes_from_environment_metrics_else_power_control() {
        let old = json!({"Power": {"@odata.id": "/redfish/v1/Chassis/1/Power"}});
        let new = json!({
            "Power": {"@odata.id": "/redfish/v1/Chassis/2/Power"},
            "EnvironmentMetrics": {"@odata.id": "/redfish/v1/Chassis/2/EnvironmentMetrics"}
        });
        let p_old = power_path(&old).unwrap();
        let p_new = power_path(&new).unwrap();
        assert_eq!(
            p_old,
            PowerPath::Power("/redfish/v1/Chassis/1/Power".into())
        );
        assert!(matches!(p_new, PowerPath::EnvironmentMetrics(_)));
        assert_eq!(power_path(&json!({"Name": "x"})), None);
        let pc = json!({"PowerControl": [{"PowerConsumedWatts": 344.5}]});
        assert_eq!(power_of(&p_old, &pc), Ok(Some(344.5)));
        let em = json!({"PowerWatts": {"Reading": 1012}});
        assert_eq!(power_of(&p_new, &em), Ok(Some(1012.0)));
        assert_eq!(
            power_of(&p_new, &json!({"PowerWatts": {"Reading": null}})),
            Ok(None)
        );
        assert!(power_of(
            &p_old,
            &json!({"PowerControl": [{"PowerConsumedWatts": "x"}]})
        )
        .unwrap_err()
        .contains("not a number"));
        assert!(power_of(
            &p_old,
            &json!({"PowerControl": [{"PowerConsumedWatts": -3}]})
        )
        .is_err());
    }

    #[test]
    fn spellings_keep_credentials_out() {
        let o = SourceOptions::default();
        let r = Redfish::parse("http://bmc/redfish/v1/Chassis/1?credentials=/etc/bmc", &o).unwrap();
        assert_eq!(r.credentials, CredentialSource::File("/etc/bmc".into()));
        assert_eq!(r.location(), "http://bmc:80/redfish/v1/Chassis/1");
        for (bad, why) in [
            (
                "http://root:calvin@bmc/redfish/v1/Chassis/1",
                "credentials in the URL",
            ),
            (
                "http://bmc/redfish/v1/Chassis/1?password=x",
                "options are credentials=FILE and auth=basic|session",
            ),
            ("https://bmc/redfish/v1/Chassis/1", "TLS"),
            ("http://bmc/Chassis/1", "expected a chassis"),
        ] {
            let e = Redfish::parse(bad, &o).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("calvin"), "{e}");
        }
        let c = Credentials {
            user: "root".into(),
            password: "calvin".into(),
        };
        assert!(!format!("{c:?}").contains("calvin"));
    }

    /// What the in-test Redfish service saw.
    #[derive(Default)]
    struct Seen {
        logins: u32,
        valid: Option<String>,
        gets: u32,
        deleted: Vec<String>,
        basic_sent: bool,
    }

    /// One request of the in-test service: (method, path, headers, body).
    async fn read_request(
        s: &mut tokio::net::TcpStream,
    ) -> (String, String, Vec<(String, String)>, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                let mut lines = head.lines();
                let mut first = lines.next().unwrap().split(' ');
                let (m, p) = (first.next().unwrap(), first.next().unwrap());
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(": "))
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                while raw.len() < end + 4 + len {
                    let n = s.read(&mut buf).await.unwrap();
                    raw.extend_from_slice(&buf[..n]);
                }
                let body = raw[end + 4..end + 4 + len].to_vec();
                return (m.to_string(), p.to_string(), headers, body);
            }
        }
    }

    /// A Redfish service with sessions: user root, password calvin; the token expires after
    /// the third GET (the next request gets 401).
    async fn serve(
        listener: tokio::net::TcpListener,
        seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    ) {
        use tokio::io::AsyncWriteExt;
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let (method, path, headers, body) = read_request(&mut s).await;
            let h = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let (status, extra, body) = {
                let mut st = seen.lock().unwrap();
                st.basic_sent |= h("authorization").is_some();
                let authed = h("x-auth-token").is_some() && h("x-auth-token") == st.valid;
                match (method.as_str(), path.as_str()) {
                    ("POST", SESSIONS_PATH) => {
                        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        if v["UserName"] == "root" && v["Password"] == "calvin" {
                            st.logins += 1;
                            let n = st.logins;
                            st.valid = Some(format!("tok{n}"));
                            (
                                "201 Created",
                                format!(
                                    "X-Auth-Token: tok{n}\r\nLocation: http://bmc{SESSIONS_PATH}/{n}\r\n"
                                ),
                                format!("{{\"@odata.id\": \"{SESSIONS_PATH}/{n}\"}}"),
                            )
                        } else {
                            ("401 Unauthorized", String::new(), "{}".into())
                        }
                    }
                    _ if !authed => ("401 Unauthorized", String::new(), "{}".into()),
                    ("DELETE", p) => {
                        st.deleted.push(p.to_string());
                        st.valid = None;
                        ("204 No Content", String::new(), String::new())
                    }
                    ("GET", "/redfish/v1/Chassis/1") => {
                        st.gets += 1;
                        (
                            "200 OK",
                            String::new(),
                            r#"{"Id": "1", "Manufacturer": "Contoso", "Power": {"@odata.id": "/redfish/v1/Chassis/1/Power"}}"#.into(),
                        )
                    }
                    ("GET", "/redfish/v1/Chassis/1/Power") => {
                        st.gets += 1;
                        let w = 100 + st.gets;
                        if st.gets == 3 {
                            st.valid = None;
                        }
                        (
                            "200 OK",
                            String::new(),
                            format!(r#"{{"PowerControl": [{{"PowerConsumedWatts": {w}}}]}}"#),
                        )
                    }
                    _ => ("404 Not Found", String::new(), "{}".into()),
                }
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    }

    #[tokio::test]
    async fn sessions_log_in_once_again_after_a_401_and_log_out_on_stop() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
        tokio::spawn(serve(listener, seen.clone()));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bmc");
        std::fs::write(&f, "root:calvin\n").unwrap();
        let o = SourceOptions::default();
        let url = format!(
            "http://127.0.0.1:{port}/redfish/v1/Chassis/1?credentials={}&auth=session",
            f.display()
        );
        let src = Redfish::parse(&url, &o)
            .unwrap()
            .with_interval(Duration::from_millis(10));
        assert_eq!(src.auth, Auth::Session);
        let mut session = src.connect().await.unwrap();
        session.identify().await.unwrap();
        session.start().await.unwrap();
        let mut watts = Vec::new();
        for _ in 0..4 {
            match session.next_event().await.unwrap() {
                SourceEvent::Reading(r) => watts.push(r.power_w().unwrap()),
                e => panic!("{e:?}"),
            }
        }
        session.stop().await;
        {
            let st = seen.lock().unwrap();
            // GET 1 is the chassis; the token expired after GET 3, so the third reading needed
            // a second login; the readings lost nothing.
            assert_eq!(watts, [102.0, 103.0, 104.0, 105.0]);
            assert_eq!(st.logins, 2);
            assert_eq!(st.deleted, [format!("{SESSIONS_PATH}/2")]);
            assert!(!st.basic_sent, "basic authentication sent with a session");
        }

        // A refused login is a clear error without the password.
        std::fs::write(&f, "root:wrong-pw\n").unwrap();
        let e = match Redfish::parse(&url, &o).unwrap().connect().await {
            Ok(_) => panic!("logged in with a wrong password"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("login refused") && !e.contains("wrong-pw"),
            "{e}"
        );
        assert_eq!(path_of("https://bmc:443/redfish/v1/S/1"), "/redfish/v1/S/1");
        assert_eq!(path_of("/redfish/v1/S/2"), "/redfish/v1/S/2");
    }

    #[test]
    fn credential_files_are_read_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bmc");
        std::fs::write(&f, "root:calvin:with:colons\n").unwrap();
        let c = CredentialSource::File(f.clone())
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("root", "calvin:with:colons")
        );
        std::fs::write(&f, "calvin\n").unwrap();
        let e = CredentialSource::File(f).resolve().unwrap_err().to_string();
        assert!(e.contains("USER:PASSWORD") && !e.contains("calvin"), "{e}");
    }
}
