//! The appliance image's layout: the paths inside the initramfs that the
//! image builder writes and init reads, the data disk's label, and the one
//! file format they exchange, the module load order ([`ModulesOrder`]).
//!
//! Both ends of each seam name the constant here, so a path or a label
//! cannot drift between the writer and the reader; the module-order file has
//! one type with a writer ([`ModulesOrder::render`]) and a parser
//! ([`ModulesOrder::parse`]) and a round-trip property test.
//!
//! Deliberately not here: what the spec declares itself (the server binary,
//! its config file, the data directory: `appliance-spec` owns those), the
//! boot disk's layout (the ESP path, the GPT: the builder's), and any I/O.
//! The crate depends on nothing but `thiserror`, so init can use it without
//! pulling in build-side code.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::path::{Path, PathBuf};

/// Where init reads the spec inside the image.
pub const SPEC_PATH: &str = "/etc/appliance.toml";
/// Where init reads the module load order ([`ModulesOrder`]).
pub const MODULES_ORDER_PATH: &str = "/etc/modules.order";
/// The directory the kernel modules go to, by file name (no `<kver>/`:
/// nothing but init's order file looks them up).
pub const MODULES_DIR: &str = "/lib/modules";
/// `/init`: the kernel runs the initramfs's `/init` by default.
pub const INIT_PATH: &str = "/init";
/// Where the stream-guard Valkey module lives (the server config loads it).
pub const STREAM_GUARD_PATH: &str = "/usr/lib/valkey/stream-guard.so";
/// TEST IMAGES ONLY: where the intruder Valkey module lives.
pub const INTRUDER_PATH: &str = "/usr/lib/valkey/intruder.so";
/// Where the shared libraries go: a directory in glibc's built-in search
/// path on Debian, so no `ld.so.cache` is needed.
pub const LIB_DIR: &str = "/lib/x86_64-linux-gnu";
/// Every directory a loader or shared library may live in (the builder uses
/// [`LIB_DIR`] and the loader's own `PT_INTERP` path); the audit holds
/// whatever is there to the pinned C library.
pub const LIB_PREFIXES: [&str; 4] = [
    "/lib/x86_64-linux-gnu/",
    "/lib64/",
    "/usr/lib/x86_64-linux-gnu/",
    "/usr/lib64/",
];
/// Mount points init needs before anything is mounted (the spec's data
/// directory is the other one).
pub const MOUNT_POINTS: [&str; 4] = ["/proc", "/sys", "/dev", "/run"];
/// The console device node (character device 5:1): the kernel opens it for
/// init's stdio before any devtmpfs exists.
pub const CONSOLE: &str = "/dev/console";
/// The data disk's ext4 label: the builder's `mkfs.ext4 -L`, init's search.
pub const DATA_LABEL: &str = "appliance-data";

/// Suffixes `finit_module` accepts: a plain ELF object, or one compressed
/// the way Debian ships them (the kernel decompresses with
/// `MODULE_INIT_COMPRESSED_FILE`).
pub const MODULE_SUFFIXES: [&str; 4] = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// A line of the module order that is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("module order line {line}: {reason}")]
pub struct ModulesOrderError {
    /// 1-based line number (0 for a file name given to
    /// [`ModulesOrder::from_file_names`]).
    pub line: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The module load order (`/etc/modules.order`): absolute module file paths,
/// in load order, one per line.
///
/// The text is the paths, each followed by `\n`, nothing else; the parser
/// also skips blank lines and lines starting with `#`. A path that is
/// relative, has an empty, `.` or `..` component, a character outside
/// `[A-Za-z0-9._+/-]`, no module suffix ([`MODULE_SUFFIXES`]), or appears
/// twice is refused by both the parser and the constructors, so every value
/// of this type renders to text the parser accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModulesOrder {
    paths: Vec<PathBuf>,
}

impl ModulesOrder {
    /// The modules `file_names` under [`MODULES_DIR`], in the order given:
    /// what the builder writes for the modules it places there.
    pub fn from_file_names<S: AsRef<str>>(
        file_names: &[S],
    ) -> Result<ModulesOrder, ModulesOrderError> {
        let mut order = ModulesOrder::default();
        for name in file_names {
            let name = name.as_ref();
            if name.contains('/') {
                return Err(ModulesOrderError {
                    line: 0,
                    reason: "a module file name with a `/`",
                });
            }
            order.push(0, &format!("{MODULES_DIR}/{name}"))?;
        }
        Ok(order)
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<ModulesOrder, ModulesOrderError> {
        let mut order = ModulesOrder::default();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            order.push(index.saturating_add(1), line)?;
        }
        Ok(order)
    }

    fn push(&mut self, line_no: usize, line: &str) -> Result<(), ModulesOrderError> {
        let bad = |reason: &'static str| ModulesOrderError {
            line: line_no,
            reason,
        };
        if !line.starts_with('/') {
            return Err(bad("not an absolute path"));
        }
        if !line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+/-".contains(&b))
        {
            return Err(bad("a character outside [A-Za-z0-9._+/-]"));
        }
        if line
            .split('/')
            .skip(1)
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(bad("an empty, `.` or `..` path component"));
        }
        if !MODULE_SUFFIXES.iter().any(|s| line.ends_with(s)) {
            return Err(bad(
                "not a kernel module file (.ko, .ko.xz, .ko.zst, .ko.gz)",
            ));
        }
        let path = PathBuf::from(line);
        if self.paths.contains(&path) {
            return Err(bad("listed twice"));
        }
        self.paths.push(path);
        Ok(())
    }

    /// The module files, in load order.
    #[must_use]
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The module files, in load order.
    #[must_use]
    pub fn into_paths(self) -> Vec<PathBuf> {
        self.paths
    }

    /// Whether `path` is one of the modules.
    #[must_use]
    pub fn contains(&self, path: &Path) -> bool {
        self.paths.iter().any(|p| p == path)
    }

    /// The file's text: each path and a newline.
    #[must_use]
    pub fn render(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ModulesOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.paths {
            // Every path was checked to be ASCII.
            writeln!(f, "{}", p.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_builders_names_become_paths_under_the_module_dir() {
        let order = ModulesOrder::from_file_names(&["virtio.ko.xz", "virtio_net.ko"]).unwrap();
        assert_eq!(
            order.render(),
            "/lib/modules/virtio.ko.xz\n/lib/modules/virtio_net.ko\n"
        );
        assert_eq!(ModulesOrder::parse(&order.render()), Ok(order));
        for (names, reason) in [
            (&["a/b.ko"][..], "a module file name with a `/`"),
            (
                &["x.so"],
                "not a kernel module file (.ko, .ko.xz, .ko.zst, .ko.gz)",
            ),
            (&["a.ko", "a.ko"], "listed twice"),
            (&[".."], "an empty, `.` or `..` path component"),
        ] {
            assert_eq!(
                ModulesOrder::from_file_names(names),
                Err(ModulesOrderError { line: 0, reason }),
                "{names:?}"
            );
        }
    }

    #[test]
    fn parse_table() {
        let ok = "# written by the image builder\n/lib/modules/6.1.0-1-cloud-amd64/kernel/drivers/virtio/virtio.ko\n\n/lib/modules/x/virtio_ring.ko.xz\r\n";
        assert_eq!(
            ModulesOrder::parse(ok).unwrap().paths(),
            [
                PathBuf::from("/lib/modules/6.1.0-1-cloud-amd64/kernel/drivers/virtio/virtio.ko"),
                PathBuf::from("/lib/modules/x/virtio_ring.ko.xz"),
            ]
        );
        assert_eq!(ModulesOrder::parse("").unwrap().paths(), &[] as &[PathBuf]);
        let bad: &[(&str, usize, &str)] = &[
            ("virtio.ko", 1, "not an absolute path"),
            ("/a.ko\n/b c.ko", 2, "a character outside [A-Za-z0-9._+/-]"),
            (
                "/lib/../etc/x.ko",
                1,
                "an empty, `.` or `..` path component",
            ),
            ("/lib//x.ko", 1, "an empty, `.` or `..` path component"),
            (
                "/lib/x.so",
                1,
                "not a kernel module file (.ko, .ko.xz, .ko.zst, .ko.gz)",
            ),
            ("/a.ko\n/a.ko", 2, "listed twice"),
        ];
        for &(text, line, reason) in bad {
            assert_eq!(
                ModulesOrder::parse(text),
                Err(ModulesOrderError { line, reason }),
                "{text:?}"
            );
        }
    }

    fn module_name() -> impl Strategy<Value = String> {
        (
            "[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,20}",
            0..MODULE_SUFFIXES.len(),
        )
            .prop_map(|(stem, s)| format!("{stem}{}", MODULE_SUFFIXES[s]))
    }

    proptest! {
        /// What the builder writes, init reads back unchanged, and the text
        /// of what init read is what the builder wrote.
        #[test]
        fn round_trip(names in proptest::collection::btree_set(module_name(), 0..12)) {
            let names: Vec<String> = names.into_iter().collect();
            let order = ModulesOrder::from_file_names(&names).unwrap();
            let text = order.render();
            let back = ModulesOrder::parse(&text).unwrap();
            prop_assert_eq!(back.render(), text);
            prop_assert_eq!(back.paths().len(), names.len());
            prop_assert_eq!(back, order);
        }

        /// Any text: an error or a value that renders to text parsing to
        /// the same value.
        #[test]
        fn parse_never_panics_and_renders_back(text in ".{0,300}") {
            if let Ok(order) = ModulesOrder::parse(&text) {
                prop_assert_eq!(ModulesOrder::parse(&order.render()), Ok(order));
            }
        }
    }
}
