//! `termstream events publish TYPE --field k=v...`: publish an event to the
//! sockets subscribed to its channel.

use std::io::Write;

use serde_json::{Map, Value};

use super::GlobalArgs;
use super::exit::{self, Failure};

#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Publish one event (task_status, notification or activity_log).
    Publish(PublishArgs),
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The event's type (its channel).
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// A field: `k=v` for a string, `k:=JSON` for a number, object, ...
    #[arg(long = "field", short = 'f', value_name = "K=V", value_parser = parse_field)]
    pub fields: Vec<(String, Value)>,
}

/// `k=v` is a string; `k:=json` is any JSON value.
fn parse_field(s: &str) -> Result<(String, Value), String> {
    if let Some((k, v)) = s.split_once(":=")
        && !k.contains('=')
    {
        let v = serde_json::from_str(v).map_err(|e| format!("the value of {k} is not JSON: {e}"))?;
        return Ok((k.to_owned(), v));
    }
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), Value::String(v.to_owned()))),
        _ => Err(format!("{s:?} is not K=V or K:=JSON")),
    }
}

pub async fn events(global: &GlobalArgs, command: EventsCommand) -> Result<i32, Failure> {
    let EventsCommand::Publish(args) = command;
    let client = global.client()?;
    let mut event = Map::new();
    event.insert("type".into(), Value::String(args.kind));
    for (k, v) in args.fields {
        event.insert(k, v);
    }
    let n = client
        .publish_event(&event)
        .await
        .map_err(|e| Failure::from_client(e, global))?;
    writeln!(
        std::io::stdout(),
        "delivered to {n} receiver{}",
        if n == 1 { "" } else { "s" }
    )
    .map_err(|e| Failure::io("cannot write the output", e))?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_strings_unless_json_is_asked_for() {
        assert_eq!(
            parse_field("title=a=b"),
            Ok(("title".into(), Value::String("a=b".into())))
        );
        assert_eq!(parse_field("priority:=3"), Ok(("priority".into(), Value::from(3))));
        assert_eq!(
            parse_field("url=http://x:=y"),
            Ok(("url".into(), Value::String("http://x:=y".into())))
        );
        assert!(parse_field("novalue").is_err());
        assert!(parse_field("n:={").is_err());
    }
}
