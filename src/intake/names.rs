//! Names in request paths, checked before any cache or API call: a
//! namespace is a DNS-1123 label, a Destination's or a job's name a
//! DNS-1123 subdomain, as the API server requires of them. Anything else
//! is answered 400 at once, so no garbage reaches a cache key or a URL.

/// Whether `name` is a DNS-1123 label: 1-63 lowercase letters, digits and
/// `-`, starting and ending with a letter or digit.
pub fn is_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let end = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (1..=63).contains(&bytes.len()) && bytes.iter().all(inner) && end(bytes.first()) && end(bytes.last())
}

/// Whether `name` is a DNS-1123 subdomain: at most 253 characters, labels
/// joined by `.`.
pub fn is_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_and_subdomain_table() {
        let long_label = "a".repeat(63);
        let too_long_label = "a".repeat(64);
        let long_subdomain = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        let cases: [(&str, bool, bool); 15] = [
            ("shop", true, true),
            ("shop-2", true, true),
            ("2shop", true, true),
            ("a", true, true),
            (&long_label, true, true),
            (&too_long_label, false, false),
            ("payments.v2", false, true),
            (&long_subdomain, false, true),
            ("", false, false),
            ("-shop", false, false),
            ("shop-", false, false),
            ("Shop", false, false),
            ("shop_2", false, false),
            ("..", false, false),
            ("a/../b", false, false),
        ];
        for (name, label, subdomain) in cases {
            assert_eq!(is_label(name), label, "label {name:?}");
            assert_eq!(is_subdomain(name), subdomain, "subdomain {name:?}");
        }
        assert!(!is_subdomain(&format!("{long_subdomain}a")), "254 characters");
    }
}
