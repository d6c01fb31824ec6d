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
//!   jiff's (and RFC 5545 / Temporal's) "compatible" disambiguation. A
//!   window that this leaves empty on that day (e.g. 02:00-02:30 on a spring
//!   forward night) does not apply that day.
//! - The next change is the first window boundary strictly after the instant
//!   where the level differs; boundaries are searched over the next 8 days,
//!   more than a local week whatever the DST shift, so a level that does not
//!   change within them never changes (`None`).

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

/// How far after `at` a change is searched for (see [`standby_at`]).
const SEARCH_HORIZON: jiff::SignedDuration = jiff::SignedDuration::from_hours(8 * 24);
/// Local days of window occurrences generated: two before `at`'s date, its
/// date, and ten after (8 days of horizon, one of DST or offset slack, one
/// for a window crossing midnight).
const OCCURRENCE_DAYS: i64 = 13;

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
    // Boundaries are searched in (at, at + 8 days]: the levels repeat every
    // local week, and a local week lasts at most 7 days and a DST shift, so a
    // level that does not change within 8 days never changes. Occurrences
    // start two local days back (a window still open at `at` started at most
    // ~25h before it) and run two days past the horizon, so the level is
    // exact at every boundary searched: without that margin, the last
    // boundary generated would look like a change (a window ending with no
    // next one generated after it).
    let horizon = at.checked_add(SEARCH_HORIZON).unwrap_or(Timestamp::MAX);
    let from = today.checked_sub(2.days()).unwrap_or(today);
    let mut occ = Vec::new();
    for w in &schedule.windows {
        occ.extend(occurrences(&tz, w, from, OCCURRENCE_DAYS)?);
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
        .filter(|b| *b > at && *b <= horizon)
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
    fn a_level_that_never_changes_has_no_next_change() {
        const ALL: &[Weekday] = &[Mon, Tue, Wed, Thu, Fri, Sat, Sun];
        // One window all day, every day.
        let s = standby("Europe/Paris", 10, vec![(ALL, "00:00", "24:00", 40)]);
        assert_eq!(
            standby_at(&s, at("2026-11-30T08:00:00Z")),
            Ok(StandbyNow {
                calls: 40,
                next_change: None
            })
        );
        // Two windows tiling the week, one crossing midnight, across both DST
        // changes.
        let s = standby(
            "Europe/Paris",
            10,
            vec![(ALL, "08:00", "20:00", 40), (ALL, "20:00", "08:00", 40)],
        );
        for t in [
            "2026-03-27T12:00:00Z",
            "2026-03-29T01:30:00Z",
            "2026-10-23T12:00:00Z",
            "2026-10-25T00:30:00Z",
            "2026-11-30T19:00:00Z",
        ] {
            assert_eq!(
                standby_at(&s, at(t)),
                Ok(StandbyNow {
                    calls: 40,
                    next_change: None
                }),
                "{t}"
            );
        }
    }

    #[test]
    fn weekly_window_is_found_a_week_ahead() {
        // Just after Monday's window ends, the next change is next Monday.
        let s = standby("Europe/Paris", 10, vec![(&[Mon], "08:00", "20:00", 40)]);
        assert_eq!(
            standby_at(&s, at("2026-11-30T19:00:00Z")),
            Ok(StandbyNow {
                calls: 10,
                next_change: Some(at("2026-12-07T07:00:00Z"))
            })
        );
        // Across the fall-back weekend: Monday 2026-10-26 08:00 CET = 07:00 UTC,
        // a week and an hour after Monday 2026-10-19 08:00 CEST.
        assert_eq!(
            standby_at(&s, at("2026-10-19T06:00:01Z")),
            Ok(StandbyNow {
                calls: 40,
                next_change: Some(at("2026-10-19T18:00:00Z"))
            })
        );
        assert_eq!(
            standby_at(&s, at("2026-10-19T18:00:00Z")),
            Ok(StandbyNow {
                calls: 10,
                next_change: Some(at("2026-10-26T07:00:00Z"))
            })
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

    /// Clock times, often around the 01:00-03:00 DST changes and `24:00`.
    fn arb_clock() -> impl Strategy<Value = String> {
        prop_oneof![
            (0i8..24, prop_oneof![Just(0i8), Just(30), 0i8..60])
                .prop_map(|(h, m)| format!("{h:02}:{m:02}")),
            (1i8..4, prop_oneof![Just(0i8), Just(30)]).prop_map(|(h, m)| format!("{h:02}:{m:02}")),
            Just("24:00".to_owned()),
        ]
    }

    /// Standby schedules, with few distinct levels (so windows often agree
    /// with each other or with the standby) and sometimes a window covering
    /// the whole week (so the level may never change).
    fn arb_standby() -> impl Strategy<Value = Standby> {
        let level = (0i32..4).prop_map(|c| c * 10);
        let window = (arb_weekdays(), arb_clock(), arb_clock(), level.clone())
            .prop_filter("start != end", |(_, s, e, _)| s != e)
            .prop_map(|(days, start, end, calls)| StandbyWindow {
                days,
                start,
                end,
                calls,
            });
        (
            level.clone(),
            proptest::collection::vec(window, 1..4),
            proptest::option::of(level),
            prop_oneof![
                Just("UTC"),
                Just("Europe/Paris"),
                Just("America/New_York"),
                Just("Australia/Lord_Howe"),
                Just("Pacific/Chatham"),
            ],
        )
            .prop_map(|(calls, mut windows, all_week, tz)| {
                if let Some(c) = all_week {
                    windows.push(StandbyWindow {
                        days: vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun],
                        start: "00:00".into(),
                        end: "24:00".into(),
                        calls: c,
                    });
                }
                Standby {
                    calls,
                    schedule: Some(StandbySchedule {
                        time_zone: tz.into(),
                        windows,
                    }),
                }
            })
    }

    /// Instants from 2023 to 2030: any second, whole minutes (window
    /// boundaries), or within a day of a DST change in Europe or the US.
    fn arb_instant() -> impl Strategy<Value = Timestamp> {
        const DST: [i64; 4] = [
            1_774_746_000, // 2026-03-29T01:00:00Z, Europe spring forward
            1_792_890_000, // 2026-10-25T01:00:00Z, Europe fall back
            1_772_953_200, // 2026-03-08T07:00:00Z, New York spring forward
            1_793_512_800, // 2026-11-01T06:00:00Z, New York fall back
        ];
        prop_oneof![
            1_700_000_000i64..1_900_000_000,
            (28_333_334i64..31_666_666).prop_map(|m| m * 60),
            (proptest::sample::select(DST.to_vec()), -86_400i64..86_400)
                .prop_map(|(d, off)| d + off),
        ]
        .prop_map(|s| Timestamp::from_second(s).expect("in range"))
    }

    proptest! {
        #[test]
        fn next_change_is_a_real_change_and_nothing_changes_before_it(
            s in arb_standby(),
            t in arb_instant(),
            fractions in proptest::collection::vec(0.0f64..1.0, 4),
        ) {
            let now = standby_at(&s, t).expect("valid");
            let level = |x: Timestamp| standby_at(&s, x).expect("valid").calls;
            match now.next_change {
                Some(next) => {
                    prop_assert!(next > t);
                    prop_assert_ne!(level(next), now.calls);
                    // Exact: the level has not changed a nanosecond before.
                    prop_assert_eq!(level(next - jiff::SignedDuration::from_nanos(1)), now.calls);
                    let span = next.duration_since(t).as_secs_f64();
                    for f in fractions {
                        let mid = t + jiff::SignedDuration::from_secs_f64(span * f);
                        if mid < next {
                            prop_assert_eq!(level(mid), now.calls);
                        }
                    }
                }
                None => {
                    // Never changes: sampled over the next five weeks.
                    for f in fractions {
                        let later = t + jiff::SignedDuration::from_secs_f64(35.0 * 86_400.0 * f);
                        prop_assert_eq!(level(later), now.calls, "at {}", later);
                    }
                }
            }
        }

        #[test]
        fn next_change_agrees_with_the_level_just_after_it(s in arb_standby(), t in arb_instant()) {
            // Following next_change from one change to the next: each change
            // is found again from just before it, and levels alternate.
            let mut at = t;
            for _ in 0..6 {
                let now = standby_at(&s, at).expect("valid");
                let Some(next) = now.next_change else { break };
                let again = standby_at(&s, next - jiff::SignedDuration::from_secs(1)).expect("valid");
                prop_assert_eq!(again.next_change, Some(next));
                prop_assert_eq!(again.calls, now.calls);
                at = next;
            }
        }
    }
}
