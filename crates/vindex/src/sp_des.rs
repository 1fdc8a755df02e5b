//! DES (FIPS 46-3) for the `hash` vindex, table-driven.
//!
//! Why our own: every row a copy or a VDiff reads is hashed (a copy into N
//! shards hashes each source row N times), and the generic `des` crate
//! spends ~290 ns per block here; this one combines each round's S-box and
//! P permutation into lookup tables (the classic "SP-box" layout) and the
//! initial and final permutations into byte tables, which takes a fraction
//! of that. The tables are derived at first use from the standard's
//! permutation and S-box tables below, so what is typed here is the spec
//! itself; tests compare every result with the `des` crate.
//!
//! Security is irrelevant here: `hash` is a fixed permutation of 64-bit
//! integers with an all-zero key.

use std::sync::OnceLock;

/// Initial permutation: output bit j (1-based from the most significant)
/// is input bit `IP[j-1]`.
const IP: [u8; 64] = [
    58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4, //
    62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8, //
    57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3, //
    61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7,
];

/// The permutation applied to the S-box outputs.
const P: [u8; 32] = [
    16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10, //
    2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25,
];

/// Permuted choice 1: the 56 key bits kept, as C (first 28) and D.
const PC1: [u8; 56] = [
    57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18, //
    10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36, //
    63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, //
    14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4,
];

/// Permuted choice 2: a round's 48-bit subkey from C‖D.
const PC2: [u8; 48] = [
    14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10, //
    23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2, //
    41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48, //
    44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32,
];

/// Left rotations of C and D before each round.
const SHIFTS: [u32; 16] = [1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1];

/// The eight S-boxes, row by row (row = outer bits, column = inner four).
const S: [[u8; 64]; 8] = [
    [
        14, 4, 13, 1, 2, 15, 11, 8, 3, 10, 6, 12, 5, 9, 0, 7, //
        0, 15, 7, 4, 14, 2, 13, 1, 10, 6, 12, 11, 9, 5, 3, 8, //
        4, 1, 14, 8, 13, 6, 2, 11, 15, 12, 9, 7, 3, 10, 5, 0, //
        15, 12, 8, 2, 4, 9, 1, 7, 5, 11, 3, 14, 10, 0, 6, 13,
    ],
    [
        15, 1, 8, 14, 6, 11, 3, 4, 9, 7, 2, 13, 12, 0, 5, 10, //
        3, 13, 4, 7, 15, 2, 8, 14, 12, 0, 1, 10, 6, 9, 11, 5, //
        0, 14, 7, 11, 10, 4, 13, 1, 5, 8, 12, 6, 9, 3, 2, 15, //
        13, 8, 10, 1, 3, 15, 4, 2, 11, 6, 7, 12, 0, 5, 14, 9,
    ],
    [
        10, 0, 9, 14, 6, 3, 15, 5, 1, 13, 12, 7, 11, 4, 2, 8, //
        13, 7, 0, 9, 3, 4, 6, 10, 2, 8, 5, 14, 12, 11, 15, 1, //
        13, 6, 4, 9, 8, 15, 3, 0, 11, 1, 2, 12, 5, 10, 14, 7, //
        1, 10, 13, 0, 6, 9, 8, 7, 4, 15, 14, 3, 11, 5, 2, 12,
    ],
    [
        7, 13, 14, 3, 0, 6, 9, 10, 1, 2, 8, 5, 11, 12, 4, 15, //
        13, 8, 11, 5, 6, 15, 0, 3, 4, 7, 2, 12, 1, 10, 14, 9, //
        10, 6, 9, 0, 12, 11, 7, 13, 15, 1, 3, 14, 5, 2, 8, 4, //
        3, 15, 0, 6, 10, 1, 13, 8, 9, 4, 5, 11, 12, 7, 2, 14,
    ],
    [
        2, 12, 4, 1, 7, 10, 11, 6, 8, 5, 3, 15, 13, 0, 14, 9, //
        14, 11, 2, 12, 4, 7, 13, 1, 5, 0, 15, 10, 3, 9, 8, 6, //
        4, 2, 1, 11, 10, 13, 7, 8, 15, 9, 12, 5, 6, 3, 0, 14, //
        11, 8, 12, 7, 1, 14, 2, 13, 6, 15, 0, 9, 10, 4, 5, 3,
    ],
    [
        12, 1, 10, 15, 9, 2, 6, 8, 0, 13, 3, 4, 14, 7, 5, 11, //
        10, 15, 4, 2, 7, 12, 9, 5, 6, 1, 13, 14, 0, 11, 3, 8, //
        9, 14, 15, 5, 2, 8, 12, 3, 7, 0, 4, 10, 1, 13, 11, 6, //
        4, 3, 2, 12, 9, 5, 15, 10, 11, 14, 1, 7, 6, 0, 8, 13,
    ],
    [
        4, 11, 2, 14, 15, 0, 8, 13, 3, 12, 9, 7, 5, 10, 6, 1, //
        13, 0, 11, 7, 4, 9, 1, 10, 14, 3, 5, 12, 2, 15, 8, 6, //
        1, 4, 11, 13, 12, 3, 7, 14, 10, 15, 6, 8, 0, 5, 9, 2, //
        6, 11, 13, 8, 1, 4, 10, 7, 9, 5, 0, 15, 14, 2, 3, 12,
    ],
    [
        13, 2, 8, 4, 6, 15, 11, 1, 10, 9, 3, 14, 5, 0, 12, 7, //
        1, 15, 13, 8, 10, 3, 7, 4, 12, 5, 6, 11, 0, 14, 9, 2, //
        7, 11, 4, 1, 9, 12, 14, 2, 0, 6, 10, 13, 15, 3, 5, 8, //
        2, 1, 14, 7, 4, 10, 8, 13, 15, 12, 9, 0, 3, 5, 6, 11,
    ],
];

/// Applies a bit permutation: output bit j (1-based from the most
/// significant of `table.len()` bits) is input bit `table[j-1]` of an
/// `in_bits`-bit input.
fn permute(input: u64, in_bits: u32, table: &[u8]) -> u64 {
    let n = table.len() as u32;
    let mut out = 0u64;
    for (j, &src) in table.iter().enumerate() {
        let bit = (input >> (in_bits - u32::from(src))) & 1;
        out |= bit << (n - 1 - j as u32);
    }
    out
}

/// A 64-bit permutation as eight byte-indexed tables: the permutation of
/// `x` is the OR of `t[i][byte i of x]`.
struct BytePerm([[u64; 256]; 8]);

impl BytePerm {
    fn new(table: &[u8; 64]) -> Box<BytePerm> {
        let mut t = Box::new(BytePerm([[0u64; 256]; 8]));
        for (i, row) in t.0.iter_mut().enumerate() {
            for (v, slot) in row.iter_mut().enumerate() {
                *slot = permute((v as u64) << (56 - 8 * i), 64, table);
            }
        }
        t
    }

    #[inline]
    fn apply(&self, x: u64) -> u64 {
        let mut out = 0;
        for (i, row) in self.0.iter().enumerate() {
            out |= row[((x >> (56 - 8 * i)) & 0xff) as usize];
        }
        out
    }
}

/// The key-independent tables.
struct Tables {
    ip: Box<BytePerm>,
    fp: Box<BytePerm>,
    /// `sp[i][v]`: S-box i applied to the 6-bit `v`, its 4 bits placed at
    /// S-box i's output position, then permuted by P.
    sp: [[u32; 64]; 8],
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut fp_table = [0u8; 64];
        for (j, &src) in IP.iter().enumerate() {
            fp_table[usize::from(src) - 1] = j as u8 + 1;
        }
        let mut sp = [[0u32; 64]; 8];
        for (i, sbox) in S.iter().enumerate() {
            for (v, slot) in sp[i].iter_mut().enumerate() {
                let row = ((v >> 4) & 2) | (v & 1);
                let col = (v >> 1) & 0xf;
                let s = u64::from(sbox[row * 16 + col]);
                let placed = s << (28 - 4 * i);
                *slot = permute(placed, 32, &P) as u32;
            }
        }
        Tables {
            ip: BytePerm::new(&IP),
            fp: BytePerm::new(&fp_table),
            sp,
        }
    })
}

/// A DES key schedule: each round's subkey as eight 6-bit chunks.
pub(crate) struct Des {
    subkeys: [[u8; 8]; 16],
}

impl Des {
    pub(crate) fn new(key: [u8; 8]) -> Des {
        let cd = permute(u64::from_be_bytes(key), 64, &PC1);
        let mask = (1u64 << 28) - 1;
        let (mut c, mut d) = ((cd >> 28) & mask, cd & mask);
        let mut subkeys = [[0u8; 8]; 16];
        for (round, &shift) in SHIFTS.iter().enumerate() {
            c = ((c << shift) | (c >> (28 - shift))) & mask;
            d = ((d << shift) | (d >> (28 - shift))) & mask;
            let k = permute((c << 28) | d, 56, &PC2);
            for (i, chunk) in subkeys[round].iter_mut().enumerate() {
                *chunk = ((k >> (42 - 6 * i)) & 0x3f) as u8;
            }
        }
        Des { subkeys }
    }

    /// The cipher function f(R, K): expansion, key mixing, S-boxes and P.
    #[inline]
    fn f(sp: &[[u32; 64]; 8], r: u32, k: &[u8; 8]) -> u32 {
        // E's eight 6-bit groups are R's bits 4i..4i+5 (1-based, wrapping
        // around: bit 0 is bit 32, bit 33 is bit 1): lay R out as 34 bits
        // r32 r1 … r32 r1 and slide a 6-bit window by 4.
        let r = u64::from(r);
        let x = ((r & 1) << 33) | (r << 1) | (r >> 31);
        let mut out = 0u32;
        for (i, (table, key)) in sp.iter().zip(k).enumerate() {
            let v = ((x >> (28 - 4 * i)) as usize ^ usize::from(*key)) & 0x3f;
            out |= table[v];
        }
        out
    }

    fn crypt(&self, block: u64, decrypt: bool) -> u64 {
        let t = tables();
        let x = t.ip.apply(block);
        let (mut l, mut r) = ((x >> 32) as u32, x as u32);
        for round in 0..16 {
            let k = if decrypt {
                &self.subkeys[15 - round]
            } else {
                &self.subkeys[round]
            };
            let next = l ^ Self::f(&t.sp, r, k);
            l = r;
            r = next;
        }
        t.fp.apply((u64::from(r) << 32) | u64::from(l))
    }

    pub(crate) fn encrypt(&self, block: u64) -> u64 {
        self.crypt(block, false)
    }

    pub(crate) fn decrypt(&self, block: u64) -> u64 {
        self.crypt(block, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use des::cipher::{BlockDecrypt, BlockEncrypt, KeyInit, generic_array::GenericArray};
    use proptest::prelude::*;

    fn reference(key: [u8; 8], block: u64, decrypt: bool) -> u64 {
        let c = des::Des::new(GenericArray::from_slice(&key));
        let mut b = GenericArray::clone_from_slice(&block.to_be_bytes());
        if decrypt {
            c.decrypt_block(&mut b);
        } else {
            c.encrypt_block(&mut b);
        }
        u64::from_be_bytes(b.into())
    }

    #[test]
    fn sbox_rows_are_permutations() {
        for sbox in &S {
            for row in sbox.chunks(16) {
                let mut seen = [false; 16];
                for &v in row {
                    seen[usize::from(v)] = true;
                }
                assert!(seen.iter().all(|s| *s), "{row:?}");
            }
        }
    }

    #[test]
    fn known_answer() {
        // The classic worked example (key 133457799BBCDFF1).
        let d = Des::new(0x1334_5779_9BBC_DFF1u64.to_be_bytes());
        assert_eq!(d.encrypt(0x0123_4567_89AB_CDEF), 0x85E8_1354_0F0A_B405);
        assert_eq!(d.decrypt(0x85E8_1354_0F0A_B405), 0x0123_4567_89AB_CDEF);
    }

    #[test]
    fn edges_match_the_reference() {
        let zero = Des::new([0; 8]);
        for block in [0, 1, 2, u64::MAX, u64::MAX - 1, 1 << 63, 0x8000_0000] {
            assert_eq!(zero.encrypt(block), reference([0; 8], block, false));
            assert_eq!(zero.decrypt(block), reference([0; 8], block, true));
        }
    }

    proptest! {
        #[test]
        fn matches_the_reference(key: [u8; 8], block: u64) {
            let d = Des::new(key);
            prop_assert_eq!(d.encrypt(block), reference(key, block, false));
            prop_assert_eq!(d.decrypt(block), reference(key, block, true));
            prop_assert_eq!(d.decrypt(d.encrypt(block)), block);
        }
    }
}
