//! The compaction service against a real catalog (CatalogService on a
//! temporary SQLite file, called in process) and a local-directory object
//! store, on a manual clock shared by both.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_catalog::conformance::ManualClock;
use strata_catalog::{CatalogService, GroupOptions, ServiceOptions, SqliteOptions};
use strata_catalog_api::proto::*;
use strata_catalog_api::{CatalogApi, InProcess};
use strata_compactor::{Clock, Compactor, CompactorConfig};
use strata_parquet::{InMemoryFile, ParquetTierReader};
use strata_segment::{BatchHeader, SegmentBuilder, iter_batches, patch_batches};

const GRACE_MS: i64 = 60_000;
const ORPHAN_GRACE_MS: i64 = 3_600_000;

/// The compactor's view of the catalog's manual clock.
#[derive(Debug)]
struct SharedClock(Arc<ManualClock>);

impl Clock for SharedClock {
    fn now_ms(&self) -> i64 {
        strata_catalog::Clock::now_ms(self.0.as_ref())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    catalog: Arc<dyn CatalogApi>,
    store: Arc<dyn ObjectStore>,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(ManualClock::default());
        // Real time: object mtimes (the orphan sweep) are real.
        clock.set(SystemNow.now_ms());
        let sqlite = SqliteOptions {
            clock: clock.clone(),
            ..SqliteOptions::default()
        };
        let options = ServiceOptions {
            groups: GroupOptions {
                clock: clock.clone(),
                ..GroupOptions::default()
            },
            ..ServiceOptions::default()
        };
        let service = CatalogService::open_sqlite(dir.path().join("catalog.db"), sqlite, options)
            .await
            .expect("open the catalog");
        let objects = dir.path().join("objects");
        std::fs::create_dir_all(&objects).expect("objects dir");
        let store = Arc::new(LocalFileSystem::new_with_prefix(&objects).expect("local store"));
        Self {
            _dir: dir,
            clock,
            catalog: Arc::new(InProcess(service)),
            store,
        }
    }

    fn now(&self) -> i64 {
        strata_catalog::Clock::now_ms(self.clock.as_ref())
    }

    fn advance(&self, ms: i64) {
        self.clock.set(self.now() + ms);
    }

    fn compactor(&self, id: &str) -> Compactor {
        let mut config = CompactorConfig::new(id);
        // Retention on every pass, whatever the manual clock says.
        config.retention_check_interval_ms = 0;
        config.gc_grace_ms = GRACE_MS;
        config.orphan_grace_ms = ORPHAN_GRACE_MS;
        // Small parts: files of a few hundred KiB go up in several parts.
        config.upload_part_bytes = 64 << 10;
        Compactor::new(config, self.catalog.clone(), self.store.clone())
            .with_clock(Arc::new(SharedClock(self.clock.clone())))
    }

    async fn topic(&self, name: &str, configs: &[(&str, &str)]) -> Topic {
        let response = self
            .catalog
            .create_topic(CreateTopicRequest {
                name: name.to_string(),
                partition_count: 1,
                configs: configs
                    .iter()
                    .map(|(name, value)| TopicConfigEntry {
                        name: (*name).to_string(),
                        value: (*value).to_string(),
                    })
                    .collect(),
                validate_only: false,
            })
            .await
            .expect("create topic");
        assert_eq!(response.error_code, 0, "{}", response.error_message);
        response.topic.expect("a topic")
    }

    /// Writes one segment holding `batches` for each topic's partition 0
    /// and commits it; returns its key.
    async fn segment(&self, writes: &[(&Topic, Vec<Bytes>)]) -> String {
        let mut builder = SegmentBuilder::new();
        for (topic, batches) in writes {
            builder
                .push_chunk(topic_id(topic), 0, batches)
                .expect("valid batches");
        }
        let (object, entries) = builder.finish();
        let id = ulid::Ulid::from_parts(u64::try_from(self.now()).expect("positive"), rand_bits());
        let key = format!("segments/ab/{id}.seg");
        self.store
            .put(
                &Path::from(key.as_str()),
                PutPayload::from_bytes(object.clone()),
            )
            .await
            .expect("put segment");
        let chunks = entries
            .iter()
            .map(|entry| {
                let chunk = entry.extract(&object).expect("chunk bytes");
                ChunkWrite {
                    topic_id: entry.topic_id.to_vec(),
                    partition: entry.partition,
                    position: entry.position,
                    batches: iter_batches(&chunk)
                        .map(|span| batch_meta(&span.expect("framed").header))
                        .collect(),
                }
            })
            .collect();
        let response = self
            .catalog
            .commit_segment(CommitSegmentRequest {
                segment_id: id.to_string(),
                object_key: key.clone(),
                object_size: object.len() as u64,
                agent_id: "test".into(),
                agent_epoch: 0,
                chunks,
            })
            .await
            .expect("commit");
        for chunk in &response.chunks {
            assert!(
                chunk.batches.iter().all(|b| b.error_code == 0),
                "{response:?}"
            );
        }
        key
    }

    async fn chunks(&self, topic: &Topic) -> LookupChunksResponse {
        self.catalog
            .lookup_chunks(LookupChunksRequest {
                topic_id: topic.topic_id.clone(),
                partition: 0,
                offset: 0,
                max_chunks: 10_000,
            })
            .await
            .expect("lookup")
    }

    async fn exists(&self, key: &str) -> bool {
        self.store.head(&Path::from(key)).await.is_ok()
    }

    async fn parquet_files(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .store
            .list(Some(&Path::from("parquet")))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .expect("list");
        keys.sort();
        keys
    }

    async fn set_config(&self, topic: &Topic, name: &str, value: &str) {
        let response = self
            .catalog
            .alter_topic_configs(AlterTopicConfigsRequest {
                name: topic.name.clone(),
                set: vec![TopicConfigEntry {
                    name: name.into(),
                    value: value.into(),
                }],
                ..AlterTopicConfigsRequest::default()
            })
            .await
            .expect("alter configs");
        assert_eq!(response.error_code, 0, "{}", response.error_message);
    }
}

struct SystemNow;

impl SystemNow {
    fn now_ms(&self) -> i64 {
        strata_compactor::SystemClock.now_ms()
    }
}

fn rand_bits() -> u128 {
    use strata_compactor::IdGen;
    strata_compactor::SystemIds.ulid().random()
}

fn topic_id(topic: &Topic) -> [u8; 16] {
    topic.topic_id.as_slice().try_into().expect("16-byte id")
}

fn batch_meta(header: &BatchHeader) -> BatchMeta {
    BatchMeta {
        offset_count: u32::try_from(header.offset_count()).expect("small"),
        producer_id: header.producer_id,
        producer_epoch: i32::from(header.producer_epoch),
        base_sequence: header.base_sequence,
        max_timestamp: header.max_timestamp,
        base_timestamp: header.base_timestamp,
        transactional: false,
        control: false,
        length: u32::try_from(header.total_len().expect("framed")).expect("small"),
    }
}

/// Batches of `count` records with keys, values (some null) and payloads
/// big enough that a file spans several upload parts.
fn batches(tag: &str, count: usize, timestamp: i64) -> Vec<Bytes> {
    // Incompressible (an LCG's bytes), so files really span several parts.
    let payload = |i: usize| {
        let seed = tag.bytes().fold(i as u64 + 1, |h, b| {
            h.wrapping_mul(31).wrapping_add(u64::from(b))
        });
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut bytes = format!("{tag}-{i}-").into_bytes();
        bytes.extend((0..2_000 + i % 97).map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 56) as u8
        }));
        bytes
    };
    (0..count)
        .map(|i| {
            let key = format!("{tag}-key-{i}").into_bytes();
            let value = payload(i);
            let records = [
                (Some(key.as_slice()), Some(value.as_slice())),
                (None, None),
                (Some(key.as_slice()), Some(&value[..10])),
            ];
            strata_segment::testing::build_batch(&records, timestamp + i as i64, None)
        })
        .collect()
}

/// The batches as a consumer must see them: offsets assigned from 0.
fn expected_log(segments: &[Vec<Bytes>]) -> Bytes {
    let mut all = BytesMut::new();
    for batch in segments.iter().flatten() {
        all.extend_from_slice(batch);
    }
    patch_batches(&mut all, 0).expect("patch offsets");
    all.freeze()
}

/// Everything a Parquet-tier file serves, fetched from its first offset.
async fn read_back(store: &Arc<dyn ObjectStore>, key: &str) -> Bytes {
    let file = store
        .get(&Path::from(key))
        .await
        .expect("get file")
        .bytes()
        .await
        .expect("file bytes");
    let reader = ParquetTierReader::open(InMemoryFile::new(file))
        .await
        .expect("open Parquet");
    let mut out = BytesMut::new();
    let mut offset = reader.first_offset();
    while offset <= reader.last_offset() {
        let fetched = reader.fetch(offset, 1 << 20).await.expect("fetch");
        assert!(fetched.next_offset > offset, "progress");
        out.extend_from_slice(&fetched.records);
        offset = fetched.next_offset;
    }
    out.freeze()
}

/// Asserts the partition's chunks cover 0..high watermark exactly once,
/// every one in Parquet, and that the bucket holds exactly those files.
async fn assert_consistent(h: &Harness, topic: &Topic) {
    let lookup = h.chunks(topic).await;
    let mut next = 0;
    for chunk in &lookup.chunks {
        assert_eq!(chunk.base_offset, next, "{:?}", lookup.chunks);
        assert_eq!(chunk.format, ChunkFormat::Parquet as i32);
        next = chunk.end_offset;
    }
    assert_eq!(next, lookup.high_watermark);
    let mut referenced: Vec<String> = lookup.chunks.iter().map(|c| c.object_key.clone()).collect();
    referenced.sort();
    assert_eq!(h.parquet_files().await, referenced, "losers' files deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_compacts_a_run_and_gc_respects_references_and_grace() {
    let h = Harness::new().await;
    let events = h
        .topic("events", &[("strata.compaction.age.ms", "0")])
        .await;
    // `slow` shares every segment but compacts only after an hour.
    let slow = h.topic("slow", &[]).await;
    let now = h.now();
    let mut written = Vec::new();
    let mut keys = Vec::new();
    for segment in 0..3 {
        let batch = batches(&format!("s{segment}"), 20, now);
        written.push(batch.clone());
        let other = batches("slow", 1, now);
        keys.push(h.segment(&[(&events, batch), (&slow, other)]).await);
    }

    let compactor = h.compactor("c1");
    let report = compactor.pass().await;
    assert_eq!(report.files_swapped, 1, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");

    let lookup = h.chunks(&events).await;
    assert_eq!(lookup.chunks.len(), 1);
    let chunk = &lookup.chunks[0];
    assert_eq!(chunk.format, ChunkFormat::Parquet as i32);
    assert_eq!((chunk.base_offset, chunk.end_offset), (0, 180));
    let key = &chunk.object_key;
    assert!(
        key.starts_with("parquet/events/0/00000000000000000000-00000000000000000179-"),
        "{key}"
    );
    assert!(key.ends_with(".parquet"), "{key}");
    let size = h
        .store
        .head(&Path::from(key.as_str()))
        .await
        .expect("head")
        .size;
    assert!(size > 64 << 10, "a multipart upload: {size} bytes");
    assert_eq!(read_back(&h.store, key).await, expected_log(&written));
    let metrics = compactor.metrics().render();
    assert!(
        metrics.contains("strata_compactor_swaps_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );

    // `slow` still references every segment: nothing is dead or deleted,
    // however long we wait.
    h.advance(GRACE_MS * 10);
    let report = compactor.pass().await;
    assert_eq!(report.gc_deleted, 0);
    for key in &keys {
        assert!(h.exists(key).await, "{key} is still referenced");
    }
    assert_eq!(h.chunks(&slow).await.chunks.len(), 3);

    // Once `slow` is compacted too, the segments die, and are deleted only
    // after the grace period.
    h.set_config(&slow, "strata.compaction.age.ms", "0").await;
    let report = compactor.pass().await;
    assert_eq!(
        (report.files_swapped, report.gc_deleted),
        (1, 0),
        "{report:?}"
    );
    h.advance(GRACE_MS - 1);
    assert_eq!(compactor.collect_garbage().await.expect("gc"), 0);
    for key in &keys {
        assert!(h.exists(key).await, "{key} is within its grace period");
    }
    h.advance(2);
    assert_eq!(compactor.collect_garbage().await.expect("gc"), 3);
    for key in &keys {
        assert!(!h.exists(key).await, "{key} was collected");
    }
    // Compacted files stay: they are referenced.
    assert_eq!(h.parquet_files().await.len(), 2);
    let listed = h
        .catalog
        .list_dead_objects(ListDeadObjectsRequest {
            dead_before_ms: i64::MAX,
            limit: 0,
        })
        .await
        .expect("list dead");
    assert!(listed.objects.is_empty(), "forgotten after deletion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn young_segments_wait_for_the_compaction_age() {
    let h = Harness::new().await;
    let topic = h
        .topic("young", &[("strata.compaction.age.ms", "600000")])
        .await;
    h.segment(&[(&topic, batches("a", 2, h.now()))]).await;
    let compactor = h.compactor("c1");
    assert_eq!(compactor.pass().await.files_swapped, 0);
    h.advance(600_000);
    assert_eq!(compactor.pass().await.files_swapped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_size_splits_a_partition_into_several_files() {
    let h = Harness::new().await;
    let topic = h.topic("split", &[("strata.compaction.age.ms", "0")]).await;
    let mut written = Vec::new();
    for segment in 0..4 {
        let batch = batches(&format!("s{segment}"), 5, h.now());
        written.push(batch.clone());
        h.segment(&[(&topic, batch)]).await;
    }
    let one_segment: u64 = h.chunks(&topic).await.chunks[0].length;
    let mut config = CompactorConfig::new("c1");
    config.target_file_bytes = one_segment * 2;
    let compactor = Compactor::new(config, h.catalog.clone(), h.store.clone())
        .with_clock(Arc::new(SharedClock(h.clock.clone())));
    assert_eq!(compactor.pass().await.files_swapped, 2);
    assert_consistent(&h, &topic).await;
    let mut log = BytesMut::new();
    for chunk in h.chunks(&topic).await.chunks {
        log.extend_from_slice(&read_back(&h.store, &chunk.object_key).await);
    }
    assert_eq!(log.freeze(), expected_log(&written));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_compactors_at_once_leave_a_consistent_catalog() {
    for same_id in [true, false] {
        let h = Harness::new().await;
        let topic = h.topic("race", &[("strata.compaction.age.ms", "0")]).await;
        for segment in 0..6 {
            h.segment(&[(&topic, batches(&format!("s{segment}"), 4, h.now()))])
                .await;
        }
        // The same id makes both claims succeed (a renewal), so both really
        // compact the same run and one loses the swap.
        let (a, b) = if same_id {
            (h.compactor("same"), h.compactor("same"))
        } else {
            (h.compactor("a"), h.compactor("b"))
        };
        let (ra, rb) = tokio::join!(a.pass(), b.pass());
        assert_eq!(ra.errors + rb.errors, 0, "{ra:?} {rb:?}");
        assert!(ra.files_swapped + rb.files_swapped >= 1, "{ra:?} {rb:?}");
        // A second pass finishes whatever a conflict left.
        a.pass().await;
        assert_consistent(&h, &topic).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_put_and_swap_leaves_an_orphan_the_sweep_deletes_later() {
    let h = Harness::new().await;
    let topic = h.topic("orphans", &[]).await;
    let committed = h.segment(&[(&topic, batches("a", 2, h.now()))]).await;
    // A compactor that died after its PUT, and an agent that died before
    // its commit.
    let orphans = [
        "parquet/orphans/0/00000000000000000000-00000000000000000005-01J000000000000000000000.parquet",
        "segments/cd/01J00000000000000000000000.seg",
    ];
    for key in orphans {
        h.store
            .put(&Path::from(key), PutPayload::from_static(b"partial"))
            .await
            .expect("put");
    }
    let compactor = h.compactor("c1");
    assert_eq!(
        compactor.sweep_orphans().await.expect("sweep"),
        0,
        "too young"
    );
    h.advance(ORPHAN_GRACE_MS - 60_000);
    assert_eq!(
        compactor.sweep_orphans().await.expect("sweep"),
        0,
        "still too young"
    );
    for key in orphans {
        assert!(h.exists(key).await);
    }
    h.advance(120_000);
    assert_eq!(compactor.sweep_orphans().await.expect("sweep"), 2);
    for key in orphans {
        assert!(!h.exists(key).await, "{key} deleted");
    }
    assert!(h.exists(&committed).await, "a referenced segment stays");
    let metrics = compactor.metrics().render();
    assert!(
        metrics.contains("strata_compactor_orphans_deleted_total 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_time_moves_the_log_start_and_the_gc_deletes_the_segments() {
    let h = Harness::new().await;
    let topic = h.topic("timed", &[("retention.ms", "3600000")]).await;
    let now = h.now();
    let old = [
        h.segment(&[(&topic, batches("old1", 2, now - 7_200_000))])
            .await,
        h.segment(&[(&topic, batches("old2", 2, now - 7_000_000))])
            .await,
    ];
    let fresh = h.segment(&[(&topic, batches("new", 2, now))]).await;
    let compactor = h.compactor("c1");
    let report = compactor.pass().await;
    assert_eq!(report.retention_moves, 1, "{report:?}");
    let lookup = h.chunks(&topic).await;
    assert_eq!(lookup.log_start_offset, 12, "two segments of 6 records");
    assert_eq!(lookup.chunks.len(), 1);
    h.advance(GRACE_MS + 1);
    assert_eq!(compactor.pass().await.gc_deleted, 2);
    for key in &old {
        assert!(!h.exists(key).await, "{key}");
    }
    assert!(h.exists(&fresh).await);
    // Nothing more to do: the log start stays.
    assert_eq!(compactor.pass().await.retention_moves, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_keeps_at_least_retention_bytes() {
    let h = Harness::new().await;
    let topic = h.topic("sized", &[]).await;
    let now = h.now();
    let mut keys = Vec::new();
    for segment in 0..4 {
        keys.push(
            h.segment(&[(&topic, batches(&format!("s{segment}"), 2, now))])
                .await,
        );
    }
    let lengths: Vec<u64> = h
        .chunks(&topic)
        .await
        .chunks
        .iter()
        .map(|c| c.length)
        .collect();
    // Room for the last two chunks and a bit: the first two go.
    let limit = lengths[2] + lengths[3];
    h.set_config(&topic, "retention.bytes", &limit.to_string())
        .await;
    let compactor = h.compactor("c1");
    assert_eq!(compactor.pass().await.retention_moves, 1);
    let lookup = h.chunks(&topic).await;
    assert_eq!(lookup.log_start_offset, 12);
    let remaining: u64 = lookup.chunks.iter().map(|c| c.length).sum();
    assert!(remaining >= limit);
    h.advance(GRACE_MS + 1);
    assert_eq!(compactor.collect_garbage().await.expect("gc"), 2);
    assert!(!h.exists(&keys[0]).await && !h.exists(&keys[1]).await);
    assert!(h.exists(&keys[2]).await && h.exists(&keys[3]).await);
}

/// Goal: retention trims only topics whose `cleanup.policy` includes
/// `delete`, as in Kafka. A compact-only topic (Kafka Connect's offsets,
/// Schema Registry's `_schemas`, changelogs) keeps every record however old
/// its timestamps and however small its `retention.bytes`; `compact,delete`
/// and `delete` are trimmed. Method: three topics with the same old records
/// and the same tight `retention.ms` / `retention.bytes`, one pass, then
/// compare log starts and chunk counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_never_trims_a_compact_only_topic() {
    let h = Harness::new().await;
    let tight = [("retention.ms", "60000"), ("retention.bytes", "1")];
    let with_policy = |policy: &'static str| {
        let mut configs = tight.to_vec();
        configs.push(("cleanup.policy", policy));
        configs
    };
    let compact = h.topic("compact-only", &with_policy("compact")).await;
    let both = h
        .topic("compact-delete", &with_policy("compact,delete"))
        .await;
    let delete = h.topic("delete-only", &with_policy("delete")).await;
    let day_old = h.now() - 86_400_000;
    for topic in [&compact, &both, &delete] {
        for segment in 0..3 {
            h.segment(&[(topic, batches(&format!("v{segment}"), 2, day_old))])
                .await;
        }
    }
    let compactor = h.compactor("c1");
    let report = compactor.pass().await;
    assert_eq!(report.retention_moves, 2, "{report:?}");
    let kept = h.chunks(&compact).await;
    assert_eq!(kept.log_start_offset, 0, "compact-only: nothing trimmed");
    let records: i64 = kept
        .chunks
        .iter()
        .map(|c| c.end_offset - c.base_offset)
        .sum();
    assert_eq!(records, 18, "every record of the compact-only topic stays");
    for topic in [&both, &delete] {
        let lookup = h.chunks(topic).await;
        assert!(lookup.log_start_offset > 0, "{}: trimmed", topic.name);
    }
    // Later passes leave the compact-only topic alone too.
    h.advance(GRACE_MS + 1);
    compactor.pass().await;
    assert_eq!(h.chunks(&compact).await.log_start_offset, 0);
}

/// Goal: retention runs every `retention_check_interval_ms`, as a broker's
/// `log.retention.check.interval.ms`: records written with old timestamps
/// stay readable until the next check. Method: a first pass (a check) on
/// an empty topic, then old records, a pass before the interval (no move),
/// and one after it (the move).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_waits_for_its_check_interval() {
    let h = Harness::new().await;
    let topic = h.topic("checked", &[("retention.ms", "3600000")]).await;
    let mut config = CompactorConfig::new("c1");
    config.retention_check_interval_ms = 300_000;
    let compactor = Compactor::new(config, h.catalog.clone(), h.store.clone())
        .with_clock(Arc::new(SharedClock(h.clock.clone())));
    assert_eq!(
        compactor.pass().await.retention_moves,
        0,
        "nothing to drop yet"
    );
    let now = h.now();
    h.segment(&[(&topic, batches("old", 2, now - 7_200_000))])
        .await;
    h.advance(299_999);
    assert_eq!(
        compactor.pass().await.retention_moves,
        0,
        "before the check"
    );
    assert_eq!(h.chunks(&topic).await.log_start_offset, 0);
    h.advance(1);
    assert_eq!(compactor.pass().await.retention_moves, 1, "at the check");
    assert_eq!(h.chunks(&topic).await.log_start_offset, 6);
}

/// Goal: deleting a topic eventually deletes its objects (segments and
/// Parquet files), after the GC grace period and not before, and leaves
/// an object shared with a live topic alone. Method: a compacted topic and
/// a segment shared with a second topic; delete the first topic; GC
/// before and after the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_eventually_deletes_its_objects() {
    let h = Harness::new().await;
    let doomed = h
        .topic("doomed", &[("strata.compaction.age.ms", "0")])
        .await;
    let kept = h
        .topic("kept", &[("strata.compaction.age.ms", "3600000")])
        .await;
    let now = h.now();
    let own = h.segment(&[(&doomed, batches("a", 2, now))]).await;
    let compactor = h.compactor("c1");
    assert_eq!(compactor.pass().await.files_swapped, 1);
    let parquet = h.chunks(&doomed).await.chunks[0].object_key.clone();
    assert!(parquet.ends_with(".parquet"), "{parquet}");
    h.advance(GRACE_MS + 1);
    compactor.pass().await;
    assert!(!h.exists(&own).await, "the compacted segment is collected");
    let shared = h
        .segment(&[
            (&doomed, batches("b", 2, now)),
            (&kept, batches("c", 2, now)),
        ])
        .await;
    h.catalog
        .delete_topic(DeleteTopicRequest {
            name: "doomed".to_string(),
            topic_id: Vec::new(),
        })
        .await
        .expect("delete topic");
    compactor.pass().await;
    assert!(h.exists(&parquet).await, "not before the grace period");
    h.advance(GRACE_MS + 1);
    compactor.pass().await;
    assert!(
        !h.exists(&parquet).await,
        "the deleted topic's Parquet file"
    );
    assert!(
        h.exists(&shared).await,
        "still holds the live topic's chunk"
    );
}

/// One batch per (key, value) of round `round`: value `None` = tombstone.
fn keyed(round: usize, keys: &[(usize, Option<&str>)], timestamp: i64) -> Vec<Bytes> {
    keys.iter()
        .map(|(key, value)| {
            let key = format!("key-{key}").into_bytes();
            let value = value.map(|v| format!("{v}-{round}").into_bytes());
            strata_segment::testing::build_batch(
                &[(Some(key.as_slice()), value.as_deref())],
                timestamp,
                None,
            )
        })
        .collect()
}

/// (offset, key, value) of every record the partition's chunks serve.
async fn served(h: &Harness, topic: &Topic) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    for chunk in h.chunks(topic).await.chunks {
        let bytes = read_back(&h.store, &chunk.object_key).await;
        for span in iter_batches(&bytes) {
            let span = span.expect("framed");
            let batch = bytes.slice(span.range);
            let body = strata_segment::batch_body(&batch, &span.header).expect("body");
            for record in strata_segment::records(&body) {
                let record = record.expect("record");
                let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("utf-8");
                out.push((
                    span.header.base_offset + i64::from(record.offset_delta),
                    record.key.map(text).unwrap_or_default(),
                    record.value.map(text),
                ));
            }
        }
    }
    out
}

/// Goal: a compacted topic ends up as key-compacted Parquet holding the
/// latest record of every key at the offset it was written at; a tombstone
/// stays until `delete.retention.ms` after its first compaction, then
/// goes. Method: three segments of versions of 4 keys, a pass; a fourth
/// segment and a pass after `delete.retention.ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_compaction_keeps_the_latest_per_key_at_its_offset() {
    let h = Harness::new().await;
    let topic = h
        .topic(
            "changelog",
            &[
                ("cleanup.policy", "compact"),
                ("strata.compaction.age.ms", "0"),
                ("delete.retention.ms", "60000"),
                // A one-record file next to a four-record one: due.
                ("min.cleanable.dirty.ratio", "0.1"),
            ],
        )
        .await;
    let now = h.now();
    let all = [
        (0, Some("v")),
        (1, Some("v")),
        (2, Some("v")),
        (3, Some("v")),
    ];
    h.segment(&[(&topic, keyed(0, &all, now))]).await; // 0..4
    h.segment(&[(&topic, keyed(1, &all[..2], now))]).await; // 4..6
    h.segment(&[(&topic, keyed(2, &[(1, None), (0, Some("v"))], now))])
        .await; // 6..8
    let compactor = h.compactor("c1");
    let report = compactor.pass().await;
    assert_eq!(report.errors, 0, "{report:?}");
    let lookup = h.chunks(&topic).await;
    assert_eq!(lookup.chunks.len(), 1, "{:?}", lookup.chunks);
    assert!(lookup.chunks[0].object_key.ends_with(".compacted.parquet"));
    assert_eq!((lookup.log_start_offset, lookup.high_watermark), (0, 8));
    let some = |o: i64, k: usize, v: &str| (o, format!("key-{k}"), Some(v.to_string()));
    assert_eq!(
        served(&h, &topic).await,
        [
            some(2, 2, "v-0"),
            some(3, 3, "v-0"),
            (6, "key-1".into(), None),
            some(7, 0, "v-2"),
        ]
    );
    // After delete.retention.ms, the next pass (due: new dirty data)
    // removes the tombstone.
    h.advance(60_001);
    h.segment(&[(&topic, keyed(3, &[(3, Some("v"))], h.now()))])
        .await; // 8
    let report = compactor.pass().await;
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(
        served(&h, &topic).await,
        [some(2, 2, "v-0"), some(7, 0, "v-2"), some(8, 3, "v-3")]
    );
    let lookup = h.chunks(&topic).await;
    assert_eq!(lookup.chunks.len(), 1, "{:?}", lookup.chunks);
    assert_eq!((lookup.log_start_offset, lookup.high_watermark), (0, 9));
}
