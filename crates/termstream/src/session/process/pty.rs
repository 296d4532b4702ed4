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
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    const LIMIT: Duration = Duration::from_secs(10);

    /// A real PTY: its reader, writer, and the program's side as a file.
    fn pty() -> (PtyReader, PtyWriter, std::fs::File) {
        let (pty, pts) = pty_process::open().expect("a pty");
        let slave = pts.as_fd().try_clone_to_owned().expect("dup");
        let (reader, writer) = split(OwnedFd::from(pty)).expect("split");
        (reader, writer, std::fs::File::from(slave))
    }

    /// A flood is read unwatched, every byte in order; once it pauses, the
    /// reader is watched again and wakes for the next byte.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_is_read_unwatched_and_a_pause_is_watched() {
        let (mut reader, _writer, mut slave) = pty();
        const TOTAL: usize = 4 << 20;
        let flood = std::thread::spawn(move || {
            let block: Vec<u8> = (0..4096).map(|i| b'a' + (i % 26) as u8).collect();
            for _ in 0..TOTAL / block.len() {
                slave.write_all(&block).expect("write");
            }
            slave
        });
        let mut got = Vec::with_capacity(TOTAL);
        let mut buf = vec![0u8; 65536];
        let mut unwatched_reads = 0;
        while got.len() < TOTAL {
            let n = tokio::time::timeout(LIMIT, reader.read(&mut buf))
                .await
                .expect("in time")
                .expect("read");
            assert!(n > 0, "no end before the flood is read");
            got.extend_from_slice(&buf[..n]);
            if !reader.is_watched() {
                unwatched_reads += 1;
            }
        }
        assert!(
            got.iter().enumerate().all(|(i, b)| *b == b'a' + (i % 4096 % 26) as u8),
            "every byte, in order"
        );
        assert!(unwatched_reads > 0, "a flood is read without the runtime watching");
        let mut slave = flood.join().expect("the flood");

        // Nothing more to read: the reader waits, watched again.
        let wait = tokio::time::timeout(Duration::from_millis(200), reader.read(&mut buf)).await;
        assert!(wait.is_err(), "nothing was written: {wait:?}");
        assert!(reader.is_watched(), "a reader that found nothing is watched");
        slave.write_all(b"z").expect("write");
        let n = tokio::time::timeout(LIMIT, reader.read(&mut buf))
            .await
            .expect("woken")
            .expect("read");
        assert_eq!(&buf[..n], b"z");
    }

    /// A flood that ends with its program (the PTY's other side closed) is
    /// read to its last byte, and then the end is seen, unwatched or not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_is_read_to_its_end() {
        let (mut reader, _writer, mut slave) = pty();
        const TOTAL: usize = 1 << 20;
        let flood = std::thread::spawn(move || {
            slave.write_all(&vec![b'x'; TOTAL]).expect("write");
            // The program's side closes: the master reads EIO once empty.
        });
        let mut got = 0;
        let mut buf = vec![0u8; 65536];
        loop {
            match tokio::time::timeout(LIMIT, reader.read(&mut buf))
                .await
                .expect("in time")
            {
                Ok(0) => break,
                Ok(n) => {
                    assert!(buf[..n].iter().all(|b| *b == b'x'));
                    got += n;
                }
                Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        flood.join().expect("the flood");
        assert_eq!(got, TOTAL, "every byte before the end");
    }

    /// An actor reading on the bulk lane has its reader registered with the
    /// lane's runtime, woken there, and registered at home again once it
    /// is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_registration_moves_with_the_actor() {
        let (mut reader, _writer, mut slave) = pty();
        let (write_tx, write_rx) = std::sync::mpsc::channel::<&'static [u8]>();
        // The program: writes each time it is told to.
        let program = std::thread::spawn(move || {
            for bytes in write_rx {
                slave.write_all(bytes).expect("write");
            }
        });
        let wish = lane::LaneWish::default();
        let w = wish.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        lane::spawn_actor(
            async move {
                let mut buf = [0u8; 16];
                let mut seen = vec![];
                for (bulk, bytes) in [(false, &b"a"[..]), (true, b"b"), (false, b"c")] {
                    w.set(bulk);
                    tokio::task::yield_now().await;
                    // Told to write while the read below may already wait.
                    write_tx.send(bytes).expect("the program");
                    let n = tokio::time::timeout(LIMIT, reader.read(&mut buf))
                        .await
                        .expect("woken")
                        .expect("read");
                    seen.push((lane::on_bulk_lane(), reader.on_lane, buf[..n].to_vec()));
                }
                let _ = tx.send(seen);
            },
            wish,
        );
        let seen = rx.await.expect("the actor ran to its end");
        assert_eq!(
            seen,
            [
                (false, false, b"a".to_vec()),
                (true, true, b"b".to_vec()),
                (false, false, b"c".to_vec())
            ],
            "(on the lane, registered there, read)"
        );
        program.join().expect("the program");
    }

    /// A reader polled on the lane is woken by the lane's driver: with the
    /// server's runtime stopped (a `current_thread` runtime not driven),
    /// a read that waits on the lane still gets its byte.
    #[test]
    fn a_reader_on_the_lane_is_woken_by_the_lanes_driver() {
        let home = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (result_tx, result_rx) = std::sync::mpsc::channel();
        let (write_tx, write_rx) = std::sync::mpsc::channel::<()>();
        let program = home.block_on(async {
            let (mut reader, writer, mut slave) = pty();
            // The program: writes once told, a little later, so that the
            // read is waiting by then.
            let program = std::thread::spawn(move || {
                if write_rx.recv().is_ok() {
                    std::thread::sleep(Duration::from_millis(100));
                    slave.write_all(b"b").expect("write");
                }
                slave
            });
            let wish = lane::LaneWish::default();
            wish.set(true);
            lane::spawn_actor(
                async move {
                    let _writer = writer;
                    let _ = write_tx.send(());
                    let mut buf = [0u8; 8];
                    // Polled here first, then on the lane it moves to. No
                    // timeout here (its timer would be home's, not driven):
                    // a read never woken fails the `recv_timeout` below.
                    let read = reader.read(&mut buf).await;
                    let on_lane = lane::on_bulk_lane();
                    let got = read.map(|n| buf[..n].to_vec()).map_err(|e| e.to_string());
                    let _ = result_tx.send((on_lane, got));
                },
                wish,
            );
            // Lets the actor start here and move to the lane.
            tokio::task::yield_now().await;
            program
        });
        // From here the server's runtime is not driven: only the lane's
        // driver can wake the read.
        let (on_lane, got) = result_rx.recv_timeout(LIMIT * 2).expect("the actor reported");
        assert!(on_lane, "the read ended on the lane");
        assert_eq!(got, Ok(b"b".to_vec()));
        drop(program.join().expect("the program"));
    }

    /// An interactive exchange (a byte, then nothing) never stops watching.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_bytes_keep_the_reader_watched() {
        let (mut reader, _writer, mut slave) = pty();
        let mut buf = [0u8; 64];
        for _ in 0..(UNWATCH_AFTER * 2) {
            slave.write_all(b"k").expect("write");
            let n = tokio::time::timeout(LIMIT, reader.read(&mut buf))
                .await
                .expect("woken")
                .expect("read");
            assert_eq!(&buf[..n], b"k");
            // The next read finds nothing, which resets the streak.
            let wait = tokio::time::timeout(Duration::from_millis(5), reader.read(&mut buf)).await;
            assert!(wait.is_err());
            assert!(reader.is_watched());
        }
    }

    /// The writer reaches the program's input, and sets the window size.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_writes_input_and_resizes() {
        let (_reader, mut writer, slave) = pty();
        // Raw mode, so the line discipline hands the bytes over as they are.
        let mut termios = rustix::termios::tcgetattr(&slave).expect("termios");
        termios.make_raw();
        rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &termios).expect("raw");
        let n = writer.write(b"hello").await.expect("write");
        assert_eq!(n, 5);
        let mut got = [0u8; 5];
        std::io::Read::read_exact(&mut &slave, &mut got).expect("read");
        assert_eq!(&got, b"hello");
        writer.resize(132, 43).expect("resize");
        let size = rustix::termios::tcgetwinsize(&slave).expect("size");
        assert_eq!((size.ws_col, size.ws_row), (132, 43));
        assert!(writer.watch.is_none(), "no write had to wait: not registered");
    }

    /// A write that finds the program's input full waits (registered now)
    /// until the program reads, and then goes on: every byte arrives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_into_a_full_input_waits_for_room() {
        let (_reader, mut writer, slave) = pty();
        let mut termios = rustix::termios::tcgetattr(&slave).expect("termios");
        termios.make_raw();
        rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &termios).expect("raw");
        const TOTAL: usize = 1 << 20;
        let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let program = std::thread::spawn(move || {
            // A program busy elsewhere: it reads once the writer has had to
            // wait, or after a while (1 MiB fills a PTY's input long before).
            let _ = started_rx.recv_timeout(Duration::from_millis(300));
            let mut got = vec![0u8; TOTAL];
            std::io::Read::read_exact(&mut &slave, &mut got).expect("read");
            got
        });
        let mut sent = 0;
        let mut started = Some(started_tx);
        while sent < TOTAL {
            if writer.watch.is_some() {
                started.take();
            }
            let n = tokio::time::timeout(LIMIT, writer.write(&data[sent..])).await;
            sent += n.expect("room within the limit").expect("write");
        }
        assert!(
            writer.watch.is_some(),
            "1 MiB does not fit a PTY's input: a write waited"
        );
        assert!(program.join().expect("the program") == data, "every byte, in order");
    }
}
