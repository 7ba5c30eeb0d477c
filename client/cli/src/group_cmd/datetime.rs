//! RFC 3339 timestamps for `--to-datetime`, parsed by hand: the CLI needs
//! one format, not a date library.

/// Milliseconds since the Unix epoch of an RFC 3339 time with a zone, such
/// as `2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.250+02:00`.
pub(crate) fn parse_datetime_ms(text: &str) -> Result<i64, String> {
    parse(text).ok_or_else(|| {
        format!(
            "{text:?} is not an RFC 3339 time; write it like 2026-01-01T00:00:00Z \
             or 2026-01-01T02:00:00+02:00"
        )
    })
}

fn parse(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let days = parse_date(date)?;
    let (clock, zone_minutes) = split_zone(rest)?;
    let (seconds, millis) = parse_clock(clock)?;
    let local_seconds = days.checked_mul(86_400)?.checked_add(seconds)?;
    let utc_seconds = local_seconds.checked_sub(zone_minutes * 60)?;
    utc_seconds.checked_mul(1000)?.checked_add(millis)
}

/// Days since 1970-01-01 of `YYYY-MM-DD`.
fn parse_date(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let year = digits(parts.next()?, 4)?;
    let month = digits(parts.next()?, 2)?;
    let day = digits(parts.next()?, 2)?;
    if parts.next().is_some() || !(1..=12).contains(&month) {
        return None;
    }
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Splits `HH:MM:SS[.fff]Z` or `...±HH:MM` into the clock and the zone's
/// offset in minutes.
fn split_zone(rest: &str) -> Option<(&str, i64)> {
    if let Some(clock) = rest.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    let sign_at = rest.rfind(['+', '-'])?;
    let (clock, zone) = rest.split_at(sign_at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = zone[1..].split_once(':')?;
    let (hours, minutes) = (digits(hours, 2)?, digits(minutes, 2)?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((clock, sign * (hours * 60 + minutes)))
}

/// Seconds into the day and milliseconds of `HH:MM:SS[.fraction]`.
fn parse_clock(clock: &str) -> Option<(i64, i64)> {
    let (clock, fraction) = match clock.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (clock, None),
    };
    let mut parts = clock.split(':');
    let hours = digits(parts.next()?, 2)?;
    let minutes = digits(parts.next()?, 2)?;
    let seconds = digits(parts.next()?, 2)?;
    if parts.next().is_some() || hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    let millis = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let first_three: String = f.chars().chain("00".chars()).take(3).collect();
            first_three.parse().ok()?
        }
        Some(_) => return None,
    };
    Some((hours * 3600 + minutes * 60 + seconds, millis))
}

/// Exactly `len` ASCII digits.
fn digits(text: &str, len: usize) -> Option<i64> {
    (text.len() == len && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `2026-01-01T00:00:00.000Z` for milliseconds since the Unix epoch (UTC,
/// always with milliseconds, so the text sorts like the number for years
/// 0 to 9999).
pub(crate) fn format_datetime_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hours, minutes) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (seconds, millis) = (in_day / 1000 % 60, in_day % 1000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{millis:03}Z")
}

/// The proleptic Gregorian date of days since 1970-01-01 (H. Hinnant's
/// `civil_from_days`, the inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_times_parse_back() {
        assert_eq!(format_datetime_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_datetime_ms(-1), "1969-12-31T23:59:59.999Z");
        for ms in [
            1_709_209_815_250,
            1_767_225_600_000,
            951_782_400_123,
            -86_400_000 * 400,
        ] {
            assert_eq!(parse_datetime_ms(&format_datetime_ms(ms)), Ok(ms), "{ms}");
        }
    }

    #[test]
    fn utc_times_parse_to_epoch_millis() {
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime_ms("1970-01-01T00:00:03Z"), Ok(3000));
        assert_eq!(
            parse_datetime_ms("2026-01-01T00:00:00Z"),
            Ok(1_767_225_600_000)
        );
        assert_eq!(
            parse_datetime_ms("2024-02-29T12:30:15.25Z"),
            Ok(1_709_209_815_250)
        );
    }

    #[test]
    fn zone_offsets_shift_to_utc() {
        assert_eq!(
            parse_datetime_ms("2026-01-01T02:00:00+02:00"),
            parse_datetime_ms("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_datetime_ms("1970-01-01T00:00:00-00:30"),
            Ok(1_800_000)
        );
    }

    #[test]
    fn malformed_times_are_refused_with_an_example() {
        for bad in [
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-1-01T00:00:00Z",
            "yesterday",
        ] {
            let error = parse_datetime_ms(bad).expect_err(bad);
            assert!(error.contains("2026-01-01T00:00:00Z"), "{error}");
        }
    }
}
