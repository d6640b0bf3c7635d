//! The spec parser must never panic, whatever the file holds; and whatever it
//! accepts must satisfy the validators it promises.
#![no_main]

use appliance_spec::{is_valid_metadata_key, is_valid_stream_key, is_valid_user_name, Spec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = Spec::from_toml_str(text) {
        for u in spec.users() {
            assert!(is_valid_user_name(u.name()));
            assert!(is_valid_metadata_key(u.secret()));
        }
        for v in spec.visitors() {
            assert!(is_valid_stream_key(v.stream()));
        }
        assert_ne!(spec.server().uid(), 0);
    }
});
