//! Issue 11: one node on SQLite, one node on PostgreSQL, and two nodes on PostgreSQL behind
//! nginx (docs/nginx-two-nodes.conf's shape), each driven by wrk with the same connections:
//! authorized encrypted audited reads and durable writes, interleaved within each round.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use serde_json::json;

use crate::api::{small_doc, Session};
use crate::compare::{free_port, load, run_wrk, start_listening, which, Load, Measured};
use crate::report::{Report, Sample};
use crate::server::{Proc, Server, Transport};
use crate::Cli;

const MASTER_KEY: &str = "QmVuY2hOb2Rlc1NoYXJlT25lTWFzdGVyS2V5ISEhISE=";

/// A throwaway PostgreSQL cluster (scripts/lib/postgres.sh), removed on drop.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

fn pg_script(call: &str) -> anyhow::Result<()> {
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/lib/postgres.sh");
    let out = Command::new("bash").arg("-c").arg(format!(". {lib} && {call}")).output()?;
    if !out.status.success() {
        bail!("{call}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl Postgres {
    fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("rampart-bench-pg-").tempdir()?;
        let port = free_port()?;
        pg_script(&format!("start_postgres {}/pg {port}", dir.path().display()))
            .context("starting PostgreSQL (needs the Debian postgresql package)")?;
        Ok(Self { dir, port })
    }

    fn database(&self, name: &str) -> anyhow::Result<String> {
        let psql = which("psql")?;
        let out = Command::new(psql)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-qAt", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()?;
        if !out.status.success() {
            bail!("creating database {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(format!("postgres://postgres@127.0.0.1:{}/{name}", self.port))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_script(&format!("stop_postgres {}/pg", self.dir.path().display()));
    }
}

/// nginx terminating TLS and balancing over `ports` (round robin, keep-alive, TLS to the
/// nodes verified against `tls/cert.pem` of `tls_dir`, which every node presents).
fn start_balancer(dir: &Path, ports: &[u16], tls_dir: &Path) -> anyhow::Result<(Proc, String)> {
    let nginx = which("nginx")?;
    let (port, root) = (free_port()?, dir.join("balancer"));
    std::fs::create_dir_all(&root)?;
    let servers: String = ports.iter().map(|p| format!("    server 127.0.0.1:{p};\n")).collect();
    let conf = format!(
        "worker_processes auto;\ndaemon off;\npid {root}/nginx.pid;\nerror_log {root}/error.log;\n\
         events {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {root};\n\
         proxy_temp_path {root};\n  fastcgi_temp_path {root};\n  uwsgi_temp_path {root};\n  scgi_temp_path {root};\n\
         upstream rampart {{\n{servers}    keepalive 64;\n  }}\n\
         server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {tls}/cert.pem;\n\
         ssl_certificate_key {tls}/key.pem;\n    location / {{\n      proxy_pass https://rampart;\n\
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
         proxy_set_header X-Forwarded-For $remote_addr;\n      proxy_ssl_verify on;\n\
         proxy_ssl_trusted_certificate {tls}/cert.pem;\n      proxy_ssl_name localhost;\n\
         proxy_ssl_server_name on;\n      proxy_ssl_session_reuse on;\n    }}\n  }}\n}}\n",
        root = root.display(),
        tls = tls_dir.display(),
    );
    std::fs::write(root.join("nginx.conf"), conf)?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-c").arg(root.join("nginx.conf")).arg("-p").arg(&root);
    Ok((start_listening(&mut cmd, port, "nginx")?, format!("https://localhost:{port}")))
}

/// The read and the write load of one deployment, reached at `base`.
async fn fixture(session: &Session, base: &str, documents: usize) -> anyhow::Result<(Load, Load)> {
    let paths = session.fill("bench", None, documents, None).await?;
    session.create_collection("writes", None).await?;
    let auth = Some(format!("Bearer {}", session.token));
    let writes = load(
        base,
        auth.clone(),
        Some(json!({"data": small_doc(1)})),
        vec!["/api/v1/collections/writes/documents".into()],
    );
    Ok((load(base, auth, None, paths), writes))
}

pub async fn nodes(c: &Cli) -> anyhow::Result<Report> {
    let wrk = which("wrk").context("wrk is needed for this suite (Debian package `wrk`)")?;
    let dir = tempfile::Builder::new().prefix("rampart-nodes-").tempdir()?;
    let pg = Postgres::start()?;
    let (one_db, two_db) = (pg.database("one_node")?, pg.database("two_nodes")?);
    let on = |url: &str, node: &str| {
        vec![
            ("RAMPART_DATABASE_URL".to_owned(), url.to_owned()),
            ("RAMPART_NODE_ID".to_owned(), node.to_owned()),
            ("RAMPART_ENCRYPTION_KEY".to_owned(), MASTER_KEY.to_owned()),
        ]
    };
    let sqlite = Server::start(c, "one node, SQLite", &[], Transport::Tls)?;
    let pg_one = Server::start_with(c, "one node, PostgreSQL", on(&one_db, "solo"), Transport::Tls)?;
    let node_a = Server::start_with(c, "node A, PostgreSQL", on(&two_db, "node-a"), Transport::Tls)?;
    let tls = node_a.data_dir().join("tls");
    let mut b_env = on(&two_db, "node-b");
    b_env.push(("RAMPART_TLS_CERT".into(), tls.join("cert.pem").display().to_string()));
    b_env.push(("RAMPART_TLS_KEY".into(), tls.join("key.pem").display().to_string()));
    let node_b = Server::start_with(c, "node B, PostgreSQL", b_env, Transport::Tls)?;
    let (balancer, edge) = start_balancer(dir.path(), &[node_a.addr.port(), node_b.addr.port()], &tls)?;

    let (sqlite_reads, sqlite_writes) = fixture(&Session::login(&sqlite).await?, &sqlite.base_url, c.documents).await?;
    let (pg_reads, pg_writes) = fixture(&Session::login(&pg_one).await?, &pg_one.base_url, c.documents).await?;
    let two = Session::login(&node_a).await?;
    let (two_reads, two_writes) = fixture(&two, &edge, c.documents).await?;
    let two_pids = [node_a.pid(), node_b.pid(), balancer.0.id()];
    let scenarios: [(&str, &str, &Load, Vec<u32>); 6] = [
        ("sqlite_read", "1 node, SQLite: authorized encrypted audited read", &sqlite_reads, vec![sqlite.pid()]),
        ("pg_read", "1 node, PostgreSQL: same read", &pg_reads, vec![pg_one.pid()]),
        ("pg2_read", "2 nodes on PostgreSQL behind nginx: same read", &two_reads, two_pids.to_vec()),
        ("sqlite_write", "1 node, SQLite: durable document write", &sqlite_writes, vec![sqlite.pid()]),
        ("pg_write", "1 node, PostgreSQL: same write", &pg_writes, vec![pg_one.pid()]),
        ("pg2_write", "2 nodes on PostgreSQL behind nginx: same write", &two_writes, two_pids.to_vec()),
    ];
    let mut report = Report::default();
    let connections = c.wrk_connections.max(1);
    for run in 1..=c.runs {
        let mut round = Vec::new();
        for (_, label, load, pids) in &scenarios {
            eprintln!("run {run}/{}: {label}", c.runs);
            round.push(run_wrk(&wrk, dir.path(), load, pids, connections, c.window())?);
        }
        report.add_run(samples(&scenarios, &round, connections));
    }
    drop(balancer);
    let stopped = [sqlite, pg_one, node_b, node_a].into_iter().map(Server::stop).find_map(Result::err);
    report.stop_error = stopped.map(|e| e.context("stopping a server"));
    Ok(report.over("HTTP/1.1 (wrk), TLS".to_owned()))
}

fn samples(scenarios: &[(&str, &str, &Load, Vec<u32>)], round: &[Measured], connections: usize) -> Vec<Sample> {
    let mut out = Vec::new();
    for ((key, label, ..), m) in scenarios.iter().zip(round) {
        out.extend(m.samples(key, label, connections));
    }
    let ratio = |a: usize, b: usize| (round[b].rps > 0.0).then(|| round[a].rps / round[b].rps);
    let ratios = [
        ("ratio_pg_sqlite_read", "read: 1 node PostgreSQL ÷ SQLite", ratio(1, 0)),
        ("ratio_pg2_pg_read", "read: 2 nodes ÷ 1 node, PostgreSQL", ratio(2, 1)),
        ("ratio_pg_sqlite_write", "write: 1 node PostgreSQL ÷ SQLite", ratio(4, 3)),
        ("ratio_pg2_pg_write", "write: 2 nodes ÷ 1 node, PostgreSQL", ratio(5, 4)),
    ];
    out.extend(ratios.into_iter().filter_map(|(key, label, v)| Some(Sample::new(key, label, "ratio", v?))));
    out
}
