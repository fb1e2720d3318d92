//! What mock-api2 asks of its callers: nothing, a bearer token, basic
//! credentials, an OAuth2 access token it issued itself, or a bearer JWT
//! for its audience.
//!
//! With OAuth2, `POST /oauth2/token` runs the client-credentials grant
//! (RFC 6749 §4.4; the client authenticates with basic auth) and issues
//! tokens that expire; `POST /oauth2/revoke` revokes every token issued so
//! far, so the next call with one is answered 401.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Serialize;

/// The credential `/api2/simulate` requires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Required {
    /// Anyone may call.
    #[default]
    Nothing,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic` with these credentials.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// `Authorization: Bearer` with a token from `/oauth2/token`.
    OAuth2(OAuth2Client),
    /// `Authorization: Bearer` with an unexpired JWT whose `aud` names this
    /// audience (see [`crate::verify::audience_allows`]).
    Audience(String),
}

/// The one client `/oauth2/token` knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2Client {
    /// Its client id.
    pub id: String,
    /// Its client secret.
    pub secret: String,
    /// Lifetime of the tokens it is issued, in seconds.
    pub token_seconds: u64,
}

/// Tokens issued, with their expiry (ms since the epoch).
#[derive(Debug, Default)]
pub struct Issued {
    tokens: HashMap<String, i64>,
    count: u64,
}

/// What `/oauth2/token` answers (RFC 6749 §5.1).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl Issued {
    /// How many tokens were issued in all.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Issues a token to a caller that sent `authorization`, if it
    /// authenticates as `client`.
    pub fn issue(&mut self, client: &OAuth2Client, authorization: Option<&str>, now_ms: i64) -> Option<TokenResponse> {
        if !basic_matches(authorization, &client.id, &client.secret) {
            return None;
        }
        self.count += 1;
        let access_token = format!("mock-token-{}-{:x}", self.count, now_ms);
        let lifetime_ms = i64::try_from(client.token_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.tokens
            .insert(access_token.clone(), now_ms.saturating_add(lifetime_ms));
        Some(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: client.token_seconds,
        })
    }

    /// Revokes every token issued so far.
    pub fn revoke_all(&mut self) {
        self.tokens.clear();
    }

    fn valid(&self, token: &str, now_ms: i64) -> bool {
        self.tokens.get(token).is_some_and(|expires| now_ms < *expires)
    }
}

/// True when a request with `authorization` meets `required`.
pub fn allows(required: &Required, issued: &Issued, authorization: Option<&str>, now_ms: i64) -> bool {
    match required {
        Required::Nothing => true,
        Required::Bearer(token) => bearer(authorization) == Some(token.as_str()),
        Required::Basic { username, password } => basic_matches(authorization, username, password),
        Required::OAuth2(_) => bearer(authorization).is_some_and(|token| issued.valid(token, now_ms)),
        Required::Audience(audience) => {
            crate::verify::audience_allows(audience, authorization, now_ms.div_euclid(1000))
        }
    }
}

fn bearer(authorization: Option<&str>) -> Option<&str> {
    authorization?.strip_prefix("Bearer ")
}

fn basic_matches(authorization: Option<&str>, username: &str, password: &str) -> bool {
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    authorization.and_then(|a| a.strip_prefix("Basic ")) == Some(expected.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> OAuth2Client {
        OAuth2Client {
            id: "app".into(),
            secret: "s3cr3t".into(),
            token_seconds: 10,
        }
    }

    #[test]
    fn static_credentials_table() {
        let issued = Issued::default();
        let bearer = Required::Bearer("t0k".into());
        let basic = Required::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        let cases = [
            (&Required::Nothing, None, true),
            (&bearer, Some("Bearer t0k"), true),
            (&bearer, Some("Bearer t0kx"), false),
            (&bearer, Some("t0k"), false),
            (&bearer, None, false),
            (&basic, Some("Basic dTpw"), true),
            (&basic, Some("Basic dTpx"), false),
            (&basic, Some("Bearer dTpw"), false),
        ];
        for (required, authorization, allowed) in cases {
            assert_eq!(
                allows(required, &issued, authorization, 0),
                allowed,
                "{required:?} {authorization:?}"
            );
        }
    }

    #[test]
    fn oauth2_tokens_are_issued_to_the_client_and_expire_or_are_revoked() {
        let client = client();
        let required = Required::OAuth2(client.clone());
        let mut issued = Issued::default();
        assert_eq!(
            issued.issue(&client, Some("Basic YXBwOndyb25n"), 0),
            None,
            "wrong secret"
        );
        let token = issued
            .issue(&client, Some("Basic YXBwOnMzY3IzdA=="), 1_000)
            .expect("issued");
        assert_eq!((token.token_type, token.expires_in, issued.count()), ("Bearer", 10, 1));
        let header = format!("Bearer {}", token.access_token);
        assert!(allows(&required, &issued, Some(&header), 10_999));
        assert!(!allows(&required, &issued, Some(&header), 11_000), "expired");
        assert!(!allows(&required, &issued, Some("Bearer forged"), 2_000));
        issued.revoke_all();
        assert!(!allows(&required, &issued, Some(&header), 2_000), "revoked");
    }
}
