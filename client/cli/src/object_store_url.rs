//! `--object-store` URLs and the stores they open: `s3://bucket/prefix`
//! (AWS S3, MinIO and other S3-compatible servers) and `file:///dir`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use strata_agent::SyncedLocalStore;

use crate::config::S3Settings;

/// Where objects live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ObjectStoreUrl {
    /// A bucket, and a key prefix inside it (empty = the whole bucket).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix without leading or trailing `/`.
        prefix: String,
    },
    /// A local (or mounted) directory.
    File {
        /// The directory.
        path: PathBuf,
    },
}

impl ObjectStoreUrl {
    /// Parses `s3://bucket[/prefix]` or `file:///absolute/dir`.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        let url = url::Url::parse(text).with_context(|| {
            format!("`{text}` is not an object store URL: use s3://bucket/prefix or file:///dir")
        })?;
        match url.scheme() {
            "s3" | "s3a" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .with_context(|| format!("`{text}` names no bucket: use s3://bucket/prefix"))?;
                Ok(Self::S3 {
                    bucket: bucket.to_string(),
                    prefix: url.path().trim_matches('/').to_string(),
                })
            }
            "file" => {
                let path = url.to_file_path().map_err(|()| {
                    anyhow::anyhow!("`{text}` is not a local path: use file:///absolute/dir")
                })?;
                Ok(Self::File { path })
            }
            other => anyhow::bail!(
                "unsupported object store scheme `{other}:` in `{text}`: use s3://bucket/prefix \
                 (S3, MinIO and other S3-compatible servers) or file:///dir"
            ),
        }
    }

    /// Opens the store; keys are relative to the URL's prefix.
    pub(crate) fn open(&self, s3: &S3Settings) -> anyhow::Result<Arc<dyn ObjectStore>> {
        match self {
            Self::S3 { bucket, prefix } => {
                let store = s3_store(bucket, s3)?;
                Ok(with_prefix(store, prefix))
            }
            Self::File { path } => {
                std::fs::create_dir_all(path).with_context(|| {
                    format!("cannot create the object directory {}", path.display())
                })?;
                let store = SyncedLocalStore::new(path).with_context(|| {
                    format!("cannot open the object directory {}", path.display())
                })?;
                Ok(Arc::new(store))
            }
        }
    }
}

impl std::fmt::Display for ObjectStoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::File { path } => write!(f, "file://{}", path.display()),
        }
    }
}

/// `store` seen through `prefix` (unchanged when the prefix is empty).
pub(crate) fn with_prefix<S: ObjectStore>(store: S, prefix: &str) -> Arc<dyn ObjectStore> {
    if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    }
}

/// An S3 client for `bucket`: the standard AWS environment (credentials,
/// region, endpoint, IMDS / ECS / web identity) overlaid with `settings`.
/// Retries live here, in object_store's own retry layer, and nowhere else.
pub(crate) fn s3_store(bucket: &str, settings: &S3Settings) -> anyhow::Result<AmazonS3> {
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry_config(settings))
        .with_client_options(
            ClientOptions::new()
                .with_timeout(settings.request_timeout)
                .with_connect_timeout(settings.connect_timeout),
        );
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &settings.region {
        builder = builder.with_region(region);
    }
    if let Some(path_style) = settings.path_style {
        builder = builder.with_virtual_hosted_style_request(!path_style);
    }
    let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
    let plain_http = endpoint.is_some_and(|e| e.starts_with("http://"));
    if let Some(allow_http) = settings.allow_http.or(plain_http.then_some(true)) {
        builder = builder.with_allow_http(allow_http);
    }
    builder.build().with_context(|| {
        format!(
            "cannot set up the S3 client for bucket `{bucket}` (check --s3-endpoint, \
             --s3-region and the AWS_* environment)"
        )
    })
}

fn retry_config(settings: &S3Settings) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: settings.retries_max,
        retry_timeout: settings.retry_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_urls_with_and_without_prefix() {
        assert_eq!(
            ObjectStoreUrl::parse("s3://data/strata/prod/").expect("valid"),
            ObjectStoreUrl::S3 {
                bucket: "data".to_string(),
                prefix: "strata/prod".to_string()
            }
        );
        assert_eq!(
            ObjectStoreUrl::parse("s3://data").expect("valid"),
            ObjectStoreUrl::S3 {
                bucket: "data".to_string(),
                prefix: String::new()
            }
        );
    }

    #[test]
    fn parses_file_urls() {
        assert_eq!(
            ObjectStoreUrl::parse("file:///var/lib/strata").expect("valid"),
            ObjectStoreUrl::File {
                path: PathBuf::from("/var/lib/strata")
            }
        );
    }

    #[test]
    fn rejects_other_schemes_with_a_hint() {
        let error = ObjectStoreUrl::parse("gs://bucket").expect_err("unsupported");
        assert!(error.to_string().contains("s3://bucket/prefix"), "{error}");
        assert!(ObjectStoreUrl::parse("/just/a/path").is_err());
    }

    #[test]
    fn builds_an_s3_client_for_a_plain_http_endpoint() {
        let settings = crate::config::S3Settings::resolve(crate::config::S3Options {
            endpoint: Some("http://127.0.0.1:1".to_string()),
            region: Some("us-east-1".to_string()),
            ..Default::default()
        });
        s3_store("bucket", &settings).expect("allow_http follows the http:// endpoint");
    }
}
