//! Progress of long verbs, on stderr only (stdout carries the verb's result, JSON with
//! `--json`): a bar or spinner when stderr is a terminal, plain lines otherwise (one per
//! 10 % of a counted task, one per phase), and nothing at all for the server's own use.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A bar redrawn in place.
    Terminal,
    /// One line per step, for logs and pipes.
    Lines,
    /// The server: its work is reported in its logs.
    Hidden,
}

impl Progress {
    /// A bar when stderr is a terminal, lines otherwise.
    pub fn stderr() -> Self {
        if std::io::stderr().is_terminal() {
            Progress::Terminal
        } else {
            Progress::Lines
        }
    }

    /// Work with a known size: a bar of `total` (bytes when `bytes`, else items).
    pub fn counted(self, label: &str, total: u64, bytes: bool) -> Task {
        let bar = (self == Progress::Terminal).then(|| {
            let counter = if bytes { "{bytes}/{total_bytes}" } else { "{pos}/{len}" };
            let template = format!("{{msg:<16}} [{{bar:25}}] {{percent:>3}}% {counter} {{elapsed}}");
            let style = ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar());
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(style.progress_chars("#>-"));
            bar.set_message(label.to_owned());
            bar
        });
        Task::new(self, label, Some(total), bar)
    }

    /// A phase without a natural counter (a single `VACUUM INTO`, say): a spinner on a
    /// terminal, a line when it starts otherwise.
    pub fn phase(self, label: &str) -> Task {
        let bar = match self {
            Progress::Terminal => {
                let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(style);
                bar.set_message(format!("{label}..."));
                bar.enable_steady_tick(Duration::from_millis(120));
                Some(bar)
            }
            Progress::Lines => {
                eprintln!("{label}...");
                None
            }
            Progress::Hidden => None,
        };
        Task::new(self, label, None, bar)
    }
}

/// One running step; cheap to clone into a blocking task's callback.
#[derive(Clone)]
pub struct Task {
    mode: Progress,
    label: Arc<str>,
    total: Option<u64>,
    bar: Option<ProgressBar>,
    /// The last tenth printed as a line.
    printed: Arc<AtomicU64>,
}

impl Task {
    fn new(mode: Progress, label: &str, total: Option<u64>, bar: Option<ProgressBar>) -> Self {
        Self { mode, label: label.into(), total, bar, printed: Arc::new(AtomicU64::new(0)) }
    }

    /// `done` of the total so far.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let Some(total) = self.total.filter(|_| self.mode == Progress::Lines) else { return };
        let tenth = done.saturating_mul(10).checked_div(total).unwrap_or(10).min(10);
        // 100 % is the line `finish` prints.
        if tenth < 10 && tenth > self.printed.fetch_max(tenth, Ordering::Relaxed) {
            eprintln!("{}: {}% ({done}/{total})", self.label, tenth * 10);
        }
    }

    /// Ends the step with `summary` (what was done).
    pub fn finish(&self, summary: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => {
                if let Some(total) = self.total {
                    bar.set_position(total);
                }
                bar.finish_and_clear();
                eprintln!("{}: {summary}", self.label);
            }
            (None, Progress::Lines) => eprintln!("{}: {summary}", self.label),
            _ => {}
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // The last clone of a bar that was never finished (an error path) clears it.
        if let Some(bar) = &self.bar {
            if Arc::strong_count(&self.printed) == 1 && !bar.is_finished() {
                bar.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_mode_prints_each_tenth_once_and_never_past_the_total() {
        let task = Progress::Lines.counted("work", 200, false);
        for done in [0, 19, 20, 21, 45, 199, 200, 500] {
            task.set(done);
        }
        assert_eq!(task.printed.load(Ordering::Relaxed), 9);
    }
}
