//! The compiler against the description's meaning: table-driven cases, a
//! disassembly snapshot, long jumps, limits, and a property test that the
//! interpreted program answers what `Filter::evaluate` answers, for both
//! layouts, on random filters and random calls.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use proptest::prelude::*;
use syscall_filter::interpret::{interpret, verify};
use syscall_filter::{
    compile, compile_with, op, Action, ArgCondition, ArgTest, Error, Filter, Instruction, Layout,
    Program, Rule, SeccompData, Syscall, Width, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT,
};

const LAYOUTS: [Layout; 2] = [Layout::Linear, Layout::Tree];

fn sys(name: &str) -> Syscall {
    Syscall::named(name).unwrap()
}

fn nr(name: &str) -> u32 {
    sys(name).nr()
}

fn run(program: &Program, data: &SeccompData) -> Action {
    let ret = interpret(program.instructions(), data).unwrap().ret;
    Action::from_ret_value(ret).unwrap_or_else(|| panic!("unknown return value {ret:#x}"))
}

/// Evaluates and runs the compiled program (both layouts) and checks they
/// agree with each other and with `want`.
fn check(filter: &Filter, data: SeccompData, want: Action) {
    assert_eq!(filter.evaluate(&data), want, "evaluate {data:x?}");
    for layout in LAYOUTS {
        let program = compile_with(filter, layout).unwrap();
        assert_eq!(run(&program, &data), want, "{layout:?} {data:x?}");
    }
}

const CLONE_VM: u64 = 0x100;
const CLONE_THREAD: u64 = 0x1_0000;
const NAMESPACES: u64 =
    0x0002_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x0200_0000;
const PROT_WRITE: u64 = 2;
const PROT_EXEC: u64 = 4;
const MAP_ANONYMOUS: u64 = 0x20;
const ENOSYS: u16 = 38;

/// The shape of the appliance's intended filter, on a few calls.
fn server_like() -> Filter {
    let refuse = Action::Notify;
    Filter::new(refuse)
        .rule(Rule::new(sys("read"), Action::Allow))
        .rule(Rule::new(sys("write"), Action::Allow))
        // Threads yes; processes sharing memory, and namespaces, no.
        .rule(Rule::new(sys("clone"), refuse).when(ArgCondition::any_set(0, NAMESPACES)))
        .rule(
            Rule::new(sys("clone"), refuse)
                .when(ArgCondition::any_set(0, CLONE_VM))
                .when(ArgCondition::none_set(0, CLONE_THREAD)),
        )
        .rule(Rule::new(sys("clone"), Action::Allow))
        .rule(Rule::new(sys("clone3"), Action::Errno(ENOSYS)))
        .rule(Rule::new(sys("socket"), Action::Allow).when(ArgCondition::equal(0, 1).low32()))
        .rule(Rule::new(sys("socket"), Action::Allow).when(ArgCondition::equal(0, 2).low32()))
        .rule(Rule::new(sys("socket"), Action::Allow).when(ArgCondition::equal(0, 10).low32()))
        .rule(
            Rule::new(sys("mmap"), refuse).when(ArgCondition::masked_equal(
                2,
                PROT_WRITE | PROT_EXEC,
                PROT_WRITE | PROT_EXEC,
            )),
        )
        .rule(
            Rule::new(sys("mmap"), refuse)
                .when(ArgCondition::any_set(2, PROT_EXEC))
                .when(ArgCondition::any_set(3, MAP_ANONYMOUS)),
        )
        .rule(Rule::new(sys("mmap"), Action::Allow))
        .rule(Rule::new(sys("mprotect"), refuse).when(ArgCondition::any_set(2, PROT_EXEC)))
        .rule(Rule::new(sys("mprotect"), Action::Allow))
        .rule(Rule::new(sys("execve"), Action::Notify))
        .rule(Rule::new(sys("ptrace"), Action::KillProcess))
        .rule(Rule::new(sys("getpid"), Action::Log))
        .rule(Rule::new(sys("bpf"), Action::Trap))
}

#[test]
fn server_like_filter_decides_as_described() {
    let f = server_like();
    let call = |name: &str, args: [u64; 6]| SeccompData::x86_64(nr(name), args);
    let cases: &[(SeccompData, Action)] = &[
        (call("read", [0; 6]), Action::Allow),
        (call("openat", [0; 6]), Action::Notify),
        // glibc pthread_create, fork; a CLONE_VM process; namespaces.
        (call("clone", [0x3d0f00, 0, 0, 0, 0, 0]), Action::Allow),
        (call("clone", [0x0120_0011, 0, 0, 0, 0, 0]), Action::Allow),
        (
            call("clone", [CLONE_VM | 17, 0, 0, 0, 0, 0]),
            Action::Notify,
        ),
        (
            call("clone", [0x0002_0000 | 17, 0, 0, 0, 0, 0]),
            Action::Notify,
        ),
        (
            call("clone", [0x0200_0000 | 17, 0, 0, 0, 0, 0]),
            Action::Notify,
        ),
        (
            call("clone", [0x3d0f00 | 0x4000_0000, 0, 0, 0, 0, 0]),
            Action::Notify,
        ),
        (call("clone3", [0; 6]), Action::Errno(ENOSYS)),
        // Families: unix, inet, inet6 yes; netlink, packet no; the kernel
        // ignores high bits of an int, and so does the filter.
        (call("socket", [1, 1, 0, 0, 0, 0]), Action::Allow),
        (call("socket", [2, 1, 0, 0, 0, 0]), Action::Allow),
        (call("socket", [10, 2, 0, 0, 0, 0]), Action::Allow),
        (call("socket", [2 | 1 << 32, 1, 0, 0, 0, 0]), Action::Allow),
        (call("socket", [16, 3, 0, 0, 0, 0]), Action::Notify),
        (
            call("socket", [16 | 1 << 40, 3, 0, 0, 0, 0]),
            Action::Notify,
        ),
        (call("socket", [17, 3, 0, 0, 0, 0]), Action::Notify),
        // W^X.
        (call("mmap", [0, 4096, 3, 0x22, 0, 0]), Action::Allow),
        (call("mmap", [0, 4096, 5, 0x802, 3, 0]), Action::Allow),
        (call("mmap", [0, 4096, 7, 0x22, 0, 0]), Action::Notify),
        (call("mmap", [0, 4096, 6, 0x2, 3, 0]), Action::Notify),
        (call("mmap", [0, 4096, 4, 0x22, 0, 0]), Action::Notify),
        (call("mprotect", [0, 4096, 1, 0, 0, 0]), Action::Allow),
        (call("mprotect", [0, 4096, 5, 0, 0, 0]), Action::Notify),
        (call("execve", [0; 6]), Action::Notify),
        (call("ptrace", [0; 6]), Action::KillProcess),
        (call("getpid", [0; 6]), Action::Log),
        (call("bpf", [0; 6]), Action::Trap),
        // Outside the table, x32, other architectures.
        (SeccompData::x86_64(1000, [0; 6]), Action::Notify),
        (SeccompData::x86_64(u32::MAX, [0; 6]), Action::Notify),
        (
            SeccompData::x86_64(X32_SYSCALL_BIT | nr("read"), [0; 6]),
            Action::Notify,
        ),
        (
            SeccompData {
                arch: 0x4000_0003, // AUDIT_ARCH_I386
                ..call("read", [0; 6])
            },
            Action::KillProcess,
        ),
    ];
    for &(data, want) in cases {
        check(&f, data, want);
    }
}

#[test]
fn disassembly_snapshot() {
    let f = Filter::new(Action::Errno(1))
        .rule(Rule::new(sys("read"), Action::Allow))
        .rule(
            Rule::new(sys("clone"), Action::Notify)
                .when(ArgCondition::any_set(0, CLONE_VM | 1 << 33)),
        )
        .rule(Rule::new(sys("clone"), Action::Allow).when(ArgCondition::equal(0, 0x11)))
        .rule(Rule::new(sys("socket"), Action::Allow).when(ArgCondition::equal(0, 2).low32()))
        .rule(Rule::new(sys("mmap"), Action::KillProcess).when(ArgCondition::masked_equal(2, 6, 6)))
        .rule(Rule::new(sys("clone3"), Action::Errno(ENOSYS)));
    let linear = compile_with(&f, Layout::Linear).unwrap().disassemble();
    insta::assert_snapshot!("small_linear", linear);
    // Five groups: the tree splits once before its leaves.
    let tree = compile_with(&f, Layout::Tree).unwrap().disassemble();
    insta::assert_snapshot!("small_tree", tree);
}

#[test]
fn long_jumps_get_trampolines() {
    // One syscall with 200 conditional rules: its body is far longer than
    // 255 instructions, so skipping it needs a `ja`.
    let mut f = Filter::new(Action::Errno(1));
    for i in 0..200u64 {
        f.rules
            .push(Rule::new(sys("ioctl"), Action::Allow).when(ArgCondition::equal(1, 0x5400 + i)));
    }
    f.rules.push(Rule::new(sys("read"), Action::Allow));
    for layout in LAYOUTS {
        let program = compile_with(&f, layout).unwrap();
        verify(program.instructions()).unwrap();
        assert!(program.len() > 600, "{}", program.len());
        let has_ja = program
            .instructions()
            .iter()
            .any(|i| i.code == op::JMP | op::JA && i.k > 255);
        assert!(has_ja, "{layout:?}: no long ja");
    }
    let ioctl = |request: u64| SeccompData::x86_64(nr("ioctl"), [3, request, 0, 0, 0, 0]);
    check(&f, ioctl(0x5400), Action::Allow);
    check(&f, ioctl(0x5400 + 199), Action::Allow);
    check(&f, ioctl(0x5400 + 200), Action::Errno(1));
    check(&f, ioctl(1 << 32 | 0x5400), Action::Errno(1));
    check(&f, SeccompData::x86_64(nr("read"), [0; 6]), Action::Allow);
    check(
        &f,
        SeccompData::x86_64(nr("write"), [0; 6]),
        Action::Errno(1),
    );
}

#[test]
fn too_long_is_an_error() {
    let mut f = Filter::new(Action::Errno(1));
    for i in 0..1500u64 {
        f.rules
            .push(Rule::new(sys("ioctl"), Action::Allow).when(ArgCondition::equal(1, i)));
    }
    match compile(&f) {
        Err(Error::TooLong { len, max: 4096 }) => assert!(len > 4096),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_allowlist_of_every_syscall_fits() {
    let mut f = Filter::new(Action::KillProcess);
    for s in Syscall::all() {
        f.rules.push(Rule::new(s, Action::Allow));
    }
    for layout in LAYOUTS {
        let program = compile_with(&f, layout).unwrap();
        verify(program.instructions()).unwrap();
        for s in Syscall::all() {
            assert_eq!(
                run(&program, &SeccompData::x86_64(s.nr(), [0; 6])),
                Action::Allow
            );
        }
        assert_eq!(
            run(&program, &SeccompData::x86_64(400, [0; 6])),
            Action::KillProcess
        );
    }
}

#[test]
fn validation_runs_before_compiling() {
    let f = Filter::new(Action::Allow)
        .rule(Rule::new(sys("read"), Action::Allow))
        .rule(Rule::new(sys("read"), Action::Errno(1)));
    assert!(matches!(
        compile(&f),
        Err(Error::UnreachableRule {
            rule: 1,
            shadowed_by: 0,
            ..
        })
    ));
}

#[test]
fn verifier_refuses_what_the_kernel_refuses() {
    let ret = Instruction::stmt(op::RET | op::K, 0);
    let cases: &[(&[Instruction], &str)] = &[
        (&[], "BPF instruction 0: program length outside 1..=4096"),
        (
            &[Instruction::stmt(op::LD | op::W | op::ABS, 2), ret],
            "BPF instruction 0: load outside seccomp_data or unaligned",
        ),
        (
            &[Instruction::stmt(op::LD | op::W | op::ABS, 64), ret],
            "BPF instruction 0: load outside seccomp_data or unaligned",
        ),
        (
            &[Instruction::stmt(op::LD | op::B | op::ABS, 0), ret],
            "BPF instruction 0: load mode seccomp does not allow",
        ),
        (
            &[Instruction::jump(op::JMP | op::JEQ, 0, 1, 0), ret],
            "BPF instruction 0: jump past the end",
        ),
        (
            &[Instruction::stmt(op::JMP | op::JA, 1), ret],
            "BPF instruction 0: jump past the end",
        ),
        (
            &[Instruction::stmt(op::ALU | op::DIV | op::K, 0), ret],
            "BPF instruction 0: division by constant zero",
        ),
        (
            &[ret, Instruction::stmt(op::LD | op::W | op::ABS, 0)],
            "BPF instruction 1: the last instruction is not a return",
        ),
        (
            &[Instruction::stmt(op::ST, 16), ret],
            "BPF instruction 0: scratch memory index out of range",
        ),
    ];
    for (program, want) in cases {
        assert_eq!(verify(program).unwrap_err().to_string(), *want);
    }
}

#[test]
fn interpreter_runs_general_programs() {
    // A hand-written program using scratch memory, X and arithmetic:
    // return ALLOW if (nr * 2 + 1) == args[0].low, else ERRNO(5).
    let p = [
        Instruction::stmt(op::LD | op::W | op::ABS, 0),
        Instruction::stmt(op::ALU | op::MUL | op::K, 2),
        Instruction::stmt(op::ALU | op::ADD | op::K, 1),
        Instruction::stmt(op::ST, 3),
        Instruction::stmt(op::LD | op::W | op::ABS, 16),
        Instruction::stmt(op::MISC | op::TAX, 0),
        Instruction::stmt(op::LD | op::W | op::MEM, 3),
        Instruction::jump(op::JMP | op::JEQ | op::X, 0, 0, 1),
        Instruction::stmt(op::RET | op::K, Action::Allow.ret_value()),
        Instruction::stmt(op::RET | op::K, Action::Errno(5).ret_value()),
    ];
    let run =
        |nr: u32, a0: u64| interpret(&p, &SeccompData::x86_64(nr, [a0, 0, 0, 0, 0, 0])).unwrap();
    assert_eq!(run(3, 7).ret, Action::Allow.ret_value());
    assert_eq!(run(3, 8).ret, Action::Errno(5).ret_value());
    assert_eq!(run(3, 7).executed, 9);
}

// ---- Property: interpret(compile(f), d) == f.evaluate(d) ------------------

/// Syscalls drawn from a small pool, so rules share syscalls and groups get
/// several rules.
fn syscall_strategy() -> impl Strategy<Value = Syscall> {
    let pool: Vec<Syscall> = [
        "read", "write", "clone", "socket", "mmap", "mprotect", "ioctl", "futex", "clone3",
        "openat", "close", "listns",
    ]
    .iter()
    .map(|n| sys(n))
    .collect();
    let all: Vec<Syscall> = Syscall::all().collect();
    prop_oneof![
        4 => proptest::sample::select(pool),
        1 => proptest::sample::select(all),
    ]
}

/// Values that exercise both halves and their edges.
fn value_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..4,
        (0u32..64).prop_map(|b| 1u64 << b),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(1u64 << 32 | 2),
        any::<u64>(),
    ]
}

fn mask_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u32..64).prop_map(|b| 1u64 << b),
        (0u32..64, 0u32..64).prop_map(|(a, b)| 1u64 << a | 1u64 << b),
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(0xffff_ffff_0000_0000),
        any::<u64>(),
    ]
    .prop_filter("non-empty", |m| *m != 0)
}

fn condition_strategy() -> impl Strategy<Value = ArgCondition> {
    let test = prop_oneof![
        value_strategy().prop_map(ArgTest::Equal),
        (mask_strategy(), any::<u64>()).prop_map(|(mask, v)| ArgTest::MaskedEqual {
            mask,
            value: v & mask
        }),
        mask_strategy().prop_map(ArgTest::AnySet),
        mask_strategy().prop_map(ArgTest::NoneSet),
    ];
    (0u8..6, any::<bool>(), test).prop_filter_map("fits its width", |(arg, narrow, test)| {
        let c = ArgCondition::new(arg, test);
        if !narrow {
            return Some(c);
        }
        let low = |x: u64| x & u64::from(u32::MAX);
        let test = match test {
            ArgTest::Equal(v) => ArgTest::Equal(low(v)),
            ArgTest::MaskedEqual { mask, value } => ArgTest::MaskedEqual {
                mask: low(mask),
                value: low(value),
            },
            ArgTest::AnySet(m) => ArgTest::AnySet(low(m)),
            ArgTest::NoneSet(m) => ArgTest::NoneSet(low(m)),
        };
        let c = ArgCondition {
            width: Width::U32,
            test,
            arg,
        };
        let empty = matches!(
            test,
            ArgTest::MaskedEqual { mask: 0, .. } | ArgTest::AnySet(0) | ArgTest::NoneSet(0)
        );
        (!empty).then_some(c)
    })
}

fn action_strategy() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => Just(Action::Allow),
        2 => (1u16..=4095).prop_map(Action::Errno),
        2 => Just(Action::Notify),
        1 => Just(Action::Log),
        1 => Just(Action::KillProcess),
        1 => Just(Action::Trap),
    ]
}

fn rule_strategy() -> impl Strategy<Value = Rule> {
    (
        syscall_strategy(),
        prop_oneof![1 => Just(0usize), 3 => 1usize..4],
        proptest::collection::vec(condition_strategy(), 3),
        action_strategy(),
    )
        .prop_map(|(syscall, n, mut when, action)| {
            when.truncate(n);
            Rule {
                syscall,
                when,
                action,
            }
        })
}

/// Drops every rule behind an unconditional rule for the same syscall, the
/// one thing random rules get wrong.
fn repaired(default: Action, rules: Vec<Rule>) -> Filter {
    let mut closed = std::collections::HashSet::new();
    let rules = rules
        .into_iter()
        .filter(|r| {
            if closed.contains(&r.syscall) {
                return false;
            }
            if r.when.is_empty() {
                closed.insert(r.syscall);
            }
            true
        })
        .collect();
    Filter { default, rules }
}

fn filter_strategy(max_rules: usize) -> impl Strategy<Value = Filter> {
    (
        action_strategy(),
        proptest::collection::vec(rule_strategy(), 0..max_rules),
    )
        .prop_map(|(default, rules)| repaired(default, rules))
}

/// Calls aimed at the filter: its syscalls, and argument values taken from
/// its conditions (exact, and one bit off) as often as random ones.
fn data_for(filter: &Filter) -> impl Strategy<Value = SeccompData> {
    let mut nrs: Vec<u32> = filter.rules.iter().map(|r| r.syscall.nr()).collect();
    nrs.extend([
        0,
        1,
        435,
        1000,
        u32::MAX,
        X32_SYSCALL_BIT,
        X32_SYSCALL_BIT | 1,
    ]);
    let mut values: Vec<u64> = vec![0, 1, u64::MAX, 1 << 32];
    for c in filter.rules.iter().flat_map(|r| &r.when) {
        let v = match c.test {
            ArgTest::Equal(v) | ArgTest::MaskedEqual { value: v, .. } => v,
            ArgTest::AnySet(m) | ArgTest::NoneSet(m) => m,
        };
        values.extend([v, v ^ 1, v ^ 1 << 32, v | 1 << 40]);
    }
    let arg = prop_oneof![3 => proptest::sample::select(values), 1 => any::<u64>()];
    let arch = prop_oneof![9 => Just(AUDIT_ARCH_X86_64), 1 => any::<u32>()];
    (
        prop_oneof![9 => proptest::sample::select(nrs), 1 => any::<u32>()],
        arch,
        proptest::array::uniform6(arg),
    )
        .prop_map(|(nr, arch, args)| SeccompData {
            nr,
            arch,
            instruction_pointer: 0,
            args,
        })
}

/// Compiles `filter` in both layouts and checks every call against
/// `evaluate`.
fn agree(filter: &Filter, calls: &[SeccompData]) -> Result<(), TestCaseError> {
    let fail = |e: Error| TestCaseError::fail(e.to_string());
    for layout in LAYOUTS {
        let program = compile_with(filter, layout).map_err(fail)?;
        verify(program.instructions()).map_err(fail)?;
        for data in calls {
            let got = interpret(program.instructions(), data).map_err(fail)?;
            let want = filter.evaluate(data);
            prop_assert_eq!(
                Action::from_ret_value(got.ret),
                Some(want),
                "{:?} {:x?}",
                layout,
                data
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn compiled_program_answers_like_the_description(
        (filter, data) in filter_strategy(40).prop_flat_map(|f| {
            let d = proptest::collection::vec(data_for(&f), 16);
            (Just(f), d)
        })
    ) {
        filter.validate().map_err(|e| TestCaseError::fail(e.to_string()))?;
        agree(&filter, &data)?;
    }

}

proptest! {
    // Up to 400 rules: fewer cases, each much larger.
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn large_filters_with_long_jumps_agree_too(
        (filter, data) in filter_strategy(400).prop_flat_map(|f| {
            let d = proptest::collection::vec(data_for(&f), 16);
            (Just(f), d)
        })
    ) {
        match compile(&filter) {
            Err(Error::TooLong { .. }) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
            Ok(_) => {}
        }
        agree(&filter, &data)?;
    }

    #[test]
    fn descriptions_round_trip_through_json(filter in filter_strategy(20)) {
        let json = serde_json::to_string(&filter).unwrap();
        let back: Filter = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, filter);
    }
}
