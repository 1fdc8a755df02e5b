//! Primary collation weights for `unicode_loose_md5`.
//!
//! The table `uca_primary.bin` holds, for every code point, the primary
//! weights that `golang.org/x/text/collate` (CLDR 23 root order, Unicode 6.2,
//! the tables Vitess hashes) gives it, plus the contractions that canonical
//! decompositions form. `tools/gen_ucatable.go` regenerates it and documents
//! the format. Hangul syllables are decomposed into jamo here rather than
//! stored, as the Unicode Collation Algorithm prescribes.

use std::collections::HashMap;
use std::sync::OnceLock;

static TABLE_BYTES: &[u8] = include_bytes!("uca_primary.bin");

struct Table {
    /// `(start, end, delta)`: every code point in `start..=end` weighs
    /// `cp + delta` (the algorithmic "implicit" weights).
    runs: Vec<(u32, u32, u32)>,
    /// Code point to a slice of `weights`.
    singles: HashMap<u32, (u32, u8)>,
    contractions: HashMap<Vec<u32>, (u32, u8)>,
    max_contraction: usize,
    weights: Vec<u32>,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn weights(&mut self, out: &mut Vec<u32>) -> Option<(u32, u8)> {
        let n = self.u8()?;
        let at = out.len() as u32;
        for _ in 0..n {
            let w = self.take(3)?;
            out.push(u32::from(w[0]) | u32::from(w[1]) << 8 | u32::from(w[2]) << 16);
        }
        Some((at, n))
    }
}

fn parse(b: &[u8]) -> Option<Table> {
    let mut r = Reader { b, pos: 0 };
    if r.take(6)? != b"KSUCA1" {
        return None;
    }
    let mut t = Table {
        runs: Vec::new(),
        singles: HashMap::new(),
        contractions: HashMap::new(),
        max_contraction: 0,
        weights: Vec::new(),
    };
    for _ in 0..r.u32()? {
        t.runs.push((r.u32()?, r.u32()?, r.u32()?));
    }
    for _ in 0..r.u32()? {
        let cp = r.u32()?;
        let slot = r.weights(&mut t.weights)?;
        t.singles.insert(cp, slot);
    }
    for _ in 0..r.u32()? {
        let len = usize::from(r.u8()?);
        let mut seq = Vec::with_capacity(len);
        for _ in 0..len {
            seq.push(r.u32()?);
        }
        let slot = r.weights(&mut t.weights)?;
        t.max_contraction = t.max_contraction.max(len);
        t.contractions.insert(seq, slot);
    }
    (r.pos == b.len()).then_some(t)
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    // The table is compiled into the binary and checked by the tests, so a
    // failure here is a build defect, not bad input.
    T.get_or_init(|| parse(TABLE_BYTES).expect("uca_primary.bin is malformed"))
}

const HANGUL_BASE: u32 = 0xAC00;
const HANGUL_COUNT: u32 = 11172;
const JAMO_L: u32 = 0x1100;
const JAMO_V: u32 = 0x1161;
const JAMO_T: u32 = 0x11A7;
const V_COUNT: u32 = 21;
const T_COUNT: u32 = 28;

impl Table {
    fn slot(&self, (at, n): (u32, u8)) -> &[u32] {
        let at = at as usize;
        &self.weights[at..at + usize::from(n)]
    }

    fn push_char(&self, cp: u32, out: &mut Vec<u32>) {
        if (HANGUL_BASE..HANGUL_BASE + HANGUL_COUNT).contains(&cp) {
            let s = cp - HANGUL_BASE;
            self.push_char(JAMO_L + s / (V_COUNT * T_COUNT), out);
            self.push_char(JAMO_V + (s % (V_COUNT * T_COUNT)) / T_COUNT, out);
            if !s.is_multiple_of(T_COUNT) {
                self.push_char(JAMO_T + s % T_COUNT, out);
            }
            return;
        }
        if let Some(&slot) = self.singles.get(&cp) {
            out.extend_from_slice(self.slot(slot));
            return;
        }
        let i = self.runs.partition_point(|&(_, end, _)| end < cp);
        match self.runs.get(i) {
            Some(&(start, _, delta)) if start <= cp => out.push(cp + delta),
            // Every code point is in the table; this is x/text's rule for
            // characters it has no entry for.
            _ => out.push(cp + 0x50000),
        }
    }
}

/// The primary weights of `text`, in order, ignorables dropped.
pub(crate) fn primary_weights(text: &str) -> Vec<u32> {
    let t = table();
    let cps: Vec<u32> = text.chars().map(u32::from).collect();
    let mut out = Vec::with_capacity(cps.len());
    let mut i = 0;
    'outer: while i < cps.len() {
        let longest = t.max_contraction.min(cps.len() - i);
        for len in (2..=longest).rev() {
            if let Some(&slot) = t.contractions.get(&cps[i..i + len]) {
                out.extend_from_slice(t.slot(slot));
                i += len;
                continue 'outer;
            }
        }
        t.push_char(cps[i], &mut out);
        i += 1;
    }
    out.retain(|&w| w != 0);
    out
}

/// Serialises weights as the bytes Vitess hashes: 2 bytes big-endian up to
/// 0x7FFF, else 3 bytes with the top bit of the first set.
pub(crate) fn weight_string(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    for w in primary_weights(text) {
        if w <= 0x7FFF {
            out.extend_from_slice(&[(w >> 8) as u8, w as u8]);
        } else {
            out.extend_from_slice(&[(w >> 16) as u8 | 0x80, (w >> 8) as u8, w as u8]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_completely() {
        let t = parse(TABLE_BYTES).expect("table parses");
        assert!(t.singles.len() > 20_000);
        assert!(!t.runs.is_empty());
        assert!(t.max_contraction >= 2);
    }
}
