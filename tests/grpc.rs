//! The gRPC surface over real loopback connections: validation errors,
//! concurrency on one key, all-or-nothing across users, health and
//! reflection (v1 and v1alpha).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use tollgate::clock::ManualClock;
use tollgate::config::Config;
use tollgate::proto::rls::rate_limit_response::Code;
use tonic::Code as GrpcCode;

#[tokio::test]
async fn every_invalid_request_is_refused_with_invalid_argument_and_charges_nothing() {
    let server = TestServer::memory(Config::builtin(), ManualClock::at(NEW_YEARS_EVE_US)).await;
    let mut client = server.client().await;
    let user: &[(&str, &str)] = &[("user_id", "sk_inv"), ("path", "/identify")];
    let long = "x".repeat(1025);
    let many_entries: Vec<(&str, &str)> = (0..33).map(|_| ("k", "v")).collect();
    let many_descriptors: Vec<&[(&str, &str)]> = (0..65).map(|_| user).collect();
    let cases = vec![
        (grpc_request("", &[user]), "domain must not be empty"),
        (
            grpc_request("fingerprint-api", &[]),
            "descriptors must not be empty",
        ),
        (
            grpc_request("fingerprint-api", &[user, &[]]),
            "descriptors[1] has no entries",
        ),
        (
            grpc_request("fingerprint-api", &[&[("user_id", "sk_inv"), ("", "v")]]),
            "descriptors[0].entries[1] has an empty key",
        ),
        (
            grpc_request("fingerprint-api", &many_descriptors),
            "too many descriptors: 65 (at most 64)",
        ),
        (
            grpc_request("fingerprint-api", &[&many_entries]),
            "descriptors[0] has too many entries: 33 (at most 32)",
        ),
        (
            grpc_request("fingerprint-api", &[user, &[("user_id", long.as_str())]]),
            "descriptors[1].entries[0].value is 1025 bytes long (at most 1024)",
        ),
        (
            grpc_request("fingerprint-api", &[&[(long.as_str(), "v")]]),
            "descriptors[0].entries[0].key is 1025 bytes long (at most 1024)",
        ),
    ];
    for (request, message) in cases {
        let status = client.should_rate_limit(request).await.unwrap_err();
        assert_eq!(status.code(), GrpcCode::InvalidArgument, "{message}");
        assert_eq!(status.message(), message);
    }
    // None of the invalid requests that named sk_inv charged it.
    let response = client
        .should_rate_limit(grpc_request("fingerprint-api", &[user]))
        .await
        .unwrap();
    assert_eq!(response.into_inner().statuses[0].limit_remaining, 149);
}

#[tokio::test]
async fn concurrent_calls_on_one_key_admit_exactly_the_capacity() {
    let server = TestServer::memory(Config::builtin(), ManualClock::at(NEW_YEARS_EVE_US)).await;
    let admitted = Arc::new(AtomicUsize::new(0));
    let rejected = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut client = server.client().await;
        let (admitted, rejected) = (Arc::clone(&admitted), Arc::clone(&rejected));
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let request = grpc_request(
                    "fingerprint-api",
                    &[&[("user_id", "sk_hot"), ("path", "/identify")]],
                );
                let response = client
                    .should_rate_limit(request)
                    .await
                    .unwrap()
                    .into_inner();
                match Code::try_from(response.overall_code).unwrap() {
                    Code::Ok => admitted.fetch_add(1, Ordering::SeqCst),
                    Code::OverLimit => rejected.fetch_add(1, Ordering::SeqCst),
                    Code::Unknown => panic!("unknown code"),
                };
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        admitted.load(Ordering::SeqCst),
        150,
        "the clock stands still: exactly the burst capacity"
    );
    assert_eq!(rejected.load(Ordering::SeqCst), 16 * 50 - 150);
}

#[tokio::test]
async fn two_users_in_one_request_are_decided_together() {
    let server = TestServer::memory(Config::builtin(), ManualClock::at(NEW_YEARS_EVE_US)).await;
    let mut client = server.client().await;
    let drained: &[(&str, &str)] = &[("user_id", "sk_drained"), ("path", "/identify")];
    let fresh: &[(&str, &str)] = &[("user_id", "sk_fresh"), ("path", "/identify")];
    let mut drain = grpc_request("fingerprint-api", &[drained]);
    drain.hits_addend = 150;
    assert_eq!(
        client
            .should_rate_limit(drain)
            .await
            .unwrap()
            .into_inner()
            .overall_code,
        Code::Ok as i32
    );
    for _ in 0..5 {
        let response = client
            .should_rate_limit(grpc_request("fingerprint-api", &[fresh, drained]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.overall_code, Code::OverLimit as i32);
        let codes: Vec<i32> = response.statuses.iter().map(|s| s.code).collect();
        assert_eq!(codes, [Code::Ok as i32, Code::OverLimit as i32]);
    }
    let response = client
        .should_rate_limit(grpc_request("fingerprint-api", &[fresh]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.statuses[0].limit_remaining, 149,
        "sk_fresh was charged nothing by the rejected requests"
    );
}

#[tokio::test]
async fn responses_carry_what_envoy_renders() {
    let server = TestServer::memory(Config::builtin(), ManualClock::at(NEW_YEARS_EVE_US)).await;
    let mut client = server.client().await;
    let mut request = grpc_request(
        "fingerprint-api",
        &[&[("user_id", "sk_envoy"), ("path", "/identify")]],
    );
    request.descriptors[0].hits_addend = Some(150);
    let ok = client
        .should_rate_limit(request.clone())
        .await
        .unwrap()
        .into_inner();
    let status = &ok.statuses[0];
    let limit = status.current_limit.as_ref().unwrap();
    assert_eq!(
        (limit.name.as_str(), limit.requests_per_unit, limit.unit),
        ("free", 100, 2)
    );
    assert_eq!(status.limit_remaining, 0);
    assert_eq!(status.duration_until_reset.unwrap().seconds, 90);
    assert!(ok.raw_body.is_empty());
    request.descriptors[0].hits_addend = Some(1);
    let over = client
        .should_rate_limit(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(over.overall_code, Code::OverLimit as i32);
    let body: serde_json::Value = serde_json::from_slice(&over.raw_body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"error": "rate_limit_exceeded", "tier": "free", "retry_after": 1})
    );
    let headers: Vec<(&str, &str)> = over
        .response_headers_to_add
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    for expected in [
        ("x-ratelimit-limit", "100"),
        ("x-ratelimit-remaining", "0"),
        ("retry-after", "1"),
        ("content-type", "application/json"),
        ("ratelimit-policy", "\"free\";q=100;w=60"),
    ] {
        assert!(headers.contains(&expected), "{expected:?} in {headers:?}");
    }
}

#[tokio::test]
async fn unknown_domain_is_ok_for_every_descriptor() {
    let server = TestServer::memory(Config::builtin(), ManualClock::at(NEW_YEARS_EVE_US)).await;
    let mut client = server.client().await;
    let response = client
        .should_rate_limit(grpc_request(
            "elsewhere",
            &[&[("user_id", "u")], &[("a", "b")]],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.overall_code, Code::Ok as i32);
    assert_eq!(response.statuses.len(), 2);
    assert!(
        response
            .statuses
            .iter()
            .all(|s| s.code == Code::Ok as i32 && s.current_limit.is_none())
    );
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_rls() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let server = TestServer::memory(Config::builtin(), ManualClock::at(0)).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", tollgate::server::RLS_SERVICE_NAME] {
        let mut status = ServingStatus::Unknown as i32;
        for _ in 0..50 {
            status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            if status == ServingStatus::Serving as i32 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
}

#[tokio::test]
async fn reflection_lists_services_in_v1_and_v1alpha() {
    use tonic_reflection::pb::{v1, v1alpha};
    let server = TestServer::memory(Config::builtin(), ManualClock::at(0)).await;

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&tollgate::server::RLS_SERVICE_NAME.to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                tollgate::server::RLS_SERVICE_NAME.into(),
            ),
        ),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors");
    };
    assert!(
        !files.file_descriptor_proto.is_empty(),
        "describe works without proto files"
    );
}
