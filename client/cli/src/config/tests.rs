//! Tests of the layered configuration (flags, STRATA_* variables, TOML).

use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct AgentCli {
    #[command(flatten)]
    agent: AgentOptions,
    #[command(flatten)]
    limits: LimitOptions,
    #[command(flatten)]
    s3: S3Options,
}

fn flags(args: &[&str]) -> AgentCli {
    AgentCli::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))
        .expect("valid flags")
}

#[test]
fn agents_without_ids_get_distinct_ones() {
    // Two agents on one machine listen on different ports; agents on
    // different machines have different host names. Neither pair may
    // share an id (they would fence each other in a loop).
    let a = default_agent_id(None, "host-a", 9092);
    let b = default_agent_id(None, "host-a", 9093);
    let c = default_agent_id(None, "host-b", 9092);
    assert!(a != b && a != c && b != c, "{a} {b} {c}");
    assert_eq!(default_agent_id(Some(7), "host-a", 9092), "agent-7");
    assert!(!machine_name().is_empty());
}

#[test]
fn flags_win_over_the_file_and_the_file_over_defaults() {
    let file = ConfigFile::parse(
        r#"
        [agent]
        object_store = "file:///tmp/objects"
        flush_interval_ms = 250
        node_id = 7

        [s3]
        region = "eu-west-1"
        "#,
    )
    .expect("valid file");
    let cli = flags(&["--flush-interval-ms", "20", "--s3-region", "us-west-2"]);
    let settings = AgentSettings::resolve(
        cli.agent.or(file.agent),
        &LimitOptions::default(),
        &SecurityOptions::default(),
    )
    .expect("complete settings");
    assert_eq!(settings.agent.flush_interval, Duration::from_millis(20));
    assert_eq!(settings.agent.node_id, 7);
    assert_eq!(settings.agent.agent_id, "agent-7");
    assert!(!settings.agent.flush_eager, "production default");
    assert_eq!(settings.catalog, DEFAULT_CATALOG_ENDPOINT);
    let s3 = S3Settings::resolve(cli.s3.or(file.s3));
    assert_eq!(s3.region.as_deref(), Some("us-west-2"));
    assert_eq!(s3.retries_max, DEFAULT_S3_RETRIES_MAX);
}

#[test]
fn production_defaults_turn_the_disk_cache_on() {
    let options = AgentOptions {
        object_store: Some("s3://bucket/prefix".to_string()),
        listen: Some(addr("127.0.0.1:19092")),
        ..AgentOptions::default()
    };
    let settings = AgentSettings::resolve(
        options,
        &LimitOptions::default(),
        &SecurityOptions::default(),
    )
    .expect("complete settings");
    assert_eq!(
        settings.agent.flush_interval,
        Duration::from_millis(DEFAULT_FLUSH_INTERVAL_MS)
    );
    assert_eq!(settings.agent.cache.disk_bytes, DEFAULT_CACHE_DISK_MB << 20);
    let dir = settings.agent.cache.disk_dir.expect("disk tier on");
    assert!(dir.ends_with("strata-cache-19092"), "{}", dir.display());
}

#[test]
fn limits_come_from_the_agent_section_and_flags() {
    let file = ConfigFile::parse(
        r#"
        [agent]
        object_store = "file:///tmp/objects"
        max_connections_per_ip = 7
        fetch_max_bytes = 1000
        "#,
    )
    .expect("valid file");
    let cli = flags(&["--connections-max-idle-ms", "1500"]);
    let limits = cli.limits.or(file.agent_limits);
    let settings = AgentSettings::resolve(
        cli.agent.or(file.agent),
        &limits,
        &SecurityOptions::default(),
    )
    .expect("complete");
    let limits = &settings.agent.limits;
    assert_eq!(limits.max_connections_per_ip, 7);
    assert_eq!(limits.fetch_max_bytes, 1000);
    assert_eq!(limits.connections_max_idle, Duration::from_millis(1500));
    assert_eq!(limits.message_max_bytes, 1_048_588, "Kafka's default");
    let error = ConfigFile::parse("[agent]\nmax_connection = 5\n").expect_err("typo");
    assert!(format!("{error:#}").contains("max_connection"), "{error:#}");
}

#[test]
fn missing_object_store_says_how_to_set_it() {
    let error = AgentSettings::resolve(
        AgentOptions::default(),
        &LimitOptions::default(),
        &SecurityOptions::default(),
    )
    .expect_err("incomplete");
    assert!(error.to_string().contains("--object-store"), "{error}");
}

#[test]
fn unknown_keys_in_the_file_are_errors() {
    let error = ConfigFile::parse("[agent]\nflush_interval = 5\n").expect_err("typo");
    assert!(format!("{error:#}").contains("flush_interval"), "{error:#}");
    // Fault injection is a flag only: no file key turns it on.
    for section in ["agent", "catalog"] {
        let text = format!("[{section}]\nfault_injection = true\n");
        ConfigFile::parse(&text).expect_err("fault_injection is not a file key");
    }
    check_fault_injection(true, addr("127.0.0.1:1")).expect("loopback");
    check_fault_injection(true, addr("0.0.0.0:1")).expect_err("not loopback");
    check_fault_injection(false, addr("0.0.0.0:1")).expect("off");
}

#[test]
fn passwords_stay_out_of_logged_settings() {
    let settings = CatalogSettings::resolve(CatalogOptions {
        store: Some("postgres://strata:secret@db:5432/strata".to_string()),
        ..CatalogOptions::default()
    })
    .expect("complete settings");
    let logged = format!("{settings:?}");
    assert!(!logged.contains("secret"), "{logged}");
    assert!(
        logged.contains("postgres://strata:***@db:5432/strata"),
        "{logged}"
    );
    assert_eq!(redact_password("sqlite:///a/b.db"), "sqlite:///a/b.db");
}

#[test]
fn compactor_settings_layer_over_its_defaults() {
    let file = ConfigFile::parse(
        r#"
        [compactor]
        object_store = "file:///tmp/objects"
        gc_grace_ms = 5
        interval_ms = 250
        "#,
    )
    .expect("valid file");
    let flags = CompactorOptions {
        interval_ms: Some(20),
        compactor_id: Some("c-1".into()),
        ..CompactorOptions::default()
    };
    let settings = CompactorSettings::resolve(flags.or(file.compactor)).expect("complete");
    assert_eq!(settings.compactor.interval, Duration::from_millis(20));
    assert_eq!(settings.compactor.gc_grace_ms, 5);
    assert_eq!(settings.compactor.compactor_id, "c-1");
    assert_eq!(settings.compactor.orphan_grace_ms, 3_600_000);
    assert_eq!(settings.catalog, DEFAULT_CATALOG_ENDPOINT);
    let error = CompactorSettings::resolve(CompactorOptions::default()).expect_err("no store");
    assert!(error.to_string().contains("--object-store"), "{error}");
    let id = default_compactor_id();
    assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
}

#[test]
fn host_port_accepts_names_and_ipv6() {
    assert_eq!(
        parse_host_port("agent-1:9092").expect("valid"),
        ("agent-1".to_string(), 9092)
    );
    assert_eq!(
        parse_host_port("[::1]:9092").expect("valid"),
        ("::1".to_string(), 9092)
    );
    assert!(parse_host_port("agent-1").is_err());
}
