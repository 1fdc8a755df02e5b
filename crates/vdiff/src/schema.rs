//! What VDiff knows about a table: its columns as the source describes
//! them, how each key column orders, and the SQL that reads one batch.
//!
//! Both sides are read with the same select list, built from the source's
//! columns; the target must have the same columns with the same types and
//! collations (it was created from the source's definition), or the
//! comparison would not mean anything and VDiff says so instead.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use std::fmt::Write as _;
use std::sync::Arc;

/// How a column's values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Float,
    Double,
    Decimal,
    Year,
    Date,
    DateTime,
    Timestamp,
    Time,
    /// Character data, compared bytewise as values and by collation as keys.
    Text,
    /// JSON (MySQL's type, or MariaDB's LONGTEXT with `json_valid`),
    /// compared as JSON.
    Json,
    Binary,
    Enum,
    Set,
    Bit,
}

pub(crate) fn kind_of(data_type: &str) -> Option<Kind> {
    Some(match data_type {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => Kind::Integer,
        "float" => Kind::Float,
        "double" | "real" => Kind::Double,
        "decimal" | "numeric" => Kind::Decimal,
        "year" => Kind::Year,
        "date" => Kind::Date,
        "datetime" => Kind::DateTime,
        "timestamp" => Kind::Timestamp,
        "time" => Kind::Time,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => Kind::Text,
        "json" => Kind::Json,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry"
        | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => Kind::Binary,
        "enum" => Kind::Enum,
        "set" => Kind::Set,
        "bit" => Kind::Bit,
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    pub charset: Option<String>,
    pub collation: Option<String>,
    /// The column may hold NULL (on the source; [`TablePlan::widen_nullable`]
    /// makes it "on any side").
    pub nullable: bool,
}

/// How one key column orders rows, so that the merge orders them exactly
/// as the servers' `ORDER BY` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrder {
    /// Integers (signed or not) and YEAR.
    Numeric,
    /// DECIMAL text, compared as exact numbers.
    Decimal,
    /// FLOAT and DOUBLE.
    Float,
    /// Binary strings: bytewise.
    Bytes,
    /// DATE, DATETIME, TIMESTAMP, TIME.
    Temporal,
    /// Character data: by the server's `WEIGHT_STRING` of the value, read
    /// as the extra select column `extra`. Weight strings of a PAD SPACE
    /// collation compare as if the shorter one were padded with `pad` (the
    /// weight of one space), which is how the server's comparison treats
    /// trailing characters; `pad` is empty for NO PAD collations.
    Weight { extra: usize, pad: Arc<[u8]> },
}

/// One table as VDiff reads and compares it.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub name: String,
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the key, in key order.
    pub pk: Vec<usize>,
    /// How each key column orders, parallel to `pk`.
    pub order: Vec<KeyOrder>,
    /// Extra select columns after the table's columns (weight strings).
    pub extras: usize,
}

pub(crate) fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Character set and collation names go into SQL text: only plain names.
fn plain_name(s: &str) -> Result<&str, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(s)
    } else {
        Err(format!("unexpected character set or collation name `{s}`"))
    }
}

type ColRow = (String, String, Option<String>, Option<String>, String);

/// Reads the columns of `db.table` on one server.
pub(crate) async fn read_columns(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> Result<Vec<Column>, String> {
    let rows: Vec<ColRow> = conn
        .exec(
            "SELECT COLUMN_NAME, LOWER(DATA_TYPE), CHARACTER_SET_NAME, COLLATION_NAME, IS_NULLABLE \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await
        .map_err(|e| format!("reading the columns of `{table}`: {e}"))?;
    if rows.is_empty() {
        return Err(format!("table `{table}` does not exist in `{db}`"));
    }
    // MariaDB's JSON is a LONGTEXT with a `json_valid` check; MySQL has no
    // TABLE_NAME there and its JSON says so in DATA_TYPE, so a failing
    // query only means "no such checks".
    let checks: Vec<String> = conn
        .exec(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ?",
            (db, table),
        )
        .await
        .unwrap_or_default();
    let mut out = Vec::with_capacity(rows.len());
    for (name, data_type, charset, collation, nullable) in rows {
        let Some(mut kind) = kind_of(&data_type) else {
            return Err(format!(
                "column `{table}`.`{name}` has type {data_type}, which VDiff does not compare"
            ));
        };
        if kind == Kind::Text && charset.as_deref() == Some("binary") {
            kind = Kind::Binary;
        }
        let check = format!("json_valid({})", ident(&name)).to_ascii_lowercase();
        if kind == Kind::Text
            && checks
                .iter()
                .any(|c| c.to_ascii_lowercase().replace(' ', "") == check)
        {
            kind = Kind::Json;
        }
        out.push(Column {
            name,
            kind,
            charset,
            collation,
            nullable: !nullable.eq_ignore_ascii_case("NO"),
        });
    }
    Ok(out)
}

impl TablePlan {
    /// Builds the plan from the source's columns and checks the target's
    /// against them. `probe` is a source connection used to learn each
    /// text key column's padding (any connection to the source's server).
    pub(crate) async fn build(
        name: &str,
        pk_columns: &[String],
        source: Vec<Column>,
        probe: &mut Conn,
    ) -> Result<TablePlan, String> {
        let find = |n: &str| source.iter().position(|c| c.name.eq_ignore_ascii_case(n));
        if pk_columns.is_empty() {
            return Err(format!("table `{name}` has no key to order by"));
        }
        let mut pk = Vec::new();
        let mut order = Vec::new();
        let mut extras = 0;
        for n in pk_columns {
            let i = find(n).ok_or_else(|| format!("key column `{name}`.`{n}` does not exist"))?;
            let c = &source[i];
            let o = match c.kind {
                Kind::Integer | Kind::Year => KeyOrder::Numeric,
                Kind::Decimal => KeyOrder::Decimal,
                Kind::Float | Kind::Double => KeyOrder::Float,
                Kind::Binary => KeyOrder::Bytes,
                Kind::Date | Kind::DateTime | Kind::Timestamp | Kind::Time => KeyOrder::Temporal,
                Kind::Text => {
                    let pad = pad_weight(probe, c).await?;
                    extras += 1;
                    KeyOrder::Weight {
                        extra: source.len() + extras - 1,
                        pad: pad.into(),
                    }
                }
                Kind::Json | Kind::Enum | Kind::Set | Kind::Bit => {
                    return Err(format!(
                        "key column `{name}`.`{n}` is {:?}; VDiff orders by integer, decimal, float, text, binary and temporal keys only",
                        c.kind
                    ));
                }
            };
            pk.push(i);
            order.push(o);
        }
        Ok(TablePlan {
            name: name.to_string(),
            columns: source,
            pk,
            order,
            extras,
        })
    }

    /// Whether the target's columns are the source's: same names, order,
    /// kinds and collations. Returns what differs.
    pub(crate) fn check_target(&self, target: &[Column]) -> Result<(), String> {
        if target.len() != self.columns.len() {
            return Err(format!(
                "table `{}` has {} column(s) on the source and {} on the target",
                self.name,
                self.columns.len(),
                target.len()
            ));
        }
        for (s, t) in self.columns.iter().zip(target) {
            if !s.name.eq_ignore_ascii_case(&t.name) || s.kind != t.kind {
                return Err(format!(
                    "table `{}`: source column `{}` ({:?}) is `{}` ({:?}) on the target",
                    self.name, s.name, s.kind, t.name, t.kind
                ));
            }
            if s.collation != t.collation {
                return Err(format!(
                    "table `{}`: column `{}` has collation {:?} on the source and {:?} on the target",
                    self.name, s.name, s.collation, t.collation
                ));
            }
        }
        Ok(())
    }

    /// Marks a column nullable when it is nullable on `other` (another
    /// shard's columns, already checked by [`TablePlan::check_target`]): a
    /// NOT NULL source column may still hold NULLs on a target that
    /// allows them, and the checksums must tell those apart.
    pub(crate) fn widen_nullable(&mut self, other: &[Column]) {
        for (c, o) in self.columns.iter_mut().zip(other) {
            c.nullable |= o.nullable;
        }
    }

    pub(crate) fn key_names(&self) -> Vec<String> {
        self.pk
            .iter()
            .map(|&i| self.columns[i].name.clone())
            .collect()
    }

    /// The query for the batch after `after` (key values as read), in key
    /// order.
    pub(crate) fn batch_sql(
        &self,
        db: &str,
        after: Option<&[mysql_async::Value]>,
        upto: Option<&[mysql_async::Value]>,
        limit: usize,
    ) -> Result<String, String> {
        let mut s = String::from("SELECT ");
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&ident(&c.name));
        }
        for (k, o) in self.order.iter().enumerate() {
            if let KeyOrder::Weight { .. } = o {
                let _ = write!(
                    s,
                    ", WEIGHT_STRING({})",
                    ident(&self.columns[self.pk[k]].name)
                );
            }
        }
        let _ = write!(s, " FROM {}.{}", ident(db), ident(&self.name));
        if let Some(after) = after {
            let cols: Vec<String> = self
                .pk
                .iter()
                .map(|&i| ident(&self.columns[i].name))
                .collect();
            let mut lits = Vec::with_capacity(after.len());
            for (k, v) in after.iter().enumerate() {
                let col = self
                    .pk
                    .get(k)
                    .map(|&i| &self.columns[i])
                    .ok_or("a resume key with more values than the table's key")?;
                lits.push(literal(col, v)?);
            }
            if lits.len() != cols.len() {
                return Err("a resume key with fewer values than the table's key".into());
            }
            let _ = write!(s, " WHERE {}", tuple_gt(&cols, &lits));
        }
        if let Some(upto) = upto {
            let cols: Vec<String> = self
                .pk
                .iter()
                .map(|&i| ident(&self.columns[i].name))
                .collect();
            if upto.len() != cols.len() {
                return Err("an upper key with the wrong number of values".into());
            }
            let mut lits = Vec::with_capacity(upto.len());
            for (&i, v) in self.pk.iter().zip(upto) {
                lits.push(literal(&self.columns[i], v)?);
            }
            let glue = if after.is_some() { "AND" } else { "WHERE" };
            let _ = write!(s, " {glue} NOT {}", tuple_gt(&cols, &lits));
        }
        let order: Vec<String> = self
            .pk
            .iter()
            .map(|&i| ident(&self.columns[i].name))
            .collect();
        let _ = write!(s, " ORDER BY {} LIMIT {limit}", order.join(", "));
        Ok(s)
    }
}

/// The weight of one space in `c`'s collation when the collation pads
/// (PAD SPACE: `'a' = 'a '`), else nothing.
async fn pad_weight(conn: &mut Conn, c: &Column) -> Result<Vec<u8>, String> {
    let (Some(cs), Some(coll)) = (&c.charset, &c.collation) else {
        return Ok(Vec::new());
    };
    let (cs, coll) = (plain_name(cs)?, plain_name(coll)?);
    let sql = format!(
        "SELECT WEIGHT_STRING(_{cs} X'20' COLLATE {coll}), \
         (_{cs} X'61' COLLATE {coll}) = (_{cs} X'6120' COLLATE {coll})"
    );
    let row: Option<(Vec<u8>, i64)> = conn
        .query_first(sql)
        .await
        .map_err(|e| format!("reading the padding of collation {coll}: {e}"))?;
    Ok(match row {
        Some((w, 1)) => w,
        _ => Vec::new(),
    })
}

/// A literal of `v` that compares with `col`'s values in `col`'s order.
pub(crate) fn literal(col: &Column, v: &mysql_async::Value) -> Result<String, String> {
    use mysql_async::Value as W;
    Ok(match (col.kind, v) {
        (_, W::NULL) => "NULL".into(),
        (_, W::Int(i)) => i.to_string(),
        (_, W::UInt(u)) => u.to_string(),
        (_, W::Float(f)) => format!("{:e}", f64::from(*f)),
        (_, W::Double(d)) => format!("{d:e}"),
        (Kind::Text, W::Bytes(b)) => {
            let hex = hex::encode(b);
            match (&col.charset, &col.collation) {
                (Some(cs), Some(coll)) => {
                    format!(
                        "_{} X'{hex}' COLLATE {}",
                        plain_name(cs)?,
                        plain_name(coll)?
                    )
                }
                (Some(cs), None) => format!("_{} X'{hex}'", plain_name(cs)?),
                _ => format!("X'{hex}'"),
            }
        }
        (Kind::Decimal | Kind::Integer | Kind::Year, W::Bytes(b)) => {
            let ok = !b.is_empty()
                && b.iter()
                    .all(|&c| c.is_ascii_digit() || c == b'-' || c == b'.');
            if !ok {
                return Err(format!("column `{}`: bad number {b:?}", col.name));
            }
            String::from_utf8_lossy(b).into_owned()
        }
        (_, W::Bytes(b)) => format!("X'{}'", hex::encode(b)),
        (Kind::Date, W::Date(y, m, d, ..)) => format!("CAST('{y:04}-{m:02}-{d:02}' AS DATE)"),
        (_, W::Date(y, mo, d, h, mi, s, us)) => {
            format!("CAST('{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}' AS DATETIME(6))")
        }
        (_, W::Time(neg, days, h, m, s, us)) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            let sign = if *neg { "-" } else { "" };
            format!("CAST('{sign}{hours:02}:{m:02}:{s:02}.{us:06}' AS TIME(6))")
        }
    })
}

/// `lhs > rhs` for tuples, spelled out so the range optimizer uses the key.
pub(crate) fn tuple_gt(lhs: &[String], rhs: &[String]) -> String {
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
    use mysql_async::Value as W;

    fn col(kind: Kind) -> Column {
        Column {
            name: "c".into(),
            kind,
            charset: Some("utf8mb4".into()),
            collation: Some("utf8mb4_general_ci".into()),
            nullable: true,
        }
    }

    #[test]
    fn literals_keep_type_and_collation() {
        assert_eq!(
            literal(&col(Kind::Text), &W::Bytes(b"Ab".to_vec())).unwrap(),
            "_utf8mb4 X'4162' COLLATE utf8mb4_general_ci"
        );
        assert_eq!(
            literal(&col(Kind::Decimal), &W::Bytes(b"-1.50".to_vec())).unwrap(),
            "-1.50"
        );
        assert!(literal(&col(Kind::Decimal), &W::Bytes(b"1; DROP".to_vec())).is_err());
        assert_eq!(
            literal(&col(Kind::Time), &W::Time(true, 1, 2, 3, 4, 5)).unwrap(),
            "CAST('-26:03:04.000005' AS TIME(6))"
        );
        assert_eq!(
            literal(&col(Kind::Date), &W::Date(2024, 1, 2, 0, 0, 0, 0)).unwrap(),
            "CAST('2024-01-02' AS DATE)"
        );
        let mut bad = col(Kind::Text);
        bad.collation = Some("x' OR 1".into());
        assert!(literal(&bad, &W::Bytes(vec![1])).is_err());
    }

    #[test]
    fn batch_queries() {
        let plan = TablePlan {
            name: "t".into(),
            columns: vec![
                Column {
                    name: "a".into(),
                    kind: Kind::Integer,
                    charset: None,
                    collation: None,
                    nullable: true,
                },
                col(Kind::Text),
            ],
            pk: vec![0, 1],
            order: vec![
                KeyOrder::Numeric,
                KeyOrder::Weight {
                    extra: 2,
                    pad: Arc::from(vec![0u8, 32]),
                },
            ],
            extras: 1,
        };
        assert_eq!(
            plan.batch_sql("db", None, None, 10).unwrap(),
            "SELECT `a`, `c`, WEIGHT_STRING(`c`) FROM `db`.`t` ORDER BY `a`, `c` LIMIT 10"
        );
        let after = [W::Int(3), W::Bytes(b"x".to_vec())];
        assert_eq!(
            plan.batch_sql("db", Some(&after), None, 5).unwrap(),
            "SELECT `a`, `c`, WEIGHT_STRING(`c`) FROM `db`.`t` WHERE (`a` > 3 OR (`a` = 3 AND (`c` > _utf8mb4 X'78' COLLATE utf8mb4_general_ci))) ORDER BY `a`, `c` LIMIT 5"
        );
        assert!(plan.batch_sql("db", Some(&after[..1]), None, 5).is_err());
        assert!(
            plan.batch_sql("db", None, Some(&after), 5)
                .unwrap()
                .contains(" WHERE NOT (`a` > 3 OR (`a` = 3 AND (`c` > _utf8mb4 X'78' COLLATE utf8mb4_general_ci))) ORDER BY")
        );
    }

    #[test]
    fn target_schema_must_match() {
        let plan = TablePlan {
            name: "t".into(),
            columns: vec![col(Kind::Text)],
            pk: vec![0],
            order: vec![KeyOrder::Bytes],
            extras: 0,
        };
        assert!(plan.check_target(&[col(Kind::Text)]).is_ok());
        let mut other = col(Kind::Text);
        other.collation = Some("utf8mb4_bin".into());
        assert!(
            plan.check_target(&[other])
                .unwrap_err()
                .contains("collation")
        );
        assert!(plan.check_target(&[]).is_err());
    }
}
