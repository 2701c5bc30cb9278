//! Any bytes as a URI extension block: no panic; an accepted UEB packs back to bytes that
//! parse to the same value.
#![no_main]

use lafs_core::chk::ueb::Ueb;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ueb) = Ueb::parse(data) {
        let packed = ueb.pack();
        assert_eq!(Ueb::parse(&packed).expect("repacked UEB parses"), ueb);
    }
});
