//! Capacity arithmetic: concurrent calls to replicas and back. Internally in
//! i64, saturating to i32 on output, so no input overflows.

use crate::api::{Component, HotlineSpec, Surge};

fn sat(v: i64) -> i32 {
    i32::try_from(v.clamp(0, i64::from(i32::MAX))).unwrap_or(i32::MAX)
}

/// Calls to deliver: the maximum of the standby in force and every target a
/// plan publishes (negative inputs count as 0).
pub fn target_calls(standby_now: i32, plan_targets: impl IntoIterator<Item = i32>) -> i32 {
    plan_targets
        .into_iter()
        .fold(standby_now.max(0), |acc, t| acc.max(t.max(0)))
}

/// Replicas of `component` for `target` calls:
/// clamp(ceil(target / callsPerReplica), minReplicas, maxReplicas). Should
/// `minReplicas` exceed `maxReplicas` (the schema forbids it), the ceiling
/// wins.
pub fn replicas_for(component: &Component, target_calls: i32) -> i32 {
    let per = per_replica(component);
    let need = (i64::from(target_calls.max(0)) + per - 1) / per;
    let mut r = need.max(i64::from(component.min_replicas.max(0)));
    if let Some(max) = component.max_replicas {
        r = r.min(i64::from(max.max(0)));
    }
    sat(r)
}

/// `callsPerReplica`, at least 1 (the schema's minimum) so that a bad value
/// neither divides by zero nor makes capacity unreachable.
fn per_replica(component: &Component) -> i64 {
    i64::from(component.calls_per_replica.max(1))
}

/// Calls `ready_replicas` of `component` carry.
pub fn component_ready_calls(component: &Component, ready_replicas: i32) -> i32 {
    sat(i64::from(ready_replicas.max(0)) * per_replica(component))
}

/// A hotline carries the minimum over its components (the bottleneck); 0
/// without components.
pub fn hotline_ready_calls(per_component: impl IntoIterator<Item = i32>) -> i32 {
    per_component.into_iter().min().unwrap_or(0).max(0)
}

/// Most calls `component` can carry (`maxReplicas x callsPerReplica`).
pub fn component_max_calls(component: &Component) -> Option<i32> {
    component
        .max_replicas
        .map(|m| sat(i64::from(m.max(0)) * per_replica(component)))
}

/// Most calls the hotline can ever carry: the minimum of its components'
/// ceilings; `None` when no component has `maxReplicas`.
pub fn max_calls(spec: &HotlineSpec) -> Option<i32> {
    spec.components.iter().filter_map(component_max_calls).min()
}

/// Names of the components whose ceiling is below `target`.
pub fn limiting_components(spec: &HotlineSpec, target: i32) -> Vec<String> {
    spec.components
        .iter()
        .filter(|c| component_max_calls(c).is_some_and(|m| m < target))
        .map(|c| c.name.clone())
        .collect()
}

/// Calls a surge asks of a hotline: `calls`, or `factor x` its base standby.
pub fn surge_calls(surge: &Surge, base_standby_calls: i32) -> i32 {
    match (surge.calls, surge.factor) {
        (Some(c), _) => c.max(0),
        (None, Some(f)) => sat(i64::from(f.max(0)) * i64::from(base_standby_calls.max(0))),
        (None, None) => 0,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn comp(per: i32, min: i32, max: Option<i32>) -> Component {
        Component {
            name: "c".into(),
            calls_per_replica: per,
            min_replicas: min,
            max_replicas: max,
            drain_seconds: 30,
            template: None,
            workload_ref: None,
            service: None,
        }
    }

    #[test]
    fn replicas_round_up_and_clamp() {
        assert_eq!(replicas_for(&comp(50, 1, Some(40)), 500), 10);
        assert_eq!(replicas_for(&comp(50, 1, Some(40)), 501), 11);
        assert_eq!(replicas_for(&comp(50, 1, Some(40)), 0), 1);
        assert_eq!(replicas_for(&comp(50, 3, None), 10), 3);
        assert_eq!(replicas_for(&comp(50, 1, Some(40)), 1_000_000), 40);
        assert_eq!(replicas_for(&comp(1, 0, None), i32::MAX), i32::MAX);
    }

    #[test]
    fn bad_values_the_schema_forbids_do_not_panic() {
        // callsPerReplica <= 0 counts as 1, both ways.
        assert_eq!(replicas_for(&comp(0, 1, None), 7), 7);
        assert_eq!(replicas_for(&comp(-3, 1, None), 7), 7);
        assert_eq!(component_ready_calls(&comp(0, 1, None), 7), 7);
        // minReplicas above maxReplicas: the ceiling wins.
        assert_eq!(replicas_for(&comp(10, 5, Some(3)), 0), 3);
        assert_eq!(replicas_for(&comp(10, 5, Some(3)), 1000), 3);
        // Negative targets, replicas and minimums count as 0.
        assert_eq!(replicas_for(&comp(10, -2, None), -50), 0);
        assert_eq!(component_ready_calls(&comp(10, 1, None), -4), 0);
        assert_eq!(hotline_ready_calls([-5, 10]), 0);
        // Saturation instead of overflow.
        assert_eq!(
            component_ready_calls(&comp(100_000, 1, None), i32::MAX),
            i32::MAX
        );
        assert_eq!(
            component_max_calls(&comp(i32::MAX, 1, Some(i32::MAX))),
            Some(i32::MAX)
        );
    }

    #[test]
    fn target_is_the_max_of_standby_and_plans() {
        assert_eq!(target_calls(10, []), 10);
        assert_eq!(target_calls(10, [500, 60]), 500);
        assert_eq!(target_calls(100, [60]), 100);
        assert_eq!(target_calls(-5, [-1]), 0);
    }

    #[test]
    fn ready_calls_are_the_bottleneck() {
        assert_eq!(hotline_ready_calls([500, 480]), 480);
        assert_eq!(hotline_ready_calls([]), 0);
        assert_eq!(component_ready_calls(&comp(20, 1, None), 24), 480);
    }

    #[test]
    fn ceilings_and_limiting_components() {
        let mut spec: HotlineSpec =
            serde_yaml::from_str(include_str!("../../deploy/examples/hotline.yaml"))
                .map(|h: crate::api::Hotline| h.spec)
                .expect("example parses");
        // gateway 40 x 50 = 2000, sessions 80 x 20 = 1600.
        assert_eq!(max_calls(&spec), Some(1600));
        assert_eq!(limiting_components(&spec, 1500), Vec::<String>::new());
        assert_eq!(
            limiting_components(&spec, 1800),
            vec!["sessions".to_owned()]
        );
        spec.components
            .iter_mut()
            .for_each(|c| c.max_replicas = None);
        assert_eq!(max_calls(&spec), None);
    }

    #[test]
    fn surge_by_calls_or_factor() {
        assert_eq!(
            surge_calls(
                &Surge {
                    calls: Some(500),
                    factor: None
                },
                10
            ),
            500
        );
        assert_eq!(
            surge_calls(
                &Surge {
                    calls: None,
                    factor: Some(5)
                },
                10
            ),
            50
        );
        assert_eq!(
            surge_calls(
                &Surge {
                    calls: None,
                    factor: Some(1000)
                },
                i32::MAX
            ),
            i32::MAX
        );
        assert_eq!(surge_calls(&Surge::default(), 10), 0);
    }

    proptest! {
        #[test]
        fn replicas_respect_bounds_and_cover_the_target(
            per in 1i32..10_000, min in 0i32..100, extra in 0i32..1000, has_max in any::<bool>(), target in 0i32..10_000_000,
        ) {
            let max = has_max.then_some(min + extra.max(1));
            let c = comp(per, min, max);
            let r = replicas_for(&c, target);
            prop_assert!(r >= min.min(max.unwrap_or(i32::MAX)));
            if let Some(m) = max { prop_assert!(r <= m); }
            let clamped = max.is_some_and(|m| r == m);
            if !clamped {
                prop_assert!(i64::from(r) * i64::from(per) >= i64::from(target));
                // and no replica too many
                prop_assert!(r == min || i64::from(r - 1) * i64::from(per) < i64::from(target));
            }
        }

        #[test]
        fn replicas_are_monotonic_in_the_target(per in 1i32..1000, min in 0i32..10, a in 0i32..1_000_000, b in 0i32..1_000_000) {
            let c = comp(per, min, Some(min + 500));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(replicas_for(&c, lo) <= replicas_for(&c, hi));
        }

        #[test]
        fn any_i32_input_stays_in_bounds(
            per in any::<i32>(), min in any::<i32>(), max in proptest::option::of(any::<i32>()),
            target in any::<i32>(), ready in any::<i32>(),
        ) {
            let c = comp(per, min, max);
            let r = replicas_for(&c, target);
            prop_assert!(r >= 0);
            if let Some(m) = max { prop_assert!(r <= m.max(0)); }
            prop_assert!(component_ready_calls(&c, ready) >= 0);
            prop_assert!(component_max_calls(&c).is_none_or(|m| m >= 0));
        }

        #[test]
        fn the_ready_replicas_asked_for_carry_the_target_unless_capped(
            per in 1i32..100_000, min in 0i32..100, max in proptest::option::of(1i32..10_000),
            target in 0i32..1_000_000,
        ) {
            let c = comp(per, min.min(max.unwrap_or(i32::MAX)), max);
            let carried = component_ready_calls(&c, replicas_for(&c, target));
            let ceiling = component_max_calls(&c);
            prop_assert!(carried >= target || ceiling.is_some_and(|m| carried == m && m < target));
        }

        #[test]
        fn limiting_components_are_those_below_the_target(
            comps in proptest::collection::vec((1i32..1000, proptest::option::of(1i32..100)), 1..6),
            target in 0i32..200_000,
        ) {
            let spec = HotlineSpec {
                numbers: vec!["+33123456789".into()],
                standby: crate::api::Standby::default(),
                announcement: None,
                components: comps
                    .iter()
                    .enumerate()
                    .map(|(i, (per, max))| Component { name: format!("c{i}"), ..comp(*per, 1, *max) })
                    .collect(),
            };
            let limiting = limiting_components(&spec, target);
            prop_assert_eq!(!limiting.is_empty(), max_calls(&spec).is_some_and(|m| m < target));
            for c in &spec.components {
                let capped = component_max_calls(c).is_some_and(|m| m < target);
                prop_assert_eq!(limiting.contains(&c.name), capped);
                // A limiting component cannot carry the target even at its ceiling.
                let carried = component_ready_calls(c, replicas_for(c, target));
                prop_assert_eq!(carried < target, capped);
            }
        }

        #[test]
        fn hotline_carries_its_bottleneck(calls in proptest::collection::vec(0i32..1_000_000, 1..8)) {
            let ready = hotline_ready_calls(calls.clone());
            prop_assert!(calls.contains(&ready));
            prop_assert!(calls.iter().all(|c| *c >= ready));
        }

        #[test]
        fn surge_by_factor_scales_the_standby(factor in 1i32..1000, base in 0i32..1_000_000) {
            let s = surge_calls(&Surge { calls: None, factor: Some(factor) }, base);
            prop_assert_eq!(i64::from(s), (i64::from(factor) * i64::from(base)).min(i64::from(i32::MAX)));
        }

        #[test]
        fn target_is_at_least_every_input(s in -10i32..1_000_000, ts in proptest::collection::vec(-10i32..1_000_000, 0..8)) {
            let t = target_calls(s, ts.clone());
            prop_assert!(t >= s.max(0));
            for x in ts { prop_assert!(t >= x); }
        }
    }
}
