//! `GET /api/v1/openapi.json`: public, JSON, and the document of the routes served.
use rampart_testkit::TestApp;
use serde_json::json;

#[tokio::test]
async fn the_openapi_document_is_public_and_documents_itself() {
    let app = TestApp::new().await;
    let res = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    assert!(res.header("content-type").is_some_and(|c| c.starts_with("application/json")));
    assert_eq!(res.body["openapi"], "3.1.0");
    assert!(res.body["paths"]["/api/v1/openapi.json"]["get"].is_object());
    // The login answer is the typed one, with the error schema beside it.
    let login = &res.body["paths"]["/api/v1/auth/login"]["post"];
    assert_eq!(
        login["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/LoginRequest"
    );
    assert_eq!(
        login["responses"]["429"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    let login_request = &res.body["components"]["schemas"]["LoginRequest"];
    assert_eq!(login_request["additionalProperties"], false, "unknown fields are refused: {login_request}");
    // Served as built at start: the same bytes each time.
    assert_eq!(app.get("/api/v1/openapi.json", None).await.raw, res.raw);
}

/// Found by schemathesis: malformed usernames, role names and addresses in the path are
/// refused with 400, which the document did not list; a PATCH of a user without a body
/// (read as `{}`) succeeds, so its body is optional. Each answer here must be documented.
#[tokio::test]
async fn answers_to_malformed_path_parameters_are_documented() {
    use axum::http::Method;
    let app = TestApp::new().await;
    let doc = app.get("/api/v1/openapi.json", None).await.body;
    let admin = app.admin_token().await;
    app.user_with_role("reader", "viewer").await;
    let cases = [
        (Method::GET, "/api/v1/users/{username}", "/api/v1/users/Not%20A%20Name", 400),
        (Method::DELETE, "/api/v1/users/{username}", "/api/v1/users/Not%20A%20Name", 400),
        (Method::GET, "/api/v1/roles/{name}", "/api/v1/roles/Not%20A%20Name", 400),
        (Method::DELETE, "/api/v1/roles/{name}", "/api/v1/roles/Not%20A%20Name", 400),
        (Method::DELETE, "/api/v1/admin/security/blocked-ips/{ip}", "/api/v1/admin/security/blocked-ips/0", 400),
        (Method::PATCH, "/api/v1/users/{username}", "/api/v1/users/reader", 200),
    ];
    for (method, route, path, status) in cases {
        let res = app.call(method.clone(), path, Some(&admin), None).await;
        assert_eq!(res.status, status, "{method} {path}: {:?}", res.body);
        let op = &doc["paths"][route][method.as_str().to_ascii_lowercase()];
        assert!(op["responses"][status.to_string()].is_object(), "{method} {route} does not document {status}");
        if method == Method::PATCH {
            assert_eq!(op["requestBody"]["required"], false, "{route}: no body reads as {{}}");
        }
    }
}

/// Found by schemathesis: a JSON array was read as a struct by position (`[null, null]`
/// patched a user), an invalid document body or subject was only refused after a foreign
/// `If-Match` tag had failed (412 for input that is simply invalid), and a replaced role's
/// body name was ignored.
#[tokio::test]
async fn invalid_bodies_are_refused_before_anything_else() {
    use axum::http::{header, Method, Request, StatusCode};
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    app.user_with_role("reader", "viewer").await;
    let res = app.call(Method::PATCH, "/api/v1/users/reader", Some(&admin), Some(json!([null, null]))).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "bad_request"), "{:?}", res.body);

    app.post("/api/v1/collections", Some(&admin), json!({"name": "notes"})).await;
    let doc = app.post("/api/v1/collections/notes/documents", Some(&admin), json!({"data": {"a": 1}})).await;
    let path = format!("/api/v1/collections/notes/documents/{}", doc.body["id"].as_str().unwrap());
    for method in [Method::PUT, Method::PATCH] {
        let req = Request::builder()
            .method(method.clone())
            .uri(&path)
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::IF_MATCH, "not-a-tag")
            .body(axum::body::Body::from(json!({"data": [null, null]}).to_string()))
            .unwrap();
        let res = app.send(req).await;
        assert_eq!((res.status, res.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("data")), "{method}");
    }
    let req = Request::builder()
        .method(Method::PUT)
        .uri(&path)
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::IF_MATCH, "not-a-tag")
        .body(axum::body::Body::from(json!({"data": {}, "subject_id": ""}).to_string()))
        .unwrap();
    let res = app.send(req).await;
    assert_eq!((res.status, res.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("subject_id")));

    let role = json!({"name": "readers", "permissions": ["collections.read"]});
    assert_eq!(app.post("/api/v1/roles", Some(&admin), role).await.status, StatusCode::CREATED);
    let renamed = json!({"name": "other", "permissions": ["collections.read"]});
    let res = app.call(Method::PUT, "/api/v1/roles/readers", Some(&admin), Some(renamed)).await;
    assert_eq!((res.status, res.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("name")));
    let same = json!({"name": "readers", "permissions": ["collections.read"]});
    assert_eq!(app.call(Method::PUT, "/api/v1/roles/readers", Some(&admin), Some(same)).await.status, StatusCode::OK);
}
