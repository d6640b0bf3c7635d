//! The crate's one error type.
#![forbid(unsafe_code)]

use std::io;

use crate::Syscall;

/// Everything that can go wrong describing, compiling, installing or serving
/// a filter. Each variant names the rule, call or operation it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A description named a call the x86_64 table does not have.
    #[error("unknown x86_64 syscall {name:?}")]
    UnknownSyscall {
        /// The name asked for.
        name: String,
    },
    /// An argument condition names an argument a syscall does not have.
    #[error(
        "rule {rule} ({syscall}): argument {index} does not exist (a syscall has arguments 0 to 5)"
    )]
    ArgIndex {
        /// Index of the rule in the filter.
        rule: usize,
        /// The rule's syscall.
        syscall: Syscall,
        /// The argument index given.
        index: u8,
    },
    /// A rule comes after an unconditional rule for the same syscall, so it
    /// can never apply (the first matching rule wins).
    #[error("rule {rule} ({syscall}) can never apply: rule {shadowed_by} already matches every {syscall} call")]
    UnreachableRule {
        /// Index of the unreachable rule.
        rule: usize,
        /// The syscall both rules are about.
        syscall: Syscall,
        /// Index of the earlier, unconditional rule.
        shadowed_by: usize,
    },
    /// An argument condition that is always or never true: almost surely
    /// not what its author meant.
    #[error("rule {rule} ({syscall}), condition {condition}: {why}")]
    Condition {
        /// Index of the rule.
        rule: usize,
        /// The rule's syscall.
        syscall: Syscall,
        /// Index of the condition within the rule.
        condition: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An `Errno` action outside what the kernel can return.
    #[error("{}: errno {errno} is outside 1..=4095 (0 would fake success; the kernel caps at 4095)", place(*.rule))]
    Errno {
        /// Index of the rule, or `None` for the filter's default action.
        rule: Option<usize>,
        /// The errno given.
        errno: u16,
    },
    /// The compiled program is longer than the kernel accepts.
    #[error("the compiled program has {len} instructions; the kernel accepts at most {max}")]
    TooLong {
        /// Instructions the program would need.
        len: usize,
        /// The kernel's limit (`BPF_MAXINSNS`).
        max: usize,
    },
    /// A classic BPF program the kernel would refuse, or that ran off its
    /// rails (the interpreter's verdict; also a compiler bug if it is about
    /// a program this crate compiled).
    #[error("BPF instruction {pc}: {why}")]
    Bpf {
        /// Index of the offending instruction.
        pc: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// The compiler broke one of its own invariants (a bug in this crate).
    #[error("internal compiler error: {0}")]
    Internal(&'static str),
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` answered EACCES.
    #[error("installing the seccomp filter was refused (EACCES): no_new_privs must be set first (prctl(PR_SET_NO_NEW_PRIVS, 1)) unless the caller has CAP_SYS_ADMIN")]
    NoNewPrivs,
    /// The filter checks for x86_64 and this process is not x86_64: the
    /// kernel would kill it at its next system call.
    #[error(
        "this filter admits x86_64 system calls only and would kill a process of this architecture"
    )]
    WrongArch,
    /// A descriptor passed as a seccomp listener is not one.
    #[error("descriptor is not a seccomp notification listener: {0}")]
    NotAListener(io::Error),
    /// The kernel's notification structures are larger than this crate's
    /// buffers (a much newer kernel).
    #[error("the kernel's {what} is {kernel} bytes; this crate handles at most {ours}")]
    NotifSizes {
        /// `seccomp_notif` or `seccomp_notif_resp`.
        what: &'static str,
        /// The kernel's size.
        kernel: u16,
        /// What this crate can handle.
        ours: usize,
    },
    /// Passing a descriptor over a unix socket went wrong without an OS
    /// error (nothing, or not exactly one descriptor, arrived).
    #[error("descriptor passing: {0}")]
    FdPassing(&'static str),
    /// A tracee did not get as far as `execve`.
    #[error("the traced child exited before exec at step {step:?} (exit status {status})")]
    ChildSetup {
        /// The step that failed, as far as the exit status tells.
        step: &'static str,
        /// The raw wait status.
        status: i32,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Os {
        /// The call and its object.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    /// The OS error number, for [`Error::Os`].
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

fn place(rule: Option<usize>) -> String {
    match rule {
        Some(i) => format!("rule {i}"),
        None => "the default action".to_owned(),
    }
}
