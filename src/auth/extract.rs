//! Finding the bearer token in a request: `jwt.sources`, in order.
//!
//! A request carries one credential (RFC 6750 §2: a client "MUST NOT use
//! more than one method"), so an upstream can never read another token than
//! the one verified:
//!
//! - every source is read; different tokens in two of them are a 400
//!   `invalid_request` (the same token repeated is one credential, taken
//!   from the first source in configured order);
//! - a source that is present but malformed is a 400 at once (RFC 6750
//!   §3.1), never skipped in favour of the next;
//! - a token given twice in one source (two `Authorization` headers, two
//!   cookies or query parameters of the same name) is refused;
//! - [`strip_unused`] removes every other source that held a token from
//!   the request the upstream receives.

use crate::config::TokenSource;
use crate::response::Reject;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE};
use hyper::Uri;
use std::borrow::Cow;

/// Most token sources a config may list: [`Credential::present`] is a
/// bit set of them.
pub const MAX_SOURCES: usize = 16;

/// The one credential of a request.
#[derive(Debug, PartialEq, Eq)]
pub struct Credential<'a> {
    pub token: Cow<'a, str>,
    /// Index in `sources` of the source the token is taken from.
    pub source: usize,
    /// Bit `i` set: source `i` held this token (the used one included).
    pub present: u16,
}

/// The request's one credential; `Ok(None)` when no source holds a token.
pub(crate) fn extract<'a>(
    sources: &[TokenSource],
    headers: &'a HeaderMap,
    uri: &'a Uri,
) -> Result<Option<Credential<'a>>, Reject> {
    let mut credential: Option<Credential<'a>> = None;
    for (i, source) in sources.iter().enumerate().take(MAX_SOURCES) {
        let found = match source {
            TokenSource::Authorization => header(headers, &AUTHORIZATION, true)?,
            TokenSource::Header(name) => header(headers, name, false)?,
            TokenSource::Cookie(name) => cookie(headers, name)?,
            TokenSource::Query(name) => query(uri, name)?,
        };
        let Some(token) = found else { continue };
        match &mut credential {
            None => {
                credential = Some(Credential {
                    token,
                    source: i,
                    present: 1 << i,
                })
            }
            Some(c) if c.token == token => c.present |= 1 << i,
            Some(_) => {
                return Err(Reject::InvalidRequest(
                    "different tokens in more than one source",
                ))
            }
        }
    }
    Ok(credential)
}

/// Removes from the request every token source that held the credential
/// but is not the one it was taken from: a header, the cookie from
/// `Cookie`, the parameter from the query. Returns the new target when the
/// query changed. Called only when more than one source held it (rare).
pub(crate) fn strip_unused(
    sources: &[TokenSource],
    used: usize,
    present: u16,
    headers: &mut HeaderMap,
    uri: &Uri,
) -> Result<Option<Uri>, Reject> {
    let mut new_uri = None;
    for (i, source) in sources.iter().enumerate().take(MAX_SOURCES) {
        if i == used || present & (1 << i) == 0 {
            continue;
        }
        match source {
            TokenSource::Authorization => {
                headers.remove(AUTHORIZATION);
            }
            TokenSource::Header(name) => {
                headers.remove(name);
            }
            TokenSource::Cookie(name) => strip_cookie(headers, name),
            TokenSource::Query(name) => {
                let current = new_uri.as_ref().unwrap_or(uri);
                new_uri = Some(strip_query(current, name)?);
            }
        }
    }
    Ok(new_uri)
}

/// Every `Cookie` header without the cookie `name` (a header left empty
/// goes).
fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| {
            let Ok(text) = value.to_str() else {
                return Some(value.clone());
            };
            let rest: Vec<&str> = text
                .split(';')
                .filter(|pair| pair.split_once('=').is_none_or(|(k, _)| k.trim() != name))
                .map(str::trim)
                .filter(|pair| !pair.is_empty())
                .collect();
            if rest.is_empty() {
                None
            } else {
                HeaderValue::from_str(&rest.join("; ")).ok()
            }
        })
        .collect();
    headers.remove(COOKIE);
    for value in kept {
        headers.append(COOKIE, value);
    }
}

/// `uri` without the query parameter `name` (compared form-decoded); the
/// other parameters are kept byte for byte.
fn strip_query(uri: &Uri, name: &str) -> Result<Uri, Reject> {
    let mut target = uri.path().to_string();
    if let Some(q) = uri.query() {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|pair| {
                let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
                form_urlencoded::parse(key.as_bytes())
                    .next()
                    .is_none_or(|(k, _)| k != name)
            })
            .collect();
        if !kept.is_empty() {
            target.push('?');
            target.push_str(&kept.join("&"));
        }
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        target
            .parse()
            .map_err(|_| Reject::InvalidRequest("invalid request target"))?,
    );
    Uri::from_parts(parts).map_err(|_| Reject::InvalidRequest("invalid request target"))
}

/// `Authorization: Bearer <token>` (scheme case-insensitive, one token). For
/// another header the `Bearer ` prefix is optional.
///
/// Every request with a token passes here, so the value is read in one pass
/// over its bytes (the token checked a vector at a time); the error paths then
/// tell a value that is not visible ASCII ("malformed token header") from
/// one that is but holds no single token, as a `str` reading would.
fn header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    scheme_required: bool,
) -> Result<Option<Cow<'a, str>>, Reject> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Reject::InvalidRequest("more than one token header"));
    }
    // A value with bytes outside visible ASCII is malformed, whatever else
    // is wrong with it (checked only once the fast path has failed).
    let refuse = |why: &'static str| {
        if value.to_str().is_err() {
            Reject::InvalidRequest("malformed token header")
        } else {
            Reject::InvalidRequest(why)
        }
    };
    let text = trim_blanks(value.as_bytes());
    let token = match text.iter().position(|&b| is_blank(b)) {
        Some(at) if text[..at].eq_ignore_ascii_case(b"bearer") => {
            let rest = &text[at..];
            let skip = rest
                .iter()
                .position(|&b| !is_blank(b))
                .unwrap_or(rest.len());
            &rest[skip..]
        }
        Some(_) => return Err(refuse("authorization scheme must be Bearer")),
        None if text.eq_ignore_ascii_case(b"bearer") => &[][..],
        None if scheme_required => return Err(refuse("authorization scheme must be Bearer")),
        None => text,
    };
    if token.is_empty() {
        return Err(refuse("empty bearer token"));
    }
    if !is_b64token(token) {
        return Err(refuse("bearer credentials must be exactly one token"));
    }
    // A b64token is ASCII, so this cannot fail; no token rather than a
    // panic if it ever did.
    let token = std::str::from_utf8(token).map_err(|_| refuse("malformed token header"))?;
    Ok(Some(Cow::Borrowed(token)))
}

/// SP or HTAB, the blanks around and inside an `Authorization` value.
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `bytes` without leading and trailing blanks.
fn trim_blanks(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_blank(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !is_blank(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Whether `b` may stand in RFC 6750's `b64token` before its `=` padding:
/// `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`. Branch-free, so
/// that the loop over a token compiles to vector code.
fn is_b64token_byte(b: u8) -> bool {
    let alpha = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    let sign = (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~') | (b == b'+') | (b == b'/');
    alpha | digit | sign
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/" ) *"="`. Whitespace inside means a second token.
fn is_b64token(token: &[u8]) -> bool {
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
    // No early exit: every byte is looked at, a vector at a time.
    !body.is_empty() && body.iter().fold(true, |ok, &b| ok & is_b64token_byte(b))
}

/// The cookie `name` from every `Cookie` header (HTTP/2 may send several).
/// An empty value counts as no token.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<Cow<'a, str>>, Reject> {
    let mut found = None;
    for value in headers.get_all(COOKIE) {
        // Cookie headers that are not visible ASCII hold no token of ours.
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if k.trim() != name {
                continue;
            }
            let v = v.trim();
            // RFC 6265 allows a DQUOTE-wrapped value.
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            if found.is_some() {
                return Err(Reject::InvalidRequest("token cookie sent more than once"));
            }
            found = Some(v);
        }
    }
    Ok(found.filter(|v| !v.is_empty()).map(Cow::Borrowed))
}

/// The query parameter `name`, percent-decoded (`+` is a space, as in forms).
/// An empty value counts as no token.
fn query<'a>(uri: &'a Uri, name: &str) -> Result<Option<Cow<'a, str>>, Reject> {
    let Some(q) = uri.query() else {
        return Ok(None);
    };
    let mut found = None;
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        if k != name {
            continue;
        }
        if found.is_some() {
            return Err(Reject::InvalidRequest(
                "token query parameter sent more than once",
            ));
        }
        found = Some(v);
    }
    Ok(found.filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            let name = HeaderName::from_bytes(k.as_bytes()).expect("name");
            map.append(name, HeaderValue::from_str(v).expect("value"));
        }
        map
    }

    fn run(
        sources: &[TokenSource],
        pairs: &[(&str, &str)],
        uri: &str,
    ) -> Result<Option<String>, Reject> {
        let h = headers(pairs);
        let uri: Uri = uri.parse().expect("uri");
        extract(sources, &h, &uri).map(|t| t.map(|c| c.token.into_owned()))
    }

    fn auth(value: &str) -> Result<Option<String>, Reject> {
        run(
            &[TokenSource::Authorization],
            &[("authorization", value)],
            "/",
        )
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi",
        ] {
            assert_eq!(auth(v), Ok(Some("abc.def.ghi".into())), "{v}");
        }
    }

    #[test]
    fn malformed_authorization_is_invalid_request() {
        for v in [
            "Bearer a.b.c d.e.f",
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer ",
            "abc.def.ghi",
            "Bearer a,b",
            "Bearer ====",
        ] {
            let r = auth(v);
            assert!(
                matches!(r, Err(Reject::InvalidRequest(_))),
                "{v:?} -> {r:?}"
            );
            assert_eq!(r.err().map(|e| e.status().as_u16()), Some(400));
        }
        let r = run(
            &[TokenSource::Authorization],
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
            "/",
        );
        assert_eq!(r, Err(Reject::InvalidRequest("more than one token header")));
    }

    #[test]
    fn absent_everywhere_is_none() {
        let all = [
            TokenSource::Authorization,
            TokenSource::Cookie("access_token".into()),
            TokenSource::Query("access_token".into()),
        ];
        assert_eq!(run(&all, &[("cookie", "other=1")], "/x?y=2"), Ok(None));
    }

    #[test]
    fn cookie_source() {
        let src = [TokenSource::Cookie("access_token".into())];
        let got = run(&src, &[("cookie", "a=1; access_token=t.o.k; b=2")], "/");
        assert_eq!(got, Ok(Some("t.o.k".into())));
        let got = run(
            &src,
            &[("cookie", "a=1"), ("cookie", "access_token=\"q.u.o\"")],
            "/",
        );
        assert_eq!(got, Ok(Some("q.u.o".into())));
        assert_eq!(run(&src, &[("cookie", "access_token=")], "/"), Ok(None));
        let twice = run(&src, &[("cookie", "access_token=a; access_token=b")], "/");
        assert!(matches!(twice, Err(Reject::InvalidRequest(_))));
    }

    #[test]
    fn query_source_is_percent_decoded() {
        let src = [TokenSource::Query("token".into())];
        assert_eq!(
            run(&src, &[], "/p?x=1&token=a%2Eb.c"),
            Ok(Some("a.b.c".into()))
        );
        assert_eq!(run(&src, &[], "/p?token="), Ok(None));
        assert_eq!(run(&src, &[], "/p"), Ok(None));
        let twice = run(&src, &[], "/p?token=a&token=b");
        assert!(matches!(twice, Err(Reject::InvalidRequest(_))));
    }

    #[test]
    fn other_header_takes_an_optional_bearer_prefix() {
        let src = [TokenSource::Header(HeaderName::from_static("x-token"))];
        assert_eq!(
            run(&src, &[("x-token", "a.b.c")], "/"),
            Ok(Some("a.b.c".into()))
        );
        assert_eq!(
            run(&src, &[("x-token", "Bearer a.b.c")], "/"),
            Ok(Some("a.b.c".into()))
        );
        assert!(run(&src, &[("x-token", "Basic a")], "/").is_err());
    }

    #[test]
    fn different_tokens_in_two_sources_are_refused() {
        let pairs = [
            ("authorization", "Bearer from.header.x"),
            ("cookie", "t=from.cookie.x"),
        ];
        let both = [TokenSource::Authorization, TokenSource::Cookie("t".into())];
        assert_eq!(
            run(&both, &pairs, "/"),
            Err(Reject::InvalidRequest(
                "different tokens in more than one source"
            ))
        );
        let query_too = [TokenSource::Authorization, TokenSource::Query("t".into())];
        assert!(run(&query_too, &[pairs[0]], "/?t=other.q.x").is_err());
        // A later source is used when the earlier ones are empty.
        assert_eq!(
            run(&both, &[("cookie", "t=c.o.k")], "/"),
            Ok(Some("c.o.k".into()))
        );
        // A malformed earlier source is not skipped.
        let bad = [("authorization", "Basic x"), ("cookie", "t=c.o.k")];
        assert!(run(&both, &bad, "/").is_err());
    }

    #[test]
    fn the_same_token_twice_is_one_credential_from_the_first_source() {
        let sources = [
            TokenSource::Cookie("t".into()),
            TokenSource::Authorization,
            TokenSource::Query("t".into()),
        ];
        let h = headers(&[("authorization", "Bearer s.a.me"), ("cookie", "t=s.a.me")]);
        let uri: Uri = "/p?a=1&t=s%2Ea.me&b=2".parse().expect("uri");
        let c = extract(&sources, &h, &uri).expect("ok").expect("token");
        assert_eq!(
            (c.token.as_ref(), c.source, c.present),
            ("s.a.me", 0, 0b111)
        );
    }

    #[test]
    fn unused_sources_are_stripped() {
        let sources = [
            TokenSource::Authorization,
            TokenSource::Cookie("t".into()),
            TokenSource::Query("t".into()),
        ];
        let mut h = headers(&[
            ("authorization", "Bearer s.a.me"),
            ("cookie", "a=1; t=s.a.me; b=2"),
            ("cookie", "t=s.a.me"),
        ]);
        let uri: Uri = "/p?a=1&t=s.a.me&b=%20".parse().expect("uri");
        let new = strip_unused(&sources, 0, 0b111, &mut h, &uri).expect("ok");
        assert_eq!(new.map(|u| u.to_string()).as_deref(), Some("/p?a=1&b=%20"));
        assert_eq!(h.get_all(COOKIE).iter().count(), 1);
        assert_eq!(h[COOKIE], "a=1; b=2");
        assert!(h.contains_key(AUTHORIZATION));
        // The used source stays; the Authorization header goes.
        let mut h = headers(&[("authorization", "Bearer s.a.me"), ("cookie", "t=s.a.me")]);
        let uri: Uri = "/p?t=s.a.me".parse().expect("uri");
        let new = strip_unused(&sources, 1, 0b111, &mut h, &uri).expect("ok");
        assert_eq!(new.map(|u| u.to_string()).as_deref(), Some("/p"));
        assert!(!h.contains_key(AUTHORIZATION));
        assert_eq!(h[COOKIE], "t=s.a.me");
    }

    #[test]
    fn b64token_bytes_are_exactly_rfc_6750s() {
        for b in 0..=u8::MAX {
            let expected =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(is_b64token_byte(b), expected, "byte {b:#04x}");
        }
    }

    /// The reading of a token header before it became one pass over bytes:
    /// the reference the differential test holds `header` to.
    fn header_reference(
        headers: &HeaderMap,
        name: &HeaderName,
        scheme_required: bool,
    ) -> Result<Option<String>, Reject> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Reject::InvalidRequest("more than one token header"));
        }
        let text = value
            .to_str()
            .map_err(|_| Reject::InvalidRequest("malformed token header"))?
            .trim_matches([' ', '\t']);
        let token = match text.split_once([' ', '\t']) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
                rest.trim_start_matches([' ', '\t'])
            }
            Some(_) => {
                return Err(Reject::InvalidRequest(
                    "authorization scheme must be Bearer",
                ))
            }
            None if text.eq_ignore_ascii_case("bearer") => "",
            None if scheme_required => {
                return Err(Reject::InvalidRequest(
                    "authorization scheme must be Bearer",
                ))
            }
            None => text,
        };
        if token.is_empty() {
            return Err(Reject::InvalidRequest("empty bearer token"));
        }
        let body = token.trim_end_matches('=');
        let b64 = !body.is_empty()
            && body.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
            });
        if !b64 {
            return Err(Reject::InvalidRequest(
                "bearer credentials must be exactly one token",
            ));
        }
        Ok(Some(token.to_owned()))
    }

    /// Values built from the pieces that matter to the parser: schemes,
    /// blanks, token bytes, padding, and bytes outside visible ASCII.
    fn token_header_value() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"Bearer".to_vec()),
            Just(b"bEaReR".to_vec()),
            Just(b"Basic".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"=".to_vec()),
            Just(b"abc.DEF-_~+/9".to_vec()),
            Just(vec![0x80]),
            Just(vec![0xff]),
            Just(vec![0x7f]),
            Just(b",".to_vec()),
            proptest::collection::vec(any::<u8>(), 1..4),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        /// The one-pass reading answers exactly as the `str` reading did:
        /// the same token, or the same refusal, for the Authorization
        /// header and for a custom one.
        #[test]
        fn header_matches_its_reference(bytes in token_header_value(), required in any::<bool>()) {
            let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, value);
            let got = header(&h, &AUTHORIZATION, required).map(|t| t.map(Cow::into_owned));
            prop_assert_eq!(got, header_reference(&h, &AUTHORIZATION, required), "{:?}", bytes);
        }
    }

    proptest! {
        /// Any bytes as the Authorization value: no panic; a token, nothing,
        /// or a 400.
        #[test]
        fn arbitrary_authorization_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, value);
            let uri = Uri::from_static("/");
            match extract(&[TokenSource::Authorization], &h, &uri) {
                Ok(_) => {}
                Err(r) => prop_assert_eq!(r.status().as_u16(), 400),
            }
        }
    }
}
