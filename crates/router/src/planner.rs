//! Statement → plan: parsing, table resolution, and the choices common to all
//! statement kinds. SELECT and DML specifics live in `select` and `dml`.

use crate::datum::Datum;
use crate::error::RouteError;
use crate::lex::{Kind, Token, lex};
use crate::plan::{Plan, Route, RouteKind, Selector, SessionCtx, Slot, TabletType, Target};
use crate::snapshot::{CACHE_MAX_SQL, KeyspaceInfo, Placement, Resolved, Snapshot};
use crate::template::Template;
use crate::{dml, passthrough, select, session, show};
use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, Statement, UnaryOperator, Value, Visit, VisitMut,
    Visitor, VisitorMut,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::{Parser, ParserOptions};
use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

/// Plans one statement (text protocol or `COM_STMT_PREPARE`), with `?`
/// placeholders left for [`Route::bind`] / [`crate::InsertPlan::bind`].
/// Plans are cached in the snapshot by statement text, session keyspace and
/// tablet type.
pub fn plan(
    snapshot: &Snapshot,
    session: &SessionCtx<'_>,
    sql: &str,
) -> Result<Arc<Plan>, RouteError> {
    let cacheable = sql.len() <= CACHE_MAX_SQL;
    if cacheable
        && let Some(p) = snapshot
            .cache
            .get(session.keyspace, session.tablet_type, sql)
    {
        return Ok(p);
    }
    let plan = Arc::new(plan_uncached(snapshot, session, sql)?);
    if cacheable {
        snapshot
            .cache
            .put(session.keyspace, session.tablet_type, sql, plan.clone());
    }
    Ok(plan)
}

/// What every planning step needs.
pub(crate) struct Ctx<'a> {
    pub snap: &'a Snapshot,
    pub session: &'a SessionCtx<'a>,
}

pub(crate) fn plan_uncached(
    snapshot: &Snapshot,
    session: &SessionCtx<'_>,
    sql: &str,
) -> Result<Plan, RouteError> {
    let ctx = Ctx {
        snap: snapshot,
        session,
    };
    // `/*!40101 SET ... */` means `SET ...` to the tablets: plan it so.
    let unwrapped = crate::lex::unwrap_executable_comments(sql);
    let sql = unwrapped.as_deref().unwrap_or(sql);
    let tokens = lex(sql);
    let meaningful: Vec<&Token<'_>> = tokens.iter().filter(|t| !t.is_sym(";")).collect();
    if meaningful.is_empty() {
        return Err(RouteError::Syntax("Query was empty".to_string()));
    }
    if let Some(p) = session::plan_session(snapshot, sql, &tokens) {
        return p;
    }
    if let Some(p) = show::plan_show(&ctx, sql, &tokens) {
        return p;
    }
    // sqlparser cannot read a trailing `LOCK IN SHARE MODE`: plan without it
    // and put it back verbatim.
    let (body, suffix) = split_share_lock(sql, &tokens);
    // Nor MySQL's SELECT modifiers (it reads `SQL_NO_CACHE id` as a column
    // aliased `id`): plan without them and put them back.
    let (stripped, mods) = strip_select_modifiers(body);
    let parsed_text = stripped.as_deref().unwrap_or(body);
    match parse(parsed_text) {
        Ok(mut stmts) => match stmts.len() {
            0 => Err(RouteError::Syntax("Query was empty".to_string())),
            1 => {
                let mut stmt = stmts.remove(0);
                let params = number_placeholders(&mut stmt);
                let lexed = lex(body).iter().filter(|t| t.kind == Kind::Param).count();
                if params != lexed {
                    return Err(RouteError::unsupported(format!(
                        "could not match the statement's {lexed} ? placeholders ({params} parsed)"
                    )));
                }
                let mut plan = plan_statement(&ctx, &mut stmt, parsed_text)?;
                if stripped.is_some() {
                    restore_select_modifiers(&mut plan, parsed_text, body, &mods);
                }
                if let Some(suffix) = suffix {
                    add_suffix(&mut plan, suffix)?;
                }
                Ok(plan)
            }
            _ => Err(RouteError::unsupported(
                "multiple statements in one query are not supported through the gate",
            )),
        },
        Err(e) => passthrough::plan_unparsed(&ctx, sql, &tokens, e),
    }
}

pub(crate) fn parse(sql: &str) -> Result<Vec<Statement>, String> {
    let dialect = MySqlDialect {};
    Parser::new(&dialect)
        .with_options(ParserOptions::new().with_unescape(false))
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| e.to_string())
}

fn split_share_lock<'a>(sql: &'a str, tokens: &[Token<'_>]) -> (&'a str, Option<&'a str>) {
    let words: Vec<&Token<'_>> = tokens.iter().filter(|t| !t.is_sym(";")).collect();
    let n = words.len();
    if n > 4
        && words[n - 4].is_word("lock")
        && words[n - 3].is_word("in")
        && words[n - 2].is_word("share")
        && words[n - 1].is_word("mode")
    {
        let at = words[n - 4].start;
        return (&sql[..at], Some(&sql[at..words[n - 1].end]));
    }
    (sql, None)
}

/// MySQL's SELECT options that sqlparser does not read (`ALL`, `DISTINCT`
/// it does; `DISTINCTROW` is `DISTINCT`).
const SELECT_MODIFIERS: &[&str] = &[
    "high_priority",
    "straight_join",
    "sql_small_result",
    "sql_big_result",
    "sql_buffer_result",
    "sql_cache",
    "sql_no_cache",
    "sql_calc_found_rows",
    "distinctrow",
];

/// The statement without the modifiers right after its leading SELECT
/// (`DISTINCTROW` becomes `DISTINCT`), and the removed ones (upper case,
/// `DISTINCTROW` not among them); `None` when there were none. A modifier
/// word followed by `,`, `.`, `(`, FROM, AS or the end is a column, not a
/// modifier.
fn strip_select_modifiers(sql: &str) -> (Option<String>, Vec<String>) {
    let tokens = lex(sql);
    if !tokens.first().is_some_and(|t| t.is_word("select")) {
        return (None, Vec::new());
    }
    let mut out = String::with_capacity(sql.len());
    let mut last = 0;
    let mut mods = Vec::new();
    for (i, t) in tokens.iter().enumerate().skip(1) {
        if t.is_word("all") || t.is_word("distinct") {
            continue;
        }
        let is_mod = SELECT_MODIFIERS.iter().any(|m| t.is_word(m))
            && tokens.get(i + 1).is_some_and(|n| {
                !(n.is_sym(",")
                    || n.is_sym(".")
                    || n.is_sym("(")
                    || n.is_sym(";")
                    || n.is_word("from")
                    || n.is_word("as"))
            });
        if !is_mod {
            break;
        }
        out.push_str(&sql[last..t.start]);
        if t.is_word("distinctrow") {
            out.push_str("DISTINCT");
        } else {
            mods.push(t.text.to_ascii_uppercase());
        }
        last = t.end;
    }
    if last == 0 {
        return (None, Vec::new());
    }
    out.push_str(&sql[last..]);
    (Some(out), mods)
}

/// Puts the removed SELECT modifiers back into a read route's texts: the
/// client's own text where the plan kept the stripped text unchanged, else
/// right after the leading SELECT. `SQL_CALC_FOUND_ROWS` cannot be answered
/// for several shards: the scatter form refuses it.
fn restore_select_modifiers(plan: &mut Plan, stripped: &str, original: &str, mods: &[String]) {
    let Plan::Route(r) = plan else { return };
    if r.kind != RouteKind::Read {
        return;
    }
    let restore = |t: &mut Template| {
        if *t == Template::new(stripped) {
            *t = Template::new(original);
        } else if !mods.is_empty() {
            t.insert_after_select(&mods.join(" "));
        }
    };
    restore(&mut r.sql);
    let calc = mods.iter().any(|m| m == "SQL_CALC_FOUND_ROWS");
    match &mut r.scatter {
        Some(Ok(_)) if calc => {
            let tables: Vec<String> = passthrough::token_tables(&lex(stripped))
                .into_iter()
                .map(|(_, t)| format!("{}.{t}", r.keyspace))
                .collect();
            r.scatter = Some(Err(RouteError::unsupported(format!(
                "SQL_CALC_FOUND_ROWS over sharded table {} cannot be routed to several shards: FOUND_ROWS() cannot be computed across shards; add a condition on the primary vindex column to reach one shard",
                tables.join(", ")
            ))));
        }
        Some(Ok(s)) => restore(&mut s.sql),
        _ => {}
    }
}

fn add_suffix(plan: &mut Plan, suffix: &str) -> Result<(), RouteError> {
    match plan {
        Plan::Route(r) if r.kind == RouteKind::Read => {
            r.sql.push_clause(suffix);
            if let Some(Ok(s)) = &mut r.scatter {
                s.sql.push_clause(suffix);
            }
            Ok(())
        }
        _ => Err(RouteError::unsupported(format!(
            "{suffix} is only supported at the end of a SELECT"
        ))),
    }
}

/// Renames every `?` to `?<n>` (n in textual order), so that printing a
/// rewritten statement keeps each parameter's number even where the rewrite
/// moved or copied expressions. Returns the number of placeholders.
fn number_placeholders(stmt: &mut Statement) -> usize {
    let mut spans = Vec::new();
    let _ = Visit::visit(&*stmt, &mut PlaceholderSpans(&mut spans));
    spans.sort();
    let index: HashMap<(u64, u64), usize> =
        spans.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let _ = sqlparser::ast::visit_expressions_mut(stmt, |e| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(p) = &v.value
            && p == "?"
        {
            let key = (v.span.start.line, v.span.start.column);
            let n = index.get(&key).copied().unwrap_or(0);
            v.value = Value::Placeholder(format!("?{n}"));
        }
        ControlFlow::<()>::Continue(())
    });
    spans.len()
}

struct PlaceholderSpans<'a>(&'a mut Vec<(u64, u64)>);

impl Visitor for PlaceholderSpans<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::Value(v) = e
            && matches!(&v.value, Value::Placeholder(p) if p == "?")
        {
            self.0.push((v.span.start.line, v.span.start.column));
        }
        ControlFlow::Continue(())
    }
}

fn plan_statement(ctx: &Ctx<'_>, stmt: &mut Statement, text: &str) -> Result<Plan, RouteError> {
    match stmt {
        Statement::Query(q) => select::plan_query(ctx, q, text),
        Statement::Insert(_) => dml::plan_insert(ctx, stmt, text),
        Statement::Update { .. } | Statement::Delete(_) => dml::plan_update_delete(ctx, stmt, text),
        Statement::CreateTable(_)
        | Statement::AlterTable { .. }
        | Statement::Drop { .. }
        | Statement::Truncate { .. }
        | Statement::CreateIndex(_)
        | Statement::CreateView { .. }
        | Statement::RenameTable(_) => dml::plan_ddl(ctx, stmt, text),
        _ => plan_other(ctx, stmt, text),
    }
}

/// Statements the gate does not understand: sent unchanged when all their
/// tables (or, with none, the session keyspace) are in one unsharded
/// keyspace, refused otherwise.
fn plan_other(ctx: &Ctx<'_>, stmt: &mut Statement, text: &str) -> Result<Plan, RouteError> {
    let refs = collect_tables(ctx, stmt)?;
    let ks = match single_keyspace(ctx, &refs)? {
        Some(ks) => Some(ks),
        None => match ctx.session.keyspace {
            Some(k) => Some(ctx.snap.keyspace_or_1049(k)?),
            None => None,
        },
    };
    match ks {
        Some(ks) if !ks.sharded => Ok(Plan::Route(fixed_route(
            ctx,
            ks,
            RouteKind::Write,
            Target::One(ks.shards[0].name.clone()),
            Template::new(text),
        )?)),
        _ => {
            let kind = text
                .split_whitespace()
                .next()
                .unwrap_or("this")
                .to_uppercase();
            Err(RouteError::unsupported(format!(
                "{kind} statements are only passed through to an unsharded keyspace (USE one, or name only its tables)"
            )))
        }
    }
}

/// One table reference as written, with what it resolved to.
#[derive(Clone, Debug)]
pub(crate) struct TableRef {
    pub qualifier: Option<String>,
    pub name: String,
    pub res: Resolved,
}

impl TableRef {
    pub(crate) fn display(&self) -> String {
        match &self.res.keyspace {
            Some(k) => format!("{k}.{}", self.res.table),
            None => format!("{}.{}", self.qualifier.as_deref().unwrap_or(""), self.name),
        }
    }

    /// Whether the text must change for the target: another keyspace in the
    /// qualifier or another table name.
    fn needs_rewrite(&self) -> bool {
        self.res.table != self.name
            || matches!((&self.qualifier, &self.res.keyspace), (Some(q), Some(k)) if q != k)
    }
}

pub(crate) fn split_name(name: &ObjectName) -> Result<(Option<String>, String), RouteError> {
    let idents: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(i.value.clone()),
            ObjectNamePart::Function(_) => Err(RouteError::unsupported(format!(
                "table name {name} is not supported"
            ))),
        })
        .collect::<Result<_, _>>()?;
    match idents.as_slice() {
        [t] => Ok((None, t.clone())),
        [q, t] => Ok((Some(q.clone()), t.clone())),
        _ => Err(RouteError::unsupported(format!(
            "table name {name} has too many parts: use keyspace.table"
        ))),
    }
}

/// Every table the statement names (in FROM, JOIN, subqueries, DML
/// targets), CTE names and `dual` excluded, resolved.
pub(crate) fn collect_tables<V: Visit>(
    ctx: &Ctx<'_>,
    node: &V,
) -> Result<Vec<TableRef>, RouteError> {
    let mut v = Relations::default();
    let _ = node.visit(&mut v);
    let mut out = Vec::new();
    for name in v.names {
        let (q, t) = split_name(&name)?;
        if q.is_none() && (t.eq_ignore_ascii_case("dual") || v.ctes.contains(&t)) {
            continue;
        }
        let res = ctx.snap.resolve(
            ctx.session.keyspace,
            ctx.session.tablet_type,
            q.as_deref(),
            &t,
        )?;
        out.push(TableRef {
            qualifier: q,
            name: t,
            res,
        });
    }
    Ok(out)
}

#[derive(Default)]
struct Relations {
    names: Vec<ObjectName>,
    ctes: BTreeSet<String>,
}

impl Visitor for Relations {
    type Break = ();
    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
        self.names.push(r.clone());
        ControlFlow::Continue(())
    }
    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.clone());
            }
        }
        ControlFlow::Continue(())
    }
}

/// The one keyspace all user tables live in; `None` when the statement names
/// only the server's own schemas (or nothing). Tables in two keyspaces are
/// refused: keyshift does not join across keyspaces.
pub(crate) fn single_keyspace<'s>(
    ctx: &Ctx<'s>,
    refs: &[TableRef],
) -> Result<Option<&'s KeyspaceInfo>, RouteError> {
    let mut found: Option<&TableRef> = None;
    for r in refs {
        let Some(k) = &r.res.keyspace else { continue };
        match found {
            None => found = Some(r),
            Some(f) if f.res.keyspace.as_ref() != Some(k) => {
                return Err(RouteError::unsupported(format!(
                    "cannot route a statement over {} and {}: they live in different keyspaces ({} and {}), and cross-keyspace statements are not supported",
                    f.display(),
                    r.display(),
                    f.res.keyspace.as_deref().unwrap_or(""),
                    k
                )));
            }
            Some(_) => {}
        }
    }
    Ok(found
        .and_then(|r| r.res.keyspace.as_ref())
        .and_then(|k| ctx.snap.keyspace(k)))
}

/// The keyspace for statements without user tables: the session's, else the
/// default one.
pub(crate) fn session_or_default<'s>(ctx: &Ctx<'s>) -> Result<&'s KeyspaceInfo, RouteError> {
    match ctx.session.keyspace {
        Some(k) => ctx.snap.keyspace_or_1049(k),
        None => ctx
            .snap
            .default_keyspace()
            .ok_or_else(|| RouteError::unsupported("no keyspace exists to send this statement to")),
    }
}

pub(crate) fn fixed_route(
    ctx: &Ctx<'_>,
    ks: &KeyspaceInfo,
    kind: RouteKind,
    target: Target,
    sql: Template,
) -> Result<Route, RouteError> {
    let tablet_type = effective_tablet_type(ctx, kind)?;
    Ok(Route {
        keyspace: ks.name.clone(),
        tablet_type,
        kind,
        selector: Selector::Fixed(target),
        sql,
        scatter: None,
    })
}

/// Writes need a primary: refuse them in a `@replica` session, as vtgate
/// does, rather than fail on a read-only server.
pub(crate) fn effective_tablet_type(
    ctx: &Ctx<'_>,
    kind: RouteKind,
) -> Result<TabletType, RouteError> {
    let tt = ctx.session.tablet_type;
    if kind != RouteKind::Read && tt != TabletType::Primary {
        return Err(RouteError::unsupported(format!(
            "writes and DDL need a primary tablet; the session targets @{} (USE keyspace@primary)",
            tt.as_str()
        )));
    }
    Ok(tt)
}

/// The single-shard text: the client's own unless a table reference must
/// change, in which case the statement is re-printed with each table
/// pointing at its target (keyspace qualifier and name).
pub(crate) fn rewritten_text<V: VisitMut + std::fmt::Display>(
    node: &mut V,
    refs: &[TableRef],
    text: &str,
) -> Template {
    if refs.iter().any(TableRef::needs_rewrite) {
        rewrite_tables(node, refs);
        Template::new(&node.to_string())
    } else {
        Template::new(text)
    }
}

/// Points table references (and column qualifiers naming a renamed table)
/// at their targets.
pub(crate) fn rewrite_tables<V: VisitMut>(node: &mut V, refs: &[TableRef]) {
    let map: HashMap<(Option<String>, String), (Option<String>, String)> = refs
        .iter()
        .filter(|r| r.needs_rewrite())
        .map(|r| {
            let q = r.qualifier.as_ref().and(r.res.keyspace.clone());
            (
                (r.qualifier.clone(), r.name.clone()),
                (q, r.res.table.clone()),
            )
        })
        .collect();
    let renamed: HashMap<String, (Option<String>, String)> = refs
        .iter()
        .filter(|r| r.res.table != r.name)
        .map(|r| {
            (
                r.name.clone(),
                (r.res.keyspace.clone(), r.res.table.clone()),
            )
        })
        .collect();
    let mut v = Rewriter { map, renamed };
    let _ = node.visit(&mut v);
}

struct Rewriter {
    map: HashMap<(Option<String>, String), (Option<String>, String)>,
    renamed: HashMap<String, (Option<String>, String)>,
}

impl VisitorMut for Rewriter {
    type Break = ();
    fn post_visit_relation(&mut self, r: &mut ObjectName) -> ControlFlow<()> {
        if let Ok((q, t)) = split_name(r)
            && let Some((nq, nt)) = self.map.get(&(q, t))
        {
            let mut parts = Vec::new();
            if let Some(nq) = nq {
                parts.push(ObjectNamePart::Identifier(
                    sqlparser::ast::Ident::with_quote('`', nq),
                ));
            }
            parts.push(ObjectNamePart::Identifier(
                sqlparser::ast::Ident::with_quote('`', nt),
            ));
            *r = ObjectName(parts);
        }
        ControlFlow::Continue(())
    }
    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(parts) = e {
            let n = parts.len();
            if n >= 2
                && let Some((ks, t)) = self.renamed.get(&parts[n - 2].value)
            {
                parts[n - 2] = sqlparser::ast::Ident::with_quote('`', t);
                if n == 3
                    && let Some(ks) = ks
                {
                    parts[0] = sqlparser::ast::Ident::with_quote('`', ks);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// A literal or parameter as a shard-deciding value; `None` for anything
/// that needs evaluation.
pub(crate) fn slot_of(e: &Expr) -> Option<Slot> {
    match e {
        Expr::Nested(inner) => slot_of(inner),
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => p.strip_prefix('?')?.parse().ok().map(Slot::Param),
            other => literal_datum(other, false).map(Slot::Lit),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => literal_datum(&v.value, true).map(Slot::Lit),
            _ => None,
        },
        _ => None,
    }
}

fn literal_datum(v: &Value, negate: bool) -> Option<Datum> {
    match v {
        Value::Number(n, _) => {
            let s = if negate { format!("-{n}") } else { n.clone() };
            if let Ok(i) = s.parse::<i64>() {
                Some(Datum::Int(i))
            } else if let Ok(u) = s.parse::<u64>() {
                Some(Datum::UInt(u))
            } else if crate::datum::Dec::parse(&s).is_some() {
                Some(Datum::Decimal(s))
            } else {
                s.parse::<f64>().ok().map(Datum::Float)
            }
        }
        _ if negate => None,
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
            Some(Datum::Text(unescape(s).into_bytes()))
        }
        Value::HexStringLiteral(h) => {
            let bytes: Option<Vec<u8>> = (0..h.len())
                .step_by(2)
                .map(|i| h.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
                .collect();
            bytes.map(Datum::Binary)
        }
        Value::Boolean(b) => Some(Datum::Int(i64::from(*b))),
        Value::Null => Some(Datum::Null),
        _ => None,
    }
}

/// MySQL's backslash escapes and doubled quotes, as the server reads a
/// string literal (the parser is told to keep literals raw so that printing
/// them back is exact).
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('0') => out.push('\0'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('b') => out.push('\u{8}'),
                Some('Z') => out.push('\u{1a}'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            },
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '"' if chars.peek() == Some(&'"') => {
                chars.next();
                out.push('"');
            }
            other => out.push(other),
        }
    }
    out
}

/// The placement of a sharded table that can be routed, or why not.
pub(crate) fn routable(r: &TableRef) -> Result<&Placement, RouteError> {
    match &r.res.placement {
        Placement::Unroutable(why) => Err(RouteError::unsupported(format!(
            "cannot route {}: {why}",
            r.display()
        ))),
        p => Ok(p),
    }
}
