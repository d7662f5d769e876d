//! Durations as users write them ("30s", "1h30m", "168h", "7d") and as JetStream wants them
//! (integer nanoseconds).

const NS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Parses a Go-style duration (plus `d` for days) into nanoseconds.
pub fn parse(text: &str) -> Result<i64, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number at {rest:?}"
            ));
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let Some(&(_, scale)) = NS.iter().find(|(u, _)| *u == unit) else {
            return Err(if unit.is_empty() {
                format!("invalid duration {text:?}: missing unit after {num}")
            } else {
                format!("invalid duration {text:?}: unknown unit {unit:?}")
            });
        };
        let value = if let Some((int, frac)) = num.split_once('.') {
            let int: u128 = if int.is_empty() {
                0
            } else {
                int.parse()
                    .map_err(|_| format!("invalid duration {text:?}"))?
            };
            let mut frac_ns: u128 = 0;
            let mut div: u128 = 1;
            for c in frac.chars().take(18) {
                frac_ns = frac_ns * 10
                    + c.to_digit(10)
                        .ok_or_else(|| format!("invalid duration {text:?}"))?
                        as u128;
                div *= 10;
            }
            int.checked_mul(scale)
                .and_then(|v| v.checked_add(frac_ns * scale / div))
                .ok_or_else(|| format!("duration {text:?} is too large"))?
        } else {
            num.parse::<u128>()
                .map_err(|_| format!("invalid duration {text:?}"))?
                .checked_mul(scale)
                .ok_or_else(|| format!("duration {text:?} is too large"))?
        };
        total = total
            .checked_add(value)
            .ok_or_else(|| format!("duration {text:?} is too large"))?;
        rest = next;
    }
    i64::try_from(total).map_err(|_| format!("duration {text:?} is too large"))
}

/// Renders nanoseconds the way a reviewer reads them: "168h", "2m", "1h30m", "500ms".
pub fn format(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    if ns < 0 {
        return format!("-{}", format(ns.saturating_neg()));
    }
    let ns = ns as u128;
    if !ns.is_multiple_of(1_000_000_000) {
        for (unit, scale) in [("ms", 1_000_000u128), ("us", 1_000), ("ns", 1)] {
            if ns.is_multiple_of(scale) {
                return format!("{}{unit}", ns / scale);
            }
        }
    }
    let mut secs = ns / 1_000_000_000;
    let mut out = String::new();
    let h = secs / 3600;
    secs %= 3600;
    let m = secs / 60;
    secs %= 60;
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if secs > 0 {
        out.push_str(&format!("{secs}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations_into_nanoseconds() {
        // The pilot's max_age is a week.
        assert_eq!(parse("168h"), Ok(604_800_000_000_000));
        // Compound and fractional forms add up.
        assert_eq!(parse("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse("250ms"), Ok(250_000_000));
        assert_eq!(parse("7d"), Ok(604_800_000_000_000));
        assert_eq!(parse("0"), Ok(0));
    }

    #[test]
    fn rejects_durations_without_units_or_with_unknown_units() {
        // "7 days" is what a person types; it must be refused with the offending part named.
        assert!(parse("7 days").unwrap_err().contains("unknown unit"));
        assert!(parse("30").unwrap_err().contains("missing unit"));
        assert!(parse("").is_err());
        assert!(parse("h").is_err());
    }

    #[test]
    fn huge_numbers_are_too_large_not_an_overflow() {
        // Found by fuzzing (guest/fuzz, target duration): the number times its unit overflowed
        // u128, a panic natively and a silent wrap in the component (about 36m for this one).
        for text in [
            "94522879700260684295381836h",
            "6666666666666666666666666662h0",
            "94522879700260684295381836.5h",
        ] {
            assert!(parse(text).unwrap_err().contains("too large"), "{text}");
        }
    }

    #[test]
    fn formats_back_to_readable_text() {
        // Formatting is the inverse of parsing for the values plans show.
        for text in ["168h", "2m", "30s", "1h30m", "500ms", "0s"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
