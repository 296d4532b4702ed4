//! `termstream logs`: a session's output from an offset, each chunk to the
//! local stream it came from (or only one stream, or the raw log bytes),
//! and with `--follow` live until the program ends.

use std::io::Write;

use base64::Engine as _;
use termstream_client::{Client, ConnectOptions, Connection, Event, Resume};
use termstream_proto::ws::LogPosition;
use termstream_proto::{ChunkEncoding, ErrorCode, SessionId, Stream};

use super::GlobalArgs;
use super::exit::{self, Failure};
use super::followed::{Followed, Step};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The session's id.
    pub id: String,
    /// Keep printing new output until the program ends.
    #[arg(long, short)]
    pub follow: bool,
    /// The first log offset to print (default 0).
    #[arg(long, default_value_t = 0)]
    pub since: u64,
    /// Only this stream of a command session.
    #[arg(long, value_parser = parse_stream, conflicts_with = "raw")]
    pub stream: Option<Stream>,
    /// The log's bytes in order, all to stdout, without telling streams apart.
    #[arg(long)]
    pub raw: bool,
}

fn parse_stream(s: &str) -> Result<Stream, String> {
    match s {
        "stdout" => Ok(Stream::Stdout),
        "stderr" => Ok(Stream::Stderr),
        _ => Err(format!("{s:?} is not stdout or stderr")),
    }
}

/// Where output goes.
struct Sink {
    only: Option<Stream>,
    raw: bool,
}

impl Sink {
    fn write(&self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        if let Some(only) = self.only
            && only != stream
        {
            return Ok(());
        }
        if !self.raw && stream == Stream::Stderr {
            let mut e = std::io::stderr();
            e.write_all(data)?;
            e.flush()
        } else {
            let mut o = std::io::stdout();
            o.write_all(data)?;
            o.flush()
        }
    }
}

pub async fn logs(global: &GlobalArgs, args: LogsArgs) -> Result<i32, Failure> {
    let client = global.client()?;
    let id = super::session_id(&args.id)?;
    let fail = |e| Failure::from_client(e, global);
    let info = client.session(&id).await.map_err(fail)?;
    let sink = Sink {
        only: args.stream,
        raw: args.raw,
    };
    let io = |e| Failure::io("cannot write the output", e);
    let mut next = args.since;
    if !args.follow || !info.status.is_running() {
        // Read what there is now, page by page.
        loop {
            if args.raw {
                let page = match client.output_raw(&id, next, None).await {
                    Err(e) if e.code() == Some(ErrorCode::OutputGone) => {
                        next = skip_gone(&client, &id, e).await?;
                        continue;
                    }
                    r => r.map_err(fail)?,
                };
                sink.write(Stream::Stdout, &page.data).map_err(io)?;
                if page.data.is_empty() || page.next_offset >= page.end_offset {
                    return Ok(exit::OK);
                }
                next = page.next_offset;
            } else {
                let page = match client.output_page(&id, next, None).await {
                    Err(e) if e.code() == Some(ErrorCode::OutputGone) => {
                        next = skip_gone(&client, &id, e).await?;
                        continue;
                    }
                    r => r.map_err(fail)?,
                };
                for c in &page.chunks {
                    let bytes = match c.encoding {
                        ChunkEncoding::Utf8 => c.data.as_bytes().to_vec(),
                        ChunkEncoding::Base64 => base64::engine::general_purpose::STANDARD
                            .decode(&c.data)
                            .map_err(|e| Failure::new(exit::FAILURE, format!("bad base64 from the server: {e}")))?,
                    };
                    sink.write(c.stream, &bytes).map_err(io)?;
                }
                if page.chunks.is_empty() || page.next_offset >= page.end_offset {
                    return Ok(exit::OK);
                }
                next = page.next_offset;
            }
        }
    }
    follow(
        global,
        &client,
        id,
        LogPosition {
            epoch: info.epoch,
            offset: next,
        },
        &sink,
    )
    .await
}

/// Says output was deleted and returns the earliest offset still held.
async fn skip_gone(_client: &Client, id: &SessionId, e: termstream_client::Error) -> Result<u64, Failure> {
    match e {
        termstream_client::Error::Api { detail, .. } if detail.earliest_offset.is_some() => {
            let earliest = detail.earliest_offset.unwrap_or(0);
            // Not `eprintln!`, which panics when stderr is gone.
            let _ = writeln!(
                std::io::stderr(),
                "termstream: output of {id} before offset {earliest} is no longer held"
            );
            Ok(earliest)
        }
        e => Err(Failure::new(exit::FAILURE, e.to_string())),
    }
}

async fn follow(
    global: &GlobalArgs,
    client: &Client,
    id: SessionId,
    since: LogPosition,
    sink: &Sink,
) -> Result<i32, Failure> {
    let (conn, mut events) = Connection::open(client.clone(), ConnectOptions::default());
    conn.attach(id.clone(), Some(since), Resume::Exact)
        .await
        .map_err(|e| Failure::from_client(e, global))?;
    let mut followed = Followed::new(Some(since), Resume::Exact);
    let result = loop {
        let Some(ev) = events.recv().await else {
            break Err(Failure::new(exit::FAILURE, "the connection to the server ended"));
        };
        // Let go by the server's node, not deleted: followed again.
        match followed.step(&conn, &id, &ev).await {
            Ok(Step::Pass) => {}
            Ok(Step::Taken | Step::Reattached) => continue,
            // Deleted (or its id taken again, or not back within the
            // server's attach wait): the end, as ever.
            Ok(Step::Gone) => break Ok(exit::OK),
            Err(f) => break Err(f),
        }
        match ev {
            Event::Output {
                session_id,
                stream,
                data,
                ..
            } if session_id == id => {
                if let Err(e) = sink.write(stream, &data) {
                    break Err(Failure::io("cannot write the output", e));
                }
            }
            Event::Gap {
                session_id,
                from,
                to,
                reason,
            } if session_id == id => {
                let _ = writeln!(
                    std::io::stderr(),
                    "termstream: output {from}..{to} of {id} is lost ({reason:?})"
                );
            }
            Event::Exit { session_id, .. } if session_id == id => {
                break Ok(exit::OK);
            }
            Event::ServerError {
                code,
                message,
                session_id,
                ..
            } if session_id.as_ref() == Some(&id) => {
                break Err(Failure::from_socket(code, message));
            }
            Event::Failed { error } => {
                break Err(Failure::from_socket(
                    error.code().unwrap_or(ErrorCode::Internal),
                    error.to_string(),
                ));
            }
            _ => {}
        }
    };
    conn.close().await;
    result
}
