//! TABLE_MAP and rows events, decoded by us.
//!
//! mysql_common parses these too, but it indexes metadata without bounds
//! checks (a short event panics), guesses unknown signedness as signed, and
//! hides the raw optional metadata we need to tell text from binary. The
//! formats are small and documented (MySQL's `rows_event.h`, MariaDB's
//! `log_event.h`), so we read them ourselves from the event body.

use std::sync::Arc;

use crate::bytes::Cursor;
use crate::error::{Result, VreplError};
use crate::value::{ColumnKind, Value, decode_value};

/// The binary collation id (`binary` character set): BINARY, VARBINARY and
/// BLOB columns carry it, text columns carry their own.
pub const BINARY_COLLATION: u16 = 63;

/// A TABLE_MAP event: which table a table id stands for, with its columns as
/// far as the binlog describes them.
#[derive(Debug, Clone, PartialEq)]
pub struct TableMap {
    pub table_id: u64,
    pub db: String,
    pub table: String,
    pub kinds: Vec<ColumnKind>,
    pub nullable: Vec<bool>,
    /// Optional metadata (binlog_row_metadata MINIMAL or FULL), per column.
    pub unsigned: Option<Vec<bool>>,
    /// Collation id per column (None for non-character columns).
    pub collations: Option<Vec<Option<u16>>>,
    /// Column names (binlog_row_metadata=FULL).
    pub names: Option<Vec<String>>,
    /// Primary key column indexes (FULL).
    pub primary_key: Option<Vec<usize>>,
}

/// Just the ids and names of a TABLE_MAP, read before deciding whether the
/// table interests the stream at all.
pub(crate) fn table_map_header(body: &[u8]) -> Result<(u64, String, String)> {
    let mut c = Cursor::new(body, "TABLE_MAP event");
    let table_id = c.uint_le(6)?;
    c.bytes(2)?;
    let db = name(&mut c)?;
    let table = name(&mut c)?;
    Ok((table_id, db, table))
}

fn name(c: &mut Cursor<'_>) -> Result<String> {
    let n = c.u8()?;
    let b = c.bytes(usize::from(n))?;
    c.bytes(1)?; // NUL terminator
    String::from_utf8(b.to_vec())
        .map_err(|_| VreplError::malformed("TABLE_MAP event", "identifier is not UTF-8"))
}

// Optional metadata field types (MySQL rows_event.h; MariaDB uses the same).
const SIGNEDNESS: u8 = 1;
const DEFAULT_CHARSET: u8 = 2;
const COLUMN_CHARSET: u8 = 3;
const COLUMN_NAME: u8 = 4;
const SIMPLE_PRIMARY_KEY: u8 = 8;
const PRIMARY_KEY_WITH_PREFIX: u8 = 9;

impl TableMap {
    /// Parses a TABLE_MAP event body (after the common header, checksum
    /// removed).
    pub fn parse(body: &[u8]) -> Result<TableMap> {
        let what = "TABLE_MAP event";
        let mut c = Cursor::new(body, what);
        let table_id = c.uint_le(6)?;
        c.bytes(2)?;
        let db = name(&mut c)?;
        let table = name(&mut c)?;
        let ncols = c.lenenc_len()?;
        let types = c.bytes(ncols)?;
        let meta = c.lenenc_bytes()?;
        let nulls = c.bytes(ncols.div_ceil(8))?;
        let mut m = Cursor::new(meta, "TABLE_MAP column metadata");
        let mut kinds = Vec::with_capacity(ncols);
        for &t in types {
            let n = ColumnKind::metadata_len(t)?;
            kinds.push(ColumnKind::from_table_map(t, m.bytes(n)?)?);
        }
        if !m.is_empty() {
            return Err(VreplError::malformed(
                what,
                format!("{} column metadata bytes left over", m.remaining()),
            ));
        }
        let nullable = (0..ncols)
            .map(|i| nulls[i / 8] & (1 << (i % 8)) != 0)
            .collect();
        let mut tm = TableMap {
            table_id,
            db,
            table,
            kinds,
            nullable,
            unsigned: None,
            collations: None,
            names: None,
            primary_key: None,
        };
        tm.parse_optional(c.rest())?;
        Ok(tm)
    }

    fn parse_optional(&mut self, mut data: &[u8]) -> Result<()> {
        let what = "TABLE_MAP optional metadata";
        let numeric: Vec<usize> = self.indexes(|k| k.is_numeric());
        let character: Vec<usize> = self.indexes(|k| k.is_character());
        let ncols = self.kinds.len();
        while !data.is_empty() {
            let mut c = Cursor::new(data, what);
            let ty = c.u8()?;
            let value = c.lenenc_bytes()?;
            data = c.rest();
            let mut v = Cursor::new(value, what);
            match ty {
                SIGNEDNESS => {
                    let bits = v.bytes(numeric.len().div_ceil(8))?;
                    let mut unsigned = vec![false; ncols];
                    for (n, &col) in numeric.iter().enumerate() {
                        unsigned[col] = bits[n / 8] & (0x80 >> (n % 8)) != 0;
                    }
                    self.unsigned = Some(unsigned);
                }
                DEFAULT_CHARSET => {
                    let default = v.lenenc()? as u16;
                    let mut per = vec![Some(default); character.len()];
                    while !v.is_empty() {
                        let idx = v.lenenc()? as usize;
                        let coll = v.lenenc()? as u16;
                        *per.get_mut(idx).ok_or_else(|| {
                            VreplError::malformed(what, format!("charset for column #{idx}"))
                        })? = Some(coll);
                    }
                    self.set_collations(&character, per);
                }
                COLUMN_CHARSET => {
                    let mut per = Vec::with_capacity(character.len());
                    while !v.is_empty() {
                        per.push(Some(v.lenenc()? as u16));
                    }
                    if per.len() != character.len() {
                        return Err(VreplError::malformed(
                            what,
                            format!(
                                "{} column charsets for {} character columns",
                                per.len(),
                                character.len()
                            ),
                        ));
                    }
                    self.set_collations(&character, per);
                }
                COLUMN_NAME => {
                    let mut names = Vec::with_capacity(ncols);
                    while !v.is_empty() {
                        let b = v.lenenc_bytes()?;
                        names.push(String::from_utf8(b.to_vec()).map_err(|_| {
                            VreplError::malformed(what, "column name is not UTF-8")
                        })?);
                    }
                    if names.len() != ncols {
                        return Err(VreplError::malformed(
                            what,
                            format!("{} column names for {ncols} columns", names.len()),
                        ));
                    }
                    self.names = Some(names);
                }
                SIMPLE_PRIMARY_KEY | PRIMARY_KEY_WITH_PREFIX => {
                    let mut pk = Vec::new();
                    while !v.is_empty() {
                        let idx = v.lenenc()? as usize;
                        if idx >= ncols {
                            return Err(VreplError::malformed(
                                what,
                                format!("primary key column #{idx}"),
                            ));
                        }
                        pk.push(idx);
                        if ty == PRIMARY_KEY_WITH_PREFIX {
                            v.lenenc()?;
                        }
                    }
                    self.primary_key = Some(pk);
                }
                // ENUM/SET strings and charsets, geometry types, visibility:
                // rows decode without them.
                _ => {}
            }
        }
        Ok(())
    }

    fn indexes(&self, f: impl Fn(ColumnKind) -> bool) -> Vec<usize> {
        (0..self.kinds.len())
            .filter(|&i| f(self.kinds[i]))
            .collect()
    }

    fn set_collations(&mut self, character: &[usize], per: Vec<Option<u16>>) {
        let mut all = vec![None; self.kinds.len()];
        for (&col, coll) in character.iter().zip(per) {
            all[col] = coll;
        }
        self.collations = Some(all);
    }
}

/// A column of a table as the stream decodes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: Arc<str>,
    pub kind: ColumnKind,
    pub unsigned: bool,
    /// Character-type bytes are binary (BINARY/VARBINARY/BLOB), not text.
    pub binary: bool,
}

/// Everything needed to decode a table's rows and name its columns.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub db: Arc<str>,
    pub table: Arc<str>,
    pub columns: Vec<ColumnDef>,
    /// Primary key column indexes, when the binlog says (FULL metadata).
    pub primary_key: Option<Vec<usize>>,
}

/// One row image: column name and value for each column the image holds.
pub type Row = Vec<(Arc<str>, Value)>;

/// What a row change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

/// One changed row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub db: Arc<str>,
    pub table: Arc<str>,
    pub kind: ChangeKind,
    /// The row before (Update, Delete).
    pub before: Option<Row>,
    /// The row after (Insert, Update).
    pub after: Option<Row>,
}

/// Rows event type codes: v1 (MariaDB, MySQL 5.1–5.5) and v2 (MySQL 5.6+).
pub(crate) fn rows_event_kind(event_type: u8) -> Option<(ChangeKind, bool)> {
    match event_type {
        23 => Some((ChangeKind::Insert, false)),
        24 => Some((ChangeKind::Update, false)),
        25 => Some((ChangeKind::Delete, false)),
        30 => Some((ChangeKind::Insert, true)),
        31 => Some((ChangeKind::Update, true)),
        32 => Some((ChangeKind::Delete, true)),
        _ => None,
    }
}

/// The table id of a rows event, to find its TABLE_MAP.
pub(crate) fn rows_event_table_id(body: &[u8]) -> Result<u64> {
    Cursor::new(body, "rows event").uint_le(6)
}

/// Decodes every row of a rows event body into `out`.
pub(crate) fn decode_rows_event(
    body: &[u8],
    kind: ChangeKind,
    v2: bool,
    def: &TableDef,
    out: &mut Vec<RowChange>,
) -> Result<()> {
    let what = "rows event";
    let mut c = Cursor::new(body, what);
    c.uint_le(6)?; // table id
    c.bytes(2)?; // flags
    if v2 {
        // The extra-data length counts its own two bytes.
        let extra = usize::from(c.u16_le()?);
        if extra < 2 {
            return Err(VreplError::malformed(what, "extra data length below 2"));
        }
        c.bytes(extra - 2)?;
    }
    // A column count, not a byte length: an all-NULL row of many columns
    // takes fewer bytes than it has columns.
    let width = c.lenenc()?;
    if width != def.columns.len() as u64 {
        return Err(VreplError::Schema {
            db: def.db.to_string(),
            table: def.table.to_string(),
            detail: format!(
                "rows event has {width} columns, the table map {}",
                def.columns.len()
            ),
        });
    }
    let width = def.columns.len();
    let present = c.bytes(width.div_ceil(8))?.to_vec();
    let present_after = if kind == ChangeKind::Update {
        c.bytes(width.div_ceil(8))?.to_vec()
    } else {
        present.clone()
    };
    while !c.is_empty() {
        let (before, after) = match kind {
            ChangeKind::Insert => (None, Some(read_image(&mut c, &present, def)?)),
            ChangeKind::Delete => (Some(read_image(&mut c, &present, def)?), None),
            ChangeKind::Update => {
                let b = read_image(&mut c, &present, def)?;
                let a = read_image(&mut c, &present_after, def)?;
                (Some(b), Some(a))
            }
        };
        out.push(RowChange {
            db: def.db.clone(),
            table: def.table.clone(),
            kind,
            before,
            after,
        });
    }
    Ok(())
}

fn read_image(c: &mut Cursor<'_>, present: &[u8], def: &TableDef) -> Result<Row> {
    let cols: Vec<usize> = (0..def.columns.len())
        .filter(|&i| present[i / 8] & (1 << (i % 8)) != 0)
        .collect();
    let nulls = c.bytes(cols.len().div_ceil(8))?;
    let mut row = Vec::with_capacity(cols.len());
    for (n, &i) in cols.iter().enumerate() {
        let col = &def.columns[i];
        let v = if nulls[n / 8] & (1 << (n % 8)) != 0 {
            Value::Null
        } else {
            decode_value(col.kind, col.unsigned, col.binary, c)?
        };
        row.push((col.name.clone(), v));
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::code;

    fn lenenc(out: &mut Vec<u8>, v: &[u8]) {
        out.push(v.len() as u8);
        out.extend_from_slice(v);
    }

    /// A TABLE_MAP body for `d`.`t` (id 7): BIGINT UNSIGNED, VARCHAR(10)
    /// utf8mb4, VARBINARY(4), with FULL metadata.
    fn sample_table_map() -> Vec<u8> {
        let mut b = vec![7, 0, 0, 0, 0, 0, 1, 0];
        b.extend_from_slice(&[1, b'd', 0, 1, b't', 0, 3]);
        b.extend_from_slice(&[code::LONGLONG, code::VARCHAR, code::VARCHAR]);
        b.extend_from_slice(&[4, 40, 0, 4, 0]);
        b.push(0b110);
        b.extend_from_slice(&[SIGNEDNESS, 1, 0x80]);
        b.extend_from_slice(&[DEFAULT_CHARSET, 3, 45, 1, 63]);
        let mut names = Vec::new();
        for n in [&b"id"[..], b"s", b"bin"] {
            lenenc(&mut names, n);
        }
        b.push(COLUMN_NAME);
        lenenc(&mut b, &names);
        b.extend_from_slice(&[SIMPLE_PRIMARY_KEY, 1, 0]);
        b
    }

    #[test]
    fn parse_table_map_full_metadata() {
        let tm = TableMap::parse(&sample_table_map()).unwrap();
        assert_eq!(
            (tm.table_id, tm.db.as_str(), tm.table.as_str()),
            (7, "d", "t")
        );
        assert_eq!(tm.unsigned, Some(vec![true, false, false]));
        assert_eq!(tm.collations, Some(vec![None, Some(45), Some(63)]));
        assert_eq!(
            tm.names,
            Some(vec!["id".to_string(), "s".to_string(), "bin".to_string()])
        );
        assert_eq!(tm.primary_key, Some(vec![0]));
        assert_eq!(tm.nullable, vec![false, true, true]);
        assert_eq!(
            table_map_header(&sample_table_map()).unwrap(),
            (7, "d".to_string(), "t".to_string())
        );
    }

    #[test]
    fn truncated_table_map_is_an_error_not_a_panic() {
        let full = sample_table_map();
        for n in 0..full.len() {
            let _ = TableMap::parse(&full[..n]);
        }
        assert!(TableMap::parse(&full[..20]).is_err());
    }

    #[test]
    fn decode_update_rows() {
        let def = TableDef {
            db: "d".into(),
            table: "t".into(),
            columns: vec![
                ColumnDef {
                    name: "id".into(),
                    kind: ColumnKind::LongLong,
                    unsigned: true,
                    binary: false,
                },
                ColumnDef {
                    name: "s".into(),
                    kind: ColumnKind::Varchar { max_len: 40 },
                    unsigned: false,
                    binary: false,
                },
            ],
            primary_key: None,
        };
        let mut b = vec![7, 0, 0, 0, 0, 0, 1, 0, 2, 0b11, 0b11];
        // before: id=u64::MAX, s=NULL
        b.push(0b10);
        b.extend_from_slice(&[0xff; 8]);
        // after: id=1, s="é"
        b.push(0);
        b.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 2, 0xc3, 0xa9]);
        let mut out = Vec::new();
        decode_rows_event(&b, ChangeKind::Update, false, &def, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let ch = &out[0];
        assert_eq!(
            ch.before.as_ref().unwrap()[0],
            ("id".into(), Value::UInt(u64::MAX))
        );
        assert_eq!(ch.before.as_ref().unwrap()[1].1, Value::Null);
        assert_eq!(
            ch.after.as_ref().unwrap()[1].1,
            Value::Text("é".as_bytes().to_vec())
        );
        // A short event fails cleanly.
        assert!(
            decode_rows_event(&b[..b.len() - 1], ChangeKind::Update, false, &def, &mut out)
                .is_err()
        );
    }
}
