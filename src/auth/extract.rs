//! Finding the bearer token in a request: `jwt.sources`, tried in order.
//!
//! The first source that holds a token wins. A source that is present but
//! malformed is a 400 `invalid_request` at once (RFC 6750 §3.1), never
//! skipped in favour of the next source: a request must not be able to carry
//! one credential for the gateway and another for the upstream. For the same
//! reason a token given twice in one source (two `Authorization` headers, two
//! cookies or query parameters of the same name) is refused.

use crate::config::TokenSource;
use crate::response::Reject;
use hyper::header::{HeaderMap, HeaderName, AUTHORIZATION, COOKIE};
use hyper::Uri;
use std::borrow::Cow;

/// The token of the first source in `sources` that holds one; `Ok(None)` when
/// none does.
pub(crate) fn extract<'a>(
    sources: &[TokenSource],
    headers: &'a HeaderMap,
    uri: &'a Uri,
) -> Result<Option<Cow<'a, str>>, Reject> {
    for source in sources {
        let found = match source {
            TokenSource::Authorization => header(headers, &AUTHORIZATION, true)?,
            TokenSource::Header(name) => header(headers, name, false)?,
            TokenSource::Cookie(name) => cookie(headers, name)?,
            TokenSource::Query(name) => query(uri, name)?,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// `Authorization: Bearer <token>` (scheme case-insensitive, one token). For
/// another header the `Bearer ` prefix is optional.
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
    if !is_b64token(token) {
        return Err(Reject::InvalidRequest(
            "bearer credentials must be exactly one token",
        ));
    }
    Ok(Some(Cow::Borrowed(token)))
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/" ) *"="`. Whitespace inside means a second token.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
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
    use hyper::header::HeaderValue;
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
        extract(sources, &h, &uri).map(|t| t.map(Cow::into_owned))
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
    fn sources_are_tried_in_order() {
        let pairs = [
            ("authorization", "Bearer from.header.x"),
            ("cookie", "t=from.cookie.x"),
        ];
        let header_first = [TokenSource::Authorization, TokenSource::Cookie("t".into())];
        let cookie_first = [TokenSource::Cookie("t".into()), TokenSource::Authorization];
        let q = "/?t=from.query.x";
        assert_eq!(
            run(&header_first, &pairs, q),
            Ok(Some("from.header.x".into()))
        );
        assert_eq!(
            run(&cookie_first, &pairs, q),
            Ok(Some("from.cookie.x".into()))
        );
        let query_first = [TokenSource::Query("t".into()), TokenSource::Authorization];
        assert_eq!(
            run(&query_first, &pairs, q),
            Ok(Some("from.query.x".into()))
        );
        // A later source is used when the earlier ones are empty.
        assert_eq!(
            run(&header_first, &[("cookie", "t=c.o.k")], "/"),
            Ok(Some("c.o.k".into()))
        );
        // A malformed earlier source is not skipped.
        let bad = [("authorization", "Basic x"), ("cookie", "t=c.o.k")];
        assert!(run(&header_first, &bad, "/").is_err());
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
