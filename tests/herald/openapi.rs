//! `GET /v1/openapi.json` against the router: the document served by the running app lists
//! exactly the routes `herald::routes::configure` registers (read from the route table it
//! registers from, `herald::routes::ROUTES`, not from a list kept here), and every route of
//! that table is really answered by the running app.
//!
//! Every route is in the document, the WebSocket and Socket.IO upgrades and `/healthz`,
//! `/readyz`, `/metrics` included: they are HTTP routes a client or an operator calls. The
//! one exclusion is the *aliases* (`/socket.io` and `/ws/notifications` without the trailing
//! slash): the same handler as their canonical path, which the document describes and whose
//! description names the alias.

use std::collections::BTreeSet;

use herald::routes::{registered_routes, ROUTES};
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_on};

/// The (METHOD, path) pairs of an OpenAPI document's `paths`.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().expect("path item is an object").keys() {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[actix_web::test]
async fn openapi_document_lists_exactly_the_routes_the_router_registers() {
    // Arrange
    let (app, _db) = spawn_app().await;

    // Act: no token; it describes the public API.
    let (status, doc) = app.get("/v1/openapi.json", None).await;

    // Assert
    assert_eq!(status, 200, "{doc}");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let in_doc = documented(&doc);
    let registered: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.verb.as_str().to_owned(), r.path.to_owned()))
        .collect();
    let undocumented: Vec<_> = registered.difference(&in_doc).collect();
    let unrouted: Vec<_> = in_doc.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "registered but not in /v1/openapi.json (add #[utoipa::path] and list it in \
         src/routes/openapi.rs): {undocumented:?}; in the document but not registered: \
         {unrouted:?}"
    );
    // The aliases are excluded, but their canonical path's description must name them.
    for route in ROUTES.iter().filter(|r| !r.aliases.is_empty()) {
        let op = &doc["paths"][route.path][route.verb.as_str().to_lowercase()];
        let description = op["description"].as_str().unwrap_or_default();
        for alias in route.aliases {
            assert!(
                description.contains(&format!("`{alias}`")),
                "{} {}: the description should name the alias {alias}",
                route.verb.as_str(),
                route.path
            );
        }
    }
    // operationIds are unique (clients generate method names from them).
    let mut ids = BTreeSet::new();
    for (method, path) in &in_doc {
        let id = doc["paths"][path][method.to_lowercase()]["operationId"].clone();
        assert!(
            ids.insert(id.to_string()),
            "{method} {path}: operationId {id} repeats"
        );
    }
    // Every operation that takes a token documents the 401 it can answer.
    for (method, path) in &in_doc {
        let op = &doc["paths"][path][method.to_lowercase()];
        if op.get("security").is_some() {
            assert!(op["responses"].get("401").is_some(), "{method} {path}");
        }
    }
}

#[actix_web::test]
async fn every_route_of_the_table_is_answered_by_the_running_app() {
    // Arrange: with diagnostics, so that /v1/ws/echo exists.
    let db = herald::testkit::TestDatabase::new();
    let app = spawn_app_on(&db.url, |s| s.diagnostics = true).await;
    let client = awc::Client::default();

    // Act / Assert: a request without a token to each route, placeholders filled in, is
    // answered by its handler (401, 400, ...), not by the router's 404 "no such route".
    let mut unserved = Vec::new();
    for (method, template) in registered_routes() {
        let path = template.replace(['{', '}'], "");
        let url = format!("{}{path}", app.address);
        let method = actix_web::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut resp = client
            .request(method.clone(), url)
            .send()
            .await
            .expect("http request");
        let body = resp.body().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if resp.status() == 404 && body["error"]["message"] == "no such route" {
            unserved.push(format!("{method} {template}"));
        }
    }
    assert!(
        unserved.is_empty(),
        "in ROUTES but not served: {unserved:?}"
    );
    let (status, body) = app.get("/v1/not-a-route", None).await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (404, &"no such route".into())
    );
}
