//! Sending output: contiguous chunks merged per stream into frames (or,
//! in binary mode, a whole chunk as the frame its actor built, shared by
//! every socket), incomplete UTF-8 held back in JSON modes, and the end.

use std::sync::Arc;

use axum::extract::ws::Message;
use termstream_proto::ws::{GapReason, OutputMode};
use termstream_proto::{SessionInfo, Stream};

use super::{Forwarder, MAX_FRAME, resize};
use crate::gateway::outbox::Closed;
use crate::gateway::render::{Dialect, OutEvent};
use crate::observe::metrics;
use crate::session::log::Chunk;
use crate::session::screen::utf8;

impl Forwarder {
    /// Sends contiguous chunks starting at `next`, merged per stream into
    /// frames of at most [`MAX_FRAME`]. A pending resize is told just
    /// before the first byte at or past its offset (`resize.rs`): every
    /// output byte passes here, whether replayed, filled or live.
    pub(super) async fn send_chunks(&mut self, chunks: Vec<Chunk>) -> Result<(), Closed> {
        if self.pending_resizes.is_empty() {
            return self.send_run(chunks).await;
        }
        for piece in resize::interleave(chunks, &self.pending_resizes, self.next) {
            match piece {
                resize::Piece::Run(run) => self.send_run(run).await?,
                resize::Piece::Tell => self.tell_pending().await?,
            }
        }
        Ok(())
    }

    /// Sends contiguous chunks as [`Forwarder::send_chunks`] does, with no
    /// resize among them.
    async fn send_run(&mut self, chunks: Vec<Chunk>) -> Result<(), Closed> {
        let mut buf: Vec<u8> = Vec::new();
        let mut stream = None;
        let binary = self.mode == OutputMode::Binary && self.dialect != Dialect::Legacy;
        for c in chunks {
            if c.end() <= self.next && buf.is_empty() {
                continue;
            }
            if buf.is_empty() && c.offset > self.next {
                // A hole (a fill that stopped short, e.g. output the disk
                // never got): say so, so that what follows keeps its offset.
                self.skip_to(c.offset, GapReason::Evicted).await?;
            }
            let c = if buf.is_empty() { c.from_offset(self.next) } else { c };
            // A whole chunk that starts here goes out as the frame the actor
            // built, shared by every socket.
            if binary
                && !self.coalesce
                && buf.is_empty()
                && c.offset == self.next
                && let Some(frame) = c.frame(self.id.as_str().len())
            {
                let m = metrics::get();
                m.output_frames.increment(1);
                m.bytes_out.increment(c.data.len() as u64);
                self.put(Message::Binary(frame), c.read_at).await?;
                self.next += c.data.len() as u64;
                self.account_sent();
                stream = None;
                continue;
            }
            if stream != Some(c.stream) || buf.len() + c.data.len() > MAX_FRAME {
                if let Some(s) = stream {
                    self.send_output(s, std::mem::take(&mut buf)).await?;
                }
                stream = Some(c.stream);
            }
            if buf.is_empty() {
                self.read_at = c.read_at;
            }
            buf.extend_from_slice(&c.data);
        }
        if let Some(s) = stream
            && !buf.is_empty()
        {
            self.send_output(s, buf).await?;
        }
        Ok(())
    }

    /// Sends bytes that start at `next` and advances it. In JSON modes a
    /// trailing incomplete UTF-8 sequence is held back and sent with the
    /// next bytes of the same stream.
    pub(super) async fn send_output(&mut self, stream: Stream, bytes: Vec<u8>) -> Result<(), Closed> {
        let len = bytes.len() as u64;
        let read_at = self.read_at.take();
        if self.mode == OutputMode::Binary && self.dialect != Dialect::Legacy {
            self.emit_at(
                read_at,
                OutEvent::Output {
                    session: &self.id,
                    stream,
                    offset: self.next,
                    data: &bytes,
                },
            )
            .await?;
            self.next += len;
            self.account_sent();
            return Ok(());
        }
        let mut data = match self.carry.take() {
            Some((s, mut held)) if s == stream => {
                held.extend_from_slice(&bytes);
                held
            }
            Some((s, held)) => {
                // The other stream's held bytes can no longer complete.
                let start = self.next - held.len() as u64;
                self.emit_at(
                    read_at,
                    OutEvent::Output {
                        session: &self.id,
                        stream: s,
                        offset: start,
                        data: &held,
                    },
                )
                .await?;
                self.account_sent();
                bytes
            }
            None => bytes,
        };
        let start = self.next + len - data.len() as u64;
        let keep = utf8::incomplete_tail(&data);
        let tail = data.split_off(data.len() - keep);
        if !tail.is_empty() {
            self.carry = Some((stream, tail));
        }
        if !data.is_empty() {
            self.emit_at(
                read_at,
                OutEvent::Output {
                    session: &self.id,
                    stream,
                    offset: start,
                    data: &data,
                },
            )
            .await?;
        }
        self.next += len;
        self.account_sent();
        Ok(())
    }

    /// Ends the client's log: held bytes, a resize with no output after
    /// it (no event will come for it), the exit.
    pub(super) async fn finish(&mut self, info: &Arc<SessionInfo>) -> Result<(), Closed> {
        if let Some((s, held)) = self.carry.take() {
            let start = self.next - held.len() as u64;
            self.emit(OutEvent::Output {
                session: &self.id,
                stream: s,
                offset: start,
                data: &held,
            })
            .await?;
            self.account_sent();
        }
        self.tell_due().await?;
        self.emit(OutEvent::Exit(info)).await?;
        self.account_end();
        Ok(())
    }
}
