//! Following a session's live events: the forwarder's wait for the next
//! event, and what it does with each (merging the chunks that are ready
//! into one frame, filling holes by offset, resizes, the end). Each event
//! is handled in its own boxed step, so an idle forwarder's task holds only
//! the state of its wait.

use std::sync::Arc;

use termstream_proto::ws::OutputMode;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::{Closed, Flow, Forwarder, MAX_FRAME, ZERO_COPY_MIN, focused, resize};
use crate::session::LogEvent;

impl Forwarder {
    /// Follows live events until the log ends (or, with `track`, until the
    /// session is no longer focused).
    ///
    /// Each event is handled in a boxed future ([`Forwarder::on_event`]):
    /// a forwarder waits far longer than it sends, and the state of
    /// sending (rendering, the outbox's write, a catch-up read) would
    /// otherwise stay in every idle attachment's task, a few KiB each.
    pub(super) async fn follow(
        &mut self,
        mut live: crate::session::log_events::Receiver,
        mut track: Option<&mut focused::FocusTrack>,
    ) -> Result<Flow, Closed> {
        let mut peeked: Option<LogEvent> = None;
        loop {
            let queued = match peeked.take() {
                Some(ev) => Some(Ok(ev)),
                // Boxed, and only with a resize due: an idle forwarder's
                // task keeps no state of telling one.
                None if self.resize_due() => Box::pin(self.before_wait(&mut live)).await?,
                None => None,
            };
            let next = match queued {
                Some(ev) => ev,
                None => match track.as_deref_mut() {
                    Some(track) => {
                        // A focus change already made goes first: once
                        // unfocused, queued events are no longer worth a
                        // frame each (the updates read them by offset), and
                        // which way a forwarder goes does not hang on a
                        // coin toss. Checked before every event with one
                        // atomic load when no change was made.
                        if let Some(focused) = track.take_made().await {
                            if !focused {
                                return Ok(Flow::Unfocused);
                            }
                            continue;
                        }
                        // Live first: on a busy stream the focus broadcast
                        // is not polled per event; a change made meanwhile
                        // is taken above, before the next one.
                        tokio::select! {
                            biased;
                            ev = live.recv() => ev,
                            focused = track.changed() => {
                                if !focused {
                                    return Ok(Flow::Unfocused);
                                }
                                continue;
                            }
                        }
                    }
                    None => live.recv().await,
                },
            };
            if let Some(flow) = Box::pin(self.on_event(next, &mut live, &mut peeked)).await? {
                return Ok(flow);
            }
        }
    }

    /// Acts on what the live receiver answered; `Some` when following
    /// ends. Chunks that are ready after it are merged into its frame;
    /// an event of another kind met on the way is left in `peeked`.
    async fn on_event(
        &mut self,
        next: Result<LogEvent, RecvError>,
        live: &mut crate::session::log_events::Receiver,
        peeked: &mut Option<LogEvent>,
    ) -> Result<Option<Flow>, Closed> {
        let ev = match next {
            Ok(ev) => ev,
            Err(RecvError::Lagged(_)) => {
                self.fell_behind().await?;
                return Ok(None);
            }
            Err(RecvError::Closed) => return self.detached().await.map(|()| Some(Flow::Ended)),
        };
        {
            match ev {
                LogEvent::Output(chunk) => {
                    if chunk.end() <= self.next {
                        return Ok(None);
                    }
                    if chunk.offset > self.next {
                        self.fill(chunk.offset).await?;
                    }
                    // Merge what else is ready into one frame (small chunks;
                    // in binary mode large ones are sent as built, uncopied).
                    let binary = self.mode == OutputMode::Binary;
                    let mut batch = vec![chunk.from_offset(self.next)];
                    let mut size = batch[0].data.len();
                    let mut lagged = false;
                    while size < MAX_FRAME && !(binary && size >= ZERO_COPY_MIN) {
                        match live.try_recv() {
                            Ok(LogEvent::Output(c))
                                if c.stream == batch[0].stream
                                    && c.offset == batch[batch.len() - 1].end()
                                    && !(binary && c.data.len() >= ZERO_COPY_MIN) =>
                            {
                                size += c.data.len();
                                batch.push(Arc::unwrap_or_clone(c));
                            }
                            Ok(other) => {
                                *peeked = Some(other);
                                break;
                            }
                            Err(TryRecvError::Lagged(_)) => {
                                lagged = true;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.send_chunks(batch).await?;
                    // A lag met while merging is a lag as the wait meets
                    // one: the next event is past a hole, which may have
                    // held a resize.
                    if lagged {
                        self.fell_behind().await?;
                    }
                }
                LogEvent::Resized { offset, cols, rows } => {
                    // Output from before the resize goes first (with any
                    // pending resize older than it, at its place).
                    if offset > self.next {
                        self.fill(offset).await?;
                    }
                    resize::settle_through(&mut self.pending_resizes, offset);
                    // One behind `next` (its output went already) only
                    // when the client would otherwise miss the session's
                    // size: an old one told again would stick.
                    let now = self.handle.size();
                    if offset >= self.next
                        || resize::take_late(&mut self.pending_resizes, self.told_size, self.next, now, (cols, rows))
                    {
                        self.resized(cols, rows).await?;
                    }
                }
                LogEvent::Terminating => self.tell_terminating().await?,
                LogEvent::Ended(info) => {
                    self.fill(info.output_offset).await?;
                    return self.finish(&info).await.map(|()| Some(Flow::Ended));
                }
            }
        }
        Ok(None)
    }
}
