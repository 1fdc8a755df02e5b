//! INSERT, UPDATE, DELETE and DDL.

use crate::datum::Datum;
use crate::error::RouteError;
use crate::plan::{
    InsertPlan, InsertRow, Plan, Route, RouteKind, Scatter, Selector, SequenceRef, Slot, Target,
};
use crate::planner::{
    Ctx, TableRef, collect_tables, effective_tablet_type, fixed_route, rewritten_text, routable,
    single_keyspace, slot_of, split_name,
};
use crate::select::{column_ref, conjuncts, pinning_for};
use crate::snapshot::{KeyspaceInfo, Placement};
use crate::template::{Piece, Template};
use sqlparser::ast::{
    Assignment, AssignmentTarget, Expr, FromTable, ObjectName, OnInsert, SetExpr, Statement,
    TableFactor, TableObject, Visit, Visitor,
};
use std::ops::ControlFlow;

pub(crate) fn plan_insert(
    ctx: &Ctx<'_>,
    stmt: &mut Statement,
    text: &str,
) -> Result<Plan, RouteError> {
    let refs = collect_tables(ctx, stmt)?;
    let Statement::Insert(ins) = &*stmt else {
        return Err(RouteError::unsupported("not an INSERT"));
    };
    let TableObject::TableName(name) = &ins.table else {
        return Err(RouteError::unsupported(
            "INSERT INTO a table function is not supported",
        ));
    };
    let (qual, tname) = split_name(name)?;
    let target = refs
        .iter()
        .find(|r| r.qualifier == qual && r.name == tname)
        .cloned()
        .ok_or_else(|| RouteError::unsupported(format!("cannot resolve table {name}")))?;
    let Some(ks) = single_keyspace(ctx, &refs)? else {
        return Err(RouteError::unsupported(format!(
            "cannot write to {name}: it is a system table"
        )));
    };
    effective_tablet_type(ctx, RouteKind::Write)?;
    if !ks.sharded {
        let sql = rewritten_text(stmt, &refs, text);
        return fixed_route(
            ctx,
            ks,
            RouteKind::Write,
            Target::One(ks.shards[0].name.clone()),
            sql,
        )
        .map(Plan::Route);
    }
    let (column, vindex) = match routable(&target)? {
        Placement::Sharded { column, vindex, .. } => (column.clone(), vindex.clone()),
        Placement::Reference { source } => {
            return to_reference_source(ctx, stmt, text, &target, source, refs.len());
        }
        _ => {
            return Err(RouteError::unsupported(format!(
                "cannot route {}",
                target.display()
            )));
        }
    };
    if refs.len() > 1 {
        return Err(RouteError::unsupported(format!(
            "INSERT ... SELECT into sharded table {} is not supported: the selected rows would have to move between shards",
            target.display()
        )));
    }
    let tdisplay = target.display();
    if ins.returning.is_some() || ins.insert_alias.is_some() || ins.table_alias.is_some() {
        return Err(RouteError::unsupported(format!(
            "INSERT into sharded table {tdisplay} with RETURNING or a row alias is not supported"
        )));
    }
    // Columns and rows, from VALUES or from INSERT ... SET.
    let (mut columns, rows): (Vec<String>, Vec<Vec<Expr>>) = match &ins.source {
        None => (
            ins.assignments
                .iter()
                .map(assignment_column)
                .collect::<Result<_, _>>()?,
            vec![ins.assignments.iter().map(|a| a.value.clone()).collect()],
        ),
        Some(src) => match src.body.as_ref() {
            SetExpr::Values(v) => (
                ins.columns.iter().map(|c| c.to_string()).collect(),
                v.rows.clone(),
            ),
            _ => {
                return Err(RouteError::unsupported(format!(
                    "INSERT ... SELECT into sharded table {tdisplay} is not supported: the selected rows would have to move between shards"
                )));
            }
        },
    };
    let plain = |c: &str| c.trim_matches('`').to_string();
    if columns.is_empty() {
        return Err(RouteError::unsupported(format!(
            "INSERT into sharded table {tdisplay} needs a column list, so that the primary vindex column {column} can be found"
        )));
    }
    let suffix = match &ins.on {
        None => String::new(),
        Some(OnInsert::DuplicateKeyUpdate(assigns)) => {
            for a in assigns {
                if plain(&assignment_column(a)?).eq_ignore_ascii_case(&column) {
                    return Err(change_vindex_error(&column, &tdisplay));
                }
            }
            format!(
                " ON DUPLICATE KEY UPDATE {}",
                assigns
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        Some(_) => return Err(RouteError::unsupported("ON CONFLICT is not MySQL syntax")),
    };
    let def = ks.vschema.tables.get(&target.res.table);
    let auto = def.and_then(|d| d.auto_increment.as_ref());
    let sequence = match auto {
        Some(a) => Some(
            ctx.snap
                .sequence(&a.sequence)
                .map(|(keyspace, table)| SequenceRef { keyspace, table })
                .ok_or_else(|| {
                    RouteError::unsupported(format!(
                        "table {tdisplay}: sequence {} is in no unsharded keyspace",
                        a.sequence
                    ))
                })?,
        ),
        None => None,
    };
    let auto_col = auto.map(|a| a.column.clone());
    let key_is_auto = auto_col
        .as_deref()
        .is_some_and(|a| a.eq_ignore_ascii_case(&column));
    let find = |c: &str| {
        columns
            .iter()
            .position(|x| plain(x).eq_ignore_ascii_case(c))
    };
    let key_idx = find(&column);
    let auto_idx = auto_col.as_deref().and_then(find);
    if key_idx.is_none() && !key_is_auto {
        return Err(RouteError::unsupported(format!(
            "INSERT into sharded table {tdisplay} must give a value for its primary vindex column {column}, which decides the row's shard"
        )));
    }
    let append_auto = auto_col.is_some() && auto_idx.is_none();
    let width = columns.len();
    if let (true, Some(a)) = (append_auto, &auto_col) {
        columns.push(format!("`{a}`"));
    }
    let mut plan_rows = Vec::with_capacity(rows.len());
    for (n, row) in rows.iter().enumerate() {
        if row.len() != width {
            return Err(RouteError::unsupported(format!(
                "Column count doesn't match value count at row {}",
                n + 1
            )));
        }
        let mut pieces = vec![Piece::Text("(".to_string())];
        let mut auto_slot = None;
        for (i, e) in row.iter().enumerate() {
            if i > 0 {
                pieces.push(Piece::Text(", ".to_string()));
            }
            if Some(i) == auto_idx {
                let slot = slot_of(e);
                match &slot {
                    Some(Slot::Lit(Datum::Null | Datum::Int(0))) => pieces.push(Piece::NextId),
                    Some(Slot::Param(p)) => pieces.push(Piece::IdOrParam(*p)),
                    _ => pieces.extend(Template::new(&e.to_string()).pieces),
                }
                auto_slot = Some(slot.unwrap_or(Slot::Lit(Datum::Int(1))));
            } else {
                pieces.extend(Template::new(&e.to_string()).pieces);
            }
        }
        if append_auto {
            pieces.push(Piece::Text(", ".to_string()));
            pieces.push(Piece::NextId);
        }
        pieces.push(Piece::Text(")".to_string()));
        let key = match key_idx {
            None => None,
            Some(i) => Some(slot_of(&row[i]).ok_or_else(|| {
                RouteError::unsupported(format!(
                    "cannot compute the shard of row {} of the insert into {tdisplay}: {column} is given as an expression ({}), not a value",
                    n + 1,
                    row[i]
                ))
            })?),
        };
        plan_rows.push(InsertRow {
            values: Template::from_pieces(merge_text(pieces)),
            key,
            auto: auto_slot,
            has_auto_column: auto_idx.is_some(),
        });
    }
    let quote = |s: &str| format!("`{}`", s.replace('`', "``"));
    let table_text = match &qual {
        Some(_) => format!("{}.{}", quote(&ks.name), quote(&target.res.table)),
        None => quote(&target.res.table),
    };
    let verb = if ins.replace_into {
        "REPLACE"
    } else {
        "INSERT"
    };
    let prio = ins.priority.map(|p| format!("{p} ")).unwrap_or_default();
    let ignore = if ins.ignore { "IGNORE " } else { "" };
    let prefix = format!(
        "{verb} {prio}{ignore}INTO {table_text} ({}) VALUES ",
        columns.join(", ")
    );
    Ok(Plan::Insert(InsertPlan {
        keyspace: ks.name.clone(),
        table: target.res.table.clone(),
        prefix,
        suffix,
        rows: plan_rows,
        vindex,
        vindex_column: column,
        key_is_auto,
        shards: ks.shards.clone(),
        sequence,
    }))
}

fn merge_text(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match (out.last_mut(), p) {
            (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
            (_, p) => out.push(p),
        }
    }
    out
}

fn assignment_column(a: &Assignment) -> Result<String, RouteError> {
    match &a.target {
        AssignmentTarget::ColumnName(n) => {
            Ok(n.0.last().map(|p| p.to_string()).unwrap_or_default())
        }
        AssignmentTarget::Tuple(_) => Err(RouteError::unsupported(
            "tuple assignments are not supported",
        )),
    }
}

fn change_vindex_error(column: &str, table: &str) -> RouteError {
    let table = table.rsplit('.').next().unwrap_or(table);
    RouteError::unsupported(format!(
        "cannot change the primary vindex column {column} of table {table} (it decides the row's shard)"
    ))
}

/// Writes to a reference table go to its source table (in an unsharded
/// keyspace), from where replication copies them to every shard.
fn to_reference_source(
    ctx: &Ctx<'_>,
    stmt: &mut Statement,
    text: &str,
    target: &TableRef,
    source: &Option<(String, String)>,
    nrefs: usize,
) -> Result<Plan, RouteError> {
    let Some((sk, st)) = source else {
        return Err(RouteError::unsupported(format!(
            "cannot write to reference table {}: it has no source table to write to",
            target.display()
        )));
    };
    if nrefs > 1 {
        return Err(RouteError::unsupported(format!(
            "cannot write to reference table {} with other tables in the statement",
            target.display()
        )));
    }
    let res = ctx
        .snap
        .resolve(None, ctx.session.tablet_type, Some(sk), st)?;
    let ks = ctx.snap.keyspace_or_1049(sk)?;
    if ks.sharded {
        return Err(RouteError::unsupported(format!(
            "reference table {}: its source {sk}.{st} must be in an unsharded keyspace",
            target.display()
        )));
    }
    let redirected = TableRef {
        qualifier: Some(target.qualifier.clone().unwrap_or_else(|| sk.clone())),
        name: target.name.clone(),
        res,
    };
    // Always qualify: the backend's default database is the source's.
    let mut r = redirected.clone();
    if target.qualifier.is_none() {
        r.qualifier = None;
    }
    let sql = rewritten_text(stmt, &[r], text);
    fixed_route(
        ctx,
        ks,
        RouteKind::Write,
        Target::One(ks.shards[0].name.clone()),
        sql,
    )
    .map(Plan::Route)
}

pub(crate) fn plan_update_delete(
    ctx: &Ctx<'_>,
    stmt: &mut Statement,
    text: &str,
) -> Result<Plan, RouteError> {
    let refs = collect_tables(ctx, stmt)?;
    let Some(ks) = single_keyspace(ctx, &refs)? else {
        return Err(RouteError::unsupported(
            "cannot write to system tables through the gate",
        ));
    };
    effective_tablet_type(ctx, RouteKind::Write)?;
    if !ks.sharded {
        let sql = rewritten_text(stmt, &refs, text);
        return fixed_route(
            ctx,
            ks,
            RouteKind::Write,
            Target::One(ks.shards[0].name.clone()),
            sql,
        )
        .map(Plan::Route);
    }
    let verb = if matches!(stmt, Statement::Update { .. }) {
        "UPDATE"
    } else {
        "DELETE"
    };
    let (relation, selection, limit, assignments): (
        &TableFactor,
        Option<&Expr>,
        bool,
        &[Assignment],
    ) = match &*stmt {
        Statement::Update {
            table,
            assignments,
            from,
            selection,
            limit,
            ..
        } => {
            if !table.joins.is_empty() || from.is_some() {
                return Err(multi_table(verb, &refs));
            }
            (
                &table.relation,
                selection.as_ref(),
                limit.is_some(),
                assignments.as_slice(),
            )
        }
        Statement::Delete(d) => {
            let from = match &d.from {
                FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f) => f,
            };
            if from.len() != 1
                || !from[0].joins.is_empty()
                || d.using.is_some()
                || d.tables.len() > 1
            {
                return Err(multi_table(verb, &refs));
            }
            (
                &from[0].relation,
                d.selection.as_ref(),
                d.limit.is_some(),
                &[][..],
            )
        }
        _ => return Err(RouteError::unsupported("not an UPDATE or DELETE")),
    };
    let TableFactor::Table { name, alias, .. } = relation else {
        return Err(multi_table(verb, &refs));
    };
    let (qual, tname) = split_name(name)?;
    let target = refs
        .iter()
        .find(|r| r.qualifier == qual && r.name == tname)
        .cloned()
        .ok_or_else(|| RouteError::unsupported(format!("cannot resolve table {name}")))?;
    let (column, vindex) = match routable(&target)? {
        Placement::Sharded { column, vindex, .. } => (column.clone(), vindex.clone()),
        Placement::Reference { source } => {
            return to_reference_source(ctx, stmt, text, &target, source, refs.len());
        }
        _ => {
            return Err(RouteError::unsupported(format!(
                "cannot route {}",
                target.display()
            )));
        }
    };
    if refs
        .iter()
        .filter(|r| !matches!(r.res.placement, Placement::Reference { .. }))
        .count()
        > 1
    {
        return Err(RouteError::unsupported(format!(
            "cannot route {verb} on {} with a subquery over sharded tables: its rows may live on other shards",
            target.display()
        )));
    }
    for a in assignments {
        let c = assignment_column(a)?;
        if c.trim_matches('`').eq_ignore_ascii_case(&column) {
            return Err(change_vindex_error(&column, &target.display()));
        }
    }
    let handle = alias
        .as_ref()
        .map_or(tname.clone(), |a| a.name.value.clone());
    let conds: Vec<&Expr> = selection.map(conjuncts).unwrap_or_default();
    let pin = pinning_for(&conds, |e| {
        column_ref(e).is_some_and(|(q, c)| {
            c.eq_ignore_ascii_case(&column)
                && q.is_none_or(|q| q == handle || q == target.res.table)
        })
    });
    let sql = rewritten_text(stmt, &refs, text);
    let limit_err = || {
        RouteError::unsupported(format!(
            "{verb} with LIMIT on sharded table {} needs a condition {column} = value: across shards the limit cannot be honoured",
            target.display()
        ))
    };
    let scatter = |sql: &Template| {
        if limit {
            Err(limit_err())
        } else {
            Ok(Scatter {
                sql: sql.clone(),
                merge: None,
                limit: None,
            })
        }
    };
    let (selector, scatter) = match pin {
        Some((values, true)) => (
            Selector::Vindex {
                vindex,
                values,
                shards: ks.shards.clone(),
            },
            None,
        ),
        Some((values, false)) => (
            Selector::Vindex {
                vindex,
                values,
                shards: ks.shards.clone(),
            },
            Some(scatter(&sql)),
        ),
        None => (Selector::Fixed(Target::All), Some(Ok(scatter(&sql)?))),
    };
    Ok(Plan::Route(Route {
        keyspace: ks.name.clone(),
        tablet_type: effective_tablet_type(ctx, RouteKind::Write)?,
        kind: RouteKind::Write,
        selector,
        sql,
        scatter,
    }))
}

fn multi_table(verb: &str, refs: &[TableRef]) -> RouteError {
    RouteError::unsupported(format!(
        "multi-table {verb} over sharded tables ({}) is not supported",
        refs.iter()
            .map(TableRef::display)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// DDL goes to every shard of the keyspace named by the qualifier or the
/// session; routing rules and the VSchema are not consulted, since DDL
/// acts on physical tables (which may not be in the VSchema yet).
pub(crate) fn plan_ddl(
    ctx: &Ctx<'_>,
    stmt: &mut Statement,
    text: &str,
) -> Result<Plan, RouteError> {
    struct Names(Vec<ObjectName>);
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
            self.0.push(r.clone());
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(Vec::new());
    let _ = Visit::visit(&*stmt, &mut names);
    let qualifiers = names
        .0
        .iter()
        .map(|n| split_name(n).map(|(q, _)| q))
        .collect::<Result<Vec<_>, _>>()?;
    ddl_route(ctx, qualifiers, text)
}

/// Every shard of the one keyspace DDL names: each table's qualifier, or
/// the session's keyspace. Shared by parsed DDL and DDL the parser cannot
/// read.
pub(crate) fn ddl_route(
    ctx: &Ctx<'_>,
    qualifiers: Vec<Option<String>>,
    text: &str,
) -> Result<Plan, RouteError> {
    let mut keyspace: Option<&KeyspaceInfo> = None;
    for q in qualifiers {
        let k = match q.as_deref().or(ctx.session.keyspace) {
            Some(k) => ctx.snap.keyspace_or_1049(k)?,
            None => return Err(RouteError::NoDatabaseSelected),
        };
        if keyspace.is_some_and(|prev| prev.name != k.name) {
            return Err(RouteError::unsupported(
                "DDL over tables of several keyspaces is not supported",
            ));
        }
        keyspace = Some(k);
    }
    let ks = match keyspace {
        Some(k) => k,
        None => match ctx.session.keyspace {
            Some(k) => ctx.snap.keyspace_or_1049(k)?,
            None => return Err(RouteError::NoDatabaseSelected),
        },
    };
    fixed_route(ctx, ks, RouteKind::Ddl, Target::All, Template::new(text)).map(Plan::Route)
}
