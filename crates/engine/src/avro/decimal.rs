//! Exact decimal text (`"368.0000"`, `-1e2` never) to Avro's unscaled two's-complement bytes.

/// Parses decimal text into its unscaled value at `scale`. Extra fractional digits are only
/// accepted when they are zeros: money is never rounded silently.
pub fn unscaled(text: &str, scale: u32, precision: u32) -> Result<i128, String> {
    let s = text.trim();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("not a plain decimal number".into());
    }
    let (kept, dropped) = frac_part.split_at(frac_part.len().min(scale as usize));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!("more than {scale} fractional digits"));
    }
    let mut value: i128 = 0;
    let mut ndigits = 0u32;
    for b in int_part.bytes().chain(kept.bytes()).chain(std::iter::repeat_n(b'0', scale as usize - kept.len())) {
        if ndigits > 0 || b != b'0' {
            ndigits += 1;
        }
        value = value.checked_mul(10).and_then(|v| v.checked_add((b - b'0') as i128)).ok_or("number too large")?;
    }
    if ndigits > precision {
        return Err(format!("more than {precision} significant digits"));
    }
    Ok(if neg { -value } else { value })
}

/// Minimal big-endian two's-complement bytes of `v`, as Avro's `bytes` decimal wants.
pub fn to_be_bytes_minimal(v: i128) -> Vec<u8> {
    let all = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (all[start], all[start + 1]);
        // A leading byte is redundant when it only repeats the sign of the next one.
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    all[start..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_text_is_exact() {
        assert_eq!(unscaled("368.0000", 4, 19), Ok(3_680_000));
        assert_eq!(unscaled("0.0000", 4, 19), Ok(0));
        assert_eq!(unscaled("-0.5", 4, 19), Ok(-5_000));
        assert_eq!(unscaled("12", 2, 19), Ok(1_200));
        assert_eq!(unscaled("1.50000", 4, 19), Ok(15_000));
        assert_eq!(unscaled(".5", 2, 19), Ok(50));
    }

    #[test]
    fn rounding_and_junk_are_refused() {
        assert!(unscaled("1.23456", 4, 19).unwrap_err().contains("fractional"));
        assert!(unscaled("1e3", 4, 19).is_err());
        assert!(unscaled("", 4, 19).is_err());
        assert!(unscaled("-", 4, 19).is_err());
        assert!(unscaled("12345678901234567890", 0, 19).unwrap_err().contains("significant"));
    }

    #[test]
    fn bytes_are_minimal_twos_complement() {
        assert_eq!(to_be_bytes_minimal(0), vec![0]);
        assert_eq!(to_be_bytes_minimal(127), vec![0x7F]);
        assert_eq!(to_be_bytes_minimal(128), vec![0x00, 0x80]);
        assert_eq!(to_be_bytes_minimal(-1), vec![0xFF]);
        assert_eq!(to_be_bytes_minimal(-129), vec![0xFF, 0x7F]);
        assert_eq!(to_be_bytes_minimal(3_680_000), vec![0x38, 0x27, 0x00]);
    }
}
