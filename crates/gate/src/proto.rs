//! Encoding and decoding of the MySQL protocol's building blocks: length-encoded
//! integers and strings, OK/ERR/EOF packets, column definitions and row values
//! in both the text and the binary (prepared statement) encodings.
//!
//! Everything here works on byte slices and `Vec<u8>` so that the server and
//! the backend client share one implementation.

pub use mysql_common::constants::{CapabilityFlags, ColumnFlags, ColumnType, StatusFlags};
pub use mysql_common::value::Value;

use crate::error::GateError;

/// Why a packet from a peer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed packet: {0}")]
pub struct Malformed(pub &'static str);

impl From<Malformed> for GateError {
    fn from(m: Malformed) -> Self {
        GateError::malformed(m.0)
    }
}

/// A cursor over a payload whose reads fail instead of panicking on short input.
pub struct Reader<'a> {
    pub buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(Malformed("payload too short"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub fn skip(&mut self, n: usize) -> Result<(), Malformed> {
        self.take(n).map(|_| ())
    }
    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u24(&mut self) -> Result<u32, Malformed> {
        let b = self.take(3)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A length-encoded integer; `None` for the NULL marker 0xFB.
    pub fn lenenc_opt(&mut self) -> Result<Option<u64>, Malformed> {
        let first = self.u8()?;
        Ok(Some(match first {
            0xFB => return Ok(None),
            0xFC => self.u16()? as u64,
            0xFD => self.u24()? as u64,
            0xFE => self.u64()?,
            0xFF => return Err(Malformed("invalid length-encoded integer")),
            x => x as u64,
        }))
    }
    pub fn lenenc(&mut self) -> Result<u64, Malformed> {
        self.lenenc_opt()?
            .ok_or(Malformed("unexpected NULL length-encoded integer"))
    }
    pub fn lenenc_str(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.lenenc()?;
        let n = usize::try_from(n).map_err(|_| Malformed("length overflow"))?;
        self.take(n)
    }
    pub fn lenenc_str_opt(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        match self.lenenc_opt()? {
            None => Ok(None),
            Some(n) => {
                let n = usize::try_from(n).map_err(|_| Malformed("length overflow"))?;
                self.take(n).map(Some)
            }
        }
    }
    /// A NUL-terminated string; the whole rest when there is no NUL.
    pub fn nul_str(&mut self) -> &'a [u8] {
        match self.buf.iter().position(|&b| b == 0) {
            Some(i) => {
                let s = &self.buf[..i];
                self.buf = &self.buf[i + 1..];
                s
            }
            None => std::mem::take(&mut self.buf),
        }
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

pub fn put_lenenc(buf: &mut Vec<u8>, n: u64) {
    if n < 251 {
        buf.push(n as u8);
    } else if n < 1 << 16 {
        buf.push(0xFC);
        buf.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n < 1 << 24 {
        buf.push(0xFD);
        buf.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
    } else {
        buf.push(0xFE);
        buf.extend_from_slice(&n.to_le_bytes());
    }
}

pub fn put_lenenc_str(buf: &mut Vec<u8>, s: &[u8]) {
    put_lenenc(buf, s.len() as u64);
    buf.extend_from_slice(s);
}

/// Fields of an OK packet (or of the OK-shaped terminator that replaces EOF
/// under `CLIENT_DEPRECATE_EOF`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: Vec<u8>,
    /// Raw session-state-change block, present when the sender tracks session state.
    pub session_state: Vec<u8>,
}

impl OkPacket {
    /// Parses an OK packet whose payload starts with 0x00 or 0xFE.
    pub fn parse(payload: &[u8], caps: CapabilityFlags) -> Result<OkPacket, Malformed> {
        let mut r = Reader::new(payload);
        r.skip(1)?;
        let affected_rows = r.lenenc()?;
        let last_insert_id = r.lenenc()?;
        let status = r.u16()?;
        let warnings = r.u16()?;
        let mut info = Vec::new();
        let mut session_state = Vec::new();
        if caps.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
            if !r.is_empty() {
                info = r.lenenc_str()?.to_vec();
                if status & StatusFlags::SERVER_SESSION_STATE_CHANGED.bits() != 0 && !r.is_empty() {
                    session_state = r.lenenc_str()?.to_vec();
                }
            }
        } else if !r.is_empty() {
            // servers length-prefix the message even without session tracking
            let rest = r.buf;
            info = match r.lenenc_str() {
                Ok(m) => m.to_vec(),
                Err(_) => rest.to_vec(),
            };
        }
        Ok(OkPacket {
            affected_rows,
            last_insert_id,
            status,
            warnings,
            info,
            session_state,
        })
    }
}

/// Appends an OK payload for a client without `CLIENT_SESSION_TRACK` (the
/// gate never offers it). The message is length-prefixed as mysqld writes it
/// (libmariadb/libmysqlclient read it that way whatever the protocol docs
/// say). Returns the offset of the status flags within `buf`.
pub fn put_ok(
    buf: &mut Vec<u8>,
    header: u8,
    affected: u64,
    last_insert_id: u64,
    status: u16,
    warnings: u16,
    info: &[u8],
) -> usize {
    buf.push(header);
    put_lenenc(buf, affected);
    put_lenenc(buf, last_insert_id);
    let pos = buf.len();
    buf.extend_from_slice(&status.to_le_bytes());
    buf.extend_from_slice(&warnings.to_le_bytes());
    if !info.is_empty() {
        put_lenenc_str(buf, info);
    }
    pos
}

/// Appends a classic EOF payload; returns the offset of its status flags.
pub fn put_eof(buf: &mut Vec<u8>, warnings: u16, status: u16) -> usize {
    buf.push(0xFE);
    buf.extend_from_slice(&warnings.to_le_bytes());
    let pos = buf.len();
    buf.extend_from_slice(&status.to_le_bytes());
    pos
}

pub fn put_err(buf: &mut Vec<u8>, code: u16, sqlstate: &[u8; 5], message: &str) {
    buf.push(0xFF);
    buf.extend_from_slice(&code.to_le_bytes());
    buf.push(b'#');
    buf.extend_from_slice(sqlstate);
    buf.extend_from_slice(message.as_bytes());
}

/// Parses an ERR payload (starting with 0xFF) from a peer that speaks protocol 4.1.
pub fn parse_err(payload: &[u8]) -> Result<GateError, Malformed> {
    let mut r = Reader::new(payload);
    r.skip(1)?;
    let code = r.u16()?;
    let mut state = *b"HY000";
    if r.buf.first() == Some(&b'#') {
        r.skip(1)?;
        state.copy_from_slice(r.take(5)?);
    }
    let msg = String::from_utf8_lossy(r.rest()).into_owned();
    Ok(GateError::new(code, state, msg))
}

/// One column definition (Protocol::ColumnDefinition41).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub schema: String,
    pub table: String,
    pub org_table: String,
    pub name: String,
    pub org_name: String,
    /// Collation id; 63 (binary) for numbers and blobs.
    pub charset: u16,
    pub length: u32,
    pub column_type: ColumnType,
    pub flags: ColumnFlags,
    pub decimals: u8,
}

impl Column {
    /// A computed column (no table) of the given type with the defaults a
    /// MySQL server would report for an expression of that type.
    pub fn new(name: impl Into<String>, column_type: ColumnType) -> Self {
        use ColumnType::*;
        let (charset, length, flags) = match column_type {
            MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_INT24
            | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR => (63, 21, ColumnFlags::BINARY_FLAG),
            MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE | MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => {
                (63, 23, ColumnFlags::BINARY_FLAG)
            }
            MYSQL_TYPE_DATE | MYSQL_TYPE_DATETIME | MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIME => {
                (63, 26, ColumnFlags::BINARY_FLAG)
            }
            MYSQL_TYPE_BLOB
            | MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB => (
                63,
                u32::MAX,
                ColumnFlags::BINARY_FLAG | ColumnFlags::BLOB_FLAG,
            ),
            _ => (45, 1024, ColumnFlags::empty()),
        };
        Column {
            schema: String::new(),
            table: String::new(),
            org_table: String::new(),
            name: name.into(),
            org_name: String::new(),
            charset,
            length,
            column_type,
            flags,
            decimals: if matches!(column_type, MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE) {
                31
            } else {
                0
            },
        }
    }

    pub fn unsigned(&self) -> bool {
        self.flags.contains(ColumnFlags::UNSIGNED_FLAG)
    }

    pub fn encode(&self, buf: &mut Vec<u8>) {
        put_lenenc_str(buf, b"def");
        put_lenenc_str(buf, self.schema.as_bytes());
        put_lenenc_str(buf, self.table.as_bytes());
        put_lenenc_str(buf, self.org_table.as_bytes());
        put_lenenc_str(buf, self.name.as_bytes());
        put_lenenc_str(buf, self.org_name.as_bytes());
        buf.push(0x0C);
        buf.extend_from_slice(&self.charset.to_le_bytes());
        buf.extend_from_slice(&self.length.to_le_bytes());
        buf.push(self.column_type as u8);
        buf.extend_from_slice(&self.flags.bits().to_le_bytes());
        buf.push(self.decimals);
        buf.extend_from_slice(&[0, 0]);
    }

    pub fn parse(payload: &[u8]) -> Result<Column, Malformed> {
        let mut r = Reader::new(payload);
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let _catalog = r.lenenc_str()?;
        let schema = s(r.lenenc_str()?);
        let table = s(r.lenenc_str()?);
        let org_table = s(r.lenenc_str()?);
        let name = s(r.lenenc_str()?);
        let org_name = s(r.lenenc_str()?);
        let _fixed = r.lenenc()?;
        let charset = r.u16()?;
        let length = r.u32()?;
        let ty = r.u8()?;
        let column_type = ColumnType::try_from(ty).map_err(|_| Malformed("unknown column type"))?;
        let flags = ColumnFlags::from_bits_truncate(r.u16()?);
        let decimals = r.u8()?;
        Ok(Column {
            schema,
            table,
            org_table,
            name,
            org_name,
            charset,
            length,
            column_type,
            flags,
            decimals,
        })
    }
}

/// Appends `v` in the text protocol's row encoding.
pub fn put_text_value(buf: &mut Vec<u8>, v: &Value, col: Option<&Column>) {
    use std::io::Write;
    match v {
        Value::NULL => buf.push(0xFB),
        Value::Bytes(b) => put_lenenc_str(buf, b),
        _ => {
            let mut tmp = Vec::with_capacity(32);
            let _ = match v {
                Value::Int(i) => write!(tmp, "{i}"),
                Value::UInt(u) => write!(tmp, "{u}"),
                Value::Float(f) => write!(tmp, "{f}"),
                Value::Double(d) => write!(tmp, "{d}"),
                Value::Date(y, mo, d, h, mi, s, us) => {
                    let date_only =
                        col.is_some_and(|c| c.column_type == ColumnType::MYSQL_TYPE_DATE);
                    if date_only {
                        write!(tmp, "{y:04}-{mo:02}-{d:02}")
                    } else if *us != 0 {
                        write!(tmp, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
                    } else {
                        write!(tmp, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
                    }
                }
                Value::Time(neg, days, h, mi, s, us) => {
                    let hours = *days as u64 * 24 + *h as u64;
                    let sign = if *neg { "-" } else { "" };
                    if *us != 0 {
                        write!(tmp, "{sign}{hours:02}:{mi:02}:{s:02}.{us:06}")
                    } else {
                        write!(tmp, "{sign}{hours:02}:{mi:02}:{s:02}")
                    }
                }
                Value::NULL | Value::Bytes(_) => Ok(()),
            };
            put_lenenc_str(buf, &tmp);
        }
    }
}

fn value_as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::UInt(u) => Some(*u as i64),
        Value::Float(f) => Some(*f as i64),
        Value::Double(d) => Some(*d as i64),
        Value::Bytes(b) => {
            let s = std::str::from_utf8(b).ok()?.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<u64>().ok().map(|u| u as i64))
                .or_else(|| s.parse::<f64>().ok().map(|f| f as i64))
        }
        _ => None,
    }
}

fn value_as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Float(f) => Some(*f as f64),
        Value::Double(d) => Some(*d),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// Parses "YYYY-MM-DD[ HH:MM:SS[.ffffff]]" into a `Value::Date`.
fn parse_datetime(b: &[u8]) -> Option<Value> {
    let s = std::str::from_utf8(b).ok()?.trim();
    let (date, time) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let y = dp.next()?.parse().ok()?;
    let mo = dp.next()?.parse().ok()?;
    let d = dp.next()?.parse().ok()?;
    let (h, mi, sec, us) = match time {
        Some(t) => parse_hms(t)?,
        None => (0, 0, 0, 0),
    };
    Some(Value::Date(y, mo, d, h as u8, mi, sec, us))
}

fn parse_hms(t: &str) -> Option<(u32, u8, u8, u32)> {
    let (hms, frac) = match t.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (t, None),
    };
    let mut p = hms.split(':');
    let h = p.next()?.parse().ok()?;
    let mi = p.next().unwrap_or("0").parse().ok()?;
    let s = p.next().unwrap_or("0").parse().ok()?;
    let us = match frac {
        Some(f) => {
            let f = &f[..f.len().min(6)];
            f.parse::<u32>().ok()? * 10u32.pow(6 - f.len() as u32)
        }
        None => 0,
    };
    Some((h, mi, s, us))
}

fn parse_time(b: &[u8]) -> Option<Value> {
    let s = std::str::from_utf8(b).ok()?.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (h, mi, sec, us) = parse_hms(s)?;
    Some(Value::Time(neg, h / 24, (h % 24) as u8, mi, sec, us))
}

#[allow(clippy::too_many_arguments)] // the fields of MySQL's binary DATETIME
fn put_bin_date(buf: &mut Vec<u8>, y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) {
    if us != 0 {
        buf.push(11);
    } else if h != 0 || mi != 0 || s != 0 {
        buf.push(7);
    } else if y != 0 || mo != 0 || d != 0 {
        buf.push(4);
    } else {
        buf.push(0);
        return;
    }
    buf.extend_from_slice(&y.to_le_bytes());
    buf.push(mo);
    buf.push(d);
    if h != 0 || mi != 0 || s != 0 || us != 0 {
        buf.push(h);
        buf.push(mi);
        buf.push(s);
        if us != 0 {
            buf.extend_from_slice(&us.to_le_bytes());
        }
    }
}

fn put_bin_time(buf: &mut Vec<u8>, neg: bool, days: u32, h: u8, mi: u8, s: u8, us: u32) {
    if !neg && days == 0 && h == 0 && mi == 0 && s == 0 && us == 0 {
        buf.push(0);
        return;
    }
    buf.push(if us != 0 { 12 } else { 8 });
    buf.push(neg as u8);
    buf.extend_from_slice(&days.to_le_bytes());
    buf.push(h);
    buf.push(mi);
    buf.push(s);
    if us != 0 {
        buf.extend_from_slice(&us.to_le_bytes());
    }
}

/// Appends a non-NULL value in the binary protocol encoding that `col`'s type
/// calls for, converting from whatever representation `v` has (rows decoded
/// from a text-protocol backend arrive as bytes).
pub fn put_binary_value(buf: &mut Vec<u8>, v: &Value, col: &Column) {
    use ColumnType::*;
    match col.column_type {
        MYSQL_TYPE_TINY => buf.push(value_as_i64(v).unwrap_or(0) as u8),
        MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR => {
            buf.extend_from_slice(&(value_as_i64(v).unwrap_or(0) as u16).to_le_bytes())
        }
        MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 => {
            buf.extend_from_slice(&(value_as_i64(v).unwrap_or(0) as u32).to_le_bytes())
        }
        MYSQL_TYPE_LONGLONG => {
            let n = match v {
                Value::UInt(u) => *u,
                Value::Bytes(b) if col.unsigned() => std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0),
                _ => value_as_i64(v).unwrap_or(0) as u64,
            };
            buf.extend_from_slice(&n.to_le_bytes())
        }
        MYSQL_TYPE_FLOAT => {
            buf.extend_from_slice(&(value_as_f64(v).unwrap_or(0.0) as f32).to_le_bytes())
        }
        MYSQL_TYPE_DOUBLE => buf.extend_from_slice(&value_as_f64(v).unwrap_or(0.0).to_le_bytes()),
        MYSQL_TYPE_DATE
        | MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_TIMESTAMP
        | MYSQL_TYPE_NEWDATE
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP2 => {
            let parsed;
            let v = match v {
                Value::Bytes(b) => {
                    parsed = parse_datetime(b).unwrap_or(Value::Date(0, 0, 0, 0, 0, 0, 0));
                    &parsed
                }
                other => other,
            };
            match v {
                Value::Date(y, mo, d, h, mi, s, us) => {
                    put_bin_date(buf, *y, *mo, *d, *h, *mi, *s, *us)
                }
                _ => buf.push(0),
            }
        }
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => {
            let parsed;
            let v = match v {
                Value::Bytes(b) => {
                    parsed = parse_time(b).unwrap_or(Value::Time(false, 0, 0, 0, 0, 0));
                    &parsed
                }
                other => other,
            };
            match v {
                Value::Time(neg, days, h, mi, s, us) => {
                    put_bin_time(buf, *neg, *days, *h, *mi, *s, *us)
                }
                _ => buf.push(0),
            }
        }
        _ => {
            // strings, decimals, blobs, enums, sets, bits, json, geometry: length-encoded bytes
            match v {
                Value::Bytes(b) => put_lenenc_str(buf, b),
                other => {
                    let mut tmp = Vec::new();
                    put_text_value(&mut tmp, other, Some(col));
                    buf.extend_from_slice(&tmp);
                }
            }
        }
    }
}

/// Decodes one value of a binary-protocol row.
pub fn read_binary_value(
    r: &mut Reader<'_>,
    ty: ColumnType,
    unsigned: bool,
) -> Result<Value, Malformed> {
    // Binary result rows use the parameter encoding of COM_STMT_EXECUTE, so
    // one decoder serves both directions.
    crate::params::read_param(r, ty, unsigned).map(|value| {
        crate::params::Param {
            column_type: ty,
            unsigned,
            value,
        }
        .to_value()
    })
}

/// Appends a binary-protocol row (header, NULL bitmap with offset 2, values).
pub fn put_binary_row(buf: &mut Vec<u8>, values: &[Value], cols: &[Column]) {
    buf.push(0);
    let bitmap_start = buf.len();
    let nbytes = (values.len() + 7 + 2) / 8;
    buf.resize(bitmap_start + nbytes, 0);
    for (i, (v, c)) in values.iter().zip(cols).enumerate() {
        if matches!(v, Value::NULL) {
            let bit = i + 2;
            buf[bitmap_start + bit / 8] |= 1 << (bit % 8);
        } else {
            put_binary_value(buf, v, c);
        }
    }
}

/// Decodes a binary-protocol row.
pub fn parse_binary_row(payload: &[u8], cols: &[Column]) -> Result<Vec<Value>, Malformed> {
    let mut r = Reader::new(payload);
    r.skip(1)?;
    let bitmap = r.take((cols.len() + 7 + 2) / 8)?;
    let mut out = Vec::with_capacity(cols.len());
    for (i, c) in cols.iter().enumerate() {
        let bit = i + 2;
        if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
            out.push(Value::NULL);
        } else {
            out.push(read_binary_value(&mut r, c.column_type, c.unsigned())?);
        }
    }
    Ok(out)
}

/// Decodes a text-protocol row: every value stays bytes, as MySQL sent it.
pub fn parse_text_row(payload: &[u8], ncols: usize) -> Result<Vec<Value>, Malformed> {
    let mut r = Reader::new(payload);
    let mut out = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        out.push(match r.lenenc_str_opt()? {
            None => Value::NULL,
            Some(b) => Value::Bytes(b.to_vec()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_roundtrip() {
        for n in [
            0u64,
            250,
            251,
            65535,
            65536,
            (1 << 24) - 1,
            1 << 24,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_lenenc(&mut b, n);
            assert_eq!(Reader::new(&b).lenenc().unwrap(), n);
        }
        assert!(Reader::new(&[0xFC, 1]).lenenc().is_err());
        assert_eq!(Reader::new(&[0xFB]).lenenc_opt().unwrap(), None);
    }

    #[test]
    fn binary_row_roundtrip() {
        let cols = vec![
            Column::new("a", ColumnType::MYSQL_TYPE_LONGLONG),
            Column::new("b", ColumnType::MYSQL_TYPE_VAR_STRING),
            Column::new("c", ColumnType::MYSQL_TYPE_DATETIME),
            Column::new("d", ColumnType::MYSQL_TYPE_DOUBLE),
            Column::new("e", ColumnType::MYSQL_TYPE_TIME),
            Column::new("f", ColumnType::MYSQL_TYPE_TINY),
        ];
        let vals = vec![
            Value::Bytes(b"-42".to_vec()),
            Value::NULL,
            Value::Bytes(b"2024-02-03 04:05:06.5".to_vec()),
            Value::Double(1.5),
            Value::Bytes(b"-26:01:02".to_vec()),
            Value::Int(-3),
        ];
        let mut b = Vec::new();
        put_binary_row(&mut b, &vals, &cols);
        let back = parse_binary_row(&b, &cols).unwrap();
        assert_eq!(
            back,
            vec![
                Value::Int(-42),
                Value::NULL,
                Value::Date(2024, 2, 3, 4, 5, 6, 500000),
                Value::Double(1.5),
                Value::Time(true, 1, 2, 1, 2, 0),
                Value::Int(-3),
            ]
        );
    }

    #[test]
    fn column_roundtrip() {
        let mut c = Column::new("x", ColumnType::MYSQL_TYPE_LONG);
        c.schema = "db".into();
        c.table = "t".into();
        let mut b = Vec::new();
        c.encode(&mut b);
        assert_eq!(Column::parse(&b).unwrap(), c);
    }

    #[test]
    fn ok_parse() {
        let mut b = Vec::new();
        put_ok(&mut b, 0, 3, 300, 2, 1, b"hi");
        let ok = OkPacket::parse(&b, CapabilityFlags::empty()).unwrap();
        assert_eq!(
            (ok.affected_rows, ok.last_insert_id, ok.status, ok.warnings),
            (3, 300, 2, 1)
        );
        assert_eq!(ok.info, b"hi");
    }
}
