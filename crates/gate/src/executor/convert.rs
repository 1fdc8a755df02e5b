//! Between the protocol's values and the router's [`Datum`]s: parameters
//! become data for binding, result cells become data for merging and back.

use keyshift_router::{ColumnKind, Datum};

use crate::params::{Param, ParamValue};
use crate::proto::{Column, ColumnFlags, ColumnType, Value};

/// How merges must compare a column's values.
pub(crate) fn column_kind(c: &Column) -> ColumnKind {
    use ColumnType::*;
    match c.column_type {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_INT24
        | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR => {
            if c.unsigned() {
                ColumnKind::UInt
            } else {
                ColumnKind::Int
            }
        }
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => ColumnKind::Float,
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => ColumnKind::Decimal,
        MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_STRING
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_SET
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_JSON => {
            // collation 63 is `binary`: byte strings compare bytewise
            if c.charset == 63 {
                ColumnKind::Binary
            } else {
                ColumnKind::Text
            }
        }
        _ => ColumnKind::Binary,
    }
}

/// A decoded result cell as the merge sees it.
pub(crate) fn cell_datum(kind: ColumnKind, v: Value) -> Datum {
    match v {
        Value::NULL => Datum::Null,
        Value::Bytes(b) => match kind {
            // no parsing needed: keep the bytes without a copy
            ColumnKind::Text => Datum::Text(b),
            ColumnKind::Binary => Datum::Binary(b),
            _ => Datum::from_text(kind, Some(&b)),
        },
        Value::Int(i) => Datum::Int(i),
        Value::UInt(u) => Datum::UInt(u),
        Value::Float(f) => Datum::Float(f64::from(f)),
        Value::Double(d) => Datum::Float(d),
        other @ (Value::Date(..) | Value::Time(..)) => {
            Datum::Binary(other.as_sql(true).trim_matches('\'').as_bytes().to_vec())
        }
    }
}

/// A merged cell back in text form, which the response re-encodes for
/// binary clients by column type.
pub(crate) fn datum_value(d: Datum) -> Value {
    match d {
        Datum::Null => Value::NULL,
        Datum::Text(b) | Datum::Binary(b) => Value::Bytes(b),
        other => other.to_text().map_or(Value::NULL, Value::Bytes),
    }
}

/// A prepared-statement parameter as a value to route on and to inline into
/// statement text.
pub(crate) fn param_datum(p: &Param<'_>) -> Datum {
    use ColumnType::*;
    match p.value {
        ParamValue::Null => Datum::Null,
        ParamValue::Int(i) => Datum::Int(i),
        ParamValue::UInt(u) => match i64::try_from(u) {
            Ok(i) if !p.unsigned => Datum::Int(i),
            _ => Datum::UInt(u),
        },
        ParamValue::Float(f) => Datum::Float(f64::from(f)),
        ParamValue::Double(d) => Datum::Float(d),
        ParamValue::Bytes(b) => match p.column_type {
            MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => {
                Datum::from_text(keyshift_router::ColumnKind::Decimal, Some(b))
            }
            MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_BLOB
                if std::str::from_utf8(b).is_err() =>
            {
                Datum::Binary(b.to_vec())
            }
            _ => Datum::Text(b.to_vec()),
        },
        ParamValue::Date(y, mo, d, h, mi, s, us) => {
            let mut t = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            if us != 0 {
                t.push_str(&format!(".{us:06}"));
            }
            Datum::Text(t.into_bytes())
        }
        ParamValue::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let mut t = format!("{}{hours:02}:{mi:02}:{s:02}", if neg { "-" } else { "" });
            if us != 0 {
                t.push_str(&format!(".{us:06}"));
            }
            Datum::Text(t.into_bytes())
        }
    }
}

/// Column definition and text value of a value the gate computes itself.
pub(crate) fn local_column(name: &str, d: &Datum) -> Column {
    use ColumnType::*;
    let mut c = match d {
        Datum::Null => Column::new(name, MYSQL_TYPE_NULL),
        Datum::Int(_) => Column::new(name, MYSQL_TYPE_LONGLONG),
        Datum::UInt(_) => {
            let mut c = Column::new(name, MYSQL_TYPE_LONGLONG);
            c.flags |= ColumnFlags::UNSIGNED_FLAG;
            c
        }
        Datum::Float(_) => Column::new(name, MYSQL_TYPE_DOUBLE),
        Datum::Decimal(_) => Column::new(name, MYSQL_TYPE_NEWDECIMAL),
        Datum::Text(_) => Column::new(name, MYSQL_TYPE_VAR_STRING),
        Datum::Binary(_) => {
            let mut c = Column::new(name, MYSQL_TYPE_VAR_STRING);
            c.charset = 63;
            c.flags |= ColumnFlags::BINARY_FLAG;
            c
        }
    };
    if matches!(d, Datum::Null) {
        c.charset = 63;
    }
    c.flags |= if matches!(d, Datum::Null) {
        ColumnFlags::empty()
    } else {
        ColumnFlags::NOT_NULL_FLAG
    };
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_become_data() {
        let p = |column_type, unsigned, value| Param {
            column_type,
            unsigned,
            value,
        };
        assert_eq!(
            param_datum(&p(
                ColumnType::MYSQL_TYPE_LONGLONG,
                false,
                ParamValue::Int(-3)
            )),
            Datum::Int(-3)
        );
        assert_eq!(
            param_datum(&p(
                ColumnType::MYSQL_TYPE_LONGLONG,
                true,
                ParamValue::UInt(u64::MAX)
            )),
            Datum::UInt(u64::MAX)
        );
        assert_eq!(
            param_datum(&p(
                ColumnType::MYSQL_TYPE_VAR_STRING,
                false,
                ParamValue::Bytes(b"it's")
            ))
            .to_sql_literal(),
            "'it\\'s'"
        );
        assert_eq!(
            param_datum(&p(
                ColumnType::MYSQL_TYPE_DATETIME,
                false,
                ParamValue::Date(2024, 2, 3, 4, 5, 6, 0)
            ))
            .to_sql_literal(),
            "'2024-02-03 04:05:06'"
        );
        assert_eq!(
            param_datum(&p(
                ColumnType::MYSQL_TYPE_TIME,
                false,
                ParamValue::Time(true, 1, 2, 3, 4, 5)
            ))
            .to_sql_literal(),
            "'-26:03:04.000005'"
        );
    }

    #[test]
    fn cells_round_trip() {
        let mut c = Column::new("n", ColumnType::MYSQL_TYPE_LONGLONG);
        assert_eq!(column_kind(&c), ColumnKind::Int);
        c.flags |= ColumnFlags::UNSIGNED_FLAG;
        assert_eq!(column_kind(&c), ColumnKind::UInt);
        let d = cell_datum(
            ColumnKind::UInt,
            Value::Bytes(b"18446744073709551615".to_vec()),
        );
        assert_eq!(d, Datum::UInt(u64::MAX));
        assert_eq!(
            datum_value(d),
            Value::Bytes(b"18446744073709551615".to_vec())
        );
        assert_eq!(cell_datum(ColumnKind::Text, Value::NULL), Datum::Null);
    }
}
