//! Routing rules: table → keyspace overrides that the gate obeys before the
//! VSchema. Workflows write them; switching traffic is one atomic rewrite.
//!
//! Vitess's shape: `{"rules": [{"from_table": "customer@replica",
//! "to_tables": ["commerce.customer"]}]}`. `from_table` is
//! `[keyspace.]table[@tablet_type]`.

use crate::{FaultList, Faults, from_json, valid_identifier};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRules {
    #[serde(default)]
    pub rules: Vec<RoutingRule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    pub from_table: String,
    pub to_tables: Vec<String>,
}

/// A fully qualified table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableTarget {
    pub keyspace: String,
    pub table: String,
}

/// The parts of a `from_table`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FromTable<'a> {
    pub keyspace: Option<&'a str>,
    pub table: &'a str,
    pub tablet_type: Option<&'a str>,
}

pub const TABLET_TYPES: &[&str] = &["primary", "replica", "rdonly"];

pub fn split_from_table(s: &str) -> Result<FromTable<'_>, String> {
    let (name, tablet_type) = match s.split_once('@') {
        Some((n, t)) => (n, Some(t)),
        None => (s, None),
    };
    if let Some(t) = tablet_type
        && !TABLET_TYPES.contains(&t)
    {
        return Err(format!(
            "unknown tablet type `@{t}`; use @primary, @replica or @rdonly"
        ));
    }
    let (keyspace, table) = match name.split_once('.') {
        Some((k, t)) => (Some(k), t),
        None => (None, name),
    };
    if keyspace.is_some_and(|k| !valid_identifier(k)) || !valid_identifier(table) {
        return Err(format!(
            "`{s}` is not [keyspace.]table[@tablet_type] with plain identifiers"
        ));
    }
    Ok(FromTable {
        keyspace,
        table,
        tablet_type,
    })
}

pub fn split_target(s: &str) -> Result<TableTarget, String> {
    match s.split_once('.') {
        Some((k, t)) if valid_identifier(k) && valid_identifier(t) => Ok(TableTarget {
            keyspace: k.to_string(),
            table: t.to_string(),
        }),
        _ => Err(format!("`{s}` is not keyspace.table")),
    }
}

/// Parses routing rules and checks their shape. `keyspaces` are the keyspaces
/// that exist; a rule pointing elsewhere would send queries nowhere.
pub fn parse_routing_rules(json: &str, keyspaces: &[String]) -> Result<RoutingRules, Faults> {
    let rr: RoutingRules = from_json(json)?;
    rr.check(keyspaces)?;
    Ok(rr)
}

impl RoutingRules {
    pub fn check(&self, keyspaces: &[String]) -> Result<(), Faults> {
        let mut faults = FaultList::default();
        let mut seen = BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let path = format!("rules[{i}]");
            if let Err(e) = split_from_table(&rule.from_table) {
                faults.push(format!("{path}.from_table"), e);
            }
            if !seen.insert(rule.from_table.as_str()) {
                faults.push(
                    format!("{path}.from_table"),
                    format!("`{}` has more than one rule", rule.from_table),
                );
            }
            if rule.to_tables.len() != 1 {
                faults.push(
                    format!("{path}.to_tables"),
                    "exactly one target keyspace.table is needed",
                );
            }
            for (j, t) in rule.to_tables.iter().enumerate() {
                match split_target(t) {
                    Err(e) => faults.push(format!("{path}.to_tables[{j}]"), e),
                    Ok(target) if !keyspaces.contains(&target.keyspace) => faults.push(
                        format!("{path}.to_tables[{j}]"),
                        format!("keyspace `{}` does not exist", target.keyspace),
                    ),
                    Ok(_) => {}
                }
            }
        }
        faults.finish()
    }

    /// Where a table reference goes, if a rule says so. `keyspace` is the
    /// qualifier the query used (or the session's keyspace).
    pub fn resolve(
        &self,
        keyspace: Option<&str>,
        table: &str,
        tablet_type: &str,
    ) -> Option<TableTarget> {
        let bare = match keyspace {
            Some(k) => format!("{k}.{table}"),
            None => table.to_string(),
        };
        let typed = format!("{bare}@{tablet_type}");
        let lookup = |key: &str| {
            self.rules
                .iter()
                .find(|r| r.from_table == key)
                .and_then(|r| r.to_tables.first())
                .and_then(|t| split_target(t).ok())
        };
        if tablet_type != "primary"
            && let Some(t) = lookup(&typed)
        {
            return Some(t);
        }
        lookup(&bare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ks() -> Vec<String> {
        vec!["commerce".into(), "customer".into()]
    }

    #[test]
    fn parses_and_resolves() {
        let rr = parse_routing_rules(
            r#"{"rules": [
                {"from_table": "customer", "to_tables": ["commerce.customer"]},
                {"from_table": "customer.customer", "to_tables": ["commerce.customer"]},
                {"from_table": "customer@replica", "to_tables": ["customer.customer"]}
            ]}"#,
            &ks(),
        )
        .expect("valid");
        let t = |k: &str, tb: &str| TableTarget {
            keyspace: k.into(),
            table: tb.into(),
        };
        assert_eq!(
            rr.resolve(None, "customer", "primary"),
            Some(t("commerce", "customer"))
        );
        assert_eq!(
            rr.resolve(None, "customer", "replica"),
            Some(t("customer", "customer"))
        );
        assert_eq!(
            rr.resolve(Some("customer"), "customer", "primary"),
            Some(t("commerce", "customer"))
        );
        assert_eq!(rr.resolve(None, "corder", "primary"), None);
    }

    #[test]
    fn reports_each_bad_rule_with_its_path() {
        let err = parse_routing_rules(
            r#"{"rules": [
                {"from_table": "a@master", "to_tables": ["commerce.a"]},
                {"from_table": "b", "to_tables": ["nowhere.b"]},
                {"from_table": "c", "to_tables": []},
                {"from_table": "c", "to_tables": ["c"]}
            ]}"#,
            &ks(),
        )
        .expect_err("bad");
        let paths: Vec<&str> = err.0.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "rules[0].from_table",
                "rules[1].to_tables[0]",
                "rules[2].to_tables",
                "rules[3].from_table",
                "rules[3].to_tables[0]",
            ]
        );
    }
}
