//! `drover lab up N`: make hosts h1..hN exist and answer SSH.
//!
//! Idempotent and growing: every step checks what exists first, so `up 3`
//! twice is a no-op (a stopped host is restarted), and `up 3` then `up 5`
//! adds h4 and h5. It never removes hosts. Hosts are prepared on a few
//! threads, then all are waited for in parallel.

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::base;
use crate::config::{host_name, LabConfig, LabPaths, Naming, MAX_HOSTS};
use crate::error::LabError;
use crate::host::{self, HostRun, HostSetup};
use crate::init::Init;
use crate::kind::Kind;
use crate::lab::Lab;
use crate::state::{HostRecord, LabState};
use crate::sys::FileLock;
use crate::{cgroup, cmd, net, preflight, sys};

/// The bastion's name in the state, `status` and inventories.
pub const BASTION_NAME: &str = "bastion";
/// Workers preparing hosts: mostly short `ip` and `ssh-keygen` runs.
const PREPARE_WORKERS: usize = 8;
/// Workers waiting for banners: mostly asleep.
const WAIT_WORKERS: usize = 32;
/// Per `up`: how long hosts may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// What `up` is doing, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// The base root filesystem is being built (once per machine, ~1 min).
    BuildingBase { dir: &'a std::path::Path },
    /// `total` hosts will be ensured, `new` of them created.
    Planned { total: usize, new: usize },
    /// A host's processes are running (or already were).
    Started { host: &'a str },
    /// A host answers SSH.
    Ready { host: &'a str },
}

/// What `up` did.
#[derive(Debug)]
pub struct UpReport {
    pub lab: Lab,
    /// Hosts created by this call.
    pub added: usize,
    /// Set when this call built the base root filesystem, and how long it took.
    pub base_built_in: Option<Duration>,
    pub elapsed: Duration,
    /// A kernel limit raised so that the hosts could start.
    pub raised: Option<crate::RaisedLimit>,
}

/// Bring lab `name` up with at least `count` hosts: of kind `kinds[0]`
/// if `kinds` names one (or none: runit), else host h<i> of `kinds[i-1]`
/// (as many kinds as hosts, [`LabError::KindCount`]). A host keeps the
/// kind it was made with: asking for another is an error
/// ([`LabError::KindMismatch`]), not a silent change. Each kind stacks on
/// its own base, built on first use.
///
/// With `bastion` (kept once asked for), host 0 (`bastion`, `.10`) is added
/// and, once every host answers, the controller's namespace loses its route
/// to every lab address but the bastion's ([`net::isolate_behind_bastion`]):
/// the hosts are reachable only through it, as behind a real jump host.
pub fn up(
    config: &LabConfig,
    name: &str,
    count: usize,
    kinds: &[Kind],
    ssh_ca: bool,
    bastion: bool,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<UpReport, LabError> {
    let started = Instant::now();
    preflight::check(preflight::UP)?;
    if count > MAX_HOSTS {
        return Err(LabError::TooManyHosts { requested: count, max: MAX_HOSTS });
    }
    let wanted: Vec<Kind> = match kinds {
        [] => vec![Kind::runit(); count],
        [one] => vec![*one; count],
        many if many.len() == count => many.to_vec(),
        many => return Err(LabError::KindCount { count, kinds: many.len() }),
    };
    let paths = config.lab_paths(name)?;
    // Checked before anything is created: a machine that cannot run a
    // kind's hosts is refused with nothing to clean up.
    check_kinds(&wanted)?;
    fs::create_dir_all(&paths.dir).map_err(LabError::io("create", &paths.dir))?;
    let _lock = FileLock::acquire(&paths.lock_file())?;
    let mut built = Vec::new();
    let mut ensure_base = |kind: Kind| -> Result<std::path::PathBuf, LabError> {
        let base = base::ensure(config, kind.base_kind(), &|dir| progress(Progress::BuildingBase { dir }))?;
        built.extend(base.built_in);
        Ok(base.dir)
    };
    let mut state = match LabState::load(&paths.state_file())? {
        Some(s) if s.ssh_ca != ssh_ca => return Err(LabError::SshCaMismatch { lab: name.into(), existing: s.ssh_ca }),
        Some(s) => s,
        None => {
            let first = wanted.first().copied().unwrap_or_default();
            let base = ensure_base(first)?;
            let _global = FileLock::acquire(&config.global_lock())?;
            let mut state = LabState::new(name, net::free_index(config)?, first.init, base);
            state.ssh_ca = ssh_ca;
            state.save(&paths.state_file())?;
            state
        }
    };
    for h in &state.hosts {
        let existing = state.kind_of(h);
        match wanted.get(usize::from(h.n) - 1) {
            Some(&requested) if requested != existing => {
                return Err(LabError::KindMismatch { lab: name.into(), host: h.name.clone(), existing, requested })
            }
            _ => {}
        }
    }
    let (mut authorized_key, password) = ensure_credentials(&paths, name)?;
    if ssh_ca {
        crate::ca::ensure(&paths, name)?;
        // Logins by certificate only: the bare key is not authorized.
        authorized_key.clear();
    }
    let naming = Naming { idx: state.index };
    let bastion = bastion || state.bastion.is_some();
    if bastion {
        // Hosts are waited for directly; isolated again at the end.
        net::unisolate(naming);
    }
    net::ensure_bridge(naming, name)?;

    let existing = state.hosts.len();
    let total = count.max(existing);
    progress(Progress::Planned { total, new: total - existing });
    let first = if bastion { Naming::BASTION } else { 1 };
    let numbers: Vec<u16> = (first..=u16::try_from(total).expect("total <= MAX_HOSTS")).collect();
    let recorded: Vec<u16> = state.hosts.iter().chain(&state.bastion).map(|h| h.n).collect();
    // Each host's kind and base: as recorded, else as asked (the bastion
    // is a native Debian host of the lab's first init).
    let mut plan: Vec<(Kind, std::path::PathBuf)> = Vec::with_capacity(numbers.len());
    for &n in &numbers {
        let record = state.hosts.iter().chain(&state.bastion).find(|h| h.n == n);
        plan.push(match record {
            Some(h) => (state.kind_of(h), state.base_of(h).to_path_buf()),
            None => {
                let kind = match wanted.get(usize::from(n).wrapping_sub(1)) {
                    Some(&kind) if n != Naming::BASTION => kind,
                    _ => Kind::native(state.init),
                };
                (kind, ensure_base(kind)?)
            }
        });
    }
    let base_built_in = (!built.is_empty()).then(|| built.iter().sum());
    let recorded_kinds: Vec<Kind> = plan.iter().map(|(k, _)| *k).collect();
    check_kinds(&recorded_kinds)?;
    for (_, base) in &plan {
        host::check_base(base)?;
    }
    let cgroups = if recorded_kinds.iter().any(|k| k.init == Init::Systemd) { Some(cgroup::detect()?) } else { None };
    let raised = crate::limits::inotify_for(recorded_kinds.iter().filter(|k| k.init == Init::Systemd).count())?;
    let shadow_line = Mutex::new(None);
    let setups: Vec<HostSetup<'_>> = plan
        .iter()
        .map(|(kind, base)| HostSetup {
            run: HostRun {
                lab: name,
                cgroups: cgroups.filter(|_| kind.init == Init::Systemd),
                kind: *kind,
                paths: &paths,
                naming,
            },
            base,
            authorized_key: &authorized_key,
            password: &password,
            shadow_line: &shadow_line,
            ssh_ca,
        })
        .collect();
    let setup_of = |n: u16| &setups[numbers.iter().position(|&m| m == n).expect("planned")];
    // A host that is cut off or frozen on purpose is not waited for.
    let unreachable: Vec<String> =
        state.faults.iter().filter(|(_, f)| f.down || f.frozen).map(|(h, _)| h.clone()).collect();
    let prepared = parallel(&numbers, PREPARE_WORKERS, |&n| {
        let setup = setup_of(n);
        let record = setup.prepare(n, recorded.contains(&n)).map_err(|e| format!("{e:#}"))?;
        setup.run.start_if_stopped(n).map_err(|e| format!("{e:#}"))?;
        progress(Progress::Started { host: &record.name });
        Ok::<HostRecord, String>(record)
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    let ready = parallel(&prepared, WAIT_WORKERS, |r| match r {
        Ok(record) if unreachable.contains(&record.name) => {
            progress(Progress::Ready { host: &record.name });
            Ok(())
        }
        Ok(record) => setup_of(record.n)
            .run
            .wait_ready(record.n, deadline)
            .inspect(|()| progress(Progress::Ready { host: &record.name })),
        Err(e) => Err(e.clone()),
    });

    // Record every host that exists, ready or not, so `down` and `status` see it.
    let mut failures = Vec::new();
    for ((n, prep), ok) in numbers.iter().zip(prepared).zip(ready) {
        match prep {
            Ok(record) if *n == Naming::BASTION => {
                state.bastion = Some(HostRecord { name: BASTION_NAME.into(), ..record });
            }
            Ok(record) => {
                state.hosts.retain(|h| h.n != *n);
                state.hosts.push(record);
            }
            Err(_) => {}
        }
        if let Err(why) = ok {
            failures.push((host_name(*n), why));
        }
    }
    state.hosts.sort_by_key(|h| h.n);
    state.save(&paths.state_file())?;
    if bastion {
        net::isolate_behind_bastion(naming)?;
    }
    if !failures.is_empty() {
        return Err(LabError::HostsNotReady { failures });
    }
    let lab = Lab::open_with(config, name)?;
    Ok(UpReport { lab, added: total - existing, base_built_in, elapsed: started.elapsed(), raised })
}

/// Refuse kinds this machine cannot run, and make sure those it runs
/// under emulation can run (qemu-user registered with binfmt_misc).
fn check_kinds(kinds: &[Kind]) -> Result<(), LabError> {
    let mut archs = Vec::new();
    for kind in kinds {
        if let Some(why) = kind.unsupported() {
            return Err(LabError::UnsupportedKind(why));
        }
        if !archs.contains(&kind.arch) {
            archs.push(kind.arch);
        }
    }
    archs.into_iter().try_for_each(preflight::binfmt)
}

/// The lab's root login key and the non-root user's password, made once.
fn ensure_credentials(paths: &LabPaths, name: &str) -> Result<(String, String), LabError> {
    let key = paths.key();
    let public = key.with_extension("pub");
    if !(key.exists() && public.exists()) {
        for p in [&key, &public] {
            let _ = fs::remove_file(p);
        }
        let comment = format!("drover-lab-{name}");
        cmd::run(
            "ssh-keygen",
            ["-q", "-t", "ed25519", "-N", "", "-C", &comment, "-f"]
                .map(std::ffi::OsStr::new)
                .into_iter()
                .chain([key.as_os_str()]),
        )?;
    }
    let authorized = fs::read_to_string(&public).map_err(LabError::io("read", &public))?;
    let pw_path = paths.password_file();
    if !pw_path.exists() {
        const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let pw: String =
            sys::random_bytes(20)?.iter().map(|b| char::from(CHARS[usize::from(*b) % CHARS.len()])).collect();
        base::write_file(&pw_path, &format!("{pw}\n"), 0o600)?;
    }
    let password = fs::read_to_string(&pw_path).map_err(LabError::io("read", &pw_path))?.trim().to_string();
    Ok((authorized.trim().to_string(), password))
}

/// `f` over `items` on up to `workers` threads, results in input order.
fn parallel<T: Sync, R: Send>(items: &[T], workers: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                results.lock().expect("results lock")[i] = Some(r);
            });
        }
    });
    results.into_inner().expect("results lock").into_iter().map(|r| r.expect("every item ran")).collect()
}
