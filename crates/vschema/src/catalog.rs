//! What the cluster's databases actually contain, as far as VSchema
//! validation needs to know: tables, their columns and primary keys.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    /// `information_schema.columns.data_type`: `bigint`, `varchar`, ...
    pub data_type: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    pub primary_key: Vec<String>,
}

impl TableSchema {
    /// Case-insensitive, as MySQL column names are.
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// Tables per keyspace. Built by the caller from `information_schema` of each
/// keyspace's first reachable primary.
#[derive(Clone, Debug, Default)]
pub struct SchemaCatalog {
    keyspaces: BTreeMap<String, BTreeMap<String, TableSchema>>,
    /// Keyspaces whose schema could not be read, with why: a table missing
    /// from the catalog may live there, so faults about it say so.
    unreadable: BTreeMap<String, String>,
}

impl SchemaCatalog {
    pub fn insert(&mut self, keyspace: &str, table: TableSchema) {
        self.keyspaces
            .entry(keyspace.to_string())
            .or_default()
            .insert(table.name.clone(), table);
    }

    /// Records that a keyspace was read, even if it has no tables.
    pub fn insert_keyspace(&mut self, keyspace: &str) {
        self.keyspaces.entry(keyspace.to_string()).or_default();
    }

    pub fn mark_unreadable(&mut self, keyspace: &str, reason: impl Into<String>) {
        self.unreadable.insert(keyspace.to_string(), reason.into());
    }

    pub fn unreadable(&self) -> &BTreeMap<String, String> {
        &self.unreadable
    }

    pub fn table(&self, keyspace: &str, table: &str) -> Option<&TableSchema> {
        self.keyspaces.get(keyspace)?.get(table)
    }

    pub fn has_keyspace(&self, keyspace: &str) -> bool {
        self.keyspaces.contains_key(keyspace)
    }

    /// The first keyspace, other than `except`, that has this table: where a
    /// table named in a VSchema may be moved in from.
    pub fn find_elsewhere(&self, table: &str, except: &str) -> Option<(&str, &TableSchema)> {
        self.keyspaces
            .iter()
            .filter(|(ks, _)| ks.as_str() != except)
            .find_map(|(ks, tables)| tables.get(table).map(|t| (ks.as_str(), t)))
    }
}
