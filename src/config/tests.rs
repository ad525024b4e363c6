//! Each config rejection, with the message a user sees.

use super::*;

const ROUTE: &str =
    "[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9000\"\nauth = \"none\"\n";

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
    assert!(!e.contains('\n'), "error should be one line: {e:?}");
}

#[test]
fn empty_config_uses_defaults() {
    let c = Config::from_toml("", "t").expect("valid");
    assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.server.max_header_bytes, DEFAULT_MAX_HEADER_BYTES);
    assert!(c.admin.is_none() && c.jwt.is_none() && c.routes.is_empty());
}

#[test]
fn repo_gateway_toml_parses() {
    std::env::set_var("REVGATE_HMAC_SECRET", "x".repeat(40));
    std::env::set_var("REVGATE_ADMIN_TOKEN", "y".repeat(40));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    let c = Config::load(&path).expect("the repo's gateway.toml must be valid");
    assert_eq!(c.routes.len(), 3);
    assert!(c.admin.as_ref().is_some_and(|a| a.token.is_some()));
    assert_eq!(
        c.jwt.as_ref().map(|j| j.algorithms.clone()),
        Some(vec![Algorithm::HS256])
    );
    assert_eq!(c.claim_headers().len(), 2);
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = err("[server]\nlisten = \"127.0.0.1:1\"\nrequest_timeout = \n");
    assert!(e.starts_with("gateway.toml:3:"), "{e}");
}

#[test]
fn unknown_key_is_named_with_position() {
    assert_err(
        "[server]\nlisten = \"127.0.0.1:1\"\nlistne = 1\n",
        &["gateway.toml:3:1", "listne"],
    );
    assert_err(&format!("{ROUTE}upstrem = \"x\"\n"), &["route", "upstrem"]);
}

#[test]
fn wrong_type_names_the_key() {
    assert_err(
        "[server]\nmax_header_bytes = \"big\"\n",
        &["server.max_header_bytes", "gateway.toml:2:"],
    );
}

#[test]
fn bad_duration() {
    assert_err(
        "[server]\nrequest_timeout = \"30\"\n",
        &["server.request_timeout", "no unit"],
    );
    assert_err(
        &format!("{ROUTE}timeout = \"soon\"\n"),
        &["route[0].timeout", "\"soon\""],
    );
}

#[test]
fn bad_listen_address() {
    assert_err(
        "[server]\nlisten = \"localhost\"\n",
        &["server.listen", "\"localhost\"", "IP:PORT"],
    );
}

#[test]
fn header_limit_out_of_range() {
    assert_err(
        "[server]\nmax_header_bytes = 10\n",
        &["server.max_header_bytes", "10 is out of range"],
    );
}

#[test]
fn duplicate_prefix() {
    assert_err(
        &format!("{ROUTE}{ROUTE}"),
        &["route[1].prefix", "\"/\"", "earlier route"],
    );
}

#[test]
fn route_requires_prefix_and_http_upstream() {
    assert_err(
        "[[route]]\nupstream = \"http://a:1\"\n",
        &["route[0].prefix", "required"],
    );
    assert_err(
        "[[route]]\nprefix = \"api\"\nupstream = \"http://a:1\"\nauth=\"none\"\n",
        &["route[0].prefix", "\"api\""],
    );
    assert_err(
        "[[route]]\nprefix = \"/\"\nupstream = \"ftp://a:1\"\nauth=\"none\"\n",
        &["route[0].upstream", "http://"],
    );
    assert_err(
        "[[route]]\nprefix = \"/\"\nauth=\"none\"\n",
        &["route[0].upstream", "required"],
    );
}

#[test]
fn bad_auth_mode() {
    assert_err(
        "[[route]]\nprefix = \"/\"\nupstream = \"http://a:1\"\nauth = \"maybe\"\n",
        &["route[0].auth", "\"maybe\""],
    );
}

#[test]
fn auth_route_needs_jwt_section() {
    assert_err(
        "[[route]]\nprefix = \"/\"\nupstream = \"http://a:1\"\n",
        &["route[0].auth", "[jwt]"],
    );
}

#[test]
fn scopes_need_auth() {
    assert_err(&format!("{ROUTE}scopes = [\"a\"]\n"), &["route[0].scopes"]);
}

#[test]
fn bad_forward_claims_header() {
    assert_err(
        &format!("{ROUTE}forward_claims = {{ sub = \"bad header\" }}\n"),
        &["route[0].forward_claims", "\"bad header\""],
    );
    assert_err(
        &format!("{ROUTE}forward_claims = {{ sub = \"host\" }}\n"),
        &["route[0].forward_claims", "cannot carry"],
    );
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn jwt_alg_none_refused() {
    assert_err(
        &format!("[jwt]\nalgorithms = [\"none\"]\nhmac_secret = \"{SECRET}\"\n"),
        &["jwt.algorithms", "\"none\""],
    );
    assert_err(
        &format!("[jwt]\nalgorithms = [\"HS257\"]\nhmac_secret = \"{SECRET}\"\n"),
        &["jwt.algorithms", "\"HS257\""],
    );
}

#[test]
fn jwt_secret_rules() {
    assert_err(
        "[jwt]\nalgorithms = [\"HS256\"]\n",
        &["jwt.hmac_secret", "no secret"],
    );
    assert_err(
        "[jwt]\nhmac_secret = \"short\"\n",
        &["jwt.hmac_secret", "32 bytes"],
    );
    assert_err(
        &format!("[jwt]\nhmac_secret = \"{SECRET}\"\nhmac_secret_env = \"X\"\n"),
        &["jwt.hmac_secret", "only one"],
    );
    assert_err(
        "[jwt]\nhmac_secret_env = \"REVGATE_TEST_SURELY_UNSET_VAR\"\n",
        &[
            "jwt.hmac_secret_env",
            "REVGATE_TEST_SURELY_UNSET_VAR",
            "not set",
        ],
    );
    assert_err(
        "[jwt]\nhmac_secret_file = \"/nonexistent/secret\"\n",
        &["jwt.hmac_secret_file", "/nonexistent/secret"],
    );
}

#[test]
fn jwt_asymmetric_needs_key() {
    assert_err(
        "[jwt]\nalgorithms = [\"RS256\"]\n",
        &["jwt.algorithms", "no key"],
    );
    assert_err(
        "[jwt]\nalgorithms = [\"RS256\"]\npublic_key_file = \"a\"\njwks_file = \"b\"\n",
        &["only one"],
    );
    assert_err(
        "[jwt]\nalgorithms = [\"RS256\"]\njwks_url = \"ftp://idp\"\n",
        &["jwt.jwks_url", "http"],
    );
}

#[test]
fn jwt_bad_source() {
    assert_err(
        &format!("[jwt]\nhmac_secret = \"{SECRET}\"\nsources = [\"body:token\"]\n"),
        &["jwt.sources", "\"body:token\""],
    );
    let c = Config::from_toml(
        &format!("[jwt]\nhmac_secret = \"{SECRET}\"\nsources = [\"header:Authorization\", \"cookie:at\", \"query:access_token\", \"header:x-token\"]\n"),
        "t",
    )
    .expect("valid");
    let sources = c.jwt.map(|j| j.sources).unwrap_or_default();
    assert_eq!(sources[0], TokenSource::Authorization);
    assert_eq!(sources[1], TokenSource::Cookie("at".into()));
    assert_eq!(sources[2], TokenSource::Query("access_token".into()));
}

#[test]
fn redis_store_needs_url() {
    assert_err(
        "[revocation]\nstore = \"redis\"\n",
        &["revocation.redis_url", "required"],
    );
    assert_err(
        "[revocation]\nstore = \"disk\"\n",
        &["revocation.store", "\"disk\""],
    );
    assert_err(
        "[revocation]\non_store_down = \"maybe\"\n",
        &["revocation.on_store_down"],
    );
    assert_err(
        "[revocation]\nredis_url = \"http://user:pw@x\"\n",
        &["revocation.redis_url", "<redacted>"],
    );
}

/// `revocation.max_staleness`: default 1 s, parsed as a duration, and
/// refused outside 100 ms..60 s with the key and the range named.
#[test]
fn max_staleness_defaults_to_one_second_and_is_bounded() {
    let c = Config::from_toml("", "test").expect("empty config");
    assert_eq!(c.revocation.max_staleness, Duration::from_secs(1));
    let c = Config::from_toml("[revocation]\nmax_staleness = \"250ms\"\n", "test")
        .expect("250ms is valid");
    assert_eq!(c.revocation.max_staleness, Duration::from_millis(250));
    for bad in ["\"10ms\"", "\"2m\"", "\"soon\""] {
        assert_err(
            &format!("[revocation]\nmax_staleness = {bad}\n"),
            &["revocation.max_staleness"],
        );
    }
    assert_err(
        "[revocation]\nmax_staleness = \"10ms\"\n",
        &["revocation.max_staleness", "100ms", "60s"],
    );
}

#[test]
fn endpoints_must_differ() {
    assert_err(
        "[endpoints]\nlogout = \"/x\"\nrevoke = \"/x\"\n",
        &["endpoints.revoke", "already used"],
    );
    assert_err("[endpoints]\nlogout = \"x\"\n", &["endpoints.logout"]);
}

#[test]
fn admin_token_must_be_long() {
    assert_err("[admin]\ntoken = \"short\"\n", &["admin.token", "16 bytes"]);
}

#[test]
fn route_timeout_capped_by_request_timeout() {
    let c = Config::from_toml(
        &format!("[server]\nrequest_timeout = \"5s\"\n{ROUTE}timeout = \"60s\"\n"),
        "t",
    )
    .expect("valid");
    assert_eq!(c.routes[0].timeout, Duration::from_secs(5));
}

#[test]
fn prefix_must_be_in_normal_form() {
    for (prefix, hint) in [
        ("/%61pi/", "\"/api/\""),
        ("//api/", "\"/api/\""),
        ("/a/../b/", "\"/b/\""),
    ] {
        assert_err(
            &format!("[[route]]\nprefix = {prefix:?}\nupstream = \"http://127.0.0.1:9000\"\nauth = \"none\"\n"),
            &["route[0].prefix", "normal form", hint],
        );
    }
    assert_err(
        "[[route]]\nprefix = \"/a%2fb/\"\nupstream = \"http://127.0.0.1:9000\"\nauth = \"none\"\n",
        &["route[0].prefix", "encoded slash"],
    );
}

#[test]
fn endpoint_path_must_be_in_normal_form() {
    assert_err(
        "[endpoints]\nlogout = \"/auth//logout\"\n",
        &["endpoints.logout", "normal form", "\"/auth/logout\""],
    );
}

#[test]
fn token_header_with_underscore_needs_allow() {
    let jwt = format!(
        "[jwt]\nhmac_secret = \"{}\"\nsources = [\"header:x_token\"]\n",
        "s".repeat(32)
    );
    assert_err(&jwt, &["jwt.sources", "x_token", "underscores_in_headers"]);
    let allowed = format!("[server]\nunderscores_in_headers = \"allow\"\n{jwt}");
    assert!(Config::from_toml(&allowed, "t").is_ok());
}

#[test]
fn claim_header_with_underscore_is_refused() {
    assert_err(
        "[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9000\"\nauth = \"none\"\nforward_claims = { sub = \"x_auth_subject\" }\n",
        &["route[0].forward_claims", "x_auth_subject", "'_'"],
    );
}

#[test]
fn connection_time_bounds_and_underscore_mode() {
    let c = Config::from_toml("", "t").expect("valid");
    assert_eq!(c.server.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    assert_eq!(c.server.body_read_timeout, DEFAULT_BODY_READ_TIMEOUT);
    assert_eq!(c.server.underscores_in_headers, Underscores::Drop);
    let c = Config::from_toml(
        "[server]\nidle_timeout = \"5s\"\nbody_read_timeout = \"2s\"\nunderscores_in_headers = \"reject\"\n",
        "t",
    )
    .expect("valid");
    assert_eq!(c.server.idle_timeout, Duration::from_secs(5));
    assert_eq!(c.server.body_read_timeout, Duration::from_secs(2));
    assert_eq!(c.server.underscores_in_headers, Underscores::Reject);
    assert_err(
        "[server]\nidle_timeout = \"0s\"\n",
        &["server.idle_timeout", "more than 0"],
    );
    assert_err(
        "[server]\nbody_read_timeout = \"0s\"\n",
        &["server.body_read_timeout"],
    );
    assert_err(
        "[server]\nunderscores_in_headers = \"keep\"\n",
        &["server.underscores_in_headers", "\"keep\"", "drop"],
    );
}

/// Whether verification builds each token's claims map before caching
/// it follows from the routes: some route forwards claims.
#[test]
fn forward_claims_on_any_route_is_known_to_jwt() {
    let jwt =
        "[jwt]\nalgorithms = [\"HS256\"]\nhmac_secret = \"0123456789abcdef0123456789abcdef\"\n";
    let plain = Config::from_toml(&format!("{jwt}{ROUTE}"), "t").expect("valid");
    assert!(!plain.jwt.as_ref().is_some_and(|j| j.forward_claims));
    let route = ROUTE.replace("auth = \"none\"", "auth = \"required\"");
    let forwarding = Config::from_toml(
        &format!("{jwt}{route}forward_claims = {{ sub = \"x-auth-subject\" }}\n"),
        "t",
    )
    .expect("valid");
    assert!(forwarding.jwt.as_ref().is_some_and(|j| j.forward_claims));
}
