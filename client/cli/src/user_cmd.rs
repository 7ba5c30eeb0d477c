//! `strata user`: SASL users (SCRAM credentials in the catalog).
//!
//! Talks to the catalog's gRPC endpoint (an operator tool, like Kafka's
//! `kafka-configs --alter --add-config SCRAM-SHA-512=...`). The password is
//! salted and iterated here; only StoredKey and ServerKey reach the catalog.

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use strata_agent::security::scram::{self, ScramCredential, ScramMechanism};
use strata_catalog_api::proto::{
    AlterScramCredentialsRequest, DescribeScramCredentialsRequest, ScramCredential as Stored,
    ScramDeletion,
};
use strata_catalog_api::{CatalogApi, GrpcCatalog};

/// Settings of `strata user`.
#[derive(Debug, Args)]
pub(crate) struct UserArgs {
    /// The catalog's gRPC endpoint (`strata dev` serves it on
    /// --catalog-listen).
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:9093",
        env = "STRATA_CATALOG"
    )]
    pub(crate) catalog: String,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: UserCommand,
}

/// Which SCRAM mechanisms a command applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mechanisms {
    /// SCRAM-SHA-256 and SCRAM-SHA-512.
    Both,
    /// SCRAM-SHA-256 only.
    ScramSha256,
    /// SCRAM-SHA-512 only.
    ScramSha512,
}

impl Mechanisms {
    fn list(self) -> Vec<ScramMechanism> {
        match self {
            Self::Both => vec![ScramMechanism::Sha256, ScramMechanism::Sha512],
            Self::ScramSha256 => vec![ScramMechanism::Sha256],
            Self::ScramSha512 => vec![ScramMechanism::Sha512],
        }
    }
}

/// `strata user` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user or set its password (PLAIN checks the same
    /// credentials).
    Create {
        /// The user name (the principal is `User:<name>`).
        name: String,
        /// The password; prefer --password-stdin or STRATA_USER_PASSWORD
        /// (command lines are visible to other local users).
        #[arg(long, env = "STRATA_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        /// Mechanisms to store credentials for.
        #[arg(long, value_enum, default_value = "both")]
        mechanism: Mechanisms,
        /// PBKDF2 iterations (4096 to 16384).
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
    },
    /// List users and their mechanisms (never a secret).
    List,
    /// Delete a user's credentials.
    Delete {
        /// The user name.
        name: String,
        /// Mechanisms to delete.
        #[arg(long, value_enum, default_value = "both")]
        mechanism: Mechanisms,
    },
}

/// Runs `strata user`.
pub(crate) async fn run(args: UserArgs) -> anyhow::Result<()> {
    let catalog = GrpcCatalog::connect_lazy(&args.catalog).with_context(|| {
        format!(
            "invalid catalog endpoint `{}`: use http://host:port",
            args.catalog
        )
    })?;
    match args.command {
        UserCommand::Create {
            name,
            password,
            password_stdin,
            mechanism,
            iterations,
        } => {
            let password = match (password, password_stdin) {
                (Some(p), _) => p,
                (None, true) => read_stdin_line()?,
                (None, false) => {
                    bail!("give the password with --password-stdin or STRATA_USER_PASSWORD")
                }
            };
            anyhow::ensure!(!password.is_empty(), "the password is empty");
            anyhow::ensure!(
                (scram::ITERATIONS_MIN..=scram::ITERATIONS_MAX).contains(&iterations),
                "--iterations must be between {} and {}",
                scram::ITERATIONS_MIN,
                scram::ITERATIONS_MAX
            );
            let upsertions = mechanism
                .list()
                .into_iter()
                .map(|m| {
                    let credential = ScramCredential::from_password(
                        m,
                        password.as_bytes(),
                        &scram::new_salt(),
                        iterations,
                    );
                    stored(&name, &credential)
                })
                .collect();
            alter(
                &catalog,
                &name,
                AlterScramCredentialsRequest {
                    deletions: vec![],
                    upsertions,
                },
                "created",
                args.json,
            )
            .await
        }
        UserCommand::Delete { name, mechanism } => {
            let deletions = mechanism
                .list()
                .into_iter()
                .map(|m| ScramDeletion {
                    user: name.clone(),
                    mechanism: i32::from(m.kafka_type()),
                })
                .collect();
            alter(
                &catalog,
                &name,
                AlterScramCredentialsRequest {
                    deletions,
                    upsertions: vec![],
                },
                "deleted",
                args.json,
            )
            .await
        }
        UserCommand::List => list(&catalog, args.json).await,
    }
}

fn stored(user: &str, credential: &ScramCredential) -> Stored {
    Stored {
        user: user.to_string(),
        mechanism: i32::from(credential.mechanism.kafka_type()),
        salt: credential.salt.clone(),
        stored_key: credential.stored_key.clone(),
        server_key: credential.server_key.clone(),
        iterations: credential.iterations as i32,
    }
}

fn read_stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn alter(
    catalog: &GrpcCatalog,
    name: &str,
    request: AlterScramCredentialsRequest,
    done: &str,
    json: bool,
) -> anyhow::Result<()> {
    let answer = catalog
        .alter_scram_credentials(request)
        .await
        .context("the catalog did not answer (is it running? see --catalog)")?;
    let result = answer
        .results
        .iter()
        .find(|r| r.user == name)
        .context("the catalog returned no result for the user")?;
    if json {
        let doc = serde_json::json!({
            "user": name,
            "error_code": result.error_code,
            "error_message": result.error_message,
        });
        writeln!(std::io::stdout(), "{doc}")?;
    }
    if result.error_code != 0 {
        bail!(
            "user {name}: {} (Kafka error {})",
            result.error_message,
            result.error_code
        );
    }
    if !json {
        writeln!(std::io::stdout(), "user {name} {done}")?;
    }
    Ok(())
}

async fn list(catalog: &GrpcCatalog, json: bool) -> anyhow::Result<()> {
    let answer = catalog
        .describe_scram_credentials(DescribeScramCredentialsRequest { users: vec![] })
        .await
        .context("the catalog did not answer (is it running? see --catalog)")?;
    let name = |mechanism: i32| {
        i8::try_from(mechanism)
            .ok()
            .and_then(ScramMechanism::from_kafka_type)
            .map_or("unknown", |m| m.name())
    };
    let mut out = std::io::stdout().lock();
    if json {
        let users: Vec<_> = answer
            .users
            .iter()
            .map(|u| {
                serde_json::json!({
                    "user": u.user,
                    "credentials": u.credentials.iter().map(|c| serde_json::json!({
                        "mechanism": name(c.mechanism),
                        "iterations": c.iterations,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::json!({ "users": users }))?;
        return Ok(());
    }
    writeln!(out, "{:<32} MECHANISMS", "USER")?;
    for user in &answer.users {
        let mechanisms: Vec<String> = user
            .credentials
            .iter()
            .map(|c| format!("{} ({} iterations)", name(c.mechanism), c.iterations))
            .collect();
        writeln!(out, "{:<32} {}", user.user, mechanisms.join(", "))?;
    }
    Ok(())
}
