//! `strata txn`: transaction administration through the catalog's gRPC
//! API (the catalog coordinates every transactional id): list, describe,
//! and abort a transaction whose producer is gone. Output is an aligned
//! table, or one JSON document with `--json`.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{Context, bail};
use serde::Serialize;
use strata_catalog_api::proto::{
    AbortTransactionRequest, DescribeTransactionRequest, ListTopicsRequest,
    ListTransactionsRequest, TxnPartition,
};
use strata_catalog_api::{CatalogApi, GrpcCatalog};

use crate::cli::{TxnArgs, TxnCommand};
use crate::group_cmd::table;

/// Kafka's TRANSACTIONAL_ID_NOT_FOUND.
const TRANSACTIONAL_ID_NOT_FOUND: i32 = 105;
/// Kafka's INVALID_TXN_STATE.
const INVALID_TXN_STATE: i32 = 48;

/// Runs one `strata txn` subcommand and prints its result to stdout.
pub(crate) async fn run(args: TxnArgs) -> anyhow::Result<()> {
    let endpoint = if args.catalog.contains("://") {
        args.catalog.clone()
    } else {
        format!("http://{}", args.catalog)
    };
    let catalog = GrpcCatalog::connect_lazy(&endpoint)
        .with_context(|| format!("`{endpoint}` is not a catalog endpoint URL"))?;
    let output = match args.command {
        TxnCommand::List {
            state,
            open_longer_than_ms,
        } => list(&catalog, state, open_longer_than_ms, args.json).await?,
        TxnCommand::Describe { transactional_id } => {
            describe(&catalog, &transactional_id, args.json).await?
        }
        TxnCommand::Abort { transactional_id } => {
            abort(&catalog, &transactional_id, args.json).await?
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

fn to_json(value: &impl Serialize) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value).context("cannot render JSON")?;
    text.push('\n');
    Ok(text)
}

fn unreachable_catalog(endpoint_error: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "the catalog did not answer ({}): check --catalog / STRATA_CATALOG",
        endpoint_error.message()
    )
}

#[derive(Debug, Serialize)]
struct Listing {
    transactional_id: String,
    producer_id: i64,
    state: String,
}

async fn list(
    catalog: &GrpcCatalog,
    states: Vec<String>,
    open_longer_than_ms: Option<i64>,
    json: bool,
) -> anyhow::Result<String> {
    let response = catalog
        .list_transactions(ListTransactionsRequest {
            states,
            producer_ids: Vec::new(),
            duration_min_ms: open_longer_than_ms.unwrap_or(-1),
        })
        .await
        .map_err(unreachable_catalog)?;
    if response.error_code != 0 {
        bail!("the catalog answered error code {}", response.error_code);
    }
    let listings: Vec<Listing> = response
        .transactions
        .into_iter()
        .map(|t| Listing {
            transactional_id: t.transactional_id,
            producer_id: t.producer_id,
            state: t.state,
        })
        .collect();
    if json {
        return to_json(&serde_json::json!({ "transactions": listings }));
    }
    let rows: Vec<Vec<String>> = listings
        .iter()
        .map(|l| {
            vec![
                l.transactional_id.clone(),
                l.producer_id.to_string(),
                l.state.clone(),
            ]
        })
        .collect();
    Ok(table::render(
        &["TRANSACTIONAL ID", "PRODUCER ID", "STATE"],
        &rows,
    ))
}

#[derive(Debug, Serialize)]
struct PartitionRef {
    topic: String,
    partition: u32,
}

/// Topic names for the partitions (a deleted topic shows its id).
async fn names(
    catalog: &GrpcCatalog,
    partitions: &[TxnPartition],
) -> anyhow::Result<Vec<PartitionRef>> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let topics = catalog
        .list_topics(ListTopicsRequest { names: Vec::new() })
        .await
        .map_err(unreachable_catalog)?
        .topics;
    let by_id: HashMap<Vec<u8>, String> =
        topics.into_iter().map(|t| (t.topic_id, t.name)).collect();
    Ok(partitions
        .iter()
        .map(|p| PartitionRef {
            topic: by_id.get(&p.topic_id).cloned().unwrap_or_else(|| {
                let hex: String = p.topic_id.iter().map(|b| format!("{b:02x}")).collect();
                format!("deleted topic {hex}")
            }),
            partition: p.partition,
        })
        .collect())
}

#[derive(Debug, Serialize)]
struct Description {
    transactional_id: String,
    state: String,
    producer_id: i64,
    producer_epoch: i32,
    transaction_timeout_ms: i32,
    /// When the open transaction began (milliseconds since the epoch).
    transaction_start_ms: Option<i64>,
    partitions: Vec<PartitionRef>,
}

async fn describe(
    catalog: &GrpcCatalog,
    transactional_id: &str,
    json: bool,
) -> anyhow::Result<String> {
    let response = catalog
        .describe_transaction(DescribeTransactionRequest {
            transactional_id: transactional_id.to_string(),
        })
        .await
        .map_err(unreachable_catalog)?;
    match response.error_code {
        0 => {}
        TRANSACTIONAL_ID_NOT_FOUND => bail!(
            "transactional id {transactional_id:?} is unknown: `strata txn list` shows the known ones"
        ),
        code => bail!("the catalog answered error code {code}"),
    }
    let description = Description {
        transactional_id: transactional_id.to_string(),
        state: response.state,
        producer_id: response.producer_id,
        producer_epoch: response.producer_epoch,
        transaction_timeout_ms: response.transaction_timeout_ms,
        transaction_start_ms: (response.transaction_start_ms >= 0)
            .then_some(response.transaction_start_ms),
        partitions: names(catalog, &response.partitions).await?,
    };
    if json {
        return to_json(&description);
    }
    let start = description
        .transaction_start_ms
        .map_or_else(|| "-".to_string(), crate::group_cmd::format_datetime_ms);
    let partitions = description
        .partitions
        .iter()
        .map(|p| format!("{}-{}", p.topic, p.partition))
        .collect::<Vec<_>>()
        .join(",");
    let rows = vec![vec![
        description.transactional_id.clone(),
        description.state.clone(),
        description.producer_id.to_string(),
        description.producer_epoch.to_string(),
        description.transaction_timeout_ms.to_string(),
        start,
        if partitions.is_empty() {
            "-".to_string()
        } else {
            partitions
        },
    ]];
    Ok(table::render(
        &[
            "TRANSACTIONAL ID",
            "STATE",
            "PRODUCER ID",
            "EPOCH",
            "TIMEOUT MS",
            "STARTED",
            "PARTITIONS",
        ],
        &rows,
    ))
}

#[derive(Debug, Serialize)]
struct Aborted {
    transactional_id: String,
    producer_id: i64,
    /// The bumped epoch: the aborted producer's requests are fenced.
    producer_epoch: i32,
    partitions: Vec<PartitionRef>,
}

async fn abort(
    catalog: &GrpcCatalog,
    transactional_id: &str,
    json: bool,
) -> anyhow::Result<String> {
    let response = catalog
        .abort_transaction(AbortTransactionRequest {
            transactional_id: transactional_id.to_string(),
        })
        .await
        .map_err(unreachable_catalog)?;
    match response.error_code {
        0 => {}
        TRANSACTIONAL_ID_NOT_FOUND => bail!(
            "transactional id {transactional_id:?} is unknown: `strata txn list` shows the known ones"
        ),
        INVALID_TXN_STATE => bail!(
            "transactional id {transactional_id:?} has no open transaction: nothing to abort \
             (`strata txn describe {transactional_id}` shows its state)"
        ),
        code => bail!("the catalog answered error code {code}"),
    }
    let aborted = Aborted {
        transactional_id: transactional_id.to_string(),
        producer_id: response.producer_id,
        producer_epoch: response.producer_epoch,
        partitions: names(catalog, &response.partitions).await?,
    };
    if json {
        return to_json(&aborted);
    }
    Ok(format!(
        "aborted the open transaction of {:?}: ABORT markers in {} partition(s); producer {} \
         is now at epoch {}\n",
        aborted.transactional_id,
        aborted.partitions.len(),
        aborted.producer_id,
        aborted.producer_epoch
    ))
}
