//! Turning source row changes into target statements.
//!
//! A change is first reduced to what it means for this shard ([`Op`]): an
//! update whose vindex column moves the row out of the key range is a
//! delete here, one that moves it in is an insert, one that stays out is
//! nothing. Ops are then rendered into a [`SqlBatch`], a multi-statement
//! string the applier sends inside one target transaction together with
//! the stream's new position.

use std::fmt::Write as _;
use std::sync::Arc;

use keyshift_types::KeyRange;

use crate::rows::{ChangeKind, Row, RowChange};
use crate::value::Value;

use super::keyfilter::in_range;
use super::schema::{TablePlan, ident};

/// What one source row change does to this shard.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    /// `replace`: the row may already be there (it entered the key range
    /// through an update), so write it idempotently.
    Insert {
        row: Row,
        replace: bool,
    },
    /// Set every column of the row whose key is `key` to `row`.
    Update {
        key: Vec<Value>,
        row: Row,
    },
    Delete {
        key: Vec<Value>,
    },
}

impl Op {
    /// The key the op writes (inserts, and the new key of updates).
    pub(crate) fn new_key(&self, plan: &TablePlan) -> Option<Vec<Value>> {
        match self {
            Op::Insert { row, .. } | Op::Update { row, .. } => key_of(plan, row),
            Op::Delete { .. } => None,
        }
    }
}

fn value_of<'a>(row: &'a Row, name: &str) -> Option<&'a Value> {
    row.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The key columns' values of a row image.
pub(crate) fn key_of(plan: &TablePlan, row: &Row) -> Option<Vec<Value>> {
    plan.pk_columns()
        .map(|c| value_of(row, &c.name).cloned())
        .collect()
}

/// Reduces a change of `plan`'s table to this shard's ops.
pub(crate) fn ops_for(
    plan: &TablePlan,
    range: &KeyRange,
    ch: &RowChange,
) -> Result<Vec<Op>, String> {
    let vcol = plan
        .vindex
        .as_ref()
        .map(|(i, _)| plan.columns[*i].name.as_str());
    let placed = |row: &Row| in_range(plan, range, vcol.and_then(|n| value_of(row, n)));
    let key =
        |row: &Row| key_of(plan, row).ok_or_else(|| "row image lacks a key column".to_string());
    let missing = || format!("{:?} event without its row image", ch.kind);
    Ok(match ch.kind {
        ChangeKind::Insert => {
            let after = ch.after.as_ref().ok_or_else(missing)?;
            if placed(after)? {
                vec![Op::Insert {
                    row: after.clone(),
                    replace: false,
                }]
            } else {
                vec![]
            }
        }
        ChangeKind::Delete => {
            let before = ch.before.as_ref().ok_or_else(missing)?;
            if placed(before)? {
                vec![Op::Delete { key: key(before)? }]
            } else {
                vec![]
            }
        }
        ChangeKind::Update => {
            let before = ch.before.as_ref().ok_or_else(missing)?;
            let after = ch.after.as_ref().ok_or_else(missing)?;
            match (placed(before)?, placed(after)?) {
                (true, true) => vec![Op::Update {
                    key: key(before)?,
                    row: after.clone(),
                }],
                (true, false) => vec![Op::Delete { key: key(before)? }],
                (false, true) => vec![Op::Insert {
                    row: after.clone(),
                    replace: true,
                }],
                (false, false) => vec![],
            }
        }
    })
}

/// Statements for one target transaction, separated by `;`. Consecutive
/// inserts into one table with the same columns become one multi-row
/// INSERT, which is what makes a backlog of small transactions cheap to
/// apply. A batch larger than [`MAX_CHUNK_BYTES`] is cut, at statement
/// boundaries, into chunks the applier sends one by one inside the same
/// transaction, so no packet outgrows the server's max_allowed_packet.
#[derive(Debug, Default)]
pub(crate) struct SqlBatch {
    done: Vec<String>,
    done_bytes: usize,
    sql: String,
    /// The prefix (`INSERT INTO t (cols) VALUES `) of the statement the
    /// buffer ends with, when more rows may be appended to it.
    open_insert: Option<String>,
}

/// The largest chunk of statements sent in one packet (well below
/// MariaDB's default max_allowed_packet of 16 MiB).
pub(crate) const MAX_CHUNK_BYTES: usize = 4 << 20;

/// Above this size a running batch is committed even if more events are
/// ready, to bound the target transaction.
pub(crate) const MAX_BATCH_BYTES: usize = 16 << 20;

impl SqlBatch {
    /// Bytes of SQL held.
    pub(crate) fn len(&self) -> usize {
        self.done_bytes + self.sql.len()
    }

    /// The chunks, in order (none when empty).
    pub(crate) fn take(&mut self) -> Vec<String> {
        self.open_insert = None;
        self.done_bytes = 0;
        let mut out = std::mem::take(&mut self.done);
        if !self.sql.is_empty() {
            out.push(std::mem::take(&mut self.sql));
        }
        out
    }

    /// Starts a new chunk when the current one is full; only at a
    /// statement boundary.
    fn cut_if_full(&mut self) {
        if self.sql.len() >= MAX_CHUNK_BYTES {
            self.open_insert = None;
            self.done_bytes += self.sql.len();
            self.done.push(std::mem::take(&mut self.sql));
        }
    }

    /// Appends a statement of its own.
    pub(crate) fn push(&mut self, stmt: &str) {
        self.cut_if_full();
        self.open_insert = None;
        if !self.sql.is_empty() {
            self.sql.push_str(";\n");
        }
        self.sql.push_str(stmt);
    }

    /// Appends one row to insert; `replace` uses REPLACE (idempotent).
    pub(crate) fn insert<'a>(
        &mut self,
        db: &str,
        plan: &TablePlan,
        replace: bool,
        row: impl Iterator<Item = (&'a str, &'a Value)> + Clone,
    ) {
        let writable = row.filter(|(n, _)| plan.column(n).is_none_or(|c| !c.generated));
        let mut prefix = String::new();
        let _ = write!(
            prefix,
            "{} INTO {}.{} (",
            if replace { "REPLACE" } else { "INSERT" },
            ident(db),
            ident(&plan.name)
        );
        for (i, (n, _)) in writable.clone().enumerate() {
            if i > 0 {
                prefix.push(',');
            }
            prefix.push_str(&ident(n));
        }
        prefix.push_str(") VALUES ");
        self.cut_if_full();
        if self.open_insert.as_deref() == Some(prefix.as_str()) {
            self.sql.push(',');
        } else {
            self.push(&prefix);
            self.open_insert = Some(prefix);
        }
        self.sql.push('(');
        for (i, (_, v)) in writable.enumerate() {
            if i > 0 {
                self.sql.push(',');
            }
            v.write_sql_literal(&mut self.sql);
        }
        self.sql.push(')');
    }

    /// Renders an op on `plan`'s table in `db`.
    pub(crate) fn op(&mut self, db: &str, plan: &TablePlan, op: &Op) {
        let table = format!("{}.{}", ident(db), ident(&plan.name));
        match op {
            Op::Insert { row, replace } => self.insert(
                db,
                plan,
                *replace,
                row.iter().map(|(n, v): &(Arc<str>, Value)| (&**n, v)),
            ),
            Op::Update { key, row } => {
                let mut s = format!("UPDATE {table} SET ");
                let mut first = true;
                for (n, v) in row {
                    if plan.column(n).is_some_and(|c| c.generated) {
                        continue;
                    }
                    if !first {
                        s.push(',');
                    }
                    first = false;
                    let _ = write!(s, "{}=", ident(n));
                    v.write_sql_literal(&mut s);
                }
                let _ = write!(s, " WHERE {}", key_where(plan, key));
                self.push(&s);
            }
            Op::Delete { key } => {
                self.push(&format!(
                    "DELETE FROM {table} WHERE {}",
                    key_where(plan, key)
                ));
            }
        }
    }
}

/// `a = x AND b = y` for a key, with literals that compare in the column's
/// own collation so the key index is used.
fn key_where(plan: &TablePlan, key: &[Value]) -> String {
    plan.pk_columns()
        .zip(key)
        .map(|(c, v)| format!("{} = {}", ident(&c.name), c.cmp_literal(v)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::stream::schema::{ColKind, Column};

    fn plan(vindex: bool) -> TablePlan {
        let col = |n: &str, kind| Column {
            name: n.into(),
            kind,
            charset: None,
            collation: None,
            generated: false,
        };
        TablePlan {
            name: "t".into(),
            columns: vec![col("id", ColKind::Integer), col("k", ColKind::Integer)],
            pk: vec![0],
            vindex: vindex.then(|| {
                (
                    1,
                    keyshift_vindex::new_vindex("hash", &BTreeMap::new()).unwrap(),
                )
            }),
        }
    }

    fn row(id: i64, k: u64) -> Row {
        vec![("id".into(), Value::Int(id)), ("k".into(), Value::UInt(k))]
    }

    fn change(kind: ChangeKind, before: Option<Row>, after: Option<Row>) -> RowChange {
        RowChange {
            db: "d".into(),
            table: "t".into(),
            kind,
            before,
            after,
        }
    }

    #[test]
    fn updates_that_move_rows_between_shards() {
        // hash(1) = 166b40b44aba4bd6 (in -80), hash(2) = 06e7ea22ce92708f
        // (in -80), hash(4) = d2fd8867d50d2dfe (in 80-).
        let p = plan(true);
        let low = KeyRange::parse("-80").unwrap();
        let high = KeyRange::parse("80-").unwrap();
        let up = change(ChangeKind::Update, Some(row(7, 1)), Some(row(7, 4)));
        assert_eq!(
            ops_for(&p, &low, &up).unwrap(),
            vec![Op::Delete {
                key: vec![Value::Int(7)]
            }]
        );
        assert_eq!(
            ops_for(&p, &high, &up).unwrap(),
            vec![Op::Insert {
                row: row(7, 4),
                replace: true
            }]
        );
        let stay = change(ChangeKind::Update, Some(row(7, 1)), Some(row(8, 2)));
        assert!(ops_for(&p, &high, &stay).unwrap().is_empty());
        assert_eq!(
            ops_for(&p, &low, &stay).unwrap(),
            vec![Op::Update {
                key: vec![Value::Int(7)],
                row: row(8, 2)
            }]
        );
        // No vindex: every row.
        let ins = change(ChangeKind::Insert, None, Some(row(1, 4)));
        assert_eq!(ops_for(&plan(false), &low, &ins).unwrap().len(), 1);
    }

    #[test]
    fn consecutive_inserts_merge() {
        let p = plan(false);
        let mut b = SqlBatch::default();
        for i in 0..2 {
            b.op(
                "d",
                &p,
                &Op::Insert {
                    row: row(i, 1),
                    replace: false,
                },
            );
        }
        b.op(
            "d",
            &p,
            &Op::Delete {
                key: vec![Value::Int(0)],
            },
        );
        assert_eq!(
            b.take(),
            vec![
                "INSERT INTO `d`.`t` (`id`,`k`) VALUES (0,1),(1,1);\nDELETE FROM `d`.`t` WHERE `id` = 0"
            ]
        );
        assert_eq!(b.len(), 0);
        assert!(b.take().is_empty());
    }

    #[test]
    fn large_batches_are_cut_at_statement_boundaries() {
        let p = plan(false);
        let mut b = SqlBatch::default();
        let big = Value::Bytes(vec![7; MAX_CHUNK_BYTES / 3]);
        for i in 0..5 {
            b.op(
                "d",
                &p,
                &Op::Insert {
                    row: vec![("id".into(), Value::Int(i)), ("k".into(), big.clone())],
                    replace: false,
                },
            );
        }
        let total = b.len();
        let chunks = b.take();
        assert!(chunks.len() > 1);
        assert_eq!(chunks.iter().map(String::len).sum::<usize>(), total);
        for c in &chunks {
            assert!(c.starts_with("INSERT INTO"), "{}", &c[..20]);
            assert!(c.ends_with(')'));
        }
    }
}
