//! The k-way merge: every source shard's and every target shard's rows of
//! one table, each stream in key order, merged into one pass over the
//! union of keys.
//!
//! Each stream arrives as batches through a bounded channel (the readers
//! prefetch at most a batch or two ahead), so memory is bounded by
//! shards × batch size whatever the table's size. At each step the merge
//! takes the smallest key among the streams' heads, pops every head with
//! that key, and classifies what it got:
//!
//! * no target row on the shard the key belongs to → missing (unless the
//!   row sits on a wrong shard, which is reported as misplaced instead);
//! * target rows but no source row → extra;
//! * both → matching, or mismatched with the differing columns;
//! * every target row on a shard whose key range does not contain its
//!   keyspace id → misplaced;
//! * a second copy on the right shard → extra.

use crate::compare::{cmp_key, differing_columns, display};
use crate::record::{ColumnDiff, DiffKind, KeyValue, Sample, TableReport};
use crate::schema::TablePlan;
use mysql_async::Value;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Values shown in samples are cut to this many characters.
const SAMPLE_VALUE_CHARS: usize = 64;

/// How many keys between two progress publications (at most).
const PUBLISH_EVERY: u64 = 2048;

/// One row as read: the select list's values (columns, then weight
/// strings) and, for target rows, whether its shard is the one its
/// keyspace id belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub values: Vec<Value>,
    pub placed: bool,
}

/// A batch of rows in key order, or why the stream failed.
pub type Batch = Result<Vec<Row>, String>;

/// The streams of one table: (shard name, batches).
pub struct Input {
    pub sources: Vec<(String, mpsc::Receiver<Batch>)>,
    pub targets: Vec<(String, mpsc::Receiver<Batch>)>,
}

#[derive(Debug, Clone)]
pub struct MergeOptions {
    pub max_samples: usize,
    pub max_rows_per_second: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every stream ended: the table is compared.
    Done,
    /// Cancelled; the last publication says how far it got.
    Cancelled,
}

struct Cursor {
    shard: String,
    rx: mpsc::Receiver<Batch>,
    buf: VecDeque<Row>,
    ended: bool,
}

impl Cursor {
    fn new(shard: String, rx: mpsc::Receiver<Batch>) -> Cursor {
        Cursor {
            shard,
            rx,
            buf: VecDeque::new(),
            ended: false,
        }
    }

    /// Makes sure the head is there unless the stream ended.
    async fn fill(&mut self) -> Result<(), String> {
        while self.buf.is_empty() && !self.ended {
            match self.rx.recv().await {
                Some(Ok(rows)) => self.buf = VecDeque::from(rows),
                Some(Err(e)) => return Err(format!("shard {}: {e}", self.shard)),
                None => self.ended = true,
            }
        }
        Ok(())
    }

    fn head(&self) -> Option<&Row> {
        self.buf.front()
    }
}

/// Merges `input` into `report` (which may carry counts from before a
/// resume). Hands the report with its `last_key` to `progress` every few
/// thousand keys and at the end; a published report always counts exactly
/// the keys up to its `last_key`, so it is what may be persisted.
pub async fn merge(
    plan: &TablePlan,
    input: Input,
    report: &mut TableReport,
    opts: &MergeOptions,
    progress: &(dyn Fn(&TableReport) + Send + Sync),
    cancel: &CancellationToken,
) -> Result<Outcome, String> {
    let mut sources: Vec<Cursor> = input
        .sources
        .into_iter()
        .map(|(s, rx)| Cursor::new(s, rx))
        .collect();
    let mut targets: Vec<Cursor> = input
        .targets
        .into_iter()
        .map(|(s, rx)| Cursor::new(s, rx))
        .collect();
    let started = Instant::now();
    let mut compared_now: u64 = 0;
    let mut last_key: Option<Vec<Value>> = None;
    let every = match opts.max_rows_per_second {
        Some(r) if r > 0 => (r / 20).clamp(1, PUBLISH_EVERY),
        _ => PUBLISH_EVERY,
    };
    loop {
        if cancel.is_cancelled() {
            return Ok(Outcome::Cancelled);
        }
        for c in sources.iter_mut().chain(targets.iter_mut()) {
            c.fill().await?;
        }
        // The smallest head.
        let mut min: Option<&Row> = None;
        for c in sources.iter().chain(targets.iter()) {
            if let Some(h) = c.head()
                && min.is_none_or(|m| cmp_key(plan, &h.values, &m.values) == Ordering::Less)
            {
                min = Some(h);
            }
        }
        let Some(min) = min else {
            break;
        };
        let min = min.values.clone();
        let mut src_rows: Vec<Row> = Vec::new();
        for c in sources.iter_mut() {
            if c.head()
                .is_some_and(|h| cmp_key(plan, &h.values, &min) == Ordering::Equal)
                && let Some(r) = c.buf.pop_front()
            {
                src_rows.push(r);
            }
        }
        let mut tgt_rows: Vec<(usize, Row)> = Vec::new();
        for (i, c) in targets.iter_mut().enumerate() {
            if c.head()
                .is_some_and(|h| cmp_key(plan, &h.values, &min) == Ordering::Equal)
                && let Some(r) = c.buf.pop_front()
            {
                tgt_rows.push((i, r));
            }
        }
        let shard_names: Vec<&str> = targets.iter().map(|c| c.shard.as_str()).collect();
        classify(plan, report, opts, &shard_names, &min, src_rows, tgt_rows);
        last_key = Some(plan.pk.iter().map(|&i| min[i].clone()).collect());
        compared_now += 1;
        if compared_now.is_multiple_of(every) {
            publish(report, &last_key, progress);
            if let Some(rate) = opts.max_rows_per_second.filter(|r| *r > 0) {
                let due = Duration::from_secs_f64(compared_now as f64 / rate as f64);
                let spent = started.elapsed();
                if due > spent {
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(Outcome::Cancelled),
                        _ = tokio::time::sleep(due - spent) => {}
                    }
                }
            }
        }
    }
    publish(report, &last_key, progress);
    Ok(Outcome::Done)
}

fn publish(
    report: &mut TableReport,
    last_key: &Option<Vec<Value>>,
    progress: &(dyn Fn(&TableReport) + Send + Sync),
) {
    if let Some(k) = last_key {
        report.last_key = Some(k.iter().map(KeyValue::from_wire).collect());
    }
    progress(report);
}

fn key_text(plan: &TablePlan, values: &[Value]) -> Vec<String> {
    plan.pk
        .iter()
        .map(|&i| {
            values
                .get(i)
                .map_or_else(|| "?".into(), |v| display(v, SAMPLE_VALUE_CHARS))
        })
        .collect()
}

fn sample(report: &mut TableReport, max: usize, s: Sample) {
    let have = report.samples.iter().filter(|x| x.kind == s.kind).count();
    if have < max {
        report.samples.push(s);
    }
}

fn classify(
    plan: &TablePlan,
    report: &mut TableReport,
    opts: &MergeOptions,
    shards: &[&str],
    key: &[Value],
    src_rows: Vec<Row>,
    tgt_rows: Vec<(usize, Row)>,
) {
    report.rows_compared += 1;
    let max = opts.max_samples;
    let keyt = key_text(plan, key);
    let (placed, misplaced): (Vec<_>, Vec<_>) = tgt_rows.into_iter().partition(|(_, r)| r.placed);
    for (i, _) in &misplaced {
        report.count(DiffKind::Misplaced);
        sample(
            report,
            max,
            Sample {
                kind: DiffKind::Misplaced,
                key: keyt.clone(),
                shard: Some(shards[*i].to_string()),
                columns: Vec::new(),
                note: Some(format!(
                    "on shard {}, whose key range does not hold the row's keyspace id",
                    shards[*i]
                )),
            },
        );
    }
    let src = src_rows.into_iter().next();
    let mut placed = placed.into_iter();
    match (src, placed.next()) {
        (Some(s), Some((ti, t))) => {
            let diff = differing_columns(plan, &s.values, &t.values);
            if diff.is_empty() {
                report.matching += 1;
            } else {
                report.count(DiffKind::Mismatched);
                let columns = diff
                    .iter()
                    .map(|&c| ColumnDiff {
                        column: plan.columns[c].name.clone(),
                        source: s
                            .values
                            .get(c)
                            .map_or_else(String::new, |v| display(v, SAMPLE_VALUE_CHARS)),
                        target: t
                            .values
                            .get(c)
                            .map_or_else(String::new, |v| display(v, SAMPLE_VALUE_CHARS)),
                    })
                    .collect();
                sample(
                    report,
                    max,
                    Sample {
                        kind: DiffKind::Mismatched,
                        key: keyt.clone(),
                        shard: Some(shards[ti].to_string()),
                        columns,
                        note: None,
                    },
                );
            }
        }
        (Some(_), None) => {
            if misplaced.is_empty() {
                report.count(DiffKind::MissingOnTarget);
                sample(
                    report,
                    max,
                    Sample {
                        kind: DiffKind::MissingOnTarget,
                        key: keyt.clone(),
                        shard: None,
                        columns: Vec::new(),
                        note: None,
                    },
                );
            }
        }
        (None, Some((ti, _))) => {
            report.count(DiffKind::ExtraOnTarget);
            sample(
                report,
                max,
                Sample {
                    kind: DiffKind::ExtraOnTarget,
                    key: keyt.clone(),
                    shard: Some(shards[ti].to_string()),
                    columns: Vec::new(),
                    note: None,
                },
            );
        }
        (None, None) => {}
    }
    // A further copy on a shard the key belongs to (possible only with
    // overlapping target shards).
    for (ti, _) in placed {
        report.count(DiffKind::ExtraOnTarget);
        sample(
            report,
            max,
            Sample {
                kind: DiffKind::ExtraOnTarget,
                key: keyt.clone(),
                shard: Some(shards[ti].to_string()),
                columns: Vec::new(),
                note: Some("a second copy of the row on the target".into()),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TableState;
    use crate::schema::{Column, KeyOrder, Kind};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn int_plan() -> TablePlan {
        TablePlan {
            name: "t".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    kind: Kind::Integer,
                    charset: None,
                    collation: None,
                    nullable: true,
                },
                Column {
                    name: "v".into(),
                    kind: Kind::Text,
                    charset: None,
                    collation: None,
                    nullable: true,
                },
            ],
            pk: vec![0],
            order: vec![KeyOrder::Numeric],
            extras: 0,
        }
    }

    fn row(id: i64, v: &str) -> Row {
        Row {
            values: vec![Value::Int(id), Value::Bytes(v.as_bytes().to_vec())],
            placed: true,
        }
    }

    /// Feeds `rows` through a channel in batches of the given sizes
    /// (cycled), like a reader would.
    fn stream(rows: Vec<Row>, sizes: &[usize]) -> mpsc::Receiver<Batch> {
        let (tx, rx) = mpsc::channel(1);
        let sizes = sizes.to_vec();
        tokio::spawn(async move {
            let mut it = rows.into_iter().peekable();
            let mut k = 0;
            while it.peek().is_some() {
                let n = sizes[k % sizes.len()].max(1);
                k += 1;
                let batch: Vec<Row> = it.by_ref().take(n).collect();
                if tx.send(Ok(batch)).await.is_err() {
                    return;
                }
            }
        });
        rx
    }

    async fn run(
        plan: &TablePlan,
        sources: Vec<Vec<Row>>,
        targets: Vec<Vec<Row>>,
        sizes: &[usize],
    ) -> TableReport {
        let input = Input {
            sources: sources
                .into_iter()
                .enumerate()
                .map(|(i, r)| (format!("s{i}"), stream(r, sizes)))
                .collect(),
            targets: targets
                .into_iter()
                .enumerate()
                .map(|(i, r)| (format!("t{i}"), stream(r, sizes)))
                .collect(),
        };
        let mut report = TableReport::new("t");
        report.state = TableState::Running;
        let published = std::sync::Mutex::new(Vec::<u64>::new());
        let out = merge(
            plan,
            input,
            &mut report,
            &MergeOptions {
                max_samples: 10,
                max_rows_per_second: None,
            },
            &|r: &TableReport| published.lock().unwrap().push(r.rows_compared),
            &CancellationToken::new(),
        )
        .await
        .expect("merge");
        assert_eq!(out, Outcome::Done);
        let published = published.into_inner().unwrap();
        assert_eq!(
            published.last(),
            Some(&report.rows_compared),
            "the end is published"
        );
        assert!(published.windows(2).all(|w| w[0] <= w[1]));
        report
    }

    #[tokio::test]
    async fn uneven_shards_merge_in_key_order_and_match() {
        let plan = int_plan();
        // One source, three target shards of very different sizes (one
        // empty), batches of uneven sizes.
        let all: Vec<Row> = (1..=1000).map(|i| row(i, &format!("v{i}"))).collect();
        let t0: Vec<Row> = all
            .iter()
            .filter(|r| r.values[0] == Value::Int(7))
            .cloned()
            .collect();
        let t1: Vec<Row> = all
            .iter()
            .filter(|r| {
                r.values[0] != Value::Int(7) && matches!(r.values[0], Value::Int(i) if i % 5 == 0)
            })
            .cloned()
            .collect();
        let t2: Vec<Row> = all
            .iter()
            .filter(|r| {
                r.values[0] != Value::Int(7) && matches!(r.values[0], Value::Int(i) if i % 5 != 0)
            })
            .cloned()
            .collect();
        let rep = run(
            &plan,
            vec![all.clone()],
            vec![t0, t1, t2, vec![]],
            &[1, 7, 64, 3],
        )
        .await;
        assert_eq!(rep.rows_compared, 1000);
        assert_eq!(rep.matching, 1000);
        assert_eq!(rep.differences(), 0);
        assert_eq!(
            rep.last_key,
            Some(vec![KeyValue::Int(1000)]),
            "the last key is the largest"
        );
        // Two source shards too.
        let (s0, s1): (Vec<Row>, Vec<Row>) = all
            .iter()
            .cloned()
            .partition(|r| matches!(r.values[0], Value::Int(i) if i < 300));
        let rep = run(&plan, vec![s1, s0], vec![all.clone()], &[13]).await;
        assert_eq!((rep.rows_compared, rep.matching), (1000, 1000));
    }

    #[tokio::test]
    async fn each_kind_of_difference_is_reported_exactly() {
        let plan = int_plan();
        let src: Vec<Row> = (1..=100).map(|i| row(i, "x")).collect();
        let mut t_a: Vec<Row> = Vec::new();
        let mut t_b: Vec<Row> = Vec::new();
        for i in 1..=100 {
            let r = row(i, "x");
            match i {
                10 => {}                                    // missing
                20 => t_a.push(row(20, "changed")),         // mismatched
                30 => t_b.push(Row { placed: false, ..r }), // moved to the wrong shard
                40 => {
                    // right shard and a wrong-shard copy
                    t_a.push(r.clone());
                    t_b.push(Row { placed: false, ..r });
                }
                _ if i % 2 == 0 => t_a.push(r),
                _ => t_b.push(r),
            }
        }
        t_b.push(row(500, "extra"));
        let rep = run(&plan, vec![src], vec![t_a, t_b], &[5, 2]).await;
        assert_eq!(rep.rows_compared, 101);
        assert_eq!(rep.missing_on_target, 1);
        assert_eq!(rep.mismatched, 1);
        assert_eq!(rep.misplaced, 2);
        assert_eq!(rep.extra_on_target, 1);
        // 100 keys: 10 missing, 20 mismatched, 30 only misplaced; 40 matches.
        assert_eq!(rep.matching, 97);
        let by: BTreeMap<(DiffKind, Vec<String>), &Sample> = rep
            .samples
            .iter()
            .map(|s| ((s.kind, s.key.clone()), s))
            .collect();
        assert_eq!(by.len(), 5, "{:?}", rep.samples);
        assert!(by.contains_key(&(DiffKind::MissingOnTarget, vec!["10".to_string()])));
        let m = by[&(DiffKind::Mismatched, vec!["20".to_string()])];
        assert_eq!(
            m.columns,
            vec![ColumnDiff {
                column: "v".into(),
                source: "x".into(),
                target: "changed".into()
            }]
        );
        assert_eq!(m.shard.as_deref(), Some("t0"));
        assert_eq!(
            by[&(DiffKind::Misplaced, vec!["30".to_string()])]
                .shard
                .as_deref(),
            Some("t1")
        );
        assert!(by.contains_key(&(DiffKind::Misplaced, vec!["40".to_string()])));
        assert_eq!(
            by[&(DiffKind::ExtraOnTarget, vec!["500".to_string()])]
                .shard
                .as_deref(),
            Some("t1")
        );
    }

    #[tokio::test]
    async fn collation_keys_pair_rows_across_shards() {
        // Case-insensitive text key: the source holds 'a', 'B', 'c'; one
        // target shard holds 'A' (same key, other bytes) and 'c', the other
        // 'B'. Bytewise, 'A' < 'B' < 'a' would misorder the merge.
        let plan = TablePlan {
            name: "t".into(),
            columns: vec![Column {
                name: "k".into(),
                kind: Kind::Text,
                charset: Some("utf8mb4".into()),
                collation: Some("utf8mb4_general_ci".into()),
                nullable: true,
            }],
            pk: vec![0],
            order: vec![KeyOrder::Weight {
                extra: 1,
                pad: Arc::from(vec![0u8, 0x20]),
            }],
            extras: 1,
        };
        let r = |k: &str| {
            let w: Vec<u8> = k
                .to_ascii_uppercase()
                .bytes()
                .flat_map(|b| [0u8, b])
                .collect();
            Row {
                values: vec![Value::Bytes(k.as_bytes().to_vec()), Value::Bytes(w)],
                placed: true,
            }
        };
        let rep = run(
            &plan,
            vec![vec![r("a"), r("B"), r("c")]],
            vec![vec![r("A"), r("c")], vec![r("B")]],
            &[1],
        )
        .await;
        assert_eq!(rep.rows_compared, 3);
        assert_eq!(rep.extra_on_target + rep.missing_on_target, 0);
        assert_eq!(rep.matching, 2);
        assert_eq!(
            rep.mismatched, 1,
            "'a' vs 'A' differ as values, not as keys"
        );
    }

    #[tokio::test]
    async fn a_failing_stream_fails_the_merge_and_cancel_stops_it() {
        let plan = int_plan();
        let (tx, rx) = mpsc::channel(1);
        tx.send(Err("boom".into())).await.unwrap();
        let mut report = TableReport::new("t");
        let ptx = |_: &TableReport| {};
        let opts = MergeOptions {
            max_samples: 10,
            max_rows_per_second: None,
        };
        let err = merge(
            &plan,
            Input {
                sources: vec![("0".into(), rx)],
                targets: vec![],
            },
            &mut report,
            &opts,
            &ptx,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(err.contains("boom") && err.contains("shard 0"), "{err}");

        let cancel = CancellationToken::new();
        cancel.cancel();
        let out = merge(
            &plan,
            Input {
                sources: vec![("0".into(), stream(vec![row(1, "a")], &[1]))],
                targets: vec![],
            },
            &mut report,
            &opts,
            &ptx,
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!(out, Outcome::Cancelled);
    }
}
