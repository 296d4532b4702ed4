//! Results: latency samples to percentiles, the rows of the table, medians
//! over runs, and the markdown report.
//!
//! Every scenario returns [`Row`]s. A row holds one metric of termstream, the
//! baseline measured in the same run (when the scenario has one) and the
//! target from the issue. Rows of several runs are merged by
//! `(scenario, metric)` into medians, in the order they first appeared.

use std::fmt::Write as _;
use std::time::Duration;

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of `samples` (nearest rank); all zero when empty.
    pub fn of(samples: &[Duration]) -> Percentiles {
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        let at = |q: f64| -> f64 {
            if us.is_empty() {
                return 0.0;
            }
            let rank = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len());
            us[rank - 1]
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    /// The four figures with their names, for rows.
    pub fn named(&self) -> [(&'static str, f64); 4] {
        [
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("max", self.max),
        ]
    }
}

/// What a metric should meet, from the issue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// No target: the figure is for information.
    Info,
    /// The value must be at most this.
    AtMost(f64),
    /// `value / baseline` must be at least this.
    RatioAtLeast(f64),
    /// `value / baseline` must be at most this.
    RatioAtMost(f64),
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// E.g. `"1 pty throughput"`.
    pub scenario: String,
    pub metric: String,
    pub unit: &'static str,
    /// `None` when it could not be measured (see `note`).
    pub value: Option<f64>,
    pub baseline: Option<f64>,
    /// What the baseline is, e.g. `"bare PTY"`.
    pub baseline_label: &'static str,
    pub goal: Goal,
    /// The target as the issue words it.
    pub target: String,
    pub note: String,
    /// After merging runs: the median of each run's own `value / baseline`
    /// (a ratio of two medians could divide figures of different runs).
    pub merged_ratio: Option<f64>,
}

impl Row {
    /// A row with a value and nothing else.
    pub fn info(scenario: &str, metric: impl Into<String>, unit: &'static str, value: f64) -> Row {
        Row {
            scenario: scenario.into(),
            metric: metric.into(),
            unit,
            value: Some(value),
            baseline: None,
            baseline_label: "",
            goal: Goal::Info,
            target: String::new(),
            note: String::new(),
            merged_ratio: None,
        }
    }

    /// A row whose value could not be measured, and why.
    pub fn missing(scenario: &str, metric: impl Into<String>, unit: &'static str, why: impl Into<String>) -> Row {
        Row {
            value: None,
            note: why.into(),
            ..Row::info(scenario, metric, unit, 0.0)
        }
    }

    pub fn baseline(mut self, label: &'static str, value: f64) -> Row {
        self.baseline_label = label;
        self.baseline = Some(value);
        self
    }

    pub fn goal(mut self, goal: Goal, target: impl Into<String>) -> Row {
        self.goal = goal;
        self.target = target.into();
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    /// `value / baseline` of one run, when both are there; after merging,
    /// the median of the runs' ratios.
    pub fn ratio(&self) -> Option<f64> {
        if self.merged_ratio.is_some() {
            return self.merged_ratio;
        }
        match (self.value, self.baseline) {
            (Some(v), Some(b)) if b != 0.0 => Some(v / b),
            _ => None,
        }
    }

    /// Whether the target is met; `None` when there is no target or no value.
    pub fn met(&self) -> Option<bool> {
        let v = self.value?;
        match self.goal {
            Goal::Info => None,
            Goal::AtMost(max) => Some(v <= max),
            Goal::RatioAtLeast(r) => Some(self.ratio()? >= r),
            Goal::RatioAtMost(r) => Some(self.ratio()? <= r),
        }
    }
}

pub(crate) fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

/// Merges the rows of several runs into one row per metric: the median of
/// the values, of the baselines and of each run's ratio, with the note of
/// the run nearest the median.
pub fn medians(runs: &[Vec<Row>]) -> Vec<Row> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for row in runs.iter().flatten() {
        let key = (row.scenario.clone(), row.metric.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(scenario, metric)| {
            let same: Vec<&Row> = runs
                .iter()
                .flatten()
                .filter(|r| r.scenario == scenario && r.metric == metric)
                .collect();
            let mut row = same[0].clone();
            row.value = median(same.iter().filter_map(|r| r.value).collect());
            row.baseline = median(same.iter().filter_map(|r| r.baseline).collect());
            row.merged_ratio = median(same.iter().filter_map(|r| r.ratio()).collect());
            if let Some(b) = same.iter().find(|r| r.baseline.is_some()) {
                row.baseline_label = b.baseline_label;
            }
            // The note of the run whose value is nearest the median (its
            // figures explain that value), else the first note there is.
            let near = row.value.and_then(|m| {
                same.iter()
                    .filter(|r| r.value.is_some())
                    .min_by(|a, b| (a.value.unwrap() - m).abs().total_cmp(&(b.value.unwrap() - m).abs()))
            });
            row.note = near
                .map(|r| r.note.clone())
                .filter(|n| !n.is_empty())
                .or_else(|| same.iter().find(|r| !r.note.is_empty()).map(|r| r.note.clone()))
                .unwrap_or_default();
            let measured = same.iter().filter(|r| r.value.is_some()).count();
            if measured > 0 && measured < same.len() {
                row.note = format!("{} (measured in {measured} of {} runs)", row.note, same.len());
            }
            row
        })
        .collect()
}

/// A number with as many decimals as its size deserves.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The machine the figures were taken on.
pub fn machine_info() -> Vec<(String, String)> {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, m)| m.trim().to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .map_or(String::new(), |l| l.trim_start_matches("MemTotal:").trim().to_string());
    vec![
        ("nproc".into(), nproc.to_string()),
        ("CPU".into(), model),
        ("kernel".into(), kernel),
        ("memory".into(), mem),
    ]
}

/// The table alone.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| scenario | metric | termstream | baseline | ratio | target | met | note |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let value = r.value.map_or("–".to_string(), |v| format!("{} {}", num(v), r.unit));
        let baseline = match r.baseline {
            Some(b) => format!("{} {} ({})", num(b), r.unit, r.baseline_label),
            None => "–".into(),
        };
        let ratio = r.ratio().map_or("–".to_string(), |x| format!("{x:.2}"));
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let target = if r.target.is_empty() { "–" } else { &r.target };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario, r.metric, value, baseline, ratio, target, met, r.note
        );
    }
    out
}

/// The whole report: machine, command, runs, table.
pub fn render(rows: &[Row], command: &str, runs: usize, started: &str, elapsed: Duration) -> String {
    let mut out = String::from("# termstream benchmark results\n\n");
    out.push_str("Generated by `scripts/bench` (crate `termstream-bench`); see `bench/README.md` for what each scenario does.\n\n");
    out.push_str("## Machine\n\n");
    for (k, v) in machine_info() {
        let _ = writeln!(out, "- {k}: {v}");
    }
    let _ = writeln!(out, "\n## Run\n\n- command: `{command}`");
    let _ = writeln!(
        out,
        "- started: {started} (Unix seconds); took {:.0} s",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "- figures are medians of {runs} run(s); latencies in µs; loopback only\n"
    );
    out.push_str("## Results\n\n");
    out.push_str(&table(rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let p = Percentiles::of(&s);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
    }

    #[test]
    fn medians_merge_runs_by_metric() {
        let run = |v: f64| vec![Row::info("s", "m", "x", v).baseline("b", v * 2.0)];
        let rows = medians(&[run(1.0), run(3.0), run(2.0)]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].value, Some(2.0));
        assert_eq!(rows[0].baseline, Some(4.0));
    }

    #[test]
    fn merged_ratios_are_taken_within_each_run() {
        // Per run: 0.25, 2 and 1.5. The median value (2) and the median
        // baseline (2) come from different runs and would say 1.0.
        let run = |v: f64, b: f64| {
            vec![
                Row::info("s", "m", "x", v)
                    .baseline("b", b)
                    .goal(Goal::RatioAtMost(1.2), "≤1.2"),
            ]
        };
        let rows = medians(&[run(1.0, 4.0), run(2.0, 1.0), run(3.0, 2.0)]);
        assert_eq!(rows[0].ratio(), Some(1.5));
        assert_eq!(rows[0].met(), Some(false));
    }

    #[test]
    fn goals_are_checked_against_ratio_or_value() {
        let r = Row::info("s", "m", "x", 96.0)
            .baseline("b", 100.0)
            .goal(Goal::RatioAtLeast(0.95), "≥95%");
        assert_eq!(r.met(), Some(true));
        let r = Row::info("s", "m", "x", 400.0).goal(Goal::AtMost(300.0), "≤300");
        assert_eq!(r.met(), Some(false));
        assert_eq!(Row::missing("s", "m", "x", "why").met(), None);
    }
}
