//! Reads what tables the keyspaces hold, from their primaries'
//! `information_schema`, for VSchema validation and the table pickers.

use crate::model::TabletRecord;
use crate::ops::{self, Result};
use keyshift_topo::Topo;
use keyshift_vschema::{ColumnInfo, SchemaCatalog, TableSchema};
use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one keyspace's schema read may take before it counts as
/// unreachable.
const SCHEMA_TIMEOUT: Duration = Duration::from_secs(10);

/// The tables of one database on one tablet.
pub async fn read_tables(tablet: &TabletRecord) -> Result<Vec<TableSchema>, String> {
    let fut = async {
        let mut conn = mysql_async::Conn::new(tablet.endpoint().opts())
            .await
            .map_err(|e| {
                format!(
                    "cannot connect to tablet {} at {}: {e}",
                    tablet.alias,
                    tablet.address()
                )
            })?;
        let rows: Vec<(String, String, String, Option<String>)> = conn
            .exec(
                "SELECT c.table_name, c.column_name, c.data_type, k.constraint_name \
                 FROM information_schema.columns c \
                 JOIN information_schema.tables t \
                   ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 LEFT JOIN information_schema.key_column_usage k \
                   ON k.table_schema = c.table_schema AND k.table_name = c.table_name \
                  AND k.column_name = c.column_name AND k.constraint_name = 'PRIMARY' \
                 WHERE c.table_schema = ? AND t.table_type = 'BASE TABLE' \
                 ORDER BY c.table_name, c.ordinal_position",
                (tablet.database.as_str(),),
            )
            .await
            .map_err(|e| {
                format!(
                    "cannot read information_schema on tablet {}: {e}",
                    tablet.alias
                )
            })?;
        let _ = conn.disconnect().await;
        let mut tables: BTreeMap<String, TableSchema> = BTreeMap::new();
        for (table, column, data_type, constraint) in rows {
            let t = tables.entry(table.clone()).or_insert_with(|| TableSchema {
                name: table,
                ..Default::default()
            });
            if constraint.is_some() {
                t.primary_key.push(column.clone());
            }
            t.columns.push(ColumnInfo {
                name: column,
                data_type: data_type.to_ascii_lowercase(),
            });
        }
        Ok(tables.into_values().collect())
    };
    tokio::time::timeout(SCHEMA_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "tablet {} did not answer within {SCHEMA_TIMEOUT:?}",
                tablet.alias
            ))
        })
}

/// Schemas of every keyspace, each read from its first shard's primary (all
/// shards of a keyspace have the same tables). A keyspace that cannot be read
/// is marked unreadable in the catalog, with the reason, so validation can
/// refuse what it cannot verify and say why, and still report every other
/// fault.
pub async fn read_catalog(topo: &dyn Topo) -> Result<SchemaCatalog> {
    let mut catalog = SchemaCatalog::default();
    for ks in ops::list_keyspaces(topo).await? {
        let primaries = ops::shard_primaries(topo, &ks.name).await?;
        let primary = match primaries.into_iter().next() {
            None => Err("it has no shards".to_string()),
            Some((shard, None)) => Err(format!("shard {} has no primary tablet", shard.name)),
            Some((_, Some(p))) => Ok(p),
        };
        match primary {
            Ok(p) => match read_tables(&p).await {
                Ok(tables) => {
                    catalog.insert_keyspace(&ks.name);
                    for t in tables {
                        catalog.insert(&ks.name, t);
                    }
                }
                Err(reason) => catalog.mark_unreadable(&ks.name, reason),
            },
            Err(reason) => catalog.mark_unreadable(&ks.name, reason),
        }
    }
    Ok(catalog)
}
