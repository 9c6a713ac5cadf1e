//! Finding serial ports and asking a meter who it is.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialPortBuilderExt;

use crate::capture::BAUD_RATES;
use crate::decoder::{Decoder, Event};
use crate::protocol::{Command, LoggingMode, Packet, Reply, Version, ABORT};

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
    #[error("cannot open {0}: {1}")]
    Open(String, #[source] tokio_serial::Error),
    /// I/O failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// No version reply.
    #[error("{0}: no reply to the version request within {1:?} at 115200 or 19200 baud: is this a Watts up? meter?")]
    NoReply(String, Duration),
}

async fn ask(
    port: &mut tokio_serial::SerialStream,
    dec: &mut Decoder,
    cmd: &Command,
    timeout: Duration,
    want: impl Fn(&Reply) -> bool,
) -> std::io::Result<Option<Reply>> {
    port.write_all(&cmd.encode()).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 512];
    loop {
        let n = match tokio::time::timeout_at(deadline, port.read(&mut buf)).await {
            Err(_) => return Ok(None),
            Ok(r) => r?,
        };
        if n == 0 {
            return Ok(None);
        }
        let mut hit = None;
        dec.feed(&buf[..n], |e| {
            if let Event::Packet {
                packet: Packet::Reply(r),
                ..
            } = e
            {
                if hit.is_none() && want(&r) {
                    hit = Some(r);
                }
            }
        });
        if hit.is_some() {
            return Ok(hit);
        }
    }
}

/// Ask the meter on `device` for its version, header, status and user parameters. Does not
/// change its logging.
pub fn meter_info(device: &Path, timeout: Duration) -> Result<MeterInfo, InfoError> {
    let dev = device.display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| InfoError::Io(dev.clone(), e))?;
    rt.block_on(async {
        let io = |e| InfoError::Io(dev.clone(), e);
        for baud in BAUD_RATES {
            let mut port = tokio_serial::new(&dev, baud)
                .open_native_async()
                .map_err(|e| InfoError::Open(dev.clone(), e))?;
            let mut dec = Decoder::new();
            port.write_all(&[ABORT]).await.map_err(io)?;
            let Some(Reply::Version(version)) =
                ask(&mut port, &mut dec, &Command::ReadVersion, timeout, |r| {
                    matches!(r, Reply::Version(_))
                })
                .await
                .map_err(io)?
            else {
                continue;
            };
            let header = match ask(&mut port, &mut dec, &Command::ReadHeader, timeout, |r| {
                matches!(r, Reply::Header(_))
            })
            .await
            .map_err(io)?
            {
                Some(Reply::Header(h)) => Some(h),
                _ => None,
            };
            let (interval_s, logging) =
                match ask(&mut port, &mut dec, &Command::ReadStatus, timeout, |r| {
                    matches!(r, Reply::Status { .. })
                })
                .await
                .map_err(io)?
                {
                    Some(Reply::Status {
                        interval_s,
                        logging,
                    }) => (Some(interval_s), Some(logging)),
                    _ => (None, None),
                };
            let (rate, euro) = match ask(&mut port, &mut dec, &Command::ReadUser, timeout, |r| {
                matches!(r, Reply::User { .. })
            })
            .await
            .map_err(io)?
            {
                Some(Reply::User {
                    rate_mils_per_kwh,
                    euro,
                    ..
                }) => (Some(rate_mils_per_kwh), Some(euro)),
                _ => (None, None),
            };
            return Ok(MeterInfo {
                device: dev.clone(),
                baud,
                meter_id: version.meter_id(),
                version,
                header,
                interval_s,
                logging,
                rate_mils_per_kwh: rate,
                euro,
            });
        }
        Err(InfoError::NoReply(dev.clone(), timeout))
    })
}
