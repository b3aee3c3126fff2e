//! OpenID Connect through the real binary: `[auth.oidc]` in `rampart.toml`, the client secret
//! from `RAMPART_OIDC_CLIENT_SECRET`, a real oidc-provider, HTTPS; the secret is in no file
//! the server writes (logs, audit, database) nor in its output.

use rampart_testkit::oidc::{OidcServer, REDIRECT_URL};

use crate::support::{contains, files_under, start, ServerOpts};

const SECRET: &str = "canary-e2e-oidc-secret-4be1d0";

fn config(issuer: &str) -> String {
    format!(
        "[auth.oidc]\nissuer = \"{issuer}\"\nclient_id = \"rampart\"\nredirect_url = \"{REDIRECT_URL}\"\n\
         role_claim = \"groups\"\ndefault_role = \"viewer\"\n\
         [[auth.oidc.role_map]]\nvalue = \"staff\"\nrole = \"editor\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_login_through_the_binary_and_its_client_secret_is_logged_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut provider = OidcServer::stopped(SECRET);
    let toml = tmp.path().join("rampart.toml");
    std::fs::write(&toml, config(&provider.issuer())).unwrap();
    let mut opts = ServerOpts::new(&data);
    opts.env.push(("RAMPART_CONFIG", toml.display().to_string()));
    opts.env.push(("RAMPART_OIDC_CLIENT_SECRET", SECRET.to_owned()));
    // The provider is down at start: the server starts anyway, says so, and answers 503.
    let server = start(opts);
    let c = server.client();
    let res = c.get(server.url("/api/v1/auth/oidc/start?mode=token")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    provider.resume();
    let mut outcomes = Vec::new();
    for mode in ["none", "foreign_key"] {
        provider.id_token_mode(mode, None).await;
        let start: serde_json::Value =
            c.get(server.url("/api/v1/auth/oidc/start?mode=token")).send().await.unwrap().json().await.unwrap();
        let back = provider.authorize(start["authorization_url"].as_str().unwrap(), "alice").await;
        let res = c
            .get(server.url(&back))
            .header("X-Rampart-Flow", start["flow_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        outcomes.push(res.status().as_u16());
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(!body.to_string().contains(SECRET));
        if mode == "none" {
            assert_eq!(body["user"]["role"], "editor", "{body}");
            let me = server.get_json(body["token"].as_str().unwrap(), "/api/v1/auth/me").await;
            assert_eq!(me["username"], "alice");
        }
    }
    assert_eq!(outcomes, [200, 401]);
    let stderr_path = server.stderr_path.clone();
    let stdout = server.stdout_text.clone();
    assert!(server.stop().success());
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(stderr.contains("OpenID Connect discovery") || stdout.contains("OpenID Connect discovery"), "{stderr}");
    let mut files = files_under(&data);
    files.push((stderr_path.clone(), stderr.into_bytes()));
    files.push(("stdout".into(), stdout.into_bytes()));
    for (path, bytes) in files {
        assert!(!contains(&bytes, SECRET.as_bytes()), "the client secret in {}", path.display());
    }
}
