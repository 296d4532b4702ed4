//! How far a socket got with one session, kept across its forwarders.
//!
//! `/ws/terminal/all` may stream one session with several forwarders in
//! turn: its node lets go of its copy of another node's session and takes
//! it up again, or replaces that copy with a new one (same incarnation,
//! same epoch). The client has one stream of that session all along, so
//! the next forwarder goes on where the last one got: from the first byte
//! not handed to the socket, with no second `terminal_start` unless the
//! client had the session's end already. A [`Progress`] is that shared
//! account, written by each forwarder as it hands frames to the socket and
//! read by the socket's task once the forwarder is gone.
//!
//! Each write happens in the same poll as the send it accounts for (no
//! wait between them): a forwarder stopped at a wait has written all it
//! sent, and nothing it did not send. That holds because a forwarder
//! with a `Progress` queues every frame (`forward::hand_over`,
//! `Outbox::queue_output`): it waits for budget and room, and queues in
//! the poll that finds them, so its send returns in the poll that hands
//! the frame over. (A direct write, which other sockets' forwarders use,
//! may hand its frame to a busy sink and still wait for the flush.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Forwarder;
use crate::gateway::outbox::Closed;
use crate::gateway::render::OutEvent;

use termstream_proto::ws::LogPosition;
use termstream_proto::{Epoch, SessionInfo};

/// [`Progress::sent`] before the first output: nothing is known to the
/// client yet, and the next forwarder starts from the oldest output held.
const NOTHING: u64 = u64::MAX;

/// What one socket's forwarders of a session handed to the socket so far.
#[derive(Debug)]
pub struct Progress {
    /// The first offset whose byte was not handed to the socket (bytes
    /// held back for an incomplete UTF-8 sequence are not handed yet);
    /// [`NOTHING`] until the first forwarder knows where it starts.
    sent: AtomicU64,
    /// Whether the session's start (the forwarder's preamble) went out.
    announced: AtomicBool,
    /// Whether the session's end (its exit) went out.
    ended: AtomicBool,
    /// Whether the session's `terminating` went out (a session is
    /// terminated once per incarnation: a copy that takes over and finds
    /// it terminating does not tell it again).
    terminating: AtomicBool,
}

impl Progress {
    /// An account that starts at `since` (`None`: the oldest output held).
    pub fn new(since: Option<u64>) -> Progress {
        Progress {
            sent: AtomicU64::new(since.unwrap_or(NOTHING)),
            announced: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            terminating: AtomicBool::new(false),
        }
    }

    /// Where the next forwarder of incarnation `epoch` starts: the first
    /// byte not handed to the socket; `None` when no output was.
    pub fn resume_at(&self, epoch: Epoch) -> Option<LogPosition> {
        match self.sent.load(Ordering::Acquire) {
            NOTHING => None,
            offset => Some(LogPosition { epoch, offset }),
        }
    }

    /// Whether the session's start went out.
    pub fn announced(&self) -> bool {
        self.announced.load(Ordering::Acquire)
    }

    /// Whether the session's end went out.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// A new copy of the session, whose end differs from the one the
    /// client was told, is streamed on: its end is still to come.
    pub fn reopen(&self) {
        self.ended.store(false, Ordering::Release);
        self.terminating.store(false, Ordering::Release);
    }

    /// Every byte before `offset` was handed to the socket.
    pub(super) fn sent_up_to(&self, offset: u64) {
        self.sent.store(offset, Ordering::Release);
    }

    /// The session's start went out.
    pub(super) fn announce(&self) {
        self.announced.store(true, Ordering::Release);
    }

    /// The session's end went out.
    pub(super) fn end(&self) {
        self.ended.store(true, Ordering::Release);
    }
}

impl Forwarder {
    /// Accounts for the start's preamble, the session's `terminal_start`
    /// when `announce`.
    pub(super) fn account_start(&self, announce: bool) {
        if announce && let Some(p) = &self.progress {
            p.announce();
        }
    }

    /// Accounts for the output handed to the socket: every byte before
    /// `next` but those held back.
    pub(super) fn account_sent(&self) {
        if let Some(p) = &self.progress {
            let held = self.carry.as_ref().map_or(0, |(_, h)| h.len() as u64);
            p.sent_up_to(self.next - held);
        }
    }

    /// Tells the session's `terminating`, unless an earlier forwarder of
    /// this account told it already (the copy taking over finds the
    /// session still terminating).
    pub(super) async fn tell_terminating(&self) -> Result<(), Closed> {
        if self
            .progress
            .as_ref()
            .is_some_and(|p| p.terminating.load(Ordering::Acquire))
        {
            return Ok(());
        }
        self.emit(OutEvent::Terminating { session: &self.id }).await?;
        if let Some(p) = &self.progress {
            p.terminating.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Accounts for the session's end, handed to the socket.
    pub(super) fn account_end(&self) {
        if let Some(p) = &self.progress {
            p.end();
        }
    }
}

/// What the next forwarder of a session sends, once the last one is gone:
/// `told`, the session's last info as the last one's copy had it; `now`,
/// the new copy's.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Its output from where the last one got, with no `terminal_start`
    /// (the client has the session's start, not its end).
    Continue,
    /// A `terminal_start`, then its output from where the last one got:
    /// the client had the session's end, and the new copy tells another
    /// (a `lost` session whose node came back), or had not even its start.
    Announce,
    /// Nothing: the client had the session's end, and the new copy has
    /// the same one.
    Nothing,
}

impl Next {
    /// Decides, from `progress` and the two copies' infos.
    pub fn after(progress: &Progress, told: &SessionInfo, now: &SessionInfo) -> Next {
        if progress.ended() {
            if now.status == told.status && now.output_offset == told.output_offset {
                Next::Nothing
            } else {
                Next::Announce
            }
        } else if progress.announced() {
            Next::Continue
        } else {
            Next::Announce
        }
    }
}

#[cfg(test)]
mod tests {
    use termstream_proto::SessionStatus;

    use super::*;
    use crate::session::test_info;

    #[test]
    fn the_next_forwarder_goes_on_where_the_client_got() {
        let running = test_info("s");
        let epoch = running.epoch;
        let p = Progress::new(None);
        // Nothing went out yet, not even the start.
        assert_eq!(Next::after(&p, &running, &running), Next::Announce);
        assert_eq!(p.resume_at(epoch), None);
        p.announce();
        p.sent_up_to(7);
        assert_eq!(Next::after(&p, &running, &running), Next::Continue);
        assert_eq!(p.resume_at(epoch).map(|at| at.offset), Some(7));
        // The client had the end: the same end again is nothing more.
        let mut exited = running.clone();
        exited.status = SessionStatus::Exited;
        exited.output_offset = 7;
        p.end();
        assert_eq!(Next::after(&p, &exited, &exited), Next::Nothing);
        // A lost session that runs again, or ended otherwise: a new start.
        let mut lost = exited.clone();
        lost.status = SessionStatus::Lost;
        assert_eq!(Next::after(&p, &lost, &running), Next::Announce);
        assert_eq!(Next::after(&p, &lost, &exited), Next::Announce);
        p.reopen();
        assert_eq!(Next::after(&p, &lost, &running), Next::Continue);
    }
}
