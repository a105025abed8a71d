//! Scenario results against the allowed ranges in `tests/fixtures/sim/NAME.txt`.
//!
//! Each line is `metric = LOW..HIGH`, optionally followed by `# observed VALUE` (what the
//! last blessed run gave). A metric outside its range fails the test; so does a metric the
//! fixture does not list, or a listed one the scenario no longer reports. Run with
//! `SIM_BLESS=1` to rewrite the observed values (never the ranges), so a change of defaults
//! shows up as a fixture diff.

use std::fmt::Write as _;
use std::path::PathBuf;

pub(crate) fn check(name: &str, metrics: &[(&str, f64)]) {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", "sim"]
        .iter()
        .collect::<PathBuf>()
        .join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    let mut blessed = String::new();
    let mut report = format!("scenario {name}:\n");
    for line in text.lines() {
        let body = line.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            blessed.push_str(line);
            blessed.push('\n');
            continue;
        }
        let (metric, range) = body
            .split_once('=')
            .unwrap_or_else(|| panic!("{name}: expected `metric = LOW..HIGH`, got {line:?}"));
        let (metric, range) = (metric.trim(), range.trim());
        let (low, high) = range
            .split_once("..")
            .unwrap_or_else(|| panic!("{name}: expected `LOW..HIGH`, got {range:?}"));
        let parse = |s: &str| -> f64 {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {s:?} is not a number"))
        };
        let (low, high) = (parse(low), parse(high));
        seen.push(metric.to_owned());
        let Some(&(_, value)) = metrics.iter().find(|(m, _)| *m == metric) else {
            failures.push(format!("{metric}: listed in the fixture but not reported"));
            continue;
        };
        let ok = (low..=high).contains(&value);
        let _ = writeln!(
            report,
            "  {metric:<28} {value:>10.3}   allowed {low}..{high}{}",
            if ok { "" } else { "   OUT OF RANGE" }
        );
        if !ok {
            failures.push(format!("{metric} = {value:.3}, allowed {low}..{high}"));
        }
        let _ = writeln!(blessed, "{metric} = {range}  # observed {value:.3}");
    }
    for (metric, value) in metrics {
        if !seen.iter().any(|m| m == metric) {
            failures.push(format!("{metric} = {value:.3}: not listed in the fixture"));
        }
    }
    println!("{report}");
    if std::env::var_os("SIM_BLESS").is_some() {
        std::fs::write(&path, blessed).unwrap();
    }
    assert!(
        failures.is_empty(),
        "{name} ({}):\n  {}",
        path.display(),
        failures.join("\n  ")
    );
}
