//! The gate's oracle test (issue 3): the same schema and the same random
//! data in a plain MariaDB database (the reference) and in a sharded keyspace
//! behind the gate; then thousands of generated statements run on both and
//! must give identical answers — rows, column names, affected-row counts and
//! error codes.
//!
//! The generator only writes statements the router supports (see
//! crates/router: scatter SELECTs with ORDER BY/LIMIT, COUNT/SUM/MIN/MAX/AVG,
//! GROUP BY plain columns, DISTINCT; co-located joins; DML by vindex or
//! scatter). Statements it refuses by design are asserted separately to get
//! 1105 with a message naming the table.
//!
//! Results are compared in order only when the ORDER BY fully determines it
//! (the primary key is always the last sort key), else as sorted multisets.
//! Where MariaDB itself may pick any of several case variants of one value
//! (`MIN(name)`, `GROUP BY name`, `DISTINCT name` under a `_ci` collation),
//! strings are compared case-folded. A share of the statements run as
//! prepared statements (binary protocol, whose values are compared with their
//! types), and a share on connections with `CLIENT_FOUND_ROWS`.
//!
//! Reproduce a failure with `ORACLE_SEED=<seed>`; `ORACLE_QUERIES=<n>`
//! changes the number of statements (default 2000).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{SHARDED, TestCluster, UNSHARDED};
use keyshift_testkit::TestMysqld;
use mysql_async::prelude::*;
use mysql_async::{Conn, Params, Row, Value};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------
// Schema and data

/// Tables of the sharded keyspace (`customer`), created on every shard and in
/// the reference's `customer` database.
const SHARDED_DDL: &str = "
CREATE TABLE items (
  id BIGINT NOT NULL,
  grp INT NOT NULL,
  name VARCHAR(40) NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  qty INT NULL,
  created DATETIME NOT NULL,
  PRIMARY KEY (id),
  KEY grp (grp)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
CREATE TABLE events (
  cid BIGINT NOT NULL,
  seq INT NOT NULL,
  kind VARCHAR(16) NOT NULL,
  val INT NULL,
  amount DECIMAL(12,3) NOT NULL,
  at DATETIME NOT NULL,
  PRIMARY KEY (cid, seq)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
";

/// The unsharded keyspace's table (`commerce`).
const UNSHARDED_DDL: &str = "
CREATE TABLE products (
  pid INT NOT NULL,
  title VARCHAR(40) NOT NULL,
  price DECIMAL(8,2) NOT NULL,
  stock INT NULL,
  PRIMARY KEY (pid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
";

const CUSTOMER_VSCHEMA: &str = r#"{
  "sharded": true,
  "vindexes": {"hash": {"type": "hash"}},
  "tables": {
    "items": {"column_vindexes": [{"column": "id", "name": "hash"}]},
    "events": {"column_vindexes": [{"column": "cid", "name": "hash"}]}
  }
}"#;

const COMMERCE_VSCHEMA: &str = r#"{"tables": {"products": {}}}"#;

const SHARDS: &[&str] = &["-40", "40-80", "80-c0", "c0-"];

/// Mixed case on purpose: under `utf8mb4_general_ci` these fold into fewer
/// groups, and a merge that compares bytes would order and group them
/// differently from one server. Trailing spaces count for nothing under PAD
/// SPACE collations; quotes check escaping.
const NAMES: &[&str] = &[
    "alpha",
    "Alpha",
    "ALPHA",
    "beta",
    "Beta",
    "beta ",
    "gamma",
    "GAMMA",
    "delta",
    "Delta",
    "epsilon",
    "zeta",
    "Zeta",
    "eta",
    "theta",
    "Theta",
    "iota",
    "kappa",
    "Lambda",
    "lambda",
    "mu",
    "o'brien",
    "O'Brien",
    "x_y%z",
    "back\\slash",
];
const KINDS: &[&str] = &[
    "click", "Click", "CLICK", "view", "View", "buy", "Buy", "refund",
];

// ---------------------------------------------------------------------------
// Statements and parameters

#[derive(Clone, Copy, Debug)]
struct DateTime {
    y: u16,
    mo: u8,
    d: u8,
    h: u8,
    mi: u8,
    s: u8,
}

impl DateTime {
    fn text(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.y, self.mo, self.d, self.h, self.mi, self.s
        )
    }
}

/// A statement parameter: inlined as a literal in text mode, bound in
/// prepared mode.
#[derive(Clone, Debug)]
enum P {
    Null,
    Int(i64),
    Dec(String),
    Str(String),
    Dt(DateTime),
}

impl P {
    fn literal(&self) -> String {
        match self {
            P::Null => "NULL".to_string(),
            P::Int(i) => i.to_string(),
            P::Dec(d) => d.clone(),
            P::Str(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
            P::Dt(d) => format!("'{}'", d.text()),
        }
    }

    fn value(&self) -> Value {
        match self {
            P::Null => Value::NULL,
            P::Int(i) => Value::Int(*i),
            P::Dec(d) => Value::Bytes(d.clone().into_bytes()),
            P::Str(s) => Value::Bytes(s.clone().into_bytes()),
            P::Dt(d) => Value::Date(d.y, d.mo, d.d, d.h, d.mi, d.s, 0),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// The ORDER BY determines the order of every row.
    Exact,
    /// Compare as multisets.
    Any,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    /// BEGIN / COMMIT / ROLLBACK: always text, always on the main connection.
    Txn,
}

#[derive(Clone, Debug)]
struct Q {
    /// Text with `?` for each parameter.
    sql: String,
    params: Vec<P>,
    order: Order,
    /// Compare strings case-folded (the server may return any case variant).
    ci: bool,
    kind: Kind,
    prepared: bool,
    /// Run on the `CLIENT_FOUND_ROWS` connections.
    found_rows: bool,
}

impl Q {
    fn new(sql: impl Into<String>, params: Vec<P>, order: Order, kind: Kind) -> Q {
        Q {
            sql: sql.into(),
            params,
            order,
            ci: false,
            kind,
            prepared: false,
            found_rows: false,
        }
    }

    fn read(sql: impl Into<String>, params: Vec<P>, order: Order) -> Q {
        Q::new(sql, params, order, Kind::Read)
    }

    fn write(sql: impl Into<String>, params: Vec<P>) -> Q {
        Q::new(sql, params, Order::Any, Kind::Write)
    }

    fn ci(mut self, ci: bool) -> Q {
        self.ci = ci;
        self
    }

    /// The statement with its parameters inlined.
    fn text(&self) -> String {
        let mut out = String::new();
        let mut params = self.params.iter();
        for (i, part) in self.sql.split('?').enumerate() {
            if i > 0 {
                out.push_str(&params.next().expect("a parameter per ?").literal());
            }
            out.push_str(part);
        }
        assert!(
            params.next().is_none(),
            "more parameters than ?: {}",
            self.sql
        );
        out
    }

    fn describe(&self) -> String {
        let mode = match (self.prepared, self.found_rows) {
            (true, true) => "prepared, CLIENT_FOUND_ROWS",
            (true, false) => "prepared",
            (false, true) => "text, CLIENT_FOUND_ROWS",
            (false, false) => "text",
        };
        if self.prepared {
            format!(
                "[{mode}] {}\n      params: {:?}\n      as text: {}",
                self.sql,
                self.params,
                self.text()
            )
        } else {
            format!("[{mode}] {}", self.text())
        }
    }
}

// ---------------------------------------------------------------------------
// Running and comparing

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Affected(u64),
    Error(u16),
}

#[derive(Clone, Debug)]
struct Res {
    outcome: Outcome,
    /// The server's error message, shown but not compared.
    message: String,
}

const NULL_CELL: &str = "\\N";

/// A cell as a string: the text protocol's bytes as they are; binary
/// protocol values with their type, so a wrong column type shows too.
fn cell(v: &Value) -> String {
    match v {
        Value::NULL => NULL_CELL.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(i) => format!("int:{i}"),
        Value::UInt(u) => format!("uint:{u}"),
        Value::Float(f) => format!("float:{f}"),
        Value::Double(f) => format!("double:{f}"),
        Value::Date(y, mo, d, h, mi, s, us) => {
            format!("date:{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
        }
        Value::Time(neg, d, h, mi, s, us) => {
            format!(
                "time:{}{d} {h:02}:{mi:02}:{s:02}.{us:06}",
                if *neg { "-" } else { "" }
            )
        }
    }
}

async fn collect<'a, 't: 'a, Pr: mysql_async::prelude::Protocol>(
    mut r: mysql_async::QueryResult<'a, 't, Pr>,
) -> mysql_async::Result<Outcome> {
    let columns = r.columns();
    let rows: Vec<Row> = r.collect().await?;
    let affected = r.affected_rows();
    r.drop_result().await?;
    match columns {
        Some(cols) if !cols.is_empty() => Ok(Outcome::Rows {
            columns: cols.iter().map(|c| c.name_str().into_owned()).collect(),
            rows: rows
                .into_iter()
                .map(|r| r.unwrap().iter().map(cell).collect())
                .collect(),
        }),
        _ => Ok(Outcome::Affected(affected)),
    }
}

async fn run_one(conn: &mut Conn, q: &Q) -> Res {
    let r = if q.prepared {
        let params = Params::Positional(q.params.iter().map(P::value).collect());
        match conn.exec_iter(q.sql.as_str(), params).await {
            Ok(r) => collect(r).await,
            Err(e) => Err(e),
        }
    } else {
        match conn.query_iter(q.text()).await {
            Ok(r) => collect(r).await,
            Err(e) => Err(e),
        }
    };
    match r {
        Ok(outcome) => Res {
            outcome,
            message: String::new(),
        },
        Err(mysql_async::Error::Server(e)) => Res {
            outcome: Outcome::Error(e.code),
            message: e.message,
        },
        Err(e) => Res {
            outcome: Outcome::Error(0),
            message: format!("client error: {e}"),
        },
    }
}

fn fold(s: &str) -> String {
    s.to_lowercase().trim_end_matches(' ').to_string()
}

/// The outcome as it is compared: case-folded if asked, rows sorted unless
/// the order is exact.
fn normalize(q: &Q, o: &Outcome) -> Outcome {
    match o {
        Outcome::Rows { columns, rows } => {
            let mut rows: Vec<Vec<String>> = if q.ci {
                rows.iter()
                    .map(|r| r.iter().map(|c| fold(c)).collect())
                    .collect()
            } else {
                rows.clone()
            };
            if q.order == Order::Any {
                rows.sort();
            }
            Outcome::Rows {
                columns: columns.clone(),
                rows,
            }
        }
        other => other.clone(),
    }
}

fn same(q: &Q, reference: &Outcome, gate: &Outcome) -> bool {
    match (reference, gate) {
        (Outcome::Error(a), Outcome::Error(b)) => a == b,
        _ => normalize(q, reference) == normalize(q, gate),
    }
}

fn show(res: &Res) -> String {
    match &res.outcome {
        Outcome::Error(code) => format!("error {code}: {}", res.message),
        Outcome::Affected(n) => format!("OK, {n} affected rows"),
        Outcome::Rows { columns, rows } => {
            let mut s = format!("{} rows, columns {columns:?}", rows.len());
            for r in rows.iter().take(12) {
                s.push_str(&format!("\n        {r:?}"));
            }
            if rows.len() > 12 {
                s.push_str("\n        ...");
            }
            s
        }
    }
}

/// Where the two results differ, shortly.
fn diff(q: &Q, reference: &Outcome, gate: &Outcome) -> String {
    match (normalize(q, reference), normalize(q, gate)) {
        (
            Outcome::Rows {
                columns: ca,
                rows: ra,
            },
            Outcome::Rows {
                columns: cb,
                rows: rb,
            },
        ) => {
            let mut out = Vec::new();
            if ca != cb {
                out.push(format!("column names differ: {ca:?} vs {cb:?}"));
            }
            if ra.len() != rb.len() {
                out.push(format!("row counts differ: {} vs {}", ra.len(), rb.len()));
            }
            if let Some(i) = (0..ra.len().min(rb.len())).find(|&i| ra[i] != rb[i]) {
                out.push(format!(
                    "first differing row (#{i}): {:?} vs {:?}",
                    ra[i], rb[i]
                ));
            }
            out.join("; ")
        }
        _ => String::new(),
    }
}

/// One side: a connection without and one with `CLIENT_FOUND_ROWS`.
struct Side {
    plain: Conn,
    found_rows: Conn,
}

impl Side {
    async fn open(opts: mysql_async::OptsBuilder) -> anyhow::Result<Side> {
        Ok(Side {
            plain: Conn::new(opts.clone()).await?,
            found_rows: Conn::new(opts.client_found_rows(true)).await?,
        })
    }

    fn conn(&mut self, q: &Q) -> &mut Conn {
        if q.found_rows {
            &mut self.found_rows
        } else {
            &mut self.plain
        }
    }
}

const STATEMENT_TIMEOUT: Duration = Duration::from_secs(20);

struct Oracle {
    seed: u64,
    reference: Side,
    gate: Side,
    executed: usize,
    by_kind: BTreeMap<&'static str, usize>,
    mismatches: Vec<String>,
    /// Set after a mismatch that leaves the two sides' data different (or a
    /// connection in an unknown state): nothing after it can be compared.
    diverged: bool,
}

impl Oracle {
    /// Runs `q` on both sides and records a mismatch. Returns both results.
    async fn check(&mut self, label: &'static str, q: &Q) -> Option<(Outcome, Outcome)> {
        if self.diverged {
            return None;
        }
        self.executed += 1;
        *self.by_kind.entry(label).or_default() += 1;
        let reference = run_one(self.reference.conn(q), q).await;
        let gate =
            match tokio::time::timeout(STATEMENT_TIMEOUT, run_one(self.gate.conn(q), q)).await {
                Ok(r) => r,
                Err(_) => Res {
                    outcome: Outcome::Error(0),
                    message: format!("no answer from the gate within {STATEMENT_TIMEOUT:?}"),
                },
            };
        if let Outcome::Error(0) = reference.outcome {
            panic!(
                "seed {}: the reference failed on {}: {}",
                self.seed,
                q.describe(),
                reference.message
            );
        }
        if !same(q, &reference.outcome, &gate.outcome) {
            let msg = format!(
                "MISMATCH #{} (seed {}, statement #{}, {label}, order {:?}{})\n    query: {}\n    reference: {}\n    gate:      {}\n    {}",
                self.mismatches.len() + 1,
                self.seed,
                self.executed,
                q.order,
                if q.ci { ", case-folded" } else { "" },
                q.describe(),
                show(&reference),
                show(&gate),
                diff(q, &reference.outcome, &gate.outcome),
            );
            eprintln!("{msg}\n");
            self.mismatches.push(msg);
            let gate_broken = matches!(gate.outcome, Outcome::Error(0));
            if q.kind != Kind::Read || gate_broken || self.mismatches.len() >= 25 {
                self.diverged = true;
            }
        }
        Some((reference.outcome, gate.outcome))
    }
}

// ---------------------------------------------------------------------------
// The generator

struct Gen {
    rng: StdRng,
    /// Ids of `items` that probably exist.
    items: Vec<i64>,
    next_item: i64,
    /// cids of `events` that probably have rows.
    events: BTreeMap<i64, ()>,
    /// seq of the next inserted event: never reused, so that no insert
    /// collides with a row the model forgot (after a ROLLBACK, say).
    next_seq: i64,
    next_cid: i64,
    products: Vec<i64>,
    next_pid: i64,
    /// Share of statements run prepared.
    prepared_share: f64,
}

/// Columns of `items` a SELECT may list, with whether they are strings
/// (which MIN/MAX/GROUP BY/DISTINCT compare case-insensitively).
const ITEM_COLS: &[&str] = &["grp", "name", "price", "qty", "created"];

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            items: Vec::new(),
            next_item: 1,
            events: BTreeMap::new(),
            next_seq: 100,
            next_cid: 1,
            products: Vec::new(),
            next_pid: 1,
            prepared_share: 0.3,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        xs.choose(&mut self.rng).expect("non-empty")
    }

    fn name(&mut self) -> P {
        P::Str(self.pick(NAMES).to_string())
    }

    fn kind(&mut self) -> P {
        P::Str(self.pick(KINDS).to_string())
    }

    fn price(&mut self) -> P {
        P::Dec(format!(
            "{}.{:02}",
            self.rng.random_range(0..1000),
            self.rng.random_range(0..100)
        ))
    }

    fn amount(&mut self) -> P {
        let sign = if self.chance(0.2) { "-" } else { "" };
        P::Dec(format!(
            "{sign}{}.{:03}",
            self.rng.random_range(0..5000),
            self.rng.random_range(0..1000)
        ))
    }

    fn small_int_or_null(&mut self) -> P {
        if self.chance(0.2) {
            P::Null
        } else {
            P::Int(self.rng.random_range(-50..200))
        }
    }

    fn dt(&mut self) -> DateTime {
        DateTime {
            y: self.rng.random_range(2020..=2025),
            mo: self.rng.random_range(1..=12),
            d: self.rng.random_range(1..=28),
            h: self.rng.random_range(0..24),
            mi: self.rng.random_range(0..60),
            s: self.rng.random_range(0..60),
        }
    }

    fn grp(&mut self) -> i64 {
        self.rng.random_range(0..12)
    }

    /// An id of `items`: mostly existing ones, sometimes missing or huge.
    fn item_id(&mut self) -> i64 {
        let r: f64 = self.rng.random();
        if r < 0.8 && !self.items.is_empty() {
            self.items[self.rng.random_range(0..self.items.len())]
        } else if r < 0.9 {
            self.rng.random_range(1..self.next_item + 50)
        } else {
            self.rng.random_range(1i64 << 40..i64::MAX)
        }
    }

    fn cid(&mut self) -> i64 {
        let r: f64 = self.rng.random();
        if r < 0.85 && !self.events.is_empty() {
            let keys: Vec<i64> = self.events.keys().copied().collect();
            *self.pick(&keys)
        } else {
            self.rng.random_range(1..self.next_cid + 20)
        }
    }

    fn pid(&mut self) -> i64 {
        if self.chance(0.85) && !self.products.is_empty() {
            self.products[self.rng.random_range(0..self.products.len())]
        } else {
            self.rng.random_range(1..self.next_pid + 10)
        }
    }

    /// A key as a parameter: usually a number, sometimes the string a
    /// driver that binds everything as text would send.
    fn key(&mut self, id: i64) -> P {
        if self.chance(0.1) {
            P::Str(id.to_string())
        } else {
            P::Int(id)
        }
    }

    fn fresh_item_id(&mut self) -> i64 {
        if self.chance(0.15) {
            // Large ids spread over the whole keyspace-id range as well.
            loop {
                let id = self.rng.random_range(1i64 << 40..i64::MAX);
                if !self.items.contains(&id) {
                    return id;
                }
            }
        }
        let id = self.next_item;
        self.next_item += 1;
        id
    }

    /// `(?, ?, ...)` with `n` placeholders.
    fn marks(n: usize) -> String {
        format!("({})", vec!["?"; n].join(", "))
    }

    /// Decides prepared/text and the connection.
    fn mode(&mut self, mut q: Q) -> Q {
        if q.kind != Kind::Txn {
            q.prepared = self.chance(self.prepared_share);
            q.found_rows = self.chance(0.25);
        }
        q
    }

    /// The `items` table name as written: sometimes qualified.
    fn items_table(&mut self) -> &'static str {
        if self.chance(0.1) {
            "customer.items"
        } else {
            "items"
        }
    }

    /// A WHERE condition on `items` (columns prefixed by `p`).
    fn items_pred(&mut self, p: &str) -> (String, Vec<P>) {
        match self.rng.random_range(0..16) {
            0..=2 => {
                let id = self.item_id();
                (format!("{p}id = ?"), vec![self.key(id)])
            }
            3..=4 => {
                let n = self.rng.random_range(1..=6);
                let ids = (0..n)
                    .map(|_| {
                        let id = self.item_id();
                        self.key(id)
                    })
                    .collect();
                (format!("{p}id IN {}", Self::marks(n)), ids)
            }
            5 => {
                let g = self.grp();
                (format!("{p}grp = ?"), vec![P::Int(g)])
            }
            6 => {
                let a = self.grp();
                let b = a + self.rng.random_range(0..4);
                (
                    format!("{p}grp BETWEEN ? AND ?"),
                    vec![P::Int(a), P::Int(b)],
                )
            }
            7 => {
                let op = *self.pick(&[">", "<=", ">=", "<"]);
                (format!("{p}price {op} ?"), vec![self.price()])
            }
            8 => {
                let (a, b) = (self.dt(), self.dt());
                let (a, b) = if a.text() <= b.text() { (a, b) } else { (b, a) };
                (
                    format!("{p}created BETWEEN ? AND ?"),
                    vec![P::Dt(a), P::Dt(b)],
                )
            }
            9 => (
                format!("{p}qty {}", self.pick(&["IS NULL", "IS NOT NULL"])),
                vec![],
            ),
            10 => {
                let op = *self.pick(&[">", "<", "="]);
                (
                    format!("{p}qty {op} ?"),
                    vec![P::Int(self.rng.random_range(-50..200))],
                )
            }
            11 => (format!("{p}name = ?"), vec![self.name()]),
            12 => {
                let pat = *self.pick(&["al%", "%ta", "B%", "%A%", "o'%"]);
                (format!("{p}name LIKE ?"), vec![P::Str(pat.to_string())])
            }
            13 => {
                let op = *self.pick(&[">", "<"]);
                (
                    format!("{p}id {op} ?"),
                    vec![P::Int(self.rng.random_range(1..self.next_item + 10))],
                )
            }
            14 => {
                let (a, mut pa) = self.items_pred(p);
                let (b, pb) = self.items_pred(p);
                pa.extend(pb);
                (format!("{a} AND {b}"), pa)
            }
            _ => {
                let (a, mut pa) = self.items_pred(p);
                let (b, pb) = self.items_pred(p);
                pa.extend(pb);
                (format!("({a} OR {b})"), pa)
            }
        }
    }

    fn where_items(&mut self, p: &str, share: f64) -> (String, Vec<P>) {
        if self.chance(share) {
            let (w, ps) = self.items_pred(p);
            (format!(" WHERE {w}"), ps)
        } else {
            (String::new(), vec![])
        }
    }

    /// A LIMIT clause for the end of a statement whose other parameters
    /// are in `params`: numbers in the text, or (half the time) `?`
    /// parameters, as drivers send for pagination.
    fn limit(&mut self, params: &mut Vec<P>) -> String {
        let n = self.rng.random_range(0..15);
        let off = self.rng.random_range(0..20);
        let as_params = self.chance(0.5);
        let mut v = |x: i64| {
            if as_params {
                params.push(P::Int(x));
                "?".to_string()
            } else {
                x.to_string()
            }
        };
        match self.rng.random_range(0..4) {
            0 => {
                let l = v(n);
                format!(" LIMIT {l} OFFSET {}", v(off))
            }
            1 => {
                let o = v(off);
                format!(" LIMIT {o}, {}", v(n))
            }
            _ => format!(" LIMIT {}", v(n)),
        }
    }

    fn dir(&mut self) -> &'static str {
        ["", " DESC", " ASC"][self.rng.random_range(0..3)]
    }

    /// Plain SELECT on items: point, IN, range, scatter, ORDER BY/LIMIT.
    fn select_items(&mut self) -> Q {
        let table = self.items_table();
        let (cols, first_is_id): (String, bool) = match self.rng.random_range(0..6) {
            0 => ("*".to_string(), true),
            1 => ("id, grp, name, price, qty, created".to_string(), true),
            2 => ("id, name".to_string(), true),
            3 => ("name, price AS p, id".to_string(), false),
            4 => ("qty, created, id".to_string(), false),
            _ => ("id, price, qty".to_string(), true),
        };
        let (w, mut params) = self.where_items("", 0.85);
        let mut sql = format!("SELECT {cols} FROM {table}{w}");
        let mut order = Order::Any;
        if self.chance(0.6) {
            order = Order::Exact;
            let mut keys = Vec::new();
            for _ in 0..self.rng.random_range(0..=2) {
                let c = *self.pick(ITEM_COLS);
                let c = if c == "price" && cols.contains("AS p") && self.chance(0.5) {
                    "p"
                } else {
                    c
                };
                let d = self.dir();
                keys.push(format!("{c}{d}"));
            }
            let d = self.dir();
            if first_is_id && self.chance(0.2) {
                keys.push(format!("1{d}"));
            } else {
                keys.push(format!("id{d}"));
            }
            sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
            if self.chance(0.6) {
                let l = self.limit(&mut params);
                sql.push_str(&l);
            }
        }
        Q::read(sql, params, order)
    }

    /// Aggregates without GROUP BY.
    fn aggregate_items(&mut self) -> Q {
        const AGGS: &[&str] = &[
            "COUNT(*)",
            "count(*)",
            "COUNT(qty)",
            "SUM(price)",
            "SUM(qty)",
            "MIN(price)",
            "MAX(price)",
            "MIN(qty)",
            "MAX(qty)",
            "MIN(created)",
            "MAX(created)",
            "MIN(id)",
            "MAX(id)",
            "MIN(name)",
            "MAX(name)",
            "AVG(price)",
            "AVG(qty)",
        ];
        let n = self.rng.random_range(1..=4);
        let mut items = Vec::new();
        let mut ci = false;
        for i in 0..n {
            let a = *self.pick(AGGS);
            ci |= a.contains("name");
            if self.chance(0.25) {
                items.push(format!("{a} AS a{i}"));
            } else {
                items.push(a.to_string());
            }
        }
        let (w, params) = self.where_items("", 0.6);
        let table = self.items_table();
        Q::read(
            format!("SELECT {} FROM {table}{w}", items.join(", ")),
            params,
            Order::Exact,
        )
        .ci(ci)
    }

    /// GROUP BY plain columns, with or without ORDER BY and LIMIT.
    fn group_items(&mut self) -> Q {
        const GROUPS: &[&[&str]] = &[
            &["grp"],
            &["grp"],
            &["qty"],
            &["grp", "qty"],
            &["name"],
            &["grp", "name"],
        ];
        const AGGS: &[&str] = &[
            "COUNT(*)",
            "SUM(price)",
            "MIN(price)",
            "MAX(price)",
            "SUM(qty)",
            "MIN(qty)",
            "MAX(created)",
            "COUNT(qty)",
            "MIN(id)",
            "AVG(price)",
        ];
        let group: Vec<&str> = self.pick(GROUPS).to_vec();
        let ci = group.contains(&"name");
        let n = self.rng.random_range(1..=3);
        let mut aggs: Vec<(String, String)> = Vec::new(); // (select item, how ORDER BY names it)
        for i in 0..n {
            let a = *self.pick(AGGS);
            if self.chance(0.3) {
                aggs.push((format!("{a} AS c{i}"), format!("c{i}")));
            } else {
                aggs.push((a.to_string(), a.to_string()));
            }
        }
        let hide_group = self.chance(0.1);
        let mut select: Vec<String> = Vec::new();
        if !hide_group {
            select.extend(group.iter().map(|g| g.to_string()));
        }
        select.extend(aggs.iter().map(|(s, _)| s.clone()));
        if !hide_group && self.chance(0.3) {
            select.rotate_left(group.len());
        }
        let (w, params) = self.where_items("", 0.5);
        let mut sql = format!(
            "SELECT {} FROM items{w} GROUP BY {}",
            select.join(", "),
            group.join(", ")
        );
        let mut order = Order::Any;
        if !hide_group && self.chance(0.6) {
            order = Order::Exact;
            let mut keys: Vec<String> = Vec::new();
            if self.chance(0.4) {
                let (_, name) = aggs[0].clone();
                let d = self.dir();
                keys.push(format!("{name}{d}"));
            }
            for g in &group {
                let d = self.dir();
                keys.push(format!("{g}{d}"));
            }
            sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
            if self.chance(0.3) {
                sql.push_str(&format!(" LIMIT {}", self.rng.random_range(1..8)));
            }
        }
        Q::read(sql, params, order).ci(ci)
    }

    fn distinct_items(&mut self) -> Q {
        const SETS: &[&[&str]] = &[
            &["grp"],
            &["qty"],
            &["grp", "qty"],
            &["name"],
            &["grp", "name"],
        ];
        let cols: Vec<&str> = self.pick(SETS).to_vec();
        let ci = cols.contains(&"name");
        let (w, params) = self.where_items("", 0.5);
        let mut sql = format!("SELECT DISTINCT {} FROM items{w}", cols.join(", "));
        let mut order = Order::Any;
        if self.chance(0.6) {
            order = Order::Exact;
            let keys: Vec<String> = cols.iter().map(|c| format!("{c}{}", self.dir())).collect();
            sql.push_str(&format!(" ORDER BY {}", keys.join(", ")));
            if self.chance(0.4) {
                sql.push_str(&format!(" LIMIT {}", self.rng.random_range(1..10)));
            }
        }
        Q::read(sql, params, order).ci(ci)
    }

    fn select_events(&mut self) -> Q {
        match self.rng.random_range(0..7) {
            0 => {
                let order = self.chance(0.5);
                Q::read(
                    format!(
                        "SELECT cid, seq, kind, val, amount, at FROM events WHERE cid = ?{}",
                        if order { " ORDER BY seq" } else { "" }
                    ),
                    vec![P::Int(self.cid())],
                    if order { Order::Exact } else { Order::Any },
                )
            }
            1 => {
                let n = self.rng.random_range(1..=5);
                let ids = (0..n).map(|_| P::Int(self.cid())).collect();
                Q::read(
                    format!(
                        "SELECT * FROM events WHERE cid IN {} ORDER BY cid DESC, seq",
                        Self::marks(n)
                    ),
                    ids,
                    Order::Exact,
                )
            }
            2 => {
                let mut ps = vec![self.kind()];
                let l = self.limit(&mut ps);
                Q::read(
                    format!(
                        "SELECT cid, seq, val, at FROM events WHERE kind = ? ORDER BY at DESC, cid, seq{l}"
                    ),
                    ps,
                    Order::Exact,
                )
            }
            3 => Q::read(
                "SELECT kind, COUNT(*), SUM(amount), MIN(val), MAX(at) FROM events GROUP BY kind",
                vec![],
                Order::Any,
            )
            .ci(true),
            4 => Q::read(
                format!(
                    "SELECT cid, COUNT(*) AS n, MAX(seq), SUM(val) FROM events WHERE val > ? GROUP BY cid ORDER BY n DESC, cid LIMIT {}",
                    self.rng.random_range(1..10)
                ),
                vec![P::Int(self.rng.random_range(-50..150))],
                Order::Exact,
            ),
            5 => Q::read(
                "SELECT COUNT(*), SUM(amount), MIN(amount), MAX(val), AVG(val), COUNT(val) FROM events WHERE at >= ?",
                vec![P::Dt(self.dt())],
                Order::Exact,
            ),
            _ => {
                let mut ps = vec![self.amount()];
                let l = self.limit(&mut ps);
                Q::read(
                    format!("SELECT DISTINCT val FROM events WHERE amount < ? ORDER BY val{l}"),
                    ps,
                    Order::Exact,
                )
            }
        }
    }

    /// Joins of co-located tables (equal `hash` vindex values).
    fn join(&mut self) -> Q {
        let left = if self.chance(0.2) {
            "LEFT JOIN"
        } else {
            "JOIN"
        };
        match self.rng.random_range(0..3) {
            0 => {
                let (w, params) = match self.rng.random_range(0..3) {
                    0 => (" WHERE i.id = ?".to_string(), vec![P::Int(self.item_id())]),
                    1 => (" WHERE e.kind = ?".to_string(), vec![self.kind()]),
                    _ => {
                        let (w, ps) = self.items_pred("i.");
                        (format!(" WHERE {w}"), ps)
                    }
                };
                let exact = self.chance(0.6);
                let mut sql = format!(
                    "SELECT i.id, i.name, e.seq, e.kind, e.amount FROM items i {left} events e ON i.id = e.cid{w}"
                );
                let mut params = params;
                if exact {
                    sql.push_str(" ORDER BY i.id, e.seq");
                    if self.chance(0.5) {
                        let l = self.limit(&mut params);
                        sql.push_str(&l);
                    }
                }
                Q::read(sql, params, if exact { Order::Exact } else { Order::Any })
            }
            1 => Q::read(
                "SELECT i.grp, COUNT(*), SUM(e.amount) FROM items i JOIN events e ON e.cid = i.id GROUP BY i.grp ORDER BY i.grp",
                vec![],
                Order::Exact,
            ),
            _ => Q::read(
                format!(
                    "SELECT COUNT(*), MAX(e.at) FROM items AS i {left} events AS e ON i.id = e.cid WHERE i.qty > ?"
                ),
                vec![P::Int(self.rng.random_range(-50..150))],
                Order::Exact,
            ),
        }
    }

    fn select_products(&mut self) -> Q {
        match self.rng.random_range(0..5) {
            0 => Q::read(
                "SELECT * FROM commerce.products WHERE pid = ?",
                vec![P::Int(self.pid())],
                Order::Any,
            ),
            1 => {
                let mut ps = vec![P::Int(self.rng.random_range(-10..100))];
                let l = self.limit(&mut ps);
                Q::read(
                    format!(
                        "SELECT pid, title, price FROM commerce.products WHERE stock > ? ORDER BY price DESC, pid{l}"
                    ),
                    ps,
                    Order::Exact,
                )
            }
            2 => Q::read(
                "SELECT COUNT(*), SUM(stock), MIN(price), MAX(price), AVG(price) FROM commerce.products",
                vec![],
                Order::Exact,
            ),
            3 => Q::read(
                "SELECT title, COUNT(*), SUM(stock) FROM commerce.products GROUP BY title ORDER BY title",
                vec![],
                Order::Exact,
            )
            .ci(true),
            _ => Q::read(
                "SELECT DISTINCT stock FROM commerce.products ORDER BY stock",
                vec![],
                Order::Exact,
            ),
        }
    }

    fn item_row(&mut self, id: i64) -> Vec<P> {
        let g = self.grp();
        vec![
            P::Int(id),
            P::Int(g),
            self.name(),
            self.price(),
            self.small_int_or_null(),
            P::Dt(self.dt()),
        ]
    }

    /// The SELECT that shows what a write to these item ids did.
    fn check_items(ids: &[i64]) -> Q {
        Q::read(
            format!(
                "SELECT * FROM items WHERE id IN ({}) ORDER BY id",
                ids.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            vec![],
            Order::Exact,
        )
    }

    fn check_events(cids: &[i64]) -> Q {
        Q::read(
            format!(
                "SELECT * FROM events WHERE cid IN ({}) ORDER BY cid, seq",
                cids.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            vec![],
            Order::Exact,
        )
    }

    /// A write and the SELECTs that check its effect.
    fn write(&mut self) -> (&'static str, Vec<Q>) {
        match self.rng.random_range(0..20) {
            0..=3 => {
                // Multi-row INSERT with explicit keys, columns in any order.
                let n = self.rng.random_range(1..=5);
                let ids: Vec<i64> = (0..n).map(|_| self.fresh_item_id()).collect();
                let rows: Vec<Vec<P>> = ids.iter().map(|&id| self.item_row(id)).collect();
                let swap = self.chance(0.3);
                let cols = if swap {
                    "(grp, id, name, price, qty, created)"
                } else {
                    "(id, grp, name, price, qty, created)"
                };
                let mut params = Vec::new();
                for mut r in rows {
                    if swap {
                        r.swap(0, 1);
                    }
                    params.extend(r);
                }
                self.items.extend(&ids);
                let sql = format!(
                    "INSERT INTO {} {cols} VALUES {}",
                    self.items_table(),
                    vec![Self::marks(6); n].join(", ")
                );
                (
                    "insert items",
                    vec![Q::write(sql, params), Self::check_items(&ids)],
                )
            }
            4..=5 => {
                let n = self.rng.random_range(1..=4);
                let mut cids = Vec::new();
                let mut params = Vec::new();
                for _ in 0..n {
                    let cid = if self.chance(0.7) {
                        self.cid()
                    } else {
                        let c = self.next_cid;
                        self.next_cid += 1;
                        c
                    };
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.events.insert(cid, ());
                    cids.push(cid);
                    let k = self.kind();
                    let v = self.small_int_or_null();
                    let a = self.amount();
                    params.extend([P::Int(cid), P::Int(seq), k, v, a, P::Dt(self.dt())]);
                }
                let sql = format!(
                    "INSERT INTO events (cid, seq, kind, val, amount, at) VALUES {}",
                    vec![Self::marks(6); n].join(", ")
                );
                (
                    "insert events",
                    vec![Q::write(sql, params), Self::check_events(&cids)],
                )
            }
            6 => {
                // A duplicate key: error 1062 on both sides, nothing written.
                let id = self.item_id();
                let row = self.item_row(id);
                (
                    "insert duplicate",
                    vec![
                        Q::write(
                            format!(
                                "INSERT INTO items (id, grp, name, price, qty, created) VALUES {}",
                                Self::marks(6)
                            ),
                            row,
                        ),
                        Self::check_items(&[id]),
                    ],
                )
            }
            7 => {
                let id = if self.chance(0.5) {
                    self.item_id()
                } else {
                    self.fresh_item_id()
                };
                self.items.push(id);
                let row = self.item_row(id);
                (
                    "insert on duplicate key update",
                    vec![
                        Q::write(
                            format!(
                                "INSERT INTO items (id, grp, name, price, qty, created) VALUES {} ON DUPLICATE KEY UPDATE price = price + 1, qty = NULL",
                                Self::marks(6)
                            ),
                            row,
                        ),
                        Self::check_items(&[id]),
                    ],
                )
            }
            8..=11 => {
                // UPDATE by key or by a predicate on other columns.
                let mut sets = Vec::new();
                let mut params = Vec::new();
                for _ in 0..self.rng.random_range(1..=2) {
                    match self.rng.random_range(0..6) {
                        0 => {
                            sets.push("price = price + ?");
                            params.push(self.price());
                        }
                        1 => {
                            sets.push("qty = ?");
                            params.push(self.small_int_or_null());
                        }
                        2 => {
                            sets.push("name = ?");
                            params.push(self.name());
                        }
                        3 => sets.push("grp = grp"),
                        4 => {
                            sets.push("created = ?");
                            params.push(P::Dt(self.dt()));
                        }
                        _ => sets.push("qty = qty + 1"),
                    }
                }
                let by_key = self.chance(0.6);
                let (w, wp, ids) = if by_key {
                    let n = self.rng.random_range(1..=3);
                    let ids: Vec<i64> = (0..n).map(|_| self.item_id()).collect();
                    if n == 1 {
                        ("id = ?".to_string(), vec![P::Int(ids[0])], ids)
                    } else {
                        (
                            format!("id IN {}", Self::marks(n)),
                            ids.iter().map(|&i| P::Int(i)).collect(),
                            ids,
                        )
                    }
                } else {
                    let g = self.grp();
                    match self.rng.random_range(0..3) {
                        0 => ("grp = ?".to_string(), vec![P::Int(g)], vec![]),
                        1 => (
                            "grp = ? AND qty > ?".to_string(),
                            vec![P::Int(g), P::Int(self.rng.random_range(-50..150))],
                            vec![],
                        ),
                        _ => ("name = ?".to_string(), vec![self.name()], vec![]),
                    }
                };
                params.extend(wp);
                let sql = format!(
                    "UPDATE {} SET {} WHERE {w}",
                    self.items_table(),
                    sets.join(", ")
                );
                let check = if by_key {
                    Self::check_items(&ids)
                } else {
                    full_items()
                };
                (
                    if by_key {
                        "update items by key"
                    } else {
                        "update items scatter"
                    },
                    vec![Q::write(sql, params), check],
                )
            }
            12..=13 => {
                if self.chance(0.6) {
                    let n = self.rng.random_range(1..=3);
                    let ids: Vec<i64> = (0..n).map(|_| self.item_id()).collect();
                    self.items.retain(|i| !ids.contains(i));
                    let sql = if n == 1 {
                        "DELETE FROM items WHERE id = ?".to_string()
                    } else {
                        format!("DELETE FROM items WHERE id IN {}", Self::marks(n))
                    };
                    (
                        "delete items by key",
                        vec![
                            Q::write(sql, ids.iter().map(|&i| P::Int(i)).collect()),
                            Self::check_items(&ids),
                        ],
                    )
                } else {
                    let g = self.grp();
                    let price = P::Dec(format!("{}.00", self.rng.random_range(10..120)));
                    (
                        "delete items scatter",
                        vec![
                            Q::write(
                                "DELETE FROM items WHERE grp = ? AND price < ?",
                                vec![P::Int(g), price],
                            ),
                            full_items(),
                        ],
                    )
                }
            }
            14..=15 => {
                if self.chance(0.6) {
                    let cid = self.cid();
                    let seq = self.rng.random_range(1..4);
                    (
                        "update events by key",
                        vec![
                            Q::write(
                                "UPDATE events SET val = ?, amount = amount * 2 WHERE cid = ? AND seq <= ?",
                                vec![self.small_int_or_null(), P::Int(cid), P::Int(seq)],
                            ),
                            Self::check_events(&[cid]),
                        ],
                    )
                } else {
                    let k = self.kind();
                    (
                        "update events scatter",
                        vec![
                            Q::write(
                                "UPDATE events SET val = NULL WHERE kind = ? AND val > ?",
                                vec![k, P::Int(self.rng.random_range(0..200))],
                            ),
                            full_events(),
                        ],
                    )
                }
            }
            16 => {
                let cid = self.cid();
                if self.chance(0.5) {
                    let seq = self.rng.random_range(1..4);
                    (
                        "delete events by key",
                        vec![
                            Q::write(
                                "DELETE FROM events WHERE cid = ? AND seq = ?",
                                vec![P::Int(cid), P::Int(seq)],
                            ),
                            Self::check_events(&[cid]),
                        ],
                    )
                } else {
                    self.events.remove(&cid);
                    (
                        "delete events by key",
                        vec![
                            Q::write("DELETE FROM events WHERE cid = ?", vec![P::Int(cid)]),
                            Self::check_events(&[cid]),
                        ],
                    )
                }
            }
            _ => {
                // The unsharded keyspace.
                let q = match self.rng.random_range(0..3) {
                    0 => {
                        let pid = self.next_pid;
                        self.next_pid += 1;
                        self.products.push(pid);
                        let title = self.name();
                        let price = self.price();
                        Q::write(
                            "INSERT INTO commerce.products (pid, title, price, stock) VALUES (?, ?, ?, ?)",
                            vec![P::Int(pid), title, price, self.small_int_or_null()],
                        )
                    }
                    1 => Q::write(
                        "UPDATE commerce.products SET stock = stock - 1 WHERE pid = ? OR price > ?",
                        vec![P::Int(self.pid()), self.price()],
                    ),
                    _ => Q::write(
                        "DELETE FROM commerce.products WHERE pid = ?",
                        vec![P::Int(self.pid())],
                    ),
                };
                (
                    "write products",
                    vec![
                        q,
                        Q::read(
                            "SELECT * FROM commerce.products ORDER BY pid",
                            vec![],
                            Order::Exact,
                        ),
                    ],
                )
            }
        }
    }

    /// BEGIN, a few writes, COMMIT or ROLLBACK, then full checks.
    fn transaction(&mut self) -> Vec<Q> {
        let mut qs = vec![Q::new("BEGIN", vec![], Order::Any, Kind::Txn)];
        for _ in 0..self.rng.random_range(1..=3) {
            let (_, w) = self.write();
            // The write and, inside the transaction, its check.
            qs.extend(w);
        }
        let end = if self.chance(0.3) {
            "ROLLBACK"
        } else {
            "COMMIT"
        };
        qs.push(Q::new(end, vec![], Order::Any, Kind::Txn));
        qs.push(full_items());
        qs.push(full_events());
        qs
    }

    /// The next step: a label and its statements.
    fn step(&mut self) -> (&'static str, Vec<Q>) {
        let (label, qs) = match self.rng.random_range(0..100) {
            0..=19 => ("select items", vec![self.select_items()]),
            20..=29 => ("aggregate", vec![self.aggregate_items()]),
            30..=41 => ("group by", vec![self.group_items()]),
            42..=48 => ("distinct", vec![self.distinct_items()]),
            49..=58 => ("select events", vec![self.select_events()]),
            59..=64 => ("join", vec![self.join()]),
            65..=68 => ("select products", vec![self.select_products()]),
            69..=96 => self.write(),
            _ => ("transaction", self.transaction()),
        };
        let in_txn = qs.iter().any(|q| q.kind == Kind::Txn);
        let qs = qs
            .into_iter()
            .map(|q| {
                let mut q = self.mode(q);
                if in_txn {
                    // One connection holds the transaction.
                    q.found_rows = false;
                }
                q
            })
            .collect();
        (label, qs)
    }
}

fn full_items() -> Q {
    Q::read("SELECT * FROM items ORDER BY id", vec![], Order::Exact)
}

fn full_events() -> Q {
    Q::read(
        "SELECT * FROM events ORDER BY cid, seq",
        vec![],
        Order::Exact,
    )
}

/// The initial data, as INSERT statements for both sides.
fn initial_data(g: &mut Gen) -> Vec<String> {
    let mut out = Vec::new();
    let mut rows = Vec::new();
    for _ in 0..300 {
        let id = g.fresh_item_id();
        g.items.push(id);
        let r = g.item_row(id);
        rows.push(format!(
            "({})",
            r.iter().map(P::literal).collect::<Vec<_>>().join(", ")
        ));
    }
    out.push(format!(
        "INSERT INTO items (id, grp, name, price, qty, created) VALUES {}",
        rows.join(", ")
    ));
    let mut rows = Vec::new();
    for cid in 1..=150i64 {
        let n = g.rng.random_range(0..=6);
        for seq in 1..=n {
            let k = g.kind();
            let v = g.small_int_or_null();
            let a = g.amount();
            let at = g.dt();
            rows.push(format!(
                "({cid}, {seq}, {}, {}, {}, {})",
                k.literal(),
                v.literal(),
                a.literal(),
                P::Dt(at).literal()
            ));
        }
        if n > 0 {
            g.events.insert(cid, ());
        }
    }
    g.next_cid = 151;
    out.push(format!(
        "INSERT INTO events (cid, seq, kind, val, amount, at) VALUES {}",
        rows.join(", ")
    ));
    let mut rows = Vec::new();
    for pid in 1..=40i64 {
        let t = g.name();
        let p = g.price();
        let s = g.small_int_or_null();
        rows.push(format!(
            "({pid}, {}, {}, {})",
            t.literal(),
            p.literal(),
            s.literal()
        ));
        g.products.push(pid);
    }
    g.next_pid = 41;
    out.push(format!(
        "INSERT INTO commerce.products (pid, title, price, stock) VALUES {}",
        rows.join(", ")
    ));
    out
}

fn seed() -> u64 {
    match std::env::var("ORACLE_SEED") {
        Ok(s) => s.parse().expect("ORACLE_SEED is a number"),
        Err(_) => rand::random(),
    }
}

fn query_count() -> usize {
    std::env::var("ORACLE_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
}

/// Creates the schema in the reference server's `customer` and `commerce`
/// databases.
async fn reference_schema(reference: &TestMysqld) -> anyhow::Result<()> {
    let mut c = reference.conn().await?;
    c.query_drop("CREATE DATABASE customer; CREATE DATABASE commerce")
        .await?;
    c.query_drop(format!("USE customer; {SHARDED_DDL}")).await?;
    c.query_drop(format!("USE commerce; {UNSHARDED_DDL}"))
        .await?;
    c.disconnect().await?;
    Ok(())
}

fn reference_opts(reference: &TestMysqld) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::from_opts(reference.endpoint().opts()).db_name(Some(SHARDED))
}

/// Runs the generated statements; returns the oracle with its findings.
async fn drive(seed: u64, reference: Side, gate: Side, loads: &[String]) -> Oracle {
    let mut o = Oracle {
        seed,
        reference,
        gate,
        executed: 0,
        by_kind: BTreeMap::new(),
        mismatches: Vec::new(),
        diverged: false,
    };
    // The same initial rows on both sides, loaded through the gate.
    for l in loads {
        let q = Q::write(l.clone(), vec![]);
        o.check("load", &q).await;
    }
    let mut g = Gen::new(seed ^ 0x5eed);
    // The generator's model must match what was loaded.
    let _ = initial_data(&mut g);
    let target = query_count();
    let started = Instant::now();
    while o.executed < target && !o.diverged {
        let (label, qs) = g.step();
        for q in &qs {
            o.check(label, q).await;
        }
    }
    // Whatever happened, the final contents must agree.
    for q in [
        full_items(),
        full_events(),
        Q::read(
            "SELECT * FROM commerce.products ORDER BY pid",
            vec![],
            Order::Exact,
        ),
    ] {
        o.check("final contents", &q).await;
    }
    eprintln!(
        "oracle: seed {seed}: {} statements in {:.1?}: {:?}",
        o.executed,
        started.elapsed(),
        o.by_kind
    );
    o
}

fn report(o: &Oracle) {
    assert!(
        o.mismatches.is_empty(),
        "seed {}: {} mismatch(es) between the reference and the gate{}:\n\n{}",
        o.seed,
        o.mismatches.len(),
        if o.diverged {
            " (stopped: the data diverged or the gate failed)"
        } else {
            ""
        },
        o.mismatches.join("\n\n")
    );
}

/// Every row of the sharded tables is on the shard its keyspace id names.
async fn check_placement(cluster: &TestCluster) -> anyhow::Result<usize> {
    let hash = keyshift_vindex::new_vindex("hash", &BTreeMap::new())?;
    let mut total = 0;
    for s in &cluster.shards {
        let range = keyshift_types::KeyRange::parse(&s.shard)?;
        let mut c = s.conn().await?;
        for (table, col) in [("items", "id"), ("events", "cid")] {
            let keys: Vec<i64> = c.query(format!("SELECT {col} FROM {table}")).await?;
            total += keys.len();
            for k in keys {
                let ksid = hash.map(&keyshift_vindex::Value::Int(k))?;
                assert!(
                    range.contains(ksid.as_bytes()),
                    "{table} row with {col} = {k} (keyspace id {}) is on shard {}",
                    hex(ksid.as_bytes()),
                    s.shard
                );
            }
        }
        c.disconnect().await?;
    }
    Ok(total)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oracle_sharded_gate_equals_plain_mariadb() -> anyhow::Result<()> {
    let seed = seed();
    eprintln!("oracle: seed {seed} (rerun with ORACLE_SEED={seed})");
    let (cluster, reference) = tokio::join!(TestCluster::start(SHARDS), TestMysqld::start());
    let (cluster, reference) = (cluster?, reference?);
    cluster.on_shards(SHARDED_DDL).await?;
    cluster.unsharded.exec(UNSHARDED_DDL).await?;
    reference_schema(&reference).await?;
    cluster.apply_vschema(UNSHARDED, COMMERCE_VSCHEMA).await?;
    cluster.apply_vschema(SHARDED, CUSTOMER_VSCHEMA).await?;

    let loads = initial_data(&mut Gen::new(seed ^ 0x5eed));
    let ref_side = Side::open(reference_opts(&reference)).await?;
    let gate_side = Side::open(cluster.gate_opts(Some(SHARDED))).await?;
    let o = drive(seed, ref_side, gate_side, &loads).await;
    report(&o);
    let placed = check_placement(&cluster).await?;
    eprintln!("oracle: {placed} rows checked on their shards");
    Ok(())
}

/// Statements the router refuses by design answer 1105 with a message that
/// names the table (and the generator above never writes them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_statements_get_1105_naming_the_table() -> anyhow::Result<()> {
    let cluster = TestCluster::start(&["-80", "80-"]).await?;
    cluster.on_shards(SHARDED_DDL).await?;
    cluster.unsharded.exec(UNSHARDED_DDL).await?;
    cluster.apply_vschema(UNSHARDED, COMMERCE_VSCHEMA).await?;
    cluster.apply_vschema(SHARDED, CUSTOMER_VSCHEMA).await?;
    let mut c = cluster.gate_conn(Some(SHARDED)).await?;
    let cases: &[(&str, &str)] = &[
        ("SELECT COUNT(DISTINCT grp) FROM items", "items"),
        ("SELECT GROUP_CONCAT(name) FROM items", "items"),
        (
            "SELECT grp, COUNT(*) FROM items GROUP BY grp HAVING COUNT(*) > 1",
            "items",
        ),
        (
            "SELECT id FROM items WHERE id IN (SELECT cid FROM events)",
            "events",
        ),
        (
            "SELECT i.id FROM items i JOIN events e ON i.grp = e.val",
            "items",
        ),
        ("UPDATE items SET id = 5 WHERE id = 3", "items"),
        ("INSERT INTO items (grp, name) VALUES (1, 'x')", "items"),
        ("DELETE FROM items WHERE grp = 1 LIMIT 1", "items"),
        (
            "INSERT INTO items (id, grp, name, price, created) SELECT cid, 1, kind, amount, at FROM events",
            "items",
        ),
    ];
    let mut failures = Vec::new();
    for (sql, table) in cases {
        for prepared in [false, true] {
            let r = if prepared {
                c.exec_drop(*sql, ()).await
            } else {
                c.query_drop(*sql).await
            };
            match r {
                Err(mysql_async::Error::Server(e))
                    if e.code == 1105 && e.message.contains(table) => {}
                other => failures.push(format!(
                    "{} {sql}: expected error 1105 naming `{table}`, got {other:?}",
                    if prepared { "prepared" } else { "text" }
                )),
            }
        }
    }
    // Not refusals but bad input, which must keep MySQL's codes.
    for (sql, code) in [
        ("SELECT * FROM no_such_table", 1146u16),
        ("SELECT * FROM no_such_keyspace.items", 1049),
        ("SELEC id FROM items", 1064),
    ] {
        match c.query_drop(sql).await {
            Err(mysql_async::Error::Server(e)) if e.code == code => {}
            other => failures.push(format!("{sql}: expected error {code}, got {other:?}")),
        }
    }
    // The connection is still usable afterwards.
    let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM items").await?;
    assert_eq!(n, Some(0));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// The generator against two plain servers: any "mismatch" here is
/// nondeterminism in the generator's own queries, not a gate bug. Run it
/// after changing the generator:
/// `cargo test -p keyshift-gate --test oracle -- --ignored generator`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn generator_is_deterministic_on_plain_mariadb() -> anyhow::Result<()> {
    let seed = seed();
    eprintln!("oracle self-check: seed {seed}");
    let (a, b) = tokio::join!(TestMysqld::start(), TestMysqld::start());
    let (a, b) = (a?, b?);
    reference_schema(&a).await?;
    reference_schema(&b).await?;
    let loads = initial_data(&mut Gen::new(seed ^ 0x5eed));
    let sa = Side::open(reference_opts(&a)).await?;
    let sb = Side::open(reference_opts(&b)).await?;
    let o = drive(seed, sa, sb, &loads).await;
    report(&o);
    Ok(())
}

/// Regressions found by the oracle's author: SELECT modifiers on scatter
/// queries, `UPDATE ... ORDER BY ... LIMIT` on a sharded table, and merges
/// of accented text under `utf8mb4_general_ci` (`Émile` = `emile`, `Zoë` =
/// `zoe`), each against one plain MariaDB, text and prepared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modifiers_update_limit_and_accents_match_one_mariadb() -> anyhow::Result<()> {
    let (cluster, reference) = tokio::join!(TestCluster::start(SHARDS), TestMysqld::start());
    let (cluster, reference) = (cluster?, reference?);
    cluster.on_shards(SHARDED_DDL).await?;
    cluster.unsharded.exec(UNSHARDED_DDL).await?;
    reference_schema(&reference).await?;
    cluster.apply_vschema(UNSHARDED, COMMERCE_VSCHEMA).await?;
    cluster.apply_vschema(SHARDED, CUSTOMER_VSCHEMA).await?;
    let mut r = Conn::new(reference_opts(&reference)).await?;
    let mut g = cluster.gate_conn(Some(SHARDED)).await?;
    let names = [
        "Émile", "emile", "Zoë", "zoe", "zoe ", "alpha", "Éa", "eb", "ZOË", "omega",
    ];
    for (i, n) in names.iter().enumerate() {
        let sql = format!(
            "INSERT INTO items (id, grp, name, price, qty, created) VALUES ({}, {}, '{n}', 1.00, {i}, '2024-01-01 00:00:00')",
            i + 1,
            i % 3
        );
        r.query_drop(&sql).await?;
        g.query_drop(&sql).await?;
        let sql = format!(
            "INSERT INTO events (cid, seq, kind, val, amount, at) VALUES ({}, 1, 'k', 1, 1, '2024-01-01 00:00:00')",
            i + 1
        );
        r.query_drop(&sql).await?;
        g.query_drop(&sql).await?;
    }
    // Exact order: ties broken by the primary key.
    let exact = [
        "SELECT SQL_NO_CACHE id FROM items ORDER BY id",
        "SELECT HIGH_PRIORITY SQL_BUFFER_RESULT id, name FROM items ORDER BY id LIMIT 3, 4",
        "SELECT SQL_SMALL_RESULT grp FROM items GROUP BY grp ORDER BY grp",
        "SELECT SQL_BIG_RESULT DISTINCTROW grp FROM items ORDER BY grp",
        "SELECT STRAIGHT_JOIN i.id FROM items i JOIN events e ON i.id = e.cid ORDER BY i.id",
        "SELECT SQL_CALC_FOUND_ROWS id FROM items WHERE id = 3",
        "SELECT id FROM items ORDER BY name, id",
        "SELECT id FROM items ORDER BY name DESC, id",
        "SELECT COUNT(*) FROM items GROUP BY name ORDER BY COUNT(*)",
    ];
    // Which case or accent variant MariaDB returns is not specified: only
    // compare the number of rows.
    let counted = [
        "SELECT DISTINCT name FROM items",
        "SELECT name, COUNT(*) FROM items GROUP BY name",
        "SELECT MIN(name), MAX(name) FROM items",
    ];
    let mut failures = Vec::new();
    for prepared in [false, true] {
        for sql in exact.iter().chain(counted.iter()) {
            let q = Q {
                prepared,
                ..Q::read(*sql, vec![], Order::Exact)
            };
            let (a, b) = (run_one(&mut r, &q).await, run_one(&mut g, &q).await);
            let ok = match (&a.outcome, &b.outcome) {
                (Outcome::Rows { rows: x, .. }, Outcome::Rows { rows: y, .. })
                    if counted.contains(sql) =>
                {
                    x.len() == y.len()
                }
                _ => same(&q, &a.outcome, &b.outcome),
            };
            if !ok {
                failures.push(format!(
                    "{} {sql}:\n    reference: {}\n    gate:      {}",
                    if prepared { "prepared" } else { "text" },
                    show(&a),
                    show(&b)
                ));
            }
        }
        // MIN/MAX fold accents: the extremes are `alpha` and a `zoe`.
        let q = Q {
            prepared,
            ..Q::read(
                "SELECT MIN(name), MAX(name) FROM items",
                vec![],
                Order::Exact,
            )
        };
        match run_one(&mut g, &q).await.outcome {
            Outcome::Rows { rows, .. }
                if rows.len() == 1
                    && rows[0][0] == "alpha"
                    && fold(&rows[0][1]).starts_with("zo") => {}
            other => failures.push(format!("MIN/MAX: {other:?}")),
        }
        // Refusals: 1105 naming the table, not 1064.
        for (sql, needle) in [
            (
                "UPDATE items SET qty = qty + 1 ORDER BY id LIMIT 2",
                "items",
            ),
            ("SELECT SQL_CALC_FOUND_ROWS id FROM items", "FOUND_ROWS()"),
        ] {
            let res = if prepared {
                g.exec_drop(sql, ()).await
            } else {
                g.query_drop(sql).await
            };
            match res {
                Err(mysql_async::Error::Server(e))
                    if e.code == 1105 && e.message.contains(needle) => {}
                other => failures.push(format!("{sql}: expected 1105, got {other:?}")),
            }
        }
    }
    // Pinned to one shard, UPDATE ... ORDER BY ... LIMIT passes through.
    let sql = "UPDATE items SET qty = qty + 1 WHERE id = 4 ORDER BY id LIMIT 1";
    r.query_drop(sql).await?;
    g.query_drop(sql).await?;
    let q = Q::read(
        "SELECT id, qty FROM items ORDER BY id",
        vec![],
        Order::Exact,
    );
    let (a, b) = (run_one(&mut r, &q).await, run_one(&mut g, &q).await);
    if !same(&q, &a.outcome, &b.outcome) {
        failures.push(format!("after UPDATE: {} vs {}", show(&a), show(&b)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
