//! A link between two local QEMUs that behaves like a lab's: the migration stream goes from
//! the source through this relay (a unix socket it listens on) to the destination's incoming
//! unix socket, the forward path paced to a set rate, the return path unpaced. QEMU lifts its
//! own `max-bandwidth` at stop-and-copy, so a link limited by QEMU alone makes downtimes
//! unrealistically short; a relay keeps the last round at the link's rate, as a real NIC
//! would. It also counts the bytes it forwards: the link term of the host power model
//! ([`crate::hostpower`]).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running relay; stops (and closes its connections) when dropped.
#[derive(Debug)]
pub struct Relay {
    /// The unix socket the source connects to (`unix:PATH` as the migration URI).
    pub listen: PathBuf,
    /// Bytes forwarded from source to destination so far.
    pub forwarded: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<UnixStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Bytes per read and the burst a paced path may run ahead of its rate.
const CHUNK: usize = 32 * 1024;

impl Relay {
    /// Listen on `listen` and forward each connection to `target`, the forward path at
    /// `rate_bytes_per_s` (None: unpaced, only counted).
    pub fn start(
        listen: &Path,
        target: &Path,
        rate_bytes_per_s: Option<u64>,
    ) -> std::io::Result<Relay> {
        let _ = std::fs::remove_file(listen);
        let l = UnixListener::bind(listen)?;
        l.set_nonblocking(true)?;
        let forwarded = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let streams: Arc<Mutex<Vec<UnixStream>>> = Arc::new(Mutex::new(Vec::new()));
        let (f, s, st, target) = (
            forwarded.clone(),
            stop.clone(),
            streams.clone(),
            target.to_path_buf(),
        );
        let rate = rate_bytes_per_s.filter(|r| *r > 0);
        let thread = std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((src, _)) => {
                            if let Err(e) = connect_pair(src, &target, rate, &f, &st) {
                                // The source sees its connection closed and the migration
                                // fails, which the collector records.
                                let _ = e;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })?;
        Ok(Relay {
            listen: listen.to_path_buf(),
            forwarded,
            stop,
            streams,
            thread: Some(thread),
        })
    }
}

fn connect_pair(
    src: UnixStream,
    target: &Path,
    rate: Option<u64>,
    counter: &Arc<AtomicU64>,
    streams: &Arc<Mutex<Vec<UnixStream>>>,
) -> std::io::Result<()> {
    src.set_nonblocking(false)?;
    let dst = UnixStream::connect(target)?;
    if let Ok(mut v) = streams.lock() {
        v.push(src.try_clone()?);
        v.push(dst.try_clone()?);
    }
    let (mut src_back, mut dst_back) = (src.try_clone()?, dst.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut dst_back, &mut src_back);
        let _ = src_back.shutdown(std::net::Shutdown::Write);
    });
    let counter = counter.clone();
    std::thread::spawn(move || forward(src, dst, rate, &counter));
    Ok(())
}

/// Copy `src` to `dst`, never ahead of `rate` by more than one chunk.
fn forward(mut src: UnixStream, mut dst: UnixStream, rate: Option<u64>, counter: &AtomicU64) {
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(r) = rate {
            // Due time of the bytes sent so far: sleep until it before sending more.
            let due = Duration::from_secs_f64(sent as f64 / r as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if dst.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = dst.shutdown(std::net::Shutdown::Write);
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(v) = self.streams.lock() {
            for s in v.iter() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.listen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real socket pair through the relay: the bytes arrive intact, the counter says how
    /// many, and the paced rate is within a few percent of the set one over a few MB.
    #[test]
    fn the_relay_forwards_everything_at_its_rate_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("incoming.sock");
        let listen = dir.path().join("relay.sock");
        let server = UnixListener::bind(&target).unwrap();
        let rate = 8u64 << 20;
        let relay = Relay::start(&listen, &target, Some(rate)).unwrap();
        let total: usize = 4 << 20;
        let payload: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
        let expect = payload.clone();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut got = Vec::new();
            let t0 = Instant::now();
            let mut first = None;
            let mut buf = vec![0u8; 65536];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                first.get_or_insert_with(Instant::now);
                got.extend_from_slice(&buf[..n]);
            }
            // The return path works too.
            s.write_all(b"ok").unwrap();
            let _ = t0;
            (got, first.unwrap().elapsed())
        });
        let mut c = UnixStream::connect(&listen).unwrap();
        c.write_all(&payload).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        let (got, took) = reader.join().unwrap();
        assert_eq!(back, b"ok");
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "the bytes changed on the way");
        assert_eq!(relay.forwarded.load(Ordering::Relaxed), total as u64);
        // Paced: never faster than the rate (one chunk of slack); slower only by what the
        // machine's load adds, which this test does not bound.
        let min_s = (total - CHUNK) as f64 / rate as f64;
        let measured = total as f64 / took.as_secs_f64();
        assert!(
            took.as_secs_f64() >= min_s * 0.97,
            "took {took:?}, at least {min_s:.3} s expected at {rate} B/s (measured {measured:.0} B/s)"
        );
        drop(relay);
        assert!(!listen.exists());
    }

    #[test]
    fn an_unpaced_relay_only_counts() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("in.sock");
        let listen = dir.path().join("r.sock");
        let server = UnixListener::bind(&target).unwrap();
        let relay = Relay::start(&listen, &target, None).unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut v = Vec::new();
            s.read_to_end(&mut v).unwrap();
            v.len()
        });
        let mut c = UnixStream::connect(&listen).unwrap();
        c.write_all(&vec![1u8; 1 << 20]).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(h.join().unwrap(), 1 << 20);
        assert_eq!(relay.forwarded.load(Ordering::Relaxed), 1 << 20);
    }
}
