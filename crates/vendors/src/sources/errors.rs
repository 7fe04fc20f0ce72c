//! The shape of a vendor's error table: which answers mean what, and what the engine does
//! about each. Every vendor module keeps one `ERRORS` table of these rows, each citing its
//! source in `docs/vendors.md`.

use std::time::Duration;

use super::SourceError;

/// What the engine must do about a vendor's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Transient on the vendor's side: retry with backoff.
    Retry,
    /// A rate limit ("slow down"): pause the credential and lower its rate.
    Throttle,
    /// The app's daily call quota: pause the credential until the quota resets.
    DailyQuota,
    /// The request's timestamp was refused: the local clock is off.
    ClockSkew,
    /// The signature was refused: the secret (or the signing) is wrong.
    SignatureRejected,
    /// Retrying cannot help: credentials, permissions, a request the vendor rejects.
    Fatal,
}

/// A used-up quota the vendor says lifts sooner than this is handled as a throttle.
pub const SHORT_QUOTA: Duration = Duration::from_secs(10);

/// One row of a vendor's error table. A row matches when every field it sets matches.
#[derive(Debug, Clone, Copy)]
pub struct ErrorRule {
    /// The vendor's code as text (`"100"`, `"7"`); `None` matches any.
    pub code: Option<&'static str>,
    /// A prefix of the sub-code (TOP family: `"accesscontrol.limited-by-app-access-count"`,
    /// `"isp."`); `None` matches any.
    pub sub_code: Option<&'static str>,
    /// Texts of which the message must contain one (the vendor's wording, e.g.
    /// `"超过每分钟最大调用频率限制"`); empty matches any.
    pub message: &'static [&'static str],
    pub action: Action,
    /// What the vendor means by it, in a few words (part of the error's reason).
    pub meaning: &'static str,
}

impl ErrorRule {
    /// A row for `code` alone.
    pub const fn code(code: &'static str, action: Action, meaning: &'static str) -> ErrorRule {
        ErrorRule { code: Some(code), sub_code: None, message: &[], action, meaning }
    }

    /// A row for `code` with a message containing one of `texts`.
    pub const fn message(
        code: &'static str,
        texts: &'static [&'static str],
        action: Action,
        meaning: &'static str,
    ) -> ErrorRule {
        ErrorRule { code: Some(code), sub_code: None, message: texts, action, meaning }
    }

    /// A row for a sub-code prefix, whatever the code.
    pub const fn sub_code(prefix: &'static str, action: Action, meaning: &'static str) -> ErrorRule {
        ErrorRule { code: None, sub_code: Some(prefix), message: &[], action, meaning }
    }

    fn matches(&self, code: &str, sub_code: &str, message: &str) -> bool {
        self.code.is_none_or(|c| c == code)
            && self.sub_code.is_none_or(|s| sub_code.starts_with(s))
            && (self.message.is_empty() || self.message.iter().any(|m| message.contains(m)))
    }
}

/// The first row of `table` that matches the answer.
pub fn lookup<'t>(table: &'t [ErrorRule], code: &str, sub_code: &str, message: &str) -> Option<&'t ErrorRule> {
    table.iter().find(|r| r.matches(code, sub_code, message))
}

/// The error the engine acts on, for an answer classified as `action`. `label` is the
/// metric's code label; `reason` the vendor's own words; `wait` how long the vendor said a
/// ban lasts, if it did.
pub fn error(action: Action, label: &str, reason: String, wait: Option<Duration>) -> SourceError {
    let code = label.to_owned();
    match action {
        Action::Retry => SourceError::Retryable { code, reason, after: wait },
        Action::Throttle => SourceError::Throttled { code, reason, after: wait },
        // A "daily" quota the vendor says lifts within seconds acts as a throttle: its rate
        // is learned, and it is not news worth a notice each time.
        Action::DailyQuota if wait.is_some_and(|w| w < SHORT_QUOTA) => {
            SourceError::Throttled { code, reason, after: wait }
        }
        Action::DailyQuota => SourceError::QuotaExhausted { code, reason, after: wait },
        Action::ClockSkew => SourceError::ClockSkew { code, reason: format!("request timestamp refused: {reason}") },
        Action::SignatureRejected => SourceError::Fatal { code, reason: format!("signature rejected: {reason}") },
        Action::Fatal => SourceError::Fatal { code, reason },
    }
}

/// The ban length in TOP's "This ban will last 12 more seconds" (also "last for 12 more
/// seconds", as the gateway words it today).
pub fn ban_seconds(message: &str) -> Option<Duration> {
    let rest = &message[message.find("last ")? + 5..];
    let rest = rest.trim_start().strip_prefix("for ").unwrap_or(rest).trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_seconds_reads_both_wordings() {
        assert_eq!(ban_seconds("This ban will last 12 more seconds"), Some(Duration::from_secs(12)));
        assert_eq!(ban_seconds("This ban will last for 2 more seconds"), Some(Duration::from_secs(2)));
        assert_eq!(ban_seconds("App Call Limited"), None);
    }

    #[test]
    fn a_daily_quota_lifting_within_minutes_is_a_throttle() {
        let e = error(Action::DailyQuota, "7", "r".into(), Some(Duration::from_secs(2)));
        assert!(matches!(e, SourceError::Throttled { .. }), "{e:?}");
        let e = error(Action::DailyQuota, "7", "r".into(), Some(Duration::from_secs(15)));
        assert!(matches!(e, SourceError::QuotaExhausted { .. }), "{e:?}");
    }

    #[test]
    fn rows_match_on_every_field_they_set() {
        const T: &[ErrorRule] = &[
            ErrorRule {
                code: Some("100"), sub_code: None, message: &["限制"], action: Action::Throttle, meaning: "m"
            },
            ErrorRule::code("100", Action::Fatal, "f"),
        ];
        assert_eq!(lookup(T, "100", "", "超过每分钟最大调用频率限制").unwrap().action, Action::Throttle);
        assert_eq!(lookup(T, "100", "", "权限不足").unwrap().action, Action::Fatal);
        assert!(lookup(T, "7", "", "限制").is_none());
    }
}
