//! Vendor wall-clock time: Beijing time (UTC+8) text formats, parsing and rendering.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

/// Every vendor API in scope speaks Beijing time without an offset in its strings.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("utc+8 is a valid offset")
}

/// `yyyy-MM-dd HH:mm:ss`, the format most vendor APIs use.
pub const DATETIME: &str = "%Y-%m-%d %H:%M:%S";
/// `yyyyMMddHHmmss`, used by the finance bill API's system timestamp.
pub const COMPACT_DATETIME: &str = "%Y%m%d%H%M%S";

/// Renders an instant as Beijing wall-clock text in `fmt`.
pub fn format_beijing(t: DateTime<Utc>, fmt: &str) -> String {
    t.with_timezone(&beijing()).format(fmt).to_string()
}

/// Outcome of reading a vendor time string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorTime {
    /// A real instant.
    At(DateTime<Utc>),
    /// The vendor's way of saying "unset": empty text or an all-zero date.
    Unset,
}

/// Parses vendor time text as Beijing time. Accepts `yyyy-MM-dd HH:mm:ss`,
/// `yyyyMMddHHmmss`, `yyyyMMdd HH:mm:ss` (TOP's date + time fields joined), `yyyy-MM-dd` and `yyyyMMdd`; empty text and all-zero dates
/// (`0000-00-00 00:00:00`) are [`VendorTime::Unset`]. Anything else is `None`.
pub fn parse_vendor_time(s: &str) -> Option<VendorTime> {
    let s = s.trim();
    if s.is_empty() || s.bytes().all(|b| matches!(b, b'0' | b'-' | b':' | b' ')) {
        return Some(VendorTime::Unset);
    }
    let naive = datetime_fast(s)
        .ok_or(())
        .or_else(|_| NaiveDateTime::parse_from_str(s, DATETIME))
        .or_else(|_| NaiveDateTime::parse_from_str(s, COMPACT_DATETIME))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y%m%d %H:%M:%S"))
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_time(Default::default())))
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y%m%d").map(|d| d.and_time(Default::default())))
        .ok()?;
    let local = beijing().from_local_datetime(&naive).single()?;
    Some(VendorTime::At(local.with_timezone(&Utc)))
}

/// `yyyy-MM-dd HH:mm:ss` read digit by digit: nearly every vendor time has this shape, and
/// chrono's format-driven parser cost more than the rest of a record's Avro encoding.
fn datetime_fast(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?.and_hms_opt(
        num(11, 13)?,
        num(14, 16)?,
        num(17, 19)?,
    )
}

/// Parses `yyyy-MM-dd HH:mm:ss` Beijing time; `None` when malformed or unset.
pub fn parse_beijing(s: &str) -> Option<DateTime<Utc>> {
    match parse_vendor_time(s)? {
        VendorTime::At(t) => Some(t),
        VendorTime::Unset => None,
    }
}

/// Drops sub-second precision: vendor windows have one-second resolution.
pub fn truncate_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).expect("whole seconds of a valid instant are valid")
}

/// The next instant after `now` whose Beijing wall clock reads `at` (a vendor's daily
/// quota reset, midnight Beijing time for TOP).
pub fn next_beijing_time_of_day(now: DateTime<Utc>, at: NaiveTime) -> DateTime<Utc> {
    let local = now.with_timezone(&beijing());
    let today = local.date_naive().and_time(at);
    let next = if today > local.naive_local() { today } else { today + chrono::Duration::days(1) };
    beijing().from_local_datetime(&next).single().expect("a fixed offset has one reading").with_timezone(&Utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_reset_is_the_next_beijing_midnight() {
        let at = |s: &str| parse_beijing(s).unwrap();
        let midnight = NaiveTime::MIN;
        assert_eq!(next_beijing_time_of_day(at("2026-12-02 23:59:59"), midnight), at("2026-12-03 00:00:00"));
        assert_eq!(next_beijing_time_of_day(at("2026-12-03 00:00:00"), midnight), at("2026-12-04 00:00:00"));
        let five_past = NaiveTime::from_hms_opt(0, 5, 0).unwrap();
        assert_eq!(next_beijing_time_of_day(at("2026-12-03 00:01:00"), five_past), at("2026-12-03 00:05:00"));
    }

    #[test]
    fn beijing_text_round_trips_through_utc() {
        let t = parse_beijing("2024-01-01 08:00:00").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(format_beijing(t, DATETIME), "2024-01-01 08:00:00");
        assert_eq!(format_beijing(t, COMPACT_DATETIME), "20240101080000");
    }

    #[test]
    fn zero_dates_and_empty_text_are_unset() {
        assert_eq!(parse_vendor_time("0000-00-00 00:00:00"), Some(VendorTime::Unset));
        assert_eq!(parse_vendor_time(""), Some(VendorTime::Unset));
        assert_eq!(parse_vendor_time("00000000"), Some(VendorTime::Unset));
    }

    #[test]
    fn compact_and_date_only_forms_parse() {
        let a = parse_beijing("20181029114136").unwrap();
        let b = parse_beijing("2018-10-29 11:41:36").unwrap();
        assert_eq!(a, b);
        assert_eq!(parse_beijing("20181029").unwrap(), parse_beijing("2018-10-29 00:00:00").unwrap());
        assert_eq!(parse_beijing("20181029 11:41:36").unwrap(), b);
    }

    #[test]
    fn the_digit_parser_agrees_with_chrono() {
        let mut t = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap().naive_utc();
        for _ in 0..5000 {
            let text = t.format(DATETIME).to_string();
            assert_eq!(datetime_fast(&text), Some(t), "{text}");
            t += chrono::Duration::seconds(7_654_321);
        }
        for bad in ["2024-02-30 00:00:00", "2024-01-01 24:00:00", "2024-01-0x 00:00:00", "2024/01/01 00:00:00"] {
            assert_eq!(datetime_fast(bad), None, "{bad}");
            assert!(NaiveDateTime::parse_from_str(bad, DATETIME).is_err(), "{bad}");
        }
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(parse_vendor_time("yesterday"), None);
        assert_eq!(parse_vendor_time("2024-13-01 00:00:00"), None);
    }
}
