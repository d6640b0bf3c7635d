//! The file's shape, exactly as serde reads it. Nothing here is trusted yet.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSpec {
    pub(crate) appliance: RawAppliance,
    pub(crate) server: RawServer,
    pub(crate) metadata: RawMetadata,
    pub(crate) users: Vec<RawUser>,
    pub(crate) firewall: RawFirewall,
    pub(crate) limits: RawLimits,
    pub(crate) governor: RawGovernor,
    pub(crate) guard: crate::guard::RawGuard,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAppliance {
    pub(crate) name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub(crate) binary: String,
    pub(crate) config: String,
    pub(crate) acl_file: String,
    pub(crate) data_dir: String,
    pub(crate) port: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) forks: RawForks,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawForks {
    Bounded,
    Never,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetadata {
    pub(crate) base_url: String,
    pub(crate) deadline_ms: u32,
    pub(crate) attempts: u32,
}

#[derive(Debug, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawRole {
    Admin,
    AppendOnly,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub(crate) name: String,
    pub(crate) role: RawRole,
    pub(crate) secret: String,
    pub(crate) stream: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFirewall {
    pub(crate) icmp_echo: bool,
    pub(crate) conn_rate_per_source: u32,
    pub(crate) conn_burst_per_source: u32,
    pub(crate) conn_max_per_source: u32,
    pub(crate) conn_max_total: u32,
    pub(crate) meter_size: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) maxclients: u32,
    pub(crate) timeout: u32,
    pub(crate) proto_max_bulk_len: u64,
    pub(crate) client_query_buffer_limit: u64,
    pub(crate) xadd_max_pairs: u32,
    pub(crate) xadd_max_bytes: u32,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawOnEventLoss {
    Halt,
    Rescan,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGovernor {
    pub(crate) rescan_interval_ms: u32,
    pub(crate) on_event_loss: RawOnEventLoss,
    pub(crate) max_child_seconds: u32,
}
