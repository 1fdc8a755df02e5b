//! Values as the gate sees them in result rows and in prepared-statement
//! parameters, with MySQL's comparison rules, so that a merge across shards
//! orders, groups and aggregates exactly as one server would.

use std::cmp::Ordering;
use std::fmt;

/// One cell of a decoded row, or one parameter of a prepared statement.
///
/// The gate decodes a column into the variant its MySQL type calls for (see
/// [`ColumnKind`]); the variant decides how the merge compares and adds it.
#[derive(Clone, Debug, PartialEq)]
pub enum Datum {
    Null,
    Int(i64),
    UInt(u64),
    /// FLOAT and DOUBLE columns.
    Float(f64),
    /// DECIMAL columns and the results of `SUM`/`AVG` over exact numbers, in
    /// MySQL's text form (`-12.50`): kept as text so that no digit is lost.
    Decimal(String),
    /// Character strings (CHAR, VARCHAR, TEXT, ENUM, SET) of a
    /// case-insensitive collation. Compared as `utf8mb4_general_ci` (PAD
    /// SPACE) does: case- and accent-insensitively, trailing spaces ignored
    /// (see `general_ci_weight` for the details).
    Text(Vec<u8>),
    /// Binary strings and everything else that sorts by its text bytes:
    /// BINARY/VARBINARY/BLOB, and DATE/TIME/DATETIME/TIMESTAMP, whose text
    /// forms sort chronologically.
    Binary(Vec<u8>),
}

/// How the gate should decode a result column, from its MySQL column type and
/// character set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    Int,
    UInt,
    Float,
    Decimal,
    Text,
    Binary,
}

impl Datum {
    /// Decodes one text-protocol cell (`None` is SQL NULL). Unparseable
    /// numbers fall back to [`Datum::Binary`] rather than failing the query.
    pub fn from_text(kind: ColumnKind, cell: Option<&[u8]>) -> Datum {
        let Some(b) = cell else { return Datum::Null };
        let s = std::str::from_utf8(b).ok();
        let parsed = match kind {
            ColumnKind::Int => s.and_then(|s| s.parse().ok()).map(Datum::Int),
            ColumnKind::UInt => s.and_then(|s| s.parse().ok()).map(Datum::UInt),
            ColumnKind::Float => s.and_then(|s| s.parse().ok()).map(Datum::Float),
            ColumnKind::Decimal => s
                .filter(|s| Dec::parse(s).is_some())
                .map(|s| Datum::Decimal(s.to_string())),
            ColumnKind::Text => Some(Datum::Text(b.to_vec())),
            ColumnKind::Binary => Some(Datum::Binary(b.to_vec())),
        };
        parsed.unwrap_or_else(|| Datum::Binary(b.to_vec()))
    }

    /// The text-protocol form of the cell (`None` is SQL NULL), as MySQL
    /// would print it.
    pub fn to_text(&self) -> Option<Vec<u8>> {
        match self {
            Datum::Null => None,
            Datum::Int(i) => Some(i.to_string().into_bytes()),
            Datum::UInt(u) => Some(u.to_string().into_bytes()),
            Datum::Float(f) => Some(format_double(*f).into_bytes()),
            Datum::Decimal(d) => Some(d.clone().into_bytes()),
            Datum::Text(b) | Datum::Binary(b) => Some(b.clone()),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    /// The SQL literal that stands for this value when a parameter is
    /// inlined into statement text. Strings use backslash escapes, which
    /// assumes the backend's `sql_mode` lacks `NO_BACKSLASH_ESCAPES` (the
    /// default).
    pub fn to_sql_literal(&self) -> String {
        match self {
            Datum::Null => "NULL".to_string(),
            Datum::Int(i) => i.to_string(),
            Datum::UInt(u) => u.to_string(),
            Datum::Float(f) if f.is_finite() => format!("{f:e}"),
            Datum::Float(_) => "NULL".to_string(),
            Datum::Decimal(d) => d.clone(),
            Datum::Text(b) if std::str::from_utf8(b).is_ok() => quote_string(b),
            Datum::Text(b) | Datum::Binary(b) => {
                let mut s = String::with_capacity(3 + b.len() * 2);
                s.push_str("X'");
                for byte in b {
                    s.push_str(&format!("{byte:02x}"));
                }
                s.push('\'');
                s
            }
        }
    }

    fn as_dec(&self) -> Option<Dec> {
        match self {
            Datum::Int(i) => Dec::parse(&i.to_string()),
            Datum::UInt(u) => Dec::parse(&u.to_string()),
            Datum::Decimal(d) => Dec::parse(d),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Datum::Int(i) => Some(*i as f64),
            Datum::UInt(u) => Some(*u as f64),
            Datum::Float(f) => Some(*f),
            Datum::Decimal(d) => d.parse().ok(),
            Datum::Text(b) | Datum::Binary(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            Datum::Null => None,
        }
    }
}

impl fmt::Display for Datum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_text() {
            None => f.write_str("NULL"),
            Some(b) => f.write_str(&String::from_utf8_lossy(&b)),
        }
    }
}

/// A MySQL string literal with backslash escapes.
pub(crate) fn quote_string(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len() + 2);
    out.push(b'\'');
    for &c in b {
        match c {
            0 => out.extend_from_slice(b"\\0"),
            b'\'' => out.extend_from_slice(b"\\'"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x1a => out.extend_from_slice(b"\\Z"),
            _ => out.push(c),
        }
    }
    out.push(b'\'');
    // Callers pass UTF-8 (others get a hex literal), and escaping only
    // inserts ASCII, so this never replaces anything.
    String::from_utf8_lossy(&out).into_owned()
}

/// MySQL prints doubles in the shortest form that reads back exactly, and
/// switches to exponent notation for very large or small magnitudes.
fn format_double(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    let a = f.abs();
    if !(1e-4..1e15).contains(&a) {
        format!("{f:e}")
    } else {
        format!("{f}")
    }
}

/// Compares two values as MySQL compares two values of one column: NULL
/// first, numbers numerically (exactly for integers and decimals), character
/// strings as `utf8mb4_general_ci` (case- and accent-insensitively, trailing
/// spaces ignored), binary strings bytewise.
pub fn compare(a: &Datum, b: &Datum) -> Ordering {
    use Datum::*;
    match (a, b) {
        (Null, Null) => Ordering::Equal,
        (Null, _) => Ordering::Less,
        (_, Null) => Ordering::Greater,
        (Int(x), Int(y)) => x.cmp(y),
        (UInt(x), UInt(y)) => x.cmp(y),
        (Int(x), UInt(y)) => cmp_i_u(*x, *y),
        (UInt(x), Int(y)) => cmp_i_u(*y, *x).reverse(),
        (Text(x), Text(y)) => compare_ci(x, y),
        (Text(x) | Binary(x), Text(y) | Binary(y)) => x.cmp(y),
        (Float(_), _) | (_, Float(_)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            _ => Ordering::Equal,
        },
        _ => match (a.as_dec(), b.as_dec()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                _ => a.to_text().cmp(&b.to_text()),
            },
        },
    }
}

fn cmp_i_u(i: i64, u: u64) -> Ordering {
    if i < 0 {
        Ordering::Less
    } else {
        (i as u64).cmp(&u)
    }
}

/// `utf8mb4_general_ci` (MariaDB 10.11's default) for the BMP, PAD SPACE:
/// each character weighs [`general_ci_weight`], the weights compare in turn,
/// and the longer string's remaining weights compare against a space's (so
/// trailing spaces count for nothing). Bytes that are not UTF-8 weigh as
/// U+FFFD.
///
/// Scatter merges (ORDER BY, DISTINCT, GROUP BY on text) compare the same
/// long strings many times, and they nearly always differ early: so the
/// common prefix that is ASCII and equal ignoring case is skipped first
/// (its weights are equal and it ends on a character boundary), and a
/// first difference between two ASCII bytes decides at once. Only the rest
/// of the strings, from a non-ASCII character or the end of one of them,
/// is weighed character by character.
fn compare_ci(a: &[u8], b: &[u8]) -> Ordering {
    let same = a
        .iter()
        .zip(b)
        .take_while(|(x, y)| x.is_ascii() && y.is_ascii() && x.eq_ignore_ascii_case(y))
        .count();
    let (a, b) = (&a[same..], &b[same..]);
    if let (Some(x), Some(y)) = (a.first(), b.first())
        && x.is_ascii()
        && y.is_ascii()
    {
        return x.to_ascii_uppercase().cmp(&y.to_ascii_uppercase());
    }
    if a.is_ascii() && b.is_ascii() {
        return compare_weights(
            a.iter().map(|&c| u32::from(c.to_ascii_uppercase())),
            b.iter().map(|&c| u32::from(c.to_ascii_uppercase())),
        );
    }
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    compare_weights(
        a.chars().map(general_ci_weight),
        b.chars().map(general_ci_weight),
    )
}

fn compare_weights(mut a: impl Iterator<Item = u32>, mut b: impl Iterator<Item = u32>) -> Ordering {
    const SPACE: u32 = b' ' as u32;
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (Some(x), Some(y)) => match x.cmp(&y) {
                Ordering::Equal => {}
                o => return o,
            },
            (Some(x), None) => {
                return std::iter::once(x)
                    .chain(a)
                    .map(|w| w.cmp(&SPACE))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal);
            }
            (None, Some(y)) => {
                return std::iter::once(y)
                    .chain(b)
                    .map(|w| SPACE.cmp(&w))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal);
            }
        }
    }
}

/// The sort weight of one character under `utf8mb4_general_ci`: the simple
/// uppercase of its base letter, accents removed (canonical decomposition,
/// combining marks dropped: `é`, `É`, `ë` → `E`; `ö` → `O`; `ά` → `Α`);
/// `ß` weighs `S` as in MariaDB; every character outside the BMP weighs
/// U+FFFD.
///
/// Where this differs from MariaDB's own table (`plane00`..`planeFF` of
/// `ctype-utf8.c`): MariaDB derives weights from Unicode's data of its time
/// and keeps a few letters distinct that decompose here (and the other way
/// round), e.g. some Cyrillic letters with diacritics (`й` keeps its own
/// weight there, weighs `И` here) and letters without a canonical
/// decomposition such as `ø`, `đ`, `ł`, `æ` (own weights in both). Text in
/// Latin, Greek and Cyrillic without such letters orders the same.
pub(crate) fn general_ci_weight(c: char) -> u32 {
    let cp = u32::from(c);
    if cp > 0xFFFF {
        return 0xFFFD;
    }
    if c.is_ascii() {
        return u32::from(c.to_ascii_uppercase());
    }
    if c == '\u{df}' {
        return u32::from(b'S');
    }
    let mut base = None;
    unicode_normalization::char::decompose_canonical(c, |d| {
        if base.is_none() && !unicode_normalization::char::is_combining_mark(d) {
            base = Some(d);
        }
    });
    let base = base.unwrap_or(c);
    let mut up = base.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) if u32::from(u) <= 0xFFFF => u32::from(u),
        _ => u32::from(base),
    }
}

/// Adds two partial sums as MySQL's SUM does: exact for integers and
/// decimals (keeping the larger scale), floating point when either side is.
pub(crate) fn add(a: &Datum, b: &Datum) -> Datum {
    use Datum::*;
    match (a, b) {
        (Null, x) | (x, Null) => x.clone(),
        (Int(x), Int(y)) => match x.checked_add(*y) {
            Some(s) => Int(s),
            None => Decimal((i128::from(*x) + i128::from(*y)).to_string()),
        },
        (UInt(x), UInt(y)) => match x.checked_add(*y) {
            Some(s) => UInt(s),
            None => Decimal((u128::from(*x) + u128::from(*y)).to_string()),
        },
        (Float(_), _) | (_, Float(_)) => {
            Float(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0))
        }
        _ => match (a.as_dec(), b.as_dec()) {
            (Some(x), Some(y)) => Decimal(x.add(&y).to_string()),
            _ => Float(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0)),
        },
    }
}

/// `AVG` from a merged `SUM` and `COUNT`: MySQL gives exact numbers four more
/// decimals than the argument (`div_precision_increment`), rounded half away
/// from zero, and floating point for FLOAT/DOUBLE arguments.
pub(crate) fn average(sum: &Datum, count: &Datum) -> Datum {
    let n = match count {
        Datum::Int(i) if *i > 0 => *i as u64,
        Datum::UInt(u) if *u > 0 => *u,
        Datum::Decimal(d) => match d.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => return Datum::Null,
        },
        _ => return Datum::Null,
    };
    match sum {
        Datum::Null => Datum::Null,
        Datum::Float(f) => Datum::Float(f / n as f64),
        other => match other.as_dec() {
            Some(d) => {
                let scale = d.frac.len() + 4;
                Datum::Decimal(d.div_round(n, scale).to_string())
            }
            None => Datum::Float(other.as_f64().unwrap_or(0.0) / n as f64),
        },
    }
}

/// An exact decimal: sign, integer digits and fraction digits (ASCII digit
/// values 0-9), enough for MySQL's DECIMAL(65,30).
#[derive(Clone, Debug)]
pub(crate) struct Dec {
    neg: bool,
    int: Vec<u8>,
    frac: Vec<u8>,
}

impl Dec {
    pub(crate) fn parse(s: &str) -> Option<Dec> {
        let (neg, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (i, f) = rest.split_once('.').unwrap_or((rest, ""));
        if (i.is_empty() && f.is_empty())
            || !i.bytes().all(|c| c.is_ascii_digit())
            || !f.bytes().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        Some(Dec {
            neg,
            int: i.bytes().map(|c| c - b'0').collect(),
            frac: f.bytes().map(|c| c - b'0').collect(),
        })
    }

    /// All digits as one integer scaled by 10^scale (scale >= frac.len()).
    fn scaled(&self, scale: usize) -> Vec<u8> {
        let mut v = self.int.clone();
        v.extend_from_slice(&self.frac);
        v.extend(std::iter::repeat_n(0, scale - self.frac.len()));
        v
    }

    fn is_zero(&self) -> bool {
        self.int.iter().chain(self.frac.iter()).all(|&d| d == 0)
    }

    fn add(&self, other: &Dec) -> Dec {
        let scale = self.frac.len().max(other.frac.len());
        let a = self.scaled(scale);
        let b = other.scaled(scale);
        let (neg, mag) = if self.neg == other.neg {
            (self.neg, add_mag(&a, &b))
        } else {
            match cmp_mag(&a, &b) {
                Ordering::Less => (other.neg, sub_mag(&b, &a)),
                _ => (self.neg, sub_mag(&a, &b)),
            }
        };
        Dec::from_scaled(neg, mag, scale)
    }

    fn from_scaled(neg: bool, mag: Vec<u8>, scale: usize) -> Dec {
        let mut mag = mag;
        while mag.len() < scale + 1 {
            mag.insert(0, 0);
        }
        let split = mag.len() - scale;
        let mut d = Dec {
            neg,
            int: mag[..split].to_vec(),
            frac: mag[split..].to_vec(),
        };
        if d.is_zero() {
            d.neg = false;
        }
        d
    }

    /// Divides by `n`, rounding half away from zero at `scale` digits.
    fn div_round(&self, n: u64, scale: usize) -> Dec {
        let digits = self.scaled(scale + 1);
        let mut q = Vec::with_capacity(digits.len());
        let mut rem: u128 = 0;
        for d in digits {
            rem = rem * 10 + u128::from(d);
            q.push((rem / u128::from(n)) as u8);
            rem %= u128::from(n);
        }
        let last = q.pop().unwrap_or(0);
        if last >= 5 {
            q = add_mag(&q, &[1]);
        }
        Dec::from_scaled(self.neg, q, scale)
    }
}

fn strip(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&d| d != 0).unwrap_or(v.len());
    &v[start..]
}

fn cmp_mag(a: &[u8], b: &[u8]) -> Ordering {
    let (a, b) = (strip(a), strip(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn add_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let n = a.len().max(b.len()) + 1;
    let mut out = vec![0u8; n];
    let mut carry = 0;
    for i in 0..n {
        let x = if i < a.len() { a[a.len() - 1 - i] } else { 0 };
        let y = if i < b.len() { b[b.len() - 1 - i] } else { 0 };
        let s = x + y + carry;
        out[n - 1 - i] = s % 10;
        carry = s / 10;
    }
    out
}

/// `a - b` for `a >= b`.
fn sub_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i8;
    for i in 0..a.len() {
        let x = a[a.len() - 1 - i] as i8;
        let y = if i < b.len() {
            b[b.len() - 1 - i] as i8
        } else {
            0
        };
        let mut d = x - y - borrow;
        borrow = 0;
        if d < 0 {
            d += 10;
            borrow = 1;
        }
        out[a.len() - 1 - i] = d as u8;
    }
    out
}

impl PartialEq for Dec {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Dec {}
impl PartialOrd for Dec {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Dec {
    fn cmp(&self, other: &Self) -> Ordering {
        let (an, bn) = (self.neg && !self.is_zero(), other.neg && !other.is_zero());
        match (an, bn) {
            (false, true) => return Ordering::Greater,
            (true, false) => return Ordering::Less,
            _ => {}
        }
        let scale = self.frac.len().max(other.frac.len());
        let o = cmp_mag(&self.scaled(scale), &other.scaled(scale));
        if an { o.reverse() } else { o }
    }
}

impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.neg && !self.is_zero() {
            f.write_str("-")?;
        }
        let int = strip(&self.int);
        if int.is_empty() {
            f.write_str("0")?;
        }
        for d in int {
            write!(f, "{d}")?;
        }
        if !self.frac.is_empty() {
            f.write_str(".")?;
            for d in &self.frac {
                write!(f, "{d}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `utf8mb4_general_ci` weighed character by character over the whole
    /// strings: what [`compare_ci`]'s shortcuts must agree with.
    fn compare_ci_by_weights(a: &[u8], b: &[u8]) -> Ordering {
        let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
        compare_weights(
            a.chars().map(general_ci_weight),
            b.chars().map(general_ci_weight),
        )
    }

    /// Short strings over an alphabet where case, accents, trailing spaces,
    /// characters below a space and outside the BMP, and broken UTF-8 all
    /// matter, so random pairs often share prefixes and tie.
    fn ci_bytes() -> impl Strategy<Value = Vec<u8>> {
        const PIECES: &[&str] = &[
            "a", "A", "b", "B", "z", "-", " ", "\t", "\u{0}", "é", "E", "É", "ß", "s", "S", "😀",
            "\u{ffff}", "ä",
        ];
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(PIECES).prop_map(|p| p.as_bytes().to_vec()),
                1 => prop::sample::select(vec![0xC3u8, 0xFF, 0x80]).prop_map(|b| vec![b]),
            ],
            0..8,
        )
        .prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn ci_shortcuts_agree_with_weighing_every_character(a in ci_bytes(), b in ci_bytes()) {
            prop_assert_eq!(compare_ci(&a, &b), compare_ci_by_weights(&a, &b));
            let (pa, pb) = ([b"prefix-".as_slice(), &a].concat(), [b"PREFIX-".as_slice(), &b].concat());
            prop_assert_eq!(compare_ci(&pa, &pb), compare_ci_by_weights(&pa, &pb));
        }
    }

    #[test]
    fn ci_compare_examples() {
        let c = |a: &str, b: &str| compare_ci(a.as_bytes(), b.as_bytes());
        assert_eq!(c("abc", "ABC"), Ordering::Equal);
        assert_eq!(c("abc  ", "ABC"), Ordering::Equal);
        assert_eq!(c("abc", "abd"), Ordering::Less);
        assert_eq!(c("ab\t", "ab"), Ordering::Less);
        assert_eq!(c("résumé", "RESUME"), Ordering::Equal);
        assert_eq!(c("x-é", "x-f"), Ordering::Less);
    }

    fn dec(s: &str) -> Datum {
        Datum::Decimal(s.into())
    }

    #[test]
    fn decimal_sums_keep_scale_and_sign() {
        assert_eq!(add(&dec("1.50"), &dec("2.5")), dec("4.00"));
        assert_eq!(add(&dec("-1.50"), &dec("1.25")), dec("-0.25"));
        assert_eq!(add(&dec("-1.50"), &dec("1.50")), dec("0.00"));
        assert_eq!(add(&dec("999"), &Datum::Int(1)), dec("1000"));
        assert_eq!(add(&Datum::Null, &dec("7")), dec("7"));
        assert_eq!(
            add(&Datum::Int(i64::MAX), &Datum::Int(1)),
            dec("9223372036854775808")
        );
        assert_eq!(
            add(&dec("12345678901234567890123456789.123"), &dec("1")),
            dec("12345678901234567890123456790.123")
        );
    }

    #[test]
    fn averages_round_like_mysql() {
        assert_eq!(average(&dec("11"), &Datum::Int(2)), dec("5.5000"));
        assert_eq!(average(&dec("10"), &Datum::Int(3)), dec("3.3333"));
        assert_eq!(average(&dec("20"), &Datum::Int(3)), dec("6.6667"));
        assert_eq!(average(&dec("-20"), &Datum::Int(3)), dec("-6.6667"));
        assert_eq!(average(&dec("1.25"), &Datum::Int(2)), dec("0.625000"));
        assert_eq!(average(&Datum::Null, &Datum::Int(0)), Datum::Null);
        assert_eq!(
            average(&Datum::Float(3.0), &Datum::Int(2)),
            Datum::Float(1.5)
        );
    }

    #[test]
    fn comparisons_follow_mysql() {
        use Ordering::*;
        assert_eq!(compare(&Datum::Null, &Datum::Int(-5)), Less);
        assert_eq!(compare(&Datum::Int(-1), &Datum::UInt(u64::MAX)), Less);
        assert_eq!(compare(&dec("10.0"), &dec("9.99")), Greater);
        assert_eq!(compare(&dec("-10.0"), &dec("-9.99")), Less);
        assert_eq!(compare(&dec("2.50"), &dec("2.5")), Equal);
        assert_eq!(compare(&Datum::Int(2), &dec("2.000")), Equal);
        assert_eq!(
            compare(
                &Datum::Text(b"abc".to_vec()),
                &Datum::Text(b"ABC  ".to_vec())
            ),
            Equal
        );
        assert_eq!(
            compare(&Datum::Text(b"a".to_vec()), &Datum::Text(b"B".to_vec())),
            Less
        );
        assert_eq!(
            compare(&Datum::Binary(b"a".to_vec()), &Datum::Binary(b"B".to_vec())),
            Greater
        );
        assert_eq!(compare(&Datum::Float(1.5), &Datum::Int(1)), Greater);
    }

    #[test]
    fn text_compares_like_utf8mb4_general_ci() {
        use Ordering::*;
        let t = |s: &str| Datum::Text(s.as_bytes().to_vec());
        let cmp = |a: &str, b: &str| compare(&t(a), &t(b));
        assert_eq!(cmp("Émile", "emile"), Equal);
        assert_eq!(cmp("Zoë", "zoe"), Equal);
        assert_eq!(cmp("ZOË ", "zoe"), Equal);
        assert_eq!(cmp("straße", "STRASE"), Equal);
        assert_eq!(cmp("Ωμέγα", "ΩΜΕΓΑ"), Equal);
        assert_eq!(cmp("Émile", "Zoë"), Less);
        assert_eq!(cmp("émile", "f"), Less);
        assert_eq!(cmp("zoë", "Zoe!"), Less);
        // Outside the BMP every character weighs the same.
        assert_eq!(cmp("a😀", "a🎉"), Equal);
        // PAD SPACE: compared as if padded with spaces, not trimmed.
        assert_eq!(cmp("a", "a\t"), Greater);
        assert_eq!(cmp("a  ", "a"), Equal);
        // Binary strings keep byte order.
        assert_eq!(
            compare(
                &Datum::Binary("É".as_bytes().to_vec()),
                &Datum::Binary(b"e".to_vec())
            ),
            Greater
        );
        // One sort over the oracle's names puts each fold together.
        let mut names = vec!["zoe", "Émile", "alpha", "Zoë", "emile", "Zeta", "eta"];
        names.sort_by(|a, b| cmp(a, b));
        assert_eq!(
            names,
            ["alpha", "Émile", "emile", "eta", "Zeta", "zoe", "Zoë"]
        );
    }

    #[test]
    fn text_round_trip_and_literals() {
        let d = Datum::from_text(ColumnKind::Int, Some(b"-42"));
        assert_eq!(d, Datum::Int(-42));
        assert_eq!(d.to_text(), Some(b"-42".to_vec()));
        assert_eq!(Datum::from_text(ColumnKind::Decimal, None), Datum::Null);
        assert_eq!(
            Datum::Text(b"it's \\ ok".to_vec()).to_sql_literal(),
            "'it\\'s \\\\ ok'"
        );
        assert_eq!(Datum::Binary(vec![0, 255]).to_sql_literal(), "X'00ff'");
        assert_eq!(Datum::Float(1.5).to_sql_literal(), "1.5e0");
        assert_eq!(Datum::Float(1e20).to_text(), Some(b"1e20".to_vec()));
        assert_eq!(Datum::Float(0.25).to_text(), Some(b"0.25".to_vec()));
    }
}
