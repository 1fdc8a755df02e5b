//! MySQL packet framing: a 3-byte little-endian payload length, a 1-byte
//! sequence id, then the payload. Payloads of 16 MiB - 1 bytes or more are
//! split into several frames; a frame shorter than that ends the packet.
//!
//! Both halves are buffered so that a whole response costs one `write` syscall
//! and a burst of small packets from the peer costs one `read`.

use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

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
    /// The timer bounding waits for data, armed on the first wait and kept:
    /// re-arming a timer for every wait (a timer-wheel insert and removal
    /// each) costs more than most reads. Its deadline is pushed out only
    /// when it falls short of "now + timeout", to now + timeout + slack, so
    /// a wait fails after between `timeout` and `timeout + slack`.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How far past the timeout a kept timer is set, so that it is re-armed
/// at most once per this much time (an eighth of the timeout).
fn timer_slack(timeout: Duration) -> Duration {
    timeout / 8
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
            timer: None,
        }
    }

    /// Bounds every wait for data from the peer, so that a hung peer turns
    /// into an error instead of a hung caller.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
        // a timer armed for another timeout may run late for this one
        self.timer = None;
    }

    /// Drops the kept timer. Timers belong to the runtime that made them:
    /// call this before the reader may be used from another runtime (a
    /// pooled connection going back to its pool).
    pub fn disarm(&mut self) {
        self.timer = None;
    }

    pub fn max_packet(&self) -> usize {
        self.max_packet
    }

    /// True when bytes from the peer are already buffered (unexpected data on
    /// an idle connection means it is out of sync).
    pub fn has_buffered(&self) -> bool {
        self.pos < self.end
    }

    /// The longest run (at most `max` packets) of complete single-frame
    /// packets at the front of the buffer whose payloads `keep` accepts, as
    /// the frames' bytes (headers included), and how many packets it holds.
    /// Nothing is consumed: call [`Self::consume`] with the run's length.
    /// Lets a forwarder move a burst of rows with one copy instead of one
    /// `read` per packet.
    pub fn buffered_run(&self, max: usize, keep: impl Fn(&[u8]) -> bool) -> (&[u8], usize) {
        let mut i = self.pos;
        let mut n = 0;
        while n < max && i + 4 <= self.end {
            let h = &self.buf[i..i + 4];
            let len = u32::from_le_bytes([h[0], h[1], h[2], 0]) as usize;
            if len >= MAX_FRAME || len > self.max_packet || i + 4 + len > self.end {
                break;
            }
            if !keep(&self.buf[i + 4..i + 4 + len]) {
                break;
            }
            i += 4 + len;
            n += 1;
        }
        (&self.buf[self.pos..i], n)
    }

    /// Drops `n` buffered bytes, the length of a run from
    /// [`Self::buffered_run`].
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }

    /// Ensures at least `n` bytes are buffered starting at `pos`.
    async fn fill(&mut self, n: usize, at_boundary: bool) -> Result<(), PacketError> {
        if self.end - self.pos >= n {
            return Ok(());
        }
        if self.pos == self.end {
            // nothing buffered: read into the whole buffer
            self.pos = 0;
            self.end = 0;
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
            let got = match self.timeout {
                Some(t) => self.read_bounded(t).await?,
                None => self.inner.read(&mut self.buf[self.end..]).await?,
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

    /// One `read` into the free end of the buffer, failing with
    /// [`PacketError::Timeout`] when no data came within `timeout` (plus
    /// the kept timer's slack).
    async fn read_bounded(&mut self, timeout: Duration) -> Result<usize, PacketError> {
        let PacketReader {
            inner,
            buf,
            end,
            timer,
            ..
        } = self;
        // whether this wait's bound is set (once per wait: re-checking it on
        // every wake-up would push it out forever)
        let mut armed = false;
        std::future::poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut buf[*end..]);
            if let Poll::Ready(r) = Pin::new(&mut *inner).poll_read(cx, &mut rb) {
                return Poll::Ready(r.map(|()| rb.filled().len()).map_err(PacketError::from));
            }
            // no data yet: only now does the wait need its bound
            let t = match timer {
                Some(t) if armed => t,
                _ => {
                    let now = tokio::time::Instant::now();
                    let t = timer.get_or_insert_with(|| {
                        Box::pin(tokio::time::sleep_until(
                            now + timeout + timer_slack(timeout),
                        ))
                    });
                    if t.deadline() < now + timeout {
                        t.as_mut().reset(now + timeout + timer_slack(timeout));
                    }
                    armed = true;
                    t
                }
            };
            match t.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(PacketError::Timeout(timeout))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
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

    /// Appends whole single-frame packets (headers included, as
    /// [`PacketReader::buffered_run`] returns them), giving them the next
    /// sequence ids.
    pub fn append_frames(&mut self, frames: &[u8]) {
        let base = self.buf.len();
        self.buf.extend_from_slice(frames);
        let mut i = base;
        while i + 4 <= self.buf.len() {
            let len = u32::from_le_bytes([self.buf[i], self.buf[i + 1], self.buf[i + 2], 0]);
            self.buf[i + 3] = self.seq;
            self.seq = self.seq.wrapping_add(1);
            i += 4 + len as usize;
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
    async fn runs_of_buffered_packets_move_with_new_sequence_ids() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = PacketWriter::new(a);
        w.set_seq(5);
        for p in [&b"row1"[..], b"row22", b"", b"\xFEend", b"tail"] {
            w.write_packet(p);
        }
        w.flush().await.unwrap();
        drop(w);
        let mut r = PacketReader::new(b, 1 << 20);
        // the first read fills the buffer with everything sent
        let (seq, p) = r.read().await.unwrap();
        assert_eq!((seq, p), (5, &b"row1"[..]));
        let (run, n) = r.buffered_run(10, |p| p.first() != Some(&0xFE));
        assert_eq!(n, 2);
        let run = run.to_vec();
        r.consume(run.len());
        let (run2, n2) = r.buffered_run(1, |_| true);
        assert_eq!((run2.len(), n2), (4 + 4, 1));
        let (c, d) = tokio::io::duplex(1 << 16);
        let mut out = PacketWriter::new(c);
        out.set_seq(1);
        out.append_frames(&run);
        out.write_packet(b"x");
        out.flush().await.unwrap();
        drop(out);
        let mut check = PacketReader::new(d, 1 << 20);
        assert_eq!(check.read().await.unwrap(), (1, &b"row22"[..]));
        assert_eq!(check.read().await.unwrap(), (2, &b""[..]));
        assert_eq!(check.read().await.unwrap(), (3, &b"x"[..]));
        let (seq, p) = r.read().await.unwrap();
        assert_eq!((seq, p), (8, &b"\xFEend"[..]));
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
    async fn the_timeout_bounds_each_wait_not_their_sum() {
        let (a, b) = tokio::io::duplex(1024);
        let mut w = PacketWriter::new(a);
        tokio::spawn(async move {
            for i in 0..4u8 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                w.write_packet(&[i]);
                let _ = w.flush().await;
            }
            // then silence: the next wait must time out
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(w);
        });
        let mut r = PacketReader::new(b, 4096);
        r.set_timeout(Some(Duration::from_secs(1)));
        for i in 0..4u8 {
            let (_, p) = r.read().await.expect("each wait is under the timeout");
            assert_eq!(p, &[i]);
        }
        let start = std::time::Instant::now();
        assert!(matches!(r.read().await, Err(PacketError::Timeout(_))));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(1), "{waited:?}");
    }

    #[tokio::test]
    async fn timeout_fires() {
        let (_a, b) = tokio::io::duplex(1024);
        let mut r = PacketReader::new(b, 4096);
        r.set_timeout(Some(Duration::from_millis(50)));
        assert!(matches!(r.read().await, Err(PacketError::Timeout(_))));
    }
}
