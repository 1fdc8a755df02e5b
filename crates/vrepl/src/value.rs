//! Column values as the binlog carries them, and their SQL literals.
//!
//! A stream copies rows between servers, so a value must survive
//! decode → literal → INSERT on another server bit for bit. That is why the
//! variants keep the binlog's own precision: DECIMAL stays exact text,
//! TIMESTAMP stays seconds since the epoch (no time zone is ever applied),
//! character data stays the bytes of the column's character set, and
//! ENUM/SET stay the index/bitmask the server stores.

use std::fmt::Write as _;

use crate::bytes::Cursor;
use crate::error::{Result, VreplError};

/// One decoded column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// TINYINT…BIGINT, signed.
    Int(i64),
    /// TINYINT…BIGINT UNSIGNED (BIGINT UNSIGNED needs all 64 bits).
    UInt(u64),
    Float(f32),
    Double(f64),
    /// DECIMAL as exact text with exactly the column's scale, e.g. `-12.340`.
    Decimal(String),
    /// YEAR; 0 is the zero year `0000`.
    Year(u16),
    /// DATE; all-zero is the zero date.
    Date {
        year: u16,
        month: u8,
        day: u8,
    },
    /// DATETIME(0..6), in no time zone at all (as stored).
    DateTime {
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        micros: u32,
    },
    /// TIMESTAMP(0..6) as the server stores it: UTC seconds since the epoch.
    /// `secs == 0` (with no micros) is the zero timestamp `0000-00-00 00:00:00`.
    Timestamp {
        secs: u32,
        micros: u32,
    },
    /// TIME(0..6), which may be negative and exceed 24 hours (±838:59:59).
    Time {
        negative: bool,
        hours: u16,
        minutes: u8,
        seconds: u8,
        micros: u32,
    },
    /// CHAR/VARCHAR/TEXT (and MariaDB's JSON, a LONGTEXT): the bytes in the
    /// column's character set.
    Text(Vec<u8>),
    /// BINARY/VARBINARY/BLOB (and GEOMETRY): raw bytes.
    Bytes(Vec<u8>),
    /// ENUM: the 1-based index of the member (0 is the invalid-value member).
    Enum(u16),
    /// SET: the bitmask of members.
    Set(u64),
    /// BIT(1..64), as an integer.
    Bit(u64),
    /// MySQL's binary JSON, converted to JSON text. (MariaDB's JSON is
    /// [`Value::Text`].)
    Json(String),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The SQL literal that stores exactly this value when inserted into a
    /// column of the same type, or matches it in a `WHERE col = literal`.
    ///
    /// Requirements on the session that runs the statement:
    /// * `time_zone = '+00:00'` ([`APPLIER_SESSION_SQL`]): TIMESTAMP values
    ///   are written as UTC wall-clock literals, which is the only way a
    ///   literal can name an instant exactly (in zones with DST one local hour
    ///   happens twice);
    /// * a `sql_mode` that accepts what the source accepted (zero dates, for
    ///   one, if the source holds them).
    ///
    /// Character data is written as a hex literal: the server copies the
    /// bytes into the column's character set without reinterpretation, so no
    /// connection character set can alter them.
    pub fn to_sql_literal(&self) -> String {
        let mut s = String::new();
        self.write_sql_literal(&mut s);
        s
    }

    /// Appends [`Value::to_sql_literal`] to `out` (the applier builds large
    /// multi-row statements and should not allocate per value).
    pub fn write_sql_literal(&self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = match self {
            Value::Null => write!(out, "NULL"),
            Value::Int(v) => {
                if *v < 0 {
                    out.push('-');
                }
                push_u64(out, v.unsigned_abs());
                Ok(())
            }
            Value::UInt(v) => {
                push_u64(out, *v);
                Ok(())
            }
            // Exponent form makes the server parse an approximate (double)
            // literal with correctly rounded strtod; Rust prints the shortest
            // digits that read back as the same double. A FLOAT is written as
            // the exact double it widens to, so that the server's double →
            // float conversion is exact instead of rounding twice.
            Value::Float(v) => write!(out, "{:e}", f64::from(*v)),
            Value::Double(v) => write!(out, "{v:e}"),
            Value::Decimal(d) => write!(out, "{d}"),
            Value::Year(y) => write!(out, "{y}"),
            Value::Date { .. }
            | Value::DateTime { .. }
            | Value::Timestamp { .. }
            | Value::Time { .. } => write!(out, "'{}'", Temporal(self)),
            Value::Text(b) | Value::Bytes(b) => {
                out.push_str("X'");
                push_hex(out, b);
                out.push('\'');
                Ok(())
            }
            Value::Json(j) => {
                // MySQL refuses JSON from a binary string, so name the
                // character set the text is in.
                out.push_str("CONVERT(X'");
                push_hex(out, j.as_bytes());
                write!(out, "' USING utf8mb4)")
            }
            Value::Enum(i) => write!(out, "{i}"),
            Value::Set(m) => write!(out, "{m}"),
            Value::Bit(b) => write!(out, "{b}"),
        };
    }
}

impl Value {
    /// Appends this value as one field of `LOAD DATA` text in the default
    /// format, spelled out as `CHARACTER SET binary FIELDS TERMINATED BY
    /// '\t' ENCLOSED BY '' ESCAPED BY '\\' LINES TERMINATED BY '\n'`. The
    /// field stores exactly what [`Value::write_sql_literal`] stores, under
    /// the same session requirements (UTC, a permissive `sql_mode`), with
    /// these differences the statement must account for:
    ///
    /// * ENUM, SET and BIT are written as their index / bitmask / integer,
    ///   which `LOAD DATA` would read as member names (ENUM, SET) or as
    ///   text bytes (BIT): load them into a user variable and assign
    ///   `CAST(@v AS UNSIGNED)`.
    /// * A YEAR is written with four digits: `LOAD DATA` reads the text
    ///   `0` as the year 2000, while `0000` stays the zero year. (The copy
    ///   reads YEAR columns as plain integers, which the caller must widen
    ///   the same way.)
    ///
    /// NULL is `\N`; anything else, even an empty string, is data. Bytes
    /// are escaped byte by byte (NUL, tab, newline, carriage return and the
    /// backslash), which only reads back unchanged because `CHARACTER SET
    /// binary` makes the server unescape byte by byte too: in a multi-byte
    /// character set a 0x5C byte inside a character is not an escape.
    pub fn write_load_field(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = match self {
            Value::Null => {
                out.extend_from_slice(b"\\N");
                Ok(())
            }
            Value::Int(v) => {
                if *v < 0 {
                    out.push(b'-');
                }
                push_u64_bytes(out, v.unsigned_abs());
                Ok(())
            }
            Value::UInt(v) | Value::Set(v) | Value::Bit(v) => {
                push_u64_bytes(out, *v);
                Ok(())
            }
            // The same text as the SQL literal (see there): the field is
            // parsed with the same correctly rounded strtod.
            Value::Float(v) => write!(out, "{:e}", f64::from(*v)),
            Value::Double(v) => write!(out, "{v:e}"),
            Value::Decimal(d) => {
                out.extend_from_slice(d.as_bytes());
                Ok(())
            }
            Value::Year(y) => write!(out, "{y:04}"),
            Value::Enum(i) => write!(out, "{i}"),
            Value::Date { .. }
            | Value::DateTime { .. }
            | Value::Timestamp { .. }
            | Value::Time { .. } => write!(out, "{}", Temporal(self)),
            Value::Text(b) | Value::Bytes(b) => {
                push_load_escaped(out, b);
                Ok(())
            }
            // MariaDB's JSON is text (and arrives as `Text`); MySQL's
            // refuses JSON from binary strings, LOAD DATA as well as hex
            // literals, so only MariaDB targets can load it this way.
            Value::Json(j) => {
                push_load_escaped(out, j.as_bytes());
                Ok(())
            }
        };
    }
}

/// Decimal digits of `n` into a byte buffer ([`push_u64`] for `LOAD DATA`).
fn push_u64_bytes(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `b` with `LOAD DATA`'s escapes (backslash): NUL as `\0` (a raw NUL is
/// read correctly too, but is fragile in any text tool looking at the
/// stream), the field and line terminators as `\t` and `\n`, `\r` as
/// `\r`, and the backslash itself doubled. Runs of ordinary bytes are
/// copied as slices.
fn push_load_escaped(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len());
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc = match c {
            0 => b'0',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\\' => b'\\',
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.push(b'\\');
        out.push(esc);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

/// Statements an applier session runs before using [`Value::to_sql_literal`].
pub const APPLIER_SESSION_SQL: &[&str] = &["SET time_zone = '+00:00'"];

/// The text of a temporal value, as MySQL spells it, without quotes: one
/// spelling for SQL literals and `LOAD DATA` fields. Other values write
/// nothing.
struct Temporal<'a>(&'a Value);

impl std::fmt::Display for Temporal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = match self.0 {
            Value::Date { year, month, day } => {
                return write!(f, "{year:04}-{month:02}-{day:02}");
            }
            Value::DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                micros,
            } => {
                write!(
                    f,
                    "{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}"
                )?;
                *micros
            }
            Value::Timestamp { secs: 0, micros: 0 } => return f.write_str("0000-00-00 00:00:00"),
            Value::Timestamp { secs, micros } => {
                let (y, mo, d, h, mi, s) = utc_from_epoch(*secs);
                write!(f, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")?;
                *micros
            }
            Value::Time {
                negative,
                hours,
                minutes,
                seconds,
                micros,
            } => {
                let sign = if *negative { "-" } else { "" };
                write!(f, "{sign}{hours:02}:{minutes:02}:{seconds:02}")?;
                *micros
            }
            _ => return Ok(()),
        };
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        Ok(())
    }
}

/// Decimal digits of `n` (what `{n}` prints, without the formatting
/// machinery: copying writes a few million of these).
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// Upper-case hex digits of `b`, through a stack buffer (pushing chars one
/// at a time is several times slower on long values).
fn push_hex(out: &mut String, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(b.len() * 2);
    let mut buf = [0u8; 256];
    for chunk in b.chunks(buf.len() / 2) {
        for (pair, &x) in buf.chunks_exact_mut(2).zip(chunk) {
            pair[0] = HEX[usize::from(x >> 4)];
            pair[1] = HEX[usize::from(x & 15)];
        }
        // Only ASCII hex digits were written.
        out.push_str(std::str::from_utf8(&buf[..chunk.len() * 2]).unwrap_or_default());
    }
}

/// UTC civil time of `secs` since 1970-01-01 (Howard Hinnant's days→civil
/// algorithm), for TIMESTAMP literals.
fn utc_from_epoch(secs: u32) -> (i64, u32, u32, u32, u32, u32) {
    let secs = i64::from(secs);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

// ------------------------------------------------------------ decoding

/// A column's type as a rows event needs it: the TABLE_MAP type code with
/// its metadata already interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Tiny,
    Short,
    Int24,
    Long,
    LongLong,
    Float,
    Double,
    Year,
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// DATE (3-byte "newdate" format, type 10 or 14).
    Date,
    /// Pre-5.6 TIME (3 bytes, HHMMSS).
    Time,
    Time2 {
        fsp: u8,
    },
    /// Pre-5.6 DATETIME (8 bytes, YYYYMMDDHHMMSS).
    DateTime,
    DateTime2 {
        fsp: u8,
    },
    /// Pre-5.6 TIMESTAMP (4 bytes).
    Timestamp,
    Timestamp2 {
        fsp: u8,
    },
    /// VARCHAR/VARBINARY with their maximum length in bytes.
    Varchar {
        max_len: u16,
    },
    /// CHAR/BINARY with their maximum length in bytes.
    Char {
        max_len: u16,
    },
    /// BLOB/TEXT family and GEOMETRY: `len_bytes` bytes of length prefix.
    Blob {
        len_bytes: u8,
    },
    Enum {
        pack_len: u8,
    },
    Set {
        pack_len: u8,
    },
    Bit {
        bits: u16,
    },
    /// MySQL's binary JSON with a `len_bytes` length prefix.
    Json {
        len_bytes: u8,
    },
}

/// Column type codes of the binlog (`enum_field_types`).
pub(crate) mod code {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

impl ColumnKind {
    /// How many metadata bytes the TABLE_MAP event stores for `type_code`.
    pub(crate) fn metadata_len(type_code: u8) -> Result<usize> {
        use code::*;
        Ok(match type_code {
            FLOAT | DOUBLE | BLOB | TINY_BLOB | MEDIUM_BLOB | LONG_BLOB | GEOMETRY | JSON
            | TIMESTAMP2 | DATETIME2 | TIME2 => 1,
            VARCHAR | VAR_STRING | BIT | NEWDECIMAL | STRING | ENUM | SET => 2,
            DECIMAL | TINY | SHORT | LONG | TIMESTAMP | LONGLONG | INT24 | DATE | TIME
            | DATETIME | YEAR | NEWDATE => 0,
            other => {
                return Err(VreplError::Unsupported(format!(
                    "binlog column type {other}"
                )));
            }
        })
    }

    /// Interprets a TABLE_MAP column type and its metadata bytes.
    pub(crate) fn from_table_map(type_code: u8, meta: &[u8]) -> Result<ColumnKind> {
        use code::*;
        let m0 = meta.first().copied().unwrap_or(0);
        let m1 = meta.get(1).copied().unwrap_or(0);
        let le16 = u16::from(m0) | (u16::from(m1) << 8);
        Ok(match type_code {
            TINY => ColumnKind::Tiny,
            SHORT => ColumnKind::Short,
            INT24 => ColumnKind::Int24,
            LONG => ColumnKind::Long,
            LONGLONG => ColumnKind::LongLong,
            FLOAT => ColumnKind::Float,
            DOUBLE => ColumnKind::Double,
            YEAR => ColumnKind::Year,
            NEWDECIMAL => {
                if m0 == 0 || m1 > m0 || m0 > 65 {
                    return Err(VreplError::malformed(
                        "TABLE_MAP",
                        format!("DECIMAL precision {m0} scale {m1}"),
                    ));
                }
                ColumnKind::Decimal {
                    precision: m0,
                    scale: m1,
                }
            }
            DATE | NEWDATE => ColumnKind::Date,
            TIME => ColumnKind::Time,
            TIME2 => ColumnKind::Time2 { fsp: fsp(m0)? },
            DATETIME => ColumnKind::DateTime,
            DATETIME2 => ColumnKind::DateTime2 { fsp: fsp(m0)? },
            TIMESTAMP => ColumnKind::Timestamp,
            TIMESTAMP2 => ColumnKind::Timestamp2 { fsp: fsp(m0)? },
            VARCHAR | VAR_STRING => ColumnKind::Varchar { max_len: le16 },
            BIT => {
                let bits = u16::from(m1) * 8 + u16::from(m0);
                if bits == 0 || bits > 64 {
                    return Err(VreplError::malformed("TABLE_MAP", format!("BIT({bits})")));
                }
                ColumnKind::Bit { bits }
            }
            BLOB | TINY_BLOB | MEDIUM_BLOB | LONG_BLOB | GEOMETRY => {
                if !(1..=4).contains(&m0) {
                    return Err(VreplError::malformed(
                        "TABLE_MAP",
                        format!("BLOB length prefix of {m0} bytes"),
                    ));
                }
                ColumnKind::Blob { len_bytes: m0 }
            }
            JSON => {
                if !(1..=4).contains(&m0) {
                    return Err(VreplError::malformed(
                        "TABLE_MAP",
                        format!("JSON length prefix of {m0} bytes"),
                    ));
                }
                ColumnKind::Json { len_bytes: m0 }
            }
            // CHAR, ENUM and SET share the STRING type code; the first
            // metadata byte holds the real type, and long CHARs borrow two
            // of its bits for the length (MySQL bug #37426).
            STRING | ENUM | SET => {
                let (real, len) = if m0 & 0x30 != 0x30 {
                    (
                        m0 | 0x30,
                        u16::from(m1) | (u16::from((m0 & 0x30) ^ 0x30) << 4),
                    )
                } else {
                    (m0, u16::from(m1))
                };
                match real {
                    ENUM => {
                        if !(1..=2).contains(&m1) {
                            return Err(VreplError::malformed(
                                "TABLE_MAP",
                                format!("ENUM of {m1} bytes"),
                            ));
                        }
                        ColumnKind::Enum { pack_len: m1 }
                    }
                    SET => {
                        if !(1..=8).contains(&m1) {
                            return Err(VreplError::malformed(
                                "TABLE_MAP",
                                format!("SET of {m1} bytes"),
                            ));
                        }
                        ColumnKind::Set { pack_len: m1 }
                    }
                    STRING => ColumnKind::Char { max_len: len },
                    other => {
                        return Err(VreplError::malformed(
                            "TABLE_MAP",
                            format!("STRING column with real type {other}"),
                        ));
                    }
                }
            }
            other => {
                return Err(VreplError::Unsupported(format!(
                    "binlog column type {other}"
                )));
            }
        })
    }

    /// Whether the server lists this column in the SIGNEDNESS optional
    /// metadata (numeric columns, YEAR included).
    pub(crate) fn is_numeric(self) -> bool {
        matches!(
            self,
            ColumnKind::Tiny
                | ColumnKind::Short
                | ColumnKind::Int24
                | ColumnKind::Long
                | ColumnKind::LongLong
                | ColumnKind::Float
                | ColumnKind::Double
                | ColumnKind::Year
                | ColumnKind::Decimal { .. }
        )
    }

    /// Whether the server lists this column in the (DEFAULT|COLUMN)_CHARSET
    /// optional metadata.
    pub(crate) fn is_character(self) -> bool {
        matches!(
            self,
            ColumnKind::Varchar { .. } | ColumnKind::Char { .. } | ColumnKind::Blob { .. }
        )
    }
}

fn fsp(m: u8) -> Result<u8> {
    if m > 6 {
        return Err(VreplError::malformed(
            "TABLE_MAP",
            format!("fractional seconds precision {m}"),
        ));
    }
    Ok(m)
}

/// Decodes one non-NULL value of a row image.
///
/// `unsigned` comes from the SIGNEDNESS metadata (or the schema); `binary`
/// says whether character-type bytes are binary (charset 63) rather than
/// text.
pub(crate) fn decode_value(
    kind: ColumnKind,
    unsigned: bool,
    binary: bool,
    c: &mut Cursor<'_>,
) -> Result<Value> {
    let int = |v: u64, bytes: u32, c_unsigned: bool| -> Value {
        if c_unsigned {
            Value::UInt(v)
        } else {
            let shift = 64 - bytes * 8;
            Value::Int(((v << shift) as i64) >> shift)
        }
    };
    Ok(match kind {
        ColumnKind::Tiny => int(c.uint_le(1)?, 1, unsigned),
        ColumnKind::Short => int(c.uint_le(2)?, 2, unsigned),
        ColumnKind::Int24 => int(c.uint_le(3)?, 3, unsigned),
        ColumnKind::Long => int(c.uint_le(4)?, 4, unsigned),
        ColumnKind::LongLong => int(c.uint_le(8)?, 8, unsigned),
        ColumnKind::Float => Value::Float(f32::from_bits(c.u32_le()?)),
        ColumnKind::Double => Value::Double(f64::from_bits(c.u64_le()?)),
        ColumnKind::Year => {
            let y = c.u8()?;
            Value::Year(if y == 0 { 0 } else { 1900 + u16::from(y) })
        }
        ColumnKind::Decimal { precision, scale } => {
            Value::Decimal(decode_decimal(c, precision, scale)?)
        }
        ColumnKind::Date => {
            let v = c.uint_le(3)?;
            Value::Date {
                year: (v >> 9) as u16,
                month: ((v >> 5) & 15) as u8,
                day: (v & 31) as u8,
            }
        }
        ColumnKind::Time => {
            let raw = c.uint_le(3)?;
            let v = ((raw << 40) as i64) >> 40;
            let a = v.unsigned_abs();
            Value::Time {
                negative: v < 0,
                hours: (a / 10_000) as u16,
                minutes: (a / 100 % 100) as u8,
                seconds: (a % 100) as u8,
                micros: 0,
            }
        }
        ColumnKind::Time2 { fsp } => decode_time2(c, fsp)?,
        ColumnKind::DateTime => {
            let v = c.u64_le()?;
            let (d, t) = (v / 1_000_000, v % 1_000_000);
            Value::DateTime {
                year: (d / 10_000) as u16,
                month: (d / 100 % 100) as u8,
                day: (d % 100) as u8,
                hour: (t / 10_000) as u8,
                minute: (t / 100 % 100) as u8,
                second: (t % 100) as u8,
                micros: 0,
            }
        }
        ColumnKind::DateTime2 { fsp } => {
            let packed = c.uint_be(5)? as i64 - 0x80_0000_0000;
            let micros = read_frac(c, fsp)?;
            if packed < 0 || micros < 0 {
                return Err(VreplError::malformed("rows event", "negative DATETIME"));
            }
            let ymd = packed >> 17;
            let ym = ymd >> 5;
            let hms = packed & ((1 << 17) - 1);
            Value::DateTime {
                year: (ym / 13) as u16,
                month: (ym % 13) as u8,
                day: (ymd & 31) as u8,
                hour: (hms >> 12) as u8,
                minute: ((hms >> 6) & 63) as u8,
                second: (hms & 63) as u8,
                micros: micros as u32,
            }
        }
        ColumnKind::Timestamp => Value::Timestamp {
            secs: c.u32_le()?,
            micros: 0,
        },
        ColumnKind::Timestamp2 { fsp } => {
            let secs = c.uint_be(4)? as u32;
            let micros = read_frac(c, fsp)?;
            if micros < 0 {
                return Err(VreplError::malformed("rows event", "negative TIMESTAMP"));
            }
            Value::Timestamp {
                secs,
                micros: micros as u32,
            }
        }
        ColumnKind::Varchar { max_len } => {
            let n = if max_len > 255 {
                c.uint_le(2)?
            } else {
                c.uint_le(1)?
            };
            chars(c.bytes(n as usize)?, binary)
        }
        ColumnKind::Char { max_len } => {
            let n = if max_len > 255 {
                c.uint_le(2)?
            } else {
                c.uint_le(1)?
            };
            let b = c.bytes(n as usize)?;
            if binary && b.len() < usize::from(max_len) {
                // The binlog drops BINARY(n)'s trailing zero bytes (its pad
                // character); the column always holds all n bytes.
                let mut v = b.to_vec();
                v.resize(usize::from(max_len), 0);
                Value::Bytes(v)
            } else {
                chars(b, binary)
            }
        }
        ColumnKind::Blob { len_bytes } => {
            let n = c.uint_le(usize::from(len_bytes))?;
            chars(c.bytes(n as usize)?, binary)
        }
        ColumnKind::Enum { pack_len } => Value::Enum(c.uint_le(usize::from(pack_len))? as u16),
        ColumnKind::Set { pack_len } => Value::Set(c.uint_le(usize::from(pack_len))?),
        ColumnKind::Bit { bits } => Value::Bit(c.uint_be(usize::from(bits.div_ceil(8)))?),
        ColumnKind::Json { len_bytes } => {
            let n = c.uint_le(usize::from(len_bytes))?;
            Value::Json(mysql_json_to_text(c.bytes(n as usize)?)?)
        }
    })
}

fn chars(b: &[u8], binary: bool) -> Value {
    if binary {
        Value::Bytes(b.to_vec())
    } else {
        Value::Text(b.to_vec())
    }
}

/// The fractional part of TIME2/DATETIME2/TIMESTAMP2 in microseconds: a
/// big-endian signed integer of (fsp+1)/2 bytes counting units of
/// 10^(6-2*bytes) µs.
fn read_frac(c: &mut Cursor<'_>, fsp: u8) -> Result<i64> {
    Ok(match fsp {
        0 => 0,
        1 | 2 => i64::from(c.u8()? as i8) * 10_000,
        3 | 4 => i64::from(c.uint_be(2)? as u16 as i16) * 100,
        _ => {
            let v = c.uint_be(3)? as i64;
            (v << 40) >> 40
        }
    })
}

/// TIME2: 3 bytes of `(sign) hour:10 minute:6 second:6` offset by 0x800000,
/// then the fraction; negative values store the fraction's complement, so
/// the two parts are combined into one packed integer before splitting.
fn decode_time2(c: &mut Cursor<'_>, fsp: u8) -> Result<Value> {
    const INT_OFS: i64 = 0x80_0000;
    // packed = (int part << 24) + micros, as MySQL's my_time_packed_from_binary.
    let packed: i64 = match fsp {
        0 => (c.uint_be(3)? as i64 - INT_OFS) << 24,
        1 | 2 => {
            let mut int = c.uint_be(3)? as i64 - INT_OFS;
            let mut frac = i64::from(c.u8()?);
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x100;
            }
            (int << 24) + frac * 10_000
        }
        3 | 4 => {
            let mut int = c.uint_be(3)? as i64 - INT_OFS;
            let mut frac = c.uint_be(2)? as i64;
            if int < 0 && frac != 0 {
                int += 1;
                frac -= 0x1_0000;
            }
            (int << 24) + frac * 100
        }
        _ => c.uint_be(6)? as i64 - 0x8000_0000_0000,
    };
    let negative = packed < 0;
    let a = packed.unsigned_abs();
    let hms = a >> 24;
    let micros = (a & 0xff_ffff) as u32;
    if micros > 999_999 {
        return Err(VreplError::malformed(
            "rows event",
            format!("TIME fraction {micros}"),
        ));
    }
    Ok(Value::Time {
        negative,
        hours: ((hms >> 12) & 0x3ff) as u16,
        minutes: ((hms >> 6) & 63) as u8,
        seconds: (hms & 63) as u8,
        micros,
    })
}

const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// The binary DECIMAL format: groups of 9 digits in 4 big-endian bytes,
/// leading and trailing partial groups in fewer bytes, the sign in the
/// top bit (set for positive), negative numbers stored complemented.
pub(crate) fn decode_decimal(c: &mut Cursor<'_>, precision: u8, scale: u8) -> Result<String> {
    let (precision, scale) = (usize::from(precision), usize::from(scale));
    let intg = precision - scale;
    let (intg0, intg0x) = (intg / 9, intg % 9);
    let (frac0, frac0x) = (scale / 9, scale % 9);
    let size = intg0 * 4 + DIG2BYTES[intg0x] + frac0 * 4 + DIG2BYTES[frac0x];
    let mut b = c.bytes(size)?.to_vec();
    if b.is_empty() {
        return Err(VreplError::malformed("rows event", "empty DECIMAL"));
    }
    let negative = b[0] & 0x80 == 0;
    b[0] ^= 0x80;
    if negative {
        b.iter_mut().for_each(|x| *x = !*x);
    }
    let mut d = Cursor::new(&b, "DECIMAL value");
    let bad = |v: u64, digits: usize| {
        VreplError::malformed(
            "rows event",
            format!("DECIMAL group {v} exceeds {digits} digits"),
        )
    };
    let mut int_digits = String::new();
    if intg0x > 0 {
        let v = d.uint_be(DIG2BYTES[intg0x])?;
        if v >= 10u64.pow(intg0x as u32) {
            return Err(bad(v, intg0x));
        }
        let _ = write!(int_digits, "{v}");
    }
    for _ in 0..intg0 {
        let v = d.uint_be(4)?;
        if v >= 1_000_000_000 {
            return Err(bad(v, 9));
        }
        let _ = write!(int_digits, "{v:09}");
    }
    let mut frac_digits = String::new();
    for _ in 0..frac0 {
        let v = d.uint_be(4)?;
        if v >= 1_000_000_000 {
            return Err(bad(v, 9));
        }
        let _ = write!(frac_digits, "{v:09}");
    }
    if frac0x > 0 {
        let v = d.uint_be(DIG2BYTES[frac0x])?;
        if v >= 10u64.pow(frac0x as u32) {
            return Err(bad(v, frac0x));
        }
        let _ = write!(frac_digits, "{v:0width$}", width = frac0x);
    }
    let int_digits = int_digits.trim_start_matches('0');
    let int_digits = if int_digits.is_empty() {
        "0"
    } else {
        int_digits
    };
    let zero = int_digits == "0" && frac_digits.bytes().all(|x| x == b'0');
    let mut out = String::with_capacity(precision + 3);
    if negative && !zero {
        out.push('-');
    }
    out.push_str(int_digits);
    if scale > 0 {
        out.push('.');
        out.push_str(&frac_digits);
    }
    Ok(out)
}

/// MySQL stores JSON columns in its binary JSONB format; mysql_common knows
/// it, and its JSON text is what MySQL itself accepts back.
fn mysql_json_to_text(b: &[u8]) -> Result<String> {
    if b.is_empty() {
        // MySQL writes an empty value for JSON null in some versions.
        return Ok("null".to_string());
    }
    let mut pb = mysql_common::io::ParseBuf(b);
    let v: mysql_common::binlog::jsonb::Value<'_> = pb
        .parse(())
        .map_err(|e| VreplError::malformed("MySQL JSON value", e.to_string()))?;
    let j = serde_json::Value::try_from(v)
        .map_err(|e| VreplError::malformed("MySQL JSON value", e.to_string()))?;
    Ok(j.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8], p: u8, s: u8) -> String {
        decode_decimal(&mut Cursor::new(bytes, "t"), p, s).unwrap()
    }

    #[test]
    fn decimal_known_encodings() {
        // MySQL's documented example: DECIMAL(14,4) 1234567890.1234.
        assert_eq!(
            dec(&[0x81, 0x0D, 0xFB, 0x38, 0xD2, 0x04, 0xD2], 14, 4),
            "1234567890.1234"
        );
        // and its negation.
        assert_eq!(
            dec(&[0x7E, 0xF2, 0x04, 0xC7, 0x2D, 0xFB, 0x2D], 14, 4),
            "-1234567890.1234"
        );
        assert_eq!(dec(&[0x80, 0x00], 4, 2), "0.00");
        assert_eq!(dec(&[0x80], 2, 0), "0");
        assert!(decode_decimal(&mut Cursor::new(&[0x80], "t"), 14, 4).is_err());
    }

    #[test]
    fn ints_by_signedness() {
        let v = |b: &[u8], k, u| decode_value(k, u, false, &mut Cursor::new(b, "t")).unwrap();
        assert_eq!(v(&[0xff], ColumnKind::Tiny, false), Value::Int(-1));
        assert_eq!(v(&[0xff], ColumnKind::Tiny, true), Value::UInt(255));
        assert_eq!(v(&[0xff; 3], ColumnKind::Int24, false), Value::Int(-1));
        assert_eq!(
            v(&[0xff; 8], ColumnKind::LongLong, true),
            Value::UInt(u64::MAX)
        );
        assert_eq!(
            v(&[0, 0, 0, 0, 0, 0, 0, 0x80], ColumnKind::LongLong, false),
            Value::Int(i64::MIN)
        );
    }

    #[test]
    fn time2_negative_with_fraction() {
        // -00:00:01.5 at fsp 1: int part -2 (complemented fraction), then
        // +1 with the fraction 0x100-50.
        let int = (0x80_0000i64 - 2) as u64;
        let bytes = [
            (int >> 16) as u8,
            (int >> 8) as u8,
            int as u8,
            0x100u16.wrapping_sub(50) as u8,
        ];
        let v = decode_value(
            ColumnKind::Time2 { fsp: 1 },
            false,
            false,
            &mut Cursor::new(&bytes, "t"),
        )
        .unwrap();
        assert_eq!(
            v,
            Value::Time {
                negative: true,
                hours: 0,
                minutes: 0,
                seconds: 1,
                micros: 500_000
            }
        );
        assert_eq!(v.to_sql_literal(), "'-00:00:01.500000'");
    }

    #[test]
    fn literals() {
        assert_eq!(
            Value::UInt(u64::MAX).to_sql_literal(),
            "18446744073709551615"
        );
        assert_eq!(Value::Double(0.1).to_sql_literal(), "1e-1");
        assert_eq!(
            Value::Double(f64::MAX).to_sql_literal(),
            "1.7976931348623157e308"
        );
        assert_eq!(Value::Float(0.1).to_sql_literal(), "1.0000000149011612e-1");
        assert_eq!(Value::Bytes(vec![0, 0xff]).to_sql_literal(), "X'00FF'");
        assert_eq!(Value::Text(vec![]).to_sql_literal(), "X''");
        for i in [0, 1, -1, 9, 10, -10, 1234567890, i64::MIN, i64::MAX] {
            assert_eq!(Value::Int(i).to_sql_literal(), i.to_string());
        }
        for u in [0, 7, 10, 99, 100, u64::MAX] {
            assert_eq!(Value::UInt(u).to_sql_literal(), u.to_string());
        }
        // Longer than the hex encoder's stack buffer.
        let long: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let want: String = long.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(Value::Bytes(long).to_sql_literal(), format!("X'{want}'"));
        assert_eq!(
            Value::Timestamp { secs: 1, micros: 5 }.to_sql_literal(),
            "'1970-01-01 00:00:01.000005'"
        );
        assert_eq!(
            Value::Timestamp {
                secs: u32::MAX >> 1,
                micros: 0
            }
            .to_sql_literal(),
            "'2038-01-19 03:14:07'"
        );
        assert_eq!(
            Value::Timestamp { secs: 0, micros: 0 }.to_sql_literal(),
            "'0000-00-00 00:00:00'"
        );
        assert_eq!(
            Value::Timestamp {
                secs: 951_782_400,
                micros: 0
            }
            .to_sql_literal(),
            "'2000-02-29 00:00:00'"
        );
        assert_eq!(
            Value::Json("{\"a\":1}".into()).to_sql_literal(),
            "CONVERT(X'7B2261223A317D' USING utf8mb4)"
        );
    }

    #[test]
    fn mysql_jsonb_small_object() {
        // {"a":1}: small object, 1 element, 12 bytes, key at 11 (len 1),
        // value int16 inline = 1, key "a".
        let b = [
            0x00, 0x01, 0x00, 0x0c, 0x00, 0x0b, 0x00, 0x01, 0x00, 0x05, 0x01, 0x00, b'a',
        ];
        assert_eq!(mysql_json_to_text(&b).unwrap(), "{\"a\":1}");
    }

    #[test]
    fn table_map_kinds() {
        assert_eq!(
            ColumnKind::from_table_map(code::STRING, &[code::ENUM, 1]).unwrap(),
            ColumnKind::Enum { pack_len: 1 }
        );
        assert_eq!(
            ColumnKind::from_table_map(code::STRING, &[code::STRING, 40]).unwrap(),
            ColumnKind::Char { max_len: 40 }
        );
        // CHAR(255) utf8mb4 = 1020 bytes: high bits folded into byte 0.
        assert_eq!(
            ColumnKind::from_table_map(code::STRING, &[0xce, 0xfc]).unwrap(),
            ColumnKind::Char { max_len: 1020 }
        );
        assert!(ColumnKind::from_table_map(code::NEWDECIMAL, &[0, 0]).is_err());
        assert!(ColumnKind::from_table_map(200, &[]).is_err());
    }
}
