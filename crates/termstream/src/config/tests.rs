//! Unit tests of the configuration that read neither the environment nor
//! files: list variables, unknown variables and the printed config. What
//! goes through `Config::load` (which reads `TERMSTREAM_*` variables) is
//! tested in `tests/config.rs`, on the binary with a cleared environment.

use super::load::split_list;
use super::*;

#[test]
fn lists_split_on_commas_and_spaces() {
    assert_eq!(split_list("PATH HOME").unwrap(), ["PATH", "HOME"]);
    assert_eq!(split_list("PATH,HOME").unwrap(), ["PATH", "HOME"]);
    assert_eq!(split_list(" PATH, HOME ,TZ ").unwrap(), ["PATH", "HOME", "TZ"]);
    assert!(split_list("[\"PATH\"]").is_none());
    assert!(split_list("").unwrap().is_empty());
}

#[test]
fn every_string_list_is_a_list() {
    let v = serde_json::to_value(Config::default()).unwrap();
    for k in STRING_LISTS {
        assert!(v[k].is_array(), "{k}");
    }
}

#[test]
fn unknown_variables_are_found() {
    let vars = [
        ("TERMSTREAM_LOG", "x"),
        ("TERMSTREAM_RING_BYTES", "1"),
        ("TERMSTREAM_SESSION", "e"),
        // Ignored, but still a setting's: not warned about as unknown.
        ("TERMSTREAM_FLOOD_NICE", "10"),
        ("PATH", "/bin"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    assert_eq!(unknown_variables(vars.into_iter()), ["TERMSTREAM_LOG"]);
}

#[test]
fn printed_config_redacts_tokens() {
    let mut c = Config::default();
    c.tokens.push(TokenEntry {
        name: Some("ops".into()),
        sha256: "ab".repeat(32),
        admin: true,
        projects: Default::default(),
    });
    let text = c.to_toml_redacted();
    assert!(!text.contains(&"ab".repeat(32)), "{text}");
    assert!(text.contains("<redacted>") && text.contains("ops"), "{text}");
    assert!(text.contains("# default_shell: unset"), "{text}");
    assert!(text.contains("ring_bytes = 1048576"), "{text}");
}
