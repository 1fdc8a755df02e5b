//! Writing copied rows with `LOAD DATA LOCAL INFILE`.
//!
//! Why: the copy's cost is mostly the target's CPU, and a target parses and
//! stores a batch sent as `LOAD DATA` text with less CPU than the same rows
//! as multi-row `INSERT ... VALUES`: about 11% less for a stream of 1M
//! sysbench rows (10k per batch, all or half of them in range) into MariaDB
//! 10.11, where the SQL lexer and parser give way to `LOAD DATA`'s field
//! reader, itself byte by byte. The node saves too (6–21%): character data
//! travels as escaped bytes instead of hex, half the size.
//!
//! # The transaction
//!
//! A batch commits as one target transaction holding its rows, its
//! progress row and the stream position, exactly as with INSERTs (crash
//! safety, see the parent module): `START TRANSACTION; LOAD DATA ...` is
//! sent as one query, during which the server asks for the data and the
//! driver streams it from the connection's one-shot infile handler; a
//! second query carries the progress, the position and `COMMIT`. The LOAD
//! is the last statement of the first query so that the driver's "affected
//! rows" is its own, which is checked before committing (see below). That
//! is three round trips (the server's request for the data is one) where
//! an INSERT batch takes one or two: nothing next to thousands of rows per
//! batch, and the next batch is read from the source meanwhile.
//!
//! # Duplicates
//!
//! A `LOCAL` load cannot stop the client's upload midway, so the server
//! treats it as `IGNORE`: a row whose key already exists is skipped with a
//! warning instead of failing the statement. The copy relies on a doubled
//! row failing loudly (the parent module's "one more hazard"), so the
//! number of rows stored is compared with the number sent, and a shortfall
//! rolls the batch back and stops the stream with [`StreamError::Row`].
//!
//! # Refusal
//!
//! A server may refuse local loads (`local_infile = 0`: MariaDB error 4166,
//! or 1148 in older versions; MySQL 8's 3948, the default there). Then the
//! open transaction is rolled back and the caller retries the batch as
//! INSERTs, which it uses for the rest of the stream's life
//! ([`Written::Refused`]).
//!
//! # Format
//!
//! The statement spells out the default text format, so no server default
//! can change it: fields separated by tab, lines ended by newline, no
//! enclosing quotes, backslash escapes, and `CHARACTER SET binary`, so the
//! server takes every field's bytes as they are (as the INSERT path's hex
//! literals do) and unescapes byte by byte. Each value is written by
//! [`Value::write_load_field`]; ENUM, SET and BIT columns go through a user
//! variable and `CAST(... AS UNSIGNED)`, since the text of a number would
//! be read as a member name or as bytes. Generated columns are left out
//! of the column list and computed by the target.

use std::fmt::Write as _;

use futures::StreamExt;
use keyshift_types::Position;
use mysql_async::prelude::Queryable;
use tokio_util::bytes::Bytes;

use crate::value::Value;

use super::schema::{ColKind, TablePlan, ident};
use super::sidecar::position_sql;
use super::{Ctx, StreamError, StreamState};

/// Bytes of `LOAD DATA` text per packet sent. The server reads each
/// packet whole, and one larger than its max_allowed_packet (16 MiB by
/// default) fails the load; small enough to stay far below it, large
/// enough that packets cost nothing.
const LOAD_CHUNK_BYTES: usize = 1 << 20;

/// Server errors meaning "no local loads here": MariaDB 10.5.2+
/// `ER_LOAD_INFILE_CAPABILITY_DISABLED`, the older
/// `ER_NOT_ALLOWED_COMMAND`, and MySQL 8's
/// `ER_CLIENT_LOCAL_FILES_DISABLED`.
const REFUSED_CODES: &[u16] = &[4166, 1148, 3948];

/// Whether `e` is the target refusing `LOAD DATA LOCAL`.
pub(super) fn refused(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if REFUSED_CODES.contains(&s.code))
}

/// The `LOAD DATA` statement for `plan`'s table in `target_db`, reading
/// the text [`LoadWriter`] writes. `None` when the table has no column to
/// write (all generated), which only INSERTs can express.
pub(super) fn load_statement(target_db: &str, plan: &TablePlan) -> Option<String> {
    let mut cols = String::new();
    let mut sets = String::new();
    for (i, c) in plan.columns.iter().enumerate() {
        if c.generated {
            continue;
        }
        if !cols.is_empty() {
            cols.push_str(", ");
        }
        if needs_cast(c.kind) {
            // `@` variables are named by the column's position, so any
            // column name works.
            let _ = write!(cols, "@c{i}");
            sets.push_str(if sets.is_empty() { " SET " } else { ", " });
            let _ = write!(sets, "{} = CAST(@c{i} AS UNSIGNED)", ident(&c.name));
        } else {
            cols.push_str(&ident(&c.name));
        }
    }
    if cols.is_empty() {
        return None;
    }
    Some(format!(
        "LOAD DATA LOCAL INFILE 'keyshift-copy' INTO TABLE {}.{} CHARACTER SET binary \
         FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' \
         LINES STARTING BY '' TERMINATED BY '\\n' ({cols}){sets}",
        ident(target_db),
        ident(&plan.name)
    ))
}

/// ENUM, SET and BIT: the field is a number to cast, not text to store.
fn needs_cast(kind: ColKind) -> bool {
    matches!(kind, ColKind::Enum | ColKind::Set | ColKind::Bit)
}

/// How a column's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Generated: not written.
    Skip,
    Plain,
    /// YEAR, which the copy reads as an integer: four digits (see
    /// [`Value::write_load_field`]).
    Year,
}

/// Renders a batch of rows as `LOAD DATA` text for [`load_statement`].
pub(super) struct LoadWriter {
    /// Per column of the plan.
    fields: Vec<Field>,
    buf: Vec<u8>,
    chunks: Vec<Bytes>,
    rows: u64,
}

/// One batch's rows, ready to load.
pub(super) struct LoadBatch {
    pub sql: String,
    /// The text, in packets of about [`LOAD_CHUNK_BYTES`].
    pub chunks: Vec<Bytes>,
    pub rows: u64,
}

impl LoadWriter {
    pub(super) fn new(plan: &TablePlan) -> Self {
        let fields = plan
            .columns
            .iter()
            .map(|c| {
                if c.generated {
                    Field::Skip
                } else if c.kind == ColKind::Year {
                    Field::Year
                } else {
                    Field::Plain
                }
            })
            .collect();
        LoadWriter {
            fields,
            buf: Vec::new(),
            chunks: Vec::new(),
            rows: 0,
        }
    }

    /// Appends one row (all of the plan's columns, in order).
    pub(super) fn row(&mut self, values: &[Value]) {
        if self.buf.capacity() == 0 {
            // Room for a chunk and the row that overflows it.
            self.buf.reserve(LOAD_CHUNK_BYTES + LOAD_CHUNK_BYTES / 8);
        }
        let mut first = true;
        for (v, f) in values.iter().zip(&self.fields) {
            if *f == Field::Skip {
                continue;
            }
            if !first {
                self.buf.push(b'\t');
            }
            first = false;
            match (f, v) {
                (Field::Year, Value::Int(y)) if (0..=9999).contains(y) => {
                    Value::Year(*y as u16).write_load_field(&mut self.buf);
                }
                (Field::Year, Value::UInt(y)) if *y <= 9999 => {
                    Value::Year(*y as u16).write_load_field(&mut self.buf);
                }
                _ => v.write_load_field(&mut self.buf),
            }
        }
        self.buf.push(b'\n');
        self.rows += 1;
        if self.buf.len() >= LOAD_CHUNK_BYTES {
            self.cut();
        }
    }

    /// Moves the buffer into `chunks`, in packets of at most
    /// [`LOAD_CHUNK_BYTES`] (a row with large values may overflow one; the
    /// stream has no row boundaries, so it is simply split).
    fn cut(&mut self) {
        let mut b = Bytes::from(std::mem::take(&mut self.buf));
        while b.len() > LOAD_CHUNK_BYTES {
            self.chunks.push(b.split_to(LOAD_CHUNK_BYTES));
        }
        if !b.is_empty() {
            self.chunks.push(b);
        }
    }

    pub(super) fn finish(mut self, sql: String) -> LoadBatch {
        if !self.buf.is_empty() {
            self.cut();
        }
        LoadBatch {
            sql,
            chunks: self.chunks,
            rows: self.rows,
        }
    }
}

/// How a batch sent with [`Ctx::commit_load`] ended, when not in error.
pub(super) enum Written {
    Committed,
    /// The target refuses local loads (the error says how); nothing was
    /// written and the transaction is rolled back.
    Refused(mysql_async::Error),
}

/// The end of every stream commit: `extra` progress statements, the
/// stream's new position (with `applied` more source transactions and
/// `state`) and `COMMIT`, as one multi-statement text.
pub(super) fn commit_tail(
    id: u64,
    position: &Position,
    applied: u64,
    state: StreamState,
    extra: &[String],
) -> String {
    let mut tail = String::with_capacity(512);
    for e in extra {
        tail.push_str(e);
        tail.push_str(";\n");
    }
    tail.push_str(&position_sql(id, position, applied, state.as_str()));
    tail.push_str(";\nCOMMIT");
    tail
}

impl Ctx<'_> {
    /// Commits `load` (rows of `table`) with the stream's new position and
    /// `extra` progress statements in ONE target transaction, like
    /// [`Ctx::commit`], then updates the in-memory mirror. On any error
    /// nothing is committed: a refusal or a row-count shortfall rolls back
    /// here (the connection stays usable); any other error ends the stream,
    /// which drops the connection and with it the transaction.
    pub(super) async fn commit_load(
        &mut self,
        table: &str,
        load: LoadBatch,
        position: &Position,
        state: StreamState,
        extra: &[String],
    ) -> Result<Written, StreamError> {
        if load.rows == 0 {
            self.commit(Vec::new(), position, 0, state, extra).await?;
            return Ok(Written::Committed);
        }
        let tail = commit_tail(self.spec.id, position, 0, state, extra);
        let endpoint = super::endpoint_name(&self.spec.target);
        let w = load_and_commit(&mut self.target, &endpoint, table, load, tail).await?;
        if matches!(w, Written::Committed) {
            self.stored.position = Some(position.clone());
        }
        Ok(w)
    }
}

/// `START TRANSACTION`, the `LOAD DATA` of `load` (rows of `table`) on
/// `conn`, checked, then `tail` (which ends with `COMMIT`). See
/// [`Ctx::commit_load`] for what each failure leaves behind.
pub(super) async fn load_and_commit(
    conn: &mut mysql_async::Conn,
    endpoint: &str,
    table: &str,
    load: LoadBatch,
    tail: String,
) -> Result<Written, StreamError> {
    let tgt_err = |during: &'static str| {
        let endpoint = endpoint.to_string();
        move |err| StreamError::Target {
            endpoint,
            during,
            err,
        }
    };
    let LoadBatch { sql, chunks, rows } = load;
    // Consumed by the LOAD's request for data. The future holds only
    // the chunks until then (it must be Sync; a boxed stream is not).
    conn.set_infile_handler(async move {
        Ok(futures::stream::iter(chunks.into_iter().map(Ok)).boxed())
    });
    if let Err(e) = conn.query_drop(format!("START TRANSACTION;\n{sql}")).await {
        if !refused(&e) {
            return Err(tgt_err("loading copied rows")(e));
        }
        // The server refused before asking for data: the handler still
        // holds the batch, and the transaction START TRANSACTION opened
        // is still open.
        conn.set_infile_handler(async { Ok(futures::stream::empty().boxed()) });
        conn.query_drop("ROLLBACK")
            .await
            .map_err(tgt_err("rolling back a refused LOAD DATA"))?;
        return Ok(Written::Refused(e));
    }
    let stored = conn.affected_rows();
    if stored != rows {
        let info = conn.info().into_owned();
        // Best effort: the stream ends with the error below and drops
        // the connection, which rolls back anyway.
        let _ = conn.query_drop("ROLLBACK").await;
        return Err(StreamError::Row {
            table: table.to_string(),
            detail: format!(
                "LOAD DATA stored {stored} of {rows} copied rows ({info}); a LOCAL load \
                 skips rows whose key already exists on the target instead of failing, \
                 so the target held rows the copy had not written"
            ),
        });
    }
    // The IGNORE a LOCAL load implies also turns what strict mode makes
    // errors for an INSERT (a value truncated or converted to fit the
    // target's column) into warnings: any warning fails the batch, so
    // a copy never stores a value other than the source's.
    let warnings = conn.get_warnings();
    if warnings > 0 {
        let shown: Vec<(String, u32, String)> = conn
            .query("SHOW WARNINGS LIMIT 3")
            .await
            .unwrap_or_default();
        let _ = conn.query_drop("ROLLBACK").await;
        let shown: Vec<String> = shown
            .into_iter()
            .map(|(level, code, msg)| format!("{level} {code}: {msg}"))
            .collect();
        return Err(StreamError::Row {
            table: table.to_string(),
            detail: format!(
                "LOAD DATA of copied rows reported {warnings} warning(s), so a value may \
                 not have been stored as the source holds it (does the target's table \
                 differ from the source's?): {}",
                shown.join("; ")
            ),
        });
    }
    conn.query_drop(tail)
        .await
        .map_err(tgt_err("committing copied rows"))?;
    Ok(Written::Committed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::schema::Column;

    fn field(v: &Value) -> String {
        let mut out = Vec::new();
        v.write_load_field(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn fields_escape_and_match_literals() {
        assert_eq!(field(&Value::Null), "\\N");
        assert_eq!(field(&Value::Text(Vec::new())), "");
        assert_eq!(field(&Value::Text(b"\\N".to_vec())), "\\\\N");
        assert_eq!(
            field(&Value::Bytes(b"a\tb\nc\\d\0e\rf".to_vec())),
            "a\\tb\\nc\\\\d\\0e\\rf"
        );
        assert_eq!(field(&Value::Text("trail  ".into())), "trail  ");
        assert_eq!(field(&Value::Year(0)), "0000");
        assert_eq!(field(&Value::Bit(u64::MAX)), "18446744073709551615");
        assert_eq!(field(&Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(
            field(&Value::Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 58,
                micros: 999_999
            }),
            "-838:59:58.999999"
        );
        assert_eq!(
            field(&Value::Timestamp { secs: 0, micros: 0 }),
            "0000-00-00 00:00:00"
        );
        // Numbers and temporal values: the SQL literal without quotes.
        for v in [
            Value::Float(0.1),
            Value::Double(-2.2250738585072014e-308),
            Value::Decimal("-12.340".into()),
            Value::UInt(u64::MAX),
            Value::Date {
                year: 0,
                month: 0,
                day: 0,
            },
            Value::DateTime {
                year: 2024,
                month: 1,
                day: 2,
                hour: 3,
                minute: 4,
                second: 5,
                micros: 6,
            },
            Value::Timestamp {
                secs: 951_782_400,
                micros: 5,
            },
            Value::Enum(2),
            Value::Set(5),
        ] {
            assert_eq!(field(&v), v.to_sql_literal().trim_matches('\''), "{v:?}");
        }
    }

    fn plan() -> TablePlan {
        let col = |name: &str, kind, generated| Column {
            name: name.into(),
            kind,
            charset: None,
            collation: None,
            generated,
        };
        TablePlan {
            name: "t`x".into(),
            columns: vec![
                col("id", ColKind::Integer, false),
                col("y", ColKind::Year, false),
                col("e", ColKind::Enum, false),
                col("g", ColKind::Integer, true),
                col("b", ColKind::Bit, false),
                col("s", ColKind::Text, false),
            ],
            pk: vec![0],
            vindex: None,
        }
    }

    #[test]
    fn statement_and_rows() {
        let p = plan();
        assert_eq!(
            load_statement("db", &p).unwrap(),
            "LOAD DATA LOCAL INFILE 'keyshift-copy' INTO TABLE `db`.`t``x` CHARACTER SET binary \
             FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' \
             LINES STARTING BY '' TERMINATED BY '\\n' (`id`, `y`, @c2, @c4, `s`) \
             SET `e` = CAST(@c2 AS UNSIGNED), `b` = CAST(@c4 AS UNSIGNED)"
        );
        let mut w = LoadWriter::new(&p);
        w.row(&[
            Value::Int(1),
            Value::Int(0),
            Value::Enum(1),
            Value::Int(99),
            Value::Bit(1),
            Value::Text(b"x\ty".to_vec()),
        ]);
        w.row(&[
            Value::Int(2),
            Value::UInt(1901),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Text(Vec::new()),
        ]);
        let b = w.finish(String::new());
        assert_eq!(b.rows, 2);
        let text: Vec<u8> = b.chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(text, b"1\t0000\t1\t1\tx\\ty\n2\t1901\t\\N\t\\N\t\n");
        let all_generated = TablePlan {
            columns: vec![Column {
                generated: true,
                ..p.columns[0].clone()
            }],
            ..p
        };
        assert!(load_statement("db", &all_generated).is_none());
    }

    #[test]
    fn large_rows_split_into_packets() {
        let p = TablePlan {
            columns: vec![plan().columns[5].clone()],
            ..plan()
        };
        let mut w = LoadWriter::new(&p);
        let big = vec![b'a'; LOAD_CHUNK_BYTES * 2 + 10];
        w.row(&[Value::Bytes(big.clone())]);
        w.row(&[Value::Bytes(b"z".to_vec())]);
        let b = w.finish(String::new());
        assert!(b.chunks.iter().all(|c| c.len() <= LOAD_CHUNK_BYTES));
        let text: Vec<u8> = b.chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let mut want = big;
        want.extend_from_slice(b"\nz\n");
        assert_eq!(text, want);
    }
}
