use tracing_subscriber::EnvFilter;

/// Structured logs to stderr. Secrets never reach here: every secret type redacts `Debug`.
pub fn init(level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).json().try_init();
}
