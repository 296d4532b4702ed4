//! Window size changes: the PTY's new size, the record for the disk log
//! (written before the next output, one per burst of resizes), the event
//! for subscribers and the request for the screen task; and the last one,
//! for a follower that may have lost its event.

use tokio::sync::oneshot;

use super::Actor;
use crate::session::{Command, LogEvent, ScreenRequest, SessionError, SessionHandle, SessionKind};

/// A size change waiting to be written to the disk log.
#[derive(Debug, Clone, Copy)]
pub(super) struct ResizeRecord {
    pub offset: u64,
    pub time_ms: u64,
    pub cols: u16,
    pub rows: u16,
}

impl Actor {
    pub(super) fn resize(&mut self, cols: u16, rows: u16) -> Result<(), SessionError> {
        if !self.settings.window_fits(cols, rows) {
            return Err(SessionError::WindowTooLarge {
                cols,
                rows,
                max_cols: self.settings.max_cols,
                max_rows: self.settings.max_rows,
            });
        }
        let Some(pty) = &self.pty else {
            return Err(if self.info.kind == SessionKind::Pty {
                SessionError::NotRunning(self.info.id.clone())
            } else {
                SessionError::WrongKind {
                    id: self.info.id.clone(),
                    kind: self.info.kind,
                    what: "resize",
                }
            });
        };
        if pty.resize(cols, rows).is_err() {
            return Err(SessionError::NotRunning(self.info.id.clone()));
        }
        if (self.info.cols, self.info.rows) != (cols, rows) {
            let offset = self.ring.end();
            self.resize_record = Some(ResizeRecord {
                offset,
                time_ms: self.elapsed_ms(),
                cols,
                rows,
            });
            self.info.cols = cols;
            self.info.rows = rows;
            self.last_resize = Some((offset, cols, rows));
            // The new size is published before the event goes out and the
            // screen task hears of it, as an ending is published before its
            // event: a client that heard `session.resized` and then asks
            // this node for the session's info gets the new size, and the
            // screen task's catch-up, which takes the published size, never
            // reads the old one after the request. (Sent first, the event
            // could reach a viewer on another thread before this actor
            // published: the cluster test that resizes through one node and
            // reads the owner's info failed this way once.)
            self.meta.write(&self.info);
            self.publish();
            let _ = self.events.send(LogEvent::Resized { offset, cols, rows });
            if let Some(screen) = &self.screen
                && screen
                    .requests
                    .try_send(ScreenRequest::Resized { offset, cols, rows })
                    .is_err()
            {
                screen.bell.resize_lost();
            }
        }
        Ok(())
    }

    /// Writes the size change that waits, if any, to the disk log.
    pub(super) fn write_resize_record(&mut self) {
        if let (Some(r), Some(w)) = (self.resize_record.take(), &mut self.writer)
            && let Err(e) = w.append_resize(r.offset, r.time_ms, r.cols, r.rows)
        {
            self.disk_failed(e);
        }
    }
}

impl SessionHandle {
    /// The session's last resize (log offset, cols, rows), `None` when it
    /// kept the size it was made with (or, on another node, the stand-in
    /// forgot it with a trimmed stream). A follower that may have lost the
    /// resize's event asks it (its queue overflowed, or it dropped its
    /// receiver while unfocused): the ring and disk it catches up from hold
    /// no resize.
    pub async fn last_resize(&self) -> Result<Option<(u64, u16, u16)>, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send_async(Box::new(Command::LastResize(reply)))
            .await
            .map_err(|_| self.closed())?;
        self.answer(answer).await
    }
}
