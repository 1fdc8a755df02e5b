//! Planner tests over the demo cluster: `commerce` (unsharded) and `customer`
//! (sharded `-80`, `80-`, hash on customer_id), plus sysbench keyspaces.

use crate::*;
use keyshift_vschema::{
    AutoIncrement, ColumnVindex, KeyspaceVSchema, RoutingRule, RoutingRules, TableDef, VindexDef,
};
use std::collections::BTreeMap;

fn table(kind: &str) -> TableDef {
    TableDef {
        kind: kind.to_string(),
        ..TableDef::default()
    }
}

fn hashed(col: &str) -> TableDef {
    TableDef {
        column_vindexes: vec![ColumnVindex {
            column: col.to_string(),
            columns: vec![],
            name: "hash".to_string(),
        }],
        ..TableDef::default()
    }
}

fn hash_vindexes() -> BTreeMap<String, VindexDef> {
    let mut v = BTreeMap::new();
    v.insert(
        "hash".to_string(),
        VindexDef {
            kind: "hash".to_string(),
            ..VindexDef::default()
        },
    );
    v
}

fn demo_with(rules: RoutingRules) -> Snapshot {
    let mut commerce = KeyspaceVSchema::default();
    for t in ["product", "customer", "corder"] {
        commerce.tables.insert(t.to_string(), table(""));
    }
    commerce
        .tables
        .insert("customer_seq".to_string(), table("sequence"));
    commerce
        .tables
        .insert("corder_seq".to_string(), table("sequence"));
    let mut customer = KeyspaceVSchema {
        sharded: true,
        vindexes: hash_vindexes(),
        ..KeyspaceVSchema::default()
    };
    let mut c = hashed("customer_id");
    c.auto_increment = Some(AutoIncrement {
        column: "customer_id".to_string(),
        sequence: "customer_seq".to_string(),
    });
    customer.tables.insert("customer".to_string(), c);
    let mut o = hashed("customer_id");
    o.auto_increment = Some(AutoIncrement {
        column: "order_id".to_string(),
        sequence: "commerce.corder_seq".to_string(),
    });
    customer.tables.insert("corder".to_string(), o);
    customer.tables.insert(
        "zipcode".to_string(),
        TableDef {
            kind: "reference".to_string(),
            source: "commerce.zipcode".to_string(),
            ..TableDef::default()
        },
    );
    customer.tables.insert("notes".to_string(), {
        let mut t = hashed("note_id");
        t.column_vindexes[0].name = "xx".to_string();
        t
    });
    customer.vindexes.insert(
        "xx".to_string(),
        VindexDef {
            kind: "xxhash".to_string(),
            ..VindexDef::default()
        },
    );
    let mut sbs = KeyspaceVSchema {
        sharded: true,
        vindexes: hash_vindexes(),
        ..KeyspaceVSchema::default()
    };
    sbs.tables.insert("sbtest1".to_string(), hashed("id"));
    Snapshot::build(
        vec![
            KeyspaceSpec {
                name: "commerce".into(),
                sharded: false,
                shards: vec!["0".into()],
                vschema: commerce,
            },
            KeyspaceSpec {
                name: "customer".into(),
                sharded: true,
                shards: vec!["-80".into(), "80-".into()],
                vschema: customer,
            },
            KeyspaceSpec {
                name: "sbsharded".into(),
                sharded: true,
                shards: vec!["-40".into(), "40-80".into(), "80-c0".into(), "c0-".into()],
                vschema: sbs,
            },
            KeyspaceSpec {
                name: "sbplain".into(),
                sharded: false,
                shards: vec!["0".into()],
                vschema: KeyspaceVSchema::default(),
            },
        ],
        rules,
    )
    .expect("demo snapshot")
}

fn demo() -> Snapshot {
    demo_with(RoutingRules::default())
}

fn ctx(ks: Option<&str>) -> SessionCtx<'_> {
    SessionCtx {
        keyspace: ks,
        tablet_type: TabletType::Primary,
        in_transaction: false,
    }
}

fn plan_in(
    snap: &Snapshot,
    ks: Option<&str>,
    sql: &str,
) -> Result<std::sync::Arc<Plan>, RouteError> {
    plan(snap, &ctx(ks), sql)
}

fn route(snap: &Snapshot, ks: Option<&str>, sql: &str, params: &[Datum]) -> BoundRoute {
    let p = plan_in(snap, ks, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    match &*p {
        Plan::Route(r) => r.bind(params).unwrap_or_else(|e| panic!("{sql}: {e}")),
        other => panic!("{sql}: not a route: {other:?}"),
    }
}

fn err(snap: &Snapshot, ks: Option<&str>, sql: &str) -> RouteError {
    match plan_in(snap, ks, sql) {
        Err(e) => e,
        Ok(p) => match &*p {
            Plan::Route(r) => r.bind(&[]).expect_err(sql),
            other => panic!("{sql}: expected an error, got {other:?}"),
        },
    }
}

fn one(s: &str) -> Target {
    Target::One(s.to_string())
}

// ---------- table resolution ----------

#[test]
fn unsharded_keyspace_gets_the_text_unchanged() {
    let s = demo();
    let sql = "select * from product where sku = 'a\\'b' /* hi */";
    let r = route(&s, Some("commerce"), sql, &[]);
    assert_eq!(r.keyspace, "commerce");
    assert_eq!(r.target, one("0"));
    assert_eq!(r.sql, sql);
    assert_eq!(r.merge, None);
    // a table not in the VSchema of an unsharded keyspace still routes
    let r = route(&s, Some("commerce"), "select * from not_listed", &[]);
    assert_eq!(r.keyspace, "commerce");
    let r = route(&s, None, "select * from commerce.not_listed", &[]);
    assert_eq!(r.keyspace, "commerce");
}

#[test]
fn unqualified_without_use() {
    let s = demo();
    // listed in one keyspace only
    assert_eq!(
        route(&s, None, "select * from product", &[]).keyspace,
        "commerce"
    );
    assert_eq!(
        route(&s, None, "select * from sbtest1 where id = 1", &[]).keyspace,
        "sbsharded"
    );
    // listed by the unsharded commerce and the sharded customer (the demo
    // before `workflow create`): the unsharded one, where the rows are
    let r = route(
        &s,
        None,
        "select * from customer where customer_id = 1",
        &[],
    );
    assert_eq!(
        (r.keyspace.as_str(), r.target.clone()),
        ("commerce", one("0"))
    );
    let r = route(
        &s,
        None,
        "insert into corder (order_id, customer_id) values (1, 2)",
        &[],
    );
    assert_eq!(r.keyspace, "commerce");
    // a routing rule still wins over that preference
    let s2 = demo_with(RoutingRules {
        rules: vec![RoutingRule {
            from_table: "customer".into(),
            to_tables: vec!["customer.customer".into()],
        }],
    });
    assert_eq!(
        route(
            &s2,
            None,
            "select * from customer where customer_id = 1",
            &[]
        )
        .keyspace,
        "customer"
    );
    // not listed anywhere, two unsharded keyspaces: unknown
    let e = err(&s, None, "select * from nowhere");
    assert_eq!((e.code(), e.sqlstate()), (1146, "42S02"));
    assert_eq!(e.to_string(), "Table 'nowhere' doesn't exist");
}

/// One table `t` listed by keyspaces `u0..` (unsharded) and `s0..` (sharded).
fn homes_of_t(unsharded: usize, sharded: usize) -> Snapshot {
    let mut specs = Vec::new();
    for i in 0..unsharded {
        let mut vs = KeyspaceVSchema::default();
        vs.tables.insert("t".into(), table(""));
        specs.push(KeyspaceSpec {
            name: format!("u{i}"),
            sharded: false,
            shards: vec!["0".into()],
            vschema: vs,
        });
    }
    for i in 0..sharded {
        let mut vs = KeyspaceVSchema {
            sharded: true,
            vindexes: hash_vindexes(),
            ..KeyspaceVSchema::default()
        };
        vs.tables.insert("t".into(), hashed("id"));
        specs.push(KeyspaceSpec {
            name: format!("s{i}"),
            sharded: true,
            shards: vec!["-80".into(), "80-".into()],
            vschema: vs,
        });
    }
    Snapshot::build(specs, RoutingRules::default()).expect("snapshot")
}

#[test]
fn a_table_listed_twice_goes_to_its_one_unsharded_home_else_is_ambiguous() {
    assert_eq!(
        route(&homes_of_t(1, 2), None, "select * from t", &[]).keyspace,
        "u0"
    );
    for (u, s) in [(2, 0), (2, 1), (0, 2)] {
        let snap = homes_of_t(u, s);
        let e = err(&snap, None, "select * from t");
        assert_eq!(e.code(), 1105, "{u} unsharded, {s} sharded");
        assert!(
            e.to_string()
                .starts_with("ambiguous table reference: t is in keyspaces "),
            "{e}"
        );
        // naming the keyspace always works
        let ks = if u > 0 { "u1" } else { "s1" };
        assert_eq!(route(&snap, Some(ks), "select * from t", &[]).keyspace, ks);
    }
}

#[test]
fn unknown_tables_and_keyspaces() {
    let s = demo();
    let e = err(&s, Some("customer"), "select * from nope");
    assert_eq!(e.code(), 1146);
    assert_eq!(e.to_string(), "Table 'customer.nope' doesn't exist");
    let e = err(&s, None, "select * from nokeyspace.t");
    assert_eq!(
        (e.code(), e.to_string().as_str()),
        (1049, "Unknown database 'nokeyspace'")
    );
    let e = err(&s, Some("ghost"), "select * from t");
    assert_eq!(e.code(), 1049);
}

#[test]
fn routing_rules_move_tables_and_rewrite_names() {
    let rules = RoutingRules {
        rules: vec![
            RoutingRule {
                from_table: "customer.customer".into(),
                to_tables: vec!["commerce.customer".into()],
            },
            RoutingRule {
                from_table: "customer".into(),
                to_tables: vec!["commerce.customer".into()],
            },
            RoutingRule {
                from_table: "customer.customer@replica".into(),
                to_tables: vec!["customer.customer".into()],
            },
            RoutingRule {
                from_table: "commerce.old_product".into(),
                to_tables: vec!["commerce.product".into()],
            },
        ],
    };
    let s = demo_with(rules);
    // qualified with the old keyspace: the qualifier is rewritten
    let r = route(
        &s,
        None,
        "select customer.email from customer.customer where customer_id = 1",
        &[],
    );
    assert_eq!(r.keyspace, "commerce");
    assert_eq!(r.target, one("0"));
    assert!(r.sql.contains("`commerce`.`customer`"), "{}", r.sql);
    assert!(parse_ok(&r.sql));
    // unqualified inside USE customer: rule customer.customer applies, text stays
    let r = route(
        &s,
        Some("customer"),
        "select * from customer where customer_id = 4",
        &[],
    );
    assert_eq!(r.keyspace, "commerce");
    assert_eq!(r.sql, "select * from customer where customer_id = 4");
    // unqualified without USE: the bare rule resolves the ambiguity
    assert_eq!(
        route(&s, None, "select * from customer", &[]).keyspace,
        "commerce"
    );
    // replicas still read the sharded copy
    let replica = SessionCtx {
        keyspace: Some("customer"),
        tablet_type: TabletType::Replica,
        in_transaction: false,
    };
    let p = plan(&s, &replica, "select * from customer where customer_id = 4").expect("plan");
    let Plan::Route(r) = &*p else { panic!() };
    let b = r.bind(&[]).expect("bind");
    assert_eq!(
        (b.keyspace.as_str(), b.target.clone(), b.tablet_type),
        ("customer", one("80-"), TabletType::Replica)
    );
    // renamed table: name and column qualifiers follow
    let r = route(
        &s,
        Some("commerce"),
        "select old_product.sku from old_product where old_product.sku = 'x'",
        &[],
    );
    assert!(
        r.sql.contains("`product`.sku") && r.sql.contains("FROM `product`"),
        "{}",
        r.sql
    );
    assert!(parse_ok(&r.sql));
}

fn parse_ok(sql: &str) -> bool {
    crate::planner::parse(sql).is_ok()
}

// ---------- sharded SELECT ----------

#[test]
fn vindex_equality_picks_the_shard() {
    let s = demo();
    let r = route(
        &s,
        Some("customer"),
        "select * from customer where customer_id = 1",
        &[],
    );
    assert_eq!(r.target, one("-80"));
    assert_eq!(r.sql, "select * from customer where customer_id = 1");
    let r = route(
        &s,
        Some("customer"),
        "select * from customer where 4 = customer_id and email like 'a%'",
        &[],
    );
    assert_eq!(r.target, one("80-"));
    assert_eq!(r.merge, None);
    // string literal holding a number maps like the number, as in Vitess
    let r = route(
        &s,
        Some("customer"),
        "select * from customer where customer_id = '4'",
        &[],
    );
    assert_eq!(r.target, one("80-"));
    // qualified column, aliased table
    let r = route(
        &s,
        Some("customer"),
        "select c.email from customer c where c.customer_id = 1",
        &[],
    );
    assert_eq!(r.target, one("-80"));
}

#[test]
fn in_list_reaches_only_its_shards() {
    let s = demo();
    let r = route(
        &s,
        Some("customer"),
        "select * from customer where customer_id in (1, 4)",
        &[],
    );
    assert_eq!(r.target, Target::Some(vec!["-80".into(), "80-".into()]));
    let r = route(
        &s,
        Some("customer"),
        "select * from customer where customer_id in (1, 1)",
        &[],
    );
    assert_eq!(r.target, one("-80"));
    // NULL never matches: any one shard answers "no rows"
    let r = route(
        &s,
        Some("customer"),
        "select * from customer where customer_id = NULL",
        &[],
    );
    assert!(matches!(r.target, Target::One(_)));
}

#[test]
fn prepared_placeholders_bind_at_execute_time() {
    let s = demo();
    let p = plan_in(
        &s,
        Some("customer"),
        "select email from customer where customer_id = ?",
    )
    .expect("plan");
    assert_eq!(p.param_count(), 1);
    let Plan::Route(r) = &*p else { panic!() };
    let b = r.bind(&[Datum::Int(1)]).expect("bind");
    assert_eq!(
        (b.target, b.sql.as_str()),
        (
            one("-80"),
            "select email from customer where customer_id = 1"
        )
    );
    let b = r.bind(&[Datum::UInt(4)]).expect("bind");
    assert_eq!(b.target, one("80-"));
    let e = r.bind(&[]).expect_err("missing param");
    assert_eq!(e.code(), 1210);
    // the same text planned twice is one cached plan
    let p2 = plan_in(
        &s,
        Some("customer"),
        "select email from customer where customer_id = ?",
    )
    .expect("plan");
    assert!(std::sync::Arc::ptr_eq(&p, &p2));
}

#[test]
fn placeholder_numbers_survive_rewrites() {
    let s = demo();
    let p = plan_in(
        &s,
        Some("customer"),
        "select email from customer where email > ? and customer_id in (?, ?) order by customer_id + ?",
    )
    .expect("plan");
    let Plan::Route(r) = &*p else { panic!() };
    let b = r
        .bind(&[
            Datum::Text(b"m".to_vec()),
            Datum::Int(1),
            Datum::Int(4),
            Datum::Int(7),
        ])
        .expect("bind");
    assert_eq!(b.target, Target::Some(vec!["-80".into(), "80-".into()]));
    assert!(
        b.sql.contains("email > 'm'") && b.sql.contains("IN (1, 4)"),
        "{}",
        b.sql
    );
    assert!(
        b.sql.contains("customer_id + 7, customer_id + 7") || b.sql.contains("customer_id + 7"),
        "{}",
        b.sql
    );
    assert!(parse_ok(&b.sql), "{}", b.sql);
    let m = b.merge.expect("merge");
    assert_eq!(m.hidden, 1);
    assert_eq!(
        m.order_by,
        vec![OrderKey {
            column: Column::FromEnd(1),
            descending: false
        }]
    );
}

#[test]
fn scatter_select_without_merge_needs_no_rewrite() {
    let s = demo();
    let r = route(
        &s,
        Some("customer"),
        "select * from customer where email = 'x'",
        &[],
    );
    assert_eq!(r.target, Target::All);
    assert_eq!(r.merge, None);
    assert!(parse_ok(&r.sql));
}

#[test]
fn scatter_order_by_limit_pushes_offset_plus_count() {
    let s = demo();
    let r = route(
        &s,
        Some("customer"),
        "select customer_id, email from customer order by email desc, 1 limit 5, 10",
        &[],
    );
    assert_eq!(r.target, Target::All);
    assert!(r.sql.ends_with("LIMIT 15"), "{}", r.sql);
    let m = r.merge.expect("merge");
    assert_eq!(
        m.order_by,
        vec![
            OrderKey {
                column: Column::At(1),
                descending: true
            },
            OrderKey {
                column: Column::At(0),
                descending: false
            }
        ]
    );
    assert_eq!((m.offset, m.limit, m.hidden), (5, Some(10), 0));
    let r = route(
        &s,
        Some("customer"),
        "select email from customer order by customer_id limit 3 offset 2",
        &[],
    );
    assert!(
        r.sql.contains("SELECT email, customer_id FROM") && r.sql.ends_with("LIMIT 5"),
        "{}",
        r.sql
    );
    assert_eq!(r.merge.expect("merge").hidden, 1);
    // ORDER BY an alias
    let r = route(
        &s,
        Some("customer"),
        "select email as e from customer order by e",
        &[],
    );
    assert_eq!(r.merge.expect("m").order_by[0].column, Column::At(0));
    // SELECT * with ORDER BY: a hidden column counted from the end
    let r = route(
        &s,
        Some("customer"),
        "select * from customer order by email",
        &[],
    );
    assert!(r.sql.starts_with("SELECT *, email FROM"), "{}", r.sql);
    assert_eq!(r.merge.expect("m").order_by[0].column, Column::FromEnd(1));
}

#[test]
fn scatter_aggregates() {
    let s = demo();
    let r = route(
        &s,
        Some("customer"),
        "select count(*), sum(k), min(email), max(email) from customer",
        &[],
    );
    let m = r.merge.expect("merge");
    let agg = m.aggregation.expect("agg");
    assert!(agg.group_by.is_empty());
    let funcs: Vec<AggregateFn> = agg.aggregates.iter().map(|a| a.func).collect();
    assert_eq!(
        funcs,
        vec![
            AggregateFn::Count,
            AggregateFn::Sum,
            AggregateFn::Min,
            AggregateFn::Max
        ]
    );
    // aggregates take every row: LIMIT applies after the merge
    let r = route(
        &s,
        Some("customer"),
        "select email, count(*) from customer group by email order by 2 desc limit 3",
        &[],
    );
    assert!(!r.sql.contains("LIMIT"), "{}", r.sql);
    let m = r.merge.expect("merge");
    assert_eq!(m.limit, Some(3));
    assert_eq!(m.aggregation.expect("agg").group_by, vec![Column::At(0)]);
    // GROUP BY a column that is not selected: hidden
    let r = route(
        &s,
        Some("customer"),
        "select count(*) from customer group by email",
        &[],
    );
    assert!(
        r.sql.starts_with("SELECT count(*), email FROM"),
        "{}",
        r.sql
    );
    assert_eq!(r.merge.expect("m").hidden, 1);
}

#[test]
fn avg_becomes_sum_and_count() {
    let s = demo();
    let r = route(
        &s,
        Some("customer"),
        "select email, AVG(k) from customer group by email",
        &[],
    );
    assert!(
        r.sql.contains("SUM(k) AS `AVG(k)`") && r.sql.contains("COUNT(k) FROM"),
        "{}",
        r.sql
    );
    let m = r.merge.clone().expect("m");
    assert_eq!(m.hidden, 1);
    let rows = merge(
        vec![
            vec![vec![
                Datum::Text(b"a".to_vec()),
                Datum::Decimal("3".into()),
                Datum::Int(2),
            ]],
            vec![vec![
                Datum::Text(b"a".to_vec()),
                Datum::Decimal("4".into()),
                Datum::Int(1),
            ]],
        ],
        &m,
    );
    assert_eq!(
        rows,
        vec![vec![
            Datum::Text(b"a".to_vec()),
            Datum::Decimal("2.3333".into())
        ]]
    );
}

#[test]
fn distinct_merges_and_pushes_the_limit() {
    let s = demo();
    let r = route(
        &s,
        Some("customer"),
        "select distinct email from customer order by email limit 2",
        &[],
    );
    let m = r.merge.expect("merge");
    assert!(m.distinct);
    assert!(r.sql.ends_with("LIMIT 2"));
}

#[test]
fn unmergeable_scatter_selects_are_refused() {
    let s = demo();
    for sql in [
        "select count(distinct email) from customer",
        "select email, count(*) from customer group by email having count(*) > 1",
        "select sum(k) + 1 from customer",
        "select group_concat(email) from customer",
        "select email from customer union select email from customer",
        "select distinct email from customer order by customer_id",
        "select * from customer where customer_id in (select customer_id from corder)",
        "select email from customer limit 1 + 1",
    ] {
        let e = err(&s, Some("customer"), sql);
        assert_eq!(e.code(), 1105, "{sql}: {e}");
    }
    // the same forms are fine on one shard
    let r = route(
        &s,
        Some("customer"),
        "select count(distinct email) from customer where customer_id = 4",
        &[],
    );
    assert_eq!(r.target, one("80-"));
    // an IN list on one shard too, but not on two
    let p = plan_in(
        &s,
        Some("customer"),
        "select group_concat(email) from customer where customer_id in (?, ?)",
    )
    .expect("plan");
    let Plan::Route(r) = &*p else { panic!() };
    assert_eq!(
        r.bind(&[Datum::Int(1), Datum::Int(1)])
            .expect("one shard")
            .target,
        one("-80")
    );
    assert_eq!(
        r.bind(&[Datum::Int(1), Datum::Int(4)])
            .expect_err("two")
            .code(),
        1105
    );
}

#[test]
fn colocated_joins_route_together() {
    let s = demo();
    let r = route(
        &s,
        Some("customer"),
        "select c.email, o.sku from customer c join corder o on c.customer_id = o.customer_id where c.customer_id = 4",
        &[],
    );
    assert_eq!(r.target, one("80-"));
    let r = route(
        &s,
        Some("customer"),
        "select c.email, o.sku from customer c, corder o where o.customer_id = c.customer_id order by c.email",
        &[],
    );
    assert_eq!(r.target, Target::All);
    assert!(r.merge.is_some());
    // the reference table joins anything
    let r = route(
        &s,
        Some("customer"),
        "select * from customer c join zipcode z on c.zip = z.zip where c.customer_id = 1",
        &[],
    );
    assert_eq!(r.target, one("-80"));
    let r = route(&s, Some("customer"), "select * from zipcode", &[]);
    assert_eq!(r.target, Target::Any);
}

#[test]
fn non_colocated_joins_are_refused_with_reasons() {
    let s = demo();
    let e = err(
        &s,
        Some("customer"),
        "select * from customer c join corder o on c.email = o.sku",
    );
    assert_eq!(e.code(), 1105);
    assert!(
        e.to_string().contains("customer.customer") && e.to_string().contains("customer.corder"),
        "{e}"
    );
    let e = err(
        &s,
        Some("customer"),
        "select * from customer c join notes n on c.customer_id = n.note_id",
    );
    assert!(e.to_string().contains("primary vindex"), "{e}");
    let e = err(
        &s,
        None,
        "select * from commerce.product p join customer.customer c on p.sku = c.email",
    );
    assert!(e.to_string().contains("different keyspaces"), "{e}");
}

#[test]
fn unsharded_joins_and_subqueries_are_one_route() {
    let s = demo();
    let sql = "select * from product p join corder o on p.sku = o.sku where o.customer_id in (select customer_id from customer) union select * from product";
    let r = route(&s, Some("commerce"), sql, &[]);
    assert_eq!(
        (r.keyspace.as_str(), r.target, r.sql.as_str()),
        ("commerce", one("0"), sql)
    );
}

// ---------- DML ----------

#[test]
fn update_and_delete_by_vindex_and_scatter() {
    let s = demo();
    let r = route(
        &s,
        Some("customer"),
        "update customer set email = 'x' where customer_id = 4",
        &[],
    );
    assert_eq!((r.target, r.kind), (one("80-"), RouteKind::Write));
    let r = route(
        &s,
        Some("customer"),
        "delete from customer where customer_id in (1, 4)",
        &[],
    );
    assert_eq!(r.target, Target::Some(vec!["-80".into(), "80-".into()]));
    let r = route(
        &s,
        Some("customer"),
        "delete from customer where email = 'x'",
        &[],
    );
    assert_eq!((r.target, r.merge), (Target::All, None));
    let e = err(
        &s,
        Some("customer"),
        "update customer set customer_id = 5 where customer_id = 4",
    );
    assert_eq!(e.code(), 1105);
    assert_eq!(
        e.to_string(),
        "cannot change the primary vindex column customer_id of table customer (it decides the row's shard)"
    );
    let e = err(
        &s,
        Some("customer"),
        "delete from customer where email = 'x' limit 1",
    );
    assert_eq!(e.code(), 1105);
    assert_eq!(
        route(
            &s,
            Some("customer"),
            "delete from customer where customer_id = 1 limit 1",
            &[]
        )
        .target,
        one("-80")
    );
}

#[test]
fn writes_need_a_primary() {
    let s = demo();
    let replica = SessionCtx {
        keyspace: Some("commerce"),
        tablet_type: TabletType::Replica,
        in_transaction: false,
    };
    let e = plan(&s, &replica, "update product set price = 1").expect_err("replica write");
    assert_eq!(e.code(), 1105);
    assert!(plan(&s, &replica, "select * from product").is_ok());
}

#[test]
fn sharded_insert_splits_rows_by_keyspace_id() {
    let s = demo();
    let p = plan_in(
        &s,
        Some("customer"),
        "insert into customer (customer_id, email) values (1, 'a'), (4, 'b'), (1, 'c')",
    )
    .expect("plan");
    let Plan::Insert(ins) = &*p else {
        panic!("{p:?}")
    };
    let b = ins.bind(&[]).expect("bind");
    assert_eq!(b.ids_needed(), 0);
    let out = b.render(&[]).expect("render");
    assert_eq!(
        out,
        vec![
            ShardInsert {
                shard: "-80".into(),
                sql: "INSERT INTO `customer` (customer_id, email) VALUES (1, 'a'), (1, 'c')".into()
            },
            ShardInsert {
                shard: "80-".into(),
                sql: "INSERT INTO `customer` (customer_id, email) VALUES (4, 'b')".into()
            },
        ]
    );
    for si in &out {
        assert!(parse_ok(&si.sql));
    }
}

#[test]
fn insert_takes_missing_ids_from_the_sequence() {
    let s = demo();
    let p = plan_in(
        &s,
        Some("customer"),
        "insert into customer (email) values ('a'), ('b')",
    )
    .expect("plan");
    let Plan::Insert(ins) = &*p else { panic!() };
    let b = ins.bind(&[]).expect("bind");
    assert_eq!(b.ids_needed(), 2);
    assert_eq!(
        b.sequence(),
        Some(&SequenceRef {
            keyspace: "commerce".into(),
            table: "customer_seq".into()
        })
    );
    let out = b.render(&[1, 4]).expect("render");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].shard, "-80");
    assert_eq!(
        out[0].sql,
        "INSERT INTO `customer` (email, `customer_id`) VALUES ('a', 1)"
    );
    assert_eq!(
        out[1].sql,
        "INSERT INTO `customer` (email, `customer_id`) VALUES ('b', 4)"
    );
    assert!(b.render(&[1]).is_err());
    // NULL and 0 in the column ask for an id; a value is kept
    let p = plan_in(
        &s,
        Some("customer"),
        "insert into customer (customer_id, email) values (null, 'a'), (4, 'b'), (0, 'c')",
    )
    .expect("plan");
    let Plan::Insert(ins) = &*p else { panic!() };
    let b = ins.bind(&[]).expect("bind");
    assert_eq!(b.ids_needed(), 2);
    let out = b.render(&[100, 101]).expect("render");
    let all: String = out
        .iter()
        .map(|o| o.sql.clone())
        .collect::<Vec<_>>()
        .join(" | ");
    assert!(
        all.contains("(100, 'a')") && all.contains("(4, 'b')") && all.contains("(101, 'c')"),
        "{all}"
    );
    // a prepared insert with a NULL id parameter
    let p = plan_in(
        &s,
        Some("customer"),
        "insert into customer (customer_id, email) values (?, ?)",
    )
    .expect("plan");
    let Plan::Insert(ins) = &*p else { panic!() };
    let b = ins
        .bind(&[Datum::Null, Datum::Text(b"z".to_vec())])
        .expect("bind");
    assert_eq!(b.ids_needed(), 1);
    assert_eq!(
        b.render(&[4]).expect("r")[0],
        ShardInsert {
            shard: "80-".into(),
            sql: "INSERT INTO `customer` (customer_id, email) VALUES (4, 'z')".into()
        }
    );
    let b = ins
        .bind(&[Datum::Int(1), Datum::Text(b"z".to_vec())])
        .expect("bind");
    assert_eq!(b.ids_needed(), 0);
    assert_eq!(b.render(&[]).expect("r")[0].shard, "-80");
}

#[test]
fn insert_auto_increment_not_on_the_vindex_column() {
    let s = demo();
    let p = plan_in(&s, Some("customer"), "insert into corder (customer_id, sku) values (4, 'x') on duplicate key update sku = values(sku)").expect("plan");
    let Plan::Insert(ins) = &*p else { panic!() };
    let b = ins.bind(&[]).expect("bind");
    assert_eq!(b.sequence().map(|s| s.table.as_str()), Some("corder_seq"));
    let out = b.render(&[77]).expect("render");
    assert_eq!(out[0].shard, "80-");
    assert_eq!(
        out[0].sql,
        "INSERT INTO `corder` (customer_id, sku, `order_id`) VALUES (4, 'x', 77) ON DUPLICATE KEY UPDATE sku = values(sku)"
    );
}

#[test]
fn insert_refusals() {
    let s = demo();
    let e = err(
        &s,
        Some("customer"),
        "insert into corder (sku) values ('x')",
    );
    assert!(e.to_string().contains("customer_id"), "{e}");
    let e = err(
        &s,
        Some("customer"),
        "insert into customer (customer_id) values (1) on duplicate key update customer_id = 2",
    );
    assert!(
        e.to_string()
            .starts_with("cannot change the primary vindex column customer_id"),
        "{e}"
    );
    let e = err(
        &s,
        Some("customer"),
        "insert into customer (customer_id, email) select customer_id, email from corder",
    );
    assert_eq!(e.code(), 1105);
    let e = err(
        &s,
        Some("customer"),
        "insert into customer (customer_id) values (1 + 1)",
    );
    assert_eq!(e.code(), 1105);
    let e = err(&s, None, "insert into customer.customer values (1, 'a')");
    assert!(e.to_string().contains("column list"), "{e}");
    // unsharded INSERT ... SELECT is fine
    let r = route(
        &s,
        Some("commerce"),
        "insert into product (sku) select sku from corder",
        &[],
    );
    assert_eq!(r.keyspace, "commerce");
}

#[test]
fn reference_table_writes_go_to_the_source() {
    let s = demo();
    let r = route(
        &s,
        Some("customer"),
        "update zipcode set city = 'x' where zip = '1'",
        &[],
    );
    assert_eq!((r.keyspace.as_str(), r.target), ("commerce", one("0")));
}

// ---------- session statements ----------

#[test]
fn session_statements() {
    let s = demo();
    let p = |sql: &str| plan_in(&s, None, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert!(
        matches!(&*p("use customer"), Plan::Use { keyspace, tablet_type: TabletType::Primary } if keyspace == "customer")
    );
    assert!(matches!(
        &*p("USE `customer@replica`"),
        Plan::Use {
            tablet_type: TabletType::Replica,
            ..
        }
    ));
    assert!(matches!(
        &*p("use customer@rdonly"),
        Plan::Use {
            tablet_type: TabletType::Rdonly,
            ..
        }
    ));
    assert_eq!(err(&s, None, "use nope").code(), 1049);
    assert!(matches!(&*p("begin"), Plan::Begin { .. }));
    assert!(
        matches!(&*p("START TRANSACTION WITH CONSISTENT SNAPSHOT"), Plan::Begin { sql } if sql == "START TRANSACTION WITH CONSISTENT SNAPSHOT")
    );
    assert!(matches!(&*p("commit"), Plan::Commit));
    assert!(matches!(&*p("ROLLBACK WORK"), Plan::Rollback));
    assert!(matches!(
        &*p("set autocommit=0"),
        Plan::SetAutocommit(false)
    ));
    assert!(matches!(
        &*p("SET @@session.autocommit = ON"),
        Plan::SetAutocommit(true)
    ));
    assert!(
        matches!(&*p("SET NAMES utf8mb4 COLLATE utf8mb4_general_ci"), Plan::SetSession { charset: Some(c), .. } if c == "utf8mb4")
    );
    for sql in [
        "SET SESSION sql_mode = 'STRICT_ALL_TABLES'",
        "SET @a := 1",
        "set @@session.wait_timeout=10",
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
    ] {
        match &*p(sql) {
            Plan::SetSession {
                sql: kept,
                charset: None,
                autocommit: None,
            } => assert_eq!(kept, sql),
            other => panic!("{sql}: {other:?}"),
        }
    }
    assert_eq!(
        err(&s, None, "SET GLOBAL max_connections = 10").code(),
        1105
    );
    // autocommit among other variables (what drivers send at connect): the
    // gate keeps autocommit, the backends get the rest as written
    for (sql, rest, on) in [
        (
            "set autocommit = 1, sql_mode = ''",
            "SET sql_mode = ''",
            true,
        ),
        (
            "SET sql_mode=concat(@@sql_mode, ',STRICT_TRANS_TABLES'), @@session.autocommit=OFF, NAMES utf8mb4",
            "SET sql_mode=concat(@@sql_mode, ',STRICT_TRANS_TABLES'), NAMES utf8mb4",
            false,
        ),
    ] {
        match &*p(sql) {
            Plan::SetSession {
                sql: kept,
                autocommit: Some(a),
                charset,
            } => {
                assert_eq!((kept.as_str(), *a), (rest, on), "{sql}");
                assert_eq!(charset.is_some(), sql.contains("NAMES"), "{sql}");
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    assert_eq!(
        err(&s, None, "set autocommit = 2, sql_mode = ''").code(),
        1105
    );
    assert_eq!(err(&s, None, "savepoint a").code(), 1105);
}

#[test]
fn tableless_selects() {
    let s = demo();
    let p = plan_in(&s, None, "select @@version_comment limit 1").expect("plan");
    let Plan::Local { columns, no_rows } = &*p else {
        panic!("{p:?}")
    };
    assert_eq!(
        columns,
        &vec![LocalColumn {
            name: "@@version_comment".into(),
            value: LocalValue::VersionComment
        }]
    );
    assert!(!no_rows);
    let p = plan_in(
        &s,
        None,
        "SELECT DATABASE(), last_insert_id() AS id, 1, 'x', @@version",
    )
    .expect("plan");
    let Plan::Local { columns, .. } = &*p else {
        panic!("{p:?}")
    };
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["DATABASE()", "id", "1", "'x'", "@@version"]);
    assert_eq!(columns[2].value, LocalValue::Literal(Datum::Int(1)));
    // never a tablet's socket: drivers would reconnect there, around the gate
    let p = plan_in(&s, Some("customer"), "SELECT @@socket").expect("plan");
    let Plan::Local { columns, .. } = &*p else {
        panic!("{p:?}")
    };
    assert_eq!(columns[0].value, LocalValue::Socket);
    // what the gate cannot answer goes to a tablet of the session keyspace
    let r = route(&s, Some("customer"), "select now(), @@sql_mode", &[]);
    assert_eq!((r.keyspace.as_str(), r.target), ("customer", Target::Any));
    let r = route(&s, None, "select @a", &[]);
    assert_eq!(r.keyspace, "commerce");
}

#[test]
fn show_statements() {
    let s = demo();
    assert!(matches!(
        &*plan_in(&s, None, "show databases").expect("p"),
        Plan::ShowDatabases { like: None }
    ));
    assert!(
        matches!(&*plan_in(&s, None, "SHOW DATABASES LIKE 'c%'").expect("p"), Plan::ShowDatabases { like: Some(l) } if l == "c%")
    );
    let r = route(&s, Some("customer"), "show full tables", &[]);
    assert_eq!(
        (r.keyspace.as_str(), r.target, r.sql.as_str()),
        ("customer", Target::Any, "show full tables")
    );
    assert_eq!(
        route(&s, None, "show tables from commerce", &[]).keyspace,
        "commerce"
    );
    assert_eq!(err(&s, None, "show tables").code(), 1046);
    assert!(matches!(
        &*plan_in(&s, None, "show warnings").expect("p"),
        Plan::ShowWarnings { .. }
    ));
    let r = route(&s, None, "show variables like 'max%'", &[]);
    assert_eq!(r.target, Target::Any);
    let r = route(&s, Some("customer"), "show create table corder", &[]);
    assert_eq!(
        (r.keyspace.as_str(), r.sql.as_str()),
        ("customer", "show create table corder")
    );
    let r = route(&s, Some("customer"), "describe customer", &[]);
    assert_eq!(r.keyspace, "customer");
    let r = route(&s, None, "show columns from product", &[]);
    assert_eq!(r.keyspace, "commerce");
    assert_eq!(
        err(&s, Some("customer"), "show columns from nope").code(),
        1146
    );
}

#[test]
fn show_follows_routing_rules() {
    let s = demo_with(RoutingRules {
        rules: vec![RoutingRule {
            from_table: "customer.customer".into(),
            to_tables: vec!["commerce.customer".into()],
        }],
    });
    let r = route(&s, None, "show create table customer.customer", &[]);
    assert_eq!(
        (r.keyspace.as_str(), r.sql.as_str()),
        ("commerce", "show create table `commerce`.`customer`")
    );
    let r = route(&s, None, "show columns from customer from customer", &[]);
    assert_eq!(
        (r.keyspace.as_str(), r.sql.as_str()),
        ("commerce", "show columns from `customer` from `commerce`")
    );
}

// ---------- what the parser cannot read ----------

#[test]
fn unparseable_statements_pass_through_when_unambiguous() {
    let s = demo();
    let sql = "select * from product where sku = 'a' lock in share mode";
    let r = route(&s, Some("commerce"), sql, &[]);
    assert_eq!(r.sql, sql);
    // trailing LOCK IN SHARE MODE on a sharded table: planned and put back
    let r = route(
        &s,
        Some("customer"),
        "select * from customer where customer_id = 4 lock in share mode",
        &[],
    );
    assert_eq!(r.target, one("80-"));
    assert!(r.sql.ends_with("lock in share mode"));
    // parser gaps in an unsharded keyspace go through as written
    let sql = "select sql_calc_found_rows * from product use index (primary) where sku = 'x'";
    assert_eq!(route(&s, Some("commerce"), sql, &[]).sql, sql);
    // ... and on a sharded table only with a vindex equality
    let sql = "select sql_calc_found_rows * from customer where customer_id = 4";
    let r = route(&s, Some("customer"), sql, &[]);
    assert_eq!((r.target, r.sql.as_str()), (one("80-"), sql));
    let e = err(
        &s,
        Some("customer"),
        "select sql_calc_found_rows * from customer where email = 'x'",
    );
    assert_eq!(e.code(), 1105);
    assert!(e.to_string().contains("SQL_CALC_FOUND_ROWS"), "{e}");
    // a prepared statement the parser cannot read still binds its parameter
    let p = plan_in(
        &s,
        Some("customer"),
        "select sql_calc_found_rows * from customer where email = ? and customer_id = ?",
    )
    .expect("plan");
    let Plan::Route(r) = &*p else { panic!() };
    let b = r
        .bind(&[Datum::Text(b"e".to_vec()), Datum::Int(1)])
        .expect("bind");
    assert_eq!(
        (b.target, b.sql.as_str()),
        (
            one("-80"),
            "select sql_calc_found_rows * from customer where email = 'e' and customer_id = 1"
        )
    );
}

#[test]
fn malformed_sql_is_1064_unless_the_backend_can_tell() {
    let s = demo();
    let e = err(&s, Some("customer"), "selec * frm customer");
    assert_eq!((e.code(), e.sqlstate()), (1064, "42000"));
    let e = err(&s, None, "select from where");
    assert_eq!(e.code(), 1064);
    // in an unsharded session, the backend reports its own syntax error
    let r = route(&s, Some("commerce"), "selec * frm product", &[]);
    assert_eq!(r.sql, "selec * frm product");
    assert_eq!(
        err(&s, None, "").to_string(),
        "You have an error in your SQL syntax: Query was empty"
    );
    assert_eq!(err(&s, None, "select 1; select 2").code(), 1105);
}

#[test]
fn ddl_goes_to_every_shard() {
    let s = demo();
    // DDL the parser does not read, as dumps write it
    for (ks, sql) in [
        (
            Some("customer"),
            "/*!40000 ALTER TABLE `customer` DISABLE KEYS */",
        ),
        (None, "ALTER TABLE customer.corder ENABLE KEYS"),
    ] {
        let r = route(&s, ks, sql, &[]);
        assert_eq!(
            (r.keyspace.as_str(), r.target, r.kind),
            ("customer", Target::All, RouteKind::Ddl),
            "{sql}"
        );
    }
    assert_eq!(
        err(&s, None, "ALTER TABLE corder DISABLE KEYS").code(),
        1046
    );
    let r = route(
        &s,
        Some("customer"),
        "create table t (id bigint primary key)",
        &[],
    );
    assert_eq!((r.target, r.kind), (Target::All, RouteKind::Ddl));
    let r = route(
        &s,
        None,
        "alter table commerce.product add column x int",
        &[],
    );
    assert_eq!(r.keyspace, "commerce");
    assert_eq!(err(&s, None, "create table t (id int)").code(), 1046);
}

// ---------- sysbench ----------

const SYSBENCH: &[&str] = &[
    "SELECT c FROM sbtest1 WHERE id=?",
    "SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ?",
    "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN ? AND ?",
    "SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c",
    "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c",
    "UPDATE sbtest1 SET k=k+1 WHERE id=?",
    "UPDATE sbtest1 SET c=? WHERE id=?",
    "DELETE FROM sbtest1 WHERE id=?",
    "INSERT INTO sbtest1 (id, k, c, pad) VALUES (?, ?, ?, ?)",
    "BEGIN",
    "COMMIT",
];

#[test]
fn sysbench_plans_sharded_and_unsharded() {
    let s = demo();
    for ks in ["sbsharded", "sbplain"] {
        for sql in SYSBENCH {
            let p = plan_in(&s, Some(ks), sql).unwrap_or_else(|e| panic!("{ks}: {sql}: {e}"));
            let params: Vec<Datum> = (0..p.param_count())
                .map(|i| Datum::Int(i as i64 + 1))
                .collect();
            match &*p {
                Plan::Route(r) => {
                    let b = r
                        .bind(&params)
                        .unwrap_or_else(|e| panic!("{ks}: {sql}: {e}"));
                    assert!(parse_ok(&b.sql), "{}", b.sql);
                    if ks == "sbplain" {
                        assert_eq!(b.target, one("0"));
                    }
                }
                Plan::Insert(i) => {
                    let out = i.bind(&params).and_then(|b| b.render(&[])).expect("insert");
                    assert_eq!(out.len(), 1);
                }
                Plan::Begin { .. } | Plan::Commit => {}
                other => panic!("{sql}: {other:?}"),
            }
        }
    }
    // point select on the sharded table: one shard
    let r = route(&s, Some("sbsharded"), SYSBENCH[0], &[Datum::Int(1)]);
    assert_eq!(r.target, one("-40"));
    let r = route(
        &s,
        Some("sbsharded"),
        SYSBENCH[2],
        &[Datum::Int(1), Datum::Int(100)],
    );
    assert_eq!(r.target, Target::All);
    assert!(r.merge.expect("sum").aggregation.is_some());
    let r = route(
        &s,
        Some("sbsharded"),
        SYSBENCH[4],
        &[Datum::Int(1), Datum::Int(100)],
    );
    let m = r.merge.expect("distinct");
    assert!(m.distinct && m.order_by.len() == 1);
}

#[test]
fn hash_shard_choice_matches_vitess() {
    let s = demo();
    // hash(1) = 166b40b44aba4bd6 (-40 of four), hash(4) = d2fd8867d50d2dfe (c0-)
    assert_eq!(
        route(
            &s,
            Some("sbsharded"),
            "select c from sbtest1 where id = 1",
            &[]
        )
        .target,
        one("-40")
    );
    assert_eq!(
        route(
            &s,
            Some("sbsharded"),
            "select c from sbtest1 where id = 4",
            &[]
        )
        .target,
        one("c0-")
    );
}

// ---------- robustness ----------

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const PIECES: &[&str] = &[
        "select",
        "insert",
        "update",
        "delete",
        "from",
        "where",
        "into",
        "values",
        "set",
        "customer",
        "corder",
        "product",
        "customer.customer",
        "commerce.product",
        "sbtest1",
        "customer_id",
        "id",
        "=",
        "(",
        ")",
        ",",
        "?",
        "1",
        "4",
        "'x'",
        "and",
        "or",
        "in",
        "order by",
        "group by",
        "limit",
        "count(*)",
        "sum(k)",
        "avg(k)",
        "*",
        "join",
        "on",
        "lock in share mode",
        ":=",
        "@a",
        "@@version",
        "use",
        "show",
        "tables",
        "begin",
        "commit",
        "`",
        "'",
        "\"",
        "/*",
        "--",
        ";",
        "distinct",
        "union",
        "having",
        "null",
        "-",
        "+",
        "x",
        "c.customer_id",
        "as",
        "c",
        "dual",
        "explain",
        "describe",
    ];

    fn check(snap: &Snapshot, ks: Option<&str>, sql: &str) {
        if let Ok(p) = plan(snap, &ctx(ks), sql) {
            let params: Vec<Datum> = (0..p.param_count()).map(|i| Datum::Int(i as i64)).collect();
            match &*p {
                Plan::Route(r) => {
                    if let Ok(b) = r.bind(&params) {
                        // what the planner re-printed must parse again
                        if b.sql != sql && parse_ok(sql) {
                            assert!(parse_ok(&b.sql), "{sql:?} -> {:?}", b.sql);
                        }
                    }
                }
                Plan::Insert(i) => {
                    if let Ok(b) = i.bind(&params) {
                        let ids: Vec<i64> = (0..b.ids_needed() as i64).collect();
                        let _ = b.render(&ids);
                    }
                }
                _ => {}
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]
        #[test]
        fn never_panics_on_token_soup(idx in proptest::collection::vec(0..PIECES.len(), 0..14), ks in 0..3usize) {
            let s = demo();
            let sql = idx.iter().map(|&i| PIECES[i]).collect::<Vec<_>>().join(" ");
            let ks = [None, Some("customer"), Some("commerce")][ks];
            check(&s, ks, &sql);
        }

        #[test]
        fn never_panics_on_random_text(sql in "\\PC{0,60}") {
            let s = demo();
            check(&s, Some("customer"), &sql);
        }
    }
}

// ---------- SELECT modifiers ----------

#[test]
fn select_modifiers_survive_scatter_rewrites() {
    let s = demo();
    for m in [
        "SQL_NO_CACHE",
        "SQL_CACHE",
        "HIGH_PRIORITY",
        "SQL_BUFFER_RESULT",
        "SQL_SMALL_RESULT",
        "SQL_BIG_RESULT",
        "STRAIGHT_JOIN",
    ] {
        let sql = format!("select {m} customer_id from customer order by customer_id limit 3");
        let r = route(&s, Some("customer"), &sql, &[]);
        assert_eq!(r.target, Target::All, "{sql}");
        assert!(
            r.sql.starts_with(&format!("SELECT {m} customer_id FROM")),
            "{sql}: {}",
            r.sql
        );
        let m2 = r.merge.expect("merge");
        assert_eq!(m2.limit, Some(3));
        assert_eq!(m2.hidden, 0, "{sql}: the modifier is no column");
        // One shard: the client's text, byte for byte.
        let sql = format!("select {m} email from customer where customer_id = 1");
        let r = route(&s, Some("customer"), &sql, &[]);
        assert_eq!(r.target, one("-80"));
        assert_eq!(r.sql, sql);
    }
    // Several modifiers, mixed with DISTINCT.
    let r = route(
        &s,
        Some("customer"),
        "select distinct sql_no_cache high_priority email from customer order by email",
        &[],
    );
    assert!(r.merge.expect("merge").distinct);
    assert!(
        r.sql
            .starts_with("SELECT SQL_NO_CACHE HIGH_PRIORITY DISTINCT email FROM"),
        "{}",
        r.sql
    );
    // DISTINCTROW is DISTINCT.
    let r = route(
        &s,
        Some("customer"),
        "select distinctrow email from customer",
        &[],
    );
    assert!(r.merge.expect("merge").distinct);
    assert!(r.sql.starts_with("SELECT DISTINCT email"), "{}", r.sql);
    // STRAIGHT_JOIN before a qualified column of a co-located join.
    let r = route(
        &s,
        Some("customer"),
        "select straight_join c.email from customer c join corder o on c.customer_id = o.customer_id order by c.email",
        &[],
    );
    assert_eq!(r.target, Target::All);
    assert!(
        r.sql.starts_with("SELECT STRAIGHT_JOIN c.email"),
        "{}",
        r.sql
    );
    // Prepared: placeholders keep their numbers.
    let r = route(
        &s,
        Some("customer"),
        "select sql_no_cache email from customer where customer_id in (?, ?) order by email",
        &[Datum::Int(1), Datum::Int(4)],
    );
    assert_eq!(r.target, Target::Some(vec!["-80".into(), "80-".into()]));
    assert!(r.sql.starts_with("SELECT SQL_NO_CACHE email"), "{}", r.sql);
    assert!(r.sql.contains("IN (1, 4)"), "{}", r.sql);
    // A column that happens to be named like a modifier stays a column.
    let r = route(&s, Some("commerce"), "select sql_cache from product", &[]);
    assert_eq!(r.sql, "select sql_cache from product");
}

#[test]
fn sql_calc_found_rows_needs_one_shard() {
    let s = demo();
    let e = err(
        &s,
        Some("customer"),
        "select sql_calc_found_rows email from customer order by email limit 2",
    );
    assert_eq!(e.code(), 1105);
    assert!(e.to_string().contains("FOUND_ROWS()"), "{e}");
    assert!(e.to_string().contains("customer.customer"), "{e}");
    let sql = "select sql_calc_found_rows email from customer where customer_id = 1 limit 2";
    let r = route(&s, Some("customer"), sql, &[]);
    assert_eq!(r.sql, sql);
    let sql = "select sql_calc_found_rows * from product limit 2";
    assert_eq!(route(&s, Some("commerce"), sql, &[]).sql, sql);
}

// ---------- UPDATE ... ORDER BY / LIMIT ----------

#[test]
fn update_with_order_by_or_limit() {
    let s = demo();
    // The parser cannot read UPDATE ... ORDER BY: 1105 naming the table,
    // not 1064.
    let e = err(
        &s,
        Some("customer"),
        "update customer set email = 'x' order by customer_id limit 2",
    );
    assert_eq!(e.code(), 1105, "{e}");
    assert!(
        e.to_string().starts_with(
            "UPDATE with ORDER BY/LIMIT on sharded table customer.customer cannot be routed: "
        ),
        "{e}"
    );
    // It reads UPDATE ... LIMIT; the DML planner refuses it.
    let e = err(
        &s,
        Some("customer"),
        "update customer set email = 'x' limit 2",
    );
    assert_eq!(e.code(), 1105, "{e}");
    assert!(e.to_string().contains("customer.customer"), "{e}");
    let sql = "update customer set email = 'x' where customer_id = 4 order by customer_id limit 1";
    let r = route(&s, Some("customer"), sql, &[]);
    assert_eq!(r.target, one("80-"));
    assert_eq!(r.sql, sql);
    let sql = "update product set price = price + 1 order by pid limit 2";
    let r = route(&s, Some("commerce"), sql, &[]);
    assert_eq!(r.sql, sql);
}

#[test]
fn scatter_limit_and_offset_may_be_parameters() {
    let s = demo();
    // LIMIT ?: each shard gets the number, the merge keeps it
    let r = route(
        &s,
        Some("customer"),
        "select customer_id from customer order by customer_id limit ?",
        &[Datum::Int(3)],
    );
    assert!(matches!(r.target, Target::All | Target::Some(_)), "{r:?}");
    assert!(r.sql.ends_with("LIMIT 3"), "{}", r.sql);
    let m = r.merge.expect("merge");
    assert_eq!((m.limit, m.offset), (Some(3), 0));
    // LIMIT ? OFFSET ?: each shard returns limit + offset rows
    let r = route(
        &s,
        Some("customer"),
        "select customer_id from customer where customer_id > ? order by customer_id limit ? offset ?",
        &[Datum::Int(0), Datum::Int(2), Datum::UInt(5)],
    );
    assert!(r.sql.ends_with("LIMIT 7"), "{}", r.sql);
    assert!(r.sql.contains("> 0"), "{}", r.sql);
    let m = r.merge.expect("merge");
    assert_eq!((m.limit, m.offset), (Some(2), 5));
    // LIMIT offset, ? with a literal offset; a text number binds too
    let r = route(
        &s,
        Some("customer"),
        "select customer_id from customer order by customer_id limit 4, ?",
        &[Datum::Text(b"6".to_vec())],
    );
    assert!(r.sql.ends_with("LIMIT 10"), "{}", r.sql);
    let m = r.merge.expect("merge");
    assert_eq!((m.limit, m.offset), (Some(6), 4));
    // aggregates fetch everything; the merge applies the bound values
    let r = route(
        &s,
        Some("customer"),
        "select count(*) from customer limit ?",
        &[Datum::Int(1)],
    );
    assert!(!r.sql.to_ascii_uppercase().contains("LIMIT"), "{}", r.sql);
    assert_eq!(r.merge.expect("merge").limit, Some(1));
    // on one shard, the statement is sent as written
    let r = route(
        &s,
        Some("customer"),
        "select email from customer where customer_id = ? limit ?",
        &[Datum::Int(1), Datum::Int(1)],
    );
    assert!(matches!(r.target, Target::One(_)), "{r:?}");
    assert!(r.merge.is_none());
    // a negative or non-numeric LIMIT is refused at execute time
    let p = plan_in(
        &s,
        Some("customer"),
        "select customer_id from customer order by customer_id limit ?",
    )
    .expect("plan");
    let Plan::Route(route) = &*p else {
        panic!("not a route")
    };
    for bad in [Datum::Int(-1), Datum::Text(b"x".to_vec())] {
        let e = route.bind(&[bad]).expect_err("bad limit");
        assert_eq!(e.code(), 1105);
        assert!(e.to_string().contains("non-negative integers"), "{e}");
    }
}
