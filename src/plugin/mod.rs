//! `kubectl pj`, the operator's kubectl plugin: what a job waits for, and
//! the everyday writes (redrive, suspend, resume) without long `kubectl`
//! lines.
//!
//! - [`why`]: from a job, its Destination and the time, the one thing the
//!   job waits for, its last attempt and what happens next. Pure.
//! - [`stats`]: counts by phase and by Destination, and the oldest due job. Pure.
//! - [`commands`]: each subcommand's reads and writes, with the user's own
//!   kubeconfig and context.
//!
//! Invariants:
//! - The plugin makes only the requests the equivalent `kubectl` commands
//!   make (get, list, and merge patches of the annotation or `spec.suspend`),
//!   so it never needs more rights than they do, and an error from the API
//!   server is printed in kubectl's words: `Error from server (Reason): message`.
//! - It reads what the operator records (status, conditions); it never
//!   writes status and never talks to the operator itself.

pub mod commands;
pub mod stats;
pub mod why;

/// How long ago or ahead `seconds` is, for people: `42s`, `3m12s`, `2h5m`, `3d4h`.
#[must_use]
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `T (in 5s)` or `T (5s ago)`, with T in RFC 3339 to the second.
#[must_use]
pub fn when(at: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let delta = at.as_second() - now.as_second();
    let at = at.round(jiff::Unit::Second).unwrap_or(at);
    if delta == 0 {
        format!("{at} (now)")
    } else if delta > 0 {
        format!("{at} (in {})", human_duration(delta))
    } else {
        format!("{at} ({} ago)", human_duration(delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl_ages() {
        for (seconds, shown) in [
            (0, "0s"),
            (59, "59s"),
            (-192, "3m12s"),
            (7_500, "2h5m"),
            (273_600, "3d4h"),
        ] {
            assert_eq!(human_duration(seconds), shown, "{seconds}");
        }
    }

    #[test]
    fn a_time_says_whether_it_is_ahead_or_past() {
        let now: jiff::Timestamp = "2026-12-02T15:00:00Z".parse().unwrap();
        let ahead: jiff::Timestamp = "2026-12-02T15:00:05.4Z".parse().unwrap();
        assert_eq!(when(ahead, now), "2026-12-02T15:00:05Z (in 5s)");
        let past: jiff::Timestamp = "2026-12-02T14:57:00Z".parse().unwrap();
        assert_eq!(when(past, now), "2026-12-02T14:57:00Z (3m0s ago)");
        assert_eq!(when(now, now), "2026-12-02T15:00:00Z (now)");
    }
}
