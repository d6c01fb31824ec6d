//! The crisis lifecycle state machine of a `CrisisPlan`: a pure function of
//! (spec, status, observed hotlines, now) returning the new status (the
//! operator-owned fields only), the Events to emit, and when to be called
//! again. No I/O, no clock.
//!
//! # Phases and transitions
//!
//! A status without a phase is `Standby`. "Ready" means: at least one targeted
//! hotline exists, and every existing one has `readyCalls >= targetCalls`.
//!
//! | From      | To        | When                                                      | Events                         |
//! |-----------|-----------|-----------------------------------------------------------|--------------------------------|
//! | Standby   | Surging   | a declaration naming a known scenario appears             | `CrisisDeclared`               |
//! | Surging   | Active    | ready                                                     | `SurgeReady` (met or missed)   |
//! | Surging   | Surging   | the declared scenario changes (re-target)                 | `ScenarioChanged`              |
//! | Surging   | Exiting   | the declaration is removed                                | `ExitStarted`                  |
//! | Active    | Surging   | the declared scenario changes (re-target)                 | `ScenarioChanged`              |
//! | Active    | Exiting   | the declaration is removed                                | `ExitStarted`                  |
//! | Exiting   | Surging   | a declaration appears: a NEW crisis, the old one goes to history (`endedAt` = now) | `CrisisDeclared` |
//! | Exiting   | Exiting   | a step-down step falls due                                | `StepDown` (latest step only)  |
//! | Exiting   | Standby   | the last step falls due: the record goes to history       | `StepDown`, `BackToStandby`    |
//!
//! Several edges may be taken in one call (declared and already ready:
//! Standby -> Surging -> Active; a zero `every`: Active -> Exiting -> Standby),
//! each with its Events. No other edge exists; in particular an `Active` crisis
//! whose capacity falls below target later stays `Active` (condition
//! `SurgeReady=False`, reason `CapacityLost`): the surge was delivered, and the
//! time-to-surge measured, once.
//!
//! # While in a phase
//!
//! | Phase           | Published `targetCalls` per hotline                           | Time-driven (and `requeue_at`)                        |
//! |-----------------|---------------------------------------------------------------|-------------------------------------------------------|
//! | Standby         | none                                                          | nothing                                               |
//! | Surging, Active | `max(standbyNow, surge)`                                      | escalation steps; in Surging, the deadline            |
//! | Exiting         | `max(standbyNow, ceil(surge * (100 - k*percent) / 100))`      | step `k` of `n = ceil(100/percent)` at `exit + k*every` |
//!
//! `surge` is the scenario's `surge.calls`, or `surge.factor x standby.calls`
//! (saturating). A surge smaller than the standby in force publishes the
//! standby: the hotline delivers the maximum anyway, and readiness is judged
//! on what it will actually deliver.
//!
//! # Rules
//!
//! - **Budget.** The deadline is `surgeStartedAt + timeBudget`. Ready at an
//!   instant `<= deadline` is met. Not ready at an instant `>= deadline` is
//!   exceeded: `budgetMet=false` (once), `WithinBudget=False`, a Warning
//!   `BudgetExceeded` naming the short hotlines (and the components capping
//!   them). Becoming ready later still moves to `Active` with a `SurgeReady`
//!   event saying `missed`.
//! - **Re-target.** `declaredAt` and the escalation records are kept;
//!   `surgeStartedAt`, `deadline` restart now; the readiness results are
//!   cleared.
//! - **Escalation.** A step of the current scenario is announced (recorded in
//!   `current.escalations`, `EscalationStep` event) once `after` has elapsed
//!   since `declaredAt`, while Surging or Active. Steps are matched to records
//!   by `(after, notify)`, so re-targeting never repeats a step both
//!   scenarios share.
//! - **Step-down.** `spec.exit.stepDown`, by default 25% every 5m. A zero
//!   `every` takes every step at once.
//! - **Missing hotline.** `Valid=False` reason `HotlineNotFound`, a Warning
//!   once; it gets no target and does not block readiness (judged on existing
//!   hotlines): the hotlines that exist still surge and are measured. With no
//!   existing hotline at all the plan is never ready.
//! - **Capacity ceiling.** The surge is published even when a hotline cannot
//!   carry it (its `maxCalls` is below the target: the hotline clamps replicas
//!   itself); `Degraded=True` reason `SurgeExceedsCapacity` and a Warning once.
//!   The budget then honestly fails.
//! - **Bad input freezes the machine.** A declaration naming an unknown
//!   scenario (`UnknownScenario`) or an unparsable `timeBudget` /
//!   `stepDown.every` (`InvalidDuration`): `Valid=False`, a Warning once, and
//!   no change to phase, `current` or published targets (only `readyCalls` are
//!   refreshed; no requeue). A crisis in progress keeps its targets, an exit
//!   holds its current step. Fixing the input resumes. An unparsable
//!   escalation `after` is reported the same way but only skips that step.
//! - **Declaration.** The operator never writes it: the returned status always
//!   has `declaration: None`. Its `reason`, `declaredBy` and `incidentRef` are
//!   copied into `current` at declaration and kept up to date while it lasts.
//! - **Time precision.** Kubernetes `Time` serializes to the second, so every
//!   instant written to status is `now` truncated to the second; deadlines,
//!   escalation and step-down instants derive from those stored values, so a
//!   status read back from the API server gives the same results.
//!   `timeToSurgeMilliseconds` is measured from the stored (truncated)
//!   `surgeStartedAt` to the precise `now`: never an under-estimate.
//! - **Events** are emitted on transitions only: calling again with the
//!   returned status (plus the same declaration) and the same `now` returns no
//!   Event and the same status. The step-down step already announced is read
//!   back from the `Declared` condition's message (`... step k of n`).
//!
//! # Conditions
//!
//! | Type         | True                          | False                                              |
//! |--------------|-------------------------------|----------------------------------------------------|
//! | Valid        | `Valid`                       | `UnknownScenario`, `InvalidDuration`, `HotlineNotFound` (first problem; message lists all) |
//! | Declared     | `Declared` (Surging, Active)  | `NotDeclared` (Standby), `Exiting`                 |
//! | SurgeReady   | `CapacityReady` (Active)      | `Surging`, `NotDeclared` (Standby, Exiting), `CapacityLost` (Active) |
//! | WithinBudget | `WithinBudget`, `NoCrisis`    | `BudgetExceeded`                                   |
//! | Degraded     | `SurgeExceedsCapacity`        | `AsExpected`                                       |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{
    CrisisPlanSpec, CrisisPlanStatus, CrisisRecord, Declaration, EscalationRecord, HotlineTarget,
    Phase, Scenario,
};
use crate::core::{Problem, duration, validate};

/// Crises and drills kept in `status.history`.
pub const HISTORY_LIMIT: usize = 10;

/// Condition types written by [`reconcile`].
pub const CONDITION_VALID: &str = "Valid";
pub const CONDITION_DECLARED: &str = "Declared";
pub const CONDITION_SURGE_READY: &str = "SurgeReady";
pub const CONDITION_WITHIN_BUDGET: &str = "WithinBudget";
pub const CONDITION_DEGRADED: &str = "Degraded";

/// What the caller observed of one hotline of the plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HotlineObservation {
    /// Whether the Hotline exists.
    pub exists: bool,
    /// `spec.standby.calls`: the base of `factor` surges.
    pub base_standby_calls: i32,
    /// Standby level in force now (schedule applied).
    pub standby_now: i32,
    /// The hotline's `status.readyCalls`.
    pub ready_calls: i32,
    /// Most calls it can ever carry (min over components of
    /// `maxReplicas x callsPerReplica`); `None`: unbounded.
    pub max_calls: Option<i32>,
    /// Components whose `maxReplicas` caps the current target; may be empty.
    pub limiting_components: Vec<String>,
}

/// Observations of the plan's hotlines, by name. A hotline absent from the
/// map is treated as not existing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub hotlines: BTreeMap<String, HotlineObservation>,
}

/// A hotline short of its target when the budget ran out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub hotline: String,
    pub ready: i32,
    pub target: i32,
    /// Components capping it (from [`HotlineObservation::limiting_components`]).
    pub limiting_components: Vec<String>,
}

/// Something that happened; each becomes a Kubernetes Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanEvent {
    Declared {
        scenario: String,
        declared_by: Option<String>,
        reason: Option<String>,
        incident_ref: Option<String>,
        drill: bool,
    },
    Retargeted {
        from: String,
        to: String,
    },
    SurgeReady {
        scenario: String,
        time_to_surge: Duration,
        budget: Duration,
        met: bool,
    },
    BudgetExceeded {
        scenario: String,
        budget: Duration,
        short: Vec<Shortfall>,
    },
    EscalationStep {
        after: String,
        notify: String,
    },
    ExitStarted {
        scenario: String,
    },
    StepDown {
        step: u32,
        steps: u32,
    },
    BackToStandby {
        scenario: String,
        duration: Duration,
    },
    Invalid {
        reason: &'static str,
        message: String,
    },
    Degraded {
        reason: &'static str,
        message: String,
    },
}

impl PlanEvent {
    /// Event reason, CamelCase.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Declared { .. } => "CrisisDeclared",
            Self::Retargeted { .. } => "ScenarioChanged",
            Self::SurgeReady { .. } => "SurgeReady",
            Self::BudgetExceeded { .. } => "BudgetExceeded",
            Self::EscalationStep { .. } => "EscalationStep",
            Self::ExitStarted { .. } => "ExitStarted",
            Self::StepDown { .. } => "StepDown",
            Self::BackToStandby { .. } => "BackToStandby",
            Self::Invalid { reason, .. } | Self::Degraded { reason, .. } => reason,
        }
    }

    /// Whether the Event is of type `Warning` (else `Normal`).
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Self::BudgetExceeded { .. } | Self::Invalid { .. } | Self::Degraded { .. }
        )
    }

    /// Human message.
    pub fn message(&self) -> String {
        match self {
            Self::Declared {
                scenario,
                declared_by,
                reason,
                incident_ref,
                drill,
            } => {
                let mut m = format!(
                    "{} declared: scenario {scenario:?}",
                    if *drill { "drill" } else { "crisis" }
                );
                if let Some(by) = declared_by {
                    let _ = write!(m, " by {by}");
                }
                if let Some(inc) = incident_ref {
                    let _ = write!(m, " ({inc})");
                }
                if let Some(why) = reason {
                    let _ = write!(m, ": {why}");
                }
                m
            }
            Self::Retargeted { from, to } => {
                format!("scenario changed from {from:?} to {to:?}: surging to the new targets")
            }
            Self::SurgeReady {
                time_to_surge,
                budget,
                met,
                ..
            } => format!(
                "surge capacity ready in {} (budget {}, {})",
                go_duration(*time_to_surge),
                go_duration(*budget),
                if *met { "met" } else { "missed" }
            ),
            Self::BudgetExceeded {
                scenario,
                budget,
                short,
            } => {
                let mut m = format!(
                    "surge for scenario {scenario:?} not ready within its {} budget",
                    go_duration(*budget)
                );
                if short.is_empty() {
                    m.push_str(": no targeted hotline exists");
                } else {
                    m.push_str(": ");
                    m.push_str(&shortfalls(short));
                }
                m
            }
            Self::EscalationStep { after, notify } => {
                format!("escalation step after {after}: notify {notify}")
            }
            Self::ExitStarted { scenario } => {
                format!("crisis {scenario:?} over: stepping down to standby")
            }
            Self::StepDown { step, steps } => format!("step-down step {step} of {steps}"),
            Self::BackToStandby { scenario, duration } => format!(
                "back to standby after crisis {scenario:?} ({} since declaration)",
                go_duration(*duration)
            ),
            Self::Invalid { message, .. } | Self::Degraded { message, .. } => message.clone(),
        }
    }
}

/// Result of [`reconcile`].
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The new status. `declaration` is always `None`: the operator never
    /// writes it.
    pub status: CrisisPlanStatus,
    /// Events to emit, in order.
    pub events: Vec<PlanEvent>,
    /// Earliest future instant at which the result changes by time alone
    /// (deadline, next escalation step, next step-down step).
    pub requeue_at: Option<Timestamp>,
}

/// The edges of the lifecycle (see the module documentation).
pub fn allowed_transition(from: Phase, to: Phase) -> bool {
    use Phase::*;
    matches!(
        (from, to),
        (Standby, Surging)
            | (Surging, Active)
            | (Surging, Surging)
            | (Surging, Exiting)
            | (Active, Exiting)
            | (Active, Surging)
            | (Exiting, Surging)
            | (Exiting, Standby)
    )
}

/// Sets condition `type_` to `status` ("True"/"False"), `reason` and
/// `message`, adding it if absent. `lastTransitionTime` changes only when the
/// status flips (or the condition is new), to `now` truncated to the second
/// (what Kubernetes stores). Returns whether the status flipped.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let status = if status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let flipped = c.status != status;
            if flipped {
                c.last_transition_time = Time(to_second(now));
                c.status = status.to_owned();
            }
            c.reason = reason.to_owned();
            c.message = message.to_owned();
            c.observed_generation = generation;
            flipped
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_transition_time: Time(to_second(now)),
                observed_generation: generation,
            });
            true
        }
    }
}

/// Runs the lifecycle once. See the module documentation for the rules.
pub fn reconcile(
    spec: &CrisisPlanSpec,
    generation: Option<i64>,
    status: &CrisisPlanStatus,
    observed: &Observed,
    now: Timestamp,
) -> Outcome {
    reconcile_traced(spec, generation, status, observed, now).0
}

/// [`reconcile`], also returning the phases gone through (first: the input
/// phase, last: the output phase), for tests.
fn reconcile_traced(
    spec: &CrisisPlanSpec,
    generation: Option<i64>,
    status: &CrisisPlanStatus,
    observed: &Observed,
    now: Timestamp,
) -> (Outcome, Vec<Phase>) {
    // Every problem of the spec is reported (condition Valid, Warning
    // Events); only those that leave the crisis undeliverable (no budget, no
    // step-down period, an unknown declared scenario) freeze the machine. A
    // drill schedule typo must not hold back a real crisis.
    let mut problems = validate::validate_plan(spec);
    let budget = parse_go_duration(&spec.time_budget);
    let step_down = spec
        .exit
        .as_ref()
        .and_then(|e| e.step_down.clone())
        .unwrap_or_default();
    let every = parse_go_duration(&step_down.every);
    let mut unknown_scenario = false;
    let declared = match &status.declaration {
        None => None,
        Some(d) => match spec.scenarios.iter().find(|s| s.name == d.scenario) {
            Some(sc) => Some((d, sc)),
            None => {
                unknown_scenario = true;
                let known: Vec<&str> = spec.scenarios.iter().map(|s| s.name.as_str()).collect();
                problems.push(Problem::new(
                    "UnknownScenario",
                    format!(
                        "status.declaration.scenario: {:?} is not a scenario of this plan (known: {})",
                        d.scenario,
                        known.join(", ")
                    ),
                ));
                None
            }
        },
    };
    for h in &spec.hotlines {
        if !observed.hotlines.get(&h.name).is_some_and(|o| o.exists) {
            problems.push(Problem::new(
                "HotlineNotFound",
                format!(
                    "spec.hotlines: hotline {:?} not found in this namespace",
                    h.name
                ),
            ));
        }
    }

    let mut m = Machine {
        spec,
        observed,
        now,
        stamp: to_second(now),
        phase: status.phase.unwrap_or(Phase::Standby),
        current: status.current.clone(),
        history: status.history.clone(),
        events: Vec::new(),
        requeue: None,
        path: Vec::new(),
        step: 0,
        percent: step_down.percent.clamp(1, 100),
    };
    if m.phase == Phase::Exiting {
        m.step = status
            .current
            .as_ref()
            .and_then(|c| c.step_down_step)
            .and_then(|k| u32::try_from(k).ok())
            .or_else(|| {
                find_condition(&status.conditions, CONDITION_DECLARED)
                    .and_then(|c| parse_step(&c.message))
            })
            .unwrap_or(0);
    }

    // Invalid events first: what the user must fix.
    let previous_valid = find_condition(&status.conditions, CONDITION_VALID);
    let mut events: Vec<PlanEvent> = problems
        .iter()
        .filter(|p| !reported(previous_valid, &p.message))
        .map(|p| PlanEvent::Invalid {
            reason: p.reason,
            message: p.message.clone(),
        })
        .collect();

    let frozen = match (budget, every) {
        (Some(budget), Some(every)) if !unknown_scenario => {
            m.normalize();
            m.path.push(m.phase);
            m.run(declared, budget, every);
            false
        }
        _ => {
            m.path.push(m.phase);
            true
        }
    };

    let hotlines = m.publish(frozen, &status.hotlines);
    let mut conditions = status.conditions.clone();
    let set = |conds: &mut Vec<Condition>, t: &str, s: bool, r: &str, msg: &str| {
        set_condition(conds, t, s, r, msg, generation, now);
    };

    match problems.first() {
        None => set(
            &mut conditions,
            CONDITION_VALID,
            true,
            "Valid",
            "the plan is valid",
        ),
        Some(first) => {
            let all: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
            set(
                &mut conditions,
                CONDITION_VALID,
                false,
                first.reason,
                &all.join("; "),
            );
        }
    }

    let ready = m.ready(&hotlines);
    let current = m.current.as_ref();
    match (m.phase, current) {
        (Phase::Surging | Phase::Active, Some(cur)) => set(
            &mut conditions,
            CONDITION_DECLARED,
            true,
            "Declared",
            &format!(
                "scenario {:?} declared at {}",
                cur.scenario, cur.declared_at.0
            ),
        ),
        (Phase::Exiting, Some(cur)) => {
            let exit = cur.exit_started_at.as_ref().map_or(m.stamp, |t| t.0);
            set(
                &mut conditions,
                CONDITION_DECLARED,
                false,
                "Exiting",
                &format!(
                    "declaration of {:?} removed at {exit}; stepping down: step {} of {}",
                    cur.scenario,
                    m.step,
                    steps(m.percent)
                ),
            );
        }
        _ => set(
            &mut conditions,
            CONDITION_DECLARED,
            false,
            "NotDeclared",
            if status.declaration.is_some() {
                "the declaration is not valid (see condition Valid)"
            } else {
                "no crisis declared"
            },
        ),
    }

    let short = m.short(&hotlines);
    match m.phase {
        Phase::Active if ready => set(
            &mut conditions,
            CONDITION_SURGE_READY,
            true,
            "CapacityReady",
            "every hotline carries its surge target",
        ),
        Phase::Active => set(
            &mut conditions,
            CONDITION_SURGE_READY,
            false,
            "CapacityLost",
            &format!("capacity fell below target: {}", shortfalls_or_none(&short)),
        ),
        Phase::Surging => set(
            &mut conditions,
            CONDITION_SURGE_READY,
            false,
            "Surging",
            &format!("waiting for surge capacity: {}", shortfalls_or_none(&short)),
        ),
        Phase::Exiting => set(
            &mut conditions,
            CONDITION_SURGE_READY,
            false,
            "NotDeclared",
            "crisis over: stepping down",
        ),
        Phase::Standby => set(
            &mut conditions,
            CONDITION_SURGE_READY,
            false,
            "NotDeclared",
            "no crisis declared",
        ),
    }

    match (m.phase, current) {
        (Phase::Standby, _) | (_, None) => set(
            &mut conditions,
            CONDITION_WITHIN_BUDGET,
            true,
            "NoCrisis",
            "no crisis declared",
        ),
        (_, Some(cur)) => {
            let deadline = cur
                .deadline
                .as_ref()
                .map_or_else(String::new, |t| t.0.to_string());
            if cur.budget_met == Some(false) {
                set(
                    &mut conditions,
                    CONDITION_WITHIN_BUDGET,
                    false,
                    "BudgetExceeded",
                    &format!("surge capacity was not ready by the deadline {deadline}"),
                );
            } else {
                set(
                    &mut conditions,
                    CONDITION_WITHIN_BUDGET,
                    true,
                    "WithinBudget",
                    &format!("surge capacity due by {deadline}"),
                );
            }
        }
    }

    let previous_degraded = find_condition(&status.conditions, CONDITION_DEGRADED);
    let degraded = m.degraded(&hotlines);
    if degraded.is_empty() {
        set(
            &mut conditions,
            CONDITION_DEGRADED,
            false,
            "AsExpected",
            "every hotline can carry its target",
        );
    } else {
        let all: Vec<&str> = degraded.iter().map(String::as_str).collect();
        set(
            &mut conditions,
            CONDITION_DEGRADED,
            true,
            "SurgeExceedsCapacity",
            &all.join("; "),
        );
    }

    events.append(&mut m.events);
    events.extend(
        degraded
            .iter()
            .filter(|msg| !reported(previous_degraded, msg))
            .map(|msg| PlanEvent::Degraded {
                reason: "SurgeExceedsCapacity",
                message: msg.clone(),
            }),
    );

    let out = CrisisPlanStatus {
        declaration: None,
        observed_generation: generation,
        phase: Some(m.phase),
        current: m.current,
        hotlines,
        history: m.history,
        conditions,
    };
    let outcome = Outcome {
        status: out,
        events,
        requeue_at: if frozen { None } else { m.requeue },
    };
    (outcome, m.path)
}

/// The mutable state of one reconcile.
struct Machine<'a> {
    spec: &'a CrisisPlanSpec,
    observed: &'a Observed,
    /// Precise now: for comparisons and measurements.
    now: Timestamp,
    /// `now` to the second: what is written to status.
    stamp: Timestamp,
    phase: Phase,
    current: Option<CrisisRecord>,
    history: Vec<CrisisRecord>,
    events: Vec<PlanEvent>,
    requeue: Option<Timestamp>,
    path: Vec<Phase>,
    /// Step-down steps announced (Exiting).
    step: u32,
    /// Step-down percent, 1..=100.
    percent: i32,
}

impl<'a> Machine<'a> {
    fn goto(&mut self, to: Phase) {
        debug_assert!(
            allowed_transition(self.phase, to),
            "{:?} -> {to:?}",
            self.phase
        );
        self.phase = to;
        self.path.push(to);
    }

    fn wake_at(&mut self, t: Timestamp) {
        if t > self.now {
            self.requeue = Some(self.requeue.map_or(t, |r| r.min(t)));
        }
    }

    fn observation(&self, hotline: &str) -> Option<&'a HotlineObservation> {
        self.observed.hotlines.get(hotline).filter(|o| o.exists)
    }

    fn scenario(&self, name: &str) -> Option<&'a Scenario> {
        self.spec.scenarios.iter().find(|s| s.name == name)
    }

    /// Repairs statuses this machine never produces (hand-edited, or from an
    /// older operator) so the transitions below always see a consistent state.
    fn normalize(&mut self) {
        match (self.phase, &mut self.current) {
            (Phase::Standby, Some(_)) => self.end_current(),
            (_, None) => self.phase = Phase::Standby,
            (Phase::Exiting, Some(cur)) if cur.exit_started_at.is_none() => {
                cur.exit_started_at = Some(Time(self.stamp));
            }
            _ => {}
        }
    }

    /// Moves the current record to history (ended now), keeping the last
    /// [`HISTORY_LIMIT`].
    fn end_current(&mut self) {
        if let Some(mut cur) = self.current.take() {
            cur.ended_at.get_or_insert(Time(self.stamp));
            self.history.push(cur);
            let excess = self.history.len().saturating_sub(HISTORY_LIMIT);
            self.history.drain(..excess);
        }
    }

    fn run(
        &mut self,
        declared: Option<(&Declaration, &'a Scenario)>,
        budget: SignedDuration,
        every: SignedDuration,
    ) {
        match (self.phase, declared) {
            (Phase::Standby, Some((d, sc))) => self.declare(d, sc, budget),
            (Phase::Exiting, Some((d, sc))) => {
                self.end_current();
                self.declare(d, sc, budget);
            }
            (Phase::Surging | Phase::Active, Some((d, sc))) => self.follow(d, sc, budget),
            (Phase::Surging | Phase::Active, None) => self.start_exit(),
            (Phase::Standby | Phase::Exiting, None) => {}
        }
        match self.phase {
            Phase::Surging | Phase::Active => self.surge(budget),
            Phase::Exiting => self.step_down(every),
            Phase::Standby => {}
        }
    }

    fn declare(&mut self, d: &Declaration, sc: &Scenario, budget: SignedDuration) {
        self.current = Some(CrisisRecord {
            scenario: sc.name.clone(),
            declared_at: Time(self.stamp),
            surge_started_at: Some(Time(self.stamp)),
            deadline: Some(Time(add(self.stamp, budget))),
            surge_ready_at: None,
            time_to_surge_seconds: None,
            time_to_surge_milliseconds: None,
            budget_met: None,
            exit_started_at: None,
            ended_at: None,
            step_down_step: None,
            drill: false,
            reason: d.reason.clone(),
            declared_by: d.declared_by.clone(),
            incident_ref: d.incident_ref.clone(),
            escalations: Vec::new(),
        });
        self.goto(Phase::Surging);
        self.events.push(PlanEvent::Declared {
            scenario: sc.name.clone(),
            declared_by: d.declared_by.clone(),
            reason: d.reason.clone(),
            incident_ref: d.incident_ref.clone(),
            drill: false,
        });
    }

    /// A declaration during Surging/Active: same crisis; re-target if its
    /// scenario changed.
    fn follow(&mut self, d: &Declaration, sc: &Scenario, budget: SignedDuration) {
        let stamp = self.stamp;
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        cur.reason.clone_from(&d.reason);
        cur.declared_by.clone_from(&d.declared_by);
        cur.incident_ref.clone_from(&d.incident_ref);
        if cur.scenario == sc.name {
            return;
        }
        let from = std::mem::replace(&mut cur.scenario, sc.name.clone());
        cur.surge_started_at = Some(Time(stamp));
        cur.deadline = Some(Time(add(stamp, budget)));
        cur.surge_ready_at = None;
        cur.time_to_surge_seconds = None;
        cur.time_to_surge_milliseconds = None;
        cur.budget_met = None;
        self.goto(Phase::Surging);
        self.events.push(PlanEvent::Retargeted {
            from,
            to: sc.name.clone(),
        });
    }

    fn start_exit(&mut self) {
        let stamp = self.stamp;
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        cur.exit_started_at = Some(Time(stamp));
        cur.step_down_step = Some(0);
        let scenario = cur.scenario.clone();
        self.step = 0;
        self.goto(Phase::Exiting);
        self.events.push(PlanEvent::ExitStarted { scenario });
    }

    /// Surging/Active: escalation, readiness, budget.
    fn surge(&mut self, budget: SignedDuration) {
        let Some(cur) = self.current.as_ref() else {
            return;
        };
        let Some(sc) = self.scenario(&cur.scenario) else {
            return;
        };
        self.escalate(sc);

        let targets = self.surge_targets(sc);
        let ready = !targets.is_empty() && targets.iter().all(|(_, o, t)| o.ready_calls >= *t);
        let short: Vec<Shortfall> = targets
            .iter()
            .filter(|(_, o, t)| o.ready_calls < *t)
            .map(|(name, o, t)| Shortfall {
                hotline: (*name).to_owned(),
                ready: o.ready_calls,
                target: *t,
                limiting_components: o.limiting_components.clone(),
            })
            .collect();

        let (now, stamp) = (self.now, self.stamp);
        let phase = self.phase;
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let started = cur
            .surge_started_at
            .as_ref()
            .map_or(cur.declared_at.0, |t| t.0);
        let deadline = match &cur.deadline {
            Some(t) => t.0,
            None => add(started, budget),
        };
        if phase != Phase::Surging {
            return;
        }
        if ready {
            let ms = i64::try_from(now.duration_since(started).as_millis())
                .unwrap_or(i64::MAX)
                .max(0);
            let met = cur.budget_met != Some(false) && now <= deadline;
            cur.surge_ready_at = Some(Time(stamp));
            cur.time_to_surge_milliseconds = Some(ms);
            cur.time_to_surge_seconds = Some(ms / 1000 + i64::from(ms % 1000 != 0));
            cur.budget_met = Some(met);
            let scenario = cur.scenario.clone();
            self.goto(Phase::Active);
            self.events.push(PlanEvent::SurgeReady {
                scenario,
                time_to_surge: Duration::from_millis(ms.unsigned_abs()),
                budget: std_duration(budget),
                met,
            });
        } else if now >= deadline {
            if cur.budget_met.is_none() {
                cur.budget_met = Some(false);
                let scenario = cur.scenario.clone();
                self.events.push(PlanEvent::BudgetExceeded {
                    scenario,
                    budget: std_duration(budget),
                    short,
                });
            }
        } else {
            self.wake_at(deadline);
        }
    }

    /// Existing hotlines with their surge target, for scenario `sc`.
    fn surge_targets(&self, sc: &Scenario) -> Vec<(&'a str, &'a HotlineObservation, i32)> {
        self.spec
            .hotlines
            .iter()
            .filter_map(|h| {
                let o = self.observation(&h.name)?;
                Some((h.name.as_str(), o, o.standby_now.max(surge_calls(sc, o))))
            })
            .collect()
    }

    fn escalate(&mut self, sc: &Scenario) {
        let (now, stamp) = (self.now, self.stamp);
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let declared_at = cur.declared_at.0;
        let mut next: Option<Timestamp> = None;
        for step in &sc.escalation {
            let Some(after) = parse_go_duration(&step.after) else {
                continue;
            };
            if cur
                .escalations
                .iter()
                .any(|r| r.after == step.after && r.notify == step.notify)
            {
                continue;
            }
            let due = add(declared_at, after);
            if now >= due {
                cur.escalations.push(EscalationRecord {
                    after: step.after.clone(),
                    notify: step.notify.clone(),
                    notified_at: Time(stamp),
                });
                self.events.push(PlanEvent::EscalationStep {
                    after: step.after.clone(),
                    notify: step.notify.clone(),
                });
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        if let Some(due) = next {
            self.wake_at(due);
        }
    }

    fn step_down(&mut self, every: SignedDuration) {
        let Some(cur) = self.current.as_ref() else {
            return;
        };
        let exit = cur.exit_started_at.as_ref().map_or(self.stamp, |t| t.0);
        let scenario = cur.scenario.clone();
        let declared_at = cur.declared_at.0;
        let n = steps(self.percent);
        let k = steps_due(exit, every, n, self.now);
        if k > self.step {
            self.events.push(PlanEvent::StepDown { step: k, steps: n });
        }
        self.step = k;
        if let Some(cur) = self.current.as_mut() {
            cur.step_down_step = Some(i32::try_from(k).unwrap_or(i32::MAX));
        }
        if k < n {
            let next = every.checked_mul(i32::try_from(k + 1).unwrap_or(i32::MAX));
            self.wake_at(next.map_or(Timestamp::MAX, |d| add(exit, d)));
            return;
        }
        let duration = std_duration(self.now.duration_since(declared_at));
        self.end_current();
        self.goto(Phase::Standby);
        self.events
            .push(PlanEvent::BackToStandby { scenario, duration });
    }

    /// The per-hotline targets to publish, in spec order.
    fn publish(&self, frozen: bool, old: &[HotlineTarget]) -> Vec<HotlineTarget> {
        let scenario = self
            .current
            .as_ref()
            .and_then(|c| self.scenario(&c.scenario));
        self.spec
            .hotlines
            .iter()
            .map(|h| {
                let o = self.observation(&h.name);
                let previous = old.iter().find(|t| t.name == h.name);
                let ready_calls = o.map(|o| o.ready_calls);
                if frozen {
                    return HotlineTarget {
                        ready_calls,
                        ..previous.cloned().unwrap_or_else(|| HotlineTarget {
                            name: h.name.clone(),
                            ..HotlineTarget::default()
                        })
                    };
                }
                let (surge, target) = match (self.phase, o) {
                    (Phase::Standby, _) | (_, None) => (None, None),
                    (Phase::Surging | Phase::Active, Some(o)) => match scenario {
                        Some(sc) => {
                            let s = surge_calls(sc, o);
                            (Some(s), Some(o.standby_now.max(s)))
                        }
                        None => (None, None),
                    },
                    (Phase::Exiting, Some(o)) => {
                        let s = match scenario {
                            Some(sc) => Some(surge_calls(sc, o)),
                            None => previous.and_then(|p| p.surge_calls),
                        };
                        let target = s
                            .map(|s| stepped(s, self.step, self.percent).max(o.standby_now.max(0)));
                        (s, target)
                    }
                };
                HotlineTarget {
                    name: h.name.clone(),
                    surge_calls: surge,
                    target_calls: target,
                    ready_calls,
                }
            })
            .collect()
    }

    /// At least one existing hotline is targeted and all carry their target.
    fn ready(&self, hotlines: &[HotlineTarget]) -> bool {
        let mut any = false;
        for t in hotlines {
            if let (Some(target), Some(o)) = (t.target_calls, self.observation(&t.name)) {
                any = true;
                if o.ready_calls < target {
                    return false;
                }
            }
        }
        any
    }

    fn short(&self, hotlines: &[HotlineTarget]) -> Vec<Shortfall> {
        hotlines
            .iter()
            .filter_map(|t| {
                let target = t.target_calls?;
                let o = self.observation(&t.name)?;
                (o.ready_calls < target).then(|| Shortfall {
                    hotline: t.name.clone(),
                    ready: o.ready_calls,
                    target,
                    limiting_components: o.limiting_components.clone(),
                })
            })
            .collect()
    }

    /// One message per hotline whose ceiling is below its published target.
    fn degraded(&self, hotlines: &[HotlineTarget]) -> Vec<String> {
        hotlines
            .iter()
            .filter_map(|t| {
                let target = t.target_calls?;
                let o = self.observation(&t.name)?;
                let max = o.max_calls?;
                if max >= target {
                    return None;
                }
                let mut m = format!(
                    "hotline {:?} can carry at most {max} calls, below its target of {target}",
                    t.name
                );
                if !o.limiting_components.is_empty() {
                    let _ = write!(
                        m,
                        " (limited by maxReplicas of {})",
                        o.limiting_components.join(", ")
                    );
                }
                Some(m)
            })
            .collect()
    }
}

/// Calls of scenario `sc`'s surge for a hotline (`calls`, or `factor x`
/// its base standby, saturating; never negative).
fn surge_calls(sc: &Scenario, o: &HotlineObservation) -> i32 {
    match (sc.surge.calls, sc.surge.factor) {
        (Some(calls), _) => calls.max(0),
        (None, Some(factor)) => factor.max(0).saturating_mul(o.base_standby_calls.max(0)),
        (None, None) => 0,
    }
}

/// Number of step-down steps: `ceil(100 / percent)`.
fn steps(percent: i32) -> u32 {
    u32::try_from(percent.clamp(1, 100)).map_or(1, |p| 100u32.div_ceil(p))
}

/// Steps due at `now` for an exit started at `exit`: `floor((now - exit) /
/// every)`, capped at `n`. A zero (or negative) `every` makes every step due.
fn steps_due(exit: Timestamp, every: SignedDuration, n: u32, now: Timestamp) -> u32 {
    let every = every.as_nanos();
    if every <= 0 {
        return n;
    }
    let elapsed = now.duration_since(exit).as_nanos();
    if elapsed <= 0 {
        return 0;
    }
    u32::try_from(elapsed / every).map_or(n, |k| k.min(n))
}

/// The surge after `k` steps of `percent`: `ceil(surge * (100 - k*percent) /
/// 100)`, `k*percent` capped at 100.
fn stepped(surge: i32, k: u32, percent: i32) -> i32 {
    let removed = i64::from(k).saturating_mul(i64::from(percent)).min(100);
    let left = (i64::from(surge.max(0)) * (100 - removed) + 99) / 100;
    i32::try_from(left).unwrap_or(i32::MAX)
}

/// Reads `step k of n` back from the `Declared` condition message.
fn parse_step(message: &str) -> Option<u32> {
    let (_, rest) = message.rsplit_once("step ")?;
    let (k, _) = rest.split_once(" of ")?;
    k.parse().ok()
}

fn find_condition<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `message` was already reported by the (previous) condition, so its
/// Warning Event is not repeated. Conditions list their problems joined by
/// `"; "`; the Valid condition is reported when False, Degraded when True.
fn reported(previous: Option<&Condition>, message: &str) -> bool {
    previous.is_some_and(|c| {
        let bad = if c.type_ == CONDITION_DEGRADED {
            "True"
        } else {
            "False"
        };
        c.status == bad && c.message.contains(message)
    })
}

fn shortfalls(short: &[Shortfall]) -> String {
    let parts: Vec<String> = short
        .iter()
        .map(|s| {
            let mut p = format!("{} {}/{} calls ready", s.hotline, s.ready, s.target);
            if !s.limiting_components.is_empty() {
                let _ = write!(p, " (capped by {})", s.limiting_components.join(", "));
            }
            p
        })
        .collect();
    parts.join(", ")
}

fn shortfalls_or_none(short: &[Shortfall]) -> String {
    if short.is_empty() {
        "no targeted hotline exists".to_owned()
    } else {
        shortfalls(short)
    }
}

/// A duration field as the lifecycle computes with it (`None`: malformed;
/// [`validate::validate_plan`] reports it).
fn parse_go_duration(s: &str) -> Option<SignedDuration> {
    duration::parse_duration(s)
        .ok()
        .and_then(|d| SignedDuration::try_from(d).ok())
}

/// Formats like Go's `time.Duration.String` at millisecond precision:
/// `0s`, `250ms`, `42.3s`, `5m0s`, `1h30m0s`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, (ms / 60_000) % 60);
    let (s, frac) = ((ms / 1000) % 60, ms % 1000);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{s}");
    if frac > 0 {
        let f = format!("{frac:03}");
        let _ = write!(out, ".{}", f.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// A non-negative `std` duration (negative: zero).
fn std_duration(d: SignedDuration) -> Duration {
    Duration::try_from(d).unwrap_or_default()
}

/// `t + d`, saturating at the ends of time.
fn add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// `t` truncated (toward the past) to the second: what `metav1.Time` stores.
fn to_second(t: Timestamp) -> Timestamp {
    let mut s = t.as_second();
    if t.subsec_nanosecond() < 0 {
        s -= 1;
    }
    Timestamp::from_second(s).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{EscalationStep, Exit, HotlineRef, StepDown, Surge};

    fn t0() -> Timestamp {
        "2025-03-01T10:00:00Z".parse().unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        t0() + SignedDuration::from_secs(secs)
    }

    fn at_ms(ms: i64) -> Timestamp {
        t0() + SignedDuration::from_millis(ms)
    }

    const MIN: i64 = 60;

    fn scenario(name: &str, surge: Surge, escalation: &[(&str, &str)]) -> Scenario {
        Scenario {
            name: name.into(),
            surge,
            announcement: None,
            escalation: escalation
                .iter()
                .map(|(after, notify)| EscalationStep {
                    after: (*after).into(),
                    notify: (*notify).into(),
                })
                .collect(),
        }
    }

    fn calls(n: i32) -> Surge {
        Surge {
            calls: Some(n),
            factor: None,
        }
    }

    fn spec_with(hotlines: &[&str]) -> CrisisPlanSpec {
        CrisisPlanSpec {
            hotlines: hotlines
                .iter()
                .map(|h| HotlineRef { name: (*h).into() })
                .collect(),
            time_budget: "5m".into(),
            scenarios: vec![
                scenario(
                    "it-outage",
                    calls(500),
                    &[("0m", "crisis-cell"), ("15m", "management")],
                ),
                scenario(
                    "big",
                    calls(1000),
                    &[("0m", "crisis-cell"), ("1h", "board")],
                ),
                scenario(
                    "tenfold",
                    Surge {
                        calls: None,
                        factor: Some(10),
                    },
                    &[],
                ),
            ],
            exit: None,
            drills: None,
        }
    }

    fn spec() -> CrisisPlanSpec {
        spec_with(&["care"])
    }

    fn hotline(ready: i32) -> HotlineObservation {
        HotlineObservation {
            exists: true,
            base_standby_calls: 10,
            standby_now: 10,
            ready_calls: ready,
            max_calls: None,
            limiting_components: vec![],
        }
    }

    fn observed(hotlines: &[(&str, HotlineObservation)]) -> Observed {
        Observed {
            hotlines: hotlines
                .iter()
                .map(|(n, o)| ((*n).to_owned(), o.clone()))
                .collect(),
        }
    }

    fn care(ready: i32) -> Observed {
        observed(&[("care", hotline(ready))])
    }

    fn declaration(scenario: &str) -> Declaration {
        Declaration {
            scenario: scenario.into(),
            reason: Some("payment service down".into()),
            declared_by: Some("alertmanager/PaymentsDown".into()),
            incident_ref: Some("INC-1234".into()),
        }
    }

    fn roundtrip(s: &CrisisPlanStatus) -> CrisisPlanStatus {
        serde_json::from_value(serde_json::to_value(s).unwrap()).unwrap()
    }

    /// Reconciles and checks what must hold of every call: only allowed
    /// edges, no declaration written, requeue in the future, and idempotence
    /// (the output, round-tripped through JSON, with the same declaration and
    /// `now`, gives no event and the same result).
    fn checked(
        spec: &CrisisPlanSpec,
        input: &CrisisPlanStatus,
        obs: &Observed,
        now: Timestamp,
    ) -> Outcome {
        let (out, path) = reconcile_traced(spec, Some(7), input, obs, now);
        assert_eq!(
            path.first().copied(),
            Some(input.phase.unwrap_or(Phase::Standby))
        );
        assert_eq!(path.last().copied(), out.status.phase);
        for w in path.windows(2) {
            assert!(allowed_transition(w[0], w[1]), "{path:?}");
        }
        assert!(out.status.declaration.is_none());
        assert_eq!(out.status.observed_generation, Some(7));
        if let Some(r) = out.requeue_at {
            assert!(r > now, "requeue {r} not after {now}");
        }
        let again_in = CrisisPlanStatus {
            declaration: input.declaration.clone(),
            ..roundtrip(&out.status)
        };
        let again = reconcile(spec, Some(7), &again_in, obs, now);
        assert_eq!(again.events, vec![], "events re-emitted");
        assert_eq!(again.status, out.status, "not idempotent");
        assert_eq!(again.requeue_at, out.requeue_at);
        out
    }

    /// A plan under test: keeps its status between calls, like the API.
    struct Plan {
        spec: CrisisPlanSpec,
        status: CrisisPlanStatus,
    }

    impl Plan {
        fn new(spec: CrisisPlanSpec) -> Self {
            Self {
                spec,
                status: CrisisPlanStatus::default(),
            }
        }

        fn at(&mut self, declared: Option<&str>, obs: &Observed, now: Timestamp) -> Outcome {
            let input = CrisisPlanStatus {
                declaration: declared.map(declaration),
                ..self.status.clone()
            };
            let out = checked(&self.spec, &input, obs, now);
            self.status = out.status.clone();
            out
        }

        fn phase(&self) -> Phase {
            self.status.phase.unwrap()
        }

        fn current(&self) -> &CrisisRecord {
            self.status.current.as_ref().unwrap()
        }

        fn targets(&self) -> Vec<Option<i32>> {
            self.status
                .hotlines
                .iter()
                .map(|h| h.target_calls)
                .collect()
        }

        fn condition(&self, type_: &str) -> (&str, &str, &str) {
            let c = find_condition(&self.status.conditions, type_).unwrap();
            (c.status.as_str(), c.reason.as_str(), c.message.as_str())
        }
    }

    fn reasons(o: &Outcome) -> Vec<&'static str> {
        o.events.iter().map(PlanEvent::reason).collect()
    }

    fn time(t: Timestamp) -> Option<Time> {
        Some(Time(t))
    }

    /// A plan Active on `it-outage`: declared at t0, ready at t0+1m.
    fn active() -> Plan {
        let mut p = Plan::new(spec());
        p.at(Some("it-outage"), &care(10), t0());
        p.at(Some("it-outage"), &care(500), at(MIN));
        assert_eq!(p.phase(), Phase::Active);
        p
    }

    #[test]
    fn no_phase_is_standby_and_standby_stays_quiet() {
        let mut p = Plan::new(spec());
        let o = p.at(None, &care(10), t0());
        assert_eq!(p.phase(), Phase::Standby);
        assert_eq!(o.events, vec![]);
        assert_eq!(o.requeue_at, None);
        assert_eq!(p.targets(), vec![None]);
        assert_eq!(p.status.hotlines[0].ready_calls, Some(10));
        assert_eq!(
            p.condition(CONDITION_VALID),
            ("True", "Valid", "the plan is valid")
        );
        assert_eq!(p.condition(CONDITION_DECLARED).1, "NotDeclared");
        assert_eq!(p.condition(CONDITION_SURGE_READY).1, "NotDeclared");
        assert_eq!(p.condition(CONDITION_WITHIN_BUDGET).1, "NoCrisis");
        assert_eq!(p.condition(CONDITION_DEGRADED).1, "AsExpected");
    }

    #[test]
    fn declaration_starts_the_surge() {
        let mut p = Plan::new(spec());
        let o = p.at(Some("it-outage"), &care(10), at_ms(500));
        assert_eq!(p.phase(), Phase::Surging);
        let cur = p.current();
        assert_eq!(cur.scenario, "it-outage");
        // Stored to the second, like metav1.Time.
        assert_eq!(cur.declared_at, Time(t0()));
        assert_eq!(cur.surge_started_at, time(t0()));
        assert_eq!(cur.deadline, time(at(5 * MIN)));
        assert_eq!(cur.budget_met, None);
        assert!(!cur.drill);
        assert_eq!(cur.reason.as_deref(), Some("payment service down"));
        assert_eq!(
            cur.declared_by.as_deref(),
            Some("alertmanager/PaymentsDown")
        );
        assert_eq!(cur.incident_ref.as_deref(), Some("INC-1234"));
        assert_eq!(p.targets(), vec![Some(500)]);
        assert_eq!(p.status.hotlines[0].surge_calls, Some(500));
        assert_eq!(reasons(&o), vec!["CrisisDeclared", "EscalationStep"]);
        assert_eq!(
            o.events[0].message(),
            "crisis declared: scenario \"it-outage\" by alertmanager/PaymentsDown (INC-1234): payment service down"
        );
        assert_eq!(
            o.events[1],
            PlanEvent::EscalationStep {
                after: "0m".into(),
                notify: "crisis-cell".into()
            }
        );
        // The deadline comes before the 15m escalation step.
        assert_eq!(o.requeue_at, Some(at(5 * MIN)));
        assert_eq!(p.condition(CONDITION_DECLARED).0, "True");
        assert_eq!(p.condition(CONDITION_SURGE_READY).1, "Surging");
        assert_eq!(p.condition(CONDITION_WITHIN_BUDGET).1, "WithinBudget");
        assert_eq!(roundtrip(&p.status), p.status);
    }

    #[test]
    fn surge_ready_within_budget() {
        let mut p = Plan::new(spec());
        p.at(Some("it-outage"), &care(10), t0());
        let o = p.at(Some("it-outage"), &care(500), at_ms(42_300));
        assert_eq!(p.phase(), Phase::Active);
        let cur = p.current();
        assert_eq!(cur.surge_ready_at, time(at(42)));
        assert_eq!(cur.time_to_surge_milliseconds, Some(42_300));
        assert_eq!(cur.time_to_surge_seconds, Some(43));
        assert_eq!(cur.budget_met, Some(true));
        assert_eq!(reasons(&o), vec!["SurgeReady"]);
        assert_eq!(
            o.events[0].message(),
            "surge capacity ready in 42.3s (budget 5m0s, met)"
        );
        // Only the next escalation step is left to wait for.
        assert_eq!(o.requeue_at, Some(at(15 * MIN)));
        assert_eq!(p.condition(CONDITION_SURGE_READY).1, "CapacityReady");
        assert_eq!(p.condition(CONDITION_WITHIN_BUDGET).0, "True");
    }

    #[test]
    fn ready_exactly_at_the_deadline_is_met() {
        let mut p = Plan::new(spec());
        p.at(Some("it-outage"), &care(10), t0());
        let o = p.at(Some("it-outage"), &care(500), at(5 * MIN));
        assert_eq!(reasons(&o), vec!["SurgeReady"]);
        assert_eq!(p.current().budget_met, Some(true));
    }

    #[test]
    fn budget_exceeded_then_ready_late() {
        let mut p = Plan::new(spec());
        p.at(Some("it-outage"), &care(10), t0());
        let o = p.at(Some("it-outage"), &care(100), at(5 * MIN - 1));
        assert_eq!(o.events, vec![]);
        assert_eq!(o.requeue_at, Some(at(5 * MIN)));

        let o = p.at(Some("it-outage"), &care(100), at(5 * MIN));
        assert_eq!(reasons(&o), vec!["BudgetExceeded"]);
        assert!(o.events[0].is_warning());
        assert_eq!(
            o.events[0].message(),
            "surge for scenario \"it-outage\" not ready within its 5m0s budget: care 100/500 calls ready"
        );
        assert_eq!(p.phase(), Phase::Surging);
        assert_eq!(p.current().budget_met, Some(false));
        assert_eq!(p.condition(CONDITION_WITHIN_BUDGET).1, "BudgetExceeded");
        assert_eq!(o.requeue_at, Some(at(15 * MIN)));

        let o = p.at(Some("it-outage"), &care(300), at(6 * MIN));
        assert_eq!(o.events, vec![]);

        let o = p.at(Some("it-outage"), &care(500), at(7 * MIN));
        assert_eq!(p.phase(), Phase::Active);
        assert_eq!(
            o.events,
            vec![PlanEvent::SurgeReady {
                scenario: "it-outage".into(),
                time_to_surge: Duration::from_secs(420),
                budget: Duration::from_secs(300),
                met: false
            }]
        );
        assert_eq!(
            o.events[0].message(),
            "surge capacity ready in 7m0s (budget 5m0s, missed)"
        );
        assert_eq!(p.current().time_to_surge_seconds, Some(420));
        assert_eq!(p.current().budget_met, Some(false));
        assert_eq!(p.condition(CONDITION_WITHIN_BUDGET).0, "False");
        assert_eq!(p.condition(CONDITION_SURGE_READY).0, "True");
    }

    #[test]
    fn capacity_lost_after_ready_stays_active() {
        let mut p = active();
        let o = p.at(Some("it-outage"), &care(300), at(2 * MIN));
        assert_eq!(o.events, vec![]);
        assert_eq!(p.phase(), Phase::Active);
        let (status, reason, message) = p.condition(CONDITION_SURGE_READY);
        assert_eq!((status, reason), ("False", "CapacityLost"));
        assert!(message.contains("care 300/500"), "{message}");
        p.at(Some("it-outage"), &care(500), at(3 * MIN));
        assert_eq!(p.condition(CONDITION_SURGE_READY).1, "CapacityReady");
    }

    #[test]
    fn retarget_to_a_bigger_scenario() {
        let mut p = active();
        let before = p.current().clone();
        let o = p.at(Some("big"), &care(500), at(10 * MIN));
        assert_eq!(p.phase(), Phase::Surging);
        // The shared 0m step was already announced: not repeated.
        assert_eq!(
            o.events,
            vec![PlanEvent::Retargeted {
                from: "it-outage".into(),
                to: "big".into()
            }]
        );
        let cur = p.current();
        assert_eq!(cur.scenario, "big");
        assert_eq!(cur.declared_at, before.declared_at);
        assert_eq!(cur.surge_started_at, time(at(10 * MIN)));
        assert_eq!(cur.deadline, time(at(15 * MIN)));
        assert_eq!(cur.surge_ready_at, None);
        assert_eq!(cur.time_to_surge_seconds, None);
        assert_eq!(cur.time_to_surge_milliseconds, None);
        assert_eq!(cur.budget_met, None);
        assert_eq!(cur.escalations, before.escalations);
        assert_eq!(p.targets(), vec![Some(1000)]);
        assert_eq!(o.requeue_at, Some(at(15 * MIN)));

        let o = p.at(Some("big"), &care(1000), at(12 * MIN));
        assert_eq!(reasons(&o), vec!["SurgeReady"]);
        assert_eq!(p.current().time_to_surge_milliseconds, Some(120_000));
        // Next: the big scenario's 1h step (from the declaration).
        assert_eq!(o.requeue_at, Some(at(60 * MIN)));
    }

    #[test]
    fn retarget_while_surging_and_already_ready() {
        let mut p = Plan::new(spec());
        p.at(Some("it-outage"), &care(10), t0());
        // tenfold: 10 x standby.calls (10) = 100, already carried.
        let o = p.at(Some("tenfold"), &care(150), at(MIN));
        assert_eq!(reasons(&o), vec!["ScenarioChanged", "SurgeReady"]);
        assert_eq!(p.phase(), Phase::Active);
        assert_eq!(p.targets(), vec![Some(100)]);
        assert_eq!(p.current().time_to_surge_milliseconds, Some(0));
        assert_eq!(p.current().time_to_surge_seconds, Some(0));
    }

    #[test]
    fn declaration_details_follow_the_declarer() {
        let mut p = active();
        let input = CrisisPlanStatus {
            declaration: Some(Declaration {
                incident_ref: Some("INC-9".into()),
                ..declaration("it-outage")
            }),
            ..p.status.clone()
        };
        let o = checked(&p.spec, &input, &care(500), at(2 * MIN));
        assert_eq!(o.events, vec![]);
        p.status = o.status;
        assert_eq!(p.current().incident_ref.as_deref(), Some("INC-9"));
    }

    #[test]
    fn surge_below_standby_publishes_the_standby() {
        let mut p = Plan::new(spec());
        let mut h = hotline(0);
        h.standby_now = 800;
        p.at(Some("it-outage"), &observed(&[("care", h)]), t0());
        assert_eq!(p.status.hotlines[0].surge_calls, Some(500));
        assert_eq!(p.targets(), vec![Some(800)]);
    }

    #[test]
    fn unknown_scenario_in_standby() {
        let mut p = Plan::new(spec());
        let o = p.at(Some("nope"), &care(10), t0());
        assert_eq!(p.phase(), Phase::Standby);
        assert_eq!(p.status.current, None);
        assert_eq!(p.targets(), vec![None]);
        assert_eq!(o.requeue_at, None);
        let message = "status.declaration.scenario: \"nope\" is not a scenario of this plan (known: it-outage, big, tenfold)";
        assert_eq!(
            o.events,
            vec![PlanEvent::Invalid {
                reason: "UnknownScenario",
                message: message.into()
            }]
        );
        assert!(o.events[0].is_warning());
        assert_eq!(o.events[0].reason(), "UnknownScenario");
        assert_eq!(
            p.condition(CONDITION_VALID),
            ("False", "UnknownScenario", message)
        );
        assert_eq!(p.condition(CONDITION_DECLARED).1, "NotDeclared");
        // Still there later: no new event.
        let o = p.at(Some("nope"), &care(10), at(10 * MIN));
        assert_eq!(o.events, vec![]);
        // Fixed: the crisis starts.
        let o = p.at(Some("it-outage"), &care(10), at(11 * MIN));
        assert_eq!(reasons(&o), vec!["CrisisDeclared", "EscalationStep"]);
        assert_eq!(p.condition(CONDITION_VALID).0, "True");
        assert_eq!(p.current().declared_at, Time(at(11 * MIN)));
    }

    #[test]
    fn unknown_scenario_during_a_crisis_freezes_it() {
        let mut p = Plan::new(spec());
        p.at(Some("it-outage"), &care(10), t0());
        let before = p.status.clone();
        // Past the deadline and the 15m step: nothing moves while invalid.
        let o = p.at(Some("nope"), &care(100), at(20 * MIN));
        assert_eq!(reasons(&o), vec!["UnknownScenario"]);
        assert_eq!(o.requeue_at, None);
        assert_eq!(p.phase(), Phase::Surging);
        assert_eq!(p.status.current, before.current);
        assert_eq!(p.targets(), vec![Some(500)]);
        assert_eq!(p.status.hotlines[0].surge_calls, Some(500));
        assert_eq!(p.status.hotlines[0].ready_calls, Some(100));
        // Fixed: the overdue budget and escalation step catch up.
        let o = p.at(Some("it-outage"), &care(100), at(21 * MIN));
        assert_eq!(reasons(&o), vec!["EscalationStep", "BudgetExceeded"]);
        assert_eq!(p.condition(CONDITION_VALID).0, "True");
    }

    #[test]
    fn unknown_scenario_during_exit_holds_the_step() {
        let mut p = active();
        p.at(None, &care(500), at(30 * MIN));
        p.at(None, &care(500), at(35 * MIN));
        assert_eq!(p.targets(), vec![Some(375)]);
        let o = p.at(Some("nope"), &care(500), at(50 * MIN));
        assert_eq!(reasons(&o), vec!["UnknownScenario"]);
        assert_eq!(p.phase(), Phase::Exiting);
        assert_eq!(p.targets(), vec![Some(375)]);
        assert!(p.condition(CONDITION_DECLARED).2.contains("step 1 of 4"));
        // Declaration withdrawn: the exit catches up in one go.
        let o = p.at(None, &care(500), at(51 * MIN));
        assert_eq!(reasons(&o), vec!["StepDown", "BackToStandby"]);
        assert_eq!(o.events[0], PlanEvent::StepDown { step: 4, steps: 4 });
    }

    #[test]
    fn missing_hotline_is_invalid_but_does_not_block_the_others() {
        let mut p = Plan::new(spec_with(&["care", "ghost"]));
        let obs = observed(&[
            ("care", hotline(10)),
            (
                "ghost",
                HotlineObservation {
                    exists: false,
                    ..hotline(0)
                },
            ),
        ]);
        let o = p.at(Some("it-outage"), &obs, t0());
        assert_eq!(
            reasons(&o),
            vec!["HotlineNotFound", "CrisisDeclared", "EscalationStep"]
        );
        assert_eq!(
            o.events[0].message(),
            "spec.hotlines: hotline \"ghost\" not found in this namespace"
        );
        assert_eq!(p.condition(CONDITION_VALID).1, "HotlineNotFound");
        assert_eq!(p.targets(), vec![Some(500), None]);
        assert_eq!(p.status.hotlines[1].ready_calls, None);
        let ready = observed(&[("care", hotline(500))]);
        let o = p.at(Some("it-outage"), &ready, at(MIN));
        assert_eq!(reasons(&o), vec!["SurgeReady"]);
        assert_eq!(p.phase(), Phase::Active);
    }

    #[test]
    fn no_existing_hotline_is_never_ready() {
        let mut p = Plan::new(spec());
        let o = p.at(Some("it-outage"), &Observed::default(), t0());
        assert_eq!(
            reasons(&o),
            vec!["HotlineNotFound", "CrisisDeclared", "EscalationStep"]
        );
        let o = p.at(Some("it-outage"), &Observed::default(), at(5 * MIN));
        assert_eq!(reasons(&o), vec!["BudgetExceeded"]);
        assert!(
            o.events[0]
                .message()
                .ends_with("budget: no targeted hotline exists")
        );
        assert_eq!(p.phase(), Phase::Surging);
    }

    #[test]
    fn surge_exceeding_capacity_is_published_and_degraded() {
        let mut p = Plan::new(spec());
        let capped = |ready| {
            observed(&[(
                "care",
                HotlineObservation {
                    max_calls: Some(400),
                    limiting_components: vec!["gateway".into()],
                    ..hotline(ready)
                },
            )])
        };
        let o = p.at(Some("it-outage"), &capped(10), t0());
        assert_eq!(
            reasons(&o),
            vec!["CrisisDeclared", "EscalationStep", "SurgeExceedsCapacity"]
        );
        let message = "hotline \"care\" can carry at most 400 calls, below its target of 500 (limited by maxReplicas of gateway)";
        assert_eq!(
            o.events[2],
            PlanEvent::Degraded {
                reason: "SurgeExceedsCapacity",
                message: message.into()
            }
        );
        assert!(o.events[2].is_warning());
        assert_eq!(p.targets(), vec![Some(500)]);
        assert_eq!(
            p.condition(CONDITION_DEGRADED),
            ("True", "SurgeExceedsCapacity", message)
        );
        let o = p.at(Some("it-outage"), &capped(400), at(5 * MIN));
        assert_eq!(reasons(&o), vec!["BudgetExceeded"]);
        assert!(
            o.events[0]
                .message()
                .ends_with("care 400/500 calls ready (capped by gateway)"),
            "{}",
            o.events[0].message()
        );
        // Once stepped down below the ceiling, no longer degraded.
        p.at(None, &capped(400), at(10 * MIN));
        p.at(None, &capped(400), at(15 * MIN));
        assert_eq!(p.targets(), vec![Some(375)]);
        assert_eq!(p.condition(CONDITION_DEGRADED).1, "AsExpected");
    }

    #[test]
    fn exit_steps_down_25_percent_every_5_minutes() {
        let mut p = active();
        let o = p.at(None, &care(500), at(30 * MIN));
        assert_eq!(p.phase(), Phase::Exiting);
        assert_eq!(
            o.events,
            vec![PlanEvent::ExitStarted {
                scenario: "it-outage".into()
            }]
        );
        assert_eq!(p.current().exit_started_at, time(at(30 * MIN)));
        assert_eq!(p.targets(), vec![Some(500)]);
        assert_eq!(o.requeue_at, Some(at(35 * MIN)));
        let (status, reason, message) = p.condition(CONDITION_DECLARED);
        assert_eq!((status, reason), ("False", "Exiting"));
        assert!(message.ends_with("step 0 of 4"), "{message}");

        let o = p.at(None, &care(500), at(35 * MIN - 1));
        assert_eq!(o.events, vec![]);
        assert_eq!(p.targets(), vec![Some(500)]);
        assert_eq!(o.requeue_at, Some(at(35 * MIN)));

        for (k, minute, target) in [(1, 35, 375), (2, 40, 250), (3, 45, 125)] {
            let o = p.at(None, &care(500), at(minute * MIN));
            assert_eq!(o.events, vec![PlanEvent::StepDown { step: k, steps: 4 }]);
            assert_eq!(p.targets(), vec![Some(target)], "step {k}");
            assert_eq!(o.requeue_at, Some(at((minute + 5) * MIN)));
            assert_eq!(p.phase(), Phase::Exiting);
        }
        assert_eq!(
            PlanEvent::StepDown { step: 3, steps: 4 }.message(),
            "step-down step 3 of 4"
        );

        let o = p.at(None, &care(125), at(50 * MIN));
        assert_eq!(reasons(&o), vec!["StepDown", "BackToStandby"]);
        assert_eq!(
            o.events[1].message(),
            "back to standby after crisis \"it-outage\" (50m0s since declaration)"
        );
        assert_eq!(o.requeue_at, None);
        assert_eq!(p.phase(), Phase::Standby);
        assert_eq!(p.status.current, None);
        assert_eq!(p.targets(), vec![None]);
        assert_eq!(p.status.history.len(), 1);
        let past = &p.status.history[0];
        assert_eq!(past.ended_at, time(at(50 * MIN)));
        assert_eq!(past.exit_started_at, time(at(30 * MIN)));
        assert_eq!(past.budget_met, Some(true));
        assert_eq!(p.condition(CONDITION_DECLARED).1, "NotDeclared");
        assert_eq!(p.condition(CONDITION_WITHIN_BUDGET).1, "NoCrisis");
    }

    #[test]
    fn step_down_never_goes_below_the_standby_in_force() {
        let mut p = active();
        let mut h = hotline(500);
        h.standby_now = 200;
        let obs = observed(&[("care", h)]);
        p.at(None, &obs, at(30 * MIN));
        p.at(None, &obs, at(40 * MIN));
        assert_eq!(p.targets(), vec![Some(250)]);
        p.at(None, &obs, at(45 * MIN));
        assert_eq!(p.targets(), vec![Some(200)]);
    }

    #[test]
    fn several_steps_due_at_once_give_one_event() {
        let mut p = active();
        p.at(None, &care(500), at(30 * MIN));
        let o = p.at(None, &care(500), at(47 * MIN));
        assert_eq!(o.events, vec![PlanEvent::StepDown { step: 3, steps: 4 }]);
        assert_eq!(p.targets(), vec![Some(125)]);
        assert_eq!(o.requeue_at, Some(at(50 * MIN)));
    }

    #[test]
    fn percent_100_is_one_step() {
        let mut s = spec();
        s.exit = Some(Exit {
            step_down: Some(StepDown {
                percent: 100,
                every: "2m".into(),
            }),
        });
        let mut p = Plan::new(s);
        p.at(Some("it-outage"), &care(500), t0());
        assert_eq!(p.phase(), Phase::Active);
        let o = p.at(None, &care(500), at(10 * MIN));
        assert_eq!(p.targets(), vec![Some(500)]);
        assert_eq!(o.requeue_at, Some(at(12 * MIN)));
        assert!(p.condition(CONDITION_DECLARED).2.ends_with("step 0 of 1"));
        let o = p.at(None, &care(500), at(12 * MIN));
        assert_eq!(
            o.events,
            vec![
                PlanEvent::StepDown { step: 1, steps: 1 },
                PlanEvent::BackToStandby {
                    scenario: "it-outage".into(),
                    duration: Duration::from_secs(12 * 60)
                }
            ]
        );
        assert_eq!(p.phase(), Phase::Standby);
    }

    #[test]
    fn uneven_percent_rounds_steps_and_targets_up() {
        let mut s = spec();
        s.exit = Some(Exit {
            step_down: Some(StepDown {
                percent: 30,
                every: "1m".into(),
            }),
        });
        let mut p = Plan::new(s);
        p.at(Some("it-outage"), &care(500), t0());
        p.at(None, &care(500), at(MIN));
        let mut seen = vec![];
        for m in 2..=5 {
            p.at(None, &care(500), at(m * MIN));
            seen.push(p.targets()[0]);
        }
        // ceil(100/30) = 4 steps: 70%, 40%, 10%, then standby.
        assert_eq!(seen, vec![Some(350), Some(200), Some(50), None]);
    }

    #[test]
    fn surging_can_exit_before_ready() {
        let mut s = spec();
        s.exit = Some(Exit {
            step_down: Some(StepDown {
                percent: 25,
                every: "10m".into(),
            }),
        });
        let mut p = Plan::new(s);
        p.at(Some("it-outage"), &care(10), t0());
        let o = p.at(None, &care(10), at(MIN));
        assert_eq!(reasons(&o), vec!["ExitStarted"]);
        assert_eq!(p.phase(), Phase::Exiting);
        // Neither the deadline nor the 15m escalation step matter any more.
        assert_eq!(o.requeue_at, Some(at(11 * MIN)));
        let o = p.at(None, &care(10), at(16 * MIN));
        assert_eq!(o.events, vec![PlanEvent::StepDown { step: 1, steps: 4 }]);
        assert_eq!(p.current().budget_met, None);
        assert_eq!(p.current().escalations.len(), 1);
    }

    #[test]
    fn zero_every_returns_to_standby_at_once() {
        let mut s = spec();
        s.exit = Some(Exit {
            step_down: Some(StepDown {
                percent: 25,
                every: "0s".into(),
            }),
        });
        let mut p = Plan::new(s);
        p.at(Some("it-outage"), &care(500), t0());
        let o = p.at(None, &care(500), at(MIN));
        assert_eq!(
            reasons(&o),
            vec!["ExitStarted", "StepDown", "BackToStandby"]
        );
        assert_eq!(p.phase(), Phase::Standby);
    }

    #[test]
    fn declaration_during_exit_is_a_new_crisis() {
        let mut p = active();
        p.at(None, &care(500), at(30 * MIN));
        p.at(None, &care(500), at(35 * MIN));
        let old = p.current().clone();
        let o = p.at(Some("big"), &care(500), at(36 * MIN));
        assert_eq!(reasons(&o), vec!["CrisisDeclared", "EscalationStep"]);
        assert_eq!(p.phase(), Phase::Surging);
        assert_eq!(p.status.history.len(), 1);
        assert_eq!(
            p.status.history[0],
            CrisisRecord {
                ended_at: time(at(36 * MIN)),
                ..old
            }
        );
        let cur = p.current();
        assert_eq!(cur.scenario, "big");
        assert_eq!(cur.declared_at, Time(at(36 * MIN)));
        assert_eq!(cur.exit_started_at, None);
        assert_eq!(cur.escalations.len(), 1);
        assert_eq!(p.targets(), vec![Some(1000)]);
    }

    #[test]
    fn redeclaring_the_same_scenario_during_exit_is_a_new_crisis_too() {
        let mut p = active();
        p.at(None, &care(500), at(30 * MIN));
        let o = p.at(Some("it-outage"), &care(500), at(31 * MIN));
        assert_eq!(
            reasons(&o),
            vec!["CrisisDeclared", "EscalationStep", "SurgeReady"]
        );
        assert_eq!(p.phase(), Phase::Active);
        assert_eq!(p.status.history.len(), 1);
    }

    #[test]
    fn history_keeps_the_last_ten() {
        let mut s = spec();
        s.exit = Some(Exit {
            step_down: Some(StepDown {
                percent: 100,
                every: "0s".into(),
            }),
        });
        let mut p = Plan::new(s);
        for i in 0..12 {
            p.at(Some("it-outage"), &care(500), at(i * 60 * MIN));
            p.at(None, &care(500), at(i * 60 * MIN + MIN));
            assert_eq!(p.phase(), Phase::Standby);
        }
        let h = &p.status.history;
        assert_eq!(h.len(), HISTORY_LIMIT);
        assert_eq!(h[0].declared_at, Time(at(2 * 60 * MIN)));
        assert_eq!(h[9].declared_at, Time(at(11 * 60 * MIN)));
        assert_eq!(h[9].ended_at, time(at(11 * 60 * MIN + MIN)));
    }

    #[test]
    fn escalation_steps_at_their_offsets() {
        let mut s = spec();
        s.scenarios[0].escalation.push(EscalationStep {
            after: "1h".into(),
            notify: "board".into(),
        });
        let mut p = Plan::new(s);
        let o = p.at(Some("it-outage"), &care(500), t0());
        assert_eq!(
            reasons(&o),
            vec!["CrisisDeclared", "EscalationStep", "SurgeReady"]
        );
        assert_eq!(o.requeue_at, Some(at(15 * MIN)));
        let o = p.at(Some("it-outage"), &care(500), at(15 * MIN - 1));
        assert_eq!(o.events, vec![]);
        let o = p.at(Some("it-outage"), &care(500), at_ms(15 * MIN * 1000 + 250));
        assert_eq!(
            o.events,
            vec![PlanEvent::EscalationStep {
                after: "15m".into(),
                notify: "management".into()
            }]
        );
        assert_eq!(
            o.events[0].message(),
            "escalation step after 15m: notify management"
        );
        assert_eq!(o.requeue_at, Some(at(60 * MIN)));
        let o = p.at(Some("it-outage"), &care(500), at(60 * MIN));
        assert_eq!(reasons(&o), vec!["EscalationStep"]);
        assert_eq!(o.requeue_at, None);
        let notified: Vec<(&str, Timestamp)> = p
            .current()
            .escalations
            .iter()
            .map(|e| (e.notify.as_str(), e.notified_at.0))
            .collect();
        assert_eq!(
            notified,
            vec![
                ("crisis-cell", t0()),
                ("management", at(15 * MIN)),
                ("board", at(60 * MIN))
            ]
        );
    }

    #[test]
    fn overdue_escalation_steps_are_announced_together() {
        let mut p = Plan::new(spec());
        p.at(Some("it-outage"), &care(10), t0());
        let mut input = p.status.clone();
        input.declaration = Some(declaration("it-outage"));
        input.current.as_mut().unwrap().escalations.clear();
        let o = checked(&p.spec, &input, &care(10), at(20 * MIN));
        assert_eq!(
            reasons(&o),
            vec!["EscalationStep", "EscalationStep", "BudgetExceeded"]
        );
    }

    #[test]
    fn invalid_durations_freeze_scaling() {
        let mut s = spec();
        s.time_budget = "five minutes".into();
        let mut p = Plan::new(s);
        let o = p.at(Some("it-outage"), &care(10), t0());
        let message = "spec.timeBudget: \"five minutes\" is not a duration, write whole numbers with units ms, s, m, h (e.g. 90s, 5m, 1h30m)";
        assert_eq!(
            o.events,
            vec![PlanEvent::Invalid {
                reason: "InvalidDuration",
                message: message.into()
            }]
        );
        assert_eq!(
            p.condition(CONDITION_VALID),
            ("False", "InvalidDuration", message)
        );
        assert_eq!(p.phase(), Phase::Standby);
        assert_eq!(p.targets(), vec![None]);
        assert_eq!(o.requeue_at, None);
        p.spec.time_budget = "5m".into();
        let o = p.at(Some("it-outage"), &care(10), at(MIN));
        assert_eq!(reasons(&o), vec!["CrisisDeclared", "EscalationStep"]);
    }

    #[test]
    fn invalid_every_holds_the_exit_step() {
        let mut p = active();
        p.at(None, &care(500), at(30 * MIN));
        p.at(None, &care(500), at(35 * MIN));
        p.spec.exit = Some(Exit {
            step_down: Some(StepDown {
                percent: 25,
                every: "5 min".into(),
            }),
        });
        let o = p.at(None, &care(500), at(60 * MIN));
        assert_eq!(reasons(&o), vec!["InvalidDuration"]);
        assert_eq!(p.phase(), Phase::Exiting);
        assert_eq!(p.targets(), vec![Some(375)]);
    }

    #[test]
    fn invalid_escalation_after_only_skips_that_step() {
        let mut s = spec();
        s.scenarios[0].escalation[0].after = "soon".into();
        let mut p = Plan::new(s);
        let o = p.at(Some("it-outage"), &care(10), t0());
        assert_eq!(reasons(&o), vec!["InvalidDuration", "CrisisDeclared"]);
        assert!(
            o.events[0]
                .message()
                .starts_with("spec.scenarios[0].escalation[0].after: \"soon\"")
        );
        assert_eq!(p.phase(), Phase::Surging);
    }

    /// A typo in the drill schedule is reported (Valid=False, a Warning
    /// Event) but does not hold back a real crisis: only problems that leave
    /// the crisis undeliverable freeze the plan.
    #[test]
    fn a_drill_schedule_typo_is_reported_without_freezing_a_crisis() {
        let mut s = spec();
        s.drills = Some(crate::api::Drills {
            schedule: "every monday".into(),
            scenario: "it-outage".into(),
            duration: "30m".into(),
        });
        let mut p = Plan::new(s);
        let o = p.at(Some("it-outage"), &care(10), t0());
        assert_eq!(reasons(&o)[0], "InvalidDrillSchedule", "{:?}", o.events);
        assert!(reasons(&o).contains(&"CrisisDeclared"), "{:?}", o.events);
        assert_eq!(p.phase(), Phase::Surging);
        let (status, reason, message) = p.condition(CONDITION_VALID);
        assert_eq!((status, reason), ("False", "InvalidDrillSchedule"));
        assert!(message.starts_with("spec.drills.schedule"), "{message}");
    }

    #[test]
    fn several_problems_are_all_listed() {
        let mut s = spec_with(&["care", "ghost"]);
        s.time_budget = "x".into();
        let mut p = Plan::new(s);
        let o = p.at(Some("nope"), &care(10), t0());
        assert_eq!(
            reasons(&o),
            vec!["InvalidDuration", "UnknownScenario", "HotlineNotFound"]
        );
        let (_, reason, message) = p.condition(CONDITION_VALID);
        assert_eq!(reason, "InvalidDuration");
        assert_eq!(message.split("; ").count(), 3);
        // One fixed: the others are not announced again.
        p.spec.time_budget = "5m".into();
        let o = p.at(Some("nope"), &care(10), at(MIN));
        assert_eq!(o.events, vec![]);
        assert_eq!(p.condition(CONDITION_VALID).1, "UnknownScenario");
    }

    #[test]
    fn inconsistent_input_is_repaired() {
        // Surging without a record (hand-edited status): treated as Standby.
        let input = CrisisPlanStatus {
            phase: Some(Phase::Surging),
            declaration: Some(declaration("it-outage")),
            ..CrisisPlanStatus::default()
        };
        let o = reconcile(&spec(), None, &input, &care(10), t0());
        assert_eq!(o.status.phase, Some(Phase::Surging));
        assert_eq!(o.status.current.unwrap().declared_at, Time(t0()));
        assert_eq!(
            o.events.iter().map(PlanEvent::reason).collect::<Vec<_>>(),
            vec!["CrisisDeclared", "EscalationStep"]
        );
    }

    #[test]
    fn set_condition_keeps_the_transition_time_unless_status_flips() {
        let mut c = vec![];
        assert!(set_condition(
            &mut c,
            "Ready",
            true,
            "A",
            "a",
            Some(1),
            at_ms(1_500)
        ));
        assert_eq!(c[0].last_transition_time, Time(at(1)));
        assert!(!set_condition(
            &mut c,
            "Ready",
            true,
            "B",
            "b",
            Some(2),
            at(60)
        ));
        assert_eq!(c[0].last_transition_time, Time(at(1)));
        assert_eq!((c[0].reason.as_str(), c[0].message.as_str()), ("B", "b"));
        assert_eq!(c[0].observed_generation, Some(2));
        assert!(set_condition(
            &mut c,
            "Ready",
            false,
            "C",
            "c",
            Some(2),
            at(120)
        ));
        assert_eq!(c[0].last_transition_time, Time(at(120)));
        assert_eq!(c[0].status, "False");
        set_condition(&mut c, "Other", false, "D", "", None, at(130));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn event_reasons_and_types() {
        let d = Duration::from_secs(1);
        let cases = [
            (
                PlanEvent::Declared {
                    scenario: "s".into(),
                    declared_by: None,
                    reason: None,
                    incident_ref: None,
                    drill: true,
                },
                "CrisisDeclared",
                false,
            ),
            (
                PlanEvent::Retargeted {
                    from: "a".into(),
                    to: "b".into(),
                },
                "ScenarioChanged",
                false,
            ),
            (
                PlanEvent::SurgeReady {
                    scenario: "s".into(),
                    time_to_surge: d,
                    budget: d,
                    met: true,
                },
                "SurgeReady",
                false,
            ),
            (
                PlanEvent::BudgetExceeded {
                    scenario: "s".into(),
                    budget: d,
                    short: vec![],
                },
                "BudgetExceeded",
                true,
            ),
            (
                PlanEvent::EscalationStep {
                    after: "0m".into(),
                    notify: "x".into(),
                },
                "EscalationStep",
                false,
            ),
            (
                PlanEvent::ExitStarted {
                    scenario: "s".into(),
                },
                "ExitStarted",
                false,
            ),
            (PlanEvent::StepDown { step: 1, steps: 2 }, "StepDown", false),
            (
                PlanEvent::BackToStandby {
                    scenario: "s".into(),
                    duration: d,
                },
                "BackToStandby",
                false,
            ),
            (
                PlanEvent::Invalid {
                    reason: "HotlineNotFound",
                    message: "m".into(),
                },
                "HotlineNotFound",
                true,
            ),
            (
                PlanEvent::Degraded {
                    reason: "SurgeExceedsCapacity",
                    message: "m".into(),
                },
                "SurgeExceedsCapacity",
                true,
            ),
        ];
        for (event, reason, warning) in cases {
            assert_eq!(event.reason(), reason);
            assert_eq!(event.is_warning(), warning, "{reason}");
            assert!(!event.message().is_empty());
        }
        assert_eq!(
            PlanEvent::Declared {
                scenario: "s".into(),
                declared_by: None,
                reason: None,
                incident_ref: None,
                drill: true,
            }
            .message(),
            "drill declared: scenario \"s\""
        );
    }

    #[test]
    fn go_durations() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(0)), "0s");
        assert_eq!(go_duration(ms(250)), "250ms");
        assert_eq!(go_duration(ms(42_300)), "42.3s");
        assert_eq!(go_duration(ms(1_005)), "1.005s");
        assert_eq!(go_duration(ms(300_000)), "5m0s");
        assert_eq!(go_duration(ms(5_400_000)), "1h30m0s");
        assert_eq!(go_duration(ms(3_600_000 + 1_500)), "1h0m1.5s");

        let p = |s| parse_go_duration(s).map(|d| d.as_millis());
        assert_eq!(p("0m"), Some(0));
        assert_eq!(p("90s"), Some(90_000));
        assert_eq!(p("5m"), Some(300_000));
        assert_eq!(p("1h30m"), Some(5_400_000));
        assert_eq!(p("250ms"), Some(250));
        assert_eq!(p("1m30s250ms"), Some(90_250));
        for bad in [
            "",
            "0",
            "5",
            "m",
            "5 m",
            "1.5h",
            "-5m",
            "5d",
            "5mm",
            "99999999999999999999h",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn step_arithmetic() {
        assert_eq!(steps(25), 4);
        assert_eq!(steps(30), 4);
        assert_eq!(steps(100), 1);
        assert_eq!(steps(1), 100);
        assert_eq!(stepped(500, 0, 25), 500);
        assert_eq!(stepped(500, 1, 25), 375);
        assert_eq!(stepped(7, 1, 50), 4);
        assert_eq!(stepped(500, 9, 25), 0);
        assert_eq!(stepped(i32::MAX, 1, 1), 2_126_008_811);
        assert_eq!(parse_step("... stepping down: step 3 of 4"), Some(3));
        assert_eq!(parse_step("no crisis declared"), None);
        assert_eq!(to_second(at_ms(-1)), at(-1));
        assert_eq!(to_second(at_ms(1_999)), at(1));
    }

    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::option;
        use proptest::prelude::*;
        use proptest::sample::select;

        fn arb_duration(good: &'static [&'static str]) -> impl Strategy<Value = String> {
            prop_oneof![
                19 => select(good).prop_map(String::from),
                1 => Just("bad".to_owned()),
            ]
        }

        fn arb_surge() -> impl Strategy<Value = Surge> {
            prop_oneof![
                (0..3000i32).prop_map(calls),
                (1..20i32).prop_map(|f| Surge {
                    calls: None,
                    factor: Some(f)
                }),
            ]
        }

        type Parts = (Surge, Vec<(&'static str, &'static str)>);

        fn arb_scenario() -> impl Strategy<Value = Parts> {
            let step = (
                select(&["0m", "1m", "15m", "1h"][..]),
                select(&["a", "b"][..]),
            );
            (arb_surge(), vec(step, 0..=3))
        }

        fn arb_spec() -> impl Strategy<Value = CrisisPlanSpec> {
            (
                1..=3usize,
                arb_duration(&["0s", "30s", "5m", "1h"]),
                vec(arb_scenario(), 1..=3),
                option::of((
                    prop_oneof![select(&[25, 50, 100][..]), 1..=100i32],
                    arb_duration(&["0s", "1m", "5m"]),
                )),
            )
                .prop_map(|(n, budget, scenarios, exit)| CrisisPlanSpec {
                    hotlines: (0..n)
                        .map(|i| HotlineRef {
                            name: format!("h{i}"),
                        })
                        .collect(),
                    time_budget: budget,
                    scenarios: scenarios
                        .into_iter()
                        .enumerate()
                        .map(|(i, (surge, steps))| scenario(&format!("s{i}"), surge, &steps))
                        .collect(),
                    exit: exit.map(|(percent, every)| Exit {
                        step_down: Some(StepDown { percent, every }),
                    }),
                    drills: None,
                })
        }

        fn arb_observed() -> impl Strategy<Value = Observed> {
            let one = (
                prop::bool::weighted(0.9),
                0..200i32,
                0..400i32,
                0..4000i32,
                option::of(0..4000i32),
            )
                .prop_map(|(exists, base, standby, ready, max)| HotlineObservation {
                    exists,
                    base_standby_calls: base,
                    standby_now: standby,
                    ready_calls: ready,
                    max_calls: max,
                    limiting_components: max.map(|_| "gateway".to_owned()).into_iter().collect(),
                });
            vec(one, 3).prop_map(|v| Observed {
                hotlines: v
                    .into_iter()
                    .enumerate()
                    .map(|(i, o)| (format!("h{i}"), o))
                    .collect(),
            })
        }

        /// One call: which declaration (0-1: none, 2-3: a scenario, 4: an
        /// unknown one), time advance, new observations, and where to probe
        /// between now and the requeue instant.
        type Step = (u8, i64, Option<Observed>, u16);

        fn arb_step() -> impl Strategy<Value = Step> {
            (
                0u8..5,
                prop_oneof![Just(0i64), 0..120_000i64, 0..7_200_000i64],
                option::weighted(0.4, arb_observed()),
                any::<u16>(),
            )
        }

        /// Published targets stay between the standby in force and the
        /// surge (or the standby, if larger); none in Standby; exactly the
        /// surge while Surging/Active.
        fn check_targets(spec: &CrisisPlanSpec, status: &CrisisPlanStatus, obs: &Observed) {
            let phase = status.phase.unwrap();
            let scenario = status
                .current
                .as_ref()
                .and_then(|c| spec.scenarios.iter().find(|s| s.name == c.scenario));
            assert_eq!(status.hotlines.len(), spec.hotlines.len());
            for t in &status.hotlines {
                let o = obs.hotlines.get(&t.name).filter(|o| o.exists);
                let Some(target) = t.target_calls else {
                    assert!(phase == Phase::Standby || o.is_none(), "{phase:?} {t:?}");
                    continue;
                };
                assert_ne!(phase, Phase::Standby);
                let o = o.expect("target for a missing hotline");
                let standby = o.standby_now.max(0);
                let surge = surge_calls(scenario.expect("scenario"), o);
                assert!(target >= standby, "{target} < standby {standby}");
                assert!(target <= surge.max(standby), "{target} > surge {surge}");
                if matches!(phase, Phase::Surging | Phase::Active) {
                    assert_eq!(target, surge.max(standby));
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn lifecycle_properties(
                spec in arb_spec(),
                first in arb_observed(),
                steps in vec(arb_step(), 1..30),
                start_ms in 0i64..1_000_000_000_000,
            ) {
                let valid_spec = parse_go_duration(&spec.time_budget).is_some()
                    && spec
                        .exit
                        .as_ref()
                        .and_then(|e| e.step_down.as_ref())
                        .is_none_or(|s| parse_go_duration(&s.every).is_some());
                let mut now = at_ms(start_ms);
                let mut obs = first;
                let mut status = CrisisPlanStatus::default();
                for (declared, advance_ms, new_obs, probe) in steps {
                    now += SignedDuration::from_millis(advance_ms);
                    if let Some(o) = new_obs {
                        obs = o;
                    }
                    let scenario = match declared {
                        0 | 1 => None,
                        2 | 3 => Some(
                            spec.scenarios[usize::from(advance_ms as u8) % spec.scenarios.len()]
                                .name
                                .clone(),
                        ),
                        _ => Some("unknown".to_owned()),
                    };
                    let unknown = scenario.as_deref() == Some("unknown");
                    let input = CrisisPlanStatus {
                        declaration: scenario.map(|scenario| Declaration {
                            scenario,
                            ..Declaration::default()
                        }),
                        ..status.clone()
                    };
                    // No panic, allowed edges, no declaration, idempotence.
                    let out = checked(&spec, &input, &obs, now);
                    prop_assert!(out.status.phase.is_some());
                    if valid_spec && !unknown {
                        check_targets(&spec, &out.status, &obs);
                    }
                    prop_assert!(out.status.history.len() <= HISTORY_LIMIT);

                    // Nothing changes by time alone before requeue_at.
                    let horizon = out
                        .requeue_at
                        .map_or(3 * 3600 * 1_000_000_000, |r| r.duration_since(now).as_nanos() - 1);
                    let offset = horizon * i128::from(probe) / 65_536;
                    let later = now + SignedDuration::from_nanos(i64::try_from(offset).unwrap());
                    let quiet_in = CrisisPlanStatus {
                        declaration: input.declaration.clone(),
                        ..out.status.clone()
                    };
                    let quiet = reconcile(&spec, Some(7), &quiet_in, &obs, later);
                    prop_assert_eq!(quiet.events, vec![], "at {} (requeue {:?})", later, out.requeue_at);
                    prop_assert_eq!(&quiet.status, &out.status);

                    status = out.status;
                }
            }
        }
    }
}
