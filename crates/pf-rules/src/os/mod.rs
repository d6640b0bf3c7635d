//! The OS edge: the only place with `unsafe`.

pub(crate) mod linux;
