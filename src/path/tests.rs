use super::*;
use proptest::prelude::*;

fn norm(p: &str) -> Result<String, PathError> {
    normalize(p).map(Cow::into_owned)
}

#[test]
fn clean_paths_are_borrowed() {
    for p in [
        "/",
        "/api/x",
        "/api/x/",
        "/a.b/c-d_e~f",
        "/a;b=c/d",
        "/..a/.b/a..",
    ] {
        assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
    }
}

#[test]
fn unreserved_escapes_are_decoded_others_upper_cased() {
    assert_eq!(norm("/%61pi/x").as_deref(), Ok("/api/x"));
    assert_eq!(norm("/%7Eu/%7e").as_deref(), Ok("/~u/~"));
    assert_eq!(norm("/a%3bb/%20c").as_deref(), Ok("/a%3Bb/%20c"));
    assert_eq!(norm("/%2561pi").as_deref(), Ok("/%2561pi"));
    assert!(matches!(normalize("/a%20b"), Ok(Cow::Borrowed(_))));
}

#[test]
fn dot_segments_are_resolved() {
    assert_eq!(norm("/public/../api/x").as_deref(), Ok("/api/x"));
    assert_eq!(norm("/public/%2E%2e/api/x").as_deref(), Ok("/api/x"));
    assert_eq!(norm("/a/./b/.").as_deref(), Ok("/a/b/"));
    assert_eq!(norm("/a/..").as_deref(), Ok("/"));
    assert_eq!(norm("/a/...").as_deref(), Ok("/a/..."));
    assert_eq!(norm("/.").as_deref(), Ok("/"));
}

#[test]
fn slashes_are_merged() {
    assert_eq!(norm("//api/x").as_deref(), Ok("/api/x"));
    assert_eq!(norm("/api///x//").as_deref(), Ok("/api/x/"));
    assert_eq!(norm("//").as_deref(), Ok("/"));
}

#[test]
fn dangerous_paths_are_refused() {
    for p in [
        "/api%2fx",
        "/api%2Fx",
        "/public/..%2fapi/x",
        "/a%5cb",
        "/a\\b",
        "/a%00b",
        "/a/..;/b",
        "/a/.;x/b",
        "/a/%2e%2e;x",
        "/../etc",
        "/a/../../b",
        "/a%",
        "/a%4",
        "/a%zz",
        "*",
        "",
    ] {
        assert!(norm(p).is_err(), "{p:?} must be refused");
    }
}

/// Routes for the property: prefixes an attacker would aim for or dodge.
const PREFIXES: &[&str] = &["/", "/api/", "/api", "/public/", "/a.b/", "/~u/", "/x/api/"];

fn route(path: &str) -> Option<&'static str> {
    PREFIXES
        .iter()
        .filter(|p| path.starts_with(**p))
        .max_by_key(|p| p.len())
        .copied()
}

/// How a decoding upstream (nginx with its defaults, Starlette) reads a
/// path: every escape decoded once, then dot segments resolved and slashes
/// merged. `None` where such an upstream answers 400.
fn upstream_view(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex)?;
            let lo = bytes.get(i + 2).copied().and_then(hex)?;
            decoded.push(hi << 4 | lo);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let mut trailing = false;
    for (n, seg) in segments.iter().enumerate() {
        let last = n + 1 == segments.len();
        match *seg {
            "" | "." => trailing = last,
            ".." => {
                out.pop()?;
                trailing = last;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut s = String::new();
    for seg in out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing || s.is_empty() {
        s.push('/');
    }
    Some(s)
}

/// Path pieces an attacker combines: plain names, route names, dots,
/// slashes, escapes of unreserved and reserved bytes, parameters.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/", "//", "a", "p", "i", "api", "public", "x", "u", "b", ".", "..", "%2e", "%2E", "%61",
        "%61pi", "ap%69", "%2e%2e", "%2E.", "pub%6cic", "%7eu", "/../", "/%2e%2e/", "/public/",
        "/api/", "%41", "%70", "%7e", "%7E", "~", "%2f", "%2F", "%5c", "\\", "%00", "%25", "%3b",
        ";", "%20", "%", "%zz", "-", "_",
    ])
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..12).prop_map(|ps| format!("/{}", ps.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The route chosen for the normalised path is the route a decoding
    /// upstream maps the request to, both for the path the gateway sends
    /// and for the one the client sent; normalising twice changes nothing.
    #[test]
    fn route_of_normalised_path_is_the_upstreams(p in path()) {
        if let Ok(n) = normalize(&p) {
            let n = n.into_owned();
            let sent = upstream_view(&n);
            prop_assert!(sent.is_some(), "{} -> {} unreadable upstream", p, n);
            prop_assert_eq!(route(&n), route(sent.as_deref().unwrap_or("")), "{} -> {}", p, n);
            if let Some(raw) = upstream_view(&p) {
                prop_assert_eq!(route(&n), route(&raw), "raw {} -> {}", p, n);
            }
            prop_assert!(matches!(normalize(&n), Ok(Cow::Borrowed(_))), "{} not idempotent", n);
        }
    }

    /// Any printable ASCII: never a panic; a normal path or a refusal.
    #[test]
    fn arbitrary_paths_never_panic(p in "/[ -~]{0,64}") {
        if let Ok(n) = normalize(&p) {
            prop_assert!(n.starts_with('/'));
            prop_assert!(!n.contains("//"));
        }
    }
}
