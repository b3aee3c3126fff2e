use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

use crate::logfiles::LineQueue;

/// Structured logs to stderr and, when given, to `server.log`. Secrets never reach here:
/// every secret type redacts its `Debug`.
pub fn init(level: &str, file: Option<LineQueue>) {
    let filter = || EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = match file {
        Some(queue) => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .json()
            .with_writer(std::io::stderr.and(queue))
            .try_init(),
        None => tracing_subscriber::fmt().with_env_filter(filter()).json().with_writer(std::io::stderr).try_init(),
    };
}
