//! Tests of the configuration: list variables, unknown variables, the
//! printed config, and settings kept only so that old files still parse.

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

/// `flood_nice` does nothing any more, but files and environments that set
/// it must still load (its old range, 0 to 19, is no longer checked).
#[test]
fn a_file_with_flood_nice_still_parses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "flood_nice = 10\nring_bytes = 4096\n").unwrap();
    let no_flags = std::collections::BTreeMap::<String, String>::new();
    let config = Config::load(Some(&file), &no_flags).expect("a file with flood_nice loads");
    assert_eq!(config.ring_bytes, 4096);
    std::fs::write(&file, "flood_nice = 40\n").unwrap();
    assert!(
        Config::load(Some(&file), &no_flags).is_ok(),
        "an old range check is left"
    );
    // Its variable is still a setting's, not warned about as unknown.
    let vars = [("TERMSTREAM_FLOOD_NICE".to_owned(), "10".to_owned())];
    assert!(unknown_variables(vars.into_iter()).is_empty());
}

/// Values the server cannot run with are refused, naming the setting.
#[test]
fn settings_out_of_range_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let no_flags = std::collections::BTreeMap::<String, String>::new();
    let spares = format!("spare_sessions = {}", MAX_SPARE_SESSIONS + 1);
    for (line, named) in [
        ("max_cols = 0", "max_cols"),
        (spares.as_str(), "spare_sessions"),
        ("http_header_timeout_ms = 0", "http_header_timeout_ms"),
        ("http_body_timeout_ms = 0", "http_body_timeout_ms"),
        ("max_focused = 0", "max_focused"),
        ("no_such_setting = 1", "no_such_setting"),
    ] {
        std::fs::write(&file, format!("{line}\n")).unwrap();
        let e = Config::load(Some(&file), &no_flags).expect_err(line);
        assert!(e.to_string().contains(named), "{line}: {e}");
    }
}
