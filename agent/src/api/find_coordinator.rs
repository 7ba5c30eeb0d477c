//! FindCoordinator: any agent can coordinate any group or transactional id
//! (group and transaction state live in the catalog), so the answer is the
//! agent that was asked.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::error_code;
use crate::security::RequestContext;
use crate::server::Shared;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Answers FindCoordinator (single key before v4, batched from v4).
pub(crate) fn handle(
    shared: &Arc<Shared>,
    context: &RequestContext,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    // This agent's address on the listener the client came in on.
    let (host, port) = shared
        .config
        .effective_listeners()
        .into_iter()
        .find(|l| *l.name == *context.listener)
        .map(|l| (l.advertise_host, l.advertise_port))
        .unwrap_or_else(|| {
            (
                shared.config.advertise_host.clone(),
                shared.config.advertise_port,
            )
        });
    let node_id = shared.fleet.view().node_id;
    let answer = |key: StrBytes| {
        let mut c = Coordinator::default().with_key(key);
        if matches!(request.key_type, KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION) {
            c.node_id = BrokerId(node_id);
            c.host = str_bytes(&host);
            c.port = i32::from(port);
        } else {
            c.node_id = BrokerId(-1);
            c.port = -1;
            c.error_code = error_code::INVALID_REQUEST;
            c.error_message = Some(str_bytes("unknown coordinator key type"));
        }
        c
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .cloned()
            .map(answer)
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = answer(request.key.clone());
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        response.error_message = c.error_message;
    }
    response
}
