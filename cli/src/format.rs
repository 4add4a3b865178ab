//! Human-readable output shared by the commands.

use commons_aggregator::rules::SignatureFate;

/// Text for a terminal: control characters other than newlines (which messages from files
/// might carry to move the cursor or recolour the screen) are shown escaped, as `\u{1b}`.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A field read from a file, for a one-line report: every control character, newlines
/// too, is shown escaped, so a title cannot fake lines of the report.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A length of time in the largest unit that divides it: `35 s`, `10 min`, `7 days`.
pub fn duration(secs: u64) -> String {
    match secs {
        0 => "no lock".to_string(),
        s if s % 86_400 == 0 => plural(s / 86_400, "day"),
        s if s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 && s >= 120 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// A length of time rounded to its largest unit, for times that pass while a person reads:
/// 2591999 s is `30 days`, 3599 s is `1 h`.
pub fn approx(secs: u64) -> String {
    let rounded = |unit: u64| (secs + unit / 2) / unit;
    if secs >= 86_400 - 60 {
        plural(rounded(86_400), "day")
    } else if secs >= 3_600 - 60 {
        format!("{} h", rounded(3_600))
    } else if secs >= 120 {
        format!("{} min", rounded(60))
    } else {
        format!("{secs} s")
    }
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// A short name for a signature's fate, followed by why when it did not count.
pub fn fate(fate: SignatureFate) -> String {
    let label = match fate {
        SignatureFate::Counted => return "counted".to_string(),
        SignatureFate::DuplicateSigner => "duplicate signer",
        SignatureFate::UnknownKey => "unknown key",
        SignatureFate::BadSignature => "bad signature",
    };
    format!("{label} ({fate})")
}

/// The stable name of a signature's fate in JSON output: `counted`, `duplicate-signer`,
/// `unknown-key` or `bad-signature`.
pub fn fate_name(fate: SignatureFate) -> &'static str {
    match fate {
        SignatureFate::Counted => "counted",
        SignatureFate::DuplicateSigner => "duplicate-signer",
        SignatureFate::UnknownKey => "unknown-key",
        SignatureFate::BadSignature => "bad-signature",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(terminal_safe("plain\ntext"), "plain\ntext");
        assert_eq!(terminal_safe("a\u{1b}[31mred"), "a\\u{1b}[31mred");
        assert_eq!(terminal_safe("tab\there"), "tab\\there");
        assert_eq!(one_line("two\nlines"), "two\\nlines");
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(35), "35 s");
        assert_eq!(duration(60), "60 s");
        assert_eq!(duration(600), "10 min");
        assert_eq!(duration(7_200), "2 h");
        assert_eq!(duration(86_400), "1 day");
        assert_eq!(duration(30 * 86_400), "30 days");
    }

    #[test]
    fn approximate_durations() {
        assert_eq!(approx(30 * 86_400 - 1), "30 days");
        assert_eq!(approx(86_399), "1 day");
        assert_eq!(approx(3_599), "1 h");
        assert_eq!(approx(5_400), "2 h");
        assert_eq!(approx(600), "10 min");
        assert_eq!(approx(59), "59 s");
    }

    #[test]
    fn fates() {
        assert_eq!(fate(SignatureFate::Counted), "counted");
        assert!(fate(SignatureFate::UnknownKey).starts_with("unknown key (not counted"));
    }
}
