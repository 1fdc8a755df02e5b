//! Identifiers of cluster members.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a tablet alias was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TabletAliasError {
    #[error("tablet alias `{0}` is not <cell>-<uid>, e.g. local-0000000100")]
    Format(String),
    #[error("tablet alias `{alias}`: uid `{uid}` is not a number from 0 to 4294967295")]
    Uid { alias: String, uid: String },
}

/// Names one tablet: the cell (data centre or zone) it lives in and a number
/// unique within that cell. Written as Vitess writes it, `local-0000000100`
/// (uid zero-padded to 10 digits), so aliases read the same in both systems.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TabletAlias {
    pub cell: String,
    pub uid: u32,
}

impl TabletAlias {
    pub fn new(cell: impl Into<String>, uid: u32) -> Self {
        TabletAlias {
            cell: cell.into(),
            uid,
        }
    }
}

impl fmt::Display for TabletAlias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:010}", self.cell, self.uid)
    }
}

impl FromStr for TabletAlias {
    type Err = TabletAliasError;

    /// Accepts the uid padded or not (`local-100`); the cell is everything
    /// before the last `-`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (cell, uid) = s
            .rsplit_once('-')
            .ok_or_else(|| TabletAliasError::Format(s.to_string()))?;
        if cell.is_empty() || cell.ends_with('-') || cell.chars().any(char::is_whitespace) {
            return Err(TabletAliasError::Format(s.to_string()));
        }
        let bad_uid = || TabletAliasError::Uid {
            alias: s.to_string(),
            uid: uid.to_string(),
        };
        if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_uid());
        }
        let uid = uid.parse().map_err(|_| bad_uid())?;
        Ok(TabletAlias {
            cell: cell.to_string(),
            uid,
        })
    }
}

impl Serialize for TabletAlias {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for TabletAlias {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_form() {
        let a = TabletAlias::new("local", 100);
        assert_eq!(a.to_string(), "local-0000000100");
        assert_eq!("local-0000000100".parse::<TabletAlias>().unwrap(), a);
        assert_eq!("local-100".parse::<TabletAlias>().unwrap(), a);
        assert_eq!(
            "us-east-1-0000000007".parse::<TabletAlias>().unwrap(),
            TabletAlias::new("us-east-1", 7)
        );
        assert_eq!(TabletAlias::new("z", u32::MAX).to_string(), "z-4294967295");
        for bad in [
            "local",
            "-100",
            "local-",
            "local-x1",
            "local-4294967296",
            "local--1",
            " a-1",
        ] {
            assert!(bad.parse::<TabletAlias>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ordering_and_serde() {
        let mut v = [
            TabletAlias::new("zone2", 1),
            TabletAlias::new("zone1", 200),
            TabletAlias::new("zone1", 3),
        ];
        v.sort();
        let s: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            ["zone1-0000000003", "zone1-0000000200", "zone2-0000000001"]
        );
        let json = serde_json::to_string(&v[0]).unwrap();
        assert_eq!(json, "\"zone1-0000000003\"");
        assert_eq!(serde_json::from_str::<TabletAlias>(&json).unwrap(), v[0]);
        assert!(serde_json::from_str::<TabletAlias>("\"nope\"").is_err());
    }

    proptest! {
        #[test]
        fn round_trip(cell in "[a-z]([a-z0-9_-]{0,11}[a-z0-9])?", uid in any::<u32>()) {
            let a = TabletAlias::new(cell, uid);
            prop_assert_eq!(a.to_string().parse::<TabletAlias>().unwrap(), a);
        }
    }
}
