//! The VSchema and the routing rules: what the gate needs to know to send a
//! statement to the right keyspace and shard.
//!
//! Both are stored as JSON in the topo, in the same shape as Vitess's
//! (`sharded`, `vindexes`, `tables` with `column_vindexes` and
//! `auto_increment`; routing rules as `{"rules": [{"from_table", "to_tables"}]}`),
//! so that a Vitess user can paste what they already have.
//!
//! Validation happens in two layers, and both report *every* fault at once,
//! each with the JSON path it concerns (`tables.corder.column_vindexes[0].name`):
//!
//! * [`parse_vschema`] / [`parse_routing_rules`]: the document alone — shape,
//!   unknown fields, vindex types and parameters, references between the
//!   document's own parts, a primary vindex on every sharded table.
//! * [`validate_vschema`]: the document against the rest of the cluster —
//!   tables and columns that exist, sequences that are declared, vindex types
//!   that suit the column types.
//!
//! Nothing is applied unless both layers pass; applying is the caller's job
//! (the cluster crate), so this crate does no I/O.

mod catalog;
mod routing;
mod validate;

pub use catalog::{ColumnInfo, SchemaCatalog, TableSchema};
pub use routing::{RoutingRule, RoutingRules, TableTarget, parse_routing_rules};
pub use validate::validate_vschema;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The VSchema of one keyspace, Vitess's JSON shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyspaceVSchema {
    #[serde(default)]
    pub sharded: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vindexes: BTreeMap<String, VindexDef>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, TableDef>,
    /// Vitess: tables of this keyspace are only reachable when qualified or
    /// through routing rules. Kept so pasted documents round-trip.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_explicit_routing: bool,
}

/// A named vindex instance: a function from column values to keyspace ids.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VindexDef {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
}

/// How one table is placed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    /// `""` (a normal table), `"sequence"` or `"reference"`.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The first entry is the primary vindex: it decides the row's shard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub column_vindexes: Vec<ColumnVindex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_increment: Option<AutoIncrement>,
    /// Declared columns (Vitess allows them; we keep them for round-trips).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<DeclaredColumn>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub column_list_authoritative: bool,
    /// Vitess: for a reference table, the unsharded table it mirrors.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// Binding of a vindex to one column (or several, Vitess's `columns`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnVindex {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub column: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    pub name: String,
}

impl ColumnVindex {
    /// The bound columns, whichever of the two Vitess spellings was used.
    pub fn column_names(&self) -> Vec<&str> {
        if self.columns.is_empty() {
            vec![self.column.as_str()]
        } else {
            self.columns.iter().map(String::as_str).collect()
        }
    }
}

/// Where a sharded table's auto-increment values come from: a sequence table
/// in an unsharded keyspace, so ids stay unique across shards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoIncrement {
    pub column: String,
    /// `seq` or `keyspace.seq`.
    pub sequence: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredColumn {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// One validation fault: the JSON path it concerns and why it is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fault {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every fault found in one document; never empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Faults(pub Vec<Fault>);

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{}:", if n == 1 { "" } else { "s" })?;
        for fault in &self.0 {
            write!(f, "\n  - {fault}")?;
        }
        Ok(())
    }
}

impl Faults {
    pub(crate) fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Faults(vec![Fault {
            path: path.into(),
            message: message.into(),
        }])
    }
}

/// Collects faults while walking a document.
#[derive(Default)]
pub(crate) struct FaultList(Vec<Fault>);

impl FaultList {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Fault {
            path: path.into(),
            message: message.into(),
        });
    }

    pub(crate) fn finish(self) -> Result<(), Faults> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Faults(self.0))
        }
    }
}

/// Parses a JSON document with the path of the first shape error, since serde
/// stops at the first one.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, Faults> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        Faults::single(path, inner.to_string())
    })
}

/// A table kind Vitess knows.
pub const TABLE_KINDS: &[&str] = &["", "sequence", "reference"];

/// Parses a keyspace VSchema and checks everything that the document alone
/// can tell: shape, vindex types and parameters, references, primary vindexes.
pub fn parse_vschema(json: &str) -> Result<KeyspaceVSchema, Faults> {
    let vs: KeyspaceVSchema = from_json(json)?;
    check_document(&vs)?;
    Ok(vs)
}

/// Parses the document's shape only (types, unknown fields), leaving the
/// semantic checks to [`validate_vschema`], so that a caller with the live
/// schemas at hand reports document and schema faults together.
pub fn parse_vschema_shape(json: &str) -> Result<KeyspaceVSchema, Faults> {
    from_json(json)
}

/// The document-only checks of [`parse_vschema`], for VSchemas built in code.
pub fn check_document(vs: &KeyspaceVSchema) -> Result<(), Faults> {
    let mut faults = FaultList::default();
    for (name, def) in &vs.vindexes {
        let path = format!("vindexes.{name}");
        if !valid_identifier(name) {
            faults.push(&path, "vindex names are letters, digits and '_'");
        }
        if let Err(e) = keyshift_vindex::new_vindex(&def.kind, &def.params) {
            faults.push(format!("{path}.type"), e.to_string());
        }
        if !def.owner.is_empty() && !vs.tables.contains_key(&def.owner) {
            faults.push(
                format!("{path}.owner"),
                format!("owner table `{}` is not in `tables`", def.owner),
            );
        }
    }
    if !vs.sharded && !vs.vindexes.is_empty() {
        faults.push(
            "vindexes",
            "an unsharded keyspace has no vindexes: every row lives in its one shard (set \"sharded\": true to shard it)",
        );
    }
    for (table, def) in &vs.tables {
        let path = format!("tables.{table}");
        if !valid_identifier(table) {
            faults.push(&path, "table names are letters, digits, '_' and '$'");
        }
        if !TABLE_KINDS.contains(&def.kind.as_str()) {
            faults.push(
                format!("{path}.type"),
                format!(
                    "unknown table type `{}`; known: \"\" (normal), \"sequence\", \"reference\"",
                    def.kind
                ),
            );
        }
        if def.kind == "sequence" && vs.sharded {
            faults.push(
                format!("{path}.type"),
                "a sequence table must live in an unsharded keyspace",
            );
        }
        if !vs.sharded {
            if !def.column_vindexes.is_empty() {
                faults.push(
                    format!("{path}.column_vindexes"),
                    "tables of an unsharded keyspace take no column_vindexes",
                );
            }
            if def.auto_increment.is_some() {
                faults.push(
                    format!("{path}.auto_increment"),
                    "auto_increment sequences are for sharded keyspaces; an unsharded table uses MySQL's own AUTO_INCREMENT",
                );
            }
            continue;
        }
        if def.kind.is_empty() && def.column_vindexes.is_empty() {
            faults.push(
                format!("{path}.column_vindexes"),
                "a table of a sharded keyspace needs a primary vindex: add {\"column\": \"<col>\", \"name\": \"<vindex>\"}",
            );
        }
        if def.kind == "reference" && !def.column_vindexes.is_empty() {
            faults.push(
                format!("{path}.column_vindexes"),
                "a reference table is copied to every shard and takes no vindex",
            );
        }
        for (i, cv) in def.column_vindexes.iter().enumerate() {
            let cv_path = format!("{path}.column_vindexes[{i}]");
            if cv.column.is_empty() == cv.columns.is_empty() {
                faults.push(&cv_path, "give exactly one of `column` or `columns`");
            }
            if cv.column_names().iter().any(|c| c.is_empty()) {
                faults.push(&cv_path, "column names cannot be empty");
            }
            match vs.vindexes.get(&cv.name) {
                None => faults.push(
                    format!("{cv_path}.name"),
                    format!(
                        "no vindex named `{}` in `vindexes`{}",
                        cv.name,
                        known_list(vs.vindexes.keys())
                    ),
                ),
                Some(vdef) if i == 0 => {
                    if let Ok(v) = keyshift_vindex::new_vindex(&vdef.kind, &vdef.params)
                        && !v.is_unique()
                    {
                        faults.push(
                                format!("{cv_path}.name"),
                                format!(
                                    "the primary vindex (the first) must be unique; `{}` is a {} vindex, which is not",
                                    cv.name, vdef.kind
                                ),
                            );
                    }
                }
                Some(_) => {}
            }
        }
        if let Some(ai) = &def.auto_increment {
            if ai.column.is_empty() {
                faults.push(format!("{path}.auto_increment.column"), "required");
            }
            if ai.sequence.is_empty() {
                faults.push(format!("{path}.auto_increment.sequence"), "required");
            }
        }
    }
    faults.finish()
}

fn known_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        " (none are defined)".to_string()
    } else {
        format!(" (defined: {})", names.join(", "))
    }
}

/// MySQL unquoted identifiers, which is what keyspace, table and vindex names
/// must be so that they need no quoting anywhere.
pub fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
        && !s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUSTOMER: &str = r#"{
        "sharded": true,
        "vindexes": {"hash": {"type": "hash"}},
        "tables": {
            "customer": {
                "column_vindexes": [{"column": "customer_id", "name": "hash"}],
                "auto_increment": {"column": "customer_id", "sequence": "customer_seq"}
            },
            "corder": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]}
        }
    }"#;

    #[test]
    fn parses_the_vitess_example_and_round_trips() {
        let vs = parse_vschema(CUSTOMER).expect("valid");
        assert!(vs.sharded);
        assert_eq!(
            vs.tables["customer"].column_vindexes[0].column,
            "customer_id"
        );
        let again = serde_json::to_string(&vs).expect("serialize");
        assert_eq!(parse_vschema(&again).expect("reparse"), vs);
    }

    #[test]
    fn unknown_vindex_type_names_its_path_and_the_known_types() {
        let err = parse_vschema(r#"{"sharded": true, "vindexes": {"v": {"type": "hsah"}}}"#)
            .expect_err("bad type");
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].path, "vindexes.v.type");
        assert!(err.0[0].message.contains("hash"), "{}", err.0[0].message);
    }

    #[test]
    fn every_fault_is_reported_at_once() {
        let json = r#"{
            "sharded": true,
            "vindexes": {"h": {"type": "nope"}},
            "tables": {
                "a": {},
                "b": {"column_vindexes": [{"column": "x", "name": "missing"}]},
                "c": {"type": "weird", "column_vindexes": [{"column": "x", "name": "h"}]}
            }
        }"#;
        let err = parse_vschema(json).expect_err("faults");
        let paths: Vec<&str> = err.0.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "vindexes.h.type",
                "tables.a.column_vindexes",
                "tables.b.column_vindexes[0].name",
                "tables.c.type",
            ]
        );
    }

    #[test]
    fn shape_errors_carry_the_path() {
        let err = parse_vschema(r#"{"sharded": true, "tables": {"t": {"column_vindexes": [{"colum": "x", "name": "h"}]}}}"#)
            .expect_err("unknown field");
        assert_eq!(err.0[0].path, "tables.t.column_vindexes[0].colum");
        assert!(err.0[0].message.contains("colum"), "{}", err.0[0].message);
        let err = parse_vschema(r#"{"sharded": "yes"}"#).expect_err("wrong type");
        assert_eq!(err.0[0].path, "sharded");
        let err = parse_vschema("{").expect_err("truncated");
        assert!(!err.0[0].message.is_empty());
    }

    #[test]
    fn unsharded_keyspaces_take_no_vindexes() {
        let err = parse_vschema(
            r#"{"vindexes": {"h": {"type": "hash"}}, "tables": {"t": {"column_vindexes": [{"column": "x", "name": "h"}]}}}"#,
        )
        .expect_err("unsharded with vindexes");
        let paths: Vec<&str> = err.0.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["vindexes", "tables.t.column_vindexes"]);
        parse_vschema(r#"{"tables": {"customer_seq": {"type": "sequence"}, "product": {}}}"#)
            .expect("plain unsharded");
    }

    #[test]
    fn identifiers() {
        assert!(valid_identifier("customer_seq"));
        assert!(valid_identifier("t$1"));
        assert!(!valid_identifier(""));
        assert!(!valid_identifier("123"));
        assert!(!valid_identifier("a-b"));
        assert!(!valid_identifier("a b"));
        assert!(!valid_identifier(&"x".repeat(65)));
    }
}
