//! A small QMP client over a unix socket: greeting, capabilities negotiation, commands with
//! timeouts, and events (which interleave with replies) collected with their arrival time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::CalibrateError;

/// Host wall clock, UTC ns.
pub fn utc_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

enum Incoming {
    Msg(i64, Value),
    Bad(String),
    Closed(String),
}

/// A QMP connection in command mode.
pub struct Qmp {
    socket: PathBuf,
    stream: UnixStream,
    rx: Receiver<Incoming>,
    next_id: u64,
    events: Vec<(i64, Value)>,
    /// The greeting QEMU sent (`{"QMP": {"version": ...}}`).
    pub greeting: Value,
}

impl Drop for Qmp {
    fn drop(&mut self) {
        // The reader thread holds a clone of the socket: shut it down so that QEMU sees the
        // client leave (it serves one client per socket) and the thread ends.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

impl Qmp {
    /// Connect (retrying until `timeout` while the socket does not accept yet), read the
    /// greeting and negotiate capabilities.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Qmp, CalibrateError> {
        let err = |m: String| CalibrateError::Qmp {
            socket: socket.to_path_buf(),
            message: m,
        };
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(err(format!("cannot connect: {e}"))),
            }
        };
        let reader = stream
            .try_clone()
            .map_err(|e| err(format!("cannot clone the socket: {e}")))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(reader);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) => {
                        let _ = tx.send(Incoming::Closed("connection closed by QEMU".into()));
                        return;
                    }
                    Ok(_) => {
                        let t = utc_now_ns();
                        let msg = match serde_json::from_str::<Value>(line.trim()) {
                            Ok(v) => Incoming::Msg(t, v),
                            Err(e) => Incoming::Bad(format!(
                                "malformed QMP message ({e}): {}",
                                line.trim()
                            )),
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Incoming::Closed(format!("read error: {e}")));
                        return;
                    }
                }
            }
        });
        let mut q = Qmp {
            socket: socket.to_path_buf(),
            stream,
            rx,
            next_id: 1,
            events: Vec::new(),
            greeting: Value::Null,
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(5));
        q.greeting = match q.rx.recv_timeout(left) {
            Ok(Incoming::Msg(_, v)) if v.get("QMP").is_some() => v,
            Ok(Incoming::Msg(_, v)) => {
                return Err(err(format!("expected the QMP greeting, got {v}")))
            }
            Ok(Incoming::Bad(m)) | Ok(Incoming::Closed(m)) => return Err(err(m)),
            Err(_) => return Err(err("no QMP greeting".into())),
        };
        q.execute("qmp_capabilities", None, Duration::from_secs(10))?;
        Ok(q)
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Process id of the peer of the socket (SO_PEERCRED): the QEMU process, unless the socket
    /// is forwarded by another process.
    pub fn peer_pid(&self) -> Option<u32> {
        use nix::libc;
        use std::os::fd::AsRawFd;
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `cred`, a plain C struct that
        // lives for the call; the descriptor is this connection's open socket.
        let r = unsafe {
            libc::getsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        (r == 0 && cred.pid > 0).then_some(cred.pid as u32)
    }

    /// QEMU's version from the greeting, `MAJOR.MINOR.MICRO`.
    pub fn qemu_version(&self) -> Option<String> {
        let q = self.greeting.get("QMP")?.get("version")?.get("qemu")?;
        Some(format!(
            "{}.{}.{}",
            q.get("major")?.as_u64()?,
            q.get("minor")?.as_u64()?,
            q.get("micro")?.as_u64()?
        ))
    }

    /// Run a command and return (arrival UTC ns, its `return` value); events arriving
    /// meanwhile are kept for [`Qmp::take_events`].
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<(i64, Value), CalibrateError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"execute": command, "id": id});
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        let socket = self.socket.clone();
        let err = |m: String| CalibrateError::Qmp {
            socket: socket.clone(),
            message: format!("{command}: {m}"),
        };
        self.stream
            .write_all(text.as_bytes())
            .map_err(|e| err(format!("write failed: {e}")))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Incoming::Msg(t, v)) => {
                    if v.get("event").is_some() {
                        self.events.push((t, v));
                    } else if v.get("id").and_then(Value::as_u64) == Some(id) {
                        if let Some(e) = v.get("error") {
                            return Err(CalibrateError::QmpCommand {
                                socket: self.socket.clone(),
                                command: command.into(),
                                message: e
                                    .get("desc")
                                    .and_then(Value::as_str)
                                    .unwrap_or("unknown error")
                                    .into(),
                            });
                        }
                        return Ok((t, v.get("return").cloned().unwrap_or(Value::Null)));
                    }
                }
                Ok(Incoming::Bad(m)) => return Err(err(m)),
                Ok(Incoming::Closed(m)) => return Err(err(m)),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(err(format!(
                        "no reply within {:.1} s",
                        timeout.as_secs_f64()
                    )))
                }
                Err(RecvTimeoutError::Disconnected) => return Err(err("connection lost".into())),
            }
        }
    }

    /// Events received so far (arrival UTC ns, the event), oldest first.
    pub fn take_events(&mut self) -> Vec<(i64, Value)> {
        loop {
            match self.rx.try_recv() {
                Ok(Incoming::Msg(t, v)) if v.get("event").is_some() => self.events.push((t, v)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::mem::take(&mut self.events)
    }

    /// Wait up to `timeout` for an event named `name`; every event seen (including it) is
    /// kept for [`Qmp::take_events`]. Returns whether it arrived.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> bool {
        let seen = |evs: &[(i64, Value)]| {
            evs.iter()
                .any(|(_, e)| e.get("event").and_then(Value::as_str) == Some(name))
        };
        if seen(&self.events) {
            return true;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(Incoming::Msg(t, v)) if v.get("event").is_some() => {
                    let hit = v.get("event").and_then(Value::as_str) == Some(name);
                    self.events.push((t, v));
                    if hit {
                        return true;
                    }
                }
                Ok(Incoming::Msg(..)) | Ok(Incoming::Bad(_)) => {}
                Ok(Incoming::Closed(_)) | Err(_) => return false,
            }
        }
    }
}
