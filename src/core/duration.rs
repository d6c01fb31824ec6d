//! Go-style durations as the CRDs accept them (`90s`, `5m`, `1h30m`,
//! `250ms`): whole numbers with the units `ms`, `s`, `m`, `h`.

use std::time::Duration;

/// A duration string that does not parse.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    #[error("{0:?} is empty, write a duration such as 90s, 5m or 1h30m")]
    Empty(String),
    #[error(
        "{0:?} is not a duration, write whole numbers with units ms, s, m, h (e.g. 90s, 5m, 1h30m)"
    )]
    Syntax(String),
    #[error("{0:?} is too long a duration")]
    Overflow(String),
}

/// Parses a Go-style duration limited to `ms`, `s`, `m`, `h`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty(s.to_owned()));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ms: u64 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(DurationError::Syntax(s.to_owned()));
        }
        let n: u64 = s[start..i]
            .parse()
            .map_err(|_| DurationError::Overflow(s.to_owned()))?;
        let unit_ms: u64 = if s[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let u = match bytes.get(i) {
                Some(b's') => 1_000,
                Some(b'm') => 60_000,
                Some(b'h') => 3_600_000,
                _ => return Err(DurationError::Syntax(s.to_owned())),
            };
            i += 1;
            u
        };
        total_ms = n
            .checked_mul(unit_ms)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| DurationError::Overflow(s.to_owned()))?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats like Go, without zero units: `1h30m0s` is written `1h30m`, `90s`
/// as `1m30s`, sub-second as `250ms`, zero as `0s`. Whole milliseconds only
/// (anything finer is truncated), so the result always parses back with
/// [`parse_duration`] and matches the CRDs' duration pattern.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    for (v, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_what_the_crd_accepts() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0m"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m500ms"), Ok(Duration::from_millis(60_500)));
    }

    #[test]
    fn refuses_the_rest_naming_the_input() {
        for bad in ["", "5", "m", "5 m", "1.5h", "5d", "-5m", "5mm"] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("9999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn formatted_durations_match_the_crd_pattern(ms in any::<u64>()) {
            let pattern = regex::Regex::new(crate::api::DURATION_PATTERN).expect("pattern");
            let s = format_duration(Duration::from_millis(ms));
            prop_assert!(pattern.is_match(&s), "{}", s);
        }

        #[test]
        fn parses_exactly_what_the_crd_pattern_accepts(s in "[0-9msh]{0,12}|[0-9]{1,4}(ms|s|m|h|d|us)") {
            let pattern = regex::Regex::new(crate::api::DURATION_PATTERN).expect("pattern");
            match parse_duration(&s) {
                Ok(_) => prop_assert!(pattern.is_match(&s), "{}", s),
                Err(DurationError::Overflow(_)) => prop_assert!(pattern.is_match(&s), "{}", s),
                Err(e) => {
                    prop_assert!(!pattern.is_match(&s), "{}: {}", s, e);
                    prop_assert!(e.to_string().contains(&format!("{s:?}")), "{}", e);
                }
            }
        }

        #[test]
        fn parts_add_up(parts in proptest::collection::vec((0u64..100_000, 0usize..4), 1..6)) {
            const UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];
            let text: String = parts.iter().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
            let ms: u64 = parts.iter().map(|(n, u)| n * UNITS[*u].1).sum();
            prop_assert_eq!(parse_duration(&text), Ok(Duration::from_millis(ms)));
        }

        #[test]
        fn never_panics(s in "\\PC{0,20}") {
            let _ = parse_duration(&s);
        }
    }
}
