//! Any string: parsing never panics, and a parsed cap prints back to a string that parses to
//! the same cap.
#![no_main]

use lafs_core::cap::Cap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(cap) = s.parse::<Cap>() {
        let text = cap.to_string();
        let again: Cap = text.parse().expect("a printed cap parses");
        assert_eq!(again.to_string(), text);
        let _ = cap.storage_index();
        if let Some(ro) = cap.readonly() {
            assert!(ro.is_readonly() || ro.is_verifier());
        }
        let _ = cap.verifier();
    }
});
