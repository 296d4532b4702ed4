//! The `termstream` client verbs, run as the real binary against a real
//! server: `run` (streams, exit codes, stdin, timeouts), `ls`, `logs`,
//! `kill`, `rm`, `events`, `completions`, `man`, the errors' exit codes, and
//! what their help shows.

mod common;

use common::TestServer;
use common::cli::{self, CliOutput};
use serde_json::Value;

async fn tool(server: &TestServer, args: &[&str]) -> CliOutput {
    cli::run(&server.url(""), args, b"").await
}

#[tokio::test]
async fn run_keeps_stdout_and_stderr_apart_and_exits_with_the_code() {
    let server = TestServer::start().await;
    let out = tool(&server, &["run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, "err\n");
}

#[tokio::test]
async fn run_exits_as_the_program_did() {
    let server = TestServer::start().await;
    let table: &[(&[&str], i32)] = &[
        (&["run", "--", "true"], 0),
        (&["run", "--", "false"], 1),
        (&["run", "--", "sh", "-c", "exit 3"], 3),
        (&["run", "--", "sh", "-c", "no-such-program-here"], 127),
        (&["run", "--", "no-such-program-here"], 127),
        (&["run", "--", "sh", "-c", "kill -TERM $$"], 143),
        (&["run", "--", "sh", "-c", "kill -KILL $$"], 137),
        (&["run", "--timeout", "300ms", "--", "sleep", "30"], 124),
    ];
    let runs = table.iter().map(|(args, _)| tool(&server, args));
    let outs = futures_util::future::join_all(runs).await;
    for ((args, code), out) in table.iter().zip(outs) {
        assert_eq!(out.code, *code, "{args:?}: {out:?}");
    }
}

#[tokio::test]
async fn run_feeds_stdin_and_closes_it_at_its_end() {
    let server = TestServer::start().await;
    let out = cli::run(&server.url(""), &["run", "--", "wc", "-l"], b"a\nb\n").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout_text().trim(), "2");
    // Bytes that are not UTF-8 arrive as they were.
    let bytes: Vec<u8> = (0..=255u8).collect();
    let out = cli::run(&server.url(""), &["run", "--", "od", "-An", "-v", "-tx1"], &bytes).await;
    let hex: String = out.stdout_text().split_whitespace().collect();
    assert_eq!(hex, bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());
}

#[tokio::test]
async fn run_passes_id_cwd_env_and_project() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_str().unwrap();
    let out = tool(
        &server,
        &[
            "run",
            "--id",
            "job-1",
            "--project",
            "p1",
            "--cwd",
            cwd,
            "--env",
            "GREETING=hi there",
            "--",
            "sh",
            "-c",
            "pwd; echo $GREETING",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout_text(), format!("{cwd}\nhi there\n"));
    let info = server.info("job-1").await;
    assert_eq!(info["project"], "p1");
    assert_eq!(info["kind"], "command");
}

#[tokio::test]
async fn run_with_tty_runs_on_a_terminal() {
    let server = TestServer::start().await;
    let out = tool(
        &server,
        &["run", "--tty", "--", "sh", "-c", "test -t 1 && echo on-a-tty"],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout_text(), "on-a-tty\r\n");
}

#[tokio::test]
async fn ls_json_is_what_the_api_lists() {
    let server = TestServer::start().await;
    for id in ["a1", "a2"] {
        assert_eq!(
            tool(&server, &["run", "--id", id, "--project", "web", "--", "true"])
                .await
                .code,
            0
        );
    }
    let out = tool(&server, &["ls", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let listed: Value = serde_json::from_slice(&out.stdout).expect("ls --json prints JSON");
    let (_, api) = server.get("/api/sessions").await;
    assert_eq!(listed, api);
    assert_eq!(listed["total"], 2);
    // Filters reach the server; a pipe gets one tab-separated line per session.
    let (_, none) = server.get("/api/sessions?project=other").await;
    let out = tool(&server, &["ls", "--json", "--project", "other"]).await;
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), none);
    let out = tool(&server, &["ls", "--status", "exited"]).await;
    let lines: Vec<Vec<String>> = out
        .stdout_text()
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert_eq!(lines[0][1..5], ["command", "web", "exited", "0"]);
}

#[tokio::test]
async fn logs_prints_each_stream_to_its_side() {
    let server = TestServer::start().await;
    let run = tool(
        &server,
        &["run", "--id", "l1", "--", "sh", "-c", "echo o1; echo e1 >&2; echo o2"],
    )
    .await;
    assert_eq!(run.code, 0);
    let out = tool(&server, &["logs", "l1"]).await;
    assert_eq!(
        (out.code, out.stdout_text(), out.stderr.as_str()),
        (0, "o1\no2\n".into(), "e1\n")
    );
    let out = tool(&server, &["logs", "l1", "--stream", "stderr"]).await;
    assert_eq!((out.stdout_text(), out.stderr.as_str()), ("".into(), "e1\n"));
    // Raw: the log's bytes in the server's order, from an offset.
    let out = tool(&server, &["logs", "l1", "--raw", "--since", "3"]).await;
    assert_eq!(out.stdout, server.output("l1", 3).await);
    assert_eq!(out.stdout.len(), 6);
    assert_eq!(out.stderr, "");
}

#[tokio::test]
async fn logs_follow_prints_until_the_program_ends() {
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"f1","kind":"command","command":"echo first; read x; echo got-$x"}))
        .await;
    let child = cli::command(&server.url(""), &["logs", "--follow", "f1"]);
    let follow = tokio::spawn(cli::run_cmd(child, b""));
    server.read_output_until("f1", "first", common::secs(10)).await;
    server
        .post("/api/sessions/f1/input", serde_json::json!({"data":"later\n"}))
        .await;
    let out = follow.await.unwrap();
    assert_eq!(
        (out.code, out.stdout_text()),
        (0, "first\ngot-later\n".into()),
        "{out:?}"
    );
}

#[tokio::test]
async fn kill_terminates_and_rm_deletes() {
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"k1","kind":"command","argv":["sleep","30"]}))
        .await;
    let out = tool(&server, &["kill", "k1"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout_text().starts_with("k1: terminated"), "{out:?}");
    assert_eq!(server.info("k1").await["status"], "terminated");
    assert_eq!(tool(&server, &["rm", "k1"]).await.code, 0);
    assert_eq!(server.get("/api/sessions/k1").await.0, 404);
}

#[tokio::test]
async fn errors_say_what_to_do_with_distinct_codes() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_ADMIN_TOKEN", "right-token")]).await;
    let url = server.url("");
    // No token, a bad token: 77 and a hint about the token.
    let out = cli::run(&url, &["ls"], b"").await;
    assert_eq!(out.code, 77, "{out:?}");
    assert!(out.stderr.contains("--token"), "{out:?}");
    let out = cli::run(&url, &["--token", "wrong", "run", "--", "true"], b"").await;
    assert_eq!(out.code, 77, "{out:?}");
    // The right one works; an unknown session is 66 for every verb.
    let ok = |args: &[&str]| {
        let mut all = vec!["--token", "right-token"];
        all.extend_from_slice(args);
        all.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let url = url.clone();
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            cli::run(&url, &refs, b"").await
        }
    };
    assert_eq!(run(ok(&["ls"])).await.code, 0);
    for verb in ["logs", "kill", "rm", "attach"] {
        let out = run(ok(&[verb, "nope"])).await;
        assert_eq!(out.code, 66, "{verb}: {out:?}");
        assert!(
            out.stderr.contains("no session") && out.stderr.contains("termstream ls"),
            "{verb}: {out:?}"
        );
        assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
    }
    // Nothing listening: 69.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    for args in [&["ls"][..], &["run", "--", "true"]] {
        let out = cli::run(&dead_url, args, b"").await;
        assert_eq!(out.code, 69, "{out:?}");
        assert!(
            out.stderr.contains("cannot reach") && out.stderr.contains("--server"),
            "{out:?}"
        );
        // What failed, not only that a request did.
        assert!(out.stderr.contains("Connection refused"), "{out:?}");
    }
    // Something else on that port (a web server answering 404 in plain
    // text): the error says it is not a termstream answer.
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_url = format!("http://{}", other.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = other.accept().await {
            let mut head = [0u8; 4096];
            let _ = conn.read(&mut head).await;
            let _ = conn
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot here\n")
                .await;
        }
    });
    let out = cli::run(&other_url, &["ls"], b"").await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("is it a termstream server?") && out.stderr.contains("not here"),
        "{out:?}"
    );
    // A bad URL and a bad id are usage errors.
    assert_eq!(cli::run("ftp://x", &["ls"], b"").await.code, 2);
    assert_eq!(run(ok(&["logs", "a/b"])).await.code, 2);
    // So is a project no session can have (it listed nothing, exit 0).
    let out = run(ok(&["ls", "--project", "web app"])).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("bad project"), "{out:?}");
}

#[tokio::test]
async fn events_completions_and_man() {
    let server = TestServer::start().await;
    let out = tool(
        &server,
        &[
            "events",
            "publish",
            "notification",
            "--field",
            "title=t",
            "--field",
            "message=m",
            "--field",
            "priority:=2",
        ],
    )
    .await;
    assert_eq!(
        (out.code, out.stdout_text()),
        (0, "delivered to 0 receivers\n".into()),
        "{out:?}"
    );
    let out = tool(&server, &["events", "publish", "notification", "--field", "title=t"]).await;
    assert_eq!(out.code, 1, "a malformed event is refused: {out:?}");
    let out = tool(&server, &["completions", "bash"]).await;
    assert_eq!(out.code, 0);
    assert!(out.stdout_text().contains("attach") && out.stdout_text().contains("--detach-keys"));
    let out = tool(&server, &["man"]).await;
    assert!(
        out.stdout_text().starts_with(".ie") || out.stdout_text().contains(".TH termstream"),
        "{out:?}"
    );
}

#[tokio::test]
async fn run_of_a_program_terminated_elsewhere_says_so() {
    let server = TestServer::start().await;
    let mut cmd = cli::command(
        &server.url(""),
        &["run", "--id", "tk", "--", "sh", "-c", "echo up; sleep 60"],
    );
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let made = common::wait_until(common::secs(10), || async {
        server.get("/api/sessions/tk").await.0 == 200
    })
    .await;
    assert!(made, "run created no session");
    server.read_output_until("tk", "up", common::secs(10)).await;
    server.terminate("tk").await;
    let out = tokio::time::timeout(common::secs(30), child.wait_with_output())
        .await
        .expect("run ends with its program")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // SIGHUP is the first signal of a terminate.
    assert_eq!(out.status.code(), Some(129), "{stderr}");
    assert!(stderr.contains("tk was terminated (by `termstream kill`"), "{stderr}");
}

#[tokio::test]
async fn run_whose_output_is_closed_terminates_the_program() {
    use tokio::io::AsyncReadExt;
    // `termstream run -- yes | head -c 4`: once nothing reads, the program
    // ends as a local one would by SIGPIPE, instead of running on unseen.
    let server = TestServer::start().await;
    let mut cmd = cli::command(&server.url(""), &["run", "--id", "yes1", "--", "yes"]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut head = [0u8; 4];
    tokio::time::timeout(common::secs(10), stdout.read_exact(&mut head))
        .await
        .expect("output within the limit")
        .unwrap();
    assert_eq!(&head, b"y\ny\n");
    drop(stdout);
    let out = tokio::time::timeout(common::secs(30), child.wait_with_output())
        .await
        .expect("run ends once its output is closed")
        .unwrap();
    assert_eq!(out.status.code(), Some(141), "{out:?}");
    assert_eq!(server.info("yes1").await["status"], "terminated");
}

#[tokio::test]
async fn printing_verbs_end_quietly_when_their_reader_is_gone() {
    use std::os::unix::process::ExitStatusExt;
    // `termstream ls | head -1` once head has gone: the verb ends with the
    // code of a program ended by SIGPIPE (141), without a panic or an error
    // line; SIGPIPE itself stays ignored (a socket reset must not kill it).
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"said","kind":"command","argv":["echo","hello"]}))
        .await;
    server.read_output_until("said", "hello", common::secs(10)).await;
    for args in [
        &["ls"][..],
        &["ls", "--json"],
        &["logs", "said"],
        &["completions", "bash"],
        &["man"],
        // The server's own printing verbs (println!: a panic, exit 101).
        &["token", "create", "--admin"],
        &["serve", "--print-config"],
    ] {
        let (read, write) = rustix::pipe::pipe().unwrap();
        drop(read);
        let mut cmd = cli::command(&server.url(""), args);
        if args[0] == "serve" {
            // serve warns of a TERMSTREAM_ variable it does not know.
            cmd.env_remove("TERMSTREAM_SERVER");
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped());
        // (`output()` would replace the stdout given with a pipe of its own.)
        let child = cmd.spawn().unwrap();
        let out = tokio::time::timeout(common::secs(30), child.wait_with_output())
            .await
            .expect("ends")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), None, "{args:?}: {:?} {stderr}", out.status);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_client_verbs_help_shows_no_server_options() {
    // `--log-format` is how the server writes its log: it means nothing to
    // a client verb, and is a `serve` option (still taken before the verb).
    let nowhere = "http://127.0.0.1:9";
    for args in [
        &["run", "--help"][..],
        &["attach", "--help"],
        &["shell", "--help"],
        &["ls", "--help"],
        &["logs", "--help"],
        &["kill", "--help"],
        &["rm", "--help"],
        &["events", "publish", "--help"],
        &["completions", "--help"],
        &["man", "--help"],
        &["token", "create", "--help"],
        &["--help"],
    ] {
        let out = cli::run(nowhere, args, b"").await;
        let help = out.stdout_text();
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
        assert!(help.contains("Usage:"), "{args:?}: {help}");
        assert!(!help.contains("--log-format"), "{args:?}: {help}");
    }
    let out = cli::run(nowhere, &["serve", "--help"], b"").await;
    assert!(out.stdout_text().contains("--log-format"), "{out:?}");
    for args in [
        &["serve", "--log-format", "json", "--print-config"][..],
        &["--log-format", "json", "serve", "--print-config"],
    ] {
        let mut cmd = cli::command(nowhere, args);
        // serve warns of a TERMSTREAM_ variable it does not know.
        cmd.env_remove("TERMSTREAM_SERVER");
        let out = cli::run_cmd(cmd, b"").await;
        assert_eq!(out.code, 0, "{args:?}: {out:?}");
    }
    let out = cli::run(nowhere, &["ls", "--log-format", "json"], b"").await;
    assert_eq!(out.code, 2, "a client verb does not take it: {out:?}");
    // Nor before it, where it was once taken for every verb.
    let out = cli::run(nowhere, &["--log-format", "json", "ls"], b"").await;
    assert_eq!(out.code, 2, "nor before a client verb: {out:?}");
    assert!(format!("{out:?}").contains("serve"), "{out:?}");
}

#[tokio::test]
async fn serves_own_log_format_wins_over_one_before_the_verb() {
    // `termstream --log-format text serve --log-format json`: the option
    // given to serve itself is the one meant.
    use tokio::io::AsyncBufReadExt;
    let data = tempfile::tempdir().unwrap();
    let mut cmd = cli::command(
        "http://127.0.0.1:9",
        &["--log-format", "text", "serve", "--log-format", "json"],
    );
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env_remove("TERMSTREAM_SERVER")
        .env_remove("TERMSTREAM_LOG_FORMAT")
        .env("RUST_LOG", "termstream=info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("termstream serve starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = tokio::time::timeout(common::secs(10), lines.next_line())
        .await
        .expect("a log line")
        .unwrap()
        .expect("a log line");
    let _ = child.kill().await;
    assert!(serde_json::from_str::<Value>(&first).is_ok(), "not JSON: {first}");
}
