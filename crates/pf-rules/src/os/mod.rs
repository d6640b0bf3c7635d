//! The OS edge: the loader over `nlwire`'s netlink socket.

pub(crate) mod linux;
