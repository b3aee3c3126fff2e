//! End-to-end tests of the real binary: real TLS on a random loopback port, real
//! processes, signals and files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod backup;
mod breach;
mod cli;
mod compliance;
mod doctor;
mod failover;
mod hardening;
mod keys;
mod ldap;
mod migrate;
mod nginx;
mod nodes;
mod nodes_throttle;
mod oidc;
mod postgres;
mod privacy;
mod retention;
mod rotate_secrets;
mod server;
mod support;
mod user_import;
mod vault;
