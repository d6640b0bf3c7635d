//! A classic BPF interpreter over [`SeccompData`], with the kernel's static
//! checks for seccomp filters (feature `interpret`).
//!
//! It exists so tests and the fuzz target can run a compiled program
//! without a kernel and compare its answer with
//! [`Filter::evaluate`](crate::Filter::evaluate), and so a description can
//! be checked offline. It accepts what the kernel's `seccomp_check_filter`
//! accepts (absolute 32-bit loads of `seccomp_data`, `len`, immediates,
//! scratch memory, ALU, jumps, returns) and refuses the rest, as the kernel
//! would refuse to install it.
#![forbid(unsafe_code)]

use crate::bpf::{op, Instruction, MAX_INSTRUCTIONS};
use crate::{Error, SeccompData};

/// `sizeof(struct seccomp_data)`: what `ld #len` loads.
const DATA_LEN: u32 = 64;
/// Scratch memory words (`BPF_MEMWORDS`).
const MEM_WORDS: u32 = 16;

/// The outcome of running a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// The value returned (an action, see
    /// [`Action::from_ret_value`](crate::Action::from_ret_value)).
    pub ret: u32,
    /// How many instructions ran (a cost measure independent of the host).
    pub executed: usize,
}

/// The kernel's static checks: length, every opcode one seccomp allows,
/// loads inside `seccomp_data` and aligned, scratch indices in range, no
/// division by a zero constant, every jump inside the program, and a return
/// last.
pub fn verify(program: &[Instruction]) -> Result<(), Error> {
    let bad = |pc, why| Err(Error::Bpf { pc, why });
    if program.is_empty() || program.len() > MAX_INSTRUCTIONS {
        return bad(0, "program length outside 1..=4096");
    }
    let len = program.len();
    for (pc, ins) in program.iter().enumerate() {
        let k = ins.k;
        let code = ins.code;
        match op::class(code) {
            op::LD | op::LDX => match code & 0xe0 {
                op::ABS if op::class(code) == op::LD && code & 0x18 == op::W => {
                    if k % 4 != 0 || k >= DATA_LEN {
                        return bad(pc, "load outside seccomp_data or unaligned");
                    }
                }
                op::IMM | op::LEN if code & 0x18 == op::W => {}
                op::MEM if code & 0x18 == op::W => {
                    if k >= MEM_WORDS {
                        return bad(pc, "scratch memory index out of range");
                    }
                }
                _ => return bad(pc, "load mode seccomp does not allow"),
            },
            op::ST | op::STX => {
                if code & !0x07 != 0 {
                    return bad(pc, "unknown store opcode");
                }
                if k >= MEM_WORDS {
                    return bad(pc, "scratch memory index out of range");
                }
            }
            op::ALU => {
                if code & !0xff != 0 || code & 0x07 != op::ALU {
                    return bad(pc, "unknown ALU opcode");
                }
                match code & 0xf0 {
                    op::ADD
                    | op::SUB
                    | op::MUL
                    | op::OR
                    | op::AND
                    | op::LSH
                    | op::RSH
                    | op::XOR => {}
                    op::DIV | op::MOD => {
                        if code & op::X == 0 && k == 0 {
                            return bad(pc, "division by constant zero");
                        }
                    }
                    op::NEG if code & op::X == 0 => {}
                    _ => return bad(pc, "unknown ALU operation"),
                }
            }
            op::JMP => match code & 0xf0 {
                op::JA if code == op::JMP | op::JA => {
                    let room = len - pc - 1;
                    if usize::try_from(k).map_or(true, |k| k >= room) {
                        return bad(pc, "jump past the end");
                    }
                }
                op::JEQ | op::JGT | op::JGE | op::JSET if code & !0xf8 == op::JMP => {
                    let room = len - pc - 1;
                    if usize::from(ins.jt) >= room || usize::from(ins.jf) >= room {
                        return bad(pc, "jump past the end");
                    }
                }
                _ => return bad(pc, "unknown jump opcode"),
            },
            op::RET => {
                if code != op::RET | op::K && code != op::RET | op::A {
                    return bad(pc, "unknown return opcode");
                }
            }
            op::MISC => {
                if code != op::MISC | op::TAX && code != op::MISC | op::TXA {
                    return bad(pc, "unknown misc opcode");
                }
            }
            _ => return bad(pc, "unknown instruction class"),
        }
    }
    match program.last() {
        Some(last) if op::class(last.code) == op::RET => Ok(()),
        _ => bad(len - 1, "the last instruction is not a return"),
    }
}

/// Verifies the program, then runs it on one call.
pub fn interpret(program: &[Instruction], data: &SeccompData) -> Result<Run, Error> {
    verify(program)?;
    let mut a: u32 = 0;
    let mut x: u32 = 0;
    let mut mem: [Option<u32>; 16] = [None; 16];
    let mut pc = 0usize;
    let mut executed = 0usize;
    let fault = |pc, why| Err(Error::Bpf { pc, why });
    loop {
        let Some(ins) = program.get(pc) else {
            return fault(pc, "ran past the end");
        };
        executed += 1;
        let k = ins.k;
        let code = ins.code;
        let slot = usize::try_from(k).unwrap_or(usize::MAX);
        let mut next = pc + 1;
        match op::class(code) {
            op::LD | op::LDX => {
                let value = match code & 0xe0 {
                    op::ABS => match data.word(k) {
                        Some(w) => w,
                        None => return fault(pc, "load outside seccomp_data"),
                    },
                    op::IMM => k,
                    op::LEN => DATA_LEN,
                    op::MEM => match mem.get(slot).copied().flatten() {
                        Some(w) => w,
                        None => return fault(pc, "read of scratch memory never written"),
                    },
                    _ => return fault(pc, "bad load mode"),
                };
                if op::class(code) == op::LD {
                    a = value;
                } else {
                    x = value;
                }
            }
            op::ST | op::STX => {
                let value = if op::class(code) == op::ST { a } else { x };
                match mem.get_mut(slot) {
                    Some(m) => *m = Some(value),
                    None => return fault(pc, "scratch memory index out of range"),
                }
            }
            op::ALU => {
                let operand = if code & op::X != 0 { x } else { k };
                a = match code & 0xf0 {
                    op::ADD => a.wrapping_add(operand),
                    op::SUB => a.wrapping_sub(operand),
                    op::MUL => a.wrapping_mul(operand),
                    // The kernel ends the program, returning 0, on a
                    // division by a zero register.
                    op::DIV | op::MOD if operand == 0 => return Ok(Run { ret: 0, executed }),
                    op::DIV => a / operand,
                    op::MOD => a % operand,
                    op::OR => a | operand,
                    op::AND => a & operand,
                    op::LSH => a.checked_shl(operand).unwrap_or(0),
                    op::RSH => a.checked_shr(operand).unwrap_or(0),
                    op::NEG => a.wrapping_neg(),
                    op::XOR => a ^ operand,
                    _ => return fault(pc, "bad ALU operation"),
                };
            }
            op::JMP => {
                let operand = if code & op::X != 0 { x } else { k };
                let taken = match code & 0xf0 {
                    op::JA => {
                        next = pc + 1 + slot;
                        None
                    }
                    op::JEQ => Some(a == operand),
                    op::JGT => Some(a > operand),
                    op::JGE => Some(a >= operand),
                    op::JSET => Some(a & operand != 0),
                    _ => return fault(pc, "bad jump"),
                };
                if let Some(taken) = taken {
                    next = pc + 1 + usize::from(if taken { ins.jt } else { ins.jf });
                }
            }
            op::RET => {
                let ret = if code & op::A != 0 { a } else { k };
                return Ok(Run { ret, executed });
            }
            op::MISC => {
                if code & 0xf8 == op::TXA {
                    a = x;
                } else {
                    x = a;
                }
            }
            _ => return fault(pc, "bad instruction class"),
        }
        pc = next;
    }
}
