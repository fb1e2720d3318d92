//! Object uids as the API server spells them (lowercase, hyphenated
//! UUIDs), kept as numbers: 16 bytes in place, instead of a string and its
//! 36-byte allocation for each job held.

/// `uid` as a number; `None` for any spelling but the API server's, so
/// that [`spell`] gives back the very string.
pub fn parse(uid: &str) -> Option<u128> {
    let hex: String = uid.chars().filter(|c| *c != '-').collect();
    let value = u128::from_str_radix(&hex, 16).ok()?;
    (hex.len() == 32 && spell(value) == uid).then_some(value)
}

/// `uid` as the API server spells it.
pub fn spell(uid: u128) -> String {
    let hex = format!("{uid:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_api_servers_spelling_round_trips() {
        let uid = "0b5e7a4c-3f1d-4e2a-9c8b-7d6e5f4a3b2c";
        assert_eq!(parse(uid).map(spell).as_deref(), Some(uid));
        for odd in [
            "0B5E7A4C-3F1D-4E2A-9C8B-7D6E5F4A3B2C",
            "0b5e7a4c3f1d4e2a9c8b7d6e5f4a3b2c",
            "0b5e7a4c-3f1d-4e2a-9c8b-7d6e5f4a3b2",
            "u",
            "",
        ] {
            assert_eq!(parse(odd), None, "{odd}");
        }
    }
}
