//! The VDiff record kept at `/vdiffs/{workflow}`: the request, its
//! progress while it runs, and its report once it ends.
//!
//! It is the whole truth about a VDiff: the runner persists each table's
//! counters together with the last key they cover, in one write, so a
//! restarted node resumes exactly after that key and nothing is counted
//! twice. The API serves this record as JSON as it is.

use keyshift_workflow::Trigger;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A report older than this is shown as stale: the data moved on since.
pub const STALE_AFTER_MS: u64 = 24 * 60 * 60 * 1000;

/// Snapshot rounds kept in the record (one per start or resume).
pub const MAX_ROUNDS: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VdiffState {
    /// Requested (or resumed); no runner has picked it up yet.
    Pending,
    Running,
    /// Stopped by the operator; `resume` continues after the last keys.
    Stopped,
    Completed,
    /// Failed; the reason is in `error`. `resume` continues after the last
    /// keys.
    Error,
}

impl VdiffState {
    pub fn as_str(self) -> &'static str {
        match self {
            VdiffState::Pending => "pending",
            VdiffState::Running => "running",
            VdiffState::Stopped => "stopped",
            VdiffState::Completed => "completed",
            VdiffState::Error => "error",
        }
    }

    /// Whether a runner should be working on it (when desired).
    pub fn is_active(self) -> bool {
        matches!(self, VdiffState::Pending | VdiffState::Running)
    }
}

impl fmt::Display for VdiffState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator wants; runners follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    Run,
    Stop,
}

fn default_samples() -> usize {
    10
}
fn default_batch() -> usize {
    10_000
}
fn default_catch_up() -> u64 {
    120
}
fn default_chunk() -> usize {
    50_000
}
fn default_true() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VdiffOptions {
    /// Tables to compare; `None` compares every table of the workflow.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Sample keys kept per table and kind of difference.
    #[serde(default = "default_samples")]
    pub max_samples: usize,
    /// Rows per query on each shard (memory is about shards × 2 batches).
    #[serde(default = "default_batch")]
    pub batch_rows: usize,
    /// Bounds the load on the primaries: keys compared per second, per
    /// table (`None`: as fast as they answer).
    #[serde(default)]
    pub max_rows_per_second: Option<u64>,
    /// How long the streams may take to reach the snapshot position.
    #[serde(default = "default_catch_up")]
    pub catch_up_timeout_secs: u64,
    /// Compare key ranges by server-side checksums first and only ranges
    /// that differ row by row (see the `checksum` module); `false`
    /// compares every row.
    #[serde(default = "default_true")]
    pub checksum: bool,
    /// Source rows per checksummed key range.
    #[serde(default = "default_chunk")]
    pub chunk_rows: usize,
}

impl Default for VdiffOptions {
    fn default() -> Self {
        VdiffOptions {
            tables: None,
            max_samples: default_samples(),
            batch_rows: default_batch(),
            max_rows_per_second: None,
            catch_up_timeout_secs: default_catch_up(),
            checksum: true,
            chunk_rows: default_chunk(),
        }
    }
}

/// The process running a VDiff, and until when its claim holds without a
/// renewal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// `host/pid/start_ms` of the node.
    pub id: String,
    /// Unix milliseconds.
    pub until_ms: u64,
}

/// One set of snapshots: the source positions every target was caught up
/// to before its own snapshot. A resumed VDiff takes a new round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    pub at_ms: u64,
    /// Source shard → GTID position.
    pub positions: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableState {
    Pending,
    Running,
    Done,
}

/// The kinds of difference, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// On the source, on no target shard.
    MissingOnTarget,
    /// On a target shard, not on the source (or a second copy on the shard
    /// the key belongs to).
    ExtraOnTarget,
    /// On both, with different values in `columns`.
    Mismatched,
    /// On a target shard whose key range does not hold the row's keyspace
    /// id: the gate would never find it there.
    Misplaced,
}

impl DiffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::MissingOnTarget => "missing",
            DiffKind::ExtraOnTarget => "extra",
            DiffKind::Mismatched => "mismatched",
            DiffKind::Misplaced => "misplaced",
        }
    }
}

/// One column that differs, with both values as text (truncated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDiff {
    pub column: String,
    pub source: String,
    pub target: String,
}

/// A sample difference: the key (one display value per key column, in key
/// order) and what differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub kind: DiffKind,
    pub key: Vec<String>,
    /// The target shard the row was found on (extra, mismatched,
    /// misplaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnDiff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A key column value as persisted for resuming: exact, typed, and turned
/// back into a SQL literal of the column's type and collation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum KeyValue {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// Bytes (character data in the column's character set, binary data,
    /// DECIMAL text) as hex.
    Bytes(String),
    /// DATE/DATETIME/TIMESTAMP: year, month, day, hour, minute, second, µs.
    Date(u16, u8, u8, u8, u8, u8, u32),
    /// TIME: negative, days, hours, minutes, seconds, µs.
    Time(bool, u32, u8, u8, u8, u32),
}

impl KeyValue {
    pub fn from_wire(v: &mysql_async::Value) -> KeyValue {
        use mysql_async::Value as W;
        match v {
            W::NULL => KeyValue::Null,
            W::Int(i) => KeyValue::Int(*i),
            W::UInt(u) => KeyValue::UInt(*u),
            W::Float(f) => KeyValue::Float(*f),
            W::Double(d) => KeyValue::Double(*d),
            W::Bytes(b) => KeyValue::Bytes(hex::encode(b)),
            W::Date(y, mo, d, h, mi, s, us) => KeyValue::Date(*y, *mo, *d, *h, *mi, *s, *us),
            W::Time(n, d, h, m, s, us) => KeyValue::Time(*n, *d, *h, *m, *s, *us),
        }
    }

    /// `None` when the stored hex is corrupt.
    pub fn to_wire(&self) -> Option<mysql_async::Value> {
        use mysql_async::Value as W;
        Some(match self {
            KeyValue::Null => W::NULL,
            KeyValue::Int(i) => W::Int(*i),
            KeyValue::UInt(u) => W::UInt(*u),
            KeyValue::Float(f) => W::Float(*f),
            KeyValue::Double(d) => W::Double(*d),
            KeyValue::Bytes(h) => W::Bytes(hex::decode(h).ok()?),
            KeyValue::Date(y, mo, d, h, mi, s, us) => W::Date(*y, *mo, *d, *h, *mi, *s, *us),
            KeyValue::Time(n, d, h, m, s, us) => W::Time(*n, *d, *h, *m, *s, *us),
        })
    }
}

/// One table's progress and result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableReport {
    pub name: String,
    pub state: TableState,
    #[serde(default)]
    pub pk_columns: Vec<String>,
    /// Distinct keys looked at, on either side.
    pub rows_compared: u64,
    pub matching: u64,
    pub missing_on_target: u64,
    pub extra_on_target: u64,
    pub mismatched: u64,
    pub misplaced: u64,
    /// Source rows (an estimate for large tables, exact for small ones).
    #[serde(default)]
    pub estimated_rows: u64,
    #[serde(default)]
    pub percent: f64,
    #[serde(default)]
    pub eta_seconds: Option<u64>,
    #[serde(default)]
    pub samples: Vec<Sample>,
    /// Everything up to and including this key is counted above.
    #[serde(default)]
    pub last_key: Option<Vec<KeyValue>>,
    #[serde(default)]
    pub started_ms: Option<u64>,
    #[serde(default)]
    pub completed_ms: Option<u64>,
}

impl TableReport {
    pub fn new(name: &str) -> TableReport {
        TableReport {
            name: name.to_string(),
            state: TableState::Pending,
            pk_columns: Vec::new(),
            rows_compared: 0,
            matching: 0,
            missing_on_target: 0,
            extra_on_target: 0,
            mismatched: 0,
            misplaced: 0,
            estimated_rows: 0,
            percent: 0.0,
            eta_seconds: None,
            samples: Vec::new(),
            last_key: None,
            started_ms: None,
            completed_ms: None,
        }
    }

    pub fn differences(&self) -> u64 {
        self.missing_on_target + self.extra_on_target + self.mismatched + self.misplaced
    }

    pub fn has_mismatch(&self) -> bool {
        self.differences() > 0
    }

    pub(crate) fn count(&mut self, kind: DiffKind) {
        match kind {
            DiffKind::MissingOnTarget => self.missing_on_target += 1,
            DiffKind::ExtraOnTarget => self.extra_on_target += 1,
            DiffKind::Mismatched => self.mismatched += 1,
            DiffKind::Misplaced => self.misplaced += 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VdiffRecord {
    pub workflow: String,
    /// Unique per `start`; a runner only writes a record with its id.
    pub id: String,
    pub state: VdiffState,
    pub desired: Desired,
    pub options: VdiffOptions,
    pub trigger: Trigger,
    pub requested_ms: u64,
    #[serde(default)]
    pub started_ms: Option<u64>,
    #[serde(default)]
    pub completed_ms: Option<u64>,
    pub updated_ms: u64,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub owner: Option<Owner>,
    #[serde(default)]
    pub rounds: Vec<Round>,
    pub tables: Vec<TableReport>,
    /// Some table has a difference (so far, while running).
    #[serde(default)]
    pub has_mismatch: bool,
    /// Derived when read ([`crate::show`]): completed more than 24 hours
    /// ago.
    #[serde(default)]
    pub stale: bool,
}

impl VdiffRecord {
    pub fn is_stale_at(&self, now_ms: u64) -> bool {
        self.completed_ms
            .is_some_and(|c| now_ms.saturating_sub(c) > STALE_AFTER_MS)
    }

    pub(crate) fn refresh_summary(&mut self) {
        self.has_mismatch = self.tables.iter().any(|t| t.has_mismatch());
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_round_trip_through_json() {
        let vals = vec![
            mysql_async::Value::Int(-5),
            mysql_async::Value::UInt(u64::MAX),
            mysql_async::Value::Bytes(vec![0, 0xff, b'a']),
            mysql_async::Value::Double(0.1),
            mysql_async::Value::Date(2024, 2, 29, 1, 2, 3, 4),
            mysql_async::Value::Time(true, 1, 2, 3, 4, 5),
        ];
        for v in vals {
            let k = KeyValue::from_wire(&v);
            let json = serde_json::to_string(&k).unwrap();
            let back: KeyValue = serde_json::from_str(&json).unwrap();
            assert_eq!(back.to_wire(), Some(v));
        }
        assert_eq!(KeyValue::Bytes("zz".into()).to_wire(), None);
    }

    #[test]
    fn stale_after_a_day() {
        let mut r: VdiffRecord = serde_json::from_value(serde_json::json!({
            "workflow": "w", "id": "1", "state": "completed", "desired": "run",
            "options": {}, "trigger": "cli", "requested_ms": 0, "updated_ms": 0,
            "tables": []
        }))
        .unwrap();
        assert!(!r.is_stale_at(STALE_AFTER_MS * 2));
        r.completed_ms = Some(1000);
        assert!(!r.is_stale_at(1000 + STALE_AFTER_MS));
        assert!(r.is_stale_at(1001 + STALE_AFTER_MS));
    }
}
