//! Comparing keys in the servers' order and values by their meaning.
//!
//! Keys: the merge must order rows exactly as every shard's `ORDER BY`
//! does, or it would pair the wrong rows. Integers compare as numbers
//! whatever their signedness, DECIMAL as exact numbers, temporal values by
//! their fields, binary strings bytewise, and character data by the
//! server's own weight strings (so `'a'` and `'A'` under a `_ci` collation
//! are one key, as they are one row to the server).
//!
//! Values: equal when they mean the same thing: JSON documents as JSON
//! (key order and spacing do not matter, `1` equals `1.0`), DECIMAL as
//! exact numbers, FLOAT/DOUBLE bit for bit (the binary protocol carries
//! them exactly), everything else exactly as stored.

use crate::schema::{KeyOrder, Kind, TablePlan};
use mysql_async::Value;
use std::cmp::Ordering;

/// Orders two rows (select-list values) by the plan's key.
pub fn cmp_key(plan: &TablePlan, a: &[Value], b: &[Value]) -> Ordering {
    for (k, order) in plan.order.iter().enumerate() {
        let col = plan.pk[k];
        let o = match order {
            KeyOrder::Weight { extra, pad } => match (a.get(*extra), b.get(*extra)) {
                (Some(Value::Bytes(x)), Some(Value::Bytes(y))) => cmp_weights(x, y, pad),
                (x, y) => cmp_value(KeyOrder::Bytes, x, y),
            },
            other => cmp_value(other.clone(), a.get(col), b.get(col)),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn rank(v: Option<&Value>) -> u8 {
    match v {
        None | Some(Value::NULL) => 0,
        _ => 1,
    }
}

fn cmp_value(order: KeyOrder, a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let (Some(a), Some(b)) = (a, b) else {
        return rank(a).cmp(&rank(b));
    };
    if matches!(a, Value::NULL) || matches!(b, Value::NULL) {
        return rank(Some(a)).cmp(&rank(Some(b)));
    }
    match order {
        KeyOrder::Numeric => match (as_i128(a), as_i128(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => cmp_fallback(a, b),
        },
        KeyOrder::Decimal => match (a, b) {
            (Value::Bytes(x), Value::Bytes(y)) => cmp_decimal(x, y),
            _ => cmp_fallback(a, b),
        },
        KeyOrder::Float => match (as_f64(a), as_f64(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => cmp_fallback(a, b),
        },
        KeyOrder::Temporal => match (temporal(a), temporal(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => cmp_fallback(a, b),
        },
        KeyOrder::Bytes | KeyOrder::Weight { .. } => cmp_fallback(a, b),
    }
}

/// Bytes bytewise; anything else by its debug text (only reached when the
/// servers return types the plan did not expect, which the merge's order
/// check then reports).
fn cmp_fallback(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        _ => format!("{a:?}").cmp(&format!("{b:?}")),
    }
}

fn as_i128(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(f64::from(*f)),
        Value::Double(d) => Some(*d),
        _ => None,
    }
}

/// Temporal values as (sign, fields...) in one comparable tuple.
fn temporal(v: &Value) -> Option<(i8, u64, u64, u64)> {
    match v {
        Value::Date(y, mo, d, h, mi, s, us) => Some((
            1,
            u64::from(*y) * 10_000 + u64::from(*mo) * 100 + u64::from(*d),
            u64::from(*h) * 10_000 + u64::from(*mi) * 100 + u64::from(*s),
            u64::from(*us),
        )),
        Value::Time(neg, days, h, m, s, us) => {
            let micros = ((u64::from(*days) * 24 + u64::from(*h)) * 3600
                + u64::from(*m) * 60
                + u64::from(*s))
                * 1_000_000
                + u64::from(*us);
            Some(if *neg && micros != 0 {
                (0, u64::MAX - micros, 0, 0)
            } else {
                (1, micros, 0, 0)
            })
        }
        _ => None,
    }
}

/// Compares weight strings the way a PAD SPACE collation compares the
/// strings they came from: the shorter one continues with `pad` repeated.
/// With an empty `pad` (NO PAD collations) this is plain bytewise order.
pub fn cmp_weights(a: &[u8], b: &[u8], pad: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        Ordering::Equal => {}
        o => return o,
    }
    if pad.is_empty() || a.len() == b.len() {
        return a.len().cmp(&b.len());
    }
    let (tail, flip) = if a.len() > b.len() {
        (&a[n..], false)
    } else {
        (&b[n..], true)
    };
    // The tail against the pad pattern, byte by byte (weights are whole
    // units, so the pattern stays aligned).
    let mut o = Ordering::Equal;
    for (i, &x) in tail.iter().enumerate() {
        let p = pad[i % pad.len()];
        if x != p {
            o = x.cmp(&p);
            break;
        }
    }
    if o == Ordering::Equal && tail.len() % pad.len() != 0 {
        o = Ordering::Greater;
    }
    if flip { o.reverse() } else { o }
}

/// Exact comparison of two DECIMAL texts (`-12.340`, `7`, `.5`).
pub fn cmp_decimal(a: &[u8], b: &[u8]) -> Ordering {
    let pa = parse_decimal(a);
    let pb = parse_decimal(b);
    match (pa, pb) {
        (Some(x), Some(y)) => {
            let (xneg, yneg) = (x.0 && !x.is_zero(), y.0 && !y.is_zero());
            match (xneg, yneg) {
                (false, true) => Ordering::Greater,
                (true, false) => Ordering::Less,
                (false, false) => x.cmp_abs(&y),
                (true, true) => y.cmp_abs(&x),
            }
        }
        _ => a.cmp(b),
    }
}

/// Sign, integer digits without leading zeros, fraction digits without
/// trailing zeros.
struct Dec<'a>(bool, &'a [u8], &'a [u8]);

impl Dec<'_> {
    fn is_zero(&self) -> bool {
        self.1.is_empty() && self.2.is_empty()
    }
    fn cmp_abs(&self, o: &Dec<'_>) -> Ordering {
        self.1
            .len()
            .cmp(&o.1.len())
            .then_with(|| self.1.cmp(o.1))
            .then_with(|| self.2.cmp(o.2))
    }
}

fn parse_decimal(s: &[u8]) -> Option<Dec<'_>> {
    let (neg, s) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = match s.iter().position(|&c| c == b'.') {
        Some(p) => (&s[..p], &s[p + 1..]),
        None => (s, &s[..0]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let int_start = int.iter().position(|&c| c != b'0').unwrap_or(int.len());
    let frac_end = frac.iter().rposition(|&c| c != b'0').map_or(0, |p| p + 1);
    Some(Dec(neg, &int[int_start..], &frac[..frac_end]))
}

/// Whether two values of a column of `kind` mean the same.
pub fn values_equal(kind: Kind, a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Value::NULL, _) | (_, Value::NULL) => false,
        (Value::Int(_) | Value::UInt(_), Value::Int(_) | Value::UInt(_)) => {
            as_i128(a) == as_i128(b)
        }
        (Value::Float(_) | Value::Double(_), Value::Float(_) | Value::Double(_)) => {
            match (as_f64(a), as_f64(b)) {
                (Some(x), Some(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                _ => false,
            }
        }
        (Value::Bytes(x), Value::Bytes(y)) => match kind {
            Kind::Json => json_equal(x, y),
            Kind::Decimal => cmp_decimal(x, y) == Ordering::Equal,
            _ => false,
        },
        _ => false,
    }
}

/// JSON documents compared as JSON; text that does not parse on either
/// side compares bytewise (already unequal here).
pub fn json_equal(a: &[u8], b: &[u8]) -> bool {
    match (
        serde_json::from_slice::<serde_json::Value>(a),
        serde_json::from_slice::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => json_value_equal(&x, &y),
        _ => false,
    }
}

fn json_value_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => {
            if let (Some(i), Some(j)) = (x.as_i64(), y.as_i64()) {
                i == j
            } else if let (Some(i), Some(j)) = (x.as_u64(), y.as_u64()) {
                i == j
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_value_equal(p, q))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_value_equal(v, w)))
        }
        _ => a == b,
    }
}

/// The columns (indexes) whose values differ between two rows.
pub fn differing_columns(plan: &TablePlan, a: &[Value], b: &[Value]) -> Vec<usize> {
    let n = plan.columns.len();
    if a.len() >= n && b.len() >= n && a[..n] == b[..n] {
        return Vec::new();
    }
    plan.columns
        .iter()
        .enumerate()
        .filter(|(i, c)| match (a.get(*i), b.get(*i)) {
            (Some(x), Some(y)) => !values_equal(c.kind, x, y),
            (None, None) => false,
            _ => true,
        })
        .map(|(i, _)| i)
        .collect()
}

/// A value as text for reports, at most `max` characters.
pub fn display(v: &Value, max: usize) -> String {
    let s = match v {
        Value::NULL => "NULL".to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') => s.to_string(),
            _ => format!("0x{}", hex::encode(b)),
        },
        Value::Date(y, mo, d, h, mi, s, us) => {
            let mut t = format!("{y:04}-{mo:02}-{d:02}");
            if (*h, *mi, *s, *us) != (0, 0, 0, 0) {
                t.push_str(&format!(" {h:02}:{mi:02}:{s:02}"));
                if *us != 0 {
                    t.push_str(&format!(".{us:06}"));
                }
            }
            t
        }
        Value::Time(neg, days, h, m, s, us) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            let mut t = format!("{}{hours:02}:{m:02}:{s:02}", if *neg { "-" } else { "" });
            if *us != 0 {
                t.push_str(&format!(".{us:06}"));
            }
            t
        }
    };
    if s.chars().count() > max {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Column;
    use std::sync::Arc;

    fn plan(kind: Kind, order: KeyOrder, extras: usize) -> TablePlan {
        TablePlan {
            name: "t".into(),
            columns: vec![
                Column {
                    name: "k".into(),
                    kind,
                    charset: None,
                    collation: None,
                    nullable: true,
                },
                Column {
                    name: "v".into(),
                    kind: Kind::Json,
                    charset: None,
                    collation: None,
                    nullable: true,
                },
            ],
            pk: vec![0],
            order: vec![order],
            extras,
        }
    }

    #[test]
    fn weights_compare_like_pad_space() {
        // utf8mb4_general_ci weights: 'c' = 0043, ' ' = 0020, tab = 0009.
        let pad = [0x00, 0x20];
        let c = [0x00, 0x43];
        let c_sp = [0x00, 0x43, 0x00, 0x20];
        let c_tab = [0x00, 0x43, 0x00, 0x09];
        let c_bang = [0x00, 0x43, 0x00, 0x21];
        assert_eq!(cmp_weights(&c, &c_sp, &pad), Ordering::Equal);
        // 'c' pads to 'c ', which sorts after 'c\t' and before 'c!'.
        assert_eq!(cmp_weights(&c, &c_tab, &pad), Ordering::Greater);
        assert_eq!(cmp_weights(&c_tab, &c, &pad), Ordering::Less);
        assert_eq!(cmp_weights(&c, &c_bang, &pad), Ordering::Less);
        // NO PAD: the shorter string first.
        assert_eq!(cmp_weights(&c, &c_sp, &[]), Ordering::Less);
        assert_eq!(cmp_weights(&c, &c_tab, &[]), Ordering::Less);
    }

    #[test]
    fn case_insensitive_keys_are_one_key() {
        // Weight strings as utf8mb4_general_ci gives them: 'a' and 'A' are
        // both 0041, 'B' is 0042; bytewise 'B' < 'a' but by collation a < B.
        let p = plan(
            Kind::Text,
            KeyOrder::Weight {
                extra: 2,
                pad: Arc::from(vec![0u8, 0x20]),
            },
            1,
        );
        let row = |k: &[u8], w: &[u8]| {
            vec![
                Value::Bytes(k.to_vec()),
                Value::NULL,
                Value::Bytes(w.to_vec()),
            ]
        };
        let a = row(b"a", &[0, 0x41]);
        let big_a = row(b"A", &[0, 0x41]);
        let b = row(b"B", &[0, 0x42]);
        assert_eq!(cmp_key(&p, &a, &big_a), Ordering::Equal);
        assert_eq!(cmp_key(&p, &a, &b), Ordering::Less);
        assert_eq!(cmp_key(&p, &b, &big_a), Ordering::Greater);
        // Same key, different bytes: a value difference in the key column.
        assert_eq!(differing_columns(&p, &a, &big_a), vec![0]);
    }

    #[test]
    fn numeric_keys_ignore_signedness() {
        let p = plan(Kind::Integer, KeyOrder::Numeric, 0);
        let r = |v: Value| vec![v, Value::NULL];
        assert_eq!(
            cmp_key(&p, &r(Value::Int(5)), &r(Value::UInt(5))),
            Ordering::Equal
        );
        assert_eq!(
            cmp_key(&p, &r(Value::Int(-1)), &r(Value::UInt(u64::MAX))),
            Ordering::Less
        );
        assert_eq!(
            cmp_key(&p, &r(Value::Int(10)), &r(Value::Int(9))),
            Ordering::Greater
        );
    }

    #[test]
    fn decimals_compare_exactly() {
        let d = |a: &str, b: &str| cmp_decimal(a.as_bytes(), b.as_bytes());
        assert_eq!(d("1.50", "1.5"), Ordering::Equal);
        assert_eq!(d("-0.00", "0"), Ordering::Equal);
        assert_eq!(d("10", "9.999"), Ordering::Greater);
        assert_eq!(d("-10", "-9.999"), Ordering::Less);
        assert_eq!(d("0.1", "0.10000000000000000001"), Ordering::Less);
        // Beyond f64: these differ in the 25th digit.
        assert_eq!(
            d("12345678901234567890.12345", "12345678901234567890.12346"),
            Ordering::Less
        );
        assert!(values_equal(
            Kind::Decimal,
            &Value::Bytes(b"2.10".to_vec()),
            &Value::Bytes(b"2.1".to_vec())
        ));
        assert!(!values_equal(
            Kind::Decimal,
            &Value::Bytes(b"2.10".to_vec()),
            &Value::Bytes(b"2.11".to_vec())
        ));
    }

    #[test]
    fn floats_are_exact() {
        assert!(values_equal(
            Kind::Double,
            &Value::Double(0.1),
            &Value::Double(0.1)
        ));
        assert!(!values_equal(
            Kind::Double,
            &Value::Double(0.1),
            &Value::Double(f64::from_bits(0.1f64.to_bits() + 1))
        ));
        assert!(!values_equal(
            Kind::Float,
            &Value::Float(1.0),
            &Value::Float(f32::from_bits(1.0f32.to_bits() + 1))
        ));
        assert!(values_equal(
            Kind::Float,
            &Value::Float(0.5),
            &Value::Double(0.5)
        ));
    }

    #[test]
    fn json_compares_as_json() {
        let j = |a: &str, b: &str| {
            values_equal(
                Kind::Json,
                &Value::Bytes(a.as_bytes().to_vec()),
                &Value::Bytes(b.as_bytes().to_vec()),
            )
        };
        assert!(j(r#"{"a": 1, "b": [1, 2]}"#, r#"{"b":[1,2],"a":1}"#));
        assert!(j("1", "1.0"));
        assert!(!j(r#"{"a": 1}"#, r#"{"a": 2}"#));
        assert!(!j("[1, 2]", "[2, 1]"));
        assert!(!j(r#"{"a": 1}"#, r#"{"a": 1, "b": null}"#));
        // Text columns are not JSON: spacing matters there.
        assert!(!values_equal(
            Kind::Text,
            &Value::Bytes(b"{\"a\":1}".to_vec()),
            &Value::Bytes(b"{\"a\": 1}".to_vec())
        ));
        let p = plan(Kind::Integer, KeyOrder::Numeric, 0);
        let a = vec![Value::Int(1), Value::Bytes(br#"{"x": 1, "y": 2}"#.to_vec())];
        let b = vec![Value::Int(1), Value::Bytes(br#"{"y":2,"x":1}"#.to_vec())];
        assert!(differing_columns(&p, &a, &b).is_empty());
    }

    #[test]
    fn temporal_keys_order() {
        let p = plan(Kind::Time, KeyOrder::Temporal, 0);
        let r = |v: Value| vec![v, Value::NULL];
        let neg = r(Value::Time(true, 0, 1, 0, 0, 0));
        let neg_small = r(Value::Time(true, 0, 0, 0, 1, 0));
        let pos = r(Value::Time(false, 0, 0, 0, 1, 0));
        assert_eq!(cmp_key(&p, &neg, &neg_small), Ordering::Less);
        assert_eq!(cmp_key(&p, &neg_small, &pos), Ordering::Less);
        let d = plan(Kind::DateTime, KeyOrder::Temporal, 0);
        assert_eq!(
            cmp_key(
                &d,
                &r(Value::Date(2024, 1, 2, 0, 0, 0, 1)),
                &r(Value::Date(2024, 1, 2, 0, 0, 0, 0))
            ),
            Ordering::Greater
        );
    }

    #[test]
    fn display_is_readable_and_bounded() {
        assert_eq!(display(&Value::Bytes(b"abc".to_vec()), 10), "abc");
        assert_eq!(display(&Value::Bytes(vec![0, 1]), 10), "0x0001");
        assert_eq!(display(&Value::Bytes(b"abcdef".to_vec()), 3), "abc…");
        assert_eq!(
            display(&Value::Date(2024, 1, 2, 3, 4, 5, 0), 40),
            "2024-01-02 03:04:05"
        );
    }
}
