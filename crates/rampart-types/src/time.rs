use std::fmt;

use serde::{Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, UTC. Produced only by a `Clock`; rendered as RFC 3339.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }
    pub const fn as_millis(self) -> i64 {
        self.0
    }
    pub const fn as_unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }
    pub const fn plus_seconds(self, s: i64) -> Self {
        Self(self.0.saturating_add(s.saturating_mul(1000)))
    }
    pub const fn minus_seconds(self, s: i64) -> Self {
        Self(self.0.saturating_sub(s.saturating_mul(1000)))
    }
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
    }
    /// The UTC calendar date, `YYYY-MM-DD`.
    pub fn date(self) -> String {
        self.to_rfc3339().chars().take(10).collect()
    }
    /// Midnight UTC of a `YYYY-MM-DD` calendar date; `None` unless it is a real date.
    pub fn parse_date(s: &str) -> Option<Self> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(s, &format).ok()?;
        let t = date.midnight().assume_utc();
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok().map(Self)
    }
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok().map(Self)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_only_when_real() {
        let t = Timestamp::parse_date("2026-02-28").unwrap_or(Timestamp(0));
        assert_eq!(t.date(), "2026-02-28");
        assert_eq!(t.to_rfc3339(), "2026-02-28T00:00:00Z");
        for bad in ["2026-02-30", "2026-2-3", "26-02-03", "2026-02-03T00:00:00Z", "", "2026-13-01"] {
            assert!(Timestamp::parse_date(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp::from_millis(1_764_000_000_123);
        let s = t.to_rfc3339();
        assert!(s.ends_with('Z'), "{s}");
        assert_eq!(Timestamp::parse_rfc3339(&s), Some(t));
    }
}
