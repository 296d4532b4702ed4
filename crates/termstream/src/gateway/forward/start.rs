//! A forwarder's start: what goes out before the live events (the
//! preamble, `session.attached`, any gap and snapshot, the held output),
//! from where the client resumes; and what a forwarder does when its
//! session is found deleted (or let go) before it could follow it.

use std::sync::Arc;

use axum::extract::ws::Message;

use termstream_proto::ErrorCode;
use termstream_proto::ws::{GapReason, LogPosition};

use super::{Forwarder, started};
use crate::gateway::outbox::Closed;
use crate::gateway::render::{Dialect, OutEvent};
use crate::session::SessionError;
use crate::session::log::RingRead;

impl Forwarder {
    /// Subscribes and sends what comes before the live events (the
    /// preamble, `session.attached`, any gap and snapshot, the held
    /// output); returns the live receiver to follow, or `None` when there
    /// is nothing to follow (the log ended, the session is gone).
    pub(super) async fn start(
        &mut self,
        since: Option<LogPosition>,
        preamble: Vec<Message>,
        started: started::Tell,
    ) -> Result<Option<crate::session::log_events::Receiver>, Closed> {
        let info = self.handle.info_now().await;
        let end = info.output_offset;
        let mut snapshot = false;
        let mut recovered = None;
        let mut gap = None;
        match since {
            Some(pos) if pos.epoch == info.epoch && pos.offset <= end => {
                if self.is_pty() && end - pos.offset > self.max_replay {
                    snapshot = true;
                    recovered = Some(false);
                    gap = Some((pos.offset, GapReason::Evicted));
                } else if let Some(earliest) = self.gone_before(pos.offset).await {
                    // What the client lacks was deleted: the resume is not
                    // exact, and says so before the gap.
                    recovered = Some(false);
                    gap = Some((pos.offset, GapReason::Evicted));
                    if self.is_pty() {
                        snapshot = true;
                    } else {
                        self.next = earliest;
                    }
                } else {
                    self.next = pos.offset;
                    recovered = Some(true);
                }
            }
            Some(pos) if pos.epoch == info.epoch => {
                self.error(
                    ErrorCode::BadRequest,
                    format!("since.offset {} is past the end of the output ({end})", pos.offset),
                )
                .await?;
                snapshot = self.is_pty();
            }
            Some(_) => {
                snapshot = self.is_pty();
                recovered = Some(false);
                gap = Some((0, GapReason::EpochChanged));
            }
            // Legacy clients get the held output instead of a snapshot.
            None => snapshot = self.is_pty() && self.dialect != Dialect::Legacy,
        }
        let snap = if snapshot {
            match self.handle.snapshot().await {
                Ok(s) => {
                    self.next = s.offset;
                    Some(s)
                }
                // Deleted meanwhile: as when the subscribe below fails.
                Err(SessionError::Closed(_)) => return self.detached().await.map(|()| None),
                // A session another node owns that its owner no longer has
                // (deleted, or its id taken by a newer one) before this
                // node's listing caught up: deleted, as above.
                Err(e) if e.code() == ErrorCode::SessionNotFound => return self.detached().await.map(|()| None),
                Err(e) => {
                    return self
                        .error(ErrorCode::Internal, format!("cannot take a snapshot: {e}"))
                        .await
                        .map(|()| None);
                }
            }
        } else {
            None
        };
        let sub = self.handle.subscribe(self.next).await;
        let _ = started.send(());
        let announce = !preamble.is_empty();
        for msg in preamble {
            self.put(msg, None).await?;
        }
        self.account_start(announce);
        let Ok(sub) = sub else {
            return self.detached().await.map(|()| None);
        };
        // A fresh attach without a snapshot starts at the oldest output
        // still in memory.
        if since.is_none()
            && snap.is_none()
            && let RingRead::Evicted { start } = sub.backlog
        {
            self.next = start;
        }
        let info = self.handle.info();
        self.emit(OutEvent::Attached {
            info: &info,
            offset: self.next,
            recovered,
            end: sub.end,
        })
        .await?;
        self.told_size = (info.cols, info.rows);
        if let Some((from, reason)) = gap {
            self.emit(OutEvent::Gap {
                session: &self.id,
                from,
                to: self.next,
                reason,
            })
            .await?;
        }
        if let Some(snap) = &snap {
            self.emit(OutEvent::Restore {
                session: &self.id,
                snapshot: snap,
            })
            .await?;
            self.told_size = (snap.cols, snap.rows);
        }
        // The forwarder lives as long as the attachment: nothing it no
        // longer needs may stay alive in it.
        drop(snap);
        drop(info);
        self.replay(sub.backlog, sub.end, sub.last_resize).await?;
        self.account_sent();
        if let Some(ended) = sub.ended {
            return self.finish(&ended).await.map(|()| None);
        }
        if sub.terminating {
            self.tell_terminating().await?;
        }
        Ok(Some(sub.live))
    }

    /// The session was deleted (or let go): the socket's task is told,
    /// when it owns the attachment, else the client (`/ws/terminal`, whose
    /// `session.detached` has no reason).
    ///
    /// A legacy one-session socket closes once told, and its client gets
    /// the `terminal_end` its endpoint promises first: here, since its
    /// session's end was not seen (deleted before it subscribed, or a
    /// cluster's copy of another node's session let go), from the last
    /// info (no exit code while it was running).
    pub(super) async fn detached(&mut self) -> Result<(), Closed> {
        if let Some(release) = self.release.take() {
            if self.dialect == Dialect::Legacy {
                let info = Arc::new(self.handle.info());
                self.finish(&info).await?;
            }
            release.send(self.id.clone(), self.handle.departure().reason());
            return Ok(());
        }
        let msg = termstream_proto::ws::ServerMessage::Detached {
            session_id: self.id.clone(),
            reason: None,
        };
        match self.dialect.render_control(&msg) {
            Some(m) => self.put(m, None).await,
            None => Ok(()),
        }
    }
}
