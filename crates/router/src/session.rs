//! Session statements, recognised from tokens rather than the parser: the
//! parser cannot read some of them (`SET @a := 1`, `START TRANSACTION WITH
//! CONSISTENT SNAPSHOT`) and printing them back would lose words (`SESSION`),
//! so their text is kept exactly as the client sent it.

use crate::error::RouteError;
use crate::lex::{Kind, Token};
use crate::plan::{Plan, TabletType};
use crate::snapshot::Snapshot;

/// The plan of a session statement, or `None` if `tokens` are not one.
pub(crate) fn plan_session(
    snapshot: &Snapshot,
    sql: &str,
    tokens: &[Token<'_>],
) -> Option<Result<Plan, RouteError>> {
    let first = tokens.first()?;
    let word = |i: usize, w: &str| tokens.get(i).is_some_and(|t| t.is_word(w));
    let rest_is = |from: usize, allowed: &[&str]| {
        tokens[from..]
            .iter()
            .all(|t| allowed.iter().any(|a| t.is_word(a)) || t.is_sym(";"))
    };
    if first.is_word("use") {
        return Some(plan_use(snapshot, sql, tokens));
    }
    if first.is_word("begin") && rest_is(1, &["work"]) {
        return Some(Ok(Plan::Begin {
            sql: sql.trim().to_string(),
        }));
    }
    if first.is_word("start") && word(1, "transaction") {
        return Some(Ok(Plan::Begin {
            sql: sql.trim().to_string(),
        }));
    }
    let end_words = &["work", "and", "no", "chain", "release"];
    if first.is_word("commit") && rest_is(1, end_words) {
        return Some(Ok(Plan::Commit));
    }
    if first.is_word("rollback") {
        if rest_is(1, end_words) {
            return Some(Ok(Plan::Rollback));
        }
        return Some(Err(RouteError::unsupported(
            "savepoints are not supported through the gate (ROLLBACK TO)",
        )));
    }
    if first.is_word("savepoint") || (first.is_word("release") && word(1, "savepoint")) {
        return Some(Err(RouteError::unsupported(
            "savepoints are not supported through the gate",
        )));
    }
    if first.is_word("xa") {
        return Some(Err(RouteError::unsupported(
            "XA transactions are not supported through the gate",
        )));
    }
    if first.is_word("set") {
        return Some(plan_set(sql, &tokens[1..]));
    }
    None
}

/// `USE ks`, `USE ks@replica`, `` USE `ks@replica` ``.
fn plan_use(snapshot: &Snapshot, sql: &str, tokens: &[Token<'_>]) -> Result<Plan, RouteError> {
    let rest: Vec<&Token<'_>> = tokens[1..].iter().filter(|t| !t.is_sym(";")).collect();
    let text = match rest.as_slice() {
        [t] if t.kind == Kind::Quoted => t.ident().unwrap_or_default(),
        [] => {
            return Err(RouteError::Syntax(format!(
                "USE needs a database name near '{}'",
                sql.trim()
            )));
        }
        _ => {
            let start = rest[0].start;
            let end = rest[rest.len() - 1].end;
            sql[start..end].replace(' ', "")
        }
    };
    use_target(snapshot, &text).map(|(keyspace, tablet_type)| Plan::Use {
        keyspace,
        tablet_type,
    })
}

/// Reads `ks` or `ks@tablet_type` (what `USE` and `COM_INIT_DB` carry).
pub fn use_target(snapshot: &Snapshot, name: &str) -> Result<(String, TabletType), RouteError> {
    let (ks, tt) = match name.split_once('@') {
        Some((k, t)) => (
            k,
            TabletType::parse(t).ok_or_else(|| RouteError::UnknownDatabase(name.to_string()))?,
        ),
        None => (name, TabletType::Primary),
    };
    snapshot.keyspace_or_1049(ks)?;
    Ok((ks.to_string(), tt))
}

enum Assign {
    Autocommit(bool),
    Names(String),
    Other,
}

fn plan_set(text: &str, tokens: &[Token<'_>]) -> Result<Plan, RouteError> {
    let sql = text.trim().trim_end_matches(';').trim_end().to_string();
    let tokens: Vec<&Token<'_>> = tokens.iter().filter(|t| !t.is_sym(";")).collect();
    if tokens.is_empty() {
        return Err(RouteError::Syntax("SET needs an assignment".to_string()));
    }
    // SET [SESSION|LOCAL] TRANSACTION ...: applies to the session's next
    // transactions on every backend.
    let tx_at = usize::from(tokens[0].is_word("session") || tokens[0].is_word("local"));
    if tokens.get(tx_at).is_some_and(|t| t.is_word("transaction")) {
        return Ok(Plan::SetSession {
            sql,
            charset: None,
            autocommit: None,
        });
    }
    let mut parts: Vec<Vec<&Token<'_>>> = vec![Vec::new()];
    let mut depth = 0i32;
    for t in tokens {
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
        }
        if depth == 0 && t.is_sym(",") {
            parts.push(Vec::new());
        } else if let Some(p) = parts.last_mut() {
            p.push(t);
        }
    }
    let mut assigns = Vec::new();
    for part in &parts {
        assigns.push(classify(part)?);
    }
    let autocommit: Vec<bool> = assigns
        .iter()
        .filter_map(|a| match a {
            Assign::Autocommit(b) => Some(*b),
            _ => None,
        })
        .collect();
    let charset = assigns.iter().rev().find_map(|a| match a {
        Assign::Names(c) => Some(c.clone()),
        _ => None,
    });
    let Some(&last) = autocommit.last() else {
        return Ok(Plan::SetSession {
            sql,
            charset,
            autocommit: None,
        });
    };
    if autocommit.len() == assigns.len() {
        return Ok(Plan::SetAutocommit(last));
    }
    // The other assignments, each as the client wrote it.
    let kept: Vec<&str> = parts
        .iter()
        .zip(&assigns)
        .filter(|(_, a)| !matches!(a, Assign::Autocommit(_)))
        .filter_map(|(part, _)| {
            let (first, last) = (part.first()?, part.last()?);
            text.get(first.start..last.end)
        })
        .collect();
    Ok(Plan::SetSession {
        sql: format!("SET {}", kept.join(", ")),
        charset,
        autocommit: Some(last),
    })
}

fn classify(part: &[&Token<'_>]) -> Result<Assign, RouteError> {
    let Some(first) = part.first() else {
        return Err(RouteError::Syntax("empty assignment in SET".to_string()));
    };
    let global = |name: &str| {
        RouteError::unsupported(format!(
            "SET {name} is not allowed through the gate: it would change the tablets' global settings"
        ))
    };
    if first.is_word("global") || first.is_word("persist") || first.is_word("persist_only") {
        return Err(global("GLOBAL"));
    }
    if first.is_word("names")
        || (first.is_word("character") && part.get(1).is_some_and(|t| t.is_word("set")))
        || first.is_word("charset")
    {
        let at = if first.is_word("character") { 2 } else { 1 };
        let cs = part
            .get(at)
            .map(|t| {
                t.ident()
                    .unwrap_or_else(|| t.text.trim_matches(['\'', '"']).to_string())
            })
            .unwrap_or_default();
        return Ok(Assign::Names(cs));
    }
    let (name_tok, value_at) = if first.is_word("session") || first.is_word("local") {
        (part.get(1).copied(), 2)
    } else {
        (Some(*first), 1)
    };
    let Some(name_tok) = name_tok else {
        return Ok(Assign::Other);
    };
    let name = match name_tok.kind {
        Kind::Var => {
            let lower = name_tok.text.to_ascii_lowercase();
            if lower.starts_with("@@global.") || lower.starts_with("@@persist") {
                return Err(global(name_tok.text));
            }
            if !lower.starts_with("@@") {
                return Ok(Assign::Other);
            }
            lower
                .trim_start_matches("@@")
                .trim_start_matches("session.")
                .trim_start_matches("local.")
                .to_string()
        }
        _ => name_tok.ident().unwrap_or_default().to_ascii_lowercase(),
    };
    if name != "autocommit" {
        return Ok(Assign::Other);
    }
    let value: Vec<&&Token<'_>> = part[value_at..]
        .iter()
        .filter(|t| !t.is_sym("=") && !t.is_sym(":="))
        .collect();
    let text = match value.as_slice() {
        [t] => t.text.trim_matches(['\'', '"']).to_ascii_lowercase(),
        _ => String::new(),
    };
    match text.as_str() {
        "1" | "on" | "true" => Ok(Assign::Autocommit(true)),
        "0" | "off" | "false" => Ok(Assign::Autocommit(false)),
        _ => Err(RouteError::unsupported(format!(
            "Variable 'autocommit' can't be set to the value of '{}'",
            value.iter().map(|t| t.text).collect::<Vec<_>>().join(" ")
        ))),
    }
}
