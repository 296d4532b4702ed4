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
//! The file is produced by a blocking task reading the disk log one segment
//! at a time, through a small bounded channel.

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::Stream;
use termstream_proto::{SessionInfo, SessionKind};
use tokio::sync::mpsc;

use super::screen::utf8::Utf8Carry;
use super::store::{self, Event};

/// Lines in flight between the reader task and the HTTP body.
const LINES_IN_FLIGHT: usize = 16;

/// The recording of a session, as a stream of lines for an HTTP body.
pub fn stream(info: SessionInfo, dir: PathBuf) -> impl Stream<Item = io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(LINES_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = write_cast(&info, &dir, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

fn write_cast(info: &SessionInfo, dir: &std::path::Path, tx: &mpsc::Sender<io::Result<Bytes>>) -> io::Result<()> {
    let send = |line: String| {
        tx.blocking_send(Ok(Bytes::from(line)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
    };
    let header = |(cols, rows): (u16, u16)| {
        let h = serde_json::json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": info.started_at.unwrap_or(info.created_at) / 1000,
            "command": info.argv.join(" "),
            "title": info.id.as_str(),
            "env": { "TERM": "xterm-256color" },
        });
        format!("{h}\n")
    };
    let default_size = match info.kind {
        SessionKind::Pty => (info.cols, info.rows),
        SessionKind::Command => (80, 24),
    };
    let mut header_sent = false;
    let mut carry = Utf8Carry::default();
    let mut line_ends = (info.kind == SessionKind::Command).then(LineEnds::default);
    store::for_each_event(dir, |ev| {
        if !header_sent {
            header_sent = true;
            // A pty log starts with its initial size.
            if let Event::Resize { cols, rows, .. } = ev {
                return send(header((cols, rows)));
            }
            send(header(default_size))?;
        }
        match ev {
            Event::Output(c) => {
                let mut text = String::new();
                carry.decode(&c.data, |part| match &mut line_ends {
                    Some(ends) => ends.push(&mut text, part),
                    None => text.push_str(part),
                });
                if text.is_empty() {
                    return Ok(());
                }
                send(format!(
                    "{}\n",
                    serde_json::json!([c.time_ms as f64 / 1000.0, "o", text])
                ))
            }
            Event::Resize { time_ms, cols, rows } => send(format!(
                "{}\n",
                serde_json::json!([time_ms as f64 / 1000.0, "r", format!("{cols}x{rows}")])
            )),
        }
    })?;
    if !header_sent {
        send(header(default_size))?;
    }
    Ok(())
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
