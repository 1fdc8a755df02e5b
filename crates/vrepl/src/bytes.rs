//! A bounds-checked cursor over event bytes.
//!
//! Every read returns an error instead of panicking: event bytes come from
//! the network and a short or corrupt event must fail the stream, not the
//! process.

use crate::error::{Result, VreplError};

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Cursor<'a> {
        Cursor { buf, pos: 0, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.pos..];
        self.pos = self.buf.len();
        r
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(VreplError::malformed(
                self.what,
                format!(
                    "needs {n} more bytes at offset {} but only {} remain",
                    self.pos,
                    self.remaining()
                ),
            ));
        }
        let r = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(r)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// Little-endian unsigned integer of `n` bytes (n <= 8).
    pub(crate) fn uint_le(&mut self, n: usize) -> Result<u64> {
        let b = self.bytes(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// Big-endian unsigned integer of `n` bytes (n <= 8), as MySQL's
    /// `mi_uintNkorr` reads the temporal and decimal formats.
    pub(crate) fn uint_be(&mut self, n: usize) -> Result<u64> {
        let b = self.bytes(n)?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    pub(crate) fn u16_le(&mut self) -> Result<u16> {
        Ok(self.uint_le(2)? as u16)
    }

    pub(crate) fn u32_le(&mut self) -> Result<u32> {
        Ok(self.uint_le(4)? as u32)
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64> {
        self.uint_le(8)
    }

    /// The protocol's length-encoded integer.
    pub(crate) fn lenenc(&mut self) -> Result<u64> {
        match self.u8()? {
            x @ 0..=0xfa => Ok(u64::from(x)),
            0xfc => self.uint_le(2),
            0xfd => self.uint_le(3),
            0xfe => self.uint_le(8),
            x => Err(VreplError::malformed(
                self.what,
                format!("0x{x:02x} does not start a length-encoded integer"),
            )),
        }
    }

    /// A length-encoded integer used as a length or count; refused when it
    /// exceeds the bytes left, so a corrupt count cannot make us allocate.
    pub(crate) fn lenenc_len(&mut self) -> Result<usize> {
        let n = self.lenenc()?;
        if n > self.remaining() as u64 {
            return Err(VreplError::malformed(
                self.what,
                format!("length {n} exceeds the {} bytes left", self.remaining()),
            ));
        }
        Ok(n as usize)
    }

    pub(crate) fn lenenc_bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.lenenc_len()?;
        self.bytes(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses_short_input() {
        let mut c = Cursor::new(&[1, 2, 3, 0xfc, 5, 0, 9], "test");
        assert_eq!(c.uint_le(2).unwrap(), 0x0201);
        assert_eq!(c.u8().unwrap(), 3);
        assert_eq!(c.lenenc().unwrap(), 5);
        assert!(c.bytes(2).is_err());
        assert_eq!(c.u8().unwrap(), 9);
        assert!(c.u8().is_err());
        let mut c = Cursor::new(&[1, 2, 3], "test");
        assert_eq!(c.uint_be(3).unwrap(), 0x010203);
        let mut c = Cursor::new(&[9, 1], "test");
        assert!(c.lenenc_bytes().is_err());
    }
}
