//! Durations as config writes them (`500ms`, `30s`, `10m`, `2h`, `1d`, `1h30m`): the parser,
//! the serde field helpers and the inverse for messages.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// Parses durations such as `500ms`, `30s`, `10m`, `2h`, `1d` or `1h30m`.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    parse(text).map_err(|reason| ConfigError::invalid(key, reason))
}

/// The reason `text` is not a duration, quoting it, as the rest of an error naming the key.
fn parse(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("{why}: {text:?} (use e.g. 30s, 10m, 2h, 1d)");
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("empty duration"));
    }
    if s.starts_with('-') {
        return Err(bad("negative duration"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = |per: u64| n.checked_mul(per).map(Duration::from_secs).ok_or_else(|| bad("number too large"));
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => secs(60)?,
            "h" => secs(3600)?,
            "d" => secs(86_400)?,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit")),
        };
        total = total.checked_add(part).ok_or_else(|| bad("number too large"))?;
    }
    Ok(total)
}

/// `d` as config would write it (`1h30m`, `250ms`, `0s`), for messages.
pub fn format_duration(d: Duration) -> String {
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, per) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= per {
            out.push_str(&format!("{}{unit}", secs / per));
            secs %= per;
        }
    }
    if d.subsec_millis() > 0 {
        out.push_str(&format!("{}ms", d.subsec_millis()));
    }
    if out.is_empty() { "0s".to_owned() } else { out }
}

/// `#[serde(deserialize_with = "config::duration::required")]`: a duration field.
pub fn required<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// `#[serde(default, deserialize_with = "config::duration::optional")]`: a duration that may
/// be left out.
pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    required(d).map(Some)
}

/// `#[serde(default = "config::duration::secs::<30>")]`: a default of `N` seconds.
pub fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_reject_nonsense() {
        assert_eq!(parse_duration("k", "1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("k", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("k", " 49h ").unwrap(), Duration::from_secs(49 * 3600));
        assert!(parse_duration("k", "-5s").unwrap_err().to_string().contains("negative"));
        assert!(parse_duration("k", "5").unwrap_err().to_string().contains("missing unit"));
        assert!(parse_duration("k", "5w").unwrap_err().to_string().contains("unknown unit"));
        let e = parse_duration("streams[0].lookback", "99999999999999999999d").unwrap_err().to_string();
        assert!(e.contains("streams[0].lookback") && e.contains("too large"), "{e}");
        let e = parse_duration("k", &format!("{}d", u64::MAX / 1000)).unwrap_err().to_string();
        assert!(e.contains("too large"), "an overflowing product is an error, not a panic: {e}");
    }

    #[test]
    fn a_formatted_duration_parses_back_to_itself() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(86_400 + 1), "1d1s"),
            (Duration::from_millis(61_500), "1m1s500ms"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration("k", text).unwrap(), d);
        }
    }

    #[test]
    fn a_duration_field_names_its_key_through_the_path() {
        #[derive(Debug, serde::Deserialize)]
        struct S {
            #[serde(deserialize_with = "required")]
            _t: Duration,
            #[serde(default, deserialize_with = "optional")]
            o: Option<Duration>,
            #[serde(default = "secs::<30>", deserialize_with = "required")]
            d: Duration,
        }
        let s: S = toml::from_str("_t = \"1m\"").unwrap();
        assert_eq!((s.o, s.d), (None, Duration::from_secs(30)));
        let e = toml::from_str::<S>("_t = \"1m\"\no = \"-1s\"").unwrap_err().to_string();
        assert!(e.contains("negative duration: \"-1s\""), "{e}");
    }
}
