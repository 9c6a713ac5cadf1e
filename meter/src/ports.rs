//! Finding serial ports and asking a Watts up? meter who it is.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use crate::protocol::{Command, LoggingMode, Reply, Version, ABORT};
use crate::source::wattsup::{Link, BAUD_RATES};
use crate::source::SourceError;

/// USB vendor and product of the FTDI FT232R inside Watts up? PRO meters.
pub const FTDI_VID_PID: (u16, u16) = (0x0403, 0x6001);

/// A serial port on this machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PortInfo {
    /// Device path.
    pub device: String,
    /// `usb`, `pci`, `bluetooth` or `unknown`.
    pub kind: String,
    /// USB vendor id, if USB.
    pub vid: Option<u16>,
    /// USB product id, if USB.
    pub pid: Option<u16>,
    /// USB manufacturer string.
    pub manufacturer: Option<String>,
    /// USB product string.
    pub product: Option<String>,
    /// USB serial number.
    pub serial_number: Option<String>,
    /// An FTDI 0403:6001 device: probably a Watts up? meter.
    pub likely_meter: bool,
}

/// List serial ports, likely meters first.
pub fn list_ports() -> Result<Vec<PortInfo>, tokio_serial::Error> {
    // serialport panics when Linux has no /sys/class/tty (some containers).
    if cfg!(target_os = "linux") && !Path::new("/sys/class/tty").is_dir() {
        return Err(tokio_serial::Error::new(
            tokio_serial::ErrorKind::NoDevice,
            "/sys/class/tty is missing: no sysfs to find serial ports in",
        ));
    }
    let mut out: Vec<PortInfo> = tokio_serial::available_ports()?
        .into_iter()
        .map(|p| {
            let mut info = PortInfo {
                device: p.port_name,
                kind: "unknown".into(),
                vid: None,
                pid: None,
                manufacturer: None,
                product: None,
                serial_number: None,
                likely_meter: false,
            };
            match p.port_type {
                tokio_serial::SerialPortType::UsbPort(u) => {
                    info.kind = "usb".into();
                    info.likely_meter = (u.vid, u.pid) == FTDI_VID_PID;
                    info.vid = Some(u.vid);
                    info.pid = Some(u.pid);
                    info.manufacturer = u.manufacturer;
                    info.product = u.product;
                    info.serial_number = u.serial_number;
                }
                tokio_serial::SerialPortType::PciPort => info.kind = "pci".into(),
                tokio_serial::SerialPortType::BluetoothPort => info.kind = "bluetooth".into(),
                tokio_serial::SerialPortType::Unknown => {}
            }
            info
        })
        .collect();
    out.sort_by(|a, b| (!a.likely_meter, &a.device).cmp(&(!b.likely_meter, &b.device)));
    Ok(out)
}

/// What a meter says about itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeterInfo {
    /// Device path.
    pub device: String,
    /// Baud rate that answered.
    pub baud: u32,
    /// Version reply.
    pub version: Version,
    /// Meter identity used in datasets.
    pub meter_id: String,
    /// Field names from the header reply.
    pub header: Option<Vec<String>>,
    /// Logging interval, s, and mode from the status reply.
    pub interval_s: Option<u32>,
    /// Logging mode.
    pub logging: Option<LoggingMode>,
    /// Electricity rate, mils per kWh, from the user parameters.
    pub rate_mils_per_kwh: Option<u32>,
    /// Whether cost fields are in euros.
    pub euro: Option<bool>,
}

/// Errors of [`meter_info`].
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    /// Opening the device failed.
    #[error("cannot open {0}")]
    Open(String, #[source] Box<dyn std::error::Error + Send + Sync>),
    /// Talking to the device failed.
    #[error("{0}")]
    Io(String, #[source] SourceError),
    /// No version reply.
    #[error("{0}: no reply to the version request within {1:?} at 115200 or 19200 baud: is this a Watts up? meter?")]
    NoReply(String, Duration),
}

fn info_error(device: &str, e: SourceError) -> InfoError {
    match e {
        SourceError::Open { location, source } => InfoError::Open(location, source),
        e => InfoError::Io(device.into(), e),
    }
}

/// Ask and wait for a reply; a port that closed meanwhile gave no reply.
async fn ask(
    link: &mut Link,
    cmd: &Command,
    timeout: Duration,
    want: impl Fn(&Reply) -> bool + Copy,
) -> Result<Option<Reply>, SourceError> {
    // `info` does not start logging: records of a meter that was already streaming are
    // not wanted here.
    let mut ignored = VecDeque::new();
    match link.ask(&mut ignored, cmd, timeout, want).await {
        Err(SourceError::Closed) => Ok(None),
        r => r,
    }
}

/// Ask the meter on `device` for its version, header, status and user parameters. Does not
/// change its logging.
pub fn meter_info(device: &Path, timeout: Duration) -> Result<MeterInfo, InfoError> {
    let dev = device.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| InfoError::Io(dev.clone(), e.into()))?;
    rt.block_on(async {
        for baud in BAUD_RATES {
            let mut link = Link::open(device, baud).map_err(|e| info_error(&dev, e))?;
            match ask_all(&mut link, timeout).await {
                Ok(Some(mut info)) => {
                    info.device = dev.clone();
                    return Ok(info);
                }
                Ok(None) => {}
                Err(e) => return Err(info_error(&dev, e)),
            }
        }
        Err(InfoError::NoReply(dev.clone(), timeout))
    })
}

/// Everything `info` asks, on one open link; None if the version request got no reply.
async fn ask_all(link: &mut Link, timeout: Duration) -> Result<Option<MeterInfo>, SourceError> {
    link.send_bytes(&[ABORT]).await?;
    let Some(Reply::Version(version)) = ask(link, &Command::ReadVersion, timeout, |r| {
        matches!(r, Reply::Version(_))
    })
    .await?
    else {
        return Ok(None);
    };
    let header = match ask(link, &Command::ReadHeader, timeout, |r| {
        matches!(r, Reply::Header(_))
    })
    .await?
    {
        Some(Reply::Header(h)) => Some(h),
        _ => None,
    };
    let (interval_s, logging) = match ask(link, &Command::ReadStatus, timeout, |r| {
        matches!(r, Reply::Status { .. })
    })
    .await?
    {
        Some(Reply::Status {
            interval_s,
            logging,
        }) => (Some(interval_s), Some(logging)),
        _ => (None, None),
    };
    let (rate, euro) = match ask(link, &Command::ReadUser, timeout, |r| {
        matches!(r, Reply::User { .. })
    })
    .await?
    {
        Some(Reply::User {
            rate_mils_per_kwh,
            euro,
            ..
        }) => (Some(rate_mils_per_kwh), Some(euro)),
        _ => (None, None),
    };
    Ok(Some(MeterInfo {
        device: String::new(),
        baud: link.baud,
        meter_id: version.meter_id(),
        version,
        header,
        interval_s,
        logging,
        rate_mils_per_kwh: rate,
        euro,
    }))
}
