//! The checksum fast path of one table, pipelined: every shard's
//! snapshot connection is driven by its own worker task, which runs the
//! chunks' checksum queries back to back while the coordinator compares
//! the chunks that are complete, so no server waits on another's round
//! trip or on keyshift.
//!
//! Chunks are key ranges `(lo, hi]`, identical on every side. For a single
//! integer key they are value ranges, sized from the table's estimate and
//! then adapted to the rows the sources actually returned (no query just
//! to find a boundary); for any other key the first source shard finds
//! each upper boundary (`LIMIT 1 OFFSET n`) as a job queued on its worker,
//! ahead of the checksums. At most [`DEPTH`] chunks are in flight, so the
//! state kept is a few counters whatever the table's size. A chunk whose
//! sums or placement disagree is compared row by row ([`crate::merge`]):
//! the workers are stopped (the answers already under way are kept), the
//! snapshots go to the merge's readers, and come back to new workers.
//! Chunks are counted strictly in key order, so the persisted `last_key`
//! always covers exactly the counted keys.

use crate::VdiffError;
use crate::checksum;
use crate::coordinator::drill;
use crate::merge::{MergeOptions, Outcome};
use crate::reader::{Placement, ShardSide};
use crate::record::{KeyValue, TableReport, VdiffOptions};
use crate::schema::{Kind, TablePlan};
use mysql_async::Value;
use mysql_async::prelude::Queryable;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Chunks in flight at most (queued on the workers or compared).
const DEPTH: usize = 4;

/// A target's vindex values come back in one `GROUP_CONCAT` of at most
/// this many bytes (bounded by the server's packet size too); a chunk
/// whose list does not fit is checked by streaming its values instead.
const IDS_MAX_BYTES: u64 = 16 << 20;

type Key = Option<Vec<Value>>;

enum Job {
    Sum {
        seq: u64,
        lo: Arc<Key>,
        hi: Arc<Key>,
    },
    Bound {
        lo: Key,
    },
}

enum Got {
    Sum { n: u64, sum: u128, misplaced: bool },
    Bound(Key),
}

struct Answer {
    side: usize,
    seq: u64,
    got: Result<Got, String>,
}

struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    handle: JoinHandle<ShardSide>,
}

/// What every worker needs to know, shared.
struct Shared {
    plan: Arc<TablePlan>,
    all_mariadb: bool,
    chunk_rows: usize,
}

fn spawn_worker(
    index: usize,
    mut side: ShardSide,
    shared: Arc<Shared>,
    placement: Option<Placement>,
    answers: mpsc::UnboundedSender<Answer>,
) -> Worker {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    let handle = tokio::spawn(async move {
        let ids = placement
            .as_ref()
            .filter(|p| p.kind == Kind::Integer)
            .map(|p| p.col);
        let mut ids_ready = false;
        while let Some(job) = rx.recv().await {
            let (seq, got) = match job {
                Job::Sum { seq, lo, hi } => {
                    if ids.is_some() && !ids_ready {
                        // The session's limit for the values list; a
                        // failure only means every chunk streams instead.
                        let _ = side
                            .held
                            .conn()
                            .query_drop(format!(
                                "SET SESSION group_concat_max_len = LEAST({IDS_MAX_BYTES}, @@GLOBAL.max_allowed_packet DIV 2)"
                            ))
                            .await;
                        ids_ready = true;
                    }
                    let got = sum_chunk(
                        &mut side,
                        &shared,
                        placement.as_ref(),
                        ids,
                        lo.as_deref(),
                        hi.as_deref(),
                    )
                    .await;
                    (seq, got)
                }
                Job::Bound { lo } => {
                    let got = bound(&mut side, &shared, lo.as_deref()).await;
                    (0, got)
                }
            };
            if answers
                .send(Answer {
                    side: index,
                    seq,
                    got,
                })
                .is_err()
            {
                break;
            }
        }
        side
    });
    Worker { jobs: tx, handle }
}

/// The chunk's count and sum on one side, and for a target whether any of
/// its rows sits outside the shard's key range.
async fn sum_chunk(
    side: &mut ShardSide,
    shared: &Shared,
    placement: Option<&Placement>,
    ids: Option<usize>,
    lo: Option<&[Value]>,
    hi: Option<&[Value]>,
) -> Result<Got, String> {
    let plan = &shared.plan;
    let sql = checksum::checksum_sql(plan, &side.db, shared.all_mariadb, ids, lo, hi)?;
    // The text protocol: one round trip, no statement to prepare per chunk.
    let row: Option<mysql_async::Row> = side
        .held
        .conn()
        .query_first(sql.as_str())
        .await
        .map_err(|e| format!("checksum on shard {}: {e}", side.shard))?;
    let Some(mut row) = row else {
        return Err(format!("checksum on shard {}: no answer", side.shard));
    };
    let n: u64 = row
        .take_opt(0)
        .and_then(Result::ok)
        .ok_or_else(|| format!("checksum on shard {}: no count", side.shard))?;
    let sum: String = row
        .take_opt(1)
        .and_then(Result::ok)
        .ok_or_else(|| format!("checksum on shard {}: no sum", side.shard))?;
    let sum: u128 = sum
        .parse()
        .map_err(|_| format!("checksum on shard {}: `{sum}`", side.shard))?;
    let Some(p) = placement else {
        return Ok(Got::Sum {
            n,
            sum,
            misplaced: false,
        });
    };
    if ids.is_some() {
        let list: Option<Vec<u8>> = row.take_opt(2).and_then(Result::ok);
        if let Some(misplaced) = check_list(p, list.as_deref().unwrap_or_default(), n) {
            return Ok(Got::Sum { n, sum, misplaced });
        }
    }
    // Streamed, one row at a time: not an integer column, a NULL, or a
    // list too long for the session's limit.
    let sql = checksum::vindex_sql(plan, &side.db, p.col, lo, hi)?;
    let mut misplaced = false;
    let mut values = vec![Value::NULL; p.col + 1];
    let mut result = side
        .held
        .conn()
        .exec_iter(sql.as_str(), ())
        .await
        .map_err(|e| format!("placement on shard {}: {e}", side.shard))?;
    result
        .for_each(|r| {
            if !misplaced {
                values[p.col] = r.unwrap().pop().unwrap_or(Value::NULL);
                misplaced = !p.placed(&values);
            }
        })
        .await
        .map_err(|e| format!("placement on shard {}: {e}", side.shard))?;
    Ok(Got::Sum { n, sum, misplaced })
}

/// Checks a `GROUP_CONCAT` of integer vindex values: `Some(misplaced)`,
/// or `None` when the list does not hold exactly `n` integers (a NULL is
/// left out, a long list is cut), so that the caller streams instead.
fn check_list(p: &Placement, list: &[u8], n: u64) -> Option<bool> {
    if list.is_empty() {
        return (n == 0).then_some(false);
    }
    let mut count = 0u64;
    let mut misplaced = false;
    for tok in list.split(|&b| b == b',') {
        let v: i128 = std::str::from_utf8(tok).ok()?.parse().ok()?;
        count += 1;
        if !misplaced && !p.placed_int(v) {
            misplaced = true;
        }
    }
    (count == n).then_some(misplaced)
}

/// The upper end of the chunk after `lo`: the key `chunk_rows` rows on, or
/// `None` (the rest of the table) when there are not that many.
async fn bound(side: &mut ShardSide, shared: &Shared, lo: Option<&[Value]>) -> Result<Got, String> {
    let sql = checksum::boundary_sql(&shared.plan, &side.db, lo, shared.chunk_rows)?;
    let row: Option<mysql_async::Row> = side
        .held
        .conn()
        .exec_first(sql.as_str(), ())
        .await
        .map_err(|e| format!("finding the next key range: {e}"))?;
    Ok(Got::Bound(row.map(|r| r.unwrap())))
}

/// How the next chunk's range is chosen.
enum Ranges {
    /// A single integer key: value ranges of `width`.
    Numeric {
        next: Option<i128>,
        min: i128,
        max: i128,
        width: i128,
        done: bool,
    },
    /// Any key: boundaries found by the first source's worker.
    Bounds {
        next: Key,
        waiting: bool,
        done: bool,
    },
}

impl Ranges {
    fn done(&self) -> bool {
        match self {
            Ranges::Numeric { done, .. } | Ranges::Bounds { done, .. } => *done,
        }
    }
}

fn int_of(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        _ => None,
    }
}

fn value_of(v: i128) -> Value {
    match i64::try_from(v) {
        Ok(i) => Value::Int(i),
        Err(_) => Value::UInt(v as u64),
    }
}

struct Chunk {
    seq: u64,
    lo: Arc<Key>,
    hi: Arc<Key>,
    /// The width of a numeric range (for adapting the next ones).
    width: i128,
    sent: bool,
    answers: usize,
    totals: [(u64, u128); 2],
    misplaced: bool,
}

/// Everything [`checksum_table`] works with.
pub(crate) struct Table<'a> {
    pub plan: &'a Arc<TablePlan>,
    pub opts: &'a VdiffOptions,
    pub placements: &'a HashMap<String, Placement>,
    pub all_mariadb: bool,
    pub merge_opts: &'a MergeOptions,
    pub publish: &'a (dyn Fn(&TableReport) + Send + Sync),
    pub cancel: &'a CancellationToken,
}

/// Compares the keys after `after` chunk by chunk (see the module's
/// documentation), counting into `report`; hands the snapshots back.
pub(crate) async fn checksum_table(
    t: &Table<'_>,
    sources: Vec<ShardSide>,
    targets: Vec<ShardSide>,
    after: Key,
    report: &mut TableReport,
) -> Result<(Vec<ShardSide>, Vec<ShardSide>), VdiffError> {
    let name = &t.plan.name;
    let fail = |e: String| VdiffError::Failed(format!("comparing `{name}`: {e}"));
    let n_src = sources.len();
    let mut sides: Vec<ShardSide> = sources.into_iter().chain(targets).collect();
    let n_sides = sides.len();
    let chunk_rows = t.opts.chunk_rows.max(1);
    let mut ranges = ranges_for(t.plan, &mut sides[..n_src], after, report, chunk_rows)
        .await
        .map_err(fail)?;
    let shared = Arc::new(Shared {
        plan: t.plan.clone(),
        all_mariadb: t.all_mariadb,
        chunk_rows,
    });
    let placements: Vec<Option<Placement>> = sides
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i < n_src {
                None
            } else {
                t.placements.get(&s.shard).cloned()
            }
        })
        .collect();
    let (atx, mut arx) = mpsc::unbounded_channel::<Answer>();
    // One worker per snapshot connection: a shard's spare connections
    // (same snapshot point) are workers of the same group, which take the
    // group's chunks in turn.
    let (conns, group) = split(sides);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_sides];
    for (w, &g) in group.iter().enumerate() {
        members[g].push(w);
    }
    let spawn = |conns: Vec<ShardSide>| -> Vec<Worker> {
        conns
            .into_iter()
            .enumerate()
            .map(|(w, s)| {
                let p = placements[group[w]].clone();
                spawn_worker(w, s, shared.clone(), p, atx.clone())
            })
            .collect()
    };
    let mut workers = spawn(conns);
    // A rate limit keeps one chunk in flight, so that it is what it says.
    let limit = t.opts.max_rows_per_second.filter(|r| *r > 0);
    let depth = if limit.is_some() { 1 } else { DEPTH };
    let started = Instant::now();
    let mut compared_now = 0u64;
    let mut chunks: VecDeque<Chunk> = VecDeque::new();
    let mut seq = 0u64;
    let mut outstanding = 0usize;
    let send = |workers: &[Worker], c: &mut Chunk, outstanding: &mut usize| {
        for m in &members {
            let w = m[(c.seq as usize) % m.len()];
            let _ = workers[w].jobs.send(Job::Sum {
                seq: c.seq,
                lo: c.lo.clone(),
                hi: c.hi.clone(),
            });
        }
        *outstanding += members.len();
        c.sent = true;
    };
    let new_chunk = |seq: &mut u64, lo: Key, hi: Key, width: i128| {
        *seq += 1;
        Chunk {
            seq: *seq,
            lo: Arc::new(lo),
            hi: Arc::new(hi),
            width,
            sent: false,
            answers: 0,
            totals: [(0, 0); 2],
            misplaced: false,
        }
    };
    loop {
        if t.cancel.is_cancelled() {
            return Err(VdiffError::Cancelled);
        }
        // Compare the complete chunks, in key order.
        while chunks.front().is_some_and(|c| c.answers == n_sides) {
            let c = chunks.pop_front().expect("a front chunk");
            if c.totals[0] == c.totals[1] && !c.misplaced {
                let n = c.totals[0].0;
                report.rows_compared += n;
                report.matching += n;
                compared_now += n;
            } else {
                // Row by row: the workers give the snapshots back once
                // every answer under way is in.
                while outstanding > 0 {
                    let a = recv(&mut arx, t.cancel).await?;
                    outstanding -= 1;
                    take(
                        a,
                        &mut chunks,
                        &mut ranges,
                        &group,
                        n_src,
                        &mut seq,
                        &new_chunk,
                    )
                    .map_err(fail)?;
                }
                let mut back = join(stop(workers, name).await?, &group, n_sides);
                let targets = back.split_off(n_src);
                let before = report.rows_compared;
                let (s, tg, outcome) = drill(
                    t.plan,
                    back,
                    targets,
                    (*c.lo).clone(),
                    (*c.hi).clone(),
                    t.opts,
                    t.placements,
                    report,
                    t.merge_opts,
                    t.publish,
                    t.cancel,
                )
                .await?;
                match outcome {
                    Ok(Outcome::Done) => {}
                    Ok(Outcome::Cancelled) => return Err(VdiffError::Cancelled),
                    Err(e) => return Err(fail(e)),
                }
                compared_now += report.rows_compared - before;
                workers = spawn(split(s.into_iter().chain(tg).collect()).0);
                for c in chunks.iter_mut().filter(|c| !c.sent) {
                    send(&workers, c, &mut outstanding);
                }
            }
            if let Ranges::Numeric { width, .. } = &mut ranges {
                // Aim the next ranges at `chunk_rows` source rows.
                let n = i128::from(c.totals[0].0.max(1));
                let w = c.width.max(1);
                *width = (w.saturating_mul(chunk_rows as i128) / n)
                    .clamp((w / 4).max(1), w.saturating_mul(4));
            }
            if let Some(hi) = c.hi.as_ref() {
                report.last_key = Some(hi.iter().map(KeyValue::from_wire).collect());
                (t.publish)(report);
            }
            if let Some(rate) = limit {
                let due = Duration::from_secs_f64(compared_now as f64 / rate as f64);
                let spent = started.elapsed();
                if due > spent {
                    tokio::select! {
                        _ = t.cancel.cancelled() => return Err(VdiffError::Cancelled),
                        _ = tokio::time::sleep(due - spent) => {}
                    }
                }
            }
        }
        if chunks.is_empty() && ranges.done() {
            break;
        }
        // Keep `depth` chunks in flight.
        while chunks.len() < depth && !ranges.done() {
            match &mut ranges {
                Ranges::Numeric {
                    next,
                    min,
                    max,
                    width,
                    done,
                } => {
                    let base = next.unwrap_or(*min - 1);
                    let hi = base.saturating_add(*width);
                    let lo = next.map(|v| vec![value_of(v)]);
                    let (hi_key, w) = if hi >= *max {
                        *done = true;
                        (None, *width)
                    } else {
                        *next = Some(hi);
                        (Some(vec![value_of(hi)]), *width)
                    };
                    let mut c = new_chunk(&mut seq, lo, hi_key, w);
                    send(&workers, &mut c, &mut outstanding);
                    chunks.push_back(c);
                }
                Ranges::Bounds { next, waiting, .. } => {
                    if !*waiting {
                        let _ = workers[0].jobs.send(Job::Bound { lo: next.clone() });
                        *waiting = true;
                        outstanding += 1;
                    }
                    break;
                }
            }
        }
        let a = recv(&mut arx, t.cancel).await?;
        outstanding -= 1;
        if let Some(c) = take(
            a,
            &mut chunks,
            &mut ranges,
            &group,
            n_src,
            &mut seq,
            &new_chunk,
        )
        .map_err(fail)?
        {
            // A boundary arrived: its chunk goes out at once.
            let c = chunks.get_mut(c).expect("the new chunk");
            send(&workers, c, &mut outstanding);
        }
    }
    let mut back = join(stop(workers, name).await?, &group, n_sides);
    let targets = back.split_off(n_src);
    Ok((back, targets))
}

/// Every shard's connection, then every spare one as a side of its own;
/// and each one's shard (its index among the shards).
fn split(sides: Vec<ShardSide>) -> (Vec<ShardSide>, Vec<usize>) {
    let mut group: Vec<usize> = (0..sides.len()).collect();
    let mut spares = Vec::new();
    let mut conns = Vec::with_capacity(sides.len());
    for (g, mut side) in sides.into_iter().enumerate() {
        for held in std::mem::take(&mut side.spare) {
            spares.push(ShardSide {
                shard: side.shard.clone(),
                db: side.db.clone(),
                held,
                mariadb: side.mariadb,
                spare: Vec::new(),
            });
            group.push(g);
        }
        conns.push(side);
    }
    conns.extend(spares);
    (conns, group)
}

/// Undoes [`split`].
fn join(mut conns: Vec<ShardSide>, group: &[usize], n_sides: usize) -> Vec<ShardSide> {
    let spares = conns.split_off(n_sides);
    for (s, &g) in spares.into_iter().zip(&group[n_sides..]) {
        conns[g].spare.push(s.held);
    }
    conns
}

/// Ends the workers (their queues are empty) and takes their connections
/// back, in worker order.
async fn stop(workers: Vec<Worker>, name: &str) -> Result<Vec<ShardSide>, VdiffError> {
    let mut back = Vec::with_capacity(workers.len());
    for w in workers {
        drop(w.jobs);
        back.push(w.handle.await.map_err(|e| {
            VdiffError::Failed(format!("a checksum worker of `{name}` failed: {e}"))
        })?);
    }
    Ok(back)
}

async fn recv(
    arx: &mut mpsc::UnboundedReceiver<Answer>,
    cancel: &CancellationToken,
) -> Result<Answer, VdiffError> {
    tokio::select! {
        _ = cancel.cancelled() => Err(VdiffError::Cancelled),
        a = arx.recv() => a.ok_or_else(|| VdiffError::Failed("the checksum workers are gone".into())),
    }
}

/// Files one answer. A boundary becomes a new (unsent) chunk, whose index
/// is returned.
fn take(
    a: Answer,
    chunks: &mut VecDeque<Chunk>,
    ranges: &mut Ranges,
    group: &[usize],
    n_src: usize,
    seq: &mut u64,
    new_chunk: &dyn Fn(&mut u64, Key, Key, i128) -> Chunk,
) -> Result<Option<usize>, String> {
    match a.got? {
        Got::Sum { n, sum, misplaced } => {
            let c = chunks
                .iter_mut()
                .find(|c| c.seq == a.seq)
                .ok_or("an answer for a chunk not in flight")?;
            let t = &mut c.totals[usize::from(group[a.side] >= n_src)];
            t.0 += n;
            t.1 = t.1.wrapping_add(sum);
            c.misplaced |= misplaced;
            c.answers += 1;
            Ok(None)
        }
        Got::Bound(hi) => {
            let Ranges::Bounds {
                next,
                waiting,
                done,
            } = ranges
            else {
                return Err("a boundary nobody asked for".into());
            };
            *waiting = false;
            *done = hi.is_none();
            let lo = std::mem::replace(next, hi.clone());
            chunks.push_back(new_chunk(seq, lo, hi, 0));
            Ok(Some(chunks.len() - 1))
        }
    }
}

/// Value ranges for a single integer key (from the sources' smallest and
/// largest keys and the row estimate), boundaries otherwise.
async fn ranges_for(
    plan: &TablePlan,
    sources: &mut [ShardSide],
    after: Key,
    report: &TableReport,
    chunk_rows: usize,
) -> Result<Ranges, String> {
    let bounds = |after: Key| Ranges::Bounds {
        next: after,
        waiting: false,
        done: false,
    };
    let numeric = plan.pk.len() == 1 && plan.columns[plan.pk[0]].kind == Kind::Integer;
    let next = match &after {
        None => None,
        Some(k) => match k.first().and_then(int_of) {
            Some(v) if k.len() == 1 => Some(v),
            _ => return Ok(bounds(after)),
        },
    };
    if !numeric {
        return Ok(bounds(after));
    }
    let (mut min, mut max): (Option<i128>, Option<i128>) = (None, None);
    for side in sources.iter_mut() {
        let sql = checksum::min_max_sql(plan, &side.db);
        let r: Option<(Value, Value)> = side
            .held
            .conn()
            .exec_first(sql.as_str(), ())
            .await
            .map_err(|e| format!("the key range on shard {}: {e}", side.shard))?;
        let Some((lo, hi)) = r else { continue };
        if let (Value::NULL, Value::NULL) = (&lo, &hi) {
            continue;
        }
        let (Some(lo), Some(hi)) = (int_of(&lo), int_of(&hi)) else {
            return Ok(bounds(after));
        };
        min = Some(min.map_or(lo, |m| m.min(lo)));
        max = Some(max.map_or(hi, |m| m.max(hi)));
    }
    let (Some(min), Some(max)) = (min, max) else {
        // No source rows: one range, the whole (rest of the) key space.
        return Ok(Ranges::Numeric {
            next,
            min: 0,
            max: 0,
            width: 1,
            done: false,
        });
    };
    let from = next.unwrap_or(min - 1);
    let span = (max - from).max(1);
    let rows = i128::from(
        report
            .estimated_rows
            .saturating_sub(report.rows_compared)
            .max(1),
    );
    // Distinct integers: a range `chunk_rows` wide never holds more than
    // `chunk_rows` rows, so the first ranges are at most that (sparser keys
    // widen them as the counts come in).
    let width = (span.saturating_mul(chunk_rows as i128) / rows).clamp(1, chunk_rows as i128);
    Ok(Ranges::Numeric {
        next,
        min,
        max,
        width,
        done: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyshift_types::KeyRange;

    #[test]
    fn values_lists() {
        let p = Placement {
            col: 0,
            kind: Kind::Integer,
            vindex: keyshift_vindex::new_vindex("hash", &Default::default()).unwrap(),
            range: KeyRange::parse("-80").unwrap(),
        };
        // 1 -> 166b..., 2 -> 06e7..., 4 -> d2fd... (Vitess's test vectors).
        assert_eq!(check_list(&p, b"1,2", 2), Some(false));
        assert_eq!(check_list(&p, b"1,4", 2), Some(true));
        assert_eq!(check_list(&p, b"", 0), Some(false));
        // A NULL left out, a cut list, something not an integer: stream.
        assert_eq!(check_list(&p, b"1,2", 3), None);
        assert_eq!(check_list(&p, b"", 1), None);
        assert_eq!(check_list(&p, b"1,2x", 2), None);
        assert_eq!(value_of(-1), Value::Int(-1));
        assert_eq!(value_of(i128::from(u64::MAX)), Value::UInt(u64::MAX));
    }
}
