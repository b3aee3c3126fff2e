use axum::http::{Method, StatusCode};
use rampart_http::{route_inventory, Access};
use rampart_testkit::{TestApp, ADMIN};
use serde_json::json;

async fn custom_role(app: &TestApp, admin: &str, name: &str, permissions: &[&str], collections: Option<&[&str]>) {
    let res = app
        .post(
            "/api/v1/roles",
            Some(admin),
            json!({"name": name, "permissions": permissions, "collections": collections}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.body);
}

#[tokio::test]
async fn viewer_cannot_write_documents_or_read_users() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    app.post("/api/v1/collections", Some(&admin), json!({"name": "c"})).await;
    let viewer = app.user_with_role("vic", "viewer").await;
    let res = app.post("/api/v1/collections/c/documents", Some(&viewer), json!({"data": {"a": 1}})).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(app.get("/api/v1/users", Some(&viewer)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/v1/users/admin", Some(&viewer)).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.get("/api/v1/collections/c/documents", Some(&viewer)).await.status, StatusCode::OK);
    assert_eq!(
        app.call(Method::DELETE, "/api/v1/collections/c", Some(&viewer), None).await.status,
        StatusCode::FORBIDDEN
    );
}

fn concrete(path: &str, doc_id: &str) -> String {
    path.replace("{collection}", "walk")
        .replace("{id}", doc_id)
        .replace("{username}", "target")
        .replace("{name}", "walk-role")
        .replace("{hold_id}", "hold-000000000000000000000000")
}

/// Walks every route the router serves: without credentials each non-public route must
/// answer 401, and for a user whose role holds no permission each permission route must
/// answer 403. A handler that forgot its authorization extractor fails one of the two.
#[tokio::test]
async fn every_route_makes_an_authorization_decision() {
    // Hundreds of refusals on purpose: breach detection would (rightly) block this client.
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    let admin = app.admin_token().await;
    app.post("/api/v1/collections", Some(&admin), json!({"name": "walk"})).await;
    let doc = app.post("/api/v1/collections/walk/documents", Some(&admin), json!({"data": {"a": 1}})).await;
    let doc_id = doc.body["id"].as_str().unwrap().to_owned();
    custom_role(&app, &admin, "nothing", &[], None).await;
    custom_role(&app, &admin, "walk-role", &["documents.read"], None).await;
    app.user_with_role("target", "viewer").await;
    app.user_with_role("powerless", "nothing").await;

    let powerless = app.token("powerless", rampart_testkit::USER_PASSWORD).await;
    let routes = route_inventory();
    assert!(routes.len() >= 25, "inventory lists {} routes", routes.len());
    for route in routes {
        let path = concrete(route.path, &doc_id);
        let body = matches!(route.method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
        let anon = app.call(route.method.clone(), &path, None, body.clone()).await;
        assert_ne!(anon.status, StatusCode::INTERNAL_SERVER_ERROR, "{} {}", route.method, route.path);
        match route.access {
            Access::Public => assert_ne!(anon.status, StatusCode::UNAUTHORIZED, "{} {}", route.method, route.path),
            _ => {
                assert_eq!(anon.status, StatusCode::UNAUTHORIZED, "{} {} without credentials", route.method, route.path)
            }
        }
        if route.access == Access::Permission {
            let res = app.call(route.method.clone(), &path, Some(&powerless), body).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{} {} with no permissions", route.method, route.path);
        }
    }
}

#[tokio::test]
async fn users_cannot_raise_their_own_or_anyone_elses_privileges() {
    // The refusals are the subject here; the escalation response is tested in security.rs.
    let app = TestApp::with_config(|c| c.breach.enabled = false).await;
    let admin = app.admin_token().await;
    custom_role(
        &app,
        &admin,
        "user-manager",
        &["users.read", "users.create", "users.update", "roles.manage", "roles.read"],
        None,
    )
    .await;
    let um = app.user_with_role("manny", "user-manager").await;
    app.user_with_role("vera", "viewer").await;

    let own = app.call(Method::PATCH, "/api/v1/users/manny", Some(&um), Some(json!({"role": "admin"}))).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    let other = app.call(Method::PATCH, "/api/v1/users/vera", Some(&um), Some(json!({"role": "admin"}))).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "cannot hand out a role it does not cover");
    let new_admin = app
        .post(
            "/api/v1/users",
            Some(&um),
            json!({"username": "sneaky", "password": rampart_testkit::USER_PASSWORD, "role": "admin"}),
        )
        .await;
    assert_eq!(new_admin.status, StatusCode::FORBIDDEN);
    let bigger_role =
        app.post("/api/v1/roles", Some(&um), json!({"name": "bigger", "permissions": ["keys.rotate"]})).await;
    assert_eq!(bigger_role.status, StatusCode::FORBIDDEN);
    let on_admin = app.call(Method::PATCH, "/api/v1/users/admin", Some(&um), Some(json!({"disabled": true}))).await;
    assert_eq!(on_admin.status, StatusCode::FORBIDDEN, "cannot act on a more privileged user");
    // What it does hold, it may grant.
    let ok = app.post("/api/v1/roles", Some(&um), json!({"name": "reader", "permissions": ["users.read"]})).await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let me = app.get("/api/v1/auth/me", Some(&um)).await;
    assert_eq!(me.body["role"], "user-manager");
}

#[tokio::test]
async fn the_last_admin_cannot_be_removed_disabled_or_demoted() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let path = format!("/api/v1/users/{ADMIN}");
    let disable = app.call(Method::PATCH, &path, Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!(disable.status, StatusCode::CONFLICT);
    let delete = app.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(delete.status, StatusCode::CONFLICT);
    // Through the core directly (as the CLI does), demotion is refused too.
    let cli = app.core.authorize_local().await.unwrap();
    let demote = app.core.users().update_user(&cli, ADMIN, Some("viewer".into()), None).await;
    assert!(matches!(demote, Err(rampart_core::CoreError::Conflict(_))), "{demote:?}");
    assert_eq!(app.get("/api/v1/auth/me", Some(&admin)).await.body["role"], "admin");
    // With a second admin, the first may go.
    let second = app.user_with_role("second", "admin").await;
    let res = app.call(Method::DELETE, &path, Some(&second), None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn collection_scoped_roles_see_only_their_collections() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    for c in ["alpha", "beta"] {
        app.post("/api/v1/collections", Some(&admin), json!({"name": c})).await;
        app.post(&format!("/api/v1/collections/{c}/documents"), Some(&admin), json!({"data": {"c": c}})).await;
    }
    custom_role(
        &app,
        &admin,
        "alpha-editor",
        &["collections.read", "documents.read", "documents.write"],
        Some(&["alpha"]),
    )
    .await;
    let t = app.user_with_role("al", "alpha-editor").await;
    assert_eq!(app.get("/api/v1/collections/alpha/documents", Some(&t)).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/collections/beta/documents", Some(&t)).await.status, StatusCode::FORBIDDEN);
    let res = app.post("/api/v1/collections/beta/documents", Some(&t), json!({"data": {}})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let res = app.post("/api/v1/collections/alpha/documents", Some(&t), json!({"data": {}})).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let list = app.get("/api/v1/collections", Some(&t)).await;
    let names: Vec<&str> =
        list.body["collections"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["alpha"]);
}

#[tokio::test]
async fn changing_a_custom_role_ends_its_holders_sessions_and_builtins_are_fixed() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    custom_role(&app, &admin, "temp", &["documents.read"], None).await;
    let t = app.user_with_role("tim", "temp").await;
    let res = app
        .call(
            Method::PUT,
            "/api/v1/roles/temp",
            Some(&admin),
            Some(json!({"permissions": ["documents.read", "collections.read"]})),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.body);
    assert_eq!(app.get("/api/v1/auth/me", Some(&t)).await.status, StatusCode::UNAUTHORIZED);
    let res = app.call(Method::PUT, "/api/v1/roles/viewer", Some(&admin), Some(json!({"permissions": []}))).await;
    assert_eq!(res.status, StatusCode::CONFLICT);
    let res = app.call(Method::DELETE, "/api/v1/roles/temp", Some(&admin), None).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "role still assigned");
    let roles = app.get("/api/v1/roles", Some(&admin)).await;
    assert_eq!(roles.body["roles"].as_array().unwrap().iter().filter(|r| r["builtin"] == true).count(), 7);
}

/// Deleting a role follows the same rule as creating or changing one: only roles whose
/// permissions the actor holds.
#[tokio::test]
async fn roles_you_do_not_cover_cannot_be_deleted() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let strong = json!({"name": "strong", "permissions": ["users.read", "audit.read", "roles.manage", "roles.read"]});
    assert_eq!(app.post("/api/v1/roles", Some(&admin), strong).await.status, StatusCode::CREATED);
    let weak = json!({"name": "rolemgr", "permissions": ["roles.manage", "roles.read"]});
    assert_eq!(app.post("/api/v1/roles", Some(&admin), weak).await.status, StatusCode::CREATED);
    let mgr = app.user_with_role("rita", "rolemgr").await;
    let res = app.call(Method::DELETE, "/api/v1/roles/strong", Some(&mgr), None).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{:?}", res.body);
    assert_eq!(app.get("/api/v1/roles/strong", Some(&admin)).await.status, StatusCode::OK, "still there");
    assert_eq!(
        app.call(Method::DELETE, "/api/v1/roles/strong", Some(&admin), None).await.status,
        StatusCode::NO_CONTENT
    );
}

/// The authorization matrix: every permission route of the route table, for every
/// built-in role, against the role's grants; plus own-versus-other for session routes.
/// A refusal counts as "denied" only when it is the permission check's ("permission
/// denied"); rules past it (escalation, last admin) answer otherwise. 0 mismatches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_matrix_has_no_mismatches() {
    let app = TestApp::with_config(|c| {
        c.breach.enabled = false;
        c.rate_limit.enabled = false;
    })
    .await;
    let admin = app.admin_token().await;
    app.post("/api/v1/collections", Some(&admin), json!({"name": "walk"})).await;
    custom_role(&app, &admin, "walk-role", &["documents.read"], None).await;
    app.user_with_role("target", "viewer").await;
    let target = app.token("target", rampart_testkit::USER_PASSWORD).await;
    let target_session =
        app.get("/api/v1/auth/sessions", Some(&target)).await.body["sessions"][0]["id"].as_str().unwrap().to_owned();
    let roles = rampart_core::builtin_roles(rampart_testkit::T0);
    let mut tokens = Vec::new();
    for role in &roles {
        let name = format!("m-{}", role.name.as_str().replace('_', "-"));
        tokens.push((role.clone(), app.user_with_role(&name, role.name.as_str()).await));
    }
    let collection = rampart_types::CollectionName::parse("walk").unwrap();
    let (mut checked, mut mismatches) = (0, Vec::new());
    for route in route_inventory().into_iter().filter(|r| r.access == Access::Permission) {
        let perm = route.permission.expect("permission routes declare their permission");
        for (role, token) in &tokens {
            let doc = app.post("/api/v1/collections/walk/documents", Some(&admin), json!({"data": {"a": 1}})).await;
            let doc_id = doc.body["id"].as_str().unwrap_or("missing").to_owned();
            let path = concrete(route.path, &doc_id);
            let body = matches!(route.method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
            let res = app.call(route.method.clone(), &path, Some(token), body).await;
            let denied = res.status == StatusCode::FORBIDDEN && res.body["error"] == "permission denied";
            let scope = (perm.scope() == rampart_types::PermissionScope::Collection).then_some(&collection);
            let expected = rampart_core::grants(role, perm, scope);
            checked += 1;
            if denied == expected || res.status == StatusCode::INTERNAL_SERVER_ERROR {
                mismatches
                    .push(format!("{} {} as {}: {} {:?}", route.method, route.path, role.name, res.status, res.body));
            }
            // Whatever the route did (deleted the collection, the target...), put it back.
            app.post("/api/v1/collections", Some(&admin), json!({"name": "walk"})).await;
        }
    }
    // Own and other: one's own sessions always; another user's only with sessions.manage.
    for (role, token) in &tokens {
        let manage = rampart_core::grants(role, rampart_types::Permission::SessionsManage, None);
        let own = app.get("/api/v1/auth/sessions", Some(token)).await;
        let other = app.get("/api/v1/auth/sessions?username=target", Some(token)).await;
        let end_other =
            app.call(Method::DELETE, &format!("/api/v1/auth/sessions/{target_session}"), Some(token), None).await;
        checked += 3;
        for (what, res, allowed) in [("own", &own, true), ("other", &other, manage)] {
            if (res.status == StatusCode::OK) != allowed {
                mismatches.push(format!("list {what} sessions as {}: {}", role.name, res.status));
            }
        }
        let ended = end_other.status == StatusCode::NO_CONTENT || end_other.status == StatusCode::NOT_FOUND;
        if ended != manage {
            mismatches.push(format!("end another's session as {}: {}", role.name, end_other.status));
        }
    }
    let summary = format!("authorization matrix: {checked} requests, {} mismatches", mismatches.len());
    if let Some(dir) = std::env::var_os("RAMPART_SECURITY_RESULTS") {
        std::fs::write(std::path::Path::new(&dir).join("authz-matrix.txt"), format!("{summary}\n")).unwrap();
    }
    assert!(mismatches.is_empty(), "{summary}:\n{}", mismatches.join("\n"));
    assert!(checked > 250, "{summary}");
}
