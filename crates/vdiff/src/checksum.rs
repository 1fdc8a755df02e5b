//! The fast path: compare a key range by checksums computed on the
//! servers, and fall back to the row-by-row merge only for ranges whose
//! checksums differ.
//!
//! Shipping every row to keyshift costs far more than hashing it where it
//! lives, and most ranges of a healthy workflow are equal. So a table is
//! walked in chunks of key ranges `(lo, hi]` (value ranges for a single
//! integer key, otherwise boundaries from the first source shard, keyset-
//! paged with collation-aware literals, so both sides select exactly the
//! same keys; [`crate::fast`] runs them). For each chunk every source shard and
//! every target shard return `COUNT(*)` and the exact `SUM` of a 64-bit
//! hash of each row's bytes; a sum is additive across shards, so the
//! sources' sums must equal the targets' sums. The row hash is
//! `CRC32(x) << 32 | CRC32C(x)` on MariaDB (two polynomials, hardware
//! accelerated) and the first 64 bits of `MD5(x)` when a MySQL server is
//! involved, where `x` is every column's bytes, character and binary data
//! after their lengths, and NULL flags for the columns that may be NULL (so
//! no two different rows serialize alike). Building `x` costs far more than
//! the CRCs over it, so it is kept lean (see [`row_bytes`]). An integer sum
//! does not cancel the way `BIT_XOR` of a linear CRC can.
//!
//! Equal counts and sums mean the rows are byte for byte equal (but for a
//! 2^-64 accident), and bytes equal implies meaning equal, so the chunk's
//! keys count as matching. Anything else — including the value
//! differences that do not count (JSON spelled differently), which show up
//! as different bytes — goes through [`crate::merge`], which decides by
//! meaning. Placement is checked in the fast path too: each target shard
//! returns the chunk's vindex column values (in the same query, as one
//! `GROUP_CONCAT`, for an integer column) and keyshift maps them, since
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

/// Whether a column's bytes go into the row's bytes after their length
/// (character and binary data, whose bytes may contain the separator).
fn prefixed(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Text | Kind::Json | Kind::Binary | Kind::Bit | Kind::Enum | Kind::Set
    )
}

/// Whether the character columns can go into `CONCAT_WS` as they are: on
/// MariaDB, when they all share one collation, `CONCAT_WS` converts
/// nothing (a binary column makes the result binary, numbers and temporal
/// values become their own text), so it concatenates exactly the bytes
/// `CAST(... AS BINARY)` would give, without the casts' cost. Mixed
/// collations (where the server would convert, or refuse to mix) and
/// MySQL keep the casts.
fn uncast(plan: &TablePlan, all_mariadb: bool) -> bool {
    if !all_mariadb {
        return false;
    }
    let mut seen: Option<(&Option<String>, &Option<String>)> = None;
    for c in &plan.columns {
        if !matches!(c.kind, Kind::Text | Kind::Json | Kind::Enum | Kind::Set) {
            continue;
        }
        let this = (&c.charset, &c.collation);
        if c.charset.is_none() || c.collation.is_none() || seen.is_some_and(|s| s != this) {
            return false;
        }
        seen = Some(this);
    }
    true
}

/// The bytes of one row, unambiguous: each column's text (numbers and
/// temporal values never contain the `#` separator), character and binary
/// data after their length, and one NULL flag per column that may be NULL
/// on some side (`CONCAT_WS` skips NULLs; a column NOT NULL everywhere
/// never is). Computed once per hash: the string building costs far more
/// than the CRCs over it.
fn row_bytes(plan: &TablePlan, all_mariadb: bool) -> String {
    let cast = !uncast(plan, all_mariadb);
    let mut parts = Vec::new();
    let mut nulls = Vec::new();
    for c in &plan.columns {
        let q = ident(&c.name);
        if prefixed(c.kind) {
            parts.push(format!("LENGTH({q})"));
        }
        if cast {
            parts.push(format!("CAST({q} AS BINARY)"));
        } else {
            parts.push(q.clone());
        }
        if c.nullable {
            nulls.push(format!("ISNULL({q})"));
        }
    }
    if !nulls.is_empty() {
        parts.push(format!("CONCAT({})", nulls.join(", ")));
    }
    format!("CONCAT_WS(_binary'#', {})", parts.join(", "))
}

/// The 64-bit hash of one row: `CRC32(x) << 32 | CRC32C(x)` on MariaDB,
/// the first 64 bits of `MD5(x)` otherwise.
fn row_hash(plan: &TablePlan, all_mariadb: bool) -> String {
    let x = row_bytes(plan, all_mariadb);
    if all_mariadb {
        format!("((CRC32({x}) << 32) | CRC32C({x}))")
    } else {
        format!("CAST(CONV(LEFT(MD5({x}), 16), 16, 10) AS UNSIGNED)")
    }
}

/// `SELECT COUNT(*), SUM(hash)` over the keys in `(lo, hi]`, and with
/// `ids` the `GROUP_CONCAT` of that (integer) column's values, so that a
/// target shard checksums its rows and hands over their vindex values for
/// the placement check in one scan.
pub(crate) fn checksum_sql(
    plan: &TablePlan,
    db: &str,
    all_mariadb: bool,
    ids: Option<usize>,
    lo: Option<&[mysql_async::Value]>,
    hi: Option<&[mysql_async::Value]>,
) -> Result<String, String> {
    let h = row_hash(plan, all_mariadb);
    let mut s = format!("SELECT COUNT(*), CAST(COALESCE(SUM({h}), 0) AS CHAR)");
    if let Some(col) = ids {
        let _ = write!(
            s,
            ", GROUP_CONCAT({} SEPARATOR ',')",
            ident(&plan.columns[col].name)
        );
    }
    let _ = write!(s, " FROM {}.{}", ident(db), ident(&plan.name));
    s.push_str(&range_where(plan, lo, hi)?);
    Ok(s)
}

/// The smallest and largest key of the table (a single integer key).
pub(crate) fn min_max_sql(plan: &TablePlan, db: &str) -> String {
    let k = key_cols(plan).join(", ");
    format!(
        "SELECT MIN({k}), MAX({k}) FROM {}.{}",
        ident(db),
        ident(&plan.name)
    )
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
                    nullable: true,
                },
                Column {
                    name: "v".into(),
                    kind,
                    charset: Some("utf8mb4".into()),
                    collation: Some("utf8mb4_bin".into()),
                    nullable: true,
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
        // Nullable columns (the test plan's): flags; one collation: no casts.
        let sql = checksum_sql(&p, "db", true, None, None, Some(&[W::Int(9)])).unwrap();
        assert!(sql.starts_with("SELECT COUNT(*), CAST(COALESCE(SUM(((CRC32(CONCAT_WS(_binary'#', `id`, LENGTH(`v`), `v`, CONCAT(ISNULL(`id`), ISNULL(`v`)))) << 32) | CRC32C("), "{sql}");
        assert!(sql.ends_with("FROM `db`.`t` WHERE NOT (`id` > 9)"), "{sql}");
        // NOT NULL everywhere: no flags; the vindex values with the sums.
        let mut q = p.clone();
        q.columns.iter_mut().for_each(|c| c.nullable = false);
        let sql = checksum_sql(&q, "db", true, Some(0), None, None).unwrap();
        assert_eq!(
            sql,
            "SELECT COUNT(*), CAST(COALESCE(SUM(((CRC32(CONCAT_WS(_binary'#', `id`, LENGTH(`v`), `v`)) << 32) | CRC32C(CONCAT_WS(_binary'#', `id`, LENGTH(`v`), `v`)))), 0) AS CHAR), GROUP_CONCAT(`id` SEPARATOR ',') FROM `db`.`t`"
        );
        // Text columns of different collations, and MySQL: casts.
        q.columns.push(Column {
            name: "w".into(),
            kind: Kind::Text,
            charset: Some("latin1".into()),
            collation: Some("latin1_swedish_ci".into()),
            nullable: false,
        });
        assert!(
            checksum_sql(&q, "db", true, None, None, None)
                .unwrap()
                .contains("CONCAT_WS(_binary'#', CAST(`id` AS BINARY), LENGTH(`v`), CAST(`v` AS BINARY), LENGTH(`w`), CAST(`w` AS BINARY))")
        );
        assert!(
            checksum_sql(&p, "db", false, None, None, None)
                .unwrap()
                .contains("LEFT(MD5(CONCAT_WS(_binary'#', CAST(`id` AS BINARY)")
        );
        assert_eq!(
            min_max_sql(&p, "db"),
            "SELECT MIN(`id`), MAX(`id`) FROM `db`.`t`"
        );
        assert_eq!(
            boundary_sql(&p, "db", Some(&[W::Int(5)]), 100).unwrap(),
            "SELECT `id` FROM `db`.`t` WHERE (`id` > 5) ORDER BY `id` LIMIT 1 OFFSET 99"
        );
        assert!(range_where(&p, Some(&[W::Int(5), W::Int(6)]), None).is_err());
    }
}
