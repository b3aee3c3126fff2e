//! The one report format: each run's samples, their medians and every run's value (the
//! spread) as Markdown or JSON; and the /proc readings printed beside them.

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};

use crate::server::Server;

/// One figure from one run: a stable machine-readable `key` (`login_c8`), and the failed
/// requests while measuring it (any at all make the figure suspect).
pub struct Sample {
    pub key: String,
    pub label: String,
    pub unit: &'static str,
    pub value: f64,
    pub errors: u64,
}

impl Sample {
    pub fn new(key: impl Into<String>, label: impl Into<String>, unit: &'static str, value: f64) -> Self {
        Self { key: key.into(), label: label.into(), unit, value, errors: 0 }
    }

    pub fn errors(self, errors: u64) -> Self {
        Self { errors, ..self }
    }
}

/// A suite's figures over all runs, in first-seen order; what the client spoke to the
/// server; and whether stopping a server failed after the figures were taken.
#[derive(Default)]
pub struct Report {
    figures: Vec<(Sample, Vec<f64>)>,
    pub transport: String,
    pub stop_error: Option<anyhow::Error>,
}

impl Report {
    pub fn add_run(&mut self, samples: Vec<Sample>) {
        for s in samples {
            let value = s.value;
            match self.figures.iter_mut().find(|(f, _)| f.key == s.key) {
                Some((f, values)) => {
                    values.push(value);
                    f.errors += s.errors;
                }
                None => self.figures.push((s, vec![value])),
            }
        }
    }

    pub fn over(self, transport: String) -> Self {
        Self { transport, ..self }
    }

    pub fn total_errors(&self) -> u64 {
        self.figures.iter().map(|(f, _)| f.errors).sum()
    }

    pub fn markdown(&self) -> String {
        let mut out = "| Measurement | Median | Unit | All runs | Errors |\n|---|---:|---|---|---:|\n".to_owned();
        for (f, values) in &self.figures {
            let runs: Vec<String> = values.iter().map(|v| format_value(*v)).collect();
            let median = format_value(median(values));
            let _ = writeln!(out, "| {} | {median} | {} | {} | {} |", f.label, f.unit, runs.join(", "), f.errors);
        }
        out
    }

    pub fn json(&self) -> Value {
        let figure = |(f, values): &(Sample, Vec<f64>)| {
            json!({"key": f.key, "label": f.label, "unit": f.unit, "median": finite(median(values)),
                   "runs": values.iter().map(|v| finite(*v)).collect::<Vec<_>>(), "errors": f.errors})
        };
        Value::Array(self.figures.iter().map(figure).collect())
    }
}

/// Runs `body` once per run, each run's figures as by [`with_cpu`] with all `servers`.
pub async fn each_run(
    runs: usize,
    servers: &[Server],
    mut body: impl AsyncFnMut(usize) -> anyhow::Result<Vec<Sample>>,
) -> anyhow::Result<Report> {
    let pids: Vec<u32> = servers.iter().map(Server::pid).collect();
    let mut report = Report::default();
    for run in 1..=runs {
        report.add_run(with_cpu(&pids, body(run)).await?);
    }
    Ok(report)
}

/// `run`'s figures, then the CPU other processes took meanwhile: machine busy time minus
/// that of the bench and `pids`, every server it has running (idle ones cost little, but
/// count). Client and servers share the machine with whatever else runs on it, and that
/// work lowers every figure; this tells a noisy run from a quiet one.
pub async fn with_cpu(
    pids: &[u32],
    run: impl Future<Output = anyhow::Result<Vec<Sample>>>,
) -> anyhow::Result<Vec<Sample>> {
    let start = cpu_ticks(pids);
    let mut samples = run.await?;
    let foreign = start.zip(cpu_ticks(pids)).and_then(|(start, end)| foreign_percent(start, end));
    let label = "CPU taken by other processes during the run (noise; lower is better)";
    samples.push(Sample::new("foreign_cpu_pct", label, "% of machine", foreign.unwrap_or(f64::NAN)));
    Ok(samples)
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
    match v {
        _ if !v.is_finite() => "n/a".to_owned(),
        _ if v >= 100.0 => format!("{v:.0}"),
        _ if v >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

/// Median of the values; NaN when there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile (`p` in 0..=100) in milliseconds; NaN without samples. It never
/// interpolates, so a reported p99 is a latency that was really seen.
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// Facts about the machine, printed with the figures: they mean nothing without them. Best
/// effort: what cannot be read is "unknown". The load average is taken before any server
/// starts, as the cheapest hint of other work on the machine.
pub fn machine() -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let (cpuinfo, meminfo) = (read("/proc/cpuinfo"), read("/proc/meminfo"));
    let kernel = std::process::Command::new("uname").arg("-r").output().ok().filter(|o| o.status.success());
    let kernel = kernel.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).filter(|k| !k.is_empty());
    let unknown = |v: Option<String>| v.unwrap_or_else(|| "unknown".to_owned());
    json!({
        "nproc": nproc(),
        "kernel": unknown(kernel),
        "cpu_model": unknown(field(&cpuinfo, "model name")),
        "memory": unknown(field(&meminfo, "MemTotal")),
        "load_average_1min": unknown(read("/proc/loadavg").split_whitespace().next().map(str::to_owned)),
    })
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The value of the first `key : value` line in a /proc file.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.split_once(':').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_owned()))
}

/// Machine busy and total ticks, and those of the bench plus `pids`; `None` without /proc.
fn cpu_ticks(pids: &[u32]) -> Option<[u64; 3]> {
    let (busy, total) = machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let own = ["self".to_owned()].into_iter().chain(pids.iter().map(u32::to_string));
    Some([busy, total, own.map(|p| process_ticks(&p)).sum::<Option<u64>>()?])
}

/// Percent of the machine's CPU capacity used by other processes between two readings.
fn foreign_percent([busy0, total0, own0]: [u64; 3], [busy1, total1, own1]: [u64; 3]) -> Option<f64> {
    let total = total1.checked_sub(total0).filter(|&t| t > 0)?;
    let foreign = busy1.saturating_sub(busy0).saturating_sub(own1.saturating_sub(own0));
    Some(foreign as f64 * 100.0 / total as f64)
}

/// From the aggregate `cpu` line of /proc/stat. Steal (time the hypervisor gave to other
/// guests) counts as busy: it was lost to the bench all the same.
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|t| t.parse().ok()).collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks.try_into().ok()?;
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

/// utime + stime of `/proc/<pid>/stat`. The command name may hold spaces and parentheses,
/// so fields are counted from the last ')': utime and stime are the 12th and 13th after it.
fn process_ticks(pid: &str) -> Option<u64> {
    parse_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU ticks (10 ms each) of a process and all its descendants (nginx's workers, say).
pub fn tree_ticks(pid: u32) -> Option<u64> {
    let mut total = process_ticks(&pid.to_string())?;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        total += children.split_whitespace().filter_map(|c| tree_ticks(c.parse().ok()?)).sum::<u64>();
    }
    Some(total)
}

/// Resident memory (VmRSS) of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    field(&status, "VmRSS")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS line in /proc/{pid}/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_by_key_and_format_by_magnitude() {
        let mut report = Report::default();
        let s = |key: &str, value, errors| Sample::new(key, key, "ops/s", value).errors(errors);
        report.add_run(vec![s("b", 1.0, 0), s("a", 10.0, 1)]);
        report.add_run(vec![s("b", 3.0, 0), s("a", 30.0, 0)]);
        report.add_run(vec![s("b", 2.0, 2), s("a", 20.0, 0)]);
        assert!(report
            .markdown()
            .ends_with("| b | 2.00 | ops/s | 1.00, 3.00, 2.00 | 2 |\n| a | 20.0 | ops/s | 10.0, 30.0, 20.0 | 1 |\n"));
        assert_eq!(report.total_errors(), 3);
        assert_eq!((format_value(1234.56), format_value(f64::NAN)), ("1235".to_owned(), "n/a".to_owned()));
        assert_eq!((median(&[4.0, 1.0, 3.0, 2.0]), median(&[3.0, 1.0, 2.0])), (2.5, 2.0));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!((percentile_ms(&samples, 50.0), percentile_ms(&samples, 99.0)), (50.0, 99.0));
        assert_eq!((percentile_ms(&samples, 100.0), percentile_ms(&samples[..1], 99.0)), (100.0, 1.0));
        assert!(percentile_ms(&[], 50.0).is_nan());
    }

    #[test]
    fn parses_proc_files() {
        assert_eq!(machine_ticks("cpu  10 1 5 100 4 1 1 2 0 0\ncpu0 5 0 2 50 2 0 0 1 0 0\n"), Some((20, 124)));
        assert_eq!(parse_ticks("42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 100"), Some(10));
        assert_eq!(foreign_percent([100, 1000, 50], [700, 2000, 450]), Some(20.0));
        assert_eq!(
            field("processor\t: 0\nmodel name\t: AMD EPYC\nmodel name\t: x\n", "model name").unwrap(),
            "AMD EPYC"
        );
    }
}
