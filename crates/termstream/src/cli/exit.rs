//! Exit codes of the client verbs, and the one-line failure that goes with
//! each. The table is in the README ("Exit codes").

use termstream_client::Error;
use termstream_proto::ErrorCode;

use super::GlobalArgs;

/// Success.
pub const OK: i32 = 0;
/// The server answered an error not listed below, or a local I/O error.
pub const FAILURE: i32 = 1;
/// Bad arguments (clap uses 2 as well).
pub const USAGE: i32 = 2;
/// No session has that id (or the token may not see it).
pub const NOT_FOUND: i32 = 66;
/// The server cannot be reached.
pub const UNREACHABLE: i32 = 69;
/// The server refused the credential, or it does not allow this.
pub const AUTH: i32 = 77;
/// `run` of a program the server cannot start (as a shell answers).
pub const NOT_RUNNABLE: i32 = 127;
/// `run --timeout` ran out and the session was terminated.
pub const TIMEOUT: i32 = 124;
/// Stdout was closed (`| head`): the exit is a local program's ended by
/// SIGPIPE, without a word; `run` terminates its program first.
pub const BROKEN_PIPE: i32 = 141;
/// Interrupted with Ctrl-C.
pub const INTERRUPTED: i32 = 130;
/// The session came back `lost` after a server restart.
pub const LOST: i32 = 255;

/// A verb's failure: the line to print (none when empty) and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// The failure for a client error, with what to do about it.
    pub fn from_client(e: Error, global: &GlobalArgs) -> Failure {
        match &e {
            Error::Unreachable { .. } => Failure::new(
                UNREACHABLE,
                format!(
                    "{e}. Is the server running? Start it with `termstream serve`, or point --server (TERMSTREAM_SERVER) at it."
                ),
            ),
            Error::InvalidUrl { .. } => Failure::new(USAGE, format!("{e}. Give --server as http(s)://HOST:PORT.")),
            Error::Tls(_) => Failure::new(USAGE, format!("{e}. Check --cacert.")),
            Error::Api { detail, .. } => match detail.code {
                ErrorCode::Unauthorized => Failure::new(
                    AUTH,
                    format!(
                        "the server refused the credential: {}. {}",
                        detail.message,
                        if global.token.is_some() {
                            "Check --token (TERMSTREAM_TOKEN)."
                        } else {
                            "Give a token with --token or TERMSTREAM_TOKEN."
                        }
                    ),
                ),
                ErrorCode::Forbidden | ErrorCode::ReadOnly => Failure::new(
                    AUTH,
                    format!(
                        "the token does not allow this: {}. Use a token with write access to the project.",
                        detail.message
                    ),
                ),
                ErrorCode::SessionNotFound => Failure::new(
                    NOT_FOUND,
                    format!("{}. `termstream ls` lists the sessions.", detail.message),
                ),
                _ => Failure::new(FAILURE, e.to_string()),
            },
            Error::Protocol(_) | Error::Closed => Failure::new(FAILURE, e.to_string()),
        }
    }

    /// The failure for an `error` message of the socket.
    pub fn from_socket(code: ErrorCode, message: String) -> Failure {
        let code = match code {
            ErrorCode::SessionNotFound => {
                return Failure::new(NOT_FOUND, format!("{message}. `termstream ls` lists the sessions."));
            }
            ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::ReadOnly => AUTH,
            _ => FAILURE,
        };
        Failure::new(code, message)
    }

    /// A local I/O failure. A closed stdout (`| head`) is no failure to
    /// speak of: the exit is quiet, with the code of a program ended by
    /// SIGPIPE (which stays ignored, see `cli::main`).
    pub fn io(what: &str, e: std::io::Error) -> Failure {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Failure::new(BROKEN_PIPE, "");
        }
        Failure::new(FAILURE, format!("{what}: {e}"))
    }
}

/// The exit code of a program that ended with `exit_code` or `signal`.
pub fn of_program(exit_code: Option<i32>, signal: Option<i32>) -> i32 {
    match (exit_code, signal) {
        (_, Some(n)) => 128 + n,
        (Some(c), None) => c,
        (None, None) => FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_exit_with_128_plus_n() {
        assert_eq!(of_program(Some(3), None), 3);
        assert_eq!(of_program(None, Some(15)), 143);
        assert_eq!(of_program(None, Some(9)), 137);
        assert_eq!(of_program(None, None), FAILURE);
    }
}
