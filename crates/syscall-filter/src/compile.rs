//! Filter description -> classic BPF.
//!
//! The compiler writes a small program of labelled operations (loads,
//! masks, compare-and-branch to a label, returns), then assembles it from
//! the last operation to the first. Every classic BPF jump goes forward, so
//! when a jump is assembled its target is already placed and its distance
//! known: a conditional jump's 8-bit offsets that would overflow (255
//! instructions) get a `ja` trampoline (32-bit offset) placed right after
//! the jump, without a second pass.
//!
//! Program shape (both layouts):
//!
//! ```text
//!   ld [arch]; jeq AUDIT_ARCH_X86_64 ? next : kill     ; other ABIs: kill
//!   ld [nr];   jset X32_SYSCALL_BIT  ? x32  : next     ; x32 ABI: x32 action
//!   dispatch on nr (Layout) to one group per syscall:
//!     rule 1: conditions (any false -> rule 2); ret action
//!     rule 2: ...
//!     ret default
//!   ret default                                         ; no group
//! ```
//!
//! A 64-bit argument is two 32-bit words (little endian: the low word at
//! `16 + 8 * i`, the high word 4 bytes later); each condition tests the
//! halves its mask or value touches, the low word first (it usually
//! decides). Returns are placed inline, next to the test that leads to
//! them, so jumps stay short.
#![forbid(unsafe_code)]

use crate::bpf::{op, Instruction, Program};
use crate::filter::{
    hi32, lo32, ArgCondition, ArgTest, Rule, Width, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT,
};
use crate::{Action, Error, Filter};

/// Byte offset of `seccomp_data.nr`.
const NR: u32 = 0;
/// Byte offset of `seccomp_data.arch`.
const ARCH: u32 = 4;

/// How the program finds a syscall's rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Layout {
    /// One comparison per syscall, in the order of each syscall's first
    /// rule: a call whose group comes `n`th costs `n` comparisons.
    Linear,
    /// A binary search over the sorted syscall numbers down to runs of at
    /// most [`TREE_LEAF`] groups compared in turn: about `log2(groups)`
    /// comparisons for every call.
    #[default]
    Tree,
}

/// Largest run of syscall groups the tree layout compares one by one.
pub const TREE_LEAF: usize = 4;

/// Compiles a filter with the default [`Layout`].
pub fn compile(filter: &Filter) -> Result<Program, Error> {
    compile_with(filter, Layout::default())
}

/// Compiles a filter with the given layout, after [`Filter::validate`].
pub fn compile_with(filter: &Filter, layout: Layout) -> Result<Program, Error> {
    filter.validate()?;
    let groups = group_rules(&filter.rules);
    let mut asm = Asm::default();

    let arch_ok = asm.label();
    asm.load(ARCH);
    asm.jump(
        op::JEQ,
        AUDIT_ARCH_X86_64,
        Target::To(arch_ok),
        Target::Next,
    );
    asm.ret(Action::KillProcess);
    asm.place(arch_ok);
    let native = asm.label();
    asm.load(NR);
    asm.jump(op::JSET, X32_SYSCALL_BIT, Target::Next, Target::To(native));
    asm.ret(filter.x32_action());
    asm.place(native);

    match layout {
        Layout::Linear => linear(&mut asm, &groups, filter.default),
        Layout::Tree => {
            let mut sorted = groups;
            sorted.sort_by_key(|g| g.nr);
            tree(&mut asm, &sorted, filter.default);
        }
    }
    let instructions = asm.assemble()?;
    Program::from_instructions(instructions)
}

/// The rules of one syscall, in filter order.
struct Group<'f> {
    nr: u32,
    rules: Vec<&'f Rule>,
}

/// Groups rules by syscall, groups ordered by each syscall's first rule.
fn group_rules(rules: &[Rule]) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut index: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for rule in rules {
        let nr = rule.syscall.nr();
        match index.get(&nr).and_then(|&i| groups.get_mut(i)) {
            Some(group) => group.rules.push(rule),
            None => {
                index.insert(nr, groups.len());
                groups.push(Group {
                    nr,
                    rules: vec![rule],
                });
            }
        }
    }
    groups
}

/// Dispatch by comparing the number with each group in turn. Expects the
/// number in the accumulator; every path ends in a return.
fn linear(asm: &mut Asm, groups: &[Group<'_>], default: Action) {
    for group in groups {
        let next = asm.label();
        asm.jump(op::JEQ, group.nr, Target::Next, Target::To(next));
        group_body(asm, group, default);
        asm.place(next);
    }
    asm.ret(default);
}

/// Dispatch by binary search over sorted groups, linear below the leaf
/// size. Expects the number in the accumulator.
fn tree(asm: &mut Asm, groups: &[Group<'_>], default: Action) {
    if groups.len() <= TREE_LEAF {
        return linear(asm, groups, default);
    }
    let mid = groups.len() / 2;
    let (left, right) = groups.split_at(mid);
    let Some(pivot) = right.first() else {
        return linear(asm, groups, default);
    };
    let upper = asm.label();
    asm.jump(op::JGE, pivot.nr, Target::To(upper), Target::Next);
    tree(asm, left, default);
    asm.place(upper);
    tree(asm, right, default);
}

/// One syscall's rules in order: each rule's conditions fall through to its
/// return or branch to the next rule; the last falls back to the default.
fn group_body(asm: &mut Asm, group: &Group<'_>, default: Action) {
    for rule in &group.rules {
        if rule.when.is_empty() {
            // Validation guarantees nothing follows an unconditional rule.
            asm.ret(rule.action);
            return;
        }
        let next_rule = asm.label();
        asm.forget_accumulator();
        for condition in &rule.when {
            compile_condition(asm, condition, next_rule);
        }
        asm.ret(rule.action);
        asm.place(next_rule);
    }
    asm.ret(default);
}

/// One 32-bit half of an argument: its offset and how to take that half of
/// a 64-bit constant.
type Half = (u32, fn(u64) -> u32);

/// Falls through when the condition holds, jumps to `fail` otherwise.
fn compile_condition(asm: &mut Asm, c: &ArgCondition, fail: Label) {
    let low = 16 + 8 * u32::from(c.arg);
    let high = low + 4;
    // The halves this condition looks at, low first.
    let halves: [Half; 2] = [(low, lo32), (high, hi32)];
    let halves = match c.width {
        Width::U64 => &halves[..],
        Width::U32 => &halves[..1],
    };
    let fail = Target::To(fail);
    match c.test {
        ArgTest::Equal(value) => {
            for &(offset, half) in halves {
                asm.load(offset);
                asm.jump(op::JEQ, half(value), Target::Next, fail);
            }
        }
        ArgTest::MaskedEqual { mask, value } => {
            for &(offset, half) in halves {
                let m = half(mask);
                if m == 0 {
                    continue; // value's half is 0 too (validated)
                }
                asm.load(offset);
                if m != u32::MAX {
                    asm.and(m);
                }
                asm.jump(op::JEQ, half(value), Target::Next, fail);
            }
        }
        ArgTest::AnySet(mask) => {
            let tested: Vec<(u32, u32)> = halves
                .iter()
                .map(|&(offset, half)| (offset, half(mask)))
                .filter(|&(_, m)| m != 0)
                .collect();
            let holds = asm.label();
            let count = tested.len();
            for (i, (offset, m)) in tested.into_iter().enumerate() {
                asm.load(offset);
                if i + 1 == count {
                    asm.jump(op::JSET, m, Target::Next, fail);
                } else {
                    asm.jump(op::JSET, m, Target::To(holds), Target::Next);
                }
            }
            asm.place(holds);
            // Two paths meet here with different words loaded.
            asm.forget_accumulator();
        }
        ArgTest::NoneSet(mask) => {
            for &(offset, half) in halves {
                let m = half(mask);
                if m != 0 {
                    asm.load(offset);
                    asm.jump(op::JSET, m, fail, Target::Next);
                }
            }
        }
    }
}

/// A position in the program, placed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Label(usize);

/// Where a conditional jump goes.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The instruction right after the jump.
    Next,
    /// A label placed later.
    To(Label),
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Place(Label),
    Load(u32),
    And(u32),
    Jump {
        code: u16,
        k: u32,
        jt: Target,
        jf: Target,
    },
    Ret(u32),
}

/// The labelled program being written.
#[derive(Default)]
struct Asm {
    ops: Vec<Op>,
    labels: usize,
    /// The word the accumulator holds on the straight path to here, if
    /// known: a second load of the same word is skipped.
    holds: Option<u32>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }
    fn place(&mut self, label: Label) {
        self.ops.push(Op::Place(label));
        // Whatever jumps here may have loaded something else.
        self.holds = None;
    }
    fn forget_accumulator(&mut self) {
        self.holds = None;
    }
    fn load(&mut self, offset: u32) {
        if self.holds != Some(offset) {
            self.ops.push(Op::Load(offset));
            self.holds = Some(offset);
        }
    }
    fn and(&mut self, mask: u32) {
        self.ops.push(Op::And(mask));
        self.holds = None;
    }
    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.ops.push(Op::Jump { code, k, jt, jf });
    }
    fn ret(&mut self, action: Action) {
        self.ops.push(Op::Ret(action.ret_value()));
    }

    /// Resolves labels, last operation first; see the module comment.
    fn assemble(&self) -> Result<Vec<Instruction>, Error> {
        // The program, last instruction first.
        let mut rev: Vec<Instruction> = Vec::with_capacity(self.ops.len());
        // For each placed label: how many instructions run from it to the end.
        let mut from_end: Vec<Option<usize>> = vec![None; self.labels];
        for op in self.ops.iter().rev() {
            match *op {
                Op::Place(Label(l)) => {
                    let slot = from_end
                        .get_mut(l)
                        .ok_or(Error::Internal("label out of range"))?;
                    *slot = Some(rev.len());
                }
                Op::Load(offset) => rev.push(Instruction::stmt(op::LD | op::W | op::ABS, offset)),
                Op::And(mask) => rev.push(Instruction::stmt(op::ALU | op::AND | op::K, mask)),
                Op::Ret(value) => rev.push(Instruction::stmt(op::RET | op::K, value)),
                Op::Jump { code, k, jt, jf } => {
                    let dest = |t: Target| -> Result<usize, Error> {
                        match t {
                            Target::Next => Ok(rev.len()),
                            Target::To(Label(l)) => from_end
                                .get(l)
                                .copied()
                                .flatten()
                                .ok_or(Error::Internal("jump to a label not placed after it")),
                        }
                    };
                    let (mut t, mut f) = (dest(jt)?, dest(jf)?);
                    loop {
                        let len = rev.len();
                        let (skip_t, skip_f) = (len - t, len - f);
                        if skip_t > usize::from(u8::MAX) {
                            rev.push(trampoline(skip_t)?);
                            t = rev.len();
                        } else if skip_f > usize::from(u8::MAX) {
                            rev.push(trampoline(skip_f)?);
                            f = rev.len();
                        } else {
                            let (jt, jf) = (u8::try_from(skip_t), u8::try_from(skip_f));
                            let (Ok(jt), Ok(jf)) = (jt, jf) else {
                                return Err(Error::Internal("jump offset overflow"));
                            };
                            rev.push(Instruction::jump(op::JMP | code | op::K, k, jt, jf));
                            break;
                        }
                    }
                }
            }
        }
        rev.reverse();
        Ok(rev)
    }
}

fn trampoline(skip: usize) -> Result<Instruction, Error> {
    let k = u32::try_from(skip).map_err(|_| Error::Internal("jump too far"))?;
    Ok(Instruction::stmt(op::JMP | op::JA, k))
}
