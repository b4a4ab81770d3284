//! Configuration errors: every problem with its file and line, all reported
//! at once.

use std::fmt;
use std::path::PathBuf;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Finds the line of a key path (`["tiers", "gold", "burst"]`) in a YAML
/// source, for problems found after parsing. Walks block-style mappings by
/// indentation; when the last keys sit in a flow mapping (`{ … }`) on their
/// parent's line, that line is returned.
pub fn locate(source: &str, path: &[&str]) -> Option<usize> {
    let mut found = None;
    let mut depth = 0; // how many keys of `path` are matched
    let mut indents: Vec<usize> = Vec::new(); // indent of each matched key
    for (number, line) in source.lines().enumerate() {
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.len() - body.len();
        while indents.last().is_some_and(|&i| indent <= i) {
            indents.pop();
            depth = indents.len();
        }
        if depth == path.len() {
            continue;
        }
        let key = body
            .trim_start_matches("- ")
            .split(':')
            .next()
            .unwrap_or("")
            .trim();
        let key = key.trim_matches(|c| c == '"' || c == '\'');
        if key == path[depth] {
            indents.push(indent);
            depth += 1;
            found = Some(number + 1);
            if depth == path.len() {
                return found;
            }
        }
    }
    found
}

/// The line of the last `field: value` in a source (block or flow style),
/// for problems in list items that [`locate`] cannot address.
pub fn locate_value(source: &str, field: &str, value: &str) -> Option<usize> {
    let needles = [
        format!("{field}: {value}"),
        format!("{field}: \"{value}\""),
        format!("{field}: '{value}'"),
    ];
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| {
            needles.iter().any(|n| {
                line.match_indices(n.as_str()).any(|(at, _)| {
                    let after = &line[at + n.len()..];
                    after.is_empty() || after.starts_with([',', ' ', '}', '#'])
                })
            })
        })
        .last()
        .map(|(number, _)| number + 1)
}

#[cfg(test)]
mod tests {
    use super::locate;

    const SOURCE: &str = "domain: d\ntiers:\n  free: { per_minute: 1 }\n  gold:\n    burst: 0.5\nusers:\n  free: gold\n";

    #[test]
    fn finds_block_keys_and_flow_parents() {
        assert_eq!(locate(SOURCE, &["tiers", "gold", "burst"]), Some(5));
        assert_eq!(locate(SOURCE, &["tiers", "free", "per_minute"]), Some(3));
        assert_eq!(locate(SOURCE, &["users", "free"]), Some(7));
        assert_eq!(locate(SOURCE, &["default_tier"]), None);
    }
}
