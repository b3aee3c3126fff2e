//! Collecting each run's figures and printing their medians as Markdown or JSON.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::machine::Machine;
use crate::stats::median;

/// One measured figure from one run.
pub struct Sample {
    /// Stable machine-readable name, e.g. `login_c8`.
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    pub value: f64,
    /// Failed requests during the measurement; any at all make the figure suspect.
    pub errors: u64,
}

/// A figure across all runs.
pub struct Figure {
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    pub values: Vec<f64>,
    pub errors: u64,
}

impl Figure {
    pub fn median(&self) -> f64 {
        median(&self.values)
    }
}

/// What the run was, for the report header.
#[derive(Clone)]
pub struct Setup {
    pub seconds: f64,
    pub warmup: f64,
    pub runs: usize,
    pub http_version: String,
    pub server_version: String,
}

#[derive(Default)]
pub struct Report {
    figures: Vec<Figure>,
}

impl Report {
    /// Adds one run's samples, keeping the order in which figures were first seen.
    pub fn add_run(&mut self, samples: Vec<Sample>) {
        for s in samples {
            match self.figures.iter_mut().find(|f| f.key == s.key) {
                Some(f) => {
                    f.values.push(s.value);
                    f.errors += s.errors;
                }
                None => self.figures.push(Figure {
                    key: s.key,
                    label: s.label,
                    unit: s.unit,
                    values: vec![s.value],
                    errors: s.errors,
                }),
            }
        }
    }

    pub fn total_errors(&self) -> u64 {
        self.figures.iter().map(|f| f.errors).sum()
    }

    pub fn markdown(&self, machine: &Machine, setup: &Setup) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Machine: {} CPUs ({}), kernel {}, {} RAM, load average {} at start",
            machine.nproc, machine.cpu_model, machine.kernel, machine.memory, machine.load_average
        );
        let _ = writeln!(
            out,
            "Run: {}; {} runs x {} s measured after {} s warm-up; {} to the server; client and server share the machine.\n",
            setup.server_version, setup.runs, setup.seconds, setup.warmup, setup.http_version
        );
        let _ = writeln!(out, "| Measurement | Median | Unit | All runs | Errors |");
        let _ = writeln!(out, "|---|---:|---|---|---:|");
        for f in &self.figures {
            let runs: Vec<String> = f.values.iter().map(|v| format_value(*v)).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                f.label,
                format_value(f.median()),
                f.unit,
                runs.join(", "),
                f.errors
            );
        }
        out
    }

    pub fn json(&self, machine: &Machine, setup: &Setup) -> Value {
        let figures: Vec<Value> = self
            .figures
            .iter()
            .map(|f| {
                json!({
                    "key": f.key, "label": f.label, "unit": f.unit,
                    "median": finite(f.median()), "runs": f.values.iter().map(|v| finite(*v)).collect::<Vec<_>>(),
                    "errors": f.errors,
                })
            })
            .collect();
        json!({
            "machine": machine.to_json(),
            "setup": {
                "seconds": setup.seconds, "warmup_seconds": setup.warmup, "runs": setup.runs,
                "http_version": setup.http_version, "server_version": setup.server_version,
            },
            "figures": figures,
        })
    }
}

/// JSON has no NaN: a figure without samples is `null`.
fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// Three significant-ish digits: enough for figures that vary by a few percent run to run.
fn format_value(v: f64) -> String {
    if !v.is_finite() {
        "n/a".to_owned()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &str, value: f64, errors: u64) -> Sample {
        Sample { key: key.to_owned(), label: key.to_owned(), unit: "ops/s", value, errors }
    }

    #[test]
    fn runs_are_grouped_by_key_in_first_seen_order() {
        let mut report = Report::default();
        report.add_run(vec![sample("b", 1.0, 0), sample("a", 10.0, 1)]);
        report.add_run(vec![sample("b", 3.0, 0), sample("a", 30.0, 0)]);
        report.add_run(vec![sample("b", 2.0, 2), sample("a", 20.0, 0)]);
        let keys: Vec<&str> = report.figures.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(report.figures[0].median(), 2.0);
        assert_eq!(report.figures[1].median(), 20.0);
        assert_eq!(report.total_errors(), 3);
    }

    #[test]
    fn values_are_formatted_by_magnitude() {
        assert_eq!(format_value(1234.56), "1235");
        assert_eq!(format_value(12.345), "12.3");
        assert_eq!(format_value(1.2345), "1.23");
        assert_eq!(format_value(f64::NAN), "n/a");
    }
}
