//! Goal: `split_and_validate` and the header patches never panic on any
//! bytes, and whatever validation accepts stays valid after patching and
//! survives a trip through a segment object.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strata_segment::{
    Footer, Limits, SegmentBuilder, batch_crc, iter_batches, patch_batches, set_log_append_time,
    split_and_validate,
};

fuzz_target!(|data: &[u8]| {
    let records = Bytes::copy_from_slice(data);
    let limits = Limits {
        allow_multiple_batches: true,
        ..Limits::default()
    };
    let _ = split_and_validate(&records, &Limits::default());
    let Ok(batches) = split_and_validate(&records, &limits) else {
        // Patching must also refuse bad input without panicking or writing.
        let mut copy = data.to_vec();
        if patch_batches(&mut copy, 0).is_err() {
            assert_eq!(copy, data);
        }
        return;
    };
    let mut builder = SegmentBuilder::new();
    for batch in &batches {
        let mut stamped = batch.bytes().to_vec();
        set_log_append_time(&mut stamped, 1_700_000_000_000).expect("validated batch");
        assert!(split_and_validate(&Bytes::from(stamped), &Limits::default()).is_ok());
        builder
            .push_batch([1; 16], 0, batch.bytes().clone())
            .expect("validated batch");
    }
    let (object, entries) = builder.finish();
    let footer = Footer::parse(&object).expect("freshly built segment");
    assert_eq!(footer.entries(), entries);
    for entry in footer.entries() {
        let mut chunk = entry
            .extract(&object)
            .expect("freshly built chunk")
            .to_vec();
        patch_batches(&mut chunk, i64::from(u32::MAX)).expect("validated batches");
        for span in iter_batches(&chunk) {
            let span = span.expect("validated framing");
            assert_eq!(batch_crc(&chunk[span.range]), span.header.crc);
        }
    }
});
