//! Names people and collectors give things, checked once where they come in (a request, a form, a
//! remote write's `Hostname`) and carried typed from there: a service that takes a `NodeName` never
//! checks it again, and a site's name cannot be passed where a node's is asked for.

use std::fmt;

/// A name that does not follow its rule: the field it came in, and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// The field, as the client named it (`name`, `Hostname`, `meter`).
    pub field: String,
    /// What the rule is.
    pub message: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for NameError {}

/// Names in URLs and logs (nodes, meters): 1 to 200 of `A-Z a-z 0-9 - _ .`.
fn url_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

const URL_SAFE: &str = "must be 1 to 200 of A-Z a-z 0-9 - _ .";

macro_rules! name {
    ($(#[$doc:meta])* $name:ident, $valid:expr, $rule:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The name `text` given in `field`, if it follows the rule.
            pub fn parse(field: &str, text: &str) -> Result<Self, NameError> {
                if ($valid)(text) {
                    Ok(Self(text.to_owned()))
                } else {
                    Err(NameError {
                        field: field.to_owned(),
                        message: $rule,
                    })
                }
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }
    };
}

name!(
    /// A node's name (its host name): 1 to 200 of `A-Z a-z 0-9 - _ .`.
    NodeName,
    url_safe,
    URL_SAFE
);
name!(
    /// A facility meter's name: 1 to 200 of `A-Z a-z 0-9 - _ .`.
    MeterName,
    url_safe,
    URL_SAFE
);
name!(
    /// A site's name: 1 to 100 characters, not only blanks.
    SiteName,
    |s: &str| !s.trim().is_empty() && s.len() <= 100,
    "must be 1 to 100 characters"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_follows_its_rule_and_names_the_field() {
        assert_eq!(
            NodeName::parse("name", "gpu-01.a_b").map(|n| n.to_string()),
            Ok("gpu-01.a_b".into())
        );
        let e = NodeName::parse("Hostname", "gpu 01").expect_err("a space");
        assert_eq!(
            e.to_string(),
            "Hostname: must be 1 to 200 of A-Z a-z 0-9 - _ ."
        );
        assert!(MeterName::parse("meter", "hall/2").is_err());
        assert!(MeterName::parse("meter", &"m".repeat(201)).is_err());
        assert!(SiteName::parse("name", "Zürich Nord").is_ok());
        assert_eq!(
            SiteName::parse("name", "  ")
                .expect_err("blank")
                .to_string(),
            "name: must be 1 to 100 characters"
        );
    }
}
