//! Host power from a BMC over IPMI 2.0 (RMCP+, "lanplus"), polled every interval, as a
//! [`PowerSource`].
//!
//! Spelled `ipmi://BMC[:PORT][?credentials=FILE][&sensor=NAME][&cipher=N]` (port 623 by
//! default). Power is DCMI "Get Power Reading" (its instantaneous reading) where the BMC
//! offers it, else one SDR sensor in Watts: the one named by `sensor=NAME` (spaces as `%20`
//! or as they are, quoted for the shell), or the first full sensor in Watts whose name says
//! consumption, total or system, else the first in Watts. `cipher=N` picks the RMCP+ cipher
//! suite (ipmitool `-C`; by default ipmitool asks the BMC for its suites).
//!
//! The BMC is reached through the `ipmitool` command (Debian package `ipmitool`; another
//! program with ipmitool's options through `MIGWATT_IPMITOOL`), not a crate: RMCP+ is a
//! session protocol with its own key exchange (RAKP), integrity and confidentiality
//! algorithms, and the Rust IPMI crates either lack RMCP+ or DCMI or are unmaintained;
//! ipmitool is packaged everywhere and is what operators already trust against their BMCs.
//! Identifying a BMC runs one ipmitool per question (`mc info`, `mc guid`, DCMI, `sdr dump`,
//! `sdr list`); readings then go through one `ipmitool shell` per connection, so that
//! ipmitool's start-up (about 30 ms of CPU, mostly reading the IANA registry) and the session
//! setup are not paid every second (BENCHMARKS.md). Every command is bounded in time, and
//! ipmitool is killed with the connection.
//!
//! Credentials never appear on the command line, in logs, metrics or datasets: they come from
//! `credentials=FILE` (one line `USER:PASSWORD`) or the environment (`MIGWATT_IPMI_USERNAME`,
//! `MIGWATT_IPMI_PASSWORD`); without either the session is anonymous (null user). The
//! password reaches ipmitool through its `-E` option (the `IPMI_PASSWORD` variable of that
//! one child), never `-P`: a command line is readable by every user in `/proc/PID/cmdline`,
//! a process' environment only by its owner and root. Sessions ask for the USER privilege
//! level (`-L USER`, enough to read power), so a read-only BMC account works.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use datasets::samples::FIELD_COUNT;

use super::redfish::{CredentialSource, Credentials};
use super::{
    BoxFuture, Identity, Measures, PowerSource, Reading, Session, SourceError, SourceEvent,
    SourceOptions,
};

/// Environment variable holding the IPMI user name.
pub const ENV_USERNAME: &str = "MIGWATT_IPMI_USERNAME";
/// Environment variable holding the IPMI password.
pub const ENV_PASSWORD: &str = "MIGWATT_IPMI_PASSWORD";
/// Environment variable naming the ipmitool program (default `ipmitool` on the `PATH`).
pub const ENV_IPMITOOL: &str = "MIGWATT_IPMITOOL";
/// The RMCP+ port.
pub const DEFAULT_PORT: u16 = 623;
/// Labels of the rejections a poll may report.
pub const REJECT_KINDS: [&str; 1] = ["no reading"];
/// Time allowed for one command while identifying (reading a large SDR repository over a
/// slow BMC takes seconds).
const IDENTIFY_LIMIT: Duration = Duration::from_secs(30);

/// A BMC reached over RMCP+.
#[derive(Debug, Clone)]
pub struct Ipmi {
    host: String,
    port: u16,
    credentials: CredentialSource,
    sensor: Option<String>,
    cipher: Option<u8>,
    program: PathBuf,
    interval: Duration,
    timeout: Duration,
}

impl Ipmi {
    /// Parse `ipmi://BMC[:PORT][?credentials=FILE][&sensor=NAME][&cipher=N]`.
    pub fn parse(spelling: &str, opts: &SourceOptions) -> Result<Self, String> {
        let rest = spelling.strip_prefix("ipmi://").ok_or_else(|| {
            format!("{spelling}: expected ipmi://BMC[:PORT][?credentials=FILE][&sensor=NAME]")
        })?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err(
                "user and password never go in the spelling: use credentials=FILE or \
                        MIGWATT_IPMI_USERNAME/MIGWATT_IPMI_PASSWORD"
                    .into(),
            );
        }
        let (host, port) = split_host_port(authority)?;
        let mut ipmi = Ipmi {
            host,
            port,
            credentials: CredentialSource::Environment,
            sensor: None,
            cipher: None,
            program: std::env::var_os(ENV_IPMITOOL)
                .filter(|p| !p.is_empty())
                .map_or_else(|| PathBuf::from("ipmitool"), PathBuf::from),
            interval: Duration::from_secs(u64::from(opts.interval_s.max(1))),
            timeout: opts.reply_timeout,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("credentials", f)) if !f.is_empty() => {
                    ipmi.credentials = CredentialSource::File(PathBuf::from(f))
                }
                Some(("sensor", n)) if !n.is_empty() => {
                    let name = percent_decode(n).ok_or_else(|| {
                        format!("sensor={n}: a % must start two hex digits (%20 for a space)")
                    })?;
                    // The name is quoted on ipmitool's shell line.
                    if name.contains(['"', '\n']) {
                        return Err(format!(
                            "sensor={n}: a sensor name with a double quote or a line break \
                             cannot be read"
                        ));
                    }
                    ipmi.sensor = Some(name);
                }
                Some(("cipher", n)) => {
                    ipmi.cipher = Some(n.parse().ok().filter(|c| *c <= 17).ok_or_else(|| {
                        format!("cipher={n}: expected an RMCP+ cipher suite number 0 to 17")
                    })?)
                }
                _ => {
                    // The key only: a value given here may be a password.
                    let key = pair.split('=').next().unwrap_or_default();
                    return Err(format!(
                        "{key:?}: the options are credentials=FILE, sensor=NAME and cipher=N \
                         (user and password never go in the spelling)"
                    ));
                }
            }
        }
        Ok(ipmi)
    }
    /// The same BMC polled every `interval`.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
    /// The same BMC reached through `program` instead of `ipmitool`.
    pub fn with_program(mut self, program: &Path) -> Self {
        self.program = program.to_path_buf();
        self
    }
    fn credentials_from(&self) -> String {
        match &self.credentials {
            CredentialSource::File(f) => f.display().to_string(),
            CredentialSource::Environment => format!("{ENV_USERNAME}/{ENV_PASSWORD}"),
        }
    }
}

/// `HOST[:PORT]` or `[IPV6][:PORT]`.
fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{authority}: missing ] after an IPv6 address"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(format!(
            "{authority:?}: expected a BMC host name or address"
        ));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{p:?}: expected a UDP port 1 to 65535"))?,
    };
    Ok((host.to_string(), port))
}

/// `%XX` escapes decoded; None for a stray `%` or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where power comes from on this BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// DCMI "Get Power Reading", the instantaneous reading.
    Dcmi,
    /// A full SDR sensor in Watts.
    Sensor(String),
}

/// What was wrong with ipmitool's output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// A line that does not read as expected.
    #[error("unexpected line {line:?}: {why}")]
    Line {
        /// The line.
        line: String,
        /// What was expected of it.
        why: String,
    },
    /// A line that should be there is not.
    #[error("no {0} line in the output")]
    Missing(&'static str),
}

fn line_error(line: &str, why: impl Into<String>) -> OutputError {
    OutputError::Line {
        line: line.trim_end().to_string(),
        why: why.into(),
    }
}

/// A power value as ipmitool prints it (`220`, `246.000`), W.
fn parse_power(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(w) if w.is_finite() && w >= 0.0 => Ok(w),
        Ok(w) => Err(format!("power {w} is not a number of W >= 0")),
        Err(_) => Err(format!("{:?} is not a number", v.trim())),
    }
}

/// The instantaneous power of `ipmitool dcmi power reading`, W; None when the BMC says its
/// power measurement is not active (DCMI: the readings are then not valid).
pub fn parse_dcmi(text: &str) -> Result<Option<f64>, OutputError> {
    let (mut watts, mut active) = (None, None);
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Instantaneous power reading:") {
            let v = v.trim();
            let n = v
                .strip_suffix("Watts")
                .ok_or_else(|| line_error(line, "expected N Watts"))?;
            watts = Some(parse_power(n).map_err(|why| line_error(line, why))?);
        } else if let Some(v) = t.strip_prefix("Power reading state is:") {
            active = Some(match v.trim() {
                "activated" => true,
                "deactivated" => false,
                _ => return Err(line_error(line, "expected activated or deactivated")),
            });
        }
    }
    let w = watts.ok_or(OutputError::Missing("\"Instantaneous power reading:\""))?;
    Ok((active != Some(false)).then_some(w))
}

/// One full sensor of `ipmitool -c sdr list full`.
#[derive(Debug, Clone, PartialEq)]
pub struct SdrSensor {
    /// Sensor ID string.
    pub name: String,
    /// Reading, None when it has none (`na`, not scanning).
    pub value: Option<f64>,
    /// Unit as ipmitool names it (`Watts`, `degrees C`).
    pub unit: String,
}

/// The sensors of `ipmitool -c sdr list full` (lines `NAME,VALUE,UNIT,STATUS`).
pub fn parse_sdr_list(text: &str) -> Result<Vec<SdrSensor>, OutputError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        // From the right: a sensor name may hold a comma, the other fields do not.
        let mut f = line.rsplitn(4, ',');
        let (_status, unit, value, name) = match (f.next(), f.next(), f.next(), f.next()) {
            (Some(s), Some(u), Some(v), Some(n)) => (s, u, v, n),
            _ => return Err(line_error(line, "expected NAME,VALUE,UNIT,STATUS")),
        };
        out.push(SdrSensor {
            name: name.trim().to_string(),
            // Another sensor's odd value is no reason to refuse the list: only the chosen
            // sensor's readings count, and those are checked one by one.
            value: parse_power(value).ok(),
            unit: unit.trim().to_string(),
        });
    }
    Ok(out)
}

/// The sensor to read: `wanted` if it is in Watts, else the first in Watts named like a
/// total (consumption, total, system), else the first in Watts.
pub fn choose_sensor(sensors: &[SdrSensor], wanted: Option<&str>) -> Result<String, String> {
    let mut watts: Vec<&SdrSensor> = sensors.iter().filter(|s| s.unit == "Watts").collect();
    let names = || {
        if watts.is_empty() {
            "none".to_string()
        } else {
            watts
                .iter()
                .map(|s| format!("{:?}", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if let Some(w) = wanted {
        return match sensors.iter().find(|s| s.name == w) {
            Some(s) if s.unit == "Watts" => Ok(s.name.clone()),
            Some(s) => Err(format!(
                "sensor {w:?} is in {:?}, not Watts (sensors in Watts: {})",
                s.unit,
                names()
            )),
            None => Err(format!(
                "no sensor {w:?} in the SDR repository (sensors in Watts: {})",
                names()
            )),
        };
    }
    // A name is quoted on ipmitool's shell line: one with a double quote cannot be read.
    watts.retain(|s| !s.name.contains('"'));
    let total = watts.iter().find(|s| {
        let n = s.name.to_ascii_lowercase();
        ["consumption", "total", "system"]
            .iter()
            .any(|k| n.contains(k))
    });
    total
        .or(watts.first())
        .map(|s| s.name.clone())
        .ok_or_else(|| "no full SDR sensor in Watts".to_string())
}

/// The reading of `ipmitool -c sensor reading NAME` (one line `NAME,VALUE`), W; None when
/// the sensor has none (`na` or empty).
pub fn parse_sensor_reading(text: &str, name: &str) -> Result<Option<f64>, OutputError> {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or(OutputError::Missing("NAME,VALUE"))?;
    let (n, v) = line
        .rsplit_once(',')
        .ok_or_else(|| line_error(line, "expected NAME,VALUE"))?;
    if n.trim() != name {
        return Err(line_error(line, format!("expected sensor {name:?}")));
    }
    match v.trim() {
        "" | "na" => Ok(None),
        v => parse_power(v)
            .map(Some)
            .map_err(|why| line_error(line, why)),
    }
}

/// What `ipmitool mc info` says about the BMC.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct McInfo {
    /// IANA enterprise number of the manufacturer.
    pub manufacturer_id: String,
    /// Manufacturer's name as ipmitool knows it.
    pub manufacturer: String,
    /// Product ID (decimal).
    pub product_id: String,
    /// Firmware revision.
    pub firmware: String,
}

/// `KEY : VALUE` lines of ipmitool's reports.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Parse `ipmitool mc info`.
pub fn parse_mc_info(text: &str) -> Result<McInfo, OutputError> {
    let get = |k: &'static str| field(text, k).ok_or(OutputError::Missing(k));
    Ok(McInfo {
        manufacturer_id: get("Manufacturer ID")?.to_string(),
        manufacturer: field(text, "Manufacturer Name").unwrap_or("").to_string(),
        // `3842 (0x0f02)`: the decimal number.
        product_id: get("Product ID")?
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
        firmware: get("Firmware Revision")?.to_string(),
    })
}

/// The system GUID of `ipmitool mc guid`, if it gives one.
pub fn parse_guid(text: &str) -> Option<String> {
    field(text, "System GUID").map(str::to_string)
}

/// Why an ipmitool run failed, from what it printed on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The session could not be opened: the BMC refused the user, password or cipher suite.
    Refused,
    /// The session could not be opened: no answer.
    Unreachable,
    /// The session opened but the command failed (e.g. DCMI not supported).
    Command,
}

/// Classify a failed run by its stderr.
pub fn classify(stderr: &str) -> Failure {
    const REFUSED: [&str; 4] = [
        "RAKP 2 ",
        "unauthorized name",
        "invalid authentication algorithm",
        "Unable to read password",
    ];
    if REFUSED.iter().any(|m| stderr.contains(m)) {
        Failure::Refused
    } else if stderr.contains("Unable to establish")
        || stderr.contains("Get Auth Capabilities error")
        || stderr.contains("No response")
    {
        Failure::Unreachable
    } else {
        Failure::Command
    }
}

/// The lines of ipmitool's stderr worth repeating, one line, bounded.
fn stderr_summary(stderr: &str) -> String {
    const NOISE: [&str; 5] = [
        "Loading IANA PEN Registry",
        "HPM.x",
        "Get VSO Capabilities",
        "Discovered IPMB address",
        "Unable to Get Channel Cipher Suites",
    ];
    let s = stderr
        .lines()
        // `-v` puts "> " in front of some lines.
        .map(|l| l.trim().trim_start_matches("> "))
        .filter(|l| !l.is_empty() && !NOISE.iter().any(|n| l.contains(n)))
        .collect::<Vec<_>>()
        .join("; ");
    if s.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}...", &s[..cut])
    } else if s.is_empty() {
        "no message".into()
    } else {
        s
    }
}

/// What went wrong with one ipmitool command.
#[derive(Debug, thiserror::Error)]
pub enum IpmiError {
    /// ipmitool could not be started.
    #[error(
        "running {program} (install ipmitool, e.g. apt-get install ipmitool, or name it with \
         MIGWATT_IPMITOOL)"
    )]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The BMC did not answer.
    #[error("`{command}`: the BMC did not answer ({detail})")]
    Unreachable {
        /// The command, without host or credentials.
        command: String,
        /// What ipmitool said, or the time limit.
        detail: String,
    },
    /// The BMC refused the session.
    #[error("`{command}`: authentication refused ({detail}); credentials from {from}")]
    Refused {
        /// The command.
        command: String,
        /// What ipmitool said.
        detail: String,
        /// Where the credentials came from.
        from: String,
    },
    /// The command failed once the session was open.
    #[error("`{command}` failed: {detail}")]
    Failed {
        /// The command.
        command: String,
        /// What ipmitool said.
        detail: String,
    },
    /// The command's output does not read as expected (the cause says how).
    #[error("`{command}`")]
    Output {
        /// The command.
        command: String,
        /// What was wrong.
        source: OutputError,
    },
}

impl PowerSource for Ipmi {
    fn kind(&self) -> &'static str {
        super::spec::IPMI_KIND
    }
    fn location(&self) -> String {
        if self.host.contains(':') {
            format!("ipmi://[{}]:{}", self.host, self.port)
        } else {
            format!("ipmi://{}:{}", self.host, self.port)
        }
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
            let creds = self.credentials.resolve_from(ENV_USERNAME, ENV_PASSWORD)?;
            Ok(Box::new(IpmiSession {
                src: self.clone(),
                creds,
                method: None,
                cache: None,
                shell: None,
                ticker: None,
                pending: VecDeque::new(),
            }) as Box<dyn Session>)
        })
    }
}

struct IpmiSession {
    src: Ipmi,
    creds: Option<Credentials>,
    method: Option<Method>,
    /// Private folder holding the SDR repository read once per connection (`sdr dump`), so
    /// that each sensor reading does not fetch the whole repository again (`-S`).
    cache: Option<tempfile::TempDir>,
    /// The `ipmitool shell` that takes the readings of this connection.
    shell: Option<Shell>,
    ticker: Option<tokio::time::Interval>,
    pending: VecDeque<SourceEvent>,
}

/// One `ipmitool shell` kept for a connection: ipmitool's start-up (most of a run's CPU: it
/// reads the 4.7 MB IANA enterprise-number registry) and the RMCP+ session setup are paid once
/// per connection, not once per reading (BENCHMARKS.md). Each command is followed by `echo`
/// of a fresh marker, which tells where its output ends.
struct Shell {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// What ipmitool printed on stderr since the current command was sent.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    commands: u64,
}

/// A line of `ipmitool shell` output without the prompts in front of it.
fn strip_prompts(line: &str) -> &str {
    let mut l = line;
    while let Some(rest) = l.strip_prefix("ipmitool> ") {
        l = rest;
    }
    l
}

impl IpmiSession {
    fn cache_file(&self) -> Option<PathBuf> {
        self.cache.as_ref().map(|d| d.path().join("sdr.cache"))
    }

    /// ipmitool with the BMC's address, session options and credentials.
    fn base_command(&self) -> tokio::process::Command {
        let port = self.src.port.to_string();
        let mut c = tokio::process::Command::new(&self.src.program);
        c.args(["-I", "lanplus", "-H", &self.src.host, "-p", &port])
            // Each try waits 1 s and is retried once: an unanswering BMC fails in about 2 s,
            // within capture's stall limit.
            .args(["-N", "1", "-R", "1", "-L", "USER"]);
        if let Some(cs) = self.src.cipher {
            c.args(["-C", &cs.to_string()]);
        }
        match &self.creds {
            // -E: the password in this child's environment, not on its command line (see the
            // module comment).
            Some(cr) => {
                c.args(["-U", cr.user(), "-E"])
                    .env("IPMI_PASSWORD", cr.password());
            }
            None => {
                c.env_remove("IPMI_PASSWORD");
            }
        }
        c.kill_on_drop(true);
        c
    }

    /// The error of a failed command from what ipmitool said on stderr (never the password).
    fn failure(&self, command: String, stderr: &str) -> IpmiError {
        // ipmitool never prints the password; this keeps it so should that ever change.
        let detail = match &self.creds {
            Some(cr) if !cr.password().is_empty() => {
                stderr_summary(stderr).replace(cr.password(), "<hidden>")
            }
            _ => stderr_summary(stderr),
        };
        match classify(stderr) {
            Failure::Refused => IpmiError::Refused {
                command,
                detail,
                from: self.src.credentials_from(),
            },
            Failure::Unreachable => IpmiError::Unreachable { command, detail },
            Failure::Command => IpmiError::Failed { command, detail },
        }
    }

    /// Start the `ipmitool shell` that takes the readings.
    fn open_shell(&mut self) -> Result<(), IpmiError> {
        use tokio::io::AsyncBufReadExt;
        let mut c = self.base_command();
        if let Some(f) = self.cache_file() {
            c.arg("-S").arg(f);
        }
        if matches!(self.method, Some(Method::Sensor(_))) {
            c.arg("-c");
        }
        c.arg("shell")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_error = |source| IpmiError::Spawn {
            program: self.src.program.display().to_string(),
            source,
        };
        let mut child = c.spawn().map_err(spawn_error)?;
        let missing = || spawn_error(std::io::Error::other("no pipe to ipmitool"));
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = said.clone();
        // Ends when ipmitool does (it is killed with the session).
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                if s.len() < 64 << 10 {
                    s.push_str(&l);
                    s.push('\n');
                }
            }
        });
        self.shell = Some(Shell {
            _child: child,
            stdin,
            stdout: tokio::io::BufReader::new(stdout).lines(),
            stderr: said,
            commands: 0,
        });
        Ok(())
    }

    /// Run `cmd` in the shell within `limit`; its output on success.
    async fn shell_run(&mut self, cmd: &str, limit: Duration) -> Result<String, IpmiError> {
        use tokio::io::AsyncWriteExt;
        let command = format!("ipmitool shell: {cmd}");
        let shell = self.shell.as_mut().ok_or_else(|| IpmiError::Failed {
            command: command.clone(),
            detail: "no shell".into(),
        })?;
        shell.commands += 1;
        let marker = format!("@@migwatt-end-{}@@", shell.commands);
        shell
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let echo = format!("echo {marker}");
        let work = async {
            shell
                .stdin
                .write_all(format!("{cmd}\n{echo}\n").as_bytes())
                .await?;
            shell.stdin.flush().await?;
            let mut out = String::new();
            loop {
                let Some(line) = shell.stdout.next_line().await? else {
                    return Err(std::io::Error::other("ipmitool shell exited"));
                };
                let l = strip_prompts(&line);
                if l.trim() == marker {
                    return Ok(out);
                }
                // The prompt and the commands as the shell echoes them are not output.
                if l.trim().is_empty() || l == cmd || l == echo {
                    continue;
                }
                out.push_str(l);
                out.push('\n');
            }
        };
        let out = match tokio::time::timeout(limit, work).await {
            Err(_) => {
                self.shell = None;
                return Err(IpmiError::Unreachable {
                    command,
                    detail: format!("no result within {:.1} s", limit.as_secs_f64()),
                });
            }
            Ok(Err(e)) => {
                self.shell = None;
                return Err(IpmiError::Unreachable {
                    command,
                    detail: e.to_string(),
                });
            }
            Ok(Ok(out)) => out,
        };
        if !out.is_empty() {
            return Ok(out);
        }
        // No output: the command failed. ipmitool wrote why on stderr before the marker came
        // out; give the reader a moment to take it in.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let said = self
            .shell
            .as_ref()
            .map(|s| s.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default();
        Err(self.failure(command, &said))
    }

    /// Run `ipmitool ... ARGS` within `limit`; its stdout on success.
    async fn run(&self, args: &[&str], limit: Duration) -> Result<String, IpmiError> {
        // `-v` only where the output is not parsed: it is what tells a wrong password from
        // an unanswering BMC when the session cannot be opened.
        let command = format!(
            "ipmitool {}",
            args.iter()
                .filter(|a| **a != "-v")
                .map(|a| if a.contains(' ') {
                    format!("{a:?}")
                } else {
                    a.to_string()
                })
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut c = self.base_command();
        if let Some(f) = self.cache_file().filter(|_| args.first() != Some(&"sdr")) {
            c.arg("-S").arg(f);
        }
        c.args(args)
            // ipmitool prompts for a missing password on its terminal: it has none.
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = match tokio::time::timeout(limit, c.output()).await {
            Err(_) => {
                return Err(IpmiError::Unreachable {
                    command,
                    detail: format!("no result within {:.1} s", limit.as_secs_f64()),
                })
            }
            Ok(Err(source)) => {
                return Err(IpmiError::Spawn {
                    program: self.src.program.display().to_string(),
                    source,
                })
            }
            Ok(Ok(out)) => out,
        };
        if !out.status.success() {
            return Err(self.failure(command, &String::from_utf8_lossy(&out.stderr)));
        }
        String::from_utf8(out.stdout).map_err(|_| IpmiError::Output {
            command,
            source: OutputError::Missing("UTF-8"),
        })
    }

    /// The error capture reports: an unanswering BMC or a missing ipmitool cannot be opened
    /// (a gap, retried with back-off); the rest names the BMC and what it answered.
    fn error(&self, e: IpmiError) -> SourceError {
        match e {
            IpmiError::Spawn { .. } | IpmiError::Unreachable { .. } => SourceError::Open {
                location: self.src.location(),
                source: Box::new(e),
            },
            // NoReply holds one message: the cause goes in it.
            // (Capture names the source in front of it.)
            IpmiError::Output { ref source, .. } => SourceError::NoReply(format!("{e}: {source}")),
            e => SourceError::NoReply(e.to_string()),
        }
    }

    fn output_error(&self, command: &str, source: OutputError) -> SourceError {
        self.error(IpmiError::Output {
            command: command.to_string(),
            source,
        })
    }

    async fn poll(&mut self) -> Result<SourceEvent, SourceError> {
        let method = self.method.clone().ok_or(SourceError::Closed)?;
        let limit = (self.src.timeout * 2).max(Duration::from_secs(3));
        let watts = match &method {
            Method::Dcmi => {
                let out = self
                    .shell_run("dcmi power reading", limit)
                    .await
                    .map_err(|e| self.error(e))?;
                parse_dcmi(&out).map_err(|e| self.output_error("ipmitool dcmi power reading", e))?
            }
            Method::Sensor(name) => match self
                .shell_run(&format!("sensor reading \"{name}\""), limit)
                .await
            {
                Ok(out) => parse_sensor_reading(&out, name).map_err(|e| {
                    self.output_error(&format!("ipmitool -c sensor reading {name:?}"), e)
                })?,
                // A sensor with no reading (not scanning, not present) makes ipmitool fail
                // without a word: no reading now, not a broken BMC.
                Err(IpmiError::Failed { detail, .. }) if detail == "no message" => None,
                Err(e) => return Err(self.error(e)),
            },
        };
        Ok(match watts {
            Some(w) => {
                // Stamped when ipmitool returns: the reading is at most one command old.
                let mut r = Reading::stamped_now([None; FIELD_COUNT]);
                r.fields[0] = Some(w);
                SourceEvent::Reading(r)
            }
            None => SourceEvent::Rejected {
                kind: REJECT_KINDS[0],
            },
        })
    }

    /// DCMI where the BMC answers it, else an SDR sensor in Watts.
    async fn choose_method(&mut self) -> Result<Method, SourceError> {
        if self.src.sensor.is_none() {
            match self
                .run(&["dcmi", "power", "reading"], IDENTIFY_LIMIT)
                .await
            {
                Ok(out) if parse_dcmi(&out).is_ok() => return Ok(Method::Dcmi),
                // Not offered (invalid command, or an answer that is no power reading): the
                // SDR it is.
                Ok(_) | Err(IpmiError::Failed { .. }) => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("migwatt-ipmi-")
            .tempdir()
            .map_err(SourceError::Io)?;
        let file = dir.path().join("sdr.cache");
        let file_arg = file.to_string_lossy().into_owned();
        self.run(&["sdr", "dump", &file_arg], IDENTIFY_LIMIT)
            .await
            .map_err(|e| self.error(e))?;
        self.cache = Some(dir);
        let list = self
            .run(&["-c", "sdr", "list", "full"], IDENTIFY_LIMIT)
            .await
            .map_err(|e| self.error(e))?;
        let sensors =
            parse_sdr_list(&list).map_err(|e| self.output_error("ipmitool -c sdr list full", e))?;
        let name = choose_sensor(&sensors, self.src.sensor.as_deref()).map_err(|why| {
            SourceError::NoReply(format!(
                "{why}{}",
                if self.src.sensor.is_none() {
                    " and no DCMI power reading"
                } else {
                    ""
                }
            ))
        })?;
        Ok(Method::Sensor(name))
    }
}

impl Session for IpmiSession {
    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, SourceError>> {
        Box::pin(async move {
            let out = self
                .run(&["-v", "mc", "info"], IDENTIFY_LIMIT)
                .await
                .map_err(|e| self.error(e))?;
            let mc = parse_mc_info(&out).map_err(|e| self.output_error("ipmitool mc info", e))?;
            // Not every BMC keeps a GUID: the address stands in for it.
            let guid = match self.run(&["mc", "guid"], IDENTIFY_LIMIT).await {
                Ok(out) => parse_guid(&out),
                Err(IpmiError::Failed { .. }) => None,
                Err(e) => return Err(self.error(e)),
            };
            let method = self.choose_method().await?;
            self.method = Some(method.clone());
            let unit = guid.unwrap_or_else(|| format!("{}:{}", self.src.host, self.src.port));
            let (tag, from) = match &method {
                Method::Dcmi => ("dcmi".to_string(), "DCMI Get Power Reading".to_string()),
                Method::Sensor(n) => (
                    // As capture writes it: the name's spaces and the like as `_`.
                    format!(
                        "sdr-{}",
                        n.replace(
                            |c: char| !c.is_ascii_alphanumeric() && !".-_+".contains(c),
                            "_"
                        )
                    ),
                    format!("SDR sensor {n:?}"),
                ),
            };
            Ok(Identity {
                meter_id: format!("ipmi-{}-{}-{unit}-{tag}", mc.manufacturer_id, mc.product_id),
                description: format!(
                    "IPMI BMC of {} (manufacturer {}, product {}), firmware {}, power from {from}",
                    if mc.manufacturer.is_empty() {
                        "unknown make"
                    } else {
                        &mc.manufacturer
                    },
                    mc.manufacturer_id,
                    mc.product_id,
                    mc.firmware
                ),
                firmware: Some(mc.firmware),
                baud: None,
            })
        })
    }
    fn start(&mut self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(async move {
            let location = self.src.location();
            self.open_shell().map_err(|e| SourceError::Open {
                location,
                source: Box::new(e),
            })?;
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
        // Each command opened and closed its own RMCP+ session: nothing to log out of.
        Box::pin(async move { self.pending.drain(..).collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DCMI: &str = "
    Instantaneous power reading:                   220 Watts
    Minimum during sampling period:                 14 Watts
    Maximum during sampling period:                382 Watts
    Average power reading over sample period:      221 Watts
    IPMI timestamp:                           Thu Jan  1 00:00:00 1970
    Sampling period:                          00000001 Seconds.
    Power reading state is:                   activated

";

    #[test]
    fn dcmi_readings_are_the_instantaneous_power() {
        assert_eq!(parse_dcmi(DCMI), Ok(Some(220.0)));
        let off = DCMI.replace("activated", "deactivated");
        assert_eq!(parse_dcmi(&off), Ok(None));
        let e = parse_dcmi(&DCMI.replace("220 Watts", "n/a Watts")).unwrap_err();
        assert!(
            e.to_string().contains("Instantaneous power reading:")
                && e.to_string().contains("\"n/a\" is not a number"),
            "{e}"
        );
        assert_eq!(
            parse_dcmi("DCMI request failed because: Invalid command (c1)\n"),
            Err(OutputError::Missing("\"Instantaneous power reading:\""))
        );
        assert!(parse_dcmi(&DCMI.replace("activated", "sleeping")).is_err());
    }

    #[test]
    fn sdr_lists_give_sensors_in_watts() {
        let list = "CPU Temp,45,degrees C,ok\nPS1 Input Power,180,Watts,ok\n\
                    Pwr Consumption,200,Watts,ok\nFan, rear,na,RPM,ns\nPS2 Input Power,,,ns\n";
        let s = parse_sdr_list(list).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s[3].name, "Fan, rear");
        assert_eq!(s[3].value, None);
        assert_eq!(s[1].value, Some(180.0));
        assert_eq!(choose_sensor(&s, None).unwrap(), "Pwr Consumption");
        assert_eq!(
            choose_sensor(&s, Some("PS1 Input Power")).unwrap(),
            "PS1 Input Power"
        );
        let e = choose_sensor(&s, Some("CPU Temp")).unwrap_err();
        assert!(e.contains("\"degrees C\", not Watts"), "{e}");
        let e = choose_sensor(&s, Some("Nope")).unwrap_err();
        assert!(e.contains("no sensor \"Nope\"") && e.contains("\"Pwr Consumption\""));
        assert_eq!(choose_sensor(&s[..2], None).unwrap(), "PS1 Input Power");
        assert!(choose_sensor(&s[..1], None)
            .unwrap_err()
            .contains("no full SDR sensor in Watts"));
        assert!(parse_sdr_list("garbage\n").is_err());
    }

    #[test]
    fn sensor_readings_name_their_sensor() {
        assert_eq!(
            parse_sensor_reading("Pwr Consumption,246\n", "Pwr Consumption"),
            Ok(Some(246.0))
        );
        assert_eq!(
            parse_sensor_reading("Pwr Consumption,na\n", "Pwr Consumption"),
            Ok(None)
        );
        let e = parse_sensor_reading("Other,1\n", "Pwr Consumption").unwrap_err();
        assert!(e
            .to_string()
            .contains("expected sensor \"Pwr Consumption\""));
        let e = parse_sensor_reading("Pwr Consumption,-4\n", "Pwr Consumption").unwrap_err();
        assert!(e.to_string().contains(">= 0"), "{e}");
        assert!(parse_sensor_reading("", "x").is_err());
    }

    #[test]
    fn mc_info_and_guid_identify_the_bmc() {
        let info = "Device ID                 : 0\nDevice Revision           : 3\n\
                    Firmware Revision         : 9.08\nIPMI Version              : 2.0\n\
                    Manufacturer ID           : 4753\n\
                    Manufacturer Name         : MontaVista Software, Inc.\n\
                    Product ID                : 3842 (0x0f02)\n";
        assert_eq!(
            parse_mc_info(info).unwrap(),
            McInfo {
                manufacturer_id: "4753".into(),
                manufacturer: "MontaVista Software, Inc.".into(),
                product_id: "3842".into(),
                firmware: "9.08".into(),
            }
        );
        assert_eq!(
            parse_mc_info("hello\n"),
            Err(OutputError::Missing("Manufacturer ID"))
        );
        assert_eq!(
            parse_guid("System GUID   : efcdab89-6745-23a1\nGUID Encoding : IPMI\n").as_deref(),
            Some("efcdab89-6745-23a1")
        );
    }

    #[test]
    fn failures_tell_refusals_from_silence() {
        assert_eq!(
            classify(
                "> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n"
            ),
            Failure::Refused
        );
        assert_eq!(
            classify("RAKP 2 message indicates an error : unauthorized name\n"),
            Failure::Refused
        );
        assert_eq!(
            classify(
                "Get Auth Capabilities error\nError: Unable to establish IPMI v2 / RMCP+ session\n"
            ),
            Failure::Unreachable
        );
        assert_eq!(
            classify("DCMI request failed because: Invalid command (c1)\n"),
            Failure::Command
        );
        assert_eq!(
            stderr_summary("Loading IANA PEN Registry...\n> Get Auth Capabilities error\n\n"),
            "Get Auth Capabilities error"
        );
        assert_eq!(stderr_summary(""), "no message");
    }

    #[test]
    fn shell_lines_lose_their_prompts() {
        assert_eq!(
            strip_prompts("ipmitool> sensor reading \"Pwr\""),
            "sensor reading \"Pwr\""
        );
        assert_eq!(
            strip_prompts("ipmitool> ipmitool> @@migwatt-end-3@@ "),
            "@@migwatt-end-3@@ "
        );
        assert_eq!(strip_prompts("Pwr,300"), "Pwr,300");
    }

    #[test]
    fn spellings_keep_credentials_out() {
        let o = SourceOptions::default();
        let i = Ipmi::parse(
            "ipmi://bmc-b?credentials=/etc/bmc&sensor=Pwr%20Consumption&cipher=3",
            &o,
        )
        .unwrap();
        assert_eq!(i.location(), "ipmi://bmc-b:623");
        assert_eq!(i.credentials, CredentialSource::File("/etc/bmc".into()));
        assert_eq!(i.sensor.as_deref(), Some("Pwr Consumption"));
        assert_eq!(i.cipher, Some(3));
        let i = Ipmi::parse("ipmi://[fe80::1]:6230?sensor=PS1 Input Power", &o).unwrap();
        assert_eq!(i.location(), "ipmi://[fe80::1]:6230");
        assert_eq!(i.sensor.as_deref(), Some("PS1 Input Power"));
        assert_eq!(
            Ipmi::parse("ipmi://10.0.0.9:9623", &o).unwrap().location(),
            "ipmi://10.0.0.9:9623"
        );
        for (bad, why) in [
            ("ipmi://root:calvin@bmc", "never go in the spelling"),
            (
                "ipmi://bmc?password=calvin",
                "credentials=FILE, sensor=NAME",
            ),
            ("ipmi://bmc:0", "UDP port"),
            ("ipmi://bmc:x", "UDP port"),
            ("ipmi://", "BMC host"),
            ("ipmi://bmc?cipher=18", "0 to 17"),
            ("ipmi://bmc?sensor=a%2", "hex digits"),
            ("ipmi:bmc", "expected ipmi://BMC"),
        ] {
            let e = Ipmi::parse(bad, &o).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("calvin"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_dcmi(&s);
            let _ = parse_sdr_list(&s);
            let _ = parse_sensor_reading(&s, "Pwr");
            let _ = parse_mc_info(&s);
            let _ = parse_guid(&s);
            let _ = classify(&s);
            let _ = stderr_summary(&s);
            let _ = percent_decode(&s);
            let _ = Ipmi::parse(&format!("ipmi://{s}"), &SourceOptions::default());
        }

        #[test]
        fn power_round_trips(w in 0u32..100_000, frac in 0u32..1000, name in "[A-Za-z0-9 _.-]{1,16}") {
            let name = name.trim().to_string();
            prop_assume!(!name.is_empty());
            let dcmi = DCMI.replace("220 Watts", &format!("{w} Watts"));
            prop_assert_eq!(parse_dcmi(&dcmi), Ok(Some(f64::from(w))));
            let v = f64::from(w) + f64::from(frac) / 1000.0;
            let text = format!("{name},{v:.3}\n");
            prop_assert_eq!(parse_sensor_reading(&text, &name), Ok(Some(v)));
            let list = format!("{name},{v:.3},Watts,ok\n");
            let s = parse_sdr_list(&list).unwrap();
            prop_assert_eq!(s[0].value, Some(v));
            prop_assert_eq!(&s[0].name, &name);
        }
    }
}
