//! Blocking readers and writers of other back-ends, driven from async code: each read or
//! write runs on the blocking pool with its buffer moved there and back (what
//! `tokio::fs::File` does for a local file).

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::ReadBuf;
use tokio::task::JoinHandle;

/// A blocking reader or writer used from async code: each read or write runs on the blocking
/// pool with the buffer moved there and back (what `tokio::fs::File` does for a file).
pub(super) struct Blocking<T> {
    state: State<T>,
    /// Bytes asked of one read.
    chunk: usize,
    /// A write was started since the last flush.
    dirty: bool,
}

/// A buffer with a read position.
#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    pos: usize,
}

enum State<T> {
    /// No operation in flight; `None` once the handle was lost in a panicked task.
    Idle(Option<(T, Buf)>),
    /// An operation in flight, giving back the handle, the buffer and its result.
    Busy(JoinHandle<(T, Buf, io::Result<usize>)>),
}

impl<T> fmt::Debug for Blocking<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blocking")
            .field("busy", &matches!(self.state, State::Busy(_)))
            .finish_non_exhaustive()
    }
}

/// Bytes asked of one blocking read when the caller gave no size.
const BLOCKING_CHUNK: usize = 256 * 1024;

fn lost() -> io::Error {
    io::Error::other("the stream was lost in a failed operation")
}

impl<T: Send + 'static> Blocking<T> {
    pub(super) fn new(inner: T, chunk: usize) -> Self {
        Self {
            state: State::Idle(Some((inner, Buf::default()))),
            chunk: if chunk == 0 { BLOCKING_CHUNK } else { chunk },
            dirty: false,
        }
    }

    /// Waits for the operation in flight, if any; its result (a read's count).
    pub(super) fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let State::Busy(handle) = &mut self.state else {
            return Poll::Ready(Ok(0));
        };
        let joined = ready!(Pin::new(handle).poll(cx));
        match joined {
            Ok((inner, buf, result)) => {
                self.state = State::Idle(Some((inner, buf)));
                Poll::Ready(result)
            }
            Err(e) => {
                self.state = State::Idle(None);
                Poll::Ready(Err(io::Error::other(e)))
            }
        }
    }

    /// Starts `op` on the handle and buffer on the blocking pool.
    fn start(&mut self, op: impl FnOnce(&mut T, &mut Buf) -> io::Result<usize> + Send + 'static) {
        let State::Idle(slot) = &mut self.state else {
            return;
        };
        let Some((mut inner, mut buf)) = slot.take() else {
            return;
        };
        self.state = State::Busy(tokio::task::spawn_blocking(move || {
            let result = op(&mut inner, &mut buf);
            (inner, buf, result)
        }));
    }

    pub(super) fn into_inner(self) -> Option<T> {
        match self.state {
            State::Idle(slot) => slot.map(|(inner, _)| inner),
            State::Busy(_) => None,
        }
    }
}

impl<T: Read + Send + 'static> Blocking<T> {
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Busy(_) => {
                    if ready!(self.poll_settle(cx))? == 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                State::Idle(None) => return Poll::Ready(Err(lost())),
                State::Idle(Some((_, buf))) if buf.pos < buf.data.len() => {
                    let n = out.remaining().min(buf.data.len() - buf.pos);
                    out.put_slice(&buf.data[buf.pos..buf.pos + n]);
                    buf.pos += n;
                    return Poll::Ready(Ok(()));
                }
                State::Idle(Some(_)) => {
                    let chunk = self.chunk;
                    self.start(move |inner, buf| {
                        buf.data.resize(chunk, 0);
                        buf.pos = 0;
                        let result = loop {
                            match inner.read(&mut buf.data) {
                                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                                r => break r,
                            }
                        };
                        buf.data.truncate(*result.as_ref().unwrap_or(&0));
                        result
                    });
                }
            }
        }
    }
}

impl<T: Write + Send + 'static> Blocking<T> {
    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_settle(cx))?;
        let State::Idle(Some((_, buf))) = &mut self.state else {
            return Poll::Ready(Err(lost()));
        };
        let n = data.len().min(self.chunk);
        buf.data.clear();
        buf.data.extend_from_slice(&data[..n]);
        self.dirty = true;
        self.start(|inner, buf| inner.write_all(&buf.data).map(|()| buf.data.len()));
        Poll::Ready(Ok(n))
    }

    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_settle(cx))?;
            if matches!(self.state, State::Idle(None)) {
                return Poll::Ready(Err(lost()));
            }
            if !self.dirty {
                return Poll::Ready(Ok(()));
            }
            self.dirty = false;
            self.start(|inner, _| inner.flush().map(|()| 0));
        }
    }
}
