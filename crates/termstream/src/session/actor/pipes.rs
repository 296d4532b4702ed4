//! The actor's I/O helpers: reading what a program printed (coalesced, via a
//! per-thread scratch buffer), writing its input, and the `Option`-aware
//! futures the actor's `select!` needs.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::session::process::ChildProcess;
use bytes::Bytes;
use termstream_proto::Stream;
use termstream_proto::ws::binary;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

/// Most bytes gathered into one chunk while the program has more ready.
pub const READ_COALESCE: usize = 64 * 1024;

thread_local! {
    /// Scratch space for reads: output is read here and copied into a chunk
    /// of its exact size, so an idle session holds no read buffer.
    static SCRATCH: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; READ_COALESCE].into_boxed_slice());
}

pub(super) type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// Where the bytes a read returns will stand: they are written after the
/// header of their binary output frame (see [`Chunk::wire`]).
///
/// [`Chunk::wire`]: crate::session::log::Chunk::wire
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameHeader<'a> {
    pub session_id: &'a str,
    pub stream: Stream,
    pub offset: u64,
}

impl FrameHeader<'_> {
    fn len(&self) -> usize {
        binary::HEADER_LEN + self.session_id.len()
    }
}

/// Polls `reader` for what is ready, up to [`READ_COALESCE`] bytes: waits
/// for the first bytes, then takes more while they are there. Returns the
/// binary output frame (`header`, then the bytes) and the header's length.
/// `Ok(None)` is the end of the stream (a PTY's EIO counts as the end).
fn poll_read_ready(
    reader: &mut Reader,
    header: FrameHeader<'_>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Option<(Bytes, usize)>>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let mut buf = ReadBuf::new(&mut scratch[..]);
        loop {
            let before = buf.filled().len();
            match reader.as_mut().poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().len() == before => break,
                Poll::Ready(Ok(())) if buf.remaining() == 0 => break,
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc_eio()) => break,
                Poll::Ready(Err(e)) if buf.filled().is_empty() => return Poll::Ready(Err(e)),
                Poll::Ready(Err(_)) | Poll::Pending if !buf.filled().is_empty() => break,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let filled = buf.filled();
        if filled.is_empty() {
            return Poll::Ready(Ok(None));
        }
        let mut frame = Vec::with_capacity(header.len() + filled.len());
        binary::encode_header(&mut frame, header.session_id, header.stream, header.offset);
        frame.extend_from_slice(filled);
        Poll::Ready(Ok(Some((Bytes::from(frame), header.len()))))
    })
}

fn libc_eio() -> i32 {
    rustix::io::Errno::IO.raw_os_error()
}

// `select!` evaluates every branch's expression, enabled or not, so the
// optional parts of the actor are awaited through these helpers.

pub(super) fn read_opt<'a>(
    reader: &'a mut Option<Reader>,
    header: FrameHeader<'a>,
) -> impl Future<Output = io::Result<Option<(Bytes, usize)>>> + 'a {
    // A `poll_fn`, not an `async fn` around `read_ready`: the actor of an
    // idle session waits on this all its life, and its future stays small.
    poll_fn(move |cx| match reader {
        Some(r) => poll_read_ready(r, header, cx),
        None => Poll::Pending,
    })
}

/// Waits for the program's exit (never, when it was reaped); a `poll_fn`
/// for the same reason as [`read_opt`].
pub(super) fn wait_child(
    child: &mut Option<ChildProcess>,
) -> impl Future<Output = io::Result<std::process::ExitStatus>> + '_ {
    poll_fn(move |cx| match child {
        Some(c) => c.poll_wait(cx),
        None => Poll::Pending,
    })
}

pub(super) async fn write_some(
    pty: &mut Option<crate::session::process::PtyWriter>,
    stdin: &mut Option<Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    data: &Bytes,
) -> io::Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    if let Some(pty) = pty {
        return pty.write(data).await;
    }
    if let Some(stdin) = stdin {
        return stdin.write(data).await;
    }
    Err(io::Error::from(io::ErrorKind::BrokenPipe))
}

/// Sleeps until `deadline`, or forever when there is none. The timer is
/// made (boxed) only when there is a deadline: a tokio `Sleep` is over 100
/// bytes, and an idle actor's task would carry two for nothing.
pub(super) async fn sleep_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => Box::pin(tokio::time::sleep_until(at)).await,
        None => std::future::pending().await,
    }
}
