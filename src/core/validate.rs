//! Validation the schema cannot express. Each problem becomes part of a
//! `Valid=False` condition (first problem's reason) and a Warning Event; the
//! object is not acted upon until it is fixed.

use std::collections::BTreeSet;

use super::Problem;
use super::duration::parse_duration;
use super::schedule::parse_clock;
use crate::api::{CrisisPlanSpec, HotlineSpec, PodTemplate};

pub const UNKNOWN_TIME_ZONE: &str = "UnknownTimeZone";
pub const INVALID_SCHEDULE: &str = "InvalidSchedule";
pub const DUPLICATE_NAME: &str = "DuplicateName";
pub const INVALID_TEMPLATE: &str = "InvalidTemplate";
pub const INVALID_DURATION: &str = "InvalidDuration";
pub const INVALID_DRILL_SCHEDULE: &str = "InvalidDrillSchedule";
pub const UNKNOWN_SCENARIO: &str = "UnknownScenario";

fn duplicates<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = BTreeSet::new();
    names.into_iter().filter(|n| !seen.insert(*n)).collect()
}

/// Problems of a Hotline spec.
pub fn validate_hotline(spec: &HotlineSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(s) = spec.standby.schedule.as_ref() {
        if jiff::tz::TimeZone::get(&s.time_zone).is_err() {
            out.push(Problem::new(
                UNKNOWN_TIME_ZONE,
                format!(
                    "spec.standby.schedule.timeZone: unknown IANA time zone {:?}",
                    s.time_zone
                ),
            ));
        }
        for (i, w) in s.windows.iter().enumerate() {
            let mut clocks = Vec::with_capacity(2);
            for (field, v) in [("start", &w.start), ("end", &w.end)] {
                match parse_clock(v) {
                    Ok(c) => clocks.push(c),
                    Err(e) => out.push(Problem::new(
                        INVALID_SCHEDULE,
                        format!("spec.standby.schedule.windows[{i}].{field}: {e}"),
                    )),
                }
            }
            // The CEL rule compares the strings; `24:00` to `00:00` passes it
            // but is the same instant, an empty window.
            if let [(24, 0), (0, 0)] = clocks[..] {
                out.push(Problem::new(
                    INVALID_SCHEDULE,
                    format!(
                        "spec.standby.schedule.windows[{i}]: start 24:00 and end 00:00 are the same instant, the window is empty"
                    ),
                ));
            }
        }
    }
    for d in duplicates(spec.components.iter().map(|c| c.name.as_str())) {
        out.push(Problem::new(
            DUPLICATE_NAME,
            format!("spec.components: duplicate component name {d:?}"),
        ));
    }
    for (i, c) in spec.components.iter().enumerate() {
        match c.template.as_ref().map(PodTemplate::spec) {
            Some(Ok(t)) if t.spec.as_ref().is_none_or(|p| p.containers.is_empty()) => {
                out.push(Problem::new(
                    INVALID_TEMPLATE,
                    format!(
                        "spec.components[{i}].template.spec.containers: at least one container"
                    ),
                ));
            }
            Some(Err(e)) => out.push(Problem::new(
                INVALID_TEMPLATE,
                format!("spec.components[{i}].template: {e}"),
            )),
            _ => {}
        }
    }
    out
}

fn cron_field(field: &str, min: u32, max: u32, names: &[&str]) -> bool {
    let value = |v: &str| -> Option<u32> {
        if let Ok(n) = v.parse::<u32>() {
            return (min..=max).contains(&n).then_some(n);
        }
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(v))
            .and_then(|p| u32::try_from(p).ok())
            .map(|p| p + min)
    };
    field.split(',').all(|part| {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        if let Some(s) = step
            && s.parse::<u32>().map_or(true, |n| n == 0 || n > max)
        {
            return false;
        }
        if range == "*" {
            return true;
        }
        match range.split_once('-') {
            Some((a, b)) => matches!((value(a), value(b)), (Some(a), Some(b)) if a <= b),
            None => value(range).is_some(),
        }
    }) && !field.is_empty()
}

/// Whether a five-field cron expression is valid (ranges, lists, steps,
/// month and weekday names).
pub fn valid_cron(expr: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let f: Vec<&str> = expr.split_whitespace().collect();
    f.len() == 5
        && cron_field(f[0], 0, 59, &[])
        && cron_field(f[1], 0, 23, &[])
        && cron_field(f[2], 1, 31, &[])
        && cron_field(f[3], 1, 12, &MONTHS)
        && cron_field(f[4], 0, 7, &DAYS)
}

/// Problems of a CrisisPlan spec.
pub fn validate_plan(spec: &CrisisPlanSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    match parse_duration(&spec.time_budget) {
        Ok(d) if d.is_zero() => out.push(Problem::new(
            INVALID_DURATION,
            "spec.timeBudget: must be more than 0s",
        )),
        Ok(_) => {}
        Err(e) => out.push(Problem::new(
            INVALID_DURATION,
            format!("spec.timeBudget: {e}"),
        )),
    }
    for (i, s) in spec.scenarios.iter().enumerate() {
        for (j, e) in s.escalation.iter().enumerate() {
            if let Err(err) = parse_duration(&e.after) {
                out.push(Problem::new(
                    INVALID_DURATION,
                    format!("spec.scenarios[{i}].escalation[{j}].after: {err}"),
                ));
            }
        }
    }
    if let Some(sd) = spec.exit.as_ref().and_then(|e| e.step_down.as_ref()) {
        match parse_duration(&sd.every) {
            Ok(d) if d.is_zero() => out.push(Problem::new(
                INVALID_DURATION,
                "spec.exit.stepDown.every: must be more than 0s",
            )),
            Ok(_) => {}
            Err(e) => out.push(Problem::new(
                INVALID_DURATION,
                format!("spec.exit.stepDown.every: {e}"),
            )),
        }
    }
    if let Some(d) = spec.drills.as_ref() {
        if !valid_cron(&d.schedule) {
            out.push(Problem::new(
                INVALID_DRILL_SCHEDULE,
                format!(
                    "spec.drills.schedule: {:?} is not a valid five-field cron expression",
                    d.schedule
                ),
            ));
        }
        if let Err(e) = parse_duration(&d.duration) {
            out.push(Problem::new(
                INVALID_DURATION,
                format!("spec.drills.duration: {e}"),
            ));
        }
        if let Some(p) = declaration_problem(spec, &d.scenario) {
            out.push(Problem::new(
                UNKNOWN_SCENARIO,
                p.message
                    .replace("status.declaration.scenario", "spec.drills.scenario"),
            ));
        }
    }
    for d in duplicates(spec.scenarios.iter().map(|s| s.name.as_str())) {
        out.push(Problem::new(
            DUPLICATE_NAME,
            format!("spec.scenarios: duplicate scenario name {d:?}"),
        ));
    }
    for d in duplicates(spec.hotlines.iter().map(|h| h.name.as_str())) {
        out.push(Problem::new(
            DUPLICATE_NAME,
            format!("spec.hotlines: duplicate hotline {d:?}"),
        ));
    }
    out
}

/// The problem with declaring `scenario` on a plan, if any.
pub fn declaration_problem(spec: &CrisisPlanSpec, scenario: &str) -> Option<Problem> {
    if spec.scenarios.iter().any(|s| s.name == scenario) {
        return None;
    }
    let known = spec
        .scenarios
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    Some(Problem::new(
        UNKNOWN_SCENARIO,
        format!(
            "status.declaration.scenario: {scenario:?} is not a scenario of this plan (known: {known})"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CrisisPlan, Hotline};

    fn hotline() -> HotlineSpec {
        serde_yaml::from_str::<Hotline>(include_str!("../../deploy/examples/hotline.yaml"))
            .expect("example")
            .spec
    }

    /// Edits component 0's pod template in place.
    fn edit_template(
        h: &mut HotlineSpec,
        edit: impl FnOnce(&mut k8s_openapi::api::core::v1::PodTemplateSpec),
    ) {
        let t = h.components[0]
            .template
            .as_ref()
            .expect("managed component");
        let mut spec = t.spec().expect("template parses");
        edit(&mut spec);
        h.components[0].template = Some(PodTemplate::new(&spec).expect("template serializes"));
    }

    fn plan() -> CrisisPlanSpec {
        serde_yaml::from_str::<CrisisPlan>(include_str!("../../deploy/examples/crisisplan.yaml"))
            .expect("example")
            .spec
    }

    fn reasons(p: &[Problem]) -> Vec<&'static str> {
        p.iter().map(|p| p.reason).collect()
    }

    #[test]
    fn examples_are_valid() {
        assert_eq!(validate_hotline(&hotline()), vec![]);
        assert_eq!(validate_plan(&plan()), vec![]);
    }

    #[test]
    fn hotline_problems_name_the_field() {
        let mut h = hotline();
        if let Some(s) = h.standby.schedule.as_mut() {
            s.time_zone = "Mars/Olympus".into();
            s.windows[0].start = "8h".into();
        }
        h.components[1].name = "gateway".into();
        edit_template(&mut h, |t| {
            if let Some(p) = t.spec.as_mut() {
                p.containers.clear();
            }
        });
        let p = validate_hotline(&h);
        assert_eq!(
            reasons(&p),
            vec![
                UNKNOWN_TIME_ZONE,
                INVALID_SCHEDULE,
                DUPLICATE_NAME,
                INVALID_TEMPLATE
            ]
        );
        assert!(
            p[0].message.starts_with("spec.standby.schedule.timeZone"),
            "{}",
            p[0]
        );
        assert!(
            p[1].message
                .starts_with("spec.standby.schedule.windows[0].start"),
            "{}",
            p[1]
        );
        assert!(
            p[3].message
                .starts_with("spec.components[0].template.spec.containers"),
            "{}",
            p[3]
        );
    }

    #[test]
    fn plan_problems_name_the_field() {
        let mut s = plan();
        s.time_budget = "0s".into();
        s.scenarios[0].escalation[0].after = "soon".into();
        if let Some(d) = s.drills.as_mut() {
            d.schedule = "61 * * * *".into();
            d.scenario = "earthquake".into();
        }
        let p = validate_plan(&s);
        assert_eq!(
            reasons(&p),
            vec![
                INVALID_DURATION,
                INVALID_DURATION,
                INVALID_DRILL_SCHEDULE,
                UNKNOWN_SCENARIO
            ]
        );
        assert!(
            p[1].message
                .starts_with("spec.scenarios[0].escalation[0].after"),
            "{}",
            p[1]
        );
        assert!(p[3].message.starts_with("spec.drills.scenario"), "{}", p[3]);
    }

    /// The problems of `spec` after `mutate`, as (reason, message).
    fn plan_problems(mutate: impl FnOnce(&mut CrisisPlanSpec)) -> Vec<(&'static str, String)> {
        let mut s = plan();
        mutate(&mut s);
        validate_plan(&s)
            .into_iter()
            .map(|p| (p.reason, p.message))
            .collect()
    }

    fn hotline_problems(mutate: impl FnOnce(&mut HotlineSpec)) -> Vec<(&'static str, String)> {
        let mut h = hotline();
        mutate(&mut h);
        validate_hotline(&h)
            .into_iter()
            .map(|p| (p.reason, p.message))
            .collect()
    }

    fn one(reason: &'static str, message: &str) -> Vec<(&'static str, String)> {
        vec![(reason, message.to_owned())]
    }

    #[test]
    fn each_hotline_problem_alone() {
        assert_eq!(
            hotline_problems(|h| {
                if let Some(s) = h.standby.schedule.as_mut() {
                    s.time_zone = "Mars/Olympus".into();
                }
            }),
            one(
                UNKNOWN_TIME_ZONE,
                "spec.standby.schedule.timeZone: unknown IANA time zone \"Mars/Olympus\""
            )
        );
        assert_eq!(
            hotline_problems(|h| {
                if let Some(s) = h.standby.schedule.as_mut() {
                    s.windows[1].end = "24:30".into();
                }
            }),
            one(
                INVALID_SCHEDULE,
                "spec.standby.schedule.windows[1].end: \"24:30\" is not a HH:MM time"
            )
        );
        assert_eq!(
            hotline_problems(|h| {
                if let Some(s) = h.standby.schedule.as_mut() {
                    s.windows[0].start = "24:00".into();
                    s.windows[0].end = "00:00".into();
                }
            }),
            one(
                INVALID_SCHEDULE,
                "spec.standby.schedule.windows[0]: start 24:00 and end 00:00 are the same instant, the window is empty"
            )
        );
        assert_eq!(
            hotline_problems(|h| h.components[1].name = "gateway".into()),
            one(
                DUPLICATE_NAME,
                "spec.components: duplicate component name \"gateway\""
            )
        );
        assert_eq!(
            hotline_problems(|h| {
                edit_template(h, |t| t.spec = None);
            }),
            one(
                INVALID_TEMPLATE,
                "spec.components[0].template.spec.containers: at least one container"
            )
        );
        // A workloadRef to a core-group kind (apiVersion without a group) is fine.
        assert_eq!(
            hotline_problems(|h| {
                if let Some(r) = h.components[1].workload_ref.as_mut() {
                    r.api_version = "v1".into();
                    r.kind = "ReplicationController".into();
                }
            }),
            vec![]
        );
        // No schedule at all is fine; so is 24:00 as an end.
        assert_eq!(hotline_problems(|h| h.standby.schedule = None), vec![]);
        assert_eq!(
            hotline_problems(|h| {
                if let Some(s) = h.standby.schedule.as_mut() {
                    s.windows[0].end = "24:00".into();
                }
            }),
            vec![]
        );
    }

    #[test]
    fn each_plan_problem_alone() {
        assert_eq!(
            plan_problems(|s| s.time_budget = "5 minutes".into()),
            one(
                INVALID_DURATION,
                "spec.timeBudget: \"5 minutes\" is not a duration, write whole numbers with units ms, s, m, h (e.g. 90s, 5m, 1h30m)"
            )
        );
        assert_eq!(
            plan_problems(|s| s.time_budget = "0m0s".into()),
            one(INVALID_DURATION, "spec.timeBudget: must be more than 0s")
        );
        assert_eq!(
            plan_problems(|s| s.scenarios[1].escalation[1].after = "".into())[0].1,
            "spec.scenarios[1].escalation[1].after: \"\" is empty, write a duration such as 90s, 5m or 1h30m"
        );
        let step_down = |every: &str| {
            let every = every.to_owned();
            plan_problems(move |s| {
                s.exit = Some(crate::api::Exit {
                    step_down: Some(crate::api::StepDown { percent: 25, every }),
                });
            })
        };
        assert_eq!(
            step_down("0s"),
            one(
                INVALID_DURATION,
                "spec.exit.stepDown.every: must be more than 0s"
            )
        );
        assert_eq!(step_down("5d")[0].0, INVALID_DURATION);
        assert!(
            step_down("5d")[0]
                .1
                .starts_with("spec.exit.stepDown.every: \"5d\"")
        );
        assert_eq!(step_down("30s"), vec![]);
        assert_eq!(
            plan_problems(|s| {
                if let Some(d) = s.drills.as_mut() {
                    d.duration = "30".into();
                }
            })[0],
            (
                INVALID_DURATION,
                "spec.drills.duration: \"30\" is not a duration, write whole numbers with units ms, s, m, h (e.g. 90s, 5m, 1h30m)".to_owned()
            )
        );
        assert_eq!(
            plan_problems(|s| {
                if let Some(d) = s.drills.as_mut() {
                    d.schedule = "0 10 1 3,9 ?".into();
                }
            }),
            one(
                INVALID_DRILL_SCHEDULE,
                "spec.drills.schedule: \"0 10 1 3,9 ?\" is not a valid five-field cron expression"
            )
        );
        assert_eq!(
            plan_problems(|s| {
                if let Some(d) = s.drills.as_mut() {
                    d.scenario = "earthquake".into();
                }
            }),
            one(
                UNKNOWN_SCENARIO,
                "spec.drills.scenario: \"earthquake\" is not a scenario of this plan (known: it-outage, strike, product-recall, rumour, natural-disaster)"
            )
        );
        assert_eq!(
            plan_problems(|s| s.scenarios[2].name = "strike".into()),
            one(
                DUPLICATE_NAME,
                "spec.scenarios: duplicate scenario name \"strike\""
            )
        );
        assert_eq!(
            plan_problems(|s| s.hotlines.push(s.hotlines[0].clone())),
            one(
                DUPLICATE_NAME,
                "spec.hotlines: duplicate hotline \"customer-care\""
            )
        );
        // Optional parts may be absent.
        assert_eq!(
            plan_problems(|s| {
                s.exit = None;
                s.drills = None;
            }),
            vec![]
        );
    }

    #[test]
    fn unknown_declaration_lists_the_known_scenarios() {
        let p = declaration_problem(&plan(), "earthquake").expect("problem");
        assert_eq!(p.reason, UNKNOWN_SCENARIO);
        assert!(
            p.message.contains("\"earthquake\"") && p.message.contains("it-outage, strike"),
            "{p}"
        );
        assert!(declaration_problem(&plan(), "strike").is_none());
    }

    proptest::proptest! {
        #[test]
        fn cron_never_panics(expr in "[0-9A-Za-z*,/ ?-]{0,40}") {
            let _ = valid_cron(&expr);
        }

        #[test]
        fn cron_fields_in_range_are_valid(
            minute in 0u32..60, hour in 0u32..24, dom in 1u32..32, month in 1u32..13, dow in 0u32..8,
            step in 1u32..=12,
        ) {
            let expr = format!("{minute} {hour} {dom} {month} {dow}");
            proptest::prop_assert!(valid_cron(&expr), "{}", expr);
            let expr = format!("*/{step} {hour}-23 1,{dom} {month}-12/{step} {dow}");
            proptest::prop_assert!(valid_cron(&expr), "{}", expr);
        }

        #[test]
        fn cron_fields_out_of_range_are_invalid(field in 0usize..5, over in 0u32..100) {
            // One past each field's maximum, or below its minimum (0 for the
            // 1-based day of month and month).
            let limits = [60u32, 24, 32, 13, 8];
            let mut fields = ["0", "0", "1", "1", "0"].map(str::to_owned);
            fields[field] = (limits[field] + over).to_string();
            proptest::prop_assert!(!valid_cron(&fields.join(" ")));
            if field == 2 || field == 3 {
                fields[field] = "0".into();
                proptest::prop_assert!(!valid_cron(&fields.join(" ")));
            }
        }
    }

    #[test]
    fn cron_expressions() {
        for ok in [
            "0 10 1 3,9 *",
            "*/15 8-18 * * MON-FRI",
            "0 0 * * 7",
            "30 2 1-7 JAN,jul 0",
        ] {
            assert!(valid_cron(ok), "{ok}");
        }
        for bad in [
            "0 10 1 3,9",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "*/0 * * * *",
            "* * * * FOO",
            "5-1 * * * *",
        ] {
            assert!(!valid_cron(bad), "{bad}");
        }
    }
}
