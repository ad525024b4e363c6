//! Revocation: the in-memory blocklist and the stores behind it.

mod key;
pub mod redis;

pub use key::{token_fingerprint, RevocationKey};
