//! Black-box tests: the real gateway on an ephemeral port in front of real
//! mock upstreams, spoken to over HTTP. One binary keeps link time down.

mod access_log;
mod auth;
mod cli;
mod crash;
mod idp;
mod pool;
mod proxy;
mod reference;
mod reload;
mod replicas;
mod revocation;
mod revocation_policy;
mod security;
mod store;
mod support;
mod tls;
