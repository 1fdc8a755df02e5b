//! Prepared statement parameters as the client sent them in COM_STMT_EXECUTE.
//!
//! Values borrow the execute packet (or the statement's long data), so
//! decoding allocates nothing, and they keep the client's declared type so
//! that forwarding them to a backend is exact.

use crate::error::GateError;
use crate::proto::{ColumnType, Malformed, Reader, Value, put_lenenc_str};

/// Client-facing prepared statement id, assigned by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StmtId(pub u32);

/// One bound parameter value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamValue<'a> {
    Null,
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    /// Strings, decimals, blobs and everything else sent length-encoded.
    Bytes(&'a [u8]),
    /// year, month, day, hour, minute, second, microsecond
    Date(u16, u8, u8, u8, u8, u8, u32),
    /// negative, days, hours, minutes, seconds, microseconds
    Time(bool, u32, u8, u8, u8, u32),
}

/// A parameter with the type the client declared for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Param<'a> {
    pub column_type: ColumnType,
    pub unsigned: bool,
    pub value: ParamValue<'a>,
}

impl Param<'_> {
    /// An owned `mysql_common` value, for code that plans on parameter values
    /// (vindex computation, literal substitution).
    pub fn to_value(&self) -> Value {
        match self.value {
            ParamValue::Null => Value::NULL,
            ParamValue::Int(i) => Value::Int(i),
            ParamValue::UInt(u) => Value::UInt(u),
            ParamValue::Float(f) => Value::Float(f),
            ParamValue::Double(d) => Value::Double(d),
            ParamValue::Bytes(b) => Value::Bytes(b.to_vec()),
            ParamValue::Date(y, mo, d, h, mi, s, us) => Value::Date(y, mo, d, h, mi, s, us),
            ParamValue::Time(n, d, h, mi, s, us) => Value::Time(n, d, h, mi, s, us),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, ParamValue::Null)
    }

    /// The two type bytes of COM_STMT_EXECUTE for this parameter.
    pub fn type_bytes(&self) -> [u8; 2] {
        let ty = if self.is_null() {
            ColumnType::MYSQL_TYPE_NULL as u8
        } else {
            self.column_type as u8
        };
        [ty, if self.unsigned { 0x80 } else { 0 }]
    }

    /// Appends the value in the binary encoding of its declared type
    /// (nothing for NULL, which lives in the NULL bitmap).
    pub fn encode(&self, buf: &mut Vec<u8>) {
        use ColumnType::*;
        let as_u64 = |v: &ParamValue<'_>| match *v {
            ParamValue::Int(i) => i as u64,
            ParamValue::UInt(u) => u,
            ParamValue::Float(f) => f as i64 as u64,
            ParamValue::Double(d) => d as i64 as u64,
            _ => 0,
        };
        match (self.column_type, &self.value) {
            (_, ParamValue::Null) => {}
            (_, ParamValue::Bytes(b)) => put_lenenc_str(buf, b),
            (MYSQL_TYPE_TINY, v) => buf.push(as_u64(v) as u8),
            (MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR, v) => {
                buf.extend_from_slice(&(as_u64(v) as u16).to_le_bytes())
            }
            (MYSQL_TYPE_LONG | MYSQL_TYPE_INT24, v) => {
                buf.extend_from_slice(&(as_u64(v) as u32).to_le_bytes())
            }
            (MYSQL_TYPE_LONGLONG, v) => buf.extend_from_slice(&as_u64(v).to_le_bytes()),
            (MYSQL_TYPE_FLOAT, ParamValue::Float(f)) => buf.extend_from_slice(&f.to_le_bytes()),
            (MYSQL_TYPE_DOUBLE, ParamValue::Double(d)) => buf.extend_from_slice(&d.to_le_bytes()),
            (_, ParamValue::Date(y, mo, d, h, mi, s, us)) => {
                buf.push(11);
                buf.extend_from_slice(&y.to_le_bytes());
                buf.extend_from_slice(&[*mo, *d, *h, *mi, *s]);
                buf.extend_from_slice(&us.to_le_bytes());
            }
            (_, ParamValue::Time(neg, days, h, mi, s, us)) => {
                buf.push(12);
                buf.push(*neg as u8);
                buf.extend_from_slice(&days.to_le_bytes());
                buf.extend_from_slice(&[*h, *mi, *s]);
                buf.extend_from_slice(&us.to_le_bytes());
            }
            // a numeric value under a type it does not match cannot come from
            // the decoder; keep the encoding self-consistent anyway
            (_, v) => {
                let s = match *v {
                    ParamValue::Int(i) => i.to_string(),
                    ParamValue::UInt(u) => u.to_string(),
                    ParamValue::Float(f) => f.to_string(),
                    ParamValue::Double(d) => d.to_string(),
                    _ => String::new(),
                };
                put_lenenc_str(buf, s.as_bytes());
            }
        }
    }
}

/// Decodes one parameter value of type `ty` from an execute packet.
pub(crate) fn read_param<'a>(
    r: &mut Reader<'a>,
    ty: ColumnType,
    unsigned: bool,
) -> Result<ParamValue<'a>, Malformed> {
    use ColumnType::*;
    Ok(match ty {
        MYSQL_TYPE_NULL => ParamValue::Null,
        MYSQL_TYPE_TINY => {
            let b = r.u8()?;
            if unsigned {
                ParamValue::UInt(b as u64)
            } else {
                ParamValue::Int(b as i8 as i64)
            }
        }
        MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR => {
            let b = r.u16()?;
            if unsigned {
                ParamValue::UInt(b as u64)
            } else {
                ParamValue::Int(b as i16 as i64)
            }
        }
        MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 => {
            let b = r.u32()?;
            if unsigned {
                ParamValue::UInt(b as u64)
            } else {
                ParamValue::Int(b as i32 as i64)
            }
        }
        MYSQL_TYPE_LONGLONG => {
            let b = r.u64()?;
            if unsigned {
                ParamValue::UInt(b)
            } else {
                ParamValue::Int(b as i64)
            }
        }
        MYSQL_TYPE_FLOAT => ParamValue::Float(f32::from_bits(r.u32()?)),
        MYSQL_TYPE_DOUBLE => ParamValue::Double(f64::from_bits(r.u64()?)),
        MYSQL_TYPE_DATE
        | MYSQL_TYPE_DATETIME
        | MYSQL_TYPE_TIMESTAMP
        | MYSQL_TYPE_NEWDATE
        | MYSQL_TYPE_DATETIME2
        | MYSQL_TYPE_TIMESTAMP2 => {
            let n = r.u8()? as usize;
            let b = r.take(n)?;
            let g = |i: usize| b.get(i).copied().unwrap_or(0);
            let us = if n >= 11 {
                u32::from_le_bytes([g(7), g(8), g(9), g(10)])
            } else {
                0
            };
            ParamValue::Date(
                u16::from_le_bytes([g(0), g(1)]),
                g(2),
                g(3),
                g(4),
                g(5),
                g(6),
                us,
            )
        }
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => {
            let n = r.u8()? as usize;
            let b = r.take(n)?;
            let g = |i: usize| b.get(i).copied().unwrap_or(0);
            let us = if n >= 12 {
                u32::from_le_bytes([g(8), g(9), g(10), g(11)])
            } else {
                0
            };
            ParamValue::Time(
                g(0) != 0,
                u32::from_le_bytes([g(1), g(2), g(3), g(4)]),
                g(5),
                g(6),
                g(7),
                us,
            )
        }
        _ => ParamValue::Bytes(r.lenenc_str()?),
    })
}

/// Per-statement state the server keeps between executes.
#[derive(Debug, Default)]
pub(crate) struct StmtState {
    pub param_count: usize,
    /// (type, flags) per parameter from the last execute that bound them;
    /// an execute with new_params_bound_flag = 0 reuses them.
    pub types: Option<Vec<(u8, u8)>>,
    pub long_data: Vec<Option<Vec<u8>>>,
}

/// Parses the parameter block of COM_STMT_EXECUTE (after stmt id, flags and
/// iteration count) into `out`.
pub(crate) fn parse_execute_params<'a>(
    r: &mut Reader<'a>,
    st: &'a mut StmtState,
    out: &mut Vec<Param<'a>>,
) -> Result<(), GateError> {
    let n = st.param_count;
    if n == 0 {
        return Ok(());
    }
    let bitmap = r.take(n.div_ceil(8))?;
    let bound = r.u8()?;
    if bound == 1 {
        let raw = r.take(2 * n)?;
        let types = st.types.get_or_insert_with(Vec::new);
        types.clear();
        types.extend(raw.chunks_exact(2).map(|c| (c[0], c[1])));
    }
    let st: &'a StmtState = st;
    let Some(types) = st.types.as_ref() else {
        return Err(GateError::wrong_arguments("mysqld_stmt_execute"));
    };
    for i in 0..n {
        let (tyb, flags) = types[i];
        let column_type = ColumnType::try_from(tyb)
            .map_err(|_| GateError::malformed("unknown parameter type"))?;
        let unsigned = flags & 0x80 != 0;
        let value = if let Some(Some(data)) = st.long_data.get(i) {
            ParamValue::Bytes(data)
        } else if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            ParamValue::Null
        } else {
            read_param(r, column_type, unsigned)?
        };
        out.push(Param {
            column_type,
            unsigned,
            value,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A declared type and a value of that type, as a client binds it.
    fn param() -> impl Strategy<Value = (ColumnType, bool, ParamValue<'static>)> {
        use ColumnType::*;
        static BYTES: &[&[u8]] = &[b"", b"abc", b"\x00\xff'\"", "ü☃".as_bytes()];
        prop_oneof![
            Just((MYSQL_TYPE_NULL, false, ParamValue::Null)),
            any::<i8>().prop_map(|v| (MYSQL_TYPE_TINY, false, ParamValue::Int(v.into()))),
            any::<u8>().prop_map(|v| (MYSQL_TYPE_TINY, true, ParamValue::UInt(v.into()))),
            any::<i16>().prop_map(|v| (MYSQL_TYPE_SHORT, false, ParamValue::Int(v.into()))),
            any::<u32>().prop_map(|v| (MYSQL_TYPE_LONG, true, ParamValue::UInt(v.into()))),
            any::<i64>().prop_map(|v| (MYSQL_TYPE_LONGLONG, false, ParamValue::Int(v))),
            any::<u64>().prop_map(|v| (MYSQL_TYPE_LONGLONG, true, ParamValue::UInt(v))),
            (-1e30f32..1e30).prop_map(|v| (MYSQL_TYPE_FLOAT, false, ParamValue::Float(v))),
            (-1e300f64..1e300).prop_map(|v| (MYSQL_TYPE_DOUBLE, false, ParamValue::Double(v))),
            (0..BYTES.len()).prop_map(|i| (
                MYSQL_TYPE_VAR_STRING,
                false,
                ParamValue::Bytes(BYTES[i])
            )),
            (0..BYTES.len()).prop_map(|i| (MYSQL_TYPE_BLOB, false, ParamValue::Bytes(BYTES[i]))),
            (
                0u16..10000,
                1u8..13,
                1u8..32,
                0u8..24,
                0u8..60,
                0u8..60,
                0u32..1_000_000
            )
                .prop_map(|(y, mo, d, h, mi, s, us)| {
                    (
                        MYSQL_TYPE_DATETIME,
                        false,
                        ParamValue::Date(y, mo, d, h, mi, s, us),
                    )
                }),
            (
                any::<bool>(),
                0u32..35,
                0u8..24,
                0u8..60,
                0u8..60,
                0u32..1_000_000
            )
                .prop_map(|(n, d, h, mi, s, us)| (
                    MYSQL_TYPE_TIME,
                    false,
                    ParamValue::Time(n, d, h, mi, s, us)
                )),
        ]
    }

    /// The parameter block of COM_STMT_EXECUTE as a client writes it.
    fn execute_body(params: &[(ColumnType, bool, ParamValue<'_>)], bind_types: bool) -> Vec<u8> {
        let mut body = vec![0u8; params.len().div_ceil(8)];
        for (i, (_, _, v)) in params.iter().enumerate() {
            if matches!(v, ParamValue::Null) {
                body[i / 8] |= 1 << (i % 8);
            }
        }
        body.push(u8::from(bind_types));
        let ps: Vec<Param<'_>> = params
            .iter()
            .map(|&(column_type, unsigned, value)| Param {
                column_type,
                unsigned,
                value,
            })
            .collect();
        if bind_types {
            for p in &ps {
                body.extend_from_slice(&p.type_bytes());
            }
        }
        for p in &ps {
            p.encode(&mut body);
        }
        body
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bound parameters read back as sent; a re-execute that does
        /// not resend the types reads new values with the kept types.
        #[test]
        fn execute_params_round_trip(
            params in proptest::collection::vec(param(), 1..12),
            again in proptest::collection::vec(param(), 12),
        ) {
            let mut st = StmtState {
                param_count: params.len(),
                types: None,
                long_data: vec![None; params.len()],
            };
            let body = execute_body(&params, true);
            {
                let mut out = Vec::new();
                let mut r = Reader::new(&body);
                parse_execute_params(&mut r, &mut st, &mut out)
                    .map_err(|e| TestCaseError::fail(e.message))?;
                prop_assert!(r.is_empty());
                let got: Vec<_> = out.iter().map(|p| p.value).collect();
                let want: Vec<_> = params.iter().map(|p| p.2).collect();
                prop_assert_eq!(got, want);
            }
            // the same types, new values (NULLs where the first had them)
            let second: Vec<_> = params
                .iter()
                .zip(&again)
                .map(|(p, q)| if p.0 == q.0 && p.1 == q.1 { *q } else { *p })
                .collect();
            let body = execute_body(&second, false);
            let mut out = Vec::new();
            parse_execute_params(&mut Reader::new(&body), &mut st, &mut out)
                .map_err(|e| TestCaseError::fail(e.message))?;
            let got: Vec<_> = out.iter().map(|p| p.value).collect();
            let want: Vec<_> = second.iter().map(|p| p.2).collect();
            prop_assert_eq!(got, want);
        }

        /// Untrusted bytes: a result or an error, never a panic, with or
        /// without types kept from an earlier execute.
        #[test]
        fn arbitrary_execute_bodies_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..120),
            count in 0usize..20,
            kept in proptest::option::of(proptest::collection::vec(any::<(u8, u8)>(), 20)),
        ) {
            let mut st = StmtState {
                param_count: count,
                types: kept.map(|mut t| { t.truncate(count); t }),
                long_data: vec![None; count],
            };
            let mut out = Vec::new();
            let _ = parse_execute_params(&mut Reader::new(&body), &mut st, &mut out);
        }
    }

    #[test]
    fn param_encode_decode() {
        let cases = [
            (ColumnType::MYSQL_TYPE_TINY, false, ParamValue::Int(-5)),
            (
                ColumnType::MYSQL_TYPE_LONGLONG,
                true,
                ParamValue::UInt(u64::MAX),
            ),
            (
                ColumnType::MYSQL_TYPE_DOUBLE,
                false,
                ParamValue::Double(2.5),
            ),
            (
                ColumnType::MYSQL_TYPE_VAR_STRING,
                false,
                ParamValue::Bytes(b"abc"),
            ),
            (
                ColumnType::MYSQL_TYPE_DATETIME,
                false,
                ParamValue::Date(2020, 1, 2, 3, 4, 5, 6),
            ),
            (
                ColumnType::MYSQL_TYPE_TIME,
                false,
                ParamValue::Time(true, 1, 2, 3, 4, 5),
            ),
        ];
        for (ty, uns, v) in cases {
            let p = Param {
                column_type: ty,
                unsigned: uns,
                value: v,
            };
            let mut b = Vec::new();
            p.encode(&mut b);
            let mut r = Reader::new(&b);
            assert_eq!(read_param(&mut r, ty, uns).unwrap(), v);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn reexecute_reuses_types() {
        let mut st = StmtState {
            param_count: 2,
            types: None,
            long_data: vec![None, None],
        };
        // first execute: bound types LONG, VAR_STRING; second param NULL
        let mut pkt = vec![0b10, 1, 3, 0, 253, 0];
        pkt.extend_from_slice(&7u32.to_le_bytes());
        {
            let mut out = Vec::new();
            parse_execute_params(&mut Reader::new(&pkt), &mut st, &mut out).unwrap();
            assert_eq!(out[0].value, ParamValue::Int(7));
            assert_eq!(out[1].value, ParamValue::Null);
        }
        // re-execute without types
        let mut pkt = vec![0, 0];
        pkt.extend_from_slice(&9u32.to_le_bytes());
        pkt.extend_from_slice(&[2, b'h', b'i']);
        let mut out = Vec::new();
        parse_execute_params(&mut Reader::new(&pkt), &mut st, &mut out).unwrap();
        assert_eq!(out[0].value, ParamValue::Int(9));
        assert_eq!(out[1].value, ParamValue::Bytes(b"hi"));
    }

    #[test]
    fn unbound_first_execute_is_an_error() {
        let mut st = StmtState {
            param_count: 1,
            types: None,
            long_data: vec![None],
        };
        let pkt = [0u8, 0, 1];
        let mut out = Vec::new();
        let e = parse_execute_params(&mut Reader::new(&pkt), &mut st, &mut out).unwrap_err();
        assert_eq!(e.code, 1210);
    }
}
