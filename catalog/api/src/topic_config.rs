//! The registry of topic configs Strata knows: Kafka's topic-level configs
//! with Kafka's defaults, plus Strata's own `strata.*` configs.
//!
//! The catalog stores only the configs set explicitly on a topic; everything
//! else takes the default from this registry. Both the catalog (to validate
//! CreateTopics and AlterConfigs) and the agent (to answer DescribeConfigs and
//! to apply a topic's effective settings) use it, so they never disagree.
//!
//! ```
//! use strata_catalog_api::topic_config::{self, ConfigType};
//!
//! let retention = topic_config::find("retention.ms").expect("a Kafka config");
//! assert_eq!(retention.default, "604800000");
//! assert_eq!(retention.config_type, ConfigType::Long);
//! assert!(topic_config::validate("cleanup.policy", "compact,delete").is_ok());
//! assert!(topic_config::validate("cleanup.policy", "shred").is_err());
//! assert!(topic_config::validate("no.such.config", "1").is_err());
//! ```

/// The type of a config, as DescribeConfigs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigType {
    /// `true` or `false` (case-insensitive).
    Boolean,
    /// Free text, possibly restricted to a set of values.
    String,
    /// A 32-bit signed integer.
    Int,
    /// A 64-bit signed integer.
    Long,
    /// A floating-point number.
    Double,
    /// A comma-separated list.
    List,
    /// A Java class name (kept for completeness: Strata defines none).
    Class,
}

impl ConfigType {
    /// The `config_type` code of the DescribeConfigs response (v3+):
    /// BOOLEAN=1, STRING=2, INT=3, LONG=5, DOUBLE=6, LIST=7, CLASS=8.
    pub fn describe_configs_code(self) -> i8 {
        match self {
            Self::Boolean => 1,
            Self::String => 2,
            Self::Int => 3,
            Self::Long => 5,
            Self::Double => 6,
            Self::List => 7,
            Self::Class => 8,
        }
    }
}

/// How a config's value is checked beyond its type.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// Any value of the type.
    Any,
    /// An integer in `[min, max]`.
    Range { min: i64, max: i64 },
    /// A double in `[min, max]`.
    DoubleRange { min: f64, max: f64 },
    /// Exactly one of these strings (case-sensitive, as in Kafka).
    OneOf(&'static [&'static str]),
    /// A non-empty comma-separated list of these strings.
    ListOf(&'static [&'static str]),
}

/// One topic config Strata knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopicConfigDef {
    /// The dotted Kafka name, e.g. `retention.ms`.
    pub name: &'static str,
    /// The default value, as text, as Kafka's DescribeConfigs shows it.
    pub default: &'static str,
    /// The value's type.
    pub config_type: ConfigType,
    rule: Rule,
}

const LONG_MAX: &str = "9223372036854775807";
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

const fn def(
    name: &'static str,
    default: &'static str,
    config_type: ConfigType,
    rule: Rule,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        default,
        config_type,
        rule,
    }
}

const fn long(name: &'static str, default: &'static str, min: i64) -> TopicConfigDef {
    def(
        name,
        default,
        ConfigType::Long,
        Rule::Range { min, max: i64::MAX },
    )
}

const fn int(name: &'static str, default: &'static str, min: i64) -> TopicConfigDef {
    def(
        name,
        default,
        ConfigType::Int,
        Rule::Range {
            min,
            max: i32::MAX as i64,
        },
    )
}

const fn boolean(name: &'static str, default: &'static str) -> TopicConfigDef {
    def(name, default, ConfigType::Boolean, Rule::Any)
}

/// Every topic config Strata accepts, sorted by name.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        "delete",
        ConfigType::List,
        Rule::ListOf(&["delete", "compact"]),
    ),
    int("compression.gzip.level", "-1", -1),
    int("compression.lz4.level", "9", 1),
    def(
        "compression.type",
        "producer",
        ConfigType::String,
        Rule::OneOf(COMPRESSION_TYPES),
    ),
    int("compression.zstd.level", "3", -131072),
    long("delete.retention.ms", "86400000", 0),
    long("file.delete.delay.ms", "60000", 0),
    long("flush.messages", LONG_MAX, 1),
    long("flush.ms", LONG_MAX, 0),
    def(
        "follower.replication.throttled.replicas",
        "",
        ConfigType::List,
        Rule::Any,
    ),
    int("index.interval.bytes", "4096", 0),
    def(
        "leader.replication.throttled.replicas",
        "",
        ConfigType::List,
        Rule::Any,
    ),
    long("local.retention.bytes", "-2", -2),
    long("local.retention.ms", "-2", -2),
    long("max.compaction.lag.ms", LONG_MAX, 1),
    int("max.message.bytes", "1048588", 0),
    boolean("message.downconversion.enable", "true"),
    long("message.timestamp.after.max.ms", LONG_MAX, 0),
    long("message.timestamp.before.max.ms", LONG_MAX, 0),
    long("message.timestamp.difference.max.ms", LONG_MAX, 0),
    def(
        "message.timestamp.type",
        "CreateTime",
        ConfigType::String,
        Rule::OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    def(
        "min.cleanable.dirty.ratio",
        "0.5",
        ConfigType::Double,
        Rule::DoubleRange { min: 0.0, max: 1.0 },
    ),
    long("min.compaction.lag.ms", "0", 0),
    int("min.insync.replicas", "1", 1),
    boolean("preallocate", "false"),
    boolean("remote.log.copy.disable", "false"),
    boolean("remote.log.delete.on.disable", "false"),
    boolean("remote.storage.enable", "false"),
    long("retention.bytes", "-1", i64::MIN),
    long("retention.ms", "604800000", -1),
    int("segment.bytes", "1073741824", 14),
    int("segment.index.bytes", "10485760", 4),
    long("segment.jitter.ms", "0", 0),
    long("segment.ms", "604800000", 1),
    long("strata.compaction.age.ms", "3600000", 0),
    boolean("unclean.leader.election.enable", "false"),
];

/// The definition of `name`, if Strata knows that config.
pub fn find(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS
        .binary_search_by(|d| d.name.cmp(name))
        .ok()
        .map(|i| &TOPIC_CONFIGS[i])
}

/// The default value of `name`, if Strata knows that config.
pub fn default_value(name: &str) -> Option<&'static str> {
    find(name).map(|d| d.default)
}

/// Checks that `name` is a known topic config and `value` is valid for it.
///
/// The error is a message for the client (it goes into the INVALID_CONFIG
/// response's error message).
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let def = find(name).ok_or_else(|| format!("unknown topic config {name:?}"))?;
    def.validate(value)
}

impl TopicConfigDef {
    /// Checks `value` against this config's type and allowed values.
    pub fn validate(&self, value: &str) -> Result<(), String> {
        let name = self.name;
        let trimmed = value.trim();
        match self.config_type {
            ConfigType::Boolean => {
                if !trimmed.eq_ignore_ascii_case("true") && !trimmed.eq_ignore_ascii_case("false") {
                    return Err(format!("{name} must be true or false, got {value:?}"));
                }
            }
            ConfigType::Int | ConfigType::Long => {
                let parsed = trimmed
                    .parse::<i64>()
                    .map_err(|_| format!("{name} must be an integer, got {value:?}"))?;
                let in_type = self.config_type == ConfigType::Long || i32::try_from(parsed).is_ok();
                if !in_type {
                    return Err(format!("{name} must be a 32-bit integer, got {value:?}"));
                }
                if let Rule::Range { min, max } = self.rule
                    && !(min..=max).contains(&parsed)
                {
                    return Err(format!("{name} must be in [{min}, {max}], got {parsed}"));
                }
            }
            ConfigType::Double => {
                let parsed = trimmed
                    .parse::<f64>()
                    .map_err(|_| format!("{name} must be a number, got {value:?}"))?;
                if let Rule::DoubleRange { min, max } = self.rule
                    && !(min..=max).contains(&parsed)
                {
                    return Err(format!("{name} must be in [{min}, {max}], got {parsed}"));
                }
            }
            ConfigType::String | ConfigType::Class => {
                if let Rule::OneOf(allowed) = self.rule
                    && !allowed.contains(&trimmed)
                {
                    return Err(format!("{name} must be one of {allowed:?}, got {value:?}"));
                }
            }
            ConfigType::List => {
                if let Rule::ListOf(allowed) = self.rule {
                    validate_list(name, value, allowed)?;
                }
            }
        }
        Ok(())
    }
}

fn validate_list(name: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    let items: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(format!("{name} must not be empty"));
    }
    match items.iter().find(|item| !allowed.contains(item)) {
        Some(bad) => Err(format!("{name} values must be in {allowed:?}, got {bad:?}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_sorted_and_unique() {
        // `find` binary-searches, so the table must be strictly sorted.
        for pair in TOPIC_CONFIGS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn every_default_is_valid() {
        for def in TOPIC_CONFIGS {
            if def.config_type == ConfigType::List && def.default.is_empty() {
                continue;
            }
            def.validate(def.default)
                .unwrap_or_else(|e| panic!("default of {}: {e}", def.name));
        }
    }

    #[test]
    fn kafka_defaults() {
        assert_eq!(default_value("cleanup.policy"), Some("delete"));
        assert_eq!(default_value("retention.ms"), Some("604800000"));
        assert_eq!(default_value("retention.bytes"), Some("-1"));
        assert_eq!(default_value("max.message.bytes"), Some("1048588"));
        assert_eq!(default_value("message.timestamp.type"), Some("CreateTime"));
        assert_eq!(default_value("min.insync.replicas"), Some("1"));
        assert_eq!(default_value("compression.type"), Some("producer"));
        assert_eq!(
            default_value("unclean.leader.election.enable"),
            Some("false")
        );
        assert_eq!(default_value("strata.compaction.age.ms"), Some("3600000"));
        assert_eq!(default_value("nope"), None);
    }

    #[test]
    fn validates_types_and_ranges() {
        assert!(validate("unknown.config", "1").is_err());
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "ten").is_err());
        assert!(validate("retention.bytes", "-1").is_ok());
        assert!(validate("max.message.bytes", "3000000000").is_err());
        assert!(validate("min.insync.replicas", "0").is_err());
        assert!(validate("segment.ms", "0").is_err());
        assert!(validate("preallocate", "TRUE").is_ok());
        assert!(validate("preallocate", "yes").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "0.25").is_ok());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
    }

    #[test]
    fn validates_enumerations() {
        for ok in ["delete", "compact", "compact,delete", "delete, compact"] {
            assert!(validate("cleanup.policy", ok).is_ok(), "{ok}");
        }
        for bad in ["", "shred", "delete,shred"] {
            assert!(validate("cleanup.policy", bad).is_err(), "{bad}");
        }
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("message.timestamp.type", "logappendtime").is_err());
        for ok in COMPRESSION_TYPES {
            assert!(validate("compression.type", ok).is_ok());
        }
        assert!(validate("compression.type", "brotli").is_err());
    }

    #[test]
    fn describe_configs_codes() {
        assert_eq!(
            find("retention.ms").map(|d| d.config_type.describe_configs_code()),
            Some(5)
        );
        assert_eq!(ConfigType::List.describe_configs_code(), 7);
        assert_eq!(ConfigType::Boolean.describe_configs_code(), 1);
    }
}
