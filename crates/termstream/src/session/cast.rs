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
                carry.decode(&c.data, |part| text.push_str(part));
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
