//! The ext4 superblock parser (init reads it from every block device at
//! boot, so any bytes an attached disk holds), plus the other small parsers
//! of boot-time input: `/proc/meminfo`, `/proc/self/status`, the module order.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(sb) = init_seq::parse::ext4_superblock(data) {
        assert!(sb.label.len() <= 16);
        assert!(!sb.label.contains(&0));
        assert!(sb.block_size >= 1024 && sb.block_size <= 65536);
        assert!(sb.is_64bit || sb.blocks_count <= u64::from(u32::MAX));
        assert!(sb.size_bytes() >= sb.blocks_count);
    }
    let _ = init_seq::parse::mem_total_bytes(data);
    let _ = init_seq::parse::thread_count(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(modules) = init_seq::parse::modules_order(text) {
            assert!(modules.iter().all(|m| m.is_absolute()));
        }
    }
});
