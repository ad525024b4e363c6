//! The settings of revocations pushed by the identity provider:
//! `jwt.backchannel_audience`, `endpoints.logout_revokes`,
//! `endpoints.backchannel_logout`, `endpoints.security_events` and the
//! optional `[events]` section (a separate issuer for Security Event
//! Tokens, and the bearer token of an authenticated push).

use super::raw::{RawEvents, RawJwt};
use super::{jwt, secret, Config, ConfigError, JwtConfig, Secret, Secrets};

/// Algorithms a separate events issuer may sign with when
/// `events.algorithms` is not set: the asymmetric ones identity providers
/// use. HMAC is never allowed there (there is no shared secret to check it
/// with).
pub const DEFAULT_EVENTS_ALGORITHMS: [&str; 3] = ["RS256", "ES256", "PS256"];

/// Shortest `events.push_token`: a bearer credential must not be guessable.
const MIN_PUSH_TOKEN_BYTES: usize = 16;

/// What `POST endpoints.logout` revokes for a token that carries a `sid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutRevokes {
    /// That token only (the default).
    Token,
    /// Its whole identity-provider session: every token with its `sid`.
    Session,
}

/// The identity-provider settings, typed.
#[derive(Debug, Clone, Default)]
pub struct IdpConfig {
    /// `jwt.backchannel_audience`: the gateway's client id at the identity
    /// provider; the `aud` a logout token or SET must name.
    pub backchannel_audience: Option<String>,
    /// `[events]`, when present.
    pub events: Option<EventsConfig>,
}

/// `[events]`, typed.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// A separate issuer of Security Event Tokens, with its own keys
    /// (`events.issuer` and one of `jwks_url`, `jwks_file`,
    /// `public_key_file`). `None`: SETs come from `jwt.issuer`, verified
    /// with the `[jwt]` keys.
    pub keys: Option<JwtConfig>,
    /// `events.push_token*`: when set, a push must carry
    /// `Authorization: Bearer <it>` (compared in constant time).
    pub push_token: Option<Secret>,
}

/// Parses `[events]`; `jwt` gives the leeway and lifetime its own keys use.
pub(super) fn events(
    raw: RawEvents,
    jwt_cfg: Option<&JwtConfig>,
    secrets: Secrets,
) -> Result<EventsConfig, ConfigError> {
    let push_token = if secrets.admin() && secrets.signing() {
        secret(
            "events",
            "push_token",
            raw.push_token,
            raw.push_token_file,
            raw.push_token_env,
        )?
    } else {
        None
    };
    if push_token
        .as_ref()
        .is_some_and(|t| t.expose().len() < MIN_PUSH_TOKEN_BYTES)
    {
        return Err(ConfigError::invalid(
            "events.push_token",
            "is shorter than 16 bytes; use a long random value (e.g. `openssl rand -hex 32`)",
        ));
    }
    let has_keys =
        raw.public_key_file.is_some() || raw.jwks_file.is_some() || raw.jwks_url.is_some();
    let issuer = raw.issuer.filter(|s| !s.is_empty());
    let keys = match (issuer, has_keys) {
        (None, false) => {
            if raw.algorithms.is_some() {
                return Err(ConfigError::invalid(
                    "events.algorithms",
                    "only applies to a separate events issuer; set events.issuer and its jwks_url or jwks_file",
                ));
            }
            None
        }
        (None, true) => {
            return Err(ConfigError::invalid(
                "events.issuer",
                "is required with events keys: SETs signed with them must name this issuer",
            ))
        }
        (Some(_), false) => {
            return Err(ConfigError::invalid(
                "events.issuer",
                "needs its keys: set events.jwks_url, events.jwks_file or events.public_key_file",
            ))
        }
        (Some(issuer), true) => {
            let algorithms = raw.algorithms.unwrap_or_else(|| {
                DEFAULT_EVENTS_ALGORITHMS
                    .iter()
                    .map(|a| (*a).to_owned())
                    .collect()
            });
            if let Some(a) = algorithms.iter().find(|a| a.starts_with("HS")) {
                return Err(ConfigError::invalid(
                    "events.algorithms",
                    format!("{a:?}: HMAC is not accepted for events; list asymmetric algorithms such as \"RS256\""),
                ));
            }
            let (leeway, lifetime) = jwt_cfg.map_or(
                (super::DEFAULT_LEEWAY, super::DEFAULT_MAX_TOKEN_LIFETIME),
                |j| (j.leeway, j.max_token_lifetime),
            );
            let raw_jwt = RawJwt {
                algorithms: Some(algorithms),
                public_key_file: raw.public_key_file,
                jwks_file: raw.jwks_file,
                jwks_url: raw.jwks_url,
                issuer: Some(issuer),
                leeway: Some(super::format_duration(leeway)),
                max_token_lifetime: Some(super::format_duration(lifetime)),
                cache_capacity: Some(0),
                ..RawJwt::default()
            };
            Some(jwt(raw_jwt, secrets).map_err(in_events)?)
        }
    };
    Ok(EventsConfig { keys, push_token })
}

/// An error of the `[jwt]` parser, reused for `[events]`, named in `[events]`.
fn in_events(e: ConfigError) -> ConfigError {
    match e {
        ConfigError::Invalid { key, message } => ConfigError::Invalid {
            key: key.replacen("jwt.", "events.", 1),
            message,
        },
        other => other,
    }
}

/// `endpoints.logout_revokes`.
pub(super) fn logout_revokes(value: Option<&str>) -> Result<LogoutRevokes, ConfigError> {
    match value {
        None | Some("token") => Ok(LogoutRevokes::Token),
        Some("session") => Ok(LogoutRevokes::Session),
        Some(other) => Err(ConfigError::invalid(
            "endpoints.logout_revokes",
            format!("{other:?} is not a choice; use \"token\" or \"session\""),
        )),
    }
}

/// `jwt.backchannel_audience`: a non-empty string when set.
pub(super) fn backchannel_audience(value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        Some(a) if a.is_empty() => Err(ConfigError::invalid(
            "jwt.backchannel_audience",
            "is empty; set it to the gateway's client id at the identity provider",
        )),
        other => Ok(other),
    }
}

/// The cross-field checks of the identity-provider settings.
pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    let eps = &config.endpoints;
    let audience = config.idp.backchannel_audience.is_some();
    let issuer = config.jwt.as_ref().is_some_and(|j| j.issuer.is_some());
    if let Some(path) = &eps.backchannel_logout {
        let key = "endpoints.backchannel_logout";
        if config.jwt.is_none() {
            return Err(ConfigError::invalid(
                key,
                format!("{path:?} needs a [jwt] section with the identity provider's keys"),
            ));
        }
        if !issuer {
            return Err(ConfigError::invalid(
                "jwt.issuer",
                "is required by endpoints.backchannel_logout: a logout token's iss must equal it",
            ));
        }
        if !audience {
            return Err(ConfigError::invalid(
                "jwt.backchannel_audience",
                "is required by endpoints.backchannel_logout: set it to the gateway's client id at the identity provider",
            ));
        }
    }
    let separate = config.idp.events.as_ref().is_some_and(|e| e.keys.is_some());
    if let Some(path) = &eps.security_events {
        let key = "endpoints.security_events";
        if config.jwt.is_none() {
            return Err(ConfigError::invalid(
                key,
                format!("{path:?} needs a [jwt] section"),
            ));
        }
        if !issuer && !separate {
            return Err(ConfigError::invalid(
                "jwt.issuer",
                "is required by endpoints.security_events (or set events.issuer and its keys): a SET's iss must equal it",
            ));
        }
        if !audience {
            return Err(ConfigError::invalid(
                "jwt.backchannel_audience",
                "is required by endpoints.security_events: a SET's aud must name it",
            ));
        }
    } else if config.idp.events.is_some() {
        return Err(ConfigError::invalid(
            "events",
            "has no effect without endpoints.security_events; set it (e.g. \"/auth/events\") or remove [events]",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, LogoutRevokes};

    const SECRET: &str = "config-test-secret-0123456789-abcdefgh";

    fn jwt(extra: &str) -> String {
        format!("[jwt]\nhmac_secret = \"{SECRET}\"\nissuer = \"https://idp\"\nbackchannel_audience = \"revgate\"\n{extra}")
    }

    fn err(toml: &str) -> String {
        match Config::from_toml(toml, "gateway.toml") {
            Ok(_) => panic!("config should be rejected:\n{toml}"),
            Err(e) => e.to_string(),
        }
    }

    fn assert_err(toml: &str, needles: &[&str]) {
        let e = err(toml);
        for n in needles {
            assert!(e.contains(n), "error {e:?} should contain {n:?}");
        }
    }

    const ENDPOINTS: &str =
        "[endpoints]\nbackchannel_logout = \"/auth/backchannel-logout\"\nsecurity_events = \"/auth/events\"\n";

    #[test]
    fn both_endpoints_with_their_settings_parse() {
        let c = Config::from_toml(
            &format!("{}{ENDPOINTS}logout_revokes = \"session\"\n", jwt("")),
            "t",
        )
        .expect("valid");
        assert_eq!(c.endpoints.logout_revokes, LogoutRevokes::Session);
        assert_eq!(
            c.endpoints.backchannel_logout.as_deref(),
            Some("/auth/backchannel-logout")
        );
        assert_eq!(c.idp.backchannel_audience.as_deref(), Some("revgate"));
        // Off by default.
        let c = Config::from_toml(&jwt(""), "t").expect("valid");
        assert_eq!(c.endpoints.backchannel_logout, None);
        assert_eq!(c.endpoints.security_events, None);
        assert_eq!(c.endpoints.logout_revokes, LogoutRevokes::Token);
    }

    #[test]
    fn logout_revokes_takes_token_or_session() {
        assert_err(
            &format!("{}[endpoints]\nlogout_revokes = \"all\"\n", jwt("")),
            &["endpoints.logout_revokes", "\"all\""],
        );
    }

    #[test]
    fn backchannel_logout_needs_issuer_audience_and_jwt() {
        let ep = "[endpoints]\nbackchannel_logout = \"/auth/backchannel-logout\"\n";
        assert_err(ep, &["endpoints.backchannel_logout", "[jwt]"]);
        assert_err(
            &format!("[jwt]\nhmac_secret = \"{SECRET}\"\nbackchannel_audience = \"r\"\n{ep}"),
            &["jwt.issuer", "backchannel_logout"],
        );
        assert_err(
            &format!("[jwt]\nhmac_secret = \"{SECRET}\"\nissuer = \"https://idp\"\n{ep}"),
            &["jwt.backchannel_audience", "client id"],
        );
        assert_err(
            &format!("{}{ep}", jwt("").replace("\"revgate\"", "\"\"")),
            &["jwt.backchannel_audience", "empty"],
        );
        assert_err(
            &format!(
                "{}[endpoints]\nbackchannel_logout = \"/auth/revoke\"\n",
                jwt("")
            ),
            &["endpoints.backchannel_logout", "already used"],
        );
        assert_err(
            &format!("{}[endpoints]\nbackchannel_logout = \"auth/x\"\n", jwt("")),
            &["endpoints.backchannel_logout", "must be a path"],
        );
    }

    #[test]
    fn security_events_need_an_issuer_and_the_audience() {
        let ep = "[endpoints]\nsecurity_events = \"/auth/events\"\n";
        assert_err(
            &format!("[jwt]\nhmac_secret = \"{SECRET}\"\nbackchannel_audience = \"r\"\n{ep}"),
            &["jwt.issuer", "events.issuer"],
        );
        assert_err(
            &format!("[jwt]\nhmac_secret = \"{SECRET}\"\nissuer = \"https://idp\"\n{ep}"),
            &["jwt.backchannel_audience"],
        );
    }

    #[test]
    fn events_section_checks() {
        let base = format!("{}{ENDPOINTS}", jwt(""));
        let keys = format!(
            "jwks_file = \"{}/tests/fixtures/keys/jwks.json\"\n",
            env!("CARGO_MANIFEST_DIR")
        );
        assert_err(
            &format!("{base}[events]\nissuer = \"https://ssf\"\n"),
            &["events.issuer", "needs its keys"],
        );
        assert_err(
            &format!("{base}[events]\n{keys}"),
            &["events.issuer", "is required"],
        );
        assert_err(
            &format!("{base}[events]\nissuer = \"https://ssf\"\nalgorithms = [\"HS256\"]\n{keys}"),
            &["events.algorithms", "HMAC"],
        );
        assert_err(
            &format!("{base}[events]\nalgorithms = [\"RS256\"]\n"),
            &["events.algorithms", "separate events issuer"],
        );
        assert_err(
            &format!("{base}[events]\npush_token = \"short\"\n"),
            &["events.push_token", "16 bytes"],
        );
        assert_err(
            &format!("{}[events]\n", jwt("")),
            &["events", "endpoints.security_events"],
        );
        assert_err(
            &format!("{base}[events]\npush_tokn = \"x\"\n"),
            &["push_tokn"],
        );
        let c = Config::from_toml(
            &format!("{base}[events]\nissuer = \"https://ssf\"\n{keys}push_token = \"0123456789abcdef\"\n"),
            "t",
        )
        .expect("valid");
        let events = c.idp.events.expect("events");
        let keys = events.keys.expect("separate keys");
        assert_eq!(keys.issuer.as_deref(), Some("https://ssf"));
        assert_eq!(keys.cache_capacity, 0);
        assert!(events.push_token.is_some());
    }
}
