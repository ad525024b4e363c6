//! Revocation: the in-memory blocklist and the stores behind it.

mod key;

pub use key::{token_fingerprint, RevocationKey};
