//! `termstream run`: start a session, stream its output here (stdout to
//! stdout, stderr to stderr, byte for byte), feed it our stdin, and exit
//! with its exit code.
//!
//! The output comes over a [`Connection`] attached with `since` = offset 0,
//! so nothing printed before the attach is missed and a dropped connection
//! resumes exactly. Stdin goes over REST (`dataBase64`, then `eof`), which
//! carries any bytes and closes the program's stdin at our end of file.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use base64::Engine as _;
use termstream_client::{Client, ConnectOptions, Connection, Error, Event, Resume};
use termstream_proto::ws::LogPosition;
use termstream_proto::{
    CreateSession, ErrorCode, InputRequest, SessionId, SessionInfo, SessionKind, SessionStatus, Stream,
};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

mod args;

pub use args::RunArgs;

use super::exit::{self, Failure};
use super::followed::{Followed, Step};
use super::leave::Leave;
use super::{GlobalArgs, term};

/// A second Ctrl-C within this long detaches instead of terminating.
const SECOND_INTERRUPT: Duration = Duration::from_secs(1);
/// Attempts at a REST call that could not reach the server.
const REST_ATTEMPTS: u32 = 5;
/// How long `run` waits for the terminate after its stdout was closed.
const PIPE_TERMINATE: Duration = Duration::from_secs(10);

pub async fn run(global: &GlobalArgs, args: RunArgs) -> Result<i32, Failure> {
    let client = global.client()?;
    let id = match &args.id {
        Some(raw) => super::session_id(raw)?,
        None => SessionId::new(format!("run-{:016x}", rand::random::<u64>())).expect("a valid id"),
    };
    let size = if args.tty { term::window_size() } else { None };
    let req = CreateSession {
        id: Some(id.clone()),
        kind: Some(if args.tty {
            SessionKind::Pty
        } else {
            SessionKind::Command
        }),
        argv: Some(args.command.clone()),
        cwd: args.cwd.clone(),
        env: args.env.iter().cloned().collect(),
        cols: size.map(|s| s.0),
        rows: size.map(|s| s.1),
        project: super::project(args.project.as_deref())?,
        ..CreateSession::default()
    };
    let info = match create(&client, &req).await {
        Ok(info) => info,
        // As a shell does for a command it cannot run.
        Err(e) if e.code() == Some(ErrorCode::SpawnFailed) => {
            return Err(Failure::new(exit::NOT_RUNNABLE, e.to_string()));
        }
        Err(e) => return Err(Failure::from_client(e, global)),
    };
    let raw = if args.tty && size.is_some() {
        term::RawMode::enter().map_err(|e| Failure::io("cannot put the terminal in raw mode", e))?
    } else {
        None
    };
    let code = stream(global, &client, &info, &args, raw.is_some()).await;
    drop(raw);
    code
}

/// Creates the session, retrying a request that could not get through. A
/// retry that finds the id taken means the first try did create it.
async fn create(client: &Client, req: &CreateSession) -> Result<SessionInfo, Error> {
    let id = req.id.clone().expect("run always names its session");
    let mut retried = false;
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match client.create_session(req).await {
            Ok(info) => return Ok(info),
            Err(e) if retried && e.code() == Some(ErrorCode::DuplicateId) => return client.session(&id).await,
            Err(e)
                if e.is_transient()
                    && attempt < REST_ATTEMPTS
                    && !matches!(&e, Error::Unreachable { source, .. } if is_refused(source.as_ref())) =>
            {
                retried = true;
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

/// Whether the connection was refused outright (nothing listens there).
fn is_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// What a Ctrl-C has started.
enum Interrupt {
    None,
    /// The first Ctrl-C: terminate at this instant unless a second comes.
    Pending(tokio::time::Instant),
    /// Terminate was sent; the exit code will be 130. Another Ctrl-C
    /// stops waiting for the end.
    Terminating,
}

/// Streams the session until it ends. `raw`: the local terminal is in raw
/// mode (`--tty` on a terminal): notes end their lines with `\r\n`, and
/// when stdout is that terminal its full-screen modes are given back at the
/// end, as the program may not have (killed at a timeout, lost).
async fn stream(
    global: &GlobalArgs,
    client: &Client,
    info: &SessionInfo,
    args: &RunArgs,
    raw: bool,
) -> Result<i32, Failure> {
    let id = info.id.clone();
    let nl = if raw { "\r\n" } else { "\n" };
    // What is written to a terminal is followed (`leave`), so that a note
    // starts on a line of its own: after the program's output that ended
    // mid-line, or an echoed `^C`.
    let stdout_tty = std::io::stdout().is_terminal();
    let stderr_tty = std::io::stderr().is_terminal();
    // Typed at a prompt: the cursor starts at the start of a line.
    let mut leave = Leave::at_fresh_line();
    // Not `eprint!`, which panics when the terminal is gone (SIGHUP).
    macro_rules! say {
        ($($t:tt)*) => {{
            let note = format!("termstream: {}{nl}", format_args!($($t)*));
            let mut err = std::io::stderr();
            if stderr_tty {
                // On the screen in use (the alternate one, mid-run; at the
                // end, once `leave`'s modes were written and fed, the primary).
                let _ = err.write_all(leave.line_break_in_place());
                leave.feed(note.as_bytes());
            }
            let _ = err.write_all(note.as_bytes());
        }};
    }
    // A note on how it ended, printed once the terminal is given back.
    let mut closing = None;
    // Watched before attaching: a Ctrl-C while attaching is taken up by
    // the loop below (it terminates), not the default action that would
    // end this process and leave the session running unseen.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Failure::io("cannot watch for Ctrl-C", e))?;
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(|e| Failure::io("cannot watch window changes", e))?;
    // In raw mode, SIGTERM and SIGHUP are taken up so that the terminal is
    // given back first; the session runs on, as when this process is killed
    // outside raw mode.
    let (mut sigterm, mut sighup) = if raw {
        let watch = |kind| {
            tokio::signal::unix::signal(kind)
                .map(Some)
                .map_err(|e| Failure::io("cannot watch for signals", e))
        };
        (
            watch(tokio::signal::unix::SignalKind::terminate())?,
            watch(tokio::signal::unix::SignalKind::hangup())?,
        )
    } else {
        (None, None)
    };
    let (conn, mut events) = Connection::open(client.clone(), ConnectOptions::default());
    let since = LogPosition {
        epoch: info.epoch,
        offset: 0,
    };
    conn.attach(id.clone(), Some(since), Resume::Exact)
        .await
        .map_err(|e| Failure::from_client(e, global))?;
    let mut followed = Followed::new(Some(since), Resume::Exact);
    let stdin_task = tokio::spawn(forward_stdin(client.clone(), id.clone(), info.kind));
    let timeout = async {
        match args.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    let mut timed_out = false;
    let mut interrupt = Interrupt::None;
    // The program ended by a signal (Ctrl-C typed to it, say).
    let mut ended_by_signal = false;
    // Terminate tasks say here that the server could not be reached.
    let (unheard_tx, mut unheard_rx) = mpsc::channel::<()>(2);
    let mut reconnecting = false;
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    // Stdout is the raw terminal: a write that fails means it is gone (a
    // closed window: EIO, perhaps before SIGHUP is seen), a hang-up. Asked
    // now: a hung-up terminal is no longer one.
    let terminal = raw && stdout.is_terminal();
    let result = loop {
        let deadline = match interrupt {
            Interrupt::Pending(at) => at,
            _ => tokio::time::Instant::now() + Duration::from_secs(86400 * 365),
        };
        tokio::select! {
            ev = events.recv() => {
                let Some(ev) = ev else {
                    break Err(Failure::new(exit::FAILURE, "the connection to the server ended"));
                };
                // Let go by the server's node, not deleted: followed again.
                match followed.step(&conn, &id, &ev).await {
                    Ok(Step::Pass) => {}
                    // Its stdin goes over REST: nothing was held.
                    Ok(Step::Taken | Step::Reattached) => continue,
                    Ok(Step::Gone) => break Err(Failure::new(exit::NOT_FOUND, format!("session {id} was deleted"))),
                    Err(f) => break Err(f),
                }
                match ev {
                    Event::Output { session_id, stream, data, .. } if session_id == id => {
                        if if stream == Stream::Stderr { stderr_tty } else { stdout_tty } {
                            leave.feed(&data);
                        }
                        let w: &mut dyn Write = if stream == Stream::Stderr { &mut stderr } else { &mut stdout };
                        if let Err(e) = w.write_all(&data).and_then(|()| w.flush()) {
                            if e.kind() == std::io::ErrorKind::BrokenPipe {
                                // Nobody reads any more (`| head`): the program
                                // ends, as a local one would by SIGPIPE.
                                let _ = tokio::time::timeout(PIPE_TERMINATE, terminate(client, &id)).await;
                                break Ok(exit::BROKEN_PIPE);
                            }
                            if terminal {
                                closing = Some(format!("the terminal is gone; {id} keeps running (`termstream attach {id}`)"));
                                break Ok(128 + libc::SIGHUP);
                            }
                            break Err(Failure::io("cannot write the output", e));
                        }
                    }
                    Event::Gap { session_id, from, to, reason } if session_id == id => {
                        say!("output {from}..{to} of {id} is lost ({reason:?})");
                    }
                    Event::Exit { session_id, status, exit_code, signal } if session_id == id => {
                        ended_by_signal = signal.is_some();
                        break Ok(if status == SessionStatus::Lost {
                            closing = Some(format!("session {id} was lost: the server restarted while it ran; its end is unknown"));
                            exit::LOST
                        } else if timed_out {
                            exit::TIMEOUT
                        } else if matches!(interrupt, Interrupt::Terminating) {
                            exit::INTERRUPTED
                        } else if status == SessionStatus::Failed {
                            closing = Some(format!("session {id} failed"));
                            exit::FAILURE
                        } else {
                            // Not asked for here: say who could have, or a
                            // bare 129 is all there is to go on.
                            if status == SessionStatus::Terminated {
                                closing = Some(format!(
                                    "{id} was terminated (by `termstream kill`, the API, or the server shutting down)"
                                ));
                            }
                            exit::of_program(exit_code, signal)
                        });
                    }
                    Event::ServerError { code, message, session_id, .. } if session_id.as_ref() == Some(&id) => {
                        break Err(Failure::from_socket(code, message));
                    }
                    Event::Failed { error } => {
                        break Err(Failure::from_socket(error.code().unwrap_or(ErrorCode::Internal), error.to_string()));
                    }
                    Event::Disconnected { error, attempt: 3, .. } => {
                        reconnecting = true;
                        say!("lost the connection ({error}); reconnecting");
                    }
                    Event::Connected { reconnect, .. } => {
                        if reconnecting {
                            reconnecting = false;
                            say!("reconnected");
                        }
                        // A window change while the server was away was
                        // not heard (its resize failed), as attach does.
                        if reconnect && info.kind == SessionKind::Pty {
                            term::send_window_size(&conn, &id).await;
                        }
                    }
                    _ => {}
                }
            }
            _ = &mut timeout, if !timed_out => {
                timed_out = true;
                say!("{id} ran past its timeout; terminating it");
                spawn_terminate(client.clone(), id.clone(), unheard_tx.clone());
            }
            _ = interrupts.recv() => {
                if stderr_tty && term::echoes_controls() {
                    // The terminal wrote it after whatever was there.
                    leave.feed(b"^C");
                }
                match interrupt {
                Interrupt::Pending(_) => {
                    // `attach` takes pty sessions only.
                    let attach = if info.kind == SessionKind::Pty { format!("`termstream attach {id}`, ") } else { String::new() };
                    say!("detached; {id} keeps running ({attach}`termstream logs --follow {id}`)");
                    break Ok(exit::INTERRUPTED);
                }
                Interrupt::None => {
                    say!("terminating {id}; press Ctrl-C again within 1 s to detach and leave it running");
                    interrupt = Interrupt::Pending(tokio::time::Instant::now() + SECOND_INTERRUPT);
                }
                // Waiting for an end that may never be seen (the server is
                // down): another Ctrl-C stops waiting.
                Interrupt::Terminating => {
                    say!("stopped waiting; {id} may still be running (`termstream ls`)");
                    break Ok(exit::INTERRUPTED);
                }
            }},
            Some(()) = unheard_rx.recv() => {
                // In raw mode Ctrl-C is a byte for the program, not SIGINT
                // here; after a timeout no Ctrl-C has started anything yet.
                let stop = if raw {
                    format!("`kill {}` stops waiting", std::process::id())
                } else if matches!(interrupt, Interrupt::Terminating) {
                    "Ctrl-C again stops waiting".to_owned()
                } else {
                    "Ctrl-C twice within 1 s stops waiting".to_owned()
                };
                say!("cannot reach the server to terminate {id}; still trying to reconnect. {stop}");
            }
            Some(n) = got_signal(&mut sigterm, libc::SIGTERM) => {
                closing = Some(format!("detached by signal {n}; {id} keeps running (`termstream attach {id}`)"));
                break Ok(128 + n);
            }
            Some(n) = got_signal(&mut sighup, libc::SIGHUP) => {
                closing = Some(format!("detached by signal {n}; {id} keeps running (`termstream attach {id}`)"));
                break Ok(128 + n);
            }
            _ = winch.recv(), if info.kind == SessionKind::Pty => {
                if let Some((cols, rows)) = term::window_size() {
                    let (client, id) = (client.clone(), id.clone());
                    tokio::spawn(async move { client.resize(&id, cols, rows).await });
                }
            }
            _ = tokio::time::sleep_until(deadline), if matches!(interrupt, Interrupt::Pending(_)) => {
                interrupt = Interrupt::Terminating;
                spawn_terminate(client.clone(), id.clone(), unheard_tx.clone());
            }
        }
    };
    stdin_task.abort();
    conn.close().await;
    // Not into a file (`run --tty -- make > log` from a terminal): the
    // modes are the terminal's to get back.
    if terminal {
        // The note said at the timeout was on the alternate screen, now gone.
        if timed_out && leave.alternate() && closing.is_none() {
            closing = Some(format!("{id} ran past its timeout and was terminated"));
        }
        let modes = leave.modes();
        let _ = stdout.write_all(&modes).and_then(|()| stdout.flush());
        leave.feed(&modes);
        // As a shell does after a program a signal ended (`^C`, then the
        // prompt on the next line), as this process exits instead; a note
        // starts a line of its own anyway.
        if ended_by_signal && closing.is_none() {
            let line_break = leave.line_break_in_place();
            let _ = stdout.write_all(line_break).and_then(|()| stdout.flush());
            leave.feed(line_break);
        }
    }
    if let Some(note) = closing {
        say!("{note}");
    }
    result
}

/// Waits for signal `n` when it is watched (`Some`); never otherwise.
pub(super) async fn got_signal(watch: &mut Option<tokio::signal::unix::Signal>, n: i32) -> Option<i32> {
    match watch {
        Some(s) => s.recv().await.map(|()| n),
        None => std::future::pending().await,
    }
}

/// Terminates the session in a task of its own; `unheard` is told when the
/// server could not be reached.
fn spawn_terminate(client: Client, id: SessionId, unheard: mpsc::Sender<()>) {
    tokio::spawn(async move {
        if !terminate(&client, &id).await {
            let _ = unheard.try_send(());
        }
    });
}

/// Terminates the session, retrying a request that could not get through;
/// false when the server could not be reached at all.
async fn terminate(client: &Client, id: &SessionId) -> bool {
    for _ in 0..REST_ATTEMPTS {
        match client.terminate(id).await {
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => return true,
        }
    }
    false
}

/// Copies our stdin to the session; at its end closes the program's stdin
/// (a command session; a pty session's program reads Ctrl-D itself).
async fn forward_stdin(client: Client, id: SessionId, kind: SessionKind) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n: usize = stdin.read(&mut buf).await.unwrap_or_default();
        let eof = n == 0;
        if eof && kind == SessionKind::Pty {
            return;
        }
        let mut data = &buf[..n];
        loop {
            let req = InputRequest {
                data: None,
                data_base64: (!data.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(data)),
                eof,
            };
            match client.input(&id, &req).await {
                Ok(_) => break,
                Err(Error::Api { detail, .. }) if detail.code == ErrorCode::Busy => {
                    // Part of it was taken: send only the rest.
                    let taken = detail.accepted_bytes.unwrap_or(0) as usize;
                    data = &data[taken.min(data.len())..];
                }
                // Not transient as such, but on a node of a cluster the
                // session is missing from it while it follows the session
                // again after a release; deleted, `run` ends by itself.
                Err(e) if e.is_transient() || e.code() == Some(ErrorCode::SessionNotFound) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                // The program ended, or stopped taking input: nothing more to do.
                Err(_) => return,
            }
        }
        if eof {
            return;
        }
    }
}
