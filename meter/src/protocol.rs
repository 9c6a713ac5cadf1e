//! The Watts up? PRO serial protocol: host commands, meter replies and data records.
//!
//! Packets run from `#` to `;`, arguments comma separated, the third being the count of those
//! that follow. The host sends upper case, the meter answers in lower case. This module
//! encodes every command and parses one packet (its bytes between `#` and `;`, already free of
//! CR, LF, TAB and NUL) into a [`Packet`]. Splitting a byte stream into packets is the job of
//! [`crate::decoder`].

use std::fmt;

pub use datasets::samples::{FIELD_COUNT, RECORD_FIELDS};

/// Ctrl-X: aborts any pending communication on the meter.
pub const ABORT: u8 = 0x18;

/// Divisor from the wire integer to the SI value, per field (see `RECORD_FIELDS` for units).
/// W, V: 0.1; A: mA; WH: 0.1 Wh; cost: mils; WH/Mo: Wh; PF, DC: percent; PC: count; Hz: 0.1;
/// VA: 0.1.
pub const FIELD_DIVISORS: [f64; FIELD_COUNT] = [
    10.0, 10.0, 1000.0, 10.0, 1000.0, 1.0, 1000.0, 10.0, 10.0, 1000.0, 10.0, 10.0, 1000.0, 100.0,
    100.0, 1.0, 10.0, 10.0,
];

/// Field names as the meter's header reply spells them.
pub const HEADER_NAMES: [&str; FIELD_COUNT] = [
    "W", "V", "A", "WH", "Cost", "WH/Mo", "Cost/Mo", "Wmax", "Vmax", "Amax", "Wmin", "Vmin",
    "Amin", "PF", "DC", "PC", "Hz", "VA",
];

/// Logging mode as reported by the status reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoggingMode {
    /// Logging suspended (0).
    Suspended,
    /// Logging to internal memory (1).
    Internal,
    /// Streaming records to the host (2).
    External,
}

impl LoggingMode {
    fn from_code(c: u32) -> Option<Self> {
        match c {
            0 => Some(LoggingMode::Suspended),
            1 => Some(LoggingMode::Internal),
            2 => Some(LoggingMode::External),
            _ => None,
        }
    }
    /// The wire code of the mode.
    pub fn code(self) -> u32 {
        match self {
            LoggingMode::Suspended => 0,
            LoggingMode::Internal => 1,
            LoggingMode::External => 2,
        }
    }
}

/// What the meter does when its memory is full (`#O`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FullMode {
    /// Stop logging (0).
    Stop,
    /// Wrap around (1).
    Wrap,
    /// Condense older records (2).
    Condense,
}

/// A host -> meter command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `#H,R,0;`: read the header (field names).
    ReadHeader,
    /// `#V,R,0;`: read the version.
    ReadVersion,
    /// `#L,W,3,E,<reserved>,<interval>;`: stream records to the host every interval.
    StartExternal { interval_s: u32 },
    /// `#L,W,3,I,<reserved>,<interval>;`: log to internal memory (clears it); stops streaming.
    StartInternal { interval_s: u32 },
    /// `#L,W,0;`: undocumented stop used by some tools; meters may answer with the version.
    StopLogging,
    /// `#D,R,0;`: download internal memory.
    DownloadMemory,
    /// `#R,W,0;`: clear memory; logging restarts.
    ClearMemory,
    /// `#S,R,0;`: read logging status.
    ReadStatus,
    /// `#S,W,2,<reserved>,<interval>;`: set the interval (clears memory).
    SetInterval { interval_s: u32 },
    /// `#C,R,0;`: read which fields records carry.
    ReadFields,
    /// `#C,W,18,<18 x 0|1>;`: choose the fields records carry (clears memory).
    WriteFields([bool; FIELD_COUNT]),
    /// `#U,R,0;`: read user parameters.
    ReadUser,
    /// `#O,R,0;`: read the memory-full mode.
    ReadFullMode,
    /// `#O,W,1,<mode>;`: set the memory-full mode.
    WriteFullMode(FullMode),
}

impl Command {
    /// The bytes to send to the meter.
    pub fn encode(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::ReadHeader => f.write_str("#H,R,0;"),
            Command::ReadVersion => f.write_str("#V,R,0;"),
            // Reserved is sent as 1, which every firmware accepts.
            Command::StartExternal { interval_s } => write!(f, "#L,W,3,E,1,{interval_s};"),
            Command::StartInternal { interval_s } => write!(f, "#L,W,3,I,1,{interval_s};"),
            Command::StopLogging => f.write_str("#L,W,0;"),
            Command::DownloadMemory => f.write_str("#D,R,0;"),
            Command::ClearMemory => f.write_str("#R,W,0;"),
            Command::ReadStatus => f.write_str("#S,R,0;"),
            Command::SetInterval { interval_s } => write!(f, "#S,W,2,1,{interval_s};"),
            Command::ReadFields => f.write_str("#C,R,0;"),
            Command::WriteFields(sel) => {
                f.write_str("#C,W,18")?;
                for s in sel {
                    write!(f, ",{}", u8::from(*s))?;
                }
                f.write_str(";")
            }
            Command::ReadUser => f.write_str("#U,R,0;"),
            Command::ReadFullMode => f.write_str("#O,R,0;"),
            Command::WriteFullMode(m) => write!(f, "#O,W,1,{};", *m as u8),
        }
    }
}

/// The meter's version reply (`#v`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Version {
    /// Model code: 0 Standard, 1 PRO, 2 ES, 3 .net, 4 Blind.
    pub model: u32,
    /// Memory size (records).
    pub memory: u32,
    /// Hardware major version.
    pub hw_major: u32,
    /// Hardware minor version (1 = old 19200-baud hardware).
    pub hw_minor: u32,
    /// Firmware major version.
    pub fw_major: u32,
    /// Firmware minor version.
    pub fw_minor: u32,
    /// Firmware build timestamp as printed (YYYYMMDDhhmm).
    pub fw_timestamp: String,
    /// Checksum field.
    pub checksum: u32,
}

impl Version {
    /// Human name of the model code.
    pub fn model_name(&self) -> &'static str {
        match self.model {
            0 => "Standard",
            1 => "PRO",
            2 => "ES",
            3 => ".net",
            4 => "Blind",
            _ => "unknown",
        }
    }
    /// A compact identity used as `meter_id` in datasets (no commas or spaces).
    pub fn meter_id(&self) -> String {
        format!(
            "wattsup-{}-hw{}.{}-fw{}.{}-{}",
            self.model_name().trim_start_matches('.'),
            self.hw_major,
            self.hw_minor,
            self.fw_major,
            self.fw_minor,
            self.fw_timestamp
        )
    }
}

/// A data record (`#d`): the 18 fields as wire integers, `None` where the meter sent `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Raw wire integers in `RECORD_FIELDS` order.
    pub raw: [Option<u32>; FIELD_COUNT],
}

impl Record {
    /// Field `i` in SI units (see `RECORD_FIELDS`).
    pub fn si(&self, i: usize) -> Option<f64> {
        // Divide (not multiply by 0.1) so 444 -> 44.4 exactly as printed.
        self.raw[i].map(|v| f64::from(v) / FIELD_DIVISORS[i])
    }
    /// All 18 fields in SI units.
    pub fn si_fields(&self) -> [Option<f64>; FIELD_COUNT] {
        std::array::from_fn(|i| self.si(i))
    }
    /// Active power, W.
    pub fn watts(&self) -> Option<f64> {
        self.si(0)
    }
    /// Encode as the meter sends it, with the `;\r\n` line end.
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(96);
        s.push_str("#d,-,18");
        for v in &self.raw {
            s.push(',');
            match v {
                Some(v) => s.push_str(&v.to_string()),
                None => s.push('_'),
            }
        }
        s.push_str(";\r\n");
        s
    }
}

/// A meter -> host reply or record.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `#d`: a data record.
    Data(Record),
    /// `#h`: field names.
    Header(Vec<String>),
    /// `#v`: version.
    Version(Version),
    /// `#s`: logging status (also the reply to starting internal logging).
    Status {
        interval_s: u32,
        logging: LoggingMode,
    },
    /// `#n` with 3 arguments: start of a memory download with its record count.
    MemoryStart { interval_s: u32, count: u32 },
    /// `#n` with 1 argument: the record limit after choosing fields.
    FieldLimit { limit: u32 },
    /// `#l`: end of a memory download.
    MemoryEnd { interval_s: u32 },
    /// `#u`: user parameters.
    User {
        rate_mils_per_kwh: u32,
        duty_threshold_w: u32,
        euro: bool,
    },
    /// `#c`: which fields records carry.
    Fields([bool; FIELD_COUNT]),
    /// `#o`: memory-full mode.
    FullMode(FullMode),
}

/// A parsed packet: a command (upper case) or a reply (lower case).
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// Host -> meter.
    Command(Command),
    /// Meter -> host.
    Reply(Reply),
}

/// Why a packet was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer than the three leading fields.
    #[error("packet too short: expected '#<cmd>,<sub>,<count>...'")]
    TooShort,
    /// The command letter is not one of the protocol's.
    #[error("unknown packet type {0:?}")]
    UnknownType(String),
    /// The count field is not a number.
    #[error("argument count {0:?} is not a number")]
    BadCount(String),
    /// The count field disagrees with the arguments present.
    #[error("argument count says {declared}, packet has {actual}")]
    CountMismatch { declared: usize, actual: usize },
    /// The packet type needs another number of arguments.
    #[error("'{kind}' needs {expected} arguments, got {actual}")]
    WrongArity {
        kind: char,
        expected: &'static str,
        actual: usize,
    },
    /// An argument that must be a non-negative integer is not.
    #[error("argument {index} {value:?} is not a non-negative integer")]
    BadNumber { index: usize, value: String },
    /// An argument has a value outside its domain.
    #[error("argument {index} {value:?}: {expected}")]
    BadValue {
        index: usize,
        value: String,
        expected: &'static str,
    },
}

/// Parse a non-negative integer of at most 9 digits without allocating.
#[inline]
fn parse_u32(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    let mut v: u32 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u32::from(d);
    }
    Some(v)
}

fn num(args: &[&[u8]], i: usize) -> Result<u32, PacketError> {
    parse_u32(args[i]).ok_or_else(|| PacketError::BadNumber {
        index: i + 1,
        value: String::from_utf8_lossy(args[i]).into_owned(),
    })
}

fn arity(kind: char, args: &[&[u8]], n: usize, expected: &'static str) -> Result<(), PacketError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(PacketError::WrongArity {
            kind,
            expected,
            actual: args.len(),
        })
    }
}

fn flags(args: &[&[u8]]) -> Result<[bool; FIELD_COUNT], PacketError> {
    let mut sel = [false; FIELD_COUNT];
    for (i, a) in args.iter().enumerate() {
        sel[i] = match *a {
            b"0" => false,
            b"1" => true,
            _ => {
                return Err(PacketError::BadValue {
                    index: i + 1,
                    value: String::from_utf8_lossy(a).into_owned(),
                    expected: "expected 0 or 1",
                })
            }
        };
    }
    Ok(sel)
}

/// Parse the 18 arguments of a data record. The hot path of decoding: no allocation.
#[inline]
fn parse_record(body: &[u8]) -> Result<Record, PacketError> {
    let mut raw = [None; FIELD_COUNT];
    let mut n = 0usize;
    for arg in body.split(|&c| c == b',') {
        if n == FIELD_COUNT {
            return Err(PacketError::CountMismatch {
                declared: FIELD_COUNT,
                actual: body.split(|&c| c == b',').count(),
            });
        }
        raw[n] = if arg == b"_" {
            None
        } else {
            Some(parse_u32(arg).ok_or_else(|| PacketError::BadNumber {
                index: n + 1,
                value: String::from_utf8_lossy(arg).into_owned(),
            })?)
        };
        n += 1;
    }
    if n != FIELD_COUNT {
        return Err(PacketError::CountMismatch {
            declared: FIELD_COUNT,
            actual: n,
        });
    }
    Ok(Record { raw })
}

/// Parse one packet given the bytes between `#` and `;` (exclusive), control bytes removed.
pub fn parse_packet(p: &[u8]) -> Result<Packet, PacketError> {
    // Fast path for the overwhelmingly common data record.
    if let Some(body) = p.strip_prefix(b"d,-,18,") {
        return parse_record(body).map(|r| Packet::Reply(Reply::Data(r)));
    }
    let mut it = p.splitn(4, |&c| c == b',');
    let (Some(kind), Some(_sub), Some(count)) = (it.next(), it.next(), it.next()) else {
        return Err(PacketError::TooShort);
    };
    let rest = it.next();
    let args: Vec<&[u8]> = match rest {
        Some(r) => r.split(|&c| c == b',').collect(),
        None => Vec::new(),
    };
    let declared = std::str::from_utf8(count)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .ok_or_else(|| PacketError::BadCount(String::from_utf8_lossy(count).into_owned()))?;
    if declared != args.len() {
        return Err(PacketError::CountMismatch {
            declared,
            actual: args.len(),
        });
    }
    let kind = match kind {
        [k] => *k as char,
        _ => {
            return Err(PacketError::UnknownType(
                String::from_utf8_lossy(kind).into_owned(),
            ))
        }
    };
    let text = |i: usize| String::from_utf8_lossy(args[i]).into_owned();
    let reply = match kind {
        'd' => {
            arity(kind, &args, FIELD_COUNT, "18")?;
            return parse_record(rest.unwrap_or_default()).map(|r| Packet::Reply(Reply::Data(r)));
        }
        'h' => Reply::Header((0..args.len()).map(text).collect()),
        'v' => {
            arity(kind, &args, 8, "8")?;
            Reply::Version(Version {
                model: num(&args, 0)?,
                memory: num(&args, 1)?,
                hw_major: num(&args, 2)?,
                hw_minor: num(&args, 3)?,
                fw_major: num(&args, 4)?,
                fw_minor: num(&args, 5)?,
                fw_timestamp: text(6),
                checksum: num(&args, 7)?,
            })
        }
        's' => {
            arity(kind, &args, 3, "3")?;
            let code = num(&args, 2)?;
            Reply::Status {
                interval_s: num(&args, 1)?,
                logging: LoggingMode::from_code(code).ok_or_else(|| PacketError::BadValue {
                    index: 3,
                    value: code.to_string(),
                    expected: "expected 0, 1 or 2",
                })?,
            }
        }
        'n' => match args.len() {
            3 => Reply::MemoryStart {
                interval_s: num(&args, 1)?,
                count: num(&args, 2)?,
            },
            1 => Reply::FieldLimit {
                limit: num(&args, 0)?,
            },
            n => {
                return Err(PacketError::WrongArity {
                    kind,
                    expected: "1 or 3",
                    actual: n,
                })
            }
        },
        'l' => {
            arity(kind, &args, 2, "2")?;
            Reply::MemoryEnd {
                interval_s: num(&args, 1)?,
            }
        }
        'u' => {
            arity(kind, &args, 3, "3")?;
            Reply::User {
                rate_mils_per_kwh: num(&args, 0)?,
                duty_threshold_w: num(&args, 1)?,
                euro: num(&args, 2)? != 0,
            }
        }
        'c' => {
            arity(kind, &args, FIELD_COUNT, "18")?;
            Reply::Fields(flags(&args)?)
        }
        'o' => {
            arity(kind, &args, 1, "1")?;
            Reply::FullMode(full_mode(&args, 0)?)
        }
        upper if upper.is_ascii_uppercase() => {
            return parse_command(upper, &args).map(Packet::Command)
        }
        other => return Err(PacketError::UnknownType(other.to_string())),
    };
    Ok(Packet::Reply(reply))
}

fn full_mode(args: &[&[u8]], i: usize) -> Result<FullMode, PacketError> {
    match num(args, i)? {
        0 => Ok(FullMode::Stop),
        1 => Ok(FullMode::Wrap),
        2 => Ok(FullMode::Condense),
        v => Err(PacketError::BadValue {
            index: i + 1,
            value: v.to_string(),
            expected: "expected 0, 1 or 2",
        }),
    }
}

fn parse_command(kind: char, args: &[&[u8]]) -> Result<Command, PacketError> {
    // The sub-command (R/W) is implied by the argument count for every command we accept.
    let cmd = match (kind, args.len()) {
        ('H', 0) => Command::ReadHeader,
        ('V', 0) => Command::ReadVersion,
        ('L', 0) => Command::StopLogging,
        ('L', 3) => {
            let interval_s = num(args, 2)?.max(1);
            match args[0] {
                b"E" => Command::StartExternal { interval_s },
                b"I" => Command::StartInternal { interval_s },
                other => {
                    return Err(PacketError::BadValue {
                        index: 1,
                        value: String::from_utf8_lossy(other).into_owned(),
                        expected: "expected E or I",
                    })
                }
            }
        }
        ('D', 0) => Command::DownloadMemory,
        ('R', 0) => Command::ClearMemory,
        ('S', 0) => Command::ReadStatus,
        ('S', 2) => Command::SetInterval {
            interval_s: num(args, 1)?.max(1),
        },
        ('C', 0) => Command::ReadFields,
        ('C', FIELD_COUNT) => Command::WriteFields(flags(args)?),
        ('U', 0) => Command::ReadUser,
        ('O', 0) => Command::ReadFullMode,
        ('O', 1) => Command::WriteFullMode(full_mode(args, 0)?),
        (k, n) => {
            return Err(PacketError::WrongArity {
                kind: k,
                expected: "a documented form",
                actual: n,
            })
        }
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(s: &str) -> Reply {
        let inner = s.strip_prefix('#').unwrap().strip_suffix(';').unwrap();
        match parse_packet(inner.as_bytes()).unwrap() {
            Packet::Reply(r) => r,
            p => panic!("not a reply: {p:?}"),
        }
    }

    #[test]
    fn decodes_the_documented_record_in_si_units() {
        let Reply::Data(r) =
            reply("#d,-,18,444,1198,378,89,0,39,3,444,1199,380,444,1197,378,88,0,0,601,499;")
        else {
            panic!()
        };
        assert_eq!(r.watts(), Some(44.4));
        assert_eq!(r.si(1), Some(119.8));
        assert_eq!(r.si(2), Some(0.378));
        assert_eq!(r.si(3), Some(8.9));
        assert_eq!(r.si(13), Some(0.88));
        assert_eq!(r.si(16), Some(60.1));
        assert_eq!(r.si(17), Some(49.9));
    }

    #[test]
    fn unselected_fields_are_missing_not_zero() {
        let Reply::Data(r) = reply("#d,-,18,356,2300,186,_,_,_,_,_,_,_,_,_,_,_,_,_,_,_;") else {
            panic!()
        };
        assert_eq!(r.watts(), Some(35.6));
        assert_eq!(r.si(1), Some(230.0));
        assert_eq!(r.si(3), None);
        assert_eq!(r.si(17), None);
    }

    #[test]
    fn decodes_every_reply_kind() {
        assert_eq!(
            reply(
                "#h,-,18,W,V,A,WH,Cost,WH/Mo,Cost/Mo,Wmax,Vmax,Amax,Wmin,Vmin,Amin,PF,DC,PC,Hz,VA;"
            ),
            Reply::Header(HEADER_NAMES.iter().map(|s| s.to_string()).collect())
        );
        let Reply::Version(v) = reply("#v,-,8,1,65206,5,2,3,14,200612211910,0;") else {
            panic!()
        };
        assert_eq!(
            (v.model_name(), v.hw_minor, v.fw_major, v.fw_minor),
            ("PRO", 2, 3, 14)
        );
        assert_eq!(v.meter_id(), "wattsup-PRO-hw5.2-fw3.14-200612211910");
        assert_eq!(
            reply("#s,-,3,_,1,2;"),
            Reply::Status {
                interval_s: 1,
                logging: LoggingMode::External
            }
        );
        assert_eq!(
            reply("#n,-,3,,2,120;"),
            Reply::MemoryStart {
                interval_s: 2,
                count: 120
            }
        );
        assert_eq!(reply("#n,-,1,4000;"), Reply::FieldLimit { limit: 4000 });
        assert_eq!(reply("#l,-,2,,2;"), Reply::MemoryEnd { interval_s: 2 });
        assert_eq!(
            reply("#u,-,3,100,5,1;"),
            Reply::User {
                rate_mils_per_kwh: 100,
                duty_threshold_w: 5,
                euro: true
            }
        );
        let Reply::Fields(f) = reply("#c,-,18,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0;") else {
            panic!()
        };
        assert_eq!(f.iter().filter(|b| **b).count(), 3);
        assert_eq!(reply("#o,-,1,1;"), Reply::FullMode(FullMode::Wrap));
    }

    #[test]
    fn every_command_round_trips_through_encode_and_parse() {
        let mut sel = [false; FIELD_COUNT];
        sel[0] = true;
        sel[16] = true;
        let all = [
            Command::ReadHeader,
            Command::ReadVersion,
            Command::StartExternal { interval_s: 1 },
            Command::StartInternal { interval_s: 60 },
            Command::StopLogging,
            Command::DownloadMemory,
            Command::ClearMemory,
            Command::ReadStatus,
            Command::SetInterval { interval_s: 5 },
            Command::ReadFields,
            Command::WriteFields(sel),
            Command::ReadUser,
            Command::ReadFullMode,
            Command::WriteFullMode(FullMode::Condense),
        ];
        for c in all {
            let wire = c.encode();
            let inner = &wire[1..wire.len() - 1];
            assert_eq!(parse_packet(inner), Ok(Packet::Command(c.clone())), "{c}");
        }
        assert_eq!(
            Command::StartExternal { interval_s: 1 }.to_string(),
            "#L,W,3,E,1,1;"
        );
        // The widely used empty Reserved form is accepted too.
        assert_eq!(
            parse_packet(b"L,W,3,E,,1"),
            Ok(Packet::Command(Command::StartExternal { interval_s: 1 }))
        );
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert!(matches!(
            parse_packet(b"d,-,18,1,2,3"),
            Err(PacketError::CountMismatch { .. })
        ));
        assert!(matches!(
            parse_packet(b"d,-,18,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,x"),
            Err(PacketError::BadNumber { index: 18, .. })
        ));
        assert!(matches!(
            parse_packet(b"d,-,18,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19"),
            Err(PacketError::CountMismatch { .. })
        ));
        assert!(matches!(parse_packet(b"v,-"), Err(PacketError::TooShort)));
        assert!(matches!(
            parse_packet(b"z,-,0"),
            Err(PacketError::UnknownType(_))
        ));
        assert!(matches!(
            parse_packet(b"d,-,18,-1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18"),
            Err(PacketError::BadNumber { index: 1, .. })
        ));
    }

    #[test]
    fn record_encoding_matches_the_wire() {
        let s = "#d,-,18,444,1198,378,89,0,39,3,444,1199,380,444,1197,378,88,0,0,601,499;";
        let Reply::Data(r) = reply(s) else { panic!() };
        assert_eq!(r.encode(), format!("{s}\r\n"));
    }
}
