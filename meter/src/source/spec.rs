//! How sources are spelled on the command line and in configs.
//!
//! A source is `KIND:TARGET`, with the host name in front as `NAME=KIND:TARGET`:
//!
//! | spelling | source |
//! |---|---|
//! | `wattsup:DEVICE` | a Watts up? PRO on the serial device DEVICE |
//! | `emulated[:PROFILE]` | an emulated Watts up? PRO on a pseudo-terminal, power from PROFILE (`constant:W`, `trace:FILE.csv`, `bursts[:...]`; default `bursts`) |
//! | `rapl:[ROOT]` | RAPL energy counters of the powercap tree at ROOT (default `/sys/class/powercap`) |
//! | `prometheus+http://HOST:PORT/PATH?metric=NAME[&LABEL=VALUE...]` | one series of a Prometheus exporter, scraped every interval |
//! | `redfish+http://BMC[:PORT]/redfish/v1/Chassis/ID[?credentials=FILE][&auth=session]` | a BMC's chassis power over Redfish, polled every interval (credentials from FILE or `MIGWATT_REDFISH_USERNAME`/`MIGWATT_REDFISH_PASSWORD`; basic authentication, or a Redfish session) |
//! | `ipmi://BMC[:PORT][?credentials=FILE][&sensor=NAME][&cipher=N]` | a BMC's power over IPMI (RMCP+): DCMI Get Power Reading, else an SDR sensor in Watts, polled every interval through ipmitool (credentials from FILE or `MIGWATT_IPMI_USERNAME`/`MIGWATT_IPMI_PASSWORD`) |
//!
//! `--port [NAME=]DEVICE` stays the short form of `--source [NAME=]wattsup:DEVICE`. Kinds
//! are lower-case words, so spellings such as `redfish+https://...` or `rapl:` extend this
//! table without changing the existing ones.

use std::path::PathBuf;
use std::sync::Arc;

use super::{
    EmulatedSource, Ipmi, PowerSource, Prometheus, Rapl, Redfish, SourceError, SourceOptions,
    WattsUp,
};
use crate::emulator::{EmulatorConfig, Profile};

/// Kind of the serial Watts up? PRO.
pub const WATTSUP_KIND: &str = "wattsup";
/// Kind of the emulated Watts up? PRO.
pub const EMULATED_KIND: &str = "emulated";
/// Kind of the RAPL energy counters.
pub const RAPL_KIND: &str = "rapl";
/// Kind of a Prometheus exporter's series.
pub const PROMETHEUS_KIND: &str = "prometheus";
/// Kind of a BMC's Redfish chassis power.
pub const REDFISH_KIND: &str = "redfish";
/// Kind of a BMC's power over IPMI.
pub const IPMI_KIND: &str = "ipmi";
/// Every kind, as spelled before the `:` of `KIND:TARGET`.
pub const KINDS: &[&str] = &[
    WATTSUP_KIND,
    EMULATED_KIND,
    RAPL_KIND,
    "prometheus+http",
    "redfish+http",
    "redfish+https",
    IPMI_KIND,
];
/// The spellings accepted, for error messages.
const EXPECTED: &str = "expected wattsup:DEVICE, emulated[:PROFILE], rapl:[ROOT], \
                        prometheus+http://HOST:PORT/PATH?metric=NAME[&LABEL=VALUE], \
                        redfish+http://BMC/redfish/v1/Chassis/ID[?credentials=FILE] or \
                        ipmi://BMC[:PORT][?credentials=FILE][&sensor=NAME]";

/// A spelling that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?}: {message}")]
pub struct SpecError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub message: String,
}

fn bad(input: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        input: input.into(),
        message: message.into(),
    }
}

/// A source as spelled, before it is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// `wattsup:DEVICE`.
    WattsUp {
        /// Serial device path.
        device: PathBuf,
    },
    /// `emulated[:PROFILE]`.
    Emulated {
        /// Power profile as spelled (None: the emulator's default).
        profile: Option<String>,
    },
    /// `rapl:[ROOT]`.
    Rapl {
        /// The powercap folder.
        root: PathBuf,
    },
    /// `prometheus+http://...?metric=NAME`.
    Prometheus {
        /// The scrape URL with its `metric` and label query (`http://...`).
        url: String,
    },
    /// `redfish+http://BMC/redfish/v1/Chassis/ID[?credentials=FILE]`.
    Redfish {
        /// The chassis URL with its options (`http://...`); never credentials.
        url: String,
    },
    /// `ipmi://BMC[:PORT][?credentials=FILE][&sensor=NAME][&cipher=N]`.
    Ipmi {
        /// The spelling (`ipmi://...`); never credentials.
        url: String,
    },
}

impl SourceSpec {
    /// Parse `KIND:TARGET`.
    pub fn parse(s: &str) -> Result<Self, SpecError> {
        let (kind, target) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            WATTSUP_KIND if target.is_empty() => Err(bad(
                s,
                "missing device: expected wattsup:DEVICE, e.g. wattsup:/dev/ttyUSB0",
            )),
            WATTSUP_KIND => Ok(SourceSpec::WattsUp {
                device: PathBuf::from(target),
            }),
            EMULATED_KIND => {
                let profile = (!target.is_empty()).then(|| target.to_string());
                if let Some(p) = &profile {
                    Profile::parse(p).map_err(|e| bad(s, e.to_string()))?;
                }
                Ok(SourceSpec::Emulated { profile })
            }
            "prometheus+http" => {
                let url = format!("http:{target}");
                Prometheus::parse(&url, &SourceOptions::default())
                    .map_err(|e| bad(s, e.to_string()))?;
                Ok(SourceSpec::Prometheus { url })
            }
            "redfish+http" | "redfish+https" => {
                let scheme = kind.trim_start_matches("redfish+");
                let url = format!("{scheme}:{target}");
                Redfish::parse(&url, &SourceOptions::default()).map_err(|e| bad(s, e))?;
                Ok(SourceSpec::Redfish { url })
            }
            IPMI_KIND => {
                let url = format!("ipmi:{target}");
                Ipmi::parse(&url, &SourceOptions::default()).map_err(|e| bad(s, e))?;
                Ok(SourceSpec::Ipmi { url })
            }
            RAPL_KIND => Ok(SourceSpec::Rapl {
                root: PathBuf::from(if target.is_empty() {
                    super::rapl::DEFAULT_ROOT
                } else {
                    target
                }),
            }),
            _ if kind.starts_with('/') || kind.starts_with('.') => Err(bad(
                s,
                format!("no source kind: {EXPECTED} (a serial device is wattsup:{s})"),
            )),
            _ => Err(bad(s, format!("unknown source kind {kind:?}: {EXPECTED}"))),
        }
    }

    /// A campaign's or `--port`'s meter: `KIND:TARGET` when it starts with a known kind,
    /// else a serial device path (the spelling before sources had kinds).
    pub fn parse_device_or_spec(s: &str) -> Result<Self, SpecError> {
        let kind = s.split_once(':').map_or(s, |(k, _)| k);
        if KINDS.contains(&kind) {
            return Self::parse(s);
        }
        if s.is_empty() {
            return Err(bad(s, "missing device"));
        }
        Ok(SourceSpec::WattsUp {
            device: PathBuf::from(s),
        })
    }

    /// The kind, e.g. `wattsup`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::WattsUp { .. } => WATTSUP_KIND,
            SourceSpec::Emulated { .. } => EMULATED_KIND,
            SourceSpec::Rapl { .. } => RAPL_KIND,
            SourceSpec::Prometheus { .. } => PROMETHEUS_KIND,
            SourceSpec::Redfish { .. } => REDFISH_KIND,
            SourceSpec::Ipmi { .. } => IPMI_KIND,
        }
    }

    /// Host name used when none is given: the device's file name, or the kind.
    pub fn default_name(&self) -> String {
        match self {
            SourceSpec::WattsUp { device } => device
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            SourceSpec::Emulated { .. } => EMULATED_KIND.into(),
            SourceSpec::Rapl { .. } => RAPL_KIND.into(),
            SourceSpec::Prometheus { .. } => PROMETHEUS_KIND.into(),
            SourceSpec::Redfish { .. } => REDFISH_KIND.into(),
            SourceSpec::Ipmi { .. } => IPMI_KIND.into(),
        }
    }

    /// Build the source (an emulated source starts its emulator here).
    pub fn open(&self, opts: &SourceOptions) -> Result<Arc<dyn PowerSource>, SourceError> {
        Ok(match self {
            SourceSpec::WattsUp { device } => Arc::new(WattsUp::new(device, opts.clone())),
            SourceSpec::Emulated { profile } => {
                let profile = match profile {
                    Some(p) => Profile::parse(p)?,
                    None => Profile::default(),
                };
                let config = EmulatorConfig {
                    profile,
                    ..EmulatorConfig::default()
                };
                Arc::new(EmulatedSource::start(config, opts.clone())?)
            }
            SourceSpec::Rapl { root } => Arc::new(Rapl::new(root, opts)),
            SourceSpec::Prometheus { url } => Arc::new(
                Prometheus::parse(url, opts).map_err(|e| SourceError::NoReply(e.to_string()))?,
            ),
            SourceSpec::Redfish { url } => {
                Arc::new(Redfish::parse(url, opts).map_err(SourceError::NoReply)?)
            }
            SourceSpec::Ipmi { url } => {
                Arc::new(Ipmi::parse(url, opts).map_err(SourceError::NoReply)?)
            }
        })
    }
}

/// A source with the host name its samples are filed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSource {
    /// Host name (the dataset's `host=` partition).
    pub name: String,
    /// The source.
    pub spec: SourceSpec,
}

impl NamedSource {
    /// Parse `[NAME=]DEVICE`: a Watts up? PRO on DEVICE (the `--port` spelling).
    pub fn parse_port(s: &str) -> Result<Self, SpecError> {
        let (name, device) = match s.split_once('=') {
            Some((n, d)) => (Some(n), d),
            None => (None, s),
        };
        if device.is_empty() {
            return Err(bad(s, "missing device"));
        }
        let spec = SourceSpec::WattsUp {
            device: PathBuf::from(device),
        };
        Self::named(s, name, spec)
    }

    /// Parse `[NAME=]KIND:TARGET` (the `--source` spelling).
    pub fn parse_source(s: &str) -> Result<Self, SpecError> {
        // A NAME has no ':'; an '=' after the kind belongs to the target.
        let (name, rest) = match s.split_once('=') {
            Some((n, r)) if !n.contains(':') => (Some(n), r),
            _ => (None, s),
        };
        let spec = SourceSpec::parse(rest).map_err(|e| bad(s, e.message))?;
        Self::named(s, name, spec)
    }

    fn named(input: &str, name: Option<&str>, spec: SourceSpec) -> Result<Self, SpecError> {
        let name = name.map_or_else(|| spec.default_name(), str::to_string);
        // The host becomes the dataset's `host=NAME` folder: the one rule for such names.
        if let Err(e) = datasets::names::check_name("host name", &name) {
            return Err(bad(input, e.to_string()));
        }
        Ok(NamedSource { name, spec })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wattsup(name: &str, device: &str) -> NamedSource {
        NamedSource {
            name: name.into(),
            spec: SourceSpec::WattsUp {
                device: device.into(),
            },
        }
    }

    #[test]
    fn port_spellings_are_serial_devices() {
        assert_eq!(
            NamedSource::parse_port("src=/dev/ttyUSB0").unwrap(),
            wattsup("src", "/dev/ttyUSB0")
        );
        assert_eq!(
            NamedSource::parse_port("/dev/ttyUSB1").unwrap(),
            wattsup("ttyUSB1", "/dev/ttyUSB1")
        );
        // A device name with ':' (by-path names have them) is still a device.
        assert_eq!(
            NamedSource::parse_port("a=/dev/serial/by-path/pci-0000:00:14.0-usb-0:1:1.0-port0")
                .unwrap()
                .spec,
            SourceSpec::WattsUp {
                device: "/dev/serial/by-path/pci-0000:00:14.0-usb-0:1:1.0-port0".into()
            }
        );
        for bad in ["a b=/dev/x", "src=", "", "=/dev/x", "/"] {
            assert!(NamedSource::parse_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn source_spellings_name_their_kind() {
        assert_eq!(
            NamedSource::parse_source("src=wattsup:/dev/ttyUSB0").unwrap(),
            wattsup("src", "/dev/ttyUSB0")
        );
        assert_eq!(
            NamedSource::parse_source("wattsup:/dev/ttyUSB3").unwrap(),
            wattsup("ttyUSB3", "/dev/ttyUSB3")
        );
        assert_eq!(
            NamedSource::parse_source("lab=emulated:bursts:idle=100,peak=150").unwrap(),
            NamedSource {
                name: "lab".into(),
                spec: SourceSpec::Emulated {
                    profile: Some("bursts:idle=100,peak=150".into())
                }
            }
        );
        // Without NAME, an '=' inside the target is not a name.
        assert_eq!(
            NamedSource::parse_source("emulated:bursts:idle=90")
                .unwrap()
                .name,
            "emulated"
        );
        assert_eq!(
            NamedSource::parse_source("x=emulated").unwrap().spec,
            SourceSpec::Emulated { profile: None }
        );
        assert_eq!(
            NamedSource::parse_source("cpu=rapl:/tmp/powercap").unwrap(),
            NamedSource {
                name: "cpu".into(),
                spec: SourceSpec::Rapl {
                    root: "/tmp/powercap".into()
                }
            }
        );
        assert_eq!(NamedSource::parse_source("rapl:").unwrap().name, "rapl");
        assert_eq!(
            NamedSource::parse_source("p=prometheus+http://h:9100/metrics?metric=a_watts&host=x")
                .unwrap(),
            NamedSource {
                name: "p".into(),
                spec: SourceSpec::Prometheus {
                    url: "http://h:9100/metrics?metric=a_watts&host=x".into()
                }
            }
        );
        assert_eq!(
            NamedSource::parse_source("prometheus+http://h/m?metric=a")
                .unwrap()
                .name,
            "prometheus"
        );
        assert_eq!(
            NamedSource::parse_source("bmc-a=redfish+http://bmc/redfish/v1/Chassis/1")
                .unwrap()
                .spec,
            SourceSpec::Redfish {
                url: "http://bmc/redfish/v1/Chassis/1".into()
            }
        );
        let e =
            NamedSource::parse_source("b=redfish+https://bmc/redfish/v1/Chassis/1").unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");
        assert_eq!(
            NamedSource::parse_source("hostA=ipmi://bmc-b:6230?credentials=/etc/bmc&sensor=Pwr")
                .unwrap(),
            NamedSource {
                name: "hostA".into(),
                spec: SourceSpec::Ipmi {
                    url: "ipmi://bmc-b:6230?credentials=/etc/bmc&sensor=Pwr".into()
                }
            }
        );
        assert_eq!(
            NamedSource::parse_source("ipmi://bmc").unwrap().name,
            "ipmi"
        );
        let e = NamedSource::parse_source("b=ipmi://root:pw@bmc").unwrap_err();
        assert!(e.to_string().contains("never go in the spelling"), "{e}");
        let e = NamedSource::parse_source("p=prometheus+http://h/m").unwrap_err();
        assert!(e.to_string().contains("missing ?metric=NAME"), "{e}");
    }

    #[test]
    fn bad_source_spellings_say_what_was_expected() {
        let msg = |s: &str| NamedSource::parse_source(s).unwrap_err().to_string();
        assert!(msg("src=modbus+tcp://pdu/").contains("unknown source kind \"modbus+tcp\""));
        assert!(msg("src=/dev/ttyUSB0").contains("wattsup:/dev/ttyUSB0"));
        assert!(msg("src=wattsup:").contains("missing device"));
        assert!(msg("src=emulated:constant:abc").starts_with("\"src=emulated:constant:abc\": "));
        assert!(msg("a b=wattsup:/dev/x").contains("host name"));
    }

    #[test]
    fn campaign_meters_are_devices_unless_they_name_a_kind() {
        let p = |s: &str| SourceSpec::parse_device_or_spec(s).unwrap();
        assert_eq!(
            p("/dev/ttyUSB0"),
            SourceSpec::WattsUp {
                device: "/dev/ttyUSB0".into()
            }
        );
        assert_eq!(
            p("meters/a"),
            SourceSpec::WattsUp {
                device: "meters/a".into()
            }
        );
        assert_eq!(
            p("wattsup:/dev/ttyUSB0"),
            SourceSpec::WattsUp {
                device: "/dev/ttyUSB0".into()
            }
        );
        assert_eq!(p("emulated"), SourceSpec::Emulated { profile: None });
        assert_eq!(
            p("rapl:"),
            SourceSpec::Rapl {
                root: "/sys/class/powercap".into()
            }
        );
        assert_eq!(
            p("ipmi://bmc"),
            SourceSpec::Ipmi {
                url: "ipmi://bmc".into()
            }
        );
        assert!(SourceSpec::parse_device_or_spec("").is_err());
        assert!(SourceSpec::parse_device_or_spec("wattsup:").is_err());
    }
}
