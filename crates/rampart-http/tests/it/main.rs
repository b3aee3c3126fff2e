//! API tests against the real router, a real SQLite store and a fake clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod auth;
mod browser_jwt;
mod compliance;
mod crypto;
mod data;
mod errors;
mod ldap;
mod limits;
mod metrics;
mod mfa;
mod oidc;
mod openapi;
mod privacy;
mod rbac;
mod redis_limits;
mod responses;
mod retention;
mod security;
mod session_cache;
