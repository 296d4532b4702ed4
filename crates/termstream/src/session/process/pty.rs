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
//! A keystroke's echo is one read: a first read of a few bytes ([`ECHO`])
//! that left room in the buffer emptied the line discipline, and the reader
//! waits for the next edge instead of reading again (not on the bulk lane,
//! where floods are read). The `read` after it would have found nothing
//! and, before its `EAGAIN`, may wait in the kernel for the tty layer's
//! worker to finish its pass (`flush_work` in `n_tty_read`, while that
//! worker is queued or running); under load that worker waits for a CPU,
//! and the echo, read but not yet sent, waited 1.0–1.3 ms with it in traces
//! of the benchmark's load scenario (`scripts/echo-trace`). An interactive
//! session keeps its registration.
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
//!
//! The master is opened here ([`open_master`]) and its slave only by the
//! child, by path, which makes it the child's controlling terminal.

use std::ffi::CString;
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
const UNWATCH_AFTER: u32 = 16;

/// The most bytes a first read may return to count as an echo (a key or
/// two, a short line): it emptied the line discipline (it returned less
/// than there was room for), and the reader waits for the next edge rather
/// than reading again. A flood's first reads are longer, and read on: made
/// to wait for an edge after each short read, a stream was read 20 % slower
/// for 18 % more server CPU per MB in the benchmark (`bench/RESULTS.md`).
const ECHO: usize = 64;

#[cfg(test)]
thread_local! {
    /// `read` calls made on this thread, for the tests.
    static READS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The reading half of a PTY master. Polled only on a runtime's worker
/// (an actor's task): it registers with the runtime it is polled on.
pub struct PtyReader {
    fd: Master,
    /// A registration of `fd` for readability, while a read may have to
    /// wait; `None` while the program floods.
    watch: Option<AsyncFd<Master>>,
    /// Reads with data since the last wait.
    streak: u32,
    /// `watch` is with the bulk lane's I/O driver, not the server's. It
    /// moves with the actor (see `session::lane`).
    on_lane: bool,
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

/// Opens a new PTY's master, nonblocking and close-on-exec, with a window
/// of `cols` × `rows`, and returns it with its slave's path.
///
/// The slave is not opened here: the child opens it by path (see
/// `child::Stdio::Tty`), after unsharing its fd table, and that open is
/// what it needs. `pty_process::open`, used before, opened the slave in
/// the server too (a path lookup, an open and a close per spawn, for an
/// fd nobody used), and set the flags and a tokio registration that were
/// then undone. A master whose slave was never opened is neither readable
/// nor hung up (it reads `EAGAIN`; `EIO` and `POLLHUP` come only once the
/// slave, opened, is closed again), so the master may be registered with
/// tokio before the child has opened the slave: a registration that saw
/// a hangup would stay ready for good.
pub fn open_master(cols: u16, rows: u16) -> io::Result<(OwnedFd, CString)> {
    use rustix::pty::OpenptFlags;
    // On Linux rustix opens `/dev/ptmx` with these flags as they are, so
    // the master is nonblocking from the start, without two `fcntl`s.
    let nonblock = OpenptFlags::from_bits_retain(rustix::fs::OFlags::NONBLOCK.bits());
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC | nonblock)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, size)?;
    let path = rustix::pty::ptsname(&master, Vec::new())?;
    Ok((master, path))
}

/// Splits the master `fd` (nonblocking) into its halves. Must be called
/// within the server's runtime.
pub fn split(fd: OwnedFd) -> io::Result<(PtyReader, PtyWriter)> {
    let fd = Master(Arc::new(fd));
    let mut reader = PtyReader {
        fd: fd.clone(),
        watch: None,
        streak: 0,
        on_lane: false,
    };
    reader.watch()?;
    let writer = PtyWriter {
        fd,
        watch: None,
        home: Handle::current(),
    };
    Ok((reader, writer))
}

impl PtyReader {
    /// Whether the reader is registered with the runtime.
    #[cfg(test)]
    fn is_watched(&self) -> bool {
        self.watch.is_some()
    }

    /// Registers the fd with the runtime polling the reader, in place of
    /// any registration it had: the new one is made first, so on failure
    /// the old one (which still wakes the actor, from its runtime) stays.
    fn watch(&mut self) -> io::Result<()> {
        let watched = register(self.fd.clone(), Interest::READABLE).map_err(|(_, e)| e)?;
        self.watch = Some(watched);
        self.on_lane = lane::on_bulk_lane();
        Ok(())
    }

    /// [`PtyReader::watch`] for an unwatched reader, which cannot read on
    /// without it: a failure is the end of its output for the actor.
    fn watch_again(&mut self) -> io::Result<()> {
        self.watch()
            .inspect_err(|e| tracing::warn!(error = %e, "cannot watch a PTY for output again"))
    }

    /// After a read: a long enough run of reads with data means the
    /// program floods, and the reader stops being watched (dropping the
    /// registration deregisters it; the fd stays open).
    fn read_done(&mut self, n: usize) -> Poll<io::Result<()>> {
        if n > 0 {
            self.streak = self.streak.saturating_add(1);
            if self.streak >= UNWATCH_AFTER && !lane::on_bulk_lane() {
                self.watch = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// One `read` into `buf`'s unfilled part.
fn read_into(fd: &Master, buf: &mut ReadBuf<'_>) -> io::Result<usize> {
    #[cfg(test)]
    READS.set(READS.get() + 1);
    let n = rustix::io::read(&*fd.0, buf.initialize_unfilled())?;
    buf.advance(n);
    Ok(n)
}

impl AsyncRead for PtyReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            let on_lane = lane::on_bulk_lane();
            match &this.watch {
                None if !on_lane => match read_into(&this.fd, buf) {
                    Ok(n) => return this.read_done(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        this.streak = 0;
                        this.watch_again()?;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                },
                // An actor that moved to the bulk lane mid-flood, or back
                // home: the registration goes with it (see the module's
                // doc), and a new one is ready at once if data waits.
                None => this.watch_again()?,
                Some(_) if this.on_lane != on_lane => {
                    if let Err(e) = this.watch() {
                        tracing::warn!(error = %e, "cannot move a PTY's registration");
                        // The old one serves; not tried again at every poll.
                        this.on_lane = on_lane;
                    }
                }
                Some(watched) => {
                    let mut guard = ready!(watched.poll_read_ready(cx))?;
                    let room = buf.remaining();
                    match guard.try_io(|fd| read_into(fd.get_ref(), buf)) {
                        // An echo: the last read until the next edge (see
                        // [`ECHO`] and the module's doc).
                        Ok(Ok(n)) if this.streak == 0 && n > 0 && n < room && n <= ECHO && !on_lane => {
                            guard.clear_ready();
                            return Poll::Ready(Ok(()));
                        }
                        Ok(Ok(n)) => return this.read_done(n),
                        Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Ok(Err(e)) => return Poll::Ready(Err(e)),
                        // `EAGAIN`: readiness cleared, wait again.
                        Err(_would_block) => this.streak = 0,
                    }
                }
            }
        }
    }
}

impl PtyWriter {
    /// Writes some of `data` to the program's input, waiting while its
    /// buffer is full.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            match rustix::io::write(&*self.fd.0, data).map_err(io::Error::from) {
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
            match guard.try_io(|fd| rustix::io::write(fd, data).map_err(io::Error::from)) {
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
