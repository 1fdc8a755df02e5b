//! Vindexes: functions from a column value to a keyspace id.
//!
//! Every function here gives the same keyspace ids as the Vitess vindex of the
//! same name (`go/vt/vtgate/vindexes`), so that a keyspace sharded by Vitess
//! can be moved under keyshift (or back) without moving a single row, and so
//! that Vitess users' shard maps keep their meaning. The test vectors in this
//! crate are taken from Vitess's own tests.
//!
//! How values are read mirrors Vitess's conversions: `hash` and `numeric` need
//! an unsigned 64-bit integer (a string is accepted when it is a decimal
//! integer), the byte-hashing kinds hash the value's text (`1` hashes the
//! bytes `"1"`, NULL hashes the empty string).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use md5::{Digest, Md5};
use sp_des::Des;

pub use keyshift_types::KeyspaceId;

mod sp_des;
mod uca;

/// A column value as the router extracts it from a SQL literal or a binlog
/// row. Strings of any character set arrive as `Bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Null,
    Int(i64),
    UInt(u64),
    Bytes(Vec<u8>),
}

impl Value {
    /// The bytes Vitess's `Value.ToBytes` gives: integers as decimal text,
    /// NULL as nothing.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Value::Null => Vec::new(),
            Value::Int(i) => i.to_string().into_bytes(),
            Value::UInt(u) => u.to_string().into_bytes(),
            Value::Bytes(b) => b.clone(),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::UInt(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Bytes(v.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Bytes(b) => write!(f, "'{}'", String::from_utf8_lossy(b)),
        }
    }
}

/// Why a vindex could not be built or could not map a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VindexError {
    #[error("unknown vindex type `{kind}`: known types are {}", known.join(", "))]
    UnknownKind { kind: String, known: Vec<String> },
    /// Vitess maps such values to no shard at all (`DestinationNone`): a
    /// query on them matches no row and an insert of them fails.
    #[error("{kind} vindex cannot map {value}: {reason}")]
    Unmappable {
        kind: &'static str,
        value: String,
        reason: String,
    },
    #[error("{kind} vindex cannot map {value}: it is not valid UTF-8")]
    InvalidUtf8 { kind: &'static str, value: String },
}

/// A function from one column's value to the keyspace id that places its row.
pub trait Vindex: Send + Sync + std::fmt::Debug {
    /// The VSchema `type` of this vindex.
    fn kind(&self) -> &'static str;
    /// Whether each value maps to exactly one keyspace id, which primary
    /// vindexes require.
    fn is_unique(&self) -> bool;
    /// Vitess's cost, which the planner uses to pick among several vindexes
    /// of one table: lower is cheaper.
    fn cost(&self) -> u32;
    fn map(&self, value: &Value) -> Result<KeyspaceId, VindexError>;
    /// The value that maps to `ksid`, for vindexes that can be inverted
    /// (`hash`, `numeric`), which lets a keyspace id stand in for the column.
    fn reverse(&self, _ksid: &[u8]) -> Option<Value> {
        None
    }
}

/// The vindex types [`new_vindex`] knows.
pub const KINDS: &[&str] = &[
    "hash",
    "xxhash",
    "binary_md5",
    "unicode_loose_md5",
    "numeric",
];

/// Builds the vindex of VSchema type `kind`. None of these kinds takes
/// parameters; unknown parameters are ignored as Vitess ignores them.
pub fn new_vindex(
    kind: &str,
    _params: &BTreeMap<String, String>,
) -> Result<Arc<dyn Vindex>, VindexError> {
    Ok(match kind {
        "hash" => Arc::new(Hash),
        "xxhash" => Arc::new(XxHash),
        "binary_md5" => Arc::new(BinaryMd5),
        "unicode_loose_md5" => Arc::new(UnicodeLooseMd5),
        "numeric" => Arc::new(Numeric),
        _ => {
            return Err(VindexError::UnknownKind {
                kind: kind.to_string(),
                known: KINDS.iter().map(|k| k.to_string()).collect(),
            });
        }
    })
}

fn unmappable(kind: &'static str, value: &Value, reason: impl Into<String>) -> VindexError {
    VindexError::Unmappable {
        kind,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses a decimal integer the way Go's `strconv.ParseUint` then
/// `strconv.ParseInt` (base 10) do, which is how Vitess reads a string it
/// needs as a number: optional sign (only for the signed attempt), ASCII
/// digits only, no spaces, no underscores, no overflow.
fn parse_go_integer(b: &[u8]) -> Option<Result<u64, i64>> {
    let s = std::str::from_utf8(b).ok()?;
    let digits_ok = |d: &str| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit());
    if digits_ok(s) {
        return s.parse::<u64>().ok().map(Ok);
    }
    let rest = s.strip_prefix('+').or_else(|| s.strip_prefix('-'))?;
    if !digits_ok(rest) {
        return None;
    }
    s.parse::<i64>().ok().map(Err)
}

/// Vitess's `evalengine.ToUint64`: unsigned integers as they are, signed ones
/// when not negative, strings holding a decimal integer that is not negative.
fn to_uint64(kind: &'static str, value: &Value) -> Result<u64, VindexError> {
    match value {
        Value::UInt(u) => Ok(*u),
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        Value::Int(_) => Err(unmappable(
            kind,
            value,
            "negative number cannot be converted to unsigned",
        )),
        Value::Null => Err(unmappable(kind, value, "NULL is not a number")),
        Value::Bytes(b) => match parse_go_integer(b) {
            Some(Ok(u)) => Ok(u),
            Some(Err(i)) if i >= 0 => Ok(i as u64),
            Some(Err(_)) => Err(unmappable(
                kind,
                value,
                "negative number cannot be converted to unsigned",
            )),
            None => Err(unmappable(
                kind,
                value,
                "could not parse value as a 64-bit integer",
            )),
        },
    }
}

fn des_cipher() -> &'static Des {
    // An all-zero key: Vitess's `hash` is a fixed permutation, not a secret.
    // (Vitess once used 3DES; with a null key it is the same function.)
    // The key schedule is computed once: per call it cost as much as the
    // encryption itself (a copy hashes every row it reads).
    static CIPHER: std::sync::OnceLock<Des> = std::sync::OnceLock::new();
    CIPHER.get_or_init(|| Des::new([0u8; 8]))
}

/// Vitess's `hash`: DES with an all-zero key over the big-endian uint64.
/// A bijection on 64-bit integers, so it spreads sequential ids evenly over
/// shards and can be reversed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hash;

impl Hash {
    /// The keyspace id of one unsigned integer.
    pub fn hash_u64(n: u64) -> [u8; 8] {
        des_cipher().encrypt(n).to_be_bytes()
    }

    /// The integer whose keyspace id is `ksid`, if `ksid` is 8 bytes long.
    pub fn unhash(ksid: &[u8]) -> Option<u64> {
        if ksid.len() != 8 {
            return None;
        }
        let block: [u8; 8] = ksid.try_into().ok()?;
        Some(des_cipher().decrypt(u64::from_be_bytes(block)))
    }
}

impl Vindex for Hash {
    fn kind(&self) -> &'static str {
        "hash"
    }
    fn is_unique(&self) -> bool {
        true
    }
    fn cost(&self) -> u32 {
        1
    }
    /// Signed integers are taken as their two's-complement bit pattern
    /// (Vitess: "ToUint64 with no check on negative values"), so -1 maps like
    /// 18446744073709551615; a string must hold a non-negative decimal
    /// integer, as Vitess requires of non-signed values.
    fn map(&self, value: &Value) -> Result<KeyspaceId, VindexError> {
        let n = match value {
            Value::Int(i) => *i as u64,
            other => to_uint64(self.kind(), other)?,
        };
        Ok(KeyspaceId(Hash::hash_u64(n).to_vec()))
    }
    fn reverse(&self, ksid: &[u8]) -> Option<Value> {
        Hash::unhash(ksid).map(Value::UInt)
    }
}

/// Vitess's `numeric`: the uint64 itself, big-endian, for keyspaces whose ids
/// are already well spread or that want to choose shards by id ranges.
#[derive(Debug, Clone, Copy, Default)]
pub struct Numeric;

impl Vindex for Numeric {
    fn kind(&self) -> &'static str {
        "numeric"
    }
    fn is_unique(&self) -> bool {
        true
    }
    fn cost(&self) -> u32 {
        0
    }
    /// Negative integers do not map (as in Vitess).
    fn map(&self, value: &Value) -> Result<KeyspaceId, VindexError> {
        let n = to_uint64(self.kind(), value)?;
        Ok(KeyspaceId(n.to_be_bytes().to_vec()))
    }
    fn reverse(&self, ksid: &[u8]) -> Option<Value> {
        let b: [u8; 8] = ksid.try_into().ok()?;
        Some(Value::UInt(u64::from_be_bytes(b)))
    }
}

/// Vitess's `xxhash`: XXH64 (seed 0) of the value's bytes, written
/// little-endian as Vitess writes it. Fast and works on any type.
#[derive(Debug, Clone, Copy, Default)]
pub struct XxHash;

impl Vindex for XxHash {
    fn kind(&self) -> &'static str {
        "xxhash"
    }
    fn is_unique(&self) -> bool {
        true
    }
    fn cost(&self) -> u32 {
        1
    }
    fn map(&self, value: &Value) -> Result<KeyspaceId, VindexError> {
        let h = xxhash_rust::xxh64::xxh64(&value.to_bytes(), 0);
        Ok(KeyspaceId(h.to_le_bytes().to_vec()))
    }
}

/// Vitess's `binary_md5`: MD5 of the value's bytes, for binary or
/// case-sensitive string keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct BinaryMd5;

impl Vindex for BinaryMd5 {
    fn kind(&self) -> &'static str {
        "binary_md5"
    }
    fn is_unique(&self) -> bool {
        true
    }
    fn cost(&self) -> u32 {
        1
    }
    fn map(&self, value: &Value) -> Result<KeyspaceId, VindexError> {
        Ok(KeyspaceId(Md5::digest(value.to_bytes()).to_vec()))
    }
}

/// Vitess's `unicode_loose_md5`: MD5 of the primary collation weights of the
/// text (Unicode Collation Algorithm level 1, the weights of Go's
/// `golang.org/x/text/collate` for CLDR 23 that Vitess uses), so that strings
/// a case- and accent-insensitive collation calls equal (`Tést`, `TEST`)
/// land on the same shard. Trailing spaces are ignored, as MySQL's PAD SPACE
/// collations ignore them.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnicodeLooseMd5;

impl UnicodeLooseMd5 {
    /// The bytes that are hashed: each primary weight as 2 bytes, or 3 with
    /// the top bit set when it does not fit in 15 bits.
    pub fn weight_string(text: &str) -> Vec<u8> {
        uca::weight_string(text.trim_end_matches(' '))
    }
}

impl Vindex for UnicodeLooseMd5 {
    fn kind(&self) -> &'static str {
        "unicode_loose_md5"
    }
    fn is_unique(&self) -> bool {
        true
    }
    fn cost(&self) -> u32 {
        1
    }
    fn map(&self, value: &Value) -> Result<KeyspaceId, VindexError> {
        let bytes = value.to_bytes();
        let text = std::str::from_utf8(&bytes).map_err(|_| VindexError::InvalidUtf8 {
            kind: self.kind(),
            value: value.to_string(),
        })?;
        Ok(KeyspaceId(
            Md5::digest(UnicodeLooseMd5::weight_string(text)).to_vec(),
        ))
    }
}

/// The broad family of a MySQL column type, which decides which vindexes
/// can place its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnClass {
    /// TINYINT … BIGINT (signed or not), BIT, YEAR.
    Integer,
    /// CHAR, VARCHAR, the TEXT types, ENUM, SET.
    Text,
    /// BINARY, VARBINARY, the BLOB types.
    Binary,
    /// Anything else: DECIMAL, FLOAT, DOUBLE, dates and times, JSON, spatial
    /// types, and names we do not recognise.
    Any,
}

impl ColumnClass {
    /// Classifies a MySQL type as `information_schema.COLUMNS` writes it in
    /// `DATA_TYPE` or `COLUMN_TYPE` (`int`, `bigint(20) unsigned`,
    /// `varchar(64)`), in any case.
    pub fn of(mysql_data_type: &str) -> ColumnClass {
        let t = mysql_data_type.trim().to_ascii_lowercase();
        let base: String = t
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        match base.as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "bit"
            | "year" | "bool" | "boolean" | "serial" => ColumnClass::Integer,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum"
            | "set" | "nchar" | "nvarchar" => ColumnClass::Text,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                ColumnClass::Binary
            }
            _ => ColumnClass::Any,
        }
    }
}

/// Whether vindex `kind` can place values of columns of class `class`.
///
/// Vitess itself checks no column types; these rules refuse only the pairs
/// where Vitess would accept the VSchema and then fail at run time or
/// scatter equal values:
/// * `hash`, `numeric` need integers. Strings are accepted too, because Vitess
///   maps a string holding a decimal integer (`'42'`) exactly like the
///   integer; DECIMAL, FLOAT, dates and the rest are refused since their
///   text is not an integer (`1.50`, `2024-01-01`) and would map to no shard.
/// * `xxhash`, `binary_md5` hash the bytes of any value.
/// * `unicode_loose_md5` needs text (integers' decimal text is text too);
///   binary columns are refused since their bytes need not be UTF-8, which
///   Vitess rejects.
pub fn accepts(kind: &str, class: ColumnClass) -> bool {
    match kind {
        "hash" | "numeric" => matches!(
            class,
            ColumnClass::Integer | ColumnClass::Text | ColumnClass::Binary
        ),
        "xxhash" | "binary_md5" => true,
        "unicode_loose_md5" => matches!(class, ColumnClass::Text | ColumnClass::Integer),
        _ => false,
    }
}

/// [`accepts`] on a MySQL type name, for VSchema validation. Unknown vindex
/// kinds accept nothing.
pub fn accepts_column_type(kind: &str, mysql_data_type: &str) -> bool {
    accepts(kind, ColumnClass::of(mysql_data_type))
}

#[cfg(test)]
mod tests;
