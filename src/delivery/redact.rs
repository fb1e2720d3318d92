//! What a remote echoes back stays secret: before any part of an answer is
//! recorded (`lastError`, conditions, Events), every credential value sent
//! with that call is cut out of it.
//!
//! The credentials of a call are its sensitive header values: each in full,
//! the token after an auth scheme (`Bearer`, `Basic`), and basic
//! credentials decoded (`user:password`, and each half). Values shorter than
//! [`MIN_SECRET_BYTES`] are not looked for, since they would match ordinary
//! text and are no secret anyway. An answer cut short may end with the
//! start of a credential: that start is cut too.

use base64::Engine as _;
use reqwest::header::HeaderMap;

/// What stands in for a credential.
pub const REDACTED: &[u8] = b"[redacted]";
/// The shortest value looked for.
pub const MIN_SECRET_BYTES: usize = 4;

/// The credential values `headers` carries (see the module's doc).
pub fn credentials_in(headers: &HeaderMap) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for value in headers.values().filter(|v| v.is_sensitive()) {
        let value = value.as_bytes();
        found.push(value.to_vec());
        let Some(space) = value.iter().position(|b| *b == b' ') else {
            continue;
        };
        let (scheme, token) = (&value[..space], value[space + 1..].trim_ascii());
        found.push(token.to_vec());
        if scheme.eq_ignore_ascii_case(b"basic")
            && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token)
        {
            if let Some(colon) = decoded.iter().position(|b| *b == b':') {
                found.push(decoded[..colon].to_vec());
                found.push(decoded[colon + 1..].to_vec());
            }
            found.push(decoded);
        }
    }
    found.retain(|v| v.len() >= MIN_SECRET_BYTES);
    // Longest first, so a value is cut whole before any part of it.
    found.sort_by_key(|v| std::cmp::Reverse(v.len()));
    found.dedup();
    found
}

/// The longest credential in `secrets`, in bytes.
pub fn longest(secrets: &[Vec<u8>]) -> usize {
    secrets.iter().map(Vec::len).max().unwrap_or(0)
}

/// `text` with every occurrence of `secrets` replaced by [`REDACTED`].
pub fn redact(text: &[u8], secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = text.to_vec();
    for secret in secrets.iter().filter(|s| s.len() >= MIN_SECRET_BYTES) {
        let mut replaced = Vec::with_capacity(out.len());
        let mut rest = out.as_slice();
        while let Some(at) = find(rest, secret) {
            replaced.extend_from_slice(&rest[..at]);
            replaced.extend_from_slice(REDACTED);
            rest = &rest[at + secret.len()..];
        }
        replaced.extend_from_slice(rest);
        out = replaced;
    }
    out
}

/// `text` (the start of an answer) without a trailing start of one of
/// `secrets` of [`MIN_SECRET_BYTES`] or more, which is replaced by
/// [`REDACTED`].
pub fn cut_trailing(text: &[u8], secrets: &[Vec<u8>]) -> Vec<u8> {
    let cut = secrets
        .iter()
        .flat_map(|secret| (MIN_SECRET_BYTES..secret.len()).rev().map(move |n| &secret[..n]))
        .filter(|start| text.ends_with(start))
        .map(<[u8]>::len)
        .max();
    match cut {
        Some(n) => [&text[..text.len() - n], REDACTED].concat(),
        None => text.to_vec(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use reqwest::header::{AUTHORIZATION, HeaderValue};

    use super::*;

    fn sensitive(value: &str) -> HeaderValue {
        let mut value = HeaderValue::from_str(value).expect("value");
        value.set_sensitive(true);
        value
    }

    #[test]
    fn credentials_are_every_sensitive_value_and_its_parts() {
        let mut headers = HeaderMap::new();
        // shop:pw-SECRET
        headers.insert(AUTHORIZATION, sensitive("Basic c2hvcDpwdy1TRUNSRVQ="));
        headers.insert("x-api-key", sensitive("key-SECRET"));
        headers.insert("x-plain", HeaderValue::from_static("not-a-secret"));
        headers.insert("x-short", sensitive("abc"));
        let found: Vec<String> = credentials_in(&headers)
            .into_iter()
            .map(|v| String::from_utf8(v).expect("utf-8"))
            .collect();
        assert_eq!(
            found,
            [
                "Basic c2hvcDpwdy1TRUNSRVQ=",
                "c2hvcDpwdy1TRUNSRVQ=",
                "shop:pw-SECRET",
                "key-SECRET",
                "pw-SECRET",
                "shop"
            ]
        );
    }

    #[test]
    fn redact_table() {
        let secrets = vec![b"tok-SECRET-1".to_vec(), b"abc".to_vec()];
        let cases: [(&str, &str); 5] = [
            ("nothing here", "nothing here"),
            ("denied: tok-SECRET-1", "denied: [redacted]"),
            ("tok-SECRET-1tok-SECRET-1 x", "[redacted][redacted] x"),
            ("abc is too short to look for", "abc is too short to look for"),
            ("almost tok-SECRET-", "almost tok-SECRET-"),
        ];
        for (text, want) in cases {
            assert_eq!(redact(text.as_bytes(), &secrets), want.as_bytes(), "{text}");
        }
    }

    #[test]
    fn a_cut_short_answer_loses_the_start_of_a_credential() {
        let secrets = vec![b"tok-SECRET-1".to_vec()];
        let cases: [(&str, &str); 4] = [
            ("error: tok-SEC", "error: [redacted]"),
            ("error: tok-", "error: [redacted]"),
            ("error: to", "error: to"),
            ("error: done", "error: done"),
        ];
        for (text, want) in cases {
            assert_eq!(cut_trailing(text.as_bytes(), &secrets), want.as_bytes(), "{text}");
        }
    }
}
