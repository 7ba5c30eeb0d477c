//! Retention: when a pass checks it, and moving a partition's log start
//! with `DeleteRecords` as `retention.ms` and `retention.bytes` require.

use strata_catalog_api::proto::{DeleteRecordsRequest, Topic};
use tracing::info;

use super::plan::{self, TopicPolicy};
use super::{
    Compactor, CompactorMetrics, PartitionChunks, ServiceError, UNKNOWN_TOPIC_OR_PARTITION,
};

impl Compactor {
    /// Whether this pass checks retention (every
    /// `retention_check_interval_ms` of the clock, and on the first pass).
    pub(super) fn retention_due(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = self.clock.now_ms();
        let next = self.next_retention_ms.load(Ordering::Relaxed);
        if now < next {
            return false;
        }
        let interval = self.config.retention_check_interval_ms.max(0);
        self.next_retention_ms
            .store(now.saturating_add(interval), Ordering::Relaxed);
        true
    }

    /// Moves the log start as retention requires; true when it moved.
    pub(super) async fn retain(
        &self,
        topic: &Topic,
        partition: u32,
        policy: TopicPolicy,
        listed: &PartitionChunks,
    ) -> Result<bool, ServiceError> {
        let Some(target) = plan::retention_target(
            &listed.chunks,
            policy,
            self.clock.now_ms(),
            listed.log_start,
            listed.high_watermark,
        ) else {
            return Ok(false);
        };
        let response = self
            .catalog
            .delete_records(DeleteRecordsRequest {
                topic_id: topic.topic_id.clone(),
                partition,
                offset: target,
            })
            .await?;
        match response.error_code {
            0 => {
                info!(topic = %topic.name, partition, from = listed.log_start, to = response.low_watermark, "retention moved the log start");
                CompactorMetrics::add(&self.metrics.retention_deletions, 1);
                Ok(true)
            }
            UNKNOWN_TOPIC_OR_PARTITION => Ok(false),
            code => Err(ServiceError::Refused {
                call: "DeleteRecords",
                code,
            }),
        }
    }
}
