//! `${...}` in Flume values. Flume (1.10 and later; earlier with
//! `EnvVarResolverProperties`) replaces `${env:NAME}` with an environment
//! variable, `${sys:NAME}` with a Java system property, and `${NAME}` with
//! another property of the configuration files (or, in older versions, an
//! environment variable); config filters use `${filter['key']}`.
//!
//! Sluice replaces `${NAME}` from the environment when it loads its file,
//! so environment references are kept as references; a reference to a
//! property of the same file is replaced by that property's value now;
//! system properties and config filters are reported.

use super::{Finding, Severity};
use crate::import::properties::Property;

/// The properties with their references rewritten, whether any reference
/// is kept for Sluice to replace, and the findings.
pub(super) fn resolve(props: &[Property], agent: &str) -> (Vec<Property>, bool, Vec<Finding>) {
    let own = format!("{agent}.");
    let mut findings = Vec::new();
    let mut kept = false;
    let lookup = |name: &str| {
        props
            .iter()
            .rev()
            .find(|p| p.key == name)
            .map(|p| p.value.clone())
    };
    let out = props
        .iter()
        .map(|p| {
            if !p.key.starts_with(&own) || !p.value.contains("${") {
                return p.clone();
            }
            let mut value = String::new();
            let mut rest = p.value.as_str();
            while let Some(at) = rest.find("${") {
                value.push_str(&rest[..at]);
                let tail = &rest[at..];
                let Some(end) = tail.find('}') else {
                    value.push_str(tail);
                    rest = "";
                    break;
                };
                let inner = &tail[2..end];
                let whole = &tail[..=end];
                let mut note = |severity, message: String| {
                    findings.push(Finding {
                        severity,
                        line: Some(p.line),
                        key: p.key.clone(),
                        message,
                    });
                };
                if let Some(name) = inner.strip_prefix("env:").filter(|n| valid(n)) {
                    value.push_str(&format!("${{{name}}}"));
                    kept = true;
                    note(Severity::Note, format!("`{whole}` is kept as a reference to the environment variable {name}, which Sluice replaces when it loads the file"));
                } else if let Some(name) = inner.strip_prefix("sys:").filter(|n| valid(n)) {
                    value.push_str(&format!("${{{name}}}"));
                    kept = true;
                    note(Severity::Unmapped, format!("`{whole}` is a Java system property; Sluice reads environment variables: set {name} in the agent's environment"));
                } else if valid(inner) {
                    match lookup(inner) {
                        Some(v) => {
                            value.push_str(&v);
                            note(Severity::Note, format!("`{whole}` replaced by the value of property `{inner}` of the file"));
                        }
                        None => {
                            value.push_str(whole);
                            kept = true;
                            note(Severity::Note, format!("`{whole}` is kept as a reference to the environment variable {inner}, which Sluice replaces when it loads the file"));
                        }
                    }
                } else {
                    value.push_str(whole);
                    let what = if inner.contains('[') {
                        "a config filter reference: Sluice has no config filters; put the value in an environment variable (`${NAME}`) or, for Kafka secrets, `{ file = ... }`"
                    } else {
                        "a lookup Sluice does not have: write the value"
                    };
                    note(Severity::Unmapped, format!("`{whole}` is {what}"));
                }
                rest = &tail[end + 1..];
            }
            value.push_str(rest);
            Property {
                key: p.key.clone(),
                value,
                line: p.line,
            }
        })
        .collect();
    (out, kept, findings)
}

/// Whether `name` is a variable name Sluice's interpolation reads.
fn valid(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::properties::parse;

    #[test]
    fn references_are_kept_resolved_or_reported() {
        let props = parse(
            "NC_PORT = 44444\n\
             a1.sources.r1.port = ${NC_PORT}\n\
             a1.sources.r1.bind = ${env:BIND_ADDR}\n\
             a1.sources.r1.dir = /data/${HOME_DIR}/x\n\
             a1.sources.r1.user = ${sys:user.name}\n\
             a1.sources.r1.pw = ${f1['pw']}\n\
             a1.sources.r1.java = ${sys:JAVA}\n\
             other.x = ${env:IGNORED}\n",
        )
        .unwrap();
        let (out, kept, findings) = resolve(&props, "a1");
        let value = |k: &str| out.iter().find(|p| p.key == k).unwrap().value.clone();
        assert_eq!(value("a1.sources.r1.port"), "44444");
        assert_eq!(value("a1.sources.r1.bind"), "${BIND_ADDR}");
        assert_eq!(value("a1.sources.r1.dir"), "/data/${HOME_DIR}/x");
        assert_eq!(value("a1.sources.r1.user"), "${sys:user.name}");
        assert_eq!(value("a1.sources.r1.pw"), "${f1['pw']}");
        assert_eq!(value("a1.sources.r1.java"), "${JAVA}");
        assert_eq!(value("other.x"), "${env:IGNORED}");
        assert!(kept);
        let unmapped = findings
            .iter()
            .filter(|f| f.severity == Severity::Unmapped)
            .count();
        assert_eq!(unmapped, 3, "{findings:?}");
    }
}
