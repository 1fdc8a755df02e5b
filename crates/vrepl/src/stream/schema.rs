//! What a stream knows about each of its tables: columns and their types as
//! the source's `information_schema` describes them, the ordering key, and
//! the vindex column.
//!
//! The copy phase reads rows through the binary protocol, which loses what
//! the binlog keeps (ENUM indexes, BIT integers, the character set of text),
//! so each column knows how to select itself and how to turn what the wire
//! carries into the same [`Value`] the binlog would have produced. Copy and
//! replication then write rows through one literal syntax.

use std::fmt::Write as _;
use std::sync::Arc;

use keyshift_vindex::Vindex;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::value::Value;

/// How a column's values travel and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColKind {
    Integer,
    Float,
    Double,
    Decimal,
    Year,
    Date,
    DateTime,
    Timestamp,
    Time,
    /// Character data in `charset` with `collation`.
    Text,
    /// Bytes compared bytewise.
    Binary,
    Enum,
    Set,
    Bit,
}

/// One column of a table.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub kind: ColKind,
    pub charset: Option<String>,
    pub collation: Option<String>,
    /// Generated (virtual or stored) columns are computed by the target
    /// itself and cannot be written.
    pub generated: bool,
}

/// A table of the stream with everything needed to copy and apply it.
#[derive(Debug, Clone)]
pub(crate) struct TablePlan {
    pub name: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the ordering key, in key order.
    pub pk: Vec<usize>,
    /// Index into `columns` of the vindex column, with its vindex; `None`
    /// keeps every row.
    pub vindex: Option<(usize, Arc<dyn Vindex>)>,
}

/// Quotes an identifier with backticks (doubling embedded ones).
pub(crate) fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Quotes a string as a SQL literal through hex, so no escaping rule of the
/// session can alter it.
pub(crate) fn str_literal(s: &str) -> String {
    Value::Text(s.as_bytes().to_vec()).to_sql_literal()
}

fn kind_of(data_type: &str) -> Option<ColKind> {
    Some(match data_type {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => ColKind::Integer,
        "float" => ColKind::Float,
        "double" | "real" => ColKind::Double,
        "decimal" | "numeric" => ColKind::Decimal,
        "year" => ColKind::Year,
        "date" => ColKind::Date,
        "datetime" => ColKind::DateTime,
        "timestamp" => ColKind::Timestamp,
        "time" => ColKind::Time,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "json" => {
            ColKind::Text
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry"
        | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => ColKind::Binary,
        "enum" => ColKind::Enum,
        "set" => ColKind::Set,
        "bit" => ColKind::Bit,
        _ => return None,
    })
}

/// An `information_schema.COLUMNS` row: name, data type, character set,
/// collation, extra.
type ColRow = (String, String, Option<String>, Option<String>, String);

/// Why a table cannot be streamed as specified.
pub(crate) type PlanError = String;

impl TablePlan {
    /// Reads the table's columns from the source and checks the spec's key
    /// and vindex columns against them.
    pub(crate) async fn load(
        conn: &mut Conn,
        db: &str,
        spec: &super::TableSpec,
    ) -> Result<Result<TablePlan, PlanError>, mysql_async::Error> {
        let rows: Vec<ColRow> = conn
            .exec(
                "SELECT COLUMN_NAME, LOWER(DATA_TYPE), CHARACTER_SET_NAME, COLLATION_NAME, \
                 LOWER(EXTRA) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (db, &spec.name),
            )
            .await?;
        Ok(Self::from_columns(spec, rows))
    }

    fn from_columns(spec: &super::TableSpec, rows: Vec<ColRow>) -> Result<TablePlan, PlanError> {
        if rows.is_empty() {
            return Err("the table does not exist on the source".into());
        }
        let mut columns = Vec::with_capacity(rows.len());
        for (name, data_type, charset, collation, extra) in rows {
            let Some(kind) = kind_of(&data_type) else {
                return Err(format!(
                    "column `{name}` has type {data_type}, which streams do not support"
                ));
            };
            // Character columns in the binary charset hold bytes.
            let kind = if kind == ColKind::Text && charset.as_deref() == Some("binary") {
                ColKind::Binary
            } else {
                kind
            };
            columns.push(Column {
                name,
                kind,
                charset,
                collation,
                generated: extra.contains("generated")
                    || extra.contains("virtual")
                    || extra.contains("persistent")
                    || extra.contains("stored"),
            });
        }
        let find = |n: &str| columns.iter().position(|c| c.name.eq_ignore_ascii_case(n));
        if spec.pk_columns.is_empty() {
            return Err("no primary key columns given".into());
        }
        let mut pk = Vec::new();
        for n in &spec.pk_columns {
            match find(n) {
                Some(i) => pk.push(i),
                None => return Err(format!("key column `{n}` does not exist")),
            }
        }
        let vindex = match &spec.vindex {
            None => None,
            Some((col, v)) => {
                let Some(i) = find(col) else {
                    return Err(format!("vindex column `{col}` does not exist"));
                };
                if matches!(columns[i].kind, ColKind::Enum | ColKind::Set) {
                    return Err(format!(
                        "vindex column `{col}` is an ENUM or SET, which streams cannot place"
                    ));
                }
                Some((i, v.clone()))
            }
        };
        Ok(TablePlan {
            name: spec.name.clone(),
            columns,
            pk,
            vindex,
        })
    }

    pub(crate) fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub(crate) fn pk_columns(&self) -> impl Iterator<Item = &Column> {
        self.pk.iter().map(|&i| &self.columns[i])
    }

    /// The select list of the copy phase, one expression per column.
    pub(crate) fn select_list(&self) -> String {
        let mut s = String::new();
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let q = ident(&c.name);
            match c.kind {
                // The index/bitmask/integer, as the binlog carries them.
                ColKind::Enum | ColKind::Set | ColKind::Bit => {
                    let _ = write!(s, "{q}+0");
                }
                _ => s.push_str(&q),
            }
        }
        s
    }

    /// `ORDER BY` list of the key.
    pub(crate) fn order_by(&self) -> String {
        self.pk_columns()
            .map(|c| ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Column {
    /// Turns a binary-protocol value of this column (selected by
    /// [`TablePlan::select_list`] on a session with
    /// `character_set_results = binary` and `time_zone = '+00:00'`) into
    /// the value the binlog would carry.
    pub(crate) fn decode_wire(&self, v: mysql_async::Value) -> Result<Value, String> {
        use mysql_async::Value as W;
        let bad = |v: &W| format!("column `{}`: unexpected value {v:?}", self.name);
        Ok(match (self.kind, v) {
            (_, W::NULL) => Value::Null,
            (ColKind::Integer | ColKind::Year, W::Int(i)) => Value::Int(i),
            (ColKind::Integer | ColKind::Year, W::UInt(u)) => Value::UInt(u),
            (ColKind::Enum, W::Int(i)) => {
                Value::Enum(u16::try_from(i).map_err(|_| bad(&W::Int(i)))?)
            }
            (ColKind::Enum, W::UInt(u)) => {
                Value::Enum(u16::try_from(u).map_err(|_| bad(&W::UInt(u)))?)
            }
            (ColKind::Set, W::Int(i)) => Value::Set(i as u64),
            (ColKind::Set, W::UInt(u)) => Value::Set(u),
            (ColKind::Bit, W::Int(i)) => Value::Bit(i as u64),
            (ColKind::Bit, W::UInt(u)) => Value::Bit(u),
            // Integer-valued expressions may arrive as DECIMAL text.
            (ColKind::Enum | ColKind::Set | ColKind::Bit, W::Bytes(b)) => {
                let n: u64 = std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad(&W::Bytes(b.clone())))?;
                match self.kind {
                    ColKind::Enum => Value::Enum(u16::try_from(n).map_err(|_| bad(&W::Bytes(b)))?),
                    ColKind::Set => Value::Set(n),
                    _ => Value::Bit(n),
                }
            }
            (ColKind::Float, W::Float(f)) => Value::Float(f),
            (ColKind::Float, W::Double(d)) => Value::Float(d as f32),
            (ColKind::Double, W::Double(d)) => Value::Double(d),
            (ColKind::Decimal, W::Bytes(b)) => {
                let ok = !b.is_empty()
                    && b.iter()
                        .all(|&c| c.is_ascii_digit() || c == b'-' || c == b'.');
                if !ok {
                    return Err(bad(&W::Bytes(b)));
                }
                // Checked above: ASCII only.
                Value::Decimal(String::from_utf8_lossy(&b).into_owned())
            }
            (ColKind::Date, W::Date(year, month, day, ..)) => Value::Date { year, month, day },
            (
                ColKind::DateTime | ColKind::Timestamp,
                W::Date(year, month, day, hour, minute, second, micros),
            ) => Value::DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                micros,
            },
            (ColKind::Time, W::Time(negative, days, h, minutes, seconds, micros)) => {
                let hours = u16::try_from(days * 24 + u32::from(h))
                    .map_err(|_| bad(&W::Time(negative, days, h, minutes, seconds, micros)))?;
                Value::Time {
                    negative,
                    hours,
                    minutes,
                    seconds,
                    micros,
                }
            }
            (ColKind::Text, W::Bytes(b)) => Value::Text(b),
            (ColKind::Binary, W::Bytes(b)) => Value::Bytes(b),
            (_, other) => return Err(bad(&other)),
        })
    }

    /// A literal of `v` that compares with this column's values in this
    /// column's order (collation, temporal order), also against another
    /// such literal: the copy phase's `key > last key` and the catch-up's
    /// `key <= last key` must agree with the source's `ORDER BY`.
    pub(crate) fn cmp_literal(&self, v: &Value) -> String {
        let lit = v.to_sql_literal();
        match (self.kind, v) {
            (_, Value::Null) => lit,
            (ColKind::Text, _) => match (&self.charset, &self.collation) {
                (Some(cs), Some(coll)) => format!("_{cs} {lit} COLLATE {coll}"),
                (Some(cs), None) => format!("_{cs} {lit}"),
                _ => lit,
            },
            (ColKind::Date, _) => format!("CAST({lit} AS DATE)"),
            (ColKind::DateTime | ColKind::Timestamp, _) => format!("CAST({lit} AS DATETIME(6))"),
            (ColKind::Time, _) => format!("CAST({lit} AS TIME(6))"),
            _ => lit,
        }
    }
}

/// `lhs > rhs` in lexicographic order of tuples of comparable literals or
/// columns, spelled out (`a > x OR (a = x AND b > y)`) so that the server's
/// range optimizer can use the key.
pub(crate) fn tuple_gt(lhs: &[String], rhs: &[String]) -> String {
    debug_assert_eq!(lhs.len(), rhs.len());
    let n = lhs.len().min(rhs.len());
    let mut out = String::new();
    for i in (0..n).rev() {
        let gt = format!("{} > {}", lhs[i], rhs[i]);
        out = if out.is_empty() {
            gt
        } else {
            format!("{gt} OR ({} = {} AND ({out}))", lhs[i], rhs[i])
        };
    }
    format!("({out})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tuple_comparisons() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(tuple_gt(&s(&["a"]), &s(&["1"])), "(a > 1)");
        assert_eq!(
            tuple_gt(&s(&["a", "b", "c"]), &s(&["1", "2", "3"])),
            "(a > 1 OR (a = 1 AND (b > 2 OR (b = 2 AND (c > 3)))))"
        );
    }

    #[test]
    fn identifiers_and_strings() {
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(str_literal("ab"), "X'6162'");
    }

    #[test]
    fn compare_literals_by_type() {
        let col = |kind, cs: Option<&str>| Column {
            name: "c".into(),
            kind,
            charset: cs.map(Into::into),
            collation: cs.map(|c| format!("{c}_general_ci")),
            generated: false,
        };
        assert_eq!(
            col(ColKind::Text, Some("utf8mb4")).cmp_literal(&Value::Text(b"a".to_vec())),
            "_utf8mb4 X'61' COLLATE utf8mb4_general_ci"
        );
        let t = Value::Time {
            negative: true,
            hours: 100,
            minutes: 0,
            seconds: 0,
            micros: 0,
        };
        assert_eq!(
            col(ColKind::Time, None).cmp_literal(&t),
            "CAST('-100:00:00' AS TIME(6))"
        );
        assert_eq!(
            col(ColKind::Integer, None).cmp_literal(&Value::Int(-3)),
            "-3"
        );
    }
}
