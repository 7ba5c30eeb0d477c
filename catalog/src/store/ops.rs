//! Every store write operation, written once over the row traits of
//! [`crate::store::rows`]; the backends supply the rows and run
//! [`apply`] inside their write transaction.

pub(crate) mod agents;
pub(crate) mod compaction;
pub(crate) mod groups;
pub(crate) mod producers;
pub(crate) mod topics;
pub(crate) mod transactions;

use crate::store::command::{Answer, Command, answered};
use crate::store::rows::StoreRows;

/// Runs one write command over `rows` (inside the writer's transaction and
/// the command's savepoint); the answer waits for the commit.
pub(crate) async fn apply<R: StoreRows>(rows: &mut R, command: Command) -> Box<dyn Answer> {
    match command {
        Command::CreateTopic(topic, reply) => answered(reply, topics::create(rows, topic).await),
        Command::DeleteTopic(topic, reply) => answered(reply, topics::delete(rows, &topic).await),
        Command::CreatePartitions(name, count, reply) => {
            answered(reply, topics::create_partitions(rows, &name, count).await)
        }
        Command::AlterConfigs(name, change, reply) => {
            answered(reply, topics::alter_configs(rows, &name, change).await)
        }
        Command::CommitSegment(request, reply) => {
            answered(reply, rows.commit_segment(&request).await)
        }
        Command::InitProducerId(request, reply) => {
            answered(reply, producers::init_producer_id(rows, &request).await)
        }
        Command::Transaction(producer, request, reply) => {
            answered(reply, transactions::apply(rows, &producer, &request).await)
        }
        Command::AbortExpiredTransactions(reply) => {
            answered(reply, transactions::abort_expired(rows).await)
        }
        Command::CommitOffsets(group_id, offsets, reply) => answered(
            reply,
            groups::commit_offsets(rows, &group_id, &offsets).await,
        ),
        Command::DeleteOffsets(group_id, partitions, reply) => answered(
            reply,
            groups::delete_offsets(rows, &group_id, &partitions).await,
        ),
        Command::SaveGroup(record, reply) => {
            answered(reply, groups::save_group(rows, &record).await)
        }
        Command::SaveConsumerGroup(record, reply) => {
            answered(reply, groups::save_consumer_group(rows, &record).await)
        }
        Command::DeleteGroup(group_id, reply) => {
            answered(reply, groups::delete_group(rows, &group_id).await)
        }
        Command::ReplaceChunks(request, reply) => {
            answered(reply, compaction::replace_chunks(rows, &request).await)
        }
        Command::DeleteRecords(topic_id, partition, offset, reply) => answered(
            reply,
            compaction::delete_records(rows, topic_id, partition, offset).await,
        ),
        Command::ForgetDeadObjects(keys, reply) => {
            answered(reply, compaction::forget_dead_objects(rows, &keys).await)
        }
        // ---------- agents ----------
        Command::RegisterAgent(registration, reply) => {
            answered(reply, agents::register(rows, &registration).await)
        }
        Command::FenceAgent(agent_id, epoch, reply) => {
            answered(reply, agents::fence(rows, &agent_id, epoch).await)
        }
    }
}
