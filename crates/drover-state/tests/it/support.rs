//! What the tests share: a run to record under, a host result, host name
//! lists, and `on_both!`, which turns one test body into a SQLite and a
//! PostgreSQL test.

use drover_state::{HostResult, NewRun, Outcome, Store};

/// `$body(open)` as two tests; `open()` opens (or reopens) the same store:
/// SQLite in a temp dir, PostgreSQL on the binary's throwaway server.
macro_rules! on_both {
    ($body:ident: $sqlite:ident, $pg:ident) => {
        #[test]
        fn $sqlite() {
            let d = tempfile::tempdir().unwrap();
            let path = d.path().join(".drover/state.db");
            $body(&|| drover_state::Store::open(&path).unwrap())
        }
        #[test]
        fn $pg() {
            let url = drover_pgtest::shared().fresh_db();
            $body(&|| drover_state::Store::connect(&url).unwrap())
        }
    };
}

/// Opens (or reopens) the store a test body runs on.
pub type Open<'a> = &'a dyn Fn() -> Store;

/// Begin a run of `drover COMMAND` by operator `op`; its id.
pub fn begin(s: &mut Store, command: &str) -> i64 {
    s.begin_run(&NewRun {
        command: command.into(),
        args: "--hosts h1".into(),
        user: "op".into(),
        project_rev: "abc".into(),
    })
    .unwrap()
}

/// A host's result in run `run_id` (with an error when it failed).
pub fn result(run_id: i64, host: &str, outcome: Outcome, at_ms: i64) -> HostResult {
    HostResult {
        run_id,
        host: host.into(),
        outcome,
        generation: Some(1),
        changes: 3,
        bytes_sent: 100,
        files_written: 3,
        duration_ms: 5,
        error: (outcome == Outcome::Failed).then(|| "boom".into()),
        detail: "{}".into(),
        at_ms,
    }
}

pub fn hosts(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}
