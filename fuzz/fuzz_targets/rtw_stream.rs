//! The streaming read-test-write decoder against the whole-body decoder: on any input, fed in
//! pieces of any size (the first byte picks it), both accept or both refuse, and accepted
//! bodies decode to the same request. No panic, bounded work.
#![no_main]

use lafs_protocol::rtw_stream::{
    StreamLimits, decode_in_pieces, merged_writes, streamed_writes,
};
use lafs_protocol::{CborBody, ReadTestWriteRequest, decode_limited};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&split, body)) = input.split_first() else {
        return;
    };
    let piece = usize::from(split % 64) + 1;
    let whole = decode_limited::<ReadTestWriteRequest>(body, &ReadTestWriteRequest::LIMITS);
    let limits = StreamLimits {
        max_small_bytes: u64::MAX,
        ..StreamLimits::new(1 << 40)
    };
    let streamed = decode_in_pieces(body, limits, piece);
    match (whole, streamed) {
        (Ok(w), Ok((s, stream))) => {
            assert_eq!(merged_writes(&w), streamed_writes(&s, &stream));
            assert_eq!(w.read_vector, s.read_vector);
            assert_eq!(w.test_write_vectors.len(), s.test_write_vectors.len());
            for (n, v) in &w.test_write_vectors {
                let t = &s.test_write_vectors[n];
                assert_eq!(v.test, t.test);
                assert_eq!(v.new_length, t.new_length);
            }
            assert_eq!(s.data_len, stream.len() as u64);
            let _ = w.encode();
        }
        (Err(_), Err(_)) => {}
        (w, s) => panic!(
            "whole-body decoder {:?}, streaming decoder {:?}",
            w.map(|_| ()),
            s.map(|_| ())
        ),
    }
});
