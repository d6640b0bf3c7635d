//! The Debian packages the build and the tests need: `.ci/packages`, which
//! `.ci/run` installs too and `cargo xtask ci` makes sure of
//! ([`host_tools::ensure_packages`]).

/// The packages of `.ci/packages`, in order.
pub fn ci() -> Vec<&'static str> {
    host_tools::parse_package_list(include_str!("../../.ci/packages"))
}

#[cfg(test)]
mod tests {
    use super::ci;

    #[test]
    fn ci_package_list_is_well_formed() {
        let pkgs = ci();
        for needed in [
            "qemu-system-x86",
            "ovmf",
            "systemd-boot-efi",
            "redis-server",
            "nftables",
        ] {
            assert!(pkgs.contains(&needed), "{needed} missing from .ci/packages");
        }
        let mut sorted = pkgs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), pkgs.len(), "a package is listed twice");
        // Debian package names: lowercase letters, digits, + - . (no shell
        // syntax reaches apt-get from this file).
        for p in &pkgs {
            assert!(
                p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)),
                "{p}"
            );
        }
        // Every line names a reason.
        for line in include_str!("../../.ci/packages").lines() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            assert!(
                line.split_whitespace().count() > 1,
                "no reason given: {line}"
            );
        }
    }
}
