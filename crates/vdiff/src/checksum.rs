//! The fast path: compare a key range by checksums computed on the
//! servers, and fall back to the row-by-row merge only for ranges whose
//! checksums differ.
//!
//! Shipping every row to keyshift costs far more than hashing it where it
//! lives, and most ranges of a healthy workflow are equal. So a table is
//! walked in chunks of key ranges `(lo, hi]` (boundaries from the first
//! source shard, keyset-paged with collation-aware literals, so both sides
//! select exactly the same keys). For each chunk every source shard and
//! every target shard return `COUNT(*)` and the exact `SUM` of a 64-bit
//! hash of each row's bytes; a sum is additive across shards, so the
//! sources' sums must equal the targets' sums. The row hash is
//! `CRC32(x) << 32 | CRC32C(x)` on MariaDB (two polynomials, hardware
//! accelerated) and the first 64 bits of `MD5(x)` when a MySQL server is
//! involved, where `x` is every column's bytes with their lengths and NULL
//! flags (so no two different rows serialize alike). An integer sum does
//! not cancel the way `BIT_XOR` of a linear CRC can.
//!
//! Equal counts and sums mean the rows are byte for byte equal (but for a
//! 2^-64 accident), and bytes equal implies meaning equal, so the chunk's
//! keys count as matching. Anything else — including the value
//! differences that do not count (JSON spelled differently), which show up
//! as different bytes — goes through [`crate::merge`], which decides by
//! meaning. Placement is checked in the fast path too: each target shard
//! returns the chunk's vindex column values and keyshift maps them, since
//! a row moved to the wrong shard leaves every sum intact. Tables with
//! FLOAT/DOUBLE columns skip the fast path: their text form is not
//! guaranteed to be exact.

use crate::schema::{Kind, TablePlan, ident, literal, tuple_gt};
use std::fmt::Write as _;

/// Whether the table can be compared by checksums.
pub(crate) fn supported(plan: &TablePlan) -> bool {
    !plan
        .columns
        .iter()
        .any(|c| matches!(c.kind, Kind::Float | Kind::Double))
}

/// The key columns, quoted.
fn key_cols(plan: &TablePlan) -> Vec<String> {
    plan.pk
        .iter()
        .map(|&i| ident(&plan.columns[i].name))
        .collect()
}

fn lits(plan: &TablePlan, key: &[mysql_async::Value]) -> Result<Vec<String>, String> {
    if key.len() != plan.pk.len() {
        return Err("a key with the wrong number of values".into());
    }
    plan.pk
        .iter()
        .zip(key)
        .map(|(&i, v)| literal(&plan.columns[i], v))
        .collect()
}

/// `WHERE` text for keys in `(lo, hi]` (either end open when `None`), or
/// an empty string for the whole table.
pub(crate) fn range_where(
    plan: &TablePlan,
    lo: Option<&[mysql_async::Value]>,
    hi: Option<&[mysql_async::Value]>,
) -> Result<String, String> {
    let cols = key_cols(plan);
    let mut parts = Vec::new();
    if let Some(lo) = lo {
        parts.push(tuple_gt(&cols, &lits(plan, lo)?));
    }
    if let Some(hi) = hi {
        parts.push(format!("NOT {}", tuple_gt(&cols, &lits(plan, hi)?)));
    }
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", parts.join(" AND "))
    })
}

/// The bytes of one row, unambiguous: each column's length (for
/// variable-length data), its bytes, and the NULL flags.
fn row_bytes(plan: &TablePlan) -> String {
    let mut parts = Vec::new();
    let mut nulls = Vec::new();
    for c in &plan.columns {
        let q = ident(&c.name);
        match c.kind {
            Kind::Text | Kind::Json | Kind::Binary | Kind::Bit | Kind::Enum | Kind::Set => {
                parts.push(format!("LENGTH({q})"));
                parts.push(format!("CAST({q} AS BINARY)"));
            }
            _ => parts.push(format!("CAST({q} AS BINARY)")),
        }
        nulls.push(format!("ISNULL({q})"));
    }
    format!(
        "CONCAT_WS('#', {}, CONCAT({}))",
        parts.join(", "),
        nulls.join(", ")
    )
}

/// `SELECT COUNT(*), SUM(hash)` over the keys in `(lo, hi]`.
pub(crate) fn checksum_sql(
    plan: &TablePlan,
    db: &str,
    all_mariadb: bool,
    lo: Option<&[mysql_async::Value]>,
    hi: Option<&[mysql_async::Value]>,
) -> Result<String, String> {
    let x = row_bytes(plan);
    let h = if all_mariadb {
        format!("((CRC32({x}) << 32) | CRC32C({x}))")
    } else {
        format!("CAST(CONV(LEFT(MD5({x}), 16), 16, 10) AS UNSIGNED)")
    };
    let mut s = format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM({h}), 0) AS CHAR) FROM {}.{}",
        ident(db),
        ident(&plan.name)
    );
    s.push_str(&range_where(plan, lo, hi)?);
    Ok(s)
}

/// The key `n` rows after `lo` (the chunk's upper end), if there is one.
pub(crate) fn boundary_sql(
    plan: &TablePlan,
    db: &str,
    lo: Option<&[mysql_async::Value]>,
    n: usize,
) -> Result<String, String> {
    let cols = key_cols(plan);
    let mut s = format!(
        "SELECT {} FROM {}.{}",
        cols.join(", "),
        ident(db),
        ident(&plan.name)
    );
    s.push_str(&range_where(plan, lo, None)?);
    let _ = write!(
        s,
        " ORDER BY {} LIMIT 1 OFFSET {}",
        cols.join(", "),
        n.max(1) - 1
    );
    Ok(s)
}

/// The vindex column's values of the keys in `(lo, hi]`.
pub(crate) fn vindex_sql(
    plan: &TablePlan,
    db: &str,
    col: usize,
    lo: Option<&[mysql_async::Value]>,
    hi: Option<&[mysql_async::Value]>,
) -> Result<String, String> {
    let mut s = format!(
        "SELECT {} FROM {}.{}",
        ident(&plan.columns[col].name),
        ident(db),
        ident(&plan.name)
    );
    s.push_str(&range_where(plan, lo, hi)?);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, KeyOrder};
    use mysql_async::Value as W;

    fn plan(kind: Kind) -> TablePlan {
        TablePlan {
            name: "t".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    kind: Kind::Integer,
                    charset: None,
                    collation: None,
                },
                Column {
                    name: "v".into(),
                    kind,
                    charset: Some("utf8mb4".into()),
                    collation: Some("utf8mb4_bin".into()),
                },
            ],
            pk: vec![0],
            order: vec![KeyOrder::Numeric],
            extras: 0,
        }
    }

    #[test]
    fn chunk_queries() {
        let p = plan(Kind::Text);
        assert!(supported(&p));
        assert!(!supported(&plan(Kind::Double)));
        assert_eq!(
            range_where(&p, Some(&[W::Int(5)]), Some(&[W::Int(9)])).unwrap(),
            " WHERE (`id` > 5) AND NOT (`id` > 9)"
        );
        assert_eq!(range_where(&p, None, None).unwrap(), "");
        let sql = checksum_sql(&p, "db", true, None, Some(&[W::Int(9)])).unwrap();
        assert!(sql.starts_with("SELECT COUNT(*), CAST(COALESCE(SUM(((CRC32(CONCAT_WS('#', CAST(`id` AS BINARY), LENGTH(`v`), CAST(`v` AS BINARY), CONCAT(ISNULL(`id`), ISNULL(`v`)))) << 32) | CRC32C("), "{sql}");
        assert!(sql.ends_with("FROM `db`.`t` WHERE NOT (`id` > 9)"), "{sql}");
        assert!(
            checksum_sql(&p, "db", false, None, None)
                .unwrap()
                .contains("LEFT(MD5(")
        );
        assert_eq!(
            boundary_sql(&p, "db", Some(&[W::Int(5)]), 100).unwrap(),
            "SELECT `id` FROM `db`.`t` WHERE (`id` > 5) ORDER BY `id` LIMIT 1 OFFSET 99"
        );
        assert!(range_where(&p, Some(&[W::Int(5), W::Int(6)]), None).is_err());
    }
}
