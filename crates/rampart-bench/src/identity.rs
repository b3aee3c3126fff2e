//! identity: logins per second through each identity provider, on one server in one run
//! (issue 13), so the figures compare: the local Argon2id login, an LDAP login against a real
//! `slapd` over LDAPS (service bind, search, group search, user bind, each on a fresh
//! connection), and a whole OpenID Connect login against a real `oidc-provider` (start, the
//! provider's authorization and login, the callback with its code exchange and ID token
//! check). The directory and the provider run on this machine too, so their CPU counts
//! against the rate as it would against a deployment's own host.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use rampart_testkit::ldap::{LdapServer, SERVICE_PASSWORD, STAFF_GROUP};
use rampart_testkit::oidc::{OidcServer, REDIRECT_URL};
use reqwest::StatusCode;
use serde_json::json;

use crate::api::{send_json, Session};
use crate::load::closed_loop;
use crate::report::{each_run, Report, Sample};
use crate::server::{with_servers, Transport::Tls};
use crate::suites::rate;
use crate::Cli;

const OIDC_SECRET: &str = "bench-oidc-client-secret";
/// Users of each kind; request `i` logs in as user `i % USERS`. Many users, as a real login
/// load has: concurrent logins of one account from one address count as concurrent guesses
/// against its login delay (SPEC 4), which is what one account at 32 loops would measure.
const USERS: u64 = 64;
/// Every bench user's password (local users: it passes the policy).
const PASSWORD: &str = "Bench-Login-Pa55word!";

fn user(kind: &str, i: u64) -> String {
    format!("{kind}{}", i % USERS)
}

/// The directory's `[auth]`/`[auth.ldap]` lines, and `[auth.oidc]` for the provider.
fn config_toml(ldap: &LdapServer, issuer: &str) -> String {
    let oidc = format!(
        "[auth.oidc]\nissuer = \"{issuer}\"\nclient_id = \"rampart\"\nredirect_url = \"{REDIRECT_URL}\"\n\
         role_claim = \"groups\"\ndefault_role = \"viewer\"\n"
    );
    format!("{}{oidc}", ldap.config_toml(&ldap.ldaps_url(), ""))
}

pub async fn identity(c: &Cli) -> anyhow::Result<Report> {
    // Both launchers block while their server starts.
    let ldap = tokio::task::spawn_blocking(LdapServer::start).await.context("starting slapd")?;
    let provider =
        tokio::task::spawn_blocking(|| OidcServer::start(OIDC_SECRET)).await.context("starting oidc-provider")?;
    let ldap = tokio::task::spawn_blocking(move || {
        for i in 0..USERS {
            ldap.add_person(&user("dir", i), PASSWORD);
            ldap.add_member(STAFF_GROUP, &user("dir", i));
        }
        ldap
    })
    .await
    .context("adding directory users")?;
    for i in 0..USERS {
        provider.set_account(&user("idp", i), Some(&user("idp", i)), &["staff"]).await;
    }
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("rampart.toml");
    std::fs::write(&config, config_toml(&ldap, &provider.issuer()))?;
    let config = config.display().to_string();
    let env = [
        ("RAMPART_CONFIG", config.as_str()),
        ("RAMPART_LDAP_BIND_PASSWORD", SERVICE_PASSWORD),
        ("RAMPART_OIDC_CLIENT_SECRET", OIDC_SECRET),
    ];
    let provider = Arc::new(provider);
    let report = with_servers(c, &[("local, LDAP and OIDC login", &env[..], Tls)], async |servers| {
        let admin = Session::login(&servers[0]).await?;
        let (client, base) = (admin.client()?, admin.url(""));
        for i in 0..USERS {
            let body = json!({"username": user("local", i), "password": PASSWORD, "role": "viewer"});
            let req = client.post(format!("{base}/api/v1/users")).bearer_auth(&admin.token).json(&body);
            send_json(req, StatusCode::CREATED).await.context("creating a local user")?;
            // First logins provision the directory's and the provider's users.
            ldap_login(&client, &base, i).await?;
            oidc_login(&client, &base, &provider, i).await?;
        }
        each_run(c.runs, servers, async |run| identity_run(c, &admin, &provider, run).await).await
    })
    .await;
    drop(ldap);
    report
}

async fn identity_run(c: &Cli, admin: &Session, provider: &Arc<OidcServer>, run: usize) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for &n in &c.login_concurrency {
        let mut rates = [0.0; 3];
        // The order rotates with the run, so a burst of other work hits every kind alike.
        for k in (0..3).map(|i| (i + run - 1) % 3) {
            let base = admin.url("");
            let clients = admin.clients(n)?;
            let (key, label, tally) = match k {
                0 => {
                    eprintln!("run {run}: local logins, {n} concurrent");
                    let t = closed_loop(clients, c.window(), move |client, i| local_login(client, base.clone(), i));
                    ("login_local", "Local logins (Argon2id)", t.await?)
                }
                1 => {
                    eprintln!("run {run}: LDAP logins, {n} concurrent");
                    let t = closed_loop(clients, c.window(), move |client, i| {
                        let base = base.clone();
                        async move { ldap_login(&client, &base, i).await }
                    });
                    ("login_ldap", "LDAP logins (slapd, LDAPS)", t.await?)
                }
                _ => {
                    eprintln!("run {run}: OIDC logins, {n} concurrent");
                    let provider = Arc::clone(provider);
                    let t = closed_loop(clients, c.window(), move |client, i| {
                        let (base, provider) = (base.clone(), Arc::clone(&provider));
                        async move { oidc_login(&client, &base, &provider, i).await }
                    });
                    ("login_oidc", "OIDC logins (oidc-provider, whole flow)", t.await?)
                }
            };
            rates[k] = tally.per_second();
            samples.push(rate(format!("{key}_c{n}"), format!("{label}, {n} concurrent"), &tally));
        }
        for (k, what) in [(1, "ldap"), (2, "oidc")] {
            let ratio = if rates[0] > 0.0 { rates[k] / rates[0] * 100.0 } else { f64::NAN };
            let label =
                format!("{} logins/s relative to local logins/s, {n} concurrent (same run)", what.to_uppercase());
            samples.push(Sample::new(format!("login_{what}_vs_local_c{n}"), label, "%", ratio));
        }
    }
    Ok(samples)
}

async fn local_login(client: reqwest::Client, base: String, i: u64) -> anyhow::Result<()> {
    let body = json!({"username": user("local", i), "password": PASSWORD});
    send_json(client.post(format!("{base}/api/v1/auth/login")).json(&body), StatusCode::OK).await.map(drop)
}

async fn ldap_login(client: &reqwest::Client, base: &str, i: u64) -> anyhow::Result<()> {
    let body = json!({"username": user("dir", i), "password": PASSWORD});
    let out = send_json(client.post(format!("{base}/api/v1/auth/login")).json(&body), StatusCode::OK).await?;
    if out["user"]["role"] != "editor" {
        bail!("the LDAP login did not map the directory group: {out}");
    }
    Ok(())
}

/// start → the provider (as the user's browser) → callback, in token mode.
async fn oidc_login(client: &reqwest::Client, base: &str, provider: &OidcServer, i: u64) -> anyhow::Result<()> {
    let name = user("idp", i);
    let start = send_json(client.get(format!("{base}/api/v1/auth/oidc/start?mode=token")), StatusCode::OK).await?;
    let url = start["authorization_url"].as_str().ok_or_else(|| anyhow!("no authorization_url: {start}"))?;
    let flow = start["flow_token"].as_str().ok_or_else(|| anyhow!("no flow_token: {start}"))?;
    let back = provider.authorize(url, &name).await;
    let out = send_json(client.get(format!("{base}{back}")).header("X-Rampart-Flow", flow), StatusCode::OK).await?;
    if out["user"]["username"] != name.as_str() {
        bail!("the OIDC login opened no session for {name}: {out}");
    }
    Ok(())
}
