//! `strata admin`: one-off operations on a deployment.
//!
//! `init-bucket` checks that an object store has what Strata relies on —
//! the bucket exists and is writable, range GETs return the requested
//! bytes, and a conditional PUT (`If-None-Match: *`) refuses to overwrite —
//! and with `--create` creates a missing bucket first.

use std::io::Write;

use anyhow::Context;
use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::cli::{AdminArgs, AdminCommand, InitBucketArgs};
use crate::config::{ConfigFile, S3Settings};
use crate::object_store_url::{ObjectStoreUrl, s3_store, with_prefix};

/// The bytes of the probe object; the range check reads a slice of them.
const PROBE: &[u8] = b"strata init-bucket probe: 0123456789";

/// Runs an admin command.
pub(crate) async fn run(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::InitBucket(args) => init_bucket(args).await,
    }
}

/// The outcome of one check, printed as one line.
#[derive(Debug)]
struct Check {
    name: &'static str,
    /// `Ok(detail)` when the feature works; `Err(what is missing)` otherwise.
    outcome: Result<String, String>,
}

async fn init_bucket(args: InitBucketArgs) -> anyhow::Result<()> {
    let mut report = String::new();
    let result = check_object_store(args, &mut report).await;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(report.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    result
}

/// Runs every check, appending one line per check to `report`.
async fn check_object_store(args: InitBucketArgs, report: &mut String) -> anyhow::Result<()> {
    let file = ConfigFile::load(args.config.as_deref())?;
    let url_text = args
        .object_store
        .or(file.agent.object_store)
        .context("pass --object-store s3://bucket/prefix (or file:///dir)")?;
    let url = ObjectStoreUrl::parse(&url_text)?;
    let s3 = S3Settings::resolve(args.s3.or(file.s3));
    if args.check_config {
        if let ObjectStoreUrl::S3 { bucket, .. } = &url {
            s3_store(bucket, &s3)?;
        }
        report.push_str(&format!(
            "object store: {url} (create: {})\n{s3:#?}\nconfiguration ok\n",
            args.create
        ));
        return Ok(());
    }
    report.push_str(&format!("checking {url}\n"));
    let store = match &url {
        ObjectStoreUrl::S3 { bucket, prefix } => {
            let client = s3_store(bucket, &s3)?;
            let bucket_check = ensure_bucket(&client, bucket, &s3, args.create).await;
            report_check(report, &bucket_check);
            anyhow::ensure!(
                bucket_check.outcome.is_ok(),
                "the bucket is not usable: see above"
            );
            with_prefix(client, prefix)
        }
        ObjectStoreUrl::File { .. } => url.open(&s3)?,
    };
    let checks = probe(store.as_ref()).await;
    checks.iter().for_each(|check| report_check(report, check));
    let missing: Vec<&str> = checks
        .iter()
        .filter(|c| c.outcome.is_err())
        .map(|c| c.name)
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{url} cannot hold Strata data; missing: {}",
        missing.join(", ")
    );
    report.push_str(&format!("{url} is ready for Strata\n"));
    Ok(())
}

fn report_check(report: &mut String, check: &Check) {
    let line = match &check.outcome {
        Ok(detail) => format!("ok       {}: {detail}\n", check.name),
        Err(missing) => format!("MISSING  {}: {missing}\n", check.name),
    };
    report.push_str(&line);
}

/// Checks that the bucket exists; creates it when asked to.
async fn ensure_bucket(client: &AmazonS3, bucket: &str, s3: &S3Settings, create: bool) -> Check {
    let name = "bucket";
    let outcome = match bucket_exists(client).await {
        Ok(true) => Ok(format!("`{bucket}` exists")),
        Ok(false) if create => create_bucket(client, bucket, s3)
            .await
            .map(|()| format!("`{bucket}` created"))
            .map_err(|e| format!("could not create `{bucket}`: {e:#}")),
        Ok(false) => Err(format!(
            "`{bucket}` does not exist: create it (rerun with --create, or in your cloud console)"
        )),
        Err(e) => Err(format!(
            "cannot reach `{bucket}`: {e} (check the endpoint, region and credentials)"
        )),
    };
    Check { name, outcome }
}

/// Lists one key: a missing bucket answers 404 (NoSuchBucket).
async fn bucket_exists(client: &AmazonS3) -> Result<bool, object_store::Error> {
    use futures::TryStreamExt;
    let mut listing = client.list(None);
    match listing.try_next().await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) if e.to_string().contains("NoSuchBucket") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates the bucket with a PUT Bucket request, signed by object_store's
/// own signer (a presigned URL) so the same credential chain applies.
async fn create_bucket(client: &AmazonS3, bucket: &str, s3: &S3Settings) -> anyhow::Result<()> {
    let url = client
        .signed_url(
            reqwest::Method::PUT,
            &Path::from(""),
            std::time::Duration::from_secs(60),
        )
        .await
        .context("cannot sign the create-bucket request")?;
    let http = reqwest::Client::builder()
        .timeout(s3.request_timeout)
        .build()
        .context("cannot build an HTTP client")?;
    let body = location_constraint(s3.region.as_deref());
    let response = http
        .put(url)
        .header(reqwest::header::CONTENT_LENGTH, body.len())
        .body(body)
        .send()
        .await
        .with_context(|| format!("PUT bucket `{bucket}` failed"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() || body.contains("BucketAlreadyOwnedByYou") {
        return Ok(());
    }
    anyhow::bail!("the server answered {status}: {}", body.trim())
}

/// The body of PUT Bucket: outside us-east-1, S3 wants the region named.
fn location_constraint(region: Option<&str>) -> String {
    let region = region
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
    match region.as_deref() {
        None | Some("") | Some("us-east-1") => String::new(),
        Some(region) => format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        ),
    }
}

/// Writes a probe object, reads a range of it, tries to overwrite it with a
/// conditional PUT, and deletes it.
async fn probe(store: &dyn ObjectStore) -> Vec<Check> {
    let key = Path::from(format!(
        "_strata/probe/{}.probe",
        strata_catalog_api::clock::IdGen::ulid(&strata_catalog_api::clock::SystemIds)
    ));
    let write = put_create(store, &key)
        .await
        .map(|()| "PUT works".to_string());
    let failed = write.is_err();
    let mut checks = vec![Check {
        name: "write",
        outcome: write.map_err(|e| format!("cannot write {key}: {e} (check permissions)")),
    }];
    if failed {
        return checks;
    }
    checks.push(Check {
        name: "range GET",
        outcome: range_get(store, &key).await,
    });
    checks.push(Check {
        name: "conditional PUT",
        outcome: conditional_put(store, &key).await,
    });
    checks.push(Check {
        name: "delete",
        outcome: store
            .delete(&key)
            .await
            .map(|()| "DELETE works".to_string())
            .map_err(|e| format!("cannot delete {key}: {e} (the compactor needs delete)")),
    });
    checks
}

async fn put_create(store: &dyn ObjectStore, key: &Path) -> object_store::Result<()> {
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let payload = PutPayload::from(Bytes::from_static(PROBE));
    store.put_opts(key, payload, options).await.map(|_| ())
}

async fn range_get(store: &dyn ObjectStore, key: &Path) -> Result<String, String> {
    let range = 10..20;
    let want = &PROBE[10..20];
    match store.get_range(key, range).await {
        Ok(bytes) if bytes.as_ref() == want => Ok("byte ranges are honoured".to_string()),
        Ok(bytes) => Err(format!(
            "asked for bytes 10..20 and got {} other bytes: the server ignores Range headers",
            bytes.len()
        )),
        Err(e) => Err(format!("range GET failed: {e}")),
    }
}

async fn conditional_put(store: &dyn ObjectStore, key: &Path) -> Result<String, String> {
    match put_create(store, key).await {
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => {
            Ok("If-None-Match refuses to overwrite".to_string())
        }
        Ok(()) => Err(
            "a second create-only PUT overwrote the object: the server ignores If-None-Match, \
             so agents could overwrite each other's objects; use a server with conditional \
             writes (AWS S3, MinIO, ...)"
                .to_string(),
        ),
        Err(e) => Err(format!("create-only PUT failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn an_in_memory_store_has_every_feature() {
        let store = InMemory::new();
        let checks = probe(&store).await;
        assert_eq!(checks.len(), 4);
        for check in checks {
            assert!(check.outcome.is_ok(), "{check:?}");
        }
    }

    #[test]
    fn location_constraint_names_regions_other_than_us_east_1() {
        assert_eq!(location_constraint(Some("us-east-1")), "");
        assert!(location_constraint(Some("eu-west-1")).contains(">eu-west-1<"));
    }
}
