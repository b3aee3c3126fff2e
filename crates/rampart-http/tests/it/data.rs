use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use rampart_testkit::TestApp;
use serde_json::json;

async fn setup() -> (TestApp, String) {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let res = app
        .post(
            "/api/v1/collections",
            Some(&admin),
            json!({"name": "people", "indexes": ["email", "tags", "address.city"], "pii_fields": ["email"]}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
    (app, admin)
}

#[tokio::test]
async fn insert_returns_the_spec_shape_with_an_etag() {
    let (app, admin) = setup().await;
    let res = app
        .post(
            "/api/v1/collections/people/documents",
            Some(&admin),
            json!({"data": {"email": "a@b.c"}, "subject_id": "subj-1"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    for key in ["id", "version", "subject_id", "data", "created_at", "updated_at"] {
        assert!(res.body.get(key).is_some(), "missing {key}");
    }
    assert_eq!(res.body["subject_id"], "subj-1");
    assert_eq!(res.header("etag"), Some("\"1\""));
}

#[tokio::test]
async fn equality_queries_use_declared_indexes_and_paginate() {
    let (app, admin) = setup().await;
    for i in 0..7 {
        let data = json!({"email": format!("u{i}@x.io"), "tags": ["all", if i % 2 == 0 { "even" } else { "odd" }], "address": {"city": "Oslo"}});
        let subject = format!("s{}", i % 3);
        app.post("/api/v1/collections/people/documents", Some(&admin), json!({"data": data, "subject_id": subject}))
            .await;
    }
    let one = app.get("/api/v1/collections/people/documents?email=u3@x.io", Some(&admin)).await;
    let docs = one.body["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["data"]["email"], "u3@x.io");
    let even = app.get("/api/v1/collections/people/documents?tags=even", Some(&admin)).await;
    assert_eq!(even.body["documents"].as_array().unwrap().len(), 4);
    let both =
        app.get("/api/v1/collections/people/documents?tags=even&address.city=Oslo&subject_id=s0", Some(&admin)).await;
    assert_eq!(both.body["documents"].as_array().unwrap().len(), 2, "{:?}", both.body);
    let none = app.get("/api/v1/collections/people/documents?email=nobody@x.io", Some(&admin)).await;
    assert!(none.body["documents"].as_array().unwrap().is_empty());

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("/api/v1/collections/people/documents?tags=all&limit=3&cursor={c}"),
            None => "/api/v1/collections/people/documents?tags=all&limit=3".to_owned(),
        };
        let page = app.get(&q, Some(&admin)).await;
        assert_eq!(page.status, StatusCode::OK);
        for d in page.body["documents"].as_array().unwrap() {
            seen.push(d["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 7, "pages overlap");
}

#[tokio::test]
async fn query_rules_are_enforced() {
    let (app, admin) = setup().await;
    let res = app.get("/api/v1/collections/people/documents?name=x", Some(&admin)).await;
    assert_eq!((res.status, res.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("name")));
    for bad in ["limit=0", "limit=abc", "limit=100000", "cursor=zzz"] {
        let res = app.get(&format!("/api/v1/collections/people/documents?{bad}"), Some(&admin)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let res = app.get("/api/v1/collections/nope/documents", Some(&admin)).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn changing_indexes_rebuilds_the_blind_index() {
    let (app, admin) = setup().await;
    app.post("/api/v1/collections/people/documents", Some(&admin), json!({"data": {"email": "e@x.io", "name": "Zed"}}))
        .await;
    let res = app.get("/api/v1/collections/people/documents?name=Zed", Some(&admin)).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let res =
        app.call(Method::PATCH, "/api/v1/collections/people", Some(&admin), Some(json!({"indexes": ["name"]}))).await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    let res = app.get("/api/v1/collections/people/documents?name=Zed", Some(&admin)).await;
    assert_eq!(res.body["documents"].as_array().unwrap().len(), 1);
    let res = app.get("/api/v1/collections/people/documents?email=e@x.io", Some(&admin)).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "email is no longer indexed");
}

#[tokio::test]
async fn etags_and_if_match_guard_against_lost_updates() {
    let (app, admin) = setup().await;
    let created = app
        .post("/api/v1/collections/people/documents", Some(&admin), json!({"data": {"email": "a@x.io", "n": 1}}))
        .await;
    let path = format!("/api/v1/collections/people/documents/{}", created.body["id"].as_str().unwrap());
    let send = |method: Method, if_match: Option<&str>, body: Option<serde_json::Value>| {
        let mut b =
            Request::builder().method(method).uri(&path).header(header::AUTHORIZATION, format!("Bearer {admin}"));
        if let Some(m) = if_match {
            b = b.header(header::IF_MATCH, m);
        }
        let req = match body {
            Some(v) => b.header(header::CONTENT_TYPE, "application/json").body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        };
        app.send(req.unwrap())
    };
    let got = app.get(&path, Some(&admin)).await;
    assert_eq!(got.header("etag"), Some("\"1\""));
    let put = send(Method::PUT, Some("\"1\""), Some(json!({"data": {"email": "b@x.io"}}))).await;
    assert_eq!((put.status, put.header("etag")), (StatusCode::OK, Some("\"2\"")));
    let stale = send(Method::PUT, Some("\"1\""), Some(json!({"data": {"email": "c@x.io"}}))).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::PRECONDITION_FAILED, "precondition_failed"));
    let garbage = send(Method::PATCH, Some("not-an-etag"), Some(json!({"data": {"x": 1}}))).await;
    assert_eq!(garbage.status, StatusCode::PRECONDITION_FAILED);
    let patched = send(Method::PATCH, Some("\"2\""), Some(json!({"data": {"x": 1, "n": null}}))).await;
    assert_eq!(patched.body["data"], json!({"email": "b@x.io", "x": 1}));
    assert_eq!(patched.body["version"], 3);
    // The old indexed value no longer matches; the new one does.
    assert!(app.get("/api/v1/collections/people/documents?email=a@x.io", Some(&admin)).await.body["documents"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        app.get("/api/v1/collections/people/documents?email=b@x.io", Some(&admin)).await.body["documents"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let del_stale = send(Method::DELETE, Some("\"2\""), None).await;
    assert_eq!(del_stale.status, StatusCode::PRECONDITION_FAILED);
    let del = send(Method::DELETE, Some("\"3\""), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path, Some(&admin)).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn oversized_deep_malformed_and_mistyped_bodies_are_4xx_with_paths() {
    let (app, admin) = setup().await;
    let docs = "/api/v1/collections/people/documents";
    let big = json!({"data": {"blob": "x".repeat(1024 * 1024)}});
    let res = app.post(docs, Some(&admin), big).await;
    assert_eq!((res.status, res.code()), (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"));

    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let res = app.post(docs, Some(&admin), json!({"data": {"d": deep}})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body["error"].as_str().unwrap().contains("nesting"));

    let req = Request::builder()
        .method(Method::POST)
        .uri(docs)
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"data\": {"))
        .unwrap();
    let res = app.send(req).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body["error"].as_str().unwrap().starts_with("malformed JSON"));

    let res = app.post(docs, Some(&admin), json!({"data": {}, "colour": "red"})).await;
    assert_eq!((res.status, res.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("colour")));
    let res = app.post(docs, Some(&admin), json!({"data": [1, 2]})).await;
    assert_eq!((res.status, res.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("data")));
    let res = app.post("/api/v1/collections", Some(&admin), json!({"name": "x", "indexes": "email"})).await;
    assert_eq!((res.status, res.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("indexes")));
    let res = app.post("/api/v1/collections", Some(&admin), json!({"name": "Bad Name"})).await;
    assert_eq!((res.status, res.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("collection")));
    let res = app.post("/api/v1/collections", Some(&admin), json!({"name": "ok", "indexes": ["a..b"]})).await;
    assert_eq!((res.status, res.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("indexes[0]")));
    let res = app.post(docs, Some(&admin), json!({"data": {}, "subject_id": "has space"})).await;
    assert_eq!((res.status, res.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("subject_id")));

    let req = Request::builder()
        .method(Method::POST)
        .uri(docs)
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let dup = app.post("/api/v1/collections", Some(&admin), json!({"name": "people"})).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
}
