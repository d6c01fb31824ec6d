//! The standby level at an instant, from `standby.calls` and the weekly
//! windows of `standby.schedule`, and the instant it next changes.
//!
//! - A window applies from local `start` to local `end` on each of its `days`
//!   (in the schedule's IANA time zone). An `end` at or before `start` means
//!   the window crosses midnight and ends the next day; `24:00` is the end of
//!   the day.
//! - Inside one or more windows the level is the largest of their `calls`;
//!   outside every window it is `standby.calls`.
//! - Daylight saving: a local time that does not exist (spring forward) is
//!   shifted forward by the gap (02:30 on a 02:00 -> 03:00 night is 03:30);
//!   a local time that happens twice (fall back) is the earlier one. This is
//!   jiff's (and RFC 5545 / Temporal's) "compatible" disambiguation.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::api::{Standby, StandbyWindow, Weekday};

/// The standby level now and when it changes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbyNow {
    pub calls: i32,
    /// `None` when the level never changes (no schedule, or windows that do
    /// not change it).
    pub next_change: Option<Timestamp>,
}

/// Schedule errors (the schema catches most; these are defence in depth).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("unknown IANA time zone {0:?}")]
    UnknownTimeZone(String),
    #[error("{0:?} is not a HH:MM time")]
    BadClock(String),
}

/// Parses `HH:MM` (or `24:00`) into (hour, minute).
pub fn parse_clock(s: &str) -> Result<(i8, i8), ScheduleError> {
    let bad = || ScheduleError::BadClock(s.to_owned());
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    if (h == 24 && m == 0) || ((0..24).contains(&h) && (0..60).contains(&m)) {
        Ok((h, m))
    } else {
        Err(bad())
    }
}

fn jiff_weekday(d: Weekday) -> jiff::civil::Weekday {
    use jiff::civil::Weekday as J;
    match d {
        Weekday::Mon => J::Monday,
        Weekday::Tue => J::Tuesday,
        Weekday::Wed => J::Wednesday,
        Weekday::Thu => J::Thursday,
        Weekday::Fri => J::Friday,
        Weekday::Sat => J::Saturday,
        Weekday::Sun => J::Sunday,
    }
}

/// Local date + clock to an instant (`24:00` is the next day's midnight).
fn instant(tz: &TimeZone, date: Date, (h, m): (i8, i8)) -> Option<Timestamp> {
    let (date, h) = if h == 24 {
        (date.tomorrow().ok()?, 0)
    } else {
        (date, h)
    };
    let dt = DateTime::from_parts(date, Time::new(h, m, 0, 0).ok()?);
    tz.to_ambiguous_zoned(dt)
        .compatible()
        .ok()
        .map(|z| z.timestamp())
}

/// One occurrence of a window: [start, end).
fn occurrences(
    tz: &TimeZone,
    w: &StandbyWindow,
    from: Date,
    days: i64,
) -> Result<Vec<(Timestamp, Timestamp, i32)>, ScheduleError> {
    let start = parse_clock(&w.start)?;
    let end = parse_clock(&w.end)?;
    let crosses = end <= start;
    let mut out = Vec::new();
    for i in 0..days {
        let Ok(date) = from.checked_add(i.days()) else {
            continue;
        };
        if !w.days.iter().any(|d| jiff_weekday(*d) == date.weekday()) {
            continue;
        }
        let end_date = if crosses {
            match date.tomorrow() {
                Ok(d) => d,
                Err(_) => continue,
            }
        } else {
            date
        };
        if let (Some(s), Some(e)) = (instant(tz, date, start), instant(tz, end_date, end))
            && s < e
        {
            out.push((s, e, w.calls));
        }
    }
    Ok(out)
}

/// The standby level at `at`, and when it next changes.
pub fn standby_at(standby: &Standby, at: Timestamp) -> Result<StandbyNow, ScheduleError> {
    let Some(schedule) = standby.schedule.as_ref() else {
        return Ok(StandbyNow {
            calls: standby.calls,
            next_change: None,
        });
    };
    let tz = TimeZone::get(&schedule.time_zone)
        .map_err(|_| ScheduleError::UnknownTimeZone(schedule.time_zone.clone()))?;
    let today = at.to_zoned(tz.clone()).date();
    // From two days back (a window that crossed midnight) to 9 days ahead
    // (every weekly boundary after `at` within a week).
    let from = today.checked_sub(2.days()).unwrap_or(today);
    let mut occ = Vec::new();
    for w in &schedule.windows {
        occ.extend(occurrences(&tz, w, from, 11)?);
    }
    let level = |t: Timestamp| {
        occ.iter()
            .filter(|(s, e, _)| *s <= t && t < *e)
            .map(|(_, _, c)| *c)
            .max()
            .unwrap_or(standby.calls)
    };
    let calls = level(at);
    let mut boundaries: Vec<Timestamp> = occ
        .iter()
        .flat_map(|(s, e, _)| [*s, *e])
        .filter(|b| *b > at)
        .collect();
    boundaries.sort();
    boundaries.dedup();
    let next_change = boundaries.into_iter().find(|b| level(*b) != calls);
    Ok(StandbyNow { calls, next_change })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::api::StandbySchedule;

    fn standby(tz: &str, calls: i32, windows: Vec<(&[Weekday], &str, &str, i32)>) -> Standby {
        Standby {
            calls,
            schedule: Some(StandbySchedule {
                time_zone: tz.into(),
                windows: windows
                    .into_iter()
                    .map(|(d, s, e, c)| StandbyWindow {
                        days: d.to_vec(),
                        start: s.into(),
                        end: e.into(),
                        calls: c,
                    })
                    .collect(),
            }),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    use Weekday::*;
    const WEEKDAYS: &[Weekday] = &[Mon, Tue, Wed, Thu, Fri];

    #[test]
    fn business_hours_in_paris() {
        let s = standby("Europe/Paris", 10, vec![(WEEKDAYS, "08:00", "20:00", 40)]);
        // Monday 2026-11-30 09:00 Paris = 08:00 UTC (CET, +01:00).
        let r = standby_at(&s, at("2026-11-30T08:00:00Z")).expect("ok");
        assert_eq!(
            r,
            StandbyNow {
                calls: 40,
                next_change: Some(at("2026-11-30T19:00:00Z"))
            }
        );
        // Monday 07:59 Paris: standby; changes at 08:00 Paris.
        let r = standby_at(&s, at("2026-11-30T06:59:00Z")).expect("ok");
        assert_eq!(
            r,
            StandbyNow {
                calls: 10,
                next_change: Some(at("2026-11-30T07:00:00Z"))
            }
        );
        // Saturday: next change Monday 08:00 Paris.
        let r = standby_at(&s, at("2026-12-05T12:00:00Z")).expect("ok");
        assert_eq!(
            r,
            StandbyNow {
                calls: 10,
                next_change: Some(at("2026-12-07T07:00:00Z"))
            }
        );
    }

    #[test]
    fn window_crossing_midnight() {
        let s = standby("UTC", 10, vec![(&[Fri], "22:00", "06:00", 5)]);
        // Saturday 2026-12-05 03:00 is inside Friday's night window.
        let r = standby_at(&s, at("2026-12-05T03:00:00Z")).expect("ok");
        assert_eq!(
            r,
            StandbyNow {
                calls: 5,
                next_change: Some(at("2026-12-05T06:00:00Z"))
            }
        );
    }

    #[test]
    fn end_of_day_is_24_00() {
        let s = standby("UTC", 10, vec![(&[Mon], "18:00", "24:00", 30)]);
        let r = standby_at(&s, at("2026-11-30T23:59:59Z")).expect("ok");
        assert_eq!(
            r,
            StandbyNow {
                calls: 30,
                next_change: Some(at("2026-12-01T00:00:00Z"))
            }
        );
    }

    #[test]
    fn overlapping_windows_take_the_largest() {
        let s = standby(
            "UTC",
            10,
            vec![
                (WEEKDAYS, "08:00", "20:00", 40),
                (&[Mon], "12:00", "14:00", 80),
            ],
        );
        assert_eq!(
            standby_at(&s, at("2026-11-30T13:00:00Z"))
                .expect("ok")
                .calls,
            80
        );
        assert_eq!(
            standby_at(&s, at("2026-11-30T15:00:00Z"))
                .expect("ok")
                .calls,
            40
        );
        assert_eq!(
            standby_at(&s, at("2026-11-30T11:00:00Z"))
                .expect("ok")
                .next_change,
            Some(at("2026-11-30T12:00:00Z"))
        );
    }

    #[test]
    fn spring_forward_gap_starts_after_the_gap() {
        // 2026-03-29 Europe/Paris: 02:00 -> 03:00. A window at 02:30 starts
        // at 03:30 CEST = 01:30 UTC (shifted forward by the one-hour gap).
        let s = standby("Europe/Paris", 10, vec![(&[Sun], "02:30", "04:00", 20)]);
        let r = standby_at(&s, at("2026-03-29T00:30:00Z")).expect("ok");
        assert_eq!(
            r,
            StandbyNow {
                calls: 10,
                next_change: Some(at("2026-03-29T01:30:00Z"))
            }
        );
        assert_eq!(
            standby_at(&s, at("2026-03-29T01:45:00Z"))
                .expect("ok")
                .calls,
            20
        );
        // 04:00 CEST = 02:00 UTC.
        assert_eq!(
            standby_at(&s, at("2026-03-29T01:45:00Z"))
                .expect("ok")
                .next_change,
            Some(at("2026-03-29T02:00:00Z"))
        );
    }

    #[test]
    fn fall_back_fold_takes_the_earlier() {
        // 2026-10-25 Europe/Paris: 03:00 CEST -> 02:00 CET. 02:30 happens twice; the first is 00:30 UTC.
        let s = standby("Europe/Paris", 10, vec![(&[Sun], "02:30", "05:00", 20)]);
        let r = standby_at(&s, at("2026-10-25T00:00:00Z")).expect("ok");
        assert_eq!(
            r,
            StandbyNow {
                calls: 10,
                next_change: Some(at("2026-10-25T00:30:00Z"))
            }
        );
        // 05:00 CET = 04:00 UTC.
        assert_eq!(
            standby_at(&s, at("2026-10-25T01:00:00Z"))
                .expect("ok")
                .next_change,
            Some(at("2026-10-25T04:00:00Z"))
        );
    }

    #[test]
    fn no_schedule_never_changes_and_bad_zone_is_an_error() {
        let s = Standby {
            calls: 7,
            schedule: None,
        };
        assert_eq!(
            standby_at(&s, at("2026-11-30T00:00:00Z")),
            Ok(StandbyNow {
                calls: 7,
                next_change: None
            })
        );
        let s = standby("Mars/Olympus", 10, vec![(WEEKDAYS, "08:00", "20:00", 40)]);
        assert_eq!(
            standby_at(&s, at("2026-11-30T00:00:00Z")),
            Err(ScheduleError::UnknownTimeZone("Mars/Olympus".into()))
        );
        // A window at the standby level changes nothing.
        let s = standby("UTC", 10, vec![(WEEKDAYS, "08:00", "20:00", 10)]);
        assert_eq!(
            standby_at(&s, at("2026-11-30T09:00:00Z"))
                .expect("ok")
                .next_change,
            None
        );
    }

    #[test]
    fn clocks() {
        assert_eq!(parse_clock("08:30"), Ok((8, 30)));
        assert_eq!(parse_clock("24:00"), Ok((24, 0)));
        for bad in ["24:01", "8:30", "08-30", "25:00", "08:60"] {
            assert!(parse_clock(bad).is_err(), "{bad}");
        }
    }

    fn arb_weekdays() -> impl Strategy<Value = Vec<Weekday>> {
        proptest::sample::subsequence(vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun], 1..=7)
    }

    fn arb_clock() -> impl Strategy<Value = String> {
        (0i8..24, prop_oneof![Just(0i8), Just(30), 0i8..60])
            .prop_map(|(h, m)| format!("{h:02}:{m:02}"))
    }

    fn arb_standby() -> impl Strategy<Value = Standby> {
        let window = (arb_weekdays(), arb_clock(), arb_clock(), 0i32..100)
            .prop_filter("start != end", |(_, s, e, _)| s != e)
            .prop_map(|(days, start, end, calls)| StandbyWindow {
                days,
                start,
                end,
                calls,
            });
        (
            0i32..100,
            proptest::collection::vec(window, 1..4),
            prop_oneof![
                Just("UTC"),
                Just("Europe/Paris"),
                Just("America/New_York"),
                Just("Australia/Lord_Howe")
            ],
        )
            .prop_map(|(calls, windows, tz)| Standby {
                calls,
                schedule: Some(StandbySchedule {
                    time_zone: tz.into(),
                    windows,
                }),
            })
    }

    proptest! {
        #[test]
        fn next_change_is_a_real_change_and_nothing_changes_before_it(
            s in arb_standby(),
            secs in 1_700_000_000i64..1_900_000_000,
            fractions in proptest::collection::vec(0.0f64..1.0, 4),
        ) {
            let t = Timestamp::from_second(secs).expect("in range");
            let now = standby_at(&s, t).expect("valid");
            if let Some(next) = now.next_change {
                prop_assert!(next > t);
                prop_assert_ne!(standby_at(&s, next).expect("valid").calls, now.calls);
                let span = next.duration_since(t).as_secs_f64();
                for f in fractions {
                    let mid = t + jiff::SignedDuration::from_secs_f64(span * f);
                    if mid < next {
                        prop_assert_eq!(standby_at(&s, mid).expect("valid").calls, now.calls);
                    }
                }
            }
        }
    }
}
