//! `SHOW` and `DESCRIBE`, read from tokens so the client's text (and its
//! `LIKE`/`WHERE`) reaches the tablet unchanged.

use crate::error::RouteError;
use crate::lex::{Kind, Token};
use crate::plan::{Plan, RouteKind, Target};
use crate::planner::{Ctx, fixed_route, session_or_default};
use crate::template::Template;

pub(crate) fn plan_show(
    ctx: &Ctx<'_>,
    sql: &str,
    tokens: &[Token<'_>],
) -> Option<Result<Plan, RouteError>> {
    let first = tokens.first()?;
    let words: Vec<&Token<'_>> = tokens.iter().filter(|t| !t.is_sym(";")).collect();
    let w = |i: usize, s: &str| words.get(i).is_some_and(|t| t.is_word(s));
    if first.is_word("describe")
        || first.is_word("desc")
        || (first.is_word("explain") && is_ident(words.get(1)))
    {
        if !is_ident(words.get(1)) {
            return None; // EXPLAIN <statement>: not a table description
        }
        return Some(table_show(ctx, sql, &words, 1));
    }
    if !first.is_word("show") {
        return None;
    }
    let mut i = 1;
    if w(i, "full") || w(i, "extended") {
        i += 1;
    }
    if w(i, "extended") || w(i, "full") {
        i += 1;
    }
    Some(if w(i, "databases") || w(i, "schemas") {
        let like = if w(i + 1, "like") {
            words
                .get(i + 2)
                .filter(|t| t.kind == Kind::Str)
                .map(|t| crate::planner::unescape(&t.text[1..t.text.len().saturating_sub(1)]))
        } else {
            None
        };
        Ok(Plan::ShowDatabases { like })
    } else if w(i, "tables") {
        let ks = if w(i + 1, "from") || w(i + 1, "in") {
            words.get(i + 2).and_then(|t| t.ident())
        } else {
            ctx.session.keyspace.map(str::to_string)
        };
        match ks {
            None => Err(RouteError::NoDatabaseSelected),
            Some(k) => ctx.snap.keyspace_or_1049(&k).and_then(|ks| {
                fixed_route(ctx, ks, RouteKind::Read, Target::Any, Template::new(sql))
                    .map(Plan::Route)
            }),
        }
    } else if w(i, "warnings")
        || w(i, "errors")
        || (w(i, "count") && words.len() > 4 && (w(4, "warnings") || w(4, "errors")))
    {
        Ok(Plan::ShowWarnings {
            sql: sql.trim().to_string(),
        })
    } else if w(i, "columns") || w(i, "fields") || w(i, "index") || w(i, "indexes") || w(i, "keys")
    {
        if w(i + 1, "from") || w(i + 1, "in") {
            table_show(ctx, sql, &words, i + 2)
        } else {
            Err(RouteError::Syntax(format!(
                "SHOW {} needs FROM <table>",
                words[i].text
            )))
        }
    } else if w(i, "create") && (w(i + 1, "table") || w(i + 1, "view")) {
        table_show(ctx, sql, &words, i + 2)
    } else if w(i, "create") && (w(i + 1, "database") || w(i + 1, "schema")) {
        match words.get(i + 2).and_then(|t| t.ident()) {
            Some(k) => ctx.snap.keyspace_or_1049(&k).and_then(|ks| {
                fixed_route(ctx, ks, RouteKind::Read, Target::Any, Template::new(sql))
                    .map(Plan::Route)
            }),
            None => Err(RouteError::Syntax(
                "SHOW CREATE DATABASE needs a name".to_string(),
            )),
        }
    } else {
        // VARIABLES, STATUS, COLLATION, CHARACTER SET, ENGINES, ...: any
        // tablet answers for the session.
        session_or_default(ctx).and_then(|ks| {
            fixed_route(ctx, ks, RouteKind::Read, Target::Any, Template::new(sql)).map(Plan::Route)
        })
    })
}

fn is_ident(t: Option<&&Token<'_>>) -> bool {
    t.is_some_and(|t| {
        matches!(t.kind, Kind::Word | Kind::Quoted)
            && !t.is_word("select")
            && !t.is_word("insert")
            && !t.is_word("update")
            && !t.is_word("delete")
            && !t.is_word("replace")
            && !t.is_word("format")
            && !t.is_word("extended")
            && !t.is_word("partitions")
            && !t.is_word("analyze")
            && !t.is_word("with")
    })
}

/// SHOW COLUMNS / INDEX / CREATE TABLE and DESCRIBE: routed like the table,
/// to any one shard, with the table reference pointed at its target.
fn table_show(
    ctx: &Ctx<'_>,
    sql: &str,
    words: &[&Token<'_>],
    at: usize,
) -> Result<Plan, RouteError> {
    let Some(first) = words.get(at) else {
        return Err(RouteError::Syntax("a table name is missing".to_string()));
    };
    let mut name = first.ident().unwrap_or_default();
    let mut qualifier = None;
    let mut end = at;
    if words.get(at + 1).is_some_and(|t| t.is_sym("."))
        && let Some(t) = words.get(at + 2).and_then(|t| t.ident())
    {
        qualifier = Some(name);
        name = t;
        end = at + 2;
    }
    // SHOW COLUMNS FROM t FROM db
    let mut db_token = None;
    if qualifier.is_none()
        && words
            .get(end + 1)
            .is_some_and(|t| t.is_word("from") || t.is_word("in"))
        && let Some(t) = words.get(end + 2)
    {
        qualifier = t.ident();
        db_token = Some(*t);
    }
    let res = ctx.snap.resolve(
        ctx.session.keyspace,
        ctx.session.tablet_type,
        qualifier.as_deref(),
        &name,
    )?;
    let ks = match &res.keyspace {
        Some(k) => ctx.snap.keyspace_or_1049(k)?,
        None => session_or_default(ctx)?,
    };
    let mut text = sql.to_string();
    let changed = res.table != name
        || (qualifier.is_some() && res.keyspace.as_deref() != qualifier.as_deref());
    if changed && res.keyspace.is_some() {
        let quoted = |s: &str| format!("`{}`", s.replace('`', "``"));
        let target = if qualifier.is_some() && db_token.is_none() {
            format!("{}.{}", quoted(&ks.name), quoted(&res.table))
        } else {
            quoted(&res.table)
        };
        let mut out = String::new();
        out.push_str(&sql[..first.start]);
        out.push_str(&target);
        match db_token {
            Some(db) => {
                out.push_str(&sql[words[end].end..db.start]);
                out.push_str(&quoted(&ks.name));
                out.push_str(&sql[db.end..]);
            }
            None => out.push_str(&sql[words[end].end..]),
        }
        text = out;
    }
    fixed_route(ctx, ks, RouteKind::Read, Target::Any, Template::new(&text)).map(Plan::Route)
}
