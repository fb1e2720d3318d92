//! What mock-api2 can check of a caller beyond its credential, so the demo
//! shows a target trusting the operator's calls:
//! - Standard Webhooks `v1` signatures (HMAC-SHA256 over
//!   `webhook-id.webhook-timestamp.body`), with any of the `whsec_` keys it
//!   knows, and a timestamp within five minutes of now;
//! - the audience (`aud`) and expiry (`exp`) of a bearer JWT, such as a
//!   Kubernetes ServiceAccount token. Its signature is not checked here:
//!   a real target checks it against the cluster's JWKS or a TokenReview
//!   (see the README).

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::hmac;

/// How far a signed call's timestamp may be from now, in seconds.
pub const TOLERANCE_SECONDS: i64 = 300;

/// The `whsec_` keys calls must be signed with (any one of them).
#[derive(Clone, Debug, Default)]
pub struct Signatures {
    keys: Vec<Vec<u8>>,
}

impl Signatures {
    /// The keys in `text`, separated by whitespace, each `whsec_` + base64.
    pub fn parse(text: &str) -> Result<Self, String> {
        let keys = text
            .split_whitespace()
            .enumerate()
            .map(|(at, key)| {
                let encoded = key
                    .strip_prefix("whsec_")
                    .ok_or_else(|| format!("key {} is not a whsec_ key", at + 1))?;
                STANDARD
                    .decode(encoded)
                    .map_err(|_| format!("key {} is not base64 after whsec_", at + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("no whsec_ key given".to_owned());
        }
        Ok(Self { keys })
    }

    /// True when `headers` carry a `v1` signature of `body` by one of the
    /// keys, with a timestamp within [`TOLERANCE_SECONDS`] of `now`.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: i64) -> bool {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(id), Some(timestamp), Some(signatures)) = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        ) else {
            return false;
        };
        let Ok(at) = timestamp.parse::<i64>() else {
            return false;
        };
        if (now - at).abs() > TOLERANCE_SECONDS {
            return false;
        }
        let mut content = format!("{id}.{timestamp}.").into_bytes();
        content.extend_from_slice(body);
        let given: Vec<Vec<u8>> = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| STANDARD.decode(s).ok())
            .collect();
        self.keys.iter().any(|key| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, key);
            given
                .iter()
                .any(|signature| hmac::verify(&key, &content, signature).is_ok())
        })
    }
}

/// True when `authorization` is `Bearer <JWT>` whose `aud` is or contains
/// `audience` and whose `exp` is after `now`.
pub fn audience_allows(audience: &str, authorization: Option<&str>, now: i64) -> bool {
    let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return false;
    };
    let mut parts = token.split('.');
    let (Some(_), Some(claims), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Some(claims) = URL_SAFE_NO_PAD
        .decode(claims)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    else {
        return false;
    };
    let aud = match &claims["aud"] {
        serde_json::Value::String(one) => one == audience,
        serde_json::Value::Array(many) => many.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    aud && claims["exp"].as_i64().is_some_and(|exp| exp > now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// The specification's worked example.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const AT: i64 = 1_614_265_330;

    fn headers(signature: &str, timestamp: i64) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
        headers.insert("webhook-signature", HeaderValue::try_from(signature).expect("value"));
        headers
    }

    #[test]
    fn signatures_table() {
        let body = br#"{"test": 2432232314}"#;
        let other = format!("whsec_{}", STANDARD.encode([9u8; 32]));
        let known = Signatures::parse(SECRET).expect("key");
        let rotated = Signatures::parse(&format!("{other} {SECRET}")).expect("keys");
        let stranger = Signatures::parse(&other).expect("key");
        let cases: [(&Signatures, HeaderMap, &[u8], bool); 7] = [
            (&known, headers(SIGNATURE, AT), body, true),
            (&rotated, headers(SIGNATURE, AT), body, true),
            (&known, headers(&format!("v1,AAAA {SIGNATURE}"), AT), body, true),
            (&stranger, headers(SIGNATURE, AT), body, false),
            (&known, headers(SIGNATURE, AT), br#"{"test": 2432232315}"#, false),
            (&known, headers(SIGNATURE, AT + 1), body, false),
            (&known, HeaderMap::new(), body, false),
        ];
        for (n, (signatures, headers, body, ok)) in cases.into_iter().enumerate() {
            assert_eq!(signatures.verify(&headers, body, AT + 10), ok, "case {n}");
        }
        assert!(
            !known.verify(&headers(SIGNATURE, AT), body, AT + TOLERANCE_SECONDS + 1),
            "too old"
        );
        assert!(Signatures::parse("whsk_AAAA").is_err());
        assert!(Signatures::parse(" ").is_err());
    }

    #[test]
    fn audiences_table() {
        let jwt = |claims: serde_json::Value| format!("Bearer e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let cases = [
            (jwt(serde_json::json!({"aud": "api2", "exp": 200})), true),
            (jwt(serde_json::json!({"aud": ["x", "api2"], "exp": 200})), true),
            (jwt(serde_json::json!({"aud": "other", "exp": 200})), false),
            (jwt(serde_json::json!({"aud": "api2", "exp": 100})), false),
            (jwt(serde_json::json!({"aud": "api2"})), false),
            ("Bearer not-a-jwt".to_owned(), false),
            ("Basic e30.e30.e30".to_owned(), false),
        ];
        for (authorization, ok) in cases {
            assert_eq!(
                audience_allows("api2", Some(&authorization), 100),
                ok,
                "{authorization}"
            );
        }
        assert!(!audience_allows("api2", None, 100));
    }
}
