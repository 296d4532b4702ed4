//! Golden tests of `ScreenModel` against real pty recordings.
//!
//! Each directory under `tests/golden/` holds `output.bin` (raw output of a
//! session recorded by `tools/record-session/record.py`), `meta.json` (size,
//! scrollback limit, description) and `screen.txt` (the reviewed visible
//! text). For every case this test
//! 1. feeds the recording in random-sized pieces (fixed seed) and, for small
//!    cases, byte by byte, and compares the visible text with `screen.txt`;
//! 2. feeds `snapshot()` into a fresh model and checks that text, cursor,
//!    active screen, every visible cell's pen and the scrollback round-trip;
//! 3. runs `tools/screen-check/compare.mjs`, which replays the recording and
//!    the snapshot in xterm.js and compares them cell by cell.
//!
//! `TERMSTREAM_BLESS=1` rewrites `screen.txt` from the model (review the diff!).

use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{Rng, SeedableRng, rngs::StdRng};
use termstream::session::screen::ScreenModel;

/// Cases smaller than this are also fed one byte at a time.
const BYTEWISE_LIMIT: usize = 16 * 1024;

struct Case {
    name: String,
    dir: PathBuf,
    output: Vec<u8>,
    cols: u16,
    rows: u16,
    scrollback: usize,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cases() -> Vec<Case> {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&golden)
        .expect("tests/golden exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.join("output.bin").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "expected the recorded golden cases in {golden:?}");

    dirs.into_iter()
        .map(|dir| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta.json"))
                    .expect("meta.json is JSON");
            let number = |key: &str| meta[key].as_u64().unwrap_or_else(|| panic!("meta.{key}"));
            Case {
                name: dir.file_name().expect("case name").to_string_lossy().into_owned(),
                output: std::fs::read(dir.join("output.bin")).expect("output.bin"),
                cols: u16::try_from(number("cols")).expect("cols fit u16"),
                rows: u16::try_from(number("rows")).expect("rows fit u16"),
                scrollback: usize::try_from(number("scrollback")).expect("scrollback fits"),
                dir,
            }
        })
        .collect()
}

impl Case {
    fn model(&self) -> ScreenModel {
        ScreenModel::new(self.cols, self.rows, self.scrollback)
    }

    /// Feeds the recording in random pieces of 1 to 4096 bytes.
    fn feed_randomly(&self, seed: u64) -> ScreenModel {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut screen = self.model();
        let mut rest = self.output.as_slice();

        while !rest.is_empty() {
            let max = if rng.random_bool(0.5) { 8 } else { 4096 };
            let (piece, tail) = rest.split_at(rng.random_range(1..=max).min(rest.len()));
            screen.feed(piece);
            rest = tail;
        }

        screen
    }

    fn expected_text(&self, actual: &[String]) -> Vec<String> {
        let path = self.dir.join("screen.txt");

        if std::env::var_os("TERMSTREAM_BLESS").is_some() {
            std::fs::write(&path, actual.join("\n") + "\n").expect("write screen.txt");
        }

        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{path:?} is missing: run with TERMSTREAM_BLESS=1 and review it"));
        text.lines().map(str::to_owned).collect()
    }
}

fn assert_text(case: &Case, how: &str, actual: &[String], expected: &[String]) {
    if actual != expected {
        let mut report = String::new();
        for (row, (a, e)) in actual.iter().zip(expected).enumerate() {
            if a != e {
                report.push_str(&format!("row {row}:\n  got:      {a:?}\n  expected: {e:?}\n"));
            }
        }
        panic!(
            "{} ({how}): visible text differs from screen.txt ({} vs {} rows)\n{report}",
            case.name,
            actual.len(),
            expected.len()
        );
    }
}

#[test]
fn recordings_produce_the_reviewed_screens() {
    for (i, case) in cases().iter().enumerate() {
        let screen = case.feed_randomly(0x5EED + i as u64);
        let expected = case.expected_text(&screen.text());
        assert_text(case, "random splits", &screen.text(), &expected);

        let whole = {
            let mut screen = case.model();
            screen.feed(&case.output);
            screen
        };
        assert_text(case, "one piece", &whole.text(), &expected);
        assert_eq!(whole.snapshot(), screen.snapshot(), "{}: split-independent", case.name);

        if case.output.len() <= BYTEWISE_LIMIT {
            let mut bytewise = case.model();
            for byte in &case.output {
                bytewise.feed(std::slice::from_ref(byte));
            }
            assert_text(case, "byte by byte", &bytewise.text(), &expected);
        }
    }
}

#[test]
fn snapshots_round_trip_through_avt() {
    for (i, case) in cases().iter().enumerate() {
        let original = case.feed_randomly(0xF00D + i as u64);
        let mut restored = case.model();
        restored.feed(original.snapshot().as_bytes());
        let name = &case.name;

        assert_text(case, "restored", &restored.text(), &original.text());
        assert_eq!(restored.cursor(), original.cursor(), "{name}: cursor");
        assert_eq!(restored.is_alternate_screen(), original.is_alternate_screen(), "{name}");
        assert_eq!(restored.size(), original.size(), "{name}: size");
        assert_eq!(restored.input_modes(), original.input_modes(), "{name}: input modes");

        for (row, (a, b)) in original
            .visible_lines()
            .iter()
            .zip(restored.visible_lines())
            .enumerate()
        {
            assert_eq!(a.is_wrapped(), b.is_wrapped(), "{name}: row {row} wrap flag");
            for (col, (x, y)) in a.cells().iter().zip(b.cells()).enumerate() {
                assert_eq!(x, y, "{name}: cell ({col}, {row}) in {:?}", a.text());
            }
        }

        let history = original.scrollback();
        let copied = restored.scrollback();
        assert_eq!(history.len(), copied.len(), "{name}: scrollback length");
        for (n, (a, b)) in history.iter().zip(&copied).enumerate() {
            assert_eq!(a.text(), b.text(), "{name}: scrollback line {n}");
            assert_eq!(a.is_wrapped(), b.is_wrapped(), "{name}: scrollback line {n} wrap");
            let pens = |line: &avt::Line| -> Vec<avt::Pen> {
                line.cells()
                    .iter()
                    .filter(|c| c.char() != ' ')
                    .map(|c| *c.pen())
                    .collect()
            };
            assert_eq!(pens(a), pens(b), "{name}: scrollback line {n} pens");
        }

        // Snapshotting the restored model again gives the same sequences:
        // nothing drifts when a snapshot is taken from a snapshot.
        assert_eq!(restored.snapshot(), original.snapshot(), "{name}: stable snapshot");
    }
}

#[test]
fn snapshots_match_recordings_in_xterm_js() {
    let tool = repo_root().join("tools/screen-check");
    assert!(
        tool.join("node_modules/@xterm/headless").is_dir(),
        "{:?} has no node_modules: run `npm ci --prefix tools/screen-check` first",
        tool
    );
    let scratch = tempfile::tempdir().expect("temporary directory");
    let mut failures = Vec::new();

    for (i, case) in cases().iter().enumerate() {
        let screen = case.feed_randomly(0xBEEF + i as u64);
        let snapshot_path = scratch.path().join(format!("{}.snapshot", case.name));
        std::fs::write(&snapshot_path, screen.snapshot()).expect("write snapshot");

        let output = Command::new("node")
            .arg(tool.join("compare.mjs"))
            .arg(case.dir.join("output.bin"))
            .arg(&snapshot_path)
            .arg(case.cols.to_string())
            .arg(case.rows.to_string())
            .arg(case.scrollback.to_string())
            .output()
            .expect("`node` must be on PATH to run tools/screen-check/compare.mjs");

        if !output.status.success() {
            failures.push(format!(
                "{}:\n{}{}",
                case.name,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "xterm.js comparison failed:\n{}",
        failures.join("\n")
    );
}

/// Feeds about 64 MB of recorded output and prints the throughput. Run with
/// `cargo test --release -p termstream --test screen_golden -- --ignored
/// --nocapture throughput`; a pty delivers 50–90 MB/s.
#[test]
#[ignore = "a measurement, meaningful in release builds only"]
fn throughput() {
    let mut data = Vec::new();
    for case in cases() {
        if !case.name.starts_with("vim") {
            data.extend_from_slice(&case.output);
        }
    }
    let mut screen = ScreenModel::new(80, 24, 1000);
    let rounds = (64 << 20) / data.len();
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for piece in data.chunks(4096) {
            screen.feed(piece);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let megabytes = (rounds * data.len()) as f64 / 1e6;
    println!(
        "ScreenModel: {megabytes:.0} MB in {secs:.2} s, {:.0} MB/s",
        megabytes / secs
    );

    // The same text fed straight into avt, for comparison: the difference is
    // the cost of the UTF-8 carry and the mode scanner.
    let text = String::from_utf8_lossy(&data).into_owned();
    let mut terminal = avt::Terminal::with_scrollback(80, 24, Some(1000)).expect("valid size");
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        terminal.feed(text.as_str());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "avt alone:   {megabytes:.0} MB in {secs:.2} s, {:.0} MB/s",
        megabytes / secs
    );
}
