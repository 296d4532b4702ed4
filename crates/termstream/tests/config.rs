//! Configuration sources and their order: flags over `TERMSTREAM_*`
//! environment variables over the TOML file over defaults, observed through
//! the running-session limit; and a server started inside a session.
//! What goes through `Config::load` runs the binary with a cleared
//! environment ([`run_serve`]), so that no `TERMSTREAM_*` variable of the
//! machine running the tests takes part.

mod common;

use common::{TestServer, secs, wait_until};
use serde_json::json;

/// How many `sleep` command sessions the server accepts before it answers
/// 503; stops at `most + 1` tries.
async fn running_limit(server: &TestServer, most: usize) -> usize {
    let mut ids = Vec::new();
    for _ in 0..=most {
        let (status, body) = server
            .post("/api/sessions", json!({ "kind": "command", "argv": ["sleep", "1000"] }))
            .await;
        if status == 503 {
            assert_eq!(body["error"]["code"], "capacity", "{body}");
            break;
        }
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        server.terminate(id).await;
    }
    ids.len()
}

fn config_file(dir: &std::path::Path, toml: &str) -> String {
    let path = dir.join("termstream.toml");
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn flags_override_env_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "max_running_sessions = 1\n");

    let server = TestServer::start_with(&["--config", &file], &[]).await;
    assert_eq!(running_limit(&server, 5).await, 1, "the file sets the limit");
    drop(server);

    let env = [("TERMSTREAM_MAX_RUNNING_SESSIONS", "2")];
    let server = TestServer::start_with(&["--config", &file], &env).await;
    assert_eq!(running_limit(&server, 5).await, 2, "the environment overrides the file");
    drop(server);

    let server = TestServer::start_with(&["--config", &file, "--max-running-sessions", "3"], &env).await;
    assert_eq!(running_limit(&server, 5).await, 3, "the flag overrides the environment");
}

#[tokio::test]
async fn a_server_starts_inside_a_session() {
    // Every session's processes carry `TERMSTREAM_SESSION=<epoch>`; a server
    // started from one must not take it for a setting and refuse to start.
    let server = TestServer::start_with(&[], &[("TERMSTREAM_SESSION", "00000000deadbeef")]).await;
    let (status, body) = server.get("/health").await;
    assert_eq!((status.as_u16(), body), (200, json!({ "status": "ok" })));
}

/// Runs `termstream serve` with `args` and exactly `env` (plus `PATH`);
/// its exit success, stdout and stderr.
fn run_serve(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_termstream"))
        .arg("serve")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run termstream");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_config_file_is_looked_up_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("termstream")).unwrap();
    std::fs::create_dir_all(home.join(".config/termstream")).unwrap();
    std::fs::write(xdg.join("termstream/config.toml"), "ring_bytes = 111\n").unwrap();
    std::fs::write(home.join(".config/termstream/config.toml"), "ring_bytes = 222\n").unwrap();
    let named = config_file(dir.path(), "ring_bytes = 333\n");
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "ring_bytes = 444\n").unwrap();
    let (home, xdg) = (home.to_str().unwrap(), xdg.to_str().unwrap());

    let (_, out, _) = run_serve(&["--print-config"], &[("HOME", home), ("XDG_CONFIG_HOME", xdg)]);
    assert!(out.contains("ring_bytes = 111\n"), "XDG_CONFIG_HOME first:\n{out}");
    let (_, out, _) = run_serve(&["--print-config"], &[("HOME", home)]);
    assert!(
        out.contains("ring_bytes = 222\n"),
        "~/.config without XDG_CONFIG_HOME:\n{out}"
    );
    let env = [
        ("HOME", home),
        ("XDG_CONFIG_HOME", xdg),
        ("TERMSTREAM_CONFIG", named.as_str()),
    ];
    let (_, out, _) = run_serve(&["--print-config"], &env);
    assert!(out.contains("ring_bytes = 333\n"), "TERMSTREAM_CONFIG over XDG:\n{out}");
    let (_, out, _) = run_serve(&["--print-config", "--config", other.to_str().unwrap()], &env);
    assert!(
        out.contains("ring_bytes = 444\n"),
        "--config over TERMSTREAM_CONFIG:\n{out}"
    );
    assert!(out.contains(&format!("# config file: {}", other.display())), "{out}");
}

#[test]
fn variables_warn_split_lists_and_file_keys_stay_strict() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("HOME", "/nonexistent"),
        ("TERMSTREAM_LOG", "debug"),
        ("TERMSTREAM_ENV_ALLOWLIST", "PATH HOME,TZ"),
        ("TERMSTREAM_ALLOWED_HOSTS", r#"["a.example","b.example"]"#),
        ("TERMSTREAM_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
    ];
    let (ok, out, err) = run_serve(&["--print-config"], &env);
    assert!(ok, "an unknown variable stopped the start: {err}");
    assert!(err.contains("TERMSTREAM_LOG is not a termstream setting"), "{err}");
    assert!(out.contains(r#"env_allowlist = ["PATH", "HOME", "TZ"]"#), "{out}");
    assert!(out.contains(r#"allowed_hosts = ["a.example", "b.example"]"#), "{out}");
    assert!(
        out.contains(r#"trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]"#),
        "{out}"
    );

    let file = config_file(dir.path(), "ring_bytes = 5\nbogus_key = 1\n");
    let (ok, _, err) = run_serve(&["--print-config", "--config", &file], &[("HOME", "/nonexistent")]);
    assert!(!ok, "an unknown key in the file was accepted");
    assert!(err.contains("bogus_key") && err.contains(&file), "{err}");
}

#[test]
fn print_config_redacts_tokens_and_help_shows_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let hash = "ab".repeat(32);
    let file = config_file(
        dir.path(),
        &format!("[[tokens]]\nname = \"ops\"\nsha256 = \"{hash}\"\nadmin = true\n"),
    );
    let env = [
        ("HOME", "/nonexistent"),
        ("TERMSTREAM_ADMIN_TOKEN", "plain-secret-token"),
    ];
    let (ok, out, err) = run_serve(&["--print-config", "--config", &file], &env);
    assert!(ok, "{err}");
    assert!(!out.contains(&hash) && !out.contains("plain-secret-token"), "{out}");
    assert!(out.contains("<redacted>") && out.contains("\"ops\""), "{out}");

    let (_, help, _) = run_serve(&["--help"], &[]);
    assert!(help.contains("[default: 127.0.0.1:8000]"), "{help}");
    assert!(help.contains("[default: 2000]"), "{help}");
    assert!(help.contains("[default: 10000]"), "shutdown timeout: {help}");
}

/// The README's table of settings, between its markers: rows of
/// (key, default, variable, flag).
fn readme_table() -> Vec<[String; 4]> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = readme.find("<!-- config-table:start -->").expect("table start marker");
    let end = readme.find("<!-- config-table:end -->").expect("table end marker");
    readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l
                .split(" | ")
                .map(|c| c.trim_matches(['|', ' ', '`']).to_owned())
                .collect();
            [cells[0].clone(), cells[1].clone(), cells[2].clone(), cells[3].clone()]
        })
        .collect()
}

#[test]
fn the_readme_table_matches_the_code() {
    // `data_dir`'s default is derived from XDG_DATA_HOME: given as the
    // literal `$XDG_DATA_HOME`, it prints as the README shows it.
    let (ok, out, err) = run_serve(
        &["--print-config"],
        &[("HOME", "/nonexistent"), ("XDG_DATA_HOME", "$XDG_DATA_HOME")],
    );
    assert!(ok, "{err}");
    let mut expected: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| {
            if let Some(k) = l.strip_prefix("# ").and_then(|l| l.strip_suffix(": unset")) {
                return Some((k.to_owned(), "unset".to_owned()));
            }
            let (k, v) = l.split_once(" = ")?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect();
    expected.sort();
    let table = readme_table();
    let documented: Vec<(String, String)> = table.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    let rows: String = expected
        .iter()
        .map(|(k, d)| format!("| `{k}` | `{d}` | `TERMSTREAM_{}` | ... |\n", k.to_uppercase()))
        .collect();
    assert_eq!(
        documented, expected,
        "README's table (key, default) differs from the code; expected rows:\n{rows}"
    );
    for r in &table {
        assert_eq!(
            r[2],
            format!("TERMSTREAM_{}", r[0].to_uppercase()),
            "variable of {}",
            r[0]
        );
    }
    // Every flag in the table exists, and every setting's flag is in it.
    let (_, help, _) = run_serve(&["--help"], &[]);
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split([' ', '\t']).next())
        // The client verbs' global flags (`--server`, `--token`, `--cacert`)
        // show in every command's help; they are not server settings.
        .filter(|f| {
            ![
                "config",
                "print-config",
                "log-format",
                "help",
                "version",
                "server",
                "token",
                "cacert",
            ]
            .contains(f)
        })
        .collect();
    let in_table: Vec<String> = table.iter().filter(|r| r[3] != "—").map(|r| r[3].clone()).collect();
    for f in &flags {
        assert!(in_table.contains(&format!("--{f}")), "--{f} is not in README's table");
    }
    assert_eq!(
        in_table.len(),
        flags.len(),
        "README lists flags that --help does not: {in_table:?}"
    );
}

#[tokio::test]
async fn a_list_variable_takes_spaces() {
    let server = TestServer::start_with(
        &[],
        &[
            ("TERMSTREAM_ENV_ALLOWLIST", "PATH OPS_PROBE"),
            ("OPS_PROBE", "seen-by-program"),
        ],
    )
    .await;
    let info = server
        .create(json!({ "kind": "command", "command": "echo probe=$OPS_PROBE" }))
        .await;
    let id = info["id"].as_str().unwrap();
    server
        .read_output_until(id, "probe=seen-by-program", std::time::Duration::from_secs(10))
        .await;
}

/// Each spare is four inodes on the data dir's disk: a pool past the
/// bound is refused before anything is made.
#[test]
fn a_pool_of_spares_past_its_bound_is_refused() {
    let env = [("HOME", "/nonexistent"), ("TERMSTREAM_SPARE_SESSIONS", "100000000")];
    let (ok, _, err) = run_serve(&["--print-config"], &env);
    assert!(!ok, "100000000 spares were accepted");
    assert!(err.contains("spare_sessions must be at most 4096"), "{err}");
}

/// Values the server cannot run with are refused, naming the setting.
#[test]
fn settings_out_of_range_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let spares = format!("spare_sessions = {}", termstream::config::MAX_SPARE_SESSIONS + 1);
    for (line, named) in [
        ("max_cols = 0", "max_cols"),
        (spares.as_str(), "spare_sessions"),
        ("http_header_timeout_ms = 0", "http_header_timeout_ms"),
        ("http_body_timeout_ms = 0", "http_body_timeout_ms"),
        ("max_focused = 0", "max_focused"),
        ("no_such_setting = 1", "no_such_setting"),
    ] {
        let file = config_file(dir.path(), &format!("{line}\n"));
        let (ok, _, err) = run_serve(&["--print-config", "--config", &file], &[("HOME", "/nonexistent")]);
        assert!(!ok, "{line} was accepted");
        assert!(err.contains(named), "{line}: {err}");
    }
}

/// What `flood_nice` being ignored is warned with.
const FLOOD_NICE_IGNORED: &str = "flood_nice is ignored";

/// `flood_nice` does nothing any more, but files and environments that set
/// it must still load (its old range, 0 to 19, is no longer checked), with
/// one warning that it is ignored; left at 0, nothing is said.
#[test]
fn flood_nice_is_accepted_and_warned_about_once() {
    let env = [("HOME", "/nonexistent"), ("TERMSTREAM_FLOOD_NICE", "10")];
    let (ok, _, err) = run_serve(&["--print-config"], &env);
    assert!(ok, "TERMSTREAM_FLOOD_NICE=10 stopped the start: {err}");
    assert_eq!(err.matches(FLOOD_NICE_IGNORED).count(), 1, "{err}");
    assert!(!err.contains("not a termstream setting"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "flood_nice = 40\nring_bytes = 4096\n");
    let (ok, out, err) = run_serve(&["--print-config", "--config", &file], &[("HOME", "/nonexistent")]);
    assert!(ok, "flood_nice = 40 in a file stopped the start: {err}");
    assert!(
        out.contains("ring_bytes = 4096\n"),
        "the rest of the file was lost:\n{out}"
    );
    assert_eq!(err.matches(FLOOD_NICE_IGNORED).count(), 1, "{err}");

    let env = [("HOME", "/nonexistent"), ("TERMSTREAM_FLOOD_NICE", "0")];
    let (ok, _, err) = run_serve(&["--print-config"], &env);
    assert!(ok, "{err}");
    assert!(!err.contains(FLOOD_NICE_IGNORED), "warned about the default: {err}");
}

/// The warning is once per process: a reload (SIGHUP), which reads the
/// configuration again, does not repeat it.
#[tokio::test]
async fn flood_nice_is_not_warned_about_again_on_a_reload() {
    let env = [("TERMSTREAM_FLOOD_NICE", "10"), ("RUST_LOG", "termstream=info")];
    let server = TestServer::start_logged(&[], &env).await;
    let pid = rustix::process::Pid::from_raw(server.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    assert!(
        wait_until(secs(10), || async { server.log().contains("SIGHUP: tokens reloaded") }).await,
        "no reload: {}",
        server.log()
    );
    let log = server.log();
    assert_eq!(log.matches(FLOOD_NICE_IGNORED).count(), 1, "{log}");
}
