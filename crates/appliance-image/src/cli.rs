//! The command line of `appliance-image build|verify|gce|pins`, which
//! `cargo xtask image|verify|gce|pins` also answer to (same parser, same
//! exit statuses, `image` for `build`).
//!
//! Parsing ([`parse`], [`parse_command`]) is pure: arguments in, a
//! [`Command`] or a [`UsageError`] out, so it is tested as a table.
//! [`run`] does the work. Exit statuses ([`exit_status`]): 0 done,
//! 1 ([`EXIT_FAILED`]) an audit `[FAIL]` or a failed build, 2
//! ([`EXIT_USAGE`]) a usage error, 3 ([`EXIT_MISSING_TOOL`]) a host program
//! that is not installed. `--help` and `-h` print the usage on stdout; a
//! usage error prints the message and the usage on stderr.
//!
//! Paths default to a checkout ([`Defaults::checkout`]): `image/appliance.toml`,
//! `image/sources.toml`, `target/appliance-cache` and `target/appliance` under
//! it. The `appliance-image` binary's checkout is the one it was built from
//! (also after `cargo install --path crates/appliance-image`), if it still
//! exists; `--workspace DIR` names another. Relative paths are taken from
//! the current directory.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use lexopt::prelude::*;

use crate::build::{
    default_out, Binaries, BuildConfig, OwnBinaries, WORKSPACE_SOURCES, WORKSPACE_SPEC,
};
use crate::error::{Error, Result};
use crate::fetch::DEFAULT_CACHE;
use crate::gce::{self, GceArgs};
use crate::manifest::Profile;
use crate::verify::VerifyOptions;

/// Exit status: the command did what it was asked.
pub const EXIT_OK: u8 = 0;
/// Exit status: an audit `[FAIL]`, or a build (fetch, compile, assembly)
/// that failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the arguments make no sense; nothing was done.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: a host program the command needs is not installed.
pub const EXIT_MISSING_TOOL: u8 = 3;

/// Which program is parsing: `appliance-image` or `cargo xtask`, which call
/// the build command `build` and `image`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// How the user typed the program (`appliance-image`, `cargo xtask`).
    pub name: &'static str,
    /// The build command's name.
    pub build: &'static str,
}

/// The `appliance-image` binary.
pub const APPLIANCE_IMAGE: Program = Program {
    name: "appliance-image",
    build: "build",
};
/// `cargo xtask`.
pub const XTASK: Program = Program {
    name: "cargo xtask",
    build: "image",
};

/// Where paths default to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// A checkout of this repository: its spec, pins, cache and output
    /// directory are the defaults, and our binaries are built there. `None`
    /// makes `--spec`, `--sources`, `--cache`, `--out` and either
    /// `--workspace` or the prebuilt binaries required.
    pub checkout: Option<PathBuf>,
}

impl Defaults {
    /// The checkout this crate was compiled from, if it is still there
    /// (after `cargo install --path`, the source tree it was installed from).
    #[must_use]
    pub fn built_from() -> Defaults {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2);
        Defaults {
            checkout: root
                .filter(|r| r.join(WORKSPACE_SPEC).is_file())
                .map(Path::to_path_buf),
        }
    }
}

/// `build` (`cargo xtask image`): what to build, before SOURCE_DATE_EPOCH is
/// known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildArgs {
    /// `--spec`.
    pub spec: PathBuf,
    /// `--sources`.
    pub sources: PathBuf,
    /// `--out`.
    pub out: PathBuf,
    /// `--cache`.
    pub cache: PathBuf,
    /// `--test` or `--profile`.
    pub profile: Profile,
    /// `--workspace`, or `--init`/`--stream-guard`/`--intruder`.
    pub binaries: BinariesArg,
    /// `--no-sandbox`.
    pub no_sandbox: bool,
}

/// Where `/init` and the modules come from, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinariesArg {
    /// Built in this workspace.
    Workspace(PathBuf),
    /// Prebuilt files.
    Prebuilt {
        /// `--init`.
        init: PathBuf,
        /// `--stream-guard`.
        stream_guard: PathBuf,
        /// `--intruder` (test images only).
        intruder: Option<PathBuf>,
    },
}

/// `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyArgs {
    /// The image directory.
    pub dir: PathBuf,
    /// The spec the image must carry.
    pub spec: PathBuf,
    /// The input cache holding the pinned packages, for the package checks.
    pub cache: Option<PathBuf>,
}

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `--help`: print this on stdout.
    Help(String),
    /// Build an image.
    Build(BuildArgs),
    /// Audit an image.
    Verify(VerifyArgs),
    /// Print the deployment commands (`--dry-run`, the only mode).
    Gce(GceArgs),
    /// Re-pin `sources` to what apt offers now.
    PinsUpdate {
        /// The pins file to rewrite.
        sources: PathBuf,
    },
}

/// Arguments that make no sense; nothing was done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UsageError {
    /// What is wrong.
    pub message: String,
    /// The usage of the command concerned.
    pub usage: String,
}

/// The commands' usage texts, for `program`.
#[must_use]
pub fn usage(program: Program, command: Option<&str>) -> String {
    let text = match command {
        Some("build" | "image") => BUILD_USAGE,
        Some("verify") => VERIFY_USAGE,
        Some("gce") => GCE_USAGE,
        Some("pins") => PINS_USAGE,
        _ => MAIN_USAGE,
    };
    text.replace("{prog}", program.name)
        .replace("{build}", program.build)
}

const MAIN_USAGE: &str = "\
usage: {prog} <command> [options]

  {build}      build an image from a spec and pinned inputs
  verify     audit a built image offline, one [OK]/[FAIL] line per property
  gce        print the gcloud commands that deploy a built image
  pins       re-pin the inputs to what the host's apt offers now

`{prog} <command> --help` describes each command.
exit status: 0 done, 1 an audit [FAIL] or a failed build, 2 a usage error,
3 a missing host tool
";

const BUILD_USAGE: &str = "\
usage: {prog} {build} [--test | --profile production|test] [--spec FILE]
           [--sources FILE] [--out DIR] [--cache DIR] [--workspace DIR]
           [--init FILE --stream-guard FILE [--intruder FILE]] [--no-sandbox]

  --test, --profile P   test image (test hooks, the intruder module) or
                        production (default)
  --spec FILE           the appliance spec (default <checkout>/image/appliance.toml)
  --sources FILE        the pinned inputs (default <checkout>/image/sources.toml)
  --out DIR             output directory, replaced (default
                        <checkout>/target/appliance, or appliance-test)
  --cache DIR           input cache (default <checkout>/target/appliance-cache)
  --workspace DIR       source tree /init and the Valkey modules are built in
                        (default: the checkout)
  --init FILE, --stream-guard FILE, --intruder FILE
                        prebuilt binaries instead of a build in a workspace
  --no-sandbox          build Valkey without namespaces (only without root)

The checkout is the one this program was built from. SOURCE_DATE_EPOCH
(default: the checkout's HEAD commit time) stamps every output.
";

const VERIFY_USAGE: &str = "\
usage: {prog} verify [DIR] [--spec FILE] [--cache DIR]

  DIR           the image (default <checkout>/target/appliance)
  --spec FILE   the spec the image must carry (default <checkout>/image/appliance.toml)
  --cache DIR   input cache with the pinned packages, to compare the kernel,
                modules and libraries with (default <checkout>/target/appliance-cache;
                without a checkout, those checks are skipped)

exit status: 0 every check [OK], 1 a [FAIL]
";

const GCE_USAGE: &str = "\
usage: {prog} gce --project P --zone Z [--bucket B] [--name N]
           [--machine-type T] [--data-size GB] [--image-dir DIR] [--spec FILE]
           --dry-run

Prints the gcloud commands that deploy the image; never runs gcloud.
  --bucket B       default <project>-appliance-images
  --name N         instance name (default: the spec's name)
  --data-size GB   data disk size (default 10, at least 2)
  --image-dir DIR  default <checkout>/target/appliance
";

const PINS_USAGE: &str = "\
usage: {prog} pins --update [--sources FILE]

Rewrites the pins (default <checkout>/image/sources.toml) with what the host's
apt offers now and prints the diff.
";

/// Parses a whole `appliance-image` command line (without the program name).
pub fn parse(
    program: Program,
    args: impl IntoIterator<Item = OsString>,
    defaults: &Defaults,
) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let usage_error = |message: String| UsageError {
        message,
        usage: usage(program, None),
    };
    let Some(first) = args.next() else {
        return Err(usage_error("no command given".into()));
    };
    match first.to_str() {
        Some("-h" | "--help" | "help") => Ok(Command::Help(usage(program, None))),
        Some(name @ ("verify" | "gce" | "pins")) => parse_command(program, name, args, defaults),
        Some(name) if name == program.build => parse_command(program, name, args, defaults),
        _ => Err(usage_error(format!(
            "unknown command `{}`",
            first.to_string_lossy()
        ))),
    }
}

/// Parses the arguments after the command `name` (`build` or `image`,
/// `verify`, `gce`, `pins`).
pub fn parse_command(
    program: Program,
    name: &str,
    args: impl IntoIterator<Item = OsString>,
    defaults: &Defaults,
) -> Result<Command, UsageError> {
    let mut parser = lexopt::Parser::from_args(args);
    let parsed = match name {
        "verify" => parse_verify(&mut parser, defaults),
        "gce" => parse_gce(&mut parser, defaults),
        "pins" => parse_pins(&mut parser, defaults),
        _ => parse_build(&mut parser, defaults),
    };
    let usage = usage(program, Some(name));
    match parsed {
        Ok(Some(command)) => Ok(command),
        Ok(None) => Ok(Command::Help(usage)),
        Err(err) => Err(UsageError {
            message: err.to_string(),
            usage,
        }),
    }
}

/// A parse that stopped at `--help` (`None`) or finished.
type Parsed = std::result::Result<Option<Command>, lexopt::Error>;

fn path(value: OsString) -> PathBuf {
    let p = PathBuf::from(value);
    std::path::absolute(&p).unwrap_or(p)
}

/// `given`, or `relative` under the checkout, or an error naming `option`.
fn or_checkout(
    given: Option<PathBuf>,
    defaults: &Defaults,
    relative: &str,
    option: &str,
) -> std::result::Result<PathBuf, lexopt::Error> {
    given
        .or_else(|| defaults.checkout.as_ref().map(|c| c.join(relative)))
        .ok_or_else(|| format!("{option} is required: no checkout to take a default from").into())
}

fn parse_build(p: &mut lexopt::Parser, defaults: &Defaults) -> Parsed {
    let mut profile = Profile::Production;
    let (mut spec, mut sources, mut out, mut cache, mut workspace) = (None, None, None, None, None);
    let (mut init, mut stream_guard, mut intruder) = (None, None, None);
    let mut no_sandbox = false;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("test") => profile = Profile::Test,
            Long("profile") => {
                profile = match p.value()?.string()?.as_str() {
                    "production" => Profile::Production,
                    "test" => Profile::Test,
                    other => {
                        return Err(format!(
                            "--profile takes `production` or `test`, not `{other}`"
                        )
                        .into())
                    }
                }
            }
            Long("spec") => spec = Some(path(p.value()?)),
            Long("sources") => sources = Some(path(p.value()?)),
            Long("out") => out = Some(path(p.value()?)),
            Long("cache") => cache = Some(path(p.value()?)),
            Long("workspace") => workspace = Some(path(p.value()?)),
            Long("init") => init = Some(path(p.value()?)),
            Long("stream-guard") => stream_guard = Some(path(p.value()?)),
            Long("intruder") => intruder = Some(path(p.value()?)),
            Long("no-sandbox") => no_sandbox = true,
            _ => return Err(arg.unexpected()),
        }
    }
    if intruder.is_some() && profile != Profile::Test {
        return Err("--intruder goes into a test image only (--test)".into());
    }
    let binaries = match (init, stream_guard, workspace) {
        (Some(init), Some(stream_guard), None) => BinariesArg::Prebuilt {
            init,
            stream_guard,
            intruder,
        },
        (None, None, workspace) if intruder.is_none() => BinariesArg::Workspace(or_checkout(
            workspace,
            defaults,
            "",
            "--workspace (or --init and --stream-guard)",
        )?),
        (_, _, Some(_)) => {
            return Err("--workspace builds /init and the modules; do not also give them".into())
        }
        _ => return Err("prebuilt binaries need both --init and --stream-guard".into()),
    };
    let out = match (out, &defaults.checkout) {
        (Some(out), _) => out,
        (None, Some(checkout)) => default_out(checkout, profile),
        (None, None) => return Err("--out is required: no checkout to take a default from".into()),
    };
    Ok(Some(Command::Build(BuildArgs {
        spec: or_checkout(spec, defaults, WORKSPACE_SPEC, "--spec")?,
        sources: or_checkout(sources, defaults, WORKSPACE_SOURCES, "--sources")?,
        out,
        cache: or_checkout(cache, defaults, DEFAULT_CACHE, "--cache")?,
        profile,
        binaries,
        no_sandbox,
    })))
}

fn parse_verify(p: &mut lexopt::Parser, defaults: &Defaults) -> Parsed {
    let (mut dir, mut spec, mut cache) = (None, None, None);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("spec") => spec = Some(path(p.value()?)),
            Long("cache") => cache = Some(path(p.value()?)),
            Value(v) if dir.is_none() => dir = Some(path(v)),
            _ => return Err(arg.unexpected()),
        }
    }
    let dir = match (dir, &defaults.checkout) {
        (Some(dir), _) => dir,
        (None, Some(checkout)) => default_out(checkout, Profile::Production),
        (None, None) => return Err("DIR is required: no checkout to take a default from".into()),
    };
    Ok(Some(Command::Verify(VerifyArgs {
        dir,
        spec: or_checkout(spec, defaults, WORKSPACE_SPEC, "--spec")?,
        cache: cache.or_else(|| defaults.checkout.as_ref().map(|c| c.join(DEFAULT_CACHE))),
    })))
}

fn parse_gce(p: &mut lexopt::Parser, defaults: &Defaults) -> Parsed {
    let mut a = GceArgs::example(Path::new(""), PathBuf::new(), None);
    let (mut spec, mut image_dir, mut name) = (None, None, None);
    let mut dry_run = false;
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("project") => a.project = p.value()?.string()?,
            Long("zone") => a.zone = p.value()?.string()?,
            Long("bucket") => a.bucket = p.value()?.string()?,
            Long("name") => name = Some(p.value()?.string()?),
            Long("machine-type") => a.machine_type = p.value()?.string()?,
            Long("data-size") => {
                let v = p.value()?.string()?;
                a.data_disk_gb = v
                    .strip_suffix("GB")
                    .unwrap_or(&v)
                    .parse()
                    .ok()
                    .filter(|gb| *gb >= gce::MIN_DATA_DISK_GB)
                    .ok_or_else(|| {
                        format!(
                            "--data-size {v:?}: a whole number of GB, at least {}",
                            gce::MIN_DATA_DISK_GB
                        )
                    })?;
            }
            Long("image-dir") => image_dir = Some(path(p.value()?)),
            Long("spec") => spec = Some(path(p.value()?)),
            Long("dry-run") => dry_run = true,
            _ => return Err(arg.unexpected()),
        }
    }
    if a.project.is_empty() || a.zone.is_empty() {
        return Err("--project and --zone are required".into());
    }
    if !dry_run {
        return Err(
            "only --dry-run exists: this tool prints the commands and never runs gcloud".into(),
        );
    }
    let spec = or_checkout(spec, defaults, WORKSPACE_SPEC, "--spec")?;
    let image_dir = match (image_dir, &defaults.checkout) {
        (Some(dir), _) => dir,
        (None, Some(checkout)) => default_out(checkout, Profile::Production),
        (None, None) => return Err("--image-dir is required: no checkout".into()),
    };
    let base = GceArgs::example(&spec, image_dir, defaults.checkout.as_deref());
    if a.bucket.is_empty() {
        a.bucket = format!("{}-appliance-images", a.project);
    }
    Ok(Some(Command::Gce(GceArgs {
        name: name.unwrap_or(base.name),
        version: base.version,
        image_dir: base.image_dir,
        ..a
    })))
}

fn parse_pins(p: &mut lexopt::Parser, defaults: &Defaults) -> Parsed {
    let (mut update, mut sources) = (false, None);
    while let Some(arg) = p.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("update") => update = true,
            Long("sources") => sources = Some(path(p.value()?)),
            _ => return Err(arg.unexpected()),
        }
    }
    if !update {
        return Err("--update is the only action".into());
    }
    Ok(Some(Command::PinsUpdate {
        sources: or_checkout(sources, defaults, WORKSPACE_SOURCES, "--sources")?,
    }))
}

/// What a command that ran came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done,
    /// The audit printed a `[FAIL]`.
    AuditFailed,
}

/// Runs a parsed command, its report and output on `out`.
pub fn run(command: Command, defaults: &Defaults, out: &mut dyn Write) -> Result<Outcome> {
    match command {
        Command::Help(text) => write!(out, "{text}")?,
        Command::Build(a) => {
            let (binaries, checkout) = match a.binaries {
                BinariesArg::Workspace(root) => (Binaries::Workspace(root.clone()), Some(root)),
                BinariesArg::Prebuilt {
                    init,
                    stream_guard,
                    intruder,
                } => (
                    Binaries::Prebuilt(OwnBinaries {
                        init,
                        stream_guard,
                        intruder,
                    }),
                    defaults.checkout.clone(),
                ),
            };
            crate::build(&BuildConfig {
                spec: a.spec,
                sources: a.sources,
                out: a.out,
                cache: a.cache,
                profile: a.profile,
                binaries,
                source_date_epoch: crate::source_date_epoch(checkout.as_deref())?,
                no_sandbox: a.no_sandbox,
            })?;
        }
        Command::Verify(a) => {
            let spec = std::fs::read_to_string(&a.spec)
                .map_err(|e| Error::from(e).context(format!("cannot read {}", a.spec.display())))?;
            let opts = VerifyOptions {
                input_cache: a.cache,
                ..VerifyOptions::default()
            };
            if !crate::verify_with(&a.dir, &spec, &opts, out)? {
                writeln!(
                    out,
                    "verify: {} fails the audit (see the [FAIL] lines)",
                    a.dir.display()
                )?;
                return Ok(Outcome::AuditFailed);
            }
        }
        Command::Gce(a) => {
            for line in gce::commands(&a) {
                writeln!(out, "{line}")?;
            }
        }
        Command::PinsUpdate { sources } => {
            let diff = crate::fetch::update_pins_file(&sources)?;
            if diff.is_empty() {
                writeln!(out, "{}: pins are current", sources.display())?;
            } else {
                write!(out, "{diff}")?;
            }
        }
    }
    Ok(Outcome::Done)
}

/// The exit status of a command's result.
#[must_use]
pub fn exit_status(result: &Result<Outcome>) -> u8 {
    match result {
        Ok(Outcome::Done) => EXIT_OK,
        Ok(Outcome::AuditFailed) => EXIT_FAILED,
        Err(e) if e.missing_tools().is_some() => EXIT_MISSING_TOOL,
        Err(_) => EXIT_FAILED,
    }
}

/// Parses and runs one command line the way a binary does: help and
/// reports on stdout; errors, and usage errors with the usage, on stderr.
/// Returns the exit status.
pub fn main(program: Program, parsed: Result<Command, UsageError>, defaults: &Defaults) -> u8 {
    let command = match parsed {
        Ok(command) => command,
        Err(e) => {
            eprintln!("{}: {}\n\n{}", program.name, e.message, e.usage);
            return EXIT_USAGE;
        }
    };
    let mut stdout = std::io::stdout();
    let result = run(command, defaults, &mut stdout);
    if let Err(e) = &result {
        eprintln!("{}: {e}", program.name);
    }
    exit_status(&result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout() -> Defaults {
        Defaults {
            checkout: Some(PathBuf::from("/ck")),
        }
    }

    fn parse_line(line: &str, defaults: &Defaults) -> Result<Command, String> {
        parse(
            APPLIANCE_IMAGE,
            line.split_whitespace().map(OsString::from),
            defaults,
        )
        .map_err(|e| e.message)
    }

    fn build(f: impl FnOnce(&mut BuildArgs)) -> Result<Command, String> {
        let mut a = BuildArgs {
            spec: "/ck/image/appliance.toml".into(),
            sources: "/ck/image/sources.toml".into(),
            out: "/ck/target/appliance".into(),
            cache: "/ck/target/appliance-cache".into(),
            profile: Profile::Production,
            binaries: BinariesArg::Workspace("/ck".into()),
            no_sandbox: false,
        };
        f(&mut a);
        Ok(Command::Build(a))
    }

    #[test]
    fn build_arguments() {
        let table: Vec<(&str, Result<Command, String>)> = vec![
            ("build", build(|_| {})),
            (
                "build --test",
                build(|a| {
                    a.profile = Profile::Test;
                    a.out = "/ck/target/appliance-test".into();
                }),
            ),
            (
                "build --profile test --out /o",
                build(|a| {
                    a.profile = Profile::Test;
                    a.out = "/o".into();
                }),
            ),
            (
                "build --spec=/s.toml --sources /p.toml --cache /c --no-sandbox",
                build(|a| {
                    a.spec = "/s.toml".into();
                    a.sources = "/p.toml".into();
                    a.cache = "/c".into();
                    a.no_sandbox = true;
                }),
            ),
            (
                "build --workspace /w",
                build(|a| a.binaries = BinariesArg::Workspace("/w".into())),
            ),
            (
                "build --test --init /i --stream-guard /g --intruder /x",
                build(|a| {
                    a.profile = Profile::Test;
                    a.out = "/ck/target/appliance-test".into();
                    a.binaries = BinariesArg::Prebuilt {
                        init: "/i".into(),
                        stream_guard: "/g".into(),
                        intruder: Some("/x".into()),
                    };
                }),
            ),
            (
                "build -h",
                Ok(Command::Help(usage(APPLIANCE_IMAGE, Some("build")))),
            ),
            (
                "build --out /o --help",
                Ok(Command::Help(usage(APPLIANCE_IMAGE, Some("build")))),
            ),
            (
                "build --profile debug",
                Err("--profile takes `production` or `test`, not `debug`".into()),
            ),
            (
                "build --out",
                Err("missing argument for option '--out'".into()),
            ),
            ("build --bogus", Err("invalid option '--bogus'".into())),
            ("build extra", Err("unexpected argument \"extra\"".into())),
            (
                "build --init /i",
                Err("prebuilt binaries need both --init and --stream-guard".into()),
            ),
            (
                "build --intruder /x",
                Err("--intruder goes into a test image only (--test)".into()),
            ),
            (
                "build --workspace /w --init /i --stream-guard /g",
                Err("--workspace builds /init and the modules; do not also give them".into()),
            ),
            ("image", Err("unknown command `image`".into())),
            ("", Err("no command given".into())),
            ("-h", Ok(Command::Help(usage(APPLIANCE_IMAGE, None)))),
        ];
        for (line, want) in table {
            assert_eq!(parse_line(line, &checkout()), want, "{line:?}");
        }
    }

    #[test]
    fn without_a_checkout_the_paths_are_required() {
        let none = Defaults { checkout: None };
        let table: Vec<(&str, Result<&str, &str>)> = vec![
            ("build --spec /s --sources /p --cache /c --workspace /w", Err("--out is required: no checkout to take a default from")),
            ("build --spec /s --sources /p --out /o --init /i --stream-guard /g", Err("--cache is required: no checkout to take a default from")),
            ("build --sources /p --out /o --cache /c --workspace /w", Err("--spec is required: no checkout to take a default from")),
            ("build --spec /s --sources /p --out /o --cache /c", Err("--workspace (or --init and --stream-guard) is required: no checkout to take a default from")),
            ("build --spec /s --sources /p --out /o --cache /c --init /i --stream-guard /g", Ok("build")),
            ("verify /img --spec /s", Ok("verify")),
            ("verify /img", Err("--spec is required: no checkout to take a default from")),
            ("verify --spec /s", Err("DIR is required: no checkout to take a default from")),
        ];
        for (line, want) in table {
            let got = parse_line(line, &none).map(|c| match c {
                Command::Build(_) => "build",
                Command::Verify(VerifyArgs { cache: None, .. }) => "verify",
                _ => "other",
            });
            assert_eq!(got, want.map_err(str::to_owned), "{line:?}");
        }
    }

    #[test]
    fn verify_pins_and_gce_arguments() {
        let verify = |dir: &str, spec: &str, cache: &str| {
            Ok(Command::Verify(VerifyArgs {
                dir: dir.into(),
                spec: spec.into(),
                cache: Some(cache.into()),
            }))
        };
        let table: Vec<(&str, Result<Command, String>)> = vec![
            (
                "verify",
                verify(
                    "/ck/target/appliance",
                    "/ck/image/appliance.toml",
                    "/ck/target/appliance-cache",
                ),
            ),
            (
                "verify /img --spec /s --cache /c",
                verify("/img", "/s", "/c"),
            ),
            (
                "verify --help",
                Ok(Command::Help(usage(APPLIANCE_IMAGE, Some("verify")))),
            ),
            ("verify /a /b", Err("unexpected argument \"/b\"".into())),
            (
                "pins --update",
                Ok(Command::PinsUpdate {
                    sources: "/ck/image/sources.toml".into(),
                }),
            ),
            (
                "pins --update --sources /p",
                Ok(Command::PinsUpdate {
                    sources: "/p".into(),
                }),
            ),
            ("pins", Err("--update is the only action".into())),
            (
                "gce --project p --zone z",
                Err(
                    "only --dry-run exists: this tool prints the commands and never runs gcloud"
                        .into(),
                ),
            ),
            (
                "gce --zone z --dry-run",
                Err("--project and --zone are required".into()),
            ),
            (
                "gce --project p --zone z --data-size 1 --dry-run",
                Err("--data-size \"1\": a whole number of GB, at least 2".into()),
            ),
        ];
        for (line, want) in table {
            assert_eq!(parse_line(line, &checkout()), want, "{line:?}");
        }
        let Ok(Command::Gce(g)) = parse_line(
            "gce --project p --zone z --data-size 20GB --name n --image-dir /img --dry-run",
            &checkout(),
        ) else {
            panic!("gce did not parse");
        };
        assert_eq!(
            (
                g.bucket.as_str(),
                g.name.as_str(),
                g.data_disk_gb,
                g.image_dir.as_path()
            ),
            ("p-appliance-images", "n", 20, Path::new("/img"))
        );
    }

    #[test]
    fn xtask_calls_build_image_and_relative_paths_are_made_absolute() {
        let parsed = parse_command(
            XTASK,
            "image",
            ["--out", "rel"].map(OsString::from),
            &checkout(),
        );
        let Ok(Command::Build(a)) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(a.out, std::env::current_dir().unwrap().join("rel"));
        let help = usage(XTASK, Some("image"));
        assert!(
            help.starts_with("usage: cargo xtask image [--test"),
            "{help}"
        );
        assert!(usage(XTASK, None).contains("  image      build an image"));
    }

    #[test]
    fn exit_statuses() {
        let missing = Error::MissingTools {
            why: "x".into(),
            tools: vec![],
        };
        let table = [
            (Ok(Outcome::Done), EXIT_OK),
            (Ok(Outcome::AuditFailed), EXIT_FAILED),
            (Err(Error::msg("fetch failed")), EXIT_FAILED),
            (Err(missing.context("step")), EXIT_MISSING_TOOL),
        ];
        for (result, want) in table {
            assert_eq!(exit_status(&result), want, "{result:?}");
        }
    }
}
