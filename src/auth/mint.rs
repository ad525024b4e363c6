//! `revgate mint`: signs a token with the configured HMAC secret or
//! `jwt.signing_key_file`, for development, tests and benches.

use crate::config::{is_hmac, JwtConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};
use std::time::Duration;

/// Lifetime of a minted token when `--ttl` is not given.
pub const DEFAULT_MINT_TTL: Duration = Duration::from_secs(15 * 60);

/// What to put in a minted token.
#[derive(Debug, Clone, PartialEq)]
pub struct MintRequest {
    /// `sub`.
    pub sub: String,
    /// `exp` = now + `ttl` (whole seconds).
    pub ttl: Duration,
    /// `jti`; `None` picks a random 128-bit hex value.
    pub jti: Option<String>,
    /// `scope`, space-separated; omitted when `None`.
    pub scope: Option<String>,
    /// Extra claims, set last: they may override any of the above.
    pub claims: Vec<(String, Value)>,
    /// The algorithm; `None` takes the first of `jwt.algorithms` that the
    /// configured keys can sign.
    pub alg: Option<Algorithm>,
    /// A `kid` header, for key sets with several keys.
    pub kid: Option<String>,
}

impl MintRequest {
    /// A request for `sub` with every other field at its default.
    pub fn new(sub: impl Into<String>) -> Self {
        MintRequest {
            sub: sub.into(),
            ttl: DEFAULT_MINT_TTL,
            jti: None,
            scope: None,
            claims: Vec::new(),
            alg: None,
            kid: None,
        }
    }
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// `--claim` is not `key=value`.
    #[error("--claim {0:?}: expected key=value")]
    BadClaim(String),
    /// The signing key file could not be read.
    #[error("jwt.signing_key_file: cannot read {path}: {message}")]
    KeyFile {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// No configured key can sign any candidate algorithm.
    #[error("{0}")]
    NoKey(String),
    /// The system random source failed.
    #[error("no randomness for the jti: {0}")]
    Random(String),
}

/// Parses a `--claim` argument: `key=value`, where the value is taken as JSON
/// when it parses as JSON (`n=5`, `admin=true`, `roles=["a","b"]`) and as a
/// string otherwise (`team=blue`).
pub fn parse_claim(arg: &str) -> Result<(String, Value), MintError> {
    let (key, value) = arg
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| MintError::BadClaim(arg.to_string()))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

/// Signs a token for `req` with the keys of `cfg`: `sub`, `iat` = now,
/// `exp` = now + ttl, `jti`, `scope`, `iss` and `aud` from the config when
/// set, then the extra claims.
pub fn mint(cfg: &JwtConfig, req: &MintRequest) -> Result<String, MintError> {
    mint_at(
        cfg,
        req,
        crate::revocation::Clock::now(&crate::revocation::SystemClock),
    )
}

/// [`mint`] with the clock given (UNIX seconds).
pub(crate) fn mint_at(cfg: &JwtConfig, req: &MintRequest, now: u64) -> Result<String, MintError> {
    let claims = claims(cfg, req, now)?;
    let private_pem = match &cfg.signing_key_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| MintError::KeyFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?),
        None => None,
    };
    let candidates: Vec<Algorithm> = match req.alg {
        Some(alg) => vec![alg],
        None => cfg.algorithms.clone(),
    };
    for alg in candidates {
        let Some(key) = encoding_key(cfg, private_pem.as_deref(), alg) else {
            continue;
        };
        let mut header = Header::new(alg);
        header.kid.clone_from(&req.kid);
        // Fails when the key is of another kind or curve: try the next alg.
        if let Ok(token) = jsonwebtoken::encode(&header, &claims, &key) {
            return Ok(token);
        }
    }
    let which = match req.alg {
        Some(alg) => format!("{alg:?}"),
        None => format!("any of jwt.algorithms {:?}", cfg.algorithms),
    };
    Err(MintError::NoKey(format!(
        "no configured key can sign {which}: set jwt.hmac_secret for HS*, \
         or jwt.signing_key_file (a PEM private key; EC and Ed25519 keys in \
         PKCS#8 form, `openssl pkcs8 -topk8 -nocrypt`) for the others"
    )))
}

fn encoding_key(
    cfg: &JwtConfig,
    private_pem: Option<&[u8]>,
    alg: Algorithm,
) -> Option<EncodingKey> {
    if is_hmac(alg) {
        return EncodingKey::from_secret(cfg.hmac_secret.as_ref()?.expose()).ok();
    }
    let pem = private_pem?;
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem).ok(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).ok(),
        _ => EncodingKey::from_rsa_pem(pem).ok(),
    }
}

fn claims(cfg: &JwtConfig, req: &MintRequest, now: u64) -> Result<Map<String, Value>, MintError> {
    let mut c = Map::new();
    c.insert("sub".into(), Value::from(req.sub.as_str()));
    c.insert("iat".into(), Value::from(now));
    c.insert(
        "exp".into(),
        Value::from(now.saturating_add(req.ttl.as_secs())),
    );
    let jti = match &req.jti {
        Some(j) => j.clone(),
        None => random_jti()?,
    };
    c.insert("jti".into(), Value::from(jti));
    if let Some(scope) = &req.scope {
        c.insert("scope".into(), Value::from(scope.as_str()));
    }
    if let Some(iss) = &cfg.issuer {
        c.insert("iss".into(), Value::from(iss.as_str()));
    }
    match cfg.audience.as_slice() {
        [] => {}
        [one] => {
            c.insert("aud".into(), Value::from(one.as_str()));
        }
        many => {
            c.insert("aud".into(), Value::from(many.to_vec()));
        }
    }
    for (k, v) in &req.claims {
        c.insert(k.clone(), v.clone());
    }
    Ok(c)
}

/// 128 random bits as 32 hex digits.
fn random_jti() -> Result<String, MintError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| MintError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_values_are_json_when_they_parse() {
        let p = |s: &str| parse_claim(s).expect(s).1;
        assert_eq!(p("n=5"), Value::from(5));
        assert_eq!(p("admin=true"), Value::from(true));
        assert_eq!(p(r#"roles=["a","b"]"#), serde_json::json!(["a", "b"]));
        assert_eq!(p("team=blue"), Value::from("blue"));
        assert_eq!(p("eq=a=b"), Value::from("a=b"));
        assert_eq!(p("empty="), Value::from(""));
        assert!(parse_claim("novalue").is_err());
        assert!(parse_claim("=x").is_err());
    }

    #[test]
    fn random_jti_is_128_bits_of_hex() {
        let a = random_jti().expect("jti");
        let b = random_jti().expect("jti");
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
