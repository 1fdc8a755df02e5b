//! Checks of a VSchema against the rest of the cluster: the tables and columns
//! it names exist, its sequences are declared, its vindexes suit the columns.

use crate::routing::split_target;
use crate::{FaultList, Faults, KeyspaceVSchema, SchemaCatalog, check_document};
use std::collections::BTreeMap;

/// Validates `vs` as the VSchema of `keyspace`.
///
/// `sharded` is how the keyspace was created (its shard layout);
/// `other_vschemas` are the current VSchemas of the other keyspaces, where
/// sequences are declared. A table may be named before it exists in its
/// keyspace — that is how a table-movement workflow's target is prepared — so
/// a table passes if this keyspace or any other has it, and its columns are
/// checked against whichever copy exists, this keyspace's first.
pub fn validate_vschema(
    keyspace: &str,
    sharded: bool,
    vs: &KeyspaceVSchema,
    catalog: &SchemaCatalog,
    other_vschemas: &BTreeMap<String, KeyspaceVSchema>,
) -> Result<(), Faults> {
    let mut faults = match check_document(vs) {
        Ok(()) => FaultList::default(),
        Err(f) => FaultList(f.0),
    };
    if vs.sharded != sharded {
        faults.push(
            "sharded",
            if sharded {
                format!("keyspace `{keyspace}` has several shards, so its VSchema must say \"sharded\": true")
            } else {
                format!("keyspace `{keyspace}` is unsharded (one shard); \"sharded\": true needs a keyspace created with several shards")
            },
        );
    }
    for (table, def) in &vs.tables {
        let path = format!("tables.{table}");
        let schema = catalog
            .table(keyspace, table)
            .or_else(|| catalog.find_elsewhere(table, keyspace).map(|(_, t)| t));
        let Some(schema) = schema else {
            let unread: Vec<String> = catalog
                .unreadable()
                .iter()
                .map(|(ks, why)| format!("`{ks}` ({why})"))
                .collect();
            let caveat = if unread.is_empty() {
                String::new()
            } else {
                format!(
                    "; keyspaces whose schema could not be read, where it might be: {}",
                    unread.join(", ")
                )
            };
            faults.push(
                &path,
                format!(
                    "table `{table}` exists neither in keyspace `{keyspace}` nor in any other keyspace; create it first or fix the name{caveat}"
                ),
            );
            continue;
        };
        for (i, cv) in def.column_vindexes.iter().enumerate() {
            let vindex_kind = vs.vindexes.get(&cv.name).map(|v| v.kind.as_str());
            let multi = !cv.columns.is_empty();
            for (j, column) in cv.column_names().into_iter().enumerate() {
                let col_path = if multi {
                    format!("{path}.column_vindexes[{i}].columns[{j}]")
                } else {
                    format!("{path}.column_vindexes[{i}].column")
                };
                match schema.column(column) {
                    None => faults.push(
                        col_path,
                        format!("table `{table}` has no column `{column}`"),
                    ),
                    Some(col) => {
                        if let Some(kind) = vindex_kind
                            && keyshift_vindex::KINDS.contains(&kind)
                            && !keyshift_vindex::accepts_column_type(kind, &col.data_type)
                        {
                            faults.push(
                                col_path,
                                format!(
                                    "a `{kind}` vindex cannot map column `{column}` of type {}",
                                    col.data_type
                                ),
                            );
                        }
                    }
                }
            }
        }
        if let Some(ai) = &def.auto_increment {
            if !ai.column.is_empty() && schema.column(&ai.column).is_none() {
                faults.push(
                    format!("{path}.auto_increment.column"),
                    format!("table `{table}` has no column `{}`", ai.column),
                );
            }
            if !ai.sequence.is_empty()
                && let Err(e) = find_sequence(&ai.sequence, keyspace, vs, catalog, other_vschemas)
            {
                faults.push(format!("{path}.auto_increment.sequence"), e);
            }
        }
        if def.kind == "sequence" {
            for needed in ["id", "next_id", "cache"] {
                if schema.column(needed).is_none() {
                    faults.push(
                        &path,
                        format!(
                            "a sequence table needs columns id, next_id and cache; `{table}` has no `{needed}`"
                        ),
                    );
                }
            }
        }
    }
    faults.finish()
}

/// Finds the unsharded keyspace that declares `sequence` as a sequence table.
fn find_sequence(
    sequence: &str,
    keyspace: &str,
    vs: &KeyspaceVSchema,
    catalog: &SchemaCatalog,
    others: &BTreeMap<String, KeyspaceVSchema>,
) -> Result<String, String> {
    let declared = |ks: &str, table: &str| -> bool {
        let doc = if ks == keyspace {
            Some(vs)
        } else {
            others.get(ks)
        };
        doc.and_then(|d| d.tables.get(table))
            .is_some_and(|t| t.kind == "sequence")
    };
    let (ks, table) = if sequence.contains('.') {
        let t = split_target(sequence)?;
        if !declared(&t.keyspace, &t.table) {
            return Err(format!(
                "`{sequence}` is not declared as {{\"type\": \"sequence\"}} in the VSchema of keyspace `{}`",
                t.keyspace
            ));
        }
        (t.keyspace, t.table)
    } else {
        let mut found: Vec<&str> = others
            .keys()
            .map(String::as_str)
            .chain(std::iter::once(keyspace))
            .filter(|ks| declared(ks, sequence))
            .collect();
        found.dedup();
        match found.as_slice() {
            [ks] => (ks.to_string(), sequence.to_string()),
            [] => {
                return Err(format!(
                    "no unsharded keyspace declares `{sequence}` as {{\"type\": \"sequence\"}}; declare it there first"
                ));
            }
            many => {
                return Err(format!(
                    "`{sequence}` is declared in several keyspaces ({}); qualify it as keyspace.{sequence}",
                    many.join(", ")
                ));
            }
        }
    };
    if catalog.has_keyspace(&ks) && catalog.table(&ks, &table).is_none() {
        return Err(format!(
            "sequence table `{ks}.{table}` is declared but does not exist; create it with (id int, next_id bigint, cache bigint, primary key (id)) and one row"
        ));
    }
    Ok(format!("{ks}.{table}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ColumnInfo, TableSchema, parse_vschema};

    fn table(name: &str, cols: &[(&str, &str)]) -> TableSchema {
        TableSchema {
            name: name.into(),
            columns: cols
                .iter()
                .map(|(n, t)| ColumnInfo {
                    name: n.to_string(),
                    data_type: t.to_string(),
                })
                .collect(),
            primary_key: vec![cols[0].0.to_string()],
        }
    }

    fn demo_catalog() -> SchemaCatalog {
        let mut c = SchemaCatalog::default();
        c.insert(
            "commerce",
            table(
                "customer",
                &[("customer_id", "bigint"), ("email", "varchar")],
            ),
        );
        c.insert(
            "commerce",
            table(
                "corder",
                &[
                    ("order_id", "bigint"),
                    ("customer_id", "bigint"),
                    ("sku", "varchar"),
                    ("price", "double"),
                ],
            ),
        );
        c.insert(
            "commerce",
            table(
                "customer_seq",
                &[("id", "int"), ("next_id", "bigint"), ("cache", "bigint")],
            ),
        );
        c.insert_keyspace("customer");
        c
    }

    fn commerce_vschema() -> BTreeMap<String, KeyspaceVSchema> {
        let vs = parse_vschema(
            r#"{"tables": {"customer_seq": {"type": "sequence"}, "customer": {}, "corder": {}}}"#,
        )
        .expect("valid");
        BTreeMap::from([("commerce".to_string(), vs)])
    }

    #[test]
    fn a_target_vschema_may_name_tables_that_live_elsewhere_for_now() {
        let vs = parse_vschema(
            r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
                "tables": {"customer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}],
                                        "auto_increment": {"column": "customer_id", "sequence": "customer_seq"}},
                           "corder": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]}}}"#,
        )
        .expect("valid doc");
        validate_vschema("customer", true, &vs, &demo_catalog(), &commerce_vschema())
            .expect("valid in context");
    }

    #[test]
    fn unknown_tables_columns_sequences_and_layout_are_all_reported() {
        let vs = parse_vschema(
            r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
                "tables": {"custmer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]},
                           "corder": {"column_vindexes": [{"column": "cust_id", "name": "hash"}],
                                      "auto_increment": {"column": "order_id", "sequence": "corder_seq"}}}}"#,
        )
        .expect("valid doc");
        let err = validate_vschema("customer", false, &vs, &demo_catalog(), &commerce_vschema())
            .expect_err("faults");
        let paths: Vec<&str> = err.0.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "sharded",
                "tables.corder.column_vindexes[0].column",
                "tables.corder.auto_increment.sequence",
                "tables.custmer",
            ]
        );
        assert!(err.to_string().contains("no column `cust_id`"), "{err}");
    }

    #[test]
    fn hash_refuses_a_float_column() {
        let vs = parse_vschema(
            r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
                "tables": {"corder": {"column_vindexes": [{"column": "price", "name": "hash"}]}}}"#,
        )
        .expect("valid doc");
        let err = validate_vschema("customer", true, &vs, &demo_catalog(), &BTreeMap::new())
            .expect_err("hash on varchar");
        assert_eq!(err.0[0].path, "tables.corder.column_vindexes[0].column");
    }
}
