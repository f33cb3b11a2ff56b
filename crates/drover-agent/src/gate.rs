//! The health gate: after a service is started, restarted or reloaded, or
//! its health check changed, the generation goes on only if the service is
//! up (the supervisor says it runs, in the process the gate began with) and
//! its probe passes, and it stays up until it has run for the supervisor's
//! settle time ([`crate::supervisor::SETTLE`]).
//!
//! A probe alone proves little: a service that crash-loops because its port
//! is taken has its probe answered by whatever holds the port. So the
//! supervisor is asked before the first attempt, between attempts and
//! after the last; a service that is not running, exits, or is replaced by
//! a new process (the supervisor restarting it) fails the gate at once. A
//! failure is a [`ServiceFailure`]: what failed, the supervisor's state,
//! and the service's last log lines.
//!
//! A leaf over the supervisor (layer 4: the engine drives it).

use std::time::{Duration, Instant};

use drover_proto::{FailureCause, HealthCheck, ServiceFailure, ServiceStatus, SupervisorState};

use crate::supervisor::Supervise;

/// How often the supervisor is asked while the gate waits.
const POLL: Duration = Duration::from_millis(50);
/// How long a service the supervisor is still starting (systemd's
/// `activating`) may take to run, without a health check to say longer.
const START_WAIT: Duration = Duration::from_secs(30);
/// How far back a later look may put a process's start (clock steps).
const SLACK_MS: u64 = 500;

/// Gate `name` (see the module's doc); `hc` is its health check, if any.
pub fn run(sup: &dyn Supervise, name: &str, hc: Option<&HealthCheck>) -> Result<(), Box<ServiceFailure>> {
    let result = gate(sup, name, hc);
    if let Some(hc) = hc {
        sup.probed(name, &hc.probe, result.is_ok());
    }
    result
}

fn gate(sup: &dyn Supervise, name: &str, hc: Option<&HealthCheck>) -> Result<(), Box<ServiceFailure>> {
    let began = Instant::now();
    let start_wait = hc.map_or(START_WAIT, |hc| {
        Duration::from_millis((hc.timeout_ms + hc.interval_ms).saturating_mul(u64::from(hc.retries.max(1))))
    });
    let base = loop {
        let s = sup.status(name);
        match s.state {
            SupervisorState::Running { .. } => break s,
            SupervisorState::Starting if began.elapsed() < start_wait => std::thread::sleep(POLL),
            _ => return Err(failure(sup, name, FailureCause::NotRunning {}, s)),
        }
    };
    if let Some(hc) = hc {
        let attempts = hc.retries.max(1);
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                watch_for(sup, name, &base, Duration::from_millis(hc.interval_ms))?;
            }
            match sup.probe(name, hc) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
            still_up(sup, name, &base)?;
        }
        if let Some(e) = last {
            let cause = FailureCause::Probe {
                probe: crate::health::describe(&hc.probe),
                attempts,
                error: e.message,
                output: e.output,
            };
            return Err(failure(sup, name, cause, sup.status(name)));
        }
    }
    // Up long enough: measured from the process's start when the
    // supervisor says it, else from the gate's.
    let settle = sup.settle();
    loop {
        let now = still_up(sup, name, &base)?;
        let up = now.state.uptime_ms().map_or_else(|| began.elapsed(), Duration::from_millis);
        if up >= settle {
            return Ok(());
        }
        std::thread::sleep(POLL.min(settle - up));
    }
}

/// The service as the supervisor sees it now, if it is still the process
/// the gate began with; the failure otherwise.
fn still_up(sup: &dyn Supervise, name: &str, base: &ServiceStatus) -> Result<ServiceStatus, Box<ServiceFailure>> {
    let now = sup.status(name);
    match (base.state, now.state) {
        (_, SupervisorState::Running { .. }) if same_process(&base.state, &now.state) => Ok(now),
        (_, SupervisorState::Running { .. }) => {
            Err(failure(sup, name, FailureCause::Restarted { pid_before: base.state.pid() }, now))
        }
        _ => Err(failure(sup, name, FailureCause::Exited {}, now)),
    }
}

/// Both running, in the same process: the same pid when the supervisor
/// names one, and a start no later than before (a restart in between
/// would make it later).
fn same_process(a: &SupervisorState, b: &SupervisorState) -> bool {
    let pids = match (a.pid(), b.pid()) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    let uptimes = match (a.uptime_ms(), b.uptime_ms()) {
        (Some(x), Some(y)) => y + SLACK_MS >= x,
        _ => true,
    };
    a.is_running() && b.is_running() && pids && uptimes
}

/// Sleep `d`, asking the supervisor every [`POLL`]: a service that goes
/// down meanwhile fails the gate then, not after its remaining retries.
fn watch_for(sup: &dyn Supervise, name: &str, base: &ServiceStatus, d: Duration) -> Result<(), Box<ServiceFailure>> {
    let until = Instant::now() + d;
    loop {
        still_up(sup, name, base)?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(POLL));
    }
}

/// The failure as data, with the service's last log lines. On a real host
/// the lines a dying service wrote last may still be on their way to its
/// logger (svlogd, journald): wait a moment for them.
fn failure(sup: &dyn Supervise, name: &str, cause: FailureCause, state: ServiceStatus) -> Box<ServiceFailure> {
    std::thread::sleep(sup.settle().min(Duration::from_millis(200)));
    Box::new(ServiceFailure { service: name.to_string(), cause, state, log: sup.log_tail(name) })
}

/// `drover status`'s look at one service: its state, and whether it is up
/// and passes one attempt of its health check now (up for less than the
/// settle time does not count yet: a crash loop can look up for a moment).
pub fn look(sup: &dyn Supervise, name: &str, hc: Option<&HealthCheck>) -> ServiceStatus {
    let mut st = sup.status(name);
    let Some(hc) = hc else { return st };
    let settle = sup.settle();
    let verdict = match st.state {
        SupervisorState::Running { uptime_ms: Some(up), .. } if Duration::from_millis(up) < settle => {
            Err(format!("up for only {:.1}s (it must stay up {}s)", up as f64 / 1000.0, settle.as_secs_f64()))
        }
        SupervisorState::Running { .. } => match sup.probe(name, hc) {
            Ok(()) => match still_up(sup, name, &st) {
                Ok(_) => Ok(()),
                Err(f) => Err(f.to_string()),
            },
            Err(e) => Err(format!("{}: {}", crate::health::describe(&hc.probe), e.message)),
        },
        state => Err(format!("not running: {state}")),
    };
    sup.probed(name, &hc.probe, verdict.is_ok());
    st.healthy = Some(verdict.is_ok());
    if let Err(why) = verdict {
        st.detail = why;
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    use drover_proto::{Exit, HealthProbe, ServiceAction};

    use crate::health::ProbeError;

    /// A supervisor that answers from a script: one state per `status`
    /// call (the last one repeated), probes that pass or fail as told.
    struct Scripted {
        states: RefCell<Vec<SupervisorState>>,
        probe_ok: bool,
        settle: Duration,
    }

    impl Supervise for Scripted {
        fn control(&self, _: &str, _: ServiceAction) -> crate::Result<()> {
            Ok(())
        }
        fn status(&self, name: &str) -> ServiceStatus {
            let mut s = self.states.borrow_mut();
            let state = if s.len() > 1 { s.remove(0) } else { s[0] };
            ServiceStatus { state, ..ServiceStatus::unknown(name) }
        }
        fn probe(&self, _: &str, _: &HealthCheck) -> Result<(), ProbeError> {
            if self.probe_ok {
                Ok(())
            } else {
                Err(ProbeError { message: "Connection refused".into(), output: None })
            }
        }
        fn settle(&self) -> Duration {
            self.settle
        }
        fn log_tail(&self, _: &str) -> Vec<String> {
            vec!["bind: Address already in use".into()]
        }
    }

    fn run_on(states: Vec<SupervisorState>, probe_ok: bool) -> Result<(), Box<ServiceFailure>> {
        let sup = Scripted { states: RefCell::new(states), probe_ok, settle: Duration::from_millis(100) };
        let hc = HealthCheck { probe: HealthProbe::Tcp { port: 1 }, timeout_ms: 10, retries: 3, interval_ms: 10 };
        run(&sup, "web", Some(&hc))
    }

    fn up(pid: u32, uptime_ms: u64) -> SupervisorState {
        SupervisorState::Running { pid: Some(pid), uptime_ms: Some(uptime_ms) }
    }

    #[test]
    fn a_running_service_whose_probe_passes_passes_once_it_has_settled() {
        let t = Instant::now();
        assert_eq!(run_on(vec![up(7, 0), up(7, 20), up(7, 60), up(7, 150)], true), Ok(()));
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_service_that_is_not_running_fails_even_when_its_probe_passes() {
        let down = SupervisorState::Restarting { exit: Some(Exit::Code(127)) };
        let f = run_on(vec![down], true).unwrap_err();
        assert_eq!(f.cause, FailureCause::NotRunning {});
        assert_eq!(f.state.state, down);
        assert_eq!(f.log, ["bind: Address already in use"]);
    }

    #[test]
    fn a_service_that_exits_or_is_restarted_during_the_gate_fails_it() {
        let down = SupervisorState::Restarting { exit: None };
        let f = run_on(vec![up(7, 0), up(7, 5), down], true).unwrap_err();
        assert_eq!(f.cause, FailureCause::Exited {});
        let f = run_on(vec![up(7, 0), up(7, 5), up(8, 0)], true).unwrap_err();
        assert_eq!(f.cause, FailureCause::Restarted { pid_before: Some(7) });
        // Same pid, but started again since (a supervisor without pids).
        let f = run_on(vec![up(7, 900), up(7, 2)], true).unwrap_err();
        assert_eq!(f.cause, FailureCause::Restarted { pid_before: Some(7) });
    }

    #[test]
    fn a_probe_that_never_passes_fails_with_its_last_error() {
        let f = run_on(vec![up(7, 5000)], false).unwrap_err();
        let FailureCause::Probe { probe, attempts, error, .. } = &f.cause else { panic!("{f:?}") };
        assert_eq!((probe.as_str(), *attempts, error.as_str()), ("TCP port 1", 3, "Connection refused"));
        assert!(f.to_string().contains("last log line: bind: Address already in use"), "{f}");
    }

    #[test]
    fn status_counts_a_service_up_for_less_than_the_settle_time_as_unhealthy() {
        let sup = Scripted { states: RefCell::new(vec![up(7, 20)]), probe_ok: true, settle: Duration::from_secs(1) };
        let hc = HealthCheck { probe: HealthProbe::Tcp { port: 1 }, timeout_ms: 10, retries: 3, interval_ms: 10 };
        let st = look(&sup, "web", Some(&hc));
        assert_eq!(st.healthy, Some(false));
        assert!(st.detail.contains("up for only"), "{}", st.detail);
        let sup = Scripted { states: RefCell::new(vec![up(7, 5000)]), probe_ok: true, settle: Duration::from_secs(1) };
        assert_eq!(look(&sup, "web", Some(&hc)).healthy, Some(true));
    }
}
