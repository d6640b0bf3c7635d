//! The appliance's one memory ceiling (design §7), computed at boot from
//! `MemTotal` and the spec's limits: how much the server may hold as data
//! (`maxmemory`), how much all client buffers together may hold
//! (`maxmemory-clients`), the per-class output buffer limits, and what is set
//! aside for everything else on the machine, so that the out-of-memory killer
//! never has to run.
//!
//! The invariant, checked by [`MemoryBudget::new`] itself and by a proptest
//! over every `MemTotal` from [`minimum_mem_total`] to 1 TiB:
//!
//! ```text
//! data + fork + clients + server + governor + kernel + margin <= MemTotal
//! ```
//!
//! How each figure bounds real memory:
//! - `data` is `maxmemory` with `noeviction`. Valkey counts its whole heap
//!   (keys, values, client buffers, its own tables) against it, minus the AOF
//!   buffer and replica buffers, and refuses writes above it; so data alone
//!   never exceeds it.
//! - `clients` is `maxmemory-clients`: the server evicts the biggest normal
//!   and pubsub clients (query buffers, output buffers, argv) once they
//!   together exceed it. Client buffers may sit on top of a full `maxmemory`
//!   (reading a query is never refused), hence a figure of their own.
//! - `server` is what Valkey holds outside those two: its private pages at
//!   start, the AOF buffer of one event-loop iteration, and libc malloc's
//!   fragmentation over data and clients (the image builds Valkey with
//!   `MALLOC=libc`).
//! - `fork` is the copy-on-write reserve of an AOF rewrite or `BGSAVE`: in
//!   the worst case the parent writes to every page it shared with the child
//!   while the child runs (an admin rewriting every key; a trim that frees,
//!   and so writes malloc headers into, every old page), so every private
//!   page the parent had at the fork exists twice. That is the whole heap:
//!   data, clients and server overhead, plus the child's own buffers.
//! - `governor` is the governor process; `kernel` is what the kernel holds
//!   that `MemTotal` does not exclude and that it cannot reclaim at once
//!   (the initramfs root, `/run`, socket buffers, slab, page tables);
//!   `margin` is slack for what the figures above do not foresee.
#![forbid(unsafe_code)]

use appliance_spec::Limits;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// The kernel's page size on the appliance's one architecture (x86-64).
const PAGE: u64 = 4 * KIB;

/// Below this `maxmemory` the appliance refuses to boot: 32 MiB hold about
/// 7000 visitor messages of the largest size stream-guard admits at the
/// reference limits (4 KiB), or ten times as many typical short ones. A
/// smaller store fills before an operator notices.
pub const MIN_DATA: u64 = 32 * MIB;

/// Client memory every connected client holds even when idle: Valkey
/// allocates a 16 KiB reply buffer (`PROTO_REPLY_CHUNK_BYTES`) for each client
/// at connect (shrunk later by its cron when unused), plus the client
/// structure and its argv array. Measured with the pinned 9.1.2: 1000 idle
/// clients after one `PING` each report `mem_clients_normal` of 9.3 MB, about
/// 9.3 KB each; 32 KiB leaves room for a fresh client's full reply buffer and
/// a partly read command in its private query buffer. Counted once per
/// `maxclients`.
pub const CLIENT_BASELINE: u64 = 32 * KIB;

/// How many clients at once may hold the largest legitimate buffers (a full
/// normal output buffer and a full query buffer) on top of every client's
/// baseline: the admin reading a page while writing a large value, and one
/// more (a second admin session). Beyond that, the biggest is evicted.
pub const LARGE_CLIENTS: u64 = 2;

/// Entries in the largest reply an admin is expected to read at once (an
/// `XRANGE ... COUNT 1000` page): the normal output limit must hold it.
pub const ADMIN_PAGE_ENTRIES: u64 = 1000;

/// RESP framing of one bulk string, `$<len>\r\n` + `\r\n`: 1 + up to 10
/// digits + 4, rounded up.
pub const RESP_BULK_FRAMING: u64 = 16;

/// RESP framing of one stream entry around its fields: `*2\r\n`, the ID as
/// a bulk string (at most 41 bytes, `<u64>-<u64>`, plus its framing) and the
/// field array's header: 4 + 48 + 5, rounded up.
pub const RESP_ENTRY_FRAMING: u64 = 64;

/// The normal class's soft limit is this fraction of its hard limit ...
pub const NORMAL_SOFT_DIVISOR: u64 = 4;

/// ... held for this many seconds. A visitor's replies are a few dozen bytes
/// (`+PONG`, a stream ID, an error), so only the admin ever nears the soft
/// limit, and 5 s lets it drain a full page over a link of about 1 MB/s
/// (part of it sits in the kernel's socket buffer). A visitor that pipelines
/// error-producing commands without reading (about 10 bytes of reply per
/// byte sent) reaches the hard limit after sending less than a tenth of it,
/// and is cut off at once.
pub const NORMAL_SOFT_SECONDS: u64 = 5;

/// Hard limit of the replica and pubsub classes. No user can become either:
/// `SYNC`/`PSYNC` are `@dangerous` and granted to nobody, and no user has
/// channels or `@pubsub`. The limit only has to be finite (0 would mean
/// unlimited) and small; soft limits are off. Valkey raises a replica's
/// limits to `repl-backlog-size`, which only exists once a replica
/// connects, so nothing is reserved for replicas.
pub const UNUSED_CLASS_HARD: u64 = MIB;

/// Valkey's private memory at start beyond its heap accounting: the
/// binary's and libc's writable data, the stacks of the main and the three
/// `bio` threads as far as they are touched, glibc's per-thread arenas'
/// first pages, the stream-guard module's state. Measured with the pinned
/// 9.1.2 (`MALLOC=libc`): an empty server has a VmRSS of 5.5 MiB, of which
/// 1.2 MiB anonymous (the rest is its binary and libc, which on the
/// appliance are initramfs pages counted under [`ROOTFS`]); 32 MiB is about
/// six times that, for the module and the threads' arenas once in use.
pub const SERVER_BASE: u64 = 32 * MIB;

/// The most Valkey reads from one client in one event-loop iteration when no
/// big argument is pending (`PROTO_IOBUF_LEN`). With `appendfsync always`
/// the AOF buffer holds at most one iteration's writes: every client's read,
/// and one big argument up to `proto-max-bulk-len`.
pub const PROTO_IOBUF_LEN: u64 = 16 * KIB;

/// The AOF buffer is an sds string, grown greedily to at most twice its
/// content; the propagated form of a command (`XADD k *` with its ID filled
/// in) is a few dozen bytes longer than what was read. Twice the input
/// covers both for commands of more than a few hundred bytes, and the AOF
/// buffer of many tiny commands stays far below the bound anyway.
pub const AOF_BUFFER_FACTOR: u64 = 2;

/// libc malloc's fragmentation over the data and client heap, as a fraction
/// `FRAGMENTATION_NUM / FRAGMENTATION_DEN` (one third). glibc's ptmalloc adds
/// an 8-byte header and 16-byte rounding to every chunk (under 1 % on the
/// listpack nodes, 4 KiB by default, that hold a stream), and keeps the
/// holes freed by a trim or a closed client in its heap until reused; Valkey
/// reports a ratio of 1.1 to 1.3 with libc on mixed workloads.
pub const FRAGMENTATION_NUM: u64 = 1;
/// See [`FRAGMENTATION_NUM`].
pub const FRAGMENTATION_DEN: u64 = 3;

/// What the rewrite or `BGSAVE` child allocates itself: its rio buffers and
/// the pages it touches writing (Valkey fsyncs its output every 4 MiB,
/// `REDIS_AUTOSYNC_BYTES`).
pub const CHILD_PRIVATE: u64 = 8 * MIB;

/// The governor: `procwatch/BENCHMARKS.md` measures a peak RSS of about
/// 2.6 MiB while it watches a 64-process table; it is a fork of init, whose
/// pages it owns alone once init has exec'd. Six times the measurement.
pub const GOVERNOR: u64 = 16 * MIB;

/// The initramfs, unpacked into the root filesystem, stays in RAM for the
/// machine's life and cannot be reclaimed: about 12 MiB today (`/init`, the
/// server, its libc, the module, the kernel modules); room for it to grow
/// to 32 MiB before this figure has to change (`cargo xtask image` output,
/// `zstd -dc initramfs.cpio.zst | wc -c`).
pub const ROOTFS: u64 = 32 * MIB;

/// The `/run` tmpfs holds only the ACL file, but its mount option
/// (`size=16m`, [`RUN_TMPFS_SIZE`]) is the bound that can be proven.
pub const RUN_TMPFS: u64 = 16 * MIB;

/// `size=` of the `/run` tmpfs, as written in its mount options.
pub const RUN_TMPFS_SIZE: &str = "16m";

/// TCP buffer memory allowed per client in the kernel's global TCP limit
/// (`net.ipv4.tcp_mem`, which init sets from [`MemoryBudget::tcp_mem`]) ...
pub const TCP_PER_CLIENT: u64 = 32 * KIB;

/// ... plus this much for everything else (the listener, connections
/// refused above `maxclients`, bursts). Above the limit the kernel drops
/// packets instead of allocating (the peers retransmit); the server and the
/// governor are not affected.
pub const TCP_BASE: u64 = 8 * MIB;

/// Sockets the kernel may hold beyond `maxclients`: Valkey's listen backlog
/// (`tcp-backlog`, 511) plus the listener.
pub const LISTEN_BACKLOG: u64 = 512;

/// What each socket costs outside the TCP limit: the kernel guarantees every
/// socket its minimum buffers (`tcp_rmem[0]` + `tcp_wmem[0]`, 4 KiB each)
/// even above `tcp_mem`, and the socket, file and epoll structures take
/// about 3 KiB.
pub const SOCKET_FIXED: u64 = 12 * KIB;

/// The kernel's fixed share: the loaded modules' code and data, kernel
/// stacks of about 100 threads (16 KiB each), the nftables ruleset, slab
/// for `/proc` dentries and inodes that the governor's rescans create, and
/// the page cache that cannot be dropped at once: the dirty AOF pages
/// between two fsyncs (`appendfsync always` leaves almost none for the
/// server; a rewrite child fsyncs every 4 MiB). The data disk's clean page
/// cache is reclaimable and needs no reserve.
pub const KERNEL_FIXED: u64 = 32 * MIB;

/// The kernel's share that grows with RAM, as `MemTotal / KERNEL_DIVISOR`
/// (about 3.1 %): page tables (8 bytes per 4 KiB page, for the server and
/// again for a fork child: 0.4 %), the connection-tracking table and its
/// entries (the kernel sizes `nf_conntrack_max` from RAM: up to about 2 %
/// when full) and the page allocator's reclaim watermarks
/// (`min_free_kbytes` and the low and high marks above it: about 0.5 %).
pub const KERNEL_DIVISOR: u64 = 32;

/// The margin is `MemTotal / MARGIN_DIVISOR` (about 3.1 %) ...
pub const MARGIN_DIVISOR: u64 = 32;

/// ... and at least this much: slack for what the figures above miss (a
/// kernel or Valkey version that needs more, short overshoots while the
/// server reads before it evicts a client).
pub const MARGIN_MIN: u64 = 16 * MIB;

/// The largest `MemTotal` the budget is computed for (1 TiB); more is
/// treated as this much (the arithmetic is proven up to here).
pub const MAX_MEM_TOTAL: u64 = 1 << 40;

/// One `client-output-buffer-limit` class: hard limit, soft limit, seconds.
/// A limit of 0 is "none" to Valkey; the budget never sets a 0 hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimit {
    /// Closed at once above this many bytes.
    pub hard: u64,
    /// Closed when above this many bytes for [`OutputLimit::seconds`] (0: no
    /// soft limit).
    pub soft: u64,
    /// See [`OutputLimit::soft`].
    pub seconds: u64,
}

/// Every figure of the memory budget, bytes. Built by [`MemoryBudget::new`],
/// which checks the invariant (the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryBudget {
    /// `MemTotal` the budget was computed for.
    pub total: u64,
    /// `maxmemory`.
    pub data: u64,
    /// Copy-on-write reserve for an AOF rewrite or `BGSAVE` child.
    pub fork: u64,
    /// `maxmemory-clients`.
    pub clients: u64,
    /// Server overhead: private pages at start, AOF buffer, fragmentation.
    pub server: u64,
    /// The governor process.
    pub governor: u64,
    /// Kernel memory that cannot be reclaimed at once.
    pub kernel: u64,
    /// Slack.
    pub margin: u64,
    /// The normal class's output buffer limits.
    pub output_normal: OutputLimit,
    /// The replica class's.
    pub output_replica: OutputLimit,
    /// The pubsub class's.
    pub output_pubsub: OutputLimit,
    /// The kernel's global TCP buffer limit (the third `tcp_mem` value),
    /// bytes; part of [`MemoryBudget::kernel`].
    pub tcp_max: u64,
}

/// Why no budget could be made: `MemTotal` is below what these limits need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall {
    /// `MemTotal`, bytes.
    pub mem_total: u64,
    /// The least `MemTotal` these limits boot with.
    pub minimum: u64,
}

/// The figures that do not depend on `maxmemory`.
struct Fixed {
    output_normal: OutputLimit,
    clients: u64,
    /// Server overhead without fragmentation.
    server_base: u64,
    governor: u64,
    kernel: u64,
    margin: u64,
    tcp_max: u64,
}

fn round_up(value: u64, unit: u64) -> u64 {
    value.div_ceil(unit).saturating_mul(unit)
}

/// Normal-class limits: the hard limit holds an admin page of the largest
/// visitor entries and any single value the admin may write.
fn output_normal(limits: &Limits) -> OutputLimit {
    let fields = u64::from(limits.xadd_max_pairs()).saturating_mul(2);
    let entry = u64::from(limits.xadd_max_bytes())
        .saturating_add(fields.saturating_mul(RESP_BULK_FRAMING))
        .saturating_add(RESP_ENTRY_FRAMING);
    let page = entry.saturating_mul(ADMIN_PAGE_ENTRIES);
    let value = limits
        .proto_max_bulk_len()
        .saturating_add(RESP_BULK_FRAMING);
    let hard = round_up(page.max(value), MIB);
    OutputLimit {
        hard,
        soft: hard / NORMAL_SOFT_DIVISOR,
        seconds: NORMAL_SOFT_SECONDS,
    }
}

fn fixed(total: u64, limits: &Limits) -> Fixed {
    let maxclients = u64::from(limits.maxclients());
    let output_normal = output_normal(limits);
    let clients = maxclients.saturating_mul(CLIENT_BASELINE).saturating_add(
        LARGE_CLIENTS.saturating_mul(
            output_normal
                .hard
                .saturating_add(limits.client_query_buffer_limit()),
        ),
    );
    let aof = AOF_BUFFER_FACTOR.saturating_mul(
        maxclients
            .saturating_mul(PROTO_IOBUF_LEN)
            .saturating_add(limits.proto_max_bulk_len()),
    );
    let server_base = SERVER_BASE.saturating_add(aof);
    let tcp_max = round_up(
        maxclients
            .saturating_mul(TCP_PER_CLIENT)
            .saturating_add(TCP_BASE),
        PAGE,
    );
    let sockets = maxclients
        .saturating_add(LISTEN_BACKLOG)
        .saturating_mul(SOCKET_FIXED);
    let kernel = [
        ROOTFS,
        RUN_TMPFS,
        tcp_max,
        sockets,
        KERNEL_FIXED,
        total / KERNEL_DIVISOR,
    ]
    .iter()
    .fold(0u64, |sum, x| sum.saturating_add(*x));
    Fixed {
        output_normal,
        clients,
        server_base,
        governor: GOVERNOR,
        kernel,
        margin: (total / MARGIN_DIVISOR).max(MARGIN_MIN),
        tcp_max,
    }
}

/// Fragmentation over `heap` bytes, rounded up.
fn fragmentation(heap: u64) -> u64 {
    u64::try_from(
        (u128::from(heap) * u128::from(FRAGMENTATION_NUM)).div_ceil(u128::from(FRAGMENTATION_DEN)),
    )
    .unwrap_or(u64::MAX)
}

impl MemoryBudget {
    /// The budget for a machine with `mem_total` bytes of `MemTotal` and the
    /// spec's `limits`. `maxmemory` is the largest value for which the
    /// invariant holds; below [`MIN_DATA`] of it, [`TooSmall`] names the
    /// least `MemTotal` these limits need. A `mem_total` above
    /// [`MAX_MEM_TOTAL`] is budgeted as that much.
    pub fn new(mem_total: u64, limits: &Limits) -> Result<MemoryBudget, TooSmall> {
        solve(mem_total.min(MAX_MEM_TOTAL), limits).ok_or_else(|| TooSmall {
            mem_total,
            minimum: minimum_mem_total(limits),
        })
    }

    fn assemble(total: u64, data: u64, f: &Fixed) -> MemoryBudget {
        let server = f
            .server_base
            .saturating_add(fragmentation(data.saturating_add(f.clients)));
        let fork = data
            .saturating_add(f.clients)
            .saturating_add(server)
            .saturating_add(CHILD_PRIVATE);
        let unused = OutputLimit {
            hard: UNUSED_CLASS_HARD,
            soft: 0,
            seconds: 0,
        };
        MemoryBudget {
            total,
            data,
            fork,
            clients: f.clients,
            server,
            governor: f.governor,
            kernel: f.kernel,
            margin: f.margin,
            output_normal: f.output_normal,
            output_replica: unused,
            output_pubsub: unused,
            tcp_max: f.tcp_max,
        }
    }

    /// The sum of every figure, without overflow.
    pub fn sum(&self) -> u128 {
        [
            self.data,
            self.fork,
            self.clients,
            self.server,
            self.governor,
            self.kernel,
            self.margin,
        ]
        .iter()
        .map(|x| u128::from(*x))
        .sum()
    }

    /// By how much the figures exceed `total`, if they do.
    fn excess(&self) -> Option<u64> {
        let over = self.sum().checked_sub(u128::from(self.total))?;
        if over == 0 {
            None
        } else {
            Some(u64::try_from(over).unwrap_or(u64::MAX))
        }
    }

    /// The value of `--client-output-buffer-limit`: all three classes in one
    /// argument (Valkey splits a multi-argument option's single value at
    /// spaces).
    pub fn output_buffer_limits(&self) -> String {
        let class =
            |name: &str, l: &OutputLimit| format!("{name} {} {} {}", l.hard, l.soft, l.seconds);
        [
            class("normal", &self.output_normal),
            class("replica", &self.output_replica),
            class("pubsub", &self.output_pubsub),
        ]
        .join(" ")
    }

    /// The value of `net.ipv4.tcp_mem` (pages): pressure begins at three
    /// quarters of the limit, and below half of it the kernel stops
    /// moderating.
    pub fn tcp_mem(&self) -> String {
        let max = self.tcp_max / PAGE;
        format!("{} {} {}", max / 2, max / 4 * 3, max)
    }

    /// The one console line (after the `appliance:` prefix).
    pub fn console_text(&self) -> String {
        format!(
            "memory budget total={} data={} fork={} clients={} server={} governor={} kernel={} margin={} output-normal={}/{}/{}",
            self.total,
            self.data,
            self.fork,
            self.clients,
            self.server,
            self.governor,
            self.kernel,
            self.margin,
            self.output_normal.hard,
            self.output_normal.soft,
            self.output_normal.seconds
        )
    }
}

/// The least `MemTotal` for which [`MemoryBudget::new`] succeeds with
/// `limits` (the budget grows monotonically with `MemTotal`); `u64::MAX`
/// when even [`MAX_MEM_TOTAL`] is not enough.
pub fn minimum_mem_total(limits: &Limits) -> u64 {
    let fits = |total: u64| solve(total, limits).is_some();
    if !fits(MAX_MEM_TOTAL) {
        return u64::MAX;
    }
    let (mut low, mut high) = (0u64, MAX_MEM_TOTAL);
    // `high` fits, `low` does not.
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if fits(mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    high
}

/// The budget for `total` (at most [`MAX_MEM_TOTAL`]), if one with at
/// least [`MIN_DATA`] of data fits.
fn solve(total: u64, limits: &Limits) -> Option<MemoryBudget> {
    let f = fixed(total, limits);
    // data + fork + clients + server + ... with fork = data + clients +
    // server + CHILD_PRIVATE and server = server_base + frag(data + clients)
    // is 2 * (1 + frag) * data + everything below: solve for data, then
    // recompute every figure exactly and check.
    let rest = [
        f.clients.saturating_mul(2),
        fragmentation(f.clients).saturating_mul(2),
        f.server_base.saturating_mul(2),
        CHILD_PRIVATE,
        f.governor,
        f.kernel,
        f.margin,
        // The fragmentation of data and of clients are rounded up together,
        // not separately.
        2,
    ]
    .iter()
    .fold(0u64, |sum, x| sum.saturating_add(*x));
    let available = total.checked_sub(rest)?;
    let per_data = 2 * (FRAGMENTATION_DEN + FRAGMENTATION_NUM);
    let mut data =
        u64::try_from(u128::from(available) * u128::from(FRAGMENTATION_DEN) / u128::from(per_data))
            .unwrap_or(0);
    // The closed form is exact up to rounding; a few steps down cover it.
    for _ in 0..8 {
        if data < MIN_DATA {
            return None;
        }
        let budget = MemoryBudget::assemble(total, data, &f);
        match budget.excess() {
            None => return Some(budget),
            Some(excess) => data = data.saturating_sub(excess),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use appliance_spec::SpecBuilder;
    use proptest::prelude::*;

    fn reference_limits() -> Limits {
        *appliance_spec::Spec::reference().unwrap().limits()
    }

    /// The limits of the reference spec edited by `edit`, which must stay
    /// valid: a `Limits` exists only in a validated spec.
    fn limits_with(edit: impl FnOnce(SpecBuilder) -> SpecBuilder) -> Limits {
        *edit(SpecBuilder::reference()).build().unwrap().limits()
    }

    /// The figures for the reference limits (maxclients 1000, 1 MiB bulk and
    /// query buffer, XADD at most 16 pairs and 4096 bytes).
    #[test]
    fn reference_figures() {
        type Row = (u64, [u64; 8], u64);
        let rows: &[Row] = &[
            // QEMU -m 1024 reports about 1003 MiB of MemTotal.
            (
                1_027_000_000,
                [
                    201_093_598,
                    405_400_872,
                    45_350_912,
                    150_567_754,
                    16_777_216,
                    175_715_894,
                    32_093_750,
                    1_026_999_996,
                ],
                41_156_608,
            ),
            (
                4 << 30,
                [
                    1_349_988_351,
                    1_937_260_543,
                    45_350_912,
                    533_532_672,
                    16_777_216,
                    277_839_872,
                    134_217_728,
                    4_294_967_294,
                ],
                41_156_608,
            ),
        ];
        for (total, want, tcp_max) in rows {
            let b = MemoryBudget::new(*total, &reference_limits()).unwrap();
            let got = [
                b.data,
                b.fork,
                b.clients,
                b.server,
                b.governor,
                b.kernel,
                b.margin,
                u64::try_from(b.sum()).unwrap(),
            ];
            assert_eq!(&got, want, "MemTotal {total}");
            assert_eq!(b.tcp_max, *tcp_max);
        }
        let b = MemoryBudget::new(1_027_000_000, &reference_limits()).unwrap();
        assert_eq!(
            b.output_normal,
            OutputLimit {
                hard: 5 * MIB,
                soft: 5 * MIB / 4,
                seconds: 5
            }
        );
        assert_eq!(
            b.output_buffer_limits(),
            "normal 5242880 1310720 5 replica 1048576 0 0 pubsub 1048576 0 0"
        );
        assert_eq!(b.tcp_mem(), "5024 7536 10048");
        assert_eq!(
            b.console_text(),
            "memory budget total=1027000000 data=201093598 fork=405400872 clients=45350912 \
             server=150567754 governor=16777216 kernel=175715894 margin=32093750 \
             output-normal=5242880/1310720/5"
        );
    }

    #[test]
    fn minimum_is_exact_and_named() {
        let limits = reference_limits();
        let minimum = minimum_mem_total(&limits);
        assert_eq!(minimum, 550_444_148);
        let at = MemoryBudget::new(minimum, &limits).unwrap();
        assert!(at.data >= MIN_DATA);
        assert_eq!(
            MemoryBudget::new(minimum - 1, &limits),
            Err(TooSmall {
                mem_total: minimum - 1,
                minimum
            })
        );
        assert!(MemoryBudget::new(0, &limits).is_err());
        // More clients need more memory.
        let more = limits_with(|b| b.set("limits.maxclients", 10_000));
        assert!(minimum_mem_total(&more) > minimum);
        // Limits that fit nowhere: the spec bounds maxclients (by the
        // firewall's meter) but not the largest value.
        let absurd = limits_with(|b| {
            b.set("limits.proto_max_bulk_len", i64::MAX)
                .set("limits.client_query_buffer_limit", i64::MAX)
        });
        assert_eq!(minimum_mem_total(&absurd), u64::MAX);
        assert!(MemoryBudget::new(u64::MAX, &absurd).is_err());
    }

    #[test]
    fn normal_limit_follows_the_largest_legitimate_reply() {
        let limits = reference_limits();
        // 1000 entries of 4096 bytes in 16 pairs: 4_640_000 bytes, so 5 MiB.
        assert_eq!(output_normal(&limits).hard, 5 * MIB);
        // A larger value than any page: the value must fit.
        let big = limits_with(|b| {
            b.set("limits.proto_max_bulk_len", 16 << 20)
                .set("limits.client_query_buffer_limit", 16 << 20)
        });
        assert_eq!(output_normal(&big).hard, 17 * MIB);
        let small = limits_with(|b| {
            b.set("limits.xadd_max_bytes", 100)
                .set("limits.xadd_max_pairs", 1)
        });
        assert_eq!(output_normal(&small).hard, 2 * MIB);
    }

    /// Any limits a spec may hold in these ranges. With the firewall's
    /// per-source cap and the admin's reserved slots at their least (1), a
    /// spec accepts any `maxclients` from 2.
    fn limits_strategy() -> impl Strategy<Value = Limits> {
        (
            2u32..=20_000,
            0u64..=63,
            0u64..=63,
            1u32..=64,
            2u32..=65_536,
        )
            .prop_map(|(maxclients, bulk_extra, query_extra, pairs, xadd_bytes)| {
                let proto_max_bulk_len = MIB + bulk_extra * MIB;
                let query = proto_max_bulk_len + query_extra * MIB;
                let int = |v: u64| i64::try_from(v).unwrap();
                limits_with(|b| {
                    b.set("firewall.conn_max_per_source", 1)
                        .set("guard.admin_reserved_slots", 1)
                        .set("limits.maxclients", maxclients)
                        .set("limits.proto_max_bulk_len", int(proto_max_bulk_len))
                        .set("limits.client_query_buffer_limit", int(query))
                        .set("limits.xadd_max_pairs", pairs)
                        .set("limits.xadd_max_bytes", xadd_bytes)
                })
            })
    }

    fn check_invariant(total: u64, b: &MemoryBudget, limits: &Limits) -> Result<(), TestCaseError> {
        prop_assert!(b.sum() <= u128::from(total.min(MAX_MEM_TOTAL)), "{b:?}");
        prop_assert!(b.data >= MIN_DATA);
        prop_assert!(
            b.fork >= b.data + b.clients + b.server,
            "fork reserve below the heap"
        );
        prop_assert!(b.clients >= u64::from(limits.maxclients()) * CLIENT_BASELINE);
        // Valkey's own floor for maxmemory-clients.
        prop_assert!(b.clients >= 128 * KIB);
        prop_assert!(b.output_normal.hard > limits.proto_max_bulk_len());
        prop_assert!(b.output_normal.soft > 0 && b.output_normal.soft < b.output_normal.hard);
        prop_assert!(b.output_replica.hard > 0 && b.output_pubsub.hard > 0);
        prop_assert!(b.kernel >= b.tcp_max);
        Ok(())
    }

    proptest! {
        #[test]
        fn invariant_holds_from_the_minimum_to_one_tib(extra in 0u64..=MAX_MEM_TOTAL) {
            let limits = reference_limits();
            let minimum = minimum_mem_total(&limits);
            let total = minimum + extra % (MAX_MEM_TOTAL - minimum + 1);
            let b = MemoryBudget::new(total, &limits).unwrap();
            check_invariant(total, &b, &limits)?;
            // Close to the minimum too, where rounding bites.
            let near = minimum + extra % 4096;
            let b = MemoryBudget::new(near, &limits).unwrap();
            check_invariant(near, &b, &limits)?;
        }

        #[test]
        fn invariant_holds_for_any_limits(limits in limits_strategy(), extra in 0u64..=MAX_MEM_TOTAL) {
            let minimum = minimum_mem_total(&limits);
            prop_assume!(minimum <= MAX_MEM_TOTAL);
            let total = minimum + extra % (MAX_MEM_TOTAL - minimum + 1);
            let b = MemoryBudget::new(total, &limits).unwrap();
            check_invariant(total, &b, &limits)?;
            prop_assert!(MemoryBudget::new(minimum - 1, &limits).is_err());
        }

        #[test]
        fn more_memory_never_means_less_data(a in 0u64..=MAX_MEM_TOTAL, b in 0u64..=MAX_MEM_TOTAL) {
            let limits = reference_limits();
            let (low, high) = (a.min(b), a.max(b));
            if let Ok(low) = MemoryBudget::new(low, &limits) {
                let high = MemoryBudget::new(high, &limits).unwrap();
                prop_assert!(high.data >= low.data);
            }
        }

        #[test]
        fn beyond_one_tib_is_budgeted_as_one_tib(extra in 0u64..=u64::MAX - MAX_MEM_TOTAL) {
            let limits = reference_limits();
            let b = MemoryBudget::new(MAX_MEM_TOTAL + extra, &limits).unwrap();
            prop_assert_eq!(b, MemoryBudget::new(MAX_MEM_TOTAL, &limits).unwrap());
        }
    }
}
