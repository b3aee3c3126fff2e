//! `rampart serve`: the accept loop (TLS or loopback-only plain HTTP), connection limits,
//! slow-client timeouts and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rampart_config::{Config, Overrides};
use rampart_core::SystemClock;
use rampart_http::{router, AppPorts, AppState, ClientAddr};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::app::App;
use crate::audit_cmd::{self, AUDIT_FILE};
use crate::logfiles::{LineQueue, RotatingFile};
use crate::{datadir, logging, tls};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line + headers) accepted.
const MAX_HEADER_BYTES: usize = 16 * 1024;

pub async fn run(flags: Overrides) -> anyhow::Result<()> {
    let (config, vault) = crate::app::load_config(&flags).await?;
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    // Bind before anything is created: a port in use must not leave a data directory,
    // log files or a first admin behind.
    let listener = TcpListener::bind(config.server.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.bind))?;
    let log_dir = config.server.log_dir.clone();
    datadir::ensure_dir(&log_dir)?;
    let clock = Arc::new(SystemClock);
    let a = &config.audit;
    let open = |name, days| RotatingFile::open(&log_dir, name, a.max_file_mb, days, clock.clone());
    let server_log =
        LineQueue::spawn(open("server.log", a.server_log_retention_days).context("cannot open server.log")?);
    let activity_log =
        LineQueue::spawn(open("activity.log", a.activity_retention_days).context("cannot open activity.log")?);
    let audit_file = open(AUDIT_FILE, a.retention_days).context("cannot open audit.log")?;
    // rustls warns on every handshake that names an IP address as SNI (scanners and
    // some clients do): that is noise, not an operational event.
    // vaultrs and rustify log every Vault answer that is not a success (a secret absent
    // from Vault is one): Rampart logs what matters about Vault itself.
    logging::init("info,rustls=error,vaultrs=off,rustify=off", Some(server_log.clone()));
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if let Some(v) = &vault {
        tracing::info!(address = v.address(), "secrets read from Vault");
    }
    let renewal = vault.as_ref().and_then(|v| v.keep_alive());
    datadir::ensure_dir(&config.server.data_dir)?;
    let _lock =
        datadir::lock(&config.server.data_dir).context("another Rampart process is using this data directory")?;
    let app = App::open(&config).await?;
    let (core, store) = (app.core.clone(), app.backend.clone());
    // Discovery off the start path: an unreachable provider is named in the log, not waited for.
    if core.oidc().is_some() {
        let core = core.clone();
        tokio::spawn(async move {
            if let Some(oidc) = core.oidc() {
                oidc.warm_up().await;
            }
        });
    }
    core.privacy().on_erasure(crate::backup_cmd::erasure_hook(&config));
    let (stop_export, stop_rx) = tokio::sync::watch::channel(false);
    core.audit().set_audit_mirror(Arc::new(audit_cmd::FileMirror { log_dir: log_dir.clone() }));
    let exporter =
        tokio::spawn(audit_cmd::export(core.clone(), store.store(), audit_file, log_dir.clone(), stop_rx.clone()));
    let workers = app.start_workers(&config, app.backend.lease(), stop_rx);
    let acceptor = if config.server.insecure_http {
        tracing::warn!("serving plain HTTP on a loopback address (--insecure-http)");
        None
    } else {
        Some(TlsAcceptor::from(tls::server_config(&config)?))
    };
    let ports = AppPorts {
        activity: Arc::new(activity_log.clone()),
        backups: Arc::new(crate::backup_cmd::file_backups(&config, &core, &store)),
        limits: app.limiter(&config).await?,
        lease: app.backend.lease(),
    };
    let state = AppState::assemble(core.clone(), &config, env!("CARGO_PKG_VERSION"), ports);
    let router = router(state);
    let local = listener.local_addr()?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tracing::info!(address = %local, "listening");
    let signals = Signals::install()?;
    println!("Rampart listening on {scheme}://{local}");

    serve_connections(&config, listener, acceptor, router, signals).await;
    // Every committed record reaches audit.log before the process exits.
    let _ = stop_export.send(true);
    let _ = exporter.await;
    workers.stop().await;
    if let Some(task) = renewal {
        task.abort();
    }
    // Committed data is durable already; the checkpoint only tidies the WAL away.
    if let Err(e) = store.close().await {
        tracing::warn!(error = %e, "final WAL checkpoint failed; the WAL is replayed at the next start");
    }
    tracing::info!("stopped cleanly");
    tokio::task::spawn_blocking(move || {
        for log in [activity_log, server_log] {
            log.flush(Duration::from_secs(2));
        }
    })
    .await?;
    Ok(())
}

async fn serve_connections(
    config: &Config,
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    app: axum::Router,
    signals: Signals,
) {
    let slots = Arc::new(Semaphore::new(config.server.max_connections));
    let per_address = crate::conn_limit::PerAddress::new(config.server.max_connections_per_ip);
    let proxies = config.server.trusted_proxies.clone();
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(config.server.header_read_timeout_secs))
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    builder.http2().timer(TokioTimer::new()).max_header_list_size(MAX_HEADER_BYTES as u32);
    let builder = Arc::new(builder);
    let shutdown = signals.wait();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Beyond its share, an address's new connection is closed at once, so slots stay
        // free for everyone else. Trusted proxies carry many clients and are exempt.
        let slot = if proxies.iter().any(|c| c.contains(&peer.ip())) {
            None
        } else {
            match per_address.acquire(peer.ip()) {
                Some(s) => Some(s),
                None => {
                    drop(tcp);
                    continue;
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        let svc = app.clone().map_request(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ClientAddr(peer));
            req
        });
        let svc = TowerToHyperService::new(svc);
        let builder = Arc::clone(&builder);
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let _slot = slot;
            match acceptor {
                Some(acceptor) => {
                    let Ok(Ok(stream)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace period over; closing remaining connections");
    }
}

/// Signal handlers, installed before the server announces itself so a SIGTERM that comes
/// right after start still shuts down cleanly instead of killing the process.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
