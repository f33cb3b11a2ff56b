//! The seccomp filter of a runc container: everything allowed except the
//! system calls that reach kernel surface a service has no business with
//! and that capabilities alone do not close.
//!
//! Why a deny list, not Docker's allow list: Docker's default profile is
//! ~370 names kept in step with every kernel; a copy here would rot, and a
//! call it lacks breaks a real app. What matters is what a container
//! without `CAP_SYS_ADMIN` can still reach: new user namespaces (the root
//! of most container escapes of the last years: `unshare`, `clone` and
//! `setns` with namespace flags), the kernel keyring (not namespaced),
//! `bpf`, `perf_event_open`, `userfaultfd` and io_uring (each a steady
//! source of kernel bugs), plus the calls capabilities already refuse
//! (modules, mounts, clocks, reboot, kexec: refused twice, so that a
//! capability added to a service does not open them). `clone3` answers
//! ENOSYS, so a C library falls back to `clone`, whose flags the filter
//! can see (as Docker does). Under `runtime = "docker" | "podman"` the
//! engine's own default profile applies instead.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator,
    LinuxSyscall, LinuxSyscallBuilder,
};
use oci_spec::OciSpecError;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Refused with EPERM whatever their arguments. Names a kernel or an
/// architecture lacks are skipped by runc.
const DENIED: &[&str] = &[
    // Namespaces and mounts.
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    // Kernel surface.
    "add_key",
    "keyctl",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "lookup_dcookie",
    "syslog",
    "sysfs",
    "_sysctl",
    "uselib",
    "ustat",
    "vm86",
    "vm86old",
    "nfsservctl",
    "quotactl",
    "quotactl_fd",
    "iopl",
    "ioperm",
    "acct",
    "swapon",
    "swapoff",
    // Modules, kexec, reboot, clocks.
    "create_module",
    "init_module",
    "finit_module",
    "delete_module",
    "get_kernel_syms",
    "query_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_settime64",
    "clock_adjtime",
    "clock_adjtime64",
    "adjtimex",
];

/// `clone` flags that make new namespaces (`CLONE_NEWNS`, `NEWCGROUP`,
/// `NEWUTS`, `NEWIPC`, `NEWUSER`, `NEWPID`, `NEWNET`).
const NAMESPACE_FLAGS: [u64; 7] =
    [0x0002_0000, 0x0200_0000, 0x0400_0000, 0x0800_0000, 0x1000_0000, 0x2000_0000, 0x4000_0000];

/// The filter (see the module's doc), for x86-64 and arm64 hosts and the
/// 32-bit modes they run.
pub fn filter() -> Result<LinuxSeccomp, OciSpecError> {
    let errno = |names: Vec<String>, ret: u32| -> Result<LinuxSyscall, OciSpecError> {
        LinuxSyscallBuilder::default().names(names).action(LinuxSeccompAction::ScmpActErrno).errno_ret(ret).build()
    };
    let mut syscalls = vec![errno(DENIED.iter().map(|s| s.to_string()).collect(), EPERM)?];
    syscalls.push(errno(vec!["clone3".into()], ENOSYS)?);
    for flag in NAMESPACE_FLAGS {
        // The flags are clone's first argument on x86-64 and arm64.
        let arg = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(flag)
            .value_two(flag)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()?;
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(EPERM)
                .args(vec![arg])
                .build()?,
        );
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
            Arch::ScmpArchAarch64,
            Arch::ScmpArchArm,
        ])
        .syscalls(syscalls)
        .build()
}

#[cfg(test)]
mod tests {
    /// The filter as runc reads it: allow by default; the deny list with
    /// EPERM; clone3 with ENOSYS; one masked rule per namespace flag.
    #[test]
    fn the_filter_refuses_the_deny_list_clone3_and_each_namespace_flag_of_clone() {
        let v = serde_json::to_value(super::filter().unwrap()).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ALLOW");
        let rules = v["syscalls"].as_array().unwrap();
        assert_eq!(rules.len(), 2 + super::NAMESPACE_FLAGS.len());
        let names: Vec<&str> = rules[0]["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
        assert_eq!(names, super::DENIED);
        assert!(names.contains(&"unshare") && names.contains(&"keyctl") && names.contains(&"bpf"));
        assert_eq!((rules[0]["action"].as_str(), rules[0]["errnoRet"].as_u64()), (Some("SCMP_ACT_ERRNO"), Some(1)));
        assert_eq!((rules[1]["names"][0].as_str(), rules[1]["errnoRet"].as_u64()), (Some("clone3"), Some(38)));
        for (rule, flag) in rules[2..].iter().zip(super::NAMESPACE_FLAGS) {
            assert_eq!(rule["names"][0], "clone");
            let arg = &rule["args"][0];
            assert_eq!(
                (arg["index"].as_u64(), arg["value"].as_u64(), arg["valueTwo"].as_u64()),
                (Some(0), Some(flag), Some(flag))
            );
            assert_eq!(arg["op"], "SCMP_CMP_MASKED_EQ");
        }
        let arches: Vec<&str> = v["architectures"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(arches.contains(&"SCMP_ARCH_X86_64") && arches.contains(&"SCMP_ARCH_AARCH64"), "{arches:?}");
    }
}
