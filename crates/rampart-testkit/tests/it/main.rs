//! Architecture invariants of ARCHITECTURE.md, checked against the source tree.
//!
//! The source checks parse each production file with `syn` and walk its syntax tree: the paths
//! it names, resolved through its `use` items so that a renamed import cannot hide one, and its
//! string literals. Comments and doc comments are not code and cannot trip them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use syn::buffer::{Cursor, TokenBuffer};
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{Attribute, Expr, ImplItem, Item, Lit, Meta, Stmt, Token, TraitItem, UseTree};

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

/// Production source files of a crate: `src/**/*.rs`, without `tests.rs` (`#[cfg(test)] mod tests;`).
fn sources(krate: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![krate.join("src")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("tests.rs") {
                out.push(p);
            }
        }
    }
    out
}

/// What `find` reports in the production sources of every crate, skipping the files `exempt`
/// names (by crate and path), as `file: finding` lines.
fn violations(exempt: impl Fn(&str, &Path) -> bool, find: fn(&Facts) -> Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, krate) in crates() {
        for file in sources(&krate).into_iter().filter(|f| !exempt(&name, f)) {
            let text = std::fs::read_to_string(&file).unwrap();
            let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            out.extend(find(&Facts::of(&ast)).into_iter().map(|v| format!("{}: {v}", file.display())));
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
        ["axum", "hyper", "sqlx", "rusqlite", "postgres", "tokio-postgres", "reqwest", "rampart-http", "rampart-store-"]
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
        ("rampart-store-postgres", &["rampart-store", "rampart-types"]),
        ("rampart-core", &["rampart-types", "rampart-crypto", "rampart-config", "rampart-store"]),
        ("rampart-http", &["rampart-core", "rampart-types", "rampart-config"]),
        ("rampart-notify", &["rampart-core", "rampart-types", "rampart-config", "rampart-store"]),
        ("rampart-limits-redis", &["rampart-core", "rampart-types", "rampart-config", "rampart-crypto"]),
        ("rampart-vault", &["rampart-config"]),
        ("rampart-oidc", &["rampart-core", "rampart-types", "rampart-config"]),
        ("rampart-ldap", &["rampart-core", "rampart-types", "rampart-config", "rampart-crypto"]),
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
    let found = violations(|name, _| name.starts_with("rampart-store-") || name == "rampart-testkit", sql);
    assert!(found.is_empty(), "SQL outside the store crates:\n{}", found.join("\n"));
}

#[test]
fn only_http_knows_status_codes() {
    let exempt = ["rampart-http", "rampart-testkit", "rampart", "rampart-bench"];
    let found = violations(|name, _| exempt.contains(&name), status_codes);
    assert!(found.is_empty(), "HTTP status codes outside rampart-http:\n{}", found.join("\n"));
}

#[test]
fn environment_and_wall_clock_are_read_in_one_place_each() {
    // The tests' PostgreSQL server is found through the environment `./scripts/test` sets.
    let exempt = |name: &str, file: &Path| {
        name == "rampart-config" || name == "rampart-bench" || file.ends_with("rampart-testkit/src/postgres.rs")
    };
    let found = violations(exempt, environment_reads);
    assert!(found.is_empty(), "the environment is read outside rampart-config:\n{}", found.join("\n"));
    let found = violations(
        |name, file| file.ends_with("rampart-core/src/clock.rs") || name == "rampart-bench",
        wall_clock_reads,
    );
    assert!(found.is_empty(), "the wall clock is read outside rampart-core::clock:\n{}", found.join("\n"));
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

// ---- Reading the sources: what a parsed file names --------------------------------------------

/// What one parsed source file names, outside `#[cfg(test)]` items.
#[derive(Default)]
struct Facts {
    /// Every path in the code (expressions, types, patterns, `use` items, macro bodies, and
    /// `receiver::method` for a method called on a path), its first segment resolved through the
    /// file's `use` items: after `use std::env;`, `env::var` is `std::env::var`. A path a glob
    /// import could complete is listed completed as well (`use std::env::*;` and `var`).
    paths: Vec<Vec<String>>,
    /// The content of every string literal. Comments and doc comments are not among them.
    strings: Vec<String>,
    /// Integer literals passed to a `.status(…)` method: status codes built from their number.
    numeric_statuses: Vec<String>,
}

impl Facts {
    fn of(file: &syn::File) -> Self {
        let mut c = Collector::default();
        c.visit_file(file);
        let Collector { facts: mut out, aliases, globs } = c;
        let globs: Vec<_> = globs.into_iter().filter(|g| !g.is_empty()).map(|g| resolve(g, &aliases)).collect();
        for path in std::mem::take(&mut out.paths).into_iter().filter(|p| !p.is_empty()) {
            if !aliases.contains_key(&path[0]) {
                out.paths.extend(globs.iter().map(|g| [&g[..], &path[..]].concat()));
            }
            out.paths.push(resolve(path, &aliases));
        }
        out
    }
}

/// A path with its first segment replaced by what a `use` item made it stand for, repeatedly
/// (`use std::env; use env::var;`), within a bound so that a cycle ends.
fn resolve(mut path: Vec<String>, aliases: &HashMap<String, Vec<String>>) -> Vec<String> {
    for _ in 0..8 {
        match aliases.get(&path[0]) {
            Some(full) if full[..] != path[..1] => path = [&full[..], &path[1..]].concat(),
            _ => break,
        }
    }
    path
}

/// The syntax-tree walk behind [`Facts::of`].
#[derive(Default)]
struct Collector {
    facts: Facts,
    /// The name each `use` item (or `extern crate … as`) brings into scope → the path it stands for.
    aliases: HashMap<String, Vec<String>>,
    /// The prefixes of glob imports.
    globs: Vec<Vec<String>>,
}

impl Collector {
    /// Records the paths of a `use` tree, the names it binds and its globs.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &UseTree) {
        let (full, name) = match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
                return;
            }
            UseTree::Group(g) => return g.items.iter().for_each(|t| self.use_tree(prefix, t)),
            UseTree::Glob(_) => {
                self.globs.push(prefix.clone());
                return self.facts.paths.push(prefix.clone());
            }
            UseTree::Name(n) => (imported(prefix, &n.ident), n.ident.to_string()),
            UseTree::Rename(r) => (imported(prefix, &r.ident), r.rename.to_string()),
        };
        let name = if name == "self" { full.last().cloned().unwrap_or_default() } else { name };
        if name != "_" {
            self.aliases.insert(name, full.clone());
        }
        self.facts.paths.push(full);
    }

    /// Paths and string literals in tokens that do not parse as expressions (`json!({…})`,
    /// `info!(x = %y, "…")`, `macro_rules!` bodies).
    fn scan(&mut self, mut c: Cursor) {
        while !c.eof() {
            if let Some((inner, _, _, next)) = c.any_group() {
                self.scan(inner);
                c = next;
            } else if let Some((lit, next)) = c.literal() {
                self.literal(&Lit::new(lit));
                c = next;
            } else if let Some((ident, next)) = c.ident() {
                let mut path = vec![ident.to_string()];
                c = next;
                while let Some((segment, next)) = path_separator(c).and_then(Cursor::ident) {
                    path.push(segment.to_string());
                    c = next;
                }
                self.facts.paths.push(path);
            } else if let Some((_, next)) = c.token_tree() {
                c = next;
            }
        }
    }

    fn literal(&mut self, lit: &Lit) {
        match lit {
            Lit::Str(s) => self.facts.strings.push(s.value()),
            Lit::ByteStr(s) => self.facts.strings.push(String::from_utf8_lossy(&s.value()).into_owned()),
            _ => {}
        }
    }
}

/// `prefix::ident` of a `use` tree; `self` names the prefix itself.
fn imported(prefix: &[String], ident: &syn::Ident) -> Vec<String> {
    let mut full = prefix.to_vec();
    if ident != "self" {
        full.push(ident.to_string());
    }
    full
}

/// The cursor after a `::` at `c`.
fn path_separator(c: Cursor) -> Option<Cursor> {
    let (first, c) = c.punct()?;
    let (second, c) = c.punct()?;
    (first.as_char() == ':' && second.as_char() == ':').then_some(c)
}

fn segments(path: &syn::Path) -> Vec<String> {
    path.segments.iter().map(|s| s.ident.to_string()).collect()
}

/// Whether attributes compile their item only for tests: `#[cfg(test)]`, `#[cfg(all(test, …))]`.
fn test_only(attrs: &[Attribute]) -> bool {
    fn requires_test(meta: &Meta) -> bool {
        match meta {
            Meta::Path(p) => p.is_ident("test"),
            Meta::List(l) if l.path.is_ident("all") => l
                .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .is_ok_and(|all| all.iter().any(requires_test)),
            _ => false,
        }
    }
    attrs.iter().any(|a| a.path().is_ident("cfg") && a.parse_args::<Meta>().is_ok_and(|m| requires_test(&m)))
}

/// The attributes of a node of any of the listed kinds.
macro_rules! attrs_of {
    ($node:expr; $($kind:path),+) => {
        match $node {
            $($kind(x) => &x.attrs[..],)+
            _ => &[],
        }
    };
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item(&mut self, i: &'ast Item) {
        let attrs = attrs_of!(i; Item::Const, Item::Enum, Item::ExternCrate, Item::Fn, Item::ForeignMod,
            Item::Impl, Item::Macro, Item::Mod, Item::Static, Item::Struct, Item::Trait, Item::TraitAlias,
            Item::Type, Item::Union, Item::Use);
        if !test_only(attrs) {
            visit::visit_item(self, i);
        }
    }

    fn visit_impl_item(&mut self, i: &'ast ImplItem) {
        if !test_only(attrs_of!(i; ImplItem::Const, ImplItem::Fn, ImplItem::Type, ImplItem::Macro)) {
            visit::visit_impl_item(self, i);
        }
    }

    fn visit_trait_item(&mut self, i: &'ast TraitItem) {
        if !test_only(attrs_of!(i; TraitItem::Const, TraitItem::Fn, TraitItem::Type, TraitItem::Macro)) {
            visit::visit_trait_item(self, i);
        }
    }

    fn visit_stmt(&mut self, s: &'ast Stmt) {
        if !test_only(attrs_of!(s; Stmt::Local, Stmt::Macro)) {
            visit::visit_stmt(self, s);
        }
    }

    /// Doc comments are `#[doc = "…"]` attributes: prose, not code.
    fn visit_attribute(&mut self, a: &'ast Attribute) {
        if !a.path().is_ident("doc") {
            visit::visit_attribute(self, a);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_item_extern_crate(&mut self, e: &'ast syn::ItemExternCrate) {
        let krate = vec![e.ident.to_string()];
        if let Some((_, rename)) = &e.rename {
            self.aliases.insert(rename.to_string(), krate.clone());
        }
        self.facts.paths.push(krate);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.facts.paths.push(segments(p));
        visit::visit_path(self, p);
    }

    fn visit_lit(&mut self, lit: &'ast Lit) {
        self.literal(lit);
    }

    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        if let Expr::Path(receiver) = &*m.receiver {
            let mut path = segments(&receiver.path);
            path.push(m.method.to_string());
            self.facts.paths.push(path);
        }
        if let (true, Some(Expr::Lit(syn::ExprLit { lit: Lit::Int(n), .. })), 1) =
            (m.method == "status", m.args.first(), m.args.len())
        {
            self.facts.numeric_statuses.push(n.base10_digits().to_owned());
        }
        visit::visit_expr_method_call(self, m);
    }

    /// A macro's arguments are tokens to syn: read as expressions when they are, else scanned.
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        match m.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            Ok(args) => args.iter().for_each(|e| self.visit_expr(e)),
            Err(_) => self.scan(TokenBuffer::new2(m.tokens.clone()).begin()),
        }
    }
}

// ---- The findings of each check -----------------------------------------------------------------

/// The paths of a file that `names` picks, once each, `::`-joined.
fn paths_where(facts: &Facts, names: fn(&[String]) -> bool) -> Vec<String> {
    let mut out: Vec<_> = facts.paths.iter().filter(|p| names(p)).map(|p| p.join("::")).collect();
    out.sort();
    out.dedup();
    out
}

/// `StatusCode` (any crate's, however imported), the `http::status` module, `.status(404)`.
fn status_codes(facts: &Facts) -> Vec<String> {
    let mut out = paths_where(facts, |p| {
        p.iter().any(|s| s == "StatusCode") || p.windows(2).any(|w| w[0] == "http" && w[1] == "status")
    });
    out.extend(facts.numeric_statuses.iter().map(|n| format!(".status({n})")));
    out
}

/// `std::env::{var, var_os, vars, vars_os}`.
fn environment_reads(facts: &Facts) -> Vec<String> {
    paths_where(facts, |p| match p {
        [std, env, read] => {
            std == "std" && env == "env" && ["var", "var_os", "vars", "vars_os"].contains(&read.as_str())
        }
        _ => false,
    })
}

/// `SystemTime::now`, `UNIX_EPOCH.elapsed()`, chrono's `Utc::now`/`Local::now`, `time`'s
/// `OffsetDateTime::now_utc`/`now_local`. `Instant::now` is the monotonic clock, not the wall clock.
fn wall_clock_reads(facts: &Facts) -> Vec<String> {
    paths_where(facts, |p| match p {
        [.., ty, f] => matches!(
            (ty.as_str(), f.as_str()),
            ("SystemTime" | "Utc" | "Local", "now")
                | ("UNIX_EPOCH", "elapsed")
                | ("OffsetDateTime", "now_utc" | "now_local")
        ),
        _ => false,
    })
}

fn sql(facts: &Facts) -> Vec<String> {
    facts.strings.iter().filter(|s| looks_like_sql(s)).map(|s| format!("{s:?}")).collect()
}

/// Whether a string reads as an SQL statement: a keyword in statement structure (`SELECT … FROM t`
/// then the end or a clause, `INSERT INTO t (`/`VALUES`, `UPDATE t SET c =`, `DELETE FROM t` then
/// the end or a clause, `CREATE`/`DROP`/`ALTER TABLE t`, …). Upper-case keywords count anywhere;
/// lower-case ones only as the whole string, since prose is lower case: "select a role from the
/// list", "cannot delete from history".
fn looks_like_sql(s: &str) -> bool {
    let tokens = sql_tokens(s);
    let start = tokens.iter().take_while(|t| **t == "(").count();
    (0..tokens.len()).any(|i| {
        let upper = !tokens[i].contains(|c: char| c.is_ascii_lowercase());
        (upper || i == start) && Sql { t: &tokens, upper }.statement_at(i)
    })
}

/// Words (ASCII letters, digits and `_`, with `.` between them; a `{…}` placeholder or a quoted
/// name is one word) and single other characters.
fn sql_tokens(s: &str) -> Vec<&str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        let b = rest.as_bytes();
        let len = match c {
            _ if word(b[0]) => {
                let mut n = 0;
                while n < b.len() && (word(b[n]) || b[n] == b'.' && n + 1 < b.len() && word(b[n + 1])) {
                    n += 1;
                }
                n
            }
            '{' | '"' | '`' => rest[1..].find(if c == '{' { '}' } else { c }).map_or(1, |end| end + 2),
            _ => c.len_utf8(),
        };
        if !c.is_whitespace() {
            out.push(&rest[..len]);
        }
        rest = &rest[len..];
    }
    out
}

/// Tokens read with keywords in one case.
struct Sql<'a> {
    t: &'a [&'a str],
    upper: bool,
}

impl Sql<'_> {
    /// Token `i` is one of `keywords` (given in upper case), in this statement's case.
    fn kw(&self, i: usize, keywords: &[&str]) -> bool {
        let Some(t) = self.t.get(i) else { return false };
        keywords.iter().any(|k| if self.upper { t == k } else { t.len() == k.len() && k.to_ascii_lowercase() == *t })
    }

    fn is(&self, i: usize, token: &str) -> bool {
        self.t.get(i) == Some(&token)
    }

    /// Token `i` names a table or column (a word, a `{…}` placeholder or a quoted name).
    fn name(&self, i: usize) -> bool {
        self.t.get(i).is_some_and(|t| {
            t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                || t.len() > 1 && t.starts_with(['{', '"', '`'])
        })
    }

    /// Token `i` starts a clause that can follow a table reference.
    fn clause(&self, i: usize) -> bool {
        self.kw(i, &["WHERE", "JOIN", "INNER", "LEFT", "CROSS", "ORDER", "GROUP", "LIMIT", "UNION", "RETURNING"])
    }

    /// Token `i` ends a table reference: the end, `;`, `)` or a clause.
    fn table_end(&self, i: usize) -> bool {
        i >= self.t.len() || self.is(i, ";") || self.is(i, ")") || self.clause(i)
    }

    /// `TABLE`/`INDEX`/`VIEW`/`TRIGGER` at `i`, an optional `IF [NOT] EXISTS`, a name.
    fn schema_object(&self, i: usize) -> bool {
        let mut n = i + 1;
        if self.kw(n, &["IF"]) {
            n += if self.kw(n + 1, &["NOT"]) { 3 } else { 2 };
        }
        self.kw(i, &["TABLE", "INDEX", "VIEW", "TRIGGER"]) && self.name(n)
    }

    fn statement_at(&self, i: usize) -> bool {
        // `INSERT OR REPLACE INTO`, `UPDATE OR IGNORE t`.
        let or = |j: usize| if self.kw(j, &["OR"]) { j + 2 } else { j };
        if self.kw(i, &["SELECT"]) {
            let from = (i + 2..self.t.len()).take_while(|&j| !self.is(j, ";")).find(|&j| self.kw(j, &["FROM"]));
            from.is_some_and(|f| {
                let alias = if self.kw(f + 2, &["AS"]) { f + 3 } else { f + 2 };
                // An alias (`FROM users u`) then a clause; or, upper case, the end.
                let alias_end = self.clause(alias + 1) || self.upper && alias + 1 == self.t.len();
                self.name(f + 1) && (self.table_end(f + 2) || self.name(alias) && alias_end)
            })
        } else if self.kw(i, &["INSERT", "REPLACE"]) {
            let into = or(i + 1);
            self.kw(into, &["INTO"])
                && self.name(into + 1)
                && (self.is(into + 2, "(") || self.kw(into + 2, &["VALUES", "SELECT", "DEFAULT"]))
        } else if self.kw(i, &["UPDATE"]) {
            let table = or(i + 1);
            self.name(table)
                && self.kw(table + 1, &["SET"])
                && (self.is(table + 2, "(") || self.name(table + 2) && self.is(table + 3, "="))
        } else if self.kw(i, &["DELETE"]) {
            self.kw(i + 1, &["FROM"]) && self.name(i + 2) && self.table_end(i + 3)
        } else if self.kw(i, &["CREATE"]) {
            let mut object = i + 1;
            while self.kw(object, &["UNIQUE", "TEMP", "TEMPORARY", "VIRTUAL"]) {
                object += 1;
            }
            self.schema_object(object)
        } else {
            self.kw(i, &["DROP", "ALTER"]) && self.schema_object(i + 1)
        }
    }
}

// ---- Each check catches what it is for, and only in code --------------------------------------

/// `check` finds something in each of the `caught` snippets and nothing in `not_caught`.
fn assert_check(check: fn(&Facts) -> Vec<String>, caught: &[&str], not_caught: &str) {
    let found = |source: &str| check(&Facts::of(&syn::parse_file(source).unwrap()));
    for source in caught {
        assert!(!found(source).is_empty(), "not caught: {source}");
    }
    assert_eq!(found(not_caught), Vec::<String>::new());
}

#[test]
fn the_sql_check_reads_string_literals_and_not_comments() {
    let caught = [
        r#"fn by_name() -> &'static str { "SELECT id FROM users WHERE name = ?1" }"#,
        r#"fn purge(c: &C, table: &str) { c.execute(&format!("DELETE FROM {table} WHERE id = ?1"), []); }"#,
        r#"const SCHEMA: &[u8] = b"CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)";"#,
        r#"fn f() { tracing::info!(sql = %x, "INSERT INTO t (a) VALUES (?1)"); }"#,
    ];
    let not_caught = r#"
        //! SELECT id FROM users WHERE name = ?1
        /// DELETE FROM sessions WHERE id = ?1
        // INSERT INTO users (name) VALUES (?1)
        /* UPDATE users SET role = 'admin' */
        fn hint() -> &'static str { "select a role from the list" }
        #[cfg(test)]
        mod tests { const Q: &str = "SELECT 1 FROM t"; }
    "#;
    assert_check(sql, &caught, not_caught);
}

#[test]
fn sql_is_told_from_prose_by_its_structure() {
    for statement in [
        "SELECT body FROM documents WHERE id = ?1",
        "SELECT endpoint, event_id, payload FROM webhook_outbox",
        "SELECT count(*) FROM users u JOIN roles r ON u.role = r.name",
        "SELECT {DOC_COLUMNS} FROM documents d",
        "UPDATE documents SET body = (SELECT body FROM documents WHERE id = ?1) WHERE id = ?2",
        "INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)",
        "INSERT INTO audit_log SELECT * FROM audit_log",
        "DELETE FROM sessions",
        "CREATE UNIQUE INDEX users_name ON users (name)",
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'x'); END;",
        "DROP TABLE IF EXISTS main.users",
        "select id from users where name = ?1",
        "update users set name = ?1",
    ] {
        assert!(looks_like_sql(statement), "{statement}");
    }
    for prose in [
        "select a role from the list",
        "Select a role from the list",
        "SELECT",
        "users.update",
        "webhook outbox update failed",
        "cannot delete from history",
        "insert into the queue failed",
        "update the settings",
        "create a table of contents",
        "Update your password.",
    ] {
        assert!(!looks_like_sql(prose), "{prose}");
    }
}

#[test]
fn the_status_code_check_follows_paths_and_renames_not_comments() {
    let caught = [
        "use http::StatusCode as Code; fn f() -> u16 { Code::NOT_FOUND.as_u16() }",
        "use axum::http as h; fn f() -> h::StatusCode { todo!() }",
        "use axum::http::{self, status}; fn f() -> bool { matches!(x, http::status::StatusCode::OK) }",
        "use axum::http::status::*; fn f() {}",
        "fn f(b: Builder) -> Builder { b.status(404) }",
        r#"fn f() { tracing::info!(status = %reqwest::StatusCode::OK, "sent"); }"#,
    ];
    let not_caught = r#"
        //! Mapped to StatusCode::NOT_FOUND by rampart-http.
        /// Becomes `http::StatusCode::FORBIDDEN`.
        // use http::StatusCode;
        fn f() -> &'static str { "StatusCode" }
        #[cfg(test)]
        mod tests { use http::StatusCode; }
    "#;
    assert_check(status_codes, &caught, not_caught);
}

#[test]
fn the_environment_check_follows_imports_and_macros_not_comments() {
    let caught = [
        r#"fn f() { std::env::var("X"); }"#,
        r#"use std::env; fn f() { env::var("X"); }"#,
        r#"use std::env::var_os as get; fn f() { get("X"); }"#,
        "use std::env::*; fn f() { vars(); }",
        "use std as s; fn f() { s::env::vars_os(); }",
        r#"fn f() { println!("{:?}", ::std::env::var("HOME")); }"#,
        r#"fn f() { tracing::info!(home = ?std::env::var("HOME"), "starting"); }"#,
    ];
    let not_caught = r#"
        //! Nothing here calls std::env::var.
        /// Reads `std::env::vars()` through rampart-config.
        // let v = std::env::var("X");
        use crate::env::var;
        fn f() { let _ = std::env::args(); let _ = "std::env::var"; var("X"); }
    "#;
    assert_check(environment_reads, &caught, not_caught);
}

#[test]
fn the_wall_clock_check_follows_imports_and_macros_not_comments() {
    let caught = [
        "fn f() { std::time::SystemTime::now(); }",
        "use std::time::{SystemTime as T}; fn f() { T::now(); }",
        "use std::time; fn f() -> Option<u64> { time::UNIX_EPOCH.elapsed().ok().map(|d| d.as_secs()) }",
        "fn f() -> fn() -> SystemTime { SystemTime::now }",
        "fn f() { chrono::Utc::now(); }",
        "fn f() { time::OffsetDateTime::now_utc(); }",
        r#"fn f() { assert!(SystemTime::now() > t, "late"); }"#,
    ];
    let not_caught = r#"
        //! The only SystemTime::now() is in rampart-core::clock.
        /// Like `SystemTime::now()` but faked in tests.
        // let t = SystemTime::now();
        fn f() -> Duration { let started = Instant::now(); let _ = SystemTime::UNIX_EPOCH; started.elapsed() }
        #[cfg(all(test, feature = "x"))]
        fn fake() { SystemTime::now(); }
    "#;
    assert_check(wall_clock_reads, &caught, not_caught);
}

/// The top-level module of rampart-core that a `crate::…` path reaches, through the crate
/// root's re-exports (`crate::Principal` is `principal`).
fn core_module_graph() -> HashMap<String, Vec<String>> {
    let src = workspace().join("crates/rampart-core/src");
    let lib = syn::parse_file(&std::fs::read_to_string(src.join("lib.rs")).unwrap()).unwrap();
    let mut reexported: HashMap<String, String> = HashMap::new();
    for item in &lib.items {
        if let Item::Use(u) = item {
            let mut c = Collector::default();
            c.use_tree(&mut Vec::new(), &u.tree);
            for (name, full) in c.aliases {
                let module = if full.first().is_some_and(|f| f == "crate") { full.get(1) } else { full.first() };
                if let Some(m) = module {
                    reexported.insert(name, m.clone());
                }
            }
        }
    }
    let mut graph: HashMap<String, Vec<String>> = HashMap::new();
    for file in sources(&workspace().join("crates/rampart-core")) {
        let rel = file.strip_prefix(&src).unwrap();
        let module = rel.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_owned();
        if module == "lib.rs" || module == "lib" {
            continue;
        }
        let ast = syn::parse_file(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let edges = graph.entry(module.clone()).or_default();
        for path in Facts::of(&ast).paths.iter().filter(|p| p.len() > 1 && p[0] == "crate") {
            let target = reexported.get(&path[1]).cloned().unwrap_or_else(|| path[1].clone());
            if target != module && !edges.contains(&target) {
                edges.push(target);
            }
        }
    }
    graph
}

/// Every cycle of `graph`, each once, starting at its smallest module.
fn cycles(graph: &HashMap<String, Vec<String>>) -> Vec<Vec<String>> {
    fn walk(graph: &HashMap<String, Vec<String>>, path: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
        let last = path.last().cloned().unwrap_or_default();
        for next in graph.get(&last).into_iter().flatten() {
            if let Some(i) = path.iter().position(|m| m == next) {
                let mut cycle = path[i..].to_vec();
                let start = cycle.iter().enumerate().min_by_key(|(_, m)| *m).map_or(0, |(i, _)| i);
                cycle.rotate_left(start);
                if !found.contains(&cycle) {
                    found.push(cycle);
                }
            } else if graph.contains_key(next) {
                path.push(next.clone());
                walk(graph, path, found);
                path.pop();
            }
        }
    }
    let mut found = Vec::new();
    for m in graph.keys() {
        walk(graph, &mut vec![m.clone()], &mut found);
    }
    found
}

/// The services of rampart-core import one way: no module reaches back into one that
/// reaches it (the audit ↔ auth ↔ users circle of old).
#[test]
fn core_modules_import_one_way() {
    let graph = core_module_graph();
    assert!(graph.len() > 15, "{} modules found", graph.len());
    assert!(graph["auth"].contains(&"users".to_owned()), "the graph sees `use crate::…` edges: {graph:?}");
    assert_eq!(cycles(&graph), Vec::<Vec<String>>::new());
}

#[test]
fn the_cycle_check_finds_cycles() {
    let g = |edges: &[(&str, &str)]| {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (a, b) in edges {
            m.entry((*a).to_owned()).or_default().push((*b).to_owned());
            m.entry((*b).to_owned()).or_default();
        }
        m
    };
    assert_eq!(cycles(&g(&[("a", "b"), ("b", "c")])), Vec::<Vec<String>>::new());
    assert_eq!(cycles(&g(&[("audit", "auth"), ("auth", "users"), ("users", "audit")])).len(), 1);
}

/// A service (and the facade over them) holds the store traits it uses, never the whole
/// `Store`: only what carries the store into a constructor may name `dyn Store`.
#[test]
fn services_hold_store_traits_not_the_whole_store() {
    /// `Struct.field: type` of every struct field typed `…<dyn Store>`, except in the
    /// `…Parts` and `…Ports` structs that carry the store into a constructor (which
    /// narrows it).
    struct Fields(Vec<String>);
    impl<'ast> Visit<'ast> for Fields {
        fn visit_item_struct(&mut self, s: &'ast syn::ItemStruct) {
            if s.ident.to_string().ends_with("Parts") || s.ident.to_string().ends_with("Ports") {
                return;
            }
            for f in &s.fields {
                if let syn::Type::Path(p) = &f.ty {
                    let text = quote_type(&p.path);
                    if text.contains("dyn Store>") {
                        let field = f.ident.as_ref().map(ToString::to_string).unwrap_or_default();
                        self.0.push(format!("{}.{field}: {text}", s.ident));
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    for file in sources(&workspace().join("crates/rampart-core")) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let ast = syn::parse_file(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let mut v = Fields(Vec::new());
        v.visit_file(&ast);
        found.extend(v.0.into_iter().map(|s| format!("{name}: {s}")));
    }
    let mut probe = Fields(Vec::new());
    probe.visit_file(&syn::parse_file("struct Users { user_store: Arc<dyn Store> }").unwrap());
    assert_eq!(probe.0.len(), 1, "the check sees a whole-store field");
    assert_eq!(found, Vec::<String>::new());
}

/// `Arc<dyn X>` as text, for the field check.
fn quote_type(path: &syn::Path) -> String {
    let mut out = String::new();
    for seg in &path.segments {
        out.push_str(&seg.ident.to_string());
        if let syn::PathArguments::AngleBracketed(args) = &seg.arguments {
            out.push('<');
            for a in &args.args {
                if let syn::GenericArgument::Type(syn::Type::TraitObject(t)) = a {
                    out.push_str("dyn ");
                    for b in &t.bounds {
                        if let syn::TypeParamBound::Trait(tb) = b {
                            out.push_str(&quote_type(&tb.path));
                        }
                    }
                } else if let syn::GenericArgument::Type(syn::Type::Path(p)) = a {
                    out.push_str(&quote_type(&p.path));
                }
            }
            out.push('>');
        }
    }
    out
}
