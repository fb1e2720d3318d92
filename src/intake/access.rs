//! Who calls the intake, and whether they may: the bearer token is checked
//! with a TokenReview for the intake's own audience, the permission with a
//! SubjectAccessReview, both by the API server itself. A token minted for
//! the API server (the default audience) is refused, so a token an
//! application sends to the intake is no key to the API server. Answers
//! are kept for [`REVIEW_TTL`], so a busy client costs the API server one
//! review of each kind per 10 s, not one per request; a revoked token or
//! permission is refused within that long.
//!
//! Tokens are kept by their SHA-256, never as they are; permissions by the
//! whole identity the review was asked for (user, uid, groups, extra), so
//! two callers that share a user name but not their groups never share an
//! answer. At most [`MAX_KEPT`] answers of each kind are kept, and only
//! those of authenticated callers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::api::GROUP;

/// How long a review's answer is used.
pub const REVIEW_TTL: Duration = Duration::from_secs(10);
/// Most answers kept of each kind; past it, those past their time go, and
/// if that is not enough, all.
pub const MAX_KEPT: usize = 10_000;

/// Why a request may not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No token, or one the API server does not accept: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this: 403.
    #[error("{0}")]
    Forbidden(String),
    /// The API server could not be asked: 503.
    #[error("{0}")]
    Unavailable(String),
}

/// Answers kept: when each was given, by what it answers.
type Kept<K, V> = Mutex<HashMap<K, (Instant, V)>>;
/// Who asks: user name, uid, groups and extra, as the token review said.
type Identity = (
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    Option<std::collections::BTreeMap<String, Vec<String>>>,
);
/// A permission asked: who, in which namespace, which verb.
type Grant = (Identity, String, &'static str);
/// A token's SHA-256.
type TokenDigest = [u8; 32];

/// Reviews tokens and permissions, and remembers the answers briefly.
pub struct Access {
    client: Client,
    /// The audience callers' tokens must be minted for.
    audience: String,
    callers: Kept<TokenDigest, UserInfo>,
    grants: Kept<Grant, bool>,
}

fn fresh<K: std::hash::Hash + Eq + Clone, V: Clone>(map: &Kept<K, V>, key: &K) -> Option<V> {
    let map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    map.get(key)
        .filter(|(at, _)| at.elapsed() < REVIEW_TTL)
        .map(|(_, v)| v.clone())
}

fn keep<K: std::hash::Hash + Eq, V>(map: &Kept<K, V>, key: K, value: V) {
    let mut map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if map.len() >= MAX_KEPT {
        map.retain(|_, (at, _)| at.elapsed() < REVIEW_TTL);
        if map.len() >= MAX_KEPT {
            map.clear();
        }
    }
    map.insert(key, (Instant::now(), value));
}

fn digest(token: &str) -> TokenDigest {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl Access {
    /// Reviews with `client`, whose account may create TokenReviews and
    /// SubjectAccessReviews, accepting tokens minted for `audience` only.
    pub fn new(client: Client, audience: String) -> Self {
        Self {
            client,
            audience,
            callers: Mutex::default(),
            grants: Mutex::default(),
        }
    }

    /// The caller behind `authorization` (an `Authorization` header), if it
    /// may `verb` pendingjobs in `namespace`.
    pub async fn check(
        &self,
        authorization: Option<&str>,
        namespace: &str,
        verb: &'static str,
    ) -> Result<UserInfo, Denied> {
        let token = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                Denied::Unauthenticated("a bearer token is required (Authorization: Bearer <token>)".into())
            })?;
        let digest = digest(token);
        let user = match fresh(&self.callers, &digest) {
            Some(user) => user,
            None => {
                let user = self.review_token(token).await?;
                keep(&self.callers, digest, user.clone());
                user
            }
        };
        let username = user.username.clone().unwrap_or_default();
        let identity = (
            user.username.clone(),
            user.uid.clone(),
            user.groups.clone(),
            user.extra.clone(),
        );
        let grant = (identity, namespace.to_owned(), verb);
        let allowed = match fresh(&self.grants, &grant) {
            Some(allowed) => allowed,
            None => {
                let allowed = self.review_access(&user, namespace, verb).await?;
                keep(&self.grants, grant, allowed);
                allowed
            }
        };
        if !allowed {
            return Err(Denied::Forbidden(format!(
                "{username} may not {verb} pendingjobs in namespace {namespace}"
            )));
        }
        Ok(user)
    }

    async fn review_token(&self, token: &str) -> Result<UserInfo, Denied> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Denied::Unavailable(format!("reviewing the token: {e}")))?;
        let status = answer.status.unwrap_or_default();
        // An authenticator that ignores audiences answers none: refused too.
        let for_us = status.audiences.iter().flatten().any(|a| *a == self.audience);
        match (status.authenticated, status.user) {
            (Some(true), Some(user)) if for_us => Ok(user),
            _ => Err(Denied::Unauthenticated(format!(
                "the bearer token is not valid for audience {audience}; a token for the API server is refused: \
                 mint one with `kubectl create token SERVICE_ACCOUNT --audience {audience}`",
                audience = self.audience
            ))),
        }
    }

    async fn review_access(&self, user: &UserInfo, namespace: &str, verb: &'static str) -> Result<bool, Denied> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                uid: user.uid.clone(),
                groups: user.groups.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.to_owned()),
                    verb: Some(verb.to_owned()),
                    group: Some(GROUP.to_owned()),
                    resource: Some("pendingjobs".to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Denied::Unavailable(format!("reviewing access: {e}")))?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_kept_stay_within_the_bound() {
        let kept: Kept<TokenDigest, bool> = Mutex::default();
        for n in 0..MAX_KEPT + 10 {
            keep(&kept, digest(&format!("token-{n}")), true);
        }
        let len = kept.lock().unwrap().len();
        assert!(len <= MAX_KEPT, "{len} answers kept");
        assert_eq!(fresh(&kept, &digest(&format!("token-{}", MAX_KEPT + 9))), Some(true));
    }

    #[test]
    fn tokens_are_kept_by_digest_and_grants_by_the_whole_identity() {
        assert_ne!(digest("a"), digest("b"));
        let grants: Kept<Grant, bool> = Mutex::default();
        let identity = |groups: &[&str]| -> Identity {
            let groups = groups.iter().map(|g| (*g).to_owned()).collect();
            (Some("alice".into()), Some("uid-1".into()), Some(groups), None)
        };
        keep(&grants, (identity(&["admins"]), "shop".into(), "create"), true);
        let other_groups = (identity(&["viewers"]), "shop".into(), "create");
        assert_eq!(
            fresh(&grants, &other_groups),
            None,
            "same user name, other groups: asked again"
        );
        assert_eq!(
            fresh(&grants, &(identity(&["admins"]), "shop".into(), "create")),
            Some(true)
        );
    }
}
