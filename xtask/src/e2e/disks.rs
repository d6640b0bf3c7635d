//! GCE's disk interfaces and the whole disk (issue 14, items 1 and 2).
//!
//! `disk-interfaces`: three UEFI boots on one data disk. The first with the
//! boot and data disks on virtio-SCSI (as on most GCE machine types): ready
//! (a visitor XADD), more entries, the power button. Then the data disk's
//! file grows from 1 GiB to 3 GiB (as `gcloud compute disks resize` would),
//! and the second boot has both disks on NVMe: the console's growth line
//! says about 1 GiB -> about 3 GiB, every earlier entry is there, a visitor
//! XADD is acknowledged, and the power button stops it cleanly. A third
//! boot, on virtio-SCSI again, finds every entry (the NVMe one too) and
//! grows nothing; on the host the filesystem is then 3 GiB and e2fsck finds
//! it clean.
//!
//! `disk-label-fatal`: a second disk carrying the data label (on SCSI) is a
//! FATAL line naming both disks; a disk whose filesystem carries another
//! label, and no other, is a FATAL line too and is left untouched. Either
//! way the server never starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use vm_harness::standin::Mode;
use vm_harness::{copy_sparse, matchers, resp, temp_dir, BootMode, DiskInterface};

use super::{check_acked, host_command, xadd, Acked, Ctx, Net, ReadyProbe, Session};

/// The console line init prints after growing the data filesystem.
const GROWN: &str = "appliance: data filesystem grown from ";
/// The console line naming the data disk.
const DATA_DISK: &str = "appliance: data disk ";
/// The size `data.raw` is made at (`image::assemble`), and the disk grown
/// to here.
const GIB: u64 = 1 << 30;
const GROWN_DISK: u64 = 3 * GIB;
/// Entries written on the first boot besides the ready one.
const ENTRIES: usize = 20;
/// How long the power button may take to power the guest off.
const POWER_OFF_WITHIN: Duration = Duration::from_secs(60);

/// `appliance: data filesystem grown from <old> to <new> bytes` -> sizes.
fn grown_line(line: &str) -> Option<(u64, u64)> {
    let rest = matchers::from_marker(line, GROWN)?.get(GROWN.len()..)?;
    let (old, rest) = rest.split_once(" to ")?;
    let new = rest.trim_end().strip_suffix(" bytes")?;
    Some((old.parse().ok()?, new.parse().ok()?))
}

/// `appliance: data disk <device> labelled <label>` -> the device.
fn data_disk_line(line: &str) -> Option<&str> {
    let rest = matchers::from_marker(line, DATA_DISK)?.get(DATA_DISK.len()..)?;
    let (device, _) = rest.split_once(" labelled ")?;
    Some(device)
}

/// The device node prefix each interface gives the data disk in the guest.
fn node_prefix(interface: DiskInterface) -> &'static str {
    match interface {
        DiskInterface::Scsi => "/dev/sd",
        DiskInterface::Nvme => "/dev/nvme",
        DiskInterface::Virtio => "/dev/vd",
    }
}

/// Boots the production image (UEFI, as on GCE) with its disks on
/// `interface`: `data` as the data disk, then `extra` disks.
fn boot(
    ctx: &Ctx,
    interface: DiskInterface,
    data: &Path,
    extra: &[PathBuf],
    log_name: &str,
) -> Result<Session> {
    ctx.require(&ctx.image, "production image")?;
    Session::start(
        &ctx.image,
        BootMode::Uefi,
        data,
        ctx.state(Mode::Normal),
        ctx.logs.path().join(log_name),
        Net::User,
        |qspec| {
            qspec.disk_interface = interface;
            qspec.extra_disks = extra.to_vec();
        },
    )
}

/// The data disk the guest named, checked against the interface.
fn named_data_disk(s: &Session, interface: DiskInterface) -> Result<String> {
    let lines = s.vm.console().lines();
    let device = lines
        .iter()
        .find_map(|l| data_disk_line(&l.text))
        .context("no `appliance: data disk` line")?
        .to_owned();
    if !device.starts_with(node_prefix(interface)) {
        bail!(
            "the data disk is {device}, not a {} node: the disks are not on {}",
            node_prefix(interface),
            interface.name()
        );
    }
    Ok(device)
}

/// The power button: the governor's line, the kernel's power-down, QEMU's
/// own exit. Returns a note.
fn power_off(s: &mut Session) -> Result<String> {
    let from = s.vm.console().len();
    let exit = s.power_button(POWER_OFF_WITHIN)?;
    let lines = s.vm.console().lines();
    let after = lines.get(from..).unwrap_or_default();
    let pressed = after
        .iter()
        .any(|l| l.text.contains(matchers::POWER_BUTTON));
    let powered_down = after
        .iter()
        .any(|l| l.text.contains(matchers::KERNEL_POWER_DOWN));
    let Some(status) = exit else {
        s.vm.stop()?;
        bail!(
            "QEMU did not exit within {}s of system_powerdown\n{}",
            POWER_OFF_WITHIN.as_secs(),
            s.vm.console().tail(10)
        );
    };
    if !pressed || !powered_down {
        bail!(
            "power button: governor line {pressed}, `{}` {powered_down}\n{}",
            matchers::KERNEL_POWER_DOWN,
            s.vm.console().tail(10)
        );
    }
    Ok(format!(
        "power button: `{}`, `{}`, QEMU exited ({status})",
        matchers::POWER_BUTTON,
        matchers::KERNEL_POWER_DOWN
    ))
}

/// Size of the ext4 filesystem in an image file, after e2fsck replayed its
/// journal on a copy (the guest powers off without unmounting), and
/// e2fsck's verdict on that copy.
fn filesystem_bytes(data: &Path) -> Result<u64> {
    let tmp = temp_dir("e2e-disk-size")?;
    let copy = tmp.path().join("data.raw");
    copy_sparse(data, &copy)?;
    let copy_s = copy.to_string_lossy().into_owned();
    // 1: errors corrected (the journal replayed); a second pass must be 0.
    host_command("e2fsck", &["-fy", &copy_s], &[1])?;
    host_command("e2fsck", &["-fn", &copy_s], &[])?;
    let stats = host_command("debugfs", &["-R", "stats", &copy_s], &[])?;
    let field = |name: &str| -> Option<u64> {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let blocks = field("Block count:").context("debugfs stats: no block count")?;
    let block_size = field("Block size:").context("debugfs stats: no block size")?;
    Ok(blocks.saturating_mul(block_size))
}

/// The three boots; see the module docs.
pub(super) fn disk_interfaces(ctx: &mut Ctx) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    let tmp = ctx.image.fresh_data("e2e-disks")?;
    let data = tmp.disk();

    // 1. virtio-SCSI: ready, entries, power button.
    let mut s = boot(
        ctx,
        DiskInterface::Scsi,
        &data,
        &[],
        "disks-scsi.console.log",
    )?;
    let (at, id) = s.wait_ready(ReadyProbe::VisitorXadd)?;
    let device = named_data_disk(&s, DiskInterface::Scsi)?;
    let mut acked = Acked {
        count: 1,
        last_id: id,
    };
    let (_, stream) = s.visitor()?;
    let stream = stream.to_owned();
    let mut c = s.visitor_conn()?;
    for i in 0..ENTRIES {
        acked.last_id = Some(xadd(&mut c, &stream, &format!("scsi-{i}"))?);
        acked.count += 1;
    }
    drop(c);
    if let Some(line) =
        s.vm.console()
            .lines()
            .iter()
            .find(|l| grown_line(&l.text).is_some())
    {
        bail!("a filesystem filling its disk was grown: {}", line.text);
    }
    notes.push(format!(
        "scsi: ready {:.1}s after QEMU start (UEFI, TCG), data disk {device}, {} entries acknowledged, no growth line",
        at.as_secs_f64(),
        acked.count
    ));
    notes.push(format!("scsi: {}", power_off(&mut s)?));
    drop(s);

    // 2. The disk grows under its filesystem, as a cloud disk resize does.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .and_then(|f| f.set_len(GROWN_DISK))
        .with_context(|| format!("grow {}", data.display()))?;

    // 3. NVMe: growth line, nothing lost, ready, power button.
    let mut s = boot(
        ctx,
        DiskInterface::Nvme,
        &data,
        &[],
        "disks-nvme.console.log",
    )?;
    let (at, _) = s.wait_ready(ReadyProbe::AdminPing)?;
    let device = named_data_disk(&s, DiskInterface::Nvme)?;
    let lines = s.vm.console().lines();
    let grown: Vec<(u64, u64)> = lines.iter().filter_map(|l| grown_line(&l.text)).collect();
    let exec_at = lines
        .iter()
        .position(|l| l.text.contains(matchers::EXEC_SERVER));
    let grown_at = lines.iter().position(|l| grown_line(&l.text).is_some());
    let &[(old, new)] = grown.as_slice() else {
        bail!(
            "{} growth lines (`{GROWN}...`), want exactly one\n{}",
            grown.len(),
            s.vm.console().tail(15)
        );
    };
    // About 1 GiB -> about 3 GiB: the kernel may leave out a last block
    // group too small for its metadata (not at these sizes, 24 whole
    // groups of 128 MiB, but the check allows it).
    let about = GROWN_DISK - 128 * (1 << 20)..=GROWN_DISK;
    if old != GIB || !about.contains(&new) {
        bail!("grown from {old} to {new} bytes, want {GIB} to about {GROWN_DISK}");
    }
    if grown_at >= exec_at {
        bail!("the growth line does not come before the server's exec");
    }
    let mut admin = s.admin_conn()?;
    let checked = check_acked(&mut admin, &stream, &acked)?;
    drop(admin);
    let mut c = s.visitor_conn()?;
    acked.last_id = Some(xadd(&mut c, &stream, "nvme-ready")?);
    drop(c);
    notes.push(format!(
        "nvme: ready {:.1}s after QEMU start, data disk {device}, `{GROWN}{old} to {new} bytes` before the server's exec",
        at.as_secs_f64()
    ));
    notes.push(format!(
        "nvme: nothing lost: {checked}; a visitor XADD is acknowledged"
    ));
    acked.count += 1;
    notes.push(format!("nvme: {}", power_off(&mut s)?));
    drop(s);

    // 4. Back on virtio-SCSI: what NVMe acknowledged is there, and a
    // filesystem that fills its disk is not grown again.
    let mut s = boot(
        ctx,
        DiskInterface::Scsi,
        &data,
        &[],
        "disks-scsi-again.console.log",
    )?;
    let (at, _) = s.wait_ready(ReadyProbe::AdminPing)?;
    let device = named_data_disk(&s, DiskInterface::Scsi)?;
    let mut admin = s.admin_conn()?;
    let checked = check_acked(&mut admin, &stream, &acked)?;
    drop(admin);
    if let Some(line) =
        s.vm.console()
            .lines()
            .iter()
            .find(|l| grown_line(&l.text).is_some())
    {
        bail!(
            "a filesystem already filling its disk was grown again: {}",
            line.text
        );
    }
    notes.push(format!(
        "scsi again: ready {:.1}s, data disk {device}, nothing lost: {checked}, no growth line",
        at.as_secs_f64()
    ));
    notes.push(format!("scsi again: {}", power_off(&mut s)?));
    drop(s);

    let size = filesystem_bytes(&data)?;
    if size != new {
        bail!("the filesystem on the host is {size} bytes, the console said {new}");
    }
    let meta = std::fs::metadata(&data)?;
    // st_blocks counts 512-byte units, whatever the filesystem's block size.
    let allocated = std::os::unix::fs::MetadataExt::blocks(&meta).saturating_mul(512);
    notes.push(format!(
        "host: the filesystem is {size} bytes on a {}-byte disk file ({allocated} bytes allocated), e2fsck clean after replaying the journal",
        meta.len()
    ));
    Ok(notes)
}

/// A boot that must end in a `FATAL data disk` line: the line's reason
/// (checked by `judge`), QEMU's own exit, nothing mounted, no server.
fn fatal_data_disk_boot(
    ctx: &Ctx,
    data: &Path,
    extra: &[PathBuf],
    log_name: &str,
    judge: impl Fn(&str) -> Result<()>,
) -> Result<String> {
    let mut s = boot(ctx, DiskInterface::Scsi, data, extra, log_name)?;
    let found =
        s.vm.console()
            .wait_for(0, super::FATAL_TIMEOUT, |l| matchers::fatal(l).is_some());
    let Some((_, line)) = found else {
        s.vm.stop()?;
        bail!(
            "no FATAL line within {}s\n{}",
            super::FATAL_TIMEOUT.as_secs(),
            s.vm.console().tail(15)
        );
    };
    let (step, reason) = matchers::fatal(&line.text).context("FATAL line")?;
    if step != "data disk" {
        s.vm.stop()?;
        bail!("FATAL {step}: {reason}; want a `FATAL data disk` line");
    }
    if let Err(e) = judge(reason.trim_end()) {
        s.vm.stop()?;
        return Err(e);
    }
    let exited = s.vm.wait_exit(Duration::from_secs(30))?;
    let lines = s.vm.console().lines();
    let mounted = lines.iter().find_map(|l| data_disk_line(&l.text));
    let exec = lines.iter().any(|l| l.text.contains(matchers::EXEC_SERVER));
    let probe = resp::probe(s.port, Duration::from_secs(2));
    if exited.is_none() {
        s.vm.stop()?;
        bail!("QEMU did not exit within 30 s of the FATAL line");
    }
    if let Some(device) = mounted {
        bail!("init named {device} as the data disk before refusing");
    }
    if exec || !probe.no_service() {
        bail!("the server started (exec line {exec}, port {probe:?})");
    }
    Ok(format!(
        "console at {:.1}s: {}; QEMU exited by itself, nothing mounted, the server never started",
        line.at.as_secs_f64(),
        line.text.trim()
    ))
}

/// A second disk with the data label: FATAL naming both. Then a disk whose
/// filesystem carries another label, and no other: FATAL, never a format.
pub(super) fn disk_label_fatal(ctx: &mut Ctx) -> Result<Vec<String>> {
    let tmp = ctx.image.fresh_data("e2e-disks-label")?;
    let data = tmp.disk();
    let twin = tmp.dir().join("twin.raw");
    copy_sparse(&data, &twin)?;
    let twin_note = fatal_data_disk_boot(
        ctx,
        &data,
        std::slice::from_ref(&twin),
        "disks-twin.console.log",
        |reason| {
            // Which of the two data disks is sdb and which sdc depends on
            // the order sd's asynchronous probes finish in; the boot disk is
            // not named.
            let want =
                "several block devices hold an ext4 filesystem labelled \"appliance-data\": ";
            let named: Vec<&str> = reason
                .strip_prefix(want)
                .and_then(|list| list.strip_prefix('['))
                .and_then(|list| list.strip_suffix(']'))
                .map(|list| list.split(", ").map(|d| d.trim_matches('"')).collect())
                .unwrap_or_default();
            let two_sd = named.len() == 2
                && named.iter().all(|d| d.starts_with("/dev/sd"))
                && named.first() != named.get(1);
            if !two_sd {
                bail!("FATAL data disk: {reason}; want `{want}[two /dev/sd* disks]`");
            }
            Ok(())
        },
    )?;

    // The operator attached the wrong disk: an ext4 filesystem, another label.
    let other = tmp.dir().join("other.raw");
    std::fs::File::create(&other)
        .and_then(|f| f.set_len(64 << 20))
        .with_context(|| format!("create {}", other.display()))?;
    let other_s = other.to_string_lossy().into_owned();
    host_command(
        "mkfs.ext4",
        &["-q", "-F", "-L", "someone-else", &other_s],
        &[],
    )?;
    let before = std::fs::read(&other)?;
    let none_note = fatal_data_disk_boot(ctx, &other, &[], "disks-none.console.log", |reason| {
        let want = "no block device holds an ext4 filesystem labelled \"appliance-data\"";
        if !reason.starts_with(want) {
            bail!("FATAL data disk: {reason}; want `{want} ...`");
        }
        Ok(())
    })?;
    if std::fs::read(&other)? != before {
        bail!("the disk with another label was written to");
    }
    Ok(vec![
        format!("twin label: {twin_note}"),
        format!("another label only: {none_note}; the disk is byte for byte unchanged"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines() {
        assert_eq!(
            grown_line("appliance: data filesystem grown from 1073741824 to 3221225472 bytes"),
            Some((GIB, 3 * GIB))
        );
        // A kernel message may land before it on the same line.
        assert_eq!(
            grown_line("[ 3.1] EXT4-fs: xappliance: data filesystem grown from 1 to 2 bytes\r"),
            Some((1, 2))
        );
        for bad in [
            "appliance: data filesystem grown from 1 to 2",
            "appliance: data filesystem grown from x to 2 bytes",
            "appliance: data disk /dev/sdb labelled appliance-data",
        ] {
            assert_eq!(grown_line(bad), None, "{bad}");
        }
        assert_eq!(
            data_disk_line("appliance: data disk /dev/nvme1n1 labelled appliance-data"),
            Some("/dev/nvme1n1")
        );
        assert_eq!(data_disk_line("appliance: data disk"), None);
    }
}
