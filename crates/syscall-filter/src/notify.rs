//! User notifications as plain data: what the kernel reports about a call a
//! filter answered with [`Action::Notify`](crate::Action::Notify), and what
//! a supervisor may answer.
#![forbid(unsafe_code)]

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::args::describe_args;
use crate::filter::{AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::syscalls::name_of;
use crate::SeccompData;

/// One notified call, waiting for an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The kernel's cookie for this call: answer it with this id.
    pub id: u64,
    /// The calling thread's id in the supervisor's PID namespace (0 if it
    /// has none there).
    pub pid: u32,
    /// The call as the filter saw it.
    pub data: SeccompData,
}

impl Notification {
    /// The syscall number.
    pub fn nr(&self) -> u32 {
        self.data.nr
    }

    /// The syscall's x86_64 name, if it is a native call the table knows.
    pub fn syscall_name(&self) -> Option<&'static str> {
        if self.data.arch == AUDIT_ARCH_X86_64 {
            name_of(self.data.nr)
        } else {
            None
        }
    }
}

/// The call's name, or a description of the number when it has none:
/// `x32:0x40000027`, `nr:999`, `arch:0x40000003:20`.
pub fn call_name(data: &SeccompData) -> String {
    if data.arch != AUDIT_ARCH_X86_64 {
        return format!("arch:{:#x}:{}", data.arch, data.nr);
    }
    if data.nr & X32_SYSCALL_BIT != 0 {
        return format!("x32:{:#x}", data.nr);
    }
    match name_of(data.nr) {
        Some(name) => name.to_owned(),
        None => format!("nr:{}", data.nr),
    }
}

/// One console-ready line: `pid 1234 syscall clone(56) flags=CLONE_VM|SIGCHLD
/// args=[0x100011, 0x0, ...]`. Never longer than about 250 bytes; carries
/// only numbers and fixed names (no memory of the caller is read).
impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} syscall {}({})",
            self.pid,
            call_name(&self.data),
            self.data.nr
        )?;
        for (name, value) in describe_args(self.data.nr, &self.data.args) {
            write!(f, " {name}={value}")?;
        }
        let a = &self.data.args;
        write!(
            f,
            " args=[{:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}]",
            a[0], a[1], a[2], a[3], a[4], a[5]
        )
    }
}

/// A supervisor's answer to a notified call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Let the kernel run the call as made
    /// (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`). The caller's memory may have
    /// changed since the supervisor looked at it: never base a security
    /// decision on pointed-to data and then continue.
    Continue,
    /// Fail the call with this errno (a positive number).
    Errno(i32),
    /// Return this value without running the call.
    Value(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_name_the_call_and_decode_what_matters() {
        let n = |nr, arch, args| Notification {
            id: 7,
            pid: 1,
            data: SeccompData {
                nr,
                arch,
                instruction_pointer: 0x7f00_0000_1234,
                args,
            },
        };
        let cases = [
            (
                n(56, AUDIT_ARCH_X86_64, [0x0001_0111, 0, 0, 0, 0, 0]),
                "pid 1 syscall clone(56) flags=CLONE_VM|CLONE_THREAD|SIGCHLD args=[0x10111, 0x0, 0x0, 0x0, 0x0, 0x0]",
            ),
            (
                n(425, AUDIT_ARCH_X86_64, [8, 0x7ffd_0000, 0, 0, 0, 0]),
                "pid 1 syscall io_uring_setup(425) args=[0x8, 0x7ffd0000, 0x0, 0x0, 0x0, 0x0]",
            ),
            (
                n(0x4000_0027, AUDIT_ARCH_X86_64, [0; 6]),
                "pid 1 syscall x32:0x40000027(1073741863) args=[0x0, 0x0, 0x0, 0x0, 0x0, 0x0]",
            ),
            (
                n(999, AUDIT_ARCH_X86_64, [0; 6]),
                "pid 1 syscall nr:999(999) args=[0x0, 0x0, 0x0, 0x0, 0x0, 0x0]",
            ),
        ];
        for (note, want) in cases {
            assert_eq!(note.to_string(), want);
        }
        assert_eq!(cases[1].0.syscall_name(), Some("io_uring_setup"));
        assert_eq!(cases[2].0.syscall_name(), None);
        let i386 = n(20, 0x4000_0003, [0; 6]);
        assert_eq!(i386.syscall_name(), None);
        assert_eq!(call_name(&i386.data), "arch:0x40000003:20");
    }
}
