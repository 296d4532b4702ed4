//! `termstream ls`: the sessions, as a table for people (a terminal), as
//! tab-separated lines for scripts (a pipe), or as the server's JSON.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use termstream_proto::{SessionInfo, SessionKind, SessionStatus};

use super::GlobalArgs;
use super::exit::{self, Failure};

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Only sessions of this project.
    #[arg(long)]
    pub project: Option<String>,
    /// Only sessions with this status.
    #[arg(long, value_parser = parse_status)]
    pub status: Option<SessionStatus>,
    /// Print `GET /api/sessions` as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_status(s: &str) -> Result<SessionStatus, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("{s:?} is not one of running, exited, terminated, failed, lost"))
}

pub async fn ls(global: &GlobalArgs, args: LsArgs) -> Result<i32, Failure> {
    let client = global.client()?;
    // A project no session can have is a typo, not an empty list.
    let project = super::project(args.project.as_deref())?.map(|p| p.to_string());
    let (list, compat) = tokio::join!(
        client.list_sessions(project.as_deref(), args.status),
        client.compat_sessions()
    );
    let list = list.map_err(|e| Failure::from_client(e, global))?;
    if args.json {
        let text = serde_json::to_string_pretty(&list).expect("a session list serializes");
        writeln!(std::io::stdout(), "{text}").map_err(|e| Failure::io("cannot write the output", e))?;
        return Ok(exit::OK);
    }
    // Viewers come from the older API's connection counts, when allowed.
    let viewers: HashMap<String, usize> = compat
        .map(|c| c.sessions.into_iter().map(|s| (s.session_id, s.connections)).collect())
        .unwrap_or_default();
    let now = termstream_now_ms();
    let rows: Vec<[String; 7]> = list
        .sessions
        .iter()
        .map(|s| {
            [
                s.id.to_string(),
                kind(s.kind).to_owned(),
                s.project.to_string(),
                status(s.status).to_owned(),
                exit_column(s),
                age(now.saturating_sub(s.created_at) / 1000),
                viewers.get(s.id.as_str()).map_or("-".to_owned(), usize::to_string),
            ]
        })
        .collect();
    let mut out = String::new();
    if std::io::stdout().is_terminal() {
        let header = ["ID", "KIND", "PROJECT", "STATUS", "EXIT", "AGE", "VIEWERS"].map(str::to_owned);
        let mut widths = [0usize; 7];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
    } else {
        for row in &rows {
            out.push_str(&row.join("\t"));
            out.push('\n');
        }
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .and_then(|()| std::io::stdout().flush())
        .map_err(|e| Failure::io("cannot write the output", e))?;
    Ok(exit::OK)
}

fn termstream_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn kind(k: SessionKind) -> &'static str {
    match k {
        SessionKind::Pty => "pty",
        SessionKind::Command => "command",
    }
}

fn status(s: SessionStatus) -> &'static str {
    match s {
        SessionStatus::Running => "running",
        SessionStatus::Exited => "exited",
        SessionStatus::Terminated => "terminated",
        SessionStatus::Failed => "failed",
        SessionStatus::Lost => "lost",
    }
}

fn exit_column(s: &SessionInfo) -> String {
    match (s.exit_code, s.signal) {
        (_, Some(n)) => format!("sig{n}"),
        (Some(c), None) => c.to_string(),
        (None, None) => "-".to_owned(),
    }
}

/// A short age: `42s`, `5m`, `3h`, `2d`.
pub fn age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// How a session ended, for people.
pub fn describe_end(s: &SessionInfo) -> String {
    match (s.exit_code, s.signal) {
        (_, Some(n)) => format!("{} by signal {n}", status(s.status)),
        (Some(c), None) => format!("{} with code {c}", status(s.status)),
        (None, None) => status(s.status).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(125), "2m");
        assert_eq!(age(7300), "2h");
        assert_eq!(age(200_000), "2d");
        assert_eq!(parse_status("lost"), Ok(SessionStatus::Lost));
        assert!(parse_status("dead").is_err());
    }
}
