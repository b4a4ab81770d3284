//! Configuration: YAML domain files → an immutable, compiled [`Config`].
//!
//! Two stages: `raw` mirrors the file (serde, unknown keys rejected), then
//! each domain compiles into rule sets that answer lookups without I/O. A
//! `Config` is never changed after it is built; reloading builds a new one
//! and swaps it in whole, so every request reads one consistent snapshot.
//!
//! - `raw`: the file as written.
//! - `tier`: the tier model (SPEC 2a), compiled.
//! - `error`: problems with file and line.

mod error;
pub mod raw;
pub mod tier;
pub mod tree;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{ConfigError, ConfigErrors};
use raw::RawDomain;
pub use tier::{EndpointCost, Tier, TierModel};
pub use tree::{Match, Rule, Tree};

/// The example configuration of SPEC 2a, served when no `--config` is given.
pub const BUILTIN_YAML: &str = include_str!("default.yaml");

/// One domain's compiled rules.
#[derive(Debug)]
pub struct Domain {
    pub name: Arc<str>,
    /// The file it came from.
    pub file: PathBuf,
    /// The tier model, when the file configures one.
    pub tier_model: Option<TierModel>,
    /// envoyproxy/ratelimit's descriptor tree (empty when the file has none).
    pub tree: Tree,
    /// The file as parsed, for `/config`.
    pub raw: RawDomain,
}

/// Every loaded domain.
#[derive(Debug, Default)]
pub struct Config {
    domains: HashMap<String, Arc<Domain>>,
}

impl Config {
    /// The built-in example configuration.
    pub fn builtin() -> Self {
        Self::from_sources([(PathBuf::from("<built-in>"), BUILTIN_YAML.to_string())])
            .expect("the built-in configuration is valid")
    }

    /// Loads a file, or every `*.yaml`/`*.yml` file of a directory (hidden
    /// entries, such as a Kubernetes ConfigMap's `..data`, are skipped).
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let io_error = |file: &Path, e: std::io::Error| {
            ConfigErrors(vec![ConfigError {
                file: file.to_path_buf(),
                line: None,
                message: format!("cannot read: {e}"),
            }])
        };
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| io_error(path, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| is_config_file(p))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(ConfigErrors(vec![ConfigError {
                    file: path.to_path_buf(),
                    line: None,
                    message: "no *.yaml or *.yml files in this directory".into(),
                }]));
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        let mut sources = Vec::with_capacity(files.len());
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| io_error(&file, e))?;
            sources.push((file, text));
        }
        Self::from_sources(sources)
    }

    /// Builds a configuration from (file name, YAML text) pairs, one domain
    /// per file; reports every problem in every file.
    pub fn from_sources(
        sources: impl IntoIterator<Item = (PathBuf, String)>,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let mut domains: HashMap<String, Arc<Domain>> = HashMap::new();
        for (file, text) in sources {
            let domain = match compile_file(&file, &text) {
                Ok(domain) => domain,
                Err(mut found) => {
                    errors.append(&mut found);
                    continue;
                }
            };
            if let Some(first) = domains.get(&*domain.name) {
                errors.push(ConfigError {
                    line: error::locate(&text, &["domain"]),
                    message: format!(
                        "domain `{}` is already defined in {}",
                        domain.name,
                        first.file.display()
                    ),
                    file,
                });
                continue;
            }
            domains.insert(domain.name.to_string(), Arc::new(domain));
        }
        if errors.is_empty() {
            Ok(Self { domains })
        } else {
            Err(ConfigErrors(errors))
        }
    }

    pub fn domain(&self, name: &str) -> Option<&Arc<Domain>> {
        self.domains.get(name)
    }

    /// Domain names, sorted.
    pub fn domain_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.domains.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

fn is_config_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml");
    !hidden && yaml && path.is_file()
}

fn compile_file(file: &Path, text: &str) -> Result<Domain, Vec<ConfigError>> {
    let error = |line, message| ConfigError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let raw: RawDomain = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        vec![error(line, without_positions(&e.to_string()))]
    })?;
    if raw.domain.trim().is_empty() {
        return Err(vec![error(
            error::locate(text, &["domain"]),
            "`domain` must not be empty".into(),
        )]);
    }
    // Both rule sets are compiled so every problem in the file is reported.
    let tier_model = raw
        .has_tier_model()
        .then(|| TierModel::compile(&raw))
        .transpose()
        .map_err(|problems| {
            problems
                .into_iter()
                .map(|(path, message)| {
                    let path: Vec<&str> = path.iter().map(String::as_str).collect();
                    error(error::locate(text, &path), message)
                })
                .collect::<Vec<_>>()
        });
    let tree = Tree::compile(&raw.domain, raw.descriptors.as_deref().unwrap_or_default()).map_err(
        |problems| {
            problems
                .into_iter()
                .map(|(message, key)| error(error::locate_value(text, "key", &key), message))
                .collect::<Vec<_>>()
        },
    );
    let (tier_model, tree) = match (tier_model, tree) {
        (Ok(tier_model), Ok(tree)) => (tier_model, tree),
        (tier_model, tree) => {
            let mut errors = tier_model.err().unwrap_or_default();
            errors.extend(tree.err().unwrap_or_default());
            return Err(errors);
        }
    };
    Ok(Domain {
        name: raw.domain.as_str().into(),
        file: file.to_path_buf(),
        tier_model,
        tree,
        raw,
    })
}

/// serde_yaml's message without its " at line L column C" parts: the
/// line is printed in front, once.
fn without_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at line ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + " at line ".len()..];
        let skip = tail
            .find(" column ")
            .map(|c| c + " column ".len())
            .map(|c| {
                c + tail[c..]
                    .find(|ch: char| !ch.is_ascii_digit())
                    .unwrap_or(tail.len() - c)
            });
        match skip {
            Some(end) => rest = &tail[end..],
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<String> {
        Config::from_sources([(PathBuf::from("d.yaml"), yaml.to_string())])
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn builtin_is_the_spec_example() {
        let config = Config::builtin();
        let domain = config.domain("fingerprint-api").unwrap();
        let model = domain.tier_model.as_ref().unwrap();
        assert_eq!(model.tier("free").unwrap().bucket.unwrap().capacity, 150);
        assert_eq!(model.tier("pro").unwrap().monthly, Some(1_000_000));
        assert_eq!(model.anonymous.unwrap().capacity, 30);
        assert!(model.is_whitelisted("10.9.9.9"));
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        assert_eq!(
            errors_of("domain: d\ntiers:\n  free: { per_minute: 1, per_hour: 2 }\n"),
            [
                "d.yaml:3: tiers.free: unknown field `per_hour`, expected one of `per_minute`, `monthly`, `burst`, `unlimited`"
            ]
        );
        assert_eq!(
            errors_of("domain: d\nlimits: 3\n")[0],
            "d.yaml:2: unknown field `limits`, expected one of `domain`, `keys`, `tiers`, `default_tier`, `burst`, `endpoints`, `default_cost`, `anonymous`, `whitelist`, `users`, `descriptors`"
        );
    }

    #[test]
    fn broken_yaml_and_wrong_types_have_lines() {
        assert_eq!(
            errors_of("domain: d\nkeys: {user: a\n"),
            ["d.yaml:3: did not find expected ',' or '}', while parsing a flow mapping"]
        );
        assert_eq!(
            errors_of("domain: d\ntiers:\n  free: { per_minute: lots }\n"),
            ["d.yaml:3: tiers.free.per_minute: invalid type: string \"lots\", expected u64"]
        );
    }

    #[test]
    fn semantic_problems_point_at_their_keys() {
        assert_eq!(
            errors_of("domain: d\ntiers:\n  free: { per_minute: 1 }\ndefault_tier: gold\n"),
            ["d.yaml:4: default_tier `gold` is not a configured tier"]
        );
        assert_eq!(
            errors_of("domain: ''\n"),
            ["d.yaml:1: `domain` must not be empty"]
        );
    }

    #[test]
    fn duplicate_domains_across_files() {
        let err = Config::from_sources([
            (PathBuf::from("a.yaml"), "domain: d\n".to_string()),
            (PathBuf::from("b.yaml"), "\ndomain: d\n".to_string()),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.yaml:2: domain `d` is already defined in a.yaml"
        );
    }

    #[test]
    fn loads_a_directory_skipping_hidden_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "domain: a\n").unwrap();
        std::fs::write(dir.path().join("b.yml"), "domain: b\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "broken: [").unwrap();
        let config = Config::load(dir.path()).unwrap();
        assert_eq!(config.domain_names(), ["a", "b"]);
        let empty = tempfile::tempdir().unwrap();
        assert!(
            Config::load(empty.path())
                .unwrap_err()
                .to_string()
                .contains("no *.yaml")
        );
        assert!(
            Config::load(&dir.path().join("missing.yaml"))
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }
}
