//! How much CPU other processes took during a run. Client and server share a small
//! machine with whatever else runs on it (builds, tests), and that work lowers every
//! figure; this tells a noisy run from a quiet one.

/// Cumulative CPU ticks: the whole machine, and the bench plus its server.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    busy: u64,
    total: u64,
    own: u64,
}

impl CpuSnapshot {
    /// `None` where /proc is missing or unreadable; the figure is then reported as n/a.
    /// `server_pids`: every server the bench has running (idle ones cost little, but count).
    pub fn take(server_pids: &[u32]) -> Option<Self> {
        let (busy, total) = machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let mut own = process_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        for pid in server_pids {
            own += process_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
        }
        Some(Self { busy, total, own })
    }

    /// Percent of the machine's CPU capacity used by other processes since `start`.
    pub fn foreign_percent_since(&self, start: &Self) -> Option<f64> {
        let total = self.total.checked_sub(start.total).filter(|&t| t > 0)?;
        let busy = self.busy.saturating_sub(start.busy);
        let own = self.own.saturating_sub(start.own);
        Some(busy.saturating_sub(own) as f64 * 100.0 / total as f64)
    }
}

/// Busy and total ticks from the aggregate `cpu` line of /proc/stat. Steal (time the
/// hypervisor gave to other guests) counts as busy: it was lost to the bench all the same.
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|t| t.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks.try_into().ok()?;
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

/// CPU ticks of a process and all its descendants (nginx's workers, say).
pub fn tree_ticks(pid: u32) -> Option<u64> {
    let mut total = process_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            total += tree_ticks(child).unwrap_or(0);
        }
    }
    Some(total)
}

/// utime + stime of a process, from /proc/<pid>/stat. The command name may contain spaces
/// and parentheses, so fields are counted from the last ')'.
fn process_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' comes field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_and_pid_stat() {
        let stat = "cpu  10 1 5 100 4 1 1 2 0 0\ncpu0 5 0 2 50 2 0 0 1 0 0\n";
        assert_eq!(machine_ticks(stat), Some((20, 124)));
        let pid = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 100";
        assert_eq!(process_ticks(pid), Some(10));
    }

    #[test]
    fn foreign_share_excludes_own_work() {
        let start = CpuSnapshot { busy: 100, total: 1000, own: 50 };
        let end = CpuSnapshot { busy: 700, total: 2000, own: 450 };
        assert_eq!(end.foreign_percent_since(&start), Some(20.0));
    }
}
