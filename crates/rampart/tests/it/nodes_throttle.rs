//! The per-account login delay is one budget for every node of a PostgreSQL deployment:
//! with a delay per node, an attacker spreading guesses over N nodes would get N times the
//! budget.

use serde_json::json;

use crate::postgres::node;
use crate::support::{Server, ADMIN_PASSWORD};
use rampart_testkit::postgres::PgDatabase;

async fn login(server: &Server, c: &reqwest::Client, user: &str, password: &str) -> reqwest::Response {
    c.post(server.url("/api/v1/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

fn retry_after(res: &reqwest::Response) -> u64 {
    let value = res.headers().get("retry-after").expect("a delayed login says when to retry");
    value.to_str().unwrap().parse().unwrap()
}

/// Five wrong passwords for `admin` on node A (`login_delay_after_failures` is 5) and the
/// right one on node B is answered 429 with `Retry-After`; another account is not delayed.
/// The delay keeps growing whichever node the next failure reaches, and ends: once it has
/// passed, the right password logs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_on_one_node_delay_the_account_on_the_other() {
    let db = PgDatabase::create();
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&tmp.path().join("a"), &db, "node-a");
    let b = node(&tmp.path().join("b"), &db, "node-b");
    let (ca, cb) = (a.client(), b.client());
    // Both connections are open before the guesses: the first delay is one second, and
    // node B's answer must not spend it on a TLS handshake.
    for (server, c) in [(&a, &ca), (&b, &cb)] {
        assert_eq!(c.get(server.url("/health")).send().await.unwrap().status(), 200);
    }

    for i in 0..5 {
        let res = login(&a, &ca, "admin", &format!("Wrong-Guess-{i}!")).await;
        assert_eq!(res.status(), 401, "guess {i} on node A");
    }
    let res = login(&b, &cb, "admin", ADMIN_PASSWORD).await;
    assert_eq!(res.status(), 429, "node B delays the account node A saw fail");
    assert_eq!(retry_after(&res), 1);
    let other = login(&b, &cb, "someone-else", "Wrong-Guess-x!").await;
    assert_eq!(other.status(), 401, "another account is not delayed");

    // The next failure, on node B, doubles the delay for node A.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let res = login(&b, &cb, "admin", "Wrong-Guess-5!").await;
    assert_eq!(res.status(), 401, "the sixth guess, on node B, once the delay passed");
    let res = login(&a, &ca, "admin", ADMIN_PASSWORD).await;
    assert_eq!(res.status(), 429, "node A delays the account node B saw fail");
    assert!((1..=2).contains(&retry_after(&res)), "{:?}", res.headers());

    // Never a lockout: after the delay the right password logs in, on either node.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after(&res))).await;
    let res = login(&a, &ca, "admin", ADMIN_PASSWORD).await;
    assert_eq!(res.status(), 200);
    assert!(a.stop().success() && b.stop().success());
}
