//! Header rewriting for forwarded requests and responses.
//!
//! RFC 9110 §7.6.1: hop-by-hop headers, and every header the `Connection`
//! header names, describe one connection and are not forwarded.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// The hop-by-hop headers, built once. `HTTP2-Settings` belongs to an h2c
/// upgrade (RFC 7540 §3.2.1), which is never forwarded.
static HOP_HEADERS: [HeaderName; 9] = [
    HeaderName::from_static("http2-settings"),
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// `X-Forwarded-For`
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers and those named in `Connection`. `Upgrade` is
/// removed too unless `keep_upgrade` (a WebSocket handshake in flight).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names present finds the hop-by-hop ones: most
    // messages carry none, or only `Connection`, so this replaces ten hashed
    // lookups of absent names by a scan of a handful of short names.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_index(name) {
            present |= 1 << i;
        }
    }
    let removable = if keep_upgrade {
        present & !(1 << UPGRADE_INDEX)
    } else {
        present
    };
    if removable == 0 {
        return;
    }
    // Names listed in Connection (comma-separated, possibly several headers).
    // The usual ones ("keep-alive", "close", "upgrade") are removed below
    // anyway, so only other names need the allocating pass.
    if present & 1 << CONNECTION_INDEX != 0
        && !headers
            .get_all(header::CONNECTION)
            .iter()
            .all(|v| is_usual_connection(v.as_bytes()))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(connection_tokens)
            .any(|t| !is_hop_token(t))
    {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            if keep_upgrade && name == header::UPGRADE {
                continue;
            }
            headers.remove(&name);
        }
    }
    for (i, name) in HOP_HEADERS.iter().enumerate() {
        if present & 1 << i != 0 {
            headers.remove(name);
        }
    }
    if !keep_upgrade && present & 1 << UPGRADE_INDEX != 0 {
        headers.remove(header::UPGRADE);
    }
}

/// Index of `Connection` in [`HOP_HEADERS`].
const CONNECTION_INDEX: usize = 1;
/// The bit [`hop_index`] gives `Upgrade`, after those of [`HOP_HEADERS`].
const UPGRADE_INDEX: usize = HOP_HEADERS.len();

/// Where `name` is in [`HOP_HEADERS`] ([`UPGRADE_INDEX`] for `Upgrade`);
/// `None` for an end-to-end header. Names are lower case in a `HeaderMap`.
fn hop_index(name: &HeaderName) -> Option<usize> {
    match name.as_str() {
        "http2-settings" => Some(0),
        "connection" => Some(CONNECTION_INDEX),
        "keep-alive" => Some(2),
        "proxy-connection" => Some(3),
        "proxy-authenticate" => Some(4),
        "proxy-authorization" => Some(5),
        "te" => Some(6),
        "trailer" => Some(7),
        "transfer-encoding" => Some(8),
        "upgrade" => Some(UPGRADE_INDEX),
        _ => None,
    }
}

/// The comma-separated tokens of one `Connection` value (none if it is not
/// visible ASCII).
fn connection_tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A `Connection` value that is one of the usual single tokens (what
/// nearly every client and upstream sends), checked without splitting.
fn is_usual_connection(value: &[u8]) -> bool {
    value.eq_ignore_ascii_case(b"keep-alive")
        || value.eq_ignore_ascii_case(b"close")
        || value.eq_ignore_ascii_case(b"upgrade")
}

/// A `Connection` token whose header [`strip_hop_by_hop`] removes anyway
/// (`close` names no header).
fn is_hop_token(token: &str) -> bool {
    token.eq_ignore_ascii_case("close")
        || token.eq_ignore_ascii_case("upgrade")
        || HOP_HEADERS
            .iter()
            .any(|h| token.eq_ignore_ascii_case(h.as_str()))
}

/// Whether this is a WebSocket upgrade request: `Connection: upgrade`
/// together with exactly one `Upgrade: websocket` (RFC 6455 §4.1). Any
/// other upgrade (`h2c` above all: a tunnel whose HTTP/2 requests the
/// gateway would never see) is not one; its headers are stripped and the
/// request goes on as plain HTTP, as Envoy does without an `upgrade_configs`
/// entry for it.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let mut upgrades = headers.get_all(header::UPGRADE).iter();
    let (Some(upgrade), None) = (upgrades.next(), upgrades.next()) else {
        return false;
    };
    is_websocket(upgrade)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Whether an `Upgrade` value names the WebSocket protocol, alone.
pub fn is_websocket(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(b"websocket")
}

/// The peer's address as a header value, built once per connection.
pub fn peer_value(peer: IpAddr) -> HeaderValue {
    let mut buf = [0u8; 64];
    HeaderValue::from_str(write_ip(peer, &mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Appends the peer (from [`peer_value`]) to `X-Forwarded-For`
/// (`client-value, peer`), and sets `X-Forwarded-Proto` (`https` when the
/// client connection is TLS, else `http`) and `X-Forwarded-Host` from the
/// client's `Host` (or the request's authority for HTTP/2).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &HeaderValue,
    tls: bool,
    host: Option<HeaderValue>,
) {
    let prior: Vec<&[u8]> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let value = if prior.is_empty() {
        Some(peer.clone())
    } else {
        let mut joined =
            Vec::with_capacity(prior.iter().map(|p| p.len() + 2).sum::<usize>() + peer.len());
        for p in prior {
            joined.extend_from_slice(p);
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(peer.as_bytes());
        HeaderValue::from_bytes(&joined).ok()
    };
    if let Some(v) = value {
        headers.insert(&X_FORWARDED_FOR, v);
    }
    let proto = if tls { "https" } else { "http" };
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match host {
        Some(h) => {
            headers.insert(&X_FORWARDED_HOST, h);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

fn write_ip(ip: IpAddr, buf: &mut [u8; 64]) -> &str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // An IP address is at most 45 characters: it always fits.
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn removes_hop_by_hop_and_connection_named() {
        let mut h = map(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn hop_index_names_every_hop_header() {
        for (i, name) in HOP_HEADERS.iter().enumerate() {
            assert_eq!(hop_index(name), Some(i), "{name}");
        }
        assert_eq!(hop_index(&header::UPGRADE), Some(UPGRADE_INDEX));
        assert_eq!(hop_index(&header::CONNECTION), Some(CONNECTION_INDEX));
        assert_eq!(hop_index(&header::HOST), None);
        assert_eq!(hop_index(&HeaderName::from_static("x-keep-alive")), None);
    }

    #[test]
    fn nothing_to_strip_leaves_the_map_alone() {
        let mut h = map(&[("host", "a"), ("x-one", "1"), ("accept", "*/*")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 3);
        let mut h = map(&[("upgrade", "websocket"), ("x-one", "1")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.len(), 2, "a kept Upgrade stays");
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "else it goes");
    }

    #[test]
    fn usual_connection_tokens_strip_the_same() {
        let mut h = map(&[
            ("connection", "keep-alive"),
            ("connection", "Close, TE"),
            ("keep-alive", "timeout=5"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn only_websocket_is_an_upgrade() {
        for (upgrade, yes) in [
            ("websocket", true),
            ("WebSocket", true),
            ("h2c", false),
            ("websocket, h2c", false),
            ("foo", false),
        ] {
            let h = map(&[("connection", "Upgrade"), ("upgrade", upgrade)]);
            assert_eq!(is_websocket_upgrade(&h), yes, "{upgrade}");
        }
        let h = map(&[("upgrade", "websocket")]);
        assert!(!is_websocket_upgrade(&h), "needs Connection: upgrade");
        let mut h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
            ("x-keep", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn keeps_upgrade_for_websocket() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_websocket_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert!(!h.contains_key("connection"));
    }

    #[test]
    fn appends_forwarded_for() {
        let mut h = map(&[("x-forwarded-for", "203.0.113.7")]);
        set_forwarded(
            &mut h,
            &peer_value("127.0.0.1".parse().expect("ip")),
            false,
            Some(HeaderValue::from_static("example.com")),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");

        let mut h = map(&[("x-forwarded-proto", "http")]);
        set_forwarded(&mut h, &peer_value("::1".parse().expect("ip")), true, None);
        assert_eq!(h["x-forwarded-for"], "::1");
        assert_eq!(
            h["x-forwarded-proto"], "https",
            "a TLS listener's, not the client's"
        );
    }
}
