//! SELECT: one route for an unsharded keyspace; for a sharded one, the shards
//! that the primary vindex pins, else all of them with a merge.

use crate::error::RouteError;
use crate::merge::{Aggregate, AggregateFn, Aggregation, Column, Merge, OrderKey};
use crate::plan::{
    LocalColumn, LocalValue, Plan, Route, RouteKind, Scatter, Selector, Slot, Target,
};
use crate::planner::{
    Ctx, TableRef, collect_tables, effective_tablet_type, fixed_route, rewrite_tables,
    rewritten_text, routable, session_or_default, single_keyspace, slot_of,
};
use crate::snapshot::{KeyspaceInfo, Placement};
use crate::template::{Bound, Piece, Template};
use sqlparser::ast::{
    BinaryOperator, Distinct, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    Ident, JoinConstraint, JoinOperator, LimitClause, ObjectName, ObjectNamePart, OrderByKind,
    Query, SelectItem, SetExpr, Spanned, TableFactor, Value,
};
use std::ops::ControlFlow;

pub(crate) fn plan_query(ctx: &Ctx<'_>, q: &mut Query, text: &str) -> Result<Plan, RouteError> {
    let refs = collect_tables(ctx, q)?;
    if refs.is_empty() {
        if has_top_level_from(text) {
            // The parser read a FROM clause as something else (MySQL words it
            // does not know, like SQL_CALC_FOUND_ROWS, can become column
            // aliases): trust the tokens instead.
            let tokens = crate::lex::lex(text);
            return crate::passthrough::plan_unparsed(
                ctx,
                text,
                &tokens,
                "the statement's FROM clause could not be read".to_string(),
            );
        }
        return tableless(ctx, q, text);
    }
    let Some(ks) = single_keyspace(ctx, &refs)? else {
        // Only the server's own schemas: any tablet of the session's keyspace.
        let ks = session_or_default(ctx)?;
        return fixed_route(ctx, ks, RouteKind::Read, Target::Any, Template::new(text))
            .map(Plan::Route);
    };
    if !ks.sharded {
        let sql = rewritten_text(q, &refs, text);
        return fixed_route(
            ctx,
            ks,
            RouteKind::Read,
            Target::One(ks.shards[0].name.clone()),
            sql,
        )
        .map(Plan::Route);
    }
    for r in &refs {
        routable(r)?;
    }
    if refs
        .iter()
        .all(|r| matches!(r.res.placement, Placement::Reference { .. }))
    {
        let sql = rewritten_text(q, &refs, text);
        return fixed_route(ctx, ks, RouteKind::Read, Target::Any, sql).map(Plan::Route);
    }
    sharded_select(ctx, ks, q, text, &refs).map(Plan::Route)
}

/// Whether a FROM outside parentheses names something other than `dual`.
fn has_top_level_from(text: &str) -> bool {
    let tokens = crate::lex::lex(text);
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate() {
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
        } else if depth == 0 && t.is_word("from") {
            return !tokens.get(i + 1).is_some_and(|n| n.is_word("dual"));
        }
    }
    false
}

/// `SELECT 1`, `SELECT @@version`, `SELECT DATABASE()`: answered by the gate
/// when every column is something it knows (so they work with no keyspace
/// and cost no round trip), otherwise sent to any tablet of the session's
/// keyspace (`SELECT NOW()`, `SELECT @@sql_mode`, `SELECT @user_var`), where
/// the session's `SET`s have been applied.
fn tableless(ctx: &Ctx<'_>, q: &mut Query, text: &str) -> Result<Plan, RouteError> {
    if let Some(local) = local_select(q, text) {
        return Ok(local);
    }
    let ks = session_or_default(ctx)?;
    fixed_route(ctx, ks, RouteKind::Read, Target::Any, Template::new(text)).map(Plan::Route)
}

fn local_select(q: &Query, text: &str) -> Option<Plan> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    if q.with.is_some()
        || q.order_by.is_some()
        || !q.locks.is_empty()
        || sel.selection.is_some()
        || sel.having.is_some()
        || sel.distinct.is_some()
        || !matches!(&sel.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
    {
        return None;
    }
    let no_rows = match &q.limit_clause {
        None => false,
        Some(LimitClause::LimitOffset {
            limit,
            offset: None,
            ..
        }) => match limit {
            None => false,
            Some(Expr::Value(v)) => matches!(&v.value, Value::Number(n, _) if n == "0"),
            Some(_) => return None,
        },
        Some(_) => return None,
    };
    let mut columns = Vec::new();
    for item in &sel.projection {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
            _ => return None,
        };
        let value = local_value(expr)?;
        let name =
            alias.unwrap_or_else(|| source_text(text, expr).unwrap_or_else(|| expr.to_string()));
        columns.push(LocalColumn { name, value });
    }
    Some(Plan::Local { columns, no_rows })
}

fn local_value(e: &Expr) -> Option<LocalValue> {
    match e {
        Expr::Identifier(i) => match i.value.to_ascii_lowercase().as_str() {
            "@@version" | "@@session.version" | "@@global.version" => Some(LocalValue::Version),
            "@@version_comment" | "@@session.version_comment" | "@@global.version_comment" => {
                Some(LocalValue::VersionComment)
            }
            "@@autocommit" | "@@session.autocommit" => Some(LocalValue::Autocommit),
            "@@socket" | "@@global.socket" => Some(LocalValue::Socket),
            _ => None,
        },
        Expr::Function(f) => {
            let empty = match &f.args {
                FunctionArguments::None => true,
                FunctionArguments::List(l) => l.args.is_empty(),
                FunctionArguments::Subquery(_) => false,
            };
            if !empty || f.over.is_some() {
                return None;
            }
            match f.name.to_string().to_ascii_lowercase().as_str() {
                "database" | "schema" => Some(LocalValue::Database),
                "last_insert_id" => Some(LocalValue::LastInsertId),
                _ => None,
            }
        }
        Expr::Value(_) | Expr::UnaryOp { .. } => match slot_of(e)? {
            Slot::Lit(d) => Some(LocalValue::Literal(d)),
            Slot::Param(_) => None,
        },
        _ => None,
    }
}

/// The expression's text as the client wrote it, which is how MySQL names
/// an unaliased column.
pub(crate) fn source_text(text: &str, e: &Expr) -> Option<String> {
    let span = e.span();
    let start = offset(text, span.start.line, span.start.column)?;
    let mut end = offset(text, span.end.line, span.end.column)?;
    // Spans may stop before a closing parenthesis: extend to balance them.
    let mut depth = 0i32;
    let mut prev_end = start;
    for t in crate::lex::lex(text.get(start..)?) {
        // A function's argument list may be left out of its span.
        let opens_args = t.is_sym("(") && prev_end == end;
        if start + t.start >= end && depth <= 0 && !opens_args {
            break;
        }
        prev_end = start + t.end;
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
        }
        end = end.max(start + t.end);
    }
    (start < end)
        .then(|| text.get(start..end).map(str::to_string))
        .flatten()
}

fn offset(text: &str, line: u64, column: u64) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let mut off = 0;
    for (n, l) in text.split_inclusive('\n').enumerate() {
        if n as u64 + 1 == line {
            let chars = column.checked_sub(1)? as usize;
            return Some(off + l.char_indices().nth(chars).map_or(l.len(), |(i, _)| i));
        }
        off += l.len();
    }
    None
}

/// A table in the top-level FROM of a sharded SELECT.
struct FromTable<'r> {
    /// Alias, else the table name as written: what column qualifiers use.
    handle: String,
    r: &'r TableRef,
}

fn sharded_select(
    ctx: &Ctx<'_>,
    ks: &KeyspaceInfo,
    q: &mut Query,
    text: &str,
    refs: &[TableRef],
) -> Result<Route, RouteError> {
    let names = |rs: &[TableRef]| {
        rs.iter()
            .map(TableRef::display)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(RouteError::unsupported(format!(
            "cannot route a UNION or VALUES over sharded tables ({}): each part would need its own merge",
            names(refs)
        )));
    };
    if q.with.is_some() {
        return Err(RouteError::unsupported(format!(
            "cannot route WITH (common table expressions) over sharded tables ({})",
            names(refs)
        )));
    }
    // The tables of the top-level FROM, and the join conditions.
    let mut from: Vec<FromTable<'_>> = Vec::new();
    let mut join_conds: Vec<&Expr> = Vec::new();
    let mut factors: Vec<&TableFactor> = Vec::new();
    for twj in &sel.from {
        factors.push(&twj.relation);
        for j in &twj.joins {
            factors.push(&j.relation);
            if let Some(JoinConstraint::On(e)) = join_constraint(&j.join_operator) {
                join_conds.push(e);
            }
        }
    }
    let mut cursor = 0;
    for f in factors {
        let TableFactor::Table { name, alias, .. } = f else {
            return Err(RouteError::unsupported(format!(
                "cannot route a derived table or table function next to sharded tables ({})",
                names(refs)
            )));
        };
        let (qual, t) = crate::planner::split_name(name)?;
        // refs are in visiting order; find this one.
        let r = refs[cursor..]
            .iter()
            .position(|r| r.name == t && r.qualifier == qual)
            .map(|p| {
                cursor += p + 1;
                &refs[cursor - 1]
            })
            .ok_or_else(|| RouteError::unsupported(format!("cannot resolve table {name}")))?;
        from.push(FromTable {
            handle: alias.as_ref().map_or(t.clone(), |a| a.name.value.clone()),
            r,
        });
    }
    let is_sharded = |r: &TableRef| matches!(r.res.placement, Placement::Sharded { .. });
    let from_sharded = from.iter().filter(|f| is_sharded(f.r)).count();
    let all_sharded = refs.iter().filter(|r| is_sharded(r)).count();
    if all_sharded > from_sharded {
        let sub: Vec<String> = refs
            .iter()
            .filter(|r| is_sharded(r))
            .map(TableRef::display)
            .collect();
        return Err(RouteError::unsupported(format!(
            "cannot route a subquery over sharded table {}: its rows may live on other shards than the outer query's",
            sub.join(", ")
        )));
    }
    let where_conds: Vec<&Expr> = sel.selection.as_ref().map(conjuncts).unwrap_or_default();
    colocated(&from, where_conds.iter().chain(join_conds.iter()).copied())?;
    let sharded_tables: Vec<&FromTable<'_>> = from.iter().filter(|f| is_sharded(f.r)).collect();
    let Placement::Sharded { vindex, .. } = &sharded_tables[0].r.res.placement else {
        return Err(RouteError::unsupported("no sharded table"));
    };
    let pin = pinning(&sharded_tables, &where_conds);
    let tablet_type = effective_tablet_type(ctx, RouteKind::Read)?;
    let needs_rewrite = refs.iter().any(|r| {
        r.res.table != r.name
            || matches!((&r.qualifier, &r.res.keyspace), (Some(a), Some(b)) if a != b)
    });
    let single = if needs_rewrite {
        let mut copy = q.clone();
        rewrite_tables(&mut copy, refs);
        Template::new(&copy.to_string())
    } else {
        Template::new(text)
    };
    let (selector, scatter) = match pin {
        Some((values, true)) => (
            Selector::Vindex {
                vindex: vindex.clone(),
                values,
                shards: ks.shards.clone(),
            },
            None,
        ),
        Some((values, false)) => (
            Selector::Vindex {
                vindex: vindex.clone(),
                values,
                shards: ks.shards.clone(),
            },
            Some(build_scatter(q, text, refs, needs_rewrite)),
        ),
        None => (
            Selector::Fixed(Target::All),
            Some(Ok(build_scatter(q, text, refs, needs_rewrite)?)),
        ),
    };
    Ok(Route {
        keyspace: ks.name.clone(),
        tablet_type,
        kind: RouteKind::Read,
        selector,
        sql: single,
        scatter,
    })
}

pub(crate) fn join_constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::StraightJoin(c) => Some(c),
        _ => None,
    }
}

/// The AND-ed parts of a condition.
pub(crate) fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut v = conjuncts(left);
            v.extend(conjuncts(right));
            v
        }
        Expr::Nested(inner) => conjuncts(inner),
        other => vec![other],
    }
}

/// `(qualifier, column)` of a column reference.
pub(crate) fn column_ref(e: &Expr) -> Option<(Option<&str>, &str)> {
    match e {
        Expr::Identifier(i) => Some((None, &i.value)),
        Expr::CompoundIdentifier(p) if p.len() >= 2 => {
            Some((Some(&p[p.len() - 2].value), &p[p.len() - 1].value))
        }
        Expr::Nested(inner) => column_ref(inner),
        _ => None,
    }
}

/// Indexes of the sharded tables whose primary vindex column `e` names.
fn vindex_tables(tables: &[&FromTable<'_>], e: &Expr) -> Vec<usize> {
    let Some((qual, col)) = column_ref(e) else {
        return Vec::new();
    };
    tables
        .iter()
        .enumerate()
        .filter(|(_, t)| match &t.r.res.placement {
            Placement::Sharded { column, .. } => {
                column.eq_ignore_ascii_case(col)
                    && qual.is_none_or(|q| q.eq_ignore_ascii_case(&t.handle) || q == t.r.res.table)
            }
            _ => false,
        })
        .map(|(i, _)| i)
        .collect()
}

/// Sharded tables join on one shard only if equal primary vindex values of
/// one vindex function connect them all.
fn colocated<'e>(
    from: &[FromTable<'_>],
    conds: impl Iterator<Item = &'e Expr>,
) -> Result<(), RouteError> {
    let tables: Vec<&FromTable<'_>> = from
        .iter()
        .filter(|f| matches!(f.r.res.placement, Placement::Sharded { .. }))
        .collect();
    if tables.len() < 2 {
        return Ok(());
    }
    let mut parent: Vec<usize> = (0..tables.len()).collect();
    fn root(p: &mut [usize], i: usize) -> usize {
        let mut i = i;
        while p[i] != i {
            i = p[i];
        }
        i
    }
    let identity = |i: usize| match &tables[i].r.res.placement {
        Placement::Sharded { identity, .. } => identity.clone(),
        _ => String::new(),
    };
    for c in conds {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = c
        {
            // Both sides must be qualified when several tables could match.
            let (l, r) = (vindex_tables(&tables, left), vindex_tables(&tables, right));
            if let ([a], [b]) = (l.as_slice(), r.as_slice())
                && a != b
                && identity(*a) == identity(*b)
            {
                let (ra, rb) = (root(&mut parent, *a), root(&mut parent, *b));
                parent[ra] = rb;
            }
        }
    }
    let r0 = root(&mut parent, 0);
    for i in 1..tables.len() {
        if root(&mut parent, i) != r0 {
            let (a, b) = (tables[0], tables[i]);
            let col = |t: &FromTable<'_>| match &t.r.res.placement {
                Placement::Sharded { column, .. } => format!("{}.{column}", t.handle),
                _ => String::new(),
            };
            return Err(RouteError::unsupported(format!(
                "cannot route the join of {} and {}: they are not joined on their primary vindex columns with the same vindex ({} = {}), so matching rows can live on different shards",
                a.r.display(),
                b.r.display(),
                col(a),
                col(b)
            )));
        }
    }
    Ok(())
}

/// The values of `vindex_column = v` / `vindex_column IN (...)` in the WHERE;
/// `true` when a single value pins exactly one shard.
pub(crate) fn pinning_for(
    conds: &[&Expr],
    matches: impl Fn(&Expr) -> bool,
) -> Option<(Vec<Slot>, bool)> {
    let mut in_list = None;
    for c in conds {
        match c {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                if matches(left)
                    && let Some(s) = slot_of(right)
                {
                    return Some((vec![s], true));
                }
                if matches(right)
                    && let Some(s) = slot_of(left)
                {
                    return Some((vec![s], true));
                }
            }
            Expr::InList {
                expr,
                list,
                negated: false,
            } if in_list.is_none() && matches(expr) => {
                let slots: Option<Vec<Slot>> = list.iter().map(slot_of).collect();
                if let Some(s) = slots {
                    in_list = Some((s, false));
                }
            }
            _ => {}
        }
    }
    in_list
}

fn pinning(tables: &[&FromTable<'_>], conds: &[&Expr]) -> Option<(Vec<Slot>, bool)> {
    pinning_for(conds, |e| !vindex_tables(tables, e).is_empty())
}

/// The multi-shard text and merge: hidden columns for ORDER BY / GROUP BY
/// expressions not selected, AVG split into SUM and COUNT, LIMIT pushed down
/// as `offset + count` when no aggregation needs every row.
fn build_scatter(
    q: &Query,
    text: &str,
    refs: &[TableRef],
    rewrite: bool,
) -> Result<Scatter, RouteError> {
    let mut q = q.clone();
    if rewrite {
        rewrite_tables(&mut q, refs);
    }
    let table = refs
        .iter()
        .find(|r| matches!(r.res.placement, Placement::Sharded { .. }))
        .map(TableRef::display)
        .unwrap_or_default();
    let refuse = |what: &str| {
        RouteError::unsupported(format!(
            "cannot merge {what} across the shards of {table}; add a condition on the primary vindex column to reach one shard"
        ))
    };
    let order_exprs: Vec<(Expr, bool)> = match &q.order_by {
        None => Vec::new(),
        Some(ob) => match &ob.kind {
            OrderByKind::Expressions(v) => {
                let mut out = Vec::new();
                for o in v {
                    if o.options.nulls_first.is_some() || o.with_fill.is_some() {
                        return Err(refuse("ORDER BY ... NULLS FIRST/LAST"));
                    }
                    out.push((o.expr.clone(), o.options.asc == Some(false)));
                }
                out
            }
            OrderByKind::All(_) => return Err(refuse("ORDER BY ALL")),
        },
    };
    let (limit, offset) = limit_bounds(&q.limit_clause)
        .ok_or_else(|| refuse("a LIMIT that is neither a number nor a parameter"))?;
    let limit_params = matches!(limit, Some(Bound::Param(_))) || matches!(offset, Bound::Param(_));
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return Err(refuse("this query"));
    };
    if sel.into.is_some() {
        return Err(refuse("SELECT ... INTO"));
    }
    if sel.having.is_some() {
        return Err(refuse("HAVING"));
    }
    let distinct = match &sel.distinct {
        None => false,
        Some(Distinct::Distinct) => true,
        Some(Distinct::On(_)) => return Err(refuse("DISTINCT ON")),
    };
    let group_exprs: Vec<Expr> = match &sel.group_by {
        GroupByExpr::Expressions(g, mods) => {
            if !mods.is_empty() {
                return Err(refuse("GROUP BY ... WITH ROLLUP"));
            }
            g.clone()
        }
        GroupByExpr::All(_) => return Err(refuse("GROUP BY ALL")),
    };
    // Visible items: position known unless a `*` comes before them.
    let mut known: Vec<Option<(Expr, Option<String>)>> = Vec::new();
    let mut wildcard = false;
    for item in &sel.projection {
        match item {
            SelectItem::UnnamedExpr(e) if !wildcard => known.push(Some((e.clone(), None))),
            SelectItem::ExprWithAlias { expr, alias } if !wildcard => {
                known.push(Some((expr.clone(), Some(alias.value.clone()))))
            }
            SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. } => known.push(None),
            _ => {
                wildcard = true;
                known.push(None);
            }
        }
    }
    let visible = sel.projection.len();
    let mut hidden: Vec<Expr> = Vec::new();
    let locate = |e: &Expr, hidden: &mut Vec<Expr>| -> Column {
        if let Expr::Value(v) = e
            && let Value::Number(n, _) = &v.value
            && let Ok(p) = n.parse::<usize>()
            && p >= 1
        {
            return Column::At(p - 1);
        }
        for (i, k) in known.iter().enumerate() {
            if let Some((ke, alias)) = k {
                let alias_hit = matches!((e, alias), (Expr::Identifier(id), Some(a)) if id.value.eq_ignore_ascii_case(a));
                if alias_hit || ke == e {
                    return Column::At(i);
                }
            }
        }
        hidden.push(e.clone());
        Column::FromEnd(usize::MAX - (hidden.len() - 1))
    };
    let group_cols: Vec<Column> = group_exprs.iter().map(|e| locate(e, &mut hidden)).collect();
    let order_cols: Vec<(Column, bool)> = order_exprs
        .iter()
        .map(|(e, d)| (locate(e, &mut hidden), *d))
        .collect();
    // Classify every item (visible then hidden) for aggregation.
    let mut aggregates: Vec<Aggregate> = Vec::new();
    let mut avg_counts: Vec<Expr> = Vec::new();
    let mut any_aggregate = false;
    let mut items: Vec<(Column, Expr)> = Vec::new();
    for (i, item) in sel.projection.iter().enumerate() {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
            items.push((Column::At(i), e.clone()));
        }
    }
    for (h, e) in hidden.iter().enumerate() {
        items.push((Column::FromEnd(usize::MAX - h), e.clone()));
    }
    let mut avg_rewrites: Vec<(usize, Expr)> = Vec::new();
    for (col, e) in &items {
        match aggregate_fn(e).map_err(|w| refuse(&w))? {
            Some(AggFound::Plain(func)) => {
                any_aggregate = true;
                aggregates.push(Aggregate { column: *col, func });
            }
            Some(AggFound::Avg(sum, count)) => {
                any_aggregate = true;
                let Column::At(i) = col else {
                    return Err(refuse("AVG in ORDER BY without selecting it"));
                };
                avg_rewrites.push((*i, *sum));
                avg_counts.push(*count);
                aggregates.push(Aggregate {
                    column: *col,
                    func: AggregateFn::Avg {
                        count: Column::FromEnd(usize::MAX / 2 - (avg_counts.len() - 1)),
                    },
                });
            }
            None => {
                if contains_aggregate(e) {
                    return Err(refuse(&format!("the expression {e} over an aggregate")));
                }
            }
        }
    }
    let aggregating = any_aggregate || !group_exprs.is_empty();
    if aggregating && wildcard {
        return Err(refuse("SELECT * with aggregates"));
    }
    if distinct && !hidden.is_empty() {
        return Err(refuse(
            "ORDER BY or GROUP BY expressions missing from a DISTINCT select list",
        ));
    }
    // Rewrite the shard query: AVG(x) -> SUM(x) AS `AVG(x)`, hidden items,
    // AVG counts, pushed-down LIMIT.
    for (i, sum) in avg_rewrites {
        let name = match &sel.projection[i] {
            SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
            SelectItem::UnnamedExpr(e) => source_text(text, e).unwrap_or_else(|| e.to_string()),
            _ => String::new(),
        };
        sel.projection[i] = SelectItem::ExprWithAlias {
            expr: sum,
            alias: Ident::with_quote('`', name),
        };
    }
    for e in &hidden {
        sel.projection.push(SelectItem::UnnamedExpr(e.clone()));
    }
    for e in &avg_counts {
        sel.projection.push(SelectItem::UnnamedExpr(e.clone()));
    }
    let total_hidden = hidden.len() + avg_counts.len();
    // Hidden columns were numbered provisionally; now that the widths are
    // known, count them from the end of the row.
    let fix = |c: Column| match c {
        Column::FromEnd(k) if k > usize::MAX / 2 => {
            Column::FromEnd(total_hidden - (usize::MAX - k))
        }
        Column::FromEnd(k) => Column::FromEnd(avg_counts.len() - (usize::MAX / 2 - k)),
        at => at,
    };
    let _ = visible;
    for a in &mut aggregates {
        a.column = fix(a.column);
        if let AggregateFn::Avg { count } = &mut a.func {
            *count = fix(*count);
        }
    }
    let group_by: Vec<Column> = group_cols.into_iter().map(fix).collect();
    let order_by: Vec<OrderKey> = order_cols
        .into_iter()
        .map(|(c, d)| OrderKey {
            column: fix(c),
            descending: d,
        })
        .collect();
    // Each shard returns its first `limit + offset` rows; the merge skips
    // `offset` of all of them. With a parameter in either, the sum is made
    // at execute time: the pushed-down LIMIT holds one of the parameters'
    // holes, replaced below by their sum.
    let mut sum_at: Option<(usize, Bound, Bound)> = None;
    if aggregating {
        q.limit_clause = None;
    } else if let Some(l) = limit {
        let pushed = match (l, offset) {
            (Bound::Lit(l), Bound::Lit(o)) => Value::Number(l.saturating_add(o).to_string(), false),
            (Bound::Param(n), o) | (o, Bound::Param(n)) => {
                sum_at = Some((n, l, o));
                Value::Placeholder(format!("?{n}"))
            }
        };
        q.limit_clause = Some(LimitClause::LimitOffset {
            limit: Some(Expr::value(pushed)),
            offset: None,
            limit_by: Vec::new(),
        });
    }
    let lit = |b: Bound| match b {
        Bound::Lit(n) => n,
        // a stand-in that keeps the merge non-trivial until bind
        Bound::Param(_) => u64::MAX,
    };
    let merge = Merge {
        aggregation: aggregating.then_some(Aggregation {
            group_by,
            aggregates,
        }),
        distinct,
        order_by,
        offset: lit(offset),
        limit: limit.map(lit),
        hidden: total_hidden,
    };
    let trivial = merge == Merge::default();
    let mut sql = Template::new(&q.to_string());
    if let Some((n, l, o)) = sum_at {
        sql.replace_param(n, Piece::Sum(l, o));
    }
    Ok(Scatter {
        sql,
        merge: (!trivial).then_some(merge),
        limit: limit_params.then_some((limit, offset)),
    })
}

/// `(limit, offset)` when each is a plain number or a parameter (the
/// planner has numbered parameters `?<n>`).
fn limit_bounds(l: &Option<LimitClause>) -> Option<(Option<Bound>, Bound)> {
    let num = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<u64>().ok().map(Bound::Lit),
            Value::Placeholder(p) => p.strip_prefix('?')?.parse().ok().map(Bound::Param),
            _ => None,
        },
        _ => None,
    };
    match l {
        None => Some((None, Bound::Lit(0))),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return None;
            }
            let lim = match limit {
                None => None,
                Some(e) => Some(num(e)?),
            };
            let off = match offset {
                None => Bound::Lit(0),
                Some(o) => num(&o.value)?,
            };
            Some((lim, off))
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            Some((Some(num(limit)?), num(offset)?))
        }
    }
}

enum AggFound {
    Plain(AggregateFn),
    /// The SUM and COUNT that replace an AVG.
    Avg(Box<Expr>, Box<Expr>),
}

const UNMERGEABLE: &[&str] = &[
    "group_concat",
    "std",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "bit_and",
    "bit_or",
    "bit_xor",
    "json_arrayagg",
    "json_objectagg",
];

fn aggregate_fn(e: &Expr) -> Result<Option<AggFound>, String> {
    let Expr::Function(f) = e else {
        return Ok(None);
    };
    let name = f.name.to_string().to_ascii_lowercase();
    if f.over.is_some() {
        return Err(format!("the window function {e}"));
    }
    if UNMERGEABLE.contains(&name.as_str()) {
        return Err(format!("the aggregate {e}"));
    }
    let distinct = matches!(&f.args, FunctionArguments::List(l) if l.duplicate_treatment == Some(sqlparser::ast::DuplicateTreatment::Distinct));
    let func = match name.as_str() {
        "count" => AggregateFn::Count,
        "sum" => AggregateFn::Sum,
        "min" => AggregateFn::Min,
        "max" => AggregateFn::Max,
        "avg" => {
            if distinct {
                return Err(format!("the aggregate {e}"));
            }
            let mut sum = f.clone();
            sum.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new("SUM"))]);
            let mut count = f.clone();
            count.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new("COUNT"))]);
            return Ok(Some(AggFound::Avg(
                Box::new(Expr::Function(sum)),
                Box::new(Expr::Function(count)),
            )));
        }
        _ => return Ok(None),
    };
    if distinct && matches!(func, AggregateFn::Count | AggregateFn::Sum) {
        return Err(format!("the aggregate {e}"));
    }
    if let FunctionArguments::List(l) = &f.args
        && (l.args.len() != 1
            || !matches!(
                l.args[0],
                FunctionArg::Unnamed(FunctionArgExpr::Expr(_) | FunctionArgExpr::Wildcard)
            ))
    {
        return Err(format!("the aggregate {e}"));
    }
    Ok(Some(AggFound::Plain(func)))
}

fn contains_aggregate(e: &Expr) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(e, |x| {
        if let Expr::Function(f) = x {
            let n = f.name.to_string().to_ascii_lowercase();
            if f.over.is_some()
                || ["count", "sum", "min", "max", "avg"].contains(&n.as_str())
                || UNMERGEABLE.contains(&n.as_str())
            {
                found = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    found
}
