//! Rules shared by all backends, so that they agree on what a transaction may do.

use std::collections::HashSet;

use crate::{Cond, Op, Revision, TopoError};

/// Refuses transactions that etcd would refuse (or that would be ambiguous), before anything is
/// read, so that code tested on the file store also works on etcd.
pub(crate) fn validate(ops: &[Op]) -> Result<(), TopoError> {
    let mut keys: HashSet<&str> = HashSet::new();
    let mut prefixes: Vec<&str> = Vec::new();
    for op in ops {
        match op {
            Op::Put { key, .. } | Op::Delete { key, .. } => {
                if key.is_empty() {
                    return Err(TopoError::InvalidTxn("empty key".into()));
                }
                if !keys.insert(key) {
                    return Err(TopoError::InvalidTxn(format!(
                        "key {key} appears more than once"
                    )));
                }
            }
            Op::DeletePrefix { prefix } => prefixes.push(prefix),
        }
    }
    for key in &keys {
        if let Some(p) = prefixes.iter().find(|p| key.starts_with(**p)) {
            return Err(TopoError::InvalidTxn(format!(
                "key {key} is also deleted by prefix {p:?} in the same transaction"
            )));
        }
    }
    Ok(())
}

/// Checks one precondition against the key's current `mod_revision` (None = absent).
pub(crate) fn check_cond(
    key: &str,
    cond: &Cond,
    current: Option<Revision>,
) -> Result<(), TopoError> {
    let fail = |detail: String| {
        Err(TopoError::CondFailed {
            key: key.to_string(),
            detail,
        })
    };
    match (cond, current) {
        (Cond::Any, _) => Ok(()),
        (Cond::Absent, None) => Ok(()),
        (Cond::Absent, Some(m)) => fail(format!("expected absent, exists with mod_revision {m}")),
        (Cond::ModRevision(0), None) => Ok(()),
        (Cond::ModRevision(want), Some(m)) if *want == m => Ok(()),
        (Cond::ModRevision(want), Some(m)) => {
            fail(format!("expected mod_revision {want}, found {m}"))
        }
        (Cond::ModRevision(want), None) => {
            fail(format!("expected mod_revision {want}, key is absent"))
        }
    }
}

/// The smallest byte string greater than every string starting with `prefix` (None: unbounded),
/// as etcd computes range ends.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn validate_rejects_overlaps() {
        let put = |k: &str| Op::Put {
            key: k.into(),
            value: vec![],
            cond: Cond::Any,
        };
        assert!(validate(&[put("/a"), put("/b")]).is_ok());
        assert!(validate(&[put("/a"), put("/a")]).is_err());
        assert!(validate(&[put("")]).is_err());
        assert!(
            validate(&[
                Op::DeletePrefix {
                    prefix: "/r/".into()
                },
                put("/r/x")
            ])
            .is_err()
        );
        assert!(
            validate(&[
                Op::DeletePrefix {
                    prefix: "/r/".into()
                },
                put("/rx")
            ])
            .is_ok()
        );
    }
}
