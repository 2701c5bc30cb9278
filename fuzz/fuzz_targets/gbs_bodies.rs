//! Every CBOR request body a GBS server decodes, with stock's limits: no panic, bounded work;
//! an accepted body re-encodes to bytes that decode to the same value.
#![no_main]

use lafs_protocol::{
    AdviseCorruptRequest, AllocateRequest, CborBody, ReadTestWriteRequest, check_structure,
    decode_limited,
};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: CborBody + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = decode_limited::<T>(data, &T::LIMITS) {
        let again = T::decode(&v.encode()).expect("re-encoded body decodes");
        assert_eq!(again, v);
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = check_structure(data, &AllocateRequest::LIMITS);
    round_trip::<AllocateRequest>(data);
    round_trip::<AdviseCorruptRequest>(data);
    round_trip::<ReadTestWriteRequest>(data);
});
