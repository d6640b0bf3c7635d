//! `/etc/valkey/valkey.conf`, rendered from the spec at image build (design §7).
//!
//! Pure: spec in, text out. `verify` re-renders and compares byte for byte, so
//! the rendering must stay a function of the spec (and the module choice) only.
//! `maxmemory` is deliberately absent: init sets it at boot from the RAM it
//! finds, on the server's command line.
#![forbid(unsafe_code)]

use appliance_spec::{Forks, Spec};
use std::fmt::Write as _;
use stream_guard::{AppendOnly, GuardConfig};

use image_layout::{INTRUDER_PATH, STREAM_GUARD_PATH};

/// A module the server loads at start (`loadmodule <path> <args>...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleLoad {
    /// Absolute path inside the image.
    pub path: String,
    /// Arguments passed to the module's `OnLoad`.
    pub args: Vec<String>,
}

impl ModuleLoad {
    /// The `stream-guard` module with the spec's append-only users, admin,
    /// data directory, XADD limits and `[guard]` knobs, rendered through the
    /// module's own [`GuardConfig::to_args`], so the arguments are exactly
    /// what the module parses (`from_args(to_args(c)) == c` is tested there).
    pub fn stream_guard(spec: &Spec) -> ModuleLoad {
        let config = guard_config(spec);
        let args = config
            .to_args()
            .iter()
            // Every value comes from a validated spec: names, keys and paths
            // are printable ASCII, so the conversion is lossless.
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        ModuleLoad {
            path: STREAM_GUARD_PATH.into(),
            args,
        }
    }
}

/// The module's configuration for this spec. A struct literal on purpose: a
/// knob added to the module does not build here until the spec says it.
pub fn guard_config(spec: &Spec) -> GuardConfig {
    let l = spec.limits();
    let g = spec.guard();
    let wide = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    GuardConfig {
        users: spec
            .visitors()
            .iter()
            .map(|v| AppendOnly {
                user: v.user().name().as_bytes().to_vec(),
                key: v.stream().as_bytes().to_vec(),
            })
            .collect(),
        admin: spec.admin().name().as_bytes().to_vec(),
        data_dir: spec.server().data_dir().as_bytes().to_vec(),
        max_pairs: wide(l.xadd_max_pairs()),
        max_bytes: wide(l.xadd_max_bytes()),
        disk_reserve: g.disk_reserve_bytes(),
        memory_refuse_percent: g.memory_refuse_percent(),
        auth_failures_per_minute: g.auth_failures_per_minute(),
        auth_sources: wide(g.auth_sources()),
        auth_timeout: g.auth_timeout_seconds(),
        command_timeout: g.command_timeout_seconds(),
        admin_reserved_slots: g.admin_reserved_slots(),
    }
}

/// Quotes a value for Valkey's config tokenizer (`sdssplitargs`): always in
/// double quotes so a `#`, quote or backslash can never end or split it;
/// non-printable bytes as `\xHH`.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for b in value.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    out
}

/// Renders the server configuration.
pub fn render(spec: &Spec, module: Option<&ModuleLoad>) -> String {
    let s = spec.server();
    let l = spec.limits();
    let mut c = String::new();
    let mut line = |text: String| {
        c.push_str(&text);
        c.push('\n');
    };
    line("# Rendered by `cargo xtask image` from /etc/appliance.toml. Do not edit:".into());
    line("# `cargo xtask verify` re-renders this file and compares.".into());
    line(String::new());
    line("# Process: PID 1 after init's exec, in the foreground, logging to the".into());
    line("# console (stdout is /dev/console).".into());
    line("daemonize no".into());
    line("supervised no".into());
    line("logfile \"\"".into());
    line("loglevel notice".into());
    line("always-show-logo no".into());
    // The governor identifies the server by its exe; a stable cmdline still
    // keeps its halt line readable.
    line("set-proc-title no".into());
    line(String::new());
    line("# Network: every address; the firewall admits the port and nothing else.".into());
    line("bind 0.0.0.0".into());
    line(format!("port {}", s.port()));
    // Kept on as a second line of defence: it only bites if the default user
    // ever ends up passwordless, which the ACL file never allows.
    line("protected-mode yes".into());
    line(format!("maxclients {}", l.maxclients()));
    line(format!("timeout {}", l.timeout()));
    line("tcp-keepalive 60".into());
    line(String::new());
    line("# Access: users and hashes come from the ACL file init writes at boot.".into());
    line(format!("aclfile {}", quote(s.acl_file())));
    line("enable-debug-command no".into());
    line("enable-module-command no".into());
    line("enable-protected-configs no".into());
    line(String::new());
    line("# Memory: maxmemory is set on the command line at boot from the RAM found.".into());
    line("maxmemory-policy noeviction".into());
    line(format!("proto-max-bulk-len {}", l.proto_max_bulk_len()));
    line(format!(
        "client-query-buffer-limit {}",
        l.client_query_buffer_limit()
    ));
    line(String::new());
    line("# Durability: every acknowledged write is fsynced to the AOF before the reply.".into());
    match s.forks() {
        Forks::Bounded => {
            line(
                "# No periodic RDB snapshots: they would only add forks; BGSAVE stays available."
                    .into(),
            );
        }
        Forks::Never => {
            line(
                "# The server never forks (server.forks = \"never\"): no RDB snapshots and no"
                    .into(),
            );
            line(
                "# automatic AOF rewrite, so the AOF only grows. BGSAVE and BGREWRITEAOF are"
                    .into(),
            );
            line(
                "# refused by the ACL (SYNC, PSYNC, CONFIG, DEBUG, MODULE were already), and"
                    .into(),
            );
            line("# the governor halts the machine on any new process.".into());
        }
    }
    line(format!("dir {}", quote(s.data_dir())));
    line("appendonly yes".into());
    line("appendfsync always".into());
    line("save \"\"".into());
    if s.forks() == Forks::Never {
        line("auto-aof-rewrite-percentage 0".into());
    }
    if let Some(m) = module {
        line(String::new());
        line("# stream-guard: append-only users may only XADD <key> * field value ...,".into());
        line("# and only while disk and memory have room; AUTH guessing is throttled per".into());
        line("# source; silent, trickling and slot-hogging connections are closed.".into());
        let mut l = format!("loadmodule {}", quote(&m.path));
        for a in &m.args {
            l.push(' ');
            l.push_str(&quote(a));
        }
        line(l);
    }
    c
}

/// TEST IMAGES ONLY: appends the `intruder` module's `loadmodule` line to
/// a rendered configuration. Its own function, not a [`ModuleLoad`] passed
/// to [`render`]: the production rendering cannot reach it by accident.
pub fn add_intruder(conf: &mut String) {
    conf.push_str(
        "\n# TEST IMAGE ONLY: the intruder module (crates/intruder): INTRUDER.STEP <step>\n\
         # performs one attack step from inside the server. Never in a production image.\n",
    );
    conf.push_str(&format!("loadmodule {}\n", quote(INTRUDER_PATH)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_000_without_module() {
        let spec = Spec::reference().unwrap();
        insta::assert_snapshot!(render(&spec, None));
    }

    #[test]
    fn seed_000_with_module() {
        let spec = Spec::reference().unwrap();
        let m = ModuleLoad {
            path: STREAM_GUARD_PATH.into(),
            args: vec![],
        };
        let text = render(&spec, Some(&m));
        assert!(text.ends_with("loadmodule \"/usr/lib/valkey/stream-guard.so\"\n"));
        assert_eq!(text.matches("loadmodule").count(), 1);
    }

    #[test]
    fn the_intruder_comes_last() {
        let spec = Spec::reference().unwrap();
        let mut text = render(&spec, Some(&ModuleLoad::stream_guard(&spec)));
        add_intruder(&mut text);
        let loads: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("loadmodule "))
            .collect();
        assert_eq!(loads.len(), 2);
        assert!(loads[0].contains(STREAM_GUARD_PATH));
        assert_eq!(loads[1], "loadmodule \"/usr/lib/valkey/intruder.so\"");
    }

    #[test]
    fn seed_000_with_the_guard() {
        let spec = Spec::reference().unwrap();
        insta::assert_snapshot!(render(&spec, Some(&ModuleLoad::stream_guard(&spec))));
    }

    /// The reference with `forks = "never"` (strict mode).
    fn strict() -> Spec {
        let text =
            appliance_spec::REFERENCE_TOML.replacen("forks = \"bounded\"", "forks = \"never\"", 1);
        Spec::from_toml_str(&text).unwrap()
    }

    #[test]
    fn strict_with_the_guard() {
        let spec = strict();
        insta::assert_snapshot!(render(&spec, Some(&ModuleLoad::stream_guard(&spec))));
    }

    /// What makes Valkey 9.1.2 fork on its own is off in strict mode, and
    /// only there: RDB save points (`save ""`, in both modes) and the AOF's
    /// growth trigger (`auto-aof-rewrite-percentage 0`). Nothing else forks
    /// by itself: the first AOF base is written in the server's own process
    /// at start, shutdown saves (if at all) in its own process, replication
    /// needs a SYNC/PSYNC (refused by the ACL), cluster slot migration needs
    /// `cluster-enabled` (off), modules cannot be loaded at run time and
    /// ours does not fork, the Lua debugger needs Lua (not built).
    #[test]
    fn strict_mode_turns_off_what_forks_on_its_own() {
        let bounded = render(&Spec::reference().unwrap(), None);
        let strict = render(&strict(), None);
        let settings = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let (b, s) = (settings(&bounded), settings(&strict));
        let added: Vec<&String> = s.iter().filter(|l| !b.contains(l)).collect();
        assert_eq!(added, ["auto-aof-rewrite-percentage 0"]);
        assert!(
            b.iter().all(|l| s.contains(l)),
            "strict mode dropped a setting"
        );
        for text in [&bounded, &strict] {
            assert!(text.contains("\nsave \"\"\n"));
            assert!(!text.contains("cluster-enabled yes"));
            assert!(text.contains("\nenable-module-command no\n"));
            assert!(text.contains("\nenable-debug-command no\n"));
        }
        assert!(!bounded.contains("auto-aof-rewrite-percentage"));
    }

    #[test]
    fn the_guard_reads_back_what_the_spec_says() {
        let spec = Spec::reference().unwrap();
        let m = ModuleLoad::stream_guard(&spec);
        assert_eq!(
            GuardConfig::from_args(&m.args).unwrap(),
            guard_config(&spec)
        );
        let c = guard_config(&spec);
        assert_eq!(c.admin, b"admin");
        assert_eq!(c.data_dir, b"/data");
        assert_eq!(c.disk_reserve, 16 * 1024 * 1024);
        assert_eq!(c.admin_reserved_slots, 32);
    }

    #[test]
    fn quoting_cannot_split_or_comment_out_a_value() {
        let cases = [
            ("/data", "\"/data\""),
            ("/a b", "\"/a b\""),
            ("/a\"b", "\"/a\\\"b\""),
            ("/a\\b", "\"/a\\\\b\""),
            ("/a#b", "\"/a#b\""),
            ("/a\nb", "\"/a\\x0ab\""),
        ];
        for (input, want) in cases {
            assert_eq!(quote(input), want, "{input:?}");
        }
    }
}
