//! Replication positions: GTID sets in the server's own flavor.
//!
//! Streams store the position they have applied next to the rows, and resume
//! from it; switching traffic waits until one position contains another. Both
//! need a parse that refuses anything doubtful and a `contains` that is exact.
//!
//! * MariaDB: `domain-server-sequence` per replication domain, e.g.
//!   `0-1-145,1-2-7`.
//! * MySQL: `uuid:intervals` per source server, e.g.
//!   `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7-9,uuid2:1`.
//!
//! A [`Position`] is written as Vitess writes replication positions, with the
//! flavor as a prefix: `MariaDB/0-1-5`, `MySQL56/3e11fa47-…:1-5`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a GTID or position was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtidError {
    #[error("unknown server flavor `{0}`: expected mariadb or mysql")]
    UnknownFlavor(String),
    #[error("MariaDB GTID `{0}` is not <domain>-<server_id>-<sequence> with three decimal numbers")]
    BadMariaGtid(String),
    #[error("MariaDB GTID set `{set}` names domain {domain} twice")]
    DuplicateDomain { set: String, domain: u32 },
    #[error(
        "MySQL GTID set `{set}`: `{uuid}` is not a server uuid (32 hex digits, usually 8-4-4-4-12)"
    )]
    BadUuid { set: String, uuid: String },
    #[error("MySQL GTID set `{set}`: `{part}` is not <uuid>:<interval>[:<interval>...]")]
    BadMysqlElement { set: String, part: String },
    #[error(
        "MySQL GTID set `{set}`: interval `{interval}` is not <n> or <first>-<last> with 1 <= first <= last"
    )]
    BadInterval { set: String, interval: String },
    #[error("MySQL transaction number 0 is not valid: numbering starts at 1")]
    ZeroGno,
    #[error("position `{0}` has no flavor prefix: expected MariaDB/<gtids> or MySQL56/<gtids>")]
    MissingPrefix(String),
}

/// The server family, which decides the GTID format and the replication
/// protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    MariaDB,
    MySQL,
}

impl Flavor {
    /// The prefix Vitess writes before a position of this flavor.
    pub fn position_prefix(self) -> &'static str {
        match self {
            Flavor::MariaDB => "MariaDB",
            Flavor::MySQL => "MySQL56",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::MariaDB => "mariadb",
            Flavor::MySQL => "mysql",
        })
    }
}

impl FromStr for Flavor {
    type Err = GtidError;

    /// Accepts `mariadb`, `mysql` and Vitess's `MySQL56`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mariadb" => Ok(Flavor::MariaDB),
            "mysql" | "mysql56" | "mysql8" => Ok(Flavor::MySQL),
            _ => Err(GtidError::UnknownFlavor(s.to_string())),
        }
    }
}

// ---------------------------------------------------------------- MariaDB

/// One MariaDB GTID: the last transaction applied in one replication domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MariaGtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq: u64,
}

impl FromStr for MariaGtid {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || GtidError::BadMariaGtid(s.to_string());
        let mut it = s.trim().split('-');
        let (Some(d), Some(sid), Some(n), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad());
        };
        let num = |x: &str| x.bytes().all(|b| b.is_ascii_digit()) && !x.is_empty();
        if !num(d) || !num(sid) || !num(n) {
            return Err(bad());
        }
        Ok(MariaGtid {
            domain: d.parse().map_err(|_| bad())?,
            server_id: sid.parse().map_err(|_| bad())?,
            seq: n.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

/// A MariaDB position: one GTID per replication domain (`@@gtid_binlog_pos`
/// form).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MariaGtidSet {
    by_domain: BTreeMap<u32, MariaGtid>,
}

impl MariaGtidSet {
    /// Parses `0-1-145,1-2-7`; the empty string is the empty set. Whitespace
    /// around elements (MariaDB prints newlines in some views) is ignored; a
    /// domain named twice is refused since it would be ambiguous.
    pub fn parse(s: &str) -> Result<Self, GtidError> {
        let mut set = MariaGtidSet::default();
        if s.trim().is_empty() {
            return Ok(set);
        }
        for part in s.split(',') {
            let g: MariaGtid = part.parse()?;
            if set.by_domain.insert(g.domain, g).is_some() {
                return Err(GtidError::DuplicateDomain {
                    set: s.to_string(),
                    domain: g.domain,
                });
            }
        }
        Ok(set)
    }

    /// Whether every transaction in `other` is in `self`: for each domain of
    /// `other` we have that domain with a sequence at least as high (server
    /// ids are not compared, as in MariaDB and Vitess).
    pub fn contains(&self, other: &MariaGtidSet) -> bool {
        other.by_domain.values().all(|theirs| {
            self.by_domain
                .get(&theirs.domain)
                .is_some_and(|ours| ours.seq >= theirs.seq)
        })
    }

    /// Records that `gtid` has been applied. A lower sequence than the one we
    /// already hold for its domain is ignored, so replaying old events never
    /// moves the position backwards.
    pub fn update(&mut self, gtid: &MariaGtid) {
        match self.by_domain.get(&gtid.domain) {
            Some(cur) if cur.seq >= gtid.seq => {}
            _ => {
                self.by_domain.insert(gtid.domain, *gtid);
            }
        }
    }

    /// The GTIDs of this set, one per domain, in domain order.
    pub fn domains(&self) -> impl Iterator<Item = &MariaGtid> {
        self.by_domain.values()
    }

    /// The GTID held for `domain`.
    pub fn get(&self, domain: u32) -> Option<&MariaGtid> {
        self.by_domain.get(&domain)
    }

    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_domain.len()
    }
}

impl fmt::Display for MariaGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.by_domain.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

impl FromStr for MariaGtidSet {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MariaGtidSet::parse(s)
    }
}

// ---------------------------------------------------------------- MySQL

/// A MySQL server uuid (`server_uuid`), the source half of a MySQL GTID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(pub [u8; 16]);

impl FromStr for Sid {
    type Err = GtidError;

    /// Accepts the 8-4-4-4-12 form and 32 bare hex digits, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || GtidError::BadUuid {
            set: s.to_string(),
            uuid: s.to_string(),
        };
        let digits: String = if s.len() == 36 {
            let b = s.as_bytes();
            if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
                return Err(bad());
            }
            s.chars().filter(|&c| c != '-').collect()
        } else {
            s.to_string()
        };
        if digits.len() != 32 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(&digits, &mut out).map_err(|_| bad())?;
        Ok(Sid(out))
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// A MySQL position (`@@gtid_executed` form): for each server uuid, the
/// transaction numbers applied, as sorted, disjoint, non-adjacent closed
/// intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MysqlGtidSet {
    sets: BTreeMap<Sid, Vec<(u64, u64)>>,
}

impl MysqlGtidSet {
    /// Parses `uuid:1-5:7-9,uuid2:1`; the empty string is the empty set.
    /// Whitespace around elements (MySQL prints a newline after each comma)
    /// is ignored; overlapping or adjacent intervals are merged. Tagged GTIDs
    /// of MySQL 8.4 (`uuid:tag:1-5`) are refused.
    pub fn parse(s: &str) -> Result<Self, GtidError> {
        let mut set = MysqlGtidSet::default();
        if s.trim().is_empty() {
            return Ok(set);
        }
        for part in s.split(',') {
            let part = part.trim();
            let mut fields = part.split(':');
            let uuid = fields.next().unwrap_or_default();
            let sid: Sid = uuid.parse().map_err(|_| GtidError::BadUuid {
                set: s.to_string(),
                uuid: uuid.to_string(),
            })?;
            let mut any = false;
            for iv in fields {
                any = true;
                let bad = || GtidError::BadInterval {
                    set: s.to_string(),
                    interval: iv.to_string(),
                };
                let num = |x: &str| -> Result<u64, GtidError> {
                    if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad());
                    }
                    x.parse().map_err(|_| bad())
                };
                let (a, b) = match iv.split_once('-') {
                    Some((a, b)) => (num(a)?, num(b)?),
                    None => {
                        let a = num(iv)?;
                        (a, a)
                    }
                };
                if a == 0 || a > b {
                    return Err(bad());
                }
                set.add_interval(sid, a, b);
            }
            if !any {
                return Err(GtidError::BadMysqlElement {
                    set: s.to_string(),
                    part: part.to_string(),
                });
            }
        }
        Ok(set)
    }

    fn add_interval(&mut self, sid: Sid, a: u64, b: u64) {
        let ivs = self.sets.entry(sid).or_default();
        ivs.push((a, b));
        ivs.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ivs.len());
        for &(x, y) in ivs.iter() {
            match merged.last_mut() {
                Some(last) if x <= last.1.saturating_add(1) => last.1 = last.1.max(y),
                _ => merged.push((x, y)),
            }
        }
        *ivs = merged;
    }

    /// Records transaction `gno` of server `uuid` as applied.
    pub fn add(&mut self, uuid: &str, gno: u64) -> Result<(), GtidError> {
        let sid: Sid = uuid.parse()?;
        self.add_sid(sid, gno)
    }

    /// Like [`MysqlGtidSet::add`] with the uuid as binlog events carry it.
    pub fn add_sid(&mut self, sid: Sid, gno: u64) -> Result<(), GtidError> {
        if gno == 0 {
            return Err(GtidError::ZeroGno);
        }
        self.add_interval(sid, gno, gno);
        Ok(())
    }

    /// Whether every transaction of `other` is in `self`.
    pub fn contains(&self, other: &MysqlGtidSet) -> bool {
        other.sets.iter().all(|(sid, theirs)| {
            let Some(ours) = self.sets.get(sid) else {
                return theirs.is_empty();
            };
            theirs
                .iter()
                .all(|&(a, b)| ours.iter().any(|&(x, y)| x <= a && b <= y))
        })
    }

    /// Whether transaction `gno` of `sid` is in the set.
    pub fn contains_gtid(&self, sid: &Sid, gno: u64) -> bool {
        self.sets
            .get(sid)
            .is_some_and(|ivs| ivs.iter().any(|&(x, y)| x <= gno && gno <= y))
    }

    /// Every transaction in either set.
    pub fn union(&self, other: &MysqlGtidSet) -> MysqlGtidSet {
        let mut out = self.clone();
        for (sid, ivs) in &other.sets {
            for &(a, b) in ivs {
                out.add_interval(*sid, a, b);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The intervals per server uuid, in uuid order.
    pub fn intervals(&self) -> impl Iterator<Item = (&Sid, &[(u64, u64)])> {
        self.sets.iter().map(|(s, v)| (s, v.as_slice()))
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (sid, ivs)) in self.sets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{sid}")?;
            for &(a, b) in ivs {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for MysqlGtidSet {
    type Err = GtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MysqlGtidSet::parse(s)
    }
}

// ---------------------------------------------------------------- Position

/// A replication position in the flavor of the server it came from.
///
/// `Display` prints the flavor's own GTID text (what `SHOW ... STATUS`
/// prints); `FromStr` and serde use Vitess's prefixed form (`MariaDB/0-1-5`,
/// `MySQL56/uuid:1-5`, as [`Position::to_prefixed`] writes it) because a
/// stored position must say how to read itself back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Position {
    MariaDB(MariaGtidSet),
    MySQL(MysqlGtidSet),
}

impl Position {
    pub fn parse(flavor: Flavor, s: &str) -> Result<Position, GtidError> {
        Ok(match flavor {
            Flavor::MariaDB => Position::MariaDB(MariaGtidSet::parse(s)?),
            Flavor::MySQL => Position::MySQL(MysqlGtidSet::parse(s)?),
        })
    }

    /// The empty position of `flavor`: before any transaction.
    pub fn empty(flavor: Flavor) -> Position {
        match flavor {
            Flavor::MariaDB => Position::MariaDB(MariaGtidSet::default()),
            Flavor::MySQL => Position::MySQL(MysqlGtidSet::default()),
        }
    }

    pub fn flavor(&self) -> Flavor {
        match self {
            Position::MariaDB(_) => Flavor::MariaDB,
            Position::MySQL(_) => Flavor::MySQL,
        }
    }

    /// Whether every transaction of `other` is in `self`. Positions of
    /// different flavors never contain each other (not even empty ones),
    /// since comparing them is always a bug upstream.
    pub fn contains(&self, other: &Position) -> bool {
        match (self, other) {
            (Position::MariaDB(a), Position::MariaDB(b)) => a.contains(b),
            (Position::MySQL(a), Position::MySQL(b)) => a.contains(b),
            _ => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Position::MariaDB(s) => s.is_empty(),
            Position::MySQL(s) => s.is_empty(),
        }
    }

    /// Vitess's encoding: `<flavor prefix>/<gtid set>`.
    pub fn to_prefixed(&self) -> String {
        format!("{}/{}", self.flavor().position_prefix(), self)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::MariaDB(s) => s.fmt(f),
            Position::MySQL(s) => s.fmt(f),
        }
    }
}

impl FromStr for Position {
    type Err = GtidError;

    /// Reads the prefixed form; the prefix is matched without regard to case
    /// and `MySQL/` is taken for `MySQL56/`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (prefix, rest) = s
            .split_once('/')
            .ok_or_else(|| GtidError::MissingPrefix(s.to_string()))?;
        let flavor: Flavor = prefix.parse()?;
        Position::parse(flavor, rest)
    }
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_prefixed())
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! serde_via_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_string!(MariaGtid);
serde_via_string!(MariaGtidSet);
serde_via_string!(MysqlGtidSet);
serde_via_string!(Sid);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn flavor_text() {
        assert_eq!("MariaDB".parse::<Flavor>().unwrap(), Flavor::MariaDB);
        assert_eq!("mysql".parse::<Flavor>().unwrap(), Flavor::MySQL);
        assert_eq!("MySQL56".parse::<Flavor>().unwrap(), Flavor::MySQL);
        assert!("postgres".parse::<Flavor>().is_err());
        assert_eq!(
            serde_json::to_string(&Flavor::MariaDB).unwrap(),
            "\"mariadb\""
        );
        assert_eq!(serde_json::to_string(&Flavor::MySQL).unwrap(), "\"mysql\"");
        assert_eq!(
            serde_json::from_str::<Flavor>("\"mysql\"").unwrap(),
            Flavor::MySQL
        );
    }

    #[test]
    fn maria_gtid_parse() {
        let g: MariaGtid = "0-1-145".parse().unwrap();
        assert_eq!(
            g,
            MariaGtid {
                domain: 0,
                server_id: 1,
                seq: 145
            }
        );
        assert_eq!(g.to_string(), "0-1-145");
        for bad in [
            "",
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "0--1",
            "-1-2-3",
            "0-1-+2",
            "4294967296-1-1",
        ] {
            assert!(bad.parse::<MariaGtid>().is_err(), "{bad}");
        }
    }

    #[test]
    fn maria_set_parse_display() {
        let s = MariaGtidSet::parse("1-2-7,0-1-145").unwrap();
        assert_eq!(s.to_string(), "0-1-145,1-2-7");
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(1).unwrap().seq, 7);
        assert_eq!(MariaGtidSet::parse("").unwrap().to_string(), "");
        assert!(MariaGtidSet::parse("").unwrap().is_empty());
        assert_eq!(
            MariaGtidSet::parse("0-1-5,\n1-2-3 ").unwrap().to_string(),
            "0-1-5,1-2-3"
        );
        let e = MariaGtidSet::parse("0-1-5,0-2-6").unwrap_err();
        assert!(matches!(e, GtidError::DuplicateDomain { domain: 0, .. }));
        assert!(MariaGtidSet::parse("0-1-5,").is_err());
        let doms: Vec<u32> = s.domains().map(|g| g.domain).collect();
        assert_eq!(doms, [0, 1]);
    }

    #[test]
    fn maria_contains_multi_domain() {
        let a = MariaGtidSet::parse("0-1-145,1-2-7").unwrap();
        let p = |s| MariaGtidSet::parse(s).unwrap();
        assert!(a.contains(&p("")));
        assert!(a.contains(&p("0-1-145")));
        assert!(a.contains(&p("0-9-100")), "server id is not compared");
        assert!(a.contains(&p("0-1-145,1-2-7")));
        assert!(a.contains(&p("1-2-6")));
        assert!(!a.contains(&p("0-1-146")));
        assert!(!a.contains(&p("1-2-8")));
        assert!(!a.contains(&p("2-1-1")), "unknown domain");
        assert!(!a.contains(&p("0-1-1,2-1-1")));
        assert!(!p("").contains(&a));
        assert!(p("").contains(&p("")));
    }

    #[test]
    fn maria_update() {
        let mut s = MariaGtidSet::default();
        s.update(&"0-1-5".parse().unwrap());
        s.update(&"1-1-3".parse().unwrap());
        s.update(&"0-2-6".parse().unwrap());
        assert_eq!(s.to_string(), "0-2-6,1-1-3");
        s.update(&"0-1-4".parse().unwrap());
        assert_eq!(s.to_string(), "0-2-6,1-1-3", "never moves backwards");
    }

    #[test]
    fn mysql_parse_merge() {
        let s = MysqlGtidSet::parse(&format!("{U1}:1-5:7-9,{U2}:1")).unwrap();
        assert_eq!(s.to_string(), format!("{U1}:1-5:7-9,{U2}:1"));
        // Adjacent and overlapping intervals merge; order and case normalised.
        let s = MysqlGtidSet::parse(&format!("{}:7-9:1-5:6,\n{}:3-4:1-2", U2, U1.to_uppercase()))
            .unwrap();
        assert_eq!(s.to_string(), format!("{U1}:1-4,{U2}:1-9"));
        let s = MysqlGtidSet::parse(&format!("{U1}:1-10:3-4:12,{U1}:11")).unwrap();
        assert_eq!(s.to_string(), format!("{U1}:1-12"));
        let bare = U1.replace('-', "");
        assert_eq!(
            MysqlGtidSet::parse(&format!("{bare}:1"))
                .unwrap()
                .to_string(),
            format!("{U1}:1")
        );
        assert!(MysqlGtidSet::parse("").unwrap().is_empty());
        for bad in [
            U1.to_string(),
            format!("{U1}:0"),
            format!("{U1}:5-3"),
            format!("{U1}:1-"),
            format!("{U1}:x"),
            format!("{U1}:tag:1-5"),
            "nope:1".to_string(),
            format!("{U1}:1,"),
            format!("{}:1", &U1[..35]),
        ] {
            assert!(MysqlGtidSet::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mysql_add_contains_union() {
        let mut s = MysqlGtidSet::default();
        for g in [1, 2, 3, 5, 4, 10] {
            s.add(U1, g).unwrap();
        }
        assert_eq!(s.to_string(), format!("{U1}:1-5:10"));
        assert_eq!(s.add(U1, 0), Err(GtidError::ZeroGno));
        assert!(s.add("bad", 1).is_err());
        let p = |x: &str| MysqlGtidSet::parse(x).unwrap();
        assert!(s.contains(&p(&format!("{U1}:2-4"))));
        assert!(s.contains(&p(&format!("{U1}:1-5:10"))));
        assert!(!s.contains(&p(&format!("{U1}:4-6"))), "spans a hole");
        assert!(!s.contains(&p(&format!("{U1}:9-10"))));
        assert!(!s.contains(&p(&format!("{U2}:1"))));
        assert!(s.contains(&p("")));
        let sid: Sid = U1.parse().unwrap();
        assert!(s.contains_gtid(&sid, 10));
        assert!(!s.contains_gtid(&sid, 6));
        let u = s.union(&p(&format!("{U1}:6-9,{U2}:1-2")));
        assert_eq!(u.to_string(), format!("{U1}:1-10,{U2}:1-2"));
        assert!(u.contains(&s));
        assert!(!s.contains(&u));
    }

    #[test]
    fn position_forms() {
        let p = Position::parse(Flavor::MariaDB, "0-1-5").unwrap();
        assert_eq!(p.to_string(), "0-1-5");
        assert_eq!(p.to_prefixed(), "MariaDB/0-1-5");
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"MariaDB/0-1-5\"");
        assert_eq!("MariaDB/0-1-5".parse::<Position>().unwrap(), p);
        let m: Position = format!("MySQL56/{U1}:1-5").parse().unwrap();
        assert_eq!(m.flavor(), Flavor::MySQL);
        assert_eq!(m.to_prefixed(), format!("MySQL56/{U1}:1-5"));
        let back: Position = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert!("0-1-5".parse::<Position>().is_err());
        assert!("Oracle/1".parse::<Position>().is_err());
        let empty: Position = "MariaDB/".parse().unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty, Position::empty(Flavor::MariaDB));
        assert!(!p.is_empty());
    }

    #[test]
    fn position_contains_across_flavors() {
        let a = Position::parse(Flavor::MariaDB, "0-1-5").unwrap();
        let b = Position::parse(Flavor::MariaDB, "0-1-3").unwrap();
        assert!(a.contains(&b));
        assert!(!b.contains(&a));
        let m = Position::empty(Flavor::MySQL);
        assert!(!a.contains(&m));
        assert!(!m.contains(&Position::empty(Flavor::MariaDB)));
        assert!(m.contains(&Position::empty(Flavor::MySQL)));
    }

    fn arb_maria() -> impl Strategy<Value = MariaGtidSet> {
        proptest::collection::btree_map(0u32..5, (any::<u32>(), any::<u64>()), 0..5).prop_map(|m| {
            let mut s = MariaGtidSet::default();
            for (domain, (server_id, seq)) in m {
                s.update(&MariaGtid {
                    domain,
                    server_id,
                    seq,
                });
            }
            s
        })
    }

    fn arb_mysql() -> impl Strategy<Value = MysqlGtidSet> {
        proptest::collection::vec((0u8..3, 1u64..40, 0u64..5), 0..12).prop_map(|v| {
            let mut s = MysqlGtidSet::default();
            for (u, a, len) in v {
                s.add_interval(Sid([u; 16]), a, a + len);
            }
            s
        })
    }

    proptest! {
        #[test]
        fn maria_round_trip(s in arb_maria()) {
            let back = MariaGtidSet::parse(&s.to_string()).unwrap();
            prop_assert_eq!(&back, &s);
            prop_assert!(s.contains(&s));
            let p = Position::MariaDB(s);
            prop_assert_eq!(p.to_prefixed().parse::<Position>().unwrap(), p);
        }

        #[test]
        fn mysql_round_trip(s in arb_mysql()) {
            let text = s.to_string();
            let back = MysqlGtidSet::parse(&text).unwrap();
            prop_assert_eq!(&back, &s);
            prop_assert_eq!(back.to_string(), text);
            prop_assert!(s.contains(&s));
            // Intervals are canonical: sorted, disjoint, non-adjacent.
            for (_, ivs) in s.intervals() {
                for w in ivs.windows(2) {
                    prop_assert!(w[0].1 + 1 < w[1].0);
                }
            }
        }

        #[test]
        fn mysql_union_contains_both(a in arb_mysql(), b in arb_mysql()) {
            let u = a.union(&b);
            prop_assert!(u.contains(&a));
            prop_assert!(u.contains(&b));
            prop_assert_eq!(u.clone(), b.union(&a));
            if a.contains(&b) {
                prop_assert_eq!(u, a);
            }
        }

        #[test]
        fn mysql_contains_matches_members(a in arb_mysql(), b in arb_mysql()) {
            let mut every = true;
            for (sid, ivs) in b.intervals() {
                for &(x, y) in ivs {
                    for g in x..=y {
                        every &= a.contains_gtid(sid, g);
                    }
                }
            }
            prop_assert_eq!(a.contains(&b), every);
        }
    }
}
