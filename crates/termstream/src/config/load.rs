//! Where the configuration comes from, and its checks: defaults, then a
//! TOML file (named, or the first of [`default_files`] that exists), then
//! `TERMSTREAM_*` environment variables, then command-line flags, each
//! overriding the last ([`Config::load`]). A variable that names no setting
//! is warned about; a key of the file that names none, or a value out of
//! range, is an error naming it.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, error::Kind};
use serde::Serialize;

use super::tokens::{self, TokenEntry};
use super::{Config, MAX_SESSION_CHANGES_QUEUE, MAX_SPARE_SESSIONS};

/// `TERMSTREAM_*` variables that are not settings: `TERMSTREAM_CONFIG`
/// names the file, `TERMSTREAM_SESSION` is the marker every session's
/// processes carry (a server started inside a session must not refuse it),
/// `TERMSTREAM_ADMIN_TOKEN` is a plain token (hashed at once, kept only as
/// its hash) and `TERMSTREAM_LOG_FORMAT` is read with the flags.
pub const NOT_SETTINGS: [&str; 4] = ["config", "session", "admin_token", "log_format"];

/// Settings that are lists of strings: in a variable they may be written
/// `PATH HOME`, `PATH,HOME` or as a TOML array `["PATH","HOME"]`.
pub const STRING_LISTS: [&str; 4] = ["env_allowlist", "allowed_origins", "allowed_hosts", "trusted_proxies"];

/// Where the config file is looked for when neither `--config` nor
/// `TERMSTREAM_CONFIG` names one, in order: the first that exists is read.
pub fn default_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(d) => files.push(PathBuf::from(d).join("termstream/config.toml")),
        None => {
            if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                files.push(PathBuf::from(h).join(".config/termstream/config.toml"));
            }
        }
    }
    files.push(PathBuf::from("/etc/termstream/config.toml"));
    files
}

/// The config file to read: the one named (`--config` or
/// `TERMSTREAM_CONFIG`), else the first of [`default_files`] that exists.
pub fn find_file(named: Option<&Path>) -> Option<PathBuf> {
    match named {
        Some(f) => Some(f.to_owned()),
        None => default_files().into_iter().find(|f| f.is_file()),
    }
}

/// Every setting's name, sorted.
pub fn keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The `TERMSTREAM_*` variables of `vars` that name no setting: the server
/// warns about each and starts anyway.
pub fn unknown_variables(vars: impl Iterator<Item = (String, String)>) -> Vec<String> {
    let known = keys();
    vars.filter_map(|(k, _)| {
        let key = k.strip_prefix("TERMSTREAM_")?.to_ascii_lowercase();
        (!known.contains(&key) && !NOT_SETTINGS.contains(&key.as_str())).then_some(k)
    })
    .collect()
}

/// A list written in a variable: a TOML array is left to figment (`None`);
/// otherwise items separated by commas and/or white space.
pub(super) fn split_list(value: &str) -> Option<Vec<String>> {
    if value.trim_start().starts_with('[') {
        return None;
    }
    Some(
        value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

impl Config {
    /// Loads the configuration: defaults < `file` (if given) <
    /// `TERMSTREAM_*` variables < `overrides` (the flags that were given).
    /// A variable that names no setting is warned about and ignored; a key
    /// of the file that names none is an error that names the key and the
    /// file.
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            anyhow::ensure!(file.exists(), "config file {} does not exist", file.display());
            fig = fig.merge(Toml::file(file));
        }
        for var in unknown_variables(std::env::vars()) {
            tracing::warn!("{var} is not a termstream setting; it is ignored");
        }
        let known = keys();
        let lists: std::collections::BTreeMap<String, Vec<String>> = STRING_LISTS
            .iter()
            .filter_map(|k| {
                let v = std::env::var(format!("TERMSTREAM_{}", k.to_ascii_uppercase())).ok()?;
                Some((k.to_string(), split_list(&v)?))
            })
            .collect();
        let split: Vec<String> = lists.keys().cloned().collect();
        let env = Env::prefixed("TERMSTREAM_")
            .ignore(&NOT_SETTINGS)
            .filter(move |k| known.iter().any(|n| k == n.as_str()) && !split.iter().any(|n| k == n.as_str()));
        let mut config: Config = fig
            .merge(env)
            .merge(Serialized::defaults(lists))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {}", describe(e)))?;
        anyhow::ensure!(
            config.max_cols > 0 && config.max_rows > 0,
            "invalid configuration: max_cols and max_rows must be at least 1"
        );
        let screens = crate::session::screen::screens_bytes(config.max_cols, config.max_rows);
        anyhow::ensure!(
            screens <= crate::session::screen::SCREEN_BUDGET,
            "invalid configuration: a {}x{} window's screens take {screens} bytes, more than a screen model's budget of {} bytes; lower max_cols or max_rows",
            config.max_cols,
            config.max_rows,
            crate::session::screen::SCREEN_BUDGET,
        );
        // Each spare is four inodes, made ahead on the data dir's disk.
        anyhow::ensure!(
            config.spare_sessions <= MAX_SPARE_SESSIONS,
            "invalid configuration: spare_sessions must be at most {MAX_SPARE_SESSIONS}"
        );
        // 0 would cut off every client before its first header.
        anyhow::ensure!(
            config.http_header_timeout_ms > 0,
            "invalid configuration: http_header_timeout_ms must be at least 1"
        );
        anyhow::ensure!(
            config.http_body_timeout_ms > 0,
            "invalid configuration: http_body_timeout_ms must be at least 1"
        );
        anyhow::ensure!(
            config.max_focused > 0,
            "invalid configuration: max_focused must be at least 1"
        );
        anyhow::ensure!(
            (1..=MAX_SESSION_CHANGES_QUEUE).contains(&config.session_changes_queue),
            "invalid configuration: session_changes_queue must be from 1 to {MAX_SESSION_CHANGES_QUEUE}"
        );
        if config.flood_nice != 0 {
            warn_flood_nice_ignored();
        }
        if let Some(t) = std::env::var("TERMSTREAM_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()) {
            config.tokens.push(TokenEntry {
                name: Some("env".into()),
                sha256: tokens::hash(&t),
                admin: true,
                projects: Default::default(),
            });
        }
        Ok(config)
    }
}

/// Warns, once per process (not again on each reload), that `flood_nice`
/// is set but does nothing any more.
fn warn_flood_nice_ignored() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "flood_nice is ignored: lowering flooding sessions' CPU priority was removed because it made echo latency worse"
        );
    });
}

/// A figment error in one sentence per problem, naming the key and where
/// it came from (the file's path, or the variable).
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let source = e
                .metadata
                .as_ref()
                .and_then(|m| m.source.as_ref())
                .map(|s| format!(" in {s}"))
                .unwrap_or_default();
            match &e.kind {
                Kind::UnknownField(key, _) => format!("unknown key `{key}`{source}"),
                _ => {
                    let path = e.path.join(".");
                    if path.is_empty() {
                        format!("{}{source}", e.kind)
                    } else {
                        format!("`{path}`: {}{source}", e.kind)
                    }
                }
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
