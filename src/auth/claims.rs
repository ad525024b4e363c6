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
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::OnceLock;

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
    /// `sub` and the log id (`jti`, else the fingerprint) need no escape
    /// in an access-log line: checked once here, not for every line.
    pub log_plain: bool,
    /// Every claim as sent: the payload's JSON text, parsed into a map
    /// only when something reads a claim by name ([`RawClaims::map`]).
    pub raw: RawClaims,
}

/// The payload's JSON text, and its members as a map once asked for: the
/// checks read only the registered claims (borrowed from the text, see
/// [`Registered`]), so a token on a route without `forward_claims` never
/// builds the map. On a route with them, the first request builds it and
/// the cached token keeps it.
#[derive(Debug, Clone, Default)]
pub struct RawClaims {
    json: String,
    map: OnceLock<Map<String, Value>>,
}

impl RawClaims {
    /// Claims from a payload's JSON text (an object).
    pub fn new(json: String) -> Self {
        RawClaims {
            json,
            map: OnceLock::new(),
        }
    }

    /// Every claim as sent, by name (parsed from the payload the first
    /// time it is asked for; empty for a text that is not an object).
    pub fn map(&self) -> &Map<String, Value> {
        self.map
            .get_or_init(|| serde_json::from_str(&self.json).unwrap_or_default())
    }

    /// The map, if something has built it.
    pub(crate) fn built_map(&self) -> Option<&Map<String, Value>> {
        self.map.get()
    }

    /// The payload's JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }
}

/// The registered claims the checks read, each still JSON text borrowed
/// from the payload (read one by one below, so each keeps its own error).
/// A JSON `null` reads as absent, as before. A registered claim named
/// twice makes the payload malformed (RFC 7519 §4 allows refusing
/// duplicates; the other members are not checked for them).
#[derive(Deserialize)]
struct Registered<'a> {
    #[serde(default, borrow)]
    exp: Option<&'a RawValue>,
    #[serde(default, borrow)]
    nbf: Option<&'a RawValue>,
    #[serde(default, borrow)]
    iat: Option<&'a RawValue>,
    #[serde(default, borrow)]
    iss: Option<&'a RawValue>,
    #[serde(default, borrow)]
    aud: Option<&'a RawValue>,
    #[serde(default, borrow)]
    sub: Option<&'a RawValue>,
    #[serde(default, borrow)]
    jti: Option<&'a RawValue>,
    #[serde(default, borrow)]
    sid: Option<&'a RawValue>,
    #[serde(default, borrow)]
    scope: Option<&'a RawValue>,
    #[serde(default, borrow)]
    scp: Option<&'a RawValue>,
    /// Present at all, even as `null`.
    #[serde(default, deserialize_with = "present")]
    events: bool,
}

/// True for any value: the member is there.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// A member's JSON text as a `Value` (numbers and literals allocate
/// nothing); a text that does not parse makes the token malformed, never
/// an absent claim.
fn value(raw: Option<&RawValue>) -> Result<Option<Value>, Reject> {
    raw.map(|r| serde_json::from_str(r.get()))
        .transpose()
        .map_err(|_| crate::auth::MALFORMED_TOKEN)
}

/// Any JSON value, accepted exactly where parsing it into a
/// `serde_json::Value` would be (numbers within an `f64`, `\u` escapes
/// paired, nesting within serde_json's limit), keeping nothing. Skipping
/// members (`IgnoredAny`, `RawValue`) checks less than that, so the whole
/// payload passes through this first: a payload the claims map could not
/// hold is malformed, as it was when the map was built for every token.
struct Valid;

impl<'de> Deserialize<'de> for Valid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValidVisitor)
    }
}

struct ValidVisitor;

impl<'de> serde::de::Visitor<'de> for ValidVisitor {
    type Value = Valid;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_str<E>(self, _: &str) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_unit<E>(self) -> Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Valid, A::Error> {
        while seq.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Valid, A::Error> {
        while map.next_key::<Valid>()?.is_some() {
            map.next_value::<Valid>()?;
        }
        Ok(Valid)
    }
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
    ///
    /// `json` is the payload as decoded: it must be a JSON object.
    pub(crate) fn check(
        json: String,
        token: &str,
        policy: &ClaimPolicy,
        now: u64,
    ) -> Result<Claims, Reject> {
        // A derived struct would also take a JSON array, member by
        // position: only an object is a claims set.
        if !json.trim_start().starts_with('{') {
            return Err(crate::auth::MALFORMED_TOKEN);
        }
        serde_json::from_str::<Valid>(&json).map_err(|_| crate::auth::MALFORMED_TOKEN)?;
        let reg: Registered =
            serde_json::from_str(&json).map_err(|_| crate::auth::MALFORMED_TOKEN)?;
        let leeway = policy.time.leeway;
        let exp = match value(reg.exp)? {
            None => return Err(Reject::InvalidToken("token has no exp claim")),
            Some(v) => numeric_date(&v).ok_or(Reject::InvalidToken("invalid exp claim"))?,
        };
        if now > exp.saturating_add(leeway) {
            return Err(Reject::InvalidToken("token expired"));
        }
        let nbf = optional_date(reg.nbf, "invalid nbf claim")?;
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(Reject::InvalidToken("token not yet valid"));
        }
        let iat = optional_date(reg.iat, "invalid iat claim")?;
        if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(Reject::InvalidToken("token issued in the future"));
        }
        if let Some(issuer) = &policy.issuer {
            let iss = reg
                .iss
                .and_then(|r| serde_json::from_str::<Cow<'_, str>>(r.get()).ok());
            if iss.as_deref() != Some(issuer.as_str()) {
                return Err(Reject::InvalidToken("invalid issuer"));
            }
        }
        if !policy.audience.is_empty()
            && !audience_matches(value(reg.aud)?.as_ref(), &policy.audience)
        {
            return Err(Reject::InvalidToken("invalid audience"));
        }
        // A logout token or a Security Event Token (RFC 8417) carries
        // `events`; an access token never does. Refused, so one can never
        // pass as the other.
        if reg.events {
            return Err(Reject::InvalidToken(
                "a security event or logout token is not an access token",
            ));
        }
        // Logout-all watermarks live as long as the longest token may:
        // a longer-lived one would outlive them.
        if !policy.time.lifetime_ok(exp, iat, now) {
            return Err(LIFETIME_TOO_LONG);
        }
        let sub = optional_string(reg.sub)?;
        let jti = optional_string(reg.jti)?;
        let sid = optional_string(reg.sid)?.filter(|s| !s.is_empty());
        let session = sid.as_deref().map(RevocationKey::from_sid);
        let scopes = scopes(value(reg.scope)?.as_ref(), value(reg.scp)?.as_ref());
        let revocation = TokenKeys::for_token(jti.as_deref(), token);
        let plain = crate::telemetry::access_log::is_plain;
        let log_plain = sub.as_deref().is_none_or(plain) && jti.as_deref().is_none_or(plain);
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
            log_plain,
            raw: RawClaims::new(json),
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
        let text = match self.raw.map().get(claim)? {
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

fn optional_date(raw: Option<&RawValue>, invalid: &'static str) -> Result<Option<u64>, Reject> {
    match value(raw)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => numeric_date(&v)
            .map(Some)
            .ok_or(Reject::InvalidToken(invalid)),
    }
}

fn optional_string(raw: Option<&RawValue>) -> Result<Option<String>, Reject> {
    match raw {
        None => Ok(None),
        Some(r) => serde_json::from_str::<Option<String>>(r.get()).map_err(|_| MALFORMED_CLAIMS),
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

fn scopes(scope: Option<&Value>, scp: Option<&Value>) -> Vec<String> {
    let split = |s: &str| s.split_ascii_whitespace().map(str::to_string).collect();
    match (scope, scp) {
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
        Claims::check(v.to_string(), "tok", &policy(), NOW)
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
        let json = json!({"exp": NOW, "aud": "anything"}).to_string();
        assert!(Claims::check(json, "t", &open, NOW).is_ok());
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

    /// The registered claims are read from the payload's text without
    /// building a map: the shapes that could read differently from the map
    /// the checks used before.
    #[test]
    fn payload_text_reads_as_the_map_did() {
        let policy = policy();
        let run = |json: &str| reason(Claims::check(json.to_string(), "tok", &policy, NOW));
        let exp = NOW + 60;
        // An escaped member name is the same name.
        let escaped = format!(r#"{{"\u0065xp":{exp},"iss":"https://idp.example","aud":"api"}}"#);
        assert_eq!(run(&escaped), "ok");
        // A claims set is an object: not an array read member by position.
        assert_eq!(run(&format!("[{exp},null,null]")), "malformed token");
        assert_eq!(run("\"text\""), "malformed token");
        // A registered claim named twice: refused, never read as one of them.
        let twice = format!(
            r#"{{"exp":{exp},"iss":"https://idp.example","aud":"api","sub":"a","sub":"b"}}"#
        );
        assert_eq!(run(&twice), "malformed token");
        // `events` present, even as null: not an access token.
        let events =
            format!(r#"{{"exp":{exp},"iss":"https://idp.example","aud":"api","events":null}}"#);
        assert_eq!(
            run(&events),
            "a security event or logout token is not an access token"
        );
        // What a claims map could not hold is malformed, wherever it is:
        // a number beyond an f64, a lone surrogate escape, nesting past
        // serde_json's limit. Never a claim read as absent (an `nbf`
        // skipped, a `scope` falling back to `scp`).
        let base = format!(r#""exp":{exp},"iss":"https://idp.example","aud":"api""#);
        let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
        let huge = "9".repeat(400);
        for extra in [
            r#""nbf":1e400"#.to_string(),
            r#""iat":-1e400"#.to_string(),
            format!(r#""nbf":{huge}0e9999"#),
            r#""nbf":["\ud800"]"#.to_string(),
            r#""scope":"read \ud800","scp":"admin""#.to_string(),
            r#""name":"\ud800""#.to_string(),
            r#""x":1e400"#.to_string(),
            format!(r#""nbf":{deep}"#),
            format!(r#""profile":{deep}"#),
        ] {
            assert_eq!(
                run(&format!("{{{base},{extra}}}")),
                "malformed token",
                "{extra}"
            );
        }
        assert_eq!(run(&format!(r#"{{{base},"x":{huge}}}"#)), "malformed token");
        // A long integer that an f64 holds is a number, as the map read it.
        let long = "9".repeat(300);
        assert_eq!(run(&format!(r#"{{{base},"x":{long}}}"#)), "ok");
        // null reads as absent, as before.
        let nulls = format!(
            r#"{{"exp":{exp},"iss":"https://idp.example","aud":"api","sub":null,"nbf":null}}"#
        );
        assert_eq!(run(&nulls), "ok");
        assert_eq!(
            run(r#"{"exp":null,"iss":"https://idp.example","aud":"api"}"#),
            "token has no exp claim"
        );
        // Every other member is there by name, parsed when asked for.
        let c = Claims::check(
            format!(r#"{{"exp":{exp},"iss":"https://idp.example","aud":"api","tier":3}}"#),
            "tok",
            &policy,
            NOW,
        )
        .expect("valid");
        assert_eq!(c.raw.map().get("tier"), Some(&json!(3)));
        assert_eq!(
            c.header_value("tier").map(|v| v.as_bytes().to_vec()),
            Some(b"3".to_vec())
        );
    }

    /// Whether the access log may write `sub` and the log id as they are
    /// is decided once, here.
    #[test]
    fn log_plain_is_false_when_sub_or_jti_needs_escaping() {
        assert!(check(with("jti", json!("j1"))).expect("valid").log_plain);
        assert!(check(base()).expect("valid").log_plain, "fingerprint: hex");
        for (key, value) in [("sub", "a\"b"), ("sub", "caf\u{e9}"), ("jti", "j\n1")] {
            let c = check(with(key, json!(value))).expect("valid");
            assert!(!c.log_plain, "{key} {value:?}");
        }
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

/// Differential: the claims read from the payload's text give the same
/// verdict and the same values as the map the checks read before, for
/// payloads without repeated members (a repeated registered claim is now
/// refused; the map kept the last one).
#[cfg(test)]
mod differential {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn policy(configured: bool) -> ClaimPolicy {
        ClaimPolicy {
            time: Policy {
                leeway: 30,
                max_token_lifetime: 3600,
            },
            issuer: configured.then(|| "https://idp.example".into()),
            audience: if configured {
                vec!["api".into()]
            } else {
                vec![]
            },
        }
    }

    type Read = (
        Option<String>,
        Option<String>,
        Option<String>,
        u64,
        Option<u64>,
        Option<u64>,
        Vec<String>,
    );

    /// The checks as they were over a `serde_json` map.
    fn via_map(raw: &Map<String, Value>, policy: &ClaimPolicy) -> Result<Read, &'static str> {
        let now = NOW;
        let leeway = policy.time.leeway;
        let date = |name: &str, invalid: &'static str| match raw.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => numeric_date(v).map(Some).ok_or(invalid),
        };
        let string = |name: &str| match raw.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err("malformed token claims"),
        };
        let exp = match raw.get("exp") {
            None | Some(Value::Null) => return Err("token has no exp claim"),
            Some(v) => numeric_date(v).ok_or("invalid exp claim")?,
        };
        if now > exp.saturating_add(leeway) {
            return Err("token expired");
        }
        let nbf = date("nbf", "invalid nbf claim")?;
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err("token not yet valid");
        }
        let iat = date("iat", "invalid iat claim")?;
        if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err("token issued in the future");
        }
        if let Some(issuer) = &policy.issuer {
            if raw.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err("invalid issuer");
            }
        }
        if !policy.audience.is_empty() && !audience_matches(raw.get("aud"), &policy.audience) {
            return Err("invalid audience");
        }
        if raw.contains_key("events") {
            return Err("a security event or logout token is not an access token");
        }
        if !policy.time.lifetime_ok(exp, iat, now) {
            return Err("token lifetime exceeds max_token_lifetime");
        }
        let sub = string("sub")?;
        let jti = string("jti")?;
        let sid = string("sid")?.filter(|s| !s.is_empty());
        let scopes = scopes(raw.get("scope"), raw.get("scp"));
        Ok((sub, jti, sid, exp, nbf, iat, scopes))
    }

    fn via_text(json: String, policy: &ClaimPolicy) -> Result<Read, &'static str> {
        match Claims::check(json, "tok", policy, NOW) {
            Ok(c) => Ok((c.sub, c.jti, c.sid, c.exp, c.nbf, c.iat, c.scopes)),
            Err(Reject::InvalidToken(d)) => Err(d),
            Err(_) => Err("other"),
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            (NOW - 120..NOW + 120).prop_map(|n| json!(n)),
            (NOW - 4000..NOW + 4000).prop_map(|n| json!(n as f64 + 0.5)),
            Just(json!(-5)),
            Just(json!(1e300)),
            Just(Value::Null),
            Just(json!(true)),
            Just(json!("https://idp.example")),
            Just(json!("api")),
            Just(json!("a b\tc")),
            Just(json!("")),
            Just(json!("caf\u{e9} \"q\" \\")),
            Just(json!(["api", "web"])),
            Just(json!(["x", 1, null])),
            Just(json!([])),
            Just(json!({"k": [1, {"n": null}]})),
        ]
    }

    const NAMES: [&str; 13] = [
        "exp", "nbf", "iat", "iss", "aud", "sub", "jti", "sid", "scope", "scp", "events", "tier",
        "EXP",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn text_and_map_agree(
            members in proptest::collection::vec((0..NAMES.len(), value()), 0..6),
            configured in any::<bool>(),
        ) {
            // Mostly valid tokens, so that the later checks and readings
            // are reached; the members drawn replace or add to these.
            let mut map = Map::new();
            map.insert("exp".into(), json!(NOW + 60));
            map.insert("iss".into(), json!("https://idp.example"));
            map.insert("aud".into(), json!("api"));
            for (i, v) in members {
                map.insert(NAMES[i].to_string(), v);
            }
            let policy = policy(configured);
            let json = Value::Object(map.clone()).to_string();
            prop_assert_eq!(via_text(json.clone(), &policy), via_map(&map, &policy), "{}", json);
        }
    }
}
