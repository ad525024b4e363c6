//! revgate: a reverse-proxy gateway that verifies bearer JWTs and refuses
//! revoked tokens at the edge, in front of unmodified HTTP backends.
//!
//! | module | job |
//! |---|---|
//! | [`config`] | `gateway.toml`: raw serde mirror, validated typed config |
//! | [`auth`] | bearer tokens: extraction, keys (PEM, JWKS), verification, claims, `mint` |
//! | [`app`] | builds the gateway from a config and runs its listeners |
//! | [`server`] | accept loops, connection limits, graceful shutdown |
//! | [`gateway`] | the request path: route, extract, verify, revocation, scopes, forward |
//! | [`path`] | the one normalised request path, for routing and upstream |
//! | [`routes`] | the route table (longest prefix wins) |
//! | [`proxy`] | the pooled upstream client, header rewriting, upgrades |
//! | [`reload`] | SIGHUP and `/admin/reload`: validate a new config, swap the handlers |
//! | [`response`] | every per-request failure and its one HTTP mapping |
//! | [`body`] | the response body type (streamed or local) |
//! | [`endpoints`] | logout, logout-all and RFC 7009 revoke on the main listener |
//! | [`idp`] | revocations pushed by the identity provider: back-channel logout, RFC 8935 Security Event Tokens |
//! | [`admin`] | the admin listener: health, readiness, metrics, admin API |
//! | [`admin_client`] | `revgate revoke`: the operator client of the admin API |
//! | [`revocation`] | the revocation policy's one owner: keys, expiries, blocklist, durable and shared stores, store health |
//! | [`cli`], [`demo`], [`echo`] | the command line, `revgate demo` and its echo upstream |
//! | [`telemetry`] | logging setup and Prometheus metrics |
//! | [`tls`] | rustls on both ends: listener certificates (reloaded) and handshakes, `https://` upstreams |

pub mod admin;
pub mod admin_client;
pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod demo;
pub mod echo;
pub mod endpoints;
pub mod gateway;
pub mod idp;
pub mod path;
pub mod proxy;
pub mod reload;
pub mod response;
pub mod revocation;
pub mod routes;
pub mod server;
pub mod telemetry;
pub mod tls;

#[cfg(test)]
mod fuzz;
