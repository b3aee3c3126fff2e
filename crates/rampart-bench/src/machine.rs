//! Facts about the machine, printed with the figures: they mean nothing without them.

use std::process::Command;

pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub cpu_model: String,
    pub memory: String,
    /// 1-minute load average when the bench started: other work on the machine skews
    /// every figure, and this is the cheapest hint that it was there.
    pub load_average: String,
}

impl Machine {
    /// Best effort: a fact that cannot be read is reported as "unknown", not as an error.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            nproc: available_parallelism(),
            kernel: kernel_release().unwrap_or_else(|| "unknown".to_owned()),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".to_owned()),
            memory: field(&meminfo, "MemTotal").unwrap_or_else(|| "unknown".to_owned()),
            load_average: load_average().unwrap_or_else(|| "unknown".to_owned()),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "nproc": self.nproc,
            "kernel": self.kernel,
            "cpu_model": self.cpu_model,
            "memory": self.memory,
            "load_average_1min": self.load_average,
        })
    }
}

pub fn available_parallelism() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

fn kernel_release() -> Option<String> {
    let out = Command::new("uname").arg("-r").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| out.status.success() && !t.is_empty())
}

fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

/// The value of the first `key : value` line in a /proc file.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_style_fields() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nmodel name\t: other\n";
        assert_eq!(field(text, "model name").as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(field(text, "flags"), None);
    }
}
