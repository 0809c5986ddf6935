//! The users-over-time chart, drawn as SVG on the server: two lines (chat users, connected
//! users) over the last 24 hours or 7 days, with a time axis and a scale. Only numbers and
//! fixed labels go into it, so no user text can reach it.

use rosey_plugin_api::db::UserCountSample;
use std::fmt::Write as _;

/// Which window the chart covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    Week,
}

impl Range {
    /// From the `range` query value (`24h`, `7d`).
    pub fn parse(s: Option<&str>) -> Option<Range> {
        match s.unwrap_or("24h") {
            "24h" | "1d" => Some(Range::Day),
            "7d" | "168h" => Some(Range::Week),
            _ => None,
        }
    }

    /// Its length in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Range::Day => 24 * 3600,
            Range::Week => 7 * 24 * 3600,
        }
    }
}

const W: f64 = 720.0;
const H: f64 = 240.0;
const LEFT: f64 = 40.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// Draws the chart of `samples` for the window ending at `now`.
pub fn svg(samples: &[UserCountSample], range: Range, now: i64) -> String {
    let start = now - range.seconds();
    let points: Vec<&UserCountSample> = samples
        .iter()
        .filter(|s| s.timestamp >= start && s.timestamp <= now)
        .collect();
    let max = points
        .iter()
        .map(|s| s.chat_users.max(s.connected_users))
        .max()
        .unwrap_or(0)
        .max(4);
    // A round scale: the next multiple of 5 (or 4 for small counts).
    let step = if max <= 8 {
        2
    } else {
        max.div_ceil(4).div_ceil(5) * 5
    };
    let top = step * 4;
    let x = |t: i64| LEFT + (t - start) as f64 / range.seconds() as f64 * (W - LEFT - RIGHT);
    let y = |v: u64| TOP + (1.0 - v as f64 / top as f64) * (H - TOP - BOTTOM);
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-label="Users over time" font-family="system-ui,sans-serif" font-size="15">"##
    );
    out.push_str(r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    for i in 0..=4u64 {
        let v = step * i;
        let yy = y(v);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e4e7ec"/><text x="{}" y="{:.1}" text-anchor="end" fill="#667085">{v}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    let ticks = match range {
        Range::Day => (0..=6).map(|i| start + i * 4 * 3600).collect::<Vec<_>>(),
        Range::Week => (0..=7).map(|i| start + i * 24 * 3600).collect::<Vec<_>>(),
    };
    for t in ticks {
        let label = rosey_plugin_api::Timestamp::from_secs(t)
            .map(|ts| ts.rfc3339())
            .unwrap_or_default();
        let label = match range {
            Range::Day => label.get(11..16).unwrap_or("").to_owned(),
            Range::Week => label.get(5..10).unwrap_or("").to_owned(),
        };
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#667085">{label}</text>"##,
            x(t),
            H - 8.0
        );
    }
    if points.is_empty() {
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#98a2b3">no samples in this window yet</text>"##,
            W / 2.0,
            H / 2.0
        );
    }
    for (color, name, pick) in [
        (
            "#7a5af8",
            "connected",
            (|s: &UserCountSample| s.connected_users) as fn(&UserCountSample) -> u64,
        ),
        ("#12b76a", "chat", |s: &UserCountSample| s.chat_users),
    ] {
        if points.is_empty() {
            continue;
        }
        let mut d = String::new();
        for (i, s) in points.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { " L" },
                x(s.timestamp),
                y(pick(s))
            );
        }
        let _ = write!(
            out,
            r##"<path class="series-{name}" d="{d}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"/>"##
        );
    }
    let _ = write!(
        out,
        r##"<g transform="translate({},{})"><rect width="10" height="3" y="-4" fill="#12b76a"/><text x="14">chat</text><rect x="50" width="10" height="3" y="-4" fill="#7a5af8"/><text x="64">connected</text></g>"##,
        LEFT + 8.0,
        TOP + 10.0
    );
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: i64, c: u64, k: u64) -> UserCountSample {
        UserCountSample {
            timestamp: t,
            chat_users: c,
            connected_users: k,
        }
    }

    #[test]
    fn draws_both_series_within_the_window() {
        let now = 1_700_000_000;
        let out = svg(
            &[
                s(now - 90_000, 50, 60),
                s(now - 3600, 3, 5),
                s(now - 60, 4, 7),
            ],
            Range::Day,
            now,
        );
        assert!(out.starts_with("<svg") && out.ends_with("</svg>"));
        assert!(out.contains("series-chat") && out.contains("series-connected"));
        // The sample older than 24 h does not set the scale.
        assert!(!out.contains(">60<"));
    }

    #[test]
    fn empty_window_says_so() {
        let out = svg(&[], Range::Week, 1_700_000_000);
        assert!(out.contains("no samples"));
        assert!(!out.contains("<path"));
        assert_eq!(Range::parse(Some("7d")), Some(Range::Week));
        assert_eq!(Range::parse(Some("1y")), None);
    }
}
