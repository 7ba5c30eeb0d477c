//! Any bytes as a Kafka request frame: decoding may fail, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strata_agent::frame::decode_frame(bytes::Bytes::copy_from_slice(data));
});
