//! The verified claims of a token, and the claim checks that
//! follow the signature: `exp` (required), `nbf`, `iat`, `iss`, `aud`, in that
//! order, all against one injected `now` and one leeway.
//!
//! These checks are ours rather than `jsonwebtoken`'s so that the order is
//! exactly the documented one (the library reports a missing `iss` before an expired
//! `exp`), `iat` is bounded too, and tests can pass any `now`.

use crate::response::Reject;
use crate::revocation::{Policy, RevocationKey, TokenKeys};
use hyper::header::HeaderValue;
use serde_json::{Map, Value};

/// The claim checks configured in `[jwt]`.
#[derive(Debug, Clone)]
pub(crate) struct ClaimPolicy {
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`, and the
    /// longest a token may live (`max_token_lifetime`).
    pub(crate) time: Policy,
    /// When set, `iss` is required and must equal it.
    pub(crate) issuer: Option<String>,
    /// When not empty, `aud` is required and must contain one of these.
    pub(crate) audience: Vec<String>,
}

/// The claims of a token whose signature and claims verified.
#[derive(Debug, Clone)]
pub struct Claims {
    /// `sub`, when present.
    pub sub: Option<String>,
    /// `jti`, when present.
    pub jti: Option<String>,
    /// `sid` (the identity provider's session), when present.
    pub sid: Option<String>,
    /// `exp`, UNIX seconds (always present: tokens without it are refused).
    pub exp: u64,
    /// `nbf`, UNIX seconds, when present.
    pub nbf: Option<u64>,
    /// `iat`, UNIX seconds, when present.
    pub iat: Option<u64>,
    /// From the space-separated `scope` string, else from `scp` (an array of
    /// strings, or a space-separated string). Other shapes give no scopes.
    pub scopes: Vec<String>,
    /// The keys this token is revoked under (`jti`, else its signing
    /// input; and the key earlier builds used), computed once at
    /// verification.
    pub revocation: TokenKeys,
    /// The key a revocation of this token's session (`sid`) is recorded
    /// under, computed once at verification; `None` without `sid`.
    pub session: Option<RevocationKey>,
    /// How logs name a token without `jti`: the first 12 hex digits of its
    /// SHA-256 (never the token). `None` when the token has a `jti`.
    pub fingerprint: Option<Box<str>>,
    /// Every claim as sent.
    pub raw: Map<String, Value>,
}

const MALFORMED_CLAIMS: Reject = Reject::InvalidToken("malformed token claims");
/// `exp - iat` (or `exp - now` without `iat`) is over `max_token_lifetime`
/// plus leeway.
pub(crate) const LIFETIME_TOO_LONG: Reject =
    Reject::InvalidToken("token lifetime exceeds max_token_lifetime");

impl Claims {
    /// Checks the claims of a token whose signature verified, at `now` (UNIX
    /// seconds), and keeps them. `token` is only used for the revocation key
    /// of a token without `jti`.
    pub(crate) fn check(
        raw: Map<String, Value>,
        token: &str,
        policy: &ClaimPolicy,
        now: u64,
    ) -> Result<Claims, Reject> {
        let leeway = policy.time.leeway;
        let exp = match raw.get("exp") {
            None | Some(Value::Null) => return Err(Reject::InvalidToken("token has no exp claim")),
            Some(v) => numeric_date(v).ok_or(Reject::InvalidToken("invalid exp claim"))?,
        };
        if now > exp.saturating_add(leeway) {
            return Err(Reject::InvalidToken("token expired"));
        }
        let nbf = optional_date(&raw, "nbf", "invalid nbf claim")?;
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(Reject::InvalidToken("token not yet valid"));
        }
        let iat = optional_date(&raw, "iat", "invalid iat claim")?;
        if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(Reject::InvalidToken("token issued in the future"));
        }
        if let Some(issuer) = &policy.issuer {
            if raw.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(Reject::InvalidToken("invalid issuer"));
            }
        }
        if !policy.audience.is_empty() && !audience_matches(raw.get("aud"), &policy.audience) {
            return Err(Reject::InvalidToken("invalid audience"));
        }
        // A logout token or a Security Event Token (RFC 8417) carries
        // `events`; an access token never does. Refused, so one can never
        // pass as the other.
        if raw.contains_key("events") {
            return Err(Reject::InvalidToken(
                "a security event or logout token is not an access token",
            ));
        }
        // Logout-all watermarks live as long as the longest token may:
        // a longer-lived one would outlive them.
        if !policy.time.lifetime_ok(exp, iat, now) {
            return Err(LIFETIME_TOO_LONG);
        }
        let sub = optional_string(&raw, "sub")?;
        let jti = optional_string(&raw, "jti")?;
        let sid = optional_string(&raw, "sid")?.filter(|s| !s.is_empty());
        let session = sid.as_deref().map(RevocationKey::from_sid);
        let scopes = scopes(&raw);
        let revocation = TokenKeys::for_token(jti.as_deref(), token);
        let fingerprint = match jti {
            Some(_) => None,
            None => Some(crate::revocation::token_fingerprint(token).into_boxed_str()),
        };
        Ok(Claims {
            sub,
            jti,
            sid,
            exp,
            nbf,
            iat,
            scopes,
            revocation,
            session,
            fingerprint,
            raw,
        })
    }

    /// How logs name this token: its `jti`, else its SHA-256 prefix.
    pub fn log_id(&self) -> &str {
        self.jti
            .as_deref()
            .or(self.fingerprint.as_deref())
            .unwrap_or("-")
    }

    /// Whether every scope in `required` was granted.
    pub fn has_scopes(&self, required: &[String]) -> bool {
        required.iter().all(|r| self.scopes.iter().any(|s| s == r))
    }

    /// The value of claim `claim` as an upstream header (`forward_claims`):
    ///
    /// - a string: as is;
    /// - a number or a boolean: its JSON text (`42`, `1.5`, `true`);
    /// - an array of strings: the strings joined by a single space
    ///   (`["a","b"]` -> `a b`, the form of `scope`);
    /// - any other array, or an object: compact JSON (`[1,"a"]`, `{"k":1}`).
    ///
    /// `None` when the claim is absent or `null`, or when the value cannot be
    /// a header value (control characters such as CR/LF; bytes above 0x7F,
    /// i.e. non-ASCII UTF-8, are passed on as they are).
    pub fn header_value(&self, claim: &str) -> Option<HeaderValue> {
        let text = match self.raw.get(claim)? {
            Value::Null => return None,
            Value::String(s) => return HeaderValue::from_bytes(s.as_bytes()).ok(),
            Value::Array(items) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        };
        HeaderValue::from_bytes(text.as_bytes()).ok()
    }
}

/// A NumericDate (RFC 7519 §2): a non-negative number of seconds; fractions
/// are dropped.
fn numeric_date(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

fn optional_date(
    raw: &Map<String, Value>,
    name: &str,
    invalid: &'static str,
) -> Result<Option<u64>, Reject> {
    match raw.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => numeric_date(v)
            .map(Some)
            .ok_or(Reject::InvalidToken(invalid)),
    }
}

fn optional_string(raw: &Map<String, Value>, name: &str) -> Result<Option<String>, Reject> {
    match raw.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(MALFORMED_CLAIMS),
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
fn audience_matches(aud: Option<&Value>, accepted: &[String]) -> bool {
    let ok = |s: &str| accepted.iter().any(|a| a == s);
    match aud {
        Some(Value::String(s)) => ok(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(ok),
        _ => false,
    }
}

fn scopes(raw: &Map<String, Value>) -> Vec<String> {
    let split = |s: &str| s.split_ascii_whitespace().map(str::to_string).collect();
    match (raw.get("scope"), raw.get("scp")) {
        (Some(Value::String(s)), _) => split(s),
        (_, Some(Value::String(s))) => split(s),
        (Some(Value::Array(items)), _) | (_, Some(Value::Array(items))) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn policy() -> ClaimPolicy {
        ClaimPolicy {
            time: Policy {
                leeway: 30,
                max_token_lifetime: 24 * 3600,
            },
            issuer: Some("https://idp.example".into()),
            audience: vec!["api".into(), "web".into()],
        }
    }

    fn base() -> Value {
        json!({"sub": "alice", "exp": NOW + 60, "iss": "https://idp.example", "aud": "api"})
    }

    fn check(v: Value) -> Result<Claims, Reject> {
        let Value::Object(map) = v else {
            panic!("not an object")
        };
        Claims::check(map, "tok", &policy(), NOW)
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = base();
        v[key] = value;
        v
    }

    fn without(key: &str) -> Value {
        let mut v = base();
        v.as_object_mut().map(|m| m.remove(key));
        v
    }

    fn reason(r: Result<Claims, Reject>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(Reject::InvalidToken(d)) => d,
            Err(_) => "other reject",
        }
    }

    #[test]
    fn valid_claims_are_kept() {
        let c = check(base()).expect("valid");
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.exp, NOW + 60);
        assert_eq!(c.revocation, TokenKeys::for_token(None, "tok"));
        let c = check(with("jti", json!("j1"))).expect("valid");
        assert_eq!(c.revocation, TokenKeys::for_token(Some("j1"), "tok"));
    }

    #[test]
    fn exp_is_required_and_numeric() {
        assert_eq!(reason(check(without("exp"))), "token has no exp claim");
        assert_eq!(
            reason(check(with("exp", json!("soon")))),
            "invalid exp claim"
        );
        assert_eq!(reason(check(with("exp", json!(-5)))), "invalid exp claim");
        // Fractions are allowed (RFC 7519 NumericDate).
        assert_eq!(reason(check(with("exp", json!(NOW as f64 + 0.5)))), "ok");
    }

    #[test]
    fn leeway_applies_to_exp_nbf_and_iat() {
        // Expired 30 s ago: still inside the leeway; 31 s: out.
        assert_eq!(reason(check(with("exp", json!(NOW - 30)))), "ok");
        assert_eq!(reason(check(with("exp", json!(NOW - 31)))), "token expired");
        assert_eq!(reason(check(with("nbf", json!(NOW + 30)))), "ok");
        assert_eq!(
            reason(check(with("nbf", json!(NOW + 31)))),
            "token not yet valid"
        );
        assert_eq!(reason(check(with("iat", json!(NOW + 30)))), "ok");
        assert_eq!(
            reason(check(with("iat", json!(NOW + 31)))),
            "token issued in the future"
        );
        assert_eq!(reason(check(with("nbf", json!("x")))), "invalid nbf claim");
    }

    #[test]
    fn iss_and_aud_are_required_when_configured() {
        assert_eq!(reason(check(without("iss"))), "invalid issuer");
        assert_eq!(
            reason(check(with("iss", json!("https://evil")))),
            "invalid issuer"
        );
        assert_eq!(reason(check(without("aud"))), "invalid audience");
        assert_eq!(
            reason(check(with("aud", json!("other")))),
            "invalid audience"
        );
        assert_eq!(reason(check(with("aud", json!(["x", "web"])))), "ok");
        assert_eq!(
            reason(check(with("aud", json!([1, 2])))),
            "invalid audience"
        );
        let open = ClaimPolicy {
            time: Policy {
                leeway: 0,
                max_token_lifetime: 24 * 3600,
            },
            issuer: None,
            audience: vec![],
        };
        let Value::Object(map) = json!({"exp": NOW, "aud": "anything"}) else {
            unreachable!()
        };
        assert!(Claims::check(map, "t", &open, NOW).is_ok());
    }

    #[test]
    fn checks_run_in_spec_order() {
        // Expired AND wrong issuer AND wrong audience: exp is reported.
        let v = json!({"exp": NOW - 100, "iss": "x", "aud": "y"});
        assert_eq!(reason(check(v)), "token expired");
        let v = json!({"exp": NOW + 100, "nbf": NOW + 100, "iss": "x"});
        assert_eq!(reason(check(v)), "token not yet valid");
        let v = json!({"exp": NOW + 100, "iss": "x", "aud": "y"});
        assert_eq!(reason(check(v)), "invalid issuer");
    }

    #[test]
    fn sub_and_jti_must_be_strings() {
        assert_eq!(
            reason(check(with("sub", json!(7)))),
            "malformed token claims"
        );
        assert_eq!(
            reason(check(with("jti", json!({})))),
            "malformed token claims"
        );
    }

    #[test]
    fn scopes_from_scope_or_scp() {
        let c = check(with("scope", json!("a  b\tc"))).expect("valid");
        assert_eq!(c.scopes, ["a", "b", "c"]);
        let c = check(with("scp", json!(["x", "y"]))).expect("valid");
        assert_eq!(c.scopes, ["x", "y"]);
        assert!(c.has_scopes(&["y".into(), "x".into()]));
        assert!(!c.has_scopes(&["z".into()]));
        assert!(c.has_scopes(&[]));
        let c = check(with("scope", json!(42))).expect("valid");
        assert!(c.scopes.is_empty());
    }

    #[test]
    fn header_values_follow_the_documented_forms() {
        let mut v = base();
        v["n"] = json!(42);
        v["f"] = json!(1.5);
        v["b"] = json!(true);
        v["roles"] = json!(["admin", "ops"]);
        v["mixed"] = json!([1, "a"]);
        v["obj"] = json!({"k": 1});
        v["nul"] = Value::Null;
        v["crlf"] = json!("a\r\nx-injected: 1");
        v["utf8"] = json!("José");
        let c = check(v).expect("valid");
        let h = |k: &str| c.header_value(k).map(|v| v.as_bytes().to_vec());
        assert_eq!(h("sub"), Some(b"alice".to_vec()));
        assert_eq!(h("n"), Some(b"42".to_vec()));
        assert_eq!(h("f"), Some(b"1.5".to_vec()));
        assert_eq!(h("b"), Some(b"true".to_vec()));
        assert_eq!(h("roles"), Some(b"admin ops".to_vec()));
        assert_eq!(h("mixed"), Some(br#"[1,"a"]"#.to_vec()));
        assert_eq!(h("obj"), Some(br#"{"k":1}"#.to_vec()));
        assert_eq!(h("nul"), None);
        assert_eq!(h("missing"), None);
        assert_eq!(h("crlf"), None);
        assert_eq!(h("utf8"), Some("José".as_bytes().to_vec()));
    }
}
