//! One watch loop for all local backends: read the event log after a cursor, and between reads
//! wait for an in-process wake-up or (for stores shared with other processes) a poll tick.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::Notify;

use crate::{Revision, TopoError, WatchEvent};

/// Where a watcher is in the event log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor {
    /// Sequence number of the last event-log row examined; None until the first read, which
    /// starts from the watch's `after` revision.
    pub seq: Option<u64>,
    /// Every event with a revision <= this has been delivered (or buffered); if the store has
    /// trimmed history past it, events would be lost, so the watch fails with `Compacted`.
    pub seen_rev: Revision,
}

pub(crate) trait EventSource: Send + Sync + 'static {
    fn notify(&self) -> &Notify;
    fn is_closed(&self) -> bool;
    /// None: in-process wake-ups are the only source of changes.
    fn poll_interval(&self) -> Option<Duration>;
    /// Events under `prefix` after `cursor`, at most a bounded batch, and the advanced cursor.
    fn read_events(
        self: Arc<Self>,
        prefix: Arc<str>,
        cursor: Cursor,
    ) -> impl Future<Output = Result<(Vec<WatchEvent>, Cursor), TopoError>> + Send;
}

struct State<S> {
    src: Arc<S>,
    prefix: Arc<str>,
    cursor: Cursor,
    /// Events at or before this are never delivered, even if `after` is in the future.
    after: Revision,
    buf: VecDeque<WatchEvent>,
    done: bool,
}

pub(crate) fn stream<S: EventSource>(
    src: Arc<S>,
    prefix: &str,
    after: Revision,
) -> BoxStream<'static, Result<WatchEvent, TopoError>> {
    let state = State {
        src,
        prefix: Arc::from(prefix),
        cursor: Cursor {
            seq: None,
            seen_rev: after,
        },
        after,
        buf: VecDeque::new(),
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.buf.pop_front() {
                return Some((Ok(ev), st));
            }
            let src = st.src.clone();
            if st.done || src.is_closed() {
                return None;
            }
            // Register for wake-ups before reading, so a write committed right after the read
            // is not missed.
            let notified = src.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match src.clone().read_events(st.prefix.clone(), st.cursor).await {
                Ok((events, cursor)) => {
                    st.cursor = cursor;
                    let after = st.after;
                    st.buf
                        .extend(events.into_iter().filter(|e| e.revision() > after));
                }
                Err(TopoError::Closed) => return None,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            }
            if st.buf.is_empty() {
                match src.poll_interval() {
                    Some(d) => {
                        tokio::select! {
                            _ = &mut notified => {}
                            _ = tokio::time::sleep(d) => {}
                        }
                    }
                    None => notified.await,
                }
            }
        }
    })
    .boxed()
}
