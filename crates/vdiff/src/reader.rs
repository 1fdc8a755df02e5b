//! Reading one table of one shard, in key order, in batches, inside the
//! shard's snapshot transaction.
//!
//! Each batch is one `SELECT ... WHERE key > last ORDER BY key LIMIT n`
//! on the snapshot connection: no result set stays open between batches,
//! and the reader runs at most one batch ahead of the merge (the channel
//! holds one), so a slow merge never leaves a server streaming into a full
//! socket. The reader also checks that the server's order agrees with the
//! merge's comparison: if it did not, the merge would pair the wrong rows
//! and report differences that are not there, so it fails loudly instead.

use crate::compare::{cmp_key, display};
use crate::merge::{Batch, Row};
use crate::schema::{Kind, TablePlan};
use keyshift_types::KeyRange;
use keyshift_vindex::Vindex;
use keyshift_vrepl::Snapshot;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Value};
use std::cmp::Ordering;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A connection inside a consistent snapshot: a source's (with its exact
/// position) or a target's.
pub(crate) enum Held {
    Source(Snapshot),
    Target(Conn),
}

impl Held {
    pub(crate) fn conn(&mut self) -> &mut Conn {
        match self {
            Held::Source(s) => s.conn(),
            Held::Target(c) => c,
        }
    }

    /// Ends the snapshot transaction (best effort: the connection closes
    /// either way).
    pub(crate) async fn finish(self) {
        match self {
            Held::Source(s) => {
                if let Ok(c) = s.finish().await {
                    let _ = c.disconnect().await;
                }
            }
            Held::Target(mut c) => {
                let _ = c.query_drop("COMMIT").await;
                let _ = c.disconnect().await;
            }
        }
    }
}

/// One shard's snapshot connection and where its table lives.
pub(crate) struct ShardSide {
    pub shard: String,
    pub db: String,
    pub held: Held,
    /// Every side is MariaDB (picks the checksum function).
    pub mariadb: bool,
    /// More connections inside a snapshot at exactly the same point (same
    /// position), for the checksum fast path to spread a source's work
    /// over more server threads.
    pub spare: Vec<Held>,
}

/// Which target rows belong on the shard: the primary vindex of the row's
/// vindex column must map into `range`.
#[derive(Clone)]
pub(crate) struct Placement {
    pub col: usize,
    pub kind: Kind,
    pub vindex: Arc<dyn Vindex>,
    pub range: KeyRange,
}

impl Placement {
    pub(crate) fn placed(&self, values: &[Value]) -> bool {
        let Some(v) = values.get(self.col) else {
            return false;
        };
        match v {
            Value::Int(i) => return self.placed_int(i128::from(*i)),
            Value::UInt(u) => return self.placed_int(i128::from(*u)),
            _ => {}
        }
        // A value the vindex cannot map belongs to no shard at all.
        match self.vindex.map(&vindex_value(self.kind, v)) {
            Ok(ksid) => self.range.contains(ksid.as_bytes()),
            Err(_) => false,
        }
    }

    /// [`Placement::placed`] for an integer value (signed or not, as the
    /// server gives it). The `hash` vindex, by far the commonest primary
    /// vindex, goes straight to [`keyshift_vindex::Hash::hash_u64`], with
    /// no value conversion and no allocation per row.
    pub(crate) fn placed_int(&self, v: i128) -> bool {
        use keyshift_vindex::Value as V;
        if self.vindex.kind() == "hash" {
            // Vitess's ToUint64: a signed value's two's-complement bits.
            let n = if v < 0 { v as i64 as u64 } else { v as u64 };
            return self.range.contains(&keyshift_vindex::Hash::hash_u64(n));
        }
        let value = match i64::try_from(v) {
            Ok(i) => V::Int(i),
            Err(_) => match u64::try_from(v) {
                Ok(u) => V::UInt(u),
                Err(_) => return false,
            },
        };
        match self.vindex.map(&value) {
            Ok(ksid) => self.range.contains(ksid.as_bytes()),
            Err(_) => false,
        }
    }
}

/// The vindex's view of a value read through the binary protocol: the
/// same as the stream engine gives it for the binlog's value of the
/// column (integers as integers, everything else as its literal text).
pub(crate) fn vindex_value(kind: Kind, v: &Value) -> keyshift_vindex::Value {
    use keyshift_vindex::Value as V;
    match v {
        Value::NULL => V::Null,
        Value::Int(i) => V::Int(*i),
        Value::UInt(u) => V::UInt(*u),
        Value::Bytes(b) => V::Bytes(b.clone()),
        Value::Float(f) => V::Bytes(format!("{:e}", f64::from(*f)).into_bytes()),
        Value::Double(d) => V::Bytes(format!("{d:e}").into_bytes()),
        Value::Date(y, mo, d, ..) if kind == Kind::Date => {
            V::Bytes(format!("{y:04}-{mo:02}-{d:02}").into_bytes())
        }
        Value::Date(y, mo, d, h, mi, s, us) => {
            let mut t = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            if *us != 0 {
                t.push_str(&format!(".{us:06}"));
            }
            V::Bytes(t.into_bytes())
        }
        Value::Time(..) => V::Bytes(display(v, usize::MAX).into_bytes()),
    }
}

/// Starts reading `plan`'s table on `side` after `after` (a key as read),
/// `batch_rows` at a time. The task hands the side back when done.
pub(crate) fn spawn_reader(
    mut side: ShardSide,
    plan: Arc<TablePlan>,
    after: Option<Vec<Value>>,
    upto: Option<Vec<Value>>,
    batch_rows: usize,
    placement: Option<Placement>,
) -> (mpsc::Receiver<Batch>, JoinHandle<ShardSide>) {
    let (tx, rx) = mpsc::channel::<Batch>(1);
    let handle = tokio::spawn(async move {
        if let Err(e) = read(&mut side, &plan, after, upto, batch_rows, placement, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
        side
    });
    (rx, handle)
}

async fn read(
    side: &mut ShardSide,
    plan: &TablePlan,
    mut after: Option<Vec<Value>>,
    upto: Option<Vec<Value>>,
    batch_rows: usize,
    placement: Option<Placement>,
    tx: &mpsc::Sender<Batch>,
) -> Result<(), String> {
    let batch_rows = batch_rows.max(1);
    let mut prev: Option<Vec<Value>> = None;
    loop {
        let sql = plan.batch_sql(&side.db, after.as_deref(), upto.as_deref(), batch_rows)?;
        let rows: Vec<mysql_async::Row> = side
            .held
            .conn()
            .exec(sql.as_str(), ())
            .await
            .map_err(|e| format!("reading `{}`: {e}", plan.name))?;
        let n = rows.len();
        let mut out = Vec::with_capacity(n);
        for r in rows {
            let values = r.unwrap();
            let before = out.last().map(|r: &Row| &r.values).or(prev.as_ref());
            if let Some(p) = before
                && cmp_key(plan, p, &values) != Ordering::Less
            {
                return Err(format!(
                    "table `{}`: the server returned key {:?} after {:?}, which VDiff's key comparison orders differently; refusing to report differences that may not exist",
                    plan.name,
                    key_text(plan, &values),
                    key_text(plan, p)
                ));
            }
            let placed = placement.as_ref().is_none_or(|p| p.placed(&values));
            out.push(Row { values, placed });
        }
        if let Some(last) = out.last() {
            prev = Some(last.values.clone());
        }
        after = prev
            .as_ref()
            .map(|v| plan.pk.iter().map(|&i| v[i].clone()).collect());
        if !out.is_empty() && tx.send(Ok(out)).await.is_err() {
            // The merge is gone (cancelled or failed elsewhere).
            return Ok(());
        }
        if n < batch_rows {
            return Ok(());
        }
    }
}

fn key_text(plan: &TablePlan, values: &[Value]) -> Vec<String> {
    plan.pk
        .iter()
        .map(|&i| values.get(i).map_or_else(String::new, |v| display(v, 64)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_placement_matches_the_vindex() {
        for kind in ["hash", "xxhash", "numeric", "binary_md5"] {
            let vindex = keyshift_vindex::new_vindex(kind, &Default::default()).unwrap();
            for shard in ["-80", "80-", "40-c0"] {
                let p = Placement {
                    col: 0,
                    kind: Kind::Integer,
                    vindex: vindex.clone(),
                    range: KeyRange::parse(shard).unwrap(),
                };
                let values = [
                    Value::Int(0),
                    Value::Int(1),
                    Value::Int(-1),
                    Value::Int(i64::MIN),
                    Value::Int(i64::MAX),
                    Value::UInt(u64::MAX),
                    Value::UInt(1 << 63),
                    Value::UInt(5),
                ];
                for v in values.iter().cloned().chain((0..500).map(Value::Int)) {
                    let slow = match vindex.map(&vindex_value(Kind::Integer, &v)) {
                        Ok(ksid) => p.range.contains(ksid.as_bytes()),
                        Err(_) => false,
                    };
                    let wide = match v {
                        Value::Int(i) => i128::from(i),
                        Value::UInt(u) => i128::from(u),
                        _ => unreachable!(),
                    };
                    assert_eq!(
                        p.placed(std::slice::from_ref(&v)),
                        slow,
                        "{kind} {shard} {v:?}"
                    );
                    assert_eq!(p.placed_int(wide), slow, "{kind} {shard} {v:?}");
                }
            }
        }
    }

    #[test]
    fn vindex_values_as_the_stream_engine_gives_them() {
        assert_eq!(
            vindex_value(Kind::Integer, &Value::Int(-3)),
            keyshift_vindex::Value::Int(-3)
        );
        assert_eq!(
            vindex_value(Kind::Date, &Value::Date(2024, 1, 2, 0, 0, 0, 0)),
            keyshift_vindex::Value::Bytes(b"2024-01-02".to_vec())
        );
        assert_eq!(
            vindex_value(Kind::DateTime, &Value::Date(2024, 1, 2, 3, 4, 5, 0)),
            keyshift_vindex::Value::Bytes(b"2024-01-02 03:04:05".to_vec())
        );
        assert_eq!(
            vindex_value(Kind::Decimal, &Value::Bytes(b"1.50".to_vec())),
            keyshift_vindex::Value::Bytes(b"1.50".to_vec())
        );
    }
}
