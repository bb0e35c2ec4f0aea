//! Unit tests of the admin API: the route table against the OpenAPI document, the token.

use super::*;
use serde_json::Value;

#[test]
fn every_route_is_in_the_openapi_document_and_nothing_else() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI file is JSON");
    assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"));
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    for (path, ops) in paths {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if ops.get(method).is_some() {
                documented.push((method.to_owned(), path.clone()));
            }
        }
    }
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), format!("{PREFIX}{p}")))
        .collect();
    served.sort();
    documented.sort();
    assert_eq!(served, documented);
}

#[test]
fn the_token_matches_only_itself() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("token");
    std::fs::write(&path, "  s3cret-token\n").expect("write");
    let token = load_token(&path).expect("load");
    assert!(token.matches(b"s3cret-token"));
    assert!(!token.matches(b"s3cret-toke"));
    assert!(!token.matches(b""));
    assert!(!format!("{token:?}").contains("s3cret"));
    std::fs::write(&path, " \n").expect("write");
    let e = load_token(&path).expect_err("empty");
    assert!(e.to_string().contains("admin.token_file"), "{e}");
    let e = load_token(&dir.path().join("missing")).expect_err("missing");
    assert!(e.to_string().contains("admin.token_file"), "{e}");
}
