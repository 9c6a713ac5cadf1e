//! The Watts up? PRO on a serial device, as a [`PowerSource`].
//!
//! A connection opens the device exclusively at 115200 8N1 (falling back to 19200 for old
//! hardware), reads the version (the identity), then reads the header, clears memory, waits
//! for the meter to settle and starts external logging; the meter then streams one record
//! per interval. Stopping switches the meter back to internal logging. Every record and
//! every rejected fragment that arrives at any point (even while waiting for a reply) is
//! kept, in order.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialStream, StopBits};

use super::{
    BoxFuture, Identity, Measures, PowerSource, Reading, Session, SourceError, SourceEvent,
    SourceOptions,
};
use crate::decoder::{Decoder, Event};
use crate::protocol::{Command, Packet, Reply, Version, ABORT};

/// Baud rates tried in order: current hardware, then old (HWminor = 1) meters.
pub const BAUD_RATES: [u32; 2] = [115_200, 19_200];

/// Labels of the fragments the decoder rejects (see [`crate::decoder::RejectKind`]).
pub const REJECT_KINDS: [&str; 5] = ["truncated", "lost prefix", "junk", "malformed", "oversize"];

/// How long the meter gets to confirm that it stopped streaming.
const STOP_REPLY_WAIT: Duration = Duration::from_millis(500);

/// A Watts up? PRO on a serial device.
#[derive(Debug, Clone)]
pub struct WattsUp {
    device: PathBuf,
    opts: SourceOptions,
}

impl WattsUp {
    /// The meter on `device`, logging every `opts.interval_s`.
    pub fn new(device: impl Into<PathBuf>, opts: SourceOptions) -> Self {
        WattsUp {
            device: device.into(),
            opts,
        }
    }
    /// The serial device.
    pub fn device(&self) -> &Path {
        &self.device
    }
}

impl PowerSource for WattsUp {
    fn kind(&self) -> &'static str {
        super::spec::WATTSUP_KIND
    }
    fn location(&self) -> String {
        self.device.display().to_string()
    }
    fn measures(&self) -> Measures {
        // Its WH field is a 0.1 Wh (360 J) counter: too coarse to integrate; power it is.
        Measures::Power
    }
    fn native_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.opts.interval_s))
    }
    fn reject_kinds(&self) -> &'static [&'static str] {
        &REJECT_KINDS
    }
    fn connect(&self) -> BoxFuture<'_, Result<Box<dyn Session>, SourceError>> {
        Box::pin(async move {
            let link = Link::open(&self.device, BAUD_RATES[0])?;
            Ok(Box::new(WattsUpSession {
                device: self.device.clone(),
                opts: self.opts.clone(),
                link: Some(link),
                pending: VecDeque::new(),
            }) as Box<dyn Session>)
        })
    }
}

/// An open serial port with its decoder.
pub(crate) struct Link {
    port: SerialStream,
    dec: Decoder,
    /// Baud rate the port is set to.
    pub(crate) baud: u32,
}

impl Link {
    /// Open `device` exclusively at `baud`, 8N1, no flow control.
    pub(crate) fn open(device: &Path, baud: u32) -> Result<Link, SourceError> {
        let dev = device.to_string_lossy().into_owned();
        let port = tokio_serial::new(&dev, baud)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            // serialport opens exclusively (TIOCEXCL + flock) by default: two readers of one
            // tty corrupt each other's records.
            .open_native_async()
            .map_err(|source| SourceError::Open {
                location: dev,
                source: Box::new(source),
            })?;
        Ok(Link {
            port,
            dec: Decoder::new(),
            baud,
        })
    }

    /// Send raw bytes.
    pub(crate) async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), SourceError> {
        Ok(self.port.write_all(bytes).await?)
    }

    /// Send a command.
    pub(crate) async fn send(&mut self, cmd: &Command) -> Result<(), SourceError> {
        self.send_bytes(&cmd.encode()).await
    }

    /// Read one chunk and decode it into `pending`; returns the first reply matching `want`.
    /// Cancel-safe: bytes are decoded as soon as they are read.
    async fn read_some(
        &mut self,
        pending: &mut VecDeque<SourceEvent>,
        want: impl Fn(&Reply) -> bool,
    ) -> Result<Option<Reply>, SourceError> {
        let mut buf = [0u8; 1024];
        let n = self.port.read(&mut buf).await?;
        if n == 0 {
            return Err(SourceError::Closed);
        }
        let mut hit = None;
        self.dec.feed(&buf[..n], |e| {
            if let Some(r) = queue(e, pending) {
                if hit.is_none() && want(&r) {
                    hit = Some(r);
                }
            }
        });
        Ok(hit)
    }

    /// Read until a reply matching `want` arrives or `limit` passes; records and rejections
    /// go to `pending` meanwhile.
    pub(crate) async fn wait_for(
        &mut self,
        pending: &mut VecDeque<SourceEvent>,
        limit: Duration,
        want: impl Fn(&Reply) -> bool + Copy,
    ) -> Result<Option<Reply>, SourceError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.read_some(pending, want)).await {
                Err(_) => return Ok(None),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Some(r))) => return Ok(Some(r)),
                Ok(Ok(None)) => {}
            }
        }
    }

    /// Send `cmd` and wait up to `limit` for a reply matching `want`.
    pub(crate) async fn ask(
        &mut self,
        pending: &mut VecDeque<SourceEvent>,
        cmd: &Command,
        limit: Duration,
        want: impl Fn(&Reply) -> bool + Copy,
    ) -> Result<Option<Reply>, SourceError> {
        self.send(cmd).await?;
        self.wait_for(pending, limit, want).await
    }

    /// Abort whatever the meter was doing and ask for its version.
    pub(crate) async fn probe_version(
        &mut self,
        pending: &mut VecDeque<SourceEvent>,
        limit: Duration,
    ) -> Result<Option<Version>, SourceError> {
        self.send_bytes(&[ABORT]).await?;
        match self
            .ask(pending, &Command::ReadVersion, limit, |r| {
                matches!(r, Reply::Version(_))
            })
            .await?
        {
            Some(Reply::Version(v)) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// End of the stream: a pending fragment is rejected.
    fn finish(&mut self, pending: &mut VecDeque<SourceEvent>) {
        self.dec.finish(|e| {
            queue(e, pending);
        });
    }
}

/// Queue a decoder event as a source event; replies other than records are handed back.
fn queue(e: Event, pending: &mut VecDeque<SourceEvent>) -> Option<Reply> {
    match e {
        Event::Packet {
            packet: Packet::Reply(Reply::Data(rec)),
            ..
        } => {
            pending.push_back(SourceEvent::Reading(Reading::stamped_now(rec.si_fields())));
            None
        }
        Event::Packet {
            packet: Packet::Reply(r),
            ..
        } => Some(r),
        Event::Rejected(r) => {
            pending.push_back(SourceEvent::Rejected {
                kind: r.kind.label(),
            });
            None
        }
        Event::Packet { .. } | Event::Banner { .. } => None,
    }
}

/// The identity of a meter from its version reply.
pub fn identity(v: &Version, baud: u32) -> Identity {
    Identity {
        meter_id: v.meter_id(),
        description: format!(
            "{} meter, hardware {}.{}, firmware {}.{} ({}), {baud} baud",
            v.model_name(),
            v.hw_major,
            v.hw_minor,
            v.fw_major,
            v.fw_minor,
            v.fw_timestamp
        ),
        firmware: Some(format!(
            "{}.{} ({})",
            v.fw_major, v.fw_minor, v.fw_timestamp
        )),
        baud: Some(baud),
    }
}

struct WattsUpSession {
    device: PathBuf,
    opts: SourceOptions,
    link: Option<Link>,
    /// Records and rejections received but not yet returned, in arrival order.
    pending: VecDeque<SourceEvent>,
}

impl WattsUpSession {
    fn link(&mut self) -> Result<(&mut Link, &mut VecDeque<SourceEvent>), SourceError> {
        match self.link.as_mut() {
            Some(l) => Ok((l, &mut self.pending)),
            None => Err(SourceError::Closed),
        }
    }

    async fn identify_inner(&mut self) -> Result<Identity, SourceError> {
        for baud in BAUD_RATES {
            if self.link.as_ref().map(|l| l.baud) != Some(baud) {
                // Close first: the port is held exclusively.
                self.link = None;
                self.link = Some(Link::open(&self.device, baud)?);
            }
            let limit = self.opts.reply_timeout;
            let (link, pending) = self.link()?;
            if let Some(v) = link.probe_version(pending, limit).await? {
                return Ok(identity(&v, baud));
            }
        }
        Err(SourceError::NoReply(format!(
            "no reply to the version request within {} s at {} baud: is this a Watts up? meter?",
            self.opts.reply_timeout.as_secs_f64(),
            BAUD_RATES.map(|b| b.to_string()).join(" and ")
        )))
    }

    async fn start_inner(&mut self) -> Result<(), SourceError> {
        let (reply_timeout, settle, interval_s) = (
            self.opts.reply_timeout,
            self.opts.settle,
            self.opts.interval_s,
        );
        let (link, pending) = self.link()?;
        link.ask(pending, &Command::ReadHeader, reply_timeout, |r| {
            matches!(r, Reply::Header(_))
        })
        .await?;
        link.send(&Command::ClearMemory).await?;
        // The meter needs a moment after clearing before it takes the next command.
        link.wait_for(pending, settle, |_| false).await?;
        link.send(&Command::StartExternal { interval_s }).await
    }

    async fn next_inner(&mut self) -> Result<SourceEvent, SourceError> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            let (link, pending) = self.link()?;
            link.read_some(pending, |_| false).await?;
        }
    }

    async fn stop_inner(mut self) -> Vec<SourceEvent> {
        let interval_s = self.opts.interval_s;
        if let Some(link) = self.link.as_mut() {
            // Switching to internal logging is the documented way to stop streaming; keep
            // whatever records were already on their way.
            if link
                .send(&Command::StartInternal { interval_s })
                .await
                .is_ok()
            {
                let _ = link
                    .wait_for(&mut self.pending, STOP_REPLY_WAIT, |r| {
                        matches!(r, Reply::Status { .. })
                    })
                    .await;
            }
            link.finish(&mut self.pending);
        }
        self.pending.into_iter().collect()
    }
}

impl Session for WattsUpSession {
    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, SourceError>> {
        Box::pin(self.identify_inner())
    }
    fn start(&mut self) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(self.start_inner())
    }
    fn next_event(&mut self) -> BoxFuture<'_, Result<SourceEvent, SourceError>> {
        Box::pin(self.next_inner())
    }
    fn take_pending(&mut self) -> Vec<SourceEvent> {
        self.pending.drain(..).collect()
    }
    fn stop(self: Box<Self>) -> BoxFuture<'static, Vec<SourceEvent>> {
        Box::pin(self.stop_inner())
    }
}
