//! proto3's canonical JSON mapping of the RLS messages, for `POST /check`:
//! the same `RateLimitRequest`/`RateLimitResponse` Envoy sends over gRPC, as
//! JSON (camelCase names, enums by name, durations as "1.5s").

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use crate::proto::rls::{RateLimitRequest, RateLimitResponse};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
        .expect("build.rs wrote a valid descriptor set")
});

fn message(name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(name)
        .expect("the RLS messages are in the descriptor set")
}

/// A `RateLimitRequest` from its JSON form; the error says what is wrong.
pub fn request_from_json(json: &[u8]) -> Result<RateLimitRequest, String> {
    let descriptor = message("envoy.service.ratelimit.v3.RateLimitRequest");
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let dynamic =
        DynamicMessage::deserialize(descriptor, &mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    RateLimitRequest::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| e.to_string())
}

/// A `RateLimitResponse` in its JSON form.
pub fn response_to_json(response: &RateLimitResponse) -> serde_json::Value {
    let descriptor = message("envoy.service.ratelimit.v3.RateLimitResponse");
    let dynamic = DynamicMessage::decode(descriptor, response.encode_to_vec().as_slice())
        .expect("a response we encoded decodes");
    serde_json::to_value(&dynamic).expect("messages serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_canonical_mapping() {
        let request = request_from_json(
            br#"{"domain":"d","hitsAddend":2,"descriptors":[{"entries":[{"key":"k","value":"v"}],"hitsAddend":"0"}]}"#,
        )
        .unwrap();
        assert_eq!(request.domain, "d");
        assert_eq!(request.hits_addend, 2);
        assert_eq!(
            request.descriptors[0].hits_addend,
            Some(0),
            "wrapper: a set 0"
        );
        let response = RateLimitResponse {
            overall_code: 2,
            statuses: vec![Default::default()],
            raw_body: b"{}".to_vec(),
            ..Default::default()
        };
        let json = response_to_json(&response);
        assert_eq!(json["overallCode"], "OVER_LIMIT");
        assert_eq!(json["rawBody"], "e30=");
    }

    #[test]
    fn names_what_is_wrong() {
        assert!(request_from_json(b"{").unwrap_err().contains("EOF"));
        assert!(
            request_from_json(br#"{"domian":"d"}"#)
                .unwrap_err()
                .contains("domian")
        );
        assert!(request_from_json(br#"{"hitsAddend":"x"}"#).is_err());
    }
}
