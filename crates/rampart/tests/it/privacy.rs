//! A data subject's whole life on a real server: records in three collections, an export,
//! a backup, a CCPA deletion delivered to a real service provider, the old backup restored
//! afterwards, and then a search of every byte the deployment keeps.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::breach::{receiver, Deliveries};
use crate::support::{bin, contains, files_under, start, ServerOpts, ADMIN_PASSWORD};

const CANARY: &str = "CANARY-lifecycle-90ab-erase-me";
const SUBJECT: &str = "consumer-canary-3141";
const PROVIDER_SECRET: &str = "provider-secret-for-the-test-1";

async fn send(
    server: &crate::support::Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server.client().request(method, server.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_subject_is_in_no_byte_of_the_deployment_even_after_an_old_backup_is_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Deliveries = Arc::default();
    tokio::spawn(receiver(listener, PROVIDER_SECRET, Arc::clone(&got)));
    let config = tmp.path().join("rampart.toml");
    std::fs::write(
        &config,
        format!(
            "[[privacy.service_provider]]\nname = \"crm\"\nurl = \"{hook}\"\nsecret_env = \"RAMPART_CRM_WEBHOOK_SECRET\"\n"
        ),
    )
    .unwrap();
    let opts = || {
        let mut o = ServerOpts::new(&data);
        o.env.push(("RAMPART_CRM_WEBHOOK_SECRET", PROVIDER_SECRET.into()));
        o.env.push(("RAMPART_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true".into()));
        o.extra_args = vec!["--config".into(), config.to_str().unwrap().into()];
        o
    };
    let server = start(opts());
    let token = server.login(&server.client(), "admin", ADMIN_PASSWORD).await;
    for c in ["patients", "visits", "billing"] {
        let (status, body) = send(
            &server,
            &token,
            reqwest::Method::POST,
            "/api/v1/collections",
            Some(json!({"name": c, "indexes": ["tag"]})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        for (subject, value) in [(SUBJECT, CANARY), ("consumer-keep-2718", "kept value")] {
            let doc = json!({"data": {"tag": value, "note": value}, "subject_id": subject});
            let path = format!("/api/v1/collections/{c}/documents");
            assert_eq!(send(&server, &token, reqwest::Method::POST, &path, Some(doc)).await.0, 201);
        }
    }
    let verify = |server: &crate::support::Server, token: String| {
        let url = server.url("/api/v1/gdpr/verification");
        let client = server.client();
        async move {
            let res = client.post(url).bearer_auth(token).json(&json!({"subject_id": SUBJECT})).send().await.unwrap();
            let body: Value = res.json().await.unwrap();
            body["verification_token"].as_str().unwrap().to_owned()
        }
    };
    // The export streams alike over HTTP/1.1 and HTTP/2.
    let pem = std::fs::read(&server.cert).unwrap();
    for h2 in [false, true] {
        let b = reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        let client = if h2 { b.http2_prior_knowledge() } else { b.http1_only() }.build().unwrap();
        let v = verify(&server, token.clone()).await;
        let export = client
            .get(server.url(&format!("/api/v1/gdpr/export?subject_id={SUBJECT}&format=csv")))
            .bearer_auth(&token)
            .header("x-verification-token", v)
            .send()
            .await
            .unwrap();
        assert_eq!(export.status().as_u16(), 200);
        let version = if h2 { reqwest::Version::HTTP_2 } else { reqwest::Version::HTTP_11 };
        assert_eq!(export.version(), version);
        let csv = export.text().await.unwrap();
        assert_eq!(csv.matches(CANARY).count(), 6, "the canary twice in each of three collections:\n{csv}");
        assert!(!csv.contains("kept value"));
        assert!(csv.trim_end().ends_with("\"record_count\",\"3\""), "complete over {version:?}");
    }

    let (status, backup) = send(&server, &token, reqwest::Method::POST, "/api/v1/admin/backup", Some(json!({}))).await;
    assert_eq!(status, 201, "{backup}");
    let backup_id = backup["backup_id"].as_str().unwrap().to_owned();

    let v = verify(&server, token.clone()).await;
    let body = json!({"consumer_id": SUBJECT, "request_type": "consumer_request", "verification_token": v});
    let (status, deletion) = send(&server, &token, reqwest::Method::DELETE, "/api/v1/ccpa/delete", Some(body)).await;
    assert_eq!(status, 200, "{deletion}");
    assert_eq!(deletion["records_deleted"], 3);
    assert_eq!(deletion["service_providers_notified"], json!(["crm"]));
    let id = deletion["deletion_id"].as_str().unwrap().to_owned();
    let mut status = Value::Null;
    for _ in 0..100 {
        status = send(&server, &token, reqwest::Method::GET, &format!("/api/v1/ccpa/delete/{id}"), None).await.1;
        if status["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["status"], "completed", "{status}");
    {
        let got = got.lock().unwrap();
        let notices = got.get(&id).expect("the provider was told");
        assert_eq!(notices.len(), 1, "once");
        let (payload, signed) = &notices[0];
        assert!(signed, "signed with the provider's secret");
        assert_eq!(
            (payload["event_type"].as_str(), payload["subject_id"].as_str()),
            (Some("subject_erased"), Some(SUBJECT))
        );
    }
    assert!(server.stop().success());

    // The backup from before the deletion comes back; the erasure ledger takes the subject out again.
    let file = data.join("backups").join(format!("{backup_id}.rbk"));
    let out = bin()
        .arg("backup")
        .arg("--data-dir")
        .arg(&data)
        .args(["restore", file.to_str().unwrap(), "--force"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = start(opts());
    let token = server.login(&server.client(), "admin", ADMIN_PASSWORD).await;
    for c in ["patients", "visits", "billing"] {
        let gone = server.get_json(&token, format!("/api/v1/collections/{c}/documents?subject_id={SUBJECT}")).await;
        assert_eq!(gone["documents"], json!([]), "{c} after restore");
        let kept = server.get_json(&token, format!("/api/v1/collections/{c}/documents?tag=kept%20value")).await;
        assert_eq!(kept["documents"].as_array().unwrap().len(), 1, "{c}: another subject's record is back");
    }
    let summary = server.get_json(&token, format!("/api/v1/ccpa/access?consumer_id={SUBJECT}")).await;
    assert_eq!((summary["records"].clone(), summary["previously_erased"].clone()), (json!(0), json!(true)));
    let stderr = server.stderr_path.clone();
    assert!(server.stop().success());

    let mut searched = files_under(&data);
    searched.push((stderr.clone(), std::fs::read(&stderr).unwrap_or_default()));
    let names: Vec<String> = searched.iter().map(|(p, _)| p.display().to_string()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("activity.log")) && names.iter().any(|n| n.ends_with("audit.log")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with(".rbk")), "the old backup is searched too");
    for (path, bytes) in searched {
        assert!(!contains(&bytes, CANARY.as_bytes()), "the canary is in {}", path.display());
        assert!(!contains(&bytes, SUBJECT.as_bytes()), "the subject id is in {}", path.display());
    }
}
