//! The one normalised view of a request path, used for routing and sent
//! upstream, so an upstream that decodes paths (nginx, Starlette, most
//! frameworks) can never map a request to another route than the one whose
//! auth the gateway applied.
//!
//! [`normalize`] is the only place a path is rewritten:
//!
//! - percent-encoded unreserved characters are decoded (`%61` -> `a`,
//!   `%7E` -> `~`, `%2E` -> `.`); every other escape is kept, with
//!   upper-case hex (`%3b` -> `%3B`);
//! - `.` and `..` segments are resolved (RFC 3986 §5.2.4), also once
//!   decoded from `%2e`;
//! - runs of `/` are merged into one (Envoy's `merge_slashes`, nginx's
//!   default);
//! - refused with 400: an encoded slash or backslash (`%2F`, `%5C`; Envoy's
//!   `path_with_escaped_slashes_action = REJECT_REQUEST`), a raw `\`, an
//!   encoded NUL, a malformed escape, a `.` or `..` segment carrying `;`
//!   parameters, and a `..` that climbs above `/`.
//!
//! Matching stays case-sensitive, as nginx's `location` is. A path that
//! needs no change (the common case) is returned borrowed: no allocation.

use std::borrow::Cow;

/// Why a path is refused; the text is the 400's `error_description`.
pub type PathError = &'static str;

/// The normalised form of `path` (the path part of a request target, which
/// must start with `/`). Normalising the result again changes nothing.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err("the request target must be an absolute path");
    }
    if is_clean(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    rewrite(path).map(|normalized| {
        if normalized == path {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(normalized)
        }
    })
}

/// Whether `path` is already normal: no escape, no backslash, no empty
/// segment but a trailing one, no dot segment. One pass, no allocation.
fn is_clean(path: &[u8]) -> bool {
    let mut segment_start = 1;
    for (i, &b) in path.iter().enumerate().skip(1) {
        match b {
            b'%' | b'\\' => return false,
            b'/' => {
                let segment = &path[segment_start..i];
                if segment.is_empty() || is_dot_like(segment) {
                    return false;
                }
                segment_start = i + 1;
            }
            _ => {}
        }
    }
    !is_dot_like(&path[segment_start..])
}

/// `.`, `..`, or either with `;` parameters.
fn is_dot_like(segment: &[u8]) -> bool {
    let rest = match segment {
        [b'.', b'.', rest @ ..] | [b'.', rest @ ..] => rest,
        _ => return false,
    };
    rest.is_empty() || rest[0] == b';'
}

/// The slow path: decode, resolve and merge segment by segment.
fn rewrite(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    // Where each segment kept in `out` starts (its leading '/'), for `..`.
    let mut starts: Vec<usize> = Vec::new();
    let mut segment = String::new();
    let mut trailing_slash = false;
    let mut raw_segments = path[1..].split('/').peekable();
    while let Some(raw) = raw_segments.next() {
        let last = raw_segments.peek().is_none();
        segment.clear();
        decode_segment(raw, &mut segment)?;
        match segment.as_bytes() {
            // `//` merged into one; a final empty segment is a trailing `/`.
            [] => trailing_slash = last,
            b"." => trailing_slash = last,
            b".." => {
                let start = starts
                    .pop()
                    .ok_or("the path climbs above the root with '..'")?;
                out.truncate(start);
                trailing_slash = last;
            }
            s if is_dot_like(s) => {
                return Err("a '.' or '..' path segment must not carry ';' parameters");
            }
            _ => {
                starts.push(out.len());
                out.push('/');
                out.push_str(&segment);
                trailing_slash = false;
            }
        }
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Appends `raw` to `out`, decoding escapes of unreserved characters and
/// upper-casing the others.
fn decode_segment(raw: &str, out: &mut String) -> Result<(), PathError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err("malformed percent-escape in the path");
                };
                let byte = hi << 4 | lo;
                match byte {
                    b'/' | b'\\' => {
                        return Err("an encoded slash or backslash in the path is refused")
                    }
                    0 => return Err("an encoded NUL in the path is refused"),
                    b if is_unreserved(b) => out.push(char::from(b)),
                    b => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        out.push('%');
                        out.push(char::from(HEX[usize::from(b >> 4)]));
                        out.push(char::from(HEX[usize::from(b & 0xf)]));
                    }
                }
                i += 3;
            }
            b'\\' => return Err("a backslash in the path is refused"),
            _ => {
                // Copy the run up to the next escape or backslash at once.
                let end = bytes[i..]
                    .iter()
                    .position(|b| matches!(b, b'%' | b'\\'))
                    .map_or(bytes.len(), |p| i + p);
                out.push_str(&raw[i..end]);
                i = end;
            }
        }
    }
    Ok(())
}

/// RFC 3986 §2.3: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
