//! A rate-limit request in tollgate's own terms (no protobuf below the gRPC
//! edge), and its validation.

/// One `ShouldRateLimit` call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub domain: String,
    pub descriptors: Vec<Descriptor>,
    /// The request-level `hits_addend`; 0 means "not set".
    pub hits_addend: u64,
}

/// One descriptor: ordered key/value entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Descriptor {
    pub entries: Vec<Entry>,
    /// The descriptor's own `hits_addend`; `Some(0)` is a real 0.
    pub hits_addend: Option<u64>,
    /// A limit override sent with the descriptor.
    pub limit: Option<LimitOverride>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
}

/// A descriptor's `limit` (Envoy's RateLimitOverride).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitOverride {
    pub requests_per_unit: u32,
    pub unit: super::Unit,
}

/// Size bounds on a request (settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_descriptors: usize,
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            max_descriptors: 64,
            max_entries: 32,
            max_bytes: 1024,
        }
    }
}

/// Why a request is refused before anything is decided or charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    #[error("domain must not be empty")]
    EmptyDomain,
    #[error("descriptors must not be empty")]
    NoDescriptors,
    #[error("too many descriptors: {count} (at most {max})")]
    TooManyDescriptors { count: usize, max: usize },
    #[error("descriptors[{index}] has no entries")]
    NoEntries { index: usize },
    #[error("descriptors[{index}] has too many entries: {count} (at most {max})")]
    TooManyEntries {
        index: usize,
        count: usize,
        max: usize,
    },
    #[error("descriptors[{index}].entries[{entry}] has an empty key")]
    EmptyKey { index: usize, entry: usize },
    #[error("descriptors[{index}].entries[{entry}].{field} is {len} bytes long (at most {max})")]
    TooLong {
        index: usize,
        entry: usize,
        field: &'static str,
        len: usize,
        max: usize,
    },
}

impl Request {
    /// Checks the request against SPEC 1 and `bounds`.
    pub fn validate(&self, bounds: &Bounds) -> Result<(), InvalidRequest> {
        if self.domain.is_empty() {
            return Err(InvalidRequest::EmptyDomain);
        }
        if self.descriptors.is_empty() {
            return Err(InvalidRequest::NoDescriptors);
        }
        if self.descriptors.len() > bounds.max_descriptors {
            return Err(InvalidRequest::TooManyDescriptors {
                count: self.descriptors.len(),
                max: bounds.max_descriptors,
            });
        }
        for (index, descriptor) in self.descriptors.iter().enumerate() {
            let count = descriptor.entries.len();
            if count == 0 {
                return Err(InvalidRequest::NoEntries { index });
            }
            if count > bounds.max_entries {
                return Err(InvalidRequest::TooManyEntries {
                    index,
                    count,
                    max: bounds.max_entries,
                });
            }
            for (entry, Entry { key, value }) in descriptor.entries.iter().enumerate() {
                if key.is_empty() {
                    return Err(InvalidRequest::EmptyKey { index, entry });
                }
                for (field, text) in [("key", key), ("value", value)] {
                    if text.len() > bounds.max_bytes {
                        return Err(InvalidRequest::TooLong {
                            index,
                            entry,
                            field,
                            len: text.len(),
                            max: bounds.max_bytes,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Hits for descriptor `index`: its own `hits_addend` when set (0 is a
    /// real 0), else the request's when > 0, else 1.
    pub fn hits(&self, index: usize) -> u64 {
        match self.descriptors[index].hits_addend {
            Some(hits) => hits,
            None if self.hits_addend > 0 => self.hits_addend,
            None => 1,
        }
    }
}

impl Descriptor {
    /// A descriptor from `(key, value)` pairs.
    pub fn of(entries: &[(&str, &str)]) -> Self {
        Self {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(descriptors: Vec<Descriptor>) -> Request {
        Request {
            domain: "d".into(),
            descriptors,
            hits_addend: 0,
        }
    }

    #[test]
    fn hits_descriptor_then_request_then_one() {
        let mut r = request(vec![Descriptor::of(&[("k", "v")]); 2]);
        assert_eq!(r.hits(0), 1);
        r.hits_addend = 5;
        assert_eq!(r.hits(0), 5);
        r.descriptors[1].hits_addend = Some(0);
        assert_eq!(r.hits(1), 0, "a descriptor's 0 is a real 0");
        r.descriptors[1].hits_addend = Some(3);
        assert_eq!(r.hits(1), 3);
    }

    #[test]
    fn every_invalid_shape_is_named() {
        let bounds = Bounds {
            max_descriptors: 2,
            max_entries: 2,
            max_bytes: 4,
        };
        let check = |r: Request| r.validate(&bounds).unwrap_err().to_string();
        let ok = Descriptor::of(&[("k", "v")]);
        assert_eq!(
            check(Request {
                domain: String::new(),
                ..request(vec![ok.clone()])
            }),
            "domain must not be empty"
        );
        assert_eq!(check(request(vec![])), "descriptors must not be empty");
        assert_eq!(
            check(request(vec![ok.clone(); 3])),
            "too many descriptors: 3 (at most 2)"
        );
        assert_eq!(
            check(request(vec![ok.clone(), Descriptor::default()])),
            "descriptors[1] has no entries"
        );
        assert_eq!(
            check(request(vec![Descriptor::of(&[
                ("a", ""),
                ("b", ""),
                ("c", "")
            ])])),
            "descriptors[0] has too many entries: 3 (at most 2)"
        );
        assert_eq!(
            check(request(vec![Descriptor::of(&[("a", ""), ("", "x")])])),
            "descriptors[0].entries[1] has an empty key"
        );
        assert_eq!(
            check(request(vec![Descriptor::of(&[("a", "12345")])])),
            "descriptors[0].entries[0].value is 5 bytes long (at most 4)"
        );
        assert_eq!(
            check(request(vec![Descriptor::of(&[("abcde", "")])])),
            "descriptors[0].entries[0].key is 5 bytes long (at most 4)"
        );
        assert!(request(vec![ok]).validate(&bounds).is_ok());
    }
}
