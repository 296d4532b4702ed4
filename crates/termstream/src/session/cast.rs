//! Asciicast v2 export of a session's stored log.
//!
//! The header line gives the first recorded window size; then one event per
//! stored chunk (`[seconds, "o", text]`) and per resize (`[seconds, "r",
//! "COLSxROWS"]`), with the timing of when output arrived. Text is decoded
//! with a UTF-8 sequence split across chunks carried to the next event;
//! bytes that are not UTF-8 at all become U+FFFD, as the format needs text.
//! A command session's output comes from pipes, where a line ends with a
//! bare `\n`; a player draws it as a terminal would, so its bare line feeds
//! become `\r\n` (a pty's output has them already, and is kept as is).
//! The file is written by a task that reads the log a page at a time
//! ([`super::remote::EventPages`]; about 256 KiB of output per page) and
//! sends its lines through a small bounded channel: from the disk log here
//! (each page read on the blocking pool, which no download holds between
//! pages), or for a session of another node of a cluster from its owner's
//! disk log through Redis, so that its recording is the owner's, byte for
//! byte. A client that takes no line for `download_stall_ms` ends its
//! download with an error: a stalled download holds nothing for long.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use termstream_proto::{SessionInfo, SessionKind};
use tokio::sync::mpsc;

use super::remote::EventPages;
use super::screen::utf8::Utf8Carry;
use super::store::{Event, page};
use super::{SessionError, SessionHandle};

/// Lines in flight between the reader task and the HTTP body.
const LINES_IN_FLIGHT: usize = 16;
/// The output one page of the local log holds at most (as a remote
/// session's pages do).
const PAGE_BYTES: usize = 256 << 10;

/// The recording of a session, as a stream of lines for an HTTP body: made
/// from its disk log here, or for a session of another node, from its
/// owner's disk log read a page at a time. A remote recording that cannot
/// start (the owner is gone, too many transfers run) fails here, before
/// any line, with the reason. A client that reads nothing for `stall` ends
/// its download (a remote one has its owner's setting).
pub async fn recording(
    handle: &SessionHandle,
    stall: Duration,
) -> Result<BoxStream<'static, io::Result<Bytes>>, SessionError> {
    let info = handle.info();
    let mut pages: Box<dyn EventPages> = match &handle.remote {
        Some(remote) => remote.events()?,
        None => Box::new(LocalPages {
            dir: handle.dir().to_owned(),
            at: None,
            done: false,
            stall,
        }),
    };
    let first = pages.next_page().await?.unwrap_or_default();
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(LINES_IN_FLIGHT);
    // The error that ended a transfer whose lines still fill the channel
    // (a stalled client): it ends the body after them, so the client
    // cannot take a cut recording for a whole one.
    let failed = Arc::new(Mutex::new(None::<io::Error>));
    let failure = failed.clone();
    tokio::spawn(async move {
        if let Err(e) = write_pages(&info, first, pages, &tx).await
            && let Err(mpsc::error::TrySendError::Full(Err(e))) = tx.try_send(Err(e))
        {
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
    });
    let last = futures_util::stream::once(async move { failed.lock().unwrap_or_else(|p| p.into_inner()).take() })
        .filter_map(|e| async move { e.map(Err) });
    Ok(Box::pin(lines(rx).chain(last)))
}

/// A session's disk log here, a page at a time.
#[derive(Debug)]
struct LocalPages {
    dir: PathBuf,
    /// Where the next page starts (`None`: the log's start).
    at: Option<page::Cursor>,
    /// The last page reached the log's end.
    done: bool,
    stall: Duration,
}

impl EventPages for LocalPages {
    fn next_page(&mut self) -> BoxFuture<'_, Result<Option<Vec<Event>>, SessionError>> {
        Box::pin(async move {
            if self.done {
                return Ok(None);
            }
            let (dir, at) = (self.dir.clone(), self.at);
            let page = tokio::task::spawn_blocking(move || page::read_page(&dir, at, PAGE_BYTES))
                .await
                .map_err(|e| SessionError::Io(io::Error::other(e)))??;
            self.at = page.next;
            self.done = page.next.is_none();
            Ok(Some(page.events))
        })
    }

    fn stall_timeout(&self) -> Duration {
        self.stall
    }
}

fn lines(rx: mpsc::Receiver<io::Result<Bytes>>) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "client went away")
}

/// Writes a recording from its log's pages: while the lines of one page go
/// out, the next page is asked for (so at most two pages are held), and no
/// further page until those lines went out. A client that takes no line
/// for the pages' stall timeout ends the transfer (and so gives a remote
/// transfer's slot back) with an error.
async fn write_pages(
    info: &SessionInfo,
    first: Vec<Event>,
    mut pages: Box<dyn EventPages>,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    let stall = pages.stall_timeout();
    let send_all = |lines: Vec<Bytes>| async move {
        for line in lines {
            match tokio::time::timeout(stall, tx.send(Ok(line))).await {
                Ok(sent) => sent.map_err(|_| gone())?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {} ms", stall.as_millis()),
                    ));
                }
            }
        }
        Ok::<_, io::Error>(())
    };
    let mut cast = Cast::new(info);
    let mut page = Some(first);
    while let Some(events) = page {
        let mut lines = Vec::new();
        for ev in events {
            cast.event(ev, &mut lines);
        }
        let (sent, next) = futures_util::join!(send_all(lines), pages.next_page());
        sent?;
        page = next.map_err(io::Error::other)?;
    }
    let mut lines = Vec::new();
    cast.finish(&mut lines);
    send_all(lines).await
}

/// Turns a log's events, in order, into the lines of its recording.
struct Cast<'a> {
    info: &'a SessionInfo,
    header_sent: bool,
    carry: Utf8Carry,
    line_ends: Option<LineEnds>,
}

impl<'a> Cast<'a> {
    fn new(info: &'a SessionInfo) -> Cast<'a> {
        Cast {
            info,
            header_sent: false,
            carry: Utf8Carry::default(),
            line_ends: (info.kind == SessionKind::Command).then(LineEnds::default),
        }
    }

    fn header(&self, (cols, rows): (u16, u16)) -> Bytes {
        let info = self.info;
        let h = serde_json::json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": info.started_at.unwrap_or(info.created_at) / 1000,
            "command": info.argv.join(" "),
            "title": info.id.as_str(),
            "env": { "TERM": "xterm-256color" },
        });
        Bytes::from(format!("{h}\n"))
    }

    fn default_size(&self) -> (u16, u16) {
        match self.info.kind {
            SessionKind::Pty => (self.info.cols, self.info.rows),
            SessionKind::Command => (80, 24),
        }
    }

    /// Appends the lines of `ev` (none, one, or the header and one) to `out`.
    fn event(&mut self, ev: Event, out: &mut Vec<Bytes>) {
        if !self.header_sent {
            self.header_sent = true;
            // A pty log starts with its initial size.
            if let Event::Resize { cols, rows, .. } = ev {
                out.push(self.header((cols, rows)));
                return;
            }
            out.push(self.header(self.default_size()));
        }
        match ev {
            Event::Output(c) => {
                let mut text = String::new();
                let line_ends = &mut self.line_ends;
                self.carry.decode(&c.data, |part| match line_ends {
                    Some(ends) => ends.push(&mut text, part),
                    None => text.push_str(part),
                });
                if !text.is_empty() {
                    let line = serde_json::json!([c.time_ms as f64 / 1000.0, "o", text]);
                    out.push(Bytes::from(format!("{line}\n")));
                }
            }
            Event::Resize { time_ms, cols, rows } => {
                let line = serde_json::json!([time_ms as f64 / 1000.0, "r", format!("{cols}x{rows}")]);
                out.push(Bytes::from(format!("{line}\n")));
            }
        }
    }

    /// Appends the header to `out` if no event wrote it (an empty log).
    fn finish(&mut self, out: &mut Vec<Bytes>) {
        if !self.header_sent {
            self.header_sent = true;
            out.push(self.header(self.default_size()));
        }
    }
}

/// Turns bare line feeds into `\r\n`, across pieces: a piece that ends
/// with `\r` is remembered, so a `\n` that starts the next one is not
/// given a second `\r`.
#[derive(Debug, Default)]
struct LineEnds {
    /// The last character pushed was `\r`.
    after_cr: bool,
}

impl LineEnds {
    /// Appends `piece` to `out` with its bare `\n`s translated.
    fn push(&mut self, out: &mut String, piece: &str) {
        for (i, line) in piece.split('\n').enumerate() {
            if i > 0 {
                out.push_str(if self.after_cr { "\n" } else { "\r\n" });
                self.after_cr = false;
            }
            if !line.is_empty() {
                out.push_str(line);
                self.after_cr = line.ends_with('\r');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LineEnds;

    fn translate(pieces: &[&str]) -> String {
        let mut ends = LineEnds::default();
        let mut out = String::new();
        for p in pieces {
            ends.push(&mut out, p);
        }
        out
    }

    #[test]
    fn bare_line_feeds_get_a_carriage_return() {
        assert_eq!(translate(&["a\nb\n"]), "a\r\nb\r\n");
        assert_eq!(translate(&["\n\n"]), "\r\n\r\n");
        assert_eq!(translate(&["é\n😀"]), "é\r\n😀");
    }

    #[test]
    fn line_ends_already_whole_are_kept() {
        assert_eq!(translate(&["a\r\nb\r\n"]), "a\r\nb\r\n");
        assert_eq!(translate(&["a\rb\n\r"]), "a\rb\r\n\r");
        assert_eq!(translate(&["\r\r\n"]), "\r\r\n");
    }

    #[test]
    fn a_carriage_return_at_a_piece_end_pairs_with_the_next_line_feed() {
        assert_eq!(translate(&["a\r", "\nb"]), "a\r\nb");
        assert_eq!(translate(&["a\r", "", "\nb"]), "a\r\nb");
        assert_eq!(translate(&["a\r", "b\n"]), "a\rb\r\n");
        assert_eq!(translate(&["a\n", "\n"]), "a\r\n\r\n");
    }
}
