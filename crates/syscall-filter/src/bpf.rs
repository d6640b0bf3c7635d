//! Classic BPF: the instruction format the kernel runs seccomp filters in,
//! a compiled [`Program`], and its disassembly.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use crate::filter::{Action, AUDIT_ARCH_X86_64};
use crate::syscalls::name_of;
use crate::Error;

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
pub const MAX_INSTRUCTIONS: usize = 4096;

/// One classic BPF instruction, laid out exactly as `struct sock_filter`
/// (`{ u16 code; u8 jt; u8 jf; u32 k; }`), so a program can be handed to the
/// kernel without copying.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Instruction {
    /// Opcode: class | size/op | mode/source.
    pub code: u16,
    /// Conditional jumps: instructions to skip when true.
    pub jt: u8,
    /// Conditional jumps: instructions to skip when false.
    pub jf: u8,
    /// The constant operand.
    pub k: u32,
}

/// Opcode parts (linux/bpf_common.h, linux/filter.h).
#[allow(missing_docs)]
pub mod op {
    // Classes.
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;
    // Sizes.
    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;
    // Modes.
    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MEM: u16 = 0x60;
    pub const LEN: u16 = 0x80;
    pub const MSH: u16 = 0xa0;
    // ALU operations.
    pub const ADD: u16 = 0x00;
    pub const SUB: u16 = 0x10;
    pub const MUL: u16 = 0x20;
    pub const DIV: u16 = 0x30;
    pub const OR: u16 = 0x40;
    pub const AND: u16 = 0x50;
    pub const LSH: u16 = 0x60;
    pub const RSH: u16 = 0x70;
    pub const NEG: u16 = 0x80;
    pub const MOD: u16 = 0x90;
    pub const XOR: u16 = 0xa0;
    // Jumps.
    pub const JA: u16 = 0x00;
    pub const JEQ: u16 = 0x10;
    pub const JGT: u16 = 0x20;
    pub const JGE: u16 = 0x30;
    pub const JSET: u16 = 0x40;
    // Operand sources.
    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    // Return value source (BPF_RVAL).
    pub const A: u16 = 0x10;
    // Miscellaneous operations.
    pub const TAX: u16 = 0x00;
    pub const TXA: u16 = 0x80;

    /// The class bits of an opcode.
    pub const fn class(code: u16) -> u16 {
        code & 0x07
    }
}

impl Instruction {
    /// A non-jump instruction.
    pub const fn stmt(code: u16, k: u32) -> Self {
        Instruction {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    /// A conditional jump.
    pub const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Self {
        Instruction { code, jt, jf, k }
    }
}

/// A compiled filter: at most [`MAX_INSTRUCTIONS`] instructions ending in a
/// return. Built by [`compile`](crate::compile).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    instructions: Vec<Instruction>,
}

impl Program {
    /// Wraps instructions, checking only the length the kernel accepts
    /// (1..=4096).
    pub fn from_instructions(instructions: Vec<Instruction>) -> Result<Self, Error> {
        if instructions.len() > MAX_INSTRUCTIONS {
            return Err(Error::TooLong {
                len: instructions.len(),
                max: MAX_INSTRUCTIONS,
            });
        }
        if instructions.is_empty() {
            return Err(Error::Bpf {
                pc: 0,
                why: "empty program",
            });
        }
        Ok(Program { instructions })
    }

    /// The instructions.
    pub fn instructions(&self) -> &[Instruction] {
        &self.instructions
    }

    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.instructions.len()
    }

    /// Always false: a program has at least one instruction.
    pub fn is_empty(&self) -> bool {
        self.instructions.is_empty()
    }

    /// One line per instruction: index, mnemonic, operands, absolute jump
    /// targets, and a note naming what a load reads, the syscall a jump
    /// compares the number with, or the action a return stands for.
    pub fn disassemble(&self) -> String {
        let holds = accumulator_sources(&self.instructions);
        let mut out = String::new();
        for (pc, ins) in self.instructions.iter().enumerate() {
            let a = holds.get(pc).copied().flatten().flatten();
            let _ = writeln!(out, "{}", line(pc, ins, a));
        }
        out
    }
}

/// For each instruction, the `seccomp_data` offset whose word the
/// accumulator holds on every path reaching it, if there is one (a forward
/// dataflow pass: classic BPF only jumps forward).
fn accumulator_sources(program: &[Instruction]) -> Vec<Option<Option<u32>>> {
    // Outer None: no path reaches the instruction yet. Inner None: unknown.
    let mut state: Vec<Option<Option<u32>>> = vec![None; program.len()];
    if let Some(first) = state.first_mut() {
        *first = Some(None);
    }
    let merge = |state: &mut Vec<Option<Option<u32>>>, at: usize, v: Option<u32>| {
        if let Some(slot) = state.get_mut(at) {
            *slot = match *slot {
                None => Some(v),
                Some(old) if old == v => Some(v),
                Some(_) => Some(None),
            };
        }
    };
    for pc in 0..program.len() {
        let (Some(ins), Some(Some(before))) = (program.get(pc), state.get(pc).copied()) else {
            continue;
        };
        let after = match (op::class(ins.code), ins.code) {
            (_, c) if c == op::LD | op::W | op::ABS => Some(ins.k),
            (op::JMP, _) | (op::RET, _) | (op::ST, _) | (op::STX, _) | (op::LDX, _) => before,
            (op::MISC, c) if c & 0xf8 == op::TAX => before,
            _ => None,
        };
        match (op::class(ins.code), ins.code & 0xf0) {
            (op::RET, _) => {}
            (op::JMP, op::JA) => {
                let to = usize::try_from(ins.k)
                    .map_or(usize::MAX, |k| pc.saturating_add(1).saturating_add(k));
                merge(&mut state, to, after);
            }
            (op::JMP, _) => {
                merge(&mut state, pc + 1 + usize::from(ins.jt), after);
                merge(&mut state, pc + 1 + usize::from(ins.jf), after);
            }
            _ => merge(&mut state, pc + 1, after),
        }
    }
    state
}

fn field(offset: u32) -> String {
    match offset {
        0 => "nr".to_owned(),
        4 => "arch".to_owned(),
        8 => "ip (low)".to_owned(),
        12 => "ip (high)".to_owned(),
        16..=63 => {
            let half = if offset % 8 == 0 { "low" } else { "high" };
            format!("args[{}] ({half})", (offset - 16) / 8)
        }
        _ => "?".to_owned(),
    }
}

fn action_name(k: u32) -> String {
    match Action::from_ret_value(k) {
        Some(Action::Errno(e)) => format!("errno {e}"),
        Some(Action::KillProcess) => "kill_process".to_owned(),
        Some(a) => format!("{a:?}").to_lowercase(),
        None => "?".to_owned(),
    }
}

fn line(pc: usize, ins: &Instruction, a: Option<u32>) -> String {
    let code = ins.code;
    let k = ins.k;
    let target = |skip: u8| pc + 1 + usize::from(skip);
    let (text, note) = match op::class(code) {
        op::LD if code == op::LD | op::W | op::ABS => (format!("ld   [{k}]"), field(k)),
        op::LD if code == op::LD | op::W | op::IMM => (format!("ld   #{k:#x}"), String::new()),
        op::LD if code == op::LD | op::W | op::MEM => (format!("ld   M[{k}]"), String::new()),
        op::LD if code == op::LD | op::W | op::LEN => ("ld   #len".to_owned(), String::new()),
        op::LDX if code == op::LDX | op::W | op::IMM => (format!("ldx  #{k:#x}"), String::new()),
        op::LDX if code == op::LDX | op::W | op::MEM => (format!("ldx  M[{k}]"), String::new()),
        op::LDX if code == op::LDX | op::W | op::LEN => ("ldx  #len".to_owned(), String::new()),
        op::ST => (format!("st   M[{k}]"), String::new()),
        op::STX => (format!("stx  M[{k}]"), String::new()),
        op::ALU => {
            let name = match code & 0xf0 {
                op::ADD => "add",
                op::SUB => "sub",
                op::MUL => "mul",
                op::DIV => "div",
                op::OR => "or",
                op::AND => "and",
                op::LSH => "lsh",
                op::RSH => "rsh",
                op::NEG => "neg",
                op::MOD => "mod",
                op::XOR => "xor",
                _ => "alu?",
            };
            let operand = if code & op::X != 0 {
                "x".to_owned()
            } else {
                format!("#{k:#x}")
            };
            (format!("{name:<4} {operand}"), String::new())
        }
        op::JMP if code & 0xf0 == op::JA => {
            let to =
                usize::try_from(k).map_or(usize::MAX, |k| pc.saturating_add(1).saturating_add(k));
            (format!("ja   {to}"), String::new())
        }
        op::JMP => {
            let name = match code & 0xf0 {
                op::JEQ => "jeq",
                op::JGT => "jgt",
                op::JGE => "jge",
                op::JSET => "jset",
                _ => "j?",
            };
            let operand = if code & op::X != 0 {
                "x".to_owned()
            } else {
                format!("#{k:#x}")
            };
            let note = match a {
                Some(0) if code & op::X == 0 && code & 0xf0 != op::JSET => {
                    name_of(k).map(str::to_owned).unwrap_or_default()
                }
                Some(4) if k == AUDIT_ARCH_X86_64 => "x86_64".to_owned(),
                _ => String::new(),
            };
            (
                format!(
                    "{name:<4} {operand}, {}, {}",
                    target(ins.jt),
                    target(ins.jf)
                ),
                note,
            )
        }
        op::RET if code & op::A != 0 => ("ret  a".to_owned(), String::new()),
        op::RET => (format!("ret  #{k:#x}"), action_name(k)),
        op::MISC if code & 0xf8 == op::TXA => ("txa".to_owned(), String::new()),
        op::MISC => ("tax".to_owned(), String::new()),
        _ => (format!("?    code={code:#06x} k={k:#x}"), String::new()),
    };
    if note.is_empty() {
        format!("{pc:04}  {text}")
    } else {
        format!("{pc:04}  {text:<34} ; {note}")
    }
}
