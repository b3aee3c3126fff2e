//! `GET /api/v1/openapi.json`: public, JSON, and the document of the routes served.
use rampart_testkit::TestApp;

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
