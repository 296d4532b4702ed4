//! `termstream run`'s command line: the session to create (`--id`,
//! `--project`, `--cwd`, `--env K=V`, `--tty`), `--timeout` and the
//! program, with the parsers of durations and `K=V`.

use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The id to give the session (generated when absent).
    #[arg(long)]
    pub id: Option<String>,
    /// The project the session belongs to.
    #[arg(long)]
    pub project: Option<String>,
    /// The working directory on the server.
    #[arg(long)]
    pub cwd: Option<String>,
    /// An environment variable for the program (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Run on a pseudo-terminal (one output stream, a window size).
    #[arg(long)]
    pub tty: bool,
    /// Terminate the session after this long (e.g. 30s, 500ms, 5m) and exit 124.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// The program and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not K=V"))
}

/// Parses `500ms`, `30s`, `5m`, `2h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 500ms, 30s, 5m, 2h)");
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
    }
}
