//! Key compaction of Parquet-tier files: the latest record per key is
//! kept at the offset it was written at, tombstones expire after their
//! delete horizon, aborted transactions go, and a fetch from any offset of
//! a compacted file returns the next record that exists.

#![expect(clippy::unwrap_used, reason = "tests panic on setup failures")]

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;
use strata_parquet::{
    CompactedFileWriter, DELETE_HORIZON_BIT, Horizon, InMemoryFile, KEY_MAP_COLUMNS, KeyMap,
    ParquetTierReader, PartitionInfo, TxnOutcomes, WriteOptions, read_row_groups, retain_latest,
    write_file,
};
use strata_segment::testing::build_batch;
use strata_segment::{batch_body, iter_batches, records};

/// A record as written: key and value (`None` = tombstone).
type Record = (Vec<u8>, Option<Vec<u8>>);

fn info() -> PartitionInfo {
    PartitionInfo {
        topic: "changelog".into(),
        topic_id: [3; 16],
        partition: 0,
    }
}

/// One Parquet-tier file of `batches` (records per batch), the first
/// record at `base_offset`; `producer` marks the batches transactional.
fn parquet_file(base_offset: i64, batches: &[Vec<Record>], producer: Option<i64>) -> Bytes {
    let mut chunk = Vec::new();
    for batch in batches {
        let records: Vec<strata_segment::testing::KeyValue<'_>> = batch
            .iter()
            .map(|(key, value)| (Some(key.as_slice()), value.as_deref()))
            .collect();
        let mut bytes = build_batch(&records, 1_000, producer.map(|id| (id, 0, 0))).to_vec();
        if producer.is_some() {
            // Attributes are at byte 21..23 (after base offset, length,
            // leader epoch, magic and CRC); the CRC is not checked here.
            bytes[22] |= 0x10;
        }
        chunk.extend_from_slice(&bytes);
    }
    let (file, _) = write_file(
        info(),
        &[(base_offset, Bytes::from(chunk))],
        WriteOptions::default(),
    )
    .unwrap();
    file
}

/// Compacts `files` (all dirty) into one file, as the compactor does.
fn compact(files: &[Bytes], txns: &TxnOutcomes, horizon: Horizon) -> Bytes {
    let mut map = KeyMap::new(1 << 20);
    for file in files {
        let (_, groups) = read_row_groups(file.clone(), Some(KEY_MAP_COLUMNS)).unwrap();
        for rows in groups {
            assert!(map.add_rows(&rows.unwrap(), txns).unwrap());
        }
    }
    let first = read_row_groups(files[0].clone(), None).unwrap().0;
    let last = read_row_groups(files[files.len() - 1].clone(), None)
        .unwrap()
        .0;
    let mut writer = CompactedFileWriter::new(
        Vec::new(),
        info(),
        WriteOptions::default(),
        first.first_offset,
        last.last_offset,
    )
    .unwrap();
    for file in files {
        let (_, groups) = read_row_groups(file.clone(), None).unwrap();
        for rows in groups {
            let retained =
                retain_latest(&rows.unwrap(), &map, txns, last.last_offset, horizon).unwrap();
            if let Some(rows) = retained.rows {
                writer.write(&rows).unwrap();
            }
        }
    }
    let (file, summary) = writer.finish().unwrap();
    assert_eq!(
        (summary.first_offset, summary.last_offset),
        (first.first_offset, last.last_offset)
    );
    Bytes::from(file)
}

/// What a consumer reads from `from` to the end: (offset, key, value,
/// batch attributes), fetch after fetch at the next offset each returns.
fn consume(file: &Bytes, from: i64) -> Vec<(i64, Record, i16)> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            let reader = ParquetTierReader::open(InMemoryFile::new(file.clone()))
                .await
                .unwrap();
            let mut out = Vec::new();
            let mut offset = from;
            let mut fetches = 0;
            while offset <= reader.last_offset() {
                let fetched = reader.fetch(offset, 64).await.unwrap();
                assert!(fetched.next_offset > offset, "a fetch must move forward");
                fetches += 1;
                assert!(fetches < 10_000, "fetches loop");
                for span in iter_batches(&fetched.records) {
                    let span = span.unwrap();
                    let batch = fetched.records.slice(span.range);
                    let body = batch_body(&batch, &span.header).unwrap();
                    for record in records(&body) {
                        let record = record.unwrap();
                        let at = span.header.base_offset + i64::from(record.offset_delta);
                        if at >= offset {
                            let key = record.key.unwrap().to_vec();
                            out.push((
                                at,
                                (key, record.value.map(<[u8]>::to_vec)),
                                span.header.attributes,
                            ));
                        }
                    }
                }
                offset = fetched.next_offset;
            }
            out
        })
}

fn record(key: &str, value: Option<&str>) -> Record {
    (
        key.as_bytes().to_vec(),
        value.map(|v| v.as_bytes().to_vec()),
    )
}

const KEEP_TOMBSTONES: Horizon = Horizon {
    now_ms: 10_000,
    delete_retention_ms: 86_400_000,
};

/// Goal: the textbook case, by hand: older versions go, the latest of
/// each key stays at its offset, and a tombstone stays (with a delete
/// horizon) until the horizon passes, then goes, except the file's last
/// record, which always stays.
#[test]
fn latest_per_key_then_tombstones_expire() {
    let file = parquet_file(
        100,
        &[
            vec![record("a", Some("1")), record("b", Some("1"))],
            vec![record("a", Some("2")), record("c", Some("1"))],
            vec![record("b", None), record("c", Some("2"))],
            vec![record("a", Some("3"))],
        ],
        None,
    );
    let once = compact(&[file], &TxnOutcomes::default(), KEEP_TOMBSTONES);
    let read: Vec<_> = consume(&once, 100)
        .into_iter()
        .map(|(offset, record, attributes)| (offset, record, attributes & DELETE_HORIZON_BIT != 0))
        .collect();
    assert_eq!(
        read,
        [
            (104, record("b", None), true),
            (105, record("c", Some("2")), true),
            (106, record("a", Some("3")), false),
        ]
    );
    // Before the horizon the tombstone stays; after it, it goes.
    let again = compact(
        std::slice::from_ref(&once),
        &TxnOutcomes::default(),
        KEEP_TOMBSTONES,
    );
    assert_eq!(consume(&again, 100).len(), 3);
    let later = Horizon {
        now_ms: 10_000 + 86_400_000,
        ..KEEP_TOMBSTONES
    };
    let expired = compact(&[once], &TxnOutcomes::default(), later);
    let offsets: Vec<i64> = consume(&expired, 100).iter().map(|r| r.0).collect();
    assert_eq!(offsets, [105, 106]);
    // A fetch inside a hole starts at the next record.
    assert_eq!(consume(&expired, 101)[0].0, 105);
}

/// Goal: transactions as Kafka's cleaner handles them: an aborted
/// transaction's records go, a committed one's count as data, and an open
/// one's (no marker yet) stay and shadow nothing.
#[test]
fn aborted_records_go_and_open_ones_stay() {
    let plain = parquet_file(
        0,
        &[vec![record("k", Some("old")), record("m", Some("old"))]],
        None,
    );
    let aborted = parquet_file(2, &[vec![record("k", Some("aborted"))]], Some(7));
    let committed = parquet_file(3, &[vec![record("m", Some("committed"))]], Some(8));
    let open = parquet_file(
        4,
        &[vec![record("k", Some("open")), record("z", Some("last"))]],
        Some(9),
    );
    let mut txns = TxnOutcomes::default();
    txns.add_marker(7, 10, false);
    txns.add_marker(8, 11, true);
    let out = compact(&[plain, aborted, committed, open], &txns, KEEP_TOMBSTONES);
    let read: Vec<(i64, Record)> = consume(&out, 0)
        .into_iter()
        .map(|(o, r, _)| (o, r))
        .collect();
    assert_eq!(
        read,
        [
            (0, record("k", Some("old"))),
            (3, record("m", Some("committed"))),
            (4, record("k", Some("open"))),
            (5, record("z", Some("last"))),
        ]
    );
}

/// Goal: a file of only aborted records compacts to a file without rows
/// that still covers its offsets: a fetch returns nothing and moves past.
#[test]
fn an_all_aborted_file_is_empty_and_fetches_move_past_it() {
    let aborted = parquet_file(
        5,
        &[vec![record("k", Some("x")), record("l", Some("y"))]],
        Some(7),
    );
    let mut txns = TxnOutcomes::default();
    txns.add_marker(7, 7, false);
    let out = compact(&[aborted], &txns, KEEP_TOMBSTONES);
    assert!(consume(&out, 5).is_empty());
    let next = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            let reader = ParquetTierReader::open(InMemoryFile::new(out))
                .await
                .unwrap();
            assert_eq!((reader.first_offset(), reader.last_offset()), (5, 6));
            reader.fetch(5, 1 << 20).await.unwrap().next_offset
        });
    assert_eq!(next, 7);
}

/// Goal: the map's cap holds: once full it says where, and adds nothing.
#[test]
fn the_key_map_stops_at_its_cap() {
    let file = parquet_file(
        0,
        &[vec![
            record("a", Some("1")),
            record("b", Some("1")),
            record("a", Some("2")),
            record("c", Some("1")),
        ]],
        None,
    );
    let mut map = KeyMap::new(2);
    let (_, groups) = read_row_groups(file, Some(KEY_MAP_COLUMNS)).unwrap();
    let mut fit = true;
    for rows in groups {
        fit &= map
            .add_rows(&rows.unwrap(), &TxnOutcomes::default())
            .unwrap();
    }
    assert!(!fit);
    assert_eq!(map.len(), 2);
    assert_eq!(map.full_at(), Some(3));
}

fn arb_batches() -> impl Strategy<Value = Vec<Vec<Record>>> {
    let record = (0_u8..6, proptest::option::weighted(0.8, 0_u8..100))
        .prop_map(|(key, value)| (vec![b'k', key], value.map(|v| vec![v])));
    proptest::collection::vec(proptest::collection::vec(record, 1..4), 1..30)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Goal: "latest per key, offsets preserved", for any history split in
    /// any files: every record read is the one written at its offset, each
    /// key's latest record is read (tombstones too, before their horizon),
    /// nothing older is, order is kept, the last record always stays, and
    /// a consumer starting at any offset reads exactly the kept records
    /// from there.
    #[test]
    fn compaction_keeps_the_latest_per_key_at_its_offset(
        batches in arb_batches(),
        split in 0_usize..30,
        start in 0_i64..100,
    ) {
        let base = 1_000_i64;
        let written: Vec<Record> = batches.iter().flatten().cloned().collect();
        let split = split.min(batches.len() - 1).max(1).min(batches.len());
        let mut files = Vec::new();
        let mut offset = base;
        for part in [&batches[..split], &batches[split..]] {
            if part.is_empty() {
                continue;
            }
            files.push(parquet_file(offset, part, None));
            offset += part.iter().map(Vec::len).sum::<usize>() as i64;
        }
        let out = compact(&files, &TxnOutcomes::default(), KEEP_TOMBSTONES);
        let read = consume(&out, base);
        let mut latest: HashMap<&[u8], usize> = HashMap::new();
        for (index, (key, _)) in written.iter().enumerate() {
            latest.insert(key, index);
        }
        let mut expected: Vec<usize> = latest.values().copied().collect();
        expected.sort_unstable();
        let last = written.len() - 1;
        prop_assert_eq!(expected.last(), Some(&last));
        let got: Vec<(i64, Record)> = read.iter().map(|(o, r, _)| (*o, r.clone())).collect();
        let want: Vec<(i64, Record)> = expected
            .iter()
            .map(|index| (base + *index as i64, written[*index].clone()))
            .collect();
        prop_assert_eq!(&got, &want);
        let from = base + start % written.len() as i64;
        let tail: Vec<i64> = consume(&out, from).iter().map(|r| r.0).collect();
        let want_tail: Vec<i64> = want.iter().map(|r| r.0).filter(|o| *o >= from).collect();
        prop_assert_eq!(tail, want_tail);
        // Compacting again changes nothing.
        let again = compact(&[out], &TxnOutcomes::default(), KEEP_TOMBSTONES);
        let got_again: Vec<(i64, Record)> = consume(&again, base).into_iter().map(|(o, r, _)| (o, r)).collect();
        prop_assert_eq!(got_again, want);
    }
}
