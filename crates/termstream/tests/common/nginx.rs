//! A real nginx for the reverse-proxy tests, run in the foreground with its
//! prefix, pid file, logs and temp paths in a temporary directory (never
//! the system service; `.ci/run` installs Debian's `nginx`).
//!
//! A test edits a config of `contrib/` into a site (its addresses and
//! ports) and hands it to [`spawn`], which wraps it in a main config and
//! waits until nginx listens on the site's port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{secs, wait_until};

/// A config of `contrib/` (e.g. `nginx.conf`), as text.
pub fn contrib(name: &str) -> String {
    let path = format!("{}/../../contrib/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `text` with `from` replaced by `to`; panics if `from` is not there (the
/// contrib file changed under the test).
pub fn replaced(text: String, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the contrib config no longer holds {from:?}");
    text.replace(from, to)
}

/// Starts nginx in `dir` serving `site`, and waits until it listens on
/// `port` (on 127.0.0.1). Panics with nginx's error log if it does not.
pub async fn spawn(dir: &Path, site: &str, port: u16) -> Child {
    let d = dir.display();
    std::fs::write(dir.join("site.conf"), site).unwrap();
    let main = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let mut child = Command::new(binary())
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let up = wait_until(secs(10), || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    if !up {
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        let _ = child.kill();
        let _ = child.wait();
        panic!("nginx did not start listening: {log}");
    }
    child
}

fn binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx is not installed (.ci/run installs Debian's nginx)")
}
