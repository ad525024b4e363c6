//! One view of the request: what routing, auth and the upstream all read.
//!
//! Each check here closes a gap between how the gateway and an upstream
//! could read the same bytes: the path (normalised once, see
//! [`crate::path`]), the `Host`, and header names with `_`.

use crate::config::Underscores;
use crate::response::Reject;
use hyper::header::{HeaderMap, HeaderName, HOST};
use hyper::{Request, Uri, Version};

/// The request with its path in the one normal form that routing and the
/// upstream both see ([`crate::path::normalize`]); the query is kept as
/// sent. `Ok(None)`: nothing to change (the common case, no allocation).
pub(super) fn normalize_uri(uri: &Uri) -> Result<Option<Uri>, Reject> {
    let normalized = match crate::path::normalize(uri.path()) {
        Ok(std::borrow::Cow::Borrowed(_)) => return Ok(None),
        Ok(std::borrow::Cow::Owned(p)) => p,
        Err(why) => return Err(Reject::InvalidRequest(why)),
    };
    let mut pq = normalized;
    if let Some(q) = uri.query() {
        pq.push('?');
        pq.push_str(q);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        pq.parse()
            .map_err(|_| Reject::InvalidRequest("invalid request path"))?,
    );
    Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| Reject::InvalidRequest("invalid request path"))
}

/// `Host` rules (RFC 9112 §3.2, RFC 9113 §8.3.1): one at most; required
/// on HTTP/1.1; over HTTP/2 it must name `:authority` when both are sent.
/// An absolute-form target's authority wins over `Host` (the proxy uses it
/// for `X-Forwarded-Host`).
pub(super) fn check_host<B>(req: &Request<B>) -> Result<(), Reject> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Reject::InvalidRequest("more than one Host header"));
    }
    match req.version() {
        Version::HTTP_11 if host.is_none() => Err(Reject::InvalidRequest(
            "an HTTP/1.1 request needs a Host header",
        )),
        Version::HTTP_2 => match (host, req.uri().authority()) {
            (Some(h), Some(a)) if !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) => {
                Err(Reject::InvalidRequest("Host differs from :authority"))
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// `server.underscores_in_headers`: header names with `_` are dropped
/// (default), refused, or let through. The scan allocates nothing when no
/// name has a `_`.
pub(super) fn underscores(headers: &mut HeaderMap, mode: Underscores) -> Result<(), Reject> {
    if mode == Underscores::Allow || !headers.keys().any(has_underscore) {
        return Ok(());
    }
    if mode == Underscores::Reject {
        return Err(Reject::InvalidRequest("header names must not contain '_'"));
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| has_underscore(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
    Ok(())
}

fn has_underscore(name: &HeaderName) -> bool {
    name.as_str().as_bytes().contains(&b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn norm(p: &str) -> Result<String, Reject> {
        let uri: Uri = p.parse().expect("uri");
        Ok(normalize_uri(&uri)?.map_or(p.to_string(), |u| u.to_string()))
    }

    #[test]
    fn the_query_is_kept_as_sent() {
        assert_eq!(
            norm("/public/%2E%2e//api/x?q=%2e%2E&a=/../")
                .ok()
                .as_deref(),
            Some("/api/x?q=%2e%2E&a=/../")
        );
        assert!(norm("/../etc/passwd").is_err());
    }

    fn req(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::get(uri).version(version);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn host_rules() {
        assert!(check_host(&req(Version::HTTP_11, "/", &["a"])).is_ok());
        assert!(check_host(&req(Version::HTTP_11, "/", &[])).is_err());
        assert!(check_host(&req(Version::HTTP_11, "/", &["a", "b"])).is_err());
        assert!(check_host(&req(Version::HTTP_10, "/", &[])).is_ok());
        assert!(check_host(&req(Version::HTTP_2, "http://a:1/", &[])).is_ok());
        assert!(check_host(&req(Version::HTTP_2, "http://a:1/", &["A:1"])).is_ok());
        assert!(check_host(&req(Version::HTTP_2, "http://a:1/", &["b:1"])).is_err());
    }

    #[test]
    fn underscore_modes() {
        let mut h = HeaderMap::new();
        h.insert("x_auth_subject", HeaderValue::from_static("admin"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let mut allowed = h.clone();
        assert!(underscores(&mut allowed, Underscores::Allow).is_ok());
        assert_eq!(allowed.len(), 2);
        assert!(underscores(&mut h.clone(), Underscores::Reject).is_err());
        assert!(underscores(&mut h, Underscores::Drop).is_ok());
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }
}
