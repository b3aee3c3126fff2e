//! Architecture invariants of ARCHITECTURE.md, checked against the source tree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn crates() -> Vec<(String, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

/// Production sources of a crate: `src/**/*.rs`, without `#[cfg(test)] mod tests` files.
fn sources(krate: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![krate.join("src")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("tests.rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                // Drop inline unit tests: they may use anything.
                let prod = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
                out.push((p, prod));
            }
        }
    }
    out
}

fn normal_dependencies(krate: &Path) -> String {
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap_or("");
    deps.split("\n[").next().unwrap_or("").to_owned()
}

#[test]
fn core_depends_on_no_transport_or_database_crate() {
    let deps = normal_dependencies(&workspace().join("crates/rampart-core"));
    for banned in
        ["axum", "hyper", "sqlx", "rusqlite", "tokio-postgres", "reqwest", "rampart-http", "rampart-store-sqlite"]
    {
        assert!(!deps.lines().any(|l| l.trim_start().starts_with(banned)), "rampart-core depends on {banned}");
    }
}

#[test]
fn dependencies_point_one_way() {
    let allowed: &[(&str, &[&str])] = &[
        ("rampart-types", &[]),
        ("rampart-crypto", &["rampart-types"]),
        ("rampart-config", &["rampart-types"]),
        ("rampart-store", &["rampart-types"]),
        ("rampart-store-sqlite", &["rampart-store", "rampart-types"]),
        ("rampart-core", &["rampart-types", "rampart-crypto", "rampart-config", "rampart-store"]),
        ("rampart-http", &["rampart-core", "rampart-types", "rampart-config"]),
    ];
    for (name, ok) in allowed {
        let deps = normal_dependencies(&workspace().join("crates").join(name));
        for line in deps.lines() {
            let dep = line.split(['.', '=', ' ']).next().unwrap_or("");
            if dep.starts_with("rampart") {
                assert!(ok.contains(&dep), "{name} must not depend on {dep}");
            }
        }
    }
}

#[test]
fn only_store_crates_contain_sql() {
    let sql = ["SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", "CREATE TABLE"];
    for (name, path) in crates() {
        if name.starts_with("rampart-store-") || name == "rampart-testkit" {
            continue;
        }
        for (file, text) in sources(&path) {
            for s in sql {
                assert!(!text.contains(s), "{} contains SQL ({s:?})", file.display());
            }
        }
    }
}

#[test]
fn only_http_knows_status_codes() {
    for (name, path) in crates() {
        if ["rampart-http", "rampart-testkit", "rampart", "rampart-bench"].contains(&name.as_str()) {
            continue;
        }
        for (file, text) in sources(&path) {
            assert!(!text.contains("StatusCode"), "{} uses HTTP status codes", file.display());
        }
    }
}

#[test]
fn environment_and_wall_clock_are_read_in_one_place_each() {
    for (name, path) in crates() {
        for (file, text) in sources(&path) {
            let f = file.display().to_string();
            if name != "rampart-config" && name != "rampart-bench" {
                assert!(!text.contains("std::env::var"), "{f} reads the environment");
            }
            if !f.ends_with("rampart-core/src/clock.rs") && name != "rampart-bench" {
                assert!(!text.contains("SystemTime::now"), "{f} reads the wall clock");
            }
        }
    }
}

#[test]
fn every_crate_uses_the_workspace_lints() {
    for (name, path) in crates() {
        let manifest = std::fs::read_to_string(path.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[lints]\nworkspace = true"), "{name} does not inherit the workspace lints");
    }
    let root = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    assert!(root.contains("unsafe_code = \"forbid\""));
    for lint in ["unwrap_used", "expect_used", "panic", "todo"] {
        assert!(root.contains(&format!("{lint} = \"deny\"")), "{lint}");
    }
}
