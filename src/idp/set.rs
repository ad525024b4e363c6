//! Security Event Tokens (RFC 8417) pushed per RFC 8935: the claim checks
//! after the signature, and the mapping of CAEP and RISC events to
//! revocations. A pure function of the header's `typ`, the claims and
//! `now`.
//!
//! Checks, in order, each with its RFC 8935 error code:
//! 1. `typ`, when present, is `secevent+jwt` (or
//!    `application/secevent+jwt`) -> `invalid_request`;
//! 2. `iss` equals the events issuer -> `invalid_issuer`;
//! 3. `aud` names `jwt.backchannel_audience` -> `invalid_audience`;
//! 4. `iat` present, not ahead by more than the leeway; `exp`, when
//!    present, not past; without `exp`, `iat` no older than
//!    `max_token_lifetime` plus leeway (the replay cache's window); `jti` a non-empty string; `events` a non-empty
//!    object whose values are objects -> `invalid_request`.
//!
//! Events acted on (others are ignored, as RFC 8417 lets a recipient do):
//! CAEP `session-revoked` and `credential-change`, RISC `account-disabled`
//! and `credential-compromise`. Their subject is the event's `subject` or
//! `sub_id` member, else the SET's top-level `sub_id` (SSF), in one of the
//! formats of RFC 9493 / SSF:
//!
//! | subject | revocation |
//! |---|---|
//! | `iss_sub` | watermark for `sub` (every token of the subject issued up to the SET's `iat`) |
//! | `jwt_id` | that `jti` |
//! | `opaque` (its `id`) | that session (`sid`) |
//! | `complex` with a `session` (`opaque`) | that session; else its `user` (`iss_sub`) |
//!
//! An `iss_sub` or `jwt_id` subject names its issuer: it must be
//! `token_issuer` (`jwt.issuer`, whose tokens the gateway accepts), else
//! the SET is refused (`invalid_request`) rather than silently doing
//! nothing. Other subject formats (`email`, `phone_number`, ...) cannot be
//! mapped to a token claim: such an event is ignored and counted.

use super::logout_token::{audience_names, numeric_date, typ_is};
use crate::revocation::Policy;
use serde_json::{Map, Value};

/// CAEP 1.0 `session-revoked`.
pub const CAEP_SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP 1.0 `credential-change`.
pub const CAEP_CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// RISC `account-disabled`.
pub const RISC_ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";
/// RISC `credential-compromise`.
pub const RISC_CREDENTIAL_COMPROMISE: &str =
    "https://schemas.openid.net/secevent/risc/event-type/credential-compromise";

const ACTED_ON: [&str; 4] = [
    CAEP_SESSION_REVOKED,
    CAEP_CREDENTIAL_CHANGE,
    RISC_ACCOUNT_DISABLED,
    RISC_CREDENTIAL_COMPROMISE,
];

/// An RFC 8935 section 2.4 error: the `err` code and its description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// The body is not a SET, or an event does not conform.
    InvalidRequest(&'static str),
    /// The signature or key could not be verified.
    InvalidKey(&'static str),
    /// `iss` is not the expected issuer.
    InvalidIssuer,
    /// `aud` does not name this receiver.
    InvalidAudience,
    /// The push bearer token is missing or wrong.
    AuthenticationFailed,
}

impl SetError {
    /// The `err` code.
    pub fn code(&self) -> &'static str {
        match self {
            SetError::InvalidRequest(_) => "invalid_request",
            SetError::InvalidKey(_) => "invalid_key",
            SetError::InvalidIssuer => "invalid_issuer",
            SetError::InvalidAudience => "invalid_audience",
            SetError::AuthenticationFailed => "authentication_failed",
        }
    }

    /// The `description`.
    pub fn description(&self) -> &'static str {
        match self {
            SetError::InvalidRequest(d) | SetError::InvalidKey(d) => d,
            SetError::InvalidIssuer => "iss is not the configured events issuer",
            SetError::InvalidAudience => "aud does not name jwt.backchannel_audience",
            SetError::AuthenticationFailed => "the push authorization is missing or wrong",
        }
    }
}

/// What a SET must match.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The SET issuer: `events.issuer`, else `jwt.issuer`.
    pub issuer: &'a str,
    /// `jwt.issuer`: the issuer named by `iss_sub` and `jwt_id` subjects.
    pub token_issuer: Option<&'a str>,
    /// `jwt.backchannel_audience`.
    pub audience: &'a str,
    /// Leeway and `max_token_lifetime`.
    pub policy: Policy,
}

/// One revocation a SET asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Logout-all for this `sub`.
    Subject(String),
    /// Revoke this `jti`.
    Jti(String),
    /// Revoke this session (`sid`).
    Session(String),
}

/// A valid SET: its `jti`, until when to remember it, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// `jti`.
    pub jti: String,
    /// The UNIX second from which a replay of this SET would be refused
    /// as expired anyway (its `exp` + leeway), or, without `exp`, one
    /// token lifetime (plus leeway) from its `iat`.
    pub remember_until: u64,
    /// The revocations, in the order of the events.
    pub actions: Vec<Action>,
    /// Events not acted on (unknown types or unmappable subjects).
    pub ignored: usize,
    /// `iat` (UNIX seconds): the time a subject's watermark is set at.
    pub iat: u64,
}

/// Checks a SET's `typ` and claims at `now` and maps its events.
pub fn validate(
    typ: Option<&str>,
    claims: &Map<String, Value>,
    expected: &Expected<'_>,
    now: u64,
) -> Result<SecurityEvent, SetError> {
    if let Some(typ) = typ {
        if !typ_is(typ, "secevent+jwt") {
            return Err(SetError::InvalidRequest("typ is not secevent+jwt"));
        }
    }
    if claims.get("iss").and_then(Value::as_str) != Some(expected.issuer) {
        return Err(SetError::InvalidIssuer);
    }
    if !audience_names(claims.get("aud"), expected.audience) {
        return Err(SetError::InvalidAudience);
    }
    let leeway = expected.policy.leeway;
    let iat = match claims.get("iat") {
        None | Some(Value::Null) => return Err(SetError::InvalidRequest("iat is missing")),
        Some(v) => numeric_date(v).ok_or(SetError::InvalidRequest("iat is not a number"))?,
    };
    if iat > now.saturating_add(leeway) {
        return Err(SetError::InvalidRequest("iat is in the future"));
    }
    let remember_until = match claims.get("exp") {
        None | Some(Value::Null) => {
            // Accepted for one token lifetime from `iat` and remembered as
            // long: the replay cache covers the whole acceptance window.
            let until =
                iat.saturating_add(expected.policy.max_token_lifetime.saturating_add(leeway));
            if now >= until {
                return Err(SetError::InvalidRequest(
                    "SET is older than max_token_lifetime",
                ));
            }
            until
        }
        Some(v) => {
            let exp = numeric_date(v).ok_or(SetError::InvalidRequest("exp is not a number"))?;
            if now > exp.saturating_add(leeway) {
                return Err(SetError::InvalidRequest("SET expired"));
            }
            exp.saturating_add(leeway).saturating_add(1)
        }
    };
    let jti = match claims.get("jti") {
        Some(Value::String(j)) if !j.is_empty() => j.clone(),
        _ => return Err(SetError::InvalidRequest("jti is missing")),
    };
    let events = match claims.get("events") {
        Some(Value::Object(events)) if !events.is_empty() => events,
        Some(Value::Object(_)) => return Err(SetError::InvalidRequest("events is empty")),
        _ => {
            return Err(SetError::InvalidRequest(
                "events is missing or not a JSON object",
            ))
        }
    };
    let top_subject = claims.get("sub_id");
    let mut actions = Vec::new();
    let mut ignored = 0;
    for (kind, payload) in events {
        let Value::Object(payload) = payload else {
            return Err(SetError::InvalidRequest(
                "an event payload is not a JSON object",
            ));
        };
        if !ACTED_ON.contains(&kind.as_str()) {
            ignored += 1;
            continue;
        }
        let subject = payload
            .get("subject")
            .or_else(|| payload.get("sub_id"))
            .or(top_subject)
            .ok_or(SetError::InvalidRequest("the event has no subject"))?;
        match subject_action(subject, expected.token_issuer)? {
            Some(action) => actions.push(action),
            None => ignored += 1,
        }
    }
    Ok(SecurityEvent {
        jti,
        remember_until,
        actions,
        ignored,
        iat,
    })
}

/// The revocation a subject identifier asks for; `None` for a format that
/// names no token claim.
fn subject_action(subject: &Value, token_issuer: Option<&str>) -> Result<Option<Action>, SetError> {
    let Value::Object(s) = subject else {
        return Err(SetError::InvalidRequest("a subject is not a JSON object"));
    };
    let member = |name: &'static str, why: &'static str| match s.get(name) {
        Some(Value::String(v)) if !v.is_empty() => Ok(v.clone()),
        _ => Err(SetError::InvalidRequest(why)),
    };
    let same_issuer = || match (token_issuer, s.get("iss").and_then(Value::as_str)) {
        (_, None) => Err(SetError::InvalidRequest(
            "an iss_sub or jwt_id subject has no iss",
        )),
        (Some(ours), Some(theirs)) if ours != theirs => Err(SetError::InvalidRequest(
            "the subject's iss is not jwt.issuer",
        )),
        _ => Ok(()),
    };
    match s.get("format").and_then(Value::as_str) {
        Some("iss_sub") => {
            same_issuer()?;
            Ok(Some(Action::Subject(member(
                "sub",
                "an iss_sub subject has no sub",
            )?)))
        }
        Some("jwt_id") => {
            same_issuer()?;
            Ok(Some(Action::Jti(member(
                "jti",
                "a jwt_id subject has no jti",
            )?)))
        }
        Some("opaque") => Ok(Some(Action::Session(member(
            "id",
            "an opaque subject has no id",
        )?))),
        Some("complex") => match (s.get("session"), s.get("user")) {
            (Some(session), _) => match session_id(session) {
                Some(sid) => Ok(Some(Action::Session(sid))),
                None => Err(SetError::InvalidRequest(
                    "a complex subject's session is not an opaque id",
                )),
            },
            (None, Some(user)) => subject_action(user, token_issuer).map(|a| match a {
                // A user is a subject, never a session of its own.
                Some(Action::Subject(sub)) => Some(Action::Subject(sub)),
                _ => None,
            }),
            (None, None) => Ok(None),
        },
        Some(_) => Ok(None),
        None => Err(SetError::InvalidRequest("a subject has no format")),
    }
}

/// The `id` of an `opaque` session subject.
fn session_id(session: &Value) -> Option<String> {
    let s = session.as_object()?;
    if s.get("format").and_then(Value::as_str) != Some("opaque") {
        return None;
    }
    s.get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const EXPECTED: Expected<'static> = Expected {
        issuer: "https://idp.example",
        token_issuer: Some("https://idp.example"),
        audience: "revgate",
        policy: Policy {
            leeway: 30,
            max_token_lifetime: 3600,
        },
    };

    fn set(events: Value) -> Value {
        json!({
            "iss": "https://idp.example", "aud": "revgate", "iat": NOW, "jti": "set-1",
            "events": events,
        })
    }

    fn check(typ: Option<&str>, v: Value) -> Result<SecurityEvent, SetError> {
        let Value::Object(map) = v else {
            panic!("not an object")
        };
        validate(typ, &map, &EXPECTED, NOW)
    }

    fn actions(v: Value) -> Vec<Action> {
        check(None, v).expect("valid").actions
    }

    fn iss_sub(sub: &str) -> Value {
        json!({"format": "iss_sub", "iss": "https://idp.example", "sub": sub})
    }

    #[test]
    fn each_event_and_subject_format_maps_to_its_revocation() {
        let opaque = json!({"format": "opaque", "id": "s-1"});
        assert_eq!(
            actions(set(json!({ CAEP_SESSION_REVOKED: {"subject": opaque} }))),
            vec![Action::Session("s-1".into())]
        );
        assert_eq!(
            actions(set(
                json!({ RISC_ACCOUNT_DISABLED: {"subject": iss_sub("alice")} })
            )),
            vec![Action::Subject("alice".into())]
        );
        let jwt_id = json!({"format": "jwt_id", "iss": "https://idp.example", "jti": "t-9"});
        assert_eq!(
            actions(set(
                json!({ RISC_CREDENTIAL_COMPROMISE: {"subject": jwt_id} })
            )),
            vec![Action::Jti("t-9".into())]
        );
        let complex = json!({
            "format": "complex", "user": iss_sub("bob"),
            "session": {"format": "opaque", "id": "s-2"},
        });
        assert_eq!(
            actions(set(json!({ CAEP_CREDENTIAL_CHANGE: {"subject": complex} }))),
            vec![Action::Session("s-2".into())]
        );
        let user_only = json!({"format": "complex", "user": iss_sub("carol")});
        assert_eq!(
            actions(set(json!({ CAEP_SESSION_REVOKED: {"subject": user_only} }))),
            vec![Action::Subject("carol".into())]
        );
        // SSF: the subject at the top level, as `sub_id`.
        let mut top = set(json!({ RISC_ACCOUNT_DISABLED: {} }));
        top["sub_id"] = iss_sub("dave");
        assert_eq!(actions(top), vec![Action::Subject("dave".into())]);
        // ... or as the event's `sub_id`.
        assert_eq!(
            actions(set(
                json!({ RISC_ACCOUNT_DISABLED: {"sub_id": iss_sub("erin")} })
            )),
            vec![Action::Subject("erin".into())]
        );
    }

    #[test]
    fn unknown_events_and_unmappable_subjects_are_ignored() {
        let email = json!({"format": "email", "email": "a@example.com"});
        let e = check(
            None,
            set(json!({
                "https://example.com/other-event": {},
                RISC_ACCOUNT_DISABLED: {"subject": email},
            })),
        )
        .expect("valid");
        assert_eq!(e.actions, vec![]);
        assert_eq!(e.ignored, 2);
        assert_eq!(e.jti, "set-1");
        assert_eq!(e.remember_until, NOW + 3630);
    }

    #[test]
    fn each_check_has_its_error_code() {
        let good = set(json!({ RISC_ACCOUNT_DISABLED: {"subject": iss_sub("alice")} }));
        let with = |k: &str, v: Value| {
            let mut s = good.clone();
            s[k] = v;
            s
        };
        let without = |k: &str| {
            let mut s = good.clone();
            if let Value::Object(m) = &mut s {
                m.remove(k);
            }
            s
        };
        assert!(check(Some("secevent+jwt"), good.clone()).is_ok());
        assert!(check(Some("application/SECEVENT+JWT"), good.clone()).is_ok());
        let cases: Vec<(Option<&str>, Value, SetError)> = vec![
            (
                Some("JWT"),
                good.clone(),
                SetError::InvalidRequest("typ is not secevent+jwt"),
            ),
            (
                None,
                with("iss", json!("https://evil")),
                SetError::InvalidIssuer,
            ),
            (None, without("iss"), SetError::InvalidIssuer),
            (None, with("aud", json!("api")), SetError::InvalidAudience),
            (None, without("aud"), SetError::InvalidAudience),
            (
                None,
                without("iat"),
                SetError::InvalidRequest("iat is missing"),
            ),
            (
                None,
                with("iat", json!(NOW + 31)),
                SetError::InvalidRequest("iat is in the future"),
            ),
            (
                None,
                with("exp", json!(NOW - 31)),
                SetError::InvalidRequest("SET expired"),
            ),
            (
                None,
                without("jti"),
                SetError::InvalidRequest("jti is missing"),
            ),
            (
                None,
                without("events"),
                SetError::InvalidRequest("events is missing or not a JSON object"),
            ),
            (
                None,
                with("events", json!({})),
                SetError::InvalidRequest("events is empty"),
            ),
            (
                None,
                with("events", json!({ RISC_ACCOUNT_DISABLED: [] })),
                SetError::InvalidRequest("an event payload is not a JSON object"),
            ),
            (
                None,
                with("events", json!({ RISC_ACCOUNT_DISABLED: {} })),
                SetError::InvalidRequest("the event has no subject"),
            ),
            (
                None,
                with(
                    "events",
                    json!({ RISC_ACCOUNT_DISABLED: {"subject": {"format": "iss_sub", "iss": "https://other", "sub": "a"}} }),
                ),
                SetError::InvalidRequest("the subject's iss is not jwt.issuer"),
            ),
            (
                None,
                with(
                    "events",
                    json!({ RISC_ACCOUNT_DISABLED: {"subject": {"format": "iss_sub", "iss": "https://idp.example"}} }),
                ),
                SetError::InvalidRequest("an iss_sub subject has no sub"),
            ),
            (
                None,
                with(
                    "events",
                    json!({ CAEP_SESSION_REVOKED: {"subject": {"id": "x"}} }),
                ),
                SetError::InvalidRequest("a subject has no format"),
            ),
        ];
        for (typ, claims, want) in cases {
            assert_eq!(check(typ, claims.clone()).err(), Some(want), "{claims}");
        }
    }

    /// A SET without `exp` is remembered for one token lifetime from its
    /// `iat`; an older one must be refused, else a captured SET replayed
    /// after its `jti` left the replay cache would act again (a watermark
    /// moved to now logs the subject out of sessions begun since).
    #[test]
    fn a_set_without_exp_older_than_a_token_lifetime_is_refused() {
        let mut s = set(json!({ RISC_ACCOUNT_DISABLED: {"subject": iss_sub("alice")} }));
        s["iat"] = json!(NOW - 3630);
        assert_eq!(
            check(None, s.clone()).err(),
            Some(SetError::InvalidRequest(
                "SET is older than max_token_lifetime"
            ))
        );
        s["iat"] = json!(NOW - 3629);
        assert_eq!(check(None, s).expect("valid").remember_until, NOW + 1);
    }

    #[test]
    fn a_set_with_exp_is_remembered_until_it_expires() {
        let mut s =
            set(json!({ CAEP_SESSION_REVOKED: {"subject": {"format": "opaque", "id": "s"}} }));
        s["exp"] = json!(NOW + 100);
        assert_eq!(check(None, s).expect("valid").remember_until, NOW + 131);
    }
}
