//! `termstream attach`: join a pty session like `tmux attach`.
//!
//! The local terminal goes into raw mode (restored on every way out, see
//! [`term::RawMode`]); the session's screen is drawn from its snapshot on a
//! reset terminal, then live output follows; keys go to the program through
//! the detach-key machine; window changes (SIGWINCH) resize the session.
//! After a reconnect the session is re-attached for a fresh snapshot, which
//! also wipes the status line shown while the server was away. When the
//! server lets go of the session without deleting it (`released`, on a
//! node of a cluster), it is attached again from the first byte not
//! printed ([`Followed`]); keys and window changes meanwhile are held and
//! sent once it is attached again, and so are the keys sent just before
//! that the server refused (named by their seq), having let go of the
//! session already, but for those refused before keys it took, which are
//! dropped and told on stderr at the end, as are keys refused before any
//! other attach answered ([`Held`]).
//! If it does not come back within the server's attach wait, the attach
//! ends as for a deletion.

use std::io::{IsTerminal, Write};

use termstream_client::{Client, ConnectOptions, Connection, Event, Resume, Utf8Carry};
use termstream_proto::{ErrorCode, SessionId, SessionKind, SessionStatus};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::detach_keys::{self, DetachKeys};
use super::exit::{self, Failure};
use super::followed::{Followed, Step};
use super::leave::Leave;
use super::{GlobalArgs, term};

mod held;

use held::Held;

/// Resets a terminal to a blank screen with default modes before a snapshot.
const RESET: &[u8] = b"\x1bc";

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The session's id.
    pub id: String,
    /// Watch only: keys (but the detach keys) and window size are not sent.
    #[arg(long)]
    pub read_only: bool,
    /// The detach sequence: comma-separated keys, each a character or ctrl-X.
    #[arg(long, default_value = detach_keys::DEFAULT)]
    pub detach_keys: String,
}

pub async fn attach(global: &GlobalArgs, args: AttachArgs) -> Result<i32, Failure> {
    let client = global.client()?;
    let id = super::session_id(&args.id)?;
    let keys =
        detach_keys::parse(&args.detach_keys).map_err(|e| Failure::new(exit::USAGE, format!("--detach-keys: {e}")))?;
    attach_session(global, &client, id, args.read_only, keys).await
}

/// Why the attach ended, for the last line (as tmux prints it).
enum Reason {
    Detached,
    /// The program ended with this exit code (128+N for signal N).
    Exited(i32),
    /// The session was terminated (kill, the API, a shutdown): the code as
    /// for `Exited`.
    Terminated(i32),
    /// This process got SIGTERM or SIGHUP (this signal): it lets go of the
    /// terminal as a detach does, and the session runs on.
    Signalled(i32),
    /// A write to the terminal failed (a closed window: EIO), perhaps
    /// before SIGHUP was seen: a hang-up all the same.
    HungUp,
    /// The server restarted while the program ran; its end is unknown.
    Lost,
    Deleted,
}

/// Attaches to `id` until detached, or the program ends.
pub async fn attach_session(
    global: &GlobalArgs,
    client: &Client,
    id: SessionId,
    read_only: bool,
    keys: Vec<u8>,
) -> Result<i32, Failure> {
    let info = client.session(&id).await.map_err(|e| Failure::from_client(e, global))?;
    if info.kind != SessionKind::Pty {
        return Err(Failure::new(
            exit::USAGE,
            format!("{id} is a command session, not a terminal: follow it with `termstream logs --follow {id}`"),
        ));
    }
    if !read_only
        && info.status.is_running()
        && let Some((cols, rows)) = term::window_size()
        && (cols, rows) != (info.cols, info.rows)
    {
        // Resize first, so the snapshot is drawn at our size.
        let _ = client.resize(&id, cols, rows).await;
    }
    // Asked before raw mode: the modes given back at the end and the
    // status line while the server is away are the terminal's; they are
    // not written into a file (`termstream attach job > rec`).
    let screen = std::io::stdout().is_terminal();
    let raw = term::RawMode::enter().map_err(|e| Failure::io("cannot put the terminal in raw mode", e))?;
    let (conn, events) = Connection::open(client.clone(), ConnectOptions::default());
    // Into a file the cursor is not followed: the terminal's size says
    // nothing of it, and the closing line goes on a line of its own.
    let mut leave = Leave::sized(term::window_size().filter(|_| screen));
    let watch = Watch {
        read_only,
        // Asked now: a hung-up terminal is no longer one.
        terminal: raw.is_some() && std::io::stdout().is_terminal(),
        raw: raw.is_some(),
        screen,
    };
    let mut held = Held::default();
    let result = follow(
        &conn,
        events,
        id.clone(),
        watch,
        DetachKeys::new(keys),
        &mut leave,
        &mut held,
    )
    .await;
    conn.close().await;
    let mut out = std::io::stdout();
    let end = if screen {
        leave.bytes()
    } else {
        leave.line_break_in_place().to_vec()
    };
    let _ = out.write_all(&end);
    let _ = out.flush();
    drop(raw);
    // On a line of its own, the terminal given back: not into the
    // session's screen, which it would spoil.
    if let Some(note) = held.note(&id) {
        let mut err = std::io::stderr();
        let _ = writeln!(err, "{note}").and_then(|()| err.flush());
    }
    let (line, code) = match result {
        Ok(Reason::Detached) => (format!("[detached (from session {id})]"), exit::OK),
        Ok(Reason::Exited(code)) => (format!("[exited (session {id}, code {code})]"), code),
        Ok(Reason::Terminated(code)) => (format!("[terminated (session {id}, code {code})]"), code),
        Ok(Reason::Signalled(n)) => (format!("[detached (from session {id}, by signal {n})]"), 128 + n),
        Ok(Reason::HungUp) => (
            format!("[detached (from session {id}): the terminal is gone]"),
            128 + libc::SIGHUP,
        ),
        Ok(Reason::Lost) => (
            format!("[session {id} was lost: the server restarted while it ran]"),
            exit::LOST,
        ),
        Ok(Reason::Deleted) => (format!("[session {id} was deleted]"), exit::NOT_FOUND),
        Err(f) => return Err(f),
    };
    // Not `println!`, which panics when the terminal is gone (closed
    // window: SIGHUP, then every write fails).
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    Ok(code)
}

/// How `follow` treats the local side.
#[derive(Debug, Clone, Copy)]
struct Watch {
    /// Keys (but the detach keys) and window sizes are not sent.
    read_only: bool,
    /// Stdout is the terminal in raw mode: a write that fails means it is
    /// gone (a hang-up), not an error to report on it.
    terminal: bool,
    /// Raw mode was entered: SIGTERM and SIGHUP are taken up to give the
    /// terminal back. Without it their default action stands
    /// (`nohup termstream attach job < /dev/null > rec &`).
    raw: bool,
    /// Stdout is a terminal (raw or not): the status line is drawn on it.
    screen: bool,
}

async fn follow(
    conn: &Connection,
    mut events: termstream_client::Events,
    id: SessionId,
    watch: Watch,
    mut keys: DetachKeys,
    leave: &mut Leave,
    held: &mut Held,
) -> Result<Reason, Failure> {
    conn.attach(id.clone(), None, Resume::Screen)
        .await
        .map_err(|e| Failure::new(exit::FAILURE, e.to_string()))?;
    let (key_tx, mut key_rx) = mpsc::channel::<Vec<u8>>(16);
    let reader = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 || key_tx.send(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
    });
    let mut winch = signal(SignalKind::window_change()).map_err(|e| Failure::io("cannot watch window changes", e))?;
    // In raw mode, taken up, not left to their default action, which would
    // end this process with the terminal still raw (and on the alternate
    // screen).
    let (mut sigterm, mut sighup) = if watch.raw {
        let take = |kind| {
            signal(kind)
                .map(Some)
                .map_err(|e| Failure::io("cannot watch for signals", e))
        };
        (take(SignalKind::terminate())?, take(SignalKind::hangup())?)
    } else {
        (None, None)
    };
    let read_only = watch.read_only;
    let mut utf8 = Utf8Carry::default();
    // Until stdin ends (`< /dev/null`, a closed pipe): then the loop stops
    // asking for keys, which a closed channel would answer at once, forever.
    let mut keys_open = true;
    let mut out = std::io::stdout();
    let mut followed = Followed::new(None, Resume::Screen);
    // A terminal that fails a write is gone; anything else reports it (a
    // closed pipe ends quietly with 141).
    let failed = |e: std::io::Error| {
        if watch.terminal && e.kind() != std::io::ErrorKind::BrokenPipe {
            Ok(Reason::HungUp)
        } else {
            Err(Failure::io("cannot write to the terminal", e))
        }
    };
    let result = loop {
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else {
                    break Err(Failure::new(exit::FAILURE, "the connection to the server ended"));
                };
                // Which keys the server refused, whenever it says so.
                held.saw(&id, &ev);
                match followed.step(conn, &id, &ev).await {
                    Ok(Step::Pass) => {
                        if matches!(&ev, Event::Attached { session_id, .. } if *session_id == id) {
                            // Refusals before this attach are not sent again.
                            held.attached();
                        }
                    }
                    Ok(Step::Taken) => continue,
                    Ok(Step::Reattached) => {
                        if !read_only {
                            // Window changes meanwhile were not sent.
                            term::send_window_size(conn, &id).await;
                            let keys = held.reattached();
                            if !keys.is_empty() {
                                send_keys(conn, &id, held, keys).await;
                            }
                        }
                        continue;
                    }
                    Ok(Step::Gone) => break Ok(Reason::Deleted),
                    Err(f) => break Err(f),
                }
                match ev {
                    Event::Restore { session_id, data, cols, rows, .. } if session_id == id => {
                        leave.reset((cols, rows));
                        leave.feed(data.as_bytes());
                        if let Err(e) = out.write_all(RESET).and_then(|()| out.write_all(data.as_bytes())).and_then(|()| out.flush()) {
                            break failed(e);
                        }
                    }
                    Event::Output { session_id, data, .. } if session_id == id => {
                        leave.feed(&data);
                        if let Err(e) = out.write_all(&data).and_then(|()| out.flush()) {
                            break failed(e);
                        }
                    }
                    Event::Resized { session_id, cols, rows } if session_id == id => leave.session_resized((cols, rows)),
                    Event::Exit { session_id, status: SessionStatus::Lost, .. } if session_id == id => break Ok(Reason::Lost),
                    Event::Exit { session_id, status, exit_code, signal } if session_id == id => {
                        let code = exit::of_program(exit_code, signal);
                        break Ok(if status == SessionStatus::Terminated { Reason::Terminated(code) } else { Reason::Exited(code) });
                    }
                    Event::Disconnected { retry_in, .. } if watch.screen => {
                        // A status line on the bottom row; the snapshot after the
                        // reconnect draws over it.
                        let rows = term::window_size().map_or(24, |s| s.1);
                        let line = format!(
                            "\x1b7\x1b[{rows};1H\x1b[0;7m[termstream: the server is away; retrying in {:.1}s]\x1b[K\x1b[0m\x1b8",
                            retry_in.as_secs_f64()
                        );
                        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
                            break failed(e);
                        }
                        leave.status_line(rows);
                    }
                    Event::Connected { reconnect: true, .. } if !read_only && !followed.reattaching() => term::send_window_size(conn, &id).await,
                    // Only the attach's refusal ends it: others name keys
                    // or a resize (or nothing, from an older server).
                    Event::ServerError { code: ErrorCode::SessionNotFound, message, session_id, request, .. }
                        if session_id.as_ref() == Some(&id) && super::followed::refuses_attach(request.as_deref()) => {
                        break Err(Failure::from_socket(ErrorCode::SessionNotFound, message));
                    }
                    Event::Failed { error } => {
                        break Err(Failure::from_socket(error.code().unwrap_or(ErrorCode::Internal), error.to_string()));
                    }
                    _ => {}
                }
            }
            typed = key_rx.recv(), if keys_open => {
                let Some(typed) = typed else {
                    keys_open = false;
                    // A character cut short at the end goes as U+FFFD.
                    let rest = utf8.finish();
                    if !read_only && !rest.is_empty() {
                        send_or_hold(conn, &id, &followed, held, rest).await;
                    }
                    continue;
                };
                let fed = keys.feed(&typed);
                if !read_only && !fed.forward.is_empty() {
                    let text = utf8.push(&fed.forward);
                    if !text.is_empty() {
                        send_or_hold(conn, &id, &followed, held, text).await;
                    }
                }
                if fed.detach {
                    break Ok(Reason::Detached);
                }
            }
            Some(n) = super::run::got_signal(&mut sigterm, libc::SIGTERM) => break Ok(Reason::Signalled(n)),
            Some(n) = super::run::got_signal(&mut sighup, libc::SIGHUP) => break Ok(Reason::Signalled(n)),
            _ = winch.recv() => {
                let size = term::window_size();
                leave.resized(size.filter(|_| watch.screen));
                // While re-attaching, sent once attached again.
                if !read_only && !followed.reattaching() && let Some((cols, rows)) = size {
                    let _ = conn.resize(id.clone(), cols, rows).await;
                }
            }
        }
    };
    reader.abort();
    result
}

/// Sends keys to the session, logged in case the server refuses them,
/// or holds them while it is attached again (see [`Held`]).
async fn send_or_hold(conn: &Connection, id: &SessionId, followed: &Followed, held: &mut Held, text: String) {
    if followed.reattaching() {
        held.hold(&text);
    } else {
        send_keys(conn, id, held, text).await;
    }
}

/// Sends keys to the session, logged under their seq.
async fn send_keys(conn: &Connection, id: &SessionId, held: &mut Held, keys: String) {
    if let Ok(seq) = conn.input(id.clone(), keys.clone()).await {
        held.sent_keys(seq, &keys);
    }
}
