//! MySQL packet framing: a 3-byte little-endian payload length, a 1-byte
//! sequence id, then the payload. Payloads of 16 MiB - 1 bytes or more are
//! split into several frames; a frame shorter than that ends the packet.
//!
//! Both halves are buffered so that a whole response costs one `write` syscall
//! and a burst of small packets from the peer costs one `read`.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload of one frame; a frame of exactly this size means "more follows".
pub const MAX_FRAME: usize = 0xFF_FFFF;

const INITIAL_READ_BUF: usize = 16 * 1024;
/// Buffered output above this size is written out before more is appended,
/// so that large result sets stream instead of piling up in memory.
pub const FLUSH_THRESHOLD: usize = 64 * 1024;

/// Why reading or writing a packet failed; the connection is unusable afterwards.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection at a packet boundary.
    #[error("connection closed by peer")]
    Closed,
    /// The peer closed the connection in the middle of a packet.
    #[error("connection closed in the middle of a packet")]
    Truncated,
    #[error("packet of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("no data from peer within {0:?}")]
    Timeout(Duration),
}

/// Reads framed packets; the payload returned borrows the reader's buffer
/// until the next read, so the common (single-frame) case copies nothing.
pub struct PacketReader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Reassembly buffer for multi-frame packets.
    large: Vec<u8>,
    max_packet: usize,
    timeout: Option<Duration>,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    pub fn new(inner: R, max_packet: usize) -> Self {
        PacketReader {
            inner,
            buf: vec![0; INITIAL_READ_BUF],
            pos: 0,
            end: 0,
            large: Vec::new(),
            max_packet,
            timeout: None,
        }
    }

    /// Bounds every wait for data from the peer, so that a hung peer turns
    /// into an error instead of a hung caller.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    pub fn max_packet(&self) -> usize {
        self.max_packet
    }

    /// True when bytes from the peer are already buffered (unexpected data on
    /// an idle connection means it is out of sync).
    pub fn has_buffered(&self) -> bool {
        self.pos < self.end
    }

    /// Ensures at least `n` bytes are buffered starting at `pos`.
    async fn fill(&mut self, n: usize, at_boundary: bool) -> Result<(), PacketError> {
        if self.end - self.pos >= n {
            return Ok(());
        }
        if self.pos + n > self.buf.len() {
            // compact, then grow if still too small
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
            if n > self.buf.len() {
                let new_len = n.max(self.buf.len() * 2);
                self.buf.resize(new_len, 0);
            }
        }
        while self.end - self.pos < n {
            let read = self.inner.read(&mut self.buf[self.end..]);
            let got = match self.timeout {
                Some(t) => match tokio::time::timeout(t, read).await {
                    Ok(r) => r?,
                    Err(_) => return Err(PacketError::Timeout(t)),
                },
                None => read.await?,
            };
            if got == 0 {
                return Err(if at_boundary && self.end == self.pos {
                    PacketError::Closed
                } else {
                    PacketError::Truncated
                });
            }
            self.end += got;
        }
        Ok(())
    }

    /// Reads one whole packet. Returns the sequence id of its last frame and
    /// the payload.
    pub async fn read(&mut self) -> Result<(u8, &[u8]), PacketError> {
        self.fill(4, true).await?;
        let h = &self.buf[self.pos..self.pos + 4];
        let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
        let seq = h[3];
        if len > self.max_packet {
            return Err(PacketError::TooLarge {
                size: len,
                limit: self.max_packet,
            });
        }
        if len < MAX_FRAME {
            self.fill(4 + len, false).await?;
            let start = self.pos + 4;
            self.pos = start + len;
            return Ok((seq, &self.buf[start..start + len]));
        }
        // multi-frame packet
        self.large.clear();
        let mut len = len;
        let mut seq = seq;
        loop {
            self.fill(4 + len, false).await?;
            let start = self.pos + 4;
            self.large.extend_from_slice(&self.buf[start..start + len]);
            self.pos = start + len;
            if len < MAX_FRAME {
                break;
            }
            self.fill(4, false).await?;
            let h = &self.buf[self.pos..self.pos + 4];
            len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
            seq = h[3];
            let total = self.large.len() + len;
            if total > self.max_packet {
                return Err(PacketError::TooLarge {
                    size: total,
                    limit: self.max_packet,
                });
            }
        }
        if self.pos == self.end {
            // give back memory after a one-off huge packet
            self.pos = 0;
            self.end = 0;
            if self.buf.len() > 4 * INITIAL_READ_BUF {
                self.buf.truncate(INITIAL_READ_BUF);
                self.buf.shrink_to_fit();
            }
        }
        Ok((seq, &self.large))
    }

    /// Reads and throws away whatever the peer sends, for at most `limit`
    /// time and `max_bytes` bytes (used after refusing a packet so that the
    /// peer reads the error instead of a connection reset).
    pub async fn discard_input(&mut self, limit: Duration, max_bytes: usize) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut total = 0;
        self.pos = 0;
        self.end = 0;
        while total < max_bytes {
            match tokio::time::timeout_at(deadline, self.inner.read(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => total += n,
                _ => break,
            }
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Accumulates packets in memory; nothing reaches the socket until
/// [`PacketWriter::flush`] (or a write crosses [`FLUSH_THRESHOLD`] through
/// [`PacketWriter::flush_if_full`]).
pub struct PacketWriter<W> {
    inner: W,
    buf: Vec<u8>,
    /// Sequence id of the next packet.
    seq: u8,
    /// Bumped on every flush; lets callers know whether an offset they
    /// remembered still points into the buffer.
    flushes: u64,
}

impl<W: AsyncWrite + Unpin> PacketWriter<W> {
    pub fn new(inner: W) -> Self {
        PacketWriter {
            inner,
            buf: Vec::with_capacity(INITIAL_READ_BUF),
            seq: 0,
            flushes: 0,
        }
    }

    pub fn set_seq(&mut self, seq: u8) {
        self.seq = seq;
    }

    pub fn seq(&self) -> u8 {
        self.seq
    }

    pub fn flush_count(&self) -> u64 {
        self.flushes
    }

    /// Starts a packet whose payload the caller appends to [`Self::buf_mut`];
    /// returns the token for [`Self::end_packet`].
    pub fn begin_packet(&mut self) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        start
    }

    pub fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Byte offset in the output buffer where the next byte will go.
    pub fn offset(&self) -> usize {
        self.buf.len()
    }

    /// Overwrites two bytes already in the buffer (used to patch status flags
    /// of a packet that is not yet flushed).
    pub fn patch_u16(&mut self, offset: usize, value: u16) {
        self.buf[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    pub fn read_u16(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.buf[offset], self.buf[offset + 1]])
    }

    /// Writes the header of the packet begun at `start`, splitting it into
    /// frames when the payload is 16 MiB - 1 bytes or more.
    pub fn end_packet(&mut self, start: usize) {
        let len = self.buf.len() - start - 4;
        if len < MAX_FRAME {
            let h = (len as u32).to_le_bytes();
            self.buf[start..start + 4].copy_from_slice(&[h[0], h[1], h[2], self.seq]);
            self.seq = self.seq.wrapping_add(1);
            return;
        }
        let payload = self.buf.split_off(start + 4);
        self.buf.truncate(start);
        self.push_frames(&payload);
    }

    fn push_frames(&mut self, payload: &[u8]) {
        let mut rest = payload;
        loop {
            let n = rest.len().min(MAX_FRAME);
            let h = (n as u32).to_le_bytes();
            self.buf.extend_from_slice(&[h[0], h[1], h[2], self.seq]);
            self.buf.extend_from_slice(&rest[..n]);
            self.seq = self.seq.wrapping_add(1);
            rest = &rest[n..];
            if n < MAX_FRAME {
                break;
            }
        }
    }

    /// Appends a whole packet with the next sequence id.
    pub fn write_packet(&mut self, payload: &[u8]) {
        if payload.len() < MAX_FRAME {
            let h = (payload.len() as u32).to_le_bytes();
            self.buf.extend_from_slice(&[h[0], h[1], h[2], self.seq]);
            self.buf.extend_from_slice(payload);
            self.seq = self.seq.wrapping_add(1);
        } else {
            self.push_frames(payload);
        }
    }

    /// Sends everything buffered.
    pub async fn flush(&mut self) -> Result<(), PacketError> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
            self.flushes += 1;
            if self.buf.capacity() > 16 * FLUSH_THRESHOLD {
                self.buf.shrink_to(INITIAL_READ_BUF);
            }
        }
        Ok(())
    }

    /// Flushes only when enough has accumulated; call before appending more
    /// of a long response.
    pub async fn flush_if_full(&mut self) -> Result<(), PacketError> {
        if self.buf.len() >= FLUSH_THRESHOLD {
            self.flush().await?;
        }
        Ok(())
    }

    /// Drops anything buffered but not yet sent.
    pub fn discard(&mut self) {
        self.buf.clear();
    }

    pub async fn shutdown(&mut self) {
        let _ = self.inner.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn roundtrip_small_and_multi_frame() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = PacketWriter::new(a);
        let big: Vec<u8> = (0..(MAX_FRAME * 2 + 10)).map(|i| i as u8).collect();
        let exact: Vec<u8> = vec![7; MAX_FRAME];
        let writer = tokio::spawn(async move {
            w.write_packet(b"hello");
            w.write_packet(&[]);
            let s = w.begin_packet();
            w.buf_mut().extend_from_slice(&big);
            w.end_packet(s);
            w.write_packet(&exact);
            w.flush().await.unwrap();
            (big, exact)
        });
        let mut r = PacketReader::new(b, 64 << 20);
        let (seq, p) = r.read().await.unwrap();
        assert_eq!((seq, p), (0, &b"hello"[..]));
        let (seq, p) = r.read().await.unwrap();
        assert_eq!((seq, p.len()), (1, 0));
        let (seq, p) = r.read().await.unwrap();
        let p = p.to_vec();
        // 3 frames: full, full, 10 bytes
        assert_eq!(seq, 4);
        let (seq2, p2) = r.read().await.unwrap();
        let p2 = p2.to_vec();
        // exact multiple: full frame + empty frame
        assert_eq!(seq2, 6);
        let (big, exact) = writer.await.unwrap();
        assert_eq!(p, big);
        assert_eq!(p2, exact);
        assert!(matches!(r.read().await, Err(PacketError::Closed)));
    }

    #[tokio::test]
    async fn too_large_is_an_error() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = PacketWriter::new(a);
        tokio::spawn(async move {
            w.write_packet(&vec![1u8; 5000]);
            let _ = w.flush().await;
        });
        let mut r = PacketReader::new(b, 4096);
        match r.read().await {
            Err(PacketError::TooLarge { size, limit }) => assert_eq!((size, limit), (5000, 4096)),
            other => panic!("unexpected {:?}", other.map(|(s, p)| (s, p.len()))),
        }
    }

    #[tokio::test]
    async fn too_large_multi_frame_is_an_error() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = PacketWriter::new(a);
        tokio::spawn(async move {
            w.write_packet(&vec![1u8; MAX_FRAME + 100]);
            let _ = w.flush().await;
        });
        let mut r = PacketReader::new(b, MAX_FRAME + 50);
        assert!(matches!(r.read().await, Err(PacketError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn timeout_fires() {
        let (_a, b) = tokio::io::duplex(1024);
        let mut r = PacketReader::new(b, 4096);
        r.set_timeout(Some(Duration::from_millis(50)));
        assert!(matches!(r.read().await, Err(PacketError::Timeout(_))));
    }
}
