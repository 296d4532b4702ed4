//! The PTY master's two halves, each registered with tokio for the one
//! readiness it waits on, and the reader not at all while its program
//! floods.
//!
//! tokio watches a registered fd edge-triggered, and a PTY signals an edge
//! each time the kernel moves a slice of the program's output into the
//! master's line discipline, whose buffer holds 4 KiB: about sixteen
//! edges per 64 KiB read. While one worker runs a flooding session's actor,
//! the other, idle, sleeps in `epoll_wait` and was woken by every one of
//! them, to find the actor already running: 14,773 `epoll_wait` calls and
//! as many context switches for 64 MiB streamed (`strace -f -c`), CPU taken
//! from the program, the viewers and the other sessions.
//!
//! So the reader reads the fd itself while output keeps coming, and is
//! registered (for readability only) just when a read finds nothing, as a
//! single-threaded event loop would: [`PtyReader`] drops its registration
//! after [`UNWATCH_AFTER`] reads in a row without a wait, and makes one
//! again at the first `EAGAIN`, with the runtime it is read on. A registration
//! made where data is already waiting is ready at once: nothing is missed.
//! A keystroke's echo is one read and an `EAGAIN`: an interactive session
//! keeps its registration.
//!
//! A reader polled on the bulk lane (`session::lane`) is always watched,
//! and watched again if its actor moved there mid-flood: read unwatched
//! there, the lane's one thread never paused, and in the benchmark's load
//! scenario the echo's p99 rose (1.0–1.3 ms against 0.7–0.9 ms in 4
//! alternating runs). Its registration is with the lane's I/O driver, so
//! the flood's edges wake the lane's thread rather than the server's idle
//! worker, and moves with the actor when it goes home (echo p99 under load
//! a median 1.16× ttyd's against 1.45× with the registration left with the
//! server, 8 alternating runs). The writer
//! ([`PtyWriter`]) is registered for writability only, so the output's
//! edges never wake anyone through it, and only once a write has had to
//! wait.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};
use tokio::runtime::Handle;

use crate::session::lane;

/// Reads in a row, each with data, after which the reader stops being
/// watched: 64 KiB at the line discipline's 4 KiB a read, one full chunk
/// of the actor's.
pub const UNWATCH_AFTER: u32 = 16;

/// The reading half of a PTY master. Polled only on a runtime's worker
/// (an actor's task): it registers with the runtime it is polled on.
pub struct PtyReader {
    /// Registered, for readability, while a read may have to wait;
    /// `Unwatched` while the program floods.
    fd: Watch,
    /// Reads with data since the last wait.
    streak: u32,
    /// While `Watched`: the registration is with the bulk lane's I/O
    /// driver, not the server's. It moves with the actor (see
    /// `session::lane`).
    on_lane: bool,
}

enum Watch {
    Watched(AsyncFd<Master>),
    Unwatched(Master),
    /// Only between the two, never seen by a poll.
    Moving,
}

/// The writing half of a PTY master (the program's input), and its window
/// size. Registered (for writability) only once a write finds the
/// program's input full: most sessions never do, and a registration is a
/// few hundred bytes an idle session would carry.
pub struct PtyWriter {
    fd: Master,
    /// A copy of `fd` (epoll takes an fd once, and the reader may have
    /// registered `fd`), registered when a write first had to wait.
    watch: Option<AsyncFd<OwnedFd>>,
    home: Handle,
}

/// The master's fd, shared by the halves: closed when both are gone.
#[derive(Clone)]
struct Master(Arc<OwnedFd>);

impl AsRawFd for Master {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Registers `fd` with the current runtime for `interest`; on failure the
/// fd is handed back.
fn register<T: AsRawFd>(fd: T, interest: Interest) -> Result<AsyncFd<T>, (T, io::Error)> {
    // SAFETY: `T` is an `OwnedFd` or a `Master` holding one: open, the same
    // file description and the same fd for as long as it lives, which is
    // as long as the `AsyncFd` holding it.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts())
}

/// Splits the master `fd` (nonblocking) into its halves. Must be called
/// within the server's runtime.
pub fn split(fd: OwnedFd) -> io::Result<(PtyReader, PtyWriter)> {
    let fd = Master(Arc::new(fd));
    let home = Handle::current();
    let reader = PtyReader {
        fd: Watch::Watched(register(fd.clone(), Interest::READABLE).map_err(|(_, e)| e)?),
        streak: 0,
        on_lane: lane::on_bulk_lane(),
    };
    let writer = PtyWriter { fd, watch: None, home };
    Ok((reader, writer))
}

impl PtyReader {
    /// Whether the reader is registered with the runtime (for tests).
    pub fn is_watched(&self) -> bool {
        matches!(self.fd, Watch::Watched(_))
    }

    fn watch(&mut self) -> io::Result<()> {
        if let Watch::Unwatched(_) = self.fd {
            let Watch::Unwatched(fd) = std::mem::replace(&mut self.fd, Watch::Moving) else {
                unreachable!("just matched")
            };
            match register(fd, Interest::READABLE) {
                Ok(watched) => {
                    self.fd = Watch::Watched(watched);
                    self.on_lane = lane::on_bulk_lane();
                }
                Err((fd, e)) => {
                    // The actor takes the error for the end of the output.
                    tracing::warn!(error = %e, "cannot watch a PTY for output again");
                    self.fd = Watch::Unwatched(fd);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn unwatch(&mut self) {
        if let Watch::Watched(_) = self.fd {
            let Watch::Watched(watched) = std::mem::replace(&mut self.fd, Watch::Moving) else {
                unreachable!("just matched")
            };
            // Deregisters; the fd stays open.
            self.fd = Watch::Unwatched(watched.into_inner());
        }
    }

    /// After a read with data: a long enough run of them means the program
    /// floods, and the reader stops being watched.
    fn got_data(&mut self) {
        self.streak = self.streak.saturating_add(1);
        if self.streak >= UNWATCH_AFTER && !lane::on_bulk_lane() {
            self.unwatch();
        }
    }
}

/// One `read` into `buf`'s unfilled part.
fn read_into(fd: RawFd, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
    let unfilled = buf.initialize_unfilled();
    // SAFETY: `unfilled` is valid, initialized memory of its length.
    let n = unsafe { libc::read(fd, unfilled.as_mut_ptr().cast(), unfilled.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    buf.advance(n);
    Ok(n)
}

/// One `write` of `data`.
fn write_from(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is valid for its length.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl AsyncRead for PtyReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &this.fd {
                // An actor that moved to the bulk lane while flooding is
                // watched there (see the module's doc).
                Watch::Unwatched(_) if lane::on_bulk_lane() => this.watch()?,
                // The actor moved between the server's runtime and the
                // lane: the registration moves with it (a new one is ready
                // at once if data waits).
                Watch::Watched(watched) if this.on_lane != lane::on_bulk_lane() => {
                    // The new one first: should it fail, the old one still
                    // wakes the actor, from the other runtime.
                    match register(watched.get_ref().clone(), Interest::READABLE) {
                        Ok(moved) => this.fd = Watch::Watched(moved),
                        Err((_, e)) => tracing::warn!(error = %e, "cannot move a PTY's registration"),
                    }
                    // Even after a failure: the old registration serves, and
                    // is not tried again at every poll.
                    this.on_lane = lane::on_bulk_lane();
                }
                Watch::Unwatched(fd) => match read_into(fd.as_raw_fd(), buf) {
                    Ok(n) => {
                        if n > 0 {
                            this.got_data();
                        }
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        this.streak = 0;
                        this.watch()?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                },
                Watch::Watched(watched) => {
                    let mut guard = ready!(watched.poll_read_ready(cx))?;
                    match guard.try_io(|fd| read_into(fd.as_raw_fd(), buf)) {
                        Ok(Ok(n)) => {
                            if n > 0 {
                                this.got_data();
                            }
                            return Poll::Ready(Ok(()));
                        }
                        Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Ok(Err(e)) => return Poll::Ready(Err(e)),
                        // `EAGAIN`: readiness cleared, wait again.
                        Err(_would_block) => this.streak = 0,
                    }
                }
                Watch::Moving => unreachable!("a reader is never polled between states"),
            }
        }
    }
}

impl PtyWriter {
    /// Writes some of `data` to the program's input, waiting while its
    /// buffer is full.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            match write_from(self.fd.as_raw_fd(), data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                done => return done,
            }
            if self.watch.is_none() {
                let _home = self.home.enter();
                let copy = self.fd.0.try_clone()?;
                self.watch = Some(register(copy, Interest::WRITABLE).map_err(|(_, e)| e)?);
            }
            let Some(watch) = &self.watch else {
                unreachable!("just registered")
            };
            // Registered after the `EAGAIN`: its first readiness is the
            // buffer's state now, so no room made since is missed.
            let mut guard = watch.writable().await?;
            match guard.try_io(|fd| write_from(fd.as_raw_fd(), data)) {
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(done) => return done,
                Err(_would_block) => {}
            }
        }
    }

    /// Sets the terminal's window size.
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(self.fd.0.as_fd(), size).map_err(io::Error::from)
    }

    /// The master's fd, for the nonblocking writes of the input path.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests;
