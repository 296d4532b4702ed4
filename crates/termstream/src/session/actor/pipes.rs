//! The actor's I/O helpers: reading what a program printed (coalesced, via a
//! per-thread scratch buffer), writing its input, and the `Option`-aware
//! futures the actor's `select!` needs.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::session::input::Input;
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

/// How a coalescing read ([`fill`]) stopped.
enum Fill {
    /// The buffer is full.
    Full,
    /// The reader has nothing more ready now.
    Waiting,
    /// The end of the stream (a PTY's EIO counts as the end).
    End,
    Failed(io::Error),
}

/// Reads into `buf` after its first `*len` bytes (which it moves on) until
/// it is full or the reader has nothing more ready.
fn fill(reader: &mut Reader, buf: &mut [u8], len: &mut usize, cx: &mut Context<'_>) -> Fill {
    let mut rb = ReadBuf::new(buf);
    rb.set_filled(*len);
    let fill = loop {
        if rb.remaining() == 0 {
            break Fill::Full;
        }
        let before = rb.filled().len();
        match reader.as_mut().poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().len() == before => break Fill::End,
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc_eio()) => break Fill::End,
            Poll::Ready(Err(e)) => break Fill::Failed(e),
            Poll::Pending => break Fill::Waiting,
        }
    };
    *len = rb.filled().len();
    fill
}

/// The binary output frame of `data`: `header`, then the bytes; and the
/// header's length.
fn frame(header: FrameHeader<'_>, data: &[u8]) -> (Bytes, usize) {
    let mut frame = Vec::with_capacity(header.len() + data.len());
    binary::encode_header(&mut frame, header.session_id, header.stream, header.offset);
    frame.extend_from_slice(data);
    (Bytes::from(frame), header.len())
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
        let mut len = 0;
        match fill(reader, scratch, &mut len, cx) {
            Fill::Waiting if len == 0 => return Poll::Pending,
            Fill::End if len == 0 => return Poll::Ready(Ok(None)),
            Fill::Failed(e) if len == 0 => return Poll::Ready(Err(e)),
            // Anything read goes out first; an error comes again.
            _ => {}
        }
        Poll::Ready(Ok(Some(frame(header, &scratch[..len]))))
    })
}

/// [`poll_read_ready`] for a flood, gathering into `holding.hold` across
/// wake-ups: returns a chunk once [`READ_COALESCE`] bytes are there, once
/// the first of them has waited the hold's window, once the session's input
/// moved (what it printed since, an echo say, goes out now), or at the end.
fn poll_read_held(
    reader: &mut Reader,
    header: FrameHeader<'_>,
    holding: &mut Holding<'_>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Option<(Bytes, usize)>>> {
    let hold = &mut *holding.hold;
    let was_empty = hold.len == 0;
    let stop = fill(reader, &mut hold.buf, &mut hold.len, cx);
    if was_empty && hold.len > 0 {
        let due = tokio::time::Instant::now() + hold.window;
        hold.due.as_mut().reset(due);
    }
    match stop {
        Fill::Waiting if hold.len == 0 => Poll::Pending,
        Fill::Waiting => {
            let typed = holding.input.sends() != holding.inputs_seen;
            if typed || hold.due.as_mut().poll(cx).is_ready() {
                Poll::Ready(Ok(hold.take(header)))
            } else {
                Poll::Pending
            }
        }
        Fill::End if hold.len == 0 => Poll::Ready(Ok(None)),
        Fill::Failed(e) if hold.len == 0 => Poll::Ready(Err(e)),
        _ => Poll::Ready(Ok(hold.take(header))),
    }
}

/// What a read of a flood holds its output in, and the input whose move
/// ends the holding.
pub(super) struct Holding<'a> {
    pub hold: &'a mut Hold,
    pub input: &'a Input,
    /// The session's input count when the flood was last seen.
    pub inputs_seen: u64,
}

/// A flooding session's output, gathered across wake-ups into chunks of
/// [`READ_COALESCE`] bytes, each held at most `window`. Made when a flood
/// is seen, dropped when it ends: an idle session holds no buffer.
pub(super) struct Hold {
    buf: Box<[u8]>,
    len: usize,
    window: Duration,
    /// When what is held must go out: `window` after its first byte.
    due: Pin<Box<tokio::time::Sleep>>,
}

impl Hold {
    /// Must be called within a runtime (for the timer).
    pub fn new(window: Duration) -> Hold {
        Hold {
            buf: vec![0; READ_COALESCE].into_boxed_slice(),
            len: 0,
            window,
            due: Box::pin(tokio::time::sleep(window)),
        }
    }

    /// The chunk of what is held (`None`: nothing is), which is then gone.
    pub fn take(&mut self, header: FrameHeader<'_>) -> Option<(Bytes, usize)> {
        let len = std::mem::take(&mut self.len);
        (len > 0).then(|| frame(header, &self.buf[..len]))
    }
}

fn libc_eio() -> i32 {
    rustix::io::Errno::IO.raw_os_error()
}

// `select!` evaluates every branch's expression, enabled or not, so the
// optional parts of the actor are awaited through these helpers.

pub(super) fn read_opt<'a>(
    reader: &'a mut Option<Reader>,
    header: FrameHeader<'a>,
    holding: Option<Holding<'a>>,
) -> impl Future<Output = io::Result<Option<(Bytes, usize)>>> + 'a {
    // A `poll_fn`, not an `async fn` around `read_ready`: the actor of an
    // idle session waits on this all its life, and its future stays small.
    let mut holding = holding;
    poll_fn(move |cx| match (reader.as_mut(), holding.as_mut()) {
        (Some(r), Some(holding)) => poll_read_held(r, header, holding, cx),
        (Some(r), None) => poll_read_ready(r, header, cx),
        (None, _) => Poll::Pending,
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
