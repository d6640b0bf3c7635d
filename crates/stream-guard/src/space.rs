//! When visitor writes stop: before the data disk or memory is full, with a
//! reserve for an AOF rewrite and for the admin's own writes. Pure: the glue
//! feeds it samples (from a timer) and the cost of each admitted write (from
//! the command filter); it answers with verdicts and with the state changes
//! to log, exactly one line when a refusal starts and one when it ends.
//!
//! Rules:
//! - Disk: refuse when `free < aof + reserve`. An AOF rewrite writes a new base
//!   up to the size of the current AOF before it deletes the old files, so the
//!   disk must keep at least that much free, plus the reserve for the admin's
//!   own writes (a trim and the compaction after it). Accept again only when
//!   `free >= aof + reserve + reserve / 4`: the quarter-reserve gap keeps a
//!   disk that hovers at the line from flapping on every sample.
//! - Memory: refuse when `used > percent % of maxmemory`; accept again when
//!   `used <= (percent - gap) % of maxmemory`, the gap being 5 points (at most
//!   half of `percent`). No `maxmemory` (0) means no memory rule.
//! - Between samples every admitted write counts: its estimated cost is added
//!   to the AOF and to used memory and taken from the free space, so a burst
//!   between two samples cannot spend the reserve. A sample replaces the
//!   estimate with the measured values.
//! - A disk that cannot be measured counts as low (fail closed).
#![forbid(unsafe_code)]

use crate::policy::Refusal;

/// One reading of the data disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSample {
    /// Bytes an unprivileged writer may still use on the data disk
    /// (`f_bavail * f_frsize`).
    pub free_bytes: u64,
    /// Total size of the AOF files (`appendonlydir`).
    pub aof_bytes: u64,
}

/// One reading of the server's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySample {
    /// `used_memory`.
    pub used_bytes: u64,
    /// `maxmemory`; 0 when unset.
    pub max_bytes: u64,
}

/// A change of state, each one console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Disk refusal starts.
    DiskRefused {
        /// Free bytes (measured or estimated).
        free: u64,
        /// AOF bytes (measured or estimated).
        aof: u64,
        /// The configured reserve.
        reserve: u64,
    },
    /// Disk refusal starts because the disk could not be measured.
    DiskUnmeasurable(String),
    /// Disk refusal ends.
    DiskAccepted {
        /// Free bytes.
        free: u64,
        /// AOF bytes.
        aof: u64,
    },
    /// Memory refusal starts.
    MemoryRefused {
        /// Used bytes (measured or estimated).
        used: u64,
        /// `maxmemory`.
        max: u64,
        /// The configured percentage.
        percent: u8,
    },
    /// Memory refusal ends.
    MemoryAccepted {
        /// Used bytes.
        used: u64,
        /// `maxmemory`.
        max: u64,
    },
}

/// The prefix of every line that starts a refusal (the e2e suite matches it).
pub const REFUSED_PREFIX: &str = "stream-guard: visitor writes refused:";
/// The prefix of every line that ends one.
pub const ACCEPTED_PREFIX: &str = "stream-guard: visitor writes accepted again:";

impl Change {
    /// The console line.
    pub fn log_line(&self) -> String {
        match self {
            Change::DiskRefused { free, aof, reserve } => format!(
                "{REFUSED_PREFIX} disk free {free} bytes < aof {aof} + reserve {reserve} bytes"
            ),
            Change::DiskUnmeasurable(why) => {
                format!("{REFUSED_PREFIX} disk not measurable: {why}")
            }
            Change::DiskAccepted { free, aof } => {
                format!("{ACCEPTED_PREFIX} disk free {free} bytes, aof {aof} bytes")
            }
            Change::MemoryRefused { used, max, percent } => format!(
                "{REFUSED_PREFIX} memory used {used} bytes > {percent}% of maxmemory {max} bytes"
            ),
            Change::MemoryAccepted { used, max } => {
                format!("{ACCEPTED_PREFIX} memory used {used} bytes, maxmemory {max} bytes")
            }
        }
    }
}

/// Hysteresis gap of the memory rule, in percentage points.
const MEMORY_GAP_POINTS: u8 = 5;

/// The refusal state.
#[derive(Debug, Clone)]
pub struct SpaceGuard {
    reserve: u64,
    percent: u8,
    disk: Option<DiskSample>,
    memory: Option<MemorySample>,
    /// Estimated bytes admitted since the last sample.
    pending: u64,
    disk_low: bool,
    memory_low: bool,
}

/// The estimated disk (AOF) and memory cost of one visitor `XADD`: its
/// arguments plus a per-argument allowance for the RESP framing in the AOF
/// (`$<len>\r\n...\r\n`, at most 16 bytes for any argument the limits allow)
/// and a fixed allowance for the entry ID and the stream's node overhead.
pub fn xadd_cost<A: AsRef<[u8]>>(argv: &[A]) -> u64 {
    const PER_ARG: u64 = 16;
    const PER_ENTRY: u64 = 64;
    argv.iter()
        .map(|a| u64::try_from(a.as_ref().len()).unwrap_or(u64::MAX))
        .fold(PER_ENTRY, |sum, len| {
            sum.saturating_add(len).saturating_add(PER_ARG)
        })
}

fn disk_is_low(d: DiskSample, reserve: u64) -> bool {
    d.free_bytes < d.aof_bytes.saturating_add(reserve)
}

fn disk_is_clear(d: DiskSample, reserve: u64) -> bool {
    d.free_bytes
        >= d.aof_bytes
            .saturating_add(reserve)
            .saturating_add(reserve / 4)
}

fn memory_is_high(m: MemorySample, percent: u8) -> bool {
    m.max_bytes != 0
        && u128::from(m.used_bytes) * 100 > u128::from(m.max_bytes) * u128::from(percent)
}

fn memory_is_clear(m: MemorySample, percent: u8) -> bool {
    let gap = MEMORY_GAP_POINTS.min(percent / 2);
    m.max_bytes == 0
        || u128::from(m.used_bytes) * 100
            <= u128::from(m.max_bytes) * u128::from(percent.saturating_sub(gap))
}

impl SpaceGuard {
    /// A guard keeping `reserve` bytes beyond the AOF and refusing above
    /// `percent` % of `maxmemory`. Until the first sample it accepts: the glue
    /// takes one sample at load, before the server serves anyone.
    pub fn new(reserve: u64, percent: u8) -> SpaceGuard {
        SpaceGuard {
            reserve,
            percent,
            disk: None,
            memory: None,
            pending: 0,
            disk_low: false,
            memory_low: false,
        }
    }

    /// Why visitor writes are refused right now, if they are.
    pub fn refusal(&self) -> Option<Refusal> {
        if self.disk_low {
            Some(Refusal::DiskLow)
        } else if self.memory_low {
            Some(Refusal::MemoryLow)
        } else {
            None
        }
    }

    /// The disk sample with the writes admitted since it.
    fn disk_now(&self) -> Option<DiskSample> {
        self.disk.map(|d| DiskSample {
            free_bytes: d.free_bytes.saturating_sub(self.pending),
            aof_bytes: d.aof_bytes.saturating_add(self.pending),
        })
    }

    fn memory_now(&self) -> Option<MemorySample> {
        self.memory.map(|m| MemorySample {
            used_bytes: m.used_bytes.saturating_add(self.pending),
            max_bytes: m.max_bytes,
        })
    }

    /// Checks the rules against the current estimate; refusal only starts here.
    fn check_start(&mut self, changes: &mut Vec<Change>) {
        if let Some(d) = self.disk_now() {
            if !self.disk_low && disk_is_low(d, self.reserve) {
                self.disk_low = true;
                changes.push(Change::DiskRefused {
                    free: d.free_bytes,
                    aof: d.aof_bytes,
                    reserve: self.reserve,
                });
            }
        }
        if let Some(m) = self.memory_now() {
            if !self.memory_low && memory_is_high(m, self.percent) {
                self.memory_low = true;
                changes.push(Change::MemoryRefused {
                    used: m.used_bytes,
                    max: m.max_bytes,
                    percent: self.percent,
                });
            }
        }
    }

    /// A new reading (from the timer). `disk` is `Err` with the reason when
    /// the disk could not be measured; `memory` is `None` when the server did
    /// not say (the memory state is then left as it was).
    pub fn sample(
        &mut self,
        disk: Result<DiskSample, String>,
        memory: Option<MemorySample>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        self.pending = 0;
        match disk {
            Ok(d) => {
                self.disk = Some(d);
                if self.disk_low && disk_is_clear(d, self.reserve) {
                    self.disk_low = false;
                    changes.push(Change::DiskAccepted {
                        free: d.free_bytes,
                        aof: d.aof_bytes,
                    });
                }
            }
            Err(why) => {
                self.disk = None;
                if !self.disk_low {
                    self.disk_low = true;
                    changes.push(Change::DiskUnmeasurable(why));
                }
            }
        }
        if let Some(m) = memory {
            self.memory = Some(m);
            if self.memory_low && memory_is_clear(m, self.percent) {
                self.memory_low = false;
                changes.push(Change::MemoryAccepted {
                    used: m.used_bytes,
                    max: m.max_bytes,
                });
            }
        }
        self.check_start(&mut changes);
        changes
    }

    /// A well-formed visitor write of `cost` bytes ([`xadd_cost`]) asks to run.
    /// Admitted writes count against the estimate until the next sample; a
    /// write that would cross a line is refused and starts the refusal.
    pub fn admit(&mut self, cost: u64) -> (Result<(), Refusal>, Vec<Change>) {
        if let Some(refusal) = self.refusal() {
            return (Err(refusal), Vec::new());
        }
        let mut after = self.clone();
        after.pending = after.pending.saturating_add(cost);
        let mut changes = Vec::new();
        after.check_start(&mut changes);
        if let Some(refusal) = after.refusal() {
            // The write is not admitted: its cost does not count.
            after.pending = self.pending;
            *self = after;
            return (Err(refusal), changes);
        }
        self.pending = after.pending;
        (Ok(()), changes)
    }
}
