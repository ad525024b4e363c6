//! The claim checks of an OpenID Connect Back-Channel Logout 1.0 logout
//! token (its section 2.6), after its signature verified: a pure function
//! of the header's `typ`, the claims and `now`, one rejection per step.
//!
//! In order:
//! 1. `typ`, when present, is `logout+jwt` (or `application/logout+jwt`),
//!    compared case-insensitively (section 2.4 and RFC 8725 explicit typing);
//! 2. `iss` equals `jwt.issuer`;
//! 3. `aud` (a string or an array) names `jwt.backchannel_audience`;
//! 4. `iat` is present, a number, and not ahead of our clock by more than
//!    the leeway;
//! 5. `exp` is present and not past (with the leeway), and the token lives
//!    no longer than `max_token_lifetime` plus leeway (which also bounds
//!    how long its `jti` is remembered);
//! 6. `jti` is a non-empty string;
//! 7. `events` is an object whose member
//!    `http://schemas.openid.net/event/backchannel-logout` is an object;
//! 8. there is no `nonce` (so an ID token can never pass as a logout token);
//! 9. `sub` or `sid` (or both) is a non-empty string.
//!
//! The replay check (a `jti` seen before) needs state: the endpoint does it.

use crate::revocation::Policy;
use serde_json::{Map, Value};

/// The member of `events` that makes a JWT a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a logout token must match.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// `jwt.issuer`.
    pub issuer: &'a str,
    /// `jwt.backchannel_audience`.
    pub audience: &'a str,
    /// Leeway and `max_token_lifetime`.
    pub policy: Policy,
}

/// A valid logout token: whom it logs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// `sub`, when present.
    pub sub: Option<String>,
    /// `sid`, when present.
    pub sid: Option<String>,
    /// `jti`.
    pub jti: String,
    /// `exp` (UNIX seconds).
    pub exp: u64,
    /// `iat` (UNIX seconds): when the identity provider logged out.
    pub iat: u64,
}

/// Checks a logout token's `typ` and claims at `now`. The error is the
/// `error_description` of the 400.
pub fn validate(
    typ: Option<&str>,
    claims: &Map<String, Value>,
    expected: &Expected<'_>,
    now: u64,
) -> Result<LogoutToken, &'static str> {
    if let Some(typ) = typ {
        if !typ_is(typ, "logout+jwt") {
            return Err("typ is not logout+jwt");
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err("iss is not the configured issuer");
    }
    if !audience_names(claims.get("aud"), expected.audience) {
        return Err("aud does not name jwt.backchannel_audience");
    }
    let leeway = expected.policy.leeway;
    let iat = match claims.get("iat") {
        None | Some(Value::Null) => return Err("iat is missing"),
        Some(v) => numeric_date(v).ok_or("iat is not a number")?,
    };
    if iat > now.saturating_add(leeway) {
        return Err("iat is in the future");
    }
    let exp = match claims.get("exp") {
        None | Some(Value::Null) => return Err("exp is missing"),
        Some(v) => numeric_date(v).ok_or("exp is not a number")?,
    };
    if now > exp.saturating_add(leeway) {
        return Err("logout token expired");
    }
    if !expected.policy.lifetime_ok(exp, Some(iat), now) {
        return Err("logout token lifetime exceeds max_token_lifetime");
    }
    let jti = match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() => j.clone(),
        _ => return Err("jti is missing"),
    };
    match claims.get("events") {
        Some(Value::Object(events)) => match events.get(BACKCHANNEL_LOGOUT_EVENT) {
            Some(Value::Object(_)) => {}
            Some(_) => return Err("the back-channel logout event is not a JSON object"),
            None => return Err("events has no back-channel logout event"),
        },
        Some(_) => return Err("events is not a JSON object"),
        None => return Err("events is missing"),
    }
    if claims.contains_key("nonce") {
        return Err("a logout token must not contain nonce");
    }
    let sub = optional_string(claims, "sub")?;
    let sid = optional_string(claims, "sid")?;
    if sub.is_none() && sid.is_none() {
        return Err("neither sub nor sid is present");
    }
    Ok(LogoutToken {
        sub,
        sid,
        jti,
        exp,
        iat,
    })
}

/// Whether a JOSE `typ` names the media type `expected`
/// (`<expected>` or `application/<expected>`), ignoring case (RFC 7515
/// section 4.1.9).
pub(crate) fn typ_is(typ: &str, expected: &str) -> bool {
    let bare = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    bare.eq_ignore_ascii_case(expected)
}

/// `aud` is `audience` or an array containing it.
pub(crate) fn audience_names(aud: Option<&Value>, audience: &str) -> bool {
    match aud {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// A NumericDate: a non-negative number of seconds; fractions are dropped.
pub(crate) fn numeric_date(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

/// A claim that is absent, or a non-empty string.
fn optional_string(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, &'static str> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err("sub and sid must be non-empty strings"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const EXPECTED: Expected<'static> = Expected {
        issuer: "https://idp.example",
        audience: "revgate",
        policy: Policy {
            leeway: 30,
            max_token_lifetime: 3600,
        },
    };

    fn good() -> Value {
        json!({
            "iss": "https://idp.example", "aud": "revgate", "iat": NOW, "exp": NOW + 120,
            "jti": "lt-1", "sid": "s-1", "sub": "alice",
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
        })
    }

    fn check(typ: Option<&str>, v: Value) -> Result<LogoutToken, &'static str> {
        let Value::Object(map) = v else {
            panic!("not an object")
        };
        validate(typ, &map, &EXPECTED, NOW)
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = good();
        v[key] = value;
        v
    }

    fn without(key: &str) -> Value {
        let mut v = good();
        if let Value::Object(m) = &mut v {
            m.remove(key);
        }
        v
    }

    #[test]
    fn a_good_token_names_whom_it_logs_out() {
        let t = check(Some("logout+jwt"), good()).expect("valid");
        assert_eq!(t.sub.as_deref(), Some("alice"));
        assert_eq!(t.sid.as_deref(), Some("s-1"));
        assert_eq!(t.jti, "lt-1");
        assert!(check(None, good()).is_ok());
        assert!(check(Some("application/LOGOUT+JWT"), good()).is_ok());
        assert!(check(None, with("aud", json!(["other", "revgate"]))).is_ok());
        assert!(check(None, without("sid")).is_ok());
        assert!(check(None, without("sub")).is_ok());
    }

    #[test]
    fn each_step_has_its_rejection() {
        let cases: Vec<(Option<&str>, Value, &str)> = vec![
            (Some("JWT"), good(), "typ is not logout+jwt"),
            (Some("application/jwt"), good(), "typ is not logout+jwt"),
            (Some("secevent+jwt"), good(), "typ is not logout+jwt"),
            (
                None,
                with("iss", json!("https://evil.example")),
                "iss is not the configured issuer",
            ),
            (None, without("iss"), "iss is not the configured issuer"),
            (
                None,
                with("aud", json!("api")),
                "aud does not name jwt.backchannel_audience",
            ),
            (
                None,
                with("aud", json!(["api"])),
                "aud does not name jwt.backchannel_audience",
            ),
            (
                None,
                without("aud"),
                "aud does not name jwt.backchannel_audience",
            ),
            (None, without("iat"), "iat is missing"),
            (None, with("iat", json!("now")), "iat is not a number"),
            (None, with("iat", json!(NOW + 31)), "iat is in the future"),
            (None, without("exp"), "exp is missing"),
            (None, with("exp", json!(NOW - 31)), "logout token expired"),
            (
                None,
                with("exp", json!(NOW + 3631)),
                "logout token lifetime exceeds max_token_lifetime",
            ),
            (None, without("jti"), "jti is missing"),
            (None, with("jti", json!("")), "jti is missing"),
            (None, without("events"), "events is missing"),
            (
                None,
                with("events", json!([])),
                "events is not a JSON object",
            ),
            (
                None,
                with("events", json!({"other": {}})),
                "events has no back-channel logout event",
            ),
            (
                None,
                with("events", json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" })),
                "the back-channel logout event is not a JSON object",
            ),
            (
                None,
                with("nonce", json!("n-1")),
                "a logout token must not contain nonce",
            ),
            (
                None,
                with("sid", json!(7)),
                "sub and sid must be non-empty strings",
            ),
        ];
        for (typ, claims, why) in cases {
            assert_eq!(check(typ, claims.clone()), Err(why), "{typ:?} {claims}");
        }
        let mut neither = without("sub");
        if let Value::Object(m) = &mut neither {
            m.remove("sid");
        }
        assert_eq!(check(None, neither), Err("neither sub nor sid is present"));
    }

    /// The leeway applies to `exp` and `iat` as it does to access tokens.
    #[test]
    fn leeway_is_honoured() {
        assert!(check(None, with("exp", json!(NOW - 30))).is_ok());
        assert!(check(None, with("iat", json!(NOW + 30))).is_ok());
    }
}
