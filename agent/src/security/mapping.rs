//! Kafka's `ssl.principal.mapping.rules`: from a client certificate's
//! subject (RFC 4514, e.g. `CN=alice,OU=eng,O=Acme`) to a principal name.
//!
//! The syntax is Kafka's: a list of `RULE:<regex>/<replacement>/[L|U]`
//! and `DEFAULT`, separated by commas; the first rule whose regex matches
//! the whole subject gives the name (`$1` refers to a group; `L`/`U`
//! lower- or upper-case it); `DEFAULT` is the subject itself. With no
//! rule matching, the subject is the name.

use regex::Regex;

/// A parse error in the mapping rules.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid ssl.principal.mapping.rules near `{near}`: {reason} (write RULE:<regex>/<replacement>/[L|U] or DEFAULT, separated by commas)"
)]
pub struct MappingRuleError {
    near: String,
    reason: String,
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// Parsed mapping rules; the default maps a subject to itself.
#[derive(Debug, Clone, Default)]
pub struct PrincipalMapping {
    rules: Vec<Rule>,
    source: String,
}

impl PartialEq for PrincipalMapping {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl PrincipalMapping {
    /// Parses Kafka's rule syntax.
    pub fn parse(text: &str) -> Result<Self, MappingRuleError> {
        let mut rules = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) =
                    until_slash(after).ok_or_else(|| error(rest, "no `/` after the regex"))?;
                let (replacement, after) = until_slash(after)
                    .ok_or_else(|| error(rest, "no `/` after the replacement"))?;
                let (case, after) = match after.chars().next() {
                    Some(c @ ('L' | 'U')) => (Some(c), &after[1..]),
                    _ => (None, after),
                };
                let anchored = format!("^(?:{pattern})$");
                let pattern = Regex::new(&anchored).map_err(|e| error(rest, &e.to_string()))?;
                rules.push(Rule::Replace {
                    pattern,
                    replacement,
                    case,
                });
                rest = after;
            } else {
                return Err(error(rest, "expected RULE: or DEFAULT"));
            }
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                rest = after.trim_start();
            } else if !rest.is_empty() {
                return Err(error(rest, "expected `,` between rules"));
            }
        }
        Ok(Self {
            rules,
            source: text.to_string(),
        })
    }

    /// The principal name of a certificate subject.
    pub fn map(&self, subject: &str) -> String {
        for rule in &self.rules {
            match rule {
                Rule::Default => return subject.to_string(),
                Rule::Replace {
                    pattern,
                    replacement,
                    case,
                } => {
                    if let Some(captures) = pattern.captures(subject) {
                        let mut name = String::new();
                        captures.expand(replacement, &mut name);
                        return match case {
                            Some('L') => name.to_lowercase(),
                            Some('U') => name.to_uppercase(),
                            _ => name,
                        };
                    }
                }
            }
        }
        subject.to_string()
    }
}

/// The text up to the next unescaped `/` (with `\/` unescaped) and what
/// follows that slash.
fn until_slash(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if text[i + 1..].starts_with('/') => {
                out.push('/');
                chars.next();
            }
            '/' => return Some((out, &text[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

fn error(near: &str, reason: &str) -> MappingRuleError {
    MappingRuleError {
        near: near.chars().take(40).collect(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: Kafka's documented examples map as Kafka maps them.
    #[test]
    fn rules_map_like_kafka() {
        let rules = PrincipalMapping::parse(
            r"RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, RULE:^CN=([^,]*),O=(.*)$/$1@$2/, DEFAULT",
        )
        .expect("valid rules");
        assert_eq!(
            rules.map("CN=Kafka-Svc,OU=ServiceUsers,O=Acme"),
            "kafka-svc"
        );
        assert_eq!(rules.map("CN=bob,O=Acme"), "bob@Acme");
        assert_eq!(rules.map("OU=x"), "OU=x");
        assert_eq!(PrincipalMapping::default().map("CN=a"), "CN=a");
        let upper = PrincipalMapping::parse(r"RULE:CN=(\w+)\/x/$1/U").expect("escaped slash");
        assert_eq!(upper.map("CN=ab/x"), "AB");
    }

    /// Goal: malformed rules are refused with a hint, not ignored.
    #[test]
    fn bad_rules_are_errors() {
        for bad in ["RULE:abc", "RULE:(/x/", "NOPE", "DEFAULT DEFAULT"] {
            let e = PrincipalMapping::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("RULE:<regex>"), "{e}");
        }
    }
}
