//! The plain-data description of a filter and what it means.
//!
//! [`Filter::evaluate`] is the meaning: the compiled program must answer
//! exactly what it answers, for every input (a property test and a fuzz
//! target hold the compiler to that).
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use crate::{Error, Syscall};

/// `AUDIT_ARCH_X86_64`: `seccomp_data.arch` of a 64-bit x86 system call.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `__X32_SYSCALL_BIT`: set in `seccomp_data.nr` by a call through the x32
/// ABI, which reaches the same kernel code with other numbers.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Highest valid errno for [`Action::Errno`] (`MAX_ERRNO`).
pub const MAX_ERRNO: u16 = 4095;

/// What the kernel does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Run the call.
    Allow,
    /// Do not run it; it returns `-1` with this errno (1..=4095).
    Errno(u16),
    /// Stop the calling thread and ask the listener (a supervisor process)
    /// what to do (`SECCOMP_RET_USER_NOTIF`). Without a listener the call
    /// fails with ENOSYS.
    Notify,
    /// Run the call and log it to the audit log (`SECCOMP_RET_LOG`).
    Log,
    /// Kill the whole process, as by an uncatchable SIGSYS.
    KillProcess,
    /// Send the thread a SIGSYS it can catch (`SECCOMP_RET_TRAP`).
    Trap,
}

/// `SECCOMP_RET_*` action values (linux/seccomp.h).
pub(crate) mod ret {
    pub(crate) const KILL_PROCESS: u32 = 0x8000_0000;
    pub(crate) const TRAP: u32 = 0x0003_0000;
    pub(crate) const ERRNO: u32 = 0x0005_0000;
    pub(crate) const USER_NOTIF: u32 = 0x7fc0_0000;
    pub(crate) const LOG: u32 = 0x7ffc_0000;
    pub(crate) const ALLOW: u32 = 0x7fff_0000;
    pub(crate) const DATA: u32 = 0x0000_ffff;
}

impl Action {
    /// The value a filter program returns for this action.
    pub fn ret_value(self) -> u32 {
        match self {
            Action::Allow => ret::ALLOW,
            Action::Errno(e) => ret::ERRNO | u32::from(e),
            Action::Notify => ret::USER_NOTIF,
            Action::Log => ret::LOG,
            Action::KillProcess => ret::KILL_PROCESS,
            Action::Trap => ret::TRAP,
        }
    }

    /// The action a program's return value stands for, if it is one this
    /// crate produces.
    pub fn from_ret_value(value: u32) -> Option<Action> {
        let data = value & ret::DATA;
        match value & !ret::DATA {
            ret::ALLOW if data == 0 => Some(Action::Allow),
            ret::ERRNO => u16::try_from(data).ok().map(Action::Errno),
            ret::USER_NOTIF if data == 0 => Some(Action::Notify),
            ret::LOG if data == 0 => Some(Action::Log),
            ret::KILL_PROCESS if data == 0 => Some(Action::KillProcess),
            ret::TRAP if data == 0 => Some(Action::Trap),
            _ => None,
        }
    }

    /// Whether the call is kept from running as asked (everything but
    /// `Allow` and `Log`).
    pub fn refuses(self) -> bool {
        !matches!(self, Action::Allow | Action::Log)
    }
}

/// How much of a 64-bit argument register a condition looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Width {
    /// All 64 bits: for `long`, `unsigned long`, pointers and sizes.
    #[default]
    U64,
    /// The low 32 bits only: for `int` and `unsigned int` arguments (a
    /// socket family, `fcntl`'s command, `prctl`'s option). The kernel
    /// ignores the upper half of such an argument, so a 64-bit comparison
    /// would let a caller slip past an `Equal` refusal by setting high bits
    /// (and would refuse a legitimate caller whose high bits are garbage).
    U32,
}

/// A test on one argument's value (after [`Width`] is applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgTest {
    /// `arg == value`.
    Equal(u64),
    /// `(arg & mask) == value`; `value` must lie within `mask`.
    MaskedEqual {
        /// Bits to compare.
        mask: u64,
        /// What they must be.
        value: u64,
    },
    /// `arg & mask != 0`: at least one of the bits is set.
    AnySet(u64),
    /// `arg & mask == 0`: none of the bits is set.
    NoneSet(u64),
}

/// A condition on one of the six argument registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgCondition {
    /// Argument index, 0..=5.
    pub arg: u8,
    /// How much of the register to look at.
    #[serde(default, skip_serializing_if = "is_u64")]
    pub width: Width,
    /// The test.
    pub test: ArgTest,
}

fn is_u64(w: &Width) -> bool {
    *w == Width::U64
}

impl ArgCondition {
    /// `arg == value` (64-bit; see [`ArgCondition::low32`]).
    pub fn equal(arg: u8, value: u64) -> Self {
        Self::new(arg, ArgTest::Equal(value))
    }
    /// `(arg & mask) == value`.
    pub fn masked_equal(arg: u8, mask: u64, value: u64) -> Self {
        Self::new(arg, ArgTest::MaskedEqual { mask, value })
    }
    /// `arg & mask != 0`.
    pub fn any_set(arg: u8, mask: u64) -> Self {
        Self::new(arg, ArgTest::AnySet(mask))
    }
    /// `arg & mask == 0`.
    pub fn none_set(arg: u8, mask: u64) -> Self {
        Self::new(arg, ArgTest::NoneSet(mask))
    }
    /// A condition on the whole 64-bit register.
    pub fn new(arg: u8, test: ArgTest) -> Self {
        ArgCondition {
            arg,
            width: Width::U64,
            test,
        }
    }
    /// The same test on the low 32 bits only (an `int` argument).
    pub fn low32(self) -> Self {
        ArgCondition {
            width: Width::U32,
            ..self
        }
    }

    /// Whether the condition holds for these argument registers.
    pub fn holds(&self, args: &[u64; 6]) -> bool {
        let Some(&raw) = args.get(usize::from(self.arg)) else {
            return false;
        };
        let v = match self.width {
            Width::U64 => raw,
            Width::U32 => raw & u64::from(u32::MAX),
        };
        match self.test {
            ArgTest::Equal(value) => v == value,
            ArgTest::MaskedEqual { mask, value } => v & mask == value,
            ArgTest::AnySet(mask) => v & mask != 0,
            ArgTest::NoneSet(mask) => v & mask == 0,
        }
    }

    /// Why the condition is meaningless, if it is.
    fn defect(&self) -> Option<&'static str> {
        let fits = |x: u64| self.width == Width::U64 || x <= u64::from(u32::MAX);
        match self.test {
            ArgTest::Equal(value) if !fits(value) => {
                Some("the value does not fit the condition's 32-bit width: never true")
            }
            ArgTest::Equal(_) => None,
            ArgTest::MaskedEqual { mask: 0, .. } => {
                Some("an empty mask compares nothing: use no condition, or Equal")
            }
            ArgTest::MaskedEqual { mask, value } if value & !mask != 0 => {
                Some("the value has bits outside the mask: never true")
            }
            ArgTest::MaskedEqual { mask, .. } if !fits(mask) => {
                Some("the mask does not fit the condition's 32-bit width")
            }
            ArgTest::MaskedEqual { .. } => None,
            ArgTest::AnySet(0) => Some("any_set with an empty mask is never true"),
            ArgTest::NoneSet(0) => Some("none_set with an empty mask is always true"),
            ArgTest::AnySet(mask) | ArgTest::NoneSet(mask) if !fits(mask) => {
                Some("the mask does not fit the condition's 32-bit width")
            }
            ArgTest::AnySet(_) | ArgTest::NoneSet(_) => None,
        }
    }
}

/// One rule: for calls of `syscall` whose arguments meet every condition in
/// `when` (all of them; none means every call), take `action`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The call.
    pub syscall: Syscall,
    /// Conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<ArgCondition>,
    /// What to do.
    pub action: Action,
}

impl Rule {
    /// A rule for every call of `syscall`.
    pub fn new(syscall: Syscall, action: Action) -> Self {
        Rule {
            syscall,
            when: Vec::new(),
            action,
        }
    }

    /// A rule for every call of the syscall named `name`.
    pub fn named(name: &str, action: Action) -> Result<Self, Error> {
        Ok(Rule::new(Syscall::named(name)?, action))
    }

    /// The same rule with one more condition.
    #[must_use]
    pub fn when(mut self, condition: ArgCondition) -> Self {
        self.when.push(condition);
        self
    }

    /// Whether the rule applies to this call.
    pub fn matches(&self, nr: u32, args: &[u64; 6]) -> bool {
        self.syscall.nr() == nr && self.when.iter().all(|c| c.holds(args))
    }
}

/// A whole filter: rules are tried in order and the first that matches
/// decides; a call no rule matches gets `default`.
///
/// Beyond the rules, every compiled filter kills a process calling through
/// another architecture (`arch != AUDIT_ARCH_X86_64`: the 32-bit `int 0x80`
/// entry numbers calls differently) and answers a call through the x32 ABI
/// (`nr` with bit 30 set) with [`Filter::x32_action`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// What happens to a call no rule matches.
    pub default: Action,
    /// The rules, first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// The part of `struct seccomp_data` a filter sees: the call as the kernel
/// hands it to the program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeccompData {
    /// Syscall number (an `int` in the kernel; read as its 32 bits).
    pub nr: u32,
    /// `AUDIT_ARCH_*` of the calling convention.
    pub arch: u32,
    /// Instruction pointer at the call.
    pub instruction_pointer: u64,
    /// The six argument registers.
    pub args: [u64; 6],
}

impl SeccompData {
    /// A native x86_64 call.
    pub fn x86_64(nr: u32, args: [u64; 6]) -> Self {
        SeccompData {
            nr,
            arch: AUDIT_ARCH_X86_64,
            instruction_pointer: 0,
            args,
        }
    }

    /// The 32-bit word at byte `offset` of `struct seccomp_data` (little
    /// endian), which is what a BPF absolute load reads. `None` for an
    /// offset that is unaligned or past the end (64 bytes).
    pub fn word(&self, offset: u32) -> Option<u32> {
        if offset % 4 != 0 {
            return None;
        }
        match offset {
            0 => Some(self.nr),
            4 => Some(self.arch),
            8 => Some(lo32(self.instruction_pointer)),
            12 => Some(hi32(self.instruction_pointer)),
            16..=63 => {
                let i = usize::try_from((offset - 16) / 8).ok()?;
                let arg = *self.args.get(i)?;
                Some(if offset % 8 == 0 {
                    lo32(arg)
                } else {
                    hi32(arg)
                })
            }
            _ => None,
        }
    }
}

impl Filter {
    /// A filter with no rules.
    pub fn new(default: Action) -> Self {
        Filter {
            default,
            rules: Vec::new(),
        }
    }

    /// The same filter with one more rule at the end.
    #[must_use]
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// What a call through the x32 ABI gets: the default action when that
    /// refuses, and `KillProcess` when the default lets calls run (an x32
    /// call must never be a way around the rules, which only know the
    /// x86_64 numbers).
    pub fn x32_action(&self) -> Action {
        if self.default.refuses() {
            self.default
        } else {
            Action::KillProcess
        }
    }

    /// What the filter does with a call: the meaning the compiled program
    /// implements.
    pub fn evaluate(&self, data: &SeccompData) -> Action {
        if data.arch != AUDIT_ARCH_X86_64 {
            return Action::KillProcess;
        }
        if data.nr & X32_SYSCALL_BIT != 0 {
            return self.x32_action();
        }
        self.rules
            .iter()
            .find(|r| r.matches(data.nr, &data.args))
            .map_or(self.default, |r| r.action)
    }

    /// Checks the description: every argument index exists, every
    /// condition can be both true and false, every errno is one the kernel
    /// returns, and no rule sits behind an unconditional rule for the same
    /// call. [`compile`](crate::compile) calls this first.
    pub fn validate(&self) -> Result<(), Error> {
        check_errno(self.default, None)?;
        // For each syscall, the unconditional rule seen so far, if any.
        let mut unconditional: std::collections::HashMap<u32, usize> =
            std::collections::HashMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            check_errno(rule.action, Some(i))?;
            if let Some(&first) = unconditional.get(&rule.syscall.nr()) {
                return Err(Error::UnreachableRule {
                    rule: i,
                    syscall: rule.syscall,
                    shadowed_by: first,
                });
            }
            for (j, c) in rule.when.iter().enumerate() {
                if c.arg > 5 {
                    return Err(Error::ArgIndex {
                        rule: i,
                        syscall: rule.syscall,
                        index: c.arg,
                    });
                }
                if let Some(why) = c.defect() {
                    return Err(Error::Condition {
                        rule: i,
                        syscall: rule.syscall,
                        condition: j,
                        why,
                    });
                }
            }
            if rule.when.is_empty() {
                unconditional.insert(rule.syscall.nr(), i);
            }
        }
        Ok(())
    }

    /// The same filter with every refusing action other than `Errno`
    /// (`Notify`, `KillProcess`, `Trap`, and a refusing default) replaced by
    /// `to`. `Errno` answers stay: they are part of what the program is
    /// meant to see (`clone3` answering ENOSYS makes glibc fall back to
    /// `clone`). Used to run a program under its intended filter with a
    /// recording supervisor instead of the real consequences.
    #[must_use]
    pub fn with_refusals_as(&self, to: Action) -> Filter {
        let swap = |a: Action| match a {
            Action::Notify | Action::KillProcess | Action::Trap => to,
            other => other,
        };
        Filter {
            default: swap(self.default),
            rules: self
                .rules
                .iter()
                .map(|r| Rule {
                    action: swap(r.action),
                    ..r.clone()
                })
                .collect(),
        }
    }

    /// The same filter with one rule in front: `sendmsg` on descriptor
    /// `socket` is allowed. A process that installs a filter with a new
    /// listener and then hands the listener to its supervisor over a unix
    /// socket makes that `sendmsg` under the filter it just installed; if
    /// the call were notified, it would wait for a supervisor that does not
    /// have the listener yet, forever.
    #[must_use]
    pub fn with_listener_handoff(&self, socket: u32) -> Filter {
        let mut rules = Vec::with_capacity(self.rules.len() + 1);
        rules.push(Rule {
            syscall: Syscall::SENDMSG,
            when: vec![ArgCondition::equal(0, u64::from(socket)).low32()],
            action: Action::Allow,
        });
        rules.extend(self.rules.iter().cloned());
        Filter {
            default: self.default,
            rules,
        }
    }
}

/// The low half of a 64-bit value (what a BPF load at the lower offset reads).
#[allow(clippy::cast_possible_truncation)] // Dropping the high half is the point.
pub(crate) fn lo32(x: u64) -> u32 {
    x as u32
}

/// The high half of a 64-bit value.
#[allow(clippy::cast_possible_truncation)] // A shifted u64 fits.
pub(crate) fn hi32(x: u64) -> u32 {
    (x >> 32) as u32
}

fn check_errno(action: Action, rule: Option<usize>) -> Result<(), Error> {
    match action {
        Action::Errno(errno) if errno == 0 || errno > MAX_ERRNO => {
            Err(Error::Errno { rule, errno })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(name: &str) -> Syscall {
        Syscall::named(name).unwrap()
    }

    #[test]
    fn words_are_little_endian_halves() {
        let d = SeccompData {
            nr: 7,
            arch: AUDIT_ARCH_X86_64,
            instruction_pointer: 0x1122_3344_5566_7788,
            args: [0xaaaa_bbbb_cccc_dddd, 1, 2, 3, 4, 0xffff_0000_0000_0005],
        };
        let cases = [
            (0, Some(7)),
            (4, Some(AUDIT_ARCH_X86_64)),
            (8, Some(0x5566_7788)),
            (12, Some(0x1122_3344)),
            (16, Some(0xcccc_dddd)),
            (20, Some(0xaaaa_bbbb)),
            (24, Some(1)),
            (56, Some(5)),
            (60, Some(0xffff_0000)),
            (64, None),
            (2, None),
        ];
        for (offset, want) in cases {
            assert_eq!(d.word(offset), want, "offset {offset}");
        }
    }

    #[test]
    fn conditions() {
        let args = [0x1_0000_0002, 0x0100_0011, 0, 0, 0, 0];
        let cases: &[(ArgCondition, bool)] = &[
            (ArgCondition::equal(0, 2), false),
            (ArgCondition::equal(0, 2).low32(), true),
            (ArgCondition::equal(0, 0x1_0000_0002), true),
            (
                ArgCondition::masked_equal(1, 0x0100_0100, 0x0100_0000),
                true,
            ),
            (
                ArgCondition::masked_equal(1, 0x0100_0100, 0x0100_0100),
                false,
            ),
            (ArgCondition::any_set(1, 0x0000_0100 | 0x10), true),
            (ArgCondition::any_set(1, 0x0000_0100), false),
            (ArgCondition::none_set(1, 0x0001_0000 | 0x8000_0000), true),
            (ArgCondition::none_set(1, 0x0100_0000), false),
            (ArgCondition::any_set(0, 1 << 32), true),
            (ArgCondition::any_set(0, 1 << 32).low32(), false),
            (ArgCondition::equal(6, 0), false),
        ];
        for (c, want) in cases {
            assert_eq!(c.holds(&args), *want, "{c:?}");
        }
    }

    #[test]
    fn first_matching_rule_wins_then_default() {
        let f = Filter::new(Action::Errno(1))
            .rule(Rule::new(sys("clone"), Action::Notify).when(ArgCondition::any_set(0, 0x100)))
            .rule(Rule::new(sys("clone"), Action::Allow))
            .rule(Rule::new(sys("read"), Action::Allow));
        let clone = sys("clone").nr();
        let cases = [
            (
                SeccompData::x86_64(clone, [0x100, 0, 0, 0, 0, 0]),
                Action::Notify,
            ),
            (
                SeccompData::x86_64(clone, [0x11, 0, 0, 0, 0, 0]),
                Action::Allow,
            ),
            (SeccompData::x86_64(0, [0; 6]), Action::Allow),
            (SeccompData::x86_64(1, [0; 6]), Action::Errno(1)),
            (
                SeccompData::x86_64(X32_SYSCALL_BIT, [0; 6]),
                Action::Errno(1),
            ),
            (
                SeccompData {
                    arch: 0x4000_0003,
                    ..SeccompData::x86_64(0, [0; 6])
                },
                Action::KillProcess,
            ),
        ];
        for (d, want) in cases {
            assert_eq!(f.evaluate(&d), want, "{d:?}");
        }
        // An allowing default must not let x32 calls around the rules.
        let open = Filter::new(Action::Allow);
        assert_eq!(open.x32_action(), Action::KillProcess);
        assert_eq!(
            open.evaluate(&SeccompData::x86_64(X32_SYSCALL_BIT | 2, [0; 6])),
            Action::KillProcess
        );
    }

    #[test]
    fn validation_errors_name_the_rule() {
        let read = sys("read");
        let cases: Vec<(Filter, &str)> = vec![
            (
                Filter::new(Action::Allow).rule(Rule::new(read, Action::Allow).when(ArgCondition::equal(6, 1))),
                "rule 0 (read): argument 6 does not exist (a syscall has arguments 0 to 5)",
            ),
            (
                Filter::new(Action::Allow)
                    .rule(Rule::new(read, Action::Allow))
                    .rule(Rule::new(sys("write"), Action::Allow))
                    .rule(Rule::new(read, Action::Notify).when(ArgCondition::equal(0, 1))),
                "rule 2 (read) can never apply: rule 0 already matches every read call",
            ),
            (
                Filter::new(Action::Errno(0)),
                "the default action: errno 0 is outside 1..=4095 (0 would fake success; the kernel caps at 4095)",
            ),
            (
                Filter::new(Action::Allow).rule(Rule::new(read, Action::Errno(4096))),
                "rule 0: errno 4096 is outside 1..=4095 (0 would fake success; the kernel caps at 4095)",
            ),
            (
                Filter::new(Action::Allow).rule(Rule::new(read, Action::Allow).when(ArgCondition::any_set(0, 0))),
                "rule 0 (read), condition 0: any_set with an empty mask is never true",
            ),
            (
                Filter::new(Action::Allow).rule(
                    Rule::new(read, Action::Allow)
                        .when(ArgCondition::equal(0, 1))
                        .when(ArgCondition::masked_equal(1, 0xf0, 0x0f)),
                ),
                "rule 0 (read), condition 1: the value has bits outside the mask: never true",
            ),
            (
                Filter::new(Action::Allow).rule(Rule::new(read, Action::Allow).when(ArgCondition::equal(0, 1 << 40).low32())),
                "rule 0 (read), condition 0: the value does not fit the condition's 32-bit width: never true",
            ),
            (
                Filter::new(Action::Allow).rule(Rule::new(read, Action::Allow).when(ArgCondition::none_set(2, 0))),
                "rule 0 (read), condition 0: none_set with an empty mask is always true",
            ),
        ];
        for (f, want) in cases {
            assert_eq!(f.validate().unwrap_err().to_string(), want);
        }
        // Several conditional rules, then one unconditional, is fine.
        Filter::new(Action::Allow)
            .rule(Rule::new(read, Action::Notify).when(ArgCondition::equal(0, 1)))
            .rule(Rule::new(read, Action::Errno(1)).when(ArgCondition::equal(0, 2)))
            .rule(Rule::new(read, Action::Allow))
            .validate()
            .unwrap();
    }

    #[test]
    fn actions_round_trip_through_return_values() {
        for a in [
            Action::Allow,
            Action::Errno(1),
            Action::Errno(4095),
            Action::Notify,
            Action::Log,
            Action::KillProcess,
            Action::Trap,
        ] {
            assert_eq!(Action::from_ret_value(a.ret_value()), Some(a));
        }
        assert_eq!(Action::Notify.ret_value(), 0x7fc0_0000);
        assert_eq!(Action::Errno(38).ret_value(), 0x0005_0026);
        assert_eq!(Action::from_ret_value(0x7ff0_0000), None); // TRACE
    }

    #[test]
    fn serde_shape_is_readable_and_round_trips() {
        let f = Filter::new(Action::Notify)
            .rule(Rule::new(sys("socket"), Action::Allow).when(ArgCondition::equal(0, 1).low32()))
            .rule(Rule::new(sys("clone3"), Action::Errno(38)))
            .rule(Rule::new(sys("mmap"), Action::Notify).when(ArgCondition::masked_equal(2, 6, 6)));
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(
            json,
            r#"{"default":"Notify","rules":[{"syscall":"socket","when":[{"arg":0,"width":"u32","test":{"equal":1}}],"action":"Allow"},{"syscall":"clone3","action":{"Errno":38}},{"syscall":"mmap","when":[{"arg":2,"test":{"masked_equal":{"mask":6,"value":6}}}],"action":"Notify"}]}"#
        );
        let back: Filter = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
        let err = serde_json::from_str::<Filter>(
            r#"{"default":"Allow","rules":[{"syscall":"nope","action":"Allow"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown x86_64 syscall \"nope\""),
            "{err}"
        );
    }

    #[test]
    fn refusals_become_the_given_action_but_errno_stays() {
        let f = Filter::new(Action::KillProcess)
            .rule(Rule::new(sys("clone3"), Action::Errno(38)))
            .rule(Rule::new(sys("ptrace"), Action::Notify))
            .rule(Rule::new(sys("bpf"), Action::Trap))
            .rule(Rule::new(sys("read"), Action::Allow));
        let g = f.with_refusals_as(Action::Notify);
        let actions: Vec<Action> = g.rules.iter().map(|r| r.action).collect();
        assert_eq!(g.default, Action::Notify);
        assert_eq!(
            actions,
            [
                Action::Errno(38),
                Action::Notify,
                Action::Notify,
                Action::Allow
            ]
        );
    }

    #[test]
    fn handoff_rule_comes_first_and_is_exact() {
        let f = Filter::new(Action::Notify).with_listener_handoff(7);
        let sendmsg = Syscall::SENDMSG.nr();
        assert_eq!(
            f.evaluate(&SeccompData::x86_64(sendmsg, [7, 0, 0, 0, 0, 0])),
            Action::Allow
        );
        assert_eq!(
            f.evaluate(&SeccompData::x86_64(sendmsg, [1 << 32 | 7, 0, 0, 0, 0, 0])),
            Action::Allow
        );
        assert_eq!(
            f.evaluate(&SeccompData::x86_64(sendmsg, [8, 0, 0, 0, 0, 0])),
            Action::Notify
        );
        f.validate().unwrap();
    }
}
