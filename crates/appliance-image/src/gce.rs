//! `appliance-image gce` (`cargo xtask gce`): the `gcloud` commands that deploy a built image to
//! Google Compute Engine. This module only composes them; with `--dry-run`
//! the caller prints them. Nothing here ever runs `gcloud`.
//!
//! The data disk is created from `data.tar.gz` (an empty ext4 labelled
//! `appliance-data`) because the appliance never formats a disk itself; it
//! is created once and survives replacing the boot image.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// The data disk's size unless `--data-size` says otherwise: GCE's
/// smallest balanced persistent disk that still gives useful throughput,
/// and ten times the empty filesystem the image ships.
pub const DEFAULT_DATA_DISK_GB: u32 = 10;

/// The smallest data disk: the filesystem in `data.tar.gz` is 1 GiB, and a
/// disk cannot be smaller than the image it is created from.
pub const MIN_DATA_DISK_GB: u32 = 2;

/// What a deployment needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GceArgs {
    /// GCP project id.
    pub project: String,
    /// Zone, e.g. `europe-west4-a`.
    pub zone: String,
    /// Bucket the archives are uploaded to (without `gs://`).
    pub bucket: String,
    /// Instance (and image family) name.
    pub name: String,
    /// Image version suffix, e.g. the manifest's SOURCE_DATE_EPOCH.
    pub version: String,
    /// Machine type.
    pub machine_type: String,
    /// Size of the data disk in GB. `data.tar.gz` holds a 1 GiB filesystem
    /// (the archive stays small); the appliance grows it online to fill
    /// whatever disk it is on, at every boot.
    pub data_disk_gb: u32,
    /// Directory holding `image.tar.gz` and `data.tar.gz`.
    pub image_dir: PathBuf,
    /// File holding the admin password (read by gcloud, never by us).
    pub admin_pass_file: PathBuf,
    /// File holding the visitor password.
    pub visitor_pass_file: PathBuf,
}

impl GceArgs {
    /// The defaults the `gce` command starts from: no project or zone (the
    /// caller must give them), the appliance name from `spec` (`appliance`
    /// when it cannot be read), version = the commit time the image was
    /// stamped with ([`source_date_epoch`](crate::build::source_date_epoch)
    /// of `checkout`), the image in `image_dir`, and password files in the
    /// current directory that the operator writes (they never enter the
    /// repository or a command line).
    pub fn example(spec: &Path, image_dir: PathBuf, checkout: Option<&Path>) -> GceArgs {
        let name = std::fs::read_to_string(spec)
            .ok()
            .and_then(|t| appliance_spec::Spec::from_toml_str(&t).ok())
            .map_or_else(|| "appliance".to_string(), |s| s.name().to_owned());
        let version = crate::build::source_date_epoch(checkout)
            .map_or_else(|_| "0".to_string(), |e| e.to_string());
        GceArgs {
            project: String::new(),
            zone: String::new(),
            bucket: String::new(),
            name,
            version,
            machine_type: "e2-small".into(),
            data_disk_gb: DEFAULT_DATA_DISK_GB,
            image_dir,
            admin_pass_file: PathBuf::from("redis-admin-pass.txt"),
            visitor_pass_file: PathBuf::from("redis-visitor-pass.txt"),
        }
    }
}

/// Single-quotes `s` for a POSIX shell when it holds anything but safe characters.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn cmd(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The commands, in order, one shell line each.
pub fn commands(a: &GceArgs) -> Vec<String> {
    let s = |x: &str| x.to_string();
    let image = format!("{}-{}", a.name, a.version);
    let data_image = format!("{}-data-{}", a.name, a.version);
    let data_disk = format!("{}-data", a.name);
    let gs = |f: &str| format!("gs://{}/{}/{}", a.bucket, image, f);
    let common = [format!("--project={}", a.project)];
    let path = |f: &str| a.image_dir.join(f).display().to_string();
    let mut out = Vec::new();
    for f in ["image.tar.gz", "data.tar.gz"] {
        out.push(cmd(&[s("gcloud"), s("storage"), s("cp"), path(f), gs(f)]
            .into_iter()
            .chain(common.iter().cloned())
            .collect::<Vec<_>>()));
    }
    out.push(cmd(&[
        s("gcloud"),
        s("compute"),
        s("images"),
        s("create"),
        image.clone(),
        format!("--source-uri={}", gs("image.tar.gz")),
        format!("--family={}", a.name),
        s("--guest-os-features=UEFI_COMPATIBLE,GVNIC"),
        s("--architecture=X86_64"),
    ]
    .into_iter()
    .chain(common.iter().cloned())
    .collect::<Vec<_>>()));
    out.push(cmd(&[
        s("gcloud"),
        s("compute"),
        s("images"),
        s("create"),
        data_image.clone(),
        format!("--source-uri={}", gs("data.tar.gz")),
    ]
    .into_iter()
    .chain(common.iter().cloned())
    .collect::<Vec<_>>()));
    out.push(cmd(&[
        s("gcloud"),
        s("compute"),
        s("disks"),
        s("create"),
        data_disk.clone(),
        format!("--image={data_image}"),
        format!("--size={}GB", a.data_disk_gb),
        s("--type=pd-balanced"),
        format!("--zone={}", a.zone),
    ]
    .into_iter()
    .chain(common.iter().cloned())
    .collect::<Vec<_>>()));
    out.push(cmd(&[
        s("gcloud"),
        s("compute"),
        s("instances"),
        s("create"),
        a.name.clone(),
        format!("--zone={}", a.zone),
        format!("--machine-type={}", a.machine_type),
        format!("--image={image}"),
        s("--boot-disk-size=10GB"),
        format!(
            "--disk=name={data_disk},device-name=appliance-data,mode=rw,boot=no,auto-delete=no"
        ),
        s("--network-interface=nic-type=GVNIC"),
        s("--shielded-secure-boot=false"),
        s("--no-service-account"),
        s("--no-scopes"),
        format!(
            "--metadata-from-file=redis-admin-pass={},redis-visitor-pass={}",
            a.admin_pass_file.display(),
            a.visitor_pass_file.display()
        ),
    ]
    .into_iter()
    .chain(common.iter().cloned())
    .collect::<Vec<_>>()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> GceArgs {
        GceArgs {
            project: "my-project".into(),
            zone: "europe-west4-a".into(),
            bucket: "my-bucket".into(),
            name: "patchworks".into(),
            version: "1700000000".into(),
            machine_type: "e2-small".into(),
            data_disk_gb: DEFAULT_DATA_DISK_GB,
            image_dir: "target/appliance".into(),
            admin_pass_file: "secrets/admin pass".into(),
            visitor_pass_file: "secrets/visitor".into(),
        }
    }

    #[test]
    fn dry_run_commands() {
        insta::assert_snapshot!(commands(&args()).join("\n"));
    }

    #[test]
    fn quoting() {
        let cases = [
            ("abc", "abc"),
            ("a b", "'a b'"),
            ("it's", "'it'\\''s'"),
            ("", "''"),
            ("$(x)", "'$(x)'"),
        ];
        for (input, want) in cases {
            assert_eq!(shell_quote(input), want);
        }
    }
}
