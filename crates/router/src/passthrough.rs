//! Statements sqlparser cannot read. MySQL accepts forms the parser does not
//! (`LOCK IN SHARE MODE` mid-statement, `SET @a := 1` in expressions, index
//! hints, `SQL_CALC_FOUND_ROWS`...), so such a statement is sent unchanged
//! when the tokens alone show where it goes: tables of one unsharded
//! keyspace, or one sharded table pinned by `vindex_column = literal`.

use crate::datum::Datum;
use crate::error::RouteError;
use crate::lex::{Kind, Token};
use crate::plan::{Plan, Route, RouteKind, Selector, Slot, Target};
use crate::planner::{
    Ctx, TableRef, effective_tablet_type, fixed_route, single_keyspace, unescape,
};
use crate::snapshot::Placement;
use crate::template::Template;

/// Keywords after which a table name follows.
const TABLE_INTRO: &[&str] = &["from", "join", "into", "update", "table", "straight_join"];
/// Words that end a table list.
const STOP: &[&str] = &[
    "where",
    "join",
    "left",
    "right",
    "inner",
    "outer",
    "cross",
    "natural",
    "on",
    "using",
    "group",
    "order",
    "limit",
    "having",
    "set",
    "values",
    "value",
    "select",
    "for",
    "lock",
    "union",
    "window",
    "partition",
    "straight_join",
    "into",
    "use",
    "ignore",
    "force",
    "procedure",
];

/// MySQL forms the parser is known not to read: refusing one says why
/// rather than claiming a syntax error.
const KNOWN_GAPS: &[(&[&str], &str)] = &[
    (&[":="], "assignment with :="),
    (&["lock", "in", "share", "mode"], "LOCK IN SHARE MODE"),
    (&["consistent", "snapshot"], "WITH CONSISTENT SNAPSHOT"),
    (&["sql_calc_found_rows"], "SQL_CALC_FOUND_ROWS"),
    (&["sql_small_result"], "SQL_SMALL_RESULT"),
    (&["sql_big_result"], "SQL_BIG_RESULT"),
    (&["sql_buffer_result"], "SQL_BUFFER_RESULT"),
    (&["straight_join"], "STRAIGHT_JOIN"),
    (&["high_priority"], "HIGH_PRIORITY"),
    (&["sql_no_cache"], "SQL_NO_CACHE"),
    (&["sql_cache"], "SQL_CACHE"),
    (&["use", "index"], "index hints"),
    (&["force", "index"], "index hints"),
    (&["ignore", "index"], "index hints"),
    (&["partition", "("], "PARTITION selection"),
];

pub(crate) fn plan_unparsed(
    ctx: &Ctx<'_>,
    sql: &str,
    tokens: &[Token<'_>],
    parse_error: String,
) -> Result<Plan, RouteError> {
    let gap = known_gap(tokens);
    let update_order_limit = is_update_with_order_or_limit(tokens);
    let refuse = |why: String| match gap {
        Some(g) => RouteError::unsupported(format!(
            "cannot route this statement: the router's parser does not read {g}, and {why}"
        )),
        None if update_order_limit => RouteError::unsupported(format!(
            "cannot route this statement: the router's parser does not read UPDATE with ORDER BY/LIMIT, and {why}"
        )),
        None => RouteError::Syntax(parse_error.clone()),
    };
    // DDL the parser does not read (`ALTER TABLE t DISABLE KEYS`, which
    // every dump has) goes where parsed DDL goes: every shard of the
    // keyspace its tables are named in, or the session's.
    if tokens.first().is_some_and(|t| {
        ["alter", "create", "drop", "truncate", "rename"]
            .iter()
            .any(|w| t.is_word(w))
    }) {
        let qualifiers = token_tables(tokens).into_iter().map(|(q, _)| q).collect();
        return crate::dml::ddl_route(ctx, qualifiers, sql);
    }
    let mut refs = Vec::new();
    for (q, t) in token_tables(tokens) {
        let res = ctx.snap.resolve(
            ctx.session.keyspace,
            ctx.session.tablet_type,
            q.as_deref(),
            &t,
        )?;
        refs.push(TableRef {
            qualifier: q,
            name: t,
            res,
        });
    }
    let kind = if tokens.first().is_some_and(|t| {
        t.is_word("select") || t.is_word("show") || t.is_word("with") || t.is_sym("(")
    }) {
        RouteKind::Read
    } else {
        RouteKind::Write
    };
    let ks = match single_keyspace(ctx, &refs)? {
        Some(ks) => ks,
        None => match ctx.session.keyspace {
            Some(k) => ctx.snap.keyspace_or_1049(k)?,
            None => return Err(refuse("no keyspace is selected (USE one)".to_string())),
        },
    };
    if !ks.sharded {
        return Ok(Plan::Route(fixed_route(
            ctx,
            ks,
            kind,
            Target::One(ks.shards[0].name.clone()),
            Template::new(sql),
        )?));
    }
    if kind == RouteKind::Read
        && !refs.is_empty()
        && refs
            .iter()
            .all(|r| matches!(r.res.placement, Placement::Reference { .. }))
    {
        return Ok(Plan::Route(fixed_route(
            ctx,
            ks,
            kind,
            Target::Any,
            Template::new(sql),
        )?));
    }
    let sharded: Vec<&TableRef> = refs
        .iter()
        .filter(|r| !matches!(r.res.placement, Placement::Reference { .. }))
        .collect();
    if let [only] = sharded.as_slice()
        && let Placement::Sharded { column, vindex, .. } = &only.res.placement
    {
        let is_insert = tokens
            .first()
            .is_some_and(|t| t.is_word("insert") || t.is_word("replace"));
        if !is_insert && let Some(slot) = pinned_value(tokens, column) {
            return Ok(Plan::Route(Route {
                keyspace: ks.name.clone(),
                tablet_type: effective_tablet_type(ctx, kind)?,
                kind,
                selector: Selector::Vindex {
                    vindex: vindex.clone(),
                    values: vec![slot],
                    shards: ks.shards.clone(),
                },
                sql: Template::new(sql),
                scatter: None,
            }));
        }
        if update_order_limit {
            return Err(RouteError::unsupported(format!(
                "UPDATE with ORDER BY/LIMIT on sharded table {} cannot be routed: which rows ORDER BY/LIMIT picks depends on all shards' rows together, and no simple `{column} = value` condition pins it to one shard",
                only.display()
            )));
        }
        return Err(refuse(format!(
            "{} is sharded and no simple `{column} = value` condition pins it to one shard",
            only.display()
        )));
    }
    Err(refuse(format!(
        "its tables ({}) are in sharded keyspace {}",
        refs.iter()
            .map(TableRef::display)
            .collect::<Vec<_>>()
            .join(", "),
        ks.name
    )))
}

/// `UPDATE ... [ORDER BY ...] LIMIT n`, valid MySQL that sqlparser does not
/// read: ORDER BY or LIMIT outside parentheses.
fn is_update_with_order_or_limit(tokens: &[Token<'_>]) -> bool {
    if !tokens.first().is_some_and(|t| t.is_word("update")) {
        return false;
    }
    let mut depth = 0i32;
    tokens.iter().enumerate().any(|(i, t)| {
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
        }
        depth == 0
            && (t.is_word("limit")
                || (t.is_word("order") && tokens.get(i + 1).is_some_and(|n| n.is_word("by"))))
    })
}

fn known_gap(tokens: &[Token<'_>]) -> Option<&'static str> {
    KNOWN_GAPS.iter().find_map(|(pat, name)| {
        tokens
            .windows(pat.len())
            .any(|w| {
                w.iter()
                    .zip(pat.iter())
                    .all(|(t, p)| t.is_word(p) || t.is_sym(p))
            })
            .then_some(*name)
    })
}

/// `[qualifier.]table` names after FROM, JOIN, INTO, UPDATE, TABLE, with
/// comma-separated lists.
pub(crate) fn token_tables(tokens: &[Token<'_>]) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let intro = TABLE_INTRO.iter().any(|w| tokens[i].is_word(w))
            || ((tokens[i].is_word("insert") || tokens[i].is_word("replace"))
                && !tokens.get(i + 1).is_some_and(|t| t.is_word("into")));
        i += 1;
        if !intro {
            continue;
        }
        // INSERT [LOW_PRIORITY | DELAYED | HIGH_PRIORITY] [IGNORE] t
        while tokens.get(i).is_some_and(|t| {
            [
                "low_priority",
                "delayed",
                "high_priority",
                "ignore",
                "quick",
            ]
            .iter()
            .any(|w| t.is_word(w))
        }) {
            i += 1;
        }
        while let Some(t) = tokens.get(i) {
            if !matches!(t.kind, Kind::Word | Kind::Quoted) || STOP.iter().any(|s| t.is_word(s)) {
                break;
            }
            let Some(mut name) = t.ident() else { break };
            let mut qualifier = None;
            i += 1;
            if tokens.get(i).is_some_and(|t| t.is_sym("."))
                && let Some(n) = tokens.get(i + 1).and_then(|t| t.ident())
            {
                qualifier = Some(name);
                name = n;
                i += 2;
            }
            if !(qualifier.is_none() && name.eq_ignore_ascii_case("dual")) {
                out.push((qualifier, name));
            }
            // optional alias
            if tokens.get(i).is_some_and(|t| t.is_word("as")) {
                i += 1;
            }
            if tokens.get(i).is_some_and(|t| {
                matches!(t.kind, Kind::Word | Kind::Quoted) && !STOP.iter().any(|s| t.is_word(s))
            }) {
                i += 1;
            }
            if tokens.get(i).is_some_and(|t| t.is_sym(",")) {
                i += 1;
                continue;
            }
            break;
        }
    }
    out
}

/// `column = literal` (or `?`) right after WHERE or AND, at the WHERE's
/// parenthesis depth, in a statement without OR, XOR or subqueries: the one
/// shape a tokenizer can trust to pin a single shard.
fn pinned_value(tokens: &[Token<'_>], column: &str) -> Option<Slot> {
    let selects = tokens.iter().filter(|t| t.is_word("select")).count();
    if selects > 1
        || tokens.iter().any(|t| {
            t.is_word("or")
                || t.is_word("xor")
                || t.is_sym("||")
                || t.is_word("not")
                || t.is_word("union")
        })
    {
        return None;
    }
    let where_at = tokens.iter().position(|t| t.is_word("where"))?;
    let mut depth = 0i32;
    let mut params_before = tokens[..where_at]
        .iter()
        .filter(|t| t.kind == Kind::Param)
        .count();
    let mut i = where_at + 1;
    while i < tokens.len() {
        let t = &tokens[i];
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
        }
        let prev_ok = tokens[i - 1].is_word("where") || tokens[i - 1].is_word("and");
        if depth == 0 && prev_ok && matches!(t.kind, Kind::Word | Kind::Quoted) {
            // [q.]col = value
            let mut j = i;
            if tokens.get(j + 1).is_some_and(|t| t.is_sym(".")) {
                j += 2;
            }
            let is_col = tokens
                .get(j)
                .and_then(|t| t.ident())
                .is_some_and(|c| c.eq_ignore_ascii_case(column));
            if is_col && tokens.get(j + 1).is_some_and(|t| t.is_sym("=")) {
                let (neg, v) = match tokens.get(j + 2) {
                    Some(t) if t.is_sym("-") => (true, tokens.get(j + 3)),
                    other => (false, other),
                };
                let after = if neg { j + 4 } else { j + 3 };
                let ends = tokens.get(after).is_none_or(|t| {
                    ["and", "order", "limit", "for", "lock", "group"]
                        .iter()
                        .any(|w| t.is_word(w))
                        || t.is_sym(";")
                });
                if let (Some(v), true) = (v, ends) {
                    let slot = match v.kind {
                        Kind::Param => Some(Slot::Param(params_before)),
                        Kind::Num => {
                            let s = if neg {
                                format!("-{}", v.text)
                            } else {
                                v.text.to_string()
                            };
                            s.parse::<i64>()
                                .map(Datum::Int)
                                .or_else(|_| s.parse::<u64>().map(Datum::UInt))
                                .ok()
                                .map(Slot::Lit)
                        }
                        Kind::Str
                            if !neg && (v.text.starts_with('\'') || v.text.starts_with('"')) =>
                        {
                            let inner = &v.text[1..v.text.len().saturating_sub(1)];
                            Some(Slot::Lit(Datum::Text(unescape(inner).into_bytes())))
                        }
                        _ => None,
                    };
                    if slot.is_some() {
                        return slot;
                    }
                }
            }
        }
        if t.kind == Kind::Param {
            params_before += 1;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lex::lex;

    #[test]
    fn finds_tables_in_token_streams() {
        let t = token_tables(&lex(
            "SELECT * FROM a x, `ks`.b AS y JOIN c ON x.id = c.id WHERE z IN (SELECT 1 FROM d) LOCK IN SHARE MODE",
        ));
        let names: Vec<String> = t
            .iter()
            .map(|(q, n)| {
                format!(
                    "{}{n}",
                    q.as_ref().map(|q| format!("{q}.")).unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(names, vec!["a", "ks.b", "c", "d"]);
        let t = token_tables(&lex("INSERT IGNORE INTO t1 (a) VALUES (1)"));
        assert_eq!(t, vec![(None, "t1".to_string())]);
        let t = token_tables(&lex("UPDATE t2 SET a = 1"));
        assert_eq!(t, vec![(None, "t2".to_string())]);
    }

    #[test]
    fn pins_only_trustworthy_equalities() {
        let p = |s: &str| pinned_value(&lex(s), "id");
        assert_eq!(
            p("SELECT c FROM t WHERE id = 5 LOCK IN SHARE MODE"),
            Some(Slot::Lit(Datum::Int(5)))
        );
        assert_eq!(
            p("SELECT c FROM t WHERE k = ? AND t.id = ? LOCK IN SHARE MODE"),
            Some(Slot::Param(1))
        );
        assert_eq!(
            p("SELECT c FROM t WHERE id = 5 OR k = 1 LOCK IN SHARE MODE"),
            None
        );
        assert_eq!(p("SELECT c FROM t WHERE id = 5 + 1"), None);
        assert_eq!(p("SELECT c FROM t WHERE (k = 1 AND id = 5)"), None);
    }
}
