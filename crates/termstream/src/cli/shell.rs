//! `termstream shell`: a new pty session running the server's default
//! shell, attached at once.

use termstream_proto::{CreateSession, SessionKind};

use super::exit::{self, Failure};
use super::{GlobalArgs, attach, detach_keys, term};

#[derive(Debug, clap::Args)]
pub struct ShellArgs {
    /// The project the session belongs to.
    #[arg(long)]
    pub project: Option<String>,
    /// The id to give the session (generated when absent).
    #[arg(long)]
    pub id: Option<String>,
    /// The detach sequence: comma-separated keys, each a character or ctrl-X.
    #[arg(long, default_value = detach_keys::DEFAULT)]
    pub detach_keys: String,
}

pub async fn shell(global: &GlobalArgs, args: ShellArgs) -> Result<i32, Failure> {
    let client = global.client()?;
    let keys =
        detach_keys::parse(&args.detach_keys).map_err(|e| Failure::new(exit::USAGE, format!("--detach-keys: {e}")))?;
    let size = term::window_size();
    let req = CreateSession {
        id: args.id.as_deref().map(super::session_id).transpose()?,
        kind: Some(SessionKind::Pty),
        cols: size.map(|s| s.0),
        rows: size.map(|s| s.1),
        project: super::project(args.project.as_deref())?,
        ..CreateSession::default()
    };
    let info = client
        .create_session(&req)
        .await
        .map_err(|e| Failure::from_client(e, global))?;
    attach::attach_session(global, &client, info.id, false, keys).await
}
