use super::*;
use proptest::prelude::*;

fn vindex(kind: &str) -> Arc<dyn Vindex> {
    new_vindex(kind, &BTreeMap::new()).unwrap()
}

fn map_hex(kind: &str, v: Value) -> String {
    vindex(kind).map(&v).unwrap().to_string()
}

fn bytes(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

#[test]
fn registry() {
    for k in KINDS {
        let v = vindex(k);
        assert_eq!(v.kind(), *k);
        assert!(v.is_unique());
    }
    let e = new_vindex("lookup_hash", &BTreeMap::new()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("unknown vindex type `lookup_hash`"), "{msg}");
    for k in KINDS {
        assert!(msg.contains(k), "{msg}");
    }
}

#[test]
fn costs_match_vitess() {
    assert_eq!(vindex("hash").cost(), 1);
    assert_eq!(vindex("numeric").cost(), 0);
    assert_eq!(vindex("binary_md5").cost(), 1);
    assert_eq!(vindex("xxhash").cost(), 1);
    assert_eq!(vindex("unicode_loose_md5").cost(), 1);
}

// Vectors from Vitess go/vt/vtgate/vindexes/hash_test.go (TestHashMap,
// TestHashReverseMap).
const HASH_VECTORS: &[(i128, &str)] = &[
    (1, "166b40b44aba4bd6"),
    (2, "06e7ea22ce92708f"),
    (3, "4eb190c9a2fa169c"),
    (4, "d2fd8867d50d2dfe"),
    (5, "70bb023c810ca87a"),
    (6, "f098480ac4c4be71"),
    (0, "8ca64de9c1b123a7"),
    (-1, "355550b2150e2451"),
    (18446744073709551615, "355550b2150e2451"),
    (9223372036854775807, "f77d48aadda1f1bb"),
    (-9223372036854775808, "95f8a5e5dd31d900"),
];

#[test]
fn hash_first_five_exactly() {
    assert_eq!(map_hex("hash", Value::Int(1)), "166b40b44aba4bd6");
    assert_eq!(map_hex("hash", Value::Int(2)), "06e7ea22ce92708f");
    assert_eq!(map_hex("hash", Value::Int(3)), "4eb190c9a2fa169c");
    assert_eq!(map_hex("hash", Value::Int(4)), "d2fd8867d50d2dfe");
    assert_eq!(map_hex("hash", Value::Int(5)), "70bb023c810ca87a");
}

#[test]
fn hash_vitess_vectors() {
    let h = vindex("hash");
    for &(n, want) in HASH_VECTORS {
        let v = if n < 0 {
            Value::Int(n as i64)
        } else if n > i64::MAX as i128 {
            Value::UInt(n as u64)
        } else {
            Value::Int(n as i64)
        };
        assert_eq!(h.map(&v).unwrap().to_string(), want, "hash({n})");
        if n >= 0 {
            assert_eq!(map_hex("hash", Value::UInt(n as u64)), want);
        }
        let ksid = hex::decode(want).unwrap();
        assert_eq!(
            h.reverse(&ksid),
            Some(Value::UInt(n as i64 as u64)),
            "{want}"
        );
    }
}

#[test]
fn hash_value_conversions() {
    // A string holding a decimal integer maps like the integer.
    assert_eq!(map_hex("hash", bytes("1")), "166b40b44aba4bd6");
    assert_eq!(map_hex("hash", bytes("+1")), "166b40b44aba4bd6");
    assert_eq!(map_hex("hash", bytes("0001")), "166b40b44aba4bd6");
    assert_eq!(
        map_hex("hash", bytes("18446744073709551615")),
        "355550b2150e2451"
    );
    // Vitess refuses negative strings (only signed *types* wrap around), NULL,
    // non-numbers and overflow: they route nowhere.
    let h = vindex("hash");
    for v in [
        bytes("-1"),
        bytes("aa"),
        bytes(""),
        bytes(" 1"),
        bytes("1.0"),
        bytes("1_000"),
        bytes("18446744073709551616"),
        Value::Null,
    ] {
        let e = h.map(&v).unwrap_err();
        assert!(matches!(e, VindexError::Unmappable { .. }), "{v}: {e}");
    }
    assert!(
        h.map(&bytes("aa"))
            .unwrap_err()
            .to_string()
            .contains("could not parse")
    );
    // hash_test.go TestHashReverseMapNeg: only 8-byte ids reverse.
    assert_eq!(
        h.reverse(&hex::decode("166b40b44aba4bd6166b40b44aba4bd6").unwrap()),
        None
    );
    assert_eq!(h.reverse(&[]), None);
}

// Vitess go/vt/vtgate/vindexes/numeric.go: the big-endian uint64, reversible;
// what evalengine.ToUint64 refuses (negative, not a number) maps nowhere.
#[test]
fn numeric_map_reverse() {
    let n = vindex("numeric");
    assert_eq!(map_hex("numeric", Value::Int(1)), "0000000000000001");
    assert_eq!(
        map_hex("numeric", Value::UInt(0x0102030405060708)),
        "0102030405060708"
    );
    assert_eq!(map_hex("numeric", bytes("256")), "0000000000000100");
    assert_eq!(
        map_hex("numeric", Value::UInt(u64::MAX)),
        "ffffffffffffffff"
    );
    assert!(n.map(&Value::Int(-1)).is_err());
    assert!(n.map(&bytes("-1")).is_err());
    assert!(n.map(&bytes("x")).is_err());
    assert!(n.map(&Value::Null).is_err());
    assert_eq!(
        n.reverse(&hex::decode("0000000000000100").unwrap()),
        Some(Value::UInt(256))
    );
    assert_eq!(n.reverse(&[1, 2, 3]), None);
}

// Vectors from Vitess go/vt/vtgate/vindexes/xxhash_test.go (TestXXHashMap).
#[test]
fn xxhash_vitess_vectors() {
    let cases: &[(Value, [u8; 8])] = &[
        (
            bytes("test1"),
            [0xd0, 0x1a, 0xb7, 0xe4, 0xd6, 0x97, 0x8f, 0xb],
        ),
        (
            bytes("test2"),
            [0x87, 0xeb, 0x11, 0x71, 0x4c, 0xa, 0xe, 0x89],
        ),
        (
            bytes("testaverylongvaluetomakesurethisworks"),
            [0x81, 0xd8, 0xc3, 0x8e, 0xd, 0x85, 0xe, 0x6a],
        ),
        (
            Value::Int(1),
            [0xd4, 0x64, 0x5, 0x36, 0x76, 0x12, 0xb4, 0xb7],
        ),
        (
            Value::Null,
            [0x99, 0xe9, 0xd8, 0x51, 0x37, 0xdb, 0x46, 0xef],
        ),
        (
            Value::Int(-1),
            [0xd8, 0xe2, 0xa6, 0xa7, 0xc8, 0xc7, 0x62, 0x3d],
        ),
        (
            Value::UInt(18446744073709551615),
            [0x47, 0x7c, 0xfa, 0x8d, 0x6d, 0x8f, 0x1f, 0x8d],
        ),
        (
            Value::Int(9223372036854775807),
            [0xb3, 0x7e, 0xb0, 0x1f, 0x7b, 0xff, 0xaf, 0xd8],
        ),
        (
            Value::UInt(9223372036854775807),
            [0xb3, 0x7e, 0xb0, 0x1f, 0x7b, 0xff, 0xaf, 0xd8],
        ),
        (
            Value::Int(-9223372036854775808),
            [0x10, 0x2c, 0x27, 0xdd, 0xb2, 0x6a, 0x60, 0x9e],
        ),
    ];
    let x = vindex("xxhash");
    for (v, want) in cases {
        assert_eq!(x.map(v).unwrap().0, want.to_vec(), "xxhash({v})");
    }
    // TestXXHashVerify: UInt(1) maps like Int(1), UInt(2) does not.
    assert_eq!(
        x.map(&Value::UInt(1)).unwrap(),
        x.map(&Value::Int(1)).unwrap()
    );
    assert_ne!(
        x.map(&Value::UInt(2)).unwrap(),
        x.map(&Value::Int(1)).unwrap()
    );
    assert_eq!(x.reverse(&[0; 8]), None);
}

// Vectors from Vitess go/vt/vtgate/vindexes/binarymd5_test.go.
#[test]
fn binary_md5_vitess_vectors() {
    assert_eq!(
        map_hex("binary_md5", bytes("Test")),
        "0cbc6611f5540bd0809a388dc95a615b"
    );
    assert_eq!(
        map_hex("binary_md5", bytes("TEST")),
        "033bd94b1168d7e4f0d644c3c95e35bf"
    );
    assert_ne!(
        map_hex("binary_md5", bytes("TEst")),
        "0cbc6611f5540bd0809a388dc95a615b"
    );
    // Integers hash their decimal text.
    assert_eq!(
        map_hex("binary_md5", Value::Int(42)),
        map_hex("binary_md5", bytes("42"))
    );
    assert_eq!(
        map_hex("binary_md5", Value::Null),
        "d41d8cd98f00b204e9800998ecf8427e"
    );
}

// Vectors from Vitess go/vt/vtgate/vindexes/unicodeloosemd5_test.go
// (TestUnicodeLooseMD5Map) and unicode_test.go (TestNormalization).
const ULMD5_VECTORS: &[(&str, &str, &str)] = &[
    (
        "Test",
        "0b5edbb401fd7524393690491d64f1f5",
        "1816164c17f31816",
    ),
    (
        "TEST",
        "0b5edbb401fd7524393690491d64f1f5",
        "1816164c17f31816",
    ),
    (
        "Te\u{301}st",
        "0b5edbb401fd7524393690491d64f1f5",
        "1816164c17f31816",
    ),
    (
        "Tést",
        "0b5edbb401fd7524393690491d64f1f5",
        "1816164c17f31816",
    ),
    (
        "Bést",
        "c2b2332e4f73d00741026249706f2fb6",
        "1605164c17f31816",
    ),
    (
        "Test ",
        "0b5edbb401fd7524393690491d64f1f5",
        "1816164c17f31816",
    ),
    (
        " Test",
        "a2e3515c7e8df1ffd2ccfc11c6b19dd1",
        "01091816164c17f31816",
    ),
    (
        "Test\t",
        "82456dd87a9c7a02b1c2056b5abaa272",
        "1816164c17f318160100",
    ),
    (
        "TéstLooong",
        "9683e12b80430cd453f5dfdfba81c9a5",
        "1816164c17f318161711177117711771174f1691",
    ),
    ("T", "ac0f9179f51db87fe8ecc0cf40cab97a", "1816"),
];

#[test]
fn unicode_loose_md5_vitess_vectors() {
    let u = vindex("unicode_loose_md5");
    for &(input, md5_hex, weights) in ULMD5_VECTORS {
        assert_eq!(
            hex::encode(UnicodeLooseMd5::weight_string(input)),
            weights,
            "weights of {input:?}"
        );
        assert_eq!(
            u.map(&bytes(input)).unwrap().to_string(),
            md5_hex,
            "{input:?}"
        );
    }
    // TestUnicodeLooseMD5Verify: "different" does not map like "Test".
    assert_ne!(
        u.map(&bytes("different")).unwrap().to_string(),
        ULMD5_VECTORS[0].1
    );
}

#[test]
fn unicode_loose_md5_is_case_and_accent_insensitive() {
    let u = vindex("unicode_loose_md5");
    let same = |a: &str, b: &str| u.map(&bytes(a)).unwrap() == u.map(&bytes(b)).unwrap();
    assert!(same("Ångström", "angstrom"));
    assert!(same("CAFÉ", "cafe"));
    assert!(same("cafe\u{301}", "café"));
    assert!(same("Ñandú", "nandu"));
    assert!(same("ΑΘΗΝΑ", "αθηνα"));
    assert!(same("Αθήνα", "αθηνα"));
    assert!(same("МОСКВА", "москва"));
    assert!(same("ｆｕｌｌ", "full"), "width is ignored");
    assert!(same("abc   ", "abc"));
    assert!(!same(" abc", "abc"), "leading spaces count");
    assert!(!same("abc\t", "abc"), "only trailing spaces are ignored");
    assert!(!same("abd", "abc"));
    assert!(!same("Йод", "Иод"), "й is its own letter");
    assert!(same("И\u{306}од", "Йод"), "decomposed й is й");
    assert!(same("straße", "STRASSE"));
}

#[test]
fn unicode_loose_md5_rejects_invalid_utf8() {
    let u = vindex("unicode_loose_md5");
    // From Vitess unicodeloosemd5_test.go TestInvalidUnicodeNormalization.
    let e = u
        .map(&Value::Bytes(
            b"\x99\xeb\x9d\x18\xa4G\x84\x04]\x87\xf3\xc6|\xf2'F".to_vec(),
        ))
        .unwrap_err();
    assert!(matches!(e, VindexError::InvalidUtf8 { .. }), "{e}");
    assert!(u.map(&Value::Int(-5)).is_ok());
    assert_eq!(
        u.map(&Value::Null).unwrap().to_string(),
        "d41d8cd98f00b204e9800998ecf8427e"
    );
}

/// Keys from golang.org/x/text/collate for generated strings
/// (tests/data/uca_vectors.txt, written by tools/gen_ucavectors.go).
#[test]
fn unicode_weights_match_go_collate() {
    let data = include_str!("../tests/data/uca_vectors.txt");
    let mut failures = Vec::new();
    let mut total = 0;
    for line in data.lines() {
        let (input, key) = line.split_once('\t').unwrap();
        let input = String::from_utf8(hex::decode(input).unwrap()).unwrap();
        total += 1;
        let got = hex::encode(uca::weight_string(&input));
        if got != key {
            failures.push(format!("{input:?}: got {got}, want {key}"));
        }
    }
    assert!(total > 400);
    assert!(
        failures.is_empty(),
        "{} of {total} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Three cases of Vitess's own golden file (multilingual Wikipedia text).
#[test]
fn unicode_loose_md5_vitess_golden() {
    let data = include_str!("../tests/data/vitess_unicode_hash_golden_subset.txt");
    let u = vindex("unicode_loose_md5");
    let mut n = 0;
    for line in data.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        let input = hex::decode(cols[0]).unwrap();
        assert_eq!(
            u.map(&Value::Bytes(input.clone())).unwrap().to_string(),
            cols[2],
            "{}",
            String::from_utf8_lossy(&input)
        );
        n += 1;
    }
    assert_eq!(n, 3);
}

#[test]
fn column_type_rules() {
    assert!(accepts_column_type("hash", "bigint(20) unsigned"));
    assert!(accepts_column_type("hash", "INT"));
    assert!(accepts_column_type("hash", "varchar(64)"));
    assert!(!accepts_column_type("hash", "decimal(10,2)"));
    assert!(!accepts_column_type("hash", "datetime"));
    assert!(!accepts_column_type("numeric", "double"));
    assert!(accepts_column_type("numeric", "tinyint"));
    assert!(accepts_column_type("xxhash", "datetime(6)"));
    assert!(accepts_column_type("binary_md5", "varbinary(16)"));
    assert!(accepts_column_type("unicode_loose_md5", "varchar(255)"));
    assert!(accepts_column_type("unicode_loose_md5", "text"));
    assert!(!accepts_column_type("unicode_loose_md5", "varbinary(255)"));
    assert!(!accepts_column_type("unicode_loose_md5", "blob"));
    assert!(!accepts_column_type("lookup", "int"));
    assert_eq!(ColumnClass::of("  MEDIUMTEXT "), ColumnClass::Text);
    assert_eq!(ColumnClass::of("enum('a','b')"), ColumnClass::Text);
    assert_eq!(ColumnClass::of("longblob"), ColumnClass::Binary);
    assert_eq!(ColumnClass::of("json"), ColumnClass::Any);
    assert_eq!(ColumnClass::of("year(4)"), ColumnClass::Integer);
}

proptest! {
    #[test]
    fn hash_reverses(n in any::<u64>()) {
        let h = vindex("hash");
        let k = h.map(&Value::UInt(n)).unwrap();
        prop_assert_eq!(k.0.len(), 8);
        prop_assert_eq!(h.reverse(&k.0), Some(Value::UInt(n)));
        prop_assert_eq!(h.map(&Value::Bytes(n.to_string().into_bytes())).unwrap(), k);
    }

    #[test]
    fn signed_hash_is_bit_pattern(i in any::<i64>()) {
        let h = vindex("hash");
        prop_assert_eq!(h.map(&Value::Int(i)).unwrap(), h.map(&Value::UInt(i as u64)).unwrap());
    }

    #[test]
    fn numeric_reverses(n in any::<u64>()) {
        let v = vindex("numeric");
        let k = v.map(&Value::UInt(n)).unwrap();
        prop_assert_eq!(v.reverse(&k.0), Some(Value::UInt(n)));
    }

    #[test]
    fn loose_md5_ignores_case(s in "[a-zA-Z0-9 àéîõüçñÀÉÎÕÜÇÑ]{0,24}") {
        let u = vindex("unicode_loose_md5");
        prop_assert_eq!(
            u.map(&Value::Bytes(s.to_lowercase().into_bytes())).unwrap(),
            u.map(&Value::Bytes(s.to_uppercase().into_bytes())).unwrap()
        );
    }

    #[test]
    fn byte_kinds_never_fail(b in proptest::collection::vec(any::<u8>(), 0..64)) {
        let v = Value::Bytes(b);
        prop_assert_eq!(vindex("xxhash").map(&v).unwrap().0.len(), 8);
        prop_assert_eq!(vindex("binary_md5").map(&v).unwrap().0.len(), 16);
    }
}
