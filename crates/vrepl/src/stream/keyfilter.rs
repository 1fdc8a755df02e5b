//! Which rows belong to the target shard: the vindex of the row's vindex
//! column gives its keyspace id, and the shard keeps the ids in its key
//! range. Copy and replication decide through this one function, so a row
//! is placed the same way whichever phase sees it.

use keyshift_types::KeyRange;
use keyshift_vindex as vindex;

use crate::value::Value;

use super::schema::TablePlan;

/// The vindex's view of a column value, as the gate would extract it from a
/// query: integers as integers, strings and bytes as bytes.
pub(crate) fn vindex_value(v: &Value) -> vindex::Value {
    match v {
        Value::Null => vindex::Value::Null,
        Value::Int(i) => vindex::Value::Int(*i),
        Value::UInt(u) | Value::Bit(u) => vindex::Value::UInt(*u),
        Value::Year(y) => vindex::Value::UInt(u64::from(*y)),
        Value::Text(b) | Value::Bytes(b) => vindex::Value::Bytes(b.clone()),
        Value::Decimal(d) => vindex::Value::Bytes(d.as_bytes().to_vec()),
        Value::Json(j) => vindex::Value::Bytes(j.as_bytes().to_vec()),
        // Temporal and floating values: their literal text without quotes,
        // which is what a query would carry.
        other => {
            let lit = other.to_sql_literal();
            vindex::Value::Bytes(lit.trim_matches('\'').as_bytes().to_vec())
        }
    }
}

/// The keyspace id of a row whose vindex column holds `value`: `None`
/// when the table has no vindex (an unsharded target keeps every row).
///
/// A value the vindex cannot map (NULL for `hash`, say) belongs to no shard
/// at all; the gate could not route it either. Dropping it silently would
/// lose a row, so it is an error the workflow must surface.
pub(crate) fn keyspace_id(
    plan: &TablePlan,
    value: Option<&Value>,
) -> Result<Option<vindex::KeyspaceId>, String> {
    let Some((col, vindex)) = &plan.vindex else {
        return Ok(None);
    };
    let Some(value) = value else {
        return Err(format!(
            "row image lacks the vindex column `{}`",
            plan.columns[*col].name
        ));
    };
    vindex
        .map(&vindex_value(value))
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Whether a row whose vindex column holds `value` belongs in `range`
/// (see [`keyspace_id`] for the errors).
pub(crate) fn in_range(
    plan: &TablePlan,
    range: &KeyRange,
    value: Option<&Value>,
) -> Result<bool, String> {
    Ok(keyspace_id(plan, value)?.is_none_or(|k| range.contains(k.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_the_gate_sees_them() {
        assert_eq!(vindex_value(&Value::UInt(7)), vindex::Value::UInt(7));
        assert_eq!(
            vindex_value(&Value::Text(b"ab".to_vec())),
            vindex::Value::Bytes(b"ab".to_vec())
        );
        assert_eq!(
            vindex_value(&Value::Date {
                year: 2024,
                month: 1,
                day: 2
            }),
            vindex::Value::Bytes(b"2024-01-02".to_vec())
        );
    }
}
