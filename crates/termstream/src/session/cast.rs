//! Asciicast v2 export of a session's stored log.
//!
//! The header line gives the first recorded window size; then one event per
//! stored chunk (`[seconds, "o", text]`) and per resize (`[seconds, "r",
//! "COLSxROWS"]`), with the timing of when output arrived. Text is decoded
//! with a UTF-8 sequence split across chunks carried to the next event;
//! bytes that are not UTF-8 at all become U+FFFD, as the format needs text.
//! The file is produced by a blocking task reading the disk log one segment
//! at a time, through a small bounded channel.

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::Stream;
use termstream_proto::{SessionInfo, SessionKind};
use tokio::sync::mpsc;

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
    let mut carry = Vec::new();
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
                carry.extend_from_slice(&c.data);
                let text = take_text(&mut carry);
                if text.is_empty() {
                    return Ok(());
                }
                send(format!("{}\n", serde_json::json!([c.time_ms as f64 / 1000.0, "o", text])))
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

/// Takes the longest valid UTF-8 prefix of `buf` as text, keeping an
/// incomplete sequence at the end; invalid bytes become U+FFFD.
fn take_text(buf: &mut Vec<u8>) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(buf) {
            Ok(s) => {
                out.push_str(s);
                buf.clear();
                return out;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                out.push_str(std::str::from_utf8(&buf[..valid]).unwrap_or_default());
                match e.error_len() {
                    None => {
                        buf.drain(..valid);
                        return out;
                    }
                    Some(bad) => {
                        out.push('\u{FFFD}');
                        buf.drain(..valid + bad);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::take_text;

    #[test]
    fn carries_split_sequences_and_replaces_invalid_bytes() {
        let euro = "€".as_bytes();
        let mut buf = vec![b'a', euro[0], euro[1]];
        assert_eq!(take_text(&mut buf), "a");
        buf.push(euro[2]);
        assert_eq!(take_text(&mut buf), "€");
        let mut bad = vec![b'x', 0xff, b'y'];
        assert_eq!(take_text(&mut bad), "x\u{FFFD}y");
    }
}
