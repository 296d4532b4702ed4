//! A whole session through `termstream-client`: start a shell on a pty,
//! attach to it, type, wait for a line, resize, and take its exit code;
//! the connection reconnects by itself when the server goes away.
//!
//! ```text
//! TERMSTREAM_SERVER=http://127.0.0.1:8000 TERMSTREAM_TOKEN=... \
//!     cargo run -p termstream-client --example session
//! ```

use std::time::Duration;

use termstream_client::proto::{CreateSession, SessionId, SessionKind, SessionStatus};
use termstream_client::{Client, ConnectOptions, Connection, Endpoint, Event, Events, Resume};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::var("TERMSTREAM_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8000".into());
    let token = std::env::var("TERMSTREAM_TOKEN").ok();
    let client = Client::new(Endpoint::new(&server, token, &[])?)?;

    let id = SessionId::new(format!("example-{}", std::process::id()))?;
    let req = CreateSession {
        id: Some(id.clone()),
        kind: Some(SessionKind::Pty),
        argv: Some(vec!["sh".into()]),
        cols: Some(80),
        rows: Some(24),
        ..CreateSession::default()
    };
    let info = client.create_session(&req).await?;
    println!("created {} ({:?})", info.id, info.status);

    let (conn, mut events) = Connection::open(client.clone(), ConnectOptions::default());
    // From the start of its output, and from where it left off after a
    // reconnect.
    conn.attach(id.clone(), None, Resume::Exact).await?;

    // `he""llo`: the echo of the typed line does not match, the output does.
    conn.input(id.clone(), "echo he\"\"llo\n".into()).await?;
    until(&mut events, &id, "hello\r\n").await?;

    conn.resize(id.clone(), 120, 40).await?;
    conn.input(id.clone(), "stty size; sleep 5; exit 3\n".into()).await?;
    until(&mut events, &id, "40 120").await?;
    println!("\nresized; the shell exits in 5 s (restart the server now to see a reconnect)");

    // The session's end: its exit code, or why there is none.
    loop {
        match events.recv().await {
            Some(Event::Exit {
                session_id,
                status,
                exit_code,
                signal,
            }) if session_id == id => {
                match (status, exit_code, signal) {
                    (SessionStatus::Lost, ..) => println!("lost: the server restarted while it ran"),
                    (_, Some(code), _) => println!("exited with {code}"),
                    (_, None, Some(sig)) => println!("ended by signal {sig}"),
                    _ => println!("ended: {status:?}"),
                }
                break;
            }
            Some(e) => report(&e),
            None => return Err("the connection ended".into()),
        }
    }
    conn.close().await;
    client.delete(&id).await?;
    Ok(())
}

/// Prints the session's output until it holds `pattern`.
async fn until(events: &mut Events, id: &SessionId, pattern: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut seen = Vec::new();
    let wait = tokio::time::timeout(Duration::from_secs(30), async {
        while !String::from_utf8_lossy(&seen).contains(pattern) {
            match events.recv().await {
                Some(Event::Output { session_id, data, .. }) if &session_id == id => {
                    print!("{}", String::from_utf8_lossy(&data));
                    seen.extend_from_slice(&data);
                }
                Some(Event::Exit {
                    session_id,
                    status,
                    exit_code,
                    ..
                }) if &session_id == id => {
                    return Err(format!("the session ended ({status:?}, {exit_code:?})"));
                }
                Some(e) => report(&e),
                None => return Err("the connection ended".into()),
            }
        }
        Ok(())
    });
    wait.await.map_err(|_| format!("no {pattern:?} within 30 s"))??;
    Ok(())
}

/// What the connection says besides output.
fn report(e: &Event) {
    match e {
        Event::Disconnected { error, retry_in, .. } => eprintln!("[disconnected: {error}; retrying in {retry_in:?}]"),
        Event::Connected { reconnect: true, .. } => eprintln!("[reconnected]"),
        Event::Failed { error, .. } => eprintln!("[gave up: {error}]"),
        _ => {}
    }
}
