//! A seccomp filter description built from the input (valid or not), and
//! calls aimed at it: compiling never panics; a description compiles
//! exactly when it validates (or is too long for the kernel); a compiled
//! program passes the kernel's checks and, interpreted, answers every call
//! as `Filter::evaluate` does, in both layouts.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use syscall_filter::interpret::{interpret, verify};
use syscall_filter::{
    compile_with, Action, ArgCondition, ArgTest, Error, Filter, Layout, Rule, SeccompData, Syscall,
    Width, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT,
};

/// A few syscalls most rules use, so groups get several rules.
const POOL: &[u32] = &[0, 1, 9, 10, 16, 41, 56, 202, 435];

fn syscall(u: &mut Unstructured<'_>) -> Result<Syscall> {
    if u.ratio(3, 4)? {
        let nr = *u.choose(POOL)?;
        return Ok(Syscall::from_nr(nr).unwrap_or(Syscall::SENDMSG));
    }
    let count = Syscall::all().count();
    let i = u.choose_index(count)?;
    Ok(Syscall::all().nth(i).unwrap_or(Syscall::CLONE))
}

fn action(u: &mut Unstructured<'_>) -> Result<Action> {
    Ok(match u.int_in_range(0u8..=5)? {
        0 => Action::Allow,
        // Now and then any u16: 0 and values past 4095 must be refused.
        1 if u.ratio(1, 32)? => Action::Errno(u.arbitrary()?),
        1 => Action::Errno(u.int_in_range(1u16..=4095)?),
        2 => Action::Notify,
        3 => Action::Log,
        4 => Action::KillProcess,
        _ => Action::Trap,
    })
}

fn value(u: &mut Unstructured<'_>) -> Result<u64> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => u64::from(u.int_in_range(0u8..=3)?),
        1 => 1u64 << u.int_in_range(0u32..=63)?,
        2 => u64::from(u.arbitrary::<u32>()?),
        _ => u.arbitrary()?,
    })
}

/// Mostly valid conditions; each kind of invalid one now and then (they
/// must be refused, and one makes the whole description invalid).
fn condition(u: &mut Unstructured<'_>) -> Result<ArgCondition> {
    let sloppy = u.ratio(1, 32)?;
    // Arguments 6 and 7 exist only to be refused.
    let arg = if sloppy { u.int_in_range(0u8..=7)? } else { u.int_in_range(0u8..=5)? };
    let width = if u.arbitrary()? { Width::U32 } else { Width::U64 };
    let fit = |v: u64| if width == Width::U32 && !sloppy { v & u64::from(u32::MAX) } else { v };
    let nonzero = |v: u64| if v == 0 && !sloppy { 1 } else { v };
    let test = match u.int_in_range(0u8..=3)? {
        0 => ArgTest::Equal(fit(value(u)?)),
        1 => {
            let mask = nonzero(fit(value(u)?));
            let value = value(u)?;
            let value = if sloppy { value } else { value & mask };
            ArgTest::MaskedEqual { mask, value }
        }
        2 => ArgTest::AnySet(nonzero(fit(value(u)?))),
        _ => ArgTest::NoneSet(nonzero(fit(value(u)?))),
    };
    Ok(ArgCondition { arg, width, test })
}

fn filter(u: &mut Unstructured<'_>) -> Result<Filter> {
    let default = action(u)?;
    let count = u.int_in_range(0usize..=300)?;
    let mut rules: Vec<Rule> = Vec::with_capacity(count);
    for _ in 0..count {
        if u.is_empty() {
            break;
        }
        let syscall = syscall(u)?;
        // A rule behind an unconditional one for the same call is invalid:
        // generate one only now and then.
        let closed = rules.iter().any(|r| r.syscall == syscall && r.when.is_empty());
        if closed && !u.ratio(1, 32)? {
            continue;
        }
        let conditions = u.int_in_range(0usize..=4)?;
        let mut when = Vec::with_capacity(conditions);
        for _ in 0..conditions {
            when.push(condition(u)?);
        }
        rules.push(Rule { syscall, when, action: action(u)? });
    }
    Ok(Filter { default, rules })
}

fn call(u: &mut Unstructured<'_>, f: &Filter) -> Result<SeccompData> {
    let nr = match u.int_in_range(0u8..=5)? {
        0 => u.arbitrary()?,
        1 => X32_SYSCALL_BIT | u32::from(u.arbitrary::<u16>()?),
        _ => match f.rules.len() {
            0 => u.arbitrary()?,
            n => f.rules.get(u.choose_index(n)?).map_or(0, |r| r.syscall.nr()),
        },
    };
    let arch = if u.ratio(15, 16)? { AUDIT_ARCH_X86_64 } else { u.arbitrary()? };
    let mut args = [0u64; 6];
    for a in &mut args {
        // Values from the filter's conditions, exactly and a bit off.
        let from_filter: Vec<u64> = f
            .rules
            .iter()
            .flat_map(|r| &r.when)
            .map(|c| match c.test {
                ArgTest::Equal(v) | ArgTest::MaskedEqual { value: v, .. } => v,
                ArgTest::AnySet(m) | ArgTest::NoneSet(m) => m,
            })
            .collect();
        *a = match (u.int_in_range(0u8..=3)?, from_filter.is_empty()) {
            (0 | 1, false) => {
                let v = *u.choose(&from_filter)?;
                if u.arbitrary()? { v } else { v ^ (1u64 << u.int_in_range(0u32..=63)?) }
            }
            _ => value(u)?,
        };
    }
    Ok(SeccompData { nr, arch, instruction_pointer: u.arbitrary()?, args })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(f) = filter(&mut u) else { return };
    let mut calls = Vec::new();
    for _ in 0..8 {
        match call(&mut u, &f) {
            Ok(c) => calls.push(c),
            Err(_) => break,
        }
    }
    let valid = f.validate().is_ok();
    for layout in [Layout::Linear, Layout::Tree] {
        match compile_with(&f, layout) {
            Ok(program) => {
                assert!(valid, "compiled an invalid description");
                verify(program.instructions()).expect("the kernel would refuse the program");
                for d in &calls {
                    let run = interpret(program.instructions(), d).expect("program faulted");
                    assert_eq!(run.ret, f.evaluate(d).ret_value(), "{layout:?} {d:x?}");
                }
            }
            Err(Error::TooLong { .. }) => assert!(valid),
            Err(_) => assert!(!valid, "a valid description failed to compile"),
        }
    }
});
