//! Keyspace ids, key ranges and shard names.
//!
//! Shards are named by their key range in hex, exactly as in Vitess: `-80`,
//! `80-`, `40-80`, `-` (the whole keyspace) and `0` (Vitess's name for the
//! single shard of an unsharded keyspace, also the whole keyspace).
//!
//! Bounds compare the way Vitess's `key.Compare` does: trailing zero bytes are
//! ignored, so `80`, `8000` and `800000` are the same bound and `-80` and
//! `8000-` are adjacent. Equality, hashing and ordering of [`KeyRange`] follow
//! the same rule, so two spellings of one range are one range.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The output of a vindex: the value that decides which shard owns a row.
///
/// Ordered bytewise because shards are contiguous ranges of this order.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct KeyspaceId(pub Vec<u8>);

impl KeyspaceId {
    /// Borrows the raw bytes, which is what [`KeyRange::contains`] takes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for KeyspaceId {
    fn from(v: Vec<u8>) -> Self {
        KeyspaceId(v)
    }
}

impl AsRef<[u8]> for KeyspaceId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for KeyspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for KeyspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl FromStr for KeyspaceId {
    type Err = KeyRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_hex(s, "keyspace id").map(KeyspaceId)
    }
}

impl Serialize for KeyspaceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for KeyspaceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a shard name or keyspace id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRangeError {
    #[error(
        "shard name `{0}` has no `-`: expected <start>-<end> in hex, such as -80, 40-80 or 80- (or `0` / `-` for the whole keyspace)"
    )]
    NoDash(String),
    #[error("shard name `{0}` has more than one `-`: expected <start>-<end> in hex")]
    TooManyDashes(String),
    #[error(
        "{what} `{text}` has an odd number of hex digits: each byte takes two, e.g. 80 or 8000"
    )]
    OddHex { what: &'static str, text: String },
    #[error("{what} `{text}` is not hex: `{bad}` is not one of 0-9, a-f")]
    NotHex {
        what: &'static str,
        text: String,
        bad: char,
    },
    #[error("shard name `{name}`: start {start} is not below end {end}, so the range is empty")]
    StartNotBelowEnd {
        name: String,
        start: String,
        end: String,
    },
    #[error(
        "shard name `{name}`: end {end} is zero, which no keyspace id is below; leave the end empty for the end of the keyspace"
    )]
    ZeroEnd { name: String, end: String },
    #[error("cannot split a keyspace into 0 shards")]
    ZeroShards,
    #[error("cannot split a keyspace into {0} shards: at most 65536 are supported")]
    TooManyShards(usize),
}

fn decode_hex(text: &str, what: &'static str) -> Result<Vec<u8>, KeyRangeError> {
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(KeyRangeError::NotHex {
            what,
            text: text.to_string(),
            bad,
        });
    }
    if !text.len().is_multiple_of(2) {
        return Err(KeyRangeError::OddHex {
            what,
            text: text.to_string(),
        });
    }
    hex::decode(text).map_err(|_| KeyRangeError::OddHex {
        what,
        text: text.to_string(),
    })
}

/// Strips trailing zero bytes, as Vitess's `key.Normalize` does, so that bounds
/// of different lengths compare as the numbers they denote.
fn normalize(id: &[u8]) -> &[u8] {
    let end = id.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    &id[..end]
}

/// A half-open slice `[start, end)` of the keyspace ids; an empty `start` is
/// minus infinity and an empty `end` plus infinity.
///
/// The fields keep the bytes as they were written so that [`KeyRange::name`]
/// gives back the shard's own name; comparisons ignore trailing zero bytes.
#[derive(Clone)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    /// The whole keyspace: the one shard of an unsharded keyspace.
    pub fn full() -> Self {
        KeyRange {
            start: Vec::new(),
            end: Vec::new(),
        }
    }

    /// Parses a shard name: `-80`, `80-`, `40-80`, `-`, or `0` (Vitess's
    /// unsharded shard, the whole keyspace). Hex digits may be upper or lower
    /// case.
    pub fn parse(shard_name: &str) -> Result<KeyRange, KeyRangeError> {
        if shard_name == "0" {
            return Ok(KeyRange::full());
        }
        let mut parts = shard_name.split('-');
        let (Some(start_hex), Some(end_hex)) = (parts.next(), parts.next()) else {
            return Err(KeyRangeError::NoDash(shard_name.to_string()));
        };
        if parts.next().is_some() {
            return Err(KeyRangeError::TooManyDashes(shard_name.to_string()));
        }
        let start = decode_hex(start_hex, "shard start")?;
        let end = decode_hex(end_hex, "shard end")?;
        if !end.is_empty() && normalize(&end).is_empty() {
            return Err(KeyRangeError::ZeroEnd {
                name: shard_name.to_string(),
                end: end_hex.to_string(),
            });
        }
        if !end.is_empty() && normalize(&start) >= normalize(&end) {
            return Err(KeyRangeError::StartNotBelowEnd {
                name: shard_name.to_string(),
                start: start_hex.to_string(),
                end: end_hex.to_string(),
            });
        }
        Ok(KeyRange { start, end })
    }

    /// The shard name, inverse of [`KeyRange::parse`] in lowercase hex.
    ///
    /// The whole keyspace is named `-` (as Vitess's `KeyRangeString` does),
    /// never `0`: a keyspace that calls its shard `0` keeps that name in its
    /// own records, the range just does not remember it.
    pub fn name(&self) -> String {
        if self.is_full() {
            return "-".to_string();
        }
        format!("{}-{}", hex::encode(&self.start), hex::encode(&self.end))
    }

    /// Whether `id` falls in `[start, end)`, comparing as Vitess's
    /// `key.KeyRangeContains` does (trailing zero bytes ignored on both sides).
    pub fn contains(&self, id: &[u8]) -> bool {
        if self.is_full() {
            return true;
        }
        let id = normalize(id);
        let start = normalize(&self.start);
        let end = normalize(&self.end);
        id >= start && (end.is_empty() || id < end)
    }

    /// Whether some keyspace id belongs to both ranges.
    pub fn intersects(&self, other: &KeyRange) -> bool {
        if self.is_full() || other.is_full() {
            return true;
        }
        let (a_start, a_end) = (normalize(&self.start), normalize(&self.end));
        let (b_start, b_end) = (normalize(&other.start), normalize(&other.end));
        (a_end.is_empty() || b_start < a_end) && (b_end.is_empty() || a_start < b_end)
    }

    /// Whether every keyspace id belongs to this range.
    pub fn is_full(&self) -> bool {
        normalize(&self.start).is_empty() && normalize(&self.end).is_empty()
    }

    /// Whether every keyspace id of `other` also belongs to this range.
    pub fn contains_range(&self, other: &KeyRange) -> bool {
        cmp_start(&self.start, &other.start) != Ordering::Greater
            && cmp_end(&other.end, &self.end) != Ordering::Greater
    }

    /// Splits the keyspace into `n` ranges of (nearly) equal width, named the
    /// way Vitess's `key.GenerateShardRanges` names them so that shard names
    /// match a Vitess cluster of the same size: one hex byte for up to 256
    /// shards, two for up to 65536; `n` that does not divide 256 spreads the
    /// rounding over all shards (3 gives `-55`, `55-aa`, `aa-`). `n = 1` gives
    /// the whole keyspace, `-`.
    pub fn split_equal(n: usize) -> Result<Vec<KeyRange>, KeyRangeError> {
        let (max, width) = match n {
            0 => return Err(KeyRangeError::ZeroShards),
            1..=256 => (256usize, 1usize),
            257..=65536 => (65536, 2),
            _ => return Err(KeyRangeError::TooManyShards(n)),
        };
        let bound = |v: usize| -> Vec<u8> {
            if width == 1 {
                vec![v as u8]
            } else {
                vec![(v >> 8) as u8, v as u8]
            }
        };
        // Same float arithmetic as Vitess, so the rounding (and the names)
        // agree bit for bit.
        let size = max as f64 / n as f64;
        let mut out = Vec::with_capacity(n);
        let mut start = 0usize;
        for i in 1..=n {
            // The last shard always reaches the end of the keyspace; Vitess's
            // float product can land just below it (n = 253 gives 255.99...),
            // which would leave the top keyspace ids without a shard.
            let end = if i == n {
                max
            } else {
                (i as f64 * size) as usize
            };
            out.push(KeyRange {
                start: if start == 0 { Vec::new() } else { bound(start) },
                end: if end >= max { Vec::new() } else { bound(end) },
            });
            start = end;
        }
        Ok(out)
    }
}

/// Compares two starts; empty is minus infinity, which normalisation already
/// gives since the empty byte string sorts first.
fn cmp_start(a: &[u8], b: &[u8]) -> Ordering {
    normalize(a).cmp(normalize(b))
}

/// Compares two ends; empty is plus infinity.
fn cmp_end(a: &[u8], b: &[u8]) -> Ordering {
    let (a, b) = (normalize(a), normalize(b));
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.cmp(b),
    }
}

impl PartialEq for KeyRange {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for KeyRange {}

impl Hash for KeyRange {
    fn hash<H: Hasher>(&self, state: &mut H) {
        normalize(&self.start).hash(state);
        normalize(&self.end).hash(state);
    }
}

/// Orders by start, then by end with an empty end last, the order in which
/// shards sit along the keyspace (Vitess's `key.KeyRangeCompare`).
impl Ord for KeyRange {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_start(&self.start, &other.start).then_with(|| cmp_end(&self.end, &other.end))
    }
}

impl PartialOrd for KeyRange {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Debug for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRange({})", self.name())
    }
}

impl FromStr for KeyRange {
    type Err = KeyRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyRange::parse(s)
    }
}

impl Serialize for KeyRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for KeyRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KeyRange::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a set of shards does not cover the keyspace exactly once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("no shards: a keyspace needs at least one shard")]
    Empty,
    #[error("shard {name} is listed twice")]
    Duplicate { name: String },
    #[error("shards {a} and {b} overlap")]
    Overlap { a: String, b: String },
    #[error("gap between {after} and {before}: keyspace ids {from}..{to} belong to no shard")]
    Gap {
        after: String,
        before: String,
        from: String,
        to: String,
    },
    #[error(
        "no shard starts at the beginning of the keyspace: the first shard is {first}, so keyspace ids below {start} belong to no shard"
    )]
    MissingStart { first: String, start: String },
    #[error(
        "no shard reaches the end of the keyspace: the last shard is {last}, so keyspace ids from {end} up belong to no shard"
    )]
    MissingEnd { last: String, end: String },
}

/// Checks that `ranges` (in any order) cover every keyspace id exactly once,
/// which every keyspace's shard set must, or rows would have no home or two.
/// Reports the first problem along the keyspace.
pub fn check_partition(ranges: &[KeyRange]) -> Result<(), PartitionError> {
    if ranges.is_empty() {
        return Err(PartitionError::Empty);
    }
    let mut sorted: Vec<&KeyRange> = ranges.iter().collect();
    sorted.sort();
    let first = sorted[0];
    if !normalize(&first.start).is_empty() {
        return Err(PartitionError::MissingStart {
            first: first.name(),
            start: hex::encode(&first.start),
        });
    }
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a == b {
            return Err(PartitionError::Duplicate { name: a.name() });
        }
        let a_end = normalize(&a.end);
        if a_end.is_empty() {
            return Err(PartitionError::Overlap {
                a: a.name(),
                b: b.name(),
            });
        }
        match a_end.cmp(normalize(&b.start)) {
            Ordering::Equal => {}
            Ordering::Greater => {
                return Err(PartitionError::Overlap {
                    a: a.name(),
                    b: b.name(),
                });
            }
            Ordering::Less => {
                return Err(PartitionError::Gap {
                    after: a.name(),
                    before: b.name(),
                    from: hex::encode(&a.end),
                    to: hex::encode(&b.start),
                });
            }
        }
    }
    let last = sorted[sorted.len() - 1];
    if !normalize(&last.end).is_empty() {
        return Err(PartitionError::MissingEnd {
            last: last.name(),
            end: hex::encode(&last.end),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kr(s: &str) -> KeyRange {
        KeyRange::parse(s).unwrap()
    }

    fn names(v: &[KeyRange]) -> Vec<String> {
        v.iter().map(KeyRange::name).collect()
    }

    #[test]
    fn parse_forms() {
        assert_eq!(kr("-80").start, Vec::<u8>::new());
        assert_eq!(kr("-80").end, vec![0x80]);
        assert_eq!(kr("80-").start, vec![0x80]);
        assert!(kr("80-").end.is_empty());
        assert_eq!(kr("40-80").start, vec![0x40]);
        assert!(kr("-").is_full());
        assert!(kr("0").is_full());
        assert_eq!(kr("0").name(), "-");
        assert_eq!(kr("C0-").name(), "c0-");
        assert_eq!(kr("4000-8000").name(), "4000-8000");
    }

    #[test]
    fn parse_rejects_with_reason() {
        let e = KeyRange::parse("8-").unwrap_err();
        assert!(e.to_string().contains("odd number of hex digits"), "{e}");
        let e = KeyRange::parse("-8g").unwrap_err();
        assert!(e.to_string().contains("`g` is not one of"), "{e}");
        let e = KeyRange::parse("80-40").unwrap_err();
        assert!(e.to_string().contains("not below end"), "{e}");
        let e = KeyRange::parse("80-80").unwrap_err();
        assert!(e.to_string().contains("not below end"), "{e}");
        let e = KeyRange::parse("80-8000").unwrap_err();
        assert!(e.to_string().contains("not below end"), "{e}");
        let e = KeyRange::parse("8080").unwrap_err();
        assert!(e.to_string().contains("has no `-`"), "{e}");
        let e = KeyRange::parse("-40-80").unwrap_err();
        assert!(e.to_string().contains("more than one"), "{e}");
        let e = KeyRange::parse("-00").unwrap_err();
        assert!(e.to_string().contains("is zero"), "{e}");
        assert!(KeyRange::parse("").is_err());
        assert!(KeyRange::parse("00").is_err());
        assert!(KeyRange::parse(" -80").is_err());
    }

    #[test]
    fn trailing_zero_bounds_are_equal() {
        assert_eq!(kr("-80"), kr("-8000"));
        assert_eq!(kr("00-80"), kr("-80"));
        assert_eq!(kr("8000-"), kr("80-"));
        assert_ne!(kr("-80"), kr("-8001"));
        use std::collections::HashSet;
        let set: HashSet<KeyRange> = [kr("-80"), kr("-8000"), kr("80-")].into_iter().collect();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn contains_edges() {
        let r = kr("40-80");
        assert!(r.contains(&[0x40]));
        assert!(r.contains(&[0x40, 0, 0, 0, 0, 0, 0, 0]));
        assert!(r.contains(&[0x7f, 0xff, 0xff]));
        assert!(!r.contains(&[0x80]));
        assert!(!r.contains(&[0x80, 0, 0, 0, 0, 0, 0, 0]));
        assert!(r.contains(&[0x40, 0x00]));
        assert!(!r.contains(&[0x3f, 0xff]));
        assert!(!r.contains(&[]));
        let low = kr("-80");
        assert!(low.contains(&[]));
        assert!(low.contains(&[0x00]));
        assert!(low.contains(&[0x7f, 0xff]));
        assert!(!low.contains(&[0x80]));
        let high = kr("80-");
        assert!(high.contains(&[0x80]));
        assert!(high.contains(&[0xff; 8]));
        assert!(!high.contains(&[0x7f, 0xff]));
        assert!(KeyRange::full().contains(&[]));
        assert!(KeyRange::full().contains(&[0xff; 16]));
        // "80" and "8000" are the same bound.
        assert!(kr("8000-").contains(&[0x80]));
        assert!(!kr("-8000").contains(&[0x80]));
    }

    #[test]
    fn intersects_edges() {
        assert!(kr("-80").intersects(&kr("40-c0")));
        assert!(!kr("-80").intersects(&kr("80-")));
        assert!(!kr("80-").intersects(&kr("-80")));
        assert!(!kr("-8000").intersects(&kr("80-")));
        assert!(kr("-80").intersects(&kr("7f-")));
        assert!(kr("40-80").intersects(&kr("40-80")));
        assert!(kr("40-80").intersects(&KeyRange::full()));
        assert!(KeyRange::full().intersects(&kr("c0-")));
        assert!(!kr("40-80").intersects(&kr("c0-")));
        assert!(kr("40-").intersects(&kr("c0-")));
        assert!(kr("-40").intersects(&kr("-10")));
    }

    #[test]
    fn contains_range() {
        assert!(KeyRange::full().contains_range(&kr("40-80")));
        assert!(kr("-80").contains_range(&kr("-40")));
        assert!(kr("-80").contains_range(&kr("40-80")));
        assert!(!kr("-80").contains_range(&kr("40-")));
        assert!(!kr("40-80").contains_range(&KeyRange::full()));
    }

    #[test]
    fn ordering() {
        let mut v = vec![
            kr("c0-"),
            kr("80-c0"),
            KeyRange::full(),
            kr("-40"),
            kr("40-80"),
            kr("-80"),
            kr("80-"),
        ];
        v.sort();
        assert_eq!(
            names(&v),
            ["-40", "-80", "-", "40-80", "80-c0", "80-", "c0-"]
        );
    }

    #[test]
    fn split_equal_names() {
        assert_eq!(names(&KeyRange::split_equal(1).unwrap()), ["-"]);
        assert_eq!(names(&KeyRange::split_equal(2).unwrap()), ["-80", "80-"]);
        assert_eq!(
            names(&KeyRange::split_equal(3).unwrap()),
            ["-55", "55-aa", "aa-"]
        );
        assert_eq!(
            names(&KeyRange::split_equal(4).unwrap()),
            ["-40", "40-80", "80-c0", "c0-"]
        );
        assert_eq!(
            names(&KeyRange::split_equal(8).unwrap()),
            [
                "-20", "20-40", "40-60", "60-80", "80-a0", "a0-c0", "c0-e0", "e0-"
            ]
        );
        let s16 = names(&KeyRange::split_equal(16).unwrap());
        assert_eq!(s16[0], "-10");
        assert_eq!(s16[1], "10-20");
        assert_eq!(s16[15], "f0-");
        // Uneven counts: 256/5 = 51.2, truncated at each boundary.
        assert_eq!(
            names(&KeyRange::split_equal(5).unwrap()),
            ["-33", "33-66", "66-99", "99-cc", "cc-"]
        );
        let s512 = names(&KeyRange::split_equal(512).unwrap());
        assert_eq!(s512[0], "-0080");
        assert_eq!(s512[511], "ff80-");
        assert_eq!(KeyRange::split_equal(0), Err(KeyRangeError::ZeroShards));
        assert!(KeyRange::split_equal(65537).is_err());
        assert_eq!(KeyRange::split_equal(65536).unwrap().len(), 65536);
    }

    #[test]
    fn split_equal_partitions() {
        for n in [1usize, 2, 3, 4, 5, 7, 8, 16, 32, 100, 255, 256, 257, 1000] {
            let r = KeyRange::split_equal(n).unwrap();
            assert_eq!(r.len(), n);
            check_partition(&r).unwrap_or_else(|e| panic!("n={n}: {e}"));
            for x in &r {
                assert_eq!(&KeyRange::parse(&x.name()).unwrap(), x);
            }
        }
    }

    #[test]
    fn partition_errors() {
        assert_eq!(check_partition(&[]), Err(PartitionError::Empty));
        check_partition(&[KeyRange::full()]).unwrap();
        check_partition(&[kr("80-"), kr("-80")]).unwrap();
        check_partition(&[kr("8000-"), kr("-80")]).unwrap();

        let e = check_partition(&[kr("-80"), kr("40-")]).unwrap_err();
        assert_eq!(e.to_string(), "shards -80 and 40- overlap");

        let e = check_partition(&[kr("-40"), kr("80-")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "gap between -40 and 80-: keyspace ids 40..80 belong to no shard"
        );

        let e = check_partition(&[kr("-80"), kr("-80"), kr("80-")]).unwrap_err();
        assert_eq!(e.to_string(), "shard -80 is listed twice");

        let e = check_partition(&[kr("40-80"), kr("80-")]).unwrap_err();
        assert!(matches!(e, PartitionError::MissingStart { .. }), "{e}");
        assert!(e.to_string().contains("below 40"), "{e}");

        let e = check_partition(&[kr("-40"), kr("40-80")]).unwrap_err();
        assert!(matches!(e, PartitionError::MissingEnd { .. }), "{e}");
        assert!(e.to_string().contains("from 80 up"), "{e}");

        let e = check_partition(&[KeyRange::full(), kr("-80"), kr("80-")]).unwrap_err();
        assert!(matches!(e, PartitionError::Overlap { .. }), "{e}");

        let e = check_partition(&[kr("80-"), kr("c0-"), kr("-80")]).unwrap_err();
        assert_eq!(e.to_string(), "shards 80- and c0- overlap");
    }

    #[test]
    fn keyspace_id_text() {
        let id: KeyspaceId = "166B40b44aba4bd6".parse().unwrap();
        assert_eq!(id.to_string(), "166b40b44aba4bd6");
        assert_eq!(format!("{id:?}"), "166b40b44aba4bd6");
        assert!("123".parse::<KeyspaceId>().is_err());
        assert!("zz".parse::<KeyspaceId>().is_err());
        assert!(KeyspaceId(vec![0x80]) > KeyspaceId(vec![0x7f, 0xff]));
        assert!(KeyspaceId(vec![0x80]) < KeyspaceId(vec![0x80, 0x00]));
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"166b40b44aba4bd6\"");
    }

    #[test]
    fn serde_as_shard_name() {
        let r = kr("40-80");
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"40-80\"");
        let back: KeyRange = serde_json::from_str("\"40-80\"").unwrap();
        assert_eq!(back, r);
        let full: KeyRange = serde_json::from_str("\"0\"").unwrap();
        assert!(full.is_full());
        assert!(serde_json::from_str::<KeyRange>("\"80-40\"").is_err());
    }

    fn arb_range() -> impl Strategy<Value = KeyRange> {
        (
            proptest::collection::vec(any::<u8>(), 0..4),
            proptest::collection::vec(any::<u8>(), 0..4),
        )
            .prop_filter_map("valid", |(a, b)| {
                let r = KeyRange { start: a, end: b };
                KeyRange::parse(&r.name()).ok().map(|_| r)
            })
    }

    proptest! {
        #[test]
        fn name_round_trip(r in arb_range()) {
            let back = KeyRange::parse(&r.name()).unwrap();
            prop_assert_eq!(&back, &r);
            if !r.is_full() {
                prop_assert_eq!(back.start, r.start);
                prop_assert_eq!(back.end, r.end);
            }
        }

        #[test]
        fn keyspace_id_round_trip(v in proptest::collection::vec(any::<u8>(), 0..16)) {
            let id = KeyspaceId(v);
            prop_assert_eq!(id.to_string().parse::<KeyspaceId>().unwrap(), id);
        }

        #[test]
        fn intersects_matches_contains(a in arb_range(), b in arb_range(),
                                      probes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..4), 0..64)) {
            prop_assert_eq!(a.intersects(&b), b.intersects(&a));
            for p in probes {
                if a.contains(&p) && b.contains(&p) {
                    prop_assert!(a.intersects(&b));
                }
            }
            // A bound of one range is in it or at the other's edge.
            if !b.start.is_empty() && a.contains(&b.start) {
                prop_assert!(a.intersects(&b));
            }
        }

        #[test]
        fn split_halves_partition(n in 1usize..300, i in 0usize..300) {
            let parts = KeyRange::split_equal(n).unwrap();
            prop_assert!(check_partition(&parts).is_ok());
            // Every id belongs to exactly one shard.
            let id = [(i % 256) as u8, 0x5a];
            prop_assert_eq!(parts.iter().filter(|r| r.contains(&id)).count(), 1);
        }
    }
}
