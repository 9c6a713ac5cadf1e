//! Streaming decoder: arbitrary byte chunks in, packets and rejected fragments out.
//!
//! Tolerates what real meters send: NUL bytes, CR/LF/TAB inside packets, junk between
//! packets, the power-on banner, truncated records and records that lost their prefix. Every
//! rejected fragment is reported with its byte offset; nothing malformed becomes a packet.

use crate::protocol::{parse_packet, Packet, PacketError};

/// Longest packet accepted; a real record is under 100 bytes.
pub const MAX_PACKET_BYTES: usize = 512;
/// How many bytes of a rejected fragment are kept for the report.
const EXCERPT_BYTES: usize = 80;

/// Why bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum RejectKind {
    /// A packet cut short: a new `#` (or the end of input) came before its `;`.
    Truncated,
    /// A record body without its `#d,` prefix.
    LostPrefix,
    /// Bytes outside any packet that are not line ends or NULs.
    Junk,
    /// A `#...;` packet that does not parse.
    Malformed(String),
    /// A packet longer than `MAX_PACKET_BYTES` without `;`.
    Oversize,
}

impl RejectKind {
    /// A short label for summaries.
    pub fn label(&self) -> &'static str {
        match self {
            RejectKind::Truncated => "truncated",
            RejectKind::LostPrefix => "lost prefix",
            RejectKind::Junk => "junk",
            RejectKind::Malformed(_) => "malformed",
            RejectKind::Oversize => "oversize",
        }
    }
}

/// A rejected fragment of the byte stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    /// Offset of the fragment's first byte in the stream.
    pub offset: u64,
    /// Length of the fragment in bytes.
    pub len: u64,
    /// Why it was rejected.
    #[serde(flatten)]
    pub kind: RejectKind,
    /// The fragment's first bytes, control bytes escaped.
    pub excerpt: String,
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A well-formed packet starting at `offset` (its `#`).
    Packet { offset: u64, packet: Packet },
    /// The meter's power-on banner (text without `#`), e.g. `WattsUp.NET $ Version: 3.23 ...`.
    Banner { offset: u64, text: String },
    /// A rejected fragment.
    Rejected(Rejection),
}

/// Counts kept by the decoder.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecodeStats {
    /// Bytes consumed.
    pub bytes: u64,
    /// Well-formed packets.
    pub packets: u64,
    /// Data records among them.
    pub records: u64,
    /// NUL bytes skipped.
    pub nul_bytes: u64,
    /// Banners seen.
    pub banners: u64,
    /// Rejected fragments.
    pub rejected: u64,
    /// Rejected bytes.
    pub rejected_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between packets, nothing pending.
    Idle,
    /// Collecting bytes outside a packet (junk, banner or a prefix-less record).
    Outside,
    /// Inside a packet after its `#`.
    Packet,
}

/// Streaming decoder; feed it chunks split anywhere.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    /// Packet body (after `#`) or outside fragment, control bytes removed.
    buf: Vec<u8>,
    /// Offset where the pending packet or fragment began.
    start: u64,
    /// Raw length of the pending packet or fragment (control bytes included).
    raw_len: u64,
    stats: DecodeStats,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

fn excerpt(prefix: &[u8], bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in prefix.iter().chain(bytes).take(EXCERPT_BYTES) {
        match b {
            b' '..=b'~' => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if prefix.len() + bytes.len() > EXCERPT_BYTES {
        s.push_str("...");
    }
    s
}

impl Decoder {
    /// A decoder at offset 0.
    pub fn new() -> Self {
        Decoder {
            state: State::Idle,
            buf: Vec::with_capacity(128),
            start: 0,
            raw_len: 0,
            stats: DecodeStats::default(),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Bytes consumed so far (the offset of the next byte).
    pub fn offset(&self) -> u64 {
        self.stats.bytes
    }

    fn reject(&mut self, kind: RejectKind, emit: &mut impl FnMut(Event)) {
        let prefix: &[u8] = if self.state == State::Packet {
            b"#"
        } else {
            b""
        };
        let r = Rejection {
            offset: self.start,
            len: self.raw_len,
            excerpt: excerpt(prefix, &self.buf),
            kind,
        };
        self.stats.rejected += 1;
        self.stats.rejected_bytes += self.raw_len;
        emit(Event::Rejected(r));
    }

    /// Close the pending outside fragment: banner, lost-prefix record, or junk.
    fn close_outside(&mut self, emit: &mut impl FnMut(Event)) {
        let text = &self.buf;
        let printable = text.iter().all(|b| (b' '..=b'~').contains(b));
        if printable && (text.windows(7).any(|w| w.eq_ignore_ascii_case(b"wattsup"))) {
            self.stats.banners += 1;
            let t = String::from_utf8_lossy(text).trim().to_string();
            emit(Event::Banner {
                offset: self.start,
                text: t,
            });
        } else {
            let commas = text.iter().filter(|&&b| b == b',').count();
            let kind = if text.ends_with(b";") && commas >= 3 {
                RejectKind::LostPrefix
            } else {
                RejectKind::Junk
            };
            self.reject(kind, emit);
        }
        self.buf.clear();
        self.state = State::Idle;
    }

    fn close_packet(&mut self, emit: &mut impl FnMut(Event)) {
        match parse_packet(&self.buf) {
            Ok(packet) => {
                self.stats.packets += 1;
                if matches!(packet, Packet::Reply(crate::protocol::Reply::Data(_))) {
                    self.stats.records += 1;
                }
                emit(Event::Packet {
                    offset: self.start,
                    packet,
                });
            }
            Err(e) => self.reject(RejectKind::Malformed(describe(&e)), emit),
        }
        self.buf.clear();
        self.state = State::Idle;
    }

    /// Feed a chunk; events are passed to `emit` in stream order.
    pub fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(Event)) {
        let base = self.stats.bytes;
        let mut i = 0;
        while i < chunk.len() {
            match self.state {
                State::Packet => {
                    // Copy the run up to the next byte that needs a decision.
                    let run = chunk[i..]
                        .iter()
                        .position(|&b| matches!(b, b';' | b'#' | b'\r' | b'\n' | b'\t' | 0))
                        .unwrap_or(chunk.len() - i);
                    self.buf.extend_from_slice(&chunk[i..i + run]);
                    self.raw_len += run as u64;
                    i += run;
                    if self.buf.len() > MAX_PACKET_BYTES {
                        self.reject(RejectKind::Oversize, &mut emit);
                        self.buf.clear();
                        self.state = State::Idle;
                        continue;
                    }
                    let Some(&b) = chunk.get(i) else { break };
                    match b {
                        b';' => {
                            self.raw_len += 1;
                            i += 1;
                            self.close_packet(&mut emit);
                        }
                        b'#' => {
                            // A new packet began before this one ended.
                            self.reject(RejectKind::Truncated, &mut emit);
                            self.buf.clear();
                            self.start_packet(base + i as u64);
                            i += 1;
                        }
                        0 => {
                            self.stats.nul_bytes += 1;
                            self.raw_len += 1;
                            i += 1;
                        }
                        _ => {
                            // CR, LF, TAB inside a packet are ignored.
                            self.raw_len += 1;
                            i += 1;
                        }
                    }
                }
                State::Idle => {
                    let b = chunk[i];
                    match b {
                        b'#' => self.start_packet(base + i as u64),
                        0 => self.stats.nul_bytes += 1,
                        b'\r' | b'\n' | b'\t' | b' ' => {}
                        _ => {
                            self.state = State::Outside;
                            self.start = base + i as u64;
                            self.raw_len = 1;
                            self.buf.clear();
                            self.buf.push(b);
                        }
                    }
                    i += 1;
                }
                State::Outside => {
                    let b = chunk[i];
                    match b {
                        b'#' => {
                            self.close_outside(&mut emit);
                            self.start_packet(base + i as u64);
                        }
                        b'\r' | b'\n' => self.close_outside(&mut emit),
                        0 => {
                            self.stats.nul_bytes += 1;
                            self.raw_len += 1;
                        }
                        _ => {
                            self.raw_len += 1;
                            if self.buf.len() < MAX_PACKET_BYTES {
                                self.buf.push(b);
                            }
                        }
                    }
                    i += 1;
                }
            }
        }
        self.stats.bytes += chunk.len() as u64;
    }

    fn start_packet(&mut self, offset: u64) {
        self.state = State::Packet;
        self.start = offset;
        self.raw_len = 1;
        self.buf.clear();
    }

    /// End of input: whatever is pending is rejected (a packet without `;` is truncated).
    pub fn finish(&mut self, mut emit: impl FnMut(Event)) {
        match self.state {
            State::Idle => {}
            State::Outside => self.close_outside(&mut emit),
            State::Packet => {
                self.reject(RejectKind::Truncated, &mut emit);
                self.buf.clear();
                self.state = State::Idle;
            }
        }
    }

    /// True while a packet or fragment is pending (waiting for more bytes).
    pub fn pending(&self) -> bool {
        self.state != State::Idle
    }
}

fn describe(e: &PacketError) -> String {
    e.to_string()
}

/// Everything decoded from a complete byte buffer.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Packets with their offsets.
    pub packets: Vec<(u64, Packet)>,
    /// Banners with their offsets.
    pub banners: Vec<(u64, String)>,
    /// Rejected fragments.
    pub rejections: Vec<Rejection>,
    /// Counts.
    pub stats: DecodeStats,
}

/// Decode a whole buffer at once (a file, a test vector).
pub fn decode_all(bytes: &[u8]) -> Decoded {
    let mut d = Decoder::new();
    let mut out = Decoded::default();
    let mut sink = |e: Event| match e {
        Event::Packet { offset, packet } => out.packets.push((offset, packet)),
        Event::Banner { offset, text } => out.banners.push((offset, text)),
        Event::Rejected(r) => out.rejections.push(r),
    };
    d.feed(bytes, &mut sink);
    d.finish(&mut sink);
    out.stats = d.stats().clone();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Record, Reply};
    use proptest::prelude::*;

    const R1: &str = "#d,-,18,444,1198,378,89,0,39,3,444,1199,380,444,1197,378,88,0,0,601,499;";
    const R2: &str = "#d,-,18,0,1203,0,79,0,34,2,0,1203,0,0,1200,0,100,0,0,600,0;";

    fn records(d: &Decoded) -> Vec<Record> {
        d.packets
            .iter()
            .filter_map(|(_, p)| match p {
                Packet::Reply(Reply::Data(r)) => Some(*r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tolerates_nul_cr_lf_tab_inside_and_between_packets() {
        let input = format!("{R1}\0\r\n{}\r\0\n#d,-,18,\t0,1203,0,79,0,34,2,0,\r\n1203,0,0,1200,0,100,0,0,600,0;\r\n", R2);
        let d = decode_all(input.as_bytes());
        assert_eq!(records(&d).len(), 3);
        assert!(d.rejections.is_empty(), "{:?}", d.rejections);
        assert_eq!(d.stats.nul_bytes, 2);
    }

    #[test]
    fn rejects_truncated_records_with_their_offset() {
        let trunc = "#d,-,18,0,1201,0,6772,54,1613,129,0,1201,0,0,1199,0,100,0,0,60\r\n";
        let input = format!("{trunc}{R2}\r\n{}", &R1[..30]);
        let d = decode_all(input.as_bytes());
        assert_eq!(records(&d).len(), 1);
        assert_eq!(d.rejections.len(), 2);
        assert_eq!(d.rejections[0].offset, 0);
        assert_eq!(d.rejections[0].kind, RejectKind::Truncated);
        assert_eq!(d.rejections[0].len, trunc.len() as u64);
        let tail = (trunc.len() + R2.len() + 2) as u64;
        assert_eq!(d.rejections[1].offset, tail);
        assert_eq!(d.rejections[1].kind, RejectKind::Truncated);
    }

    #[test]
    fn banner_junk_and_lost_prefix() {
        let input = format!(
            "WattsUp.NET $ Version: 3.23 $ 200712212301 60Hz 120V\r\n@@garbage\r\n{R1}\r\n18,0,1203,0,79,0,34,2,0,1203,0,0,1200,0,100,0,0,600,0;\r\n{R2}\r\n"
        );
        let d = decode_all(input.as_bytes());
        assert_eq!(records(&d).len(), 2);
        assert_eq!(d.banners.len(), 1);
        assert!(d.banners[0].1.starts_with("WattsUp.NET"));
        let kinds: Vec<_> = d.rejections.iter().map(|r| r.kind.clone()).collect();
        assert_eq!(kinds, vec![RejectKind::Junk, RejectKind::LostPrefix]);
        let junk_off = input.find("@@").unwrap() as u64;
        assert_eq!(d.rejections[0].offset, junk_off);
        assert_eq!(d.rejections[0].excerpt, "@@garbage");
    }

    #[test]
    fn oversize_packets_resynchronise() {
        let input = format!("#{}\r\n{R1}", "1,".repeat(400));
        let d = decode_all(input.as_bytes());
        assert_eq!(records(&d).len(), 1);
        assert_eq!(d.rejections[0].kind, RejectKind::Oversize);
    }

    #[test]
    fn split_anywhere_gives_the_same_events() {
        let input = format!("junk\r\n{R1}\0\r\n#d,-,18,1,2\r\n{R2}\r\n");
        let whole = decode_all(input.as_bytes());
        for cut in 0..input.len() {
            let mut d = Decoder::new();
            let mut ev = Vec::new();
            d.feed(&input.as_bytes()[..cut], |e| ev.push(e));
            d.feed(&input.as_bytes()[cut..], |e| ev.push(e));
            d.finish(|e| ev.push(e));
            let recs = ev
                .iter()
                .filter(|e| matches!(e, Event::Packet { .. }))
                .count();
            let rej: Vec<_> = ev
                .iter()
                .filter_map(|e| match e {
                    Event::Rejected(r) => Some(r.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(recs, whole.packets.len(), "cut at {cut}");
            assert_eq!(rej, whole.rejections, "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn random_chunking_matches_whole_decoding(
            noise in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(0usize..2000, 0..20),
            reps in 1usize..10,
        ) {
            let mut input = Vec::new();
            for i in 0..reps {
                input.extend_from_slice(if i % 2 == 0 { R1 } else { R2 }.as_bytes());
                input.extend_from_slice(b"\r\n");
                if i == reps / 2 {
                    input.extend_from_slice(&noise);
                }
            }
            let whole = decode_all(&input);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
            cuts.sort();
            let mut d = Decoder::new();
            let mut packets = Vec::new();
            let mut rejections = Vec::new();
            let mut prev = 0;
            for c in cuts.into_iter().chain([input.len()]) {
                d.feed(&input[prev..c], |e| match e {
                    Event::Packet { offset, packet } => packets.push((offset, packet)),
                    Event::Rejected(r) => rejections.push(r),
                    Event::Banner { .. } => {}
                });
                prev = c;
            }
            d.finish(|e| if let Event::Rejected(r) = e { rejections.push(r) });
            prop_assert_eq!(&packets, &whole.packets);
            prop_assert_eq!(&rejections, &whole.rejections);
            // Every record that arrived intact before the noise survives it.
            prop_assert!(records(&whole).len() >= reps / 2);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_every_byte_is_accounted(
            bytes in proptest::collection::vec(any::<u8>(), 0..4000)
        ) {
            let d = decode_all(&bytes);
            prop_assert_eq!(d.stats.bytes, bytes.len() as u64);
            for r in &d.rejections {
                prop_assert!(r.offset + r.len <= bytes.len() as u64);
            }
        }
    }
}
