//! A session's input: written to the program by its sender when nothing
//! waits before it, queued for the actor otherwise.
//!
//! Input used to travel through a channel to the actor, which wrote it: a
//! typed key woke the actor's task before it reached the program. Now the
//! sender (a socket's task, a REST request) writes it itself, with one
//! nonblocking `write`, when the queue is empty. What the program does not
//! take at once is queued in order and the actor writes it when the PTY or
//! pipe has room. The queue is bounded in bytes: a sender whose input does
//! not fit waits while the program reads, so a paste goes in as the program
//! takes it, for as long as the sender's `wait`; then it is told how much
//! went in ([`InputError::Busy`]), and that much reaches the program.
//!
//! A client may tag its input with a sequence number; input whose number is
//! not above the last one applied for that client is a repeat (a resend
//! after a reconnect) and is dropped whole.
//!
//! Architecture invariant: input reaches the program in the order its
//! senders took the lock. A sender writes directly only while the queue is
//! empty, and the actor removes queued bytes only once they are written.
//! The program's fd is used only under the lock, and the actor clears it
//! under the lock before it closes the fd.

use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, RawFd};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, Bytes};
use rustix::io::Errno;
use tokio::sync::Notify;

/// The most input bytes that wait for the program, per session.
pub const QUEUE_BYTES: usize = 1 << 20;
/// What each queued piece costs beyond its bytes, so that a flood of
/// one-byte inputs cannot queue a million pieces.
const PIECE_COST: usize = 64;
/// How many clients' input sequence numbers a session remembers.
pub const SEQ_CLIENTS: usize = 64;

/// Why input did not all reach the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    /// The program's input is closed (or the session has none); nothing
    /// more can be sent.
    Closed,
    /// The program made no room within the sender's wait: `taken` of the
    /// input's `total` bytes went in anyway (they reach the program).
    Busy { taken: usize, total: usize },
}

/// What the actor should do next with the input.
#[derive(Debug)]
pub(crate) enum Next {
    /// Write these bytes (the queue's first piece; they stay queued until
    /// [`Input::written`] says how many went).
    Write(Bytes),
    /// Everything is written and the sender asked to close the input.
    Close,
}

/// A session's input side, shared by its handles and its actor.
#[derive(Debug)]
pub(crate) struct Input {
    /// Held by a sender from start to end, so that one input is never
    /// split by another's (a paste that waits for room stays whole), and
    /// senders take turns in order.
    turn: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    /// Rung when input was queued or a close was asked (the actor waits).
    queued: Notify,
    /// Rung when queued input was written or the input closed (senders
    /// waiting for room wait).
    room: Notify,
    /// Inputs taken so far (repeats not counted): the actor's flood watch
    /// sees a session typed into by this count changing.
    sends: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// The program's input while it is open. Borrowed: the actor owns it.
    fd: Option<RawFd>,
    queue: VecDeque<Bytes>,
    /// The queue's cost: its bytes plus [`PIECE_COST`] per piece.
    queued_bytes: usize,
    /// Close the program's input once the queue is written.
    eof: bool,
    /// The last seq applied per client id, newest last; bounded by
    /// [`SEQ_CLIENTS`].
    applied: Vec<(Arc<str>, u64)>,
}

impl Input {
    /// The input of a program whose input is `fd` (nonblocking), or of a
    /// session without one (`None`: every send is refused).
    pub fn new(fd: Option<RawFd>) -> Arc<Input> {
        Arc::new(Input {
            turn: tokio::sync::Mutex::new(()),
            state: Mutex::new(State {
                fd,
                queue: VecDeque::new(),
                queued_bytes: 0,
                eof: false,
                applied: Vec::new(),
            }),
            queued: Notify::new(),
            room: Notify::new(),
            sends: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `data` to the program, then closes its input if `eof`; waits
    /// at most `wait` for its turn and for room in the queue. `seq`: the
    /// sender's client id and sequence number (a repeat is dropped).
    pub async fn send(
        &self,
        mut data: Bytes,
        eof: bool,
        seq: Option<(Arc<str>, u64)>,
        wait: Duration,
    ) -> Result<(), InputError> {
        let deadline = tokio::time::Instant::now() + wait;
        let total = data.len();
        let busy = |rest: &Bytes| InputError::Busy {
            taken: total - rest.len(),
            total,
        };
        let Ok(_turn) = tokio::time::timeout_at(deadline, self.turn.lock()).await else {
            return Err(busy(&data));
        };
        if self.lock().is_repeat(seq.as_ref()) {
            return Ok(());
        }
        self.sends.fetch_add(1, Ordering::Relaxed);
        super::flood::input_arrived();
        loop {
            let mut room = pin!(self.room.notified());
            {
                let mut st = self.lock();
                let Some(fd) = st.fd.filter(|_| !st.eof) else {
                    return Err(InputError::Closed);
                };
                if st.queue.is_empty() && !data.is_empty() {
                    self.write_now(&mut st, fd, &mut data)?;
                }
                let fit = data.len().min(QUEUE_BYTES.saturating_sub(st.queued_bytes + PIECE_COST));
                if fit > 0 {
                    st.queue.push_back(data.split_to(fit));
                    st.queued_bytes += fit + PIECE_COST;
                    self.queued.notify_one();
                }
                if data.is_empty() {
                    if eof {
                        st.eof = true;
                        self.queued.notify_one();
                    }
                    return Ok(());
                }
                // Registered before the lock goes, so no `written` is missed.
                room.as_mut().enable();
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(busy(&data));
            }
        }
    }

    /// One nonblocking write of `data` to the program's input `fd` (taken
    /// from `st`, whose lock is held); drops what it took.
    fn write_now(&self, st: &mut State, fd: RawFd, data: &mut Bytes) -> Result<(), InputError> {
        // SAFETY: `fd` is open while it is in the state; the actor clears it
        // under this lock before closing it, and the lock is held.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        match rustix::io::write(fd, data) {
            Ok(n) => data.advance(n),
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(_) => {
                // The program closed its input; the actor finds out on its
                // next write or read.
                st.close();
                return Err(InputError::Closed);
            }
        }
        Ok(())
    }

    /// How many inputs were taken so far (see [`super::flood`]).
    pub fn sends(&self) -> u64 {
        self.sends.load(Ordering::Relaxed)
    }

    /// For the actor: waits until there is input to write or a close to
    /// make. Cancel-safe: nothing is taken off the queue.
    pub async fn next(&self) -> Next {
        loop {
            let mut queued = pin!(self.queued.notified());
            {
                let st = self.lock();
                if let Some(front) = st.queue.front() {
                    return Next::Write(front.clone());
                }
                if st.eof && st.fd.is_some() {
                    return Next::Close;
                }
                queued.as_mut().enable();
            }
            queued.await;
        }
    }

    /// For the actor: `n` bytes from the front of the queue were written.
    pub fn written(&self, mut n: usize) {
        let mut st = self.lock();
        while n > 0
            && let Some(front) = st.queue.front_mut()
        {
            let take = n.min(front.len());
            front.advance(take);
            n -= take;
            let mut cost = take;
            if front.is_empty() {
                st.queue.pop_front();
                cost += PIECE_COST;
            }
            st.queued_bytes -= cost.min(st.queued_bytes);
        }
        self.room.notify_waiters();
    }

    /// For the actor, before it closes the program's input: refuses all
    /// input from now on and drops what waits.
    pub fn close(&self) {
        self.lock().close();
        self.room.notify_waiters();
    }
}

impl State {
    fn close(&mut self) {
        self.fd = None;
        self.queue.clear();
        self.queued_bytes = 0;
    }

    /// Whether input tagged `seq` repeats input already applied (same
    /// client, seq not above the last applied); records its seq otherwise.
    fn is_repeat(&mut self, seq: Option<&(Arc<str>, u64)>) -> bool {
        let Some((client, seq)) = seq else { return false };
        match self.applied.iter().position(|(c, _)| c == client) {
            Some(i) if self.applied[i].1 >= *seq => true,
            Some(i) => {
                let mut entry = self.applied.remove(i);
                entry.1 = *seq;
                self.applied.push(entry);
                false
            }
            None => {
                if self.applied.len() >= SEQ_CLIENTS {
                    self.applied.remove(0);
                }
                self.applied.push((client.clone(), *seq));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, OwnedFd};

    use super::*;

    /// Longer than any test waits: only a close frees these senders.
    const WAIT: Duration = Duration::from_secs(60);

    fn pipe() -> (OwnedFd, OwnedFd) {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::NONBLOCK).expect("pipe");
        (r, w)
    }

    fn read_all(fd: &OwnedFd) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = rustix::io::read(fd, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[tokio::test]
    async fn input_goes_straight_to_the_program_when_nothing_waits() {
        let (r, w) = pipe();
        let input = Input::new(Some(w.as_raw_fd()));
        input
            .send(Bytes::from_static(b"ls\n"), false, None, WAIT)
            .await
            .expect("sent");
        assert_eq!(read_all(&r), b"ls\n", "written without the actor");
        assert!(input.lock().queue.is_empty());
    }

    #[tokio::test]
    async fn what_the_program_does_not_take_waits_in_order_and_repeats_are_dropped() {
        let (r, w) = pipe();
        let input = Input::new(Some(w.as_raw_fd()));
        // More than a pipe holds: the rest is queued for the actor.
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let client: Arc<str> = "c1".into();
        input
            .send(Bytes::from(big.clone()), false, Some((client.clone(), 1)), WAIT)
            .await
            .expect("sent");
        input
            .send(Bytes::from_static(b"tail"), false, Some((client.clone(), 2)), WAIT)
            .await
            .expect("sent");
        input
            .send(Bytes::from_static(b"again"), false, Some((client.clone(), 2)), WAIT)
            .await
            .expect("a repeat is accepted and dropped");
        assert!(input.lock().queued_bytes > 0, "a pipe does not take 200 KB at once");
        // Play the actor: write what waits as the pipe drains.
        let mut got = read_all(&r);
        while !input.lock().queue.is_empty() {
            let Next::Write(piece) = input.next().await else {
                panic!("no close was asked")
            };
            let n = rustix::io::write(&w, &piece).unwrap_or(0);
            input.written(n);
            got.extend(read_all(&r));
        }
        let mut want = big;
        want.extend_from_slice(b"tail");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes in order, the repeat dropped");
    }

    #[tokio::test]
    async fn a_closed_input_refuses_sends_and_frees_waiting_senders() {
        let (_r, w) = pipe();
        let input = Input::new(Some(w.as_raw_fd()));
        let filler = Bytes::from(vec![b'x'; QUEUE_BYTES + 200_000]);
        let waiting = {
            let input = input.clone();
            tokio::spawn(async move { input.send(filler, false, None, WAIT).await })
        };
        let full = tokio::time::timeout(Duration::from_secs(5), async {
            while input.lock().queued_bytes + PIECE_COST < QUEUE_BYTES {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(full.is_ok(), "the queue fills up to its bound");
        input.close();
        let res = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting sender is freed");
        assert_eq!(res.expect("joined"), Err(InputError::Closed));
        assert_eq!(
            input.send(Bytes::from_static(b"x"), false, None, WAIT).await,
            Err(InputError::Closed)
        );
    }

    #[tokio::test]
    async fn a_sender_that_waits_too_long_is_told_what_went_in() {
        let (r, w) = pipe();
        let input = Input::new(Some(w.as_raw_fd()));
        let total = QUEUE_BYTES + 200_000;
        let res = input
            .send(Bytes::from(vec![b'x'; total]), false, None, Duration::from_millis(100))
            .await;
        let Err(InputError::Busy { taken, total: t }) = res else {
            panic!("not busy: {res:?}")
        };
        assert_eq!(t, total);
        assert!(taken > 0 && taken < total, "taken {taken} of {total}");
        // What was taken is what the program can get: in the pipe or queued.
        let in_pipe = read_all(&r).len();
        let queued: usize = input.lock().queue.iter().map(Bytes::len).sum();
        assert_eq!(in_pipe + queued, taken);
    }
}
