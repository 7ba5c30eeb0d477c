//! Goal: the segment footer reader never panics on any tail or object
//! length, and whatever it accepts is internally consistent.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strata_segment::{Footer, read_trailer};

fuzz_target!(|data: &[u8]| {
    let _ = read_trailer(data);
    // The first 8 bytes pick a claimed object length for the suffix reader.
    if let Some((length, tail)) = data.split_first_chunk::<8>() {
        let _ = Footer::parse_tail(tail, u64::from_be_bytes(*length));
    }
    let object = Bytes::copy_from_slice(data);
    let Ok(footer) = Footer::parse(&object) else {
        return;
    };
    let mut end = 0;
    for entry in footer.entries() {
        assert_eq!(entry.position, end);
        end = entry.range().end;
        let _ = entry.extract(&object);
    }
    assert_eq!(end, footer.data_len());
});
